/**
 * plainjob (npm `plainjob`, pinned 0.0.14), the third contender of the SQLite section:
 * issue 11's worker-pool targets are defined against it. Worker-process side (forked by
 * cluster.ts, dispatched by worker.ts); scenarios.ts measures and checks.
 *
 * The shape of plainjob, as its README uses it and as this file drives it:
 *   - `defineQueue({ connection: better(new Database(path)) })`: one table `plainjob_jobs`
 *     (id, type, data, status 0 pending / 1 processing / 2 done / 3 failed, failed_at, error,
 *     next_run_at, created_at) plus `plainjob_scheduled_jobs` for cron jobs. It sets WAL,
 *     synchronous=NORMAL and busy_timeout=5000 on the connection itself.
 *   - `queue.add(type, data)`: one autocommit INSERT (data JSON-serialized).
 *   - `defineWorker(type, processor, { queue }).start()`: one job at a time, in a loop: a
 *     BEGIN IMMEDIATE transaction for due cron jobs, a BEGIN IMMEDIATE select-and-mark for the
 *     next pending job, a read of that job, the processor, an autocommit UPDATE to done. It
 *     sleeps `pollIntervall` only when a turn found nothing; `stop()` ends the sleep.
 *   - A done job keeps no completion time: the pool's end is stamped in-process through the
 *     worker's documented `onCompleted` callback (one Date.now() per job).
 *
 * Options: plainjob's defaults, with three exceptions, each so that it runs like the other two:
 *   - synchronous and busy_timeout set after defineQueue to the run's values (it sets NORMAL and
 *     5000 ms itself; the bench passes the same to everyone explicitly).
 *   - a logger that drops debug and info: the default (console) writes three debug lines per job
 *     to stdout, which would measure the terminal, not the queue. warn and error go to stderr.
 *   - pollIntervall is left at its default (1000 ms). The README recommends no other value for
 *     throughput, and with the jobs added before the barrier the worker never sleeps until the
 *     queue is empty (it polls again at once after every job), so the interval cannot slow the
 *     measured drain; a shorter one would only wake idle workers more often at the end.
 */
import { rmSync } from 'node:fs'
import Database from 'better-sqlite3'
import { better, defineQueue, defineWorker, JobStatus, type Logger, type Queue } from 'plainjob'
import type { Lifecycle } from './pool-jobs.js'
import type { Job, JobResult, PlainjobQueueSpec } from './protocol.js'
import { cpuMsSince, now, timed } from './stats.js'

type AddJob = Extract<Job, { mode: 'plainjob-add' }>
type PoolJob = Extract<Job, { mode: 'plainjob-pool' }>

/** The one job type every bench job has. */
export const PLAINJOB_TYPE = 'bench'
/** plainjob's own table, read (never written) by the done-detection and the parent's check. */
export const PLAINJOB_TABLE = 'plainjob_jobs'
export const PLAINJOB_DONE: number = JobStatus.Done

const quiet: Logger = {
  debug() {},
  info() {},
  warn: (message, ...meta) => console.error(message, ...meta),
  error: (message, ...meta) => console.error(message, ...meta),
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export function openQueue(spec: PlainjobQueueSpec): Queue {
  const db = new Database(spec.path)
  const queue = defineQueue({ connection: better(db), logger: quiet })
  // After defineQueue, which sets its own (NORMAL, 5000): the run's values, as for the other two.
  db.pragma(`synchronous = ${spec.synchronous}`)
  db.pragma(`busy_timeout = ${spec.busyTimeoutMs}`)
  return queue
}

/** A private queue file beside `spec`'s, removed afterwards: the warm-ups. */
async function onScratchQueue(spec: PlainjobQueueSpec, fn: (scratch: PlainjobQueueSpec) => Promise<void>): Promise<void> {
  const path = `${spec.path}.warmup-${process.pid}`
  try {
    await fn({ ...spec, path })
  } finally {
    for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true })
  }
}

async function addJobs(queue: Queue, count: number): Promise<JobResult> {
  const create: number[] = []
  const cpu = process.cpuUsage()
  const start = now()
  // Awaited like the other two sides' creates (worker.ts createTasks): one microtask each.
  for (let i = 0; i < count; i++) await timed(create, () => queue.add(PLAINJOB_TYPE, `task ${i}`))
  return { ops: count, elapsedMs: now() - start, cpuMs: cpuMsSince(cpu), latencies: { create } }
}

/**
 * One plainjob worker, no-op processor, until all `total` jobs in the file are done. The
 * worker's loop only awaits already-settled promises while there are jobs, so the 5 ms
 * done-check (a plain count on a second connection) first runs when this worker has found
 * nothing and sleeps: it costs the drain nothing, like the lockstep pool's (pool-jobs.ts).
 */
async function drain(spec: PlainjobQueueSpec, queue: Queue, total: number) {
  let handled = 0
  let lastDoneEpochMs = 0
  const worker = defineWorker(PLAINJOB_TYPE, async () => void handled++, {
    queue,
    logger: quiet,
    onCompleted: () => (lastDoneEpochMs = Date.now()),
  })
  const probe = new Database(spec.path, { fileMustExist: true })
  const countDone = probe.prepare(`SELECT count(*) FROM ${PLAINJOB_TABLE} WHERE status = ?`).pluck()
  let failure: { error: unknown } | undefined
  const running = worker.start().catch((error: unknown) => void (failure = { error }))
  try {
    while (!failure && countDone.get(PLAINJOB_DONE) !== total) await sleep(5)
  } finally {
    await worker.stop()
    await running
    probe.close()
  }
  if (failure) throw failure.error
  return { handled, lastDoneEpochMs }
}

export async function runPlainjobAdd(job: AddJob, life: Lifecycle): Promise<JobResult> {
  if (job.warmup > 0) {
    await onScratchQueue(job.queue, async (scratch) => {
      const queue = openQueue(scratch)
      try {
        await addJobs(queue, job.warmup)
        await drain(scratch, queue, job.warmup)
      } finally {
        queue.close()
      }
    })
  }
  const queue = openQueue(job.queue)
  try {
    await life.barrier()
    const result = await addJobs(queue, job.count)
    await life.finished()
    return result
  } finally {
    queue.close()
  }
}

export async function runPlainjobPool(job: PoolJob, life: Lifecycle): Promise<JobResult> {
  if (job.warmup > 0) {
    await onScratchQueue(job.queue, async (scratch) => {
      const queue = openQueue(scratch)
      try {
        await addJobs(queue, job.warmup)
        await drain(scratch, queue, job.warmup)
      } finally {
        queue.close()
      }
    })
  }
  const queue = openQueue(job.queue)
  try {
    await life.barrier()
    const cpu = process.cpuUsage()
    const start = now()
    const { handled, lastDoneEpochMs } = await drain(job.queue, queue, job.total)
    const elapsedMs = now() - start
    const cpuMs = cpuMsSince(cpu)
    await life.finished()
    return { ops: handled, elapsedMs, cpuMs, latencies: {}, lastDoneEpochMs }
  } finally {
    queue.close()
  }
}
