// A second process running the real LiveStore app and committing without pause, for the backup-under-writes
// test: `node livestore-writer.ts <baseDirectory>`. Prints one line once it is committing.
import { doWork, openTodoStore } from "../../examples/livestore/todo-app.ts";

const store = await openTodoStore(process.argv[2]!);
let n = 0;
for (;;) {
  doWork(store, 5, `live${n++}`);
  if (n === 1) process.stdout.write("ready\n");
  await new Promise((r) => setTimeout(r, 1));
}
