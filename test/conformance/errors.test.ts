/**
 * Every error code a caller can meet on any store, and "a rejected call writes nothing".
 * (The codes that need raw SQL or SQLite-only options: test/persistence/<store>/errors.test.ts.)
 */
import { describe, expect, it, type TestContext } from 'vitest'
import { DependencyCycleError, InvalidInputError, LockstepError, MAX_JSON_DEPTH, type Json, type Orchestrator } from '../../src/index.js'
import { STORES, type StoreUnderTest } from './stores.js'

type Board = { orch: Orchestrator & { spec: string }; ids: Record<string, string> }

/** A parent with a waiting child, and a running task; payloads capped at 1,000 bytes. */
async function board(store: StoreUnderTest, ctx: TestContext): Promise<Board> {
  const orch = await store.open(ctx, { maxPayloadBytes: 1_000 })
  const p = await orch.tasks.create({ title: 'parent' })
  const c = await orch.tasks.create({ title: 'child', parents: [p.id] })
  const r = await orch.tasks.create({ title: 'running' })
  await orch.tasks.claim(r.id, { worker: 'w' })
  return { orch, ids: { p: p.id, c: c.id, r: r.id } }
}

/** Assert `call` rejects with `code` and that no table changed. */
async function rejectsWithoutWriting(store: StoreUnderTest, spec: string, call: () => Promise<unknown>, code: string): Promise<LockstepError> {
  const before = await store.tableCounts(spec)
  const error = await call().then(
    () => {
      throw new Error(`expected ${code}, but the call succeeded`)
    },
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(LockstepError)
  expect((error as LockstepError).code).toBe(code)
  expect(await store.tableCounts(spec)).toEqual(before)
  return error as LockstepError
}

/** `[[[ ... ]]]` (or `{a:{a:...}}`) nested `depth` levels, built without recursion. */
function nested(depth: number, kind: 'array' | 'object' = 'array'): unknown {
  let value: unknown = 0
  for (let i = 0; i < depth; i++) value = kind === 'array' ? [value] : { a: value }
  return value
}

describe.each(STORES)('on $name', (store) => {
  describe('INVALID_INPUT: rejected before any transaction', () => {
    const cases: Array<[string, (o: Orchestrator, ids: Record<string, string>) => Promise<unknown>]> = [
      ['empty title', (o) => o.tasks.create({ title: '   ' })],
      ['missing title', (o) => o.tasks.create({} as never)],
      ['title of wrong type', (o) => o.tasks.create({ title: 42 } as never)],
      ['input not an object', (o) => o.tasks.create(null as never)],
      ['priority not an integer', (o) => o.tasks.create({ title: 't', priority: 1.5 })],
      ['maxAttempts out of range', (o) => o.tasks.create({ title: 't', maxAttempts: 0 })],
      ['parents not an array', (o) => o.tasks.create({ title: 't', parents: 'p' } as never)],
      ['payload with a function', (o) => o.tasks.create({ title: 't', payload: { f: () => 1 } as never })],
      ['payload with a Date', (o) => o.tasks.create({ title: 't', payload: { d: new Date() } as never })],
      ['payload with NaN', (o) => o.tasks.create({ title: 't', payload: { n: Number.NaN } })],
      ['payload with a BigInt', (o) => o.tasks.create({ title: 't', payload: { n: 1n } as never })],
      [
        'payload with a cycle',
        (o) => {
          const a: Record<string, unknown> = {}
          a.self = a
          return o.tasks.create({ title: 't', payload: a as never })
        },
      ],
      ['unknown status filter', (o) => o.tasks.list({ status: 'finished' as never })],
      ['list limit out of range', (o) => o.tasks.list({ limit: 0 })],
      ['claim without worker', (o, ids) => o.tasks.claim(ids.p!, {} as never)],
      ['claim with a negative lease', (o, ids) => o.tasks.claim(ids.p!, { worker: 'w', leaseMs: -1 })],
      ['complete with a malformed claim', (o) => o.tasks.complete({ taskId: 'x' } as never)],
      ['fail without an error', (o, ids) => o.tasks.fail({ taskId: ids.r!, runId: 'r', token: 't', worker: 'w', leaseExpiresAt: 0, attempt: 1 }, {} as never)],
      ['block without a reason', (o, ids) => o.tasks.block(ids.p!, {} as never)],
      ['events with a negative cursor', (o) => o.tasks.events({ after: -1 })],
    ]
    it.for(cases)('%s', async ([, call], ctx) => {
      const { orch, ids } = await board(store, ctx)
      const error = await rejectsWithoutWriting(store, orch.spec, () => call(orch, ids), 'INVALID_INPUT')
      expect(error).toBeInstanceOf(InvalidInputError)
    })

    it('rejects synchronously-invalid input as a rejected promise, never a throw', async (ctx) => {
      const { orch } = await board(store, ctx)
      const promise = orch.tasks.create(undefined as never)
      expect(promise).toBeInstanceOf(Promise)
      await expect(promise).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    })
  })

  describe('the other codes', () => {
    it('PAYLOAD_TOO_LARGE', async (ctx) => {
      const { orch } = await board(store, ctx)
      const error = await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.create({ title: 't', payload: 'x'.repeat(2_000) }), 'PAYLOAD_TOO_LARGE')
      expect(error.details).toMatchObject({ field: 'payload', limit: 1_000 })
    })

    it('TASK_NOT_FOUND: unknown parent, unknown task', async (ctx) => {
      const { orch, ids } = await board(store, ctx)
      const spec = orch.spec
      await rejectsWithoutWriting(store, spec, () => orch.tasks.create({ title: 't', parents: [ids.p!, 't_nope'] }), 'TASK_NOT_FOUND')
      await rejectsWithoutWriting(store, spec, () => orch.tasks.claim('t_nope', { worker: 'w' }), 'TASK_NOT_FOUND')
      await rejectsWithoutWriting(store, spec, () => orch.tasks.cancel('t_nope'), 'TASK_NOT_FOUND')
      await rejectsWithoutWriting(store, spec, () => orch.tasks.link(ids.p!, 't_nope'), 'TASK_NOT_FOUND')
      await rejectsWithoutWriting(store, spec, () => orch.tasks.runs('t_nope'), 'TASK_NOT_FOUND')
      await rejectsWithoutWriting(
        store,
        spec,
        () => orch.tasks.complete({ taskId: 't_nope', runId: 'r', token: 'x', worker: 'w', leaseExpiresAt: 0, attempt: 1 }),
        'TASK_NOT_FOUND',
      )
    })

    it('DEPENDENCY_CYCLE: self-link and a longer cycle', async (ctx) => {
      const { orch, ids } = await board(store, ctx)
      const grandchild = await orch.tasks.create({ title: 'gc', parents: [ids.c!] })
      const self = await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.link(ids.p!, ids.p!), 'DEPENDENCY_CYCLE')
      expect(self).toBeInstanceOf(DependencyCycleError)
      await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.link(grandchild.id, ids.p!), 'DEPENDENCY_CYCLE')
    })

    it('LINK_NOT_FOUND', async (ctx) => {
      const { orch, ids } = await board(store, ctx)
      await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.unlink(ids.r!, ids.c!), 'LINK_NOT_FOUND')
    })

    it('LEASE_LOST: a wrong token or an old run changes nothing', async (ctx) => {
      const { orch, ids } = await board(store, ctx)
      const claim = (await orch.tasks.claim(ids.p!, { worker: 'w' }))!
      const forged = { ...claim, token: 'forged' }
      await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.complete(forged), 'LEASE_LOST')
      await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.heartbeat(forged), 'LEASE_LOST')
      await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.fail(forged, { error: 'x' }), 'LEASE_LOST')
      await orch.tasks.complete(claim)
      // Completing twice: the second is stale too.
      await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.complete(claim), 'LEASE_LOST')
    })

    it('INVALID_TRANSITION: the machine refuses the command in this state', async (ctx) => {
      const { orch, ids } = await board(store, ctx)
      const error = await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.archive(ids.r!), 'INVALID_TRANSITION')
      expect(error.details).toMatchObject({ actorId: ids.r, event: 'ARCHIVE', state: 'running' })
      await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.unblock(ids.p!), 'INVALID_TRANSITION')
      await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.retry(ids.p!), 'INVALID_TRANSITION')
    })

    it('CLOSED after close()', async (ctx) => {
      const { orch } = await board(store, ctx)
      await orch.close()
      await expect(orch.tasks.list()).rejects.toMatchObject({ code: 'CLOSED' })
      await orch.close() // idempotent
    })
  })

  describe('deeply nested JSON: INVALID_INPUT at any depth, never a RangeError', () => {
    it('accepts MAX_JSON_DEPTH levels and refuses one more', async (ctx) => {
      const { orch } = await board(store, ctx)
      const ok = await orch.tasks.create({ title: 'deep enough', payload: nested(MAX_JSON_DEPTH) as Json })
      expect(JSON.stringify(ok.payload)).toHaveLength(2 * MAX_JSON_DEPTH + 1)
      // The store gives the payload back as it was stored, not only the call's echo.
      expect(JSON.stringify((await orch.tasks.get(ok.id))!.payload)).toBe(JSON.stringify(nested(MAX_JSON_DEPTH)))
      const error = await rejectsWithoutWriting(
        store,
        orch.spec,
        () => orch.tasks.create({ title: 't', payload: nested(MAX_JSON_DEPTH + 1) as Json }),
        'INVALID_INPUT',
      )
      expect(error.message).toMatch(new RegExp(`nests deeper than ${MAX_JSON_DEPTH} levels`))
    })

    for (const depth of [10_000, 1_000_000]) {
      it(`payload, result, metadata and session messages ${depth.toLocaleString('en')} levels deep`, async (ctx) => {
        const { orch, ids } = await board(store, ctx)
        const deep = nested(depth) as Json
        const deepObject = nested(depth, 'object') as Json
        await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.create({ title: 't', payload: deep }), 'INVALID_INPUT')
        await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.create({ title: 't', payload: deepObject }), 'INVALID_INPUT')
        const claim = (await orch.tasks.claim(ids.p!, { worker: 'w' }))!
        await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.complete(claim, { result: deep }), 'INVALID_INPUT')
        await rejectsWithoutWriting(store, orch.spec, () => orch.tasks.complete(claim, { metadata: deepObject }), 'INVALID_INPUT')
        await orch.sessions.open('s', { models: ['m1', 'm2'] })
        const sessionEvents = (await orch.sessions.events({ sessionId: 's' })).length
        await expect(orch.sessions.prompt('s', { message: deepObject })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
        await expect(
          orch.sessions.run('s', { models: ['m1', 'm2'], message: { deep: deepObject }, call: async () => 'never called' }),
        ).rejects.toMatchObject({ code: 'INVALID_INPUT' })
        expect(await orch.sessions.events({ sessionId: 's' })).toHaveLength(sessionEvents)
      })
    }
  })
})
