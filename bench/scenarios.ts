/**
 * The measured scenarios. Each runs on a fresh file in its own temp directory (deleted
 * afterwards), in worker processes, and ends with a consistency check on the file so a
 * fast-but-wrong run cannot pass as a result.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { EVENTS_TABLE } from './boards.js'
import { runJobs } from './cluster.js'
import type { BoardSpec, Implementation, Job, Synchronous } from './protocol.js'
import { perSecond } from './stats.js'

export interface ScenarioConfig {
  tasks: number
  /** Tasks each worker process creates and cycles on a scratch file before the barrier. */
  warmup: number
  synchronous: Synchronous
  busyTimeoutMs: number
  timeoutMs: number
  /** Write a V8 CPU profile of every measured worker into this directory. */
  profileDir?: string
}

export interface FileCounts {
  tasks: number
  done: number
  runs: number
  events: number
  /** Tasks with more than one run: a double claim, which must never happen here. */
  doubleClaimed: number
}

export interface CreateSample {
  rate: number
  /** CPU ms per task created. */
  cpuPerOp: number
  create: number[]
  counts: FileCounts
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

async function inTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-'))
  try {
    return await fn(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

function boardSpec(impl: Implementation, dir: string, config: ScenarioConfig): BoardSpec {
  return { impl, path: join(dir, `${impl}.db`), synchronous: config.synchronous, busyTimeoutMs: config.busyTimeoutMs }
}

/** Both schemas have `tasks.status` and a `runs` table; only the event log's name differs. */
function countRows(spec: BoardSpec): FileCounts {
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
  return inTempDir(async (dir) => {
    const board = boardSpec(impl, dir, config)
    const job: Job = { mode: 'create', board, count: config.tasks, warmup: config.warmup }
    const [result] = (await runJobs([job], { timeoutMs: config.timeoutMs, execArgv: profileFlags(config, `${label}-${impl}`) })).results
    const counts = countRows(board)
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
  return inTempDir(async (dir) => {
    const board = boardSpec(impl, dir, config)
    await runJobs([{ mode: 'create', board, count: config.tasks, warmup: 0 }], { timeoutMs: config.timeoutMs })

    const jobs: Job[] = Array.from({ length: processes }, (_, i) => ({ mode: 'cycle', board, worker: `w${i}`, warmup: config.warmup }))
    const { wallMs, results } = await runJobs(jobs, { timeoutMs: config.timeoutMs, execArgv: profileFlags(config, `${label}-${impl}`) })
    const cycles = results.reduce((total, r) => total + r.ops, 0)
    const counts = countRows(board)
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

function profileFlags(config: ScenarioConfig, label: string): string[] {
  if (!config.profileDir) return []
  // Node names each profile CPU.<date>.<time>.<pid>...; a directory per scenario tells them apart.
  return ['--cpu-prof', `--cpu-prof-dir=${join(config.profileDir, label)}`]
}
