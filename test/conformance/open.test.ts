/**
 * Opening and refusing stores, on every store: a store migrated by a newer lockstep is
 * SCHEMA_TOO_NEW for an older client and left as it was, every method refuses with CLOSED
 * after close(), and options objects refuse keys they do not know before the store is
 * touched. SQLite files (read-only opens, files that are not lockstep's, the inspector's
 * options): test/persistence/sqlite/open.test.ts; PostgreSQL URLs, schema names and
 * servers: test/persistence/postgres/schema.test.ts.
 */
import { existsSync } from 'node:fs'
import Database from 'better-sqlite3'
import { describe, expect, it, type TestContext } from 'vitest'
import { SCHEMA_VERSION as PG_SCHEMA_VERSION } from '../../persistence/postgres/migrations.js'
import { SCHEMA_VERSION as SQLITE_SCHEMA_VERSION } from '../../persistence/sqlite/migrations.js'
import { createOrchestrator, taskMachine, type Orchestrator, type OrchestratorOptions } from '../../src/index.js'
import { tempDbPath } from '../helpers.js'
import { adminQuery, freshSchema, pgUrl } from '../postgres-server.js'
import { STORES, type StoreUnderTest } from './stores.js'

/** The error code of a call that throws or rejects (or 'ok'). */
async function codeOf(call: () => unknown): Promise<string> {
  try {
    await call()
    return 'ok'
  } catch (error) {
    return (error as { code?: string }).code ?? `untyped ${(error as Error)?.name}: ${(error as Error)?.message}`
  }
}

const specOptions = (spec: string): OrchestratorOptions => {
  const [url, schema] = spec.split('|')
  return /^postgres(ql)?:\/\//.test(spec) ? { url, schema } : { path: spec }
}

/**
 * Make the store look migrated by a lockstep newer than this one: setup in each store's
 * own SQL (the user_version pragma; a row in lockstep_migrations).
 */
async function migrateByNewerLockstep(spec: string): Promise<void> {
  if (/^postgres(ql)?:\/\//.test(spec)) {
    const schema = spec.slice(spec.lastIndexOf('|') + 1)
    await adminQuery(`INSERT INTO "${schema}".lockstep_migrations VALUES ($1, 'from the future', 0)`, [PG_SCHEMA_VERSION + 1])
    return
  }
  const db = new Database(spec)
  db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION + 1}`)
  db.close()
}

/** A location on the store that nothing has opened yet, and whether anything is there now. */
async function untouchedLocation(store: StoreUnderTest, ctx: TestContext): Promise<{ options: OrchestratorOptions; exists: () => Promise<boolean> }> {
  if (store.name === 'postgres') {
    const schema = await freshSchema(ctx)
    return {
      options: { url: pgUrl, schema },
      exists: async () => (await adminQuery('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema])).length > 0,
    }
  }
  const path = tempDbPath()
  return { options: { path }, exists: async () => existsSync(path) }
}

describe.each(STORES)('on $name', (store) => {
  it('a store migrated by a newer lockstep is SCHEMA_TOO_NEW for this one, and stays as it was', async (ctx) => {
    const orch = await store.open(ctx)
    await orch.tasks.create({ title: 'written by the newer lockstep' })
    await orch.close()
    await migrateByNewerLockstep(orch.spec)
    const before = await store.tableCounts(orch.spec)
    const error = await createOrchestrator(specOptions(orch.spec)).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'SCHEMA_TOO_NEW' })
    expect(await codeOf(() => createOrchestrator(specOptions(orch.spec)))).toBe('SCHEMA_TOO_NEW') // and again
    expect(await store.tableCounts(orch.spec)).toEqual(before)
  })

  describe('after close()', () => {
    it('every method refuses with CLOSED: board, sessions, subscriptions, timers, barrier, reload, inspect', async (ctx) => {
      const orch = await store.open(ctx)
      const task = await orch.tasks.create({ title: 't' })
      const claim = (await orch.tasks.claim(task.id, { worker: 'w' }))!
      await orch.sessions.open('s1', { models: ['m/one'] })
      await orch.close()
      const before = await store.tableCounts(orch.spec)
      const calls: Record<string, (o: Orchestrator) => unknown> = {
        create: (o) => o.tasks.create({ title: 'x' }),
        link: (o) => o.tasks.link(task.id, task.id),
        unlink: (o) => o.tasks.unlink(task.id, task.id),
        claim: (o) => o.tasks.claim(task.id, { worker: 'w' }),
        claimNext: (o) => o.tasks.claimNext({ worker: 'w' }),
        heartbeat: (o) => o.tasks.heartbeat(claim),
        complete: (o) => o.tasks.complete(claim, {}),
        fail: (o) => o.tasks.fail(claim, { error: 'x' }),
        release: (o) => o.tasks.release(claim),
        block: (o) => o.tasks.block(task.id, { reason: 'x' }),
        unblock: (o) => o.tasks.unblock(task.id),
        cancel: (o) => o.tasks.cancel(task.id),
        retry: (o) => o.tasks.retry(task.id),
        archive: (o) => o.tasks.archive(task.id),
        get: (o) => o.tasks.get(task.id),
        list: (o) => o.tasks.list(),
        children: (o) => o.tasks.children(task.id),
        events: (o) => o.tasks.events(),
        runs: (o) => o.tasks.runs(task.id),
        subscribe: (o) => o.tasks.subscribe(() => {}),
        'subscribe after': (o) => o.tasks.subscribe(() => {}, { after: 0 }),
        work: (o) => o.tasks.work({ worker: 'w', handler: async () => ({}) }),
        'sessions.open': (o) => o.sessions.open('s2', { models: ['m/one'] }),
        'sessions.get': (o) => o.sessions.get('s1'),
        'sessions.list': (o) => o.sessions.list(),
        'sessions.prompt': (o) => o.sessions.prompt('s1', { message: 'hi' }),
        'sessions.token': (o) => o.sessions.token('s1', {}),
        'sessions.error': (o) => o.sessions.error('s1', { error: 'x' }),
        'sessions.aborted': (o) => o.sessions.aborted('s1', {}),
        'sessions.idle': (o) => o.sessions.idle('s1', {}),
        'sessions.modelSelected': (o) => o.sessions.modelSelected('s1', 'm/one'),
        'sessions.deleted': (o) => o.sessions.deleted('s1'),
        'sessions.approve': (o) => o.sessions.approve('s1', 'bash'),
        'sessions.revoke': (o) => o.sessions.revoke('s1', 'bash'),
        'sessions.authorize': (o) => o.sessions.authorize('s1', 'bash'),
        'sessions.events': (o) => o.sessions.events(),
        'sessions.subscribe': (o) => o.sessions.subscribe(() => {}),
        'sessions.run': (o) => o.sessions.run('s1', { models: ['m/one'], message: { text: 'x' }, call: async () => 'out' }),
        runDueTimers: (o) => o.runDueTimers(),
        barrier: (o) => o.barrier(() => 1),
        reload: (o) => o.reload({}),
        inspect: (o) => o.inspect({ port: 0 }),
      }
      for (const [name, call] of Object.entries(calls)) expect(await codeOf(() => call(orch)), name).toBe('CLOSED')
      await orch.close() // idempotent
      expect(await store.tableCounts(orch.spec)).toEqual(before)
    })
  })

  describe('options objects refuse keys they do not know', () => {
    it('createOrchestrator and its defaults: INVALID_INPUT naming the key, before the store is touched', async (ctx) => {
      const location = await untouchedLocation(store, ctx)
      for (const [options, field] of [
        [{ ...location.options, readonly: true }, 'readonly'],
        [{ ...location.options, pollMS: 10 }, 'pollMS'],
        [{ ...location.options, defaults: { leaseMS: 10 } }, 'leaseMS'],
      ] as const) {
        const error = await createOrchestrator(options as never).catch((e: unknown) => e)
        expect(error).toMatchObject({ code: 'INVALID_INPUT', details: { field } })
      }
      expect(await location.exists()).toBe(false)
      expect(await codeOf(() => createOrchestrator({ ...location.options, readOnly: 'yes' as never }))).toBe('INVALID_INPUT')
      expect(await codeOf(() => createOrchestrator({ ...location.options, runTimers: 0 as never }))).toBe('INVALID_INPUT')
      // Checked before the open too, so a bad adapter leaves no file, schema, connection or thread behind.
      expect(await codeOf(() => createOrchestrator({ ...location.options, sessionAdapter: { prompt: () => {} } as never }))).toBe('INVALID_INPUT')
      expect(await location.exists()).toBe(false)
    })

    it('reload (and its nested objects), writing nothing', async (ctx) => {
      const orch = await store.open(ctx)
      await orch.tasks.create({ title: 't' })
      const before = await store.tableCounts(orch.spec)
      const field = async (call: () => unknown) => ((await Promise.resolve().then(call).catch((e: unknown) => e)) as { code: string; details: { field: string } })
      expect(await field(() => orch.reload({ machine: {} } as never))).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'machine' } })
      expect(await field(() => orch.reload({ machines: { tasks: {} } } as never))).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'tasks' } })
      // A name that is a property of every object is not a machine either.
      expect(await field(() => orch.reload({ machines: { toString: {} } } as never))).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'toString' } })
      expect(
        await field(() => orch.reload({ machines: { task: { machine: taskMachine, version: 2, migration: {} } } } as never)),
      ).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'migration' } })
      expect(await store.tableCounts(orch.spec)).toEqual(before)
    })
  })
})
