/**
 * createOrchestrator: open (or create) a lockstep store and assemble the runtime over it:
 * the committed step, the journal feed, timers, the task board and sessions. The store is
 * opened by its own folder (persistence/sqlite/open.ts, persistence/postgres/open.ts),
 * read-write or, for an existing board, read-only (no migration, no timers; SQLite: no WAL
 * switch, no checkpointer; PostgreSQL: connections read-only at the server).
 */
import { SESSION_MACHINE_ID } from '../machines/session.js'
import { TASK_MACHINE_ID } from '../machines/task.js'
import type { Synchronous } from '../persistence/sqlite/connection.js'
import { openSqlite } from '../persistence/sqlite/open.js'
import { Kernel, type MachineDefinition } from './core/kernel.js'
import { sessionKind } from './core/session-kind.js'
import { taskKind } from './core/task-kind.js'
import { ClosedError, InvalidInputError, ReadOnlyError } from './errors.js'
import { Intake } from './intake.js'
import { INSPECTOR_OPTIONS, registerInspectTarget, startInspector } from './tools/inspector/server.js'
import { JournalFeed } from './journal-feed.js'
import { Sessions, type SessionAdapter } from './sessions.js'
import { StoreTaskBoard } from './task-board.js'
import { TimerLoop } from './timer-loop.js'
import type { Orchestrator, OrchestratorOptions, ReloadOptions, ReloadResult, TaskDefaults } from './types.js'
import * as v from './validate.js'

export const DEFAULT_TASK_DEFAULTS: TaskDefaults = {
  leaseMs: 30_000,
  maxAttempts: 3,
  backoffBaseMs: 1_000,
  backoffMaxMs: 5 * 60_000,
}

const ORCHESTRATOR_OPTIONS = [
  'path',
  'url',
  'schema',
  'pool',
  'readOnly',
  'synchronous',
  'checkpoint',
  'busyTimeoutMs',
  'busyRetryMs',
  'pollMs',
  'defaults',
  'maxPayloadBytes',
  'now',
  'onError',
  'runTimers',
  'sessionAdapter',
] as const satisfies ReadonlyArray<keyof OrchestratorOptions>
const DEFAULTS_OPTIONS = ['leaseMs', 'maxAttempts', 'backoffBaseMs', 'backoffMaxMs'] as const satisfies ReadonlyArray<keyof TaskDefaults>
const RELOAD_OPTIONS = ['machines'] as const satisfies ReadonlyArray<keyof ReloadOptions>
const MACHINE_DEFINITION_KEYS = ['machine', 'version', 'migrations'] as const
// orch.inspect() passes the machines in force itself.
const ORCH_INSPECT_OPTIONS = INSPECTOR_OPTIONS.filter((key) => key !== 'machines')

export async function createOrchestrator(options: OrchestratorOptions = {}): Promise<Orchestrator> {
  const o = v.requireOptions(options, 'options', ORCHESTRATOR_OPTIONS)
  const url = o.url === undefined ? null : v.requireString(o.url, 'url', 4_096)
  if (url !== null) {
    if (!/^postgres(ql)?:\/\//i.test(url)) throw new InvalidInputError('url must be a postgres:// or postgresql:// URL', { field: 'url' })
    // Options of the other store are refused, not ignored.
    for (const name of ['path', 'synchronous', 'checkpoint', 'busyTimeoutMs', 'now'] as const) {
      if (o[name] !== undefined) throw new InvalidInputError(`${name} is an option of SQLite files, not of a PostgreSQL url`, { field: name })
    }
  } else {
    for (const name of ['schema', 'pool'] as const) {
      if (o[name] !== undefined) throw new InvalidInputError(`${name} is an option of a PostgreSQL url`, { field: name })
    }
  }
  const path = o.path === undefined ? './lockstep.db' : v.requireString(o.path, 'path', 4_096)
  const readOnly = v.optionalBoolean(o.readOnly, 'readOnly', false)
  if (readOnly && path === ':memory:') throw new InvalidInputError('readOnly needs a database file: an in-memory database has nothing to read', { field: 'readOnly' })
  const synchronous = o.synchronous ?? 'NORMAL'
  if (!['OFF', 'NORMAL', 'FULL', 'EXTRA'].includes(synchronous as string)) {
    throw new InvalidInputError('synchronous must be OFF, NORMAL, FULL or EXTRA', { field: 'synchronous' })
  }
  const pollMs = v.optionalInt(o.pollMs, 'pollMs', 1, 60_000, 50)
  const busyRetryMs = v.optionalInt(o.busyRetryMs, 'busyRetryMs', 0, 3_600_000, 60_000)
  const maxPayloadBytes = v.optionalInt(o.maxPayloadBytes, 'maxPayloadBytes', 1, 256 * 1024 * 1024, 1024 * 1024)
  const d = v.requireOptions(o.defaults ?? {}, 'defaults', DEFAULTS_OPTIONS)
  const defaults: TaskDefaults = {
    leaseMs: v.optionalInt(d.leaseMs, 'defaults.leaseMs', 1, 86_400_000, DEFAULT_TASK_DEFAULTS.leaseMs),
    maxAttempts: v.optionalInt(d.maxAttempts, 'defaults.maxAttempts', 1, 1_000, DEFAULT_TASK_DEFAULTS.maxAttempts),
    backoffBaseMs: v.optionalInt(d.backoffBaseMs, 'defaults.backoffBaseMs', 0, 86_400_000, DEFAULT_TASK_DEFAULTS.backoffBaseMs),
    backoffMaxMs: v.optionalInt(d.backoffMaxMs, 'defaults.backoffMaxMs', 0, 86_400_000, DEFAULT_TASK_DEFAULTS.backoffMaxMs),
  }
  for (const name of ['now', 'onError'] as const) {
    if (o[name] !== undefined && typeof o[name] !== 'function') throw new InvalidInputError(`${name} must be a function`, { field: name })
  }
  const adapter = o.sessionAdapter as { prompt?: unknown; abort?: unknown } | undefined
  // Checked before the file is opened: a refusal after it would leave a connection and threads behind.
  if (adapter !== undefined && (typeof adapter !== 'object' || adapter === null || typeof adapter.prompt !== 'function' || typeof adapter.abort !== 'function')) {
    throw new InvalidInputError('sessionAdapter needs prompt() and abort() functions', { field: 'sessionAdapter' })
  }
  const runTimers = v.optionalBoolean(o.runTimers, 'runTimers', true)
  const busyTimeoutMs = v.optionalInt(o.busyTimeoutMs, 'busyTimeoutMs', 0, 3_600_000, 2_000)
  const onError = options.onError ?? ((error: unknown) => console.error('[lockstep]', error))

  const checkpoint = o.checkpoint ?? 'background'
  if (checkpoint !== 'background' && checkpoint !== 'inline') {
    throw new InvalidInputError("checkpoint must be 'background' or 'inline'", { field: 'checkpoint' })
  }
  const store =
    url !== null
      ? // Loaded only for PostgreSQL: SQLite users never load these modules (nor pg).
        await (await import('../persistence/postgres/open.js')).openPostgresStore(url, {
          schema: o.schema as string | undefined,
          pool: o.pool as Record<string, never> | undefined,
          retryBudgetMs: busyRetryMs,
          readOnly,
        })
      : await openSqlite({
          path,
          readOnly,
          synchronous: synchronous as Synchronous,
          checkpoint,
          busyTimeoutMs,
          busyRetryMs,
          now: options.now,
        })

  const intake = new Intake()
  const guard = <T>(operation: () => Promise<T>): Promise<T> => intake.run(operation)
  let closing: Promise<void> | null = null

  const kernel = new Kernel(store.driver, { onError })
  kernel.register(taskKind())
  const feed = new JournalFeed(store.journal, pollMs, onError, store.localCommitsInOrder)
  try {
    await feed.open()
  } catch (error) {
    await store.close()
    throw error
  }
  // Timer deliveries enter through the same intake as calls, so a reload pauses them too.
  const timers = new TimerLoop(kernel, pollMs, onError, guard)

  // Stores shared between hosts tell each other about commits (sooner than the next poll).
  const wakes = 'wakes' in store ? store.wakes : null
  kernel.onCommit((commit) => {
    if (commit.journal.length > 0) feed.wake(commit.journal)
    if (commit.earliestTimerDue !== null) timers.poke(commit.earliestTimerDue)
    wakes?.announce(commit.earliestTimerDue)
  })
  await wakes?.start((wake) => {
    feed.poke()
    // Only a timer due sooner than the loop's next look makes it look (no query otherwise).
    if (wake.timerDue !== null) timers.poke(wake.timerDue)
  })
  // A reader delivers no timers: a delivery is a write (the writers' processes deliver them).
  if (runTimers && !readOnly) timers.start()

  // SQLite names the path as given; PostgreSQL the URL without its password, and the schema.
  const readOnlyWhere = url === null ? path : store.where
  const assertOpen = () => {
    if (intake.isClosed) throw new ClosedError()
  }
  /** For calls that only write: refused at once on a read-only orchestrator, before any SQL. */
  const assertWritable = () => {
    assertOpen()
    if (readOnly) throw new ReadOnlyError(readOnlyWhere)
  }
  // The board checks this before starting a worker pool (which would claim).
  const tasks = new StoreTaskBoard({ kernel, reads: store.reads, feed, defaults, maxPayloadBytes, guard, assertOpen: assertWritable })
  const sessions = new Sessions(kernel, store.reads, feed, guard, onError, maxPayloadBytes)
  kernel.register(sessionKind(sessions.effects()))
  if (options.sessionAdapter) sessions.setAdapter(options.sessionAdapter as SessionAdapter)

  // Async so that every refusal (CLOSED, READ_ONLY, INVALID_INPUT) is a rejection, like the board's.
  const orchestrator: Orchestrator = {
    path: store.where,
    readOnly,
    tasks,
    sessions,
    runDueTimers: async () => {
      assertWritable()
      return guard(() => timers.runDue())
    },
    barrier: async (fn) => {
      assertOpen()
      return intake.exclusive(fn)
    },
    // The inspector draws and replays the machine definitions in force in this process,
    // read at each use, so a later reload shows up too.
    inspect: async (inspectOptions = {}) => {
      assertOpen()
      const i = v.requireOptions(inspectOptions, 'inspect options', ORCH_INSPECT_OPTIONS)
      return startInspector(orchestrator, {
        ...i,
        machines: Object.fromEntries([TASK_MACHINE_ID, SESSION_MACHINE_ID].map((id) => [id, liveDefinition(kernel, id)])),
      })
    },
    reload: async (reloadOptions = {}) => {
      assertOpen()
      const swaps = reloadSwaps(reloadOptions)
      // Reloading migrates persisted snapshots: a write, even when nothing needs migrating.
      if (readOnly) throw new ReadOnlyError(readOnlyWhere)
      return intake.exclusive(() => reload(kernel, swaps))
    },
    close() {
      closing ??= (async () => {
        // Worker pools drain first (bounded by their stopTimeoutMs) while the board still works.
        await tasks.stopWorkers()
        await intake.close()
        feed.close()
        await timers.stop()
        await wakes?.close()
        await store.close()
      })()
      return closing
    },
  }
  // The inspector opens its own read-only pool on the same URL (orch.path hides the password).
  if (url !== null) registerInspectTarget(orchestrator, { url, schema: o.schema as string | undefined, pool: o.pool as Record<string, unknown> | undefined })
  return orchestrator
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

type Swaps = Array<[string, MachineDefinition]>

/** Validate reload options into [machineId, definition] pairs, before the barrier is taken. */
function reloadSwaps(options: ReloadOptions): Swaps {
  const o = v.requireOptions(options, 'reload options', RELOAD_OPTIONS)
  const machines = v.requireOptions(o.machines ?? {}, 'machines', Object.keys(KIND_BY_NAME))
  const swaps: Swaps = []
  for (const [name, definition] of Object.entries(machines)) {
    const machineId = KIND_BY_NAME[name as keyof typeof KIND_BY_NAME]
    const d = v.requireOptions(definition, `machines.${name}`, MACHINE_DEFINITION_KEYS)
    if (!d.machine || typeof (d.machine as { transition?: unknown }).transition !== 'function') {
      throw new InvalidInputError(`machines.${name}.machine must be an XState machine`, { field: `machines.${name}.machine` })
    }
    const version = v.optionalInt(d.version, `machines.${name}.version`, 1, 1_000_000, 0)
    if (version === 0) throw new InvalidInputError(`machines.${name}.version is required`, { field: `machines.${name}.version` })
    swaps.push([machineId, definition as MachineDefinition])
  }
  return swaps
}

/**
 * Swap machine definitions and migrate every persisted snapshot in one transaction: if
 * any actor cannot be migrated or restored, nothing changes and the error names it.
 * Runs inside the intake barrier (no call or timer delivery is in progress).
 */
async function reload(kernel: Kernel, swaps: Swaps): Promise<ReloadResult> {
  const previous = swaps.map(([machineId]) => [machineId, kernel.definition(machineId)] as const)
  try {
    const migrated = await kernel.write(function* (tx) {
      const counts: Record<string, number> = {}
      for (const [machineId, definition] of swaps) {
        kernel.replaceMachine(machineId, definition)
        counts[machineId] = yield* kernel.migrateAll(tx, machineId)
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
