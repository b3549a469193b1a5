/**
 * Hot reload on every store: machine version bumps with migrations over a board of live
 * tasks and sessions, refused restores (nothing changes), watchMachines (dev-mode reload)
 * and the request barrier every call and timer delivery waits behind.
 * What the migrated rows hold in SQL is checked per store: test/persistence/<store>/reload.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'
import { sessionMachine, taskMachine, watchMachines, type Orchestrator } from '../../src/index.js'
import type { PersistedSnapshot } from '../../src/core/kernel.js'
import { sleep, waitFor } from '../helpers.js'
import { openSameBoard } from './same-board.js'
import { STORES } from './stores.js'

const CHAIN = ['a/primary', 'b/fallback', 'c/last']

/** Version 2 of both machines: the same logic, snapshots gain a field the migration fills. */
const addSchemaNote = (snapshot: PersistedSnapshot): PersistedSnapshot => ({
  ...snapshot,
  context: { ...snapshot.context, migratedFrom: 1 },
})

/** Tasks in every kind of state (waiting, running, in backoff, done) and a session mid-fallback. */
async function liveBoard(orch: Orchestrator) {
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
  return { ids: { parent: parent.id, child: child.id, running: running.id, backoff: backoff.id, done: done.id }, claim }
}

/** Long backoffs: the failed task stays in backoff for the whole test. */
const LIVE_OPTIONS = { defaults: { backoffBaseMs: 60_000 } }

describe.each(STORES)('on $name', (store) => {
  describe('reload', () => {
    it('a version bump with a migration upgrades a board full of live tasks and sessions, and they keep working', async (ctx) => {
      const orch = await store.open(ctx, LIVE_OPTIONS)
      const { ids, claim } = await liveBoard(orch)
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
      // One `migrated` entry per actor, each from version 1 to 2.
      const migratedTasks = (await orch.tasks.events()).filter((e) => e.kind === 'migrated')
      expect(migratedTasks.map((e) => e.actorId).sort()).toEqual(Object.values(ids).sort())
      const migratedSessions = (await orch.sessions.events({ sessionId: 's' })).filter((e) => e.kind === 'migrated')
      expect(migratedSessions).toHaveLength(1)
      for (const entry of [...migratedTasks, ...migratedSessions]) expect(entry.event).toMatchObject({ fromVersion: 1, toVersion: 2 })
      // Every actor is stored at version 2 now: another process running version 2 without
      // any migration finds nothing left to migrate (a version-1 actor would be refused).
      const other = await openSameBoard(ctx, orch.spec, { runTimers: false })
      expect(
        await other.reload({ machines: { task: { machine: taskMachine, version: 2 }, session: { machine: sessionMachine, version: 2 } } }),
      ).toEqual({
        machines: [
          { machineId: 'lockstep.task', version: 2, migrated: 0 },
          { machineId: 'lockstep.session', version: 2, migrated: 0 },
        ],
      })
      // States and timers are untouched: everything carries on.
      expect((await orch.tasks.get(ids.running))!.status).toBe('running')
      expect((await orch.tasks.get(ids.backoff))!.state).toBe('backoff')
      await orch.tasks.complete(claim, { summary: 'after the reload' })
      await orch.tasks.complete((await orch.tasks.claim(ids.parent, { worker: 'w' }))!)
      expect((await orch.tasks.get(ids.child))!.status).toBe('ready')
      expect(await orch.sessions.authorize('s', 'deploy')).toBe(true)
      expect((await orch.sessions.error('s', { model: CHAIN[1], error: { status: 503 } })).session.model).toBe(CHAIN[2])
    })

    it('no migration for the old version: refused, naming the actor, and nothing changes', async (ctx) => {
      const orch = await store.open(ctx, LIVE_OPTIONS)
      const { claim } = await liveBoard(orch)
      const before = await store.tableCounts(orch.spec)
      const error = await orch.reload({ machines: { task: { machine: taskMachine, version: 2 } } }).catch((e) => e)
      expect(error.code).toBe('SNAPSHOT_INCOMPATIBLE')
      expect(error.details.actorId).toMatch(/^t_/)
      expect(error.message).toMatch(/no migration from version 1 to 2/)
      expect(await store.tableCounts(orch.spec)).toEqual(before)
      // Every task is still at version 1: a process running version 1 restores them all.
      const other = await openSameBoard(ctx, orch.spec, { runTimers: false })
      expect(await other.reload({ machines: { task: { machine: taskMachine, version: 1 } } })).toEqual({
        machines: [{ machineId: 'lockstep.task', version: 1, migrated: 0 }],
      })
      // The old definition is still in force.
      await orch.tasks.complete(claim)
    })

    it('a migration into a state the new machine lacks is refused, naming the actor, and nothing changes', async (ctx) => {
      const orch = await store.open(ctx, LIVE_OPTIONS)
      const { ids } = await liveBoard(orch)
      const before = await store.tableCounts(orch.spec)
      const toNowhere = (s: PersistedSnapshot): PersistedSnapshot => (s.value === 'done' ? { ...s, value: 'vanished' } : s)
      const error = await orch
        .reload({ machines: { task: { machine: taskMachine, version: 2, migrations: { 1: toNowhere } } } })
        .catch((e) => e)
      expect(error.code).toBe('SNAPSHOT_INCOMPATIBLE')
      expect(error.details.actorId).toBe(ids.done)
      expect(error.message).toMatch(/vanished/)
      expect(await store.tableCounts(orch.spec)).toEqual(before)
    })

    it('a process still running the old version refuses snapshots of the new one, naming the actor', async (ctx) => {
      const orch = await store.open(ctx, LIVE_OPTIONS)
      const { ids } = await liveBoard(orch)
      const old = await openSameBoard(ctx, orch.spec)
      await orch.reload({ machines: { task: { machine: taskMachine, version: 2, migrations: { 1: addSchemaNote } } } })
      await expect(old.tasks.cancel(ids.child)).rejects.toMatchObject({
        code: 'SNAPSHOT_INCOMPATIBLE',
        details: { actorId: ids.child, machineVersion: 2 },
      })
    })

    it('bad definitions are INVALID_INPUT and write nothing', async (ctx) => {
      const orch = await store.open(ctx)
      await orch.tasks.create({ title: 't' })
      const before = await store.tableCounts(orch.spec)
      await expect(orch.reload({ machines: { nope: {} } as never })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      await expect(orch.reload({ machines: { task: { machine: {} as never, version: 2 } } })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      expect(await store.tableCounts(orch.spec)).toEqual(before)
    })
  })

  describe('watchMachines (dev-mode reload)', () => {
    it('a changed machine module on disk is reloaded through the barrier, with its migration', async (ctx) => {
      const dir = mkdtempSync(join(tmpdir(), 'lockstep-machines-'))
      ctx.onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
      const taskModuleUrl = pathToFileURL(join(import.meta.dirname, '..', '..', 'dist', 'machines', 'task.js')).href
      const file = join(dir, 'task-machine.mjs')
      const write = (version: number) =>
        writeFileSync(
          file,
          `import { taskMachine } from ${JSON.stringify(taskModuleUrl)}\n` +
            `export default { machine: taskMachine, version: ${version}, migrations: { 1: (s) => ({ ...s, context: { ...s.context, note: 'v2' } }) } }\n`,
        )
      write(1)
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 'lives through the reload' })
      const reloads: unknown[] = []
      const watcher = watchMachines(orch, { modules: { task: file }, debounceMs: 20, onReload: (r) => reloads.push(r) })
      ctx.onTestFinished(() => watcher.close())
      const calls = Array.from({ length: 10 }, (_, i) => sleep(i * 10).then(() => orch.tasks.create({ title: `during ${i}` })))
      write(2)
      await waitFor(() => reloads.length > 0, 5_000)
      expect(reloads[0]).toEqual({ machines: [{ machineId: 'lockstep.task', version: 2, migrated: expect.any(Number) }] })
      expect((await Promise.all(calls)).every((task) => task.status === 'ready')).toBe(true)
      // The task from before the reload went through the module's migration.
      const migrated = (await orch.tasks.events({ taskId: t.id })).filter((e) => e.kind === 'migrated')
      expect(migrated).toEqual([expect.objectContaining({ event: expect.objectContaining({ fromVersion: 1, toVersion: 2 }) })])
      // And is stored at version 2: a version-2 process without migrations has nothing to migrate.
      const other = await openSameBoard(ctx, orch.spec, { runTimers: false })
      expect(await other.reload({ machines: { task: { machine: taskMachine, version: 2 } } })).toEqual({
        machines: [{ machineId: 'lockstep.task', version: 2, migrated: 0 }],
      })
      expect((await orch.tasks.get(t.id))!.status).toBe('ready')
    })
  })

  describe('the request barrier', () => {
    it('calls arriving during a barrier wait and all succeed after it', async (ctx) => {
      const orch = await store.open(ctx)
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

    it('durable timers wait for a barrier too, then fire', async (ctx) => {
      const orch = await store.open(ctx)
      // Reads inside the barrier go through another orchestrator (this one's calls wait for
      // the barrier); it delivers no timers itself.
      const reader = await openSameBoard(ctx, orch.spec, { runTimers: false })
      const t = await orch.tasks.create({ title: 't' })
      await orch.tasks.claim(t.id, { worker: 'w', leaseMs: 50 })
      let statusInside = ''
      await orch.barrier(async () => {
        await sleep(200)
        // The lease lapsed long ago, but no timer delivery ran inside the barrier.
        statusInside = (await reader.tasks.get(t.id))!.status
      })
      expect(statusInside).toBe('running')
      await waitFor(async () => (await orch.tasks.get(t.id))!.status === 'ready')
    })
  })
})
