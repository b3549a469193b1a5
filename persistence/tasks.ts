/**
 * SQLite side of the task board: the task actor kind (facts for the guards, durable
 * actions, the `tasks` projection) and the read queries. Every write here runs inside a
 * committed step (see kernel.ts).
 */
import type { AnyMachineSnapshot } from 'xstate'
import {
  TASK_MACHINE_ID,
  TASK_MACHINE_VERSION,
  TASK_STATE_STATUS,
  taskMachine,
  type ParentFacts,
  type RunOutcome,
  type TaskContext,
  type TaskState,
  type TaskStatus,
} from '../machines/task.js'
import type { Db } from './connection.js'
import { stateName, type ActorKind, type StepInfo } from './kernel.js'

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

/** Which ready tasks a claimNext looks at. */
export interface ReadyFilter {
  /** Only this assignee's tasks; without it (and without anyAssignee) only unassigned ones. */
  assignee?: string
  /** Tasks of every assignee and none. */
  anyAssignee?: boolean
  tenant?: string
}

export interface TaskFilter {
  status?: TaskStatus
  assignee?: string
  tenant?: string
  limit: number
  /** Tasks created after this one (its id), for paging. */
  after?: string
}

// Everything but the snapshot (the machine's business, not the reader's).
const TASK_COLUMNS = `t.id, t.title, t.body, t.assignee, t.tenant, t.priority, t.payload, t.idempotency_key,
  t.max_attempts, t.status, t.state, t.attempts, t.run_id, t.worker, t.lease_expires_at, t.retry_at,
  t.blocked_reason, t.blocked_by, t.last_error, t.result, t.summary, t.created_at, t.updated_at, t.completed_at,
  (SELECT json_group_array(parent_id) FROM task_links WHERE child_id = t.id) AS parents`

/** Projection columns, in the order `project()` returns their values. */
const PROJECTION = [
  'status',
  'attempts',
  'run_id',
  'worker',
  'lease_expires_at',
  'retry_at',
  'blocked_reason',
  'blocked_by',
  'last_error',
  'completed_at',
] as const

/** What the "any assignee" claim query merges on: the claim order, then rowid. */
const MERGE_COLUMNS = 'id, priority, created_at, rowid AS seq'

/** Statements prepared once per connection. */
export class TaskQueries {
  private readonly s

  constructor(readonly db: Db) {
    this.s = {
      insertTask: db.prepare(
        // Version 0 and an empty snapshot: the creating step (kernel.createInTx) fills them in.
        `INSERT INTO tasks (id, machine_id, machine_version, snapshot, version, title, body, assignee, tenant, priority,
                            payload, idempotency_key, max_attempts, state, status, created_at, updated_at)
         VALUES (@id, '${TASK_MACHINE_ID}', ${TASK_MACHINE_VERSION}, '{}', 0, @title, @body, @assignee, @tenant, @priority,
                 @payload, @idempotencyKey, @maxAttempts, 'created', 'todo', @now, @now)`,
      ),
      parentFacts: db.prepare(
        `SELECT p.id, p.status, p.completed_at FROM task_links l JOIN tasks p ON p.id = l.parent_id WHERE l.child_id = ?`,
      ),
      parentStatus: db.prepare('SELECT id, status, completed_at FROM tasks WHERE id = ?'),
      children: db.prepare('SELECT child_id FROM task_links WHERE parent_id = ?'),
      insertLink: db.prepare('INSERT OR IGNORE INTO task_links (parent_id, child_id, created_at) VALUES (?, ?, ?)'),
      deleteLink: db.prepare('DELETE FROM task_links WHERE parent_id = ? AND child_id = ?'),
      linkExists: db.prepare('SELECT 1 FROM task_links WHERE parent_id = ? AND child_id = ?'),
      // Is `ancestor` reachable from `task` by walking parent links upward?
      isAncestor: db.prepare(
        `WITH RECURSIVE up(id) AS (
           SELECT parent_id FROM task_links WHERE child_id = @task
           UNION SELECT l.parent_id FROM task_links l JOIN up ON l.child_id = up.id
         ) SELECT 1 FROM up WHERE id = @ancestor LIMIT 1`,
      ),
      openRun: db.prepare(
        `INSERT INTO runs (task_id, id, worker, attempt, started_at, lease_expires_at, claim_key) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      closeRun: db.prepare(
        `UPDATE runs SET ended_at = ?, outcome = ?, error = ?, summary = ?, result = ?, metadata = ?
         WHERE task_id = ? AND id = ? AND ended_at IS NULL`,
      ),
      extendRun: db.prepare('UPDATE runs SET lease_expires_at = ? WHERE task_id = ? AND id = ? AND ended_at IS NULL'),
      recordResult: db.prepare('UPDATE tasks SET result = ?, summary = ? WHERE id = ?'),
      byId: db.prepare(`SELECT ${TASK_COLUMNS} FROM tasks t WHERE t.id = ?`),
      exists: db.prepare('SELECT 1 FROM tasks WHERE id = ?'),
      runExists: db.prepare('SELECT 1 FROM runs WHERE task_id = ? AND id = ?'),
      byIdempotencyKey: db.prepare('SELECT id FROM tasks WHERE idempotency_key = ?'),
      runs: db.prepare('SELECT * FROM runs WHERE task_id = ? ORDER BY started_at, attempt'),
      // The run a claim key opened, whether the task is still held by it, and its token.
      claimByKey: db.prepare(
        `SELECT r.task_id, r.id AS run_id, r.worker, r.attempt, t.lease_expires_at,
                (r.ended_at IS NULL AND t.run_id = r.id) AS held,
                json_extract(t.snapshot, '$.context.token') AS token
         FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.claim_key = ?`,
      ),
    }
  }

  insertTask(row: NewTaskRow, now: number): void {
    this.s.insertTask.run({ ...row, now })
  }

  exists(id: string): boolean {
    return this.s.exists.get(id) !== undefined
  }

  /** Did this task ever have this run (open or closed)? */
  runExists(taskId: string, runId: string): boolean {
    return this.s.runExists.get(taskId, runId) !== undefined
  }

  byIdempotencyKey(key: string): string | null {
    const row = this.s.byIdempotencyKey.get(key) as { id: string } | undefined
    return row?.id ?? null
  }

  get(id: string): TaskRow | null {
    return (this.s.byId.get(id) as TaskRow | undefined) ?? null
  }

  linkExists(parentId: string, childId: string): boolean {
    return this.s.linkExists.get(parentId, childId) !== undefined
  }

  insertLinkRow(parentId: string, childId: string, now: number): void {
    this.s.insertLink.run(parentId, childId, now)
  }

  /** Would `parentId -> childId` close a cycle? (Also true for a self-link.) */
  wouldCycle(parentId: string, childId: string): boolean {
    return parentId === childId || this.s.isAncestor.get({ task: parentId, ancestor: childId }) !== undefined
  }

  childIds(parentId: string): string[] {
    return (this.s.children.all(parentId) as Array<{ child_id: string }>).map((r) => r.child_id)
  }

  /** The claim a claimNext with this idempotency key made, if any. */
  claimByKey(key: string): { task_id: string; run_id: string; worker: string; attempt: number; lease_expires_at: number | null; held: 0 | 1; token: string } | null {
    return (this.s.claimByKey.get(key) as ReturnType<TaskQueries['claimByKey']>) ?? null
  }

  runs(taskId: string): RunRow[] {
    return this.s.runs.all(taskId) as RunRow[]
  }

  /**
   * The parents' facts the guards see. For LINK they include the parent being linked,
   * for UNLINK they leave out the one being unlinked: the machine decides on the graph
   * as it will be if it accepts the event.
   */
  parentFacts(taskId: string, event: { type: string; parentId?: unknown }): ParentFacts {
    const rows = this.s.parentFacts.all(taskId) as Array<{ id: string; status: TaskStatus; completed_at: number | null }>
    if (event.type === 'LINK' && typeof event.parentId === 'string' && !rows.some((r) => r.id === event.parentId)) {
      const parent = this.s.parentStatus.get(event.parentId) as (typeof rows)[number] | undefined
      if (parent) rows.push(parent)
    }
    const facts: ParentFacts = { unfinished: 0, failed: [] }
    for (const row of rows) {
      if (event.type === 'UNLINK' && row.id === event.parentId) continue
      // Done (or archived after done) is finished; everything else is not.
      if (row.completed_at === null) facts.unfinished++
      if (row.status === 'failed' || row.status === 'cancelled' || (row.status === 'archived' && row.completed_at === null)) {
        facts.failed.push(row.id)
      }
    }
    return facts
  }

  list(filter: TaskFilter): TaskRow[] {
    const where: string[] = []
    const params: unknown[] = []
    if (filter.status) {
      where.push('t.status = ?')
      params.push(filter.status)
    }
    if (filter.assignee !== undefined) {
      where.push('t.assignee = ?')
      params.push(filter.assignee)
    }
    if (filter.tenant !== undefined) {
      where.push('t.tenant = ?')
      params.push(filter.tenant)
    }
    if (filter.after !== undefined) {
      where.push('t.rowid > (SELECT rowid FROM tasks WHERE id = ?)')
      params.push(filter.after)
    }
    const sql = `SELECT ${TASK_COLUMNS} FROM tasks t ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY t.rowid LIMIT ?`
    return this.db.prepare(sql).all(...params, filter.limit) as TaskRow[]
  }

  /**
   * Ready tasks a claim may take (see `assigneeAdmits` in machines/task.ts), in claim
   * order: highest priority first, then oldest. Each variant reads a partial index that
   * yields exactly those tasks already in that order, so a generic pool is never slowed
   * by other assignees' work; only "any assignee within a tenant" sorts that tenant's
   * ready rows.
   */
  readyCandidates(filter: ReadyFilter, limit: number): string[] {
    const who = filter.anyAssignee ? 'any' : filter.assignee !== undefined ? 'named' : 'unassigned'
    const key = `${who}/${filter.tenant !== undefined ? 'tenant' : 'all'}`
    let stmt = this.readyStatements.get(key)
    if (!stmt) {
      // INDEXED BY: without ANALYZE statistics SQLite would rather scan tasks_status and
      // sort every ready row; the partial indexes yield them already in claim order (ties
      // of one millisecond by rowid, the index's own last column).
      const pick = (index: string, match: string, columns = 'id') =>
        `SELECT ${columns} FROM tasks INDEXED BY ${index} WHERE status = 'ready' AND ${match}
         ORDER BY priority DESC, created_at LIMIT @limit`
      const assignee = who === 'named' ? 'assignee = @assignee' : 'assignee IS NULL'
      const sql =
        filter.tenant !== undefined
          ? pick('tasks_ready_by_tenant', who === 'any' ? 'tenant = @tenant' : `tenant = @tenant AND ${assignee}`)
          : who !== 'any'
            ? pick('tasks_ready_by_assignee', assignee)
            : // Any assignee: merge the heads of the unassigned and the assigned orders
              // (the merge breaks ties by rowid too, as one index would).
              `SELECT id FROM (
                 SELECT * FROM (${pick('tasks_ready_by_assignee', 'assignee IS NULL', MERGE_COLUMNS)})
                 UNION ALL
                 SELECT * FROM (${pick('tasks_ready_assigned', 'assignee IS NOT NULL', MERGE_COLUMNS)})
               ) ORDER BY priority DESC, created_at, seq LIMIT @limit`
      stmt = this.db.prepare(sql)
      this.readyStatements.set(key, stmt)
    }
    const rows = stmt.all({
      ...(key.endsWith('/tenant') ? { tenant: filter.tenant } : {}),
      ...(who === 'named' ? { assignee: filter.assignee } : {}),
      limit,
    }) as Array<{ id: string }>
    return rows.map((r) => r.id)
  }
  private readonly readyStatements = new Map<string, ReturnType<Db['prepare']>>()

  /** The task actor kind: how task machines meet SQLite. */
  actorKind(): ActorKind {
    const s = this.s
    const context = (snapshot: AnyMachineSnapshot) => snapshot.context as TaskContext
    return {
      machineId: TASK_MACHINE_ID,
      machineVersion: TASK_MACHINE_VERSION,
      machine: taskMachine,
      table: 'tasks',
      projection: PROJECTION,
      // Whoever can read the journal must not be able to complete someone else's run.
      secretEventFields: ['token'],
      facts: (_tx, actorId, event) => this.parentFacts(actorId, event),
      project: (step: StepInfo): unknown[] => {
        const c = context(step.after)
        const state = stateName(step.after.value) as TaskState
        const running = state === 'running'
        return [
          TASK_STATE_STATUS[state],
          c.attempts,
          running ? c.runId : null,
          running ? c.worker : null,
          running ? c.leaseExpiresAt : null,
          state === 'backoff' ? c.retryAt : null,
          c.blockedReason,
          c.blockedByParent,
          c.lastError,
          c.completedAt,
        ]
      },
      runIdOf: (step) => {
        if (typeof step.event.runId === 'string') return step.event.runId
        return step.before && stateName(step.before.value) === 'running' ? context(step.before).runId : null
      },
      effects: {
        // A heartbeat extends the run's recorded lease too, so runs() tells the truth.
        extendRun: (_tx, step, p: { runId: string; leaseExpiresAt: number }) => {
          s.extendRun.run(p.leaseExpiresAt, step.actorId, p.runId)
        },
        openRun: (tx, step, p: { runId: string; worker: string; attempt: number; leaseExpiresAt: number; claimKey: string | null }) => {
          s.openRun.run(step.actorId, p.runId, p.worker, p.attempt, step.event.at, p.leaseExpiresAt, p.claimKey)
        },
        closeRun: (
          _tx,
          step,
          p: { runId: string; outcome: RunOutcome; error?: string | null; result?: unknown; summary?: string | null; metadata?: unknown },
        ) => {
          const result = p.result === undefined ? null : JSON.stringify(p.result)
          const closed = s.closeRun.run(
            step.event.at,
            p.outcome,
            p.error ?? null,
            p.summary ?? null,
            result,
            p.metadata === undefined ? null : JSON.stringify(p.metadata),
            step.actorId,
            p.runId,
          ).changes
          // Every run is closed exactly once; a second close would mean the fence failed.
          if (closed !== 1) throw new Error(`run ${p.runId} of task ${step.actorId} was not open`)
          if (p.outcome === 'completed') s.recordResult.run(result, p.summary ?? null, step.actorId)
        },
        insertLink: (tx, step, p: { parentId: string }) => {
          s.insertLink.run(p.parentId, step.actorId, tx.now)
        },
        deleteLink: (_tx, step, p: { parentId: string }) => {
          s.deleteLink.run(p.parentId, step.actorId)
        },
        // Only this task's own children are looked at: no board scan.
        promoteChildren: (tx, step) => {
          for (const child of this.childIds(step.actorId)) tx.enqueue(TASK_MACHINE_ID, child, { type: 'PARENT_DONE', parentId: step.actorId })
        },
        blockChildren: (tx, step, p: { status: string }) => {
          for (const child of this.childIds(step.actorId)) {
            tx.enqueue(TASK_MACHINE_ID, child, { type: 'PARENT_FAILED', parentId: step.actorId, parentStatus: p.status })
          }
        },
        restoreChildren: (tx, step) => {
          for (const child of this.childIds(step.actorId)) tx.enqueue(TASK_MACHINE_ID, child, { type: 'PARENT_RESTORED', parentId: step.actorId })
        },
      },
    }
  }
}
