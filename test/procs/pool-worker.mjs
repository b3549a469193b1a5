// A worker-pool process for the chaos test: runs `orch.tasks.work` until every task of
// the board is done (or it is killed). Prints a heartbeat line per completed handler so
// the parent can kill it mid-run.
// usage: node pool-worker.mjs <store> <worker> <concurrency> <leaseMs> [deadlineMs]
// (<store>: a SQLite path or "postgres://...|<schema>", see open-store.mjs)
import { openStore } from './open-store.mjs'

const [store, worker, concurrency, leaseMs, deadlineMs = '100000'] = process.argv.slice(2)
const orch = await openStore(store, { pollMs: 20 })
let handled = 0
const pool = orch.tasks.work({
  worker,
  concurrency: Number(concurrency),
  leaseMs: Number(leaseMs),
  heartbeatMs: Math.floor(Number(leaseMs) / 4),
  idlePollMs: 200,
  handler: async (task, { runId }) => {
    process.stdout.write(`run ${runId}\n`)
    await new Promise((r) => setTimeout(r, Math.random() * 4))
    handled++
    if (handled % 10 === 0) process.stdout.write(`progress ${handled}\n`)
    return { result: { by: worker }, summary: task.title }
  },
})
const deadline = Date.now() + Number(deadlineMs)
for (;;) {
  const open = (await orch.tasks.list({ status: 'todo', limit: 1 })).length + (await orch.tasks.list({ status: 'ready', limit: 1 })).length + (await orch.tasks.list({ status: 'running', limit: 1 })).length
  if (open === 0 || Date.now() > deadline) break
  await new Promise((r) => setTimeout(r, 100))
}
await pool.stop({ timeoutMs: 5_000 })
await orch.close()
process.stdout.write(`done ${handled}\n`)
