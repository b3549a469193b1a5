/**
 * The task actor kind, storage-free: what the claim gate's facts are (what a finished or
 * failed parent is), the `tasks` projection, and the durable actions of the task machine
 * (runs, links, the cascade to children), each as store operations. Every store runs
 * this same code; it is the one place these rules are written.
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
} from '../../machines/task.js'
import type { NewTaskRow, ParentRow, TaskRow } from '../../persistence/store.js'
import { io, type Io } from './io.js'
import { stateName, type ActorKind, type StepInfo, type StepResult, type StepTx } from './kernel.js'

/** Projection columns of the task table, in the order `project()` returns their values. */
export const TASK_PROJECTION = [
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

/**
 * The parents' facts the guards see, from the parents' rows. For LINK they include the
 * parent being linked, for UNLINK they leave out the one being unlinked: the machine
 * decides on the graph as it will be if it accepts the event.
 */
export function parentFacts(rows: readonly ParentRow[], event: { type: string; parentId?: unknown }): ParentFacts {
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

/**
 * The facts, read from the store. The parents a step links (every parent of a CREATE, the
 * new parent of a LINK) are read locked: a parent completing at the same moment cannot
 * see the uncommitted link to promote this task through, so the two must serialize.
 */
function* readParentFacts(actorId: string, event: { type: string; parentId?: unknown }): Io<ParentFacts> {
  const creating = event.type === 'CREATE'
  const rows = yield* io((s) => s.parentRows(actorId, creating))
  if (event.type === 'LINK' && typeof event.parentId === 'string' && !rows.some((r) => r.id === event.parentId)) {
    const parentId = event.parentId
    const parent = yield* io((s) => s.parentRow(parentId, true))
    if (parent) return parentFacts([...rows, parent], event)
  }
  return parentFacts(rows, event)
}

/** The projection of a task snapshot, in TASK_PROJECTION's order. */
export function projectTask(snapshot: AnyMachineSnapshot): unknown[] {
  const c = snapshot.context as TaskContext
  const state = stateName(snapshot.value) as TaskState
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
}

/**
 * The row a create committed, from what it wrote (the input, its links and its first
 * step), so that create() answers without reading the row back; a store's read of it
 * gives the same (tested on every store). Parents come in id order, as reads give them.
 */
export function createdTaskRow(input: NewTaskRow, parents: readonly string[], step: StepResult, now: number): TaskRow {
  const values = projectTask(step.snapshot)
  const projected = Object.fromEntries(TASK_PROJECTION.map((column, i) => [column, values[i]])) as Pick<TaskRow, (typeof TASK_PROJECTION)[number]>
  return {
    id: input.id,
    title: input.title,
    body: input.body,
    assignee: input.assignee,
    tenant: input.tenant,
    priority: input.priority,
    payload: input.payload,
    idempotency_key: input.idempotencyKey,
    max_attempts: input.maxAttempts,
    state: stateName(step.snapshot.value),
    ...projected,
    result: null,
    summary: null,
    created_at: now,
    updated_at: now,
    parents: JSON.stringify([...parents].sort()),
  }
}

/** Queue `event` for every child of the stepping task (its own children only: no board scan). */
function* toChildren(tx: StepTx, step: StepInfo, event: { type: string; [key: string]: unknown }): Io<void> {
  const children = yield* io((s) => s.childIds(step.actorId))
  for (const child of children) tx.enqueue(TASK_MACHINE_ID, child, { ...event, parentId: step.actorId })
}

const json = (value: unknown) => (value === undefined ? null : JSON.stringify(value))

/** The task actor kind: how task machines meet a store. */
export function taskKind(): ActorKind {
  const context = (snapshot: AnyMachineSnapshot) => snapshot.context as TaskContext
  return {
    machineId: TASK_MACHINE_ID,
    machineVersion: TASK_MACHINE_VERSION,
    machine: taskMachine,
    table: 'tasks',
    projection: TASK_PROJECTION,
    // Whoever can read the journal must not be able to complete someone else's run.
    secretEventFields: ['token'],
    facts: (_tx, actorId, event) => readParentFacts(actorId, event),
    project: (step) => projectTask(step.after),
    runIdOf: (step) => {
      if (typeof step.event.runId === 'string') return step.event.runId
      return step.before && stateName(step.before.value) === 'running' ? context(step.before).runId : null
    },
    effects: {
      // A heartbeat extends the run's recorded lease too, so runs() tells the truth.
      *extendRun(_tx, step, p: { runId: string; leaseExpiresAt: number }) {
        yield* io((s) => s.extendRun(step.actorId, p.runId, p.leaseExpiresAt))
      },
      *openRun(_tx, step, p: { runId: string; worker: string; attempt: number; leaseExpiresAt: number; claimKey: string | null }) {
        const run = { taskId: step.actorId, runId: p.runId, worker: p.worker, attempt: p.attempt, startedAt: step.event.at, leaseExpiresAt: p.leaseExpiresAt, claimKey: p.claimKey }
        yield* io((s) => s.openRun(run))
      },
      *closeRun(
        _tx,
        step,
        p: { runId: string; outcome: RunOutcome; error?: string | null; result?: unknown; summary?: string | null; metadata?: unknown },
      ) {
        const run = {
          taskId: step.actorId,
          runId: p.runId,
          endedAt: step.event.at,
          outcome: p.outcome,
          error: p.error ?? null,
          summary: p.summary ?? null,
          result: json(p.result),
          metadata: json(p.metadata),
        }
        const closed = yield* io((s) => s.closeRun(run))
        // Every run is closed exactly once; a second close would mean the fence failed.
        if (!closed) throw new Error(`run ${p.runId} of task ${step.actorId} was not open`)
        if (p.outcome === 'completed') yield* io((s) => s.recordResult(step.actorId, run.result, run.summary))
      },
      *insertLink(tx, step, p: { parentId: string }) {
        yield* io((s) => s.insertLink(p.parentId, step.actorId, tx.now))
      },
      *deleteLink(_tx, step, p: { parentId: string }) {
        yield* io((s) => s.deleteLink(p.parentId, step.actorId))
      },
      promoteChildren: (tx, step) => toChildren(tx, step, { type: 'PARENT_DONE' }),
      blockChildren: (tx, step, p: { status: string }) => toChildren(tx, step, { type: 'PARENT_FAILED', parentStatus: p.status }),
      restoreChildren: (tx, step) => toChildren(tx, step, { type: 'PARENT_RESTORED' }),
    },
  }
}
