/**
 * Opening SQLite files: read-only opens (no WAL switch, no migration, no timers; every
 * write is READ_ONLY), files that are not lockstep's (missing, empty, foreign, garbage:
 * refused and left as they were), schemas a reader cannot migrate, and the inspector's
 * options (it reads files only, for now). What holds on every store (SCHEMA_TOO_NEW for an
 * older client, CLOSED after close(), unknown option keys): test/conformance/open.test.ts.
 * Proc scripts import dist/: run `npm run build` first.
 */
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { MIGRATIONS, SCHEMA_VERSION } from '../../../persistence/sqlite/migrations.js'
import { createOrchestrator, startInspector, taskMachine, type Claim } from '../../../src/index.js'
import { open, runProc, sleep, tableCounts, tempDbPath } from '../../helpers.js'

/** The error code of a call that throws or rejects (or 'ok'). */
async function codeOf(call: () => unknown): Promise<string> {
  try {
    await call()
    return 'ok'
  } catch (error) {
    return (error as { code?: string }).code ?? `untyped ${(error as Error)?.name}: ${(error as Error)?.message}`
  }
}

/** The file's bytes and mtime: "unchanged" means both are equal afterwards. */
function fingerprint(path: string): { bytes: string; mtimeMs: number } {
  return { bytes: readFileSync(path).toString('base64'), mtimeMs: statSync(path).mtimeMs }
}

/** A board written by another process that then closed the file (no -wal, no -shm left). */
async function seeded(): Promise<{ path: string; parent: string; child: string; claim: Claim }> {
  const path = tempDbPath()
  const r = await runProc('seed-board.mjs', [path])
  expect(r.code, r.stderr).toBe(0)
  expect(existsSync(`${path}-wal`)).toBe(false)
  return { path, ...JSON.parse(r.stdout) }
}

function foreignDb(path: string): void {
  const db = new Database(path)
  db.exec("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ann')")
  db.close()
}

describe('readOnly: true', () => {
  it('reads a file another process wrote and closed; every write is READ_ONLY; nothing runs that writes; the file is unchanged', async () => {
    const { path, parent, child, claim } = await seeded()
    const before = fingerprint(path)
    const errors: unknown[] = []
    const orch = await createOrchestrator({ path, readOnly: true, pollMs: 10, onError: (e) => errors.push(e) })
    expect(orch.readOnly).toBe(true)

    // Reads work.
    expect((await orch.tasks.list()).map((t) => t.id).sort()).toEqual([parent, child].sort())
    expect((await orch.tasks.get(parent))!.status).toBe('running')
    expect(await orch.tasks.children(parent)).toEqual([child])
    expect((await orch.tasks.runs(parent)).length).toBe(1)
    expect((await orch.tasks.events()).length).toBeGreaterThan(0)
    expect((await orch.sessions.get('s1'))!.id).toBe('s1')
    expect((await orch.sessions.list()).length).toBe(1)
    expect((await orch.sessions.events({ sessionId: 's1' })).length).toBeGreaterThan(0)
    const unsubscribe = orch.tasks.subscribe(() => {}, { after: 0 })
    unsubscribe()

    // Every write is refused with a typed code.
    const writes: Record<string, () => unknown> = {
      create: () => orch.tasks.create({ title: 'x' }),
      link: () => orch.tasks.link(parent, child),
      unlink: () => orch.tasks.unlink(parent, child),
      claim: () => orch.tasks.claim(child, { worker: 'w' }),
      claimNext: () => orch.tasks.claimNext({ worker: 'w' }),
      heartbeat: () => orch.tasks.heartbeat(claim),
      complete: () => orch.tasks.complete(claim, {}),
      fail: () => orch.tasks.fail(claim, { error: 'x' }),
      release: () => orch.tasks.release(claim),
      block: () => orch.tasks.block(child, { reason: 'x' }),
      unblock: () => orch.tasks.unblock(child),
      cancel: () => orch.tasks.cancel(child),
      retry: () => orch.tasks.retry(parent),
      archive: () => orch.tasks.archive(child),
      work: () => orch.tasks.work({ worker: 'w', handler: async () => ({}) }),
      'sessions.open': () => orch.sessions.open('s2', { models: ['m/one'] }),
      'sessions.prompt': () => orch.sessions.prompt('s1', { message: 'hi' }),
      'sessions.token': () => orch.sessions.token('s1', {}),
      'sessions.error': () => orch.sessions.error('s1', { error: 'HTTP 429' }),
      'sessions.aborted': () => orch.sessions.aborted('s1', {}),
      'sessions.idle': () => orch.sessions.idle('s1', {}),
      'sessions.modelSelected': () => orch.sessions.modelSelected('s1', 'm/two'),
      'sessions.deleted': () => orch.sessions.deleted('s1'),
      'sessions.approve': () => orch.sessions.approve('s1', 'bash'),
      'sessions.revoke': () => orch.sessions.revoke('s1', 'bash'),
      'sessions.authorize': () => orch.sessions.authorize('s1', 'bash'),
      'sessions.run': () => orch.sessions.run('s1', { models: ['m/one'], message: { text: 'x' }, call: async () => 'out' }),
      runDueTimers: () => orch.runDueTimers(),
      reload: () => orch.reload({ machines: { task: { machine: taskMachine, version: 2 } } }),
    }
    for (const [name, call] of Object.entries(writes)) expect(await codeOf(call), name).toBe('READ_ONLY')

    // The claim's 50 ms lease is long overdue, but a reader delivers no timers.
    await sleep(200)
    expect((await orch.tasks.get(parent))!.status).toBe('running')
    expect(errors).toEqual([])
    await orch.close()
    expect(fingerprint(path)).toEqual(before)
  })

  it('sees commits of a writer in another process, live', async () => {
    const { path } = await seeded()
    const orch = await createOrchestrator({ path, readOnly: true, pollMs: 10 })
    const seen: string[] = []
    orch.tasks.subscribe((entry) => seen.push(entry.kind))
    const r = await runProc('create-one.mjs', [path, 'from another process'])
    expect(r.code, r.stderr).toBe(0)
    const { id } = JSON.parse(r.stdout)
    for (let i = 0; i < 500 && !seen.includes('created'); i++) await sleep(10)
    expect(seen).toContain('created')
    expect((await orch.tasks.get(id))!.title).toBe('from another process')
    await orch.close()
  })

  it('a process that may read but not write the file reads it read-only; writes are typed errors', async () => {
    const { path } = await seeded()
    const dir = dirname(path)
    const asRoot = process.getuid?.() === 0
    // Root ignores permission bits: run the reader as nobody. Otherwise the owner's own
    // read-only file is the unwritable one.
    const reader = (): Promise<Record<string, unknown>> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [join(import.meta.dirname, '../../procs/read-only-reader.mjs'), path], {
          stdio: ['ignore', 'pipe', 'pipe'],
          ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
        })
        let out = ''
        let err = ''
        child.stdout.on('data', (d) => (out += d))
        child.stderr.on('data', (d) => (err += d))
        child.on('error', reject)
        child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`reader exited ${code}: ${err}`))))
      })
    chmodSync(path, 0o444)

    // The realistic case: the directory is writable to the reader (SQLite creates the
    // -shm it needs to read a WAL file), the file is not.
    chmodSync(dir, asRoot ? 0o777 : 0o755)
    const before = fingerprint(path)
    const ok = await reader()
    expect(ok).toMatchObject({ tasks: 2, write: 'READ_ONLY', readWriteOpen: 'STORE_OPEN_FAILED' })
    expect(ok.readOnlyOpen).toBeUndefined()
    expect(fingerprint(path)).toEqual(before)

    // Neither the file nor the directory writable, and no other process has the file
    // open: SQLite cannot read a WAL file then. A typed refusal, not a raw SqliteError.
    // (The first reader left its -shm and -wal behind: with them SQLite could read.)
    rmSync(`${path}-shm`, { force: true })
    rmSync(`${path}-wal`, { force: true })
    chmodSync(dir, 0o555)
    try {
      const refused = await reader()
      expect(refused).toMatchObject({ readOnlyOpen: 'STORE_OPEN_FAILED', readWriteOpen: 'STORE_OPEN_FAILED' })
    } finally {
      chmodSync(dir, 0o700)
    }
    expect(fingerprint(path)).toEqual(before)
  })

  it('cannot migrate: an older schema is SCHEMA_TOO_OLD, a newer one SCHEMA_TOO_NEW; the file is unchanged', async () => {
    const old = tempDbPath()
    const db = new Database(old)
    for (const migration of MIGRATIONS.slice(0, 2)) db.exec(migration.sql)
    db.pragma('user_version = 2')
    db.close()
    const before = fingerprint(old)
    expect(await codeOf(() => createOrchestrator({ path: old, readOnly: true }))).toBe('SCHEMA_TOO_OLD')
    expect(fingerprint(old)).toEqual(before)

    const { path } = await seeded()
    const newer = new Database(path)
    newer.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
    newer.close()
    const newerBefore = fingerprint(path)
    expect(await codeOf(() => createOrchestrator({ path, readOnly: true }))).toBe('SCHEMA_TOO_NEW')
    expect(await codeOf(() => createOrchestrator({ path }))).toBe('SCHEMA_TOO_NEW')
    expect(fingerprint(path)).toEqual(newerBefore)
  })

  it('refuses an in-memory database (nothing to read)', async () => {
    expect(await codeOf(() => createOrchestrator({ path: ':memory:', readOnly: true }))).toBe('INVALID_INPUT')
  })
})

describe('files that are not lockstep databases', () => {
  const cases: Record<string, (path: string) => void> = {
    empty: (path) => writeFileSync(path, ''),
    foreign: foreignDb,
    garbage: (path) => writeFileSync(path, 'not a database, just text long enough to fill a header '.repeat(40)),
  }

  it('a missing file: a reader creates nothing', async () => {
    const path = tempDbPath()
    expect(await codeOf(() => createOrchestrator({ path, readOnly: true }))).toBe('STORE_OPEN_FAILED')
    expect(await codeOf(() => startInspector(path, { port: 0 }))).toBe('STORE_OPEN_FAILED')
    expect(existsSync(path)).toBe(false)
  })

  for (const [name, make] of Object.entries(cases)) {
    it(`${name}: STORE_OPEN_FAILED read-only and in the inspector, and the file stays as it was`, async () => {
      const path = tempDbPath()
      make(path)
      const before = fingerprint(path)
      expect(await codeOf(() => createOrchestrator({ path, readOnly: true }))).toBe('STORE_OPEN_FAILED')
      expect(await codeOf(() => startInspector(path, { port: 0 }))).toBe('STORE_OPEN_FAILED')
      expect(fingerprint(path)).toEqual(before)
      expect(existsSync(`${path}-wal`)).toBe(false)
    })
  }

  it('a read-write open refuses a foreign SQLite database instead of adding its tables to it', async () => {
    const path = tempDbPath()
    foreignDb(path)
    const before = fingerprint(path)
    const error = await createOrchestrator({ path }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'STORE_OPEN_FAILED' })
    expect((error as Error).message).toMatch(/not a lockstep database.*people/)
    expect(fingerprint(path)).toEqual(before)
    const db = new Database(path, { readonly: true })
    expect(db.pragma('journal_mode', { simple: true })).toBe('delete')
    db.close()
  })

  it('a read-write open of garbage is STORE_OPEN_FAILED; of an empty file makes it a lockstep database', async () => {
    const junk = tempDbPath()
    cases.garbage!(junk)
    const before = fingerprint(junk)
    expect(await codeOf(() => createOrchestrator({ path: junk }))).toBe('STORE_OPEN_FAILED')
    expect(fingerprint(junk)).toEqual(before)

    const empty = tempDbPath()
    writeFileSync(empty, '')
    const orch = await createOrchestrator({ path: empty })
    await orch.tasks.create({ title: 'first' })
    await orch.close()
    expect(tableCounts(empty).tasks).toBe(1)
  })
})

describe('options objects refuse keys they do not know', () => {
  it('orch.inspect and startInspector (and their nested objects)', async () => {
    const orch = await open()
    const field = async (call: () => unknown) => ((await Promise.resolve().then(call).catch((e: unknown) => e)) as { code: string; details: { field: string } })
    expect(await field(() => orch.inspect({ prot: 0 } as never))).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'prot' } })
    // orch.inspect passes the machines in force itself.
    expect(await field(() => orch.inspect({ port: 0, machines: {} } as never))).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'machines' } })
    expect(await field(() => startInspector(orch.path, { port: 0, hots: 'x' } as never))).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'hots' } })
    expect(
      await field(() => startInspector(orch.path, { port: 0, stately: { url: 'ws://127.0.0.1:1', retry: true } } as never)),
    ).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'retry' } })
    expect(
      await field(() => startInspector(orch.path, { port: 0, machines: { 'lockstep.task': { machine: taskMachine, version: 1, extra: 1 } } } as never)),
    ).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'machines.lockstep.task' } })
  })
})
