/** Every error code, and "a rejected call writes nothing". */
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import {
  createOrchestrator,
  DependencyCycleError,
  InvalidInputError,
  LockstepError,
  MAX_JSON_DEPTH,
  type Json,
  type Orchestrator,
} from '../../src/index.js'
import { tableCounts, tempDbPath } from '../helpers.js'

async function board(): Promise<{ orch: Orchestrator; path: string; ids: Record<string, string> }> {
  const path = tempDbPath()
  const orch = await createOrchestrator({ path, maxPayloadBytes: 1_000 })
  const p = await orch.tasks.create({ title: 'parent' })
  const c = await orch.tasks.create({ title: 'child', parents: [p.id] })
  const r = await orch.tasks.create({ title: 'running' })
  await orch.tasks.claim(r.id, { worker: 'w' })
  return { orch, path, ids: { p: p.id, c: c.id, r: r.id } }
}

/** Assert `call` rejects with `code` and that no table changed. */
async function rejectsWithoutWriting(path: string, call: () => Promise<unknown>, code: string): Promise<LockstepError> {
  const before = tableCounts(path)
  const error = await call().then(
    () => {
      throw new Error(`expected ${code}, but the call succeeded`)
    },
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(LockstepError)
  expect((error as LockstepError).code).toBe(code)
  expect(tableCounts(path)).toEqual(before)
  return error as LockstepError
}

describe('INVALID_INPUT: rejected before any transaction', () => {
  const cases: Array<[string, (o: Orchestrator, ids: Record<string, string>) => Promise<unknown>]> = [
    ['empty title', (o) => o.tasks.create({ title: '   ' })],
    ['missing title', (o) => o.tasks.create({} as never)],
    ['title of wrong type', (o) => o.tasks.create({ title: 42 } as never)],
    ['input not an object', (o) => o.tasks.create(null as never)],
    ['priority not an integer', (o) => o.tasks.create({ title: 't', priority: 1.5 })],
    ['maxAttempts out of range', (o) => o.tasks.create({ title: 't', maxAttempts: 0 })],
    ['parents not an array', (o) => o.tasks.create({ title: 't', parents: 'p' } as never)],
    ['payload with a function', (o) => o.tasks.create({ title: 't', payload: { f: () => 1 } as never })],
    ['payload with a Date', (o) => o.tasks.create({ title: 't', payload: { d: new Date() } as never })],
    ['payload with NaN', (o) => o.tasks.create({ title: 't', payload: { n: Number.NaN } })],
    ['payload with a BigInt', (o) => o.tasks.create({ title: 't', payload: { n: 1n } as never })],
    [
      'payload with a cycle',
      (o) => {
        const a: Record<string, unknown> = {}
        a.self = a
        return o.tasks.create({ title: 't', payload: a as never })
      },
    ],
    ['unknown status filter', (o) => o.tasks.list({ status: 'finished' as never })],
    ['list limit out of range', (o) => o.tasks.list({ limit: 0 })],
    ['claim without worker', (o, ids) => o.tasks.claim(ids.p!, {} as never)],
    ['claim with a negative lease', (o, ids) => o.tasks.claim(ids.p!, { worker: 'w', leaseMs: -1 })],
    ['complete with a malformed claim', (o) => o.tasks.complete({ taskId: 'x' } as never)],
    ['fail without an error', (o, ids) => o.tasks.fail({ taskId: ids.r!, runId: 'r', token: 't', worker: 'w', leaseExpiresAt: 0, attempt: 1 }, {} as never)],
    ['block without a reason', (o, ids) => o.tasks.block(ids.p!, {} as never)],
    ['events with a negative cursor', (o) => o.tasks.events({ after: -1 })],
  ]
  it.each(cases)('%s', async (_name, call) => {
    const { orch, path, ids } = await board()
    const error = await rejectsWithoutWriting(path, () => call(orch, ids), 'INVALID_INPUT')
    expect(error).toBeInstanceOf(InvalidInputError)
    await orch.close()
  })

  it('rejects synchronously-invalid input as a rejected promise, never a throw', async () => {
    const { orch } = await board()
    const promise = orch.tasks.create(undefined as never)
    expect(promise).toBeInstanceOf(Promise)
    await expect(promise).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await orch.close()
  })
})

describe('the other codes', () => {
  it('PAYLOAD_TOO_LARGE', async () => {
    const { orch, path } = await board()
    const error = await rejectsWithoutWriting(path, () => orch.tasks.create({ title: 't', payload: 'x'.repeat(2_000) }), 'PAYLOAD_TOO_LARGE')
    expect(error.details).toMatchObject({ field: 'payload', limit: 1_000 })
    await orch.close()
  })

  it('TASK_NOT_FOUND: unknown parent, unknown task', async () => {
    const { orch, path, ids } = await board()
    await rejectsWithoutWriting(path, () => orch.tasks.create({ title: 't', parents: [ids.p!, 't_nope'] }), 'TASK_NOT_FOUND')
    await rejectsWithoutWriting(path, () => orch.tasks.claim('t_nope', { worker: 'w' }), 'TASK_NOT_FOUND')
    await rejectsWithoutWriting(path, () => orch.tasks.cancel('t_nope'), 'TASK_NOT_FOUND')
    await rejectsWithoutWriting(path, () => orch.tasks.link(ids.p!, 't_nope'), 'TASK_NOT_FOUND')
    await rejectsWithoutWriting(path, () => orch.tasks.runs('t_nope'), 'TASK_NOT_FOUND')
    await rejectsWithoutWriting(
      path,
      () => orch.tasks.complete({ taskId: 't_nope', runId: 'r', token: 'x', worker: 'w', leaseExpiresAt: 0, attempt: 1 }),
      'TASK_NOT_FOUND',
    )
    await orch.close()
  })

  it('DEPENDENCY_CYCLE: self-link and a longer cycle', async () => {
    const { orch, path, ids } = await board()
    const grandchild = await orch.tasks.create({ title: 'gc', parents: [ids.c!] })
    const self = await rejectsWithoutWriting(path, () => orch.tasks.link(ids.p!, ids.p!), 'DEPENDENCY_CYCLE')
    expect(self).toBeInstanceOf(DependencyCycleError)
    await rejectsWithoutWriting(path, () => orch.tasks.link(grandchild.id, ids.p!), 'DEPENDENCY_CYCLE')
    await orch.close()
  })

  it('LINK_NOT_FOUND', async () => {
    const { orch, path, ids } = await board()
    await rejectsWithoutWriting(path, () => orch.tasks.unlink(ids.r!, ids.c!), 'LINK_NOT_FOUND')
    await orch.close()
  })

  it('LEASE_LOST: a wrong token or an old run changes nothing', async () => {
    const { orch, path, ids } = await board()
    const claim = (await orch.tasks.claim(ids.p!, { worker: 'w' }))!
    const forged = { ...claim, token: 'forged' }
    await rejectsWithoutWriting(path, () => orch.tasks.complete(forged), 'LEASE_LOST')
    await rejectsWithoutWriting(path, () => orch.tasks.heartbeat(forged), 'LEASE_LOST')
    await rejectsWithoutWriting(path, () => orch.tasks.fail(forged, { error: 'x' }), 'LEASE_LOST')
    await orch.tasks.complete(claim)
    // Completing twice: the second is stale too.
    await rejectsWithoutWriting(path, () => orch.tasks.complete(claim), 'LEASE_LOST')
    await orch.close()
  })

  it('INVALID_TRANSITION: the machine refuses the command in this state', async () => {
    const { orch, path, ids } = await board()
    const error = await rejectsWithoutWriting(path, () => orch.tasks.archive(ids.r!), 'INVALID_TRANSITION')
    expect(error.details).toMatchObject({ actorId: ids.r, event: 'ARCHIVE', state: 'running' })
    await rejectsWithoutWriting(path, () => orch.tasks.unblock(ids.p!), 'INVALID_TRANSITION')
    await rejectsWithoutWriting(path, () => orch.tasks.retry(ids.p!), 'INVALID_TRANSITION')
    await orch.close()
  })

  it('SCHEMA_TOO_NEW: a file from a newer lockstep is refused on open', async () => {
    const path = tempDbPath()
    await (await createOrchestrator({ path })).close()
    const db = new Database(path)
    db.pragma('user_version = 999')
    db.close()
    await expect(createOrchestrator({ path })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW', details: { found: 999 } })
  })

  it('SCHEMA_TOO_NEW: a process that opened the file before a newer lockstep migrated it refuses to write', async () => {
    const { orch, path, ids } = await board()
    // A newer lockstep migrates the file while this process keeps it open (a rolling upgrade).
    const db = new Database(path)
    db.pragma('user_version = 999')
    db.close()
    const before = tableCounts(path)
    await expect(orch.tasks.create({ title: 't' })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW', details: { found: 999 } })
    await expect(orch.tasks.claimNext({ worker: 'w' })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW' })
    await expect(orch.tasks.cancel(ids.p!)).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW' })
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
    const { writeFileSync } = await import('node:fs')
    writeFileSync(path, 'this is not a sqlite file, just some text long enough to have a header'.repeat(20))
    await expect(createOrchestrator({ path })).rejects.toMatchObject({ code: 'STORE_OPEN_FAILED' })
  })

  it('CLOSED after close()', async () => {
    const { orch } = await board()
    await orch.close()
    await expect(orch.tasks.list()).rejects.toMatchObject({ code: 'CLOSED' })
    await orch.close() // idempotent
  })
})

/** `[[[ ... ]]]` (or `{a:{a:...}}`) nested `depth` levels, built without recursion. */
function nested(depth: number, kind: 'array' | 'object' = 'array'): unknown {
  let value: unknown = 0
  for (let i = 0; i < depth; i++) value = kind === 'array' ? [value] : { a: value }
  return value
}

describe('deeply nested JSON: INVALID_INPUT at any depth, never a RangeError', () => {
  it('accepts MAX_JSON_DEPTH levels and refuses one more', async () => {
    const { orch, path } = await board()
    const ok = await orch.tasks.create({ title: 'deep enough', payload: nested(MAX_JSON_DEPTH) as Json })
    expect(JSON.stringify(ok.payload)).toHaveLength(2 * MAX_JSON_DEPTH + 1)
    const error = await rejectsWithoutWriting(path, () => orch.tasks.create({ title: 't', payload: nested(MAX_JSON_DEPTH + 1) as Json }), 'INVALID_INPUT')
    expect(error.message).toMatch(new RegExp(`nests deeper than ${MAX_JSON_DEPTH} levels`))
    await orch.close()
  })

  for (const depth of [10_000, 1_000_000]) {
    it(`payload, result, metadata and session messages ${depth.toLocaleString('en')} levels deep`, async () => {
      const { orch, path, ids } = await board()
      const deep = nested(depth) as Json
      const deepObject = nested(depth, 'object') as Json
      await rejectsWithoutWriting(path, () => orch.tasks.create({ title: 't', payload: deep }), 'INVALID_INPUT')
      await rejectsWithoutWriting(path, () => orch.tasks.create({ title: 't', payload: deepObject }), 'INVALID_INPUT')
      const claim = (await orch.tasks.claim(ids.p!, { worker: 'w' }))!
      await rejectsWithoutWriting(path, () => orch.tasks.complete(claim, { result: deep }), 'INVALID_INPUT')
      await rejectsWithoutWriting(path, () => orch.tasks.complete(claim, { metadata: deepObject }), 'INVALID_INPUT')
      await orch.sessions.open('s', { models: ['m1', 'm2'] })
      const sessionEvents = (await orch.sessions.events({ sessionId: 's' })).length
      await expect(orch.sessions.prompt('s', { message: deepObject })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      await expect(
        orch.sessions.run('s', { models: ['m1', 'm2'], message: { deep: deepObject }, call: async () => 'never called' }),
      ).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      expect(await orch.sessions.events({ sessionId: 's' })).toHaveLength(sessionEvents)
      await orch.close()
    })
  }
})
