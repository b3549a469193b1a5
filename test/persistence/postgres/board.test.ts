/**
 * The task board on PostgreSQL where the test must write raw SQL: the twin of
 * test/persistence/sqlite/board.test.ts's link written behind the machine's back.
 */
import { describe, expect, it, type TestContext } from 'vitest'
import { createOrchestrator } from '../../../src/index.js'
import { adminQuery, freshSchema, pgUrl } from '../../postgres-server.js'

async function board(ctx: TestContext) {
  const schema = await freshSchema(ctx)
  const orch = await createOrchestrator({ url: pgUrl, schema, pollMs: 10 })
  // Registered after freshSchema's drop: closing first, then the schema goes.
  ctx.onTestFinished(() => orch.close())
  return { orch, schema }
}

describe('claims', () => {
  it('the gate re-reads parents at claim time: a link written behind the machine is refused and demoted (seed 002)', async (ctx) => {
    const { orch, schema } = await board(ctx)
    const parent = await orch.tasks.create({ title: 'parent' })
    const child = await orch.tasks.create({ title: 'child' })
    expect(child.status).toBe('ready')
    // What the pre-fix Hermes kernel did: a link row inserted while the child is ready.
    await adminQuery(`INSERT INTO "${schema}".task_links (parent_id, child_id, created_at) VALUES ($1, $2, $3)`, [parent.id, child.id, Date.now()])
    expect(await orch.tasks.claim(child.id, { worker: 'w' })).toBeNull()
    expect((await orch.tasks.get(child.id))!.status).toBe('todo')
    const events = await orch.tasks.events({ taskId: child.id })
    expect(events.map((e) => e.kind)).toEqual(['created', 'claim_rejected'])
    expect(await orch.tasks.runs(child.id)).toEqual([])
    // Completing the parent promotes it as usual.
    const pc = (await orch.tasks.claim(parent.id, { worker: 'w' }))!
    await orch.tasks.complete(pc)
    expect((await orch.tasks.get(child.id))!.status).toBe('ready')
  })
})
