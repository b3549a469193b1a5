/**
 * The committed step: the one place where an event meets a machine and a store. It
 * imports no database driver: it is a program of store operations (see io.ts and
 * persistence/store.ts) that each store runs inside one transaction.
 *
 *   BEGIN (the store's write transaction)
 *     load actor row -> restore snapshot (cached by version) -> read facts
 *     transition (pure) -> accepted? -> save actor (version-checked), append journal,
 *     apply durable actions (timers, projections, runs, links, events for other actors)
 *   COMMIT -> publish journal entries, update the snapshot cache, run after-commit effects
 *
 * Everything else in lockstep calls `write()` and `stepInTx()`; nothing else writes actor
 * state.
 */
import { createActor, type AnyActorScope, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate'
import type { ActorRow, ActorWrite, Awaitable, JournalWrite, TimerChange } from '../../persistence/store.js'
import { SnapshotIncompatibleError } from '../errors.js'
import type { JournalEntry, MachineDefinition, PersistedSnapshot, SnapshotMigration } from '../types.js'
import { io, type Io } from './io.js'

/** An executable action as XState hands it to the action executor: data, never run. */
export interface MachineAction {
  type: string
  params?: unknown
}

export interface StepEvent {
  type: string
  at: number
  [key: string]: unknown
}

export type { MachineDefinition, PersistedSnapshot, SnapshotMigration } from '../types.js'

/** One accepted step as the durable-action handlers and projections see it. */
export interface StepInfo {
  actorId: string
  event: StepEvent
  before: AnyMachineSnapshot | null
  after: AnyMachineSnapshot
  version: number
}

/**
 * How a family of actors (tasks, sessions, ...) is persisted. Each kind owns a table with
 * the standard actor columns (id, machine_id, machine_version, state, snapshot, version,
 * created_at, updated_at) and its own projection columns, so one UPDATE per step writes
 * the snapshot and what queries need together.
 */
export interface ActorKind {
  machineId: string
  machineVersion: number
  machine: AnyStateMachine
  /**
   * Snapshot migrations: `migrations[v]` turns a persisted snapshot of machine version v
   * into one of version v + 1. Restoring an older snapshot runs the chain; a missing
   * step, or a snapshot newer than `machineVersion`, is SNAPSHOT_INCOMPATIBLE.
   */
  migrations?: Readonly<Record<number, SnapshotMigration>>
  table: string
  /** Projection columns of `table`, set by every accepted step from `project()`. */
  projection: readonly string[]
  /** What the guards need from other rows, read inside the transaction. */
  facts?(tx: StepTx, actorId: string, event: StepEvent): Io<unknown>
  /** Durable actions by action type, applied inside the transaction. */
  effects: Record<string, (tx: StepTx, step: StepInfo, params: any) => Io<void>>
  /**
   * Side effects by action type, run after COMMIT, in commit order (host calls). A crash
   * between COMMIT and the call loses the call: machines that use these must recover
   * through a durable timer (see the session machine's first-token timeout).
   */
  afterCommit?: Record<string, (actorId: string, params: any) => void>
  /** Values of `projection`, in order, after an accepted step. */
  project(step: StepInfo): unknown[]
  /** The run id a journal entry belongs to, if any. */
  runIdOf?(step: StepInfo): string | null
  /** Event fields never written to the journal (secrets such as a claim's fencing token). */
  secretEventFields?: readonly string[]
}

export interface Commit {
  journal: JournalEntry[]
  earliestTimerDue: number | null
}

export interface StepResult {
  accepted: boolean
  /** State name before the event ('' for a new actor). */
  stateBefore: string
  snapshot: AnyMachineSnapshot
  version: number
  journal: JournalEntry[]
}

interface RegisteredKind extends ActorKind {
  /** One reusable inert actor scope per machine (see register()). */
  scope: AnyActorScope
  /** Where that scope's executor records the actions of the current transition. */
  actions: MachineAction[]
}

/**
 * How the kernel reaches its store: a store's driver runs a program in one write
 * transaction (building it anew from `program` for each retry) and answers the one read
 * the timer loop needs outside a transaction.
 */
export interface StoreDriver {
  /**
   * Run the program `program(now)` in one write transaction, `now` being the store's clock
   * for that transaction (milliseconds since the epoch): every time a step records comes
   * from it, so processes on hosts whose clocks differ agree (PostgreSQL: the database's).
   */
  write<T>(program: (now: number) => Io<T>): Promise<T>
  /**
   * Group commit, for a store whose writers take turns (SQLite): run `programs` one after
   * another inside ONE write transaction, each isolated (a program that throws is rolled
   * back alone and its error settles in its place), with one COMMIT for all. Retried
   * whole on transient refusals, every program built anew. Rejects, leaving nothing
   * written, when the transaction itself fails. A store whose writers run in parallel
   * (PostgreSQL) leaves it out: its writes gain more from running side by side.
   */
  writeEach?(programs: ReadonlyArray<(now: number) => Io<unknown>>): Promise<Settled[]>
  /** The store's clock as well as this process can tell it outside a transaction. */
  now(): number
  /** The earliest due time of any timer, or null. */
  nextTimerDue(): Awaitable<number | null>
}

/** How one program of a group commit ended. */
export type Settled = { ok: true; value: unknown } | { ok: false; error: unknown }

/**
 * Thrown by a store's writeEach when one program's failure undid the whole transaction
 * (SQLite rolls back everything on a full disk or an I/O error): nothing was written, and
 * each program should be run again on its own.
 */
export class GroupAbortedError extends Error {
  constructor(cause: unknown) {
    super('a program of a group commit undid its whole transaction', { cause })
  }
}

/** A write waiting for the next group commit. */
interface QueuedWrite {
  body: (tx: StepTx) => Io<unknown>
  resolve(value: unknown): void
  reject(error: unknown): void
}

/** Programs sharing one transaction at most (bounds the lock hold and a retry's redo). */
const MAX_GROUP = 64

interface CachedSnapshot {
  version: number
  machineId: string
  machineVersion: number
  snapshot: AnyMachineSnapshot
}

/** What one accepted step writes, computed purely and saved with one store operation. */
interface WriteSet {
  info: StepInfo
  /** The version the row must be at. */
  version: number
  row: ActorWrite
  /** The entries as published after commit (their seqs filled in by save()). */
  journal: JournalEntry[]
  /** The same entries as the store writes them (the event as JSON). */
  journalWrites: JournalWrite[]
  timers: TimerChange[]
}

/** Bounds cross-actor cascades inside one transaction (a completed task promotes its children, ...). */
const MAX_STEPS_PER_TRANSACTION = 100_000

/** A flat state name for a (possibly nested) XState state value: `a` or `a.b`. */
export function stateName(value: unknown): string {
  if (typeof value === 'string') return value
  if (value && typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>)
      .map(([key, child]) => {
        const inner = stateName(child)
        return inner ? `${key}.${inner}` : key
      })
      .join(',')
  }
  return ''
}

/**
 * Per-transaction state: the events queued for other actors, the journal entries and
 * snapshot-cache updates to publish only if the transaction commits.
 */
export class StepTx {
  readonly journal: JournalEntry[] = []
  readonly cacheUpdates = new Map<string, CachedSnapshot>()
  /** The earliest due time of the timers this transaction scheduled. */
  earliestTimerDue: number | null = null
  /** Side effects to run once this transaction has committed. */
  readonly afterCommit: Array<() => void> = []
  private readonly queue: Array<{ machineId: string; actorId: string; event: StepEvent }> = []
  private steps = 0

  constructor(
    readonly kernel: Kernel,
    readonly now: number,
    /**
     * Snapshots written by the earlier programs of the same group commit that succeeded
     * (uncommitted, so not in the kernel's cache yet): a later program in the group starts
     * from them instead of restoring JSON. Keyed by version, like the cache.
     */
    readonly group: Map<string, CachedSnapshot> | null = null,
  ) {}

  /** Queue an event for another actor; it is stepped later in this same transaction. */
  enqueue(machineId: string, actorId: string, event: Omit<StepEvent, 'at'> & { at?: number }): void {
    this.queue.push({ machineId, actorId, event: { ...event, at: event.at ?? this.now } as StepEvent })
  }

  /** @internal */
  countStep(): void {
    if (++this.steps > MAX_STEPS_PER_TRANSACTION) {
      throw new Error(`more than ${MAX_STEPS_PER_TRANSACTION} steps in one transaction: a cascade does not terminate`)
    }
  }

  /** @internal Step every queued cross-actor event, in order. */
  *drain(): Io<void> {
    for (let next = this.queue.shift(); next; next = this.queue.shift()) {
      yield* this.kernel.stepInTx(this, next.machineId, next.actorId, next.event)
    }
  }
}

export interface KernelOptions {
  /** Restored snapshots kept in memory, keyed by actor version. */
  cacheSize?: number
  /** Errors thrown by after-commit effects. */
  onError?: (error: unknown) => void
}

export class Kernel {
  private readonly onError: (error: unknown) => void
  private readonly kinds = new Map<string, RegisteredKind>()
  private readonly cache = new Map<string, CachedSnapshot>()
  private readonly cacheSize: number
  private readonly commitListeners = new Set<(commit: Commit) => void>()

  constructor(
    private readonly driver: StoreDriver,
    options: KernelOptions = {},
  ) {
    this.onError = options.onError ?? ((error) => console.error('[lockstep]', error))
    this.cacheSize = options.cacheSize ?? 10_000
  }

  register(kind: ActorKind): void {
    // `xstate.transition()` builds a throwaway actor on every call (~0.1 ms); one
    // reusable inert scope per machine makes a step ~10x cheaper. The scope never runs
    // anything: the executor only records the actions as data.
    const actions: MachineAction[] = []
    const self = createActor(kind.machine)
    const scope = {
      self,
      id: '',
      sessionId: '',
      system: self.system,
      logger: () => {},
      defer: () => {},
      stopChild: () => {},
      emit: () => {},
      actionExecutor: (action: MachineAction) => {
        actions.push(action)
      },
    } as unknown as AnyActorScope
    this.kinds.set(kind.machineId, { ...kind, scope, actions })
  }

  private kind(machineId: string): RegisteredKind {
    const kind = this.kinds.get(machineId)
    if (!kind) throw new Error(`no actor kind registered for machine ${machineId}`)
    return kind
  }

  /** The store's clock (milliseconds since the epoch), for decisions outside a transaction. */
  now(): number {
    return this.driver.now()
  }

  /** Called after every commit that wrote journal entries or scheduled timers. */
  onCommit(listener: (commit: Commit) => void): () => void {
    this.commitListeners.add(listener)
    return () => this.commitListeners.delete(listener)
  }

  /**
   * Run the program `body` in one write transaction of the store (retried whole by the
   * store on transient refusals, so `body` is called anew for each attempt). Journal
   * entries are published, cached snapshots updated and after-commit effects run only
   * after COMMIT.
   */
  write<T>(body: (tx: StepTx) => Io<T>): Promise<T> {
    if (!this.driver.writeEach) return this.writeAlone(body)
    // Group commit: writes issued in the same turn of the event loop (a pool's claims, the
    // completions of handlers that finished together) share one transaction and one
    // COMMIT. A microtask, not a timer: a lone write waits for nothing.
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ body, resolve: resolve as (value: unknown) => void, reject })
      if (!this.flushQueued) {
        this.flushQueued = true
        queueMicrotask(() => this.flush())
      }
    })
  }

  private readonly queued: QueuedWrite[] = []
  private flushQueued = false

  private flush(): void {
    this.flushQueued = false
    while (this.queued.length > 0) {
      const group = this.queued.splice(0, MAX_GROUP)
      if (group.length === 1) {
        const [only] = group as [QueuedWrite]
        this.writeAlone(only.body).then(only.resolve, only.reject)
      } else {
        void this.writeGroup(group)
      }
    }
  }

  /** One program, one transaction. */
  private async writeAlone<T>(body: (tx: StepTx) => Io<T>): Promise<T> {
    let tx!: StepTx
    const kernel = this
    const result = await this.driver.write(function* (now) {
      tx = new StepTx(kernel, now)
      const value = yield* body(tx)
      yield* tx.drain()
      return value
    })
    this.committed(tx)
    return result
  }

  /**
   * Several programs, one transaction: each caller gets its own program's fate; what the
   * successful ones wrote is published, in order, only after the COMMIT.
   */
  private async writeGroup(group: QueuedWrite[]): Promise<void> {
    const txs: StepTx[] = new Array(group.length)
    const overlay = new Map<string, CachedSnapshot>()
    const kernel = this
    const programs = group.map(({ body }, i) =>
      function* (now: number): Io<unknown> {
        // The first program of every attempt starts the overlay afresh: a retried group
        // must not see what a rolled-back attempt wrote.
        if (i === 0) overlay.clear()
        const tx = (txs[i] = new StepTx(kernel, now, overlay))
        const value = yield* body(tx)
        yield* tx.drain()
        // Reached only if the program finished: its writes stand (the store releases its
        // savepoint), so later programs of the group may start from its snapshots.
        for (const [actorId, cached] of tx.cacheUpdates) overlay.set(actorId, cached)
        return value
      },
    )
    let settled: Settled[]
    try {
      settled = await this.driver.writeEach!(programs)
    } catch (error) {
      // Nothing was written. If one program's failure undid the transaction, each write
      // gets a transaction of its own and its own fate; otherwise the transaction could
      // not run at all (busy past the budget, a newer schema), which is every write's answer.
      for (const write of group) {
        if (error instanceof GroupAbortedError) this.writeAlone(write.body).then(write.resolve, write.reject)
        else write.reject(error)
      }
      return
    }
    settled.forEach((outcome, i) => {
      if (!outcome.ok) return
      try {
        this.committed(txs[i]!)
      } catch (error) {
        // Committed already: a listener's failure must not leave the other callers waiting.
        this.onError(error)
      }
    })
    settled.forEach((outcome, i) => {
      if (outcome.ok) group[i]!.resolve(outcome.value)
      else group[i]!.reject(outcome.error)
    })
  }

  private committed(tx: StepTx): void {
    for (const [actorId, cached] of tx.cacheUpdates) {
      this.cache.delete(actorId)
      this.cache.set(actorId, cached)
    }
    while (this.cache.size > this.cacheSize) {
      this.cache.delete(this.cache.keys().next().value!)
    }
    if (tx.journal.length > 0 || tx.earliestTimerDue !== null) {
      const commit: Commit = { journal: tx.journal, earliestTimerDue: tx.earliestTimerDue }
      for (const listener of this.commitListeners) listener(commit)
    }
    for (const effect of tx.afterCommit) {
      try {
        effect()
      } catch (error) {
        this.onError(error)
      }
    }
  }

  /**
   * Start an actor and apply its first event, inside `tx`. The kind has already inserted
   * its row (static columns, version 0); this step fills in the snapshot.
   */
  *createInTx(tx: StepTx, machineId: string, actorId: string, input: unknown, event: Omit<StepEvent, 'at'>): Io<StepResult> {
    const kind = this.kind(machineId)
    const { scope, actions } = kind
    actions.length = 0
    const initial = kind.machine.getInitialSnapshot(scope, input)
    const initialActions = actions.splice(0)
    const stamped = { ...event, at: tx.now } as StepEvent
    return yield* this.apply(tx, kind, actorId, initial, 0, stamped, initialActions, true)
  }

  /** Send an event to an existing actor inside `tx`; queued cross-actor events run at the end of the transaction. */
  *stepInTx(tx: StepTx, machineId: string, actorId: string, event: Omit<StepEvent, 'at'> & { at?: number }): Io<StepResult | null> {
    const kind = this.kind(machineId)
    const row = yield* io((s) => s.loadActor(kind, actorId))
    if (!row) return null
    // Generators cost more than calls on the hot path: the cache check is a plain call.
    const before = this.cached(tx, kind, actorId, row) ?? this.restoreJson(kind, actorId, row, yield* io((s) => s.loadSnapshot(kind, actorId)))
    const stamped = { ...event, at: event.at ?? tx.now } as StepEvent
    return yield* this.apply(tx, kind, actorId, before, row.version, stamped, [], false)
  }

  /** The live snapshot of `row`'s version from this transaction or the cache, if there. */
  private cached(tx: StepTx, kind: RegisteredKind, actorId: string, row: ActorRow): AnyMachineSnapshot | null {
    const pending = tx.cacheUpdates.get(actorId) ?? tx.group?.get(actorId)
    if (pending && pending.version === row.version && pending.machineVersion === kind.machineVersion) return pending.snapshot
    const cached = this.cache.get(actorId)
    if (cached && cached.version === row.version && cached.machineVersion === kind.machineVersion) return cached.snapshot
    return null
  }

  /** Rebuild a live snapshot from its JSON, migrating it from an older machine version first. */
  private restoreJson(kind: RegisteredKind, actorId: string, row: ActorRow, json: string): AnyMachineSnapshot {
    if (row.machine_id !== kind.machineId || row.machine_version > kind.machineVersion) {
      throw new SnapshotIncompatibleError(
        actorId,
        `persisted with ${row.machine_id}@${row.machine_version}, but this process runs ${kind.machineId}@${kind.machineVersion}`,
        { machineId: row.machine_id, machineVersion: row.machine_version },
      )
    }
    let persisted = JSON.parse(json) as PersistedSnapshot
    for (let version = row.machine_version; version < kind.machineVersion; version++) {
      const migrate = kind.migrations?.[version]
      if (!migrate) {
        throw new SnapshotIncompatibleError(
          actorId,
          `persisted with ${row.machine_id}@${row.machine_version} and no migration from version ${version} to ${version + 1} is registered`,
          { machineId: row.machine_id, machineVersion: row.machine_version },
        )
      }
      try {
        persisted = migrate(structuredClone(persisted))
      } catch (error) {
        throw new SnapshotIncompatibleError(actorId, `migration from version ${version} failed: ${(error as Error).message}`, {
          machineVersion: version,
        })
      }
    }
    let snapshot: AnyMachineSnapshot
    try {
      snapshot = kind.machine.restoreSnapshot(persisted as never, kind.scope) as AnyMachineSnapshot
      const restored = stateName(snapshot.value)
      // restoreSnapshot accepts some state values the machine does not have; check the round trip.
      if (restored !== stateName(persisted.value)) throw new Error(`state ${stateName(persisted.value)} does not exist in this machine`)
      if (row.machine_version === kind.machineVersion && restored !== row.state) {
        throw new Error(`restored state ${restored} is not the recorded ${row.state}`)
      }
    } catch (error) {
      throw new SnapshotIncompatibleError(actorId, `cannot restore snapshot: ${(error as Error).message}`, {
        machineVersion: row.machine_version,
      })
    }
    return snapshot
  }

  /**
   * Swap in a new definition of a machine (a hot reload). Cached snapshots of the old
   * definition are dropped. Call migrateAll() in a transaction to bring persisted
   * snapshots up to the new version.
   */
  /** The machine definition registered now for `machineId`. */
  definition(machineId: string): MachineDefinition {
    const kind = this.kind(machineId)
    return { machine: kind.machine, version: kind.machineVersion, migrations: kind.migrations }
  }

  replaceMachine(machineId: string, definition: MachineDefinition): void {
    const kind = this.kind(machineId)
    this.register({ ...kind, machine: definition.machine, machineVersion: definition.version, migrations: definition.migrations })
    for (const [actorId, cached] of this.cache) if (cached.machineId === machineId) this.cache.delete(actorId)
  }

  /**
   * Rewrite every persisted snapshot of `machineId` older than the registered version,
   * through its migrations, inside `tx`; each one is journaled as `migrated`. Refuses (and
   * so rolls back) on the first actor that cannot be migrated or restored, naming it.
   */
  *migrateAll(tx: StepTx, machineId: string): Io<number> {
    const kind = this.kind(machineId)
    const rows = yield* io((s) => s.actorsOfOtherVersion(kind, kind.machineVersion))
    for (const row of rows) {
      const after = this.restoreJson(kind, row.id, row, row.snapshot)
      const event: StepEvent = { type: 'MIGRATE', at: tx.now, fromVersion: row.machine_version, toVersion: kind.machineVersion }
      const write = this.writeSet(tx, kind, row.id, event, null, after, row.version, row.state, ['migrated'], false, [])
      this.saved(tx, kind, write, yield* io((s) => s.saveStep(kind, row.id, write.version, write.row, write.journalWrites, write.timers)))
    }
    return rows.length
  }

  private *apply(
    tx: StepTx,
    kind: RegisteredKind,
    actorId: string,
    before: AnyMachineSnapshot,
    version: number,
    event: StepEvent,
    initialActions: MachineAction[],
    isNew: boolean,
  ): Io<StepResult> {
    tx.countStep()
    // A machine in a final state is finished: it accepts nothing more (XState would still
    // run root-level transitions on a done snapshot).
    if (!isNew && before.status === 'done') {
      return { accepted: false, stateBefore: stateName(before.value), snapshot: before, version, journal: [] }
    }
    if (kind.facts) event = { ...event, facts: yield* kind.facts(tx, actorId, event) }
    // The pure part runs in plain functions; this generator only sequences the store calls.
    const step = this.transition(tx, kind, actorId, before, version, event, initialActions, isNew)
    if (!step.accepted) return step.result
    const { write } = step
    this.saved(tx, kind, write, yield* io((s) => s.saveStep(kind, actorId, write.version, write.row, write.journalWrites, write.timers)))
    for (const action of step.actions) {
      const later = kind.afterCommit?.[action.type]
      if (later) {
        const params = action.params
        tx.afterCommit.push(() => later(actorId, params))
        continue
      }
      const effect = kind.effects[action.type]
      // No effect: assign-only helpers and named actions with no durable meaning.
      if (effect) yield* effect(tx, write.info, action.params)
    }
    return step.result
  }

  /**
   * The pure half of a step: the transition, and for an accepted one its write set (the
   * actor row, journal entries, timer changes) and the actions left for effects.
   */
  private transition(
    tx: StepTx,
    kind: RegisteredKind,
    actorId: string,
    before: AnyMachineSnapshot,
    version: number,
    event: StepEvent,
    initialActions: MachineAction[],
    isNew: boolean,
  ): { accepted: false; result: StepResult } | { accepted: true; result: StepResult; write: WriteSet; actions: MachineAction[] } {
    const { scope, actions } = kind
    actions.length = 0
    const after = kind.machine.transition(before, event, scope) as AnyMachineSnapshot
    const stepActions = [...initialActions, ...actions.splice(0)]
    const kinds = journalKinds(stepActions)
    const stateBefore = isNew ? '' : stateName(before.value)
    if (kinds.length === 0) {
      if (after !== before && !isNew) {
        throw new Error(`${kind.machineId}: ${event.type} changed ${actorId} without a journal action`)
      }
      return { accepted: false, result: { accepted: false, stateBefore, snapshot: before, version, journal: [] } }
    }
    // The timers this step sets and cancels, in action order; every other action but the
    // journal's is an effect.
    const timers: TimerChange[] = []
    const effects: MachineAction[] = []
    for (const action of stepActions) {
      if (action.type === 'xstate.raise') {
        const params = action.params as { event: object; id?: string; delay?: number }
        if (typeof params.delay !== 'number') continue // an internal raise, already processed
        if (!params.id) throw new Error(`${kind.machineId}: delayed raise without an id cannot be persisted`)
        const timer = { actor_id: actorId, timer_id: params.id, machine_id: kind.machineId, due_at: event.at + params.delay, event: JSON.stringify(params.event) }
        timers.push({ upsert: timer })
        if (tx.earliestTimerDue === null || timer.due_at < tx.earliestTimerDue) tx.earliestTimerDue = timer.due_at
      } else if (action.type === 'xstate.cancel') {
        timers.push({ cancel: { actorId, timerId: (action.params as { sendId: string }).sendId } })
      } else if (action.type !== 'journal') {
        effects.push(action)
      }
    }
    const write = this.writeSet(tx, kind, actorId, event, isNew ? null : before, after, version, stateBefore, kinds, isNew, timers)
    return { accepted: true, result: { accepted: true, stateBefore, snapshot: after, version: version + 1, journal: write.journal }, write, actions: effects }
  }

  /** An accepted step's write set: the row (snapshot + projection), its journal entries and timer changes. */
  private writeSet(
    tx: StepTx,
    kind: RegisteredKind,
    actorId: string,
    event: StepEvent,
    before: AnyMachineSnapshot | null,
    after: AnyMachineSnapshot,
    version: number,
    stateBefore: string,
    kinds: string[],
    isNew: boolean,
    timers: TimerChange[],
  ): WriteSet {
    const nextVersion = version + 1
    const stateAfter = stateName(after.value)
    const info: StepInfo = { actorId, event, before, after, version: nextVersion }
    const runId = kind.runIdOf?.(info) ?? null
    const { facts: _facts, ...eventRecord } = event
    for (const field of kind.secretEventFields ?? []) delete eventRecord[field]
    const eventJson = JSON.stringify(eventRecord)
    const journal: JournalEntry[] = kinds.map((journalKind) => ({
      seq: 0, // the store's, once saved
      machineId: kind.machineId,
      actorId,
      kind: journalKind,
      eventType: event.type,
      event: eventRecord,
      stateBefore: isNew ? null : stateBefore,
      stateAfter,
      runId,
      actorVersion: nextVersion,
      at: event.at,
    }))
    return {
      info,
      version,
      row: {
        machineId: kind.machineId,
        machineVersion: kind.machineVersion,
        state: stateAfter,
        snapshot: JSON.stringify(kind.machine.getPersistedSnapshot(after)),
        updatedAt: tx.now,
        projection: kind.project(info),
      },
      journal,
      journalWrites: journal.map((entry) => ({ ...entry, event: eventJson })),
      timers,
    }
  }

  /**
   * After the store saved a write set (`seqs` from saveStep; null if the row was not at
   * the expected version): its journal entries get their seqs and the cache its snapshot.
   */
  private saved(tx: StepTx, kind: RegisteredKind, write: WriteSet, seqs: number[] | null): void {
    const { actorId } = write.info
    // The version check: a store serializes writers to one actor, so this cannot fail;
    // if it does, the transaction must not commit.
    if (seqs === null) throw new Error(`${kind.table} row ${actorId} is not at version ${write.version}`)
    write.journal.forEach((entry, i) => (entry.seq = seqs[i]!))
    tx.cacheUpdates.set(actorId, { version: write.info.version, machineId: kind.machineId, machineVersion: kind.machineVersion, snapshot: write.info.after })
    tx.journal.push(...write.journal)
  }

  /** The earliest due time of any timer, or null. */
  nextTimerDue(): Awaitable<number | null> {
    return this.driver.nextTimerDue()
  }

  /**
   * Deliver up to `limit` due timers, each through the normal step (deleting its row in
   * the same transaction). A timer whose guard no longer matches is a harmless no-op.
   */
  async deliverDueTimers(limit = 256): Promise<number> {
    const kernel = this
    return this.write(function* (tx) {
      const due = yield* io((s) => s.dueTimers(tx.now, limit))
      for (const timer of due) {
        yield* io((s) => s.deleteTimer(timer.actor_id, timer.timer_id))
        yield* kernel.stepInTx(tx, timer.machine_id, timer.actor_id, { ...JSON.parse(timer.event), at: tx.now })
      }
      return due.length
    })
  }
}

function journalKinds(actions: MachineAction[]): string[] {
  const kinds: string[] = []
  for (const action of actions) {
    if (action.type === 'journal') kinds.push(...(action.params as { kinds: string[] }).kinds)
  }
  return kinds
}
