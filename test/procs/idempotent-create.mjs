// Creates the same task (one idempotency key) many times, racing other processes.
// usage: node idempotent-create.mjs <store> <key> <times>   (store: see open-store.mjs)
import { openStore } from './open-store.mjs'

const [store, key, times] = process.argv.slice(2)
const orch = await openStore(store)
const ids = []
for (let i = 0; i < Number(times); i++) {
  ids.push((await orch.tasks.create({ title: `attempt ${process.pid}/${i}`, idempotencyKey: key })).id)
}
await orch.close()
process.stdout.write(JSON.stringify({ ids }) + '\n')
