/**
 * The inspector's read side, whichever store it reads: paging, lookups and the DAG over
 * the store boundary's InspectReads (persistence/store.ts), on a connection of its own that
 * is read-only at the database (persistence/inspect.ts), so inspecting a live board cannot
 * change it.
 */
import { openInspectSource, type InspectTarget } from '../../../persistence/inspect.js'
import type { JournalRow } from '../../../persistence/journal-rows.js'
import type { InspectSource, RunRow, SessionActorRow, SessionListRow, TaskActorRow, TaskListRow } from '../../../persistence/store.js'
import { InvalidInputError } from '../../errors.js'

export type { InspectTarget }

/** Journal rows as the journal table holds them. */
export type JournalRowLite = JournalRow

/** A task row with its persisted snapshot, and its insertion order `n` for paging. */
export type TaskRowFull = TaskActorRow

/** A session row with its insertion order `n` and machine columns. */
export type SessionRowFull = SessionActorRow

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

export interface TaskQuery {
  status?: string
  assignee?: string
  tenant?: string
  q?: string
  after?: string
  limit: number
}

const toLite = (r: TaskListRow): TaskLite => ({
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
  /** Horizon reads one at a time: PostgreSQL's horizon is only right when each read sees the previous one's result. */
  private horizonChain: Promise<unknown> = Promise.resolve()

  private constructor(private readonly src: InspectSource) {}

  static async open(target: InspectTarget): Promise<InspectorStore> {
    if ('path' in target && target.path === ':memory:') {
      throw new InvalidInputError('the inspector reads a database file; an in-memory orchestrator cannot be inspected', { field: 'path' })
    }
    return new InspectorStore(await openInspectSource(target))
  }

  get where(): string {
    return this.src.where
  }

  /** The store's clock (on PostgreSQL the database's), for what the page compares with time. */
  now(): number {
    return this.src.now()
  }

  close(): Promise<void> {
    return this.src.close()
  }

  /** The highest seq at or below which every journal entry is final (a follower may read up to it). */
  horizon(): Promise<number> {
    const next = this.horizonChain.then(() => this.src.journal.horizon())
    this.horizonChain = next.catch(() => {})
    return next
  }

  /** Whether anything may have been committed since the last call. */
  async changed(): Promise<boolean> {
    return this.src.journal.changed()
  }

  summary(statuses: readonly string[], sessionStatuses: readonly string[], seq: number) {
    return this.src.read(async (r) => {
      const count = (known: readonly string[], rows: Array<{ status: string; n: number }>) => {
        const byStatus: Record<string, number> = Object.fromEntries(known.map((s) => [s, 0]))
        let total = 0
        for (const row of rows) {
          byStatus[row.status] = Number(row.n)
          total += Number(row.n)
        }
        return { byStatus, total }
      }
      const tasks = count(statuses, await r.countsByStatus('tasks'))
      const sessions = count(sessionStatuses, await r.countsByStatus('sessions'))
      return { tasks: tasks.byStatus, totalTasks: tasks.total, sessions: sessions.byStatus, totalSessions: sessions.total, seq }
    })
  }

  taskExists(id: string): Promise<boolean> {
    return this.src.read(async (r) => (await r.orderOf('tasks', id)) !== null)
  }

  /** A page of tasks in creation order; `after` is a task id (as in `tasks.list`). */
  listTasks(query: TaskQuery): Promise<{ tasks: TaskLite[]; next: string | null }> {
    return this.src.read(async (r) => {
      let afterN: number | undefined
      if (query.after !== undefined) {
        const n = await r.orderOf('tasks', query.after)
        if (n === null) throw new InvalidInputError(`after: no task ${JSON.stringify(query.after)}`, { field: 'after' })
        afterN = n
      }
      const { after: _after, ...filter } = query
      const rows = (await r.tasks({ ...filter, afterN, limit: query.limit + 1 })).map(toLite)
      const more = rows.length > query.limit
      if (more) rows.length = query.limit
      return { tasks: rows, next: more ? rows[rows.length - 1]!.id : null }
    })
  }

  task(id: string): Promise<TaskRowFull | null> {
    return this.src.read((r) => r.task(id))
  }

  async tasksLite(ids: string[]): Promise<TaskLite[]> {
    if (ids.length === 0) return []
    return (await this.src.read((r) => r.tasksByIds(ids))).map(toLite)
  }

  parents(id: string, limit: number): Promise<string[]> {
    return this.src.read((r) => r.parentIds(id, limit))
  }

  children(id: string, limit: number): Promise<string[]> {
    return this.src.read((r) => r.childIds(id, limit))
  }

  session(id: string): Promise<SessionRowFull | null> {
    return this.src.read((r) => r.session(id))
  }

  async sessionsLite(ids: string[]): Promise<SessionListRow[]> {
    if (ids.length === 0) return []
    return this.src.read((r) => r.sessionsByIds(ids))
  }

  listSessions(query: { status?: string; after?: string; limit: number }): Promise<{ rows: SessionListRow[]; next: string | null }> {
    return this.src.read(async (r) => {
      let after = 0
      if (query.after !== undefined) {
        const n = await r.orderOf('sessions', query.after)
        if (n === null) throw new InvalidInputError(`after: no session ${JSON.stringify(query.after)}`, { field: 'after' })
        after = n
      }
      const rows = await r.sessions(query.status ?? null, after, query.limit + 1)
      const more = rows.length > query.limit
      if (more) rows.length = query.limit
      return { rows, next: more ? rows[rows.length - 1]!.id : null }
    })
  }

  runs(taskId: string, limit: number): Promise<{ rows: RunRow[]; total: number }> {
    return this.src.read((r) => r.runs(taskId, limit))
  }

  /** An actor's journal, newest first, entries before `before`. */
  actorJournalDesc(actorId: string, machineId: string, before: number, limit: number): Promise<JournalRowLite[]> {
    return this.src.read((r) => r.actorJournalDesc(actorId, machineId, before, limit))
  }

  actorJournalAsc(actorId: string, machineId: string, limit: number): Promise<JournalRowLite[]> {
    return this.src.read((r) => r.actorJournalAsc(actorId, machineId, limit))
  }

  actorJournalCount(actorId: string, machineId: string): Promise<number> {
    return this.src.read(async (r) => Number(await r.actorJournalCount(actorId, machineId)))
  }

  lastActorSeq(actorId: string, machineId: string): Promise<number> {
    return this.src.read(async (r) => Number(await r.lastActorSeq(actorId, machineId)))
  }

  /** Each actor's last entry before `seq`, by actor id. */
  async lastEntriesBefore(actorIds: string[], machineId: string, seq: number): Promise<Map<string, JournalRowLite>> {
    if (actorIds.length === 0) return new Map()
    const rows = await this.src.read((r) => r.lastEntriesBefore(actorIds, machineId, seq))
    return new Map(rows.map((row) => [row.actor_id, row]))
  }

  entry(seq: number): Promise<JournalRowLite | null> {
    return this.src.read((r) => r.entry(seq))
  }

  stepEntries(actorId: string, machineId: string, actorVersion: number): Promise<JournalRowLite[]> {
    return this.src.read((r) => r.stepEntries(actorId, machineId, actorVersion))
  }

  /** Entries after `after`, up to `upTo` (the horizon), in seq order. */
  journalAfter(after: number, upTo: number, limit: number): Promise<JournalRowLite[]> {
    return this.src.read((r) => r.journalAfter(after, upTo, limit))
  }

  /** The last `limit` entries at or below `upTo`, in seq order. */
  latestJournal(upTo: number, limit: number): Promise<JournalRowLite[]> {
    return this.src.read((r) => r.latestJournal(upTo, limit))
  }

  /**
   * The task DAG, bounded: the tasks matching a filter (creation order), or the
   * ancestors and descendants of one task (`focus`, up to `depth` links away), and the
   * links between the tasks returned.
   */
  async graph(query: Omit<TaskQuery, 'after'> & { focus?: string; depth: number }) {
    let nodes: TaskLite[]
    let truncated = false
    if (query.focus !== undefined) {
      const focus = query.focus
      const ids = await this.src.read((r) => r.neighbourhood(focus, query.depth, query.limit * 8, query.limit + 1))
      truncated = ids.length > query.limit
      if (truncated) ids.length = query.limit
      nodes = (await this.tasksLite(ids)).sort((a, b) => a.n - b.n)
    } else {
      const { focus: _focus, depth: _depth, ...filter } = query
      const page = await this.listTasks(filter)
      nodes = page.tasks
      truncated = page.next !== null
    }
    const inSet = new Set(nodes.map((n) => n.id))
    const edges: Array<{ parent: string; child: string }> = []
    let external = 0
    for (const link of await this.src.read((r) => r.linksInto([...inSet]))) {
      if (inSet.has(link.parent)) edges.push(link)
      else external++
    }
    return { nodes, edges, truncated, externalParents: external }
  }
}
