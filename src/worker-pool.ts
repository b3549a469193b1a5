/**
 * Worker pools: `orch.tasks.work({ handler })` claims, heartbeats, completes, fails,
 * aborts and drains, so users never write a claim loop.
 *
 * Built only on the public TaskBoard interface: every rule (the gate, the fence, retries
 * and backoff) stays in the task machine. The pool decides just when to claim (a free
 * slot and, probably, a ready task) and what to do with a handler's outcome.
 *
 * Dispatch is event-driven: the pool subscribes to the journal, so a task that becomes
 * ready in this process wakes it at once, and one that becomes ready in another process
 * wakes it within the orchestrator's `pollMs`. A slower safety poll covers the rest.
 */
import PQueue from 'p-queue'
import {
  HandlerTimeoutError,
  InvalidInputError,
  LeaseLostError,
  LockstepError,
  NonRetryableError,
  TaskCancelledError,
  WorkerStoppedError,
} from './errors.js'
import type { Claim, CompleteInput, Json, JournalEntry, Task, TaskBoard } from './types.js'
import * as v from './validate.js'

export interface HandlerContext {
  /** Aborted when the lease is lost, the task is cancelled or blocked, the handler times out, or the pool stops. `signal.reason` says which. */
  signal: AbortSignal
  /** Extend the lease now (the pool also heartbeats by itself every `heartbeatMs`). */
  heartbeat(): Promise<Claim>
  runId: string
  /** 1 for the first claim, 2 for the first retry, ... */
  attempt: number
  claim: Claim
}

/** What a handler returns (or nothing). Throwing fails the run instead. */
export type HandlerResult = CompleteInput | void | undefined

export type TaskHandler = (task: Task, context: HandlerContext) => Promise<HandlerResult>

export interface WorkOptions {
  /** This pool's worker name, recorded on every claim and run. */
  worker: string
  assignee?: string
  tenant?: string
  /** Handlers running at once (default 1). */
  concurrency?: number
  /** Lease per claim (default: the orchestrator's defaults.leaseMs). */
  leaseMs?: number
  /** Automatic heartbeat period (default leaseMs / 3). */
  heartbeatMs?: number
  /** Abort and fail a handler that runs longer (default: no limit). */
  timeoutMs?: number
  /** How long stop() waits for running handlers before aborting and releasing them (default 30 s). */
  stopTimeoutMs?: number
  /** Safety poll for ready tasks when no journal entry woke the pool (default 1 s). */
  idlePollMs?: number
  handler: TaskHandler
  /** Unexpected errors (store errors while claiming, heartbeating, completing). Default: console.error. */
  onError?: (error: unknown) => void
}

export interface WorkerPool {
  readonly worker: string
  /** Handlers running now. */
  readonly active: number
  /**
   * Stop claiming, let running handlers finish for up to `timeoutMs` (default
   * `stopTimeoutMs`), then abort what is left and release its claims so the tasks are
   * `ready` again at once. Resolves when done; idempotent.
   */
  stop(options?: { timeoutMs?: number }): Promise<void>
}

interface ActiveRun {
  claim: Claim
  controller: AbortController
  /** Set once the run's outcome is decided elsewhere: the handler's result is then discarded. */
  settled: boolean
  heartbeatTimer: NodeJS.Timeout
  timeoutTimer: NodeJS.Timeout | null
  done: Promise<void>
}

const MAX_LEASE_MS = 24 * 60 * 60 * 1000

export function startWorkerPool(board: TaskBoard, options: WorkOptions, defaultLeaseMs: number): WorkerPool {
  const o = v.requireRecord(options, 'work options')
  if (typeof o.handler !== 'function') throw new InvalidInputError('handler must be a function', { field: 'handler' })
  const leaseMs = v.optionalInt(o.leaseMs, 'leaseMs', 1, MAX_LEASE_MS, defaultLeaseMs)
  const config = {
    worker: v.requireString(o.worker, 'worker'),
    assignee: v.optionalString(o.assignee, 'assignee') ?? undefined,
    tenant: v.optionalString(o.tenant, 'tenant') ?? undefined,
    concurrency: v.optionalInt(o.concurrency, 'concurrency', 1, 10_000, 1),
    leaseMs,
    heartbeatMs: v.optionalInt(o.heartbeatMs, 'heartbeatMs', 1, MAX_LEASE_MS, Math.max(1, Math.floor(leaseMs / 3))),
    timeoutMs: o.timeoutMs === undefined ? null : v.optionalInt(o.timeoutMs, 'timeoutMs', 1, MAX_LEASE_MS * 30, 0),
    stopTimeoutMs: v.optionalInt(o.stopTimeoutMs, 'stopTimeoutMs', 0, MAX_LEASE_MS, 30_000),
    idlePollMs: v.optionalInt(o.idlePollMs, 'idlePollMs', 1, 3_600_000, 1_000),
    handler: options.handler,
    onError: options.onError ?? ((error: unknown) => console.error(`[lockstep worker ${String(o.worker)}]`, error)),
  }
  return new Pool(board, config)
}

type PoolConfig = Required<Pick<WorkOptions, 'worker' | 'concurrency' | 'leaseMs' | 'heartbeatMs' | 'stopTimeoutMs' | 'idlePollMs' | 'handler'>> & {
  assignee?: string
  tenant?: string
  timeoutMs: number | null
  onError: (error: unknown) => void
}

class Pool implements WorkerPool {
  readonly worker: string
  private readonly queue: PQueue
  private readonly runs = new Map<string, ActiveRun>()
  private readonly unsubscribe: () => void
  private stopping = false
  private stopped: Promise<void> | null = null
  private readonly loop: Promise<void>
  /** A wake-up arrived since the last claim attempt: try again before sleeping. */
  private dirty = true
  private wakeUp: (() => void) | null = null

  constructor(
    private readonly board: TaskBoard,
    private readonly config: PoolConfig,
  ) {
    this.worker = config.worker
    this.queue = new PQueue({ concurrency: config.concurrency })
    this.unsubscribe = board.subscribe((entry) => this.onJournal(entry))
    this.loop = this.dispatch()
  }

  get active(): number {
    return this.runs.size
  }

  stop(options: { timeoutMs?: number } = {}): Promise<void> {
    if (!this.stopped) {
      const timeoutMs = v.optionalInt(options.timeoutMs, 'timeoutMs', 0, MAX_LEASE_MS, this.config.stopTimeoutMs)
      this.stopped = this.drain(timeoutMs)
    }
    return this.stopped
  }

  private async drain(timeoutMs: number): Promise<void> {
    this.stopping = true
    this.wake()
    await this.loop
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)))
    const outcome = await Promise.race([this.queue.onIdle().then(() => 'idle' as const), timedOut])
    clearTimeout(timer)
    if (outcome === 'timeout') {
      // Abort what is left and give the tasks back now rather than after their leases.
      await Promise.all(
        [...this.runs.values()].map(async (run) => {
          if (run.settled) return
          this.settle(run, new WorkerStoppedError(this.worker))
          try {
            await this.board.release(run.claim, { reason: `worker ${this.worker} stopped` })
          } catch (error) {
            if (!(error instanceof LeaseLostError)) this.config.onError(error)
          }
        }),
      )
    }
    this.unsubscribe()
  }

  private wake(): void {
    this.dirty = true
    const resolve = this.wakeUp
    this.wakeUp = null
    resolve?.()
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = null
        resolve()
      }, ms)
      this.wakeUp = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  private onJournal(entry: JournalEntry): void {
    // Something may be claimable now.
    if (entry.stateAfter === 'ready') this.wake()
    // One of our runs was ended by someone else: abort its handler, discard its result.
    const run = entry.runId === null ? undefined : this.runs.get(entry.runId)
    if (!run || run.settled) return
    if (entry.kind === 'cancelled') this.settle(run, new TaskCancelledError(run.claim.taskId))
    else if (entry.kind === 'blocked') this.settle(run, new TaskCancelledError(run.claim.taskId, 'blocked'))
    else if (entry.kind === 'reclaimed') this.settle(run, new LeaseLostError(run.claim.taskId, run.claim.runId, entry.stateAfter))
  }

  private async dispatch(): Promise<void> {
    let failures = 0
    while (!this.stopping) {
      if (this.runs.size >= this.config.concurrency) {
        await this.sleep(this.config.idlePollMs)
        continue
      }
      this.dirty = false
      let claim: Claim | null
      try {
        claim = await this.board.claimNext({
          worker: this.config.worker,
          assignee: this.config.assignee,
          tenant: this.config.tenant,
          leaseMs: this.config.leaseMs,
        })
        failures = 0
      } catch (error) {
        this.config.onError(error)
        await this.sleep(Math.min(5_000, 50 * 2 ** failures++))
        continue
      }
      if (claim) {
        if (this.stopping) {
          // stop() raced the claim: hand it straight back.
          await this.board.release(claim, { reason: `worker ${this.worker} stopped` }).catch(this.config.onError)
          break
        }
        this.start(claim)
      } else if (!this.dirty) {
        await this.sleep(this.config.idlePollMs)
      }
    }
  }

  private start(claim: Claim): void {
    const controller = new AbortController()
    const run: ActiveRun = {
      claim,
      controller,
      settled: false,
      heartbeatTimer: setInterval(() => void this.heartbeat(run).catch(() => {}), this.config.heartbeatMs),
      timeoutTimer: null,
      done: Promise.resolve(),
    }
    run.heartbeatTimer.unref?.()
    if (this.config.timeoutMs !== null) {
      const timeoutMs = this.config.timeoutMs
      run.timeoutTimer = setTimeout(() => {
        if (run.settled) return
        const error = new HandlerTimeoutError(claim.taskId, timeoutMs)
        this.settle(run, error)
        // A timeout is a failure of this attempt: retried with backoff while attempts are left.
        this.board.fail(run.claim, { error: error.message, retryable: true }).catch((e) => this.ignoreLeaseLost(e))
      }, timeoutMs)
    }
    this.runs.set(claim.runId, run)
    run.done = this.queue.add(() => this.execute(run)).finally(() => {
      clearInterval(run.heartbeatTimer)
      if (run.timeoutTimer) clearTimeout(run.timeoutTimer)
      this.runs.delete(claim.runId)
      this.wake() // a slot is free
    })
  }

  private async execute(run: ActiveRun): Promise<void> {
    const { claim } = run
    let outcome: { ok: true; value: HandlerResult } | { ok: false; error: unknown }
    try {
      const task = await this.board.get(claim.taskId)
      if (!task) throw new Error(`task ${claim.taskId} vanished`)
      const value = await this.config.handler(task, {
        signal: run.controller.signal,
        heartbeat: () => this.heartbeat(run),
        runId: claim.runId,
        attempt: claim.attempt,
        claim,
      })
      outcome = { ok: true, value }
    } catch (error) {
      outcome = { ok: false, error }
    }
    // Lease lost, cancelled, timed out or stopped: the run is over already; discard.
    if (run.settled) return
    run.settled = true
    try {
      if (outcome.ok) await this.complete(run, outcome.value)
      else {
        const retryable = !(outcome.error instanceof NonRetryableError)
        await this.board.fail(run.claim, { error: describe(outcome.error), retryable })
      }
    } catch (error) {
      this.ignoreLeaseLost(error)
    }
  }

  private async complete(run: ActiveRun, value: HandlerResult): Promise<void> {
    const input = (value ?? {}) as CompleteInput
    try {
      await this.board.complete(run.claim, {
        result: input.result as Json | undefined,
        summary: input.summary,
        metadata: input.metadata as Json | undefined,
      })
    } catch (error) {
      // The handler returned something the board refuses (not JSON, too large): that is
      // a bug in the handler, not a transient failure, so do not retry it.
      if (error instanceof LockstepError && (error.code === 'INVALID_INPUT' || error.code === 'PAYLOAD_TOO_LARGE')) {
        await this.board.fail(run.claim, { error: `handler returned an invalid result: ${error.message}`, retryable: false })
        return
      }
      throw error
    }
  }

  private async heartbeat(run: ActiveRun): Promise<Claim> {
    if (run.settled) throw new LeaseLostError(run.claim.taskId, run.claim.runId, 'finished')
    try {
      run.claim = await this.board.heartbeat(run.claim)
      return run.claim
    } catch (error) {
      if (error instanceof LeaseLostError) this.settle(run, error)
      else this.config.onError(error)
      throw error
    }
  }

  /** The run's outcome is decided elsewhere: stop its timers and abort its handler. */
  private settle(run: ActiveRun, reason: Error): void {
    if (run.settled) return
    run.settled = true
    clearInterval(run.heartbeatTimer)
    if (run.timeoutTimer) clearTimeout(run.timeoutTimer)
    run.controller.abort(reason)
  }

  private ignoreLeaseLost(error: unknown): void {
    // Losing the race to a reclaim or cancel at the very end is expected; the fence did its job.
    if (!(error instanceof LeaseLostError)) this.config.onError(error)
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name
  if (typeof error === 'string' && error) return error
  try {
    return JSON.stringify(error) ?? String(error)
  } catch {
    return String(error)
  }
}
