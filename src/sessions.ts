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
  isCooling,
  type Attempt,
  type DispatchParams,
  type ModelError,
  type Notice,
  type SessionContext,
  type SessionEvent,
  type SessionPolicy,
} from '../machines/session.js'
import type { Kernel, StepResult, StepTx } from '../persistence/kernel.js'
import { withBusyRetry } from '../persistence/connection.js'
import { statusOf, type SessionQueries, type SessionRow } from '../persistence/sessions.js'
import {
  ChainExhaustedError,
  InvalidInputError,
  InvalidTransitionError,
  LockstepError,
  ModelCallFailedError,
  SessionBusyError,
  SessionNotFoundError,
} from './errors.js'
import { newId } from './ids.js'
import type { JournalFeed } from './journal-feed.js'
import type { JournalEntry, Json, Unsubscribe } from './types.js'
import * as v from './validate.js'

export type { Attempt, ModelError, Notice, SessionPolicy }

/** How the machine's decisions reach the host. Called after commit, in the committing process. */
export interface SessionAdapter {
  /** Send `message` to `model` (a fallback's replay keeps the message id). */
  prompt(sessionId: string, model: string, message: unknown, info: { generation: number; messageId: string }): void | Promise<void>
  /** Stop the request in flight (the session marks this as its own abort). */
  abort(sessionId: string, info: { generation: number; model: string }): void | Promise<void>
  notify?(sessionId: string, notice: Notice): void
}

export interface ModelStatus {
  model: string
  current: boolean
  /** Cooling down until then (ms since the epoch), or null. */
  coolingUntil: number | null
  reason: string | null
}

export interface Session {
  id: string
  agent: string | null
  /** idle | active | exhausted | archived (idle past its TTL; the next prompt reopens it) | deleted */
  status: string
  /** The machine state, e.g. `active.awaitingFirstToken`. */
  state: string
  model: string
  models: ModelStatus[]
  generation: number
  /** Fallback switches made for the current prompt. */
  attempts: number
  messageId: string | null
  /** Every dispatch of the current prompt and how it ended. */
  log: Attempt[]
  lastFailure: string | null
  approvals: Array<{ tool: string; once: boolean; at: number }>
  createdAt: number
  updatedAt: number
}

export interface OpenSessionInput {
  agent?: string | null
  /** The chain, primary first. */
  models: string[]
  config?: Partial<SessionPolicy>
}

/** What a report did: `kinds` is empty when the machine did not accept it. */
export interface ReportResult {
  accepted: boolean
  kinds: string[]
  session: Session
}

export interface Attribution {
  /** The dispatch generation the report is about, when the host knows it. */
  generation?: number | null
  /** The model the report is about, when the host knows it. */
  model?: string | null
}

export interface CallContext {
  model: string
  message: unknown
  signal: AbortSignal
  /** Call on every token (or at least the first): it cancels the first-token timeout. */
  onToken(): void
  generation: number
  attempt: number
}

export interface RunInput {
  agent?: string | null
  models: string[]
  config?: Partial<SessionPolicy>
  message: { id?: string } & Record<string, unknown>
  call(context: CallContext): Promise<unknown>
  /** Fallback/exhausted notices while it runs. */
  onNotice?(notice: Notice): void
}

export interface RunResult {
  output: unknown
  model: string
  generation: number
  attempts: Attempt[]
}

const MAX_MODELS = 50
export const SESSION_STATUSES = ['idle', 'active', 'exhausted', 'archived', 'deleted'] as const

export class Sessions {
  private adapter: SessionAdapter | null = null
  private readonly runs = new Map<string, RunDriver>()

  constructor(
    private readonly kernel: Kernel,
    private readonly q: SessionQueries,
    private readonly feed: JournalFeed,
    private readonly guard: <T>(operation: () => Promise<T>) => Promise<T>,
    private readonly busyRetryMs: number,
    private readonly onError: (error: unknown) => void,
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
    const i = v.requireRecord(input, 'open input')
    const models = modelList(i.models)
    const agent = v.optionalString(i.agent, 'agent')
    const policy = policyOf(i.config)
    await this.write((tx) => {
      const existing = this.q.get(sessionId)
      if (!existing) {
        this.q.insert(sessionId, tx.now)
        this.kernel.createInTx(tx, SESSION_MACHINE_ID, sessionId, { id: sessionId, agent, models, policy }, { type: 'OPEN' })
        return
      }
      const context = JSON.parse(existing.snapshot).context as SessionContext
      const same =
        JSON.stringify(context.models) === JSON.stringify(models) &&
        context.agent === agent &&
        JSON.stringify(context.policy) === JSON.stringify(policy)
      if (!same) this.step(tx, sessionId, { type: 'CONFIGURE', agent, models, policy })
    })
    return this.mustGet(sessionId)
  }

  async get(id: string): Promise<Session | null> {
    const sessionId = v.requireString(id, 'sessionId')
    return this.read(() => {
      const row = this.q.get(sessionId)
      return row ? toSession(row, this.kernel.now()) : null
    })
  }

  async list(filter: { status?: string; limit?: number } = {}): Promise<Session[]> {
    const f = v.requireRecord(filter, 'list filter')
    const status = v.optionalString(f.status, 'status')
    if (status !== null && !SESSION_STATUSES.includes(status as never)) {
      throw new InvalidInputError(`status must be one of ${SESSION_STATUSES.join(', ')}`, { field: 'status' })
    }
    const limit = v.optionalInt(f.limit, 'limit', 1, 10_000, 100)
    return this.read(() => this.q.list(status, limit).map((row) => toSession(row, this.kernel.now())))
  }

  // ---- reports from a host ----

  /** A new message. With `model`, the host already sent it there; without, the session dispatches it (adapter.prompt). */
  async prompt(id: string, input: { message: unknown; messageId?: string; model?: string | null }): Promise<ReportResult> {
    const i = v.requireRecord(input, 'prompt input')
    const message = v.jsonValue(i.message, 'message', 1024 * 1024)
    return this.report(id, {
      type: 'PROMPT',
      messageId: v.optionalString(i.messageId, 'messageId') ?? newId('m'),
      message: message === null ? null : JSON.parse(message),
      model: v.optionalString(i.model, 'model'),
    })
  }

  async token(id: string, input: Attribution = {}): Promise<ReportResult> {
    return this.report(id, { type: 'TOKEN', ...attribution(input) })
  }

  /** A model error as the host saw it: HTTP status, name, message, code, Retry-After. */
  async error(id: string, input: Attribution & { error: ModelError | Error | string }): Promise<ReportResult> {
    const i = v.requireRecord(input, 'error input')
    return this.report(id, { type: 'ERROR', error: toModelError(i.error), ...attribution(i) })
  }

  async aborted(id: string, input: Attribution = {}): Promise<ReportResult> {
    return this.report(id, { type: 'ABORTED', ...attribution(input) })
  }

  async idle(id: string, input: Attribution = {}): Promise<ReportResult> {
    return this.report(id, { type: 'IDLE', ...attribution(input) })
  }

  async modelSelected(id: string, model: string): Promise<ReportResult> {
    return this.report(id, { type: 'MODEL_SELECTED', model: v.requireString(model, 'model') })
  }

  async deleted(id: string): Promise<ReportResult> {
    return this.report(id, { type: 'DELETE' })
  }

  // ---- approvals ----

  async approve(id: string, tool: string, options: { once?: boolean } = {}): Promise<Session> {
    const once = v.optionalBoolean(v.requireRecord(options, 'approve options').once, 'once', false)
    const result = await this.report(id, { type: 'APPROVE', tool: v.requireString(tool, 'tool'), once })
    if (!result.accepted) throw new InvalidTransitionError(id, 'APPROVE', result.session.state, 'the session is deleted')
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
    const q = v.requireRecord(query, 'events query')
    const page = {
      machineId: SESSION_MACHINE_ID,
      actorId: v.optionalString(q.sessionId, 'sessionId') ?? undefined,
      after: v.optionalInt(q.after, 'after', 0, Number.MAX_SAFE_INTEGER, 0),
      limit: v.optionalInt(q.limit, 'limit', 1, 10_000, 1_000),
    }
    return this.read(() => this.feed.page(page))
  }

  subscribe(listener: (entry: JournalEntry) => void, options: { sessionId?: string; after?: number } = {}): Unsubscribe {
    if (typeof listener !== 'function') throw new InvalidInputError('listener must be a function', { field: 'listener' })
    const o = v.requireRecord(options, 'subscribe options')
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
    const sessionId = v.requireString(id, 'sessionId')
    const i = v.requireRecord(input, 'run input')
    if (typeof i.call !== 'function') throw new InvalidInputError('call must be a function', { field: 'call' })
    const message = v.requireRecord(i.message, 'message')
    const messageId = v.optionalString(message.id, 'message.id') ?? newId('m')
    if (this.runs.has(sessionId)) throw new SessionBusyError(sessionId)
    await this.open(sessionId, { agent: input.agent, models: input.models, config: input.config })
    const driver = new RunDriver(this, sessionId, messageId, message, input, this.onError)
    this.runs.set(sessionId, driver)
    try {
      driver.start()
      const result = await this.report(sessionId, {
        type: 'PROMPT',
        messageId,
        message: JSON.parse(v.jsonValue(message, 'message', 1024 * 1024)!),
        runner: true,
      })
      driver.observe(result.session)
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
            this.report(sessionId, { type: 'DISPATCH_FAILED', generation: params.generation, model: params.model, error: toModelError(error) }).catch(this.onError),
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
    const step = await this.write((tx) => this.step(tx, sessionId, event))
    return { accepted: step.accepted, kinds: step.journal.map((e) => e.kind), session: await this.mustGet(sessionId) }
  }

  private step(tx: StepTx, sessionId: string, event: DistributiveOmit<SessionEvent, 'at'>): StepResult {
    const step = this.kernel.stepInTx(tx, SESSION_MACHINE_ID, sessionId, event)
    if (!step) throw new SessionNotFoundError(sessionId)
    return step
  }

  private write<T>(fn: (tx: StepTx) => T): Promise<T> {
    return this.guard(() => this.kernel.write(fn))
  }

  private read<T>(fn: () => T): Promise<T> {
    return this.guard(() => withBusyRetry(fn, this.busyRetryMs))
  }

  private async mustGet(id: string): Promise<Session> {
    const row = await withBusyRetry(() => this.q.get(id), this.busyRetryMs)
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
  }

  start(): void {
    this.unsubscribe = this.sessions.subscribe(() => void this.refresh(), { sessionId: this.sessionId })
  }

  stop(): void {
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
    if (this.settled) return
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
      case 'deleted':
        this.fail(new ModelCallFailedError(this.sessionId, session.log, 'the session was deleted', 'aborted'))
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
    const onToken = () => {
      if (tokenReported || controller.signal.aborted) return
      tokenReported = true
      this.sessions.report(this.sessionId, { type: 'TOKEN', generation, model }).catch(this.onError)
    }
    Promise.resolve()
      .then(() => this.input.call({ model, message: this.message, signal: controller.signal, onToken, generation, attempt }))
      .then(
        (output) => {
          if (controller.signal.aborted) return
          this.outputs.set(generation, output)
          return this.sessions.report(this.sessionId, { type: 'COMPLETED', generation, model })
        },
        (error: unknown) => {
          if (controller.signal.aborted) return // our own abort: not a failure of the model
          return this.sessions.report(this.sessionId, { type: 'ERROR', generation, model, error: toModelError(error) })
        },
      )
      .then((result) => result && this.observe(result.session))
      .catch((error: unknown) => this.fail(error as Error))
  }
}

function attribution(input: unknown): { generation?: number | null; model?: string | null } {
  const i = v.requireRecord(input ?? {}, 'report')
  return {
    generation: i.generation === undefined || i.generation === null ? null : v.optionalInt(i.generation, 'generation', 0, Number.MAX_SAFE_INTEGER, 0),
    model: v.optionalString(i.model, 'model'),
  }
}

function modelList(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0) throw new InvalidInputError('models must be a non-empty array of model names', { field: 'models' })
  if (value.length > MAX_MODELS) throw new InvalidInputError(`at most ${MAX_MODELS} models`, { field: 'models' })
  const models = value.map((m, i) => v.requireString(m, `models[${i}]`))
  if (new Set(models).size !== models.length) throw new InvalidInputError('models must not repeat', { field: 'models' })
  return models
}

function policyOf(value: unknown): SessionPolicy {
  const c = v.requireRecord(value ?? {}, 'config')
  const d = DEFAULT_SESSION_POLICY
  const ms = (key: keyof SessionPolicy, max = 7 * 86_400_000) => v.optionalInt(c[key], `config.${key}`, 0, max, d[key] as number)
  const patterns = (key: 'retryPatterns' | 'fatalPatterns') => {
    const list = c[key]
    if (list === undefined) return d[key]
    if (!Array.isArray(list)) throw new InvalidInputError(`config.${key} must be an array of strings`, { field: `config.${key}` })
    return list.map((p, i) => v.requireString(p, `config.${key}[${i}]`, 1_000))
  }
  const known = new Set(Object.keys(d))
  for (const key of Object.keys(c)) if (!known.has(key)) throw new InvalidInputError(`unknown config key ${key}`, { field: `config.${key}` })
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

/** Whatever a provider SDK threw, as the classifier reads it. */
export function toModelError(error: unknown): ModelError {
  if (typeof error === 'string') return { message: error }
  if (!error || typeof error !== 'object') return { message: String(error) }
  const e = error as Record<string, any>
  const headers = e.headers ?? e.response?.headers
  const header = (name: string) => (typeof headers?.get === 'function' ? headers.get(name) : headers?.[name])
  const status = e.status ?? e.statusCode ?? e.response?.status
  const retryAfter = e.retryAfter ?? header('retry-after')
  return {
    status: typeof status === 'number' ? status : null,
    name: typeof e.name === 'string' ? e.name : null,
    message: typeof e.message === 'string' ? e.message : null,
    code: typeof e.code === 'string' ? e.code : null,
    retryAfter: typeof retryAfter === 'string' || typeof retryAfter === 'number' ? retryAfter : null,
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
      coolingUntil: isCooling(c, model, now) ? c.cooldowns[model]!.until : null,
      reason: c.cooldowns[model]?.reason ?? null,
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
