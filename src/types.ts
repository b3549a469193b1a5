/**
 * The public interfaces of lockstep. Every method returns a Promise so that a networked
 * store can implement the same interfaces; the SQLite store runs synchronous
 * transactions underneath.
 */
import type { RunOutcome, TaskStatus } from '../machines/task.js'

export type { RunOutcome, TaskStatus }

/** Any value that survives JSON.stringify/parse unchanged. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

export interface Task {
  id: string
  title: string
  body: string | null
  assignee: string | null
  tenant: string | null
  /** Higher is claimed first. */
  priority: number
  payload: Json | null
  idempotencyKey: string | null
  maxAttempts: number
  status: TaskStatus
  /** The machine state: like `status`, but tells `todo` (waiting on parents) from `backoff` (waiting to retry). */
  state: string
  /** Claims made so far. */
  attempts: number
  /** The run holding the task while it is `running`. */
  runId: string | null
  worker: string | null
  leaseExpiresAt: number | null
  /** When a failed attempt will be retried (state `backoff`). */
  retryAt: number | null
  blockedReason: string | null
  /** The failed or cancelled parent this task waits on, when that is why it is blocked. */
  blockedBy: string | null
  lastError: string | null
  result: Json | null
  summary: string | null
  parents: string[]
  createdAt: number
  updatedAt: number
  completedAt: number | null
}

export interface CreateTaskInput {
  title: string
  body?: string | null
  assignee?: string | null
  tenant?: string | null
  priority?: number
  /** Tasks that must all be `done` before this one can be claimed. Linked in the same transaction. */
  parents?: string[]
  payload?: Json | null
  /** A second create with the same key returns the first task instead of creating another. */
  idempotencyKey?: string | null
  /** Claims allowed before a failing task stays `failed` (default 3). */
  maxAttempts?: number
}

/** Proof of holding a task: present it to heartbeat, complete or fail. */
export interface Claim {
  taskId: string
  runId: string
  /** Fencing token: only the current holder's token is accepted. */
  token: string
  worker: string
  leaseExpiresAt: number
  /** 1 for the first claim of the task, 2 for its first retry, ... */
  attempt: number
}

export interface ClaimOptions {
  worker: string
  /** Lease length; heartbeat before it lapses or the task is reclaimed (default 30 s). */
  leaseMs?: number
  /**
   * Assignees are exclusive: a task with an assignee is claimed only by a claim naming
   * that assignee, and a claim naming none takes only unassigned tasks (unless
   * `anyAssignee`). Claiming by id a task that is not this claim's is ASSIGNEE_MISMATCH.
   */
  assignee?: string
  /** Take tasks of any assignee, and unassigned ones (cannot be combined with `assignee`). */
  anyAssignee?: boolean
}

export interface ClaimNextOptions extends ClaimOptions {
  /** Only tasks of this tenant (a filter: without it, tasks of every tenant). */
  tenant?: string
  /**
   * A retried claimNext with the same key returns the claim the first one made (while it
   * is still held; LEASE_LOST once it is not) instead of claiming another task.
   */
  idempotencyKey?: string
}

export interface CompleteInput {
  result?: Json | null
  summary?: string | null
  metadata?: Json | null
}

export interface HeartbeatOptions {
  /** A new lease length from now (default: the claim's current one). */
  leaseMs?: number
}

export interface ReleaseInput {
  reason?: string | null
}

/** The longest error text `fail()` accepts; a worker pool truncates what it records to this. */
export const MAX_ERROR_LENGTH = 100_000

export interface FailInput {
  error: string | Error
  /** Retry with backoff while attempts are left (default true). */
  retryable?: boolean
}

export interface ListFilter {
  status?: TaskStatus
  assignee?: string
  tenant?: string
  /** 1..10,000 (default 100). */
  limit?: number
  /** Paging: only tasks created after this task id. */
  after?: string
}

export interface Run {
  id: string
  taskId: string
  worker: string
  attempt: number
  startedAt: number
  leaseExpiresAt: number
  endedAt: number | null
  outcome: RunOutcome | null
  error: string | null
  summary: string | null
  result: Json | null
  metadata: Json | null
}

/** One journal row: an accepted event of one actor, in global commit order. */
export interface JournalEntry {
  /** Global, strictly increasing commit order. */
  seq: number
  /** Which machine the actor runs: 'lockstep.task' or 'lockstep.session'. */
  machineId: string
  actorId: string
  kind: string
  eventType: string
  /** The event as the machine received it (without the facts read for its guards). */
  event: Record<string, unknown>
  stateBefore: string | null
  stateAfter: string
  runId: string | null
  actorVersion: number
  /** Milliseconds since the epoch. */
  at: number
}

export interface EventsQuery {
  /** Only this actor's entries. */
  taskId?: string
  /** Only entries with `seq` greater than this. */
  after?: number
  /** 1..10,000 (default 1,000). */
  limit?: number
}

export interface SubscribeOptions {
  /** Deliver entries after this seq first (default: only entries committed from now on). */
  after?: number
  taskId?: string
}

export type Unsubscribe = () => void

export interface TaskBoard {
  create(input: CreateTaskInput): Promise<Task>
  link(parentId: string, childId: string): Promise<Task>
  unlink(parentId: string, childId: string): Promise<Task>
  /**
   * Claim one task. `null` means it is not claimable now (taken, gated, not ready);
   * ASSIGNEE_MISMATCH means it is never this claim's (see ClaimOptions.assignee).
   */
  claim(taskId: string, options: ClaimOptions): Promise<Claim | null>
  /** Claim the highest-priority, oldest ready task this claim may take. `null` when there is none. */
  claimNext(options: ClaimNextOptions): Promise<Claim | null>
  /** Extend the lease. A stale claim gets LEASE_LOST; a run id the task never had, RUN_NOT_FOUND. */
  heartbeat(claim: Claim, options?: HeartbeatOptions): Promise<Claim>
  complete(claim: Claim, input?: CompleteInput): Promise<Task>
  fail(claim: Claim, input: FailInput): Promise<Task>
  /** Give a claimed task back: `ready` again at once, run outcome `released`, the attempt not counted. */
  release(claim: Claim, input?: ReleaseInput): Promise<Task>
  block(taskId: string, input: { reason: string }): Promise<Task>
  unblock(taskId: string): Promise<Task>
  cancel(taskId: string, input?: { reason?: string | null }): Promise<Task>
  /** Give a `failed` task a fresh set of attempts; children blocked by it proceed again. */
  retry(taskId: string): Promise<Task>
  archive(taskId: string): Promise<Task>
  get(taskId: string): Promise<Task | null>
  list(filter?: ListFilter): Promise<Task[]>
  /** Ids of the tasks that depend on this one. */
  children(taskId: string): Promise<string[]>
  events(query?: EventsQuery): Promise<JournalEntry[]>
  runs(taskId: string): Promise<Run[]>
  /**
   * Call `listener` with every journal entry as it commits, from this process or any
   * other process using the same file, in `seq` order.
   */
  subscribe(listener: (entry: JournalEntry) => void, options?: SubscribeOptions): Unsubscribe
  /** Start a worker pool that claims and runs matching tasks until stopped. */
  work(options: import('./worker-pool.js').WorkOptions): import('./worker-pool.js').WorkerPool
}

export type { HandlerContext, HandlerResult, TaskHandler, WorkerPool, WorkOptions } from './worker-pool.js'

export interface TaskDefaults {
  leaseMs: number
  maxAttempts: number
  /** First retry delay; doubles per failed attempt, with jitter. */
  backoffBaseMs: number
  backoffMaxMs: number
}

export interface OrchestratorOptions {
  /** SQLite file (default ./lockstep.db), or ':memory:'. */
  path?: string
  /**
   * A PostgreSQL database instead of a SQLite file: `postgres://` or `postgresql://`.
   * Processes on different hosts that open the same URL and schema share one board.
   * (In progress: the inspector and the MCP server read SQLite files only, for now.)
   */
  url?: string
  /** PostgreSQL: the schema holding lockstep's tables (default `lockstep`), so several apps can share a database. */
  schema?: string
  /**
   * PostgreSQL: options passed to node-postgres's Pool (max, idleTimeoutMillis,
   * connectionTimeoutMillis, statement_timeout, ssl, ...). Size `max` to at least this
   * process's concurrent writes plus one: a worker pool holds no connection while its
   * handlers run, only for each step.
   */
  pool?: Record<string, unknown>
  /**
   * Open an existing lockstep file for reading only (default false): no WAL switch, no
   * migration, no timer deliveries, no checkpointer. Every write (create, claim, ...,
   * runDueTimers, reload, work) fails with READ_ONLY before any SQL. A missing, empty or
   * foreign file is STORE_OPEN_FAILED; a schema of another lockstep version SCHEMA_TOO_OLD/NEW.
   */
  readOnly?: boolean
  /** See README: NORMAL (default) survives process crashes, FULL also power loss. */
  synchronous?: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA'
  /**
   * Where WAL checkpoints run. 'background' (default): a worker thread checkpoints every
   * 100 ms without blocking anyone, so no commit waits for a checkpoint's fsyncs.
   * 'inline': SQLite's automatic checkpoint inside the commit that crosses 1,000 pages
   * (no extra thread; for short-lived scripts).
   */
  checkpoint?: 'background' | 'inline'
  /** SQLite busy_timeout for the write lock, per attempt (default 2,000 ms). */
  busyTimeoutMs?: number
  /** Total time lockstep keeps retrying a busy write before STORE_BUSY (default 60,000 ms). */
  busyRetryMs?: number
  /** How often to look for commits and due timers of other processes (default 50 ms). */
  pollMs?: number
  defaults?: Partial<TaskDefaults>
  /** Largest accepted payload/result/metadata, as JSON bytes (default 1 MiB). */
  maxPayloadBytes?: number
  /** Clock, milliseconds since the epoch. For tests. */
  now?: () => number
  /** Errors of background loops (timers, subscriptions). Default: console.error. */
  onError?: (error: unknown) => void
  /** Deliver durable timers (leases, retries) from this orchestrator (default true). */
  runTimers?: boolean
  /** How session decisions (dispatch, abort, notify) reach the host; also orch.sessions.setAdapter(). */
  sessionAdapter?: import('./sessions.js').SessionAdapter
}

export interface ReloadOptions {
  /** New machine definitions; persisted snapshots of older versions are migrated. */
  machines?: {
    task?: import('./core/kernel.js').MachineDefinition
    session?: import('./core/kernel.js').MachineDefinition
  }
}

export interface ReloadResult {
  machines: Array<{ machineId: string; version: number; migrated: number }>
}

export interface Orchestrator {
  readonly path: string
  /** Opened with `readOnly: true`: reads and subscriptions work, writes fail with READ_ONLY. */
  readonly readOnly: boolean
  readonly tasks: TaskBoard
  readonly sessions: import('./sessions.js').Sessions
  /** Deliver due timers now instead of waiting for the loop (tests, scripts). */
  runDueTimers(): Promise<number>
  /**
   * Hot reload: pause intake (new calls wait, none fail), let in-flight calls finish,
   * swap machine definitions, migrate persisted snapshots of older versions (all or
   * nothing; an actor that cannot be migrated is named in SNAPSHOT_INCOMPATIBLE), resume.
   */
  reload(options?: ReloadOptions): Promise<ReloadResult>
  /** Serve the visual state inspector for this file on 127.0.0.1 (see README: Inspector). */
  inspect(options?: import('./inspector/server.js').InspectorOptions): Promise<import('./inspector/server.js').Inspector>
  /** Run `fn` with intake paused the same way (e.g. to swap request handlers atomically). Do not call this orchestrator from inside `fn`. */
  barrier<T>(fn: () => Promise<T> | T): Promise<T>
  /** Stop background loops and close the database. Idempotent. */
  close(): Promise<void>
}
