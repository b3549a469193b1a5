/**
 * The test-side rule for the PostgreSQL server, an outside program like chromium (see
 * outside-programs.ts): the URL comes from LOCKSTEP_PG_URL (default
 * postgres://postgres@127.0.0.1:5432/test). When no server answers within 3 s the test is
 * skipped with a notice saying how to get one; under CI=true it fails instead. Each test
 * gets its own schema, dropped (CASCADE) after it, so tests and files can share the database.
 */
import type { TestContext } from 'vitest'
import pg from 'pg'
import { needOutsideProgram } from './outside-programs.js'

export const pgUrl = process.env.LOCKSTEP_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const POSTGRES = {
  name: `a PostgreSQL server at ${pgUrl.replace(/:[^:@/]*@/, ':***@')}`,
  install: 'apt-get install postgresql-15 && pg_ctlcluster 15 main start (or set LOCKSTEP_PG_URL)',
}

let probe: Promise<string | null> | undefined

/** null when the server answers `SELECT 1` within 3 s; otherwise why not. Probed once per file. */
export function postgresProblem(): Promise<string | null> {
  return (probe ??= (async () => {
    const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 3_000, query_timeout: 3_000 })
    client.on('error', () => {})
    try {
      await client.connect()
      await client.query('SELECT 1')
      return null
    } catch (error) {
      return (error as Error).message || String(error)
    } finally {
      await client.end().catch(() => {})
    }
  })())
}

/** Skip this test (or fail it under CI=true) when no PostgreSQL server answers. */
export async function needPostgres(ctx: TestContext): Promise<void> {
  needOutsideProgram(ctx, POSTGRES, await postgresProblem())
}

let counter = 0

/**
 * A fresh, unique schema name for this test (not created: lockstep creates it), dropped
 * with everything in it after the test. Skips the test when there is no server.
 */
export async function freshSchema(ctx: TestContext): Promise<string> {
  await needPostgres(ctx)
  const name = `t_${process.pid}_${Date.now().toString(36)}_${++counter}`
  ctx.onTestFinished(async () => {
    await adminQuery(`DROP SCHEMA IF EXISTS "${name}" CASCADE`)
  })
  return name
}

/** One statement on a short-lived connection of its own (setup, checks, cleanup). */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
  const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 3_000 })
  client.on('error', () => {})
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end().catch(() => {})
  }
}
