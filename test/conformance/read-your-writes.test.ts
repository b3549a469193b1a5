/**
 * events() shows a caller its own writes on every store: an entry this process committed
 * is in the next page even while other writes of the same process are in flight (on
 * PostgreSQL seqs commit out of order, and the journal's horizon can lag behind a commit).
 */
import { describe, expect, it } from 'vitest'
import { STORES } from './stores.js'

describe.each(STORES)('on $name', (store) => {
  it('events() right after an awaited write includes it, with other writes in flight', async (ctx) => {
    const orch = await store.open(ctx)
    let writing = true
    const noise = (async () => {
      while (writing) await Promise.all([1, 2, 3].map(() => orch.tasks.create({ title: 'noise' })))
    })()
    const missing: string[] = []
    try {
      for (let i = 0; i < 40; i++) {
        const task = await orch.tasks.create({ title: `mine ${i}` })
        if ((await orch.tasks.events({ taskId: task.id })).length !== 1) missing.push(task.title)
        await orch.sessions.open(`s${i}`, { models: ['a', 'b'] })
        if ((await orch.sessions.events({ sessionId: `s${i}` })).length !== 1) missing.push(`s${i}`)
      }
    } finally {
      writing = false
      await noise
    }
    expect(missing).toEqual([])
  })
})
