/**
 * Hot reload on PostgreSQL, read back with SQL: the twin of the SQLite rows check in
 * test/persistence/sqlite/reload.test.ts (the behaviour on every store:
 * test/conformance/reload.test.ts).
 */
import { describe, expect, it } from 'vitest'
import { createOrchestrator, sessionMachine, taskMachine } from '../../../src/index.js'
import type { PersistedSnapshot } from '../../../src/core/kernel.js'
import { adminQuery, freshSchema, pgUrl } from '../../postgres-server.js'

const addSchemaNote = (snapshot: PersistedSnapshot): PersistedSnapshot => ({
  ...snapshot,
  context: { ...snapshot.context, migratedFrom: 1 },
})

describe('reload on PostgreSQL', () => {
  it("a migration's output is what the rows hold: machine_version 2 and the migrated snapshot, one migrated entry per actor", async (ctx) => {
    const schema = await freshSchema(ctx)
    const orch = await createOrchestrator({ url: pgUrl, schema, pollMs: 10 })
    ctx.onTestFinished(() => orch.close())
    const parent = await orch.tasks.create({ title: 'parent' })
    await orch.tasks.create({ title: 'child', parents: [parent.id] })
    await orch.tasks.claim(parent.id, { worker: 'w', leaseMs: 60_000 })
    await orch.sessions.open('s', { models: ['a/primary', 'b/fallback'] })
    await orch.reload({
      machines: {
        task: { machine: taskMachine, version: 2, migrations: { 1: addSchemaNote } },
        session: { machine: sessionMachine, version: 2, migrations: { 1: addSchemaNote } },
      },
    })
    expect(await adminQuery(`SELECT DISTINCT machine_version v FROM "${schema}".tasks`)).toEqual([{ v: 2 }])
    expect(await adminQuery(`SELECT DISTINCT machine_version v FROM "${schema}".sessions`)).toEqual([{ v: 2 }])
    for (const table of ['tasks', 'sessions']) {
      const rows = await adminQuery<{ snapshot: string }>(`SELECT snapshot FROM "${schema}".${table}`)
      expect(rows.length).toBeGreaterThan(0)
      for (const row of rows) expect(JSON.parse(row.snapshot).context.migratedFrom).toBe(1)
    }
    expect(await adminQuery(`SELECT COUNT(*)::int n FROM "${schema}".journal WHERE kind = 'migrated'`)).toEqual([{ n: 3 }])
  })
})
