/**
 * Durable timers on SQLite, read with raw SQL: which timer rows a step leaves. (The
 * behaviour runs on every store: test/conformance/leases.test.ts.)
 */
import { describe, expect, it } from 'vitest'
import { createOrchestrator } from '../../../src/index.js'
import { raw, tempDbPath } from '../../helpers.js'

describe('retries', () => {
  it('cancelling during backoff removes the retry timer', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path, defaults: { backoffBaseMs: 60_000 } })
    const t = await orch.tasks.create({ title: 't' })
    await orch.tasks.fail((await orch.tasks.claim(t.id, { worker: 'w' }))!, { error: 'x' })
    expect(raw(path).prepare('SELECT actor_id, timer_id FROM timers').all()).toEqual([{ actor_id: t.id, timer_id: 'retry' }])
    await orch.tasks.cancel(t.id)
    expect(raw(path).prepare('SELECT COUNT(*) n FROM timers').get()).toEqual({ n: 0 })
    await orch.close()
  })
})
