/**
 * Sessions API: per-session model fallback chains and tool approvals, each session an
 * XState machine whose every step is a committed SQLite transaction.
 *
 * Two levels over the same machine:
 * - `run()`: the app calls models itself; lockstep picks the model, classifies failures,
 *   falls back and replays the message, and resolves with the answer.
 * - reports (`prompt`, `token`, `error`, `aborted`, `idle`, `modelSelected`, `deleted`):
 *   a plugin observes a host's events and lets the machine decide; decisions reach the
 *   host through the adapter, after commit.
 */
import type { AnyMachineSnapshot } from 'xstate'
import {
  DEFAULT_SESSION_POLICY,
  SESSION_MACHINE_ID,
  cooldownOf,
  isCooling,
  refusalReason,
  type Attempt,
  type DispatchParams,
  type ModelError,
  type Notice,
  type SessionContext,
  type SessionEvent,
  type SessionPolicy,
} from '../machines/session.js'
import type { ReadDriver, ReadStore, SessionRow } from '../persistence/store.js'
import { io, type Io } from './core/io.js'
import type { Kernel, StepResult, StepTx } from './core/kernel.js'
import { statusOf } from './core/session-kind.js'
import {
  ChainExhaustedError,
  InvalidInputError,
  InvalidTransitionError,
  LockstepError,
  ModelCallFailedError,
  SessionBusyError,
  SessionDeletedError,
  SessionNotFoundError,
} from './errors.js'
import { newId } from './ids.js'
import type { JournalFeed } from './journal-feed.js'
import type {
  Attribution,
  JournalEntry,
  Json,
  OpenSessionInput,
  ReportResult,
  RunInput,
  RunResult,
  Session,
  SessionAdapter,
  SessionsApi,
  Unsubscribe,
} from './types.js'
import * as v from './validate.js'

export type { Attempt, ModelError, Notice, SessionPolicy }

export type {
  Attribution,
  CallContext,
  ModelStatus,
  OpenSessionInput,
  ReportResult,
  RunInput,
  RunResult,
  Session,
  SessionAdapter,
  SessionsApi,
} from './types.js'

const MAX_MODELS = 50
/**
 * Caps on a reported model error's texts, in characters. Errors are journaled with every
 * report (also each ignored repeat) and kept in the context: a provider's 22 MB error
 * page must not be. The head is kept (truncateText): classification reads the start.
 */
export const MAX_ERROR_MESSAGE = 4_000
export const MAX_ERROR_FIELD = 200

const OPEN_KEYS = ['agent', 'models', 'config'] as const
const RUN_KEYS = [...OPEN_KEYS, 'message', 'call', 'onNotice'] as const
const ATTRIBUTION_KEYS = ['generation', 'model'] as const
export const SESSION_STATUSES = ['idle', 'active', 'exhausted', 'archived', 'deleted'] as const

export class Sessions implements SessionsApi {
  private adapter: SessionAdapter | null = null
  private readonly runs = new Map<string, RunDriver>()

  constructor(
    private readonly kernel: Kernel,
    private readonly reads: ReadDriver,
    private readonly feed: JournalFeed,
    private readonly guard: <T>(operation: () => Promise<T>) => Promise<T>,
    private readonly onError: (error: unknown) => void,
    /** The orchestrator's `maxPayloadBytes`: the cap on a prompt's or run's message, as JSON. */
    private readonly maxPayloadBytes: number = 1 << 20,
  ) {}

  /** Set (or clear) the host adapter. */
  setAdapter(adapter: SessionAdapter | null): void {
    if (adapter !== null && (typeof adapter !== 'object' || typeof adapter.prompt !== 'function' || typeof adapter.abort !== 'function')) {
      throw new InvalidInputError('adapter needs prompt() and abort() functions', { field: 'adapter' })
    }
    this.adapter = adapter
  }

  /** Open a session, or update its chain/agent/config if it exists. */
  async open(id: string, input: OpenSessionInput): Promise<Session> {
    const sessionId = v.requireString(id, 'sessionId')
    const setup = openSetup(v.requireOptions(input, 'open input', OPEN_KEYS))
    await this.write((tx) => this.openInTx(tx, sessionId, setup))
    return this.mustGet(sessionId)
  }

  /** Create the session, or reconfigure it when its chain, agent or policy changed. A deleted one is refused. */
  private *openInTx(tx: StepTx, sessionId: string, { agent, models, policy }: OpenSetup): Io<void> {
    const existing = yield* io((s) => s.sessionSnapshot(sessionId))
    if (existing === null) {
      yield* io((s) => s.insertSession(sessionId, tx.now))
      yield* this.kernel.createInTx(tx, SESSION_MACHINE_ID, sessionId, { id: sessionId, agent, models, policy }, { type: 'OPEN' })
      return
    }
    const persisted = JSON.parse(existing) as { value: unknown; context: SessionContext }
    if (persisted.value === 'deleted') throw new SessionDeletedError(sessionId)
    const context = persisted.context
    const same =
      JSON.stringify(context.models) === JSON.stringify(models) &&
      context.agent === agent &&
      JSON.stringify(context.policy) === JSON.stringify(policy)
    if (!same) yield* this.step(tx, sessionId, { type: 'CONFIGURE', agent, models, policy })
  }

  async get(id: string): Promise<Session | null> {
    const sessionId = v.requireString(id, 'sessionId')
    return this.read(async (r) => {
      const row = await r.session(sessionId)
      return row ? toSession(row, this.kernel.now()) : null
    })
  }

  async list(filter: { status?: string; limit?: number } = {}): Promise<Session[]> {
    const f = v.requireOptions(filter, 'list filter', ['status', 'limit'])
    const status = v.optionalString(f.status, 'status')
    if (status !== null && !SESSION_STATUSES.includes(status as never)) {
      throw new InvalidInputError(`status must be one of ${SESSION_STATUSES.join(', ')}`, { field: 'status' })
    }
    const limit = v.optionalInt(f.limit, 'limit', 1, 10_000, 100)
    return this.read(async (r) => (await r.sessions(status, limit)).map((row) => toSession(row, this.kernel.now())))
  }

  // ---- reports from a host ----

  /** A new message. With `model`, the host already sent it there; without, the session dispatches it (adapter.prompt). */
  async prompt(id: string, input: { message: unknown; messageId?: string; model?: string | null }): Promise<ReportResult> {
    const i = v.requireOptions(input, 'prompt input', ['message', 'messageId', 'model'])
    const message = v.jsonValue(i.message, 'message', this.maxPayloadBytes)
    return this.report(id, {
      type: 'PROMPT',
      messageId: v.optionalString(i.messageId, 'messageId') ?? newId('m'),
      message: message === null ? null : JSON.parse(message),
      model: v.optionalString(i.model, 'model'),
    })
  }

  async token(id: string, input: Attribution = {}): Promise<ReportResult> {
    return this.report(id, { type: 'TOKEN', ...attribution(input, 'token report') })
  }

  /** A model error as the host saw it: HTTP status, name, message, code, Retry-After. */
  async error(id: string, input: Attribution & { error: ModelError | Error | string }): Promise<ReportResult> {
    const i = v.requireOptions(input, 'error input', ['error', ...ATTRIBUTION_KEYS])
    return this.report(id, { type: 'ERROR', error: toModelError(i.error), ...attribution({ generation: i.generation, model: i.model }, 'error input') })
  }

  async aborted(id: string, input: Attribution = {}): Promise<ReportResult> {
    return this.report(id, { type: 'ABORTED', ...attribution(input, 'aborted report') })
  }

  async idle(id: string, input: Attribution = {}): Promise<ReportResult> {
    return this.report(id, { type: 'IDLE', ...attribution(input, 'idle report') })
  }

  async modelSelected(id: string, model: string): Promise<ReportResult> {
    return this.report(id, { type: 'MODEL_SELECTED', model: v.requireString(model, 'model') })
  }

  async deleted(id: string): Promise<ReportResult> {
    return this.report(id, { type: 'DELETE' })
  }

  // ---- approvals ----

  async approve(id: string, tool: string, options: { once?: boolean } = {}): Promise<Session> {
    const once = v.optionalBoolean(v.requireOptions(options, 'approve options', ['once']).once, 'once', false)
    const result = await this.report(id, { type: 'APPROVE', tool: v.requireString(tool, 'tool'), once })
    // Every live state accepts APPROVE (a deleted session throws SESSION_DELETED first).
    if (!result.accepted) throw new InvalidTransitionError(id, 'APPROVE', result.session.state, result.reason ?? '')
    return result.session
  }

  async revoke(id: string, tool: string): Promise<Session> {
    return (await this.report(id, { type: 'REVOKE', tool: v.requireString(tool, 'tool') })).session
  }

  /** Is `tool` approved? A `once` approval is consumed by the call that returns true, exactly once. */
  async authorize(id: string, tool: string): Promise<boolean> {
    return (await this.report(id, { type: 'AUTHORIZE', tool: v.requireString(tool, 'tool') })).accepted
  }

  // ---- journal ----

  async events(query: { sessionId?: string; after?: number; limit?: number } = {}): Promise<JournalEntry[]> {
    const q = v.requireOptions(query, 'events query', ['sessionId', 'after', 'limit'])
    const page = {
      machineId: SESSION_MACHINE_ID,
      actorId: v.optionalString(q.sessionId, 'sessionId') ?? undefined,
      after: v.optionalInt(q.after, 'after', 0, Number.MAX_SAFE_INTEGER, 0),
      limit: v.optionalInt(q.limit, 'limit', 1, 10_000, 1_000),
    }
    return this.guard(async () => this.feed.page(page))
  }

  subscribe(listener: (entry: JournalEntry) => void, options: { sessionId?: string; after?: number } = {}): Unsubscribe {
    if (typeof listener !== 'function') throw new InvalidInputError('listener must be a function', { field: 'listener' })
    const o = v.requireOptions(options, 'subscribe options', ['sessionId', 'after'])
    return this.feed.subscribe(listener, {
      machineId: SESSION_MACHINE_ID,
      actorId: v.optionalString(o.sessionId, 'sessionId') ?? undefined,
      after: o.after === undefined ? undefined : v.optionalInt(o.after, 'after', 0, Number.MAX_SAFE_INTEGER, 0),
    })
  }

  // ---- high level ----

  /**
   * Call the session's current model with `message`; on a retryable failure fall back
   * along the chain and replay the same message, until a model answers (resolves with its
   * output and which model gave it) or the chain is exhausted (CHAIN_EXHAUSTED, listing
   * every attempt). A non-retryable failure rejects with MODEL_CALL_FAILED.
   */
  async run(id: string, input: RunInput): Promise<RunResult> {
    // Everything is checked before anything is written or awaited.
    const sessionId = v.requireString(id, 'sessionId')
    const i = v.requireOptions(input, 'run input', RUN_KEYS)
    if (typeof i.call !== 'function') throw new InvalidInputError('call must be a function', { field: 'call' })
    if (i.onNotice !== undefined && typeof i.onNotice !== 'function') throw new InvalidInputError('onNotice must be a function', { field: 'onNotice' })
    const setup = openSetup(i)
    // The message is the app's data, any keys: only its id is read.
    const message = v.requireRecord(i.message, 'message')
    const messageId = v.optionalString(message.id, 'message.id') ?? newId('m')
    const json = v.jsonValue(message, 'message', this.maxPayloadBytes)!
    // Same tick, same process: decided before the first await. Across processes the
    // machine decides (a runner PROMPT is refused while another one is in flight).
    if (this.runs.has(sessionId)) throw new SessionBusyError(sessionId, 'a run() prompt is already in flight in this process')
    const driver = new RunDriver(this, sessionId, messageId, message, input, this.onError)
    this.runs.set(sessionId, driver)
    try {
      driver.start()
      // Opening (or reconfiguring) and the prompt are one transaction: a refused prompt
      // rolls the reconfiguration back too.
      const sessions = this
      await this.write(function* (tx) {
        yield* sessions.openInTx(tx, sessionId, setup)
        const event = { type: 'PROMPT' as const, messageId, message: JSON.parse(json), runner: true }
        const step = yield* sessions.step(tx, sessionId, event)
        if (!step.accepted) {
          const context = step.snapshot.context as SessionContext
          const reason = refusalReason(step.stateBefore, context, { ...event, at: tx.now })
          // The machine refuses a runner PROMPT only while another run() prompt is in flight.
          if (step.stateBefore.startsWith('active') && context.runner) throw new SessionBusyError(sessionId, reason)
          throw new InvalidTransitionError(sessionId, 'PROMPT', step.stateBefore, reason)
        }
      })
      driver.promptCommitted()
      driver.observe(await this.mustGet(sessionId))
      return await driver.done
    } finally {
      driver.stop()
      this.runs.delete(sessionId)
    }
  }

  /** The after-commit host calls, for the session actor kind. */
  effects() {
    return {
      dispatch: (sessionId: string, params: DispatchParams) => {
        if (params.hostDispatched || params.runner) return // the host has it, or a run() call watches the journal
        const adapter = this.adapter
        if (!adapter) {
          this.onError(new LockstepError('INVALID_INPUT', `session ${sessionId} must dispatch to ${params.model}, but no adapter is set (orch.sessions.setAdapter)`))
          return
        }
        // A refused or failed dispatch is a failure of that generation: it never rewinds.
        Promise.resolve()
          .then(() => adapter.prompt(sessionId, params.model, params.message, { generation: params.generation, messageId: params.messageId }))
          .catch((error: unknown) =>
            this.report(sessionId, { type: 'DISPATCH_FAILED', generation: params.generation, model: params.model, error: toModelError(error) }).catch(
              // Deleted meanwhile: there is nothing left to fail over.
              (reportError: unknown) => reportError instanceof SessionDeletedError || this.onError(reportError),
            ),
          )
      },
      abort: (sessionId: string, params: { generation: number; model: string }) => {
        if (this.runs.has(sessionId)) return // run() aborts its own calls
        const adapter = this.adapter
        if (!adapter) return
        Promise.resolve()
          .then(() => adapter.abort(sessionId, params))
          .catch(this.onError)
      },
      notify: (sessionId: string, notice: Notice) => {
        this.runs.get(sessionId)?.notice(notice)
        try {
          this.adapter?.notify?.(sessionId, notice)
        } catch (error) {
          this.onError(error)
        }
      },
    }
  }

  /** @internal Send one event to a session in its own transaction. */
  async report(id: string, event: DistributiveOmit<SessionEvent, 'at'>): Promise<ReportResult> {
    const sessionId = v.requireString(id, 'sessionId')
    const sessions = this
    const { step, reason } = await this.write(function* (tx) {
      const step = yield* sessions.step(tx, sessionId, event)
      const reason = step.accepted ? null : refusalReason(step.stateBefore, step.snapshot.context as SessionContext, { ...event, at: tx.now } as SessionEvent)
      return { step, reason }
    })
    return { accepted: step.accepted, kinds: step.journal.map((e) => e.kind), reason, session: await this.mustGet(sessionId) }
  }

  /** One event in `tx`. One rule for a deleted (final) session: every event is refused with SESSION_DELETED. */
  private *step(tx: StepTx, sessionId: string, event: DistributiveOmit<SessionEvent, 'at'>): Io<StepResult> {
    const step = yield* this.kernel.stepInTx(tx, SESSION_MACHINE_ID, sessionId, event)
    if (!step) throw new SessionNotFoundError(sessionId)
    if (!step.accepted && step.snapshot.status === 'done') throw new SessionDeletedError(sessionId)
    return step
  }

  private write<T>(body: (tx: StepTx) => Io<T>): Promise<T> {
    return this.guard(() => this.kernel.write(body))
  }

  private read<T>(fn: (reads: ReadStore) => T | Promise<T>): Promise<T> {
    return this.guard(() => this.reads.read(fn))
  }

  /** The session as committed (after a write: outside the intake, which the write already passed). */
  private async mustGet(id: string): Promise<Session> {
    const row = await this.reads.read((r) => r.session(id))
    if (!row) throw new SessionNotFoundError(id)
    return toSession(row, this.kernel.now())
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

/**
 * Drives one run(): watches the session's journal and calls the model for every
 * generation the machine dispatches (exactly once per generation), aborts superseded
 * calls, reports tokens, completions and errors back, and settles when the machine does.
 */
class RunDriver {
  readonly done: Promise<RunResult>
  private resolve!: (result: RunResult) => void
  private reject!: (error: unknown) => void
  private readonly calls = new Map<number, AbortController>()
  private readonly outputs = new Map<number, unknown>()
  private unsubscribe: Unsubscribe | null = null
  private settled = false
  /**
   * Set once this run's PROMPT has committed. A session read begun before that shows the
   * previous prompt (on PostgreSQL a new subscription may also be handed entries from just
   * before it started): judged against this run's message it would look superseded.
   */
  private prompted = false
  /**
   * A ref'd handle held exactly while the run is pending. The orchestrator's timer loop and
   * journal feed are unref'd (an idle orchestrator must not keep a process alive), so a
   * script whose only pending work is this run, waiting on a durable timer (a same-model
   * retry's backoff, a first-token timeout), would otherwise exit before it fires.
   */
  private keepAlive: ReturnType<typeof setInterval> | null = null

  constructor(
    private readonly sessions: Sessions,
    private readonly sessionId: string,
    private readonly messageId: string,
    private readonly message: unknown,
    private readonly input: RunInput,
    private readonly onError: (error: unknown) => void,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    // The journal can settle the run (a deletion, a newer prompt) while run() still awaits
    // its own reads, before it awaits `done`: that rejection is run()'s answer, not an
    // unhandled one. (run() awaits `done` whenever it gets that far.)
    this.done.catch(() => {})
  }

  start(): void {
    this.keepAlive = setInterval(() => {}, 1 << 30)
    this.unsubscribe = this.sessions.subscribe(() => void this.refresh(), { sessionId: this.sessionId })
  }

  /** The PROMPT committed: from now on every session read shows it or something newer. */
  promptCommitted(): void {
    this.prompted = true
  }

  stop(): void {
    // A run() that ended (or never started: SESSION_BUSY) settles nothing more; nobody awaits it.
    this.settled = true
    if (this.keepAlive !== null) clearInterval(this.keepAlive)
    this.keepAlive = null
    this.unsubscribe?.()
    for (const controller of this.calls.values()) controller.abort(new Error('run finished'))
  }

  notice(notice: Notice): void {
    try {
      this.input.onNotice?.(notice)
    } catch (error) {
      this.onError(error)
    }
  }

  private async refresh(): Promise<void> {
    // Before the PROMPT commits, run() itself reads the session once it has.
    if (this.settled || !this.prompted) return
    try {
      const session = await this.sessions.get(this.sessionId)
      if (session) this.observe(session)
    } catch (error) {
      this.onError(error)
    }
  }

  /** React to the session as committed: dispatch a new generation, or settle. */
  observe(session: Session): void {
    if (this.settled) return
    if (session.status === 'deleted') {
      this.fail(new SessionDeletedError(this.sessionId))
      return
    }
    if (session.messageId !== this.messageId) {
      this.fail(new ModelCallFailedError(this.sessionId, session.log, 'a newer prompt superseded this one', 'aborted'))
      return
    }
    const last = session.log[session.log.length - 1]
    switch (session.status) {
      case 'active':
        if (session.state !== 'active.retryWait' && !this.calls.has(session.generation)) {
          this.dispatch(session.model, session.generation, session.attempts)
        }
        return
      case 'exhausted':
        this.fail(new ChainExhaustedError(this.sessionId, session.log, session.lastFailure))
        return
      default:
        if (last?.outcome === 'completed') {
          this.settled = true
          this.resolve({ output: this.outputs.get(last.generation), model: last.model, generation: last.generation, attempts: session.log })
        } else if (last) {
          this.fail(new ModelCallFailedError(this.sessionId, session.log, session.lastFailure ?? last.reason, last.outcome === 'aborted' ? 'aborted' : 'failed'))
        }
    }
  }

  private fail(error: Error): void {
    if (this.settled) return
    this.settled = true
    this.reject(error)
  }

  private dispatch(model: string, generation: number, attempt: number): void {
    // A new generation supersedes every older call: abort them (the machine ignores their echoes).
    for (const [older, controller] of this.calls) if (older < generation) controller.abort(new Error(`superseded by generation ${generation}`))
    const controller = new AbortController()
    this.calls.set(generation, controller)
    let tokenReported = false
    // The call's end is reported after its first token has been: on a store whose writes
    // from one process run concurrently (PostgreSQL), COMPLETED could otherwise commit first
    // and the TOKEN be refused, leaving no first_token in the journal.
    let tokenReport: Promise<unknown> = Promise.resolve()
    const onToken = () => {
      if (tokenReported || controller.signal.aborted) return
      tokenReported = true
      tokenReport = this.sessions.report(this.sessionId, { type: 'TOKEN', generation, model }).catch((error: unknown) => this.fail(error as Error))
    }
    Promise.resolve()
      .then(() => this.input.call({ model, message: this.message, signal: controller.signal, onToken, generation, attempt }))
      .then(
        (output) => {
          if (controller.signal.aborted) return
          this.outputs.set(generation, output)
          return tokenReport.then(() => this.sessions.report(this.sessionId, { type: 'COMPLETED', generation, model }))
        },
        (error: unknown) => {
          if (controller.signal.aborted) return // our own abort: not a failure of the model
          return tokenReport.then(() => this.sessions.report(this.sessionId, { type: 'ERROR', generation, model, error: toModelError(error) }))
        },
      )
      .then((result) => result && this.observe(result.session))
      .catch((error: unknown) => this.fail(error as Error))
  }
}

function attribution(input: unknown, what: string): { generation?: number | null; model?: string | null } {
  const i = v.requireOptions(input ?? {}, what, ATTRIBUTION_KEYS)
  return {
    generation: i.generation === undefined || i.generation === null ? null : v.optionalInt(i.generation, 'generation', 0, Number.MAX_SAFE_INTEGER, 0),
    model: v.optionalString(i.model, 'model'),
  }
}

interface OpenSetup {
  agent: string | null
  models: string[]
  policy: SessionPolicy
}

/** The chain, agent and policy of an open input or a run input (already checked for unknown keys). */
function openSetup(i: Record<string, unknown>): OpenSetup {
  return { models: modelList(i.models), agent: v.optionalString(i.agent, 'agent'), policy: policyOf(i.config) }
}

function modelList(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0) throw new InvalidInputError('models must be a non-empty array of model names', { field: 'models' })
  if (value.length > MAX_MODELS) throw new InvalidInputError(`at most ${MAX_MODELS} models`, { field: 'models' })
  const models = value.map((m, i) => v.requireString(m, `models[${i}]`))
  if (new Set(models).size !== models.length) throw new InvalidInputError('models must not repeat', { field: 'models' })
  return models
}

function policyOf(value: unknown): SessionPolicy {
  const d = DEFAULT_SESSION_POLICY
  const c = v.requireOptions(value ?? {}, 'config', Object.keys(d))
  const ms = (key: keyof SessionPolicy, max = 7 * 86_400_000) => v.optionalInt(c[key], `config.${key}`, 0, max, d[key] as number)
  const patterns = (key: 'retryPatterns' | 'fatalPatterns') => {
    const list = c[key]
    if (list === undefined) return d[key]
    if (!Array.isArray(list)) throw new InvalidInputError(`config.${key} must be an array of strings`, { field: `config.${key}` })
    return list.map((p, i) => v.requireString(p, `config.${key}[${i}]`, 1_000))
  }
  return {
    maxAttempts: v.optionalInt(c.maxAttempts, 'config.maxAttempts', 0, 1_000, d.maxAttempts),
    cooldownMs: ms('cooldownMs'),
    quotaCooldownMs: ms('quotaCooldownMs'),
    firstTokenTimeoutMs: v.optionalInt(c.firstTokenTimeoutMs, 'config.firstTokenTimeoutMs', 1, 86_400_000, d.firstTokenTimeoutMs),
    selfAbortWindowMs: ms('selfAbortWindowMs'),
    sameModelRetries: v.optionalInt(c.sameModelRetries, 'config.sameModelRetries', 0, 100, d.sameModelRetries),
    sameModelRetryDelayMs: ms('sameModelRetryDelayMs'),
    ttlMs: v.optionalInt(c.ttlMs, 'config.ttlMs', 1, 365 * 86_400_000, d.ttlMs),
    retryPatterns: patterns('retryPatterns'),
    fatalPatterns: patterns('fatalPatterns'),
  }
}

/**
 * Whatever a provider SDK threw, as the classifier reads it, with every text capped
 * (MAX_ERROR_MESSAGE, MAX_ERROR_FIELD) before it enters an event: the journal and the
 * context stay bounded whatever a provider sends.
 */
export function toModelError(error: unknown): ModelError {
  if (typeof error === 'string') return { message: v.truncateText(error, MAX_ERROR_MESSAGE) }
  if (!error || typeof error !== 'object') return { message: v.truncateText(String(error), MAX_ERROR_MESSAGE) }
  const e = error as Record<string, any>
  const headers = e.headers ?? e.response?.headers
  const header = (name: string) => (typeof headers?.get === 'function' ? headers.get(name) : headers?.[name])
  const status = e.status ?? e.statusCode ?? e.response?.status
  const retryAfter = e.retryAfter ?? header('retry-after')
  const text = (value: unknown, max: number) => (typeof value === 'string' ? v.truncateText(value, max) : null)
  return {
    status: typeof status === 'number' ? status : null,
    name: text(e.name, MAX_ERROR_FIELD),
    message: text(e.message, MAX_ERROR_MESSAGE),
    code: text(e.code, MAX_ERROR_FIELD),
    retryAfter: typeof retryAfter === 'number' ? retryAfter : text(retryAfter, MAX_ERROR_FIELD),
  }
}

export function toSession(row: SessionRow, now: number): Session {
  const snapshot = JSON.parse(row.snapshot) as { context: SessionContext; value: unknown }
  const c = snapshot.context
  return {
    id: row.id,
    agent: c.agent,
    status: row.status,
    state: row.state,
    model: c.model,
    models: c.models.map((model) => ({
      model,
      current: model === c.model,
      coolingUntil: isCooling(c, model, now) ? cooldownOf(c, model)!.until : null,
      reason: cooldownOf(c, model)?.reason ?? null,
    })),
    generation: c.generation,
    attempts: c.attempts,
    messageId: c.messageId,
    log: c.log,
    lastFailure: c.lastFailure,
    approvals: Object.entries(c.approvals).map(([tool, a]) => ({ tool, once: a.once, at: a.at })),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  }
}

export { statusOf }
export type { AnyMachineSnapshot, Json }
