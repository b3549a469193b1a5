/**
 * The task machine: every rule of the task board lives here, as guards and states.
 *
 * Pure by construction: no I/O, no clock, no randomness. Time arrives in the event
 * (`at`), what the guards need to know about other tasks arrives in the event
 * (`facts`, read by the committed step inside the same SQLite transaction), and the
 * claim token / run id / jitter arrive in the event too. Side effects are named
 * actions with params (`journal`, `openRun`, `closeRun`, `promoteChildren`, ...) that
 * the runtime interprets inside the transaction; delayed `raise` actions become rows of
 * the `timers` table.
 */
import { and, assign, cancel, not, raise, setup } from 'xstate'

export const TASK_MACHINE_ID = 'lockstep.task'
export const TASK_MACHINE_VERSION = 1

/** Public status of a task. Several machine states can share one status. */
export type TaskStatus =
  | 'todo'
  | 'ready'
  | 'running'
  | 'blocked'
  | 'done'
  | 'failed'
  | 'cancelled'
  | 'archived'

export const TASK_STATUSES: readonly TaskStatus[] = [
  'todo',
  'ready',
  'running',
  'blocked',
  'done',
  'failed',
  'cancelled',
  'archived',
]

/** Machine state → public status. `backoff` is "not claimable yet: waiting for a retry". */
export const TASK_STATE_STATUS = {
  created: 'todo',
  todo: 'todo',
  backoff: 'todo',
  ready: 'ready',
  running: 'running',
  blocked: 'blocked',
  done: 'done',
  failed: 'failed',
  cancelled: 'cancelled',
  archived: 'archived',
} as const satisfies Record<string, TaskStatus>

export type TaskState = keyof typeof TASK_STATE_STATUS

export type JournalKind =
  | 'created'
  | 'linked'
  | 'unlinked'
  | 'promoted'
  | 'demoted'
  | 'claimed'
  | 'claim_rejected'
  | 'heartbeat'
  | 'completed'
  | 'failed'
  | 'retry_scheduled'
  | 'reclaimed'
  | 'blocked'
  | 'unblocked'
  | 'cancelled'
  | 'retried'
  | 'released'
  | 'archived'

export type RunOutcome = 'completed' | 'failed' | 'reclaimed' | 'released' | 'cancelled' | 'blocked'

/** What the guards may know about a task's parents, read inside the step's transaction. */
export interface ParentFacts {
  /** Parents that are not done. The claim gate is `unfinished === 0`. */
  unfinished: number
  /** Parents that failed or were cancelled: the task cannot proceed until they are retried or unlinked. */
  failed: string[]
}

export interface TaskInput {
  id: string
  maxAttempts: number
  backoffBaseMs: number
  backoffMaxMs: number
}

export interface TaskContext {
  id: string
  /**
   * Who may claim the task (set by CREATE, never changed): only claims naming this
   * assignee, or claims that ask for any assignee. Null: only claims that name none.
   */
  assignee: string | null
  maxAttempts: number
  backoffBaseMs: number
  backoffMaxMs: number
  /** Claims made so far (each claim is one run). */
  attempts: number
  /** The current run while running; the last run afterwards. */
  runId: string | null
  /** Fencing token of the current run: every heartbeat/complete/fail must present it. */
  token: string | null
  worker: string | null
  leaseMs: number
  leaseExpiresAt: number | null
  retryAt: number | null
  blockedReason: string | null
  /** Set when the task was blocked because this parent failed or was cancelled. */
  blockedByParent: string | null
  lastError: string | null
  completedAt: number | null
}

interface Stamp {
  /** Milliseconds since the epoch, supplied by the runtime. */
  at: number
  facts: ParentFacts
}
interface Fence {
  runId: string
  token: string
}

export type TaskEvent = Stamp &
  (
    | { type: 'CREATE'; assignee?: string | null }
    | { type: 'LINK'; parentId: string }
    | { type: 'UNLINK'; parentId: string }
    | ({ type: 'CLAIM'; runId: string; token: string; worker: string; leaseMs: number; claimKey?: string | null } & Claimant)
    | ({ type: 'HEARTBEAT'; leaseMs?: number } & Fence)
    | ({ type: 'COMPLETE'; result?: unknown; summary?: string | null; metadata?: unknown } & Fence)
    | ({ type: 'FAIL'; error: string; retryable: boolean; jitter: number } & Fence)
    | ({ type: 'RELEASE'; reason?: string | null } & Fence)
    | { type: 'LEASE_EXPIRED'; runId: string }
    | { type: 'RETRY_DUE' }
    | { type: 'PARENT_DONE'; parentId: string }
    | { type: 'PARENT_FAILED'; parentId: string; parentStatus: string }
    | { type: 'PARENT_RESTORED'; parentId: string }
    | { type: 'BLOCK'; reason: string }
    | { type: 'UNBLOCK' }
    | { type: 'CANCEL'; reason?: string | null }
    | { type: 'RETRY' }
    | { type: 'ARCHIVE' }
  )

export type TaskEventType = TaskEvent['type']

/** Whom a claim is for: the assignee it names (none: unassigned tasks), or any assignee. */
export interface Claimant {
  assignee?: string | null
  anyAssignee?: boolean
}

/**
 * The assignee rule, in one place: a task with an assignee is claimed only by a claim
 * naming that assignee; a claim naming none takes unassigned tasks only, unless it asks
 * for any assignee. The CLAIM guard applies it; the board uses it to say why a claim was
 * refused, and its candidate query selects exactly the tasks it admits.
 */
export function assigneeAdmits(taskAssignee: string | null | undefined, claimant: Claimant): boolean {
  return claimant.anyAssignee === true || (claimant.assignee ?? null) === (taskAssignee ?? null)
}

/** Exponential backoff before retry `attempt` (1-based count of failed attempts), with jitter in [0, 1). */
export function retryDelayMs(baseMs: number, maxMs: number, attempt: number, jitter: number): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1))
  // "Equal jitter": half fixed, half random, so retries of many tasks spread out but
  // none retries sooner than half the nominal delay.
  return Math.round(exp / 2 + (exp / 2) * jitter)
}

type E<T extends TaskEventType> = Extract<TaskEvent, { type: T }>

const j = (...kinds: JournalKind[]) => ({ type: 'journal' as const, params: { kinds } })

/** A task that is not claimable anyway (todo, backoff) takes any parent; a failed one blocks it. */
const LINK_WHILE_WAITING = [
  {
    guard: 'hasFailedParent' as const,
    target: 'blocked' as const,
    actions: [insertLink(), 'blockByParent' as const, j('linked', 'blocked')],
  },
  { actions: [insertLink(), j('linked')] },
]

export const taskMachine = setup({
  types: {
    context: {} as TaskContext,
    events: {} as TaskEvent,
    input: {} as TaskInput,
  },
  actions: {
    // Durable effects: interpreted by the runtime inside the step's transaction.
    journal: (_, _params: { kinds: JournalKind[] }) => {},
    openRun: (_, _params: { runId: string; worker: string; attempt: number; leaseExpiresAt: number; claimKey: string | null }) => {},
    extendRun: (_, _params: { runId: string; leaseExpiresAt: number }) => {},
    closeRun: (
      _,
      _params: {
        runId: string
        outcome: RunOutcome
        error?: string | null
        result?: unknown
        summary?: string | null
        metadata?: unknown
      },
    ) => {},
    insertLink: (_, _params: { parentId: string }) => {},
    deleteLink: (_, _params: { parentId: string }) => {},
    promoteChildren: () => {},
    blockChildren: (_, _params: { status: 'failed' | 'cancelled' }) => {},
    restoreChildren: () => {},
    blockByParent: assign(({ event }) => {
      // Whichever failed parent the facts name first is the one reported.
      const parentId = 'parentId' in event && event.type === 'PARENT_FAILED' ? event.parentId : event.facts.failed[0]!
      return {
        blockedByParent: parentId,
        blockedReason:
          event.type === 'PARENT_FAILED'
            ? `parent ${parentId} ${event.parentStatus}`
            : `parent ${parentId} failed or was cancelled`,
      }
    }),
    clearBlock: assign({ blockedByParent: null, blockedReason: null }),
    setAssignee: assign({ assignee: ({ event }) => (event as E<'CREATE'>).assignee ?? null }),
    manualBlock: assign(({ event }) => ({
      blockedReason: (event as E<'BLOCK'>).reason,
      blockedByParent: null,
    })),
  },
  guards: {
    allParentsDone: ({ event }) => event.facts.unfinished === 0 && event.facts.failed.length === 0,
    hasFailedParent: ({ event }) => event.facts.failed.length > 0,
    /** The fence: only the holder of the current run's token may act on it. */
    holdsLease: ({ context, event }) =>
      'token' in event && event.runId === context.runId && event.token === context.token,
    leaseLapsed: ({ context, event }) =>
      event.type === 'LEASE_EXPIRED' &&
      event.runId === context.runId &&
      context.leaseExpiresAt !== null &&
      event.at >= context.leaseExpiresAt,
    attemptsLeft: ({ context }) => context.attempts < context.maxAttempts,
    retryable: ({ event }) => event.type === 'FAIL' && event.retryable,
    assigneeAdmits: ({ context, event }) => event.type === 'CLAIM' && assigneeAdmits(context.assignee, event),
    blockedByThisParent: ({ context, event }) =>
      'parentId' in event && context.blockedByParent === event.parentId,
  },
  delays: {
    lease: ({ context }) => context.leaseMs,
  },
}).createMachine({
  id: 'task',
  context: ({ input }) => ({
    id: input.id,
    assignee: null,
    maxAttempts: input.maxAttempts,
    backoffBaseMs: input.backoffBaseMs,
    backoffMaxMs: input.backoffMaxMs,
    attempts: 0,
    runId: null,
    token: null,
    worker: null,
    leaseMs: 0,
    leaseExpiresAt: null,
    retryAt: null,
    blockedReason: null,
    blockedByParent: null,
    lastError: null,
    completedAt: null,
  }),
  initial: 'created',
  states: {
    /** Transient: the step that creates a task sends CREATE with the parents' facts. */
    created: {
      on: {
        CREATE: [
          { guard: 'hasFailedParent', target: 'blocked', actions: ['setAssignee', 'blockByParent', j('created')] },
          { guard: 'allParentsDone', target: 'ready', actions: ['setAssignee', j('created')] },
          { target: 'todo', actions: ['setAssignee', j('created')] },
        ],
      },
    },

    /** Waiting for parents. Never claimable. */
    todo: {
      on: {
        PARENT_DONE: { guard: 'allParentsDone', target: 'ready', actions: j('promoted') },
        PARENT_FAILED: { target: 'blocked', actions: ['blockByParent', j('blocked')] },
        LINK: LINK_WHILE_WAITING,
        UNLINK: [
          { guard: 'allParentsDone', target: 'ready', actions: [deleteLink(), j('unlinked', 'promoted')] },
          { actions: [deleteLink(), j('unlinked')] },
        ],
        BLOCK: { target: 'blocked', actions: ['manualBlock', j('blocked')] },
        CANCEL: { target: 'cancelled', actions: j('cancelled') },
      },
    },

    /** Claimable: the only state CLAIM can succeed from, and only through the gate. */
    ready: {
      on: {
        // A claim the assignee rule does not admit is no claim at all: refused, nothing
        // journaled, nothing demoted.
        CLAIM: [
          // The claim gate. A task can be `ready` while a parent is unfinished when a
          // link raced the promotion; the claim re-checks the parents it reads now,
          // refuses, and demotes (seed 002).
          {
            guard: and(['assigneeAdmits', 'hasFailedParent']),
            target: 'blocked',
            actions: ['blockByParent', j('claim_rejected', 'blocked')],
          },
          {
            guard: and(['assigneeAdmits', 'allParentsDone']),
            target: 'running',
            actions: [
              assign(({ context, event }) => {
                const e = event as E<'CLAIM'>
                return {
                  attempts: context.attempts + 1,
                  runId: e.runId,
                  token: e.token,
                  worker: e.worker,
                  leaseMs: e.leaseMs,
                  leaseExpiresAt: e.at + e.leaseMs,
                  retryAt: null,
                }
              }),
              {
                type: 'openRun',
                params: ({ context, event }) => ({
                  runId: context.runId!,
                  worker: context.worker!,
                  attempt: context.attempts,
                  leaseExpiresAt: context.leaseExpiresAt!,
                  claimKey: (event as E<'CLAIM'>).claimKey ?? null,
                }),
              },
              j('claimed'),
            ],
          },
          { guard: 'assigneeAdmits', target: 'todo', actions: j('claim_rejected') },
        ],
        PARENT_FAILED: { target: 'blocked', actions: ['blockByParent', j('blocked')] },
        LINK: [
          {
            guard: 'hasFailedParent',
            target: 'blocked',
            actions: [insertLink(), 'blockByParent', j('linked', 'blocked')],
          },
          { guard: 'allParentsDone', actions: [insertLink(), j('linked')] },
          { target: 'todo', actions: [insertLink(), j('linked', 'demoted')] },
        ],
        UNLINK: { actions: [deleteLink(), j('unlinked')] },
        BLOCK: { target: 'blocked', actions: ['manualBlock', j('blocked')] },
        CANCEL: { target: 'cancelled', actions: j('cancelled') },
      },
    },

    /** Held by one worker under a lease; every command is fenced by the run's token. */
    running: {
      entry: raise(({ context }) => ({ type: 'LEASE_EXPIRED', runId: context.runId }) as never, {
        id: 'lease',
        delay: 'lease',
      }),
      exit: cancel('lease'),
      on: {
        HEARTBEAT: {
          guard: 'holdsLease',
          actions: [
            assign(({ context, event }) => {
              const e = event as E<'HEARTBEAT'>
              const leaseMs = e.leaseMs ?? context.leaseMs
              return { leaseMs, leaseExpiresAt: e.at + leaseMs }
            }),
            {
              type: 'extendRun',
              params: ({ context }) => ({ runId: context.runId!, leaseExpiresAt: context.leaseExpiresAt! }),
            },
            // Same id: the runtime replaces the lease timer row.
            raise(({ context }) => ({ type: 'LEASE_EXPIRED', runId: context.runId }) as never, {
              id: 'lease',
              delay: 'lease',
            }),
            j('heartbeat'),
          ],
        },
        COMPLETE: {
          guard: 'holdsLease',
          target: 'done',
          actions: [
            {
              type: 'closeRun',
              params: ({ context, event }) => {
                const e = event as E<'COMPLETE'>
                return {
                  runId: context.runId!,
                  outcome: 'completed' as const,
                  result: e.result,
                  summary: e.summary ?? null,
                  metadata: e.metadata,
                }
              },
            },
            assign({ completedAt: ({ event }) => event.at }),
            j('completed'),
          ],
        },
        FAIL: [
          {
            guard: and(['holdsLease', 'retryable', 'attemptsLeft']),
            target: 'backoff',
            actions: [
              closeFailedRun(),
              assign(({ context, event }) => {
                const e = event as E<'FAIL'>
                return {
                  lastError: e.error,
                  retryAt: e.at + retryDelayMs(context.backoffBaseMs, context.backoffMaxMs, context.attempts, e.jitter),
                }
              }),
              j('retry_scheduled'),
            ],
          },
          {
            guard: 'holdsLease',
            target: 'failed',
            actions: [
              closeFailedRun(),
              assign({ lastError: ({ event }) => (event as E<'FAIL'>).error }),
              j('failed'),
            ],
          },
        ],
        LEASE_EXPIRED: [
          {
            guard: and(['leaseLapsed', 'attemptsLeft']),
            target: 'ready',
            actions: [closeRun('reclaimed', 'lease expired'), j('reclaimed')],
          },
          {
            // A task whose every attempt lost its lease (its worker keeps dying) is a
            // poison task: fail it rather than hand it out forever.
            guard: 'leaseLapsed',
            target: 'failed',
            actions: [
              closeRun('reclaimed', 'lease expired'),
              assign({ lastError: 'lease expired on the last attempt' }),
              j('reclaimed', 'failed'),
            ],
          },
        ],
        BLOCK: {
          target: 'blocked',
          actions: [closeRun('blocked', null), 'manualBlock', j('blocked')],
        },
        CANCEL: { target: 'cancelled', actions: [closeRun('cancelled', null), j('cancelled')] },
        // The holder gives the task back (a worker stopping): ready again at once, and the
        // attempt does not count against maxAttempts because nothing failed.
        RELEASE: {
          guard: 'holdsLease',
          target: 'ready',
          actions: [
            {
              type: 'closeRun',
              params: ({ context, event }) => ({
                runId: context.runId!,
                outcome: 'released' as const,
                error: (event as E<'RELEASE'>).reason ?? null,
              }),
            },
            assign({ attempts: ({ context }) => context.attempts - 1 }),
            j('released'),
          ],
        },
        // A running task already passed the gate: only a parent that is done may be added.
        LINK: { guard: 'allParentsDone', actions: [insertLink(), j('linked')] },
        UNLINK: { actions: [deleteLink(), j('unlinked')] },
      },
    },

    /** Failed with attempts left: waits for its retry timer, then passes the gate again. */
    backoff: {
      entry: raise({ type: 'RETRY_DUE' } as never, {
        id: 'retry',
        delay: ({ context, event }) => context.retryAt! - event.at,
      }),
      exit: cancel('retry'),
      on: {
        RETRY_DUE: [
          { guard: 'hasFailedParent', target: 'blocked', actions: ['blockByParent', j('blocked')] },
          { guard: 'allParentsDone', target: 'ready', actions: j('promoted') },
          { target: 'todo', actions: j('demoted') },
        ],
        PARENT_FAILED: { target: 'blocked', actions: ['blockByParent', j('blocked')] },
        LINK: LINK_WHILE_WAITING,
        UNLINK: { actions: [deleteLink(), j('unlinked')] },
        BLOCK: { target: 'blocked', actions: ['manualBlock', j('blocked')] },
        CANCEL: { target: 'cancelled', actions: j('cancelled') },
      },
    },

    /** Needs a person (manual block) or waits on a failed/cancelled parent. */
    blocked: {
      on: {
        // A manual unblock cannot override a failed parent: retry or unlink the parent.
        UNBLOCK: [
          { guard: 'allParentsDone', target: 'ready', actions: ['clearBlock', j('unblocked')] },
          { guard: not('hasFailedParent'), target: 'todo', actions: ['clearBlock', j('unblocked')] },
        ],
        PARENT_RESTORED: [
          {
            guard: and(['blockedByThisParent', 'hasFailedParent']),
            actions: ['blockByParent', j('blocked')],
          },
          {
            guard: and(['blockedByThisParent', 'allParentsDone']),
            target: 'ready',
            actions: ['clearBlock', j('unblocked')],
          },
          { guard: 'blockedByThisParent', target: 'todo', actions: ['clearBlock', j('unblocked')] },
        ],
        LINK: { actions: [insertLink(), j('linked')] },
        UNLINK: [
          {
            guard: and(['blockedByThisParent', 'hasFailedParent']),
            actions: [deleteLink(), 'blockByParent', j('unlinked', 'blocked')],
          },
          {
            guard: and(['blockedByThisParent', 'allParentsDone']),
            target: 'ready',
            actions: [deleteLink(), 'clearBlock', j('unlinked', 'unblocked')],
          },
          {
            guard: 'blockedByThisParent',
            target: 'todo',
            actions: [deleteLink(), 'clearBlock', j('unlinked', 'unblocked')],
          },
          { actions: [deleteLink(), j('unlinked')] },
        ],
        CANCEL: { target: 'cancelled', actions: ['clearBlock', j('cancelled')] },
      },
    },

    done: {
      entry: 'promoteChildren',
      on: { ARCHIVE: { target: 'archived', actions: j('archived') } },
    },

    failed: {
      entry: { type: 'blockChildren', params: { status: 'failed' } },
      on: {
        RETRY: {
          target: 'evaluateRetry',
          actions: [assign({ attempts: 0, lastError: null, retryAt: null }), 'restoreChildren'],
        },
        ARCHIVE: { target: 'archived', actions: j('archived') },
      },
    },

    /** Transient: a retried task passes the gate again at once. */
    evaluateRetry: {
      always: [
        { guard: 'hasFailedParent', target: 'blocked', actions: ['blockByParent', j('retried', 'blocked')] },
        { guard: 'allParentsDone', target: 'ready', actions: j('retried') },
        { target: 'todo', actions: j('retried') },
      ],
    },

    cancelled: {
      entry: { type: 'blockChildren', params: { status: 'cancelled' } },
      on: { ARCHIVE: { target: 'archived', actions: j('archived') } },
    },

    archived: { type: 'final' },
  },
})

function insertLink() {
  return { type: 'insertLink' as const, params: ({ event }: { event: TaskEvent }) => ({ parentId: (event as E<'LINK'>).parentId }) }
}
function deleteLink() {
  return { type: 'deleteLink' as const, params: ({ event }: { event: TaskEvent }) => ({ parentId: (event as E<'UNLINK'>).parentId }) }
}
function closeRun(outcome: RunOutcome, error: string | null) {
  return {
    type: 'closeRun' as const,
    params: ({ context }: { context: TaskContext }) => ({ runId: context.runId!, outcome, error }),
  }
}
function closeFailedRun() {
  return {
    type: 'closeRun' as const,
    params: ({ context, event }: { context: TaskContext; event: TaskEvent }) => ({
      runId: context.runId!,
      outcome: 'failed' as const,
      error: (event as E<'FAIL'>).error,
    }),
  }
}
