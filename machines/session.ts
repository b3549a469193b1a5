/**
 * The session machine: one LLM session walking an ordered chain of models.
 *
 * The whole fallback policy lives here, as guards, states and durable timers:
 * - one failure advances the chain exactly once: every dispatch has a monotonic
 *   `generation`, and a report about an older generation or another model is stale;
 * - while a replay (a fallback's or a same-model retry's) has not produced its first
 *   token, reports of any kind that do not name the new generation or model are the
 *   failure being handled echoing, and are ignored (one shared rule, `replayLock`);
 * - the session's own abort is marked, and an `aborted`/`idle` echo inside
 *   `selfAbortWindowMs` is ignored; a refused or failed dispatch never rewinds anything;
 * - failed models cool down (quota errors longer, a Retry-After hint wins) and are
 *   skipped while cooling; the next prompt returns to the primary once it has cooled;
 * - `maxAttempts` and the end of the chain end in `exhausted` until the next prompt;
 * - one `run()` prompt at a time: a runner PROMPT while another one is in flight is
 *   refused (the store decides, so this holds across processes).
 *
 * Approvals and cooldowns are keyed by user strings (tool and model names): they are read
 * with own-key checks only, so `toString` or `__proto__` is never found on the prototype.
 * Pure like the task machine: time arrives in `at`, error classification is a pure
 * function of the event, and host calls are named actions run after commit.
 */
import { and, assign, cancel, not, raise, setup } from 'xstate'
import { classifyModelError, type Classification, type ModelError } from './classify.js'

export const SESSION_MACHINE_ID = 'lockstep.session'
export const SESSION_MACHINE_VERSION = 1

export interface SessionPolicy {
  /** Fallback switches allowed per prompt (default 10). */
  maxAttempts: number
  /** How long a failed model is skipped (default 60 s). */
  cooldownMs: number
  /** Cooldown after a quota/billing error (default 30 min). */
  quotaCooldownMs: number
  /** No first token within this time counts as a failure of the model (default 30 s). */
  firstTokenTimeoutMs: number
  /** An abort/idle report this soon after the session's own abort is its echo (default 2 s). */
  selfAbortWindowMs: number
  /** Retries of the same model, with backoff, before switching (default 0). */
  sameModelRetries: number
  sameModelRetryDelayMs: number
  /** A session idle this long is archived: approvals and cooldowns dropped, reopened by its next prompt (default 30 min). */
  ttlMs: number
  /** Extra message patterns (substring or /regex/flags) that make an error retryable / fatal. */
  retryPatterns: string[]
  fatalPatterns: string[]
}

export const DEFAULT_SESSION_POLICY: SessionPolicy = {
  maxAttempts: 10,
  cooldownMs: 60_000,
  quotaCooldownMs: 30 * 60_000,
  firstTokenTimeoutMs: 30_000,
  selfAbortWindowMs: 2_000,
  sameModelRetries: 0,
  sameModelRetryDelayMs: 1_000,
  ttlMs: 30 * 60_000,
  retryPatterns: [],
  fatalPatterns: [],
}

export interface Attempt {
  generation: number
  model: string
  outcome: 'completed' | 'failed' | 'timeout' | 'no_response' | 'dispatch_failed' | 'aborted'
  reason: string
  at: number
}

export interface SessionContext {
  id: string
  agent: string | null
  /** The chain, primary first. */
  models: string[]
  policy: SessionPolicy
  /** The model requests go to now. */
  model: string
  /** Incremented by every dispatch; reports about older generations are stale. */
  generation: number
  /** Fallback switches made for the current prompt. */
  attempts: number
  /** Same-model retries made for the current failure. */
  sameModelTries: number
  messageId: string | null
  /** Dispatches of this prompt are made by a `run()` call watching the journal, not by the host adapter. */
  runner: boolean
  /** The message being answered, replayed unchanged (same id) on every fallback. */
  message: unknown
  /** When the session last aborted a request itself. */
  selfAbortAt: number | null
  /** Models cooling down: skipped until `until`. */
  cooldowns: Record<string, { until: number; reason: string }>
  /** Every dispatch of the current prompt and how it ended. */
  log: Attempt[]
  lastFailure: string | null
  approvals: Record<string, { once: boolean; at: number }>
}

export interface SessionInput {
  id: string
  agent: string | null
  models: string[]
  policy: SessionPolicy
}

/** Where a report came from: the generation and/or model it is about, when the host knows. */
interface Attribution {
  generation?: number | null
  model?: string | null
}

export type SessionEvent = { at: number } & (
  | { type: 'OPEN' }
  | { type: 'CONFIGURE'; agent?: string | null; models?: string[]; policy?: SessionPolicy }
  /** A new message. With `model`, the host already sent it to that model; without, the session dispatches it. */
  | { type: 'PROMPT'; messageId: string; message: unknown; model?: string | null; runner?: boolean }
  | ({ type: 'TOKEN' } & Attribution)
  | ({ type: 'ERROR'; error: ModelError } & Attribution)
  | ({ type: 'DISPATCH_FAILED'; error: ModelError } & Attribution)
  | ({ type: 'ABORTED' } & Attribution)
  | ({ type: 'IDLE' } & Attribution)
  | ({ type: 'COMPLETED' } & Attribution)
  | { type: 'FIRST_TOKEN_TIMEOUT'; generation: number }
  | { type: 'RETRY_DUE'; generation: number }
  | { type: 'MODEL_SELECTED'; model: string }
  | { type: 'APPROVE'; tool: string; once: boolean }
  | { type: 'REVOKE'; tool: string }
  | { type: 'AUTHORIZE'; tool: string }
  | { type: 'TTL_EXPIRED' }
  | { type: 'DELETE' }
)

/** Every report a host (or a run() call) makes about a request in flight. */
export const REPORT_TYPES = ['TOKEN', 'ERROR', 'DISPATCH_FAILED', 'ABORTED', 'IDLE', 'COMPLETED'] as const

export type SessionJournalKind =
  | 'opened'
  | 'configured'
  | 'prompted'
  | 'redirected'
  | 'recovered'
  | 'first_token'
  | 'completed'
  | 'fallback'
  | 'retry_scheduled'
  | 'retried'
  | 'exhausted'
  | 'failed'
  | 'aborted'
  | 'ignored'
  | 'model_changed'
  | 'approved'
  | 'revoked'
  | 'authorized'
  | 'archived'
  | 'reopened'
  | 'deleted'

export interface DispatchParams {
  model: string
  generation: number
  messageId: string
  message: unknown
  /** The host already sent it (a PROMPT that named its model): nothing to call. */
  hostDispatched?: boolean
  /** A run() call dispatches it, watching the journal. */
  runner: boolean
}

export interface Notice {
  kind: 'fallback' | 'exhausted' | 'failed' | 'recovered' | 'aborted' | 'retry'
  message: string
  from?: string
  to?: string
}

type E<T extends SessionEvent['type']> = Extract<SessionEvent, { type: T }>

const j = (...kinds: SessionJournalKind[]) => ({ type: 'journal' as const, params: { kinds } })
const ignored = (reason: string) => ({ type: 'journal' as const, params: { kinds: ['ignored' as const], reason } })

/** The cooldown recorded for `model` (an own key only: model names are user strings). */
export function cooldownOf(context: Pick<SessionContext, 'cooldowns'>, model: string): { until: number; reason: string } | null {
  return Object.hasOwn(context.cooldowns, model) ? context.cooldowns[model]! : null
}

export function isCooling(context: Pick<SessionContext, 'cooldowns'>, model: string, at: number): boolean {
  const cooldown = cooldownOf(context, model)
  return cooldown !== null && cooldown.until > at
}

/** The approval of `tool` (an own key only: `toString` is not approved by Object.prototype). */
export function approvalOf(context: Pick<SessionContext, 'approvals'>, tool: string): { once: boolean; at: number } | null {
  return Object.hasOwn(context.approvals, tool) ? context.approvals[tool]! : null
}

/** The next usable model after `from` in chain order (wrapping), or null when every other one is cooling. */
export function nextModel(context: Pick<SessionContext, 'models' | 'cooldowns'>, from: string, at: number): string | null {
  const { models } = context
  const start = models.indexOf(from)
  for (let step = 1; step <= models.length; step++) {
    const candidate = models[(start + step + models.length) % models.length]!
    if (candidate !== from && !isCooling(context, candidate, at)) return candidate
  }
  return null
}

/** The model a new prompt should start on: the primary once it has cooled, else the first usable one. */
export function modelForPrompt(context: Pick<SessionContext, 'models' | 'cooldowns' | 'model'>, at: number): string | null {
  for (const model of context.models) if (!isCooling(context, model, at)) return model
  return null
}

/** The context of a new prompt on `model`: a new generation, a fresh attempt log. */
function newPrompt(context: SessionContext, e: { messageId: string; message: unknown; runner?: boolean }, model: string) {
  return {
    messageId: e.messageId,
    runner: e.runner === true,
    message: e.message,
    model,
    generation: context.generation + 1,
    attempts: 0,
    sameModelTries: 0,
    log: [],
    lastFailure: null,
  }
}

export function classify(context: SessionContext, event: { error: ModelError; at: number }): Classification {
  return classifyModelError(
    event.error,
    { retryPatterns: context.policy.retryPatterns, fatalPatterns: context.policy.fatalPatterns },
    event.at,
  )
}

function isStale(context: SessionContext, event: Attribution): boolean {
  if (typeof event.generation === 'number' && event.generation !== context.generation) return true
  if (typeof event.model === 'string' && event.model !== context.model) return true
  return false
}

function names(context: SessionContext, event: Attribution): boolean {
  return event.generation === context.generation || event.model === context.model
}

/** The failure an event reports, as the log records it. */
function failureOf(context: SessionContext, event: SessionEvent): { outcome: Attempt['outcome']; reason: string; classification: Classification } {
  if (event.type === 'ERROR' || event.type === 'DISPATCH_FAILED') {
    const classification = classify(context, event)
    return { outcome: event.type === 'ERROR' ? 'failed' : 'dispatch_failed', reason: classification.reason, classification }
  }
  const timeout: Classification = { retryable: true, class: 'timeout', reason: '', retryAfterMs: null, quota: false }
  if (event.type === 'FIRST_TOKEN_TIMEOUT') {
    return { outcome: 'timeout', reason: `no first token within ${context.policy.firstTokenTimeoutMs} ms`, classification: { ...timeout, reason: 'first-token timeout' } }
  }
  return { outcome: 'no_response', reason: 'went idle without a token', classification: { ...timeout, reason: 'idle without a token' } }
}

/**
 * Why the machine took no transition for `event` in `state` (a refused report or call):
 * its guards said in words, for the caller. Pure; `state` is the kernel's state name
 * (e.g. `active.streaming`) before the event.
 */
export function refusalReason(state: string, context: SessionContext, event: SessionEvent): string {
  const top = state.split('.')[0]!
  if (top === 'deleted') return 'the session is deleted'
  switch (event.type) {
    case 'AUTHORIZE':
      return `${JSON.stringify(event.tool)} is not approved`
    case 'REVOKE':
      return `${JSON.stringify(event.tool)} has no approval to revoke`
    case 'PROMPT':
      if (top === 'active' && context.runner && event.runner === true) {
        return `a run() prompt (message ${context.messageId}) is in flight on ${context.model}`
      }
      break
    case 'MODEL_SELECTED': {
      if (event.model === context.model) return `the session is already on ${event.model}`
      const primary = context.models[0]!
      const cooldown = cooldownOf(context, primary)
      if (event.model === primary && cooldown !== null && cooldown.until > event.at) {
        return `the primary ${primary} cools until ${new Date(cooldown.until).toISOString()} (${cooldown.reason}); the session stays on ${context.model}`
      }
      if (top === 'archived') return 'an archived session takes its model from its next prompt'
      break
    }
    case 'TOKEN':
      if (state === 'active.streaming') return 'tokens are already flowing'
      break
  }
  if (top !== 'active' && (REPORT_TYPES as readonly string[]).includes(event.type)) {
    return `no request is in flight (the session is ${top})`
  }
  return `${event.type} does not apply in state ${state}`
}

export const sessionMachine = setup({
  types: {
    context: {} as SessionContext,
    events: {} as SessionEvent,
    input: {} as SessionInput,
  },
  actions: {
    // Durable effects (inside the transaction): the journal.
    journal: (_, _params: { kinds: SessionJournalKind[]; reason?: string }) => {},
    // Host calls, run after commit: keyed by generation so a repeat is harmless.
    dispatch: (_, _params: DispatchParams) => {},
    abort: (_, _params: { generation: number; model: string }) => {},
    notify: (_, _params: Notice) => {},

    startPrompt: assign(({ context, event }) => {
      const e = event as E<'PROMPT'>
      return newPrompt(context, e, e.model ?? modelForPrompt(context, e.at) ?? context.model)
    }),
    /** Record the current generation's failure and cool its model down. */
    recordFailure: assign(({ context, event }) => {
      const { outcome, reason, classification } = failureOf(context, event)
      const cooldownMs = classification.retryAfterMs ?? (classification.quota ? context.policy.quotaCooldownMs : context.policy.cooldownMs)
      return {
        lastFailure: reason,
        log: [...context.log, { generation: context.generation, model: context.model, outcome, reason, at: event.at }],
        cooldowns: classification.retryable
          ? { ...context.cooldowns, [context.model]: { until: event.at + cooldownMs, reason } }
          : context.cooldowns,
      }
    }),
    /** Switch to the next usable model: a new generation, replaying the same message. */
    advance: assign(({ context, event }) => ({
      model: nextModel(context, context.model, event.at)!,
      generation: context.generation + 1,
      attempts: context.attempts + 1,
      sameModelTries: 0,
      selfAbortAt: event.at,
    })),
  },
  guards: {
    stale: ({ context, event }) => isStale(context, event as Attribution),
    namesCurrent: ({ context, event }) => names(context, event as Attribution),
    withinSelfAbortWindow: ({ context, event }) =>
      context.selfAbortAt !== null && event.at - context.selfAbortAt <= context.policy.selfAbortWindowMs,
    retryable: ({ context, event }) => failureOf(context, event).classification.retryable,
    sameModelRetryLeft: ({ context }) => context.sameModelTries < context.policy.sameModelRetries,
    attemptsLeft: ({ context }) => context.attempts < context.policy.maxAttempts,
    nextModelAvailable: ({ context, event }) => nextModel(context, context.model, event.at) !== null,
    someModelAvailable: ({ context, event }) => modelForPrompt(context, event.at) !== null,
    /** The current generation replays the prompt after a failure (a fallback or a same-model retry). */
    replaying: ({ context }) => context.attempts > 0 || context.sameModelTries > 0,
    /** A run() prompt is in flight and this PROMPT is another run()'s. */
    runnerBusy: ({ context, event }) => context.runner && (event as E<'PROMPT'>).runner === true,
    currentGeneration: ({ context, event }) => 'generation' in event && event.generation === context.generation,
    /** The host sent the prompt to the primary while it cools: its default, not the user's choice. */
    promptToCoolingPrimary: ({ context, event }) => {
      const e = event as E<'PROMPT'>
      const primary = context.models[0]!
      return e.model === primary && isCooling(context, primary, e.at) && modelForPrompt(context, e.at) !== null
    },
    manualModelChange: ({ context, event }) => {
      const model = event.type === 'MODEL_SELECTED' ? event.model : (event as E<'PROMPT'>).model
      if (typeof model !== 'string' || model === context.model) return false
      const primary = context.models[0]!
      // The primary while it cools is the host's default coming back, not a manual change.
      return !(model === primary && isCooling(context, primary, event.at))
    },
    recovering: ({ context, event }) => {
      const e = event as E<'PROMPT'>
      const primary = context.models[0]!
      return e.model == null && context.model !== primary && !isCooling(context, primary, e.at)
    },
    approved: ({ context, event }) => approvalOf(context, (event as E<'AUTHORIZE'>).tool) !== null,
    approvalExists: ({ context, event }) => approvalOf(context, (event as E<'REVOKE'>).tool) !== null,
  },
  delays: {
    firstToken: ({ context }) => context.policy.firstTokenTimeoutMs,
    ttl: ({ context }) => context.policy.ttlMs,
    sameModelRetry: ({ context }) => context.policy.sameModelRetryDelayMs * 2 ** Math.max(0, context.sameModelTries - 1),
  },
}).createMachine({
  id: 'session',
  context: ({ input }) => ({
    id: input.id,
    agent: input.agent,
    models: input.models,
    policy: input.policy,
    model: input.models[0]!,
    generation: 0,
    attempts: 0,
    sameModelTries: 0,
    messageId: null,
    runner: false,
    message: null,
    selfAbortAt: null,
    cooldowns: {},
    log: [],
    lastFailure: null,
    approvals: {},
  }),
  initial: 'opening',
  // Approvals and housekeeping are valid in every state but deleted.
  on: {
    APPROVE: {
      actions: [
        assign({
          // Computed keys and spreads define own properties, so `__proto__` is an ordinary key here.
          approvals: ({ context, event }) => ({ ...context.approvals, [event.tool]: { once: event.once, at: event.at } }),
        }),
        j('approved'),
      ],
    },
    REVOKE: {
      guard: 'approvalExists',
      actions: [
        assign({
          approvals: ({ context, event }) => {
            const { [event.tool]: _revoked, ...rest } = context.approvals
            return rest
          },
        }),
        j('revoked'),
      ],
    },
    // Refused (not approved) means no transition: the caller reads `false`. A `once`
    // approval is consumed by the authorize that uses it, in the same transaction.
    AUTHORIZE: {
      guard: 'approved',
      actions: [
        assign({
          approvals: ({ context, event }) => {
            if (!approvalOf(context, event.tool)!.once) return context.approvals
            const { [event.tool]: _used, ...rest } = context.approvals
            return rest
          },
        }),
        j('authorized'),
      ],
    },
    CONFIGURE: {
      actions: [
        assign(({ context, event }) => ({
          agent: event.agent === undefined ? context.agent : event.agent,
          models: event.models ?? context.models,
          policy: event.policy ?? context.policy,
        })),
        j('configured'),
      ],
    },
    DELETE: { target: '.deleted', actions: j('deleted') },
  },
  states: {
    /** Transient: the creating step sends OPEN. */
    opening: { on: { OPEN: { target: 'idle', actions: j('opened') } } },

    /** Nothing in flight. */
    idle: restingState('no request in flight'),

    /** A request is in flight for (model, generation). */
    active: {
      on: {
        // A new prompt supersedes the one in flight (the host moved on), except that a
        // run() prompt never supersedes another run()'s: that one is refused (SESSION_BUSY).
        PROMPT: promptTransitions(undefined, { refuseRunnerWhileRunnerInFlight: true }),
        MODEL_SELECTED: manualModelChange(),
        ABORTED: [
          { guard: 'stale', actions: ignored('stale abort') },
          // An echo names nothing or the aborted request; one that names the request in
          // flight now is about it, window or not.
          { guard: and(['withinSelfAbortWindow', not('namesCurrent')]), actions: ignored("the session's own abort echoing") },
          {
            // Outside the window (or naming the current request) it is the user's stop: not retryable, the prompt ends.
            target: 'idle',
            actions: [
              assign(({ context, event }) => ({
                log: [...context.log, { generation: context.generation, model: context.model, outcome: 'aborted' as const, reason: 'aborted by the user', at: event.at }],
              })),
              j('aborted'),
              { type: 'notify', params: { kind: 'aborted', message: 'the request was aborted' } },
            ],
          },
        ],
        DISPATCH_FAILED: failureTransitions({ requireCurrent: true }),
      },
      initial: 'awaitingFirstToken',
      states: {
        /** Dispatched; the first token is awaited under a durable timer. */
        awaitingFirstToken: {
          entry: raise(({ context }) => ({ type: 'FIRST_TOKEN_TIMEOUT', generation: context.generation }) as never, {
            id: 'firstToken',
            delay: 'firstToken',
          }),
          exit: cancel('firstToken'),
          // The replay lock covers every report kind: until the new generation speaks, only
          // reports that name it count.
          on: replayLocked({
            TOKEN: [
              { guard: 'stale', actions: ignored('token of a stale generation') },
              { target: 'streaming', actions: j('first_token') },
            ],
            ERROR: failureTransitions({}),
            FIRST_TOKEN_TIMEOUT: [
              { guard: not('currentGeneration'), actions: ignored('timer of a stale generation') },
              ...failureTransitions({}),
            ],
            IDLE: [
              { guard: 'stale', actions: ignored('idle of a stale generation') },
              { guard: and(['withinSelfAbortWindow', not('namesCurrent')]), actions: ignored("idle echo of the session's own abort") },
              ...failureTransitions({}),
            ],
            COMPLETED: [
              { guard: 'stale', actions: ignored('completion of a stale generation') },
              { target: '#session.idle', actions: completed() },
            ],
          }),
        },
        /** Tokens are flowing: an error now is a new failure of the current model. */
        streaming: {
          on: {
            TOKEN: { guard: 'stale', actions: ignored('token of a stale generation') },
            ERROR: failureTransitions({}),
            IDLE: [
              { guard: 'stale', actions: ignored('idle of a stale generation') },
              { target: '#session.idle', actions: completed() },
            ],
            COMPLETED: [
              { guard: 'stale', actions: ignored('completion of a stale generation') },
              { target: '#session.idle', actions: completed() },
            ],
          },
        },
        /** Backing off before retrying the same model. */
        retryWait: {
          entry: raise(({ context }) => ({ type: 'RETRY_DUE', generation: context.generation }) as never, {
            id: 'sameModelRetry',
            delay: 'sameModelRetry',
          }),
          exit: cancel('sameModelRetry'),
          on: {
            ERROR: { actions: ignored('error while waiting to retry') },
            RETRY_DUE: [
              { guard: not('currentGeneration'), actions: ignored('timer of a stale generation') },
              {
                target: 'awaitingFirstToken',
                actions: [
                  assign(({ context }) => ({ generation: context.generation + 1 })),
                  j('retried'),
                  dispatchCurrent(),
                ],
              },
            ],
          },
        },
      },
    },

    /** The chain is exhausted (or maxAttempts reached) until the next prompt. */
    exhausted: restingState('error after the chain was exhausted'),

    /**
     * Idle past its TTL: approvals and cooldowns are gone (nothing granted long ago still
     * holds); the next prompt reopens the session on its primary model.
     */
    archived: {
      entry: assign({ approvals: {}, cooldowns: {}, log: [], lastFailure: null }),
      on: {
        PROMPT: promptTransitions('reopened'),
      },
    },

    /** Deleted by the host: final, nothing is accepted any more. */
    deleted: { type: 'final' },
  },
})

/**
 * Transition and action lists built by the helpers below are shared by several states.
 * XState's types cannot follow such lists outside `setup().createMachine()`, so they are
 * typed loosely here; the machine tests pin their behaviour.
 */
// biome-ignore lint: see above
type Shared = any

/** idle and exhausted: nothing in flight, the TTL runs, and a prompt starts again. */
function restingState(lateErrorReason: string): Shared {
  return {
    entry: raise({ type: 'TTL_EXPIRED' } as never, { id: 'ttl', delay: 'ttl' as never }),
    exit: cancel('ttl'),
    on: {
      PROMPT: promptTransitions(),
      MODEL_SELECTED: manualModelChange(),
      TTL_EXPIRED: { target: '#session.archived', actions: j('archived') },
      ERROR: { actions: ignored(lateErrorReason) },
    },
  }
}

function manualModelChange(): Shared {
  return {
    guard: 'manualModelChange',
    actions: [assign({ model: ({ event }: { event: SessionEvent }) => (event as E<'MODEL_SELECTED'>).model }), j('model_changed')],
  }
}

function dispatchCurrent() {
  return {
    type: 'dispatch' as const,
    params: ({ context }: { context: SessionContext }): DispatchParams => ({
      model: context.model,
      generation: context.generation,
      messageId: context.messageId!,
      message: context.message,
      runner: context.runner,
    }),
  }
}

function completed(): Shared {
  return [
    assign(({ context, event }: { context: SessionContext; event: SessionEvent }) => ({
      log: [...context.log, { generation: context.generation, model: context.model, outcome: 'completed' as const, reason: '', at: event.at }],
    })),
    j('completed'),
  ]
}

/**
 * The replay lock, one rule for every report kind: while a replay (a fallback's or a
 * same-model retry's) awaits its first token, a report that names neither the new
 * generation nor the new model is the failure already being handled, echoing from another
 * host event; it is ignored. When the lock does not apply, the state's own transitions
 * for that kind decide, or its parent's (XState falls through when no guard matches).
 */
function replayLocked(on: Record<string, Shared>): Record<string, Shared> {
  const lock = {
    guard: and(['replaying', not('namesCurrent')]),
    actions: ignored('a replay awaits its first token and the report names neither its generation nor its model'),
  }
  const locked: Record<string, Shared> = { ...on }
  for (const type of REPORT_TYPES) locked[type] = [lock, ...(on[type] === undefined ? [] : [on[type]].flat())]
  return locked
}

/**
 * PROMPT from idle, active, exhausted or archived (`extra` journals the reopening).
 * `refuseRunnerWhileRunnerInFlight` (active): no transition at all for a run() prompt
 * while another run() prompt is in flight, so the caller sees a refusal.
 */
function promptTransitions(extra?: SessionJournalKind, opts: { refuseRunnerWhileRunnerInFlight?: boolean } = {}): Shared {
  const transitions = promptTransitionList(extra)
  if (!opts.refuseRunnerWhileRunnerInFlight) return transitions
  return transitions.map((t: { guard?: unknown }) => ({
    ...t,
    guard: t.guard === undefined ? not('runnerBusy') : and([not('runnerBusy'), t.guard as never]),
  }))
}

function promptTransitionList(extra?: SessionJournalKind): Shared {
  const pre: SessionJournalKind[] = extra ? [extra] : []
  return [
    {
      // Nothing usable: every model of the chain is cooling down.
      guard: not('someModelAvailable'),
      target: '#session.exhausted' as const,
      actions: [
        assign(({ event }: { event: SessionEvent }) => ({
          messageId: (event as E<'PROMPT'>).messageId,
          message: (event as E<'PROMPT'>).message,
          log: [],
          lastFailure: 'every model of the chain is cooling down',
        })),
        j(...pre, 'prompted', 'exhausted'),
        { type: 'notify' as const, params: { kind: 'exhausted' as const, message: 'every model of the chain is cooling down' } },
      ],
    },
    {
      // The host used its default (the cooling primary): keep the fallback model, redirect.
      guard: 'promptToCoolingPrimary' as const,
      target: '#session.active' as const,
      reenter: true,
      actions: [
        assign(({ context, event }: { context: SessionContext; event: SessionEvent }) => {
          const e = event as E<'PROMPT'>
          // The host's request to the primary is aborted by the session itself: mark it.
          return { ...newPrompt(context, e, modelForPrompt(context, e.at)!), selfAbortAt: e.at }
        }),
        j(...pre, 'prompted', 'redirected'),
        { type: 'abort' as const, params: ({ context }: { context: SessionContext }) => ({ generation: context.generation - 1, model: context.models[0]! }) },
        dispatchCurrent(),
      ],
    },
    {
      guard: 'recovering' as const,
      target: '#session.active' as const,
      reenter: true,
      actions: [
        'startPrompt' as const,
        j(...pre, 'prompted', 'recovered'),
        { type: 'notify' as const, params: ({ context }: { context: SessionContext }) => ({ kind: 'recovered' as const, message: `back to the primary model ${context.model}`, to: context.model }) },
        dispatchCurrent(),
      ],
    },
    {
      // The host sent it to a model of its choosing (or the user switched): follow it.
      guard: 'manualModelChange' as const,
      target: '#session.active' as const,
      reenter: true,
      actions: ['startPrompt' as const, j(...pre, 'prompted', 'model_changed')],
    },
    {
      target: '#session.active' as const,
      reenter: true,
      actions: [
        'startPrompt' as const,
        j(...pre, 'prompted'),
        // Without a model the session dispatches; with one, the host already has.
        {
          type: 'dispatch' as const,
          params: ({ context, event }: { context: SessionContext; event: SessionEvent }): DispatchParams => ({
            model: context.model,
            generation: context.generation,
            messageId: context.messageId!,
            message: context.message,
            hostDispatched: (event as E<'PROMPT'>).model != null,
            runner: context.runner,
          }),
        },
      ],
    },
  ]
}

/**
 * What a failure of the current generation does: same-model retry, fallback to the next
 * usable model, or the end (exhausted / failed). Reports that do not concern the current
 * generation are ignored and journaled as such.
 */
function failureTransitions(opts: { requireCurrent?: boolean }): Shared[] {
  const attribution = [
    { guard: 'stale' as const, actions: ignored('stale: an older generation or another model') },
    ...(opts.requireCurrent
      ? [{ guard: not('namesCurrent'), actions: ignored('does not name the current generation') }]
      : []),
  ]
  return [
    ...attribution,
    {
      guard: not('retryable'),
      target: '#session.idle' as const,
      actions: [
        'recordFailure' as const,
        j('failed'),
        { type: 'notify' as const, params: ({ context }: { context: SessionContext }) => ({ kind: 'failed' as const, message: `not retryable: ${context.lastFailure}` }) },
      ],
    },
    {
      guard: 'sameModelRetryLeft' as const,
      target: '#session.active.retryWait' as const,
      actions: [
        assign(({ context, event }: { context: SessionContext; event: SessionEvent }) => {
          const { outcome, reason } = failureOf(context, event)
          return {
            sameModelTries: context.sameModelTries + 1,
            lastFailure: reason,
            log: [...context.log, { generation: context.generation, model: context.model, outcome, reason, at: event.at }],
          }
        }),
        j('retry_scheduled'),
      ],
    },
    {
      guard: and(['attemptsLeft', 'nextModelAvailable']),
      target: '#session.active' as const,
      reenter: true,
      actions: [
        'recordFailure' as const,
        { type: 'abort' as const, params: ({ context }: { context: SessionContext }) => ({ generation: context.generation, model: context.model }) },
        'advance' as const,
        j('fallback'),
        {
          type: 'notify' as const,
          params: ({ context }: { context: SessionContext }) => {
            const from = context.log[context.log.length - 1]!.model
            return { kind: 'fallback' as const, message: `${from} failed (${context.lastFailure}); falling back to ${context.model}`, from, to: context.model }
          },
        },
        dispatchCurrent(),
      ],
    },
    {
      target: '#session.exhausted' as const,
      actions: [
        'recordFailure' as const,
        j('exhausted'),
        {
          type: 'notify' as const,
          params: ({ context }: { context: SessionContext }) => ({
            kind: 'exhausted' as const,
            message:
              context.attempts >= context.policy.maxAttempts
                ? `gave up after ${context.attempts} fallbacks (maxAttempts)`
                : 'every model of the chain failed or is cooling down',
          }),
        },
      ],
    },
  ]
}

export type { Classification, ModelError }
