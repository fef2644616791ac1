#!/usr/bin/env node
// Placeholder until the backup job issue lands.
console.error("r2backup: not implemented yet (see the open issues)");
process.exit(1);
