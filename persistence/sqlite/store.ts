/**
 * The SQLite store: the store operations (store.ts) as prepared better-sqlite3
 * statements, and the driver that runs a step program synchronously inside one
 * IMMEDIATE transaction (the write lock: one writer at a time, across processes).
 */
import { SchemaTooNewError } from '../../src/errors.js'
import { runSync, type Io } from '../../src/core/io.js'
import { GroupAbortedError, type Settled, type StoreDriver } from '../../src/core/kernel.js'
import { isolated, withBusyRetry, writeTransaction, type Db } from './connection.js'
import { SCHEMA_VERSION } from './migrations.js'
import type { SessionQueries } from './sessions.js'
import type {
  ActorRow,
  ActorSnapshotRow,
  ActorTable,
  ActorWrite,
  Awaitable,
  JournalWrite,
  ReadDriver,
  ReadStore,
  StepStore,
  TimerChange,
  TimerRow,
} from '../store.js'
import type { TaskQueries } from './tasks.js'

type Statement = ReturnType<Db['prepare']>

/** The statements of one actor table, prepared at first use (tables and columns are the kinds' constants). */
interface TableStatements {
  row: Statement
  snapshot: Statement
  update: { run(...params: unknown[]): { changes: number } }
}

export class SqliteStore implements StepStore {
  private readonly tables = new Map<string, TableStatements>()
  private readonly s

  constructor(
    private readonly db: Db,
    private readonly tasks: TaskQueries,
    private readonly sessions: SessionQueries,
  ) {
    this.s = {
      insertJournal: db.prepare(
        `INSERT INTO journal (machine_id, actor_id, kind, event_type, event, state_before, state_after, run_id, actor_version, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      upsertTimer: db.prepare(
        `INSERT INTO timers (actor_id, timer_id, machine_id, due_at, event) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (actor_id, timer_id) DO UPDATE SET due_at = excluded.due_at, event = excluded.event`,
      ),
      deleteTimer: db.prepare('DELETE FROM timers WHERE actor_id = ? AND timer_id = ?'),
      nextTimer: db.prepare('SELECT due_at FROM timers ORDER BY due_at LIMIT 1').pluck(),
      dueTimers: db.prepare(
        'SELECT actor_id, timer_id, machine_id, due_at, event FROM timers WHERE due_at <= ? ORDER BY due_at LIMIT ?',
      ),
      schemaVersion: db.prepare('PRAGMA user_version').pluck(),
    }
  }

  private table(at: ActorTable): TableStatements {
    let statements = this.tables.get(at.table)
    if (!statements) {
      const t = at.table
      statements = {
        row: this.db.prepare(`SELECT machine_id, machine_version, version, state FROM ${t} WHERE id = ?`),
        snapshot: this.db.prepare(`SELECT snapshot FROM ${t} WHERE id = ?`).pluck(),
        update: this.db.prepare<unknown[]>(
          `UPDATE ${t} SET machine_id = ?, machine_version = ?, state = ?, snapshot = ?, version = version + 1, updated_at = ?
             ${at.projection.map((column) => `, ${column} = ?`).join('')}
           WHERE id = ? AND version = ?`,
        ),
      }
      this.tables.set(at.table, statements)
    }
    return statements
  }

  /**
   * A newer lockstep may have migrated the file since this process opened it (a rolling
   * upgrade): refuse with a typed error rather than run statements written for the old
   * schema (one may name an index that no longer exists). Checked in every write.
   */
  checkSchema(): void {
    const found = this.s.schemaVersion.get() as number
    if (found > SCHEMA_VERSION) throw new SchemaTooNewError(this.db.name, found, SCHEMA_VERSION)
  }

  nextTimerDue(): number | null {
    return (this.s.nextTimer.get() as number | undefined) ?? null
  }

  // ---- actors ----

  loadActor(at: ActorTable, id: string): ActorRow | undefined {
    return this.table(at).row.get(id) as ActorRow | undefined
  }

  loadSnapshot(at: ActorTable, id: string): string {
    return this.table(at).snapshot.get(id) as string
  }

  saveStep(at: ActorTable, id: string, expectedVersion: number, w: ActorWrite, journal: readonly JournalWrite[], timers: readonly TimerChange[]): number[] | null {
    const { changes } = this.table(at).update.run(w.machineId, w.machineVersion, w.state, w.snapshot, w.updatedAt, ...w.projection, id, expectedVersion)
    if (changes !== 1) return null
    const seqs = journal.map((e) => this.appendJournal(e))
    for (const timer of timers) {
      if ('upsert' in timer) {
        const t = timer.upsert
        this.s.upsertTimer.run(t.actor_id, t.timer_id, t.machine_id, t.due_at, t.event)
      } else {
        this.s.deleteTimer.run(timer.cancel.actorId, timer.cancel.timerId)
      }
    }
    return seqs
  }

  actorsOfOtherVersion(at: ActorTable, machineVersion: number): ActorSnapshotRow[] {
    return this.db
      .prepare(`SELECT id, machine_id, machine_version, version, state, snapshot FROM ${at.table} WHERE machine_version != ? AND version > 0`)
      .all(machineVersion) as ActorSnapshotRow[]
  }

  // ---- journal and timers ----

  private appendJournal(e: JournalWrite): number {
    const { lastInsertRowid } = this.s.insertJournal.run(
      e.machineId,
      e.actorId,
      e.kind,
      e.eventType,
      e.event,
      e.stateBefore,
      e.stateAfter,
      e.runId,
      e.actorVersion,
      e.at,
    )
    return Number(lastInsertRowid)
  }

  deleteTimer(actorId: string, timerId: string): void {
    this.s.deleteTimer.run(actorId, timerId)
  }

  dueTimers(now: number, limit: number): TimerRow[] {
    return this.s.dueTimers.all(now, limit) as TimerRow[]
  }

  // ---- tasks: the statements live with the task queries ----

  insertTask: StepStore['insertTask'] = (row, now) => this.tasks.insertTask(row, now)
  taskExists: StepStore['taskExists'] = (id) => this.tasks.exists(id)
  taskByIdempotencyKey: StepStore['taskByIdempotencyKey'] = (key) => this.tasks.byIdempotencyKey(key)
  runExists: StepStore['runExists'] = (taskId, runId) => this.tasks.runExists(taskId, runId)
  linkExists: StepStore['linkExists'] = (parentId, childId) => this.tasks.linkExists(parentId, childId)
  insertLink: StepStore['insertLink'] = (parentId, childId, now) => this.tasks.insertLink(parentId, childId, now)
  deleteLink: StepStore['deleteLink'] = (parentId, childId) => this.tasks.deleteLink(parentId, childId)
  isAncestor: StepStore['isAncestor'] = (ancestor, taskId) => this.tasks.isAncestor(ancestor, taskId)
  // One writer at a time: nothing to lock.
  parentRows: StepStore['parentRows'] = (childId) => this.tasks.parentRows(childId)
  parentRow: StepStore['parentRow'] = (id) => this.tasks.parentRow(id)
  childIds: StepStore['childIds'] = (parentId) => this.tasks.childIds(parentId)
  readyCandidates: StepStore['readyCandidates'] = (filter, limit) => this.tasks.readyCandidates(filter, limit)
  claimByKey: StepStore['claimByKey'] = (key) => this.tasks.claimByKey(key)
  openRun: StepStore['openRun'] = (run) => this.tasks.openRun(run)
  closeRun: StepStore['closeRun'] = (run) => this.tasks.closeRun(run)
  extendRun: StepStore['extendRun'] = (taskId, runId, leaseExpiresAt) => this.tasks.extendRun(taskId, runId, leaseExpiresAt)
  recordResult: StepStore['recordResult'] = (taskId, result, summary) => this.tasks.recordResult(taskId, result, summary)

  // ---- sessions ----

  insertSession: StepStore['insertSession'] = (id, now) => this.sessions.insert(id, now)
  sessionSnapshot: StepStore['sessionSnapshot'] = (id) => this.sessions.snapshot(id)

  /** One writer at a time already: nothing to lock. */
  lockGraph(): void {}
}

/** Runs step programs on a SqliteStore: synchronously, inside one IMMEDIATE transaction, with busy retry. */
export class SqliteDriver implements StoreDriver {
  constructor(
    private readonly db: Db,
    private readonly store: SqliteStore,
    private readonly busyRetryMs: number,
    /** The clock: processes sharing a file share a host, so the host's (injectable for tests). */
    readonly now: () => number = Date.now,
  ) {}

  write<T>(program: (now: number) => Io<T>): Promise<T> {
    return writeTransaction(
      this.db,
      () => {
        this.store.checkSchema()
        return runSync(program(this.now()), this.store)
      },
      this.busyRetryMs,
    )
  }

  /**
   * Group commit: one IMMEDIATE transaction, each program inside its own savepoint (a
   * program that throws is rolled back to it, alone), one COMMIT. One writer at a time
   * means one COMMIT (one WAL sync) is what a write costs most; sharing it is the gain.
   */
  writeEach(programs: ReadonlyArray<(now: number) => Io<unknown>>): Promise<Settled[]> {
    return writeTransaction(
      this.db,
      () => {
        this.store.checkSchema()
        const now = this.now()
        return programs.map((program): Settled => {
          try {
            return { ok: true, value: isolated(this.db, () => runSync(program(now), this.store)) }
          } catch (error) {
            // A full disk or an I/O error makes SQLite roll back the whole transaction.
            if (!this.db.inTransaction) throw new GroupAbortedError(error)
            return { ok: false, error }
          }
        })
      },
      this.busyRetryMs,
    )
  }

  nextTimerDue(): number | null {
    return this.store.nextTimerDue()
  }
}

/** The read side on SQLite: the same prepared queries, answered synchronously. */
export class SqliteReads implements ReadStore {
  constructor(
    private readonly taskQueries: TaskQueries,
    private readonly sessionQueries: SessionQueries,
  ) {}

  task: ReadStore['task'] = (id) => this.taskQueries.get(id)
  taskExists: ReadStore['taskExists'] = (id) => this.taskQueries.exists(id)
  tasks: ReadStore['tasks'] = (filter) => this.taskQueries.list(filter)
  childIds: ReadStore['childIds'] = (parentId) => this.taskQueries.childIds(parentId)
  runs: ReadStore['runs'] = (taskId) => this.taskQueries.runs(taskId)
  session: ReadStore['session'] = (id) => this.sessionQueries.get(id)
  sessions: ReadStore['sessions'] = (status, limit) => this.sessionQueries.list(status, limit)
}

/** Reads with busy retry: in WAL mode they rarely see SQLITE_BUSY, but can (recovery after a crash). */
export class SqliteReadDriver implements ReadDriver {
  constructor(
    private readonly reads: SqliteReads,
    private readonly busyRetryMs: number,
  ) {}

  read<T>(fn: (reads: ReadStore) => Awaitable<T>): Promise<T> {
    return withBusyRetry(() => fn(this.reads), this.busyRetryMs)
  }
}
