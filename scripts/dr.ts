// `npm run dr -- --stack <name> --to <path> [...]`: the disaster-recovery command (dr/cli.ts). Only this
// file exits.
import { main } from "../dr/cli.ts";

process.exitCode = await main(process.argv.slice(2));
