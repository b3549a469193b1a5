/**
 * The inspector's read side: its own read-only SQLite connection to the orchestrator's
 * file, and the queries behind the JSON API. It never writes (the connection is opened
 * read-only and `query_only`), so inspecting a live board cannot change it.
 */
import type Database from 'better-sqlite3'
import { openReadOnlyDatabase } from '../../persistence/sqlite/connection.js'
import type { JournalRow } from '../../persistence/sqlite/journal.js'
import type { SessionRow } from '../../persistence/sqlite/sessions.js'
import type { RunRow, TaskRow } from '../../persistence/sqlite/tasks.js'
import { InvalidInputError } from '../errors.js'

/** Journal rows as the journal table holds them. */
export type JournalRowLite = JournalRow

/** A task row with its persisted snapshot, and its rowid `n` for paging. */
export interface TaskRowFull extends Omit<TaskRow, 'parents'> {
  n: number
  machine_id: string
  machine_version: number
  snapshot: string
  version: number
}

export interface TaskLite {
  n: number
  id: string
  title: string
  status: string
  state: string
  assignee: string | null
  tenant: string | null
  priority: number
  attempts: number
  updatedAt: number
}

/** A session row with its rowid `n` and machine columns. */
export interface SessionRowFull extends SessionRow {
  n: number
  machine_id: string
  machine_version: number
  version: number
}

export interface TaskQuery {
  status?: string
  assignee?: string
  tenant?: string
  q?: string
  after?: string
  limit: number
}

const LITE_COLUMNS = 't.rowid AS n, t.id, t.title, t.status, t.state, t.assignee, t.tenant, t.priority, t.attempts, t.updated_at'

type LiteRow = Pick<TaskRowFull, 'n' | 'id' | 'title' | 'status' | 'state' | 'assignee' | 'tenant' | 'priority' | 'attempts' | 'updated_at'>

const toLite = (r: LiteRow): TaskLite => ({
  n: r.n,
  id: r.id,
  title: r.title,
  status: r.status,
  state: r.state,
  assignee: r.assignee,
  tenant: r.tenant,
  priority: r.priority,
  attempts: r.attempts,
  updatedAt: r.updated_at,
})

export class InspectorStore {
  readonly db: Database.Database
  private readonly s
  private readonly listCache = new Map<string, Database.Statement>()

  constructor(readonly path: string) {
    if (path === ':memory:') {
      throw new InvalidInputError('the inspector reads a database file; an in-memory orchestrator cannot be inspected', { field: 'path' })
    }
    // Read-only, query_only, and only a lockstep file (schema 2, sessions, or newer): a
    // missing, empty, foreign or corrupt file is STORE_OPEN_FAILED and left untouched.
    const db = openReadOnlyDatabase(path, { minSchema: 2 })
    this.db = db
    this.s = {
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
      maxSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) FROM journal').pluck(),
      taskCounts: db.prepare('SELECT status, COUNT(*) AS n FROM tasks GROUP BY status'),
      sessionCounts: db.prepare('SELECT status, COUNT(*) AS n FROM sessions GROUP BY status'),
      task: db.prepare('SELECT rowid AS n, * FROM tasks WHERE id = ?'),
      taskLite: db.prepare(`SELECT ${LITE_COLUMNS} FROM tasks t WHERE t.id = ?`),
      tasksLite: db.prepare(`SELECT ${LITE_COLUMNS} FROM json_each(?) j JOIN tasks t ON t.id = j.value`),
      taskRowid: db.prepare('SELECT rowid FROM tasks WHERE id = ?').pluck(),
      parents: db.prepare('SELECT parent_id FROM task_links WHERE child_id = ? LIMIT ?').pluck(),
      children: db.prepare('SELECT child_id FROM task_links WHERE parent_id = ? LIMIT ?').pluck(),
      session: db.prepare('SELECT rowid AS n, * FROM sessions WHERE id = ?'),
      sessionsLite: db.prepare(
        'SELECT s.rowid AS n, s.id, s.status, s.state, s.agent, s.model, s.generation, s.attempts, s.created_at, s.updated_at FROM json_each(?) j JOIN sessions s ON s.id = j.value',
      ),
      sessions: db.prepare(
        `SELECT rowid AS n, id, status, state, agent, model, generation, attempts, created_at, updated_at FROM sessions
         WHERE (@status IS NULL OR status = @status) AND rowid > @after ORDER BY rowid LIMIT @limit`,
      ),
      sessionRowid: db.prepare('SELECT rowid FROM sessions WHERE id = ?').pluck(),
      runs: db.prepare('SELECT * FROM runs WHERE task_id = ? ORDER BY started_at DESC, attempt DESC LIMIT ?'),
      runCount: db.prepare('SELECT COUNT(*) FROM runs WHERE task_id = ?').pluck(),
      journalDesc: db.prepare('SELECT * FROM journal WHERE actor_id = ? AND machine_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?'),
      journalAsc: db.prepare('SELECT * FROM journal WHERE actor_id = ? AND machine_id = ? ORDER BY seq LIMIT ?'),
      journalCount: db.prepare('SELECT COUNT(*) FROM journal WHERE actor_id = ? AND machine_id = ?').pluck(),
      lastActorSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) FROM journal WHERE actor_id = ? AND machine_id = ?').pluck(),
      lastBefore: db.prepare('SELECT * FROM journal WHERE actor_id = ? AND machine_id = ? AND seq < ? ORDER BY seq DESC LIMIT 1'),
      entry: db.prepare('SELECT * FROM journal WHERE seq = ?'),
      stepEntries: db.prepare('SELECT * FROM journal WHERE actor_id = ? AND machine_id = ? AND actor_version = ? ORDER BY seq'),
      after: db.prepare('SELECT * FROM journal WHERE seq > ? ORDER BY seq LIMIT ?'),
      links: db.prepare(
        'SELECT l.parent_id AS parent, l.child_id AS child FROM json_each(?) j JOIN task_links l ON l.child_id = j.value',
      ),
    }
  }

  close(): void {
    if (this.db.open) this.db.close()
  }

  dataVersion(): number {
    return this.s.dataVersion.get() as number
  }

  maxSeq(): number {
    return this.s.maxSeq.get() as number
  }

  summary(statuses: readonly string[], sessionStatuses: readonly string[]) {
    const tasks: Record<string, number> = Object.fromEntries(statuses.map((s) => [s, 0]))
    let totalTasks = 0
    for (const row of this.s.taskCounts.all() as Array<{ status: string; n: number }>) {
      tasks[row.status] = row.n
      totalTasks += row.n
    }
    const sessions: Record<string, number> = Object.fromEntries(sessionStatuses.map((s) => [s, 0]))
    let totalSessions = 0
    for (const row of this.s.sessionCounts.all() as Array<{ status: string; n: number }>) {
      sessions[row.status] = row.n
      totalSessions += row.n
    }
    return { tasks, totalTasks, sessions, totalSessions, seq: this.maxSeq() }
  }

  taskExists(id: string): boolean {
    return this.s.taskRowid.get(id) !== undefined
  }

  /** A page of tasks in creation order; `after` is a task id (as in `tasks.list`). */
  listTasks(query: TaskQuery): { tasks: TaskLite[]; next: string | null } {
    const where: string[] = []
    const params: Record<string, unknown> = { limit: query.limit + 1 }
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
      where.push("(t.title LIKE @like ESCAPE '\\' OR t.id = @q)")
      params.like = `%${query.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`
      params.q = query.q
    }
    if (query.after !== undefined) {
      const rowid = this.s.taskRowid.get(query.after) as number | undefined
      if (rowid === undefined) throw new InvalidInputError(`after: no task ${JSON.stringify(query.after)}`, { field: 'after' })
      where.push('t.rowid > @after')
      params.after = rowid
    }
    const sql = `SELECT ${LITE_COLUMNS} FROM tasks t ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY t.rowid LIMIT @limit`
    let stmt = this.listCache.get(sql)
    if (!stmt) {
      stmt = this.db.prepare(sql)
      if (this.listCache.size < 64) this.listCache.set(sql, stmt)
    }
    const rows = (stmt.all(params) as LiteRow[]).map(toLite)
    const more = rows.length > query.limit
    if (more) rows.length = query.limit
    return { tasks: rows, next: more ? rows[rows.length - 1]!.id : null }
  }

  task(id: string): TaskRowFull | null {
    return (this.s.task.get(id) as TaskRowFull | undefined) ?? null
  }

  tasksLite(ids: string[]): TaskLite[] {
    if (ids.length === 0) return []
    return (this.s.tasksLite.all(JSON.stringify(ids)) as LiteRow[]).map(toLite)
  }

  parents(id: string, limit: number): string[] {
    return this.s.parents.all(id, limit) as string[]
  }

  children(id: string, limit: number): string[] {
    return this.s.children.all(id, limit) as string[]
  }

  session(id: string): SessionRowFull | null {
    return (this.s.session.get(id) as SessionRowFull | undefined) ?? null
  }

  sessionsLite(ids: string[]) {
    if (ids.length === 0) return []
    return this.s.sessionsLite.all(JSON.stringify(ids)) as Array<{
      n: number
      id: string
      status: string
      state: string
      agent: string | null
      model: string | null
      generation: number
      attempts: number
      updated_at: number
    }>
  }

  listSessions(query: { status?: string; after?: string; limit: number }) {
    let after = 0
    if (query.after !== undefined) {
      const rowid = this.s.sessionRowid.get(query.after) as number | undefined
      if (rowid === undefined) throw new InvalidInputError(`after: no session ${JSON.stringify(query.after)}`, { field: 'after' })
      after = rowid
    }
    const rows = this.s.sessions.all({ status: query.status ?? null, after, limit: query.limit + 1 }) as Array<Record<string, unknown> & { id: string }>
    const more = rows.length > query.limit
    if (more) rows.length = query.limit
    return { rows, next: more ? rows[rows.length - 1]!.id : null }
  }

  runs(taskId: string, limit: number): { rows: RunRow[]; total: number } {
    return { rows: this.s.runs.all(taskId, limit) as RunRow[], total: this.s.runCount.get(taskId) as number }
  }

  /** An actor's journal, newest first, entries before `before`. */
  actorJournalDesc(actorId: string, machineId: string, before: number, limit: number): JournalRowLite[] {
    return this.s.journalDesc.all(actorId, machineId, before, limit) as JournalRowLite[]
  }

  actorJournalAsc(actorId: string, machineId: string, limit: number): JournalRowLite[] {
    return this.s.journalAsc.all(actorId, machineId, limit) as JournalRowLite[]
  }

  actorJournalCount(actorId: string, machineId: string): number {
    return this.s.journalCount.get(actorId, machineId) as number
  }

  lastActorSeq(actorId: string, machineId: string): number {
    return this.s.lastActorSeq.get(actorId, machineId) as number
  }

  lastEntryBefore(actorId: string, machineId: string, seq: number): JournalRowLite | null {
    return (this.s.lastBefore.get(actorId, machineId, seq) as JournalRowLite | undefined) ?? null
  }

  entry(seq: number): JournalRowLite | null {
    return (this.s.entry.get(seq) as JournalRowLite | undefined) ?? null
  }

  stepEntries(actorId: string, machineId: string, actorVersion: number): JournalRowLite[] {
    return this.s.stepEntries.all(actorId, machineId, actorVersion) as JournalRowLite[]
  }

  journalAfter(seq: number, limit: number): JournalRowLite[] {
    return this.s.after.all(seq, limit) as JournalRowLite[]
  }

  /**
   * The task DAG, bounded: the tasks matching a filter (creation order), or the
   * ancestors and descendants of one task (`focus`, up to `depth` links away), and the
   * links between the tasks returned.
   */
  graph(query: Omit<TaskQuery, 'after'> & { focus?: string; depth: number }) {
    let nodes: TaskLite[]
    let truncated = false
    if (query.focus !== undefined) {
      const ids = this.db
        .prepare(
          `WITH RECURSIVE
             up(id, d) AS (SELECT @focus, 0 UNION SELECT l.parent_id, up.d + 1 FROM task_links l JOIN up ON l.child_id = up.id WHERE up.d < @depth LIMIT @cap),
             down(id, d) AS (SELECT @focus, 0 UNION SELECT l.child_id, down.d + 1 FROM task_links l JOIN down ON l.parent_id = down.id WHERE down.d < @depth LIMIT @cap)
           SELECT id FROM up UNION SELECT id FROM down LIMIT @limit`,
        )
        .pluck()
        .all({ focus: query.focus, depth: query.depth, cap: query.limit * 8, limit: query.limit + 1 }) as string[]
      truncated = ids.length > query.limit
      if (truncated) ids.length = query.limit
      nodes = this.tasksLite(ids).sort((a, b) => a.n - b.n)
    } else {
      const page = this.listTasks({ ...query, limit: query.limit })
      nodes = page.tasks
      truncated = page.next !== null
    }
    const inSet = new Set(nodes.map((n) => n.id))
    const edges: Array<{ parent: string; child: string }> = []
    let external = 0
    for (const link of this.s.links.iterate(JSON.stringify([...inSet])) as Iterable<{ parent: string; child: string }>) {
      if (inSet.has(link.parent)) edges.push(link)
      else external++
    }
    return { nodes, edges, truncated, externalParents: external }
  }
}
