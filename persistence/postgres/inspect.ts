/**
 * The inspector's read side on PostgreSQL (store.ts: InspectReads): the same rows as
 * SQLite's, one statement each on a pool of its own whose sessions are read-only at the
 * server (default_transaction_read_only), so the inspector cannot write whatever it runs.
 * It follows the journal up to the safe horizon (journal.ts), so commits of any host
 * appear in seq order, none skipped.
 */
import type { JournalRow } from '../journal-rows.js'
import type { InspectReads, InspectSource, RunRow, SessionActorRow, SessionListRow, TaskActorRow, TaskListQuery, TaskListRow } from '../store.js'
import { databaseNowMs, type PgConnection, type PgOpenOptions } from './connection.js'
import { openPostgres } from './open.js'
import { PgJournalSource, withReadRetry } from './reads.js'

const LIST_COLUMNS = 't.n, t.id, t.title, t.status, t.state, t.assignee, t.tenant, t.priority, t.attempts, t.updated_at'
const SESSION_LIST_COLUMNS = 's.n, s.id, s.status, s.state, s.agent, s.model, s.generation, s.attempts, s.created_at, s.updated_at'

class PgInspectReads implements InspectReads {
  private readonly t: (name: string) => string

  constructor(private readonly conn: Pick<PgConnection, 'pool' | 'schema'>) {
    this.t = conn.schema.table
  }

  private async rows<R>(sql: string, values: unknown[] = []): Promise<R[]> {
    return (await this.conn.pool.query(sql, values)).rows as R[]
  }

  countsByStatus(table: 'tasks' | 'sessions') {
    return this.rows<{ status: string; n: number }>(`SELECT status, COUNT(*) AS n FROM ${this.t(table)} GROUP BY status`)
  }

  tasks(query: TaskListQuery): Promise<TaskListRow[]> {
    const where: string[] = []
    const values: unknown[] = []
    const add = (clause: (n: number) => string, value: unknown) => {
      values.push(value)
      where.push(clause(values.length))
    }
    if (query.status !== undefined) add((n) => `t.status = $${n}`, query.status)
    if (query.assignee !== undefined) add((n) => `t.assignee = $${n}`, query.assignee)
    if (query.tenant !== undefined) add((n) => `t.tenant = $${n}`, query.tenant)
    if (query.q !== undefined) {
      // ILIKE: case-insensitive like SQLite's LIKE (which ignores case for ASCII only).
      values.push(`%${query.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`, query.q)
      where.push(`(t.title ILIKE $${values.length - 1} ESCAPE '\\' OR t.id = $${values.length})`)
    }
    if (query.afterN !== undefined) add((n) => `t.n > $${n}`, query.afterN)
    values.push(query.limit)
    return this.rows<TaskListRow>(
      `SELECT ${LIST_COLUMNS} FROM ${this.t('tasks')} t ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY t.n LIMIT $${values.length}`,
      values,
    )
  }

  async orderOf(table: 'tasks' | 'sessions', id: string): Promise<number | null> {
    return (await this.rows<{ n: number }>(`SELECT n FROM ${this.t(table)} WHERE id = $1`, [id]))[0]?.n ?? null
  }

  async task(id: string): Promise<TaskActorRow | null> {
    return (await this.rows<TaskActorRow>(`SELECT * FROM ${this.t('tasks')} WHERE id = $1`, [id]))[0] ?? null
  }

  async tasksByIds(ids: readonly string[]): Promise<TaskListRow[]> {
    if (ids.length === 0) return []
    return this.rows<TaskListRow>(`SELECT ${LIST_COLUMNS} FROM ${this.t('tasks')} t WHERE t.id = ANY($1::text[])`, [ids])
  }

  async parentIds(childId: string, limit: number): Promise<string[]> {
    const rows = await this.rows<{ id: string }>(`SELECT parent_id AS id FROM ${this.t('task_links')} WHERE child_id = $1 LIMIT $2`, [childId, limit])
    return rows.map((r) => r.id)
  }

  async childIds(parentId: string, limit: number): Promise<string[]> {
    const rows = await this.rows<{ id: string }>(`SELECT child_id AS id FROM ${this.t('task_links')} WHERE parent_id = $1 LIMIT $2`, [parentId, limit])
    return rows.map((r) => r.id)
  }

  async neighbourhood(focus: string, depth: number, cap: number, limit: number): Promise<string[]> {
    // PostgreSQL takes no LIMIT inside a recursive term; a LIMIT on the reading query stops
    // the (lazily evaluated) walk after `cap` rows instead.
    const links = this.t('task_links')
    const rows = await this.rows<{ id: string }>(
      `WITH RECURSIVE
         up(id, d) AS (SELECT $1::text, 0 UNION SELECT l.parent_id, up.d + 1 FROM ${links} l JOIN up ON l.child_id = up.id WHERE up.d < $2),
         down(id, d) AS (SELECT $1::text, 0 UNION SELECT l.child_id, down.d + 1 FROM ${links} l JOIN down ON l.parent_id = down.id WHERE down.d < $2)
       SELECT id FROM ((SELECT id FROM up LIMIT $3) UNION (SELECT id FROM down LIMIT $3)) AS near LIMIT $4`,
      [focus, depth, cap, limit],
    )
    return rows.map((r) => r.id)
  }

  async linksInto(childIds: readonly string[]) {
    if (childIds.length === 0) return []
    return this.rows<{ parent: string; child: string }>(
      `SELECT parent_id AS parent, child_id AS child FROM ${this.t('task_links')} WHERE child_id = ANY($1::text[])`,
      [childIds],
    )
  }

  async session(id: string): Promise<SessionActorRow | null> {
    return (await this.rows<SessionActorRow>(`SELECT * FROM ${this.t('sessions')} WHERE id = $1`, [id]))[0] ?? null
  }

  async sessionsByIds(ids: readonly string[]): Promise<SessionListRow[]> {
    if (ids.length === 0) return []
    return this.rows<SessionListRow>(`SELECT ${SESSION_LIST_COLUMNS} FROM ${this.t('sessions')} s WHERE s.id = ANY($1::text[])`, [ids])
  }

  sessions(status: string | null, afterN: number, limit: number): Promise<SessionListRow[]> {
    return this.rows<SessionListRow>(
      `SELECT ${SESSION_LIST_COLUMNS} FROM ${this.t('sessions')} s WHERE ($1::text IS NULL OR s.status = $1) AND s.n > $2 ORDER BY s.n LIMIT $3`,
      [status, afterN, limit],
    )
  }

  async runs(taskId: string, limit: number): Promise<{ rows: RunRow[]; total: number }> {
    const runs = this.t('runs')
    const [rows, count] = await Promise.all([
      this.rows<RunRow>(
        `SELECT id, task_id, worker, attempt, started_at, lease_expires_at, ended_at, outcome, error, summary, result, metadata, claim_key
         FROM ${runs} WHERE task_id = $1 ORDER BY started_at DESC, attempt DESC LIMIT $2`,
        [taskId, limit],
      ),
      this.rows<{ n: number }>(`SELECT COUNT(*) AS n FROM ${runs} WHERE task_id = $1`, [taskId]),
    ])
    return { rows, total: count[0]!.n }
  }

  actorJournalDesc(actorId: string, machineId: string, before: number, limit: number): Promise<JournalRow[]> {
    return this.rows<JournalRow>(
      `SELECT * FROM ${this.t('journal')} WHERE actor_id = $1 AND machine_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4`,
      [actorId, machineId, before, limit],
    )
  }

  actorJournalAsc(actorId: string, machineId: string, limit: number): Promise<JournalRow[]> {
    return this.rows<JournalRow>(`SELECT * FROM ${this.t('journal')} WHERE actor_id = $1 AND machine_id = $2 ORDER BY seq LIMIT $3`, [
      actorId,
      machineId,
      limit,
    ])
  }

  async actorJournalCount(actorId: string, machineId: string): Promise<number> {
    return (await this.rows<{ n: number }>(`SELECT COUNT(*) AS n FROM ${this.t('journal')} WHERE actor_id = $1 AND machine_id = $2`, [actorId, machineId]))[0]!.n
  }

  async lastActorSeq(actorId: string, machineId: string): Promise<number> {
    const rows = await this.rows<{ seq: number }>(
      `SELECT COALESCE(MAX(seq), 0) AS seq FROM ${this.t('journal')} WHERE actor_id = $1 AND machine_id = $2`,
      [actorId, machineId],
    )
    return rows[0]!.seq
  }

  lastEntriesBefore(actorIds: readonly string[], machineId: string, seq: number): Promise<JournalRow[]> {
    if (actorIds.length === 0) return Promise.resolve([])
    // One round trip for every actor, each an index lookup (journal_actor).
    return this.rows<JournalRow>(
      `SELECT j.* FROM unnest($1::text[]) AS a(id)
       CROSS JOIN LATERAL (SELECT * FROM ${this.t('journal')} WHERE actor_id = a.id AND machine_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT 1) j`,
      [actorIds, machineId, seq],
    )
  }

  async entry(seq: number): Promise<JournalRow | null> {
    return (await this.rows<JournalRow>(`SELECT * FROM ${this.t('journal')} WHERE seq = $1`, [seq]))[0] ?? null
  }

  stepEntries(actorId: string, machineId: string, actorVersion: number): Promise<JournalRow[]> {
    return this.rows<JournalRow>(
      `SELECT * FROM ${this.t('journal')} WHERE actor_id = $1 AND machine_id = $2 AND actor_version = $3 ORDER BY seq`,
      [actorId, machineId, actorVersion],
    )
  }

  journalAfter(after: number, upTo: number, limit: number): Promise<JournalRow[]> {
    return this.rows<JournalRow>(`SELECT * FROM ${this.t('journal')} WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`, [after, upTo, limit])
  }

  latestJournal(upTo: number, limit: number): Promise<JournalRow[]> {
    // Not `seq > upTo - limit`: seqs of rolled-back transactions leave gaps here.
    return this.rows<JournalRow>(
      `SELECT * FROM (SELECT * FROM ${this.t('journal')} WHERE seq <= $1 ORDER BY seq DESC LIMIT $2) AS latest ORDER BY seq`,
      [upTo, limit],
    )
  }
}

/**
 * Open a schema for the inspector: a small read-only pool of its own, never migrating (a
 * missing or foreign schema is STORE_OPEN_FAILED, a newer one SCHEMA_TOO_NEW).
 */
export async function openPostgresInspect(url: string, options: Omit<PgOpenOptions, 'readOnly'> = {}): Promise<InspectSource> {
  // Pages ask a few things at once; the event stream polls on one connection.
  // A read waits out a lost connection this long before STORE_UNAVAILABLE (503): the page asks again.
  const conn = await openPostgres(url, { retryBudgetMs: 5_000, ...options, pool: { max: 4, ...options.pool }, readOnly: true })
  const reads = new PgInspectReads(conn)
  let offset: number
  try {
    // The database clock, as the host's plus the offset measured once at open (a query per
    // page would cost a round trip for drift of microseconds).
    offset = (await databaseNowMs(conn.pool)) - Date.now()
  } catch (error) {
    await conn.close().catch(() => {})
    throw error
  }
  return {
    where: `${conn.where} (schema ${conn.schema.name})`,
    read: (fn) => withReadRetry(conn, () => fn(reads)),
    journal: new PgJournalSource(conn),
    now: () => Date.now() + offset,
    close: () => conn.close(),
  }
}
