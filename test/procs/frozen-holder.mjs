// Claims a task, then (after the parent freezes it with SIGSTOP and thaws it with
// SIGCONT) tries to complete it with its now-stale claim. Prints what happened.
// usage: node frozen-holder.mjs <db> <taskId> <leaseMs> <completeAfterMs>
import { createOrchestrator } from '../../dist/src/index.js'

const [db, taskId, leaseMs, after] = process.argv.slice(2)
const orch = await createOrchestrator({ path: db, runTimers: false })
const claim = await orch.tasks.claim(taskId, { worker: 'frozen', leaseMs: Number(leaseMs) })
process.stdout.write(`claimed ${claim?.runId}\n`)
await new Promise((r) => setTimeout(r, Number(after)))
try {
  await orch.tasks.complete(claim, { result: 'late result from a frozen process' })
  process.stdout.write('completed\n')
} catch (error) {
  process.stdout.write(`refused ${error.code}\n`)
}
await orch.close()
