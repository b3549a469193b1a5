// Creates one task from a separate OS process.
// usage: node create-one.mjs <store> <title>   (store: a SQLite path or "postgres://...|<schema>", see open-store.mjs)
import { openStore } from './open-store.mjs'

const [store, title] = process.argv.slice(2)
const orch = await openStore(store)
const task = await orch.tasks.create({ title })
await orch.close()
process.stdout.write(JSON.stringify({ id: task.id }) + '\n')
