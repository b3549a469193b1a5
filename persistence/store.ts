/**
 * The store boundary: every database operation the committed step (src/core/kernel.ts)
 * and the task and session write bodies need, and nothing else. A store only loads and
 * writes; every rule (guards, facts, what a finished parent is, the claim loop, the
 * cascade) lives in storage-free code above it.
 *
 * Operations may answer synchronously (SQLite: better-sqlite3 inside one IMMEDIATE
 * transaction) or with a promise (PostgreSQL: one client between BEGIN and COMMIT). The
 * step is written once, as a program that yields operations (src/core/io.ts); each store's
 * driver runs it its own way, so SQLite pays for no promise.
 *
 * What a store must guarantee:
 * - `write(program)` runs the whole program in one transaction that either commits every
 *   operation or none; two writes that touch the same actor are serialized (SQLite: one
 *   writer at a time; PostgreSQL: row locks), and `saveActor` checks the version.
 * - A write the database refuses transiently (busy, serialization failure, deadlock, a
 *   dropped connection) is retried whole by the store, invisibly; a program must
 *   therefore have no effect outside the store until the write resolves.
 * - Journal `seq`s increase in one order that a follower reading "after seq N" never
 *   skips.
 */
import type { RunOutcome, TaskStatus } from '../machines/task.js'
import type { JournalEntry } from '../src/types.js'

export type Awaitable<T> = T | Promise<T>

/** The standard columns of an actor row, without its (large) snapshot. */
export interface ActorRow {
  machine_id: string
  machine_version: number
  version: number
  state: string
}

/** An actor row with its persisted snapshot, as a migration reads it. */
export interface ActorSnapshotRow extends ActorRow {
  id: string
  snapshot: string
}

/** One accepted step's write of an actor row: snapshot, state and projection, together. */
export interface ActorWrite {
  machineId: string
  machineVersion: number
  state: string
  /** The persisted XState snapshot, as JSON. */
  snapshot: string
  updatedAt: number
  /** Values of the kind's projection columns, in the kind's order. */
  projection: readonly unknown[]
}

/** Where a family of actors lives: its table and the projection columns each step writes. */
export interface ActorTable {
  table: string
  projection: readonly string[]
}

export interface JournalWrite {
  machineId: string
  actorId: string
  kind: string
  eventType: string
  /** The event as JSON (secrets removed). */
  event: string
  stateBefore: string | null
  stateAfter: string
  runId: string | null
  actorVersion: number
  at: number
}

/** A timer set (upsert) or cancelled by a step, applied in the step's action order. */
export type TimerChange = { upsert: TimerRow } | { cancel: { actorId: string; timerId: string } }

export interface TimerRow {
  actor_id: string
  timer_id: string
  machine_id: string
  due_at: number
  /** The event to deliver, as JSON. */
  event: string
}

/** A new task's static columns; the creating step fills in snapshot and projection. */
export interface NewTaskRow {
  id: string
  title: string
  body: string | null
  assignee: string | null
  tenant: string | null
  priority: number
  payload: string | null
  idempotencyKey: string | null
  maxAttempts: number
}

/** A parent of a task as the claim gate's facts need it. */
export interface ParentRow {
  id: string
  status: TaskStatus
  completed_at: number | null
}

/** Which ready tasks a claimNext looks at. */
export interface ReadyFilter {
  /** Only this assignee's tasks; without it (and without anyAssignee) only unassigned ones. */
  assignee?: string
  /** Tasks of every assignee and none. */
  anyAssignee?: boolean
  tenant?: string
}

/** The claim a claimNext with an idempotency key made. */
export interface ClaimKeyRow {
  task_id: string
  run_id: string
  worker: string
  attempt: number
  lease_expires_at: number | null
  /** 1 while that run still holds the task. */
  held: 0 | 1
  token: string
}

export interface OpenRun {
  taskId: string
  runId: string
  worker: string
  attempt: number
  startedAt: number
  leaseExpiresAt: number
  claimKey: string | null
}

export interface CloseRun {
  taskId: string
  runId: string
  endedAt: number
  outcome: RunOutcome
  error: string | null
  summary: string | null
  /** JSON, or null. */
  result: string | null
  metadata: string | null
}

export interface TaskRow {
  id: string
  title: string
  body: string | null
  assignee: string | null
  tenant: string | null
  priority: number
  payload: string | null
  idempotency_key: string | null
  max_attempts: number
  status: TaskStatus
  state: string
  attempts: number
  run_id: string | null
  worker: string | null
  lease_expires_at: number | null
  retry_at: number | null
  blocked_reason: string | null
  blocked_by: string | null
  last_error: string | null
  result: string | null
  summary: string | null
  created_at: number
  updated_at: number
  completed_at: number | null
  parents: string
}

export interface RunRow {
  id: string
  task_id: string
  worker: string
  attempt: number
  started_at: number
  lease_expires_at: number
  ended_at: number | null
  outcome: RunOutcome | null
  error: string | null
  summary: string | null
  result: string | null
  metadata: string | null
  claim_key: string | null
}

export interface TaskFilter {
  status?: TaskStatus
  assignee?: string
  tenant?: string
  limit: number
  /** Tasks created after this one (its id), for paging. */
  after?: string
}

export interface SessionRow {
  id: string
  state: string
  status: string
  agent: string | null
  model: string | null
  generation: number
  attempts: number
  snapshot: string
  created_at: number
  updated_at: number
}

/** A journal row as every store returns it (persistence/journal-rows.ts maps it to the API's entry). */
export interface JournalRow {
  seq: number
  machine_id: string
  actor_id: string
  kind: string
  event_type: string
  /** The event as JSON text. */
  event: string
  state_before: string | null
  state_after: string
  run_id: string | null
  actor_version: number
  at: number
}

/**
 * What the API reads outside a write transaction (a snapshot of committed state). Rows
 * are the same shape on every store.
 */
export interface ReadStore {
  task(id: string): Awaitable<TaskRow | null>
  taskExists(id: string): Awaitable<boolean>
  tasks(filter: TaskFilter): Awaitable<TaskRow[]>
  childIds(parentId: string): Awaitable<string[]>
  runs(taskId: string): Awaitable<RunRow[]>
  session(id: string): Awaitable<SessionRow | null>
  sessions(status: string | null, limit: number): Awaitable<SessionRow[]>
}

/** Runs reads against a store, retrying what the store refuses transiently (busy, a dropped connection). */
export interface ReadDriver {
  read<T>(fn: (reads: ReadStore) => Awaitable<T>): Promise<T>
}

/** A page of the journal: entries after `after`, in seq order, optionally of one machine or actor. */
export interface JournalPage {
  machineId?: string
  actorId?: string
  after: number
  limit: number
  /** Never beyond this seq (a follower reads only up to the journal's horizon). */
  upTo?: number
}

/** The journal as its followers (subscriptions, `events()`) read it. */
export interface JournalSource {
  page(query: JournalPage): Awaitable<JournalEntry[]>
  /**
   * The highest seq at or below which every entry is final: committed, or never to be (a
   * rolled-back seq). A follower may move its cursor there and never miss an entry.
   * SQLite (one writer at a time): the highest seq. PostgreSQL: see postgres/journal.ts.
   */
  horizon(): Awaitable<number>
  /** Whether anything may have been committed since the last call (a cheap check, polled). */
  changed(): Awaitable<boolean>
}

/** The operations available inside a write transaction. */
export interface StepStore {
  // ---- actors (any family) ----
  /** The actor's row, locked until commit against other writers (PostgreSQL: FOR NO KEY UPDATE). */
  loadActor(at: ActorTable, id: string): Awaitable<ActorRow | undefined>
  loadSnapshot(at: ActorTable, id: string): Awaitable<string>
  /**
   * Write an accepted step's write set: the actor row (only if it is at
   * `expectedVersion`), then its journal entries (their seqs, in order) and its timer
   * changes. Null, with nothing written, if the row is not at that version.
   */
  saveStep(
    at: ActorTable,
    id: string,
    expectedVersion: number,
    write: ActorWrite,
    journal: readonly JournalWrite[],
    timers: readonly TimerChange[],
  ): Awaitable<number[] | null>
  /** Rows whose snapshot was written by another machine version (a reload migrates them). */
  actorsOfOtherVersion(at: ActorTable, machineVersion: number): Awaitable<ActorSnapshotRow[]>

  // ---- timers ----
  deleteTimer(actorId: string, timerId: string): Awaitable<void>
  dueTimers(now: number, limit: number): Awaitable<TimerRow[]>

  // ---- tasks ----
  insertTask(row: NewTaskRow, now: number): Awaitable<void>
  taskExists(id: string): Awaitable<boolean>
  taskByIdempotencyKey(key: string): Awaitable<string | null>
  runExists(taskId: string, runId: string): Awaitable<boolean>
  /**
   * Serialize changes of the dependency graph with every other writer until commit, so two
   * links committed at the same moment cannot close a cycle that neither one's check saw.
   */
  lockGraph(): Awaitable<void>
  linkExists(parentId: string, childId: string): Awaitable<boolean>
  insertLink(parentId: string, childId: string, now: number): Awaitable<void>
  deleteLink(parentId: string, childId: string): Awaitable<void>
  /** Is `ancestor` reachable from `taskId` by walking parent links upward? */
  isAncestor(ancestor: string, taskId: string): Awaitable<boolean>
  /**
   * The parents of a task, and one task as a parent. With `lock`, the rows are locked
   * against a concurrent completion until commit (PostgreSQL: FOR SHARE): a step that adds
   * links reads its new parents so, because a completing parent cannot see an uncommitted
   * link to promote through. Every step also holds its own actor's row from loadActor on,
   * so two parents completing at once serialize at their child. (SQLite: one writer at a
   * time already; nothing to lock.)
   */
  parentRows(childId: string, lock: boolean): Awaitable<ParentRow[]>
  parentRow(id: string, lock: boolean): Awaitable<ParentRow | undefined>
  childIds(parentId: string): Awaitable<string[]>
  /** Ready tasks the filter admits, in claim order (highest priority, then oldest). */
  readyCandidates(filter: ReadyFilter, limit: number): Awaitable<string[]>
  /**
   * The run a claimNext with this idempotency key opened, if any. Holds other claims of the
   * same key back until commit, so one in flight is found rather than raced (PostgreSQL:
   * an advisory lock; SQLite: one writer at a time already).
   */
  claimByKey(key: string): Awaitable<ClaimKeyRow | null>
  openRun(run: OpenRun): Awaitable<void>
  /** Close an open run; false if it was not open. */
  closeRun(run: CloseRun): Awaitable<boolean>
  extendRun(taskId: string, runId: string, leaseExpiresAt: number): Awaitable<void>
  recordResult(taskId: string, result: string | null, summary: string | null): Awaitable<void>

  // ---- sessions ----
  insertSession(id: string, now: number): Awaitable<void>
  /** The session's persisted snapshot, or null when it does not exist. */
  sessionSnapshot(id: string): Awaitable<string | null>
}

// ---- the inspector's read side ----

/** A task as the inspector's lists show it: its insertion order `n` (for paging) and projection. */
export interface TaskListRow {
  n: number
  id: string
  title: string
  status: string
  state: string
  assignee: string | null
  tenant: string | null
  priority: number
  attempts: number
  updated_at: number
}

/** A task row with its persisted snapshot and machine columns, and its insertion order `n`. */
export interface TaskActorRow extends Omit<TaskRow, 'parents'> {
  n: number
  machine_id: string
  machine_version: number
  snapshot: string
  version: number
}

/** A session as the inspector's lists show it. */
export interface SessionListRow {
  n: number
  id: string
  status: string
  state: string
  agent: string | null
  model: string | null
  generation: number
  attempts: number
  created_at: number
  updated_at: number
}

/** A session row with its machine columns and insertion order `n`. */
export interface SessionActorRow extends SessionRow {
  n: number
  machine_id: string
  machine_version: number
  version: number
}

export interface TaskListQuery {
  status?: string
  assignee?: string
  tenant?: string
  /** Title contains this (case-insensitive, no wildcards), or the id is exactly this. */
  q?: string
  /** Only tasks inserted after the task of this `n`. */
  afterN?: number
  limit: number
}

/**
 * Everything the inspector reads, on any store. Its own connection, read-only at the
 * database (SQLite: a read-only handle with query_only; PostgreSQL: a pool whose sessions
 * have default_transaction_read_only on), so a bug in it cannot write. Each call is one
 * statement (its own snapshot of committed state).
 */
export interface InspectReads {
  countsByStatus(table: 'tasks' | 'sessions'): Awaitable<Array<{ status: string; n: number }>>
  tasks(query: TaskListQuery): Awaitable<TaskListRow[]>
  /** The insertion order of a task or session, or null when it does not exist. */
  orderOf(table: 'tasks' | 'sessions', id: string): Awaitable<number | null>
  task(id: string): Awaitable<TaskActorRow | null>
  tasksByIds(ids: readonly string[]): Awaitable<TaskListRow[]>
  parentIds(childId: string, limit: number): Awaitable<string[]>
  childIds(parentId: string, limit: number): Awaitable<string[]>
  /** Task ids up to `depth` links above or below `focus` (itself included), at most `limit`; each walk stops after `cap` rows. */
  neighbourhood(focus: string, depth: number, cap: number, limit: number): Awaitable<string[]>
  /** The links whose child is one of `childIds`. */
  linksInto(childIds: readonly string[]): Awaitable<Array<{ parent: string; child: string }>>
  session(id: string): Awaitable<SessionActorRow | null>
  sessionsByIds(ids: readonly string[]): Awaitable<SessionListRow[]>
  sessions(status: string | null, afterN: number, limit: number): Awaitable<SessionListRow[]>
  /** A task's runs, newest first, and how many it has. */
  runs(taskId: string, limit: number): Awaitable<{ rows: RunRow[]; total: number }>

  // ---- the journal, as rows (journal-rows.ts) ----
  /** One actor's entries with seq < before, newest first. */
  actorJournalDesc(actorId: string, machineId: string, before: number, limit: number): Awaitable<JournalRow[]>
  /** One actor's entries, oldest first. */
  actorJournalAsc(actorId: string, machineId: string, limit: number): Awaitable<JournalRow[]>
  actorJournalCount(actorId: string, machineId: string): Awaitable<number>
  /** The actor's highest seq (0: none). */
  lastActorSeq(actorId: string, machineId: string): Awaitable<number>
  /** For each actor, its last entry with seq < `seq` (actors without one are left out). */
  lastEntriesBefore(actorIds: readonly string[], machineId: string, seq: number): Awaitable<JournalRow[]>
  entry(seq: number): Awaitable<JournalRow | null>
  /** The entries one step of an actor wrote (they share actor_version), in seq order. */
  stepEntries(actorId: string, machineId: string, actorVersion: number): Awaitable<JournalRow[]>
  /** Entries after `after` up to `upTo`, in seq order. */
  journalAfter(after: number, upTo: number, limit: number): Awaitable<JournalRow[]>
  /** The last `limit` entries at or below `upTo`, in seq order. */
  latestJournal(upTo: number, limit: number): Awaitable<JournalRow[]>
}

/** The inspector's connection to one store: its reads (retried as the store retries reads) and the journal's horizon. */
export interface InspectSource {
  /** The file path, or the URL without its password and the schema. */
  readonly where: string
  read<T>(fn: (reads: InspectReads) => Awaitable<T>): Promise<T>
  /** The journal as a follower sees it: `horizon()` and `changed()`. */
  journal: Pick<JournalSource, 'horizon' | 'changed'>
  /**
   * The store's clock (ms since the epoch), as steps record time: what a cooldown's
   * `until` is compared with (PostgreSQL: the database's, whatever this host's clock says).
   */
  now(): number
  close(): Promise<void>
}
