/** Hot reload: the request barrier, machine version bumps with migrations, refused restores. */
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { createOrchestrator, sessionMachine, taskMachine, watchMachines, type Orchestrator } from '../../src/index.js'
import type { PersistedSnapshot } from '../../src/core/kernel.js'
import { open, raw, sleep, tempDbPath, waitFor } from '../helpers.js'

const CHAIN = ['a/primary', 'b/fallback', 'c/last']

/** Version 2 of both machines: the same logic, snapshots gain a field the migration fills. */
const addSchemaNote = (snapshot: PersistedSnapshot): PersistedSnapshot => ({
  ...snapshot,
  context: { ...snapshot.context, migratedFrom: 1 },
})

async function liveBoard(path: string) {
  const orch = await createOrchestrator({ path, pollMs: 10, defaults: { backoffBaseMs: 60_000 } })
  const parent = await orch.tasks.create({ title: 'parent' })
  const child = await orch.tasks.create({ title: 'child', parents: [parent.id] })
  const running = await orch.tasks.create({ title: 'running' })
  const backoff = await orch.tasks.create({ title: 'backoff' })
  const done = await orch.tasks.create({ title: 'done' })
  await orch.tasks.complete((await orch.tasks.claim(done.id, { worker: 'w' }))!)
  await orch.tasks.fail((await orch.tasks.claim(backoff.id, { worker: 'w' }))!, { error: 'x' })
  const claim = (await orch.tasks.claim(running.id, { worker: 'w', leaseMs: 60_000 }))!
  await orch.sessions.setAdapter({ prompt: () => {}, abort: () => {} })
  await orch.sessions.open('s', { models: CHAIN })
  await orch.sessions.approve('s', 'deploy')
  await orch.sessions.prompt('s', { message: 'x', model: CHAIN[0] })
  await orch.sessions.error('s', { model: CHAIN[0], error: { status: 429 } }) // mid-fallback
  return { orch, ids: { parent: parent.id, child: child.id, running: running.id, backoff: backoff.id, done: done.id }, claim }
}

describe('reload', () => {
  it('a version bump with a migration upgrades a file full of live tasks and sessions, and they keep working', async () => {
    const path = tempDbPath()
    const { orch, ids, claim } = await liveBoard(path)
    const result = await orch.reload({
      machines: {
        task: { machine: taskMachine, version: 2, migrations: { 1: addSchemaNote } },
        session: { machine: sessionMachine, version: 2, migrations: { 1: addSchemaNote } },
      },
    })
    expect(result.machines).toEqual([
      { machineId: 'lockstep.task', version: 2, migrated: 5 },
      { machineId: 'lockstep.session', version: 2, migrated: 1 },
    ])
    const db = raw(path)
    expect(db.prepare('SELECT DISTINCT machine_version v FROM tasks').all()).toEqual([{ v: 2 }])
    expect(db.prepare('SELECT DISTINCT machine_version v FROM sessions').all()).toEqual([{ v: 2 }])
    for (const row of db.prepare('SELECT snapshot FROM tasks').all() as Array<{ snapshot: string }>) {
      expect(JSON.parse(row.snapshot).context.migratedFrom).toBe(1)
    }
    expect(db.prepare(`SELECT COUNT(*) n FROM journal WHERE kind = 'migrated'`).get()).toEqual({ n: 6 })
    // States and timers are untouched: everything carries on.
    expect((await orch.tasks.get(ids.running))!.status).toBe('running')
    expect((await orch.tasks.get(ids.backoff))!.state).toBe('backoff')
    await orch.tasks.complete(claim, { summary: 'after the reload' })
    await orch.tasks.complete((await orch.tasks.claim(ids.parent, { worker: 'w' }))!)
    expect((await orch.tasks.get(ids.child))!.status).toBe('ready')
    expect(await orch.sessions.authorize('s', 'deploy')).toBe(true)
    expect((await orch.sessions.error('s', { model: CHAIN[1], error: { status: 503 } })).session.model).toBe(CHAIN[2])
    await orch.close()
  })

  it('no migration for the old version: refused, naming the actor, and nothing changes', async () => {
    const path = tempDbPath()
    const { orch, claim } = await liveBoard(path)
    const error = await orch.reload({ machines: { task: { machine: taskMachine, version: 2 } } }).catch((e) => e)
    expect(error.code).toBe('SNAPSHOT_INCOMPATIBLE')
    expect(error.details.actorId).toMatch(/^t_/)
    expect(error.message).toMatch(/no migration from version 1 to 2/)
    expect(raw(path).prepare('SELECT DISTINCT machine_version v FROM tasks').all()).toEqual([{ v: 1 }])
    // The old definition is still in force.
    await orch.tasks.complete(claim)
    await orch.close()
  })

  it('a migration into a state the new machine lacks is refused, naming the actor', async () => {
    const path = tempDbPath()
    const { orch, ids } = await liveBoard(path)
    const toNowhere = (s: PersistedSnapshot): PersistedSnapshot => (s.value === 'done' ? { ...s, value: 'vanished' } : s)
    const error = await orch
      .reload({ machines: { task: { machine: taskMachine, version: 2, migrations: { 1: toNowhere } } } })
      .catch((e) => e)
    expect(error.code).toBe('SNAPSHOT_INCOMPATIBLE')
    expect(error.details.actorId).toBe(ids.done)
    expect(error.message).toMatch(/vanished/)
    await orch.close()
  })

  it('a process still running the old version refuses snapshots of the new one, naming the actor', async () => {
    const path = tempDbPath()
    const { orch, ids } = await liveBoard(path)
    const old = await createOrchestrator({ path })
    await orch.reload({ machines: { task: { machine: taskMachine, version: 2, migrations: { 1: addSchemaNote } } } })
    await expect(old.tasks.cancel(ids.child)).rejects.toMatchObject({
      code: 'SNAPSHOT_INCOMPATIBLE',
      details: { actorId: ids.child, machineVersion: 2 },
    })
    await old.close()
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

  it('bad definitions are INVALID_INPUT', async () => {
    const orch = await open()
    await expect(orch.reload({ machines: { nope: {} } as never })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await expect(orch.reload({ machines: { task: { machine: {} as never, version: 2 } } })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
  })
})

describe('watchMachines (dev-mode reload)', () => {
  it('a changed machine module on disk is reloaded through the barrier, with its migration', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs')
    const { join } = await import('node:path')
    const { tmpdir } = await import('node:os')
    const { pathToFileURL } = await import('node:url')
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-machines-'))
    const taskModuleUrl = pathToFileURL(join(import.meta.dirname, '..', '..', 'dist', 'machines', 'task.js')).href
    const file = join(dir, 'task-machine.mjs')
    const write = (version: number) =>
      writeFileSync(
        file,
        `import { taskMachine } from ${JSON.stringify(taskModuleUrl)}\n` +
          `export default { machine: taskMachine, version: ${version}, migrations: { 1: (s) => ({ ...s, context: { ...s.context, note: 'v2' } }) } }\n`,
      )
    write(1)
    const path = tempDbPath()
    const orch = await createOrchestrator({ path })
    const t = await orch.tasks.create({ title: 'lives through the reload' })
    const reloads: unknown[] = []
    const watcher = watchMachines(orch, { modules: { task: file }, debounceMs: 20, onReload: (r) => reloads.push(r) })
    const calls = Array.from({ length: 10 }, (_, i) => sleep(i * 10).then(() => orch.tasks.create({ title: `during ${i}` })))
    write(2)
    await waitFor(() => reloads.length > 0, 5_000)
    expect(reloads[0]).toEqual({ machines: [{ machineId: 'lockstep.task', version: 2, migrated: expect.any(Number) }] })
    expect((await Promise.all(calls)).every((task) => task.status === 'ready')).toBe(true)
    const row = raw(path).prepare('SELECT machine_version, snapshot FROM tasks WHERE id = ?').get(t.id) as { machine_version: number; snapshot: string }
    expect(row.machine_version).toBe(2)
    expect(JSON.parse(row.snapshot).context.note).toBe('v2')
    watcher.close()
    await orch.close()
    rmSync(dir, { recursive: true, force: true })
  })
})

describe('the request barrier', () => {
  it('calls arriving during a barrier wait and all succeed after it', async () => {
    const orch = await open()
    let barrierEnded = 0
    const barrier = orch.barrier(async () => {
      await sleep(150)
      barrierEnded = Date.now()
    })
    await sleep(10)
    const calls = Array.from({ length: 20 }, (_, i) => orch.tasks.create({ title: `during ${i}` }))
    const tasks = await Promise.all(calls)
    await barrier
    expect(tasks).toHaveLength(20)
    for (const t of tasks) expect(t.createdAt).toBeGreaterThanOrEqual(barrierEnded)
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

  it('durable timers wait for a barrier too, then fire', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path, pollMs: 10 })
    const t = await orch.tasks.create({ title: 't' })
    await orch.tasks.claim(t.id, { worker: 'w', leaseMs: 50 })
    let statusInside = ''
    await orch.barrier(async () => {
      await sleep(200)
      // The lease lapsed long ago, but no timer delivery ran inside the barrier.
      statusInside = (raw(path).prepare('SELECT status FROM tasks WHERE id = ?').get(t.id) as { status: string }).status
    })
    expect(statusInside).toBe('running')
    await waitFor(async () => (await orch.tasks.get(t.id))!.status === 'ready')
    await orch.close()
  })
})

export type { Orchestrator }
