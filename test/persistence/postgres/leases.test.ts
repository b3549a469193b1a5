/**
 * Durable timers on PostgreSQL, read with raw SQL: the twin of
 * test/persistence/sqlite/leases.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { createOrchestrator } from '../../../src/index.js'
import { adminQuery, freshSchema, pgUrl } from '../../postgres-server.js'

describe('retries', () => {
  it('cancelling during backoff removes the retry timer', async (ctx) => {
    const schema = await freshSchema(ctx)
    const orch = await createOrchestrator({ url: pgUrl, schema, defaults: { backoffBaseMs: 60_000 } })
    // Registered after freshSchema's drop: closing first, then the schema goes.
    ctx.onTestFinished(() => orch.close())
    const t = await orch.tasks.create({ title: 't' })
    await orch.tasks.fail((await orch.tasks.claim(t.id, { worker: 'w' }))!, { error: 'x' })
    expect(await adminQuery(`SELECT actor_id, timer_id FROM "${schema}".timers`)).toEqual([{ actor_id: t.id, timer_id: 'retry' }])
    await orch.tasks.cancel(t.id)
    expect(await adminQuery(`SELECT COUNT(*)::int AS n FROM "${schema}".timers`)).toEqual([{ n: 0 }])
  })
})
