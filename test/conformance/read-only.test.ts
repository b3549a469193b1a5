/**
 * `readOnly: true` behaves the same on every store: a reader reads the board and follows
 * other processes' commits; every write is READ_ONLY and writes nothing; it delivers no
 * timers; it never creates a board. (What "read-only" means at the database is per store:
 * test/api/open.test.ts for SQLite files, test/persistence/postgres/read-only.test.ts.)
 * Proc scripts import dist/: run `npm run build` first.
 */
import { existsSync } from 'node:fs'
import { describe, expect, it, type TestContext } from 'vitest'
import { taskMachine } from '../../src/index.js'
import { runProc, sleep, tempDbPath, waitFor } from '../helpers.js'
import { adminQuery, freshSchema, pgUrl } from '../postgres-server.js'
import { reopen } from './reopen.js'
import { STORES } from './stores.js'

async function codeOf(call: () => unknown): Promise<string> {
  try {
    await call()
    return 'ok'
  } catch (error) {
    return (error as { code?: string }).code ?? `untyped ${(error as Error)?.name}: ${(error as Error)?.message}`
  }
}

/** A board location nothing has created yet, and whether it exists now. */
async function missingBoard(ctx: TestContext, store: string): Promise<{ spec: string; exists: () => Promise<boolean> }> {
  if (store === 'sqlite') {
    const path = tempDbPath()
    return { spec: path, exists: async () => existsSync(path) }
  }
  const schema = await freshSchema(ctx)
  return {
    spec: `${pgUrl}|${schema}`,
    exists: async () => (await adminQuery('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).length > 0,
  }
}

describe.each(STORES)('on $name', (store) => {
  it('a reader reads the board; every write is READ_ONLY and changes nothing; it delivers no timers', async (ctx) => {
    // The writer delivers no timers either: the overdue lease below must stay as it is.
    const writer = await store.open(ctx, { runTimers: false })
    writer.sessions.setAdapter({ prompt: () => {}, abort: () => {} })
    const parent = await writer.tasks.create({ title: 'parent' })
    const child = await writer.tasks.create({ title: 'child', parents: [parent.id] })
    const claim = (await writer.tasks.claim(parent.id, { worker: 'w', leaseMs: 50 }))!
    await writer.sessions.open('s1', { models: ['m/one', 'm/two'] })
    const before = await store.tableCounts(writer.spec)

    const errors: unknown[] = []
    const reader = await reopen(ctx, writer.spec, { readOnly: true, onError: (e) => errors.push(e) })
    expect(reader.readOnly).toBe(true)

    // Reads work.
    expect((await reader.tasks.list()).map((t) => t.id)).toEqual([parent.id, child.id])
    expect((await reader.tasks.get(parent.id))!.status).toBe('running')
    expect((await reader.tasks.get(child.id))!.parents).toEqual([parent.id])
    expect(await reader.tasks.children(parent.id)).toEqual([child.id])
    expect((await reader.tasks.runs(parent.id)).map((r) => r.id)).toEqual([claim.runId])
    expect((await reader.tasks.events()).map((e) => e.kind)).toEqual(['created', 'created', 'claimed'])
    expect((await reader.sessions.get('s1'))!.models.map((m) => m.model)).toEqual(['m/one', 'm/two'])
    expect((await reader.sessions.list()).map((s) => s.id)).toEqual(['s1'])
    expect((await reader.sessions.events({ sessionId: 's1' })).length).toBeGreaterThan(0)

    // Every write is refused with a typed code.
    const writes: Record<string, () => unknown> = {
      create: () => reader.tasks.create({ title: 'x' }),
      link: () => reader.tasks.link(parent.id, child.id),
      unlink: () => reader.tasks.unlink(parent.id, child.id),
      claim: () => reader.tasks.claim(child.id, { worker: 'w' }),
      claimNext: () => reader.tasks.claimNext({ worker: 'w' }),
      heartbeat: () => reader.tasks.heartbeat(claim),
      complete: () => reader.tasks.complete(claim, {}),
      fail: () => reader.tasks.fail(claim, { error: 'x' }),
      release: () => reader.tasks.release(claim),
      block: () => reader.tasks.block(child.id, { reason: 'x' }),
      unblock: () => reader.tasks.unblock(child.id),
      cancel: () => reader.tasks.cancel(child.id),
      retry: () => reader.tasks.retry(parent.id),
      archive: () => reader.tasks.archive(child.id),
      work: () => reader.tasks.work({ worker: 'w', handler: async () => ({}) }),
      'sessions.open': () => reader.sessions.open('s2', { models: ['m/one'] }),
      'sessions.prompt': () => reader.sessions.prompt('s1', { message: 'hi' }),
      'sessions.error': () => reader.sessions.error('s1', { error: 'HTTP 429' }),
      'sessions.approve': () => reader.sessions.approve('s1', 'bash'),
      'sessions.authorize': () => reader.sessions.authorize('s1', 'bash'),
      'sessions.run': () => reader.sessions.run('s1', { models: ['m/one'], message: { text: 'x' }, call: async () => 'out' }),
      runDueTimers: () => reader.runDueTimers(),
      reload: () => reader.reload({ machines: { task: { machine: taskMachine, version: 2 } } }),
    }
    for (const [name, call] of Object.entries(writes)) expect(await codeOf(call), name).toBe('READ_ONLY')
    const error = await reader.tasks.create({ title: 'x' }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'READ_ONLY', details: { path: expect.any(String) } })
    // The path names the board without a password.
    expect((error as { details: { path: string } }).details.path).not.toMatch(/:[^:@/]+@/)

    // The lease is long overdue, but a reader delivers no timers.
    await sleep(300)
    expect((await reader.tasks.get(parent.id))!.status).toBe('running')
    expect(await store.tableCounts(writer.spec)).toEqual(before)
    expect(errors).toEqual([])
  })

  it("a reader follows another process's commits, live", async (ctx) => {
    const writer = await store.open(ctx)
    const task = await writer.tasks.create({ title: 'done elsewhere' })
    const reader = await reopen(ctx, writer.spec, { readOnly: true })
    const seen: string[] = []
    const created = (await reader.tasks.events()).at(-1)!
    expect(created.kind).toBe('created')
    const stop = reader.tasks.subscribe((entry) => seen.push(`${entry.actorId}:${entry.kind}`), { after: created.seq })
    const r = await runProc('inspector-complete.mjs', [writer.spec, task.id])
    expect(r.code, r.stderr).toBe(0)
    await waitFor(() => seen.length >= 2, 15_000)
    stop()
    expect(seen).toEqual([`${task.id}:claimed`, `${task.id}:completed`])
    expect((await reader.tasks.get(task.id))!.status).toBe('done')
  })

  it('a reader never creates a board: a missing one is STORE_OPEN_FAILED and stays missing', async (ctx) => {
    const missing = await missingBoard(ctx, store.name)
    expect(await codeOf(() => reopen(ctx, missing.spec, { readOnly: true }))).toBe('STORE_OPEN_FAILED')
    expect(await missing.exists()).toBe(false)
  })
})
