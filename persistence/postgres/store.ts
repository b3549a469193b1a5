/**
 * The PostgreSQL store: every operation of the store boundary (persistence/store.ts) as SQL
 * on one transaction's client, and the driver that runs a step program inside
 * withTransaction (awaiting each operation between BEGIN and COMMIT). Like the SQLite
 * store it only loads and writes; the rules live above it, in src/core/.
 *
 * What PostgreSQL needs that SQLite's single writer gave for free:
 * - Claims lock the candidate rows as they read them (FOR NO KEY UPDATE SKIP LOCKED, in
 *   claim order), so claimers on different hosts each get a different task; nothing takes
 *   a table or global lock, and writers to different actors run in parallel.
 * - Actor rows are read without a lock and written with a version check. A step that lost
 *   the race to another writer of the same actor finds the row moved on: it throws a
 *   conflict, and withTransaction reruns the whole program, which then reads the new
 *   version. No lost update, and no lock held across a plain read.
 * - A unique violation on an insert that the program checked for first (idempotency key,
 *   claim key, ids) means another transaction inserted between the check and the insert:
 *   also a conflict, rerun, and the rerun's check sees the winner's row.
 * - claimNext calls with one idempotency key serialize on a transaction-level advisory lock
 *   of that key (claimByKey), so a retry racing its original waits and gets its claim.
 * - Dependency-graph changes serialize on one transaction-level advisory lock per schema
 *   (lockGraph), so two opposite links committed at the same moment cannot both pass the
 *   cycle check (READ COMMITTED: the check after the lock sees the other's commit).
 * - Every time comes from the transaction's database clock (`tx.now`), never the host's.
 *
 * `pg` is only a type import here: the pool (connection.ts) loads it lazily.
 */
import { SESSION_MACHINE_ID, SESSION_MACHINE_VERSION } from '../../machines/session.js'
import { TASK_MACHINE_ID, TASK_MACHINE_VERSION } from '../../machines/task.js'
import { runAsync, type Io } from '../../src/core/io.js'
import type { StoreDriver } from '../../src/core/kernel.js'
import type {
  ActorRow,
  Awaitable,
  ActorSnapshotRow,
  ActorTable,
  ActorWrite,
  ClaimKeyRow,
  CloseRun,
  JournalWrite,
  NewTaskRow,
  OpenRun,
  ParentRow,
  ReadyFilter,
  StepStore,
  TimerChange,
  TimerRow,
} from '../store.js'
import { withTransaction, type FailureKind, type PgConnection, type PgSchema, type PgTx } from './connection.js'
import { appendJournal } from './journal.js'

/**
 * A race lost inside a transaction that only a rerun can settle. It carries SQLSTATE 40001
 * (serialization_failure), so withTransaction treats it exactly like the server's own: roll
 * back, back off with jitter, rerun the program whole (STORE_BUSY only after the budget).
 */
export class RaceLostError extends Error {
  readonly code = '40001'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'RaceLostError'
  }
}

const UNIQUE_VIOLATION = '23505'

/** Run an insert; a unique violation (another transaction inserted the same key first) is a lost race. */
async function insert(tx: PgTx, what: string, text: string, values: unknown[]): Promise<void> {
  try {
    await tx.query(text, values)
  } catch (error) {
    if ((error as { code?: unknown }).code === UNIQUE_VIOLATION) {
      throw new RaceLostError(`${what}: another transaction inserted the same key first`, { cause: error })
    }
    throw error
  }
}

const JOURNAL_COLUMNS = 'machine_id, actor_id, kind, event_type, event, state_before, state_after, run_id, actor_version, at'

/** The database clock in ms, as withTransaction reads it. */
const CLOCK_MS = `floor(date_part('epoch', clock_timestamp()) * 1000)::int8`

/** The SQL of one actor table, built once per schema (tables and columns are the kinds' constants). */
interface TableSql {
  row: string
  snapshot: string
  update: string
  otherVersion: string
}

/** The statements of one schema, built once and shared by every transaction's store. */
export class PgStatements {
  private readonly tables = new Map<string, TableSql>()
  private readonly ready = new Map<string, string>()
  private readonly saves = new Map<string, string>()
  readonly s

  constructor(readonly schema: PgSchema) {
    const t = (name: string) => schema.table(name)
    this.s = {
      upsertTimer: `INSERT INTO ${t('timers')} (actor_id, timer_id, machine_id, due_at, event) VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (actor_id, timer_id) DO UPDATE SET machine_id = excluded.machine_id, due_at = excluded.due_at, event = excluded.event`,
      deleteTimer: `DELETE FROM ${t('timers')} WHERE actor_id = $1 AND timer_id = $2`,
      // Deliverers on several hosts take different timers (the row lock holds until their
      // commit deletes the row), instead of stepping one timer's event twice.
      dueTimers: `SELECT actor_id, timer_id, machine_id, due_at, event FROM ${t('timers')} WHERE due_at <= $1
                  ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
      nextTimer: `SELECT (SELECT due_at FROM ${t('timers')} ORDER BY due_at LIMIT 1) AS due_at, ${CLOCK_MS} AS now_ms`,
      clock: `SELECT ${CLOCK_MS} AS now_ms`,
      // Version 0 and an empty snapshot: the creating step (kernel.createInTx) fills them in.
      insertTask: `INSERT INTO ${t('tasks')} (id, machine_id, machine_version, snapshot, version, title, body, assignee, tenant, priority,
                                              payload, idempotency_key, max_attempts, state, status, created_at, updated_at)
                   VALUES ($1, '${TASK_MACHINE_ID}', ${TASK_MACHINE_VERSION}, '{}', 0, $2, $3, $4, $5, $6, $7, $8, $9, 'created', 'todo', $10, $10)`,
      taskExists: `SELECT 1 FROM ${t('tasks')} WHERE id = $1`,
      byIdempotencyKey: `SELECT id FROM ${t('tasks')} WHERE idempotency_key = $1`,
      runExists: `SELECT 1 FROM ${t('runs')} WHERE task_id = $1 AND id = $2`,
      // Exclusive, transaction-level, one key per schema: link checks serialize with each
      // other only (claims and other steps never take it).
      lockGraph: `SELECT pg_advisory_xact_lock(hashtextextended('lockstep:graph:' || $1, 0))`,
      linkExists: `SELECT 1 FROM ${t('task_links')} WHERE parent_id = $1 AND child_id = $2`,
      insertLink: `INSERT INTO ${t('task_links')} (parent_id, child_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
      deleteLink: `DELETE FROM ${t('task_links')} WHERE parent_id = $1 AND child_id = $2`,
      // UNION (not UNION ALL): each ancestor once, so a walk ends even on a (corrupt) cycle.
      isAncestor: `WITH RECURSIVE up(id) AS (
                     SELECT parent_id FROM ${t('task_links')} WHERE child_id = $1
                     UNION SELECT l.parent_id FROM ${t('task_links')} l JOIN up ON l.child_id = up.id
                   ) SELECT 1 FROM up WHERE id = $2 LIMIT 1`,
      parentRows: `SELECT p.id, p.status, p.completed_at FROM ${t('task_links')} l JOIN ${t('tasks')} p ON p.id = l.parent_id WHERE l.child_id = $1`,
      // A link's new parents are share-locked: their completion (an UPDATE) waits for this
      // commit, or this read waits for it and then sees it done.
      parentRowsLocked: `SELECT p.id, p.status, p.completed_at FROM ${t('task_links')} l JOIN ${t('tasks')} p ON p.id = l.parent_id
                         WHERE l.child_id = $1 FOR SHARE OF p`,
      parentRow: `SELECT id, status, completed_at FROM ${t('tasks')} WHERE id = $1`,
      parentRowLocked: `SELECT id, status, completed_at FROM ${t('tasks')} WHERE id = $1 FOR SHARE`,
      childIds: `SELECT child_id FROM ${t('task_links')} WHERE parent_id = $1`,
      // Exclusive, transaction-level, one key per claim key: a claimNext retried while its
      // original is still in flight waits for it, then finds its run. Without it the retry
      // skipped the task the original had locked (SKIP LOCKED) and, finding no other, answered
      // null. (Claims without a key, and other keys, never take it.)
      lockClaimKey: `SELECT pg_advisory_xact_lock(hashtextextended('lockstep:claim:' || $1 || ':' || $2, 0))`,
      // The snapshot is TEXT (as on SQLite): the token is read from its JSON.
      claimByKey: `SELECT r.task_id, r.id AS run_id, r.worker, r.attempt, t.lease_expires_at,
                          CASE WHEN r.ended_at IS NULL AND t.run_id = r.id THEN 1 ELSE 0 END AS held,
                          (t.snapshot::json -> 'context' ->> 'token') AS token
                   FROM ${t('runs')} r JOIN ${t('tasks')} t ON t.id = r.task_id WHERE r.claim_key = $1`,
      openRun: `INSERT INTO ${t('runs')} (task_id, id, worker, attempt, started_at, lease_expires_at, claim_key) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      closeRun: `UPDATE ${t('runs')} SET ended_at = $1, outcome = $2, error = $3, summary = $4, result = $5, metadata = $6
                 WHERE task_id = $7 AND id = $8 AND ended_at IS NULL`,
      extendRun: `UPDATE ${t('runs')} SET lease_expires_at = $1 WHERE task_id = $2 AND id = $3 AND ended_at IS NULL`,
      recordResult: `UPDATE ${t('tasks')} SET result = $1, summary = $2 WHERE id = $3`,
      insertSession: `INSERT INTO ${t('sessions')} (id, machine_id, machine_version, snapshot, version, state, status, created_at, updated_at)
                      VALUES ($1, '${SESSION_MACHINE_ID}', ${SESSION_MACHINE_VERSION}, '{}', 0, 'opening', 'idle', $2, $2)`,
      sessionSnapshot: `SELECT snapshot FROM ${t('sessions')} WHERE id = $1`,
    }
  }

  table(at: ActorTable): TableSql {
    let sql = this.tables.get(at.table)
    if (!sql) {
      const t = this.schema.table(at.table)
      const n = at.projection.length
      sql = {
        // The snapshot comes along: a restore that misses the kernel's cache would otherwise
        // cost a second round trip, and the row's bytes are on hand anyway.
        // Locked until commit: the facts this step reads next (in later statements, so
        // after any wait for this lock) then include every commit of a step that held the
        // row before; two parents completing at once serialize at their child. The
        // snapshot comes along: a restore that misses the kernel's cache would otherwise
        // cost a second round trip.
        row: `SELECT machine_id, machine_version, version, state, snapshot FROM ${t} WHERE id = $1 FOR NO KEY UPDATE`,
        snapshot: `SELECT snapshot FROM ${t} WHERE id = $1`,
        update: `UPDATE ${t} SET machine_id = $1, machine_version = $2, state = $3, snapshot = $4, version = version + 1, updated_at = $5
                   ${at.projection.map((column, i) => `, ${column} = $${6 + i}`).join('')}
                 WHERE id = $${6 + n} AND version = $${7 + n}`,
        // Locked: a reload rewrites every such row, and a step racing it would only lose its version check.
        otherVersion: `SELECT id, machine_id, machine_version, version, state, snapshot FROM ${t}
                       WHERE machine_version <> $1 AND version > 0 FOR NO KEY UPDATE`,
      }
      this.tables.set(at.table, sql)
    }
    return sql
  }

  /**
   * One statement for a step's whole write set (see PgStore.saveStep), built per shape:
   * the actor table, the number of journal entries, timer upserts and timer deletes.
   */
  saveSql(at: ActorTable, entries: number, upserts: number, deletes: number): string {
    const key = `${at.table}/${entries}/${upserts}/${deletes}`
    let text = this.saves.get(key)
    if (!text) {
      const n = at.projection.length
      let p = 7 + n
      const params = (count: number, casts: string[]) =>
        Array.from({ length: count }, () => `(${casts.map((cast) => `$${++p}${cast}`).join(', ')})`).join(', ')
      // Every part but the UPDATE reads `u` (WHERE EXISTS, an InitPlan run before the part
      // yields its first row): the row's lock is taken before any journal seq is drawn, so
      // two steps of one actor get seqs in their commit order, as appendJournal requires.
      const parts = [`u AS (${this.table(at).update} RETURNING 1)`]
      if (entries > 0) {
        const text = ['', '', '', '', '', '', '', '', '::int8', '::int8']
        parts.push(`j AS (INSERT INTO ${this.schema.table('journal')} (${JOURNAL_COLUMNS})
          SELECT * FROM (VALUES ${params(entries, text)}) v WHERE EXISTS (SELECT 1 FROM u) RETURNING seq)`)
      }
      if (upserts > 0) {
        parts.push(`t AS (INSERT INTO ${this.schema.table('timers')} (actor_id, timer_id, machine_id, due_at, event)
          SELECT * FROM (VALUES ${params(upserts, ['', '', '', '::int8', ''])}) v WHERE EXISTS (SELECT 1 FROM u)
          ON CONFLICT (actor_id, timer_id) DO UPDATE SET machine_id = excluded.machine_id, due_at = excluded.due_at, event = excluded.event)`)
      }
      if (deletes > 0) {
        parts.push(`d AS (DELETE FROM ${this.schema.table('timers')}
          WHERE (actor_id, timer_id) IN (VALUES ${params(deletes, ['', ''])}) AND EXISTS (SELECT 1 FROM u))`)
      }
      text = `WITH ${parts.join(',\n')}
        SELECT (SELECT count(*) FROM u)::int AS updated, ${entries > 0 ? 'ARRAY(SELECT seq FROM j ORDER BY seq)' : "'{}'::int8[]"} AS seqs`
      this.saves.set(key, text)
    }
    return text
  }

  /**
   * Ready tasks in claim order (priority, then age, then insertion), each locked as it is
   * read; rows another transaction holds are skipped, so competing claimers each get a
   * different task and never wait for one another. NO KEY UPDATE, the lock an UPDATE of
   * non-key columns takes: it conflicts with another claimer's (and with any writer of the
   * row) but not with a link or run insert's foreign-key check.
   *
   * The assignee rule as SQLite's query: a named assignee only its own, no assignee only
   * unassigned ones, anyAssignee every one; a tenant narrows any of them. The LIMIT is a
   * literal (one statement per limit), as on SQLite.
   */
  readySql(filter: ReadyFilter, limit: number): { text: string; values: unknown[] } {
    const who = filter.anyAssignee ? 'any' : filter.assignee !== undefined ? 'named' : 'unassigned'
    const literalLimit = Math.max(1, Math.floor(limit))
    const tenant = filter.tenant !== undefined
    const key = `${who}/${tenant ? 'tenant' : 'all'}/${literalLimit}`
    let text = this.ready.get(key)
    if (!text) {
      const where = ["status = 'ready'"]
      let p = 0
      if (tenant) where.push(`tenant = $${++p}`)
      if (who === 'named') where.push(`assignee = $${++p}`)
      if (who === 'unassigned') where.push('assignee IS NULL')
      // The leading ORDER BY columns are fixed by the WHERE (one tenant, one assignee or
      // NULL), so the order is the claim order; naming them lets the planner read the
      // partial index in its own order. Without them an `assignee IS NULL` claim (not an
      // equality to the planner) walked tasks_ready past every assigned ready row (EXPLAIN).
      const leading = (tenant ? ['tenant'] : []).concat(who === 'any' ? [] : ['assignee'])
      text = `SELECT id FROM ${this.schema.table('tasks')} WHERE ${where.join(' AND ')}
              ORDER BY ${[...leading, 'priority DESC', 'created_at', 'n'].join(', ')} LIMIT ${literalLimit} FOR NO KEY UPDATE SKIP LOCKED`
      this.ready.set(key, text)
    }
    const values: unknown[] = []
    if (tenant) values.push(filter.tenant)
    if (who === 'named') values.push(filter.assignee)
    return { text, values }
  }
}

/** The store operations on one transaction (a new PgStore per attempt of a write). */
export class PgStore implements StepStore {
  /** The snapshot read with the last loadActor of each row, for the loadSnapshot that may follow. */
  private readonly loaded = new Map<string, string>()
  private readonly s

  constructor(
    private readonly tx: PgTx,
    private readonly sql: PgStatements,
  ) {
    this.s = sql.s
  }

  private async rows<R>(text: string, values: unknown[]): Promise<R[]> {
    return (await this.tx.query(text, values)).rows as R[]
  }

  private async exists(text: string, values: unknown[]): Promise<boolean> {
    return (await this.tx.query(text, values)).rowCount! > 0
  }

  // ---- actors ----

  async loadActor(at: ActorTable, id: string): Promise<ActorRow | undefined> {
    const [row] = await this.rows<ActorRow & { snapshot: string }>(this.sql.table(at).row, [id])
    if (!row) return undefined
    this.loaded.set(`${at.table}/${id}`, row.snapshot)
    return { machine_id: row.machine_id, machine_version: row.machine_version, version: row.version, state: row.state }
  }

  async loadSnapshot(at: ActorTable, id: string): Promise<string> {
    const key = `${at.table}/${id}`
    const loaded = this.loaded.get(key)
    if (loaded !== undefined) {
      this.loaded.delete(key)
      return loaded
    }
    const [row] = await this.rows<{ snapshot: string }>(this.sql.table(at).snapshot, [id])
    return row!.snapshot
  }

  /**
   * The step's write set in one round trip: the version-checked UPDATE, the journal
   * entries (seqs from the journal's default, drawn after the row lock, as appendJournal
   * does) and the timer changes, as one statement of data-modifying CTEs. Timer changes are
   * reduced to the last one per timer first (one statement cannot touch a row twice), which
   * is what applying them in action order leaves.
   *
   * A row not at `expectedVersion` was written by a transaction that committed after this
   * one read it: a lost race, rerun whole (never null, which the kernel would treat as a
   * broken invariant); nothing else of the statement was applied.
   */
  async saveStep(
    at: ActorTable,
    id: string,
    expectedVersion: number,
    w: ActorWrite,
    journal: readonly JournalWrite[],
    timers: readonly TimerChange[],
  ): Promise<number[] | null> {
    this.loaded.delete(`${at.table}/${id}`)
    const last = new Map<string, TimerChange>()
    for (const timer of timers) {
      const key = 'upsert' in timer ? `${timer.upsert.actor_id}\u0000${timer.upsert.timer_id}` : `${timer.cancel.actorId}\u0000${timer.cancel.timerId}`
      last.delete(key) // keep the map in action order of the final changes
      last.set(key, timer)
    }
    const upserts: TimerRow[] = []
    const deletes: Array<{ actorId: string; timerId: string }> = []
    for (const timer of last.values()) {
      if ('upsert' in timer) upserts.push(timer.upsert)
      else deletes.push(timer.cancel)
    }
    const values: unknown[] = [w.machineId, w.machineVersion, w.state, w.snapshot, w.updatedAt, ...w.projection, id, expectedVersion]
    for (const e of journal) values.push(e.machineId, e.actorId, e.kind, e.eventType, e.event, e.stateBefore, e.stateAfter, e.runId, e.actorVersion, e.at)
    for (const t of upserts) values.push(t.actor_id, t.timer_id, t.machine_id, t.due_at, t.event)
    for (const t of deletes) values.push(t.actorId, t.timerId)
    const result = await this.tx.query<{ updated: number; seqs: Array<string | number> }>(
      this.sql.saveSql(at, journal.length, upserts.length, deletes.length),
      values,
    )
    const row = result.rows[0]!
    if (row.updated !== 1) {
      // Gone or never there: the kernel's invariant error, not a race.
      if (!(await this.exists(`SELECT 1 FROM ${this.sql.schema.table(at.table)} WHERE id = $1`, [id]))) return null
      throw new RaceLostError(`${at.table} row ${id} moved past version ${expectedVersion} since this transaction read it`)
    }
    // int8[] comes back as text elements (the pool's parser covers scalar int8 only).
    return row.seqs.map(Number)
  }

  actorsOfOtherVersion(at: ActorTable, machineVersion: number): Promise<ActorSnapshotRow[]> {
    return this.rows<ActorSnapshotRow>(this.sql.table(at).otherVersion, [machineVersion])
  }

  // ---- timers ----

  async deleteTimer(actorId: string, timerId: string): Promise<void> {
    await this.tx.query(this.s.deleteTimer, [actorId, timerId])
  }

  dueTimers(now: number, limit: number): Promise<TimerRow[]> {
    return this.rows<TimerRow>(this.s.dueTimers, [now, limit])
  }

  // ---- tasks ----

  insertTask(row: NewTaskRow, now: number): Promise<void> {
    return insert(this.tx, `task ${row.id}`, this.s.insertTask, [
      row.id,
      row.title,
      row.body,
      row.assignee,
      row.tenant,
      row.priority,
      row.payload,
      row.idempotencyKey,
      row.maxAttempts,
      now,
    ])
  }

  taskExists(id: string): Promise<boolean> {
    return this.exists(this.s.taskExists, [id])
  }

  async taskByIdempotencyKey(key: string): Promise<string | null> {
    const [row] = await this.rows<{ id: string }>(this.s.byIdempotencyKey, [key])
    return row?.id ?? null
  }

  runExists(taskId: string, runId: string): Promise<boolean> {
    return this.exists(this.s.runExists, [taskId, runId])
  }

  async lockGraph(): Promise<void> {
    await this.tx.query(this.s.lockGraph, [this.sql.schema.name])
  }

  linkExists(parentId: string, childId: string): Promise<boolean> {
    return this.exists(this.s.linkExists, [parentId, childId])
  }

  async insertLink(parentId: string, childId: string, now: number): Promise<void> {
    await this.tx.query(this.s.insertLink, [parentId, childId, now])
  }

  async deleteLink(parentId: string, childId: string): Promise<void> {
    await this.tx.query(this.s.deleteLink, [parentId, childId])
  }

  isAncestor(ancestor: string, taskId: string): Promise<boolean> {
    return this.exists(this.s.isAncestor, [taskId, ancestor])
  }

  parentRows(childId: string, lock: boolean): Promise<ParentRow[]> {
    return this.rows<ParentRow>(lock ? this.s.parentRowsLocked : this.s.parentRows, [childId])
  }

  async parentRow(id: string, lock: boolean): Promise<ParentRow | undefined> {
    const [row] = await this.rows<ParentRow>(lock ? this.s.parentRowLocked : this.s.parentRow, [id])
    return row
  }

  async childIds(parentId: string): Promise<string[]> {
    return (await this.rows<{ child_id: string }>(this.s.childIds, [parentId])).map((r) => r.child_id)
  }

  async readyCandidates(filter: ReadyFilter, limit: number): Promise<string[]> {
    const { text, values } = this.sql.readySql(filter, limit)
    return (await this.rows<{ id: string }>(text, values)).map((r) => r.id)
  }

  async claimByKey(key: string): Promise<ClaimKeyRow | null> {
    await this.tx.query(this.s.lockClaimKey, [this.sql.schema.name, key])
    // READ COMMITTED: this statement's snapshot is taken after the lock, so it sees the run
    // of a claim with this key that committed while this transaction waited.
    const [row] = await this.rows<ClaimKeyRow>(this.s.claimByKey, [key])
    return row ?? null
  }

  openRun(run: OpenRun): Promise<void> {
    return insert(this.tx, `run ${run.runId} of task ${run.taskId}`, this.s.openRun, [
      run.taskId,
      run.runId,
      run.worker,
      run.attempt,
      run.startedAt,
      run.leaseExpiresAt,
      run.claimKey,
    ])
  }

  async closeRun(run: CloseRun): Promise<boolean> {
    const closed = await this.tx.query(this.s.closeRun, [run.endedAt, run.outcome, run.error, run.summary, run.result, run.metadata, run.taskId, run.runId])
    return closed.rowCount === 1
  }

  async extendRun(taskId: string, runId: string, leaseExpiresAt: number): Promise<void> {
    await this.tx.query(this.s.extendRun, [leaseExpiresAt, taskId, runId])
  }

  async recordResult(taskId: string, result: string | null, summary: string | null): Promise<void> {
    await this.tx.query(this.s.recordResult, [result, summary, taskId])
  }

  // ---- sessions ----

  insertSession(id: string, now: number): Promise<void> {
    return insert(this.tx, `session ${id}`, this.s.insertSession, [id, now])
  }

  async sessionSnapshot(id: string): Promise<string | null> {
    const [row] = await this.rows<{ snapshot: string }>(this.s.sessionSnapshot, [id])
    return row?.snapshot ?? null
  }
}

/** Counts of the transactions withTransaction reran, by cause (tests and the bench read them). */
export interface PgDriverStats {
  conflict: number
  connection: number
}

/**
 * Runs step programs on PostgreSQL: each write in one withTransaction (READ COMMITTED),
 * the program built anew from its factory for every attempt and given the transaction's
 * database clock. Outside a transaction, `now()` is the host clock corrected by the offset
 * to the database clock measured at the last transaction, so a host whose clock is minutes
 * off still agrees with the others.
 */
export class PgDriver implements StoreDriver {
  private readonly sql: PgStatements
  /** Database clock minus host clock, ms, as last measured. */
  private offsetMs = 0
  readonly retries: PgDriverStats = { conflict: 0, connection: 0 }
  private readonly onRetry = (info: { kind: FailureKind }) => {
    if (info.kind !== 'other') this.retries[info.kind]++
  }

  constructor(readonly conn: PgConnection) {
    this.sql = new PgStatements(conn.schema)
  }

  /** A driver whose clock offset is measured before its first transaction. */
  static async open(conn: PgConnection): Promise<PgDriver> {
    const driver = new PgDriver(conn)
    await driver.syncClock()
    return driver
  }

  /** Measure the offset to the database clock (one round trip). */
  async syncClock(): Promise<void> {
    const result = await this.conn.pool.query<{ now_ms: number }>(this.sql.s.clock)
    this.observe(result.rows[0]!.now_ms)
  }

  // The database read its clock during the round trip that just answered: the error is at
  // most that round trip, far below lease and timer granularity.
  private observe(databaseNowMs: number): void {
    this.offsetMs = databaseNowMs - Date.now()
  }

  write<T>(program: (now: number) => Io<T>): Promise<T> {
    return withTransaction(
      this.conn,
      (tx) => {
        this.observe(tx.now)
        return runAsync(program(tx.now), new PgStore(tx, this.sql))
      },
      { onRetry: this.onRetry },
    )
  }

  now(): number {
    return Date.now() + this.offsetMs
  }

  async nextTimerDue(): Promise<number | null> {
    const result = await this.conn.pool.query<{ due_at: number | null; now_ms: number }>(this.sql.s.nextTimer)
    const row = result.rows[0]!
    this.observe(row.now_ms)
    return row.due_at
  }
}
