/**
 * Error codes on PostgreSQL that need raw SQL, through the public API: the twins of
 * test/persistence/sqlite/errors.test.ts for a schema from a newer lockstep and an
 * unrestorable snapshot. (Connection-level versions: schema.test.ts, transaction.test.ts.)
 */
import { describe, expect, it, type TestContext } from 'vitest'
import { SCHEMA_VERSION } from '../../../persistence/postgres/migrations.js'
import { createOrchestrator, type Orchestrator } from '../../../src/index.js'
import { adminQuery, freshSchema, pgUrl } from '../../postgres-server.js'
import { STORES } from '../../conformance/stores.js'

const postgres = STORES.find((s) => s.name === 'postgres')!

async function openSchema(ctx: TestContext, schema: string): Promise<Orchestrator> {
  const orch = await createOrchestrator({ url: pgUrl, schema, pollMs: 10 })
  // Registered after freshSchema's drop: closing first, then the schema goes.
  ctx.onTestFinished(() => orch.close())
  return orch
}

/** What a newer lockstep's migration leaves behind: a version this one does not know. */
const migrateToTheFuture = (schema: string) =>
  adminQuery(`INSERT INTO "${schema}".lockstep_migrations (version, name, applied_at) VALUES ($1, 'from the future', 0)`, [SCHEMA_VERSION + 1])

describe('error codes on PostgreSQL', () => {
  it('SCHEMA_TOO_NEW: a schema from a newer lockstep is refused on open', async (ctx) => {
    const schema = await freshSchema(ctx)
    await (await createOrchestrator({ url: pgUrl, schema })).close()
    await migrateToTheFuture(schema)
    await expect(createOrchestrator({ url: pgUrl, schema })).rejects.toMatchObject({
      code: 'SCHEMA_TOO_NEW',
      details: { found: SCHEMA_VERSION + 1, known: SCHEMA_VERSION },
    })
  })

  it('SCHEMA_TOO_NEW: a process that opened the schema before a newer lockstep migrated it refuses to write', async (ctx) => {
    const schema = await freshSchema(ctx)
    const orch = await openSchema(ctx, schema)
    const p = await orch.tasks.create({ title: 'parent' })
    await orch.tasks.create({ title: 'child', parents: [p.id] })
    await orch.tasks.claim((await orch.tasks.create({ title: 'running' })).id, { worker: 'w' })
    // A newer lockstep migrates the schema while this process keeps its pool (a rolling upgrade).
    await migrateToTheFuture(schema)
    const spec = `${pgUrl}|${schema}`
    const before = await postgres.tableCounts(spec)
    await expect(orch.tasks.create({ title: 't' })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW', details: { found: SCHEMA_VERSION + 1 } })
    await expect(orch.tasks.claimNext({ worker: 'w' })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW' })
    await expect(orch.tasks.cancel(p.id)).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW' })
    expect(await postgres.tableCounts(spec)).toEqual(before)
  })

  it('SNAPSHOT_INCOMPATIBLE names the actor whose snapshot cannot be restored', async (ctx) => {
    const schema = await freshSchema(ctx)
    const first = await openSchema(ctx, schema)
    const t = await first.tasks.create({ title: 't' })
    await first.close()
    await adminQuery(`UPDATE "${schema}".tasks SET machine_version = 99 WHERE id = $1`, [t.id])
    const reopened = await openSchema(ctx, schema)
    const spec = `${pgUrl}|${schema}`
    const before = await postgres.tableCounts(spec)
    await expect(reopened.tasks.claim(t.id, { worker: 'w' })).rejects.toMatchObject({
      code: 'SNAPSHOT_INCOMPATIBLE',
      details: { actorId: t.id, machineVersion: 99 },
    })
    expect(await postgres.tableCounts(spec)).toEqual(before)
  })
})
