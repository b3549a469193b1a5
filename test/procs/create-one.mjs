// Creates one task from a separate OS process. usage: node create-one.mjs <db> <title>
import { createOrchestrator } from '../../dist/src/index.js'

const [db, title] = process.argv.slice(2)
const orch = await createOrchestrator({ path: db })
const task = await orch.tasks.create({ title })
await orch.close()
process.stdout.write(JSON.stringify({ id: task.id }) + '\n')
