/**
 * claimMany (a worker fills several free slots in one transaction) and concurrent calls
 * (which SQLite commits as a group, each isolated): what callers see is the same on every
 * store.
 */
import { describe, expect, it } from 'vitest'
import { MAX_CLAIM_MANY } from '../../src/index.js'
import { waitFor } from '../helpers.js'
import { STORES } from './stores.js'

const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'resolved',
    (error: { code?: string }) => error.code ?? String(error),
  )

describe.each(STORES)('on $name', (store) => {
  it('claimMany takes up to limit ready tasks in claim order, each with its run, and honours the gate and the assignee rule', async (ctx) => {
    const orch = await store.open(ctx)
    const low = await orch.tasks.create({ title: 'low', priority: 1 })
    const high = await orch.tasks.create({ title: 'high', priority: 9 })
    const mid = await orch.tasks.create({ title: 'mid', priority: 5 })
    const old = await orch.tasks.create({ title: 'old', priority: 1 })
    await orch.tasks.create({ title: 'gated', parents: [low.id], priority: 100 })
    await orch.tasks.create({ title: 'theirs', assignee: 'ann', priority: 100 })

    const claims = await orch.tasks.claimMany({ worker: 'w', limit: 3 })
    expect(claims.map((c) => c.taskId)).toEqual([high.id, mid.id, low.id])
    for (const claim of claims) {
      expect(claim).toMatchObject({ worker: 'w', attempt: 1 })
      expect(await orch.tasks.runs(claim.taskId)).toEqual([expect.objectContaining({ id: claim.runId, outcome: null })])
      expect((await orch.tasks.get(claim.taskId))!.status).toBe('running')
    }
    // Fewer ready than asked: only what is claimable (not the gated child, not ann's task).
    const rest = await orch.tasks.claimMany({ worker: 'w2', limit: 10 })
    expect(rest.map((c) => c.taskId)).toEqual([old.id])
    expect(await orch.tasks.claimMany({ worker: 'w2', limit: 10 })).toEqual([])
    expect((await orch.tasks.claimMany({ worker: 'a', assignee: 'ann', limit: 5 })).map((c) => c.worker)).toEqual(['a'])

    // Claims from claimMany are ordinary claims: fenced, completable.
    await orch.tasks.complete(claims[2]!, { summary: 'ok' })
    expect((await orch.tasks.claimMany({ worker: 'w3', limit: 5 })).map((c) => c.taskId)).toHaveLength(1) // 'gated' promoted
  })

  it('a pool with more free slots than one claimMany takes fills them MAX_CLAIM_MANY at a time', async (ctx) => {
    const orch = await store.open(ctx)
    const ids = new Set<string>()
    for (let i = 0; i < 3; i++) ids.add((await orch.tasks.create({ title: `t${i}` })).id)
    const errors: unknown[] = []
    const pool = orch.tasks.work({ worker: 'wide', concurrency: MAX_CLAIM_MANY + 500, onError: (error) => errors.push(error), handler: async () => ({ summary: 'ok' }) })
    ctx.onTestFinished(() => pool.stop())
    await waitFor(async () => (await orch.tasks.list({ status: 'done' })).length === 3)
    expect(errors).toEqual([])
  })

  it('claimMany refuses bad input with INVALID_INPUT and writes nothing', async (ctx) => {
    const orch = await store.open(ctx)
    await orch.tasks.create({ title: 't' })
    const before = await store.tableCounts(orch.spec)
    for (const options of [{ worker: 'w' }, { worker: 'w', limit: 0 }, { worker: 'w', limit: 1_001 }, { worker: 'w', limit: 1.5 }, { worker: 'w', limit: '2' }, { limit: 2 }, { worker: 'w', limit: 2, idempotencyKey: 'k' }]) {
      expect(await codeOf(orch.tasks.claimMany(options as never))).toBe('INVALID_INPUT')
    }
    expect(await store.tableCounts(orch.spec)).toEqual(before)
  })

  it('calls made together each get their own fate: a refused one changes nothing, the others commit', async (ctx) => {
    const orch = await store.open(ctx)
    const a = await orch.tasks.create({ title: 'a' })
    const b = await orch.tasks.create({ title: 'b' })
    const [ca, cb] = await orch.tasks.claimMany({ worker: 'w', limit: 2 })
    const before = await store.tableCounts(orch.spec)
    const results = await Promise.allSettled([
      orch.tasks.complete(ca!, { summary: 'a done' }),
      orch.tasks.complete({ ...cb!, token: 'forged' }, { summary: 'never' }),
      orch.tasks.create({ title: 'c', parents: [a.id] }),
      orch.tasks.create({ title: 'x', parents: ['t_missing'] }),
      orch.tasks.heartbeat(cb!),
    ])
    expect(results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code: string }).code))).toEqual(['ok', 'LEASE_LOST', 'ok', 'TASK_NOT_FOUND', 'ok'])
    expect((await orch.tasks.get(a.id))!.status).toBe('done')
    expect((await orch.tasks.get(b.id))!).toMatchObject({ status: 'running', summary: null })
    const after = await store.tableCounts(orch.spec)
    // One new task (c, with its link); a's completion and b's heartbeat; nothing from the refused calls.
    expect(after.tasks! - before.tasks!).toBe(1)
    expect(after.task_links! - before.task_links!).toBe(1)
    const kinds = (await orch.tasks.events({ after: 0, limit: 100 })).map((e) => e.kind)
    expect(kinds.filter((k) => k === 'completed')).toHaveLength(1)
  })
})
