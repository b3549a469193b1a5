/**
 * The public interfaces of lockstep. Every method returns a Promise so that a networked
 * store can implement the same interfaces; the SQLite store runs synchronous
 * transactions underneath.
 *
 * A leaf: it imports types only from the pure machines and from xstate, never from the
 * runtime or the stores, so every module can import it without an import circle.
 */
import type { AnyStateMachine } from 'xstate'
import type { Attempt, ModelError, Notice, SessionPolicy } from '../machines/session.js'
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

/** The most claims one claimMany makes (bounds one transaction's work and lock hold). */
export const MAX_CLAIM_MANY = 1_000

export interface ClaimManyOptions extends ClaimOptions {
  /** Claim at most this many (1 to MAX_CLAIM_MANY). */
  limit: number
  /** Only tasks of this tenant (a filter: without it, tasks of every tenant). */
  tenant?: string
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
  /**
   * Claim up to `limit` ready tasks in claim order, in one transaction (one round trip's
   * worth of locking on PostgreSQL): a worker with several free slots fills them at once.
   * Each claim is exactly what claimNext would have returned; fewer (or none) when fewer
   * are ready.
   */
  claimMany(options: ClaimManyOptions): Promise<Claim[]>
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
  work(options: WorkOptions): WorkerPool
}

// ---- worker pools ----

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

/**
 * What a handler returns: nothing, or `{ result?, summary?, metadata? }`. Throwing fails
 * the run instead; a value the board refuses fails it without retry (RESULT_REFUSED).
 */
export type HandlerResult = CompleteInput | void | undefined

export type TaskHandler = (task: Task, context: HandlerContext) => Promise<HandlerResult>

export interface WorkOptions {
  /** This pool's worker name, recorded on every claim and run. */
  worker: string
  /**
   * Claim this assignee's tasks only. Without it the pool takes unassigned tasks only
   * (assignees are exclusive), unless `anyAssignee`.
   */
  assignee?: string
  /** Claim tasks of every assignee and unassigned ones (cannot be combined with `assignee`). */
  anyAssignee?: boolean
  /** Claim only this tenant's tasks. */
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
  stop(options?: StopOptions): Promise<void>
}

export interface StopOptions {
  /** How long to wait for running handlers (default: the pool's stopTimeoutMs). */
  timeoutMs?: number
}

// ---- machine definitions (reload) ----

/** A persisted XState snapshot as JSON sees it. */
export type PersistedSnapshot = { value: unknown; context: Record<string, unknown>; [key: string]: unknown }
export type SnapshotMigration = (snapshot: PersistedSnapshot) => PersistedSnapshot

/** What a reload swaps in for one actor kind. */
export interface MachineDefinition {
  machine: AnyStateMachine
  version: number
  migrations?: Readonly<Record<number, SnapshotMigration>>
}

// ---- sessions ----

/** How the machine's decisions reach the host. Called after commit, in the committing process. */
export interface SessionAdapter {
  /** Send `message` to `model` (a fallback's replay keeps the message id). */
  prompt(sessionId: string, model: string, message: unknown, info: { generation: number; messageId: string }): void | Promise<void>
  /** Stop the request in flight (the session marks this as its own abort). */
  abort(sessionId: string, info: { generation: number; model: string }): void | Promise<void>
  notify?(sessionId: string, notice: Notice): void
}

export interface ModelStatus {
  model: string
  current: boolean
  /** Cooling down until then (ms since the epoch), or null. */
  coolingUntil: number | null
  reason: string | null
}

export interface Session {
  id: string
  agent: string | null
  /** idle | active | exhausted | archived (idle past its TTL; the next prompt reopens it) | deleted */
  status: string
  /** The machine state, e.g. `active.awaitingFirstToken`. */
  state: string
  model: string
  models: ModelStatus[]
  generation: number
  /** Fallback switches made for the current prompt. */
  attempts: number
  messageId: string | null
  /** Every dispatch of the current prompt and how it ended. */
  log: Attempt[]
  lastFailure: string | null
  approvals: Array<{ tool: string; once: boolean; at: number }>
  createdAt: number
  updatedAt: number
}

export interface OpenSessionInput {
  agent?: string | null
  /** The chain, primary first. */
  models: string[]
  config?: Partial<SessionPolicy>
}

/** What a report did: `kinds` is empty when the machine did not accept it. */
export interface ReportResult {
  accepted: boolean
  kinds: string[]
  /** Why the machine refused the report (no transition); null when it was accepted. */
  reason: string | null
  session: Session
}

export interface Attribution {
  /** The dispatch generation the report is about, when the host knows it. */
  generation?: number | null
  /** The model the report is about, when the host knows it. */
  model?: string | null
}

export interface CallContext {
  model: string
  message: unknown
  signal: AbortSignal
  /** Call on every token (or at least the first): it cancels the first-token timeout. */
  onToken(): void
  generation: number
  attempt: number
}

export interface RunInput {
  agent?: string | null
  models: string[]
  config?: Partial<SessionPolicy>
  message: { id?: string } & Record<string, unknown>
  call(context: CallContext): Promise<unknown>
  /** Fallback/exhausted notices while it runs. */
  onNotice?(notice: Notice): void
}

export interface RunResult {
  output: unknown
  model: string
  generation: number
  attempts: Attempt[]
}

/** The sessions API (`orch.sessions`). */
export interface SessionsApi {
  /** Set (or clear) the host adapter. */
  setAdapter(adapter: SessionAdapter | null): void
  /** Open a session, or update its chain/agent/config if it exists. */
  open(id: string, input: OpenSessionInput): Promise<Session>
  get(id: string): Promise<Session | null>
  list(filter?: { status?: string; limit?: number }): Promise<Session[]>
  /** A new message. With `model`, the host already sent it there; without, the session dispatches it (adapter.prompt). */
  prompt(id: string, input: { message: unknown; messageId?: string; model?: string | null }): Promise<ReportResult>
  token(id: string, input?: Attribution): Promise<ReportResult>
  /** A model error as the host saw it: HTTP status, name, message, code, Retry-After. */
  error(id: string, input: Attribution & { error: ModelError | Error | string }): Promise<ReportResult>
  aborted(id: string, input?: Attribution): Promise<ReportResult>
  idle(id: string, input?: Attribution): Promise<ReportResult>
  modelSelected(id: string, model: string): Promise<ReportResult>
  deleted(id: string): Promise<ReportResult>
  approve(id: string, tool: string, options?: { once?: boolean }): Promise<Session>
  revoke(id: string, tool: string): Promise<Session>
  /** Is `tool` approved? A `once` approval is consumed by the call that returns true, exactly once. */
  authorize(id: string, tool: string): Promise<boolean>
  events(query?: { sessionId?: string; after?: number; limit?: number }): Promise<JournalEntry[]>
  subscribe(listener: (entry: JournalEntry) => void, options?: { sessionId?: string; after?: number }): Unsubscribe
  /**
   * Call the session's current model with `message`, falling back along the chain on a
   * retryable failure; resolves with the answer (CHAIN_EXHAUSTED, MODEL_CALL_FAILED otherwise).
   */
  run(id: string, input: RunInput): Promise<RunResult>
}

// ---- the inspector ----

export interface InspectorOptions {
  /** TCP port (default 4600; 0 picks a free one). */
  port?: number
  /** Interface to bind (default 127.0.0.1). Anything but loopback requires `token`. */
  host?: string
  /** Shared secret: every request must carry it as `?token=` or `Authorization: Bearer`. */
  token?: string
  /** How often the journal is checked for commits of any process (default 100 ms). */
  pollMs?: number
  /**
   * Machine definitions to draw and replay, by machine id, if the orchestrator was reloaded
   * with others than the built-in `lockstep.task` / `lockstep.session`.
   */
  machines?: Record<string, { machine: AnyStateMachine; version: number }>
  /**
   * Also stream actors and their events to Stately's inspector tools: `{ url }` connects
   * `createWebSocketInspector` of the optional package `@statelyai/inspect` (install it
   * yourself) to e.g. `ws://localhost:8080` (its `createInspectorServer`); `{ inspector }`
   * takes any inspector you built with that package (`createSkyInspector`, ...). Actors
   * appear when they next change; each committed step sends one event and one snapshot.
   */
  stately?: { url: string } | { inspector: StatelyInspectorLike }
}

/** The part of an `@statelyai/inspect` inspector the bridge uses. */
export interface StatelyInspectorLike {
  actor(actor: unknown, snapshot?: Record<string, unknown>, info?: Record<string, unknown>): void
  event(actor: unknown, event: Record<string, unknown>, info?: Record<string, unknown>): void
  snapshot(actor: unknown, snapshot: Record<string, unknown>, info?: Record<string, unknown>): void
  stop?(): void
}

export interface Inspector {
  /** The page's address (with `?token=` when a token is set). */
  url: string
  port: number
  host: string
  /** Stop serving: ends every event stream and closes the read-only connection. Idempotent. */
  close(): Promise<void>
}

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
   * Open an existing lockstep file (or PostgreSQL schema) for reading only (default
   * false): no migration, no timer deliveries; SQLite: no WAL switch, no checkpointer;
   * PostgreSQL: connections read-only at the server. Every write (create, claim, ...,
   * runDueTimers, reload, work) fails with READ_ONLY before any SQL. A missing, empty or
   * foreign file or schema is STORE_OPEN_FAILED; a schema of another lockstep version
   * SCHEMA_TOO_OLD/NEW.
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
  sessionAdapter?: SessionAdapter
}

export interface ReloadOptions {
  /** New machine definitions; persisted snapshots of older versions are migrated. */
  machines?: {
    task?: MachineDefinition
    session?: MachineDefinition
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
  readonly sessions: SessionsApi
  /** Deliver due timers now instead of waiting for the loop (tests, scripts). */
  runDueTimers(): Promise<number>
  /**
   * Hot reload: pause intake (new calls wait, none fail), let in-flight calls finish,
   * swap machine definitions, migrate persisted snapshots of older versions (all or
   * nothing; an actor that cannot be migrated is named in SNAPSHOT_INCOMPATIBLE), resume.
   */
  reload(options?: ReloadOptions): Promise<ReloadResult>
  /** Serve the visual state inspector for this file or schema on 127.0.0.1 (see README: Inspector). */
  inspect(options?: InspectorOptions): Promise<Inspector>
  /** Run `fn` with intake paused the same way (e.g. to swap request handlers atomically). Do not call this orchestrator from inside `fn`. */
  barrier<T>(fn: () => Promise<T> | T): Promise<T>
  /** Stop background loops and close the database. Idempotent. */
  close(): Promise<void>
}
