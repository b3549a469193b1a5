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
import { notifyWake, WakeListener, type Wake } from './notify.js'
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

/** What a wake-up says: the journal moved, and (when known) the earliest timer a commit set. */
export interface CommitWake {
  /**
   * The earliest due time (database clock) of the timers the announced commits set, or
   * null when they set none: a timer loop need not look before it. 0 after a reconnect
   * (the listener was deaf: look now).
   */
  timerDue: number | null
}

/** How processes sharing a store wake each other after a commit, sooner than their next poll. */
export interface StoreWakes {
  /** Listen; `onWake` runs when another process (or this one) announced a commit. */
  start(onWake: (wake: CommitWake) => void): Promise<void>
  /** A commit wrote journal entries or timers (the earliest due, or null): tell the others (after commit, coalesced). */
  announce(earliestTimerDue: number | null): void
  close(): Promise<void>
}

/**
 * The wake-up of one payload: `{"k":"commit"}` says the journal moved;
 * `{"k":"timer","ids":["<due ms>"]}` also gives the earliest timer the commits set, so
 * every other process's timer loop learns when to look without a query (every claim sets
 * a lease timer: a look per process per commit was most of the cost of 4 processes).
 */
export function commitWakeOf(wake: Wake): CommitWake {
  if (wake.kind === 'timer' && wake.ids !== null && wake.ids.length === 1) {
    const due = Number(wake.ids[0])
    if (Number.isSafeInteger(due) && due >= 0) return { timerDue: due }
  }
  // A reconnect ('*'), or a payload this version does not know: look now.
  if (wake.kind !== 'commit') return { timerDue: 0 }
  return { timerDue: null }
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
  /** The earliest timer of the commits not announced yet (null: none set one). */
  let timerDue: number | null = null
  const send = () => {
    inFlight = true
    again = false
    const due = timerDue
    timerDue = null
    const sent = due === null ? notifyWake(conn.pool, conn.schema, 'commit', []) : notifyWake(conn.pool, conn.schema, 'timer', [String(due)])
    sent
      .catch(() => {}) // a lost wake-up only delays others until their next poll
      .finally(() => {
        inFlight = false
        if (again && !closed) send()
      })
  }
  return {
    async start(onWake) {
      listener = new WakeListener(conn, { onWake: (wake) => onWake(commitWakeOf(wake)) })
      await listener.start()
    },
    announce(earliestTimerDue) {
      // A read-only connection cannot NOTIFY; a reader commits nothing to announce anyway.
      if (closed || conn.readOnly) return
      if (earliestTimerDue !== null) timerDue = timerDue === null ? earliestTimerDue : Math.min(timerDue, earliestTimerDue)
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
