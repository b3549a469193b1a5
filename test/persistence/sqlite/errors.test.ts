/**
 * Error codes on SQLite that need raw SQL or SQLite-only options: a file from a newer
 * lockstep, an unrestorable snapshot, a write lock held by another connection, a path that
 * cannot be opened. (The codes every store shares: test/conformance/errors.test.ts.)
 */
import { writeFileSync } from 'node:fs'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { createOrchestrator } from '../../../src/index.js'
import { tableCounts, tempDbPath } from '../../helpers.js'

describe('error codes on SQLite', () => {
  it('SCHEMA_TOO_NEW: a file from a newer lockstep is refused on open', async () => {
    const path = tempDbPath()
    await (await createOrchestrator({ path })).close()
    const db = new Database(path)
    db.pragma('user_version = 999')
    db.close()
    await expect(createOrchestrator({ path })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW', details: { found: 999 } })
  })

  it('SCHEMA_TOO_NEW: a process that opened the file before a newer lockstep migrated it refuses to write', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path })
    const p = await orch.tasks.create({ title: 'parent' })
    await orch.tasks.create({ title: 'child', parents: [p.id] })
    await orch.tasks.claim((await orch.tasks.create({ title: 'running' })).id, { worker: 'w' })
    // A newer lockstep migrates the file while this process keeps it open (a rolling upgrade).
    const db = new Database(path)
    db.pragma('user_version = 999')
    db.close()
    const before = tableCounts(path)
    await expect(orch.tasks.create({ title: 't' })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW', details: { found: 999 } })
    await expect(orch.tasks.claimNext({ worker: 'w' })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW' })
    await expect(orch.tasks.cancel(p.id)).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW' })
    expect(tableCounts(path)).toEqual(before)
    await orch.close()
  })

  it('SNAPSHOT_INCOMPATIBLE names the actor whose snapshot cannot be restored', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path })
    const t = await orch.tasks.create({ title: 't' })
    await orch.close()
    const db = new Database(path)
    db.prepare('UPDATE tasks SET machine_version = 99 WHERE id = ?').run(t.id)
    db.close()
    const reopened = await createOrchestrator({ path })
    const before = tableCounts(path)
    await expect(reopened.tasks.claim(t.id, { worker: 'w' })).rejects.toMatchObject({
      code: 'SNAPSHOT_INCOMPATIBLE',
      details: { actorId: t.id, machineVersion: 99 },
    })
    expect(tableCounts(path)).toEqual(before)
    await reopened.close()
  })

  it('STORE_BUSY only after busyRetryMs of a lock held by someone else', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path, busyTimeoutMs: 20, busyRetryMs: 200 })
    const other = new Database(path)
    other.exec('BEGIN IMMEDIATE')
    const started = Date.now()
    await expect(orch.tasks.create({ title: 't' })).rejects.toMatchObject({ code: 'STORE_BUSY' })
    expect(Date.now() - started).toBeGreaterThanOrEqual(200)
    other.exec('ROLLBACK')
    other.close()
    // The lock is gone: the same call now works.
    expect((await orch.tasks.create({ title: 't' })).status).toBe('ready')
    await orch.close()
  })

  it('a busy lock shorter than busyRetryMs is waited out, never reported', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path, busyTimeoutMs: 5 })
    const other = new Database(path)
    other.exec('BEGIN IMMEDIATE')
    setTimeout(() => other.exec('COMMIT'), 150)
    expect((await orch.tasks.create({ title: 't' })).status).toBe('ready')
    other.close()
    await orch.close()
  })

  it('STORE_OPEN_FAILED: a missing directory or a file that is not a database', async () => {
    const path = tempDbPath()
    await expect(createOrchestrator({ path: `${path}-missing-dir/x.db` })).rejects.toMatchObject({ code: 'STORE_OPEN_FAILED' })
    writeFileSync(path, 'this is not a sqlite file, just some text long enough to have a header'.repeat(20))
    await expect(createOrchestrator({ path })).rejects.toMatchObject({ code: 'STORE_OPEN_FAILED' })
  })
})
