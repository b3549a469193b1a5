/**
 * The visual state inspector: a small read-only HTTP server over a lockstep file.
 *
 *   const inspector = await startInspector(orch)          // http://127.0.0.1:4600/
 *   await inspector.close()
 *
 * It reads a SQLite file or a PostgreSQL schema through a connection of its own that is
 * read-only at the database (never writes), serves a page (plain HTML/CSS/JS, no CDN,
 * works offline; elkjs lays out the graphs in the browser, served from node_modules) and
 * a JSON API, and streams every committed journal entry of any process or host as
 * server-sent events, following the journal up to its safe horizon (SQLite: noticed by
 * polling `PRAGMA data_version`; PostgreSQL: journal.ts).
 *
 * It binds 127.0.0.1 by default. Any other host needs a token, and then every request
 * must carry it (`?token=` or `Authorization: Bearer`).
 */
import { timingSafeEqual } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AnyStateMachine } from 'xstate'
import { SESSION_MACHINE_ID, SESSION_MACHINE_VERSION, sessionMachine } from '../../../machines/session.js'
import { TASK_MACHINE_ID, TASK_MACHINE_VERSION, TASK_STATUSES, taskMachine } from '../../../machines/task.js'
import { InvalidInputError, LockstepError } from '../../errors.js'
import { toSession } from '../../sessions.js'
import { toRun, toTask } from '../../task-board.js'
import type { Inspector, InspectorOptions, Orchestrator, StatelyInspectorLike } from '../../types.js'
import { requireOptions, requireRecord } from '../../validate.js'
import { publicContext, replayActor, ReplayCache, type Replay } from './replay.js'
import { statechartOf, takenTransition, type Statechart } from './statechart.js'
import type { SessionListRow } from '../../../persistence/store.js'
import { InspectorStore, type InspectTarget, type JournalRowLite, type SessionRowFull, type TaskRowFull } from './store.js'

export type { Inspector, InspectorOptions, StatelyInspectorLike } from '../../types.js'

export const DEFAULT_INSPECTOR_PORT = 4600
/** Every key InspectorOptions has: any other is refused (INVALID_INPUT naming it). */
export const INSPECTOR_OPTIONS = ['port', 'host', 'token', 'pollMs', 'machines', 'stately'] as const satisfies ReadonlyArray<keyof InspectorOptions>
const SESSION_STATUSES = ['idle', 'active', 'exhausted', 'archived', 'deleted'] as const
const MAX_EVENT_CHARS = 16_384
const SSE_EVENT_CHARS = 2_048
const SSE_BATCH = 1_000
const SSE_BACKLOG = 2_000
const SSE_MAX_BUFFER = 4 * 1024 * 1024
const SSE_PING_MS = 15_000

/**
 * Where an orchestrator opened on a PostgreSQL URL reads, for startInspector(orch): its
 * `path` names the URL without the password, which cannot connect. Held here rather than on
 * the orchestrator, so the URL with its password is not a property anyone can print.
 */
const orchestratorTargets = new WeakMap<object, InspectTarget>()

/** Called by createOrchestrator for a store that is not a file. */
export function registerInspectTarget(orch: object, target: InspectTarget): void {
  orchestratorTargets.set(orch, target)
}

const isPostgresUrl = (value: string) => /^postgres(ql)?:\/\//i.test(value)

function targetOf(target: unknown): InspectTarget {
  if (typeof target === 'string' && target !== '') return isPostgresUrl(target) ? { url: target } : { path: target }
  if (target && typeof target === 'object') {
    const registered = orchestratorTargets.get(target)
    if (registered) return registered
    const t = target as { path?: unknown; url?: unknown; schema?: unknown; pool?: unknown }
    if (typeof t.url === 'string' && isPostgresUrl(t.url)) {
      if (t.schema !== undefined && typeof t.schema !== 'string') throw new InvalidInputError('schema must be a string', { field: 'schema' })
      if (t.pool !== undefined && (typeof t.pool !== 'object' || t.pool === null)) throw new InvalidInputError('pool must be an object', { field: 'pool' })
      return { url: t.url, schema: t.schema as string | undefined, pool: t.pool as Record<string, unknown> | undefined }
    }
    if (typeof t.path === 'string' && t.path !== '') return { path: t.path }
  }
  throw new InvalidInputError('startInspector needs an orchestrator, a database path, a postgres:// URL or { url, schema }', { field: 'path' })
}

/** Start the inspector on an orchestrator (its store), a database path, or a PostgreSQL URL (`{ url, schema }` for another schema than `lockstep`). */
export async function startInspector(
  target: Orchestrator | string | { path: string } | { url: string; schema?: string; pool?: Record<string, unknown> },
  options: InspectorOptions = {},
): Promise<Inspector> {
  const where = targetOf(target)
  const o = validateOptions(options)
  const stately = await statelyInspector(options.stately)
  let store: InspectorStore | null = null
  try {
    store = await InspectorStore.open(where)
    return await serve(store, o, stately)
  } catch (error) {
    await store?.close()
    if (stately?.owned) stately.inspector.stop?.()
    throw error
  }
}

/** The Stately inspector to stream to, if asked for; `@statelyai/inspect` is an optional dependency, loaded only then. */
async function statelyInspector(option: InspectorOptions['stately']): Promise<{ inspector: StatelyInspectorLike; owned: boolean } | null> {
  if (option === undefined || option === null) return null
  if (typeof option !== 'object') throw new InvalidInputError('stately must be { url } or { inspector }', { field: 'stately' })
  requireOptions(option, 'stately', ['url', 'inspector'])
  if ('inspector' in option) {
    const i = option.inspector
    if (!i || typeof i.actor !== 'function' || typeof i.event !== 'function' || typeof i.snapshot !== 'function') {
      throw new InvalidInputError('stately.inspector must have actor(), event() and snapshot() (an @statelyai/inspect inspector)', { field: 'stately.inspector' })
    }
    return { inspector: i, owned: false }
  }
  const url = (option as { url?: unknown }).url
  if (typeof url !== 'string' || !/^wss?:\/\//.test(url)) throw new InvalidInputError('stately.url must be a ws:// or wss:// URL', { field: 'stately.url' })
  const name = '@statelyai/inspect'
  let mod: { createWebSocketInspector(options: { url: string }): StatelyInspectorLike }
  try {
    mod = (await import(name)) as typeof mod
  } catch {
    throw new InvalidInputError(`stately.url needs the optional package ${name}: npm install ${name}`, { field: 'stately', package: name })
  }
  return { inspector: mod.createWebSocketInspector({ url }), owned: true }
}

/** `inspect({ db })`: the same as startInspector(db, options); `orch.inspect(options)` binds `db`. */
export function inspect(options: InspectorOptions & { db: Orchestrator | string | { url: string; schema?: string } }): Promise<Inspector> {
  const { db, ...rest } = options ?? ({} as { db: string })
  return startInspector(db, rest)
}

interface ValidOptions {
  port: number
  host: string
  token: string | null
  pollMs: number
  machines: Map<string, { machine: AnyStateMachine; version: number }>
}

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1'
}

function validateOptions(input: InspectorOptions): ValidOptions {
  const options = requireOptions(input, 'options', INSPECTOR_OPTIONS) as InspectorOptions
  const port = options.port ?? DEFAULT_INSPECTOR_PORT
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new InvalidInputError('port must be an integer 0..65535', { field: 'port' })
  const host = options.host ?? '127.0.0.1'
  if (typeof host !== 'string' || host === '' || host.length > 255) throw new InvalidInputError('host must be a host name or address', { field: 'host' })
  let token: string | null = null
  if (options.token !== undefined && options.token !== null) {
    if (typeof options.token !== 'string' || options.token.length < 8 || options.token.length > 512 || /[\s"'<>&]/.test(options.token)) {
      throw new InvalidInputError('token must be 8..512 characters without spaces, quotes or <>&', { field: 'token' })
    }
    token = options.token
  }
  if (!isLoopbackHost(host) && token === null) {
    throw new InvalidInputError(
      `refusing to serve the inspector on ${host}: it is not a loopback address, and anyone who can reach it could read the board; pass a token (--token) or bind 127.0.0.1`,
      { field: 'host', host },
    )
  }
  const pollMs = options.pollMs ?? 100
  if (!Number.isInteger(pollMs) || pollMs < 10 || pollMs > 10_000) throw new InvalidInputError('pollMs must be an integer 10..10000', { field: 'pollMs' })
  const machines = new Map<string, { machine: AnyStateMachine; version: number }>([
    [TASK_MACHINE_ID, { machine: taskMachine as unknown as AnyStateMachine, version: TASK_MACHINE_VERSION }],
    [SESSION_MACHINE_ID, { machine: sessionMachine as unknown as AnyStateMachine, version: SESSION_MACHINE_VERSION }],
  ])
  for (const [id, def] of Object.entries(requireRecord(options.machines ?? {}, 'machines') as Record<string, { machine?: unknown; version?: unknown }>)) {
    if (!def || typeof def !== 'object' || Object.keys(def).some((key) => key !== 'machine' && key !== 'version' && key !== 'migrations') || !def.machine || typeof (def.machine as { transition?: unknown }).transition !== 'function' || !Number.isInteger(def.version)) {
      throw new InvalidInputError(`machines.${id} must be { machine, version }`, { field: `machines.${id}` })
    }
    machines.set(id, def as { machine: AnyStateMachine; version: number })
  }
  return { port, host, token, pollMs, machines }
}

// ---- errors as JSON ----

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message)
  }
}

const badParam = (field: string, message: string) => new HttpError(400, 'INVALID_INPUT', `${field}: ${message}`, { field })
const notFound = (what: string, details: Record<string, unknown>) => new HttpError(404, 'NOT_FOUND', `${what} does not exist`, details)

/** Strict query parameters: unknown or repeated ones are a 400, like any malformed value. */
class Params {
  private readonly seen = new Set<string>()
  constructor(
    private readonly search: URLSearchParams,
    allowed: string[],
  ) {
    for (const key of search.keys()) {
      if (key === 'token') continue
      if (!allowed.includes(key)) throw badParam(key, `unknown query parameter (known: ${allowed.join(', ') || 'none'})`)
      if (this.seen.has(key)) throw badParam(key, 'given more than once')
      this.seen.add(key)
    }
  }

  str(name: string, max = 1_000): string | undefined {
    const value = this.search.get(name)
    if (value === null) return undefined
    if (value === '') throw badParam(name, 'must not be empty (leave it out instead)')
    if (value.length > max) throw badParam(name, `longer than ${max} characters`)
    return value
  }

  int(name: string, min: number, max: number): number | undefined {
    const value = this.search.get(name)
    if (value === null) return undefined
    if (!/^-?\d{1,16}$/.test(value)) throw badParam(name, 'must be an integer')
    const n = Number(value)
    if (!Number.isSafeInteger(n) || n < min || n > max) throw badParam(name, `must be an integer ${min}..${max}`)
    return n
  }

  oneOf<T extends string>(name: string, values: readonly T[]): T | undefined {
    const value = this.str(name)
    if (value === undefined) return undefined
    if (!values.includes(value as T)) throw badParam(name, `must be one of ${values.join(', ')}`)
    return value as T
  }
}

// ---- the server ----

interface Assets {
  html: string
  files: Map<string, { type: string; body: Buffer | string }>
}

function pageDir(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  // Built: dist/src/inspector/page (copied by `npm run build`); from source (tests): src/inspector/page.
  for (const dir of [join(here, 'page'), join(here, '..', '..', '..', 'src', 'inspector', 'page')]) {
    if (existsSync(join(dir, 'index.html'))) return dir
  }
  throw new Error(`inspector page not found next to ${here}`)
}

function loadAssets(): Assets {
  const dir = pageDir()
  const require = createRequire(import.meta.url)
  const files = new Map<string, { type: string; body: Buffer | string }>([
    ['/assets/app.js', { type: 'text/javascript; charset=utf-8', body: readFileSync(join(dir, 'app.js'), 'utf8') }],
    ['/assets/graph.js', { type: 'text/javascript; charset=utf-8', body: readFileSync(join(dir, 'graph.js'), 'utf8') }],
    ['/assets/app.css', { type: 'text/css; charset=utf-8', body: readFileSync(join(dir, 'app.css'), 'utf8') }],
    ['/assets/elk.bundled.js', { type: 'text/javascript; charset=utf-8', body: readFileSync(require.resolve('elkjs/lib/elk.bundled.js')) }],
  ])
  return { html: readFileSync(join(dir, 'index.html'), 'utf8'), files }
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cache-Control': 'no-store',
}
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"

interface SseClient {
  res: ServerResponse
  lagging: boolean
  /** Chunks streamed before its hello was written (null once it was). */
  queue: string[] | null
}

async function serve(store: InspectorStore, o: ValidOptions, stately: { inspector: StatelyInspectorLike; owned: boolean } | null): Promise<Inspector> {
  const assets = loadAssets()
  const charts = new Map<string, Statechart>()
  const replays = new ReplayCache()
  const clients = new Set<SseClient>()
  const sockets = new Set<Socket>()
  /** Every entry up to here has been streamed (or predates every open stream). */
  let feedCursor = await store.horizon()
  /** More entries may be ready without a new commit (a full batch, or a horizon still waiting). */
  let pending = false
  let polling = false
  /** The stream's cursor catching up to the present before a first client (the entries before it are nobody's to stream). */
  let restarting: Promise<void> | null = null
  /** Bumped when the stream restarts from the current horizon: a poll in flight then drops what it read. */
  let epoch = 0
  let pollTimer: NodeJS.Timeout | null = null
  let pingTimer: NodeJS.Timeout | null = null
  let closed: Promise<void> | null = null

  const chartSources = new Map<string, AnyStateMachine>()
  const chart = (machineId: string): Statechart | null => {
    const def = o.machines.get(machineId)
    if (!def) return null
    // Keyed by the machine object too: a hot reload swaps it (see orch.inspect).
    let c = charts.get(machineId)
    if (!c || chartSources.get(machineId) !== def.machine) {
      c = statechartOf(machineId, def.machine)
      charts.set(machineId, c)
      chartSources.set(machineId, def.machine)
    }
    return c
  }

  const summary = (seq: number) => store.summary(TASK_STATUSES, SESSION_STATUSES, seq)

  // ---- the event stream: one poll loop for all clients ----

  const send = (client: SseClient, chunk: string) => {
    if (client.queue) return void client.queue.push(chunk)
    if (client.lagging || client.res.writableEnded) return
    client.res.write(chunk)
    if (client.res.writableLength > SSE_MAX_BUFFER) {
      // A reader that cannot keep up gets no more entries; once its buffer drains it is told to reload its views.
      client.lagging = true
      client.res.once('drain', () => {
        client.lagging = false
        send(client, `event: resync\ndata: ${JSON.stringify({ seq: feedCursor })}\n\n`)
      })
    }
  }

  /** Journal rows as the page gets them: each with its actor's current projection (one lookup per actor). */
  const enrich = async (rows: JournalRowLite[]): Promise<Array<Record<string, unknown>>> => {
    const taskIds = new Set<string>()
    const sessionIds = new Set<string>()
    for (const r of rows) {
      if (r.machine_id === TASK_MACHINE_ID) taskIds.add(r.actor_id)
      else if (r.machine_id === SESSION_MACHINE_ID) sessionIds.add(r.actor_id)
    }
    const tasks = new Map((await store.tasksLite([...taskIds])).map((t) => [t.id, t]))
    const sessions = new Map((await store.sessionsLite([...sessionIds])).map((s) => [s.id, sessionLite(s)]))
    return rows.map((r) => {
      const data: Record<string, unknown> = entryJson(r, SSE_EVENT_CHARS)
      if (r.machine_id === TASK_MACHINE_ID) data.task = tasks.get(r.actor_id) ?? null
      else if (r.machine_id === SESSION_MACHINE_ID) data.session = sessions.get(r.actor_id) ?? null
      return data
    })
  }

  const entryMessages = async (rows: JournalRowLite[]): Promise<string> => {
    let out = ''
    for (const data of await enrich(rows)) out += `id: ${data.seq}\nevent: entry\ndata: ${JSON.stringify(data)}\n\n`
    return out
  }

  const bridge = stately ? new StatelyBridge(stately.inspector, store, o.machines) : null

  /** One look at the journal: entries up to the horizon, streamed in seq order. One at a time. */
  let inFlight: Promise<void> = Promise.resolve()
  const poll = () => {
    if (polling || restarting || closed || (clients.size === 0 && !bridge)) return
    polling = true
    inFlight = look()
  }
  const look = async () => {
    const started = epoch
    try {
      if (!(await store.changed()) && !pending) return
      // Until this look succeeds, the next tick looks again even without a new commit.
      pending = true
      const horizon = await store.horizon()
      const rows = horizon > feedCursor ? await store.journalAfter(feedCursor, horizon, SSE_BATCH) : []
      // A full batch: more to read, the next tick goes on without waiting for a commit.
      const full = rows.length === SSE_BATCH
      const cursor = full ? rows[rows.length - 1]!.seq : Math.max(feedCursor, horizon)
      const chunk = rows.length > 0 && clients.size > 0 ? (await entryMessages(rows)) + `event: summary\ndata: ${JSON.stringify(await summary(cursor))}\n\n` : ''
      if (started !== epoch) return
      feedCursor = cursor
      pending = full
      if (rows.length > 0) await bridge?.send(rows)
      if (chunk) for (const client of clients) send(client, chunk)
    } catch (error) {
      // Busy or unreachable: the next tick tries again from the same cursor.
      if (!(error instanceof LockstepError && (error.code === 'STORE_BUSY' || error.code === 'STORE_UNAVAILABLE'))) console.error('[lockstep inspector]', error)
    } finally {
      polling = false
    }
  }

  const startPolling = () => {
    if (pollTimer) return
    pollTimer = setInterval(poll, o.pollMs)
    pollTimer.unref()
  }
  if (bridge) startPolling()

  const openStream = async (req: IncomingMessage, res: ServerResponse, params: Params) => {
    const lastEventId = req.headers['last-event-id']
    let after = params.int('after', 0, Number.MAX_SAFE_INTEGER)
    if (after === undefined && typeof lastEventId === 'string' && /^\d{1,16}$/.test(lastEventId)) after = Number(lastEventId)
    // Entries streamed while its hello is being read wait in its queue, so it misses none.
    const client: SseClient = { res, lagging: false, queue: [] }
    if (clients.size === 0 && !bridge) {
      epoch++ // a poll still in flight for a stream that ended drops what it read
      restarting ??= store
        .horizon()
        .then((horizon) => {
          feedCursor = Math.max(feedCursor, horizon)
          pending = false
        })
        .finally(() => (restarting = null))
    }
    clients.add(client)
    const drop = () => clients.delete(client)
    req.on('close', drop)
    res.on('close', drop)
    try {
      await restarting
      const cursor = feedCursor
      let hello = `retry: 2000\nevent: hello\ndata: ${JSON.stringify({ seq: cursor, summary: await summary(cursor) })}\n\n`
      if (after !== undefined && after < cursor) {
        const backlog = await store.journalAfter(after, cursor, SSE_BACKLOG + 1)
        if (backlog.length > SSE_BACKLOG) hello += `event: resync\ndata: ${JSON.stringify({ seq: cursor })}\n\n`
        else hello += await entryMessages(backlog)
      }
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'Content-Type': 'text/event-stream; charset=utf-8',
        Connection: 'keep-alive',
        'X-Accel-Buffering': 'no',
      })
      const queued = client.queue!
      client.queue = null
      send(client, hello)
      for (const chunk of queued) send(client, chunk)
    } catch (error) {
      drop()
      throw error
    }
    startPolling()
    if (!pingTimer) {
      pingTimer = setInterval(() => {
        for (const c of clients) send(c, `: ping\n\n`)
      }, SSE_PING_MS)
      pingTimer.unref()
    }
  }

  // ---- JSON API ----

  const replayOf = async (actorId: string, machineId: string, row: { state: string; snapshot: string; machine_version: number }): Promise<Replay> => {
    const lastSeq = await store.lastActorSeq(actorId, machineId)
    const cached = replays.get(actorId, lastSeq)
    if (cached) return cached
    const def = o.machines.get(machineId)
    let snapshot: { value?: unknown; context?: Record<string, unknown> } | null = null
    try {
      snapshot = JSON.parse(row.snapshot)
    } catch {
      snapshot = null
    }
    const replay = await replayActor(store, def?.machine ?? null, {
      id: actorId,
      machineId,
      state: row.state,
      snapshot,
      rowMachineVersion: row.machine_version,
      knownMachineVersion: def?.version ?? -1,
    })
    replays.set(actorId, replay)
    return replay
  }

  const findActor = async (id: string): Promise<{ kind: 'task'; row: TaskRowFull } | { kind: 'session'; row: SessionRowFull } | null> => {
    const task = await store.task(id)
    if (task) return { kind: 'task', row: task }
    const session = await store.session(id)
    if (session) return { kind: 'session', row: session }
    return null
  }

  const journalPage = async (actorId: string, machineId: string, before: number | undefined, limit: number) => {
    const rows = await store.actorJournalDesc(actorId, machineId, before ?? Number.MAX_SAFE_INTEGER, limit + 1)
    const more = rows.length > limit
    if (more) rows.length = limit
    const total = await store.actorJournalCount(actorId, machineId)
    return { entries: rows.map((r) => entryJson(r, MAX_EVENT_CHARS)), next: more ? rows[rows.length - 1]!.seq : null, total }
  }

  const actorPath = (rest: string): { id: string; sub: string | null } => {
    const [rawId, sub, ...extra] = rest.split('/')
    if (!rawId || extra.length > 0) throw new HttpError(404, 'NOT_FOUND', 'no such endpoint')
    let id: string
    try {
      id = decodeURIComponent(rawId)
    } catch {
      throw badParam('id', 'is not valid percent-encoding')
    }
    if (id.length > 1_000) throw badParam('id', 'longer than 1000 characters')
    return { id, sub: sub ?? null }
  }

  const api = async (path: string, search: URLSearchParams): Promise<unknown> => {
    if (path === '/api/summary') {
      new Params(search, [])
      return summary(await store.horizon())
    }
    if (path === '/api/tasks') {
      const p = new Params(search, ['status', 'assignee', 'tenant', 'q', 'after', 'limit'])
      return store.listTasks({
        status: p.oneOf('status', TASK_STATUSES),
        assignee: p.str('assignee'),
        tenant: p.str('tenant'),
        q: p.str('q', 200),
        after: p.str('after'),
        limit: p.int('limit', 1, 1_000) ?? 100,
      })
    }
    if (path === '/api/graph') {
      const p = new Params(search, ['status', 'assignee', 'tenant', 'q', 'focus', 'depth', 'limit'])
      const focus = p.str('focus')
      if (focus !== undefined && !(await store.taskExists(focus))) throw notFound(`task ${JSON.stringify(focus)}`, { field: 'focus', id: focus })
      return store.graph({
        status: p.oneOf('status', TASK_STATUSES),
        assignee: p.str('assignee'),
        tenant: p.str('tenant'),
        q: p.str('q', 200),
        focus,
        depth: p.int('depth', 1, 100) ?? 20,
        limit: p.int('limit', 1, 2_000) ?? 300,
      })
    }
    if (path === '/api/sessions') {
      const p = new Params(search, ['status', 'after', 'limit'])
      const page = await store.listSessions({ status: p.oneOf('status', SESSION_STATUSES), after: p.str('after'), limit: p.int('limit', 1, 1_000) ?? 100 })
      return { sessions: page.rows.map(sessionLite), next: page.next }
    }
    if (path.startsWith('/api/sessions/')) {
      const { id, sub } = actorPath(path.slice('/api/sessions/'.length))
      if (sub !== null) throw new HttpError(404, 'NOT_FOUND', 'no such endpoint')
      const p = new Params(search, ['before', 'limit'])
      const before = p.int('before', 1, Number.MAX_SAFE_INTEGER)
      const limit = p.int('limit', 1, 500) ?? 50
      const row = await store.session(id)
      if (!row) throw notFound(`session ${JSON.stringify(id)}`, { id })
      return sessionJson(row, await journalPage(id, SESSION_MACHINE_ID, before, limit))
    }
    if (path.startsWith('/api/machines/')) {
      const { id, sub } = actorPath(path.slice('/api/machines/'.length))
      if (sub !== null) throw new HttpError(404, 'NOT_FOUND', 'no such endpoint')
      new Params(search, [])
      const c = chart(id)
      if (!c) throw notFound(`machine ${JSON.stringify(id)}`, { machineId: id, known: [...o.machines.keys()] })
      return { ...c, version: o.machines.get(id)!.version }
    }
    if (path === '/api/journal') {
      const p = new Params(search, ['after', 'limit'])
      const after = p.int('after', 0, Number.MAX_SAFE_INTEGER)
      const limit = p.int('limit', 1, 1_000) ?? 100
      const horizon = await store.horizon()
      const rows = after === undefined ? await store.latestJournal(horizon, limit) : await store.journalAfter(after, horizon, limit)
      return { entries: await enrich(rows), seq: horizon }
    }
    if (path.startsWith('/api/actors/')) {
      const { id, sub } = actorPath(path.slice('/api/actors/'.length))
      if (sub === null || sub === 'journal') {
        const p = new Params(search, sub === null ? ['before', 'limit', 'runs'] : ['before', 'limit'])
        const before = p.int('before', 1, Number.MAX_SAFE_INTEGER)
        const limit = p.int('limit', 1, 500) ?? 50
        const runLimit = sub === null ? (p.int('runs', 0, 1_000) ?? 100) : 0
        const actor = await findActor(id)
        if (!actor) throw notFound(`actor ${JSON.stringify(id)}`, { id })
        const machineId = actor.row.machine_id
        const journal = await journalPage(id, machineId, before, limit)
        if (sub === 'journal') return journal
        if (actor.kind === 'session') return { ...sessionJson(actor.row, journal), kind: 'session' }
        return taskJson(actor.row, journal, runLimit)
      }
      if (sub === 'snapshot') {
        const p = new Params(search, ['seq'])
        const seq = p.int('seq', 1, Number.MAX_SAFE_INTEGER)
        if (seq === undefined) throw badParam('seq', 'is required')
        const actor = await findActor(id)
        if (!actor) throw notFound(`actor ${JSON.stringify(id)}`, { id })
        const entry = await store.entry(seq)
        if (!entry || entry.actor_id !== id || entry.machine_id !== actor.row.machine_id) {
          throw notFound(`journal entry ${seq} of actor ${JSON.stringify(id)}`, { id, seq })
        }
        return snapshotJson(actor.row, entry)
      }
      throw new HttpError(404, 'NOT_FOUND', 'no such endpoint')
    }
    throw new HttpError(404, 'NOT_FOUND', `no endpoint ${path}`)
  }

  const snapshotJson = async (row: { id: string; machine_id: string; state: string; snapshot: string; machine_version: number }, entry: JournalRowLite) => {
    const steps = await store.stepEntries(row.id, row.machine_id, entry.actor_version)
    const kinds = steps.map((s) => s.kind)
    const replay = await replayOf(row.id, row.machine_id, row)
    const step = replay.steps.find((s) => s.actorVersion === entry.actor_version) ?? null
    const c = chart(row.machine_id)
    const taken = c ? takenTransition(c, { stateBefore: entry.state_before, stateAfter: entry.state_after, eventType: entry.event_type, kinds }) : null
    return {
      actorId: row.id,
      machineId: row.machine_id,
      seq: entry.seq,
      actorVersion: entry.actor_version,
      step: { firstSeq: steps[0]?.seq ?? entry.seq, lastSeq: steps[steps.length - 1]?.seq ?? entry.seq, kinds },
      eventType: entry.event_type,
      stateBefore: entry.state_before,
      state: entry.state_after,
      at: entry.at,
      context: step?.context ?? null,
      fidelity: step?.fidelity ?? 'state-only',
      verified: replay.verified,
      note: step?.note ?? replay.note,
      transition: taken,
    }
  }

  type JournalPageJson = Awaited<ReturnType<typeof journalPage>>

  const taskJson = async (row: TaskRowFull, journal: JournalPageJson, runLimit: number) => {
    const runs = await store.runs(row.id, runLimit)
    const parents = await store.parents(row.id, 200)
    const children = await store.children(row.id, 200)
    return {
      kind: 'task',
      id: row.id,
      machineId: row.machine_id,
      machineVersion: row.machine_version,
      version: row.version,
      state: row.state,
      status: row.status,
      task: {
        n: row.n,
        ...toTask({ ...row, parents: JSON.stringify(parents) }),
        children,
      },
      context: publicContext((parseJson(row.snapshot) as { context?: unknown } | null)?.context),
      runs: {
        total: runs.total,
        items: runs.rows.map(toRun),
      },
      journal,
    }
  }

  const sessionJson = (row: SessionRowFull, journal: JournalPageJson) => {
    const snapshot = JSON.parse(row.snapshot) as { context?: { policy?: unknown } }
    return {
      kind: 'session',
      id: row.id,
      machineId: row.machine_id,
      machineVersion: row.machine_version,
      version: row.version,
      state: row.state,
      status: row.status,
      now: store.now(),
      session: toSession(row, store.now()),
      policy: snapshot.context?.policy ?? null,
      context: publicContext(snapshot.context),
      journal,
    }
  }

  // ---- HTTP ----

  const authorized = (req: IncomingMessage, url: URL): boolean => {
    if (o.token === null) return true
    const header = req.headers.authorization
    const given = typeof header === 'string' && /^Bearer\s+/i.test(header) ? header.replace(/^Bearer\s+/i, '').trim() : url.searchParams.get('token')
    if (given === null) return false
    const a = Buffer.from(given)
    const b = Buffer.from(o.token)
    return a.length === b.length && timingSafeEqual(a, b)
  }

  const json = (res: ServerResponse, status: number, body: unknown, head = false) => {
    const text = JSON.stringify(body)
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) })
    res.end(head ? undefined : text)
  }

  const fail = (res: ServerResponse, error: unknown, head: boolean) => {
    if (res.headersSent) {
      res.destroy()
      return
    }
    if (error instanceof HttpError) return json(res, error.status, { error: { code: error.code, message: error.message, details: error.details } }, head)
    if (error instanceof LockstepError) {
      // Busy or unreachable is the store's state, not the request's fault: try again.
      const status = error.code === 'INVALID_INPUT' ? 400 : error.code === 'STORE_BUSY' || error.code === 'STORE_UNAVAILABLE' ? 503 : 500
      return json(res, status, { error: { code: error.code, message: error.message, details: error.details } }, head)
    }
    console.error('[lockstep inspector]', error)
    return json(res, 500, { error: { code: 'INTERNAL', message: 'internal error', details: {} } }, head)
  }

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const head = req.method === 'HEAD'
    try {
      if (req.method !== 'GET' && !head) {
        res.setHeader('Allow', 'GET, HEAD')
        throw new HttpError(405, 'METHOD_NOT_ALLOWED', 'the inspector is read-only: GET only')
      }
      let url: URL
      try {
        url = new URL(req.url ?? '/', 'http://inspector.invalid')
      } catch {
        throw new HttpError(400, 'INVALID_INPUT', 'malformed request URL')
      }
      if (!authorized(req, url)) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="lockstep inspector"')
        throw new HttpError(401, 'UNAUTHORIZED', 'this inspector needs its token: ?token=... or Authorization: Bearer ...')
      }
      // Without a token only loopback is served: refuse other Host names (DNS rebinding).
      if (o.token === null) {
        const host = (req.headers.host ?? '').replace(/:\d+$/, '')
        if (!isLoopbackHost(host) && host.toLowerCase() !== o.host.toLowerCase()) {
          throw new HttpError(403, 'FORBIDDEN_HOST', `requests for host ${JSON.stringify(host)} are refused; use http://127.0.0.1:${actualPort}/`)
        }
      }
      const path = url.pathname
      if (path === '/' || path === '/index.html') {
        const q = o.token === null ? '' : `?token=${encodeURIComponent(o.token)}`
        const body = assets.html.replaceAll('{{Q}}', escapeHtml(q))
        res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': CSP })
        res.end(head ? undefined : body)
        return
      }
      const asset = assets.files.get(path)
      if (asset) {
        res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.type, 'Cache-Control': 'no-cache' })
        res.end(head ? undefined : asset.body)
        return
      }
      if (path === '/events') {
        const params = new Params(url.searchParams, ['after'])
        if (head) {
          res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8' })
          res.end()
          return
        }
        openStream(req, res, params).catch((error: unknown) => fail(res, error, head))
        return
      }
      if (path === '/favicon.ico') {
        res.writeHead(204, SECURITY_HEADERS)
        res.end()
        return
      }
      if (path.startsWith('/api/')) {
        api(path, url.searchParams).then(
          (body) => json(res, 200, body, head),
          (error: unknown) => fail(res, error, head),
        )
        return
      }
      throw new HttpError(404, 'NOT_FOUND', `no page ${path}`)
    } catch (error) {
      fail(res, error, head)
    }
  }

  const server: Server = createServer(handle)
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  let actualPort = o.port
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port, o.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  actualPort = typeof address === 'object' && address ? address.port : o.port
  const hostInUrl = o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]` : o.host
  const url = `http://${hostInUrl}:${actualPort}/${o.token === null ? '' : `?token=${encodeURIComponent(o.token)}`}`

  return {
    url,
    port: actualPort,
    host: o.host,
    close() {
      closed ??= new Promise<void>((resolve) => {
        if (pollTimer) clearInterval(pollTimer)
        if (pingTimer) clearInterval(pingTimer)
        pollTimer = pingTimer = null
        for (const client of clients) client.res.end()
        clients.clear()
        server.close(async () => {
          // A look at the journal still under way finishes before its connection closes.
          await inFlight
          await store.close().catch(() => {})
          if (stately?.owned) {
            try {
              stately.inspector.stop?.()
            } catch {
              // already closed
            }
          }
          resolve()
        })
        // Keep-alive and event-stream sockets would hold close() open.
        for (const socket of sockets) socket.destroy()
      })
      return closed
    },
  }
}

function parseJson(text: string | null): unknown {
  if (text === null || text === undefined) return null
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function entryJson(r: JournalRowLite, maxEventChars: number) {
  const big = r.event.length > maxEventChars
  return {
    seq: r.seq,
    machineId: r.machine_id,
    actorId: r.actor_id,
    kind: r.kind,
    eventType: r.event_type,
    event: big ? null : (parseJson(r.event) as Record<string, unknown>),
    ...(big ? { eventTruncated: true, eventChars: r.event.length } : {}),
    stateBefore: r.state_before,
    stateAfter: r.state_after,
    runId: r.run_id,
    actorVersion: r.actor_version,
    at: r.at,
  }
}

function sessionLite(r: SessionListRow) {
  return {
    n: r.n,
    id: r.id,
    status: r.status,
    state: r.state,
    agent: r.agent,
    model: r.model,
    generation: r.generation,
    attempts: r.attempts,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

/** `a.b` -> `{ a: 'b' }`: an XState state value from a journal state name. */
export function stateValueOf(name: string): unknown {
  const parts = name.split('.')
  let value: unknown = parts.pop()!
  while (parts.length) value = { [parts.pop()!]: value }
  return value
}

/**
 * Streams committed steps to a Stately inspector: each actor is announced (with its
 * machine definition) the first time it changes, then every step is one event and one
 * snapshot. The snapshot carries the state the journal recorded and the actor's context
 * as it is when the batch is read (a step's own context would need a replay per step).
 */
class StatelyBridge {
  private readonly announced = new Set<string>()
  private failed = false

  constructor(
    private readonly inspector: StatelyInspectorLike,
    private readonly store: InspectorStore,
    private readonly machines: Map<string, { machine: AnyStateMachine; version: number }>,
  ) {}

  async send(rows: JournalRowLite[]): Promise<void> {
    try {
      const contexts = new Map<string, Record<string, unknown> | null>()
      const contextOf = async (r: JournalRowLite) => {
        if (!contexts.has(r.actor_id)) {
          const row = r.machine_id === TASK_MACHINE_ID ? await this.store.task(r.actor_id) : r.machine_id === SESSION_MACHINE_ID ? await this.store.session(r.actor_id) : null
          contexts.set(r.actor_id, row ? publicContext((parseJson(row.snapshot) as { context?: unknown } | null)?.context) : null)
        }
        return contexts.get(r.actor_id) ?? undefined
      }
      let previous: JournalRowLite | null = null
      for (const r of rows) {
        // One step (event) can write several entries: send it once.
        if (previous && previous.actor_id === r.actor_id && previous.actor_version === r.actor_version) continue
        previous = r
        const snapshot = { status: r.state_after === 'archived' || r.state_after === 'deleted' ? 'done' : 'active', value: stateValueOf(r.state_after), context: await contextOf(r) }
        if (!this.announced.has(r.actor_id)) {
          if (this.announced.size >= 100_000) this.announced.clear()
          this.announced.add(r.actor_id)
          const machine = this.machines.get(r.machine_id)?.machine
          this.inspector.actor({ sessionId: r.actor_id, id: r.actor_id, logic: machine ? { config: machine.config } : undefined }, snapshot)
        }
        const event = (parseJson(r.event) as Record<string, unknown> | null) ?? { type: r.event_type }
        this.inspector.event(r.actor_id, event)
        this.inspector.snapshot(r.actor_id, snapshot, { event })
      }
    } catch (error) {
      if (!this.failed) console.error('[lockstep inspector] streaming to the Stately inspector failed:', error)
      this.failed = true
    }
  }
}
