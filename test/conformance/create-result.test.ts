/**
 * create() answers from what it wrote instead of reading the row back (one read fewer per
 * create): what it returns must be exactly what get() reads afterwards, in every state a
 * new task can start in, on every store.
 */
import { describe, expect, it } from 'vitest'
import { STORES } from './stores.js'

describe.each(STORES)('on $name', (store) => {
  it('create() returns what get() reads: ready, todo, blocked, with every field and parents in id order', async (ctx) => {
    const orch = await store.open(ctx)
    const full = await orch.tasks.create({
      title: 'full',
      body: 'the body',
      assignee: 'ann',
      tenant: 'acme',
      priority: 7,
      payload: { to: 'x@example.test', n: [1, 2, { deep: null }] },
      idempotencyKey: 'full-1',
      maxAttempts: 5,
    })
    expect(full).toMatchObject({ status: 'ready', payload: { to: 'x@example.test' }, maxAttempts: 5, parents: [] })
    expect(full).toEqual(await orch.tasks.get(full.id))

    const done = await orch.tasks.create({ title: 'done' })
    const claim = (await orch.tasks.claim(done.id, { worker: 'w' }))!
    await orch.tasks.complete(claim, { result: 1 })
    const open = await orch.tasks.create({ title: 'open' })
    const failed = await orch.tasks.create({ title: 'failed', maxAttempts: 1 })
    const failClaim = (await orch.tasks.claim(failed.id, { worker: 'w' }))!
    await orch.tasks.fail(failClaim, { error: 'no', retryable: false })

    // Parents given out of id order and with a duplicate: reads list them once, in id order.
    const afterDone = await orch.tasks.create({ title: 'after done', parents: [done.id] })
    const waiting = await orch.tasks.create({ title: 'waiting', parents: [open.id, done.id, open.id] })
    const blocked = await orch.tasks.create({ title: 'blocked', parents: [failed.id, done.id] })
    expect([afterDone.status, waiting.status, blocked.status]).toEqual(['ready', 'todo', 'blocked'])
    expect(waiting.parents).toEqual([open.id, done.id].sort())
    for (const task of [afterDone, waiting, blocked]) expect(task).toEqual(await orch.tasks.get(task.id))

    // A repeated idempotency key answers with the task as it is now (read, not rebuilt).
    const again = await orch.tasks.create({ title: 'ignored', idempotencyKey: 'full-1' })
    expect(again).toEqual(await orch.tasks.get(full.id))
  })
})
