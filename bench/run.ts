// Placeholder until the benchmark issue lands.
console.error("npm run bench: not implemented yet (see the open issues)");
process.exit(1);
