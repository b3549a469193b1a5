/**
 * Opening a PostgreSQL schema for use: the pool, then the migrations. One call for the
 * store and the tools, so none of them can forget to migrate or leak a pool when the
 * migration refuses (SCHEMA_TOO_NEW, another application's schema).
 */
import type { StoreDriver } from '../../src/core/kernel.js'
import type { JournalSource, ReadDriver } from '../store.js'
import { openPool, type PgConnection, type PgOpenOptions } from './connection.js'
import { migrate, type MigrateResult } from './migrations.js'
import { PgJournalSource, PgReadDriver, PgReads } from './reads.js'
import { PgDriver } from './store.js'

export async function openPostgres(url: unknown, options: PgOpenOptions = {}): Promise<PgConnection & { migrated: MigrateResult }> {
  const conn = await openPool(url, options)
  try {
    return Object.assign(conn, { migrated: await migrate(conn) })
  } catch (error) {
    await conn.close().catch(() => {})
    throw error
  }
}

/** A PostgreSQL schema opened as an orchestrator's store (the counterpart of sqlite/open.ts). */
export interface OpenedPostgresStore {
  /** The URL without its password, and the schema. */
  where: string
  driver: StoreDriver
  reads: ReadDriver
  journal: JournalSource
  /** Commits land out of seq order here: the journal feed reads only up to the horizon. */
  localCommitsInOrder: false
  close(): Promise<void>
}

export async function openPostgresStore(url: string, options: PgOpenOptions = {}): Promise<OpenedPostgresStore> {
  const conn = await openPostgres(url, options)
  try {
    const driver = await PgDriver.open(conn)
    return {
      where: `${conn.where} (schema ${conn.schema.name})`,
      driver,
      reads: new PgReadDriver(conn, new PgReads(conn)),
      journal: new PgJournalSource(conn),
      localCommitsInOrder: false,
      close: () => conn.close(),
    }
  } catch (error) {
    await conn.close().catch(() => {})
    throw error
  }
}
