/**
 * A demo worker process: one worker pool (orch.tasks.work) on the demo run's tenant. The
 * handler "works" for the task's workMs (heartbeats are automatic) and fails the first
 * attempts of some tasks with a simulated upstream error, to show retries with backoff.
 *
 * It lives only as long as the demo's main process: it stops when told to, and also when
 * its IPC channel to the parent closes (the parent exited, crashed or was killed), then
 * releases its claims and exits within a few seconds.
 */
import { createOrchestrator, type WorkerPool } from '../../index.js'

// <db> is a SQLite path or a postgres:// URL; [schema] comes with a URL.
const [db, tenant, worker, schema] = process.argv.slice(2)
if (!db || !tenant || !worker) throw new Error('usage: worker.js <db> <tenant> <worker> [schema]')

/** How long running handlers get to finish when the worker stops; then they are aborted and their claims released. */
const STOP_GRACE_MS = 1_000
/** A stop that hangs anyway (a stuck close) must not keep an orphan alive. */
const HARD_EXIT_MS = 5_000

// Registered before the first await: a parent that dies while this process is still
// opening the file disconnects before any later listener would exist.
let stopping = false
let stopNow: () => void = () => {}
const stop = () => {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(1), HARD_EXIT_MS).unref()
  stopNow()
}
process.on('message', (message) => message === 'stop' && stop())
process.on('disconnect', stop)
// Belt and braces: notice a parent that is gone even if the event was missed.
setInterval(() => {
  if (!process.connected) stop()
}, 500).unref()

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => {
      clearTimeout(timer)
      reject(signal.reason)
    })
  })

const orch = await createOrchestrator(schema === undefined ? { path: db } : { url: db, schema })
const pool: WorkerPool = orch.tasks.work({
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

// Stop claiming, give running handlers STOP_GRACE_MS, abort and release the rest (their
// tasks are ready again at once for the other workers), close the store, leave.
stopNow = () => {
  void pool
    .stop({ timeoutMs: STOP_GRACE_MS })
    .then(() => orch.close())
    .finally(() => {
      if (process.connected) process.disconnect()
    })
}
if (stopping || !process.connected) {
  stopping = false
  stop()
}
