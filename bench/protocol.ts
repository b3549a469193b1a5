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

export interface BoardSpec {
  impl: Implementation
  path: string
  synchronous: Synchronous
  busyTimeoutMs: number
}

export type Job =
  /** Create `count` tasks, one transaction each. */
  | { mode: 'create'; board: BoardSpec; count: number; warmup: number }
  /** claimNext → complete until nothing is left to claim. */
  | { mode: 'cycle'; board: BoardSpec; worker: string; warmup: number }

export interface JobResult {
  /** Tasks created or cycles completed by this process. */
  ops: number
  /** This process's own time from `go` to its last operation. */
  elapsedMs: number
  /** CPU time (user + system) this process used in that span: cost without the waits (fsync, lock). */
  cpuMs: number
  /** Per-call latencies (ms) by operation name: create, claim, complete. */
  latencies: Record<string, number[]>
}

export type ParentMessage = { type: 'go' }

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'finished' }
  | { type: 'result'; result: JobResult }
  | { type: 'error'; message: string }
