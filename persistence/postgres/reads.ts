/**
 * The read side on PostgreSQL: the rows the API reads outside a write (tasks, runs,
 * sessions) in the same shapes as SQLite's, and the journal as its followers read it
 * (pages bounded by the safe horizon of journal.ts). Reads run on the pool, one statement
 * each; a dropped connection is retried within the pool's retry budget.
 */
import { StoreUnavailableError } from '../../src/errors.js'
import type { JournalEntry } from '../../src/types.js'
import type { Awaitable, JournalPage, JournalSource, ReadDriver, ReadStore, RunRow, SessionRow, TaskFilter, TaskRow } from '../store.js'
import { classifyError, type PgConnection } from './connection.js'
import { JournalHorizon, toJournalEntry, type PgJournalRow } from './journal.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export class PgReads implements ReadStore {
  private readonly taskSelect: string
  private readonly t: (name: string) => string

  constructor(private readonly conn: Pick<PgConnection, 'pool' | 'schema'>) {
    this.t = conn.schema.table
    // Everything but the snapshot; parents as a JSON array text, as SQLite's json_group_array gives it.
    this.taskSelect = `SELECT t.id, t.title, t.body, t.assignee, t.tenant, t.priority, t.payload, t.idempotency_key,
        t.max_attempts, t.status, t.state, t.attempts, t.run_id, t.worker, t.lease_expires_at, t.retry_at,
        t.blocked_reason, t.blocked_by, t.last_error, t.result, t.summary, t.created_at, t.updated_at, t.completed_at,
        (SELECT COALESCE(json_agg(l.parent_id ORDER BY l.parent_id), '[]')::text FROM ${this.t('task_links')} l WHERE l.child_id = t.id) AS parents
      FROM ${this.t('tasks')} t`
  }

  private async rows<R>(sql: string, values: unknown[]): Promise<R[]> {
    return (await this.conn.pool.query(sql, values)).rows as R[]
  }

  async task(id: string): Promise<TaskRow | null> {
    return (await this.rows<TaskRow>(`${this.taskSelect} WHERE t.id = $1`, [id]))[0] ?? null
  }

  async taskExists(id: string): Promise<boolean> {
    return (await this.rows(`SELECT 1 FROM ${this.t('tasks')} WHERE id = $1`, [id])).length > 0
  }

  async tasks(filter: TaskFilter): Promise<TaskRow[]> {
    const where: string[] = []
    const values: unknown[] = []
    const add = (clause: (n: number) => string, value: unknown) => {
      values.push(value)
      where.push(clause(values.length))
    }
    if (filter.status) add((n) => `t.status = $${n}`, filter.status)
    if (filter.assignee !== undefined) add((n) => `t.assignee = $${n}`, filter.assignee)
    if (filter.tenant !== undefined) add((n) => `t.tenant = $${n}`, filter.tenant)
    if (filter.after !== undefined) add((n) => `t.n > (SELECT n FROM ${this.t('tasks')} WHERE id = $${n})`, filter.after)
    values.push(filter.limit)
    const sql = `${this.taskSelect} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY t.n LIMIT $${values.length}`
    return this.rows<TaskRow>(sql, values)
  }

  async childIds(parentId: string): Promise<string[]> {
    const rows = await this.rows<{ child_id: string }>(`SELECT child_id FROM ${this.t('task_links')} WHERE parent_id = $1 ORDER BY child_id`, [parentId])
    return rows.map((r) => r.child_id)
  }

  runs(taskId: string): Promise<RunRow[]> {
    return this.rows<RunRow>(
      `SELECT id, task_id, worker, attempt, started_at, lease_expires_at, ended_at, outcome, error, summary, result, metadata, claim_key
       FROM ${this.t('runs')} WHERE task_id = $1 ORDER BY started_at, attempt`,
      [taskId],
    )
  }

  async session(id: string): Promise<SessionRow | null> {
    return (await this.rows<SessionRow>(`SELECT * FROM ${this.t('sessions')} WHERE id = $1`, [id]))[0] ?? null
  }

  sessions(status: string | null, limit: number): Promise<SessionRow[]> {
    return this.rows<SessionRow>(
      `SELECT * FROM ${this.t('sessions')} WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at, id LIMIT $2`,
      [status, limit],
    )
  }
}

/** Reads with retry: a connection dropped under a read is retried until the retry budget is spent. */
export class PgReadDriver implements ReadDriver {
  constructor(
    private readonly conn: Pick<PgConnection, 'where' | 'retryBudgetMs'>,
    private readonly reads: ReadStore,
  ) {}

  read<T>(fn: (reads: ReadStore) => Awaitable<T>): Promise<T> {
    return withReadRetry(this.conn, () => fn(this.reads))
  }
}

/** Run reads, rerunning them after a dropped connection until the retry budget is spent (then STORE_UNAVAILABLE). */
export async function withReadRetry<T>(conn: Pick<PgConnection, 'where' | 'retryBudgetMs'>, fn: () => Awaitable<T>): Promise<T> {
  const started = Date.now()
  for (let delay = 50; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await fn()
    } catch (error) {
      if (classifyError(error) !== 'connection') throw error
      const waited = Date.now() - started
      if (waited >= conn.retryBudgetMs) throw new StoreUnavailableError(conn.where, waited, error)
      await sleep(delay / 2 + Math.random() * delay)
    }
  }
}

/**
 * The journal as followers read it on PostgreSQL: pages in seq order bounded by the safe
 * horizon, so nothing that commits later with a lower seq is skipped. Local commits are
 * not in seq order here (the feed must not hand them over from memory).
 */
export class PgJournalSource implements JournalSource {
  private readonly safeHorizon: JournalHorizon
  private readonly t: (name: string) => string

  constructor(private readonly conn: Pick<PgConnection, 'pool' | 'schema'>) {
    this.safeHorizon = new JournalHorizon(conn)
    this.t = conn.schema.table
  }

  async page(query: JournalPage): Promise<JournalEntry[]> {
    const values: unknown[] = [query.after, query.upTo ?? Number.MAX_SAFE_INTEGER, query.limit]
    let filter = ''
    if (query.actorId !== undefined) {
      values.push(query.actorId)
      filter += ` AND actor_id = $${values.length}`
    }
    if (query.machineId !== undefined) {
      values.push(query.machineId)
      filter += ` AND machine_id = $${values.length}`
    }
    const rows = (await this.conn.pool.query<PgJournalRow>(
      `SELECT * FROM ${this.t('journal')} WHERE seq > $1 AND seq <= $2${filter} ORDER BY seq LIMIT $3`,
      values,
    )).rows
    return rows.map(toJournalEntry)
  }

  horizon(): Promise<number> {
    return this.safeHorizon.advance()
  }

  /** No cheap counter to poll: the feed looks every poll (notifications make it sooner). */
  changed(): boolean {
    return true
  }
}
