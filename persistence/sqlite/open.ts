/**
 * Opening a SQLite file as an orchestrator's store: the connection (read-write with its
 * migration, or read-only), the write and read drivers, the journal source and the
 * background checkpointer, and how to close them all.
 */
import { resolve } from 'node:path'
import type { StoreDriver } from '../../src/core/kernel.js'
import type { JournalSource, ReadDriver } from '../store.js'
import { startCheckpointer } from './checkpointer.js'
import { openDatabase, openReadOnlyDatabase, writeTransaction, type Synchronous } from './connection.js'
import { JournalQueries } from './journal.js'
import { migrate } from './migrations.js'
import { SessionQueries } from './sessions.js'
import { SqliteDriver, SqliteReadDriver, SqliteReads, SqliteStore } from './store.js'
import { TaskQueries } from './tasks.js'

/** How often the background checkpointer copies the WAL back into the database file. */
const CHECKPOINT_INTERVAL_MS = 100

export interface SqliteOpenOptions {
  path: string
  readOnly: boolean
  synchronous: Synchronous
  checkpoint: 'background' | 'inline'
  busyTimeoutMs: number
  busyRetryMs: number
  now?: () => number
}

/** A store opened for an orchestrator. */
export interface OpenedStore {
  /** The file's absolute path (or ':memory:'). */
  where: string
  driver: StoreDriver
  reads: ReadDriver
  journal: JournalSource
  /** A local commit is final at once and no lower seq commits later: one writer at a time. */
  localCommitsInOrder: true
  close(): Promise<void>
}

export async function openSqlite(o: SqliteOpenOptions): Promise<OpenedStore> {
  const { path, readOnly, busyRetryMs } = o
  // A reader never checkpoints: that writes the database file.
  const background = o.checkpoint === 'background' && path !== ':memory:' && !readOnly
  const db = readOnly
    ? openReadOnlyDatabase(path, { busyTimeoutMs: o.busyTimeoutMs })
    : openDatabase(
        {
          path,
          synchronous: o.synchronous,
          busyTimeoutMs: o.busyTimeoutMs,
          // With the background checkpointer, SQLite's own checkpoint is only a safety net.
          walAutocheckpointPages: background ? 10_000 : 1_000,
        },
        busyRetryMs,
      )
  if (!readOnly) {
    try {
      // Two processes opening a fresh file at once: the write lock serializes the migration.
      await writeTransaction(db, () => migrate(db, path), busyRetryMs)
    } catch (error) {
      db.close()
      throw error
    }
  }
  const checkpointer = background ? startCheckpointer(path, CHECKPOINT_INTERVAL_MS) : null
  const tasks = new TaskQueries(db)
  const sessions = new SessionQueries(db)
  return {
    where: path === ':memory:' ? path : resolve(path),
    driver: new SqliteDriver(db, new SqliteStore(db, tasks, sessions), busyRetryMs, o.now),
    reads: new SqliteReadDriver(new SqliteReads(tasks, sessions), busyRetryMs),
    journal: new JournalQueries(db),
    localCommitsInOrder: true,
    async close() {
      await checkpointer?.stop()
      db.close()
    },
  }
}
