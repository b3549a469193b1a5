/**
 * Opening a store for the inspector: a SQLite file or a PostgreSQL schema, each read-only
 * at the database. PostgreSQL's modules (and `pg`) are loaded only for a URL, so
 * SQLite-only users never load them.
 */
import { openSqliteInspect } from './sqlite/inspect.js'
import type { InspectSource } from './store.js'

/** Where the inspector reads: a SQLite file, or a PostgreSQL URL with its schema and pool options. */
export type InspectTarget = { path: string } | { url: string; schema?: string; pool?: Record<string, unknown> }

export async function openInspectSource(target: InspectTarget): Promise<InspectSource> {
  if ('url' in target) {
    const { openPostgresInspect } = await import('./postgres/inspect.js')
    return openPostgresInspect(target.url, {
      ...(target.schema === undefined ? {} : { schema: target.schema }),
      ...(target.pool === undefined ? {} : { pool: target.pool as Record<string, never> }),
    })
  }
  return openSqliteInspect(target.path)
}
