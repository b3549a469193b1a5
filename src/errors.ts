/**
 * Every error lockstep throws on purpose is a LockstepError with a stable `code`.
 * Match on `code` (or `instanceof`), never on the message.
 */
export type LockstepErrorCode =
  | 'INVALID_INPUT'
  | 'TASK_NOT_FOUND'
  | 'LINK_NOT_FOUND'
  | 'DEPENDENCY_CYCLE'
  | 'LEASE_LOST'
  | 'INVALID_TRANSITION'
  | 'PAYLOAD_TOO_LARGE'
  | 'SCHEMA_TOO_NEW'
  | 'SCHEMA_TOO_OLD'
  | 'READ_ONLY'
  | 'SNAPSHOT_INCOMPATIBLE'
  | 'STORE_BUSY'
  | 'STORE_OPEN_FAILED'
  | 'STORE_UNAVAILABLE'
  | 'CLOSED'
  | 'SESSION_NOT_FOUND'
  | 'SESSION_BUSY'
  | 'SESSION_DELETED'
  | 'CHAIN_EXHAUSTED'
  | 'MODEL_CALL_FAILED'
  | 'TASK_CANCELLED'
  | 'HANDLER_TIMEOUT'
  | 'WORKER_STOPPED'
  | 'RUN_NOT_FOUND'
  | 'ASSIGNEE_MISMATCH'
  | 'RESULT_REFUSED'

export class LockstepError extends Error {
  readonly code: LockstepErrorCode
  /** Structured detail for programs (ids, field names); the message is for people. */
  readonly details: Record<string, unknown>

  constructor(code: LockstepErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message)
    this.name = new.target.name
    this.code = code
    this.details = details
  }
}

/** Bad input: wrong type, empty title, unknown status, non-JSON payload, ... Nothing was written. */
export class InvalidInputError extends LockstepError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('INVALID_INPUT', message, details)
  }
}

export class TaskNotFoundError extends LockstepError {
  constructor(readonly taskId: string) {
    super('TASK_NOT_FOUND', `task ${JSON.stringify(taskId)} does not exist`, { taskId })
  }
}

export class LinkNotFoundError extends LockstepError {
  constructor(readonly parentId: string, readonly childId: string) {
    super('LINK_NOT_FOUND', `task ${childId} does not depend on ${parentId}`, { parentId, childId })
  }
}

export class DependencyCycleError extends LockstepError {
  constructor(readonly parentId: string, readonly childId: string) {
    super(
      'DEPENDENCY_CYCLE',
      parentId === childId
        ? `task ${parentId} cannot depend on itself`
        : `linking ${parentId} -> ${childId} would create a cycle: ${childId} is already an ancestor of ${parentId}`,
      { parentId, childId },
    )
  }
}

/** The claim is stale: its lease lapsed and the task was reclaimed, or it was cancelled/blocked/completed. */
export class LeaseLostError extends LockstepError {
  constructor(readonly taskId: string, readonly runId: string, state: string) {
    super('LEASE_LOST', `claim on task ${taskId} (run ${runId}) is no longer held; the task is ${state}`, {
      taskId,
      runId,
      state,
    })
  }
}

/**
 * A claim names a run the task never had (a mistyped or made-up run id). A run that
 * existed but is no longer held is LEASE_LOST instead.
 */
export class RunNotFoundError extends LockstepError {
  constructor(readonly taskId: string, readonly runId: string) {
    super('RUN_NOT_FOUND', `task ${taskId} has no run ${JSON.stringify(runId)}`, { taskId, runId })
  }
}

/**
 * A claim by id for a task the assignee rule does not give to this claimant: the task is
 * assigned to someone else, or the claim names an assignee the task does not have.
 */
export class AssigneeMismatchError extends LockstepError {
  constructor(readonly taskId: string, readonly assignee: string | null, readonly claimant: string | null) {
    super(
      'ASSIGNEE_MISMATCH',
      assignee === null
        ? `task ${taskId} has no assignee; a claim naming assignee ${JSON.stringify(claimant)} takes only that assignee's tasks`
        : `task ${taskId} is assigned to ${JSON.stringify(assignee)}: only a claim naming that assignee (or anyAssignee) may take it` +
            (claimant === null ? '' : `, not ${JSON.stringify(claimant)}`),
      { taskId, assignee, claimant },
    )
  }
}

/**
 * A worker pool's handler returned a result the board refused (not JSON, too deep, too
 * large, an unknown key, ...). The pool fails the run without retry; the run's error text
 * starts with \`RESULT_REFUSED: <code of the refusal>: \`.
 */
export class ResultRefusedError extends LockstepError {
  constructor(readonly taskId: string, readonly runId: string, readonly refusal: string, reason: string) {
    super('RESULT_REFUSED', `${refusal}: ${reason}`, { taskId, runId, refusal })
  }
}

/** The machine refused a command in the actor's current state (e.g. archiving a running task). */
export class InvalidTransitionError extends LockstepError {
  constructor(readonly actorId: string, readonly event: string, readonly state: string, hint = '') {
    super('INVALID_TRANSITION', `${event} is not allowed for ${actorId} in state ${state}${hint ? `: ${hint}` : ''}`, {
      actorId,
      event,
      state,
    })
  }
}

export class PayloadTooLargeError extends LockstepError {
  constructor(field: string, bytes: number, limit: number) {
    super('PAYLOAD_TOO_LARGE', `${field} is ${bytes} bytes as JSON; the limit is ${limit}`, { field, bytes, limit })
  }
}

export class SchemaTooNewError extends LockstepError {
  constructor(path: string, found: number, known: number) {
    super(
      'SCHEMA_TOO_NEW',
      `${path} has schema version ${found}, newer than this lockstep knows (${known}); upgrade lockstep`,
      { path, found, known },
    )
  }
}

/** A read-only open of a file whose schema is older than this lockstep's: only a read-write open migrates it. */
export class SchemaTooOldError extends LockstepError {
  constructor(path: string, found: number, known: number) {
    super(
      'SCHEMA_TOO_OLD',
      `${path} has schema version ${found}, older than this lockstep's (${known}); a read-only open cannot migrate it: open it read-write once (lockstep init)`,
      { path, found, known },
    )
  }
}

/** A write on an orchestrator opened with `readOnly: true`. Refused before any SQL; nothing was written. */
export class ReadOnlyError extends LockstepError {
  constructor(path: string) {
    super('READ_ONLY', `${path} is open read-only: this call would write`, { path })
  }
}

export class SnapshotIncompatibleError extends LockstepError {
  constructor(actorId: string, message: string, details: Record<string, unknown> = {}) {
    super('SNAPSHOT_INCOMPATIBLE', `actor ${actorId}: ${message}`, { actorId, ...details })
  }
}

/** SQLite stayed locked by other writers longer than `busyRetryMs`. */
export class StoreBusyError extends LockstepError {
  constructor(waitedMs: number, cause: unknown) {
    super('STORE_BUSY', `the database stayed locked for ${waitedMs} ms`, { waitedMs })
    this.cause = cause
  }
}

/** The file cannot be opened as a lockstep database: missing directory, not a database, no permission. */
export class StoreOpenError extends LockstepError {
  constructor(path: string, cause: unknown, reason?: string) {
    super('STORE_OPEN_FAILED', `cannot open ${path}: ${reason ?? (cause as Error)?.message ?? String(cause)}`, { path })
    if (cause !== null && cause !== undefined) this.cause = cause
  }
}

/**
 * The database server could not be reached, or kept dropping the connection, for longer
 * than the retry budget (PostgreSQL: down, restarting, unreachable, out of connections).
 * When `details.commit` is 'unknown' the connection was lost during COMMIT and whether the
 * transaction committed could not be found out in time; otherwise nothing was written.
 */
export class StoreUnavailableError extends LockstepError {
  constructor(where: string, waitedMs: number, cause: unknown, details: Record<string, unknown> = {}) {
    super(
      'STORE_UNAVAILABLE',
      `the database at ${where} was unavailable for ${waitedMs} ms: ${(cause as Error)?.message ?? String(cause)}`,
      { where, waitedMs, ...details },
    )
    if (cause !== null && cause !== undefined) this.cause = cause
  }
}

export class ClosedError extends LockstepError {
  constructor() {
    super('CLOSED', 'this orchestrator is closed')
  }
}

/**
 * Throw this from a worker handler to fail the task at once, without retries
 * (any other thrown error is retried with backoff while attempts are left).
 */
export class NonRetryableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'NonRetryableError'
  }
}

/** Abort reason of a handler whose task was cancelled (or blocked) while it ran. */
export class TaskCancelledError extends LockstepError {
  constructor(readonly taskId: string, how: 'cancelled' | 'blocked' = 'cancelled') {
    super('TASK_CANCELLED', `task ${taskId} was ${how} while its handler ran`, { taskId, how })
  }
}

/** Abort reason (and failure message) of a handler that ran past the pool's timeoutMs. */
export class HandlerTimeoutError extends LockstepError {
  constructor(readonly taskId: string, readonly timeoutMs: number) {
    super('HANDLER_TIMEOUT', `handler for task ${taskId} timed out after ${timeoutMs} ms`, { taskId, timeoutMs })
  }
}

/** Abort reason of a handler still running when its pool's stop() timed out. */
export class WorkerStoppedError extends LockstepError {
  constructor(readonly worker: string) {
    super('WORKER_STOPPED', `worker ${worker} stopped before the handler finished`, { worker })
  }
}

export class SessionNotFoundError extends LockstepError {
  constructor(readonly sessionId: string) {
    super('SESSION_NOT_FOUND', `session ${JSON.stringify(sessionId)} does not exist (open it first)`, { sessionId })
  }
}

/** A run() prompt is already in flight for this session, in this process or another one. */
export class SessionBusyError extends LockstepError {
  constructor(readonly sessionId: string, reason = 'a run() prompt is already in flight') {
    super('SESSION_BUSY', `session ${sessionId} is busy: ${reason}`, { sessionId, reason })
  }
}

/** The session was deleted: it is final and refuses every report, approval and run. Nothing was written. */
export class SessionDeletedError extends LockstepError {
  constructor(readonly sessionId: string) {
    super('SESSION_DELETED', `session ${JSON.stringify(sessionId)} is deleted and accepts nothing more`, { sessionId })
  }
}

/** One dispatch of a run and how it ended. */
export interface AttemptRecord {
  generation: number
  model: string
  outcome: string
  reason: string
  at: number
}

/** run(): every usable model failed, or maxAttempts was reached. `attempts` lists each one. */
export class ChainExhaustedError extends LockstepError {
  constructor(readonly sessionId: string, readonly attempts: AttemptRecord[], reason: string | null) {
    super(
      'CHAIN_EXHAUSTED',
      `session ${sessionId}: the model chain is exhausted after ${attempts.length} attempt(s)` +
        (attempts.length ? `: ${attempts.map((a) => `${a.model} (${a.reason || a.outcome})`).join(', ')}` : reason ? `: ${reason}` : ''),
      { sessionId, attempts, reason },
    )
  }
}

/** run(): a non-retryable failure (bad request, context overflow, ...) or an abort ended the prompt. */
export class ModelCallFailedError extends LockstepError {
  constructor(
    readonly sessionId: string,
    readonly attempts: AttemptRecord[],
    reason: string,
    readonly outcome: 'failed' | 'aborted',
  ) {
    super('MODEL_CALL_FAILED', `session ${sessionId}: ${outcome === 'aborted' ? 'aborted' : 'failed'}: ${reason}`, {
      sessionId,
      attempts,
      reason,
      outcome,
    })
  }
}
