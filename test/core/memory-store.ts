/**
 * An in-memory store (Maps and arrays, no database) for the storage-free core's tests:
 * if the committed step runs on this as it does on SQLite, the step depends on nothing
 * but the store operations of persistence/store.ts. `async: true` answers every operation
 * with a promise, as a networked store (PostgreSQL) does.
 */
import type {
  ActorRow,
  ActorSnapshotRow,
  ActorTable,
  ActorWrite,
  ClaimKeyRow,
  CloseRun,
  JournalWrite,
  NewTaskRow,
  OpenRun,
  ParentRow,
  ReadyFilter,
  StepStore,
  TimerChange,
  TimerRow,
} from '../../persistence/store.js'
import { runAsync, runSync, type Io } from '../../src/core/io.js'
import type { StoreDriver } from '../../src/core/kernel.js'
import type { TaskStatus } from '../../machines/task.js'

interface MemoryActor extends ActorRow {
  id: string
  snapshot: string
  /** Projection columns by name. */
  columns: Record<string, unknown>
}

interface MemoryTask extends NewTaskRow {
  createdAt: number
  order: number
}

export interface MemoryRun extends OpenRun {
  endedAt: number | null
  outcome: string | null
  error: string | null
  result: string | null
}

export class MemoryStore implements StepStore {
  readonly actors = new Map<string, Map<string, MemoryActor>>()
  readonly journal: Array<JournalWrite & { seq: number }> = []
  readonly timers = new Map<string, TimerRow>()
  readonly tasks = new Map<string, MemoryTask>()
  readonly links: Array<{ parentId: string; childId: string }> = []
  readonly runs: MemoryRun[] = []

  private table(at: ActorTable): Map<string, MemoryActor> {
    let rows = this.actors.get(at.table)
    if (!rows) this.actors.set(at.table, (rows = new Map()))
    return rows
  }

  private task(id: string): MemoryActor | undefined {
    return this.actors.get('tasks')?.get(id)
  }

  /** A new actor row at version 0 (what a kind's insert does before the creating step). */
  private insertActor(table: string, id: string, state: string): void {
    this.table({ table, projection: [] }).set(id, { id, machine_id: '', machine_version: 0, version: 0, state, snapshot: '{}', columns: {} })
  }

  loadActor(at: ActorTable, id: string): ActorRow | undefined {
    const row = this.table(at).get(id)
    return row && { machine_id: row.machine_id, machine_version: row.machine_version, version: row.version, state: row.state }
  }

  loadSnapshot(at: ActorTable, id: string): string {
    return this.table(at).get(id)!.snapshot
  }

  saveStep(at: ActorTable, id: string, expectedVersion: number, w: ActorWrite, journal: readonly JournalWrite[], timers: readonly TimerChange[]): number[] | null {
    const row = this.table(at).get(id)
    if (!row || row.version !== expectedVersion) return null
    Object.assign(row, { machine_id: w.machineId, machine_version: w.machineVersion, state: w.state, snapshot: w.snapshot, version: row.version + 1 })
    at.projection.forEach((column, i) => (row.columns[column] = w.projection[i]))
    const seqs = journal.map((entry) => {
      const seq = this.journal.length + 1
      this.journal.push({ ...entry, seq })
      return seq
    })
    for (const timer of timers) {
      if ('upsert' in timer) this.timers.set(`${timer.upsert.actor_id}/${timer.upsert.timer_id}`, timer.upsert)
      else this.timers.delete(`${timer.cancel.actorId}/${timer.cancel.timerId}`)
    }
    return seqs
  }

  actorsOfOtherVersion(at: ActorTable, machineVersion: number): ActorSnapshotRow[] {
    return [...this.table(at).values()].filter((row) => row.machine_version !== machineVersion && row.version > 0)
  }

  deleteTimer(actorId: string, timerId: string): void {
    this.timers.delete(`${actorId}/${timerId}`)
  }

  dueTimers(now: number, limit: number): TimerRow[] {
    return [...this.timers.values()].filter((t) => t.due_at <= now).sort((a, b) => a.due_at - b.due_at).slice(0, limit)
  }

  insertTask(row: NewTaskRow, now: number): void {
    this.tasks.set(row.id, { ...row, createdAt: now, order: this.tasks.size })
    this.insertActor('tasks', row.id, 'created')
  }

  taskExists(id: string): boolean {
    return this.tasks.has(id)
  }

  taskByIdempotencyKey(key: string): string | null {
    return [...this.tasks.values()].find((t) => t.idempotencyKey === key)?.id ?? null
  }

  runExists(taskId: string, runId: string): boolean {
    return this.runs.some((r) => r.taskId === taskId && r.runId === runId)
  }

  lockGraph(): void {}

  linkExists(parentId: string, childId: string): boolean {
    return this.links.some((l) => l.parentId === parentId && l.childId === childId)
  }

  insertLink(parentId: string, childId: string): void {
    if (!this.linkExists(parentId, childId)) this.links.push({ parentId, childId })
  }

  deleteLink(parentId: string, childId: string): void {
    const i = this.links.findIndex((l) => l.parentId === parentId && l.childId === childId)
    if (i >= 0) this.links.splice(i, 1)
  }

  isAncestor(ancestor: string, taskId: string): boolean {
    const seen = new Set<string>()
    const up = [taskId]
    for (let id = up.pop(); id !== undefined; id = up.pop()) {
      for (const l of this.links) {
        if (l.childId !== id || seen.has(l.parentId)) continue
        if (l.parentId === ancestor) return true
        seen.add(l.parentId)
        up.push(l.parentId)
      }
    }
    return false
  }

  parentRow(id: string): ParentRow | undefined {
    const row = this.task(id)
    return row && { id, status: row.columns.status as TaskStatus, completed_at: (row.columns.completed_at as number | null) ?? null }
  }

  parentRows(childId: string): ParentRow[] {
    return this.links.filter((l) => l.childId === childId).map((l) => this.parentRow(l.parentId)!)
  }

  childIds(parentId: string): string[] {
    return this.links.filter((l) => l.parentId === parentId).map((l) => l.childId)
  }

  readyCandidates(filter: ReadyFilter, limit: number): string[] {
    return [...this.tasks.values()]
      .filter((t) => this.task(t.id)?.columns.status === 'ready')
      .filter((t) => filter.anyAssignee || (t.assignee ?? undefined) === filter.assignee)
      .filter((t) => filter.tenant === undefined || t.tenant === filter.tenant)
      .sort((a, b) => b.priority - a.priority || a.createdAt - b.createdAt || a.order - b.order)
      .slice(0, limit)
      .map((t) => t.id)
  }

  claimByKey(key: string): ClaimKeyRow | null {
    const run = this.runs.find((r) => r.claimKey === key)
    if (!run) return null
    const task = this.task(run.taskId)!
    const context = JSON.parse(task.snapshot).context as { token: string }
    return {
      task_id: run.taskId,
      run_id: run.runId,
      worker: run.worker,
      attempt: run.attempt,
      lease_expires_at: (task.columns.lease_expires_at as number | null) ?? null,
      held: run.endedAt === null && task.columns.run_id === run.runId ? 1 : 0,
      token: context.token,
    }
  }

  openRun(run: OpenRun): void {
    this.runs.push({ ...run, endedAt: null, outcome: null, error: null, result: null })
  }

  closeRun(close: CloseRun): boolean {
    const run = this.runs.find((r) => r.taskId === close.taskId && r.runId === close.runId && r.endedAt === null)
    if (!run) return false
    Object.assign(run, { endedAt: close.endedAt, outcome: close.outcome, error: close.error, result: close.result })
    return true
  }

  extendRun(taskId: string, runId: string, leaseExpiresAt: number): void {
    const run = this.runs.find((r) => r.taskId === taskId && r.runId === runId && r.endedAt === null)
    if (run) run.leaseExpiresAt = leaseExpiresAt
  }

  recordResult(): void {}

  insertSession(id: string): void {
    this.insertActor('sessions', id, 'opening')
  }

  sessionSnapshot(id: string): string | null {
    return this.actors.get('sessions')?.get(id)?.snapshot ?? null
  }
}

/** Every operation answered through a promise, one at a time, as over a network. */
function asynchronous(store: MemoryStore): StepStore {
  return new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      return typeof value === 'function' ? (...args: unknown[]) => Promise.resolve().then(() => value.apply(target, args)) : value
    },
  }) as unknown as StepStore
}

/**
 * A driver over a MemoryStore. A write runs against a copy-free store with no rollback,
 * so a test must not rely on a failed write leaving nothing behind.
 */
export function memoryDriver(store: MemoryStore, options: { async: boolean; now: () => number }): StoreDriver {
  const async = asynchronous(store)
  return {
    now: options.now,
    write: <T>(program: (now: number) => Io<T>) =>
      options.async ? runAsync(program(options.now()), async) : new Promise<T>((resolve) => resolve(runSync(program(options.now()), store))),
    nextTimerDue: () => {
      const due = [...store.timers.values()].map((t) => t.due_at)
      return due.length ? Math.min(...due) : null
    },
  }
}
