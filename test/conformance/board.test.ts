/**
 * The board, worker pools and sessions behave the same on every store (one suite, run on
 * SQLite and on PostgreSQL through test/conformance/stores.ts): the claim gate, fencing,
 * idempotency keys, cycles, subscriptions in seq order, lease expiry through durable
 * timers, worker pools, and session fallback with approvals.
 */
import { describe, expect, it } from 'vitest'
import type { JournalEntry } from '../../src/index.js'
import { sleep } from '../helpers.js'
import { STORES } from './stores.js'

const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'resolved',
    (error: { code?: string }) => error.code ?? String(error),
  )

describe.each(STORES)('on $name', (store) => {
  it('claim gate, fencing, cascade and the journal', async (ctx) => {
    const orch = await store.open(ctx)
    const parent = await orch.tasks.create({ title: 'parent', priority: 1 })
    const child = await orch.tasks.create({ title: 'child', parents: [parent.id] })
    expect([parent.status, child.status]).toEqual(['ready', 'todo'])
    // The child is not claimable while its parent is not done.
    expect(await orch.tasks.claim(child.id, { worker: 'w' })).toBeNull()

    const claim = (await orch.tasks.claimNext({ worker: 'w' }))!
    expect(claim.taskId).toBe(parent.id)
    expect(await orch.tasks.claimNext({ worker: 'w2' })).toBeNull()
    expect(await codeOf(orch.tasks.complete({ ...claim, token: 'forged' }))).toBe('LEASE_LOST')
    expect(await codeOf(orch.tasks.complete({ ...claim, runId: 'r_never' }))).toBe('RUN_NOT_FOUND')

    const done = await orch.tasks.complete(claim, { result: { pages: 3 }, summary: 'ok' })
    expect(done).toMatchObject({ status: 'done', result: { pages: 3 }, summary: 'ok' })
    expect((await orch.tasks.get(child.id))!.status).toBe('ready')
    expect(await orch.tasks.runs(parent.id)).toEqual([expect.objectContaining({ id: claim.runId, outcome: 'completed' })])

    const childClaim = (await orch.tasks.claimNext({ worker: 'w' }))!
    await orch.tasks.fail(childClaim, { error: 'broken', retryable: false })
    expect((await orch.tasks.get(child.id))!.status).toBe('failed')

    const kinds = (await orch.tasks.events()).map((e) => `${e.actorId === parent.id ? 'p' : 'c'}:${e.kind}`)
    expect(kinds).toEqual(['p:created', 'c:created', 'p:claimed', 'p:completed', 'c:promoted', 'c:claimed', 'c:failed'])
    const seqs = (await orch.tasks.events()).map((e) => e.seq)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    expect((await orch.tasks.list({ limit: 10 })).map((t) => t.title)).toEqual(['parent', 'child'])
    expect((await orch.tasks.get(child.id))!.parents).toEqual([parent.id])
  })

  it('idempotency keys, cycles and bad input write nothing', async (ctx) => {
    const orch = await store.open(ctx)
    const a = await orch.tasks.create({ title: 'a', idempotencyKey: 'k1' })
    expect((await orch.tasks.create({ title: 'a again', idempotencyKey: 'k1' })).id).toBe(a.id)
    const b = await orch.tasks.create({ title: 'b', parents: [a.id] })
    const c = await orch.tasks.create({ title: 'c', parents: [b.id] })
    expect(await codeOf(orch.tasks.link(c.id, a.id))).toBe('DEPENDENCY_CYCLE')
    expect(await codeOf(orch.tasks.link(a.id, a.id))).toBe('DEPENDENCY_CYCLE')
    expect(await codeOf(orch.tasks.create({ title: 'x', parents: ['t_missing'] }))).toBe('TASK_NOT_FOUND')
    expect(await codeOf(orch.tasks.create({ title: 'later', delay: 1000 } as never))).toBe('INVALID_INPUT')
    expect((await orch.tasks.list({ limit: 100 })).length).toBe(3)
    expect((await orch.tasks.events()).length).toBe(3)
  })

  it('a subscriber gets every entry once, in seq order', async (ctx) => {
    const orch = await store.open(ctx)
    const seen: JournalEntry[] = []
    const stop = orch.tasks.subscribe((entry) => seen.push(entry))
    const t = await orch.tasks.create({ title: 't' })
    const claim = (await orch.tasks.claimNext({ worker: 'w' }))!
    await orch.tasks.complete(claim)
    const deadline = Date.now() + 5_000
    while (seen.length < 3 && Date.now() < deadline) await sleep(10)
    stop()
    expect(seen.map((e) => [e.actorId, e.kind])).toEqual([
      [t.id, 'created'],
      [t.id, 'claimed'],
      [t.id, 'completed'],
    ])
    expect(seen.map((e) => e.seq)).toEqual([...seen.map((e) => e.seq)].sort((a, b) => a - b))
  })

  it('a lapsed lease is reclaimed by the durable timer and the task is claimable again', async (ctx) => {
    const orch = await store.open(ctx, { runTimers: false, defaults: { backoffBaseMs: 0, backoffMaxMs: 0 } })
    const t = await orch.tasks.create({ title: 't' })
    const claim = (await orch.tasks.claimNext({ worker: 'w', leaseMs: 200 }))!
    await sleep(350)
    expect(await orch.runDueTimers()).toBe(1)
    expect((await orch.tasks.get(t.id))!.status).toBe('ready')
    expect(await codeOf(orch.tasks.complete(claim))).toBe('LEASE_LOST')
    const again = (await orch.tasks.claimNext({ worker: 'w2' }))!
    expect(again).toMatchObject({ taskId: t.id, attempt: 2 })
    expect((await orch.tasks.runs(t.id)).map((r) => r.outcome)).toEqual(['reclaimed', null])
  })

  it('a worker pool works a DAG to the end', async (ctx) => {
    const orch = await store.open(ctx)
    const root = await orch.tasks.create({ title: 'root' })
    for (let i = 0; i < 12; i++) await orch.tasks.create({ title: `leaf ${i}`, parents: [root.id] })
    const handled: string[] = []
    const pool = orch.tasks.work({
      worker: 'pool',
      concurrency: 4,
      idlePollMs: 20,
      handler: async (task) => {
        handled.push(task.title)
        return { result: { title: task.title } }
      },
    })
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline && (await orch.tasks.list({ status: 'done', limit: 100 })).length < 13) await sleep(20)
    await pool.stop()
    expect((await orch.tasks.list({ status: 'done', limit: 100 })).length).toBe(13)
    expect(handled[0]).toBe('root')
    expect(new Set(handled).size).toBe(13)
  })

  it('a session falls back once per failure and keeps once-approvals exact', async (ctx) => {
    const orch = await store.open(ctx)
    const calls: string[] = []
    const result = await orch.sessions.run('s1', {
      models: ['m/primary', 'm/fallback'],
      message: { text: 'hi' },
      call: async ({ model, onToken }) => {
        calls.push(model)
        if (model === 'm/primary') throw Object.assign(new Error('rate limited'), { status: 429 })
        onToken()
        return `answer from ${model}`
      },
    })
    expect(result).toMatchObject({ output: 'answer from m/fallback', model: 'm/fallback' })
    expect(calls).toEqual(['m/primary', 'm/fallback'])
    const session = (await orch.sessions.get('s1'))!
    expect(session.models.find((m) => m.model === 'm/primary')!.coolingUntil).toBeGreaterThan(0)

    await orch.sessions.approve('s1', 'bash', { once: true })
    const answers = await Promise.all([1, 2, 3].map(() => orch.sessions.authorize('s1', 'bash')))
    expect(answers.filter(Boolean)).toHaveLength(1)
    expect(await orch.sessions.authorize('s1', 'toString')).toBe(false)
  })
})
