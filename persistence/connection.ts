/**
 * Opening the SQLite file (pragmas) and the write-transaction
 * runner that keeps SQLITE_BUSY away from callers.
 */
import Database from 'better-sqlite3'
import { StoreBusyError, StoreOpenError } from '../src/errors.js'

export type Db = Database.Database

export type Synchronous = 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA'

export interface ConnectionOptions {
  /** File path, or ':memory:'. */
  path: string
  /**
   * SQLite `synchronous`. NORMAL (default, with WAL) survives a crash of any process;
   * FULL also survives power loss or an OS crash, at several times the commit cost.
   */
  synchronous?: Synchronous
  /** How long SQLite itself waits for the write lock before lockstep's own retry takes over. */
  busyTimeoutMs?: number
  /**
   * SQLite's automatic checkpoint threshold in WAL pages (SQLite's default 1000). With a
   * background checkpointer it is only a safety net and set much higher.
   */
  walAutocheckpointPages?: number
}

export function openDatabase(options: ConnectionOptions, busyRetryMs = 60_000): Db {
  let db: Db
  try {
    db = new Database(options.path)
  } catch (error) {
    throw new StoreOpenError(options.path, error)
  }
  try {
    // busy_timeout first: switching a fresh file to WAL takes a lock that other processes
    // opening the same file at the same moment contend for.
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 2000))}`)
    // WAL lets readers run beside the one writer, across processes.
    if (options.path !== ':memory:') retryBusySync(() => db.pragma('journal_mode = WAL'), busyRetryMs)
    db.pragma(`synchronous = ${options.synchronous ?? 'NORMAL'}`)
    db.pragma(`wal_autocheckpoint = ${Math.max(0, Math.floor(options.walAutocheckpointPages ?? 1000))}`)
    db.pragma('foreign_keys = ON')
    return db
  } catch (error) {
    db.close()
    // Not a database (or an unreadable one): say so with a code, not a raw SqliteError.
    if ((error as { code?: string }).code === 'SQLITE_NOTADB' || (error as { code?: string }).code === 'SQLITE_CORRUPT') {
      throw new StoreOpenError(options.path, error)
    }
    throw error
  }
}

const BUSY_CODES = new Set(['SQLITE_BUSY', 'SQLITE_BUSY_SNAPSHOT', 'SQLITE_BUSY_RECOVERY', 'SQLITE_BUSY_TIMEOUT', 'SQLITE_LOCKED', 'SQLITE_LOCKED_SHAREDCACHE'])

export function isBusyError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && BUSY_CODES.has(code)
}

// One wrapper per connection: better-sqlite3 builds four closures per db.transaction() call.
const immediateRunners = new WeakMap<Db, (fn: () => unknown) => unknown>()
function immediate<T>(db: Db, fn: () => T): T {
  let run = immediateRunners.get(db)
  if (!run) {
    run = db.transaction((body: () => unknown) => body()).immediate
    immediateRunners.set(db, run)
  }
  return run(fn) as T
}

const pause = new Int32Array(new SharedArrayBuffer(4))

/** Busy retry for the few synchronous steps of opening a file (no event loop to yield to yet). */
function retryBusySync<T>(fn: () => T, busyRetryMs: number): T {
  const started = Date.now()
  for (let delay = 2; ; delay = Math.min(delay * 2, 100)) {
    try {
      return fn()
    } catch (error) {
      if (!isBusyError(error)) throw error
      const waited = Date.now() - started
      if (waited >= busyRetryMs) throw new StoreBusyError(waited, error)
      Atomics.wait(pause, 0, 0, delay / 2 + Math.random() * delay)
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Run `fn` as one IMMEDIATE transaction (the write lock is taken at BEGIN, so a
 * read-then-write can never fail half-way with SQLITE_BUSY_SNAPSHOT), with busy retry.
 * `fn` must be synchronous and must not have side effects outside the database,
 * because a retried transaction runs it again.
 */
export function writeTransaction<T>(db: Db, fn: () => T, busyRetryMs = 60_000): Promise<T> {
  return withBusyRetry(() => immediate(db, fn), busyRetryMs)
}

/**
 * Run `fn`; if SQLite reports the database busy or locked past its own busy_timeout,
 * retry with jittered exponential backoff, without blocking the event loop, for up to
 * `busyRetryMs`; only then give up with STORE_BUSY. Reads use it too: in WAL mode they
 * rarely see SQLITE_BUSY, but they can (WAL recovery after a crash, a restart checkpoint).
 */
export async function withBusyRetry<T>(fn: () => T, busyRetryMs = 60_000): Promise<T> {
  const started = Date.now()
  let delay = 2
  for (;;) {
    try {
      return fn()
    } catch (error) {
      if (!isBusyError(error)) throw error
      const waited = Date.now() - started
      if (waited >= busyRetryMs) throw new StoreBusyError(waited, error)
      await sleep(delay / 2 + Math.random() * delay)
      delay = Math.min(delay * 2, 250)
    }
  }
}
