/**
 * createOrchestrator: open (or create) a lockstep file and get the task board.
 */
import { resolve } from 'node:path'
import { openDatabase, writeTransaction } from '../persistence/connection.js'
import { JournalQueries } from '../persistence/journal.js'
import { Kernel } from '../persistence/kernel.js'
import { migrate } from '../persistence/migrations.js'
import { SessionQueries } from '../persistence/sessions.js'
import { TaskQueries } from '../persistence/tasks.js'
import { ClosedError, InvalidInputError } from './errors.js'
import { JournalFeed } from './journal-feed.js'
import { Sessions, type SessionAdapter } from './sessions.js'
import { SqliteTaskBoard } from './task-board.js'
import { TimerLoop } from './timer-loop.js'
import type { Orchestrator, OrchestratorOptions, TaskDefaults } from './types.js'
import * as v from './validate.js'

export const DEFAULT_TASK_DEFAULTS: TaskDefaults = {
  leaseMs: 30_000,
  maxAttempts: 3,
  backoffBaseMs: 1_000,
  backoffMaxMs: 5 * 60_000,
}

export async function createOrchestrator(options: OrchestratorOptions = {}): Promise<Orchestrator> {
  const o = v.requireRecord(options, 'options')
  const path = o.path === undefined ? './lockstep.db' : v.requireString(o.path, 'path', 4_096)
  const synchronous = o.synchronous ?? 'NORMAL'
  if (!['OFF', 'NORMAL', 'FULL', 'EXTRA'].includes(synchronous as string)) {
    throw new InvalidInputError('synchronous must be OFF, NORMAL, FULL or EXTRA', { field: 'synchronous' })
  }
  const pollMs = v.optionalInt(o.pollMs, 'pollMs', 1, 60_000, 50)
  const busyRetryMs = v.optionalInt(o.busyRetryMs, 'busyRetryMs', 0, 3_600_000, 60_000)
  const maxPayloadBytes = v.optionalInt(o.maxPayloadBytes, 'maxPayloadBytes', 1, 256 * 1024 * 1024, 1024 * 1024)
  const d = v.requireRecord(o.defaults ?? {}, 'defaults')
  const defaults: TaskDefaults = {
    leaseMs: v.optionalInt(d.leaseMs, 'defaults.leaseMs', 1, 86_400_000, DEFAULT_TASK_DEFAULTS.leaseMs),
    maxAttempts: v.optionalInt(d.maxAttempts, 'defaults.maxAttempts', 1, 1_000, DEFAULT_TASK_DEFAULTS.maxAttempts),
    backoffBaseMs: v.optionalInt(d.backoffBaseMs, 'defaults.backoffBaseMs', 0, 86_400_000, DEFAULT_TASK_DEFAULTS.backoffBaseMs),
    backoffMaxMs: v.optionalInt(d.backoffMaxMs, 'defaults.backoffMaxMs', 0, 86_400_000, DEFAULT_TASK_DEFAULTS.backoffMaxMs),
  }
  const onError = options.onError ?? ((error: unknown) => console.error('[lockstep]', error))

  const db = openDatabase({ path, synchronous: synchronous as 'NORMAL', busyTimeoutMs: options.busyTimeoutMs })
  try {
    // Two processes opening a fresh file at once: the write lock serializes the migration.
    await writeTransaction(db, () => migrate(db, path), busyRetryMs)
  } catch (error) {
    db.close()
    throw error
  }

  const kernel = new Kernel(db, { now: options.now, busyRetryMs, onError })
  const queries = new TaskQueries(db)
  kernel.register(queries.actorKind())
  const feed = new JournalFeed(new JournalQueries(db), pollMs, onError)
  const timers = new TimerLoop(kernel, pollMs, onError)

  let closed = false
  let closing: Promise<void> | null = null
  const inFlight = new Set<Promise<unknown>>()
  const guard = <T>(operation: () => Promise<T>): Promise<T> => {
    if (closed) return Promise.reject(new ClosedError())
    const promise = operation()
    inFlight.add(promise)
    const forget = () => inFlight.delete(promise)
    promise.then(forget, forget)
    return promise
  }

  kernel.onCommit((commit) => {
    if (commit.journal.length > 0) feed.wake()
    if (commit.earliestTimerDue !== null) timers.poke(commit.earliestTimerDue)
  })
  if (options.runTimers !== false) timers.start()

  const assertOpen = () => {
    if (closed) throw new ClosedError()
  }
  const tasks = new SqliteTaskBoard({ kernel, queries, feed, defaults, maxPayloadBytes, busyRetryMs, guard, assertOpen })
  const sessionQueries = new SessionQueries(db)
  const sessions = new Sessions(kernel, sessionQueries, feed, guard, busyRetryMs, onError)
  kernel.register(sessionQueries.actorKind(sessions.effects()))
  if (options.sessionAdapter) sessions.setAdapter(options.sessionAdapter as SessionAdapter)

  return {
    path: path === ':memory:' ? path : resolve(path),
    tasks,
    sessions,
    runDueTimers: () => guard(() => timers.runDue()),
    close() {
      closing ??= (async () => {
        // Worker pools drain first (bounded by their stopTimeoutMs) while the board still works.
        await tasks.stopWorkers()
        closed = true
        feed.close()
        await timers.stop()
        await Promise.allSettled([...inFlight])
        db.close()
      })()
      return closing
    },
  }
}
