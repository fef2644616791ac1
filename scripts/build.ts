import { writeWorkerBundle } from "../worker/bundle.ts";

// `npm run build`: the Worker bundle at dist/worker/index.js (the Pulumi program bundles it again itself).
const path = await writeWorkerBundle();
console.log(`built ${path}`);
