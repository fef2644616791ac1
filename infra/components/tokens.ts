import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

export interface TokensArgs {
  /** Tokens from config secrets; a missing one is generated (and kept in the state, encrypted). */
  serverToken?: pulumi.Output<string>;
  adminToken?: pulumi.Output<string>;
  agentToken?: pulumi.Output<string>;
  /** Whether the agent's token is needed at all (only with the Render jobs). */
  withAgentToken: boolean;
}

/**
 * The three tokens of docs/design.md: the job's (write and read), the admin's (deletes) and the agent's
 * (the cron job's trigger). Each stays a secret Output end to end, whether configured or generated.
 */
export class Tokens extends pulumi.ComponentResource {
  readonly serverToken: pulumi.Output<string>;
  readonly adminToken: pulumi.Output<string>;
  readonly agentToken: pulumi.Output<string> | undefined;

  constructor(name: string, args: TokensArgs, opts?: pulumi.ComponentResourceOptions) {
    super("r2-sqlite-backup:tokens:Tokens", name, {}, opts);
    const token = (role: string, configured: pulumi.Output<string> | undefined) =>
      // pulumi.secret(): the random provider marks `result` secret, but the wrapper makes it explicit and
      // holds under mocks too, which apply no additionalSecretOutputs.
      pulumi.secret(configured ?? new random.RandomPassword(`${name}-${role}`, { length: 48, special: false }, { parent: this }).result);
    this.serverToken = token("server", args.serverToken);
    this.adminToken = token("admin", args.adminToken);
    this.agentToken = args.withAgentToken ? token("agent", args.agentToken) : undefined;
    this.registerOutputs({});
  }
}
