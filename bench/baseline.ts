/**
 * The hand-written better-sqlite3 task queue lockstep is measured against: what a
 * careful engineer would write for the same work, with no state machine, no snapshot
 * and no projection. Per operation:
 *
 *   create:   BEGIN IMMEDIATE; INSERT task; INSERT event; COMMIT
 *   claim:    BEGIN IMMEDIATE; SELECT the best ready task; UPDATE ... WHERE status='ready'
 *             (rowcount checked); INSERT run; INSERT event; COMMIT
 *   complete: BEGIN IMMEDIATE; UPDATE task WHERE id AND run_id match (the fence);
 *             UPDATE run ended/outcome; INSERT event; COMMIT
 *
 * The create→start scenario's poller (pool-jobs.ts) adds a plain read, hasReady(), before
 * it claims, and claims with claimNextTitled(): the claim above, also returning the title.
 *
 * Its own schema in its own file, opened with the same pragmas as lockstep (WAL, the
 * given synchronous, busy_timeout). It relies on busy_timeout alone for contention:
 * its transactions are a fraction of a millisecond, far below the timeout.
 */
import { randomUUID } from 'node:crypto'
import Database from 'better-sqlite3'
import type { SqliteBoardSpec } from './protocol.js'

/** The same lease lockstep grants by default, so both write the same kind of row. */
const LEASE_MS = 30_000

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS tasks (
    id               TEXT PRIMARY KEY,
    title            TEXT NOT NULL,
    status           TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    run_id           TEXT,
    worker           TEXT,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER
  );
  -- Partial index: the claim query only ever looks at ready tasks.
  CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (priority DESC, created_at) WHERE status = 'ready';
  CREATE TABLE IF NOT EXISTS runs (
    id               TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL,
    worker           TEXT NOT NULL,
    started_at       INTEGER NOT NULL,
    lease_expires_at INTEGER NOT NULL,
    ended_at         INTEGER,
    outcome          TEXT
  );
  -- A task's history is the obvious query on both logs; a real queue would index it.
  CREATE INDEX IF NOT EXISTS runs_task ON runs (task_id);
  CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    run_id  TEXT,
    at      INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS events_task ON events (task_id, seq);
`

export interface BaselineClaim {
  taskId: string
  runId: string
}

/** A claim that also carries the task's title (the latency scenario's poller reads it). */
export interface TitledClaim extends BaselineClaim {
  title: string
}

export class BaselineBoard {
  private readonly db: Database.Database
  private readonly createTx: (id: string, title: string, now: number) => void
  private readonly claimTx: (worker: string, now: number) => BaselineClaim | null
  private readonly claimTitledTx: (worker: string, now: number) => TitledClaim | null
  private readonly anyReady: Database.Statement
  private readonly completeTx: (claim: BaselineClaim, now: number) => void

  constructor(spec: SqliteBoardSpec) {
    const db = new Database(spec.path)
    db.pragma('journal_mode = WAL')
    db.pragma(`synchronous = ${spec.synchronous}`)
    db.pragma(`busy_timeout = ${spec.busyTimeoutMs}`)
    // Several processes may open a new file at once: create the schema under the write lock.
    db.transaction(() => db.exec(SCHEMA)).immediate()
    this.db = db

    const s = {
      insertTask: db.prepare(
        `INSERT INTO tasks (id, title, status, created_at, updated_at) VALUES (?, ?, 'ready', ?, ?)`,
      ),
      nextReady: db.prepare(
        `SELECT id FROM tasks WHERE status = 'ready' ORDER BY priority DESC, created_at LIMIT 1`,
      ),
      nextReadyTitled: db.prepare(
        `SELECT id, title FROM tasks WHERE status = 'ready' ORDER BY priority DESC, created_at LIMIT 1`,
      ),
      anyReady: db.prepare(`SELECT 1 FROM tasks WHERE status = 'ready' LIMIT 1`).pluck(),
      claimTask: db.prepare(
        `UPDATE tasks SET status = 'running', run_id = ?, worker = ?, lease_expires_at = ?,
                          attempts = attempts + 1, updated_at = ?
         WHERE id = ? AND status = 'ready'`,
      ),
      openRun: db.prepare(
        `INSERT INTO runs (id, task_id, worker, started_at, lease_expires_at) VALUES (?, ?, ?, ?, ?)`,
      ),
      completeTask: db.prepare(
        `UPDATE tasks SET status = 'done', completed_at = ?, updated_at = ?, lease_expires_at = NULL
         WHERE id = ? AND run_id = ? AND status = 'running'`,
      ),
      closeRun: db.prepare(`UPDATE runs SET ended_at = ?, outcome = 'completed' WHERE id = ? AND ended_at IS NULL`),
      insertEvent: db.prepare(`INSERT INTO events (task_id, kind, run_id, at) VALUES (?, ?, ?, ?)`),
    }

    this.createTx = db.transaction((id: string, title: string, now: number) => {
      s.insertTask.run(id, title, now, now)
      s.insertEvent.run(id, 'created', null, now)
    }).immediate

    this.claimTx = db.transaction((worker: string, now: number): BaselineClaim | null => {
      for (;;) {
        const row = s.nextReady.get() as { id: string } | undefined
        if (!row) return null
        const runId = randomUUID()
        const leaseExpiresAt = now + LEASE_MS
        // Under the write lock this cannot miss; the check is the fence a deferred
        // reader would need, and it costs nothing.
        if (s.claimTask.run(runId, worker, leaseExpiresAt, now, row.id).changes !== 1) continue
        s.openRun.run(runId, row.id, worker, now, leaseExpiresAt)
        s.insertEvent.run(row.id, 'claimed', runId, now)
        return { taskId: row.id, runId }
      }
    }).immediate

    // claimTx again, also returning the title (same row, same cost): what the latency
    // scenario's poller hands its handler. Kept separate so the cycle scenarios' claim is untouched.
    this.claimTitledTx = db.transaction((worker: string, now: number): TitledClaim | null => {
      for (;;) {
        const row = s.nextReadyTitled.get() as { id: string; title: string } | undefined
        if (!row) return null
        const runId = randomUUID()
        const leaseExpiresAt = now + LEASE_MS
        if (s.claimTask.run(runId, worker, leaseExpiresAt, now, row.id).changes !== 1) continue
        s.openRun.run(runId, row.id, worker, now, leaseExpiresAt)
        s.insertEvent.run(row.id, 'claimed', runId, now)
        return { taskId: row.id, runId, title: row.title }
      }
    }).immediate
    this.anyReady = s.anyReady

    this.completeTx = db.transaction((claim: BaselineClaim, now: number) => {
      if (s.completeTask.run(now, now, claim.taskId, claim.runId).changes !== 1) {
        throw new Error(`lease lost: task ${claim.taskId} is no longer held by run ${claim.runId}`)
      }
      if (s.closeRun.run(now, claim.runId).changes !== 1) throw new Error(`run ${claim.runId} was not open`)
      s.insertEvent.run(claim.taskId, 'completed', claim.runId, now)
    }).immediate
  }

  create(title: string): void {
    this.createTx(randomUUID(), title, Date.now())
  }

  claimNext(worker: string): BaselineClaim | null {
    return this.claimTx(worker, Date.now())
  }

  /** claimNext, returning the task's title with the claim. */
  claimNextTitled(worker: string): TitledClaim | null {
    return this.claimTitledTx(worker, Date.now())
  }

  /** A plain read, no write lock: is any task ready? (A poller's cheap look before it claims.) */
  hasReady(): boolean {
    return this.anyReady.get() !== undefined
  }

  complete(claim: BaselineClaim): void {
    this.completeTx(claim, Date.now())
  }

  close(): void {
    this.db.close()
  }
}
