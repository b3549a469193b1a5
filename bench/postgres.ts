/**
 * The bench's PostgreSQL plumbing, outside the measured code: the `--db` URL check, a
 * fresh schema per measurement (dropped afterwards), row counts for the consistency
 * check, and the server facts printed in the header. Everything here runs on short-lived
 * connections of its own, never on a measured side's pool.
 */
import pg from 'pg'
import { checkPgUrl } from '../persistence/postgres/connection.js'
import type { PostgresBoardSpec } from './protocol.js'

/** The URL with its password masked, or a sentence saying what is wrong with it. */
export function checkDbUrl(url: string): { ok: true; masked: string } | { ok: false; problem: string } {
  try {
    return { ok: true, masked: checkPgUrl(url) }
  } catch (error) {
    return { ok: false, problem: (error as Error).message }
  }
}

/** One statement on a connection of its own. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, values?: unknown[]): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000, application_name: 'lockstep-bench' })
  client.on('error', () => {})
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end().catch(() => {})
  }
}

let schemaCounter = 0

/**
 * A schema name no other run, process or measurement uses: lockstep's rule (a lower-case
 * identifier of at most 54 bytes) with room for a warm-up suffix (`_w<pid>`).
 */
function freshSchemaName(impl: string): string {
  return `bench_${process.pid}_${Date.now().toString(36)}_${++schemaCounter}_${impl.slice(0, 1)}`
}

/** A worker's private scratch schema for its warm-up, beside the measured one. */
export function scratchSchemaName(schema: string): string {
  return `${schema}_w${process.pid}`
}

export async function dropSchema(url: string, schema: string): Promise<void> {
  // The name is ours (freshSchemaName), a plain identifier: safe to quote and inline.
  await adminQuery(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
}

/** Measured schemas that exist right now (created, not yet dropped), by URL. */
const live = new Map<string, string>()

/** Run `fn` on a new schema name, dropped afterwards (and by dropLiveSchemas on an interrupt). */
export async function withFreshSchema<T>(url: string, impl: string, fn: (schema: string) => Promise<T>): Promise<T> {
  const schema = freshSchemaName(impl)
  live.set(schema, url)
  try {
    return await fn(schema)
  } finally {
    await dropSchema(url, schema)
    live.delete(schema)
  }
}

/**
 * An interrupted run (Ctrl-C) skips the `finally` that drops its schemas: drop them here,
 * with the warm-up schemas of their workers (`<schema>_w<pid>`, which those workers drop
 * themselves unless they were stopped too).
 */
export async function dropLiveSchemas(): Promise<void> {
  for (const [schema, url] of live) {
    const scratch = await adminQuery<{ name: string }>(url, `SELECT nspname AS name FROM pg_namespace WHERE starts_with(nspname, $1)`, [`${schema}_w`])
    for (const { name } of scratch) await dropSchema(url, name)
    await dropSchema(url, schema)
    live.delete(schema)
  }
}

export interface PgCounts {
  tasks: number
  done: number
  runs: number
  events: number
  doubleClaimed: number
}

/** The same counts as the SQLite check (scenarios.ts), read from one board's schema, in one snapshot. */
export async function countPgRows(spec: PostgresBoardSpec, eventsTable: string): Promise<PgCounts> {
  const s = `"${spec.schema}"`
  const [row] = await adminQuery<Record<keyof PgCounts, string>>(
    spec.url,
    `SELECT (SELECT count(*) FROM ${s}.tasks) AS tasks,
            (SELECT count(*) FROM ${s}.tasks WHERE status = 'done') AS done,
            (SELECT count(*) FROM ${s}.runs) AS runs,
            (SELECT count(*) FROM ${s}.${eventsTable}) AS events,
            (SELECT count(*) FROM (SELECT task_id FROM ${s}.runs GROUP BY task_id HAVING count(*) > 1) d) AS "doubleClaimed"`,
  )
  return {
    tasks: Number(row!.tasks),
    done: Number(row!.done),
    runs: Number(row!.runs),
    events: Number(row!.events),
    doubleClaimed: Number(row!.doubleClaimed),
  }
}

export interface ServerFacts {
  /** The URL, password masked. */
  where: string
  version: string
  /** The settings that move these figures most. */
  settings: Record<string, string>
}

const SETTINGS = ['synchronous_commit', 'fsync', 'wal_sync_method', 'shared_buffers', 'max_connections', 'commit_delay'] as const

/** Server version and settings; throws (with the driver's reason) when no server answers in 5 s. */
export async function serverFacts(url: string, where: string): Promise<ServerFacts> {
  const rows = await adminQuery<{ name: string; setting: string }>(
    url,
    `SELECT 'version' AS name, current_setting('server_version') AS setting
     UNION ALL SELECT name, current_setting(name) FROM unnest($1::text[]) AS name`,
    [SETTINGS],
  )
  const byName = new Map(rows.map((r) => [r.name, r.setting]))
  return {
    where,
    version: byName.get('version') ?? 'unknown',
    settings: Object.fromEntries(SETTINGS.map((name) => [name, byName.get(name) ?? 'unknown'])),
  }
}
