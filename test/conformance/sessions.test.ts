/**
 * Sessions on every store: run(), host reports with an adapter, restarts, processes,
 * approvals, bounded errors and refused input, through the public API only (one suite, run
 * on SQLite and on PostgreSQL through test/conformance/stores.ts). The stored rows' sizes
 * are checked per store in test/persistence/{sqlite,postgres}/sessions.test.ts.
 */
import { readdirSync, writeFileSync } from 'node:fs'
import { basename, dirname } from 'node:path'
import { describe, expect, it } from 'vitest'
import { MAX_ERROR_MESSAGE } from '../../src/sessions.js'
import type { CallContext, Notice, Orchestrator, SessionAdapter } from '../../src/index.js'
import { runProc, sleep, tempDbPath, waitFor } from '../helpers.js'
import { openSpec } from './open-spec.js'
import { STORES } from './stores.js'

const CHAIN = ['anthropic/claude-x', 'openai/gpt-y', 'google/gemini-z']

function httpError(status: number, message: string, headers: Record<string, string> = {}) {
  return Object.assign(new Error(message), { status, headers })
}

/** A host adapter that records every call. */
function recordingAdapter() {
  const calls: Array<{ type: string; sessionId: string; model?: string; generation?: number; notice?: Notice }> = []
  const adapter: SessionAdapter = {
    prompt: (sessionId, model, _message, info) => void calls.push({ type: 'prompt', sessionId, model, generation: info.generation }),
    abort: (sessionId, info) => void calls.push({ type: 'abort', sessionId, model: info.model, generation: info.generation }),
    notify: (sessionId, notice) => void calls.push({ type: 'notify', sessionId, notice }),
  }
  return { adapter, calls }
}

/** Every name an object inherits, plus `__proto__`. */
const PROTOTYPE_NAMES = [...new Set([...Object.getOwnPropertyNames(Object.prototype), '__proto__'])]

const answer = (text: string) => async ({ onToken }: CallContext) => {
  onToken()
  return text
}

/** Where a test tells its child processes to go (a fresh directory, removed after the test). */
const startFile = () => `${tempDbPath()}.start`

/** Until `count` session-report.mjs processes have opened their store and wait for `start`. */
const allReady = (start: string, count: number) =>
  waitFor(() => readdirSync(dirname(start)).filter((name) => name.startsWith(`${basename(start)}.ready.`)).length >= count, 60_000)

describe.each(STORES)('on $name', (store) => {
  describe('run(): the app calls models, lockstep falls back', () => {
    it('falls back on a 429, replays the same message, and says which model answered', async (ctx) => {
      const orch = await store.open(ctx)
      const seen: Array<[string, unknown]> = []
      const notices: Notice[] = []
      const reply = await orch.sessions.run('session-42', {
        agent: 'coder',
        models: CHAIN,
        message: { id: 'm-17', text: 'refactor this' },
        onNotice: (n) => notices.push(n),
        call: async ({ model, message, onToken }) => {
          seen.push([model, message])
          if (model === CHAIN[0]) throw httpError(429, 'rate limit exceeded')
          onToken()
          return `answer from ${model}`
        },
      })
      expect(reply.output).toBe('answer from openai/gpt-y')
      expect(reply.model).toBe('openai/gpt-y')
      expect(reply.attempts.map((a) => [a.model, a.outcome])).toEqual([
        ['anthropic/claude-x', 'failed'],
        ['openai/gpt-y', 'completed'],
      ])
      // The same message, same id, replayed on the fallback.
      expect(seen).toEqual([
        [CHAIN[0], { id: 'm-17', text: 'refactor this' }],
        [CHAIN[1], { id: 'm-17', text: 'refactor this' }],
      ])
      expect(notices.map((n) => n.kind)).toEqual(['fallback'])
      const session = (await orch.sessions.get('session-42'))!
      expect(session.models[0]).toMatchObject({ model: CHAIN[0], current: false, reason: 'HTTP 429 rate limit' })
      expect(session.models[0]!.coolingUntil).toBeGreaterThan(Date.now())
      const kinds = (await orch.sessions.events({ sessionId: 'session-42' })).map((e) => e.kind)
      expect(kinds).toEqual(['opened', 'prompted', 'fallback', 'first_token', 'completed'])
    })

    it('rejects with CHAIN_EXHAUSTED listing every attempt', async (ctx) => {
      const orch = await store.open(ctx)
      const error = await orch.sessions
        .run('s', { models: CHAIN, message: { text: 'x' }, call: async () => Promise.reject(httpError(529, 'overloaded')) })
        .catch((e) => e)
      expect(error.code).toBe('CHAIN_EXHAUSTED')
      expect(error.attempts.map((a: { model: string }) => a.model)).toEqual(CHAIN)
      expect(error.message).toContain('google/gemini-z (HTTP 529 overloaded)')
    })

    it('a non-retryable error rejects with MODEL_CALL_FAILED without trying other models', async (ctx) => {
      const orch = await store.open(ctx)
      const models: string[] = []
      const error = await orch.sessions
        .run('s', {
          models: CHAIN,
          message: { text: 'x' },
          call: async ({ model }) => {
            models.push(model)
            throw httpError(400, 'prompt is too long: context length exceeded')
          },
        })
        .catch((e) => e)
      expect(error.code).toBe('MODEL_CALL_FAILED')
      expect(models).toEqual([CHAIN[0]])
    })

    it('a model silent past firstTokenTimeoutMs is aborted and the next one answers', async (ctx) => {
      const orch = await store.open(ctx)
      let silentSignal: AbortSignal | null = null
      const reply = await orch.sessions.run('s', {
        models: CHAIN,
        config: { firstTokenTimeoutMs: 150 },
        message: { text: 'x' },
        call: async ({ model, signal, onToken }: CallContext) => {
          if (model === CHAIN[0]) {
            silentSignal = signal
            return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
          }
          onToken()
          return 'fast'
        },
      })
      expect(reply).toMatchObject({ output: 'fast', model: CHAIN[1] })
      expect(reply.attempts[0]).toMatchObject({ model: CHAIN[0], outcome: 'timeout' })
      expect(silentSignal!.aborted).toBe(true)
    })

    it('recovers to the primary on the next prompt once its cooldown passed', async (ctx) => {
      const orch = await store.open(ctx)
      let primaryDown = true
      const call = async ({ model, onToken }: CallContext) => {
        if (model === CHAIN[0] && primaryDown) throw httpError(503, 'service unavailable')
        onToken()
        return model
      }
      const config = { cooldownMs: 100 }
      expect((await orch.sessions.run('s', { models: CHAIN, config, message: { text: '1' }, call })).model).toBe(CHAIN[1])
      // Still cooling: stays on the fallback without trying the primary.
      expect((await orch.sessions.run('s', { models: CHAIN, config, message: { text: '2' }, call })).model).toBe(CHAIN[1])
      primaryDown = false
      await sleep(120)
      expect((await orch.sessions.run('s', { models: CHAIN, config, message: { text: '3' }, call })).model).toBe(CHAIN[0])
      const kinds = (await orch.sessions.events({ sessionId: 's' })).map((e) => e.kind)
      expect(kinds).toContain('recovered')
    })

    it('twenty run()s in a row on one session each answer, and each journals its first token before its completion', async (ctx) => {
      // On PostgreSQL a new run()'s driver used to read the session before its own prompt
      // committed and reject as "superseded", and a call's COMPLETED report could commit
      // before its TOKEN report (which was then refused): both in RunDriver, src/sessions.ts.
      const orch = await store.open(ctx)
      for (let i = 0; i < 20; i++) {
        const reply = await orch.sessions.run('s', { models: CHAIN, message: { text: `${i}` }, call: answer(`answer ${i}`) })
        expect(reply).toMatchObject({ output: `answer ${i}`, model: CHAIN[0] })
      }
      const kinds = (await orch.sessions.events({ sessionId: 's' })).map((e) => e.kind)
      expect(kinds).toEqual(['opened', ...Array.from({ length: 20 }, () => ['prompted', 'first_token', 'completed']).flat()])
    })

    it('same-model retries with backoff before switching', async (ctx) => {
      const orch = await store.open(ctx)
      const tried: string[] = []
      const reply = await orch.sessions.run('s', {
        models: CHAIN,
        config: { sameModelRetries: 1, sameModelRetryDelayMs: 20 },
        message: { text: 'x' },
        call: async ({ model, onToken }) => {
          tried.push(model)
          if (tried.length === 1) throw httpError(500, 'internal server error')
          onToken()
          return 'ok'
        },
      })
      expect(tried).toEqual([CHAIN[0], CHAIN[0]])
      expect(reply.model).toBe(CHAIN[0])
    })
  })

  describe('host reports with an adapter (the plugin level)', () => {
    it('message.updated and session.error for one failure: the adapter re-prompts once', async (ctx) => {
      const { adapter, calls } = recordingAdapter()
      const orch = await store.open(ctx, { sessionAdapter: adapter })
      await orch.sessions.open('s1', { agent: 'build', models: CHAIN })
      await orch.sessions.prompt('s1', { messageId: 'm1', message: { text: 'hi' }, model: CHAIN[0] })
      const reports = await Promise.all([
        orch.sessions.error('s1', { model: CHAIN[0], error: { status: 429, message: 'rate limit' } }),
        orch.sessions.error('s1', { error: { name: 'APIError', message: 'Rate limit reached' } }),
        orch.sessions.error('s1', { generation: 1, error: { status: 429 } }),
      ])
      expect(reports.map((r) => r.kinds[0]).sort()).toEqual(['fallback', 'ignored', 'ignored'])
      const session = (await orch.sessions.get('s1'))!
      expect(session).toMatchObject({ model: CHAIN[1], attempts: 1, generation: 2 })
      await waitFor(() => calls.some((c) => c.type === 'prompt'))
      expect(calls.filter((c) => c.type === 'prompt')).toEqual([{ type: 'prompt', sessionId: 's1', model: CHAIN[1], generation: 2 }])
      expect(calls.filter((c) => c.type === 'abort')).toEqual([{ type: 'abort', sessionId: 's1', model: CHAIN[0], generation: 1 }])
      expect(calls.find((c) => c.type === 'notify')!.notice).toMatchObject({ kind: 'fallback', from: CHAIN[0], to: CHAIN[1] })
    })

    it("the session's own abort echo is ignored inside the window; a later abort is the user's", async (ctx) => {
      const { adapter } = recordingAdapter()
      const orch = await store.open(ctx, { sessionAdapter: adapter })
      await orch.sessions.open('s', { models: CHAIN, config: { selfAbortWindowMs: 150 } })
      await orch.sessions.prompt('s', { message: 'x', model: CHAIN[0] })
      await orch.sessions.error('s', { model: CHAIN[0], error: { status: 429 } })
      expect((await orch.sessions.aborted('s')).kinds).toEqual(['ignored'])
      expect((await orch.sessions.get('s'))!).toMatchObject({ status: 'active', attempts: 1, model: CHAIN[1] })
      await sleep(200)
      // During the replay an unattributed report is an echo whatever its kind: the user's stop names the model.
      expect((await orch.sessions.aborted('s')).kinds).toEqual(['ignored'])
      const user = await orch.sessions.aborted('s', { model: CHAIN[1] })
      expect(user.kinds).toEqual(['aborted'])
      expect(user.session).toMatchObject({ status: 'idle', attempts: 1, model: CHAIN[1] })
    })

    it('a rejected dispatch is a failure of that model and never rewinds the chain', async (ctx) => {
      const prompts: string[] = []
      const orch = await store.open(ctx, {
        sessionAdapter: {
          prompt: async (_id, model) => {
            prompts.push(model)
            if (model === CHAIN[1]) throw httpError(503, 'unavailable')
          },
          abort: () => {},
        },
      })
      await orch.sessions.open('s', { models: CHAIN })
      await orch.sessions.prompt('s', { message: 'x', model: CHAIN[0] })
      await orch.sessions.error('s', { model: CHAIN[0], error: { status: 429 } })
      await waitFor(async () => (await orch.sessions.get('s'))!.model === CHAIN[2])
      expect(prompts).toEqual([CHAIN[1], CHAIN[2]])
      expect((await orch.sessions.get('s'))!).toMatchObject({ attempts: 2, generation: 3 })
    })

    it('sessions are isolated', async (ctx) => {
      const orch = await store.open(ctx, { sessionAdapter: recordingAdapter().adapter })
      for (const id of ['a', 'b']) {
        await orch.sessions.open(id, { models: CHAIN })
        await orch.sessions.prompt(id, { message: 'x', model: CHAIN[0] })
      }
      await orch.sessions.error('a', { model: CHAIN[0], error: { status: 429 } })
      expect((await orch.sessions.get('a'))!.model).toBe(CHAIN[1])
      expect((await orch.sessions.get('b'))!).toMatchObject({ model: CHAIN[0], attempts: 0 })
      // b's primary is not cooling because a's was.
      expect((await orch.sessions.get('b'))!.models[0]!.coolingUntil).toBeNull()
    })

    it('concurrent error reports from several processes advance the chain once', async (ctx) => {
      const orch = await store.open(ctx)
      await orch.sessions.open('shared', { models: CHAIN })
      await orch.sessions.prompt('shared', { message: 'x', model: CHAIN[0] })
      await orch.close()
      const start = startFile()
      const procs = Array.from({ length: 4 }, () => runProc('session-report.mjs', [orch.spec, 'shared', 'error', start, CHAIN[0]!]))
      await allReady(start, 4)
      writeFileSync(start, 'go')
      const outs = await Promise.all(procs)
      const kinds = outs.map((o) => {
        expect(o.stderr).toBe('')
        return JSON.parse(o.stdout).kinds[0]
      })
      expect(kinds.sort()).toEqual(['fallback', 'ignored', 'ignored', 'ignored'])
      // Exactly one host, in one process, was asked to re-prompt, on the next model.
      expect(outs.flatMap((o) => JSON.parse(o.stdout).prompts)).toEqual([{ model: CHAIN[1], generation: 2 }])
      // Read back without timers: nothing but the four reports has acted on the session.
      const after = await openSpec(ctx, orch.spec, { runTimers: false })
      expect((await after.sessions.get('shared'))!).toMatchObject({ model: CHAIN[1], attempts: 1, generation: 2 })
      expect((await after.sessions.events({ sessionId: 'shared' })).filter((e) => e.kind === 'fallback')).toHaveLength(1)
    })

    it('a restart mid-fallback resumes with the first-token timer intact', async (ctx) => {
      const first = await store.open(ctx, { sessionAdapter: recordingAdapter().adapter })
      await first.sessions.open('s', { models: CHAIN, config: { firstTokenTimeoutMs: 400 } })
      await first.sessions.prompt('s', { message: 'x', model: CHAIN[0] })
      await first.sessions.error('s', { model: CHAIN[0], error: { status: 429 } })
      await first.close() // mid-fallback: awaiting gpt-y's first token
      const { adapter, calls } = recordingAdapter()
      const second = await openSpec(ctx, first.spec, { sessionAdapter: adapter })
      expect((await second.sessions.get('s'))!).toMatchObject({ state: 'active.awaitingFirstToken', model: CHAIN[1] })
      // Nobody reports a token: the timer persisted by the first process fires in the second.
      await waitFor(() => calls.some((c) => c.type === 'prompt'), 5_000)
      expect(calls.find((c) => c.type === 'prompt')).toMatchObject({ model: CHAIN[2], generation: 3 })
      expect((await second.sessions.get('s'))!.log.map((a) => a.outcome)).toEqual(['failed', 'timeout'])
      await second.close()
    })
  })

  describe('approvals', () => {
    it('a once approval authorizes exactly once under concurrent calls', async (ctx) => {
      const orch = await store.open(ctx)
      await orch.sessions.open('s', { models: CHAIN })
      await orch.sessions.approve('s', 'bash', { once: true })
      const results = await Promise.all(Array.from({ length: 10 }, () => orch.sessions.authorize('s', 'bash')))
      expect(results.filter(Boolean)).toHaveLength(1)
      expect(await orch.sessions.authorize('s', 'bash')).toBe(false)
    })

    it('a once approval authorizes exactly once across processes', async (ctx) => {
      const orch = await store.open(ctx)
      await orch.sessions.open('s', { models: CHAIN })
      await orch.sessions.approve('s', 'deploy', { once: true })
      await orch.close()
      const start = startFile()
      const procs = Array.from({ length: 4 }, () => runProc('session-report.mjs', [orch.spec, 's', 'authorize', start, 'deploy']))
      await allReady(start, 4)
      writeFileSync(start, 'go')
      const outs = await Promise.all(procs)
      expect(outs.map((o) => JSON.parse(o.stdout).authorized).filter(Boolean)).toHaveLength(1)
    })

    it('standing approvals survive a restart; revoke and delete end them', async (ctx) => {
      const first = await store.open(ctx)
      await first.sessions.open('s', { models: CHAIN })
      await first.sessions.approve('s', 'read')
      await first.close()
      const second = await openSpec(ctx, first.spec)
      expect(await second.sessions.authorize('s', 'read')).toBe(true)
      expect(await second.sessions.authorize('s', 'read')).toBe(true)
      await second.sessions.revoke('s', 'read')
      expect(await second.sessions.authorize('s', 'read')).toBe(false)
      await second.sessions.approve('s', 'read')
      await second.sessions.deleted('s')
      expect((await second.sessions.get('s'))!.status).toBe('deleted')
      await expect(second.sessions.authorize('s', 'read')).rejects.toMatchObject({ code: 'SESSION_DELETED' })
      await expect(second.sessions.approve('s', 'read')).rejects.toMatchObject({ code: 'SESSION_DELETED' })
      await second.close()
    })
  })

  describe('lifecycle', () => {
    it('a session idle longer than its TTL is archived by the durable timer', async (ctx) => {
      const orch = await store.open(ctx)
      await orch.sessions.open('short-lived', { models: CHAIN, config: { ttlMs: 80 } })
      await orch.sessions.approve('short-lived', 'read')
      await waitFor(async () => (await orch.sessions.get('short-lived'))!.status === 'archived', 5_000)
      expect(await orch.sessions.authorize('short-lived', 'read')).toBe(false)
      expect((await orch.sessions.events({ sessionId: 'short-lived' })).map((e) => e.kind)).toEqual(['opened', 'approved', 'archived'])
      // Coming back later: run() reopens it.
      const reply = await orch.sessions.run('short-lived', {
        models: CHAIN,
        config: { ttlMs: 80 },
        message: { text: 'back again' },
        call: async ({ model, onToken }) => {
          onToken()
          return `hi from ${model}`
        },
      })
      expect(reply.output).toBe(`hi from ${CHAIN[0]}`)
    })
  })

  describe('errors', () => {
    it('unknown sessions and bad input are typed errors', async (ctx) => {
      const orch = await store.open(ctx)
      await expect(orch.sessions.error('nope', { error: 'x' })).rejects.toMatchObject({ code: 'SESSION_NOT_FOUND' })
      await expect(orch.sessions.open('s', { models: [] })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      await expect(orch.sessions.open('s', { models: ['a', 'a'] })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      await expect(orch.sessions.open('s', { models: ['a'], config: { cooldownMs: -1 } })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      await expect(orch.sessions.open('s', { models: ['a'], config: { nope: 1 } as never })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      expect(await orch.sessions.get('s')).toBeNull()
    })

    it('a second run() on a busy session in the same process is refused', async (ctx) => {
      const orch = await store.open(ctx)
      let release!: () => void
      const slow = orch.sessions.run('s', {
        models: CHAIN,
        message: { text: 'x' },
        call: ({ onToken }) => {
          onToken()
          return new Promise((r) => (release = () => r('done')))
        },
      })
      await waitFor(() => release)
      await expect(orch.sessions.run('s', { models: CHAIN, message: { text: 'y' }, call: async () => 'z' })).rejects.toMatchObject({
        code: 'SESSION_BUSY',
      })
      release()
      expect((await slow).output).toBe('done')
    })
  })

  describe('user strings are own keys only', () => {
    it('authorize and revoke of every Object.prototype name without an approval: false, nothing written', async (ctx) => {
      const orch = await store.open(ctx)
      await orch.sessions.open('s', { models: CHAIN })
      const before = await store.tableCounts(orch.spec)
      for (const tool of PROTOTYPE_NAMES) {
        expect(await orch.sessions.authorize('s', tool)).toBe(false)
        expect((await orch.sessions.revoke('s', tool)).approvals).toEqual([])
      }
      expect(await store.tableCounts(orch.spec)).toEqual(before)
    })

    it('approvals of every such name: once is consumed once, standing ones survive a restart, listed by get()', async (ctx) => {
      const first = await store.open(ctx)
      await first.sessions.open('once', { models: CHAIN })
      await first.sessions.open('standing', { models: CHAIN })
      for (const tool of PROTOTYPE_NAMES) {
        await first.sessions.approve('once', tool, { once: true })
        await first.sessions.approve('standing', tool)
      }
      await first.close()
      // A new process reads the snapshots back from their JSON.
      const second = await openSpec(ctx, first.spec)
      const listed = (id: string) => second.sessions.get(id).then((s) => s!.approvals.map((a) => [a.tool, a.once]))
      expect(await listed('once')).toEqual(PROTOTYPE_NAMES.map((tool) => [tool, true]))
      expect(await listed('standing')).toEqual(PROTOTYPE_NAMES.map((tool) => [tool, false]))
      for (const tool of PROTOTYPE_NAMES) {
        expect(await second.sessions.authorize('once', tool)).toBe(true)
        expect(await second.sessions.authorize('once', tool)).toBe(false)
        expect(await second.sessions.authorize('standing', tool)).toBe(true)
        expect(await second.sessions.authorize('standing', tool)).toBe(true)
        await second.sessions.revoke('standing', tool)
        expect(await second.sessions.authorize('standing', tool)).toBe(false)
      }
      expect(await listed('once')).toEqual([])
      expect(await listed('standing')).toEqual([])
      await second.close()
    })

    it('a chain of models named like Object.prototype members cools and reports by own keys', async (ctx) => {
      const orch = await store.open(ctx)
      const models = ['constructor', '__proto__', 'toString']
      const reply = await orch.sessions.run('s', {
        models,
        message: { text: 'x' },
        call: async ({ model, onToken }) => {
          if (model !== 'toString') throw httpError(429, 'rate limit exceeded')
          onToken()
          return 'ok'
        },
      })
      expect(reply.model).toBe('toString')
      const session = (await orch.sessions.get('s'))!
      expect(session.models.map((m) => [m.model, m.current, m.coolingUntil !== null, m.reason])).toEqual([
        ['constructor', false, true, 'HTTP 429 rate limit'],
        ['__proto__', false, true, 'HTTP 429 rate limit'],
        ['toString', true, false, null],
      ])
    })
  })

  describe('the replay lock through the API', () => {
    it("an unattributed idle after a fallback, before the replay's first token, is ignored: no second advance, no cooldown", async (ctx) => {
      const { adapter, calls } = recordingAdapter()
      const orch = await store.open(ctx, { sessionAdapter: adapter })
      await orch.sessions.open('s', { models: CHAIN, config: { selfAbortWindowMs: 0 } })
      await orch.sessions.prompt('s', { message: 'x', model: CHAIN[0] })
      expect((await orch.sessions.error('s', { model: CHAIN[0], error: { status: 429 } })).kinds).toEqual(['fallback'])
      await sleep(5) // past the self-abort window: only the replay lock can tell
      const echo = await orch.sessions.idle('s', {})
      expect(echo.kinds).toEqual(['ignored'])
      expect(echo.session).toMatchObject({ model: CHAIN[1], attempts: 1, generation: 2 })
      expect(echo.session.models[1]!.coolingUntil).toBeNull()
      await waitFor(() => calls.some((c) => c.type === 'prompt'))
      expect(calls.filter((c) => c.type === 'prompt')).toEqual([{ type: 'prompt', sessionId: 's', model: CHAIN[1], generation: 2 }])
    })
  })

  describe('bounded error texts and messages', () => {
    it('a 22 MB error report journals a bounded entry, also for each ignored repeat', async (ctx) => {
      const orch = await store.open(ctx, { sessionAdapter: recordingAdapter().adapter })
      await orch.sessions.open('s', { models: CHAIN })
      await orch.sessions.prompt('s', { message: 'x', model: CHAIN[0] })
      const huge = `rate limit exceeded ${'x'.repeat(22 * 1024 * 1024)}`
      const error = { status: 429, message: huge, name: huge, code: huge, retryAfter: huge }
      expect((await orch.sessions.error('s', { model: CHAIN[0], error })).kinds).toEqual(['fallback'])
      expect((await orch.sessions.error('s', { error })).kinds).toEqual(['ignored'])
      expect((await orch.sessions.error('s', { error: Object.assign(new Error(huge), { status: 429 }) })).kinds).toEqual(['ignored'])
      expect((await orch.sessions.error('s', { error: huge })).kinds).toEqual(['ignored'])
      // The stored rows' sizes are checked per store (test/persistence/*/sessions.test.ts).
      const entries = (await orch.sessions.events({ sessionId: 's' })).filter((e) => e.eventType === 'ERROR')
      expect(entries).toHaveLength(4)
      for (const entry of entries) {
        expect(JSON.stringify(entry.event).length).toBeLessThan(MAX_ERROR_MESSAGE + 2_000)
        expect((entry.event.error as { message: string }).message).toMatch(new RegExp(`^rate limit exceeded x+ … \\[truncated: ${huge.length} characters in all\\]$`))
      }
      expect(JSON.stringify(await orch.sessions.get('s')).length).toBeLessThan(10_000)
    })

    it("messages are capped by the orchestrator's maxPayloadBytes: over it, PAYLOAD_TOO_LARGE and nothing written", async (ctx) => {
      const orch = await store.open(ctx, { maxPayloadBytes: 2 * 1024 * 1024, sessionAdapter: recordingAdapter().adapter })
      await orch.sessions.open('s', { models: CHAIN })
      const before = await store.tableCounts(orch.spec)
      const tooBig = { text: 'x'.repeat(3 * 1024 * 1024) }
      await expect(orch.sessions.prompt('s', { message: tooBig })).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { limit: 2 * 1024 * 1024 } })
      await expect(orch.sessions.run('new', { models: CHAIN, message: tooBig, call: answer('no') })).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' })
      expect(await store.tableCounts(orch.spec)).toEqual(before)
      // Over the old fixed 1 MiB, under this orchestrator's cap: accepted.
      const large = { text: 'y'.repeat(1.5 * 1024 * 1024) }
      expect((await orch.sessions.prompt('s', { message: large })).accepted).toBe(true)
      expect((await orch.sessions.run('new', { models: CHAIN, message: large, call: answer('fine') })).output).toBe('fine')
    })
  })

  describe('unknown options are refused with INVALID_INPUT naming the key, writing nothing', () => {
    const cases: Array<[string, string, (orch: Orchestrator) => Promise<unknown>]> = [
      ['open input', 'delay', (o) => o.sessions.open('s', { models: CHAIN, delay: 5 } as never)],
      ['config', 'maxRetries', (o) => o.sessions.open('s', { models: CHAIN, config: { maxRetries: 5 } as never })],
      ['prompt input', 'modelId', (o) => o.sessions.prompt('s', { message: 'x', modelId: 'a' } as never)],
      ['error input', 'gen', (o) => o.sessions.error('s', { error: 'x', gen: 1 } as never)],
      ['token report', 'generaton', (o) => o.sessions.token('s', { generaton: 1 } as never)],
      ['aborted report', 'reason', (o) => o.sessions.aborted('s', { reason: 'user' } as never)],
      ['idle report', 'at', (o) => o.sessions.idle('s', { at: 1 } as never)],
      ['approve options', 'Once', (o) => o.sessions.approve('s', 'bash', { Once: true } as never)],
      ['list filter', 'state', (o) => o.sessions.list({ state: 'idle' } as never)],
      ['events query', 'session', (o) => o.sessions.events({ session: 's' } as never)],
      ['subscribe options', 'from', async (o) => o.sessions.subscribe(() => {}, { from: 0 } as never)],
      ['run input', 'retries', (o) => o.sessions.run('s', { models: CHAIN, message: { text: 'x' }, call: answer('x'), retries: 2 } as never)],
      ['run config', 'timeoutMs', (o) => o.sessions.run('s', { models: CHAIN, config: { timeoutMs: 1 } as never, message: { text: 'x' }, call: answer('x') })],
    ]
    it.for(cases)('%s: %s', async ([_what, key, call], ctx) => {
      const orch = await store.open(ctx)
      await orch.sessions.open('s', { models: CHAIN })
      const before = await store.tableCounts(orch.spec)
      await expect(call(orch)).rejects.toMatchObject({ code: 'INVALID_INPUT', details: { field: key } })
      expect(await store.tableCounts(orch.spec)).toEqual(before)
    })
    it("run()'s message is the app's data: any keys", async (ctx) => {
      const orch = await store.open(ctx)
      const reply = await orch.sessions.run('s', { models: CHAIN, message: { id: 'm', delay: 5, anything: { at: 1 } }, call: answer('ok') })
      expect(reply.output).toBe('ok')
    })
  })

  describe('run(): one at a time, across processes; a pending run keeps its process alive', () => {
    it('two run() calls on one session in the same tick: the second is SESSION_BUSY, the first answers', async (ctx) => {
      const orch = await store.open(ctx)
      const first = orch.sessions.run('s', { models: CHAIN, message: { text: '1' }, call: answer('first') })
      const second = orch.sessions.run('s', { models: CHAIN, message: { text: '2' }, call: answer('second') })
      await expect(second).rejects.toMatchObject({ code: 'SESSION_BUSY' })
      expect((await first).output).toBe('first')
    })

    it('SESSION_BUSY holds across processes: a run() in another process is refused while this one is in flight, writing nothing', async (ctx) => {
      const orch = await store.open(ctx)
      let release!: () => void
      const slow = orch.sessions.run('shared', {
        models: ['a/primary', 'b/fallback'],
        message: { text: 'parent' },
        call: ({ onToken }) => {
          onToken()
          return new Promise((resolve) => (release = () => resolve('parent answer')))
        },
      })
      await waitFor(async () => (await orch.sessions.get('shared'))?.state === 'active.streaming')
      const before = await store.tableCounts(orch.spec)
      const child = await runProc('session-run.mjs', [orch.spec, 'shared', 'try'])
      expect(child.stderr).toBe('')
      expect(JSON.parse(child.stdout)).toMatchObject({ code: 'SESSION_BUSY' })
      expect(JSON.parse(child.stdout).message).toMatch(/a run\(\) prompt \(message m_\w+\) is in flight on a\/primary/)
      expect(await store.tableCounts(orch.spec)).toEqual(before)
      release()
      expect((await slow).output).toBe('parent answer')
      // Once it has answered, the other process may run.
      expect(JSON.parse((await runProc('session-run.mjs', [orch.spec, 'shared', 'try'])).stdout)).toEqual({ output: 'child answer' })
    })

    it('a run whose process died mid-answer keeps the session busy until an abort naming it ends it', async (ctx) => {
      // A fresh board, closed here: only the child has it open until it dies.
      const board = await store.open(ctx)
      await board.close()
      const died = await runProc('session-run.mjs', [board.spec, 'crashed', 'die-streaming'])
      expect(died.signal).toBe('SIGKILL')
      const orch = await openSpec(ctx, board.spec)
      try {
        const stuck = (await orch.sessions.get('crashed'))!
        expect(stuck.state).toBe('active.streaming')
        const run = () => orch.sessions.run('crashed', { models: ['a/primary', 'b/fallback'], message: { text: 'again' }, call: answer('back') })
        await expect(run()).rejects.toMatchObject({ code: 'SESSION_BUSY' })
        const ended = await orch.sessions.aborted('crashed', { generation: stuck.generation })
        expect(ended.kinds).toEqual(['aborted'])
        expect((await run()).output).toBe('back')
      } finally {
        await orch.close()
      }
    })

    it('a script whose only pending work is a run() waiting on a same-model retry prints its answer and exits 0', async (ctx) => {
      // A fresh board, closed here: the retry's timer can only fire in the child.
      const board = await store.open(ctx)
      await board.close()
      const out = await runProc('session-run.mjs', [board.spec, 's', 'retry-only'])
      expect(out).toMatchObject({ code: 0, stderr: '' })
      expect(JSON.parse(out.stdout)).toEqual({ output: 'after a retry', model: 'a/primary', calls: 2 })
    })
  })

  describe('a deleted session: one rule for every call', () => {
    const calls: Array<[string, (orch: Orchestrator) => Promise<unknown>]> = [
      ['open', (o) => o.sessions.open('s', { models: CHAIN })],
      ['open (reconfigure)', (o) => o.sessions.open('s', { models: [...CHAIN].reverse() })],
      ['prompt', (o) => o.sessions.prompt('s', { message: 'x' })],
      ['token', (o) => o.sessions.token('s', {})],
      ['error', (o) => o.sessions.error('s', { error: { status: 429 } })],
      ['aborted', (o) => o.sessions.aborted('s')],
      ['idle', (o) => o.sessions.idle('s')],
      ['modelSelected', (o) => o.sessions.modelSelected('s', CHAIN[1]!)],
      ['deleted', (o) => o.sessions.deleted('s')],
      ['approve', (o) => o.sessions.approve('s', 'bash')],
      ['revoke', (o) => o.sessions.revoke('s', 'bash')],
      ['authorize', (o) => o.sessions.authorize('s', 'bash')],
      ['run', (o) => o.sessions.run('s', { models: CHAIN, message: { text: 'x' }, call: answer('x') })],
    ]
    it.for(calls)('%s: SESSION_DELETED, nothing written', async ([_name, call], ctx) => {
      const orch = await store.open(ctx, { sessionAdapter: recordingAdapter().adapter })
      await orch.sessions.open('s', { models: CHAIN })
      await orch.sessions.approve('s', 'bash')
      await orch.sessions.deleted('s')
      const before = await store.tableCounts(orch.spec)
      await expect(call(orch)).rejects.toMatchObject({ code: 'SESSION_DELETED', details: { sessionId: 's' } })
      expect(await store.tableCounts(orch.spec)).toEqual(before)
      expect((await orch.sessions.get('s'))!.status).toBe('deleted')
    })
    it('a run() whose session is deleted while it waits rejects with SESSION_DELETED', async (ctx) => {
      const orch = await store.open(ctx)
      let started = false
      const pending = orch.sessions.run('s', {
        models: CHAIN,
        message: { text: 'x' },
        call: ({ signal }) => {
          started = true
          return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
        },
      })
      await waitFor(() => started)
      // Watched before the delete: run() may reject while deleted() is still returning.
      const rejected = expect(pending).rejects.toMatchObject({ code: 'SESSION_DELETED' })
      await orch.sessions.deleted('s')
      await rejected
    })
  })

  describe('refused reports say why', () => {
    it('modelSelected of the cooling primary; reports with nothing in flight', async (ctx) => {
      const orch = await store.open(ctx, { sessionAdapter: recordingAdapter().adapter })
      await orch.sessions.open('s', { models: CHAIN, config: { selfAbortWindowMs: 0 } })
      await orch.sessions.prompt('s', { message: 'x', model: CHAIN[0] })
      await orch.sessions.error('s', { model: CHAIN[0], error: { status: 429, message: 'rate limit' } })
      const until = (await orch.sessions.get('s'))!.models[0]!.coolingUntil!
      const selected = await orch.sessions.modelSelected('s', CHAIN[0]!)
      expect(selected).toMatchObject({ accepted: false, kinds: [] })
      expect(selected.reason).toBe(`the primary ${CHAIN[0]} cools until ${new Date(until).toISOString()} (HTTP 429 rate limit); the session stays on ${CHAIN[1]}`)
      expect(selected.session.model).toBe(CHAIN[1])
      await sleep(5)
      expect((await orch.sessions.aborted('s', { model: CHAIN[1] })).kinds).toEqual(['aborted'])
      expect((await orch.sessions.token('s', {})).reason).toBe('no request is in flight (the session is idle)')
      expect((await orch.sessions.idle('s', { model: CHAIN[1] })).reason).toBe('no request is in flight (the session is idle)')
      const accepted = await orch.sessions.modelSelected('s', CHAIN[2]!)
      expect(accepted).toMatchObject({ accepted: true, kinds: ['model_changed'], reason: null })
    })
  })
})
