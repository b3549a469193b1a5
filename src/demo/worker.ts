/**
 * A demo worker process: claims tasks of one demo run (its tenant), "works" on them with
 * heartbeats, fails now and then to show retries, and completes them.
 */
import { createOrchestrator } from '../index.js'

const [path, tenant, worker] = process.argv.slice(2)
if (!path || !tenant || !worker) throw new Error('usage: worker.js <db> <tenant> <worker>')

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const orch = await createOrchestrator({ path })
// The demo's main process says when the run is over; a worker orphaned by a crashed main stops by itself.
let stopping = false
process.on('message', (message) => {
  if (message === 'stop') stopping = true
})
process.on('disconnect', () => (stopping = true))
while (!stopping) {
  const claim = await orch.tasks.claimNext({ worker, tenant, leaseMs: 2_000 })
  if (!claim) {
    await sleep(25)
    continue
  }
  const task = (await orch.tasks.get(claim.taskId))!
  const payload = (task.payload ?? {}) as { workMs?: number; failFirstAttempts?: number }
  let current = claim
  const workMs = payload.workMs ?? 200
  for (let spent = 0; spent < workMs; spent += 100) {
    await sleep(Math.min(100, workMs - spent))
    current = await orch.tasks.heartbeat(current)
  }
  if (claim.attempt <= (payload.failFirstAttempts ?? 0)) {
    await orch.tasks.fail(current, { error: `simulated 503 from an upstream API (attempt ${claim.attempt})` })
  } else {
    await orch.tasks.complete(current, { result: { by: worker }, summary: `${task.title} done by ${worker}` })
  }
}
await orch.close()
process.disconnect?.()
