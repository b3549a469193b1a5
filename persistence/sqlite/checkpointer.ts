/**
 * WAL checkpoints off the commit path. SQLite's automatic checkpoint runs inside the
 * commit that crosses `wal_autocheckpoint` pages: with synchronous=NORMAL that commit
 * then waits for two fsyncs (about 12 ms here), on the caller's thread. Instead a worker
 * thread with its own connection runs a PASSIVE checkpoint every `intervalMs`, which
 * never blocks writers or readers; the automatic checkpoint stays as a safety net at a
 * higher threshold (see connection.ts).
 */
import { Worker } from 'node:worker_threads'

export interface Checkpointer {
  stop(): Promise<void>
}

export function startCheckpointer(path: string, intervalMs: number): Checkpointer {
  const worker = new Worker(new URL('./checkpoint-worker.mjs', import.meta.url), { workerData: { path, intervalMs } })
  // It must never keep a process alive on its own.
  worker.unref()
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  worker.on('error', () => {
    // A checkpointer that died only means checkpoints fall back to SQLite's automatic ones.
  })
  return {
    async stop() {
      worker.postMessage('stop')
      const timer = setTimeout(() => void worker.terminate(), 1_000)
      await exited
      clearTimeout(timer)
    },
  }
}
