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
    const payload = (task.payload ?? {}) as { workMs?: number; failFirstAttempts?: number; llm?: { inject: '429' | 'timeout' } }
    await sleep(payload.workMs ?? 200, signal)
    if (payload.llm) {
      const reply = await askModel(task.id, task.title, payload.llm.inject, signal)
      return { result: { by: worker, model: reply.model, text: String(reply.output) }, summary: `${task.title} by ${reply.model}` }
    }
    if (attempt <= (payload.failFirstAttempts ?? 0)) {
      throw new Error(`simulated 503 from an upstream API (attempt ${attempt})`)
    }
    return { result: { by: worker, model: null, text: null }, summary: `${task.title} done by ${worker}` }
  },
})

/**
 * A simulated provider behind orch.sessions.run: the primary answers 429 (inject '429') or
 * never sends a token (inject 'timeout'); the fallbacks answer.
 */
function askModel(taskId: string, title: string, inject: '429' | 'timeout', signal: AbortSignal) {
  return orch.sessions.run(`${tenant}:${title}`, {
    agent: 'writer',
    models: ['sim/claude', 'sim/gpt', 'sim/gemini'],
    config: { firstTokenTimeoutMs: 400, cooldownMs: 5_000 },
    message: { id: taskId, text: title },
    call: async ({ model, signal: callSignal, onToken }) => {
      if (model === 'sim/claude' && inject === '429') {
        throw Object.assign(new Error('rate limit exceeded (simulated)'), { status: 429 })
      }
      if (model === 'sim/claude' && inject === 'timeout') {
        // Silent until the session's first-token timeout aborts the call.
        return new Promise((_resolve, reject) => callSignal.addEventListener('abort', () => reject(callSignal.reason)))
      }
      await sleep(100, signal)
      onToken()
      return `${title}: drafted by ${model}`
    },
  })
}

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
