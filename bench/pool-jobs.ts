/**
 * Worker-process side of the worker-pool scenarios (forked by cluster.ts, dispatched by
 * worker.ts): pool throughput and create→start latency. Unlike the claim→complete
 * scenarios these drive lockstep through `orch.tasks.work()`, so they open the
 * orchestrator itself (boards.ts openOrchestrator) rather than a BenchBoard.
 */
import Database from 'better-sqlite3'
import pg from 'pg'
import type { Orchestrator, WorkerPool } from '../src/index.js'
import { BaselineBoard } from './baseline.js'
import { baselineChannel, PgBaselineBoard } from './baseline-postgres.js'
import { onScratchBoard, openOrchestrator } from './boards.js'
import type { BoardSpec, Job, JobResult, LatencySpec, PostgresBoardSpec, SqliteBoardSpec } from './protocol.js'
import { clockOffsetMs, cpuMsSince, now, wallClock } from './stats.js'

type PoolJob = Extract<Job, { mode: 'pool' }>
type LatencyJob = Extract<Job, { mode: 'latency' }>

/** The parts of the parent conversation a job paces itself by. */
export interface Lifecycle {
  /** Tell the parent we are ready and wait for its `go`. */
  barrier(): Promise<void>
  /** The timed part is over. */
  finished(): Promise<void>
}

/** How long a latency run waits, after its last create, for the last handler to start. */
const START_TIMEOUT_MS = 30_000

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

async function until(condition: () => boolean, everyMs: number): Promise<void> {
  while (!condition()) await sleep(everyMs)
}

// ---- worker-pool throughput ----

/**
 * One pool, no-op handler, over tasks created beforehand (possibly shared with other
 * processes' pools). Done when every one of `total` tasks in the file is done: checked
 * every 5 ms with a plain count on a second connection, and only while this pool is idle,
 * so the check costs the measured loop nothing. The parent times the run from the file's
 * completed_at (scenarios.ts), not from this detection.
 */
async function drainWithPool(orch: Orchestrator, spec: BoardSpec, worker: string, concurrency: number, total: number) {
  // Not measured on PostgreSQL yet (main.ts runs it in the SQLite section only).
  if (spec.store !== 'sqlite') throw new Error('bench: the worker-pool scenario runs on SQLite only')
  const probe = new Database(spec.path, { fileMustExist: true })
  const countDone = probe.prepare(`SELECT count(*) FROM tasks WHERE status = 'done'`).pluck()
  let handled = 0
  let pool: WorkerPool | undefined
  try {
    pool = orch.tasks.work({ worker, concurrency, handler: async () => void handled++ })
    const started = pool
    await until(() => started.active === 0 && countDone.get() === total, 5)
    return { handled, pool }
  } catch (error) {
    await pool?.stop({ timeoutMs: 0 })
    throw error
  } finally {
    probe.close()
  }
}

export async function runPool(job: PoolJob, life: Lifecycle): Promise<JobResult> {
  if (job.warmup > 0) {
    await onScratchBoard(job.board, async (spec) => {
      const orch = await openOrchestrator(spec)
      for (let i = 0; i < job.warmup; i++) await orch.tasks.create({ title: `warm-up ${i}` })
      const { pool } = await drainWithPool(orch, spec, 'warmup', job.concurrency, job.warmup)
      await pool.stop()
      await orch.close()
    })
  }
  const orch = await openOrchestrator(job.board)
  await life.barrier()
  const cpu = process.cpuUsage()
  const start = now()
  const { handled, pool } = await drainWithPool(orch, job.board, job.worker, job.concurrency, job.total)
  const elapsedMs = now() - start
  const cpuMs = cpuMsSince(cpu)
  await life.finished()
  await pool.stop()
  await orch.close()
  return { ops: handled, elapsedMs, cpuMs, latencies: {} }
}

// ---- create→start latency ----

interface LatencySide {
  create(title: string): unknown
  /** Start the idle pool (lockstep) or poller (baseline). `record` gets t1 from the handler's first line. */
  work(record: (t1: number, title: string) => void): void
  /** Stop working once every handler has run (their completions included), then close. */
  close(): Promise<void>
}

async function lockstepSide(board: BoardSpec, spec: LatencySpec, worker: string): Promise<LatencySide> {
  const orch = await openOrchestrator(board, spec.pollMs)
  let pool: WorkerPool | undefined
  return {
    create: (title) => orch.tasks.create({ title }),
    work(record) {
      pool = orch.tasks.work({
        worker,
        concurrency: spec.concurrency,
        handler: async (task) => {
          const t1 = wallClock()
          record(t1, task.title)
        },
      })
    },
    async close() {
      await pool?.stop()
      await orch.close()
    },
  }
}

/**
 * The hand-written SQLite poller: every `pollMs`, a plain read for any ready task; if there
 * is one, claim (the baseline's claim transaction), run the handler, complete, and claim
 * again until nothing is left; then sleep `pollMs`. One handler at a time.
 */
function baselineSide(board: SqliteBoardSpec, spec: LatencySpec, worker: string): LatencySide {
  const db = new BaselineBoard(board)
  let running = false
  let loop: Promise<void> = Promise.resolve()
  return {
    create: (title) => db.create(title),
    work(record) {
      const handler = async (title: string) => {
        const t1 = wallClock()
        record(t1, title)
      }
      running = true
      loop = (async () => {
        while (running) {
          while (running && db.hasReady()) {
            const claim = db.claimNextTitled(worker)
            if (!claim) break
            await handler(claim.title)
            db.complete(claim)
          }
          await sleep(spec.pollMs)
        }
      })()
    },
    async close() {
      running = false
      await loop
      db.close()
    },
  }
}

/**
 * The hand-written PostgreSQL poller: the SQLite poller's loop, woken by LISTEN/NOTIFY as
 * well as every `pollMs` (lockstep's pool on PostgreSQL wakes both ways too). Its listener
 * is a client of its own, LISTENing before the pool is handed work; the baseline's create
 * NOTIFYs after commit. A notification that arrives while the loop is claiming is kept,
 * so the loop looks again at once rather than after a poll interval.
 */
async function pgBaselineSide(board: PostgresBoardSpec, spec: LatencySpec, worker: string): Promise<LatencySide> {
  const db = await PgBaselineBoard.open(board)
  const listener = new pg.Client({ connectionString: board.url, application_name: 'bench-baseline-listen' })
  let woken = false
  let wake: (() => void) | null = null
  try {
    listener.on('error', () => {})
    await listener.connect()
    listener.on('notification', () => {
      woken = true
      wake?.()
    })
    await listener.query(`LISTEN "${baselineChannel(board.schema)}"`)
  } catch (error) {
    await listener.end().catch(() => {})
    await db.close()
    throw error
  }
  /** Resolve at a notification (at once if one came since the last call) or after `ms`. */
  const nextWake = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        wake = null
        woken = false
        resolve()
      }
      const timer = setTimeout(done, ms)
      wake = done
      if (woken) done()
    })
  let running = false
  let loop: Promise<void> = Promise.resolve()
  return {
    create: (title) => db.create(title),
    work(record) {
      const handler = async (title: string) => {
        const t1 = wallClock()
        record(t1, title)
      }
      running = true
      loop = (async () => {
        while (running) {
          while (running && (await db.hasReady())) {
            const claim = await db.claimNextTitled(worker)
            if (!claim) break
            await handler(claim.title)
            await db.complete(claim)
          }
          await nextWake(spec.pollMs)
        }
      })()
    },
    async close() {
      running = false
      wake?.()
      try {
        await loop
      } finally {
        await listener.end().catch(() => {})
        await db.close()
      }
    },
  }
}

function openLatencySide(board: BoardSpec, spec: LatencySpec, worker: string): Promise<LatencySide> | LatencySide {
  if (board.impl === 'lockstep') return lockstepSide(board, spec, worker)
  return board.store === 'sqlite' ? baselineSide(board, spec, worker) : pgBaselineSide(board, spec, worker)
}

interface LatencyRound {
  starts: number[]
  elapsedMs: number
  cpuMs: number
}

async function latencyRound(job: LatencyJob, board: BoardSpec, spec: LatencySpec, barrier: () => Promise<void>): Promise<LatencyRound> {
  const side = await openLatencySide(board, spec, job.worker)
  const starts: number[] = []
  let allStarted!: () => void
  const started = new Promise<void>((resolve) => (allStarted = resolve))
  try {
    // The pool (or poller) is up and idle before the barrier: the first task finds it waiting.
    if (job.role !== 'create') {
      side.work((t1, title) => {
        starts.push(t1 - Number(title))
        if (starts.length === spec.samples) allStarted()
      })
    }
    await barrier()
    const cpu = process.cpuUsage()
    const start = now()
    if (job.role !== 'work') {
      const [min, max] = spec.gapMs
      for (let i = 0; i < spec.samples; i++) {
        const t0 = wallClock()
        await side.create(String(t0))
        await sleep(min + Math.random() * (max - min))
      }
    }
    if (job.role !== 'create') {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_, reject) => {
        // The cross-process worker waits for the creator too: allow for the whole create phase.
        const ms = START_TIMEOUT_MS + (job.role === 'work' ? spec.samples * (spec.gapMs[1] + 50) : 0)
        timer = setTimeout(() => reject(new Error(`only ${starts.length} of ${spec.samples} handlers started`)), ms)
      })
      await Promise.race([started, timeout]).finally(() => clearTimeout(timer))
    }
    return { starts, elapsedMs: now() - start, cpuMs: cpuMsSince(cpu) }
  } finally {
    await side.close()
  }
}

export async function runLatency(job: LatencyJob, life: Lifecycle): Promise<JobResult> {
  if (job.warmup > 0) {
    // Every role warms the whole path (create, wake, claim, handler, complete) in one process.
    const warm: LatencyJob = { ...job, role: 'both' }
    const spec: LatencySpec = { ...job.latency, samples: job.warmup, gapMs: [0, 2] }
    await onScratchBoard(job.board, (board) => latencyRound(warm, board, spec, async () => {}))
  }
  // Latencies are the result here, not the wall time: `finished` may come after the pool's drain.
  const round = await latencyRound(job, job.board, job.latency, () => life.barrier())
  await life.finished()
  return {
    ops: job.role === 'create' ? job.latency.samples : round.starts.length,
    elapsedMs: round.elapsedMs,
    cpuMs: round.cpuMs,
    latencies: job.role === 'create' ? {} : { start: round.starts },
    clockOffsetMs: clockOffsetMs(),
  }
}
