/**
 * Opening a PostgreSQL schema: numbered migrations from empty, re-opening, five processes
 * racing to open a new schema, refusing a newer schema, another application's schema, bad
 * URLs and schema names, and servers that refuse or never answer (a typed error after a
 * bounded wait, never a hang).
 */
import { execFileSync } from 'node:child_process'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openPool, withTransaction, type PgConnection, type PgOpenOptions } from '../../../persistence/postgres/connection.js'
import { migrate, PG_MIGRATIONS, SCHEMA_VERSION } from '../../../persistence/postgres/migrations.js'
import { openPostgres } from '../../../persistence/postgres/open.js'
import { LockstepError } from '../../../src/errors.js'
import { runProc } from '../../helpers.js'
import { adminQuery, freshSchema, needPostgres, pgUrl } from '../../postgres-server.js'

async function opened(ctx: Parameters<typeof freshSchema>[0], options: PgOpenOptions = {}): Promise<PgConnection> {
  const schema = options.schema ?? (await freshSchema(ctx))
  const conn = await openPool(pgUrl, { ...options, schema })
  ctx.onTestFinished(() => conn.close())
  return conn
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(LockstepError)
    return (error as LockstepError).code
  }
  throw new Error('expected a LockstepError')
}

describe('PostgreSQL schema', () => {
  it('migrates an empty schema to the latest version, with every table of the SQLite schema', async (ctx) => {
    const conn = await opened(ctx)
    const result = await migrate(conn)
    expect(result).toEqual({ from: 0, to: SCHEMA_VERSION, applied: PG_MIGRATIONS.map((m) => m.version) })
    const tables = await adminQuery<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name",
      [conn.schema.name],
    )
    expect(tables.map((t) => t.table_name)).toEqual(['journal', 'lockstep_migrations', 'mcp_calls', 'runs', 'sessions', 'task_links', 'tasks', 'timers'])
    const runColumns = await adminQuery<{ column_name: string }>(
      "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'runs'",
      [conn.schema.name],
    )
    expect(runColumns.map((c) => c.column_name)).toContain('claim_key')
    const ready = await adminQuery<{ indexdef: string }>("SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'tasks_ready_by_assignee'", [
      conn.schema.name,
    ])
    expect(ready[0]!.indexdef).toMatch(/\(assignee, priority DESC, created_at, n\) WHERE \(status = 'ready'::text\)/)
    // The journal's seq comes from its default (the shared lock, then the sequence).
    const seqs = await withTransaction(conn, async (tx) => {
      const r = await tx.query<{ seq: number }>(
        `INSERT INTO ${tx.schema.table('journal')} (machine_id, actor_id, kind, event_type, event, state_after, actor_version, at)
         VALUES ('m', 'a', 'k', 'E', '{}', 's', 1, $1), ('m', 'a', 'k', 'E', '{}', 's', 1, $1) RETURNING seq`,
        [tx.now],
      )
      return r.rows.map((row) => row.seq)
    })
    expect(seqs).toEqual([1, 2])
  })

  it('re-opening a current schema applies nothing', async (ctx) => {
    const conn = await opened(ctx)
    await migrate(conn)
    const again = await openPostgres(pgUrl, { schema: conn.schema.name })
    try {
      expect(again.migrated).toEqual({ from: SCHEMA_VERSION, to: SCHEMA_VERSION, applied: [] })
    } finally {
      await again.close()
    }
    const rows = await adminQuery(`SELECT version FROM "${conn.schema.name}".lockstep_migrations`)
    expect(rows).toHaveLength(PG_MIGRATIONS.length)
  })

  it('five processes opening a new schema at the same moment all succeed, and the migrations run once', async (ctx) => {
    const schema = await freshSchema(ctx)
    const startAt = Date.now() + 1_500
    const results = await Promise.all(Array.from({ length: 5 }, () => runProc('pg-open.mjs', [pgUrl, schema, String(startAt)])))
    for (const result of results) expect(result.code, result.stderr + result.stdout).toBe(0)
    const applied = results.flatMap((r) => (JSON.parse(r.stdout) as { applied: number[] }).applied)
    expect(applied.sort()).toEqual(PG_MIGRATIONS.map((m) => m.version))
    const rows = await adminQuery(`SELECT version FROM "${schema}".lockstep_migrations`)
    expect(rows).toHaveLength(PG_MIGRATIONS.length)
  })

  it('refuses a schema migrated by a newer lockstep, at open and in a transaction of an already open pool', async (ctx) => {
    const conn = await opened(ctx)
    await migrate(conn)
    await adminQuery(`INSERT INTO "${conn.schema.name}".lockstep_migrations VALUES ($1, 'from the future', 0)`, [SCHEMA_VERSION + 1])
    expect(await codeOf(openPostgres(pgUrl, { schema: conn.schema.name }))).toBe('SCHEMA_TOO_NEW')
    expect(await codeOf(withTransaction(conn, async () => 'ran'))).toBe('SCHEMA_TOO_NEW')
  })

  it("refuses another application's schema and leaves it untouched", async (ctx) => {
    const schema = await freshSchema(ctx)
    await adminQuery(`CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}".orders (id int)`)
    const conn = await opened(ctx, { schema })
    expect(await codeOf(migrate(conn))).toBe('STORE_OPEN_FAILED')
    const tables = await adminQuery("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", [schema])
    expect(tables).toEqual([{ table_name: 'orders' }])
  })

  it('importing the PostgreSQL store does not load pg; opening a pool does', () => {
    const dist = join(import.meta.dirname, '../../../dist/persistence/postgres')
    const script = (open: boolean) => `
      import { createRequire } from 'node:module'
      const m = await import(${JSON.stringify(join(dist, 'connection.js'))})
      await import(${JSON.stringify(join(dist, 'journal.js'))}); await import(${JSON.stringify(join(dist, 'notify.js'))})
      if (${open}) await m.openPool('postgres://x@127.0.0.1:1/db').catch(() => {})
      const loaded = Object.keys(createRequire(import.meta.url).cache).some((k) => /node_modules[\\/]pg[\\/]/.test(k))
      process.stdout.write(String(loaded))`
    const run = (open: boolean) => execFileSync(process.execPath, ['--input-type=module', '-e', script(open)], { encoding: 'utf8' })
    expect(run(false)).toBe('false')
    expect(run(true)).toBe('true')
  })

  it('bad URLs, schema names and options are INVALID_INPUT, before any connection', async () => {
    expect(await codeOf(openPool('mysql://x@127.0.0.1/db'))).toBe('INVALID_INPUT')
    expect(await codeOf(openPool('postgres://[::1'))).toBe('INVALID_INPUT')
    expect(await codeOf(openPool(42))).toBe('INVALID_INPUT')
    for (const schema of ['Lockstep', 'a-b', '1abc', 'pg_mine', '', 'x'.repeat(55), 'a"; DROP TABLE x; --']) {
      expect(await codeOf(openPool(pgUrl, { schema }))).toBe('INVALID_INPUT')
    }
    expect(await codeOf(openPool(pgUrl, { shema: 'x' } as PgOpenOptions))).toBe('INVALID_INPUT')
    expect(await codeOf(openPool(pgUrl, { pool: { maxx: 3 } } as unknown as PgOpenOptions))).toBe('INVALID_INPUT')
    expect(await codeOf(openPool(pgUrl, { retryBudgetMs: -1 }))).toBe('INVALID_INPUT')
  })

  it('a server that refuses connections is STORE_OPEN_FAILED at once, without the password in the message', async (ctx) => {
    await needPostgres(ctx)
    const error = await openPool('postgres://app:secret@127.0.0.1:1/db').catch((e: unknown) => e)
    expect((error as LockstepError).code).toBe('STORE_OPEN_FAILED')
    expect((error as LockstepError).message).not.toContain('secret')
  })

  it('a server that accepts but never answers is STORE_OPEN_FAILED after connectionTimeoutMillis, not a hang', async () => {
    const sockets = new Set<Socket>()
    const silent = createServer((socket) => void sockets.add(socket))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const port = (silent.address() as { port: number }).port
    try {
      const started = performance.now()
      const code = await codeOf(openPool(`postgres://postgres@127.0.0.1:${port}/test`, { pool: { connectionTimeoutMillis: 300 } }))
      expect(code).toBe('STORE_OPEN_FAILED')
      // Bounded, not a speed claim: without connectionTimeoutMillis pg waits forever.
      expect(performance.now() - started).toBeLessThan(20_000)
    } finally {
      for (const socket of sockets) socket.destroy()
      silent.close()
    }
  })
})
