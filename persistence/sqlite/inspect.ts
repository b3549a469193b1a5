/**
 * The inspector's read side on SQLite (store.ts: InspectReads): its own read-only,
 * `query_only` connection to the file, prepared statements answered synchronously.
 */
import { resolve } from 'node:path'
import type { JournalRow } from '../journal-rows.js'
import type { InspectReads, InspectSource, RunRow, SessionActorRow, SessionListRow, TaskActorRow, TaskListQuery, TaskListRow } from '../store.js'
import { openReadOnlyDatabase, withBusyRetry, type Db } from './connection.js'
import { JournalQueries } from './journal.js'

const LIST_COLUMNS = 't.rowid AS n, t.id, t.title, t.status, t.state, t.assignee, t.tenant, t.priority, t.attempts, t.updated_at'
const SESSION_LIST_COLUMNS = 's.rowid AS n, s.id, s.status, s.state, s.agent, s.model, s.generation, s.attempts, s.created_at, s.updated_at'
/** How long a read waits out a busy file (WAL recovery) before STORE_BUSY: the page asks again. */
const READ_RETRY_MS = 2_000

type Statement = ReturnType<Db['prepare']>

class SqliteInspectReads implements InspectReads {
  private readonly s
  private readonly listCache = new Map<string, Statement>()

  constructor(private readonly db: Db) {
    this.s = {
      taskCounts: db.prepare('SELECT status, COUNT(*) AS n FROM tasks GROUP BY status'),
      sessionCounts: db.prepare('SELECT status, COUNT(*) AS n FROM sessions GROUP BY status'),
      taskOrder: db.prepare('SELECT rowid FROM tasks WHERE id = ?').pluck(),
      sessionOrder: db.prepare('SELECT rowid FROM sessions WHERE id = ?').pluck(),
      task: db.prepare('SELECT rowid AS n, * FROM tasks WHERE id = ?'),
      tasksByIds: db.prepare(`SELECT ${LIST_COLUMNS} FROM json_each(?) j JOIN tasks t ON t.id = j.value`),
      parents: db.prepare('SELECT parent_id FROM task_links WHERE child_id = ? LIMIT ?').pluck(),
      children: db.prepare('SELECT child_id FROM task_links WHERE parent_id = ? LIMIT ?').pluck(),
      neighbourhood: db
        .prepare(
          `WITH RECURSIVE
             up(id, d) AS (SELECT @focus, 0 UNION SELECT l.parent_id, up.d + 1 FROM task_links l JOIN up ON l.child_id = up.id WHERE up.d < @depth LIMIT @cap),
             down(id, d) AS (SELECT @focus, 0 UNION SELECT l.child_id, down.d + 1 FROM task_links l JOIN down ON l.parent_id = down.id WHERE down.d < @depth LIMIT @cap)
           SELECT id FROM up UNION SELECT id FROM down LIMIT @limit`,
        )
        .pluck(),
      linksInto: db.prepare('SELECT l.parent_id AS parent, l.child_id AS child FROM json_each(?) j JOIN task_links l ON l.child_id = j.value'),
      session: db.prepare('SELECT rowid AS n, * FROM sessions WHERE id = ?'),
      sessionsByIds: db.prepare(`SELECT ${SESSION_LIST_COLUMNS} FROM json_each(?) j JOIN sessions s ON s.id = j.value`),
      sessions: db.prepare(
        `SELECT ${SESSION_LIST_COLUMNS} FROM sessions s WHERE (@status IS NULL OR s.status = @status) AND s.rowid > @after ORDER BY s.rowid LIMIT @limit`,
      ),
      runs: db.prepare('SELECT * FROM runs WHERE task_id = ? ORDER BY started_at DESC, attempt DESC LIMIT ?'),
      runCount: db.prepare('SELECT COUNT(*) FROM runs WHERE task_id = ?').pluck(),
      journalDesc: db.prepare('SELECT * FROM journal WHERE actor_id = ? AND machine_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?'),
      journalAsc: db.prepare('SELECT * FROM journal WHERE actor_id = ? AND machine_id = ? ORDER BY seq LIMIT ?'),
      journalCount: db.prepare('SELECT COUNT(*) FROM journal WHERE actor_id = ? AND machine_id = ?').pluck(),
      lastActorSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) FROM journal WHERE actor_id = ? AND machine_id = ?').pluck(),
      lastBefore: db.prepare('SELECT * FROM journal WHERE actor_id = ? AND machine_id = ? AND seq < ? ORDER BY seq DESC LIMIT 1'),
      entry: db.prepare('SELECT * FROM journal WHERE seq = ?'),
      stepEntries: db.prepare('SELECT * FROM journal WHERE actor_id = ? AND machine_id = ? AND actor_version = ? ORDER BY seq'),
      after: db.prepare('SELECT * FROM journal WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?'),
      latest: db.prepare('SELECT * FROM (SELECT * FROM journal WHERE seq <= ? ORDER BY seq DESC LIMIT ?) ORDER BY seq'),
    }
  }

  countsByStatus(table: 'tasks' | 'sessions') {
    return (table === 'tasks' ? this.s.taskCounts : this.s.sessionCounts).all() as Array<{ status: string; n: number }>
  }

  tasks(query: TaskListQuery): TaskListRow[] {
    const where: string[] = []
    const params: Record<string, unknown> = { limit: query.limit }
    if (query.status !== undefined) {
      where.push('t.status = @status')
      params.status = query.status
    }
    if (query.assignee !== undefined) {
      where.push('t.assignee = @assignee')
      params.assignee = query.assignee
    }
    if (query.tenant !== undefined) {
      where.push('t.tenant = @tenant')
      params.tenant = query.tenant
    }
    if (query.q !== undefined) {
      // SQLite's LIKE ignores the case of ASCII letters.
      where.push("(t.title LIKE @like ESCAPE '\\' OR t.id = @q)")
      params.like = `%${query.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`
      params.q = query.q
    }
    if (query.afterN !== undefined) {
      where.push('t.rowid > @after')
      params.after = query.afterN
    }
    const sql = `SELECT ${LIST_COLUMNS} FROM tasks t ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY t.rowid LIMIT @limit`
    let stmt = this.listCache.get(sql)
    if (!stmt) {
      stmt = this.db.prepare(sql)
      if (this.listCache.size < 64) this.listCache.set(sql, stmt)
    }
    return stmt.all(params) as TaskListRow[]
  }

  orderOf(table: 'tasks' | 'sessions', id: string): number | null {
    return ((table === 'tasks' ? this.s.taskOrder : this.s.sessionOrder).get(id) as number | undefined) ?? null
  }

  task(id: string): TaskActorRow | null {
    return (this.s.task.get(id) as TaskActorRow | undefined) ?? null
  }

  tasksByIds(ids: readonly string[]): TaskListRow[] {
    return ids.length === 0 ? [] : (this.s.tasksByIds.all(JSON.stringify(ids)) as TaskListRow[])
  }

  parentIds(childId: string, limit: number): string[] {
    return this.s.parents.all(childId, limit) as string[]
  }

  childIds(parentId: string, limit: number): string[] {
    return this.s.children.all(parentId, limit) as string[]
  }

  neighbourhood(focus: string, depth: number, cap: number, limit: number): string[] {
    return this.s.neighbourhood.all({ focus, depth, cap, limit }) as string[]
  }

  linksInto(childIds: readonly string[]) {
    return childIds.length === 0 ? [] : (this.s.linksInto.all(JSON.stringify(childIds)) as Array<{ parent: string; child: string }>)
  }

  session(id: string): SessionActorRow | null {
    return (this.s.session.get(id) as SessionActorRow | undefined) ?? null
  }

  sessionsByIds(ids: readonly string[]): SessionListRow[] {
    return ids.length === 0 ? [] : (this.s.sessionsByIds.all(JSON.stringify(ids)) as SessionListRow[])
  }

  sessions(status: string | null, afterN: number, limit: number): SessionListRow[] {
    return this.s.sessions.all({ status, after: afterN, limit }) as SessionListRow[]
  }

  runs(taskId: string, limit: number): { rows: RunRow[]; total: number } {
    return { rows: this.s.runs.all(taskId, limit) as RunRow[], total: this.s.runCount.get(taskId) as number }
  }

  actorJournalDesc(actorId: string, machineId: string, before: number, limit: number): JournalRow[] {
    return this.s.journalDesc.all(actorId, machineId, before, limit) as JournalRow[]
  }

  actorJournalAsc(actorId: string, machineId: string, limit: number): JournalRow[] {
    return this.s.journalAsc.all(actorId, machineId, limit) as JournalRow[]
  }

  actorJournalCount(actorId: string, machineId: string): number {
    return this.s.journalCount.get(actorId, machineId) as number
  }

  lastActorSeq(actorId: string, machineId: string): number {
    return this.s.lastActorSeq.get(actorId, machineId) as number
  }

  lastEntriesBefore(actorIds: readonly string[], machineId: string, seq: number): JournalRow[] {
    // One indexed lookup each (journal_actor): no round trips to save on an embedded file.
    const rows: JournalRow[] = []
    for (const id of actorIds) {
      const row = this.s.lastBefore.get(id, machineId, seq) as JournalRow | undefined
      if (row) rows.push(row)
    }
    return rows
  }

  entry(seq: number): JournalRow | null {
    return (this.s.entry.get(seq) as JournalRow | undefined) ?? null
  }

  stepEntries(actorId: string, machineId: string, actorVersion: number): JournalRow[] {
    return this.s.stepEntries.all(actorId, machineId, actorVersion) as JournalRow[]
  }

  journalAfter(after: number, upTo: number, limit: number): JournalRow[] {
    return this.s.after.all(after, upTo, limit) as JournalRow[]
  }

  latestJournal(upTo: number, limit: number): JournalRow[] {
    return this.s.latest.all(upTo, limit) as JournalRow[]
  }
}

/**
 * Open a lockstep file for the inspector: read-only and `query_only`, and only a lockstep
 * file of schema 2 (sessions) or newer; a missing, empty, foreign or corrupt file is
 * STORE_OPEN_FAILED and left untouched.
 */
export function openSqliteInspect(path: string): InspectSource {
  const db = openReadOnlyDatabase(path, { minSchema: 2 })
  const reads = new SqliteInspectReads(db)
  const journal = new JournalQueries(db)
  return {
    where: resolve(path),
    read: (fn) => withBusyRetry(() => fn(reads), READ_RETRY_MS),
    journal,
    // Processes sharing a file share a host: its clock is the store's.
    now: () => Date.now(),
    async close() {
      if (db.open) db.close()
    },
  }
}
