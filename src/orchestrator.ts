/**
 * createOrchestrator: open (or create) a lockstep file and get the task board.
 */
import { resolve } from 'node:path'
import { openDatabase, writeTransaction } from '../persistence/connection.js'
import { JournalQueries } from '../persistence/journal.js'
import { Kernel, type MachineDefinition } from '../persistence/kernel.js'
import { TASK_MACHINE_ID } from '../machines/task.js'
import { SESSION_MACHINE_ID } from '../machines/session.js'
import { startCheckpointer } from '../persistence/checkpointer.js'
import { migrate } from '../persistence/migrations.js'
import { SessionQueries } from '../persistence/sessions.js'
import { TaskQueries } from '../persistence/tasks.js'
import { ClosedError, InvalidInputError } from './errors.js'
import { Intake } from './intake.js'
import { startInspector } from './inspector/server.js'
import { JournalFeed } from './journal-feed.js'
import { Sessions, type SessionAdapter } from './sessions.js'
import { SqliteTaskBoard } from './task-board.js'
import { TimerLoop } from './timer-loop.js'
import type { Orchestrator, OrchestratorOptions, ReloadOptions, ReloadResult, TaskDefaults } from './types.js'
import * as v from './validate.js'

/** How often the background checkpointer copies the WAL back into the database file. */
const CHECKPOINT_INTERVAL_MS = 100

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

  const checkpoint = o.checkpoint ?? 'background'
  if (checkpoint !== 'background' && checkpoint !== 'inline') {
    throw new InvalidInputError("checkpoint must be 'background' or 'inline'", { field: 'checkpoint' })
  }
  const background = checkpoint === 'background' && path !== ':memory:'
  const db = openDatabase(
    {
      path,
      synchronous: synchronous as 'NORMAL',
      busyTimeoutMs: options.busyTimeoutMs,
      // With the background checkpointer, SQLite's own checkpoint is only a safety net.
      walAutocheckpointPages: background ? 10_000 : 1_000,
    },
    busyRetryMs,
  )
  try {
    // Two processes opening a fresh file at once: the write lock serializes the migration.
    await writeTransaction(db, () => migrate(db, path), busyRetryMs)
  } catch (error) {
    db.close()
    throw error
  }

  const intake = new Intake()
  const guard = <T>(operation: () => Promise<T>): Promise<T> => intake.run(operation)
  let closing: Promise<void> | null = null

  const checkpointer = background ? startCheckpointer(path, CHECKPOINT_INTERVAL_MS) : null
  const kernel = new Kernel(db, { now: options.now, busyRetryMs, onError })
  const queries = new TaskQueries(db)
  kernel.register(queries.actorKind())
  const feed = new JournalFeed(new JournalQueries(db), pollMs, onError)
  // Timer deliveries enter through the same intake as calls, so a reload pauses them too.
  const timers = new TimerLoop(kernel, pollMs, onError, guard)

  kernel.onCommit((commit) => {
    if (commit.journal.length > 0) feed.wake(commit.journal)
    if (commit.earliestTimerDue !== null) timers.poke(commit.earliestTimerDue)
  })
  if (options.runTimers !== false) timers.start()

  const assertOpen = () => {
    if (intake.isClosed) throw new ClosedError()
  }
  const tasks = new SqliteTaskBoard({ kernel, queries, feed, defaults, maxPayloadBytes, busyRetryMs, guard, assertOpen })
  const sessionQueries = new SessionQueries(db)
  const sessions = new Sessions(kernel, sessionQueries, feed, guard, busyRetryMs, onError, maxPayloadBytes)
  kernel.register(sessionQueries.actorKind(sessions.effects()))
  if (options.sessionAdapter) sessions.setAdapter(options.sessionAdapter as SessionAdapter)

  return {
    path: path === ':memory:' ? path : resolve(path),
    tasks,
    sessions,
    runDueTimers: () => guard(() => timers.runDue()),
    barrier: (fn) => intake.exclusive(fn),
    // The inspector draws and replays the machine definitions in force in this process,
    // read at each use, so a later reload shows up too.
    inspect: (inspectOptions = {}) =>
      startInspector(path, {
        ...inspectOptions,
        machines: Object.fromEntries([TASK_MACHINE_ID, SESSION_MACHINE_ID].map((id) => [id, liveDefinition(kernel, id)])),
      }),
    reload: (reloadOptions = {}) => intake.exclusive(() => reload(kernel, reloadOptions)),
    close() {
      closing ??= (async () => {
        // Worker pools drain first (bounded by their stopTimeoutMs) while the board still works.
        await tasks.stopWorkers()
        await intake.close()
        feed.close()
        await timers.stop()
        await checkpointer?.stop()
        db.close()
      })()
      return closing
    },
  }
}

/** A { machine, version } whose fields read the kernel's current definition. */
function liveDefinition(kernel: Kernel, machineId: string): MachineDefinition {
  return {
    get machine() {
      return kernel.definition(machineId).machine
    },
    get version() {
      return kernel.definition(machineId).version
    },
  }
}

const KIND_BY_NAME = { task: TASK_MACHINE_ID, session: SESSION_MACHINE_ID } as const

/**
 * Swap machine definitions and migrate every persisted snapshot in one transaction: if
 * any actor cannot be migrated or restored, nothing changes and the error names it.
 * Runs inside the intake barrier (no call or timer delivery is in progress).
 */
async function reload(kernel: Kernel, options: ReloadOptions): Promise<ReloadResult> {
  const o = v.requireRecord(options, 'reload options')
  const machines = v.requireRecord(o.machines ?? {}, 'machines')
  const swaps: Array<[string, MachineDefinition]> = []
  for (const [name, definition] of Object.entries(machines)) {
    const machineId = KIND_BY_NAME[name as keyof typeof KIND_BY_NAME]
    if (!machineId) throw new InvalidInputError(`machines.${name}: unknown machine (task or session)`, { field: `machines.${name}` })
    const d = v.requireRecord(definition, `machines.${name}`)
    if (!d.machine || typeof (d.machine as { transition?: unknown }).transition !== 'function') {
      throw new InvalidInputError(`machines.${name}.machine must be an XState machine`, { field: `machines.${name}.machine` })
    }
    const version = v.optionalInt(d.version, `machines.${name}.version`, 1, 1_000_000, 0)
    if (version === 0) throw new InvalidInputError(`machines.${name}.version is required`, { field: `machines.${name}.version` })
    swaps.push([machineId, definition as MachineDefinition])
  }
  const previous = swaps.map(([machineId]) => [machineId, kernel.definition(machineId)] as const)
  try {
    const migrated = await kernel.write((tx) => {
      const counts: Record<string, number> = {}
      for (const [machineId, definition] of swaps) {
        kernel.replaceMachine(machineId, definition)
        counts[machineId] = kernel.migrateAll(tx, machineId)
      }
      return counts
    })
    return { machines: swaps.map(([machineId, d]) => ({ machineId, version: d.version, migrated: migrated[machineId] ?? 0 })) }
  } catch (error) {
    // The transaction rolled back: put the old definitions back too.
    for (const [machineId, definition] of previous) kernel.replaceMachine(machineId, definition)
    throw error
  }
}
