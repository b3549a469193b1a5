/**
 * Opening the SQLite file (pragmas; read-write or read-only, and refusing files that are
 * not lockstep's) and the write-transaction runner that keeps SQLITE_BUSY away from
 * callers and writes away from read-only connections.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs'
import Database from 'better-sqlite3'
import { ReadOnlyError, StoreBusyError, StoreOpenError } from '../../src/errors.js'
import { checkReadable, checkWritable } from './migrations.js'

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

/** SQLite codes that mean "this file cannot be opened (for writing) by this process". */
const OPEN_FAILED_CODES = /^SQLITE_(NOTADB|CORRUPT|CANTOPEN|PERM|AUTH|IOERR|READONLY)/

/**
 * Open a file for writing: a lockstep file (migrated by the caller), a new file, or an
 * empty one. A file this process may not write, or another application's database, is
 * refused with STORE_OPEN_FAILED before anything is written to it.
 */
export function openDatabase(options: ConnectionOptions, busyRetryMs = 60_000): Db {
  const { path } = options
  if (path !== ':memory:' && existsSync(path)) {
    try {
      accessSync(path, constants.R_OK | constants.W_OK)
    } catch (error) {
      // Otherwise SQLite silently opens it read-only and the first write fails with a raw SQLITE_READONLY.
      throw new StoreOpenError(path, error, 'it is not writable by this process; open it with readOnly: true to read it')
    }
  }
  let db: Db
  try {
    db = new Database(path)
  } catch (error) {
    throw new StoreOpenError(path, error)
  }
  try {
    // busy_timeout first: switching a fresh file to WAL takes a lock that other processes
    // opening the same file at the same moment contend for.
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 2000))}`)
    // Before any pragma that writes (journal_mode = WAL): never convert someone else's database.
    if (path !== ':memory:') retryBusySync(() => checkWritable(db, path), busyRetryMs)
    // WAL lets readers run beside the one writer, across processes.
    if (options.path !== ':memory:') retryBusySync(() => db.pragma('journal_mode = WAL'), busyRetryMs)
    db.pragma(`synchronous = ${options.synchronous ?? 'NORMAL'}`)
    db.pragma(`wal_autocheckpoint = ${Math.max(0, Math.floor(options.walAutocheckpointPages ?? 1000))}`)
    db.pragma('foreign_keys = ON')
    return db
  } catch (error) {
    db.close()
    throw asOpenError(path, error)
  }
}

/**
 * Open an existing lockstep file read-only: no WAL switch, no migration, nothing written
 * (SQLite refuses writes on the connection, and writeTransaction refuses before any SQL
 * with READ_ONLY). A missing or empty file, another application's database or garbage is
 * STORE_OPEN_FAILED; a lockstep schema older or newer than this version is
 * SCHEMA_TOO_OLD / SCHEMA_TOO_NEW (a reader cannot migrate it). `minSchema` lets a reader
 * that needs fewer tables (the inspector) accept older files.
 */
export function openReadOnlyDatabase(path: string, options: { busyTimeoutMs?: number; minSchema?: number } = {}): Db {
  if (path === ':memory:') throw new StoreOpenError(path, null, 'an in-memory database cannot be opened read-only: there is nothing to read')
  let size: number
  try {
    size = statSync(path).size
  } catch (error) {
    throw new StoreOpenError(path, error, "no such file (a read-only open never creates one; run 'lockstep init' first)")
  }
  // SQLite would take an empty file for an empty database; a reader has nothing to read in it.
  if (size === 0) throw new StoreOpenError(path, null, 'the file is empty, not a lockstep database')
  let db: Db
  try {
    db = new Database(path, { readonly: true, fileMustExist: true })
  } catch (error) {
    throw new StoreOpenError(path, error)
  }
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 2000))}`)
    // Belt and braces: even a statement that slipped past writeTransaction cannot write.
    db.pragma('query_only = ON')
    checkReadable(db, path, options.minSchema)
    return db
  } catch (error) {
    db.close()
    throw asOpenError(path, error)
  }
}

/** A raw SqliteError of opening as STORE_OPEN_FAILED (lockstep errors pass through). */
function asOpenError(path: string, error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !OPEN_FAILED_CODES.test(code)) return error
  if (code === 'SQLITE_READONLY_DIRECTORY' || code === 'SQLITE_CANTOPEN') {
    // A WAL file is read through its -shm/-wal files, which SQLite must be able to create
    // next to it when no other connection has them open.
    return new StoreOpenError(
      path,
      error,
      `to read a WAL file that no other process has open, SQLite must create ${path}-shm and ${path}-wal beside it, and this process cannot write that directory (${(error as Error).message})`,
    )
  }
  return new StoreOpenError(path, error)
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

// Inside a transaction, better-sqlite3's transaction() runs its function in a SAVEPOINT:
// rolled back to it (and released) if the function throws, released if it returns.
const isolatedRunners = new WeakMap<Db, (fn: () => unknown) => unknown>()
/** Run `fn` inside the open transaction so that, if it throws, what it wrote is undone and nothing else. */
export function isolated<T>(db: Db, fn: () => T): T {
  let run = isolatedRunners.get(db)
  if (!run) {
    run = db.transaction((body: () => unknown) => body())
    isolatedRunners.set(db, run)
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
  // Every write of lockstep comes through here: a read-only connection refuses before any SQL.
  if (db.readonly) return Promise.reject(new ReadOnlyError(db.name))
  return withBusyRetry(() => immediate(db, fn), busyRetryMs)
}

/**
 * Run `fn`; if SQLite reports the database busy or locked past its own busy_timeout,
 * retry with jittered exponential backoff, without blocking the event loop, for up to
 * `busyRetryMs`; only then give up with STORE_BUSY. Reads use it too: in WAL mode they
 * rarely see SQLITE_BUSY, but they can (WAL recovery after a crash, a restart checkpoint).
 */
export async function withBusyRetry<T>(fn: () => T | Promise<T>, busyRetryMs = 60_000): Promise<T> {
  const started = Date.now()
  let delay = 2
  for (;;) {
    try {
      // A promise is awaited here, so a busy error of an async `fn` is retried like a
      // thrown one; a plain value is not (an await costs every read a microtask).
      const value = fn()
      return value instanceof Promise ? await value : value
    } catch (error) {
      if (!isBusyError(error)) throw error
      const waited = Date.now() - started
      if (waited >= busyRetryMs) throw new StoreBusyError(waited, error)
      await sleep(delay / 2 + Math.random() * delay)
      delay = Math.min(delay * 2, 250)
    }
  }
}
