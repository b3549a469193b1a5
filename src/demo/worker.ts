/**
 * A demo worker process: one worker pool (orch.tasks.work) on the demo run's tenant. The
 * handler "works" for the task's workMs (heartbeats are automatic) and fails the first
 * attempts of some tasks with a simulated upstream error, to show retries with backoff.
 */
import { createOrchestrator } from '../index.js'

const [path, tenant, worker] = process.argv.slice(2)
if (!path || !tenant || !worker) throw new Error('usage: worker.js <db> <tenant> <worker>')

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => {
      clearTimeout(timer)
      reject(signal.reason)
    })
  })

const orch = await createOrchestrator({ path })
orch.tasks.work({
  worker,
  tenant,
  concurrency: 2,
  leaseMs: 2_000,
  handler: async (task, { signal, attempt }) => {
    const payload = (task.payload ?? {}) as { workMs?: number; failFirstAttempts?: number }
    await sleep(payload.workMs ?? 200, signal)
    if (attempt <= (payload.failFirstAttempts ?? 0)) {
      throw new Error(`simulated 503 from an upstream API (attempt ${attempt})`)
    }
    return { result: { by: worker }, summary: `${task.title} done by ${worker}` }
  },
})

// The demo's main process says when the run is over; a worker orphaned by a crashed main
// stops by itself. close() drains the pool first.
let stopping = false
const stop = () => {
  if (stopping) return
  stopping = true
  void orch.close().then(() => {
    if (process.connected) process.disconnect()
  })
}
process.on('message', (message) => message === 'stop' && stop())
process.on('disconnect', stop)
