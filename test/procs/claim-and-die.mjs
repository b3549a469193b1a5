// Claims a task with a short lease and is then killed with SIGKILL: it never heartbeats,
// completes or releases.
// usage: node claim-and-die.mjs <store> <taskId> <leaseMs>   (store: see open-store.mjs)
import { openStore } from './open-store.mjs'

const [store, taskId, leaseMs] = process.argv.slice(2)
const orch = await openStore(store, { runTimers: false })
const claim = await orch.tasks.claim(taskId, { worker: `doomed-${process.pid}`, leaseMs: Number(leaseMs) })
if (!claim) process.exit(3)
process.kill(process.pid, 'SIGKILL')
