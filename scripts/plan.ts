// Placeholder until its issue lands: says so clearly and exits non-zero.
console.error("npm run plan: not implemented yet (see the open issues: `issues list`)");
process.exit(1);
