import { ContractError } from "../core/index.ts";

/**
 * The one error type of `infra/`: same shape as core's (`<operation> <thing> '<id>': <reason> (hint)`), so
 * a failed `pulumi up` or `npm run plan` names the key or resource and says what to run to fix it.
 */
export class InfraError extends ContractError {
  constructor(operation: string, thing: string, id: string, reason: string, hint?: string) {
    super(operation, thing, id, reason, hint);
    this.name = "InfraError";
  }
}
