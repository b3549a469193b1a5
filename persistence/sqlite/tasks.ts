/**
 * SQLite side of the task board: the statements behind the store's task operations
 * (persistence/store.ts) and the read queries. Writes here run only inside a committed
 * step (src/core/kernel.ts); the rules they serve live in src/core/task-kind.ts.
 */
import { TASK_MACHINE_ID, TASK_MACHINE_VERSION } from '../../machines/task.js'
import type { Db } from './connection.js'
import type { ClaimKeyRow, CloseRun, NewTaskRow, OpenRun, ParentRow, ReadyFilter, RunRow, TaskFilter, TaskRow } from '../store.js'

export type { RunRow, TaskFilter, TaskRow }


// Everything but the snapshot (the machine's business, not the reader's).
const TASK_COLUMNS = `t.id, t.title, t.body, t.assignee, t.tenant, t.priority, t.payload, t.idempotency_key,
  t.max_attempts, t.status, t.state, t.attempts, t.run_id, t.worker, t.lease_expires_at, t.retry_at,
  t.blocked_reason, t.blocked_by, t.last_error, t.result, t.summary, t.created_at, t.updated_at, t.completed_at,
  (SELECT json_group_array(parent_id) FROM task_links WHERE child_id = t.id) AS parents`


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
      parentRows: db.prepare(
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

  insertLink(parentId: string, childId: string, now: number): void {
    this.s.insertLink.run(parentId, childId, now)
  }

  deleteLink(parentId: string, childId: string): void {
    this.s.deleteLink.run(parentId, childId)
  }

  /** Is `ancestor` reachable from `taskId` by walking parent links upward? */
  isAncestor(ancestor: string, taskId: string): boolean {
    return this.s.isAncestor.get({ task: taskId, ancestor }) !== undefined
  }

  childIds(parentId: string): string[] {
    return (this.s.children.all(parentId) as Array<{ child_id: string }>).map((r) => r.child_id)
  }

  parentRows(childId: string): ParentRow[] {
    return this.s.parentRows.all(childId) as ParentRow[]
  }

  parentRow(id: string): ParentRow | undefined {
    return this.s.parentStatus.get(id) as ParentRow | undefined
  }

  /** The claim a claimNext with this idempotency key made, if any. */
  claimByKey(key: string): ClaimKeyRow | null {
    return (this.s.claimByKey.get(key) as ClaimKeyRow | undefined) ?? null
  }

  openRun(run: OpenRun): void {
    this.s.openRun.run(run.taskId, run.runId, run.worker, run.attempt, run.startedAt, run.leaseExpiresAt, run.claimKey)
  }

  closeRun(run: CloseRun): boolean {
    const closed = this.s.closeRun.run(run.endedAt, run.outcome, run.error, run.summary, run.result, run.metadata, run.taskId, run.runId)
    return closed.changes === 1
  }

  extendRun(taskId: string, runId: string, leaseExpiresAt: number): void {
    this.s.extendRun.run(leaseExpiresAt, taskId, runId)
  }

  recordResult(taskId: string, result: string | null, summary: string | null): void {
    this.s.recordResult.run(result, summary, taskId)
  }

  runs(taskId: string): RunRow[] {
    return this.s.runs.all(taskId) as RunRow[]
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
    // The limit is a literal of the statement (one statement per limit): a bound LIMIT makes
    // SQLite re-plan the query after every write to the table, inside the write lock.
    const literalLimit = Math.max(1, Math.floor(limit))
    const key = `${who}/${filter.tenant !== undefined ? 'tenant' : 'all'}/${literalLimit}`
    let stmt = this.readyStatements.get(key)
    if (!stmt) {
      // INDEXED BY: without ANALYZE statistics SQLite would rather scan tasks_status and
      // sort every ready row; the partial indexes yield them already in claim order (ties
      // of one millisecond by rowid, the index's own last column).
      const pick = (index: string, match: string, columns = 'id') =>
        `SELECT ${columns} FROM tasks INDEXED BY ${index} WHERE status = 'ready' AND ${match}
         ORDER BY priority DESC, created_at LIMIT ${literalLimit}`
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
               ) ORDER BY priority DESC, created_at, seq LIMIT ${literalLimit}`
      stmt = this.db.prepare(sql)
      this.readyStatements.set(key, stmt)
    }
    const rows = stmt.all({
      ...(filter.tenant !== undefined ? { tenant: filter.tenant } : {}),
      ...(who === 'named' ? { assignee: filter.assignee } : {}),
    }) as Array<{ id: string }>
    return rows.map((r) => r.id)
  }
  private readonly readyStatements = new Map<string, ReturnType<Db['prepare']>>()
}
