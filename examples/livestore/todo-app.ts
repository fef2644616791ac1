import { makeAdapter } from "@livestore/adapter-node";
import { Events, Schema, State, createStorePromise, makeSchema, queryDb, type Store } from "@livestore/livestore";
import { LogLevel } from "effect";

/**
 * A real LiveStore 0.4 app (a todo list persisted on disk by `@livestore/adapter-node`), the one the tests
 * and `npm start` back up, restore, and boot again. Nothing here is shaped like LiveStore: it is LiveStore.
 */

export const todos = State.SQLite.table({
  name: "todos",
  columns: {
    id: State.SQLite.text({ primaryKey: true }),
    text: State.SQLite.text({ default: "" }),
    completed: State.SQLite.boolean({ default: false }),
  },
});

export const events = {
  todoCreated: Events.synced({ name: "v1.TodoCreated", schema: Schema.Struct({ id: Schema.String, text: Schema.String }) }),
  todoCompleted: Events.synced({ name: "v1.TodoCompleted", schema: Schema.Struct({ id: Schema.String }) }),
  todoDeleted: Events.synced({ name: "v1.TodoDeleted", schema: Schema.Struct({ id: Schema.String }) }),
};

const materializers = State.SQLite.materializers(events, {
  "v1.TodoCreated": ({ id, text }) => todos.insert({ id, text, completed: false }),
  "v1.TodoCompleted": ({ id }) => todos.update({ completed: true }).where({ id }),
  "v1.TodoDeleted": ({ id }) => todos.delete().where({ id }),
});

export const schema = makeSchema({ events, state: State.SQLite.makeState({ tables: { todos }, materializers }) });

export type TodoStore = Store<typeof schema>;
export interface Todo {
  id: string;
  text: string;
  completed: boolean;
}

/** Boots the store from `<baseDirectory>/<storeId>/` (LiveStore creates the files when missing). */
export async function openTodoStore(baseDirectory: string, storeId = "todos"): Promise<TodoStore> {
  return createStorePromise({ adapter: makeAdapter({ storage: { type: "fs", baseDirectory } }), schema, storeId, disableDevtools: true, logLevel: LogLevel.Warning });
}

/** Every todo the app shows, in id order. */
export function allTodos(store: TodoStore): Todo[] {
  return (store.query(queryDb(todos.orderBy("id", "asc"))) as readonly Todo[]).map((t) => ({ id: t.id, text: t.text, completed: t.completed }));
}

/**
 * Waits until LiveStore's leader has persisted every event the session committed (docs/design.md fact 9:
 * `shutdownPromise()` does not wait for it), so the files on disk hold what the app showed.
 */
export async function waitPersisted(store: TodoStore, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { session, leader } = await store._dev.syncStates();
    if (leader.localHead.global === session.localHead.global && leader.localHead.client === session.localHead.client) return;
    if (Date.now() > deadline)
      throw new Error(`LiveStore's leader did not persist: session at ${JSON.stringify(session.localHead)}, leader at ${JSON.stringify(leader.localHead)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Boots LiveStore on a data directory (a restore, say), reads every todo it shows, and shuts it down. */
export async function bootAndReadTodos(baseDirectory: string, storeId = "todos"): Promise<Todo[]> {
  const store = await openTodoStore(baseDirectory, storeId);
  try {
    return allTodos(store);
  } finally {
    await store.shutdownPromise();
  }
}

/** Persists, then shuts the store down. */
export async function closeTodoStore(store: TodoStore): Promise<void> {
  await waitPersisted(store);
  await store.shutdownPromise();
}

/**
 * Commits `n` app actions (creates, with every third completing an earlier todo and every seventh deleting
 * one), up to 100 actions per `commit` call (one LiveStore transaction each, as an app batching input would).
 */
export function doWork(store: TodoStore, n: number, tag: string): void {
  const id = (i: number) => `${tag}-${String(i).padStart(5, "0")}`;
  for (let start = 0; start < n; start += 100) {
    const batch = [];
    for (let i = start; i < Math.min(n, start + 100); i++) {
      batch.push(events.todoCreated({ id: id(i), text: `todo ${tag} ${i}` }));
      if (i % 3 === 2) batch.push(events.todoCompleted({ id: id(i - 1) }));
      if (i % 7 === 6) batch.push(events.todoDeleted({ id: id(i - 5) }));
    }
    store.commit(...batch);
  }
}
