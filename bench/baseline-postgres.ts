/**
 * The hand-written node-postgres task queue lockstep-on-PostgreSQL is measured against:
 * what a careful engineer would write with `pg` for the same guarantees (a task is
 * claimed by one worker at a time, every claim leaves a run row, every step a journal
 * row, a completion only counts from the run that holds the task), with no state machine,
 * no snapshot, no projection and no global journal order. Per operation, each on a client
 * checked out of a pg.Pool for the transaction (as lockstep does):
 *
 *   create:   BEGIN; INSERT task; INSERT event; COMMIT                          4 round trips
 *             then NOTIFY after commit (fire-and-forget, at most one in flight, as lockstep)
 *   claim:    BEGIN;                                                            5 round trips
 *             UPDATE tasks SET status = 'running', run_id, worker, lease, attempts + 1
 *               WHERE id = (SELECT id FROM tasks WHERE status = 'ready'
 *                           ORDER BY priority DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
 *               RETURNING id;
 *             INSERT run; INSERT event; COMMIT
 *   complete: BEGIN; UPDATE tasks ... WHERE id AND run_id AND status = 'running'  5 round trips
 *             (the fence: rowcount checked); UPDATE run ended/outcome; INSERT event; COMMIT
 *
 * The create→start poller (pool-jobs.ts) LISTENs on the schema's channel on a client of
 * its own and, at a notification or every pollMs, does a plain read for a ready task
 * (hasReady) before it claims with claimNextTitled (the claim above, also returning the
 * title).
 *
 * Its own tables in its own schema: `tasks` with a partial ready index in claim order,
 * `runs`, `events` (bigserial seq); no foreign keys, as the SQLite baseline. Unnamed
 * statements (like lockstep, which names none so that transaction-mode poolers work);
 * READ COMMITTED, the server's default; times from the host clock (lockstep reads the
 * database's, in the round trip of its BEGIN). Contention needs no retry loop: SKIP LOCKED
 * claimers never wait for each other, and a completion touches only its own task.
 */
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import type { PostgresBoardSpec } from './protocol.js'

/** The same lease lockstep grants by default, so both write the same kind of row. */
const LEASE_MS = 30_000

function schemaSql(s: string): string {
  return `
    CREATE SCHEMA IF NOT EXISTS ${s};
    CREATE TABLE IF NOT EXISTS ${s}.tasks (
      id               text PRIMARY KEY,
      title            text NOT NULL,
      status           text NOT NULL,
      priority         integer NOT NULL DEFAULT 0,
      attempts         integer NOT NULL DEFAULT 0,
      run_id           text,
      worker           text,
      lease_expires_at bigint,
      created_at       bigint NOT NULL,
      updated_at       bigint NOT NULL,
      completed_at     bigint
    );
    -- Partial index in claim order: the claim only ever looks at ready tasks.
    CREATE INDEX IF NOT EXISTS tasks_ready ON ${s}.tasks (priority DESC, created_at) WHERE status = 'ready';
    CREATE TABLE IF NOT EXISTS ${s}.runs (
      id               text PRIMARY KEY,
      task_id          text NOT NULL,
      worker           text NOT NULL,
      started_at       bigint NOT NULL,
      lease_expires_at bigint NOT NULL,
      ended_at         bigint,
      outcome          text
    );
    -- A task's history is the obvious query on both logs; a real queue would index it.
    CREATE INDEX IF NOT EXISTS runs_task ON ${s}.runs (task_id);
    CREATE TABLE IF NOT EXISTS ${s}.events (
      seq     bigserial PRIMARY KEY,
      task_id text NOT NULL,
      kind    text NOT NULL,
      run_id  text,
      at      bigint NOT NULL
    );
    CREATE INDEX IF NOT EXISTS events_task ON ${s}.events (task_id, seq);
  `
}

/** The NOTIFY channel of a baseline schema (63-byte identifier limit: bench schemas are short). */
export function baselineChannel(schema: string): string {
  return `bench_${schema}`
}

export interface PgBaselineClaim {
  taskId: string
  runId: string
}

export interface PgTitledClaim extends PgBaselineClaim {
  title: string
}

export class PgBaselineBoard {
  private readonly sql: ReturnType<typeof statements>
  private notifyInFlight = false
  private notifyAgain = false
  private notifying: Promise<void> = Promise.resolve()

  private constructor(
    private readonly pool: pg.Pool,
    readonly channel: string,
    schema: string,
  ) {
    this.sql = statements(`"${schema}"`)
  }

  /** Open a pool on the board's schema, creating its tables if this is the first opener. */
  static async open(spec: PostgresBoardSpec): Promise<PgBaselineBoard> {
    const pool = new pg.Pool({ connectionString: spec.url, application_name: 'bench-baseline' })
    pool.on('error', () => {})
    try {
      // Several processes may open a new schema at once: CREATE ... IF NOT EXISTS races on
      // the catalogs, so the first opener creates it under an advisory lock and the others wait.
      await pool.query(
        `BEGIN; SELECT pg_advisory_xact_lock(hashtext('bench-baseline:${spec.schema}')); ${schemaSql(`"${spec.schema}"`)} COMMIT;`,
      )
    } catch (error) {
      await pool.end().catch(() => {})
      throw error
    }
    return new PgBaselineBoard(pool, baselineChannel(spec.schema), spec.schema)
  }

  /** BEGIN, the body, COMMIT on one pooled client; ROLLBACK on any error. */
  private async transaction<T>(body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect()
    let broken: Error | undefined
    try {
      await client.query('BEGIN')
      const value = await body(client)
      await client.query('COMMIT')
      return value
    } catch (error) {
      await client.query('ROLLBACK').catch((e: Error) => void (broken = e))
      throw error
    } finally {
      client.release(broken)
    }
  }

  async create(title: string): Promise<void> {
    const id = randomUUID()
    const now = Date.now()
    await this.transaction(async (c) => {
      await c.query(this.sql.insertTask, [id, title, now])
      await c.query(this.sql.insertEvent, [id, 'created', null, now])
    })
    this.announce()
  }

  claimNext(worker: string): Promise<PgBaselineClaim | null> {
    return this.claim(worker, this.sql.claimTask)
  }

  /** claimNext, returning the task's title with the claim (the latency poller hands it to its handler). */
  claimNextTitled(worker: string): Promise<PgTitledClaim | null> {
    return this.claim(worker, this.sql.claimTaskTitled) as Promise<PgTitledClaim | null>
  }

  private claim(worker: string, claimSql: string): Promise<PgBaselineClaim | PgTitledClaim | null> {
    const runId = randomUUID()
    const now = Date.now()
    const leaseExpiresAt = now + LEASE_MS
    return this.transaction(async (c) => {
      const { rows } = await c.query<{ id: string; title?: string }>(claimSql, [runId, worker, leaseExpiresAt, now])
      const row = rows[0]
      if (!row) return null
      await c.query(this.sql.openRun, [runId, row.id, worker, now, leaseExpiresAt])
      await c.query(this.sql.insertEvent, [row.id, 'claimed', runId, now])
      return row.title === undefined ? { taskId: row.id, runId } : { taskId: row.id, runId, title: row.title }
    })
  }

  /** A plain read, no lock: is any task ready? (A poller's cheap look before it claims.) */
  async hasReady(): Promise<boolean> {
    return ((await this.pool.query(this.sql.anyReady)).rowCount ?? 0) > 0
  }

  async complete(claim: PgBaselineClaim): Promise<void> {
    const now = Date.now()
    await this.transaction(async (c) => {
      if ((await c.query(this.sql.completeTask, [now, claim.taskId, claim.runId])).rowCount !== 1) {
        throw new Error(`lease lost: task ${claim.taskId} is no longer held by run ${claim.runId}`)
      }
      if ((await c.query(this.sql.closeRun, [now, claim.runId])).rowCount !== 1) throw new Error(`run ${claim.runId} was not open`)
      await c.query(this.sql.insertEvent, [claim.taskId, 'completed', claim.runId, now])
    })
  }

  /**
   * New ready work: tell the listeners, after commit (PostgreSQL serializes notifying
   * commits), at most one NOTIFY in flight: creates meanwhile are covered by one more.
   * The same policy as lockstep's (persistence/postgres/open.ts), so neither pays more for it.
   */
  private announce(): void {
    if (this.notifyInFlight) {
      this.notifyAgain = true
      return
    }
    this.notifyInFlight = true
    this.notifyAgain = false
    this.notifying = this.pool
      .query('SELECT pg_notify($1, $2)', [this.channel, ''])
      .then(
        () => {},
        () => {}, // a lost wake-up only delays the poller to its next poll
      )
      .finally(() => {
        this.notifyInFlight = false
        if (this.notifyAgain) this.announce()
      })
  }

  async close(): Promise<void> {
    while (this.notifyInFlight) await this.notifying
    await this.pool.end()
  }
}

function statements(s: string) {
  const ready = `SELECT id FROM ${s}.tasks WHERE status = 'ready' ORDER BY priority DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED`
  const claim = (returning: string) =>
    `UPDATE ${s}.tasks SET status = 'running', run_id = $1, worker = $2, lease_expires_at = $3, attempts = attempts + 1, updated_at = $4
     WHERE id = (${ready}) AND status = 'ready'
     RETURNING ${returning}`
  return {
    insertTask: `INSERT INTO ${s}.tasks (id, title, status, created_at, updated_at) VALUES ($1, $2, 'ready', $3, $3)`,
    claimTask: claim('id'),
    claimTaskTitled: claim('id, title'),
    anyReady: `SELECT 1 FROM ${s}.tasks WHERE status = 'ready' LIMIT 1`,
    openRun: `INSERT INTO ${s}.runs (id, task_id, worker, started_at, lease_expires_at) VALUES ($1, $2, $3, $4, $5)`,
    completeTask: `UPDATE ${s}.tasks SET status = 'done', completed_at = $1, updated_at = $1, lease_expires_at = NULL
                   WHERE id = $2 AND run_id = $3 AND status = 'running'`,
    closeRun: `UPDATE ${s}.runs SET ended_at = $1, outcome = 'completed' WHERE id = $2 AND ended_at IS NULL`,
    insertEvent: `INSERT INTO ${s}.events (task_id, kind, run_id, at) VALUES ($1, $2, $3, $4)`,
  }
}
