/**
 * Promotion under racing writers, on every store: a child must become `ready` once its
 * last parent is done, however the parent's completion interleaves with the other
 * parents' completions, with the child's create, or with the link to it. Two
 * orchestrators (two connections, as two hosts would have) race each pair of writes.
 */
import { describe, expect, it } from 'vitest'
import { openSameBoard } from './same-board.js'
import { STORES } from './stores.js'

const ROUNDS = 30

describe.each(STORES)('promotion races on $name', (store) => {
  it('two parents completed at once: the child is promoted', async (ctx) => {
    const a = await store.open(ctx, { runTimers: false })
    const b = await openSameBoard(ctx, a.spec, { runTimers: false })
    const stuck: string[] = []
    for (let i = 0; i < ROUNDS; i++) {
      const p1 = await a.tasks.create({ title: 'p1' })
      const p2 = await a.tasks.create({ title: 'p2' })
      const child = await a.tasks.create({ title: 'child', parents: [p1.id, p2.id] })
      const k1 = (await a.tasks.claim(p1.id, { worker: 'x' }))!
      const k2 = (await b.tasks.claim(p2.id, { worker: 'y' }))!
      await Promise.all([a.tasks.complete(k1), b.tasks.complete(k2)])
      if ((await a.tasks.get(child.id))!.status !== 'ready') stuck.push(child.id)
    }
    expect(stuck).toEqual([])
  })

  it('a parent completed while a child is created with it, or linked to it: the child ends ready', async (ctx) => {
    const a = await store.open(ctx, { runTimers: false })
    const b = await openSameBoard(ctx, a.spec, { runTimers: false })
    const stuck: string[] = []
    for (let i = 0; i < ROUNDS; i++) {
      const p = await a.tasks.create({ title: 'p' })
      const k = (await a.tasks.claim(p.id, { worker: 'x' }))!
      const [, created] = await Promise.all([a.tasks.complete(k), b.tasks.create({ title: 'created', parents: [p.id] })])
      if ((await a.tasks.get(created.id))!.status !== 'ready') stuck.push(`created ${created.id}`)

      const q = await a.tasks.create({ title: 'q' })
      // Nobody may claim the child: it must stay where the gate left it.
      const linked = await a.tasks.create({ title: 'linked', assignee: 'nobody' })
      const kq = (await a.tasks.claim(q.id, { worker: 'x' }))!
      await Promise.all([a.tasks.complete(kq), b.tasks.link(q.id, linked.id)])
      if ((await a.tasks.get(linked.id))!.status !== 'ready') stuck.push(`linked ${linked.id}`)
    }
    expect(stuck).toEqual([])
  })
})
