/**
 * The measured scenarios. Each runs on a fresh board (SQLite: a file in its own temp
 * directory; PostgreSQL: a schema of its own), deleted afterwards, in worker processes, and
 * ends with a consistency check on the board so a fast-but-wrong run cannot pass as a result.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { EVENTS_TABLE, openBoard } from './boards.js'
import { runJobs } from './cluster.js'
import { countPgRows, withFreshSchema } from './postgres.js'
import { PLAINJOB_DONE, PLAINJOB_TABLE } from './plainjob.js'
import type { BoardSpec, Implementation, Job, LatencySpec, PlainjobQueueSpec, Synchronous } from './protocol.js'
import { perSecond } from './stats.js'

/** Handlers per worker-pool process, in both pool scenarios. */
export const POOL_CONCURRENCY = 4

/** Where the boards live: a temp directory of SQLite files, or fresh schemas on a PostgreSQL server. */
export type StoreTarget =
  | { store: 'sqlite'; synchronous: Synchronous; busyTimeoutMs: number }
  | { store: 'postgres'; url: string }

export interface ScenarioConfig {
  target: StoreTarget
  tasks: number
  /** Tasks each worker process creates and cycles on a scratch board before the barrier. */
  warmup: number
  timeoutMs: number
  /** Write a V8 CPU profile of every measured worker into this directory. */
  profileDir?: string
  /** create→start samples per latency run. */
  latencySamples: number
  /** Gap between creates in the latency runs: uniform in [min, max] ms. */
  latencyGapMs: [number, number]
}

export interface FileCounts {
  tasks: number
  done: number
  runs: number
  events: number
  /** Tasks with more than one run: a double claim, which must never happen here. */
  doubleClaimed: number
}

/** plainjob's file: its one jobs table, by status. */
export interface PlainjobCounts {
  jobs: number
  done: number
}

export interface CreateSample {
  rate: number
  /** CPU ms per task created. */
  cpuPerOp: number
  create: number[]
  counts: FileCounts | PlainjobCounts
}

export interface CycleSample {
  rate: number
  /** CPU ms per cycle, summed over all worker processes. */
  cpuPerOp: number
  wallMs: number
  cycles: number
  cyclesPerProcess: number[]
  claim: number[]
  complete: number[]
  counts: FileCounts
}

/**
 * Run `fn` on a fresh board of `impl`'s: a file in a new temp directory, or a new schema
 * (created by the first process that opens it), removed afterwards either way.
 */
async function onFreshBoard<T>(impl: Implementation, config: ScenarioConfig, fn: (board: BoardSpec) => Promise<T>): Promise<T> {
  const target = config.target
  if (target.store === 'postgres') {
    return withFreshSchema(target.url, impl, (schema) => fn({ store: 'postgres', impl, url: target.url, schema }))
  }
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-'))
  try {
    return await fn({ store: 'sqlite', impl, path: join(dir, `${impl}.db`), synchronous: target.synchronous, busyTimeoutMs: target.busyTimeoutMs })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Both schemas have `tasks.status` and a `runs` table; only the event log's name differs. */
async function countRows(spec: BoardSpec): Promise<FileCounts> {
  if (spec.store === 'postgres') return countPgRows(spec, EVENTS_TABLE[spec.impl])
  const db = new Database(spec.path)
  try {
    const count = (sql: string) => db.prepare(sql).pluck().get() as number
    return {
      tasks: count('SELECT count(*) FROM tasks'),
      done: count(`SELECT count(*) FROM tasks WHERE status = 'done'`),
      runs: count('SELECT count(*) FROM runs'),
      events: count(`SELECT count(*) FROM ${EVENTS_TABLE[spec.impl]}`),
      doubleClaimed: count('SELECT count(*) FROM (SELECT task_id FROM runs GROUP BY task_id HAVING count(*) > 1)'),
    }
  } finally {
    db.close()
  }
}

/**
 * Exact counts prove the work was done once and only once. The event log is checked as
 * a minimum: one entry per operation on both sides; should lockstep journal more, that
 * is its extra work, not an error.
 */
function check(spec: BoardSpec, counts: FileCounts, exact: Partial<FileCounts>, minEvents: number): void {
  const wrong = Object.entries(exact).filter(([key, value]) => counts[key as keyof FileCounts] !== value)
  if (counts.events < minEvents) wrong.push(['events', minEvents])
  if (wrong.length > 0) {
    const expected = wrong.map(([key, value]) => `${key}=${value}`).join(', ')
    throw new Error(`bench: ${spec.impl} file does not hold the work done: expected ${expected}, found ${JSON.stringify(counts)}`)
  }
}

/** Scenario 1: create `tasks` tasks (no parents) from one process, one transaction each. */
export async function measureCreate(impl: Implementation, config: ScenarioConfig, label: string): Promise<CreateSample> {
  return onFreshBoard(impl, config, async (board) => {
    const job: Job = { mode: 'create', board, count: config.tasks, warmup: config.warmup }
    const [result] = (await runJobs([job], { timeoutMs: config.timeoutMs, execArgv: profileFlags(config, `${label}-${impl}`) })).results
    const counts = await countRows(board)
    check(board, counts, { tasks: config.tasks, runs: 0 }, config.tasks)
    return {
      rate: perSecond(result!.ops, result!.elapsedMs),
      cpuPerOp: result!.cpuMs / result!.ops,
      create: result!.latencies.create!,
      counts,
    }
  })
}

/**
 * Scenarios 2 and 3: pre-create `tasks` ready tasks (untimed), then `processes` workers
 * loop claimNext → complete until nothing is left. The rate is total cycles over the
 * wall time from the barrier to the last worker's last cycle.
 */
export async function measureCycles(
  impl: Implementation,
  processes: number,
  config: ScenarioConfig,
  label: string,
): Promise<CycleSample> {
  return onFreshBoard(impl, config, async (board) => {
    await runJobs([{ mode: 'create', board, count: config.tasks, warmup: 0 }], { timeoutMs: config.timeoutMs })

    const jobs: Job[] = Array.from({ length: processes }, (_, i) => ({ mode: 'cycle', board, worker: `w${i}`, warmup: config.warmup }))
    const { wallMs, results } = await runJobs(jobs, { timeoutMs: config.timeoutMs, execArgv: profileFlags(config, `${label}-${impl}`) })
    const cycles = results.reduce((total, r) => total + r.ops, 0)
    const counts = await countRows(board)
    // Every task claimed exactly once and completed; created + claimed + completed events.
    const n = config.tasks
    check(board, counts, { tasks: n, done: n, runs: n, doubleClaimed: 0 }, 3 * n)
    if (cycles !== config.tasks) throw new Error(`bench: ${impl} workers reported ${cycles} cycles for ${config.tasks} tasks`)
    return {
      rate: perSecond(cycles, wallMs),
      cpuPerOp: results.reduce((total, r) => total + r.cpuMs, 0) / cycles,
      wallMs,
      cycles,
      cyclesPerProcess: results.map((r) => r.ops),
      claim: results.flatMap((r) => r.latencies.claim!),
      complete: results.flatMap((r) => r.latencies.complete!),
      counts,
    }
  })
}

export interface PoolSample {
  rate: number
  /** CPU ms per task, summed over all worker processes. */
  cpuPerOp: number
  /** From the barrier's release to completed_at of the last task (ms resolution). */
  wallMs: number
  /** From the barrier's release to the last process's `finished` (includes its done-detection, up to ~5 ms). */
  parentWallMs: number
  tasksPerProcess: number[]
  counts: FileCounts | PlainjobCounts
}

/** Both schemas stamp tasks.completed_at with Date.now() in the completing transaction. */
function lastCompletedAt(spec: BoardSpec): number {
  if (spec.store !== 'sqlite') throw new Error('bench: the worker-pool scenario runs on SQLite only')
  const db = new Database(spec.path, { readonly: true })
  try {
    return db.prepare('SELECT max(completed_at) FROM tasks').pluck().get() as number
  } finally {
    db.close()
  }
}

/**
 * Scenario 4: worker-pool throughput. Pre-create `tasks` ready tasks (untimed); then
 * `processes` processes, released together, each run one lockstep pool
 * (`orch.tasks.work({ concurrency: 4, handler: async () => {} })`) until every task is
 * done. The baseline has no pool: each process runs the claim→complete loop of scenarios
 * 2-3. Both are timed the same way, from the barrier (parent's Date.now()) to the latest
 * completed_at in the file, so the pools' done-detection is not timed.
 */
export async function measurePool(
  impl: Implementation,
  processes: number,
  config: ScenarioConfig,
  label: string,
): Promise<PoolSample> {
  return onFreshBoard(impl, config, async (board) => {
    const n = config.tasks
    await runJobs([{ mode: 'create', board, count: n, warmup: 0 }], { timeoutMs: config.timeoutMs })

    const jobs: Job[] = Array.from({ length: processes }, (_, i): Job =>
      impl === 'lockstep'
        ? { mode: 'pool', board, worker: `w${i}`, warmup: config.warmup, total: n, concurrency: POOL_CONCURRENCY }
        : { mode: 'cycle', board, worker: `w${i}`, warmup: config.warmup },
    )
    const run = await runJobs(jobs, { timeoutMs: config.timeoutMs, execArgv: profileFlags(config, `${label}-${impl}`) })
    const counts = await countRows(board)
    check(board, counts, { tasks: n, done: n, runs: n, doubleClaimed: 0 }, 3 * n)
    const handled = run.results.reduce((total, r) => total + r.ops, 0)
    if (handled !== n) throw new Error(`bench: ${impl} pools reported ${handled} tasks for ${n}`)
    const wallMs = lastCompletedAt(board) - run.goEpochMs
    if (!(wallMs > 0)) throw new Error(`bench: ${impl} pool run has no positive wall time (${wallMs} ms)`)
    return {
      rate: perSecond(n, wallMs),
      cpuPerOp: run.results.reduce((total, r) => total + r.cpuMs, 0) / n,
      wallMs,
      parentWallMs: run.wallMs,
      tasksPerProcess: run.results.map((r) => r.ops),
      counts,
    }
  })
}

/** Run `fn` on a fresh plainjob queue file in a new temp directory, removed afterwards. */
async function onFreshQueue<T>(config: ScenarioConfig, fn: (queue: PlainjobQueueSpec) => Promise<T>): Promise<T> {
  const target = config.target
  if (target.store !== 'sqlite') throw new Error('bench: plainjob runs on SQLite only')
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-'))
  try {
    return await fn({ path: join(dir, 'plainjob.db'), synchronous: target.synchronous, busyTimeoutMs: target.busyTimeoutMs })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** plainjob's own table only: how many jobs, how many done. */
function countPlainjob(spec: PlainjobQueueSpec): PlainjobCounts {
  const db = new Database(spec.path, { readonly: true })
  try {
    return {
      jobs: db.prepare(`SELECT count(*) FROM ${PLAINJOB_TABLE}`).pluck().get() as number,
      done: db.prepare(`SELECT count(*) FROM ${PLAINJOB_TABLE} WHERE status = ?`).pluck().get(PLAINJOB_DONE) as number,
    }
  } finally {
    db.close()
  }
}

function checkPlainjob(counts: PlainjobCounts, expected: PlainjobCounts): void {
  if (counts.jobs !== expected.jobs || counts.done !== expected.done) {
    throw new Error(`bench: plainjob file does not hold the work done: expected ${JSON.stringify(expected)}, found ${JSON.stringify(counts)}`)
  }
}

/** Scenario 1 for plainjob: `queue.add` `tasks` jobs from one process, one call (one autocommit INSERT) each. */
export async function measurePlainjobCreate(config: ScenarioConfig, label: string): Promise<CreateSample> {
  return onFreshQueue(config, async (queue) => {
    const job: Job = { mode: 'plainjob-add', queue, count: config.tasks, warmup: config.warmup }
    const [result] = (await runJobs([job], { timeoutMs: config.timeoutMs, execArgv: profileFlags(config, `${label}-plainjob`) })).results
    const counts = countPlainjob(queue)
    checkPlainjob(counts, { jobs: config.tasks, done: 0 })
    return {
      rate: perSecond(result!.ops, result!.elapsedMs),
      cpuPerOp: result!.cpuMs / result!.ops,
      create: result!.latencies.create!,
      counts,
    }
  })
}

/**
 * Scenario 4 for plainjob: add `tasks` jobs (untimed), then `processes` processes, released
 * together, each run one plainjob worker with a no-op processor until every job is done.
 * Timed from the barrier to the latest completion any process stamped (its onCompleted
 * Date.now(): plainjob's table keeps no completion time), ms resolution like completed_at.
 * Every job done once: the table holds `tasks` done jobs and the processors ran `tasks` times.
 */
export async function measurePlainjobPool(processes: number, config: ScenarioConfig, label: string): Promise<PoolSample> {
  return onFreshQueue(config, async (queue) => {
    const n = config.tasks
    await runJobs([{ mode: 'plainjob-add', queue, count: n, warmup: 0 }], { timeoutMs: config.timeoutMs })

    const jobs: Job[] = Array.from({ length: processes }, (): Job => ({ mode: 'plainjob-pool', queue, warmup: config.warmup, total: n }))
    const run = await runJobs(jobs, { timeoutMs: config.timeoutMs, execArgv: profileFlags(config, `${label}-plainjob`) })
    const counts = countPlainjob(queue)
    checkPlainjob(counts, { jobs: n, done: n })
    const handled = run.results.reduce((total, r) => total + r.ops, 0)
    if (handled !== n) throw new Error(`bench: plainjob workers reported ${handled} jobs for ${n}`)
    const wallMs = Math.max(...run.results.map((r) => r.lastDoneEpochMs ?? 0)) - run.goEpochMs
    if (!(wallMs > 0)) throw new Error(`bench: plainjob pool run has no positive wall time (${wallMs} ms)`)
    return {
      rate: perSecond(n, wallMs),
      cpuPerOp: run.results.reduce((total, r) => total + r.cpuMs, 0) / n,
      wallMs,
      parentWallMs: run.wallMs,
      tasksPerProcess: run.results.map((r) => r.ops),
      counts,
    }
  })
}

export type Placement = 'in-process' | 'cross-process'

export interface LatencySample {
  /** create→start, ms: t1 (handler's first line) - t0 (just before create was called). */
  start: number[]
  /**
   * Cross-process only: the worker's wallClock() minus the creator's, measured against the
   * system clock (stats.ts clockOffsetMs) and already subtracted from `start`. 0 in-process.
   */
  clockSkewMs: number
  counts: FileCounts
}

/**
 * Scenario 5: create→start latency with an idle worker. In-process: one process runs
 * the pool (lockstep) or poller (baseline) and creates the tasks. Cross-process: one
 * process creates, another works. Tasks are created one at a time, `latencyGapMs`
 * apart; every task's title carries its t0.
 */
export async function measureLatency(
  impl: Implementation,
  placement: Placement,
  pollMs: number,
  config: ScenarioConfig,
  label: string,
): Promise<LatencySample> {
  return onFreshBoard(impl, config, async (board) => {
    const latency: LatencySpec = {
      samples: config.latencySamples,
      gapMs: config.latencyGapMs,
      pollMs,
      concurrency: POOL_CONCURRENCY,
    }
    const warmup = Math.min(config.warmup, 50)
    // Create the file and schema first: two lockstep processes opening a fresh file at the
    // same moment can fail with SQLITE_BUSY (see the bench notes), and that is not what
    // this scenario measures. (The other scenarios create their tasks beforehand anyway.)
    await (await openBoard(board)).close()
    const jobs: Job[] =
      placement === 'in-process'
        ? [{ mode: 'latency', role: 'both', board, worker: 'w0', warmup, latency }]
        : [
            { mode: 'latency', role: 'create', board, worker: 'creator', warmup, latency },
            { mode: 'latency', role: 'work', board, worker: 'w0', warmup, latency },
          ]
    const { results } = await runJobs(jobs, { timeoutMs: config.timeoutMs, execArgv: profileFlags(config, `${label}-${impl}`) })
    const counts = await countRows(board)
    const n = latency.samples
    check(board, counts, { tasks: n, done: n, runs: n, doubleClaimed: 0 }, 3 * n)
    const [creator, worker] = results
    // t1 (worker's clock) - t0 (creator's clock): take out the difference between the two clocks.
    const clockSkewMs = worker ? worker.clockOffsetMs! - creator!.clockOffsetMs! : 0
    const start = results.flatMap((r) => r.latencies.start ?? []).map((ms) => ms - clockSkewMs)
    if (start.length !== n) throw new Error(`bench: ${impl} latency run reported ${start.length} samples for ${n} tasks`)
    return { start, clockSkewMs, counts }
  })
}

function profileFlags(config: ScenarioConfig, label: string): string[] {
  if (!config.profileDir) return []
  // Node names each profile CPU.<date>.<time>.<pid>...; a directory per scenario tells them apart.
  return ['--cpu-prof', `--cpu-prof-dir=${join(config.profileDir, label)}`]
}
