/**
 * Opening a PostgreSQL schema for use: the pool, then the migrations. One call for the
 * store and the tools, so none of them can forget to migrate or leak a pool when the
 * migration refuses (SCHEMA_TOO_NEW, another application's schema).
 */
import { openPool, type PgConnection, type PgOpenOptions } from './connection.js'
import { migrate, type MigrateResult } from './migrations.js'

export async function openPostgres(url: unknown, options: PgOpenOptions = {}): Promise<PgConnection & { migrated: MigrateResult }> {
  const conn = await openPool(url, options)
  try {
    return Object.assign(conn, { migrated: await migrate(conn) })
  } catch (error) {
    await conn.close().catch(() => {})
    throw error
  }
}
