/**
 * What the bench parent and its worker processes say to each other over the fork IPC
 * channel. The job travels as argv[2] (JSON); everything else as messages:
 *
 *   child: ready      (board open and JIT warmed: waiting at the start barrier)
 *   parent: go        (sent to every child at once)
 *   child: finished   (last operation done: the parent stops its wall clock here)
 *   child: result     (counts and latency samples, sent after the clock stopped, so
 *                      serializing the samples is never timed)
 */

export type Implementation = 'lockstep' | 'baseline'
export type Synchronous = 'NORMAL' | 'FULL'

export type StoreKind = 'sqlite' | 'postgres'

/** One board in a SQLite file (each side its own file, its own schema). */
export interface SqliteBoardSpec {
  store: 'sqlite'
  impl: Implementation
  path: string
  synchronous: Synchronous
  busyTimeoutMs: number
}

/** One board in a PostgreSQL schema of its own (created by whoever opens it first, dropped by the parent). */
export interface PostgresBoardSpec {
  store: 'postgres'
  impl: Implementation
  url: string
  schema: string
}

export type BoardSpec = SqliteBoardSpec | PostgresBoardSpec

/** A plainjob queue (bench/plainjob.ts) in a SQLite file of its own, with the same file settings as the boards. */
export interface PlainjobQueueSpec {
  path: string
  synchronous: Synchronous
  busyTimeoutMs: number
}

export type Job =
  /** Create `count` tasks, one transaction each. */
  | { mode: 'create'; board: BoardSpec; count: number; warmup: number }
  /** claimNext → complete until nothing is left to claim. */
  | { mode: 'cycle'; board: BoardSpec; worker: string; warmup: number }
  /** lockstep only, SQLite only: one `orch.tasks.work()` pool with a no-op handler until all `total` tasks in the file are done. */
  | { mode: 'pool'; board: BoardSpec; worker: string; warmup: number; total: number; concurrency: number }
  /**
   * create→start latency. `create` creates `samples` tasks one at a time, a random gap
   * apart, each titled with the wall-clock time taken just before its create call;
   * `work` runs an idle pool (lockstep) or poller (baseline) whose handler records
   * start time minus title; `both` does the two in one process.
   */
  | { mode: 'latency'; role: 'create' | 'work' | 'both'; board: BoardSpec; worker: string; warmup: number; latency: LatencySpec }
  /** plainjob: `queue.add` `count` jobs, one call each (bench/plainjob.ts). */
  | { mode: 'plainjob-add'; queue: PlainjobQueueSpec; count: number; warmup: number }
  /** plainjob: one `defineWorker(...).start()` with a no-op processor until all `total` jobs in the file are done. */
  | { mode: 'plainjob-pool'; queue: PlainjobQueueSpec; warmup: number; total: number }

export interface LatencySpec {
  samples: number
  /** Gap between creates: uniform in [min, max] ms. */
  gapMs: [number, number]
  /** lockstep: the orchestrator's pollMs; baseline: the poller's sleep between looks. */
  pollMs: number
  /** lockstep: the pool's concurrency (the baseline poller runs one handler at a time). */
  concurrency: number
}

export interface JobResult {
  /** Tasks created, cycles completed or handlers run by this process. */
  ops: number
  /** This process's own time from `go` to its last operation. */
  elapsedMs: number
  /** CPU time (user + system) this process used in that span: cost without the waits (fsync, lock). */
  cpuMs: number
  /** Per-call latencies (ms) by operation name: create, claim, complete; start (create→start). */
  latencies: Record<string, number[]>
  /** performance.timeOrigin + performance.now() minus Date.now(), measured at a Date.now() tick (stats.ts). */
  clockOffsetMs?: number
  /** plainjob pool: Date.now() at this process's last job completion (plainjob's table has no completion time). */
  lastDoneEpochMs?: number
}

export type ParentMessage = { type: 'go' }

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'finished' }
  | { type: 'result'; result: JobResult }
  | { type: 'error'; message: string }
