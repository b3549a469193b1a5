/**
 * The task board API over the committed step. Each method validates its input first
 * (nothing is written for bad input), then runs one write transaction that sends events
 * to task machines; the machine's guards decide, this file only maps their decisions to
 * return values and errors.
 */
import type { AnyMachineSnapshot } from 'xstate'
import type { TaskContext, TaskEvent } from '../machines/task.js'
import { assigneeAdmits, TASK_MACHINE_ID, type Claimant } from '../machines/task.js'
import type { ReadDriver, ReadStore, RunRow, TaskRow } from '../persistence/store.js'
import { io, type Io } from './core/io.js'
import { createdTaskRow } from './core/task-kind.js'
import type { Kernel, StepResult, StepTx } from './core/kernel.js'
import {
  AssigneeMismatchError,
  DependencyCycleError,
  InvalidInputError,
  InvalidTransitionError,
  LeaseLostError,
  LinkNotFoundError,
  RunNotFoundError,
  TaskNotFoundError,
} from './errors.js'
import { newId, newToken } from './ids.js'
import type { JournalFeed } from './journal-feed.js'
import type {
  Claim,
  ClaimManyOptions,
  ClaimNextOptions,
  ClaimOptions,
  CompleteInput,
  CreateTaskInput,
  EventsQuery,
  FailInput,
  HeartbeatOptions,
  Json,
  JournalEntry,
  ListFilter,
  ReleaseInput,
  Run,
  SubscribeOptions,
  Task,
  TaskBoard,
  TaskDefaults,
} from './types.js'
import { MAX_CLAIM_MANY, MAX_ERROR_LENGTH } from './types.js'
import * as v from './validate.js'
import { startWorkerPool, type WorkerPool, type WorkOptions } from './worker-pool.js'

const MAX_LEASE_MS = 24 * 60 * 60 * 1000
const MAX_TITLE = 1_000
const MAX_BODY = 100_000
const MAX_SUMMARY = 100_000

/** The keys each input object accepts; any other key is INVALID_INPUT naming it (a typo or an option this version lacks must not be ignored). */
const KEYS = {
  create: ['title', 'body', 'assignee', 'tenant', 'priority', 'parents', 'payload', 'idempotencyKey', 'maxAttempts'] satisfies Array<keyof CreateTaskInput>,
  claim: ['worker', 'leaseMs', 'assignee', 'anyAssignee'] satisfies Array<keyof ClaimOptions>,
  claimNext: ['worker', 'leaseMs', 'assignee', 'anyAssignee', 'tenant', 'idempotencyKey'] satisfies Array<keyof ClaimNextOptions>,
  claimMany: ['worker', 'leaseMs', 'assignee', 'anyAssignee', 'tenant', 'limit'] satisfies Array<keyof ClaimManyOptions>,
  heartbeat: ['leaseMs'] satisfies Array<keyof HeartbeatOptions>,
  complete: ['result', 'summary', 'metadata'] satisfies Array<keyof CompleteInput>,
  fail: ['error', 'retryable'] satisfies Array<keyof FailInput>,
  release: ['reason'] satisfies Array<keyof ReleaseInput>,
  block: ['reason'],
  cancel: ['reason'],
  list: ['status', 'assignee', 'tenant', 'limit', 'after'] satisfies Array<keyof ListFilter>,
  events: ['taskId', 'after', 'limit'] satisfies Array<keyof EventsQuery>,
  subscribe: ['after', 'taskId'] satisfies Array<keyof SubscribeOptions>,
}

/** Event fields the caller supplies; `at` and `facts` are added by the committed step. */
type Command = TaskEvent extends infer E ? (E extends TaskEvent ? Omit<E, 'at' | 'facts'> : never) : never

export interface StoreTaskBoardOptions {
  kernel: Kernel
  /** Reads outside a write (get, list, runs, ...). */
  reads: ReadDriver
  feed: JournalFeed
  defaults: TaskDefaults
  maxPayloadBytes: number
  /** Throws CLOSED once the orchestrator is closed. */
  assertOpen(): void
  /** Called before every operation (throws when closed) and tracks in-flight writes. */
  guard<T>(operation: () => Promise<T>): Promise<T>
}

/** The task board on any store: writes are programs run by the kernel, reads go through the store's read driver. */
export class StoreTaskBoard implements TaskBoard {
  private readonly kernel: Kernel
  private readonly defaults: TaskDefaults
  private readonly maxPayloadBytes: number
  private readonly pools = new Set<WorkerPool>()

  constructor(private readonly options: StoreTaskBoardOptions) {
    this.kernel = options.kernel
    this.defaults = options.defaults
    this.maxPayloadBytes = options.maxPayloadBytes
  }

  async create(input: CreateTaskInput): Promise<Task> {
    const i = v.requireOptions(input, 'create input', KEYS.create)
    const row = {
      id: newId('t'),
      title: v.requireString(i.title, 'title', MAX_TITLE),
      body: v.optionalText(i.body, 'body', MAX_BODY),
      assignee: v.optionalString(i.assignee, 'assignee'),
      tenant: v.optionalString(i.tenant, 'tenant'),
      priority: v.optionalInt(i.priority, 'priority', -1_000_000, 1_000_000, 0),
      payload: v.jsonValue(i.payload, 'payload', this.maxPayloadBytes),
      idempotencyKey: v.optionalString(i.idempotencyKey, 'idempotencyKey'),
      maxAttempts: v.optionalInt(i.maxAttempts, 'maxAttempts', 1, 1_000, this.defaults.maxAttempts),
    }
    const parents = v.idList(i.parents, 'parents')
    const kernel = this.kernel
    const defaults = this.defaults
    return this.write(function* (tx) {
      // Inside the transaction, so two concurrent creates with one key cannot both insert.
      if (row.idempotencyKey !== null) {
        const key = row.idempotencyKey
        const existing = yield* io((s) => s.taskByIdempotencyKey(key))
        if (existing) return existing
      }
      for (const parent of parents) yield* mustExist(parent)
      yield* io((s) => s.insertTask(row, tx.now))
      // A brand-new task has no children, so these links cannot close a cycle.
      for (const parent of parents) yield* io((s) => s.insertLink(parent, row.id, tx.now))
      const first = yield* kernel.createInTx(
        tx,
        TASK_MACHINE_ID,
        row.id,
        { id: row.id, maxAttempts: row.maxAttempts, backoffBaseMs: defaults.backoffBaseMs, backoffMaxMs: defaults.backoffMaxMs },
        // The whole input goes into the journal: the log alone can rebuild the board.
        {
          type: 'CREATE',
          title: row.title,
          body: row.body,
          // The machine keeps the assignee: its CLAIM guard applies the assignee rule.
          assignee: row.assignee,
          tenant: row.tenant,
          priority: row.priority,
          payload: row.payload === null ? null : JSON.parse(row.payload),
          idempotencyKey: row.idempotencyKey,
          maxAttempts: row.maxAttempts,
          parents,
        },
      )
      return createdTaskRow(row, parents, first, tx.now)
    }).then((created) => (typeof created === 'string' ? this.mustGet(created) : toTask(created)))
  }

  async link(parentId: string, childId: string): Promise<Task> {
    const parent = v.requireString(parentId, 'parentId')
    const child = v.requireString(childId, 'childId')
    const board = this
    return this.write(function* (tx) {
      yield* mustExist(parent)
      yield* mustExist(child)
      yield* io((s) => s.lockGraph())
      if (yield* io((s) => s.linkExists(parent, child))) return child // already linked: nothing to do
      // A cycle: a self-link, or the child is already an ancestor of the parent.
      if (parent === child || (yield* io((s) => s.isAncestor(child, parent)))) throw new DependencyCycleError(parent, child)
      yield* board.command(tx, child, { type: 'LINK', parentId: parent }, 'a running or finished task only accepts parents that are done')
      return child
    }).then((id) => this.mustGet(id))
  }

  async unlink(parentId: string, childId: string): Promise<Task> {
    const parent = v.requireString(parentId, 'parentId')
    const child = v.requireString(childId, 'childId')
    const board = this
    return this.write(function* (tx) {
      yield* mustExist(child)
      if (!(yield* io((s) => s.linkExists(parent, child)))) throw new LinkNotFoundError(parent, child)
      yield* board.command(tx, child, { type: 'UNLINK', parentId: parent })
      return child
    }).then((id) => this.mustGet(id))
  }

  async claim(taskId: string, options: ClaimOptions): Promise<Claim | null> {
    const id = v.requireString(taskId, 'taskId')
    const o = v.requireOptions(options, 'claim options', KEYS.claim)
    const { worker, leaseMs, claimant } = this.claimOptions(o)
    const board = this
    return this.write(function* (tx) {
      yield* mustExist(id)
      return yield* board.tryClaim(tx, id, worker, leaseMs, claimant)
    })
  }

  async claimNext(options: ClaimNextOptions): Promise<Claim | null> {
    const o = v.requireOptions(options, 'claimNext options', KEYS.claimNext)
    const { worker, leaseMs, claimant } = this.claimOptions(o)
    const filter = {
      assignee: claimant.assignee ?? undefined,
      anyAssignee: claimant.anyAssignee,
      tenant: v.optionalString(o.tenant, 'tenant') ?? undefined,
    }
    const claimKey = v.optionalString(o.idempotencyKey, 'idempotencyKey')
    const board = this
    return this.write(function* (tx) {
      // A retried claimNext with the same key gets the claim it made (inside the
      // transaction, so two racing retries cannot both claim).
      if (claimKey !== null) {
        const previous = yield* io((s) => s.claimByKey(claimKey))
        if (previous) {
          if (!previous.held) throw new LeaseLostError(previous.task_id, previous.run_id, 'no longer held by that claim')
          return {
            taskId: previous.task_id,
            runId: previous.run_id,
            token: previous.token,
            worker: previous.worker,
            leaseExpiresAt: previous.lease_expires_at!,
            attempt: previous.attempt,
          }
        }
      }
      // A candidate the gate refuses is demoted inside this same transaction, so the loop
      // always makes progress and ends. Candidates are only tasks the assignee rule
      // admits (a refusal by that rule throws rather than loop). One candidate per query:
      // the first nearly always wins.
      for (;;) {
        const [id] = yield* io((s) => s.readyCandidates(filter, 1))
        if (id === undefined) return null
        const claim = yield* board.tryClaim(tx, id, worker, leaseMs, claimant, claimKey)
        if (claim) return claim
      }
    })
  }

  async claimMany(options: ClaimManyOptions): Promise<Claim[]> {
    const o = v.requireOptions(options, 'claimMany options', KEYS.claimMany)
    const { worker, leaseMs, claimant } = this.claimOptions(o)
    const limit = v.requireInt(o.limit, 'limit', 1, MAX_CLAIM_MANY)
    const filter = {
      assignee: claimant.assignee ?? undefined,
      anyAssignee: claimant.anyAssignee,
      tenant: v.optionalString(o.tenant, 'tenant') ?? undefined,
    }
    const board = this
    return this.write(function* (tx) {
      const claims: Claim[] = []
      // As claimNext's loop: a refused candidate is demoted in this transaction, so every
      // pass claims or removes at least one candidate, and the loop ends.
      while (claims.length < limit) {
        const ids = yield* io((s) => s.readyCandidates(filter, limit - claims.length))
        if (ids.length === 0) break
        for (const id of ids) {
          const claim = yield* board.tryClaim(tx, id, worker, leaseMs, claimant, null)
          if (claim) claims.push(claim)
        }
      }
      return claims
    })
  }

  async heartbeat(claim: Claim, options: HeartbeatOptions = {}): Promise<Claim> {
    const c = this.claimShape(claim)
    const o = v.requireOptions(options, 'heartbeat options', KEYS.heartbeat)
    const leaseMs = o.leaseMs === undefined ? undefined : v.optionalInt(o.leaseMs, 'leaseMs', 1, MAX_LEASE_MS, 0)
    const board = this
    return this.write(function* (tx) {
      const after = yield* board.fenced(tx, c, { type: 'HEARTBEAT', runId: c.runId, token: c.token, leaseMs })
      const context = after.context as TaskContext
      return { ...c, leaseExpiresAt: context.leaseExpiresAt!, attempt: context.attempts }
    })
  }

  async complete(claim: Claim, input: CompleteInput = {}): Promise<Task> {
    const c = this.claimShape(claim)
    const i = v.requireOptions(input, 'complete input', KEYS.complete)
    const result = v.jsonValue(i.result, 'result', this.maxPayloadBytes)
    const metadata = v.jsonValue(i.metadata, 'metadata', this.maxPayloadBytes)
    const summary = v.optionalText(i.summary, 'summary', MAX_SUMMARY)
    const board = this
    return this.write(function* (tx) {
      yield* board.fenced(tx, c, {
        type: 'COMPLETE',
        runId: c.runId,
        token: c.token,
        result: result === null ? undefined : JSON.parse(result),
        summary,
        metadata: metadata === null ? undefined : JSON.parse(metadata),
      })
      return c.taskId
    }).then((id) => this.mustGet(id))
  }

  async fail(claim: Claim, input: FailInput): Promise<Task> {
    const c = this.claimShape(claim)
    const i = v.requireOptions(input, 'fail input', KEYS.fail)
    const error = i.error instanceof Error ? i.error.message || i.error.name : i.error
    const message = v.optionalText(error, 'error', MAX_ERROR_LENGTH)
    if (message === null) throw new InvalidInputError('error must be a string or an Error', { field: 'error' })
    const retryable = v.optionalBoolean(i.retryable, 'retryable', true)
    const jitter = Math.random()
    const board = this
    return this.write(function* (tx) {
      yield* board.fenced(tx, c, { type: 'FAIL', runId: c.runId, token: c.token, error: message, retryable, jitter })
      return c.taskId
    }).then((id) => this.mustGet(id))
  }

  async release(claim: Claim, input: ReleaseInput = {}): Promise<Task> {
    const c = this.claimShape(claim)
    const reason = v.optionalText(v.requireOptions(input, 'release input', KEYS.release).reason, 'reason', MAX_SUMMARY)
    const board = this
    return this.write(function* (tx) {
      yield* board.fenced(tx, c, { type: 'RELEASE', runId: c.runId, token: c.token, reason })
      return c.taskId
    }).then((id) => this.mustGet(id))
  }

  async block(taskId: string, input: { reason: string }): Promise<Task> {
    const id = v.requireString(taskId, 'taskId')
    const reason = v.requireString(v.requireOptions(input, 'block input', KEYS.block).reason, 'reason', MAX_SUMMARY)
    return this.simple(id, { type: 'BLOCK', reason })
  }

  async unblock(taskId: string): Promise<Task> {
    return this.simple(v.requireString(taskId, 'taskId'), { type: 'UNBLOCK' }, 'a failed or cancelled parent still blocks it: retry or unlink that parent')
  }

  async cancel(taskId: string, input: { reason?: string | null } = {}): Promise<Task> {
    const id = v.requireString(taskId, 'taskId')
    const reason = v.optionalText(v.requireOptions(input, 'cancel input', KEYS.cancel).reason, 'reason', MAX_SUMMARY)
    return this.simple(id, { type: 'CANCEL', reason })
  }

  async retry(taskId: string): Promise<Task> {
    return this.simple(v.requireString(taskId, 'taskId'), { type: 'RETRY' }, 'only a failed task can be retried')
  }

  async archive(taskId: string): Promise<Task> {
    return this.simple(v.requireString(taskId, 'taskId'), { type: 'ARCHIVE' }, 'only done, failed or cancelled tasks can be archived')
  }

  async get(taskId: string): Promise<Task | null> {
    const id = v.requireString(taskId, 'taskId')
    return this.read(async (r) => {
      const row = await r.task(id)
      return row ? toTask(row) : null
    })
  }

  async list(filter: ListFilter = {}): Promise<Task[]> {
    const f = v.requireOptions(filter, 'list filter', KEYS.list)
    const query = {
      status: v.status(f.status),
      assignee: v.optionalString(f.assignee, 'assignee') ?? undefined,
      tenant: v.optionalString(f.tenant, 'tenant') ?? undefined,
      after: v.optionalString(f.after, 'after') ?? undefined,
      limit: v.optionalInt(f.limit, 'limit', 1, 10_000, 100),
    }
    return this.read(async (r) => (await r.tasks(query)).map(toTask))
  }

  async children(taskId: string): Promise<string[]> {
    const id = v.requireString(taskId, 'taskId')
    return this.read(async (r) => {
      if (!(await r.taskExists(id))) throw new TaskNotFoundError(id)
      return r.childIds(id)
    })
  }

  async events(query: EventsQuery = {}): Promise<JournalEntry[]> {
    const q = v.requireOptions(query, 'events query', KEYS.events)
    const page = {
      machineId: TASK_MACHINE_ID,
      actorId: v.optionalString(q.taskId, 'taskId') ?? undefined,
      after: v.optionalInt(q.after, 'after', 0, Number.MAX_SAFE_INTEGER, 0),
      limit: v.optionalInt(q.limit, 'limit', 1, 10_000, 1_000),
    }
    return this.options.guard(async () => this.options.feed.page(page))
  }

  async runs(taskId: string): Promise<Run[]> {
    const id = v.requireString(taskId, 'taskId')
    return this.read(async (r) => {
      if (!(await r.taskExists(id))) throw new TaskNotFoundError(id)
      return (await r.runs(id)).map(toRun)
    })
  }

  subscribe(listener: (entry: JournalEntry) => void, options: SubscribeOptions = {}) {
    if (typeof listener !== 'function') throw new InvalidInputError('listener must be a function', { field: 'listener' })
    const o = v.requireOptions(options, 'subscribe options', KEYS.subscribe)
    return this.options.feed.subscribe(listener, {
      after: o.after === undefined ? undefined : v.optionalInt(o.after, 'after', 0, Number.MAX_SAFE_INTEGER, 0),
      machineId: TASK_MACHINE_ID,
      actorId: v.optionalString(o.taskId, 'taskId') ?? undefined,
    })
  }

  work(options: WorkOptions): WorkerPool {
    this.options.assertOpen()
    const pool = startWorkerPool(this, options, this.defaults.leaseMs)
    this.pools.add(pool)
    return pool
  }

  /** Stop every worker pool (each bounded by its stopTimeoutMs). */
  async stopWorkers(): Promise<void> {
    await Promise.all([...this.pools].map((pool) => pool.stop()))
    this.pools.clear()
  }

  // ---- internals ----

  private write<T>(body: (tx: StepTx) => Io<T>): Promise<T> {
    return this.options.guard(() => this.kernel.write(body))
  }

  private read<T>(fn: (reads: ReadStore) => T | Promise<T>): Promise<T> {
    return this.options.guard(() => this.options.reads.read(fn))
  }

  /** The task as committed (after a write: outside the intake, which the write already passed). */
  private async mustGet(id: string): Promise<Task> {
    const row = await this.options.reads.read((r) => r.task(id))
    if (!row) throw new TaskNotFoundError(id)
    return toTask(row)
  }

  /** The options claim and claimNext share, from an object already checked for unknown keys. */
  private claimOptions(o: Record<string, unknown>): { worker: string; leaseMs: number; claimant: Claimant } {
    const assignee = v.optionalString(o.assignee, 'assignee')
    const anyAssignee = v.optionalBoolean(o.anyAssignee, 'anyAssignee', false)
    if (assignee !== null && anyAssignee) {
      throw new InvalidInputError('assignee and anyAssignee exclude each other: name one assignee, or ask for any', { field: 'anyAssignee' })
    }
    return {
      worker: v.requireString(o.worker, 'worker'),
      leaseMs: v.optionalInt(o.leaseMs, 'leaseMs', 1, MAX_LEASE_MS, this.defaults.leaseMs),
      claimant: anyAssignee ? { anyAssignee: true } : { assignee },
    }
  }

  private claimShape(claim: Claim): Claim {
    const c = v.requireRecord(claim, 'claim')
    return {
      taskId: v.requireString(c.taskId, 'claim.taskId'),
      runId: v.requireString(c.runId, 'claim.runId'),
      token: v.requireString(c.token, 'claim.token'),
      worker: v.requireString(c.worker, 'claim.worker'),
      leaseExpiresAt: typeof c.leaseExpiresAt === 'number' ? c.leaseExpiresAt : 0,
      attempt: typeof c.attempt === 'number' ? c.attempt : 0,
    }
  }

  private *tryClaim(
    tx: StepTx,
    id: string,
    worker: string,
    leaseMs: number,
    claimant: Claimant,
    claimKey: string | null = null,
  ): Io<Claim | null> {
    const runId = newId('r')
    const token = newToken()
    const step = yield* this.send(tx, id, { type: 'CLAIM', runId, token, worker, leaseMs, claimKey, ...claimant })
    if (!step.accepted) {
      // Not ready (null), or not this claimant's task whatever its state: that is no race
      // to retry, so it is an error that says whose task it is.
      const assignee = (step.snapshot.context as Partial<TaskContext>).assignee ?? null
      if (!assigneeAdmits(assignee, claimant)) throw new AssigneeMismatchError(id, assignee, claimant.assignee ?? null)
      return null
    }
    if (step.snapshot.value !== 'running') return null
    const context = step.snapshot.context as TaskContext
    return { taskId: id, runId, token, worker, leaseExpiresAt: context.leaseExpiresAt!, attempt: context.attempts }
  }

  /**
   * A fenced command: refused means the claim is stale (LEASE_LOST), or names a run the
   * task never had (RUN_NOT_FOUND: looked up only on refusal, so the fence costs nothing more).
   */
  private *fenced(tx: StepTx, claim: Claim, event: Command): Io<AnyMachineSnapshot> {
    const step = yield* this.send(tx, claim.taskId, event)
    if (!step.accepted) {
      if (!(yield* io((s) => s.runExists(claim.taskId, claim.runId)))) throw new RunNotFoundError(claim.taskId, claim.runId)
      throw new LeaseLostError(claim.taskId, claim.runId, step.stateBefore)
    }
    return step.snapshot
  }

  /** A command that must be accepted; a refusal is INVALID_TRANSITION. */
  private *command(tx: StepTx, id: string, event: Command, hint = ''): Io<StepResult> {
    const step = yield* this.send(tx, id, event)
    if (!step.accepted) throw new InvalidTransitionError(id, event.type, step.stateBefore, hint)
    return step
  }

  private simple(id: string, event: Command, hint = ''): Promise<Task> {
    const board = this
    return this.write(function* (tx) {
      yield* mustExist(id)
      yield* board.command(tx, id, event, hint)
      return id
    }).then((taskId) => this.mustGet(taskId))
  }

  private *send(tx: StepTx, id: string, event: Command): Io<StepResult> {
    const step = yield* this.kernel.stepInTx(tx, TASK_MACHINE_ID, id, event)
    if (!step) throw new TaskNotFoundError(id)
    return step
  }
}

function* mustExist(id: string): Io<void> {
  if (!(yield* io((s) => s.taskExists(id)))) throw new TaskNotFoundError(id)
}

function parseJson(text: string | null): Json | null {
  return text === null ? null : (JSON.parse(text) as Json)
}

export function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    title: row.title,
    body: row.body,
    assignee: row.assignee,
    tenant: row.tenant,
    priority: row.priority,
    payload: parseJson(row.payload),
    idempotencyKey: row.idempotency_key,
    maxAttempts: row.max_attempts,
    status: row.status,
    state: row.state,
    attempts: row.attempts,
    runId: row.run_id,
    worker: row.worker,
    leaseExpiresAt: row.lease_expires_at,
    retryAt: row.retry_at,
    blockedReason: row.blocked_reason,
    blockedBy: row.blocked_by,
    lastError: row.last_error,
    result: parseJson(row.result),
    summary: row.summary,
    parents: JSON.parse(row.parents) as string[],
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
  }
}

export function toRun(row: RunRow): Run {
  return {
    id: row.id,
    taskId: row.task_id,
    worker: row.worker,
    attempt: row.attempt,
    startedAt: row.started_at,
    leaseExpiresAt: row.lease_expires_at,
    endedAt: row.ended_at,
    outcome: row.outcome,
    error: row.error,
    summary: row.summary,
    result: parseJson(row.result),
    metadata: parseJson(row.metadata),
  }
}
