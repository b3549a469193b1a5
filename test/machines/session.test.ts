/**
 * Pure tests of the session machine, including every scenario of seed 001 (the opencode
 * fallback plugin's race test) restated against the machine: the double/triple event
 * race, stale errors, self-abort inside and outside the window, max attempts, exhausted
 * chain, session isolation.
 */
import { describe, expect, it } from 'vitest'
import { initialTransition, transition, type AnyMachineSnapshot } from 'xstate'
import {
  DEFAULT_SESSION_POLICY,
  REPORT_TYPES,
  isCooling,
  nextModel,
  refusalReason,
  sessionMachine,
  type SessionContext,
  type SessionEvent,
  type SessionPolicy,
} from '../../machines/session.js'

type Ev = SessionEvent extends infer E ? (E extends SessionEvent ? Omit<E, 'at'> : never) : never
interface Action {
  type: string
  params?: any
}

const CHAIN = ['primary/model', 'fallback/model-a', 'fallback/model-b']
const RATE_LIMIT = { status: 429, message: 'rate limit exceeded' }

function open(policy: Partial<SessionPolicy> = {}, models = CHAIN, id = 'session-1'): AnyMachineSnapshot {
  const [initial] = initialTransition(sessionMachine, { id, agent: 'coder', models, policy: { ...DEFAULT_SESSION_POLICY, ...policy } })
  return send(initial as AnyMachineSnapshot, { type: 'OPEN' }).next
}

function send(snapshot: AnyMachineSnapshot, event: Ev, at = 1_000) {
  const [next, actions] = transition(sessionMachine, snapshot as never, { ...event, at } as SessionEvent)
  return { next: next as AnyMachineSnapshot, actions: actions as Action[], ctx: next.context as SessionContext }
}
const kinds = (actions: Action[]) => actions.filter((a) => a.type === 'journal').flatMap((a) => a.params.kinds)
const only = (actions: Action[], type: string) => actions.filter((a) => a.type === type)
const state = (s: AnyMachineSnapshot) => JSON.stringify(s.value)

/** A session whose prompt was dispatched to the primary (generation 1). */
function prompted(policy: Partial<SessionPolicy> = {}, models = CHAIN) {
  return send(open(policy, models), { type: 'PROMPT', messageId: 'm-1', message: { text: 'hello' } }).next
}

describe('prompt and success', () => {
  it('dispatches the message to the primary with generation 1 under a first-token timer', () => {
    const { next, actions, ctx } = send(open(), { type: 'PROMPT', messageId: 'm-1', message: { text: 'hello' } })
    expect(next.value).toEqual({ active: 'awaitingFirstToken' })
    expect(ctx).toMatchObject({ model: 'primary/model', generation: 1, attempts: 0, messageId: 'm-1' })
    expect(only(actions, 'dispatch')[0]!.params).toMatchObject({ model: 'primary/model', generation: 1, messageId: 'm-1', message: { text: 'hello' } })
    expect(only(actions, 'xstate.raise').map((a) => a.params)).toContainEqual(
      expect.objectContaining({ id: 'firstToken', delay: 30_000, event: { type: 'FIRST_TOKEN_TIMEOUT', generation: 1 } }),
    )
  })
  it('first token then idle completes the prompt', () => {
    const streaming = send(prompted(), { type: 'TOKEN', generation: 1 }).next
    expect(streaming.value).toEqual({ active: 'streaming' })
    const { next, actions } = send(streaming, { type: 'IDLE' })
    expect(next.value).toBe('idle')
    expect(kinds(actions)).toEqual(['completed'])
  })
})

describe('seed 001: one failure advances the chain exactly once', () => {
  it('message.updated and session.error for the same failure: the second is ignored', () => {
    const s = prompted()
    // Handler 1 (message.updated) names the model.
    const first = send(s, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 1_100)
    expect(first.ctx).toMatchObject({ model: 'fallback/model-a', generation: 2, attempts: 1 })
    expect(kinds(first.actions)).toEqual(['fallback'])
    expect(only(first.actions, 'dispatch')[0]!.params).toMatchObject({ model: 'fallback/model-a', generation: 2, messageId: 'm-1' })
    // Handler 2 (session.error) reports the same failure without a model: falling back, ignored.
    const second = send(first.next, { type: 'ERROR', error: RATE_LIMIT }, 1_101)
    expect(second.ctx).toMatchObject({ model: 'fallback/model-a', generation: 2, attempts: 1 })
    expect(kinds(second.actions)).toEqual(['ignored'])
    expect(only(second.actions, 'dispatch')).toEqual([])
  })
  it('three events for one failure: only the first advances', () => {
    let s = prompted()
    const results = []
    for (const event of [
      { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT },
      { type: 'ERROR', error: RATE_LIMIT },
      { type: 'ERROR', generation: 1, error: RATE_LIMIT },
    ] as Ev[]) {
      const r = send(s, event)
      results.push(kinds(r.actions)[0])
      s = r.next
    }
    expect(results).toEqual(['fallback', 'ignored', 'ignored'])
    expect((s.context as SessionContext).attempts).toBe(1)
  })
  it('a stale error from the old model is skipped; the pending fallback model failing is not', () => {
    const onA = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }).next
    const stale = send(onA, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT })
    expect(stale.next.context).toEqual(onA.context)
    expect(kinds(stale.actions)).toEqual(['ignored'])
    const real = send(onA, { type: 'ERROR', model: 'fallback/model-a', error: { status: 402, message: 'quota exceeded' } }, 2_000)
    expect(real.ctx).toMatchObject({ model: 'fallback/model-b', attempts: 2, generation: 3 })
  })
  it('without a pending fallback, an unattributed error counts against the current model', () => {
    const { ctx } = send(prompted(), { type: 'ERROR', error: RATE_LIMIT })
    expect(ctx.model).toBe('fallback/model-a')
  })
  it('after the fallback streams, its own later error is a new failure', () => {
    const onA = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }).next
    const streaming = send(onA, { type: 'TOKEN', model: 'fallback/model-a' }).next
    const { ctx } = send(streaming, { type: 'ERROR', error: { status: 503, message: 'service unavailable' } })
    expect(ctx).toMatchObject({ model: 'fallback/model-b', attempts: 2 })
  })
})

describe('seed 001: chain progression, max attempts, exhaustion', () => {
  it('walks the chain in order, recording every failed model with its cooldown', () => {
    let s = prompted()
    s = send(s, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 1_000).next
    s = send(s, { type: 'ERROR', model: 'fallback/model-a', error: { status: 402, message: 'insufficient credits' } }, 2_000).next
    const c = s.context as SessionContext
    expect(c.model).toBe('fallback/model-b')
    expect(c.cooldowns['primary/model']!.until).toBe(1_000 + 60_000)
    // Quota errors cool down for quotaCooldownMs (30 min).
    expect(c.cooldowns['fallback/model-a']!.until).toBe(2_000 + 30 * 60_000)
    expect(c.log.map((a) => [a.model, a.outcome])).toEqual([
      ['primary/model', 'failed'],
      ['fallback/model-a', 'failed'],
    ])
  })
  it('all models failing ends in exhausted with a notice, until the next prompt', () => {
    let s = prompted()
    s = send(s, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }).next
    s = send(s, { type: 'ERROR', model: 'fallback/model-a', error: RATE_LIMIT }).next
    const last = send(s, { type: 'ERROR', model: 'fallback/model-b', error: RATE_LIMIT })
    expect(last.next.value).toBe('exhausted')
    expect(kinds(last.actions)).toEqual(['exhausted'])
    expect(only(last.actions, 'notify')[0]!.params).toMatchObject({ kind: 'exhausted' })
    expect(send(last.next, { type: 'ERROR', error: RATE_LIMIT }).next.value).toBe('exhausted')
  })
  it('maxAttempts stops before the chain is exhausted', () => {
    let s = prompted({ maxAttempts: 2 }, ['primary/model', 'fallback/model-a', 'fallback/model-b', 'fallback/model-c'])
    s = send(s, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }).next
    s = send(s, { type: 'ERROR', model: 'fallback/model-a', error: RATE_LIMIT }).next
    const r = send(s, { type: 'ERROR', model: 'fallback/model-b', error: RATE_LIMIT })
    expect(r.next.value).toBe('exhausted')
    expect(r.ctx.attempts).toBe(2)
    expect(only(r.actions, 'notify')[0]!.params.message).toMatch(/maxAttempts/)
  })
  it('a non-retryable error stops the prompt without falling back', () => {
    const r = send(prompted(), { type: 'ERROR', model: 'primary/model', error: { status: 400, message: 'context length exceeded' } })
    expect(r.next.value).toBe('idle')
    expect(kinds(r.actions)).toEqual(['failed'])
    expect(r.ctx.model).toBe('primary/model')
    expect(r.ctx.cooldowns).toEqual({})
  })
  it('a failed dispatch counts as a failure of that generation and never rewinds', () => {
    const onA = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }).next
    const r = send(onA, { type: 'DISPATCH_FAILED', generation: 2, error: { status: 503, message: 'unavailable' } })
    expect(r.ctx).toMatchObject({ model: 'fallback/model-b', attempts: 2, generation: 3 })
    // A late DISPATCH_FAILED of generation 2 is stale now.
    expect(kinds(send(r.next, { type: 'DISPATCH_FAILED', generation: 2, error: RATE_LIMIT }).actions)).toEqual(['ignored'])
  })
})

describe('seed 001: self-abort protection', () => {
  it('falling back aborts the old request and marks the abort', () => {
    const r = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 5_000)
    expect(only(r.actions, 'abort')[0]!.params).toEqual({ generation: 1, model: 'primary/model' })
    expect(r.ctx.selfAbortAt).toBe(5_000)
  })
  it('an abort report inside the window is ignored: the state does not move', () => {
    const onA = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 5_000).next
    const r = send(onA, { type: 'ABORTED' }, 6_000)
    expect(r.next.context).toEqual(onA.context)
    expect(r.next.value).toEqual({ active: 'awaitingFirstToken' })
    expect(kinds(r.actions)).toEqual(['ignored'])
  })
  it('an abort outside the window is the user stopping: the prompt ends, no fallback', () => {
    const onA = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 5_000).next
    // During the replay the user's stop names what it stops (see 'the replay lock').
    const r = send(onA, { type: 'ABORTED', model: 'fallback/model-a' }, 8_001)
    expect(r.next.value).toBe('idle')
    expect(kinds(r.actions)).toEqual(['aborted'])
    expect(r.ctx).toMatchObject({ attempts: 1, model: 'fallback/model-a' }) // never rewound
    expect(only(r.actions, 'dispatch')).toEqual([])
  })
  it('inside the window, an abort that names the request in flight is the user stopping it, not an echo', () => {
    const onA = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 5_000).next
    for (const naming of [{ generation: 2 }, { model: 'fallback/model-a' }]) {
      const r = send(onA, { type: 'ABORTED', ...naming }, 5_500)
      expect(r.next.value).toBe('idle')
      expect(kinds(r.actions)).toEqual(['aborted'])
    }
    // The echo of the aborted request names the old one: stale, ignored.
    expect(kinds(send(onA, { type: 'ABORTED', generation: 1 }, 5_500).actions)).toEqual(['ignored'])
  })
  it('with no self-abort at all, an abort is the user stopping', () => {
    expect(send(prompted(), { type: 'ABORTED' }).next.value).toBe('idle')
  })
  it('an idle echo of the own abort inside the window is not a no-token failure', () => {
    const onA = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 5_000).next
    expect(kinds(send(onA, { type: 'IDLE' }, 5_500).actions)).toEqual(['ignored'])
  })
})

describe('timeouts', () => {
  it('no first token in time fails the model; a timer of an older generation is a no-op', () => {
    const s = prompted()
    const r = send(s, { type: 'FIRST_TOKEN_TIMEOUT', generation: 1 }, 31_000)
    expect(r.ctx).toMatchObject({ model: 'fallback/model-a', generation: 2 })
    expect(r.ctx.log[0]).toMatchObject({ outcome: 'timeout' })
    expect(kinds(send(r.next, { type: 'FIRST_TOKEN_TIMEOUT', generation: 1 }).actions)).toEqual(['ignored'])
  })
  it('idle without any token fails the model', () => {
    const r = send(prompted(), { type: 'IDLE', generation: 1 }, 3_000)
    expect(r.ctx.log[0]).toMatchObject({ outcome: 'no_response' })
    expect(r.ctx.model).toBe('fallback/model-a')
  })
})

describe('same-model retries', () => {
  it('retries the same model with backoff before switching', () => {
    const s = prompted({ sameModelRetries: 1, sameModelRetryDelayMs: 500 })
    const wait = send(s, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT })
    expect(wait.next.value).toEqual({ active: 'retryWait' })
    expect(only(wait.actions, 'xstate.raise')[0]!.params).toMatchObject({ id: 'sameModelRetry', delay: 500 })
    const again = send(wait.next, { type: 'RETRY_DUE', generation: 1 })
    expect(again.ctx).toMatchObject({ model: 'primary/model', generation: 2 })
    expect(only(again.actions, 'dispatch')[0]!.params).toMatchObject({ model: 'primary/model', generation: 2 })
    // The retry failing too switches models.
    expect(send(again.next, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }).ctx.model).toBe('fallback/model-a')
  })
})

describe('cooldown and recovery', () => {
  it('skips cooling models when falling back', () => {
    let s = prompted()
    s = send(s, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 1_000).next
    s = send(s, { type: 'TOKEN', model: 'fallback/model-a' }).next
    s = send(s, { type: 'IDLE' }).next // done on model-a
    // Next prompt while the primary still cools: stays on model-a.
    s = send(s, { type: 'PROMPT', messageId: 'm-2', message: 'x' }, 2_000).next
    expect((s.context as SessionContext).model).toBe('fallback/model-a')
    // model-a fails: the primary is still cooling, so b.
    expect(send(s, { type: 'ERROR', model: 'fallback/model-a', error: RATE_LIMIT }, 3_000).ctx.model).toBe('fallback/model-b')
  })
  it('the next prompt after the cooldown returns to the primary', () => {
    let s = prompted()
    s = send(s, { type: 'ERROR', model: 'primary/model', error: { ...RATE_LIMIT, retryAfter: 10 } }, 1_000).next
    // Retry-After (10 s) wins over the 60 s default.
    expect((s.context as SessionContext).cooldowns['primary/model']!.until).toBe(11_000)
    s = send(s, { type: 'TOKEN', model: 'fallback/model-a' }).next
    s = send(s, { type: 'IDLE' }).next
    const r = send(s, { type: 'PROMPT', messageId: 'm-2', message: 'x' }, 11_001)
    expect(r.ctx.model).toBe('primary/model')
    expect(kinds(r.actions)).toEqual(['prompted', 'recovered'])
  })
  it('a host prompt to the cooling primary is not a manual model change: redirected to the fallback', () => {
    let s = prompted()
    s = send(s, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 1_000).next
    s = send(s, { type: 'TOKEN', model: 'fallback/model-a' }).next
    s = send(s, { type: 'IDLE' }).next
    const r = send(s, { type: 'PROMPT', messageId: 'm-2', message: 'x', model: 'primary/model' }, 2_000)
    expect(r.ctx.model).toBe('fallback/model-a')
    expect(kinds(r.actions)).toEqual(['prompted', 'redirected'])
    expect(only(r.actions, 'dispatch')[0]!.params).toMatchObject({ model: 'fallback/model-a' })
    expect(only(r.actions, 'abort')).toHaveLength(1)
  })
  it('a host prompt to another model is a manual change, followed', () => {
    const r = send(open(), { type: 'PROMPT', messageId: 'm', message: 'x', model: 'fallback/model-b' })
    expect(r.ctx.model).toBe('fallback/model-b')
    expect(kinds(r.actions)).toEqual(['prompted', 'model_changed'])
    expect(only(r.actions, 'dispatch')).toEqual([]) // the host already sent it
  })
  it('every model cooling: a prompt goes straight to exhausted', () => {
    let s = prompted({}, ['a', 'b'])
    s = send(s, { type: 'ERROR', model: 'a', error: RATE_LIMIT }, 1_000).next
    s = send(s, { type: 'ERROR', model: 'b', error: RATE_LIMIT }, 1_000).next
    expect(s.value).toBe('exhausted')
    expect(send(s, { type: 'PROMPT', messageId: 'm-2', message: 'x' }, 2_000).next.value).toBe('exhausted')
    // After the cooldowns the next prompt works again, from the primary.
    expect(send(s, { type: 'PROMPT', messageId: 'm-3', message: 'x' }, 70_000).ctx.model).toBe('a')
  })
})

describe('manual model changes', () => {
  it('the user selecting another model switches to it; the cooling primary coming back is not a selection', () => {
    const picked = send(open(), { type: 'MODEL_SELECTED', model: 'fallback/model-b' })
    expect(picked.ctx.model).toBe('fallback/model-b')
    expect(kinds(picked.actions)).toEqual(['model_changed'])
    let s = prompted()
    s = send(s, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 1_000).next
    const echo = send(s, { type: 'MODEL_SELECTED', model: 'primary/model' }, 2_000)
    expect(echo.next).toBe(s)
  })
})

describe('seed 001: session isolation', () => {
  it('two sessions failing at once each advance independently', () => {
    const s1 = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT })
    const s2 = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT })
    expect(s1.ctx).toMatchObject({ model: 'fallback/model-a', attempts: 1 })
    expect(s2.ctx).toMatchObject({ model: 'fallback/model-a', attempts: 1 })
  })
})

describe('approvals', () => {
  it('a once approval is consumed by the authorize that uses it', () => {
    const approved = send(open(), { type: 'APPROVE', tool: 'bash', once: true }).next
    const first = send(approved, { type: 'AUTHORIZE', tool: 'bash' })
    expect(kinds(first.actions)).toEqual(['authorized'])
    expect(first.ctx.approvals).toEqual({})
    expect(send(first.next, { type: 'AUTHORIZE', tool: 'bash' }).actions).toEqual([])
  })
  it('a standing approval holds until revoked, in any state', () => {
    let s = send(open(), { type: 'APPROVE', tool: 'read', once: false }).next
    s = send(s, { type: 'PROMPT', messageId: 'm', message: 'x' }).next
    expect(kinds(send(s, { type: 'AUTHORIZE', tool: 'read' }).actions)).toEqual(['authorized'])
    s = send(s, { type: 'REVOKE', tool: 'read' }).next
    expect(send(s, { type: 'AUTHORIZE', tool: 'read' }).actions).toEqual([])
  })
})

describe('lifecycle', () => {
  it('an idle session raises a TTL timer and is archived when it fires: approvals and cooldowns dropped', () => {
    const [initial] = initialTransition(sessionMachine, { id: 's', agent: null, models: CHAIN, policy: DEFAULT_SESSION_POLICY })
    const r = send(initial as AnyMachineSnapshot, { type: 'OPEN' })
    expect(only(r.actions, 'xstate.raise')[0]!.params).toMatchObject({ id: 'ttl', delay: 30 * 60_000 })
    let s = send(r.next, { type: 'APPROVE', tool: 'bash', once: false }).next
    s = send(s, { type: 'TTL_EXPIRED' }).next
    expect(s.value).toBe('archived')
    expect((s.context as SessionContext).approvals).toEqual({})
    expect(send(s, { type: 'AUTHORIZE', tool: 'bash' }).actions).toEqual([])
  })
  it('an archived session is reopened by its next prompt, with a fresh generation', () => {
    let s = prompted()
    s = send(s, { type: 'IDLE' }, 2_000).next // no token: falls back to model-a (generation 2)
    s = send(s, { type: 'TOKEN', generation: 2 }).next
    s = send(s, { type: 'IDLE' }).next
    s = send(s, { type: 'TTL_EXPIRED' }).next
    const r = send(s, { type: 'PROMPT', messageId: 'm-9', message: 'back' }, 90 * 60_000)
    expect(r.next.value).toEqual({ active: 'awaitingFirstToken' })
    expect(r.ctx).toMatchObject({ model: 'primary/model', generation: 3 })
    expect(kinds(r.actions)).toEqual(['reopened', 'prompted', 'recovered'])
  })
  it('delete is final: the kernel then refuses every event', () => {
    const deleted = send(prompted(), { type: 'DELETE' }).next
    expect(state(deleted)).toBe('"deleted"')
    expect(deleted.status).toBe('done')
  })
})

/** Every name an object inherits, plus `__proto__` (an accessor on Object.prototype, spelled out). */
const PROTOTYPE_NAMES = [...new Set([...Object.getOwnPropertyNames(Object.prototype), '__proto__'])]

/** The snapshot after a JSON round trip, as the store persists and restores it. */
function roundTrip(s: AnyMachineSnapshot): AnyMachineSnapshot {
  return sessionMachine.resolveState({ value: JSON.parse(JSON.stringify(s.value)), context: JSON.parse(JSON.stringify(s.context)) }) as AnyMachineSnapshot
}

describe('user strings are own keys only (approvals, cooldowns)', () => {
  it.each(PROTOTYPE_NAMES)('%s: not approved without an approval, nothing to revoke', (tool) => {
    const s = open()
    expect(send(s, { type: 'AUTHORIZE', tool }).actions).toEqual([])
    expect(send(s, { type: 'REVOKE', tool }).actions).toEqual([])
    expect(refusalReason('idle', s.context as SessionContext, { type: 'AUTHORIZE', tool, at: 1 })).toBe(`${JSON.stringify(tool)} is not approved`)
  })
  it.each(PROTOTYPE_NAMES)('%s: a once approval authorizes once and is really consumed, also after a JSON round trip', (tool) => {
    const approved = roundTrip(send(open(), { type: 'APPROVE', tool, once: true }).next)
    expect(Object.keys((approved.context as SessionContext).approvals)).toEqual([tool])
    const first = send(approved, { type: 'AUTHORIZE', tool })
    expect(kinds(first.actions)).toEqual(['authorized'])
    expect(Object.keys(first.ctx.approvals)).toEqual([])
    expect(send(roundTrip(first.next), { type: 'AUTHORIZE', tool }).actions).toEqual([])
  })
  it.each(PROTOTYPE_NAMES)('%s: a standing approval holds after a JSON round trip until revoked', (tool) => {
    let s = roundTrip(send(open(), { type: 'APPROVE', tool, once: false }).next)
    expect(kinds(send(s, { type: 'AUTHORIZE', tool }).actions)).toEqual(['authorized'])
    expect(kinds(send(s, { type: 'AUTHORIZE', tool }).actions)).toEqual(['authorized'])
    const revoked = send(s, { type: 'REVOKE', tool })
    expect(kinds(revoked.actions)).toEqual(['revoked'])
    s = roundTrip(revoked.next)
    expect(Object.keys((s.context as SessionContext).approvals)).toEqual([])
    expect(send(s, { type: 'AUTHORIZE', tool }).actions).toEqual([])
  })
  it('a chain of models named like Object.prototype members cools and falls back by own keys', () => {
    const models = ['constructor', '__proto__', 'toString', 'hasOwnProperty']
    const fresh = { cooldowns: {} }
    for (const model of PROTOTYPE_NAMES) expect(isCooling(fresh, model, 0)).toBe(false)
    let s = prompted({}, models)
    s = send(s, { type: 'ERROR', model: 'constructor', error: RATE_LIMIT }, 1_000).next
    s = roundTrip(send(s, { type: 'ERROR', model: '__proto__', error: RATE_LIMIT }, 1_000).next)
    const c = s.context as SessionContext
    expect(c.model).toBe('toString')
    expect(Object.keys(c.cooldowns)).toEqual(['constructor', '__proto__'])
    expect(isCooling(c, '__proto__', 2_000)).toBe(true)
    expect(isCooling(c, 'toString', 2_000)).toBe(false)
    expect(nextModel(c, 'toString', 2_000)).toBe('hasOwnProperty')
  })
})

describe('the replay lock: one rule for every report kind', () => {
  // Replaying on fallback/model-a (generation 2) since t=1_000; the self-abort window
  // (2 s) is over at t=3_500, so only the lock can ignore a report there.
  const replaying = () => send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 1_000).next
  const report = (type: (typeof REPORT_TYPES)[number], attribution: { generation?: number; model?: string }): Ev =>
    (type === 'ERROR' || type === 'DISPATCH_FAILED' ? { type, error: RATE_LIMIT, ...attribution } : { type, ...attribution }) as Ev

  it.each(REPORT_TYPES)('%s without attribution during a replay is ignored with a reason', (type) => {
    const s = replaying()
    const r = send(s, report(type, {}), 3_500)
    expect(kinds(r.actions)).toEqual(['ignored'])
    expect(only(r.actions, 'journal')[0]!.params.reason).toMatch(/replay awaits its first token/)
    expect(r.next.value).toEqual({ active: 'awaitingFirstToken' })
    expect(r.next.context).toEqual(s.context)
  })
  it.each(REPORT_TYPES)('%s naming the new generation during a replay still counts', (type) => {
    const r = send(replaying(), report(type, { generation: 2 }), 3_500)
    const expected = { TOKEN: 'first_token', ERROR: 'fallback', DISPATCH_FAILED: 'fallback', ABORTED: 'aborted', IDLE: 'fallback', COMPLETED: 'completed' }
    expect(kinds(r.actions)).toEqual([expected[type]])
  })
  it('the issue\'s case: an unattributed idle echo 2.5 s after the fallback neither advances nor cools the replayed model', () => {
    const r = send(replaying(), { type: 'IDLE' }, 3_500)
    expect(r.ctx).toMatchObject({ model: 'fallback/model-a', generation: 2, attempts: 1 })
    expect(isCooling(r.ctx, 'fallback/model-a', 3_500)).toBe(false)
    // The replayed model's own report, named, is taken.
    expect(send(r.next, { type: 'IDLE', model: 'fallback/model-a' }, 3_600).ctx).toMatchObject({ model: 'fallback/model-b', attempts: 2 })
  })
  it('a same-model retry is a replay too', () => {
    const s = prompted({ sameModelRetries: 1, sameModelRetryDelayMs: 500, selfAbortWindowMs: 0 })
    const wait = send(s, { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 1_000).next
    const retried = send(wait, { type: 'RETRY_DUE', generation: 1 }, 1_500).next
    const echo = send(retried, { type: 'IDLE' }, 1_600)
    expect(kinds(echo.actions)).toEqual(['ignored'])
    expect(echo.ctx).toMatchObject({ model: 'primary/model', generation: 2 })
  })
  it('without a replay (the first dispatch) an unattributed report is the current model\'s', () => {
    expect(kinds(send(prompted(), { type: 'IDLE' }, 3_500).actions)).toEqual(['fallback'])
    expect(kinds(send(prompted(), { type: 'TOKEN' }, 3_500).actions)).toEqual(['first_token'])
  })
})

describe('one run() prompt at a time (SESSION_BUSY, decided by the machine)', () => {
  const runPrompt = (messageId: string): Ev => ({ type: 'PROMPT', messageId, message: 'x', runner: true })
  it('a run() prompt while another is in flight is refused, in every active sub-state', () => {
    const awaiting = send(open(), runPrompt('m-1')).next
    const streaming = send(awaiting, { type: 'TOKEN', generation: 1 }).next
    const waiting = send(send(open({ sameModelRetries: 1 }), runPrompt('m-1')).next, { type: 'ERROR', generation: 1, error: RATE_LIMIT }).next
    expect(waiting.value).toEqual({ active: 'retryWait' })
    for (const s of [awaiting, streaming, waiting]) {
      const r = send(s, runPrompt('m-2'))
      expect(r.actions).toEqual([])
      expect(r.next.context).toEqual(s.context)
      expect(refusalReason(`active.${Object.values(s.value as object)[0]}`, s.context as SessionContext, { ...runPrompt('m-2'), at: 1 } as SessionEvent)).toMatch(
        /a run\(\) prompt \(message m-1\) is in flight/,
      )
    }
  })
  it('a host prompt still supersedes a run; a run supersedes a host prompt; after the run ends the next run starts', () => {
    const running = send(open(), runPrompt('m-1')).next
    expect(send(running, { type: 'PROMPT', messageId: 'm-h', message: 'x' }).ctx).toMatchObject({ messageId: 'm-h', runner: false })
    const host = send(open(), { type: 'PROMPT', messageId: 'm-h', message: 'x' }).next
    expect(send(host, runPrompt('m-1')).ctx).toMatchObject({ messageId: 'm-1', runner: true })
    let s = send(running, { type: 'TOKEN', generation: 1 }).next
    s = send(s, { type: 'COMPLETED', generation: 1 }).next
    expect(send(s, runPrompt('m-2')).ctx).toMatchObject({ messageId: 'm-2', generation: 2 })
  })
  it('a run whose process died is not busy forever: an abort naming it ends it, and an unanswered one times out along the chain', () => {
    const streaming = send(send(open(), runPrompt('m-1')).next, { type: 'TOKEN', generation: 1 }).next
    const ended = send(streaming, { type: 'ABORTED', generation: 1 }, 5_000)
    expect(kinds(ended.actions)).toEqual(['aborted'])
    expect(send(ended.next, runPrompt('m-2'), 5_001).ctx).toMatchObject({ messageId: 'm-2' })
    // Nobody answers: the durable first-token timers walk the chain to exhausted, which accepts a new run.
    let s = send(open({}, ['a', 'b']), runPrompt('m-1'), 0).next
    s = send(s, { type: 'FIRST_TOKEN_TIMEOUT', generation: 1 }, 30_000).next
    s = send(s, { type: 'FIRST_TOKEN_TIMEOUT', generation: 2 }, 60_000).next
    expect(s.value).toBe('exhausted')
    expect(kinds(send(s, runPrompt('m-2'), 120_000).actions)).toContain('prompted')
  })
})

describe('refusals say why', () => {
  it('the cooling primary selected again: refused, with when it cools and where the session stays', () => {
    const s = send(prompted(), { type: 'ERROR', model: 'primary/model', error: RATE_LIMIT }, 1_000).next
    const event = { type: 'MODEL_SELECTED', model: 'primary/model', at: 2_000 } as const
    expect(send(s, event, 2_000).actions).toEqual([])
    expect(refusalReason('active.awaitingFirstToken', s.context as SessionContext, event)).toBe(
      `the primary primary/model cools until ${new Date(61_000).toISOString()} (HTTP 429 rate limit); the session stays on fallback/model-a`,
    )
    expect(refusalReason('idle', open().context as SessionContext, { type: 'MODEL_SELECTED', model: 'primary/model', at: 1 })).toBe(
      'the session is already on primary/model',
    )
    expect(refusalReason('idle', open().context as SessionContext, { type: 'TOKEN', at: 1 })).toBe('no request is in flight (the session is idle)')
  })
})
