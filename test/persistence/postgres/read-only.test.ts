/**
 * Readers on PostgreSQL (readOnly orchestrators, CLI read commands, the inspector): their
 * connections are read-only at the server, whatever the URL carries, and they never
 * create or migrate a schema: a missing or foreign one is STORE_OPEN_FAILED, a newer one
 * SCHEMA_TOO_NEW, each left as it was.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it, type TestContext } from 'vitest'
import { openPostgres } from '../../../persistence/postgres/open.js'
import { SCHEMA_VERSION } from '../../../persistence/postgres/migrations.js'
import { createOrchestrator, startInspector } from '../../../src/index.js'
import { adminQuery, freshSchema, pgUrl } from '../../postgres-server.js'

async function codeOf(call: () => unknown): Promise<string> {
  try {
    const value = await call()
    await (value as { close?: () => Promise<void> } | undefined)?.close?.()
    return 'ok'
  } catch (error) {
    return (error as { code?: string }).code ?? `untyped ${(error as Error)?.name}: ${(error as Error)?.message}`
  }
}

/** A schema holding a lockstep board (one task). */
async function board(ctx: TestContext): Promise<string> {
  const schema = await freshSchema(ctx)
  const writer = await createOrchestrator({ url: pgUrl, schema, runTimers: false })
  await writer.tasks.create({ title: 'existing' })
  await writer.close()
  return schema
}

const CLI = join(import.meta.dirname, '..', '..', '..', 'dist/src/tools/cli/main.js')

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--json'], { encoding: 'utf8', timeout: 30_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const schemaObjects = async (schema: string) =>
  (await adminQuery<{ relname: string }>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 ORDER BY c.relname`,
    [schema],
  )).map((r) => r.relname)

describe('PostgreSQL readers', () => {
  it('every connection of a reader is read-only at the server, also when the URL carries its own options', async (ctx) => {
    const schema = await board(ctx)
    const url = new URL(pgUrl)
    url.searchParams.set('options', '-c statement_timeout=7000')
    for (const where of [pgUrl, url.toString()]) {
      const conn = await openPostgres(where, { schema, readOnly: true })
      try {
        const settings = await conn.pool.query<{ read_only: string; timeout: string }>(
          "SELECT current_setting('default_transaction_read_only') AS read_only, current_setting('statement_timeout') AS timeout",
        )
        expect(settings.rows[0]!.read_only, where).toBe('on')
        if (where !== pgUrl) expect(settings.rows[0]!.timeout).toBe('7s')
        // A write that got past lockstep's own refusal is refused by the server.
        const error = await conn.pool.query(`UPDATE ${conn.schema.table('tasks')} SET title = 'changed'`).catch((e: unknown) => e)
        expect((error as { code?: string }).code).toBe('25006') // read_only_sql_transaction
      } finally {
        await conn.close()
      }
    }
    expect((await adminQuery<{ title: string }>(`SELECT title FROM "${schema}".tasks`)).map((r) => r.title)).toEqual(['existing'])
  })

  it('a missing schema, another application\'s schema or a newer lockstep schema is refused, typed, and left as it was', async (ctx) => {
    const openers = (schema: string) => ({
      readOnly: () => createOrchestrator({ url: pgUrl, schema, readOnly: true }),
      inspector: () => startInspector({ url: pgUrl, schema }, { port: 0 }),
    })

    const missing = await freshSchema(ctx)
    for (const [name, open] of Object.entries(openers(missing))) expect(await codeOf(open), name).toBe('STORE_OPEN_FAILED')
    expect(await adminQuery('SELECT 1 FROM pg_namespace WHERE nspname = $1', [missing])).toEqual([])

    const foreign = await freshSchema(ctx)
    await adminQuery(`CREATE SCHEMA "${foreign}"; CREATE TABLE "${foreign}".people (name text)`)
    for (const [name, open] of Object.entries(openers(foreign))) expect(await codeOf(open), name).toBe('STORE_OPEN_FAILED')
    expect(await schemaObjects(foreign)).toEqual(['people'])

    const newer = await board(ctx)
    await adminQuery(`INSERT INTO "${newer}".lockstep_migrations (version, name, applied_at) VALUES ($1, 'from the future', 0)`, [SCHEMA_VERSION + 1])
    const before = await schemaObjects(newer)
    for (const [name, open] of Object.entries(openers(newer))) expect(await codeOf(open), name).toBe('SCHEMA_TOO_NEW')
    expect(await schemaObjects(newer)).toEqual(before)
  })

  it("the CLI's read commands open read-only: a missing schema is not created, an overdue lease is not delivered", async (ctx) => {
    const missing = await freshSchema(ctx)
    for (const args of [['task', 'list'], ['task', 'show', 't_x'], ['events']]) {
      const r = cli(...args, '--db', pgUrl, '--schema', missing)
      expect(r.code, r.stderr).toBe(1)
      expect(JSON.parse(r.stdout).error.code, args.join(' ')).toBe('STORE_OPEN_FAILED')
    }
    expect(await adminQuery('SELECT 1 FROM pg_namespace WHERE nspname = $1', [missing])).toEqual([])

    const schema = await freshSchema(ctx)
    const writer = await createOrchestrator({ url: pgUrl, schema, runTimers: false })
    const task = await writer.tasks.create({ title: 'claimed' })
    await writer.tasks.claim(task.id, { worker: 'w', leaseMs: 1 })
    await writer.close()
    const before = await adminQuery(`SELECT version, status FROM "${schema}".tasks`)
    const list = cli('task', 'list', '--db', pgUrl, '--schema', schema)
    expect(list.code, list.stderr).toBe(0)
    expect(JSON.parse(list.stdout).map((t: { status: string }) => t.status)).toEqual(['running'])
    expect(cli('events', '--db', pgUrl, '--schema', schema).code).toBe(0)
    expect(await adminQuery(`SELECT version, status FROM "${schema}".tasks`)).toEqual(before)
  })
})
