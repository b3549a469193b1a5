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
  ClosedError,
  HandlerTimeoutError,
  InvalidInputError,
  LeaseLostError,
  LockstepError,
  NonRetryableError,
  ResultRefusedError,
  StoreBusyError,
  TaskCancelledError,
  WorkerStoppedError,
} from './errors.js'
import {
  MAX_CLAIM_MANY,
  MAX_ERROR_LENGTH,
  type Claim,
  type CompleteInput,
  type HandlerResult,
  type JournalEntry,
  type StopOptions,
  type Task,
  type TaskBoard,
  type TaskHandler,
  type WorkerPool,
  type WorkOptions,
} from './types.js'
import * as v from './validate.js'

export type { HandlerContext, HandlerResult, StopOptions, TaskHandler, WorkerPool, WorkOptions } from './types.js'

/** The keys each options object accepts; any other key is INVALID_INPUT naming it. */
const WORK_KEYS = [
  'worker',
  'assignee',
  'anyAssignee',
  'tenant',
  'concurrency',
  'leaseMs',
  'heartbeatMs',
  'timeoutMs',
  'stopTimeoutMs',
  'idlePollMs',
  'handler',
  'onError',
] as const satisfies ReadonlyArray<keyof WorkOptions>
const STOP_KEYS = ['timeoutMs'] as const satisfies ReadonlyArray<keyof StopOptions>

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

/** The board methods a pool calls: a board without them is refused up front, not with a TypeError later. */
const BOARD_METHODS = ['claimMany', 'get', 'heartbeat', 'complete', 'fail', 'release', 'subscribe'] as const

export function startWorkerPool(board: TaskBoard, options: WorkOptions, defaultLeaseMs: number): WorkerPool {
  if (!v.isRecord(board) || BOARD_METHODS.some((method) => typeof (board as unknown as Record<string, unknown>)[method] !== 'function')) {
    throw new InvalidInputError(`board must be a TaskBoard (with ${BOARD_METHODS.join(', ')})`, { field: 'board' })
  }
  const o = v.requireOptions(options, 'work options', WORK_KEYS)
  if (defaultLeaseMs === undefined || defaultLeaseMs === null) {
    throw new InvalidInputError('defaultLeaseMs must be an integer from 1', { field: 'defaultLeaseMs' })
  }
  const defaultLease = v.optionalInt(defaultLeaseMs, 'defaultLeaseMs', 1, MAX_LEASE_MS, 0)
  if (typeof o.handler !== 'function') throw new InvalidInputError('handler must be a function', { field: 'handler' })
  if (o.onError !== undefined && typeof o.onError !== 'function') {
    throw new InvalidInputError('onError must be a function', { field: 'onError' })
  }
  const leaseMs = v.optionalInt(o.leaseMs, 'leaseMs', 1, MAX_LEASE_MS, defaultLease)
  const assignee = v.optionalString(o.assignee, 'assignee') ?? undefined
  const anyAssignee = v.optionalBoolean(o.anyAssignee, 'anyAssignee', false)
  if (assignee !== undefined && anyAssignee) {
    throw new InvalidInputError('assignee and anyAssignee exclude each other: name one assignee, or ask for any', { field: 'anyAssignee' })
  }
  const config = {
    worker: v.requireString(o.worker, 'worker'),
    assignee,
    anyAssignee,
    tenant: v.optionalString(o.tenant, 'tenant') ?? undefined,
    concurrency: v.optionalInt(o.concurrency, 'concurrency', 1, 10_000, 1),
    leaseMs,
    heartbeatMs: v.optionalInt(o.heartbeatMs, 'heartbeatMs', 1, MAX_LEASE_MS, Math.max(1, Math.floor(leaseMs / 3))),
    timeoutMs: o.timeoutMs === undefined ? null : v.optionalInt(o.timeoutMs, 'timeoutMs', 1, MAX_LEASE_MS * 30, 0),
    stopTimeoutMs: v.optionalInt(o.stopTimeoutMs, 'stopTimeoutMs', 0, MAX_LEASE_MS, 30_000),
    idlePollMs: v.optionalInt(o.idlePollMs, 'idlePollMs', 1, 3_600_000, 1_000),
    handler: o.handler as TaskHandler,
    onError: (o.onError as WorkOptions['onError']) ?? ((error: unknown) => console.error(`[lockstep worker ${String(o.worker)}]`, error)),
  }
  return new Pool(board, config)
}

type PoolConfig = Required<Pick<WorkOptions, 'worker' | 'anyAssignee' | 'concurrency' | 'leaseMs' | 'heartbeatMs' | 'stopTimeoutMs' | 'idlePollMs' | 'handler'>> & {
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

  stop(options: StopOptions = {}): Promise<void> {
    // Checked on every call, stopped or not: a bad call must not be fine only sometimes.
    let timeoutMs: number
    try {
      const o = v.requireOptions(options, 'stop options', STOP_KEYS)
      timeoutMs = v.optionalInt(o.timeoutMs, 'timeoutMs', 0, MAX_LEASE_MS, this.config.stopTimeoutMs)
    } catch (error) {
      return Promise.reject(error)
    }
    this.stopped ??= this.drain(timeoutMs)
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
      let claims: Claim[]
      try {
        // Every free slot at once, in one transaction.
        claims = await this.board.claimMany({
          worker: this.config.worker,
          ...(this.config.anyAssignee ? { anyAssignee: true } : { assignee: this.config.assignee }),
          tenant: this.config.tenant,
          leaseMs: this.config.leaseMs,
          limit: Math.min(MAX_CLAIM_MANY, this.config.concurrency - this.runs.size),
        })
        failures = 0
      } catch (error) {
        this.config.onError(error)
        await this.sleep(Math.min(5_000, 50 * 2 ** failures++))
        continue
      }
      if (this.stopping) {
        // stop() raced the claims: hand them straight back.
        const reason = `worker ${this.worker} stopped`
        await Promise.all(claims.map((claim) => this.board.release(claim, { reason }).catch(this.config.onError)))
        break
      }
      for (const claim of claims) this.start(claim)
      if (claims.length === 0 && !this.dirty) await this.sleep(this.config.idlePollMs)
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
        this.fail(run, error.message, true).catch((e) => this.ignoreNotOurs(e))
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
      // Stopped, cancelled or lost while the task was read: its handler never starts (it
      // would get a signal already aborted, and no 'abort' event to wait for).
      if (run.settled) return
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
    // The pool must end the run it holds: only a run that is no longer ours is left alone.
    try {
      if (outcome.ok) await this.complete(run, outcome.value)
      else await this.fail(run, describe(outcome.error), !(outcome.error instanceof NonRetryableError))
    } catch (error) {
      this.ignoreNotOurs(error)
    }
  }

  private async complete(run: ActiveRun, value: HandlerResult): Promise<void> {
    try {
      // As returned: the board checks its keys and values, so a typo is refused, not lost.
      await this.board.complete(run.claim, (value ?? {}) as CompleteInput)
    } catch (error) {
      if (notOurs(error)) throw error
      if (error instanceof StoreBusyError) {
        // The store, not the result: a transient failure of this attempt.
        await this.fail(run, `${error.code}: ${error.message}`, true)
        return
      }
      // Any other refusal of the result (not JSON, too deep, too large, an unknown key, a
      // getter that throws) is a bug in the handler that a retry would repeat.
      const refusal = error instanceof LockstepError ? error.code : 'INTERNAL'
      const refused = new ResultRefusedError(run.claim.taskId, run.claim.runId, refusal, describe(error))
      await this.fail(run, `${refused.code}: ${refused.message}`, false)
    }
  }

  /** Record a failure of the run; error text of any length is truncated, never refused. */
  private fail(run: ActiveRun, error: string, retryable: boolean): Promise<Task> {
    return this.board.fail(run.claim, { error: v.truncateText(error, MAX_ERROR_LENGTH), retryable })
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

  private ignoreNotOurs(error: unknown): void {
    // Losing the race to a reclaim, cancel or close at the very end is expected; the fence did its job.
    if (!notOurs(error)) this.config.onError(error)
  }
}

/** The run is no longer this pool's to end: its lease was lost (or it was cancelled, blocked), or the orchestrator closed. */
function notOurs(error: unknown): boolean {
  return error instanceof LeaseLostError || error instanceof ClosedError
}

/** Text for whatever a handler threw; never throws itself (a thrown value may be hostile). */
function describe(error: unknown): string {
  try {
    if (error instanceof Error) return String(error.message || error.name)
    if (typeof error === 'string' && error) return error
    return JSON.stringify(error) ?? String(error)
  } catch {
    try {
      return String(error)
    } catch {
      return 'the handler threw a value that cannot be described'
    }
  }
}
