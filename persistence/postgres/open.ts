/**
 * Opening a PostgreSQL schema for use: the pool, then the migrations. One call for the
 * store and the tools, so none of them can forget to migrate or leak a pool when the
 * migration refuses (SCHEMA_TOO_NEW, another application's schema).
 */
import type { StoreDriver } from '../../src/core/kernel.js'
import { ReadOnlyError } from '../../src/errors.js'
import type { JournalSource, ReadDriver } from '../store.js'
import { openPool, type PgConnection, type PgOpenOptions } from './connection.js'
import { checkReadable, migrate, type MigrateResult } from './migrations.js'
import { notifyWake, WakeListener } from './notify.js'
import { PgJournalSource, PgReadDriver, PgReads } from './reads.js'
import { PgDriver } from './store.js'

export async function openPostgres(url: unknown, options: PgOpenOptions = {}): Promise<PgConnection & { migrated: MigrateResult }> {
  const conn = await openPool(url, options)
  try {
    if (conn.readOnly) {
      // A reader never migrates: the schema must already be a board it can read.
      const version = await checkReadable(conn)
      return Object.assign(conn, { migrated: { from: version, to: version, applied: [] } })
    }
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
  /** Wake-ups between hosts: LISTEN/NOTIFY on the schema's channel (polling stays the fallback). */
  wakes: StoreWakes
  close(): Promise<void>
}

/** How processes sharing a store wake each other after a commit, sooner than their next poll. */
export interface StoreWakes {
  /** Listen; `onWake` runs when another process (or this one) announced a commit. */
  start(onWake: () => void): Promise<void>
  /** A commit wrote journal entries or timers: tell the others (after commit, coalesced). */
  announce(): void
  close(): Promise<void>
}

/**
 * NOTIFY after commit, never inside the transaction (PostgreSQL would hold a database-wide
 * lock from the NOTIFY to the commit's flush, serializing commits), at most one in flight:
 * commits that happen meanwhile are announced by one more NOTIFY when it returns.
 */
function wakesOf(conn: PgConnection): StoreWakes {
  let listener: WakeListener | null = null
  let inFlight = false
  let again = false
  let closed = false
  const send = () => {
    inFlight = true
    again = false
    notifyWake(conn.pool, conn.schema, 'commit', [])
      .catch(() => {}) // a lost wake-up only delays others until their next poll
      .finally(() => {
        inFlight = false
        if (again && !closed) send()
      })
  }
  return {
    async start(onWake) {
      listener = new WakeListener(conn, { onWake: () => onWake() })
      await listener.start()
    },
    announce() {
      // A read-only connection cannot NOTIFY; a reader commits nothing to announce anyway.
      if (closed || conn.readOnly) return
      if (inFlight) again = true
      else send()
    },
    async close() {
      closed = true
      await listener?.close()
    },
  }
}

export async function openPostgresStore(url: string, options: PgOpenOptions = {}): Promise<OpenedPostgresStore> {
  const conn = await openPostgres(url, options)
  try {
    const where = `${conn.where} (schema ${conn.schema.name})`
    const writer = await PgDriver.open(conn)
    // A reader's writes are refused before any SQL, as on SQLite; the server would refuse them too.
    const driver: StoreDriver = conn.readOnly
      ? { write: () => Promise.reject(new ReadOnlyError(where)), now: () => writer.now(), nextTimerDue: () => writer.nextTimerDue() }
      : writer
    return {
      where,
      driver,
      reads: new PgReadDriver(conn, new PgReads(conn)),
      journal: new PgJournalSource(conn),
      localCommitsInOrder: false,
      wakes: wakesOf(conn),
      close: () => conn.close(),
    }
  } catch (error) {
    await conn.close().catch(() => {})
    throw error
  }
}
