// Creates the same task (one idempotency key) many times, racing other processes.
// usage: node idempotent-create.mjs <db> <key> <times>
import { createOrchestrator } from '../../dist/src/index.js'

const [db, key, times] = process.argv.slice(2)
const orch = await createOrchestrator({ path: db })
const ids = []
for (let i = 0; i < Number(times); i++) {
  ids.push((await orch.tasks.create({ title: `attempt ${process.pid}/${i}`, idempotencyKey: key })).id)
}
await orch.close()
process.stdout.write(JSON.stringify({ ids }) + '\n')
