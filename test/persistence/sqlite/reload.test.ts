/**
 * Hot reload on a SQLite file, where it needs SQL or SQLite-only options: what the migrated
 * rows hold, the inspector (SQLite files only for now) after a reload, and a call in
 * flight (retrying on a lock held outside) finishing before the barrier function runs.
 * The behaviour on every store: test/conformance/reload.test.ts. PostgreSQL's twin of the
 * rows check: test/persistence/postgres/reload.test.ts.
 */
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { createOrchestrator, sessionMachine, taskMachine } from '../../../src/index.js'
import type { PersistedSnapshot } from '../../../src/core/kernel.js'
import { open, raw, tempDbPath } from '../../helpers.js'

const addSchemaNote = (snapshot: PersistedSnapshot): PersistedSnapshot => ({
  ...snapshot,
  context: { ...snapshot.context, migratedFrom: 1 },
})

describe('reload on SQLite', () => {
  it("a migration's output is what the rows hold: machine_version 2 and the migrated snapshot, one migrated entry per actor", async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path, pollMs: 10 })
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
    const db = raw(path)
    expect(db.prepare('SELECT DISTINCT machine_version v FROM tasks').all()).toEqual([{ v: 2 }])
    expect(db.prepare('SELECT DISTINCT machine_version v FROM sessions').all()).toEqual([{ v: 2 }])
    for (const table of ['tasks', 'sessions']) {
      const rows = db.prepare(`SELECT snapshot FROM ${table}`).all() as Array<{ snapshot: string }>
      expect(rows.length).toBeGreaterThan(0)
      for (const row of rows) expect(JSON.parse(row.snapshot).context.migratedFrom).toBe(1)
    }
    expect(db.prepare(`SELECT COUNT(*) n FROM journal WHERE kind = 'migrated'`).get()).toEqual({ n: 3 })
    await orch.close()
  })

  it('orch.inspect shows the machine definitions in force, also after a reload', async () => {
    const orch = await open()
    await orch.tasks.create({ title: 't' })
    const inspector = await orch.inspect({ port: 0 })
    const machineInfo = async () =>
      (await (await fetch(`http://127.0.0.1:${inspector.port}/api/machines/lockstep.task`)).json()) as { version: number }
    expect((await machineInfo()).version).toBe(1)
    await orch.reload({ machines: { task: { machine: taskMachine, version: 2, migrations: { 1: addSchemaNote } } } })
    expect((await machineInfo()).version).toBe(2)
    await inspector.close()
  })

  it('calls already in flight finish before the barrier function runs', async () => {
    const path = tempDbPath()
    // A short busy_timeout: the lock holder below lives on this same thread.
    const orch = await createOrchestrator({ path, busyTimeoutMs: 5 })
    // Hold the write lock from outside so the create is in flight (retrying) when the barrier starts.
    const other = new Database(path)
    other.exec('BEGIN IMMEDIATE')
    const create = orch.tasks.create({ title: 'in flight' })
    setTimeout(() => other.exec('COMMIT'), 100)
    let seen = -1
    await orch.barrier(() => {
      seen = (raw(path).prepare('SELECT COUNT(*) n FROM tasks').get() as { n: number }).n
    })
    expect(seen).toBe(1)
    await create
    other.close()
    await orch.close()
  })
})
