/**
 * `lockstep mcp`: the task board and session approvals as MCP tools, on stdio.
 *
 * - The tools come from a module (default: ./tools.js next to this file; `--tools PATH`)
 *   exporting `createTools(orch, host)`. Each tool is registered with the SDK once; its
 *   registered callback only dispatches to the current handler, so a reload swaps the
 *   handlers without touching the SDK unless the tool list itself (names, schemas,
 *   descriptions) changed, in which case one `notifications/tools/list_changed` is sent.
 * - `--watch` re-imports the tool module (`?v=N`) when it changes on disk (and the machine
 *   modules, through `orch.reload`), debounced. A reload runs under a gate of this server
 *   (calls arriving meanwhile wait for the new handlers; none fail) and inside
 *   `orch.barrier` (no orchestrator call runs during the swap). Calls already in a
 *   handler finish with the handler they started with: handlers are stateless.
 * - Every error is a tool result with `isError: true` and text `CODE: message` (a
 *   LockstepError code, or INTERNAL); the server never crashes on a call.
 * - Idempotency: see CallRecords below.
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { McpServer, type RegisteredTool } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js'
import { CallToolRequestSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { z } from 'zod'
import type { PgConnection } from '../../../persistence/postgres/connection.js'
import { openDatabase, withBusyRetry, writeTransaction, type Db } from '../../../persistence/sqlite/connection.js'
import type { MachineDefinition } from '../../core/kernel.js'
import { InvalidInputError, LockstepError } from '../../errors.js'
import type { Orchestrator } from '../../types.js'
import { FileWatcher } from '../../file-watcher.js'
import type { CreateTools, ToolDef, ToolHost } from './tools.js'

export const SERVER_NAME = 'lockstep'

export interface McpServeOptions {
  orch: Orchestrator
  /** The tool module (default: the built-in tools.js next to this file). */
  toolsPath?: string
  /** Hot-reload the tool module (and the machine modules) when they change on disk. */
  watch?: boolean
  /**
   * Machine modules watched with `watch` and reloaded through `orch.reload` (default: the
   * built-in dist/machines/task.js and session.js; false: tool handlers only).
   */
  machines?: { task?: string; session?: string } | false
  /** Default: stdio. */
  transport?: Transport
  /** Quiet time after a change before reloading (default 100 ms). */
  debounceMs?: number
  /** Safety-net polling of the watched files' mtime/size (default 500 ms). */
  pollMs?: number
  /** Diagnostics (default: stderr; stdout belongs to the protocol). */
  log?: (line: string) => void
  /** The orchestrator's PostgreSQL store, when it has one (call records live in its schema); else its SQLite file. */
  postgres?: { url: string; schema?: string }
  /** Test failpoint: SIGKILL this process after applying a call of this tool, before recording it. */
  crashAfterApply?: string
}

export interface McpServerHandle {
  /** Successful tool-handler reloads so far. */
  readonly generation: number
  /** Re-import the tool module and swap the handlers now; false (old handlers kept) if it failed. */
  reloadTools(): Promise<boolean>
  /** Re-import the machine modules and `orch.reload` them; false if it failed. */
  reloadMachines(): Promise<boolean>
  /** Resolves when the transport closes (the client went away). */
  readonly closed: Promise<void>
  /** Stop watching, let calls in progress finish (bounded), close the transport and the record store. Idempotent. */
  close(): Promise<void>
}

const here = dirname(fileURLToPath(import.meta.url))
const DEFAULT_TOOLS = join(here, 'tools.js')
const DEFAULT_MACHINES = { task: resolve(here, '../../machines/task.js'), session: resolve(here, '../../machines/session.js') }
const IMPORT_TIMEOUT_MS = 10_000
/** How long close() waits for calls in progress. */
const CLOSE_GRACE_MS = 5_000

/** `lockstep mcp`: serve on stdio until the client closes stdin, or SIGINT/SIGTERM. */
export async function serveStdio(
  orch: Orchestrator,
  options: { watch?: boolean; tools?: string; postgres?: { url: string; schema?: string } } = {},
): Promise<void> {
  const log = (line: string) => process.stderr.write(`[lockstep mcp] ${line}\n`)
  // A long-lived server logs a stray rejection instead of dying with every client call.
  const onRejection = (error: unknown) => log(`unhandled rejection: ${describe(error)}`)
  process.on('unhandledRejection', onRejection)
  const server = await startMcpServer({
    orch,
    watch: options.watch,
    toolsPath: options.tools,
    postgres: options.postgres,
    log,
    crashAfterApply: process.env.LOCKSTEP_MCP_CRASH_AFTER_APPLY || undefined,
  })
  await new Promise<void>((done) => {
    const stop = () => {
      process.stdin.off('end', stop).off('close', stop)
      process.off('SIGINT', stop).off('SIGTERM', stop)
      done()
    }
    process.stdin.once('end', stop).once('close', stop)
    process.once('SIGINT', stop).once('SIGTERM', stop)
    void server.closed.then(stop)
  })
  await server.close()
  process.off('unhandledRejection', onRejection)
}

interface Entry {
  def: ToolDef
  shape: z.ZodRawShape
  fingerprint: string
  registered: RegisteredTool
}

export async function startMcpServer(options: McpServeOptions): Promise<McpServerHandle> {
  const { orch } = options
  const log = options.log ?? ((line: string) => process.stderr.write(`[lockstep mcp] ${line}\n`))
  const toolsPath = resolve(options.toolsPath ?? DEFAULT_TOOLS)
  if (!existsSync(toolsPath)) throw new InvalidInputError(`no tool module at ${toolsPath}`, { field: 'tools', path: toolsPath })
  const machinePaths: { task?: string; session?: string } = options.machines === false ? {} : { ...DEFAULT_MACHINES, ...options.machines }

  let generation = 0
  let machineReloads = 0
  let imports = 0
  const startedAt = new Date().toISOString()
  const host: ToolHost = {
    info: () => ({
      name: SERVER_NAME,
      version: PACKAGE_VERSION,
      pid: process.pid,
      db: orch.path,
      generation,
      machineReloads,
      toolsModule: toolsPath,
      watching: options.watch === true,
      startedAt,
    }),
  }

  const records = new CallRecords(await openCallRecordTable(orch, options.postgres))
  const mcp = new McpServer({ name: SERVER_NAME, version: PACKAGE_VERSION }, { capabilities: { tools: { listChanged: true } } })
  const entries = new Map<string, Entry>()
  const inFlight = new Set<Promise<unknown>>()

  // ---- the reload gate: calls arriving during a reload wait for it ----

  let gate: Promise<void> | null = null
  const exclusive = async <T>(fn: () => Promise<T>): Promise<T> => {
    while (gate) await gate
    let open!: () => void
    gate = new Promise<void>((resolve) => (open = resolve))
    try {
      return await fn()
    } finally {
      gate = null
      open()
    }
  }
  // Fallback for an orchestrator without barrier(): delete once every Orchestrator has it.
  const barrier = <T>(fn: () => Promise<T>): Promise<T> => orch.barrier(fn)

  // ---- calls ----

  async function dispatch(name: string, args: unknown): Promise<CallToolResult> {
    while (gate) await gate
    // A Map, so a tool name such as "constructor" finds nothing it should not.
    const entry = entries.get(name)
    if (!entry) return failure(new InvalidInputError(`there is no tool named ${JSON.stringify(name)}`, { tool: name }))
    // Arguments are checked here, against the handlers in force now (a reload may have
    // changed the schema since the call was sent), so a bad call is an INVALID_INPUT
    // result like every other refusal, not the SDK's protocol error.
    // Strict: an argument the tool does not have (a typo, an option it lacks) is refused, never dropped.
    const parsed = z.strictObject(entry.shape).safeParse(args ?? {})
    if (!parsed.success) {
      return failure(
        new InvalidInputError(`invalid arguments for ${name}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`, {
          tool: name,
          issues: parsed.error.issues.map((issue) => ({ path: issue.path.map(String), message: issue.message })),
        }),
      )
    }
    const input = parsed.data as Record<string, unknown>
    const { def } = entry
    const key = def.mutating && typeof input.idempotencyKey === 'string' ? input.idempotencyKey : undefined
    const apply = () => def.run(input, { idempotencyKey: key })
    try {
      if (key === undefined) return success(await apply())
      return await records.call(key, name, {
        apply,
        recover: def.recover && ((since: number) => def.recover!(input, since)),
        afterApply: options.crashAfterApply === name ? () => process.kill(process.pid, 'SIGKILL') : undefined,
      })
    } catch (error) {
      return failure(error)
    }
  }

  const track = <T>(promise: Promise<T>): Promise<T> => {
    inFlight.add(promise)
    const forget = () => inFlight.delete(promise)
    promise.then(forget, forget)
    return promise
  }

  // ---- tools: registration and swaps ----

  /** Register, swap or remove tools to match `defs`; true if the tool list changed. */
  function install(defs: ToolDef[]): boolean {
    let changed = false
    const names = new Set<string>()
    for (const def of defs) {
      names.add(def.name)
      const shape: z.ZodRawShape = def.mutating
        ? {
            ...def.input,
            idempotencyKey: z
              .string()
              .min(1)
              .max(200)
              .optional()
              .describe('retrying with the same key returns the first result instead of applying the call again (also across server restarts)'),
          }
        : def.input
      const fingerprint = fingerprintOf(def, shape)
      const existing = entries.get(def.name)
      if (existing && existing.fingerprint === fingerprint) {
        existing.def = def // same contract: swap the handler only
        continue
      }
      existing?.registered.remove()
      const registered = mcp.registerTool(
        def.name,
        { title: def.title, description: def.description, inputSchema: z.strictObject(shape), annotations: def.annotations },
        ((args: Record<string, unknown>) => track(dispatch(def.name, args))) as never,
      )
      entries.set(def.name, { def, shape, fingerprint, registered })
      changed = true
    }
    for (const [name, entry] of entries) {
      if (names.has(name)) continue
      entry.registered.remove()
      entries.delete(name)
      changed = true
    }
    return changed
  }

  /** Every registration change makes the SDK send list_changed: send one per reload instead. */
  function installQuietly(defs: ToolDef[]): boolean {
    const send = mcp.sendToolListChanged
    mcp.sendToolListChanged = () => {}
    let changed: boolean
    try {
      changed = install(defs)
    } finally {
      mcp.sendToolListChanged = send
    }
    if (changed) mcp.sendToolListChanged()
    return changed
  }

  const loaded = new Map<string, string>() // path -> hash of the content last imported

  async function importFresh(path: string): Promise<Record<string, unknown>> {
    loaded.set(path, hashOf(path))
    const url = `${pathToFileURL(path).href}?v=${++imports}`
    return withTimeout(import(url) as Promise<Record<string, unknown>>, IMPORT_TIMEOUT_MS, `importing ${path}`)
  }

  async function loadTools(): Promise<ToolDef[]> {
    const mod = await importFresh(toolsPath)
    const factory = (mod.createTools ?? mod.default) as CreateTools | undefined
    if (typeof factory !== 'function') throw new InvalidInputError(`${toolsPath} exports no createTools function`)
    return checkTools(factory(orch, host), toolsPath)
  }

  async function reloadTools(): Promise<boolean> {
    return exclusive(async () => {
      const started = Date.now()
      try {
        const changed = await barrier(async () => {
          const defs = await loadTools()
          const listChanged = installQuietly(defs)
          generation++
          return listChanged
        })
        log(`tool handlers reloaded: generation ${generation} in ${Date.now() - started} ms${changed ? ', tool list changed' : ''}`)
        return true
      } catch (error) {
        log(`tool reload failed, generation ${generation} kept: ${describe(error)}`)
        return false
      }
    })
  }

  async function reloadMachines(names: Array<'task' | 'session'> = ['task', 'session']): Promise<boolean> {
    return exclusive(async () => {
      try {
        if (typeof orch.reload !== 'function') throw new Error('this orchestrator has no reload()')
        const machines: { task?: MachineDefinition; session?: MachineDefinition } = {}
        for (const name of names) {
          const path = machinePaths[name]
          if (path) machines[name] = machineDefinition(name, await importFresh(path))
        }
        // reload() pauses intake itself; it must not run inside barrier().
        const result = await orch.reload({ machines })
        machineReloads++
        log(`machines reloaded: ${result.machines.map((m) => `${m.machineId}@${m.version} (${m.migrated} migrated)`).join(', ')}`)
        return true
      } catch (error) {
        log(`machine reload failed, old machines kept: ${describe(error)}`)
        return false
      }
    })
  }

  try {
    install(await loadTools()) // not connected yet: nothing to notify
    // Calls go straight to dispatch(), which validates them itself: the SDK's own check
    // would answer a bad call with "MCP error -32602 ..." instead of a lockstep code.
    mcp.server.setRequestHandler(CallToolRequestSchema, (request) => track(dispatch(request.params.name, request.params.arguments)))
  } catch (error) {
    await records.close()
    throw error
  }

  // ---- watching ----

  let watcher: FileWatcher | null = null
  if (options.watch) {
    const machineFiles = new Map<string, 'task' | 'session'>()
    for (const [name, path] of Object.entries(machinePaths) as Array<[string, string | undefined]>) {
      if (path && existsSync(path)) {
        machineFiles.set(path, name as 'task' | 'session')
        loaded.set(path, hashOf(path)) // the orchestrator runs what is on disk now
      }
    }
    watcher = new FileWatcher([toolsPath, ...machineFiles.keys()], options.debounceMs ?? 100, options.pollMs ?? 500, log, (path) => {
      // Only a real change of content: editors and compilers fire several events per write.
      if (hashOf(path) === loaded.get(path)) return
      const machine = machineFiles.get(path)
      void (machine ? reloadMachines([machine]) : reloadTools())
    })
  }

  // ---- connect ----

  let markClosed!: () => void
  const closed = new Promise<void>((resolve) => (markClosed = resolve))
  mcp.server.onclose = () => markClosed()
  mcp.server.onerror = (error) => log(`transport error: ${describe(error)}`)
  await mcp.connect(options.transport ?? new StdioServerTransport())
  log(`serving ${orch.path} (pid ${process.pid}, tools ${toolsPath}${options.watch ? ', watching' : ''})`)

  let closing: Promise<void> | null = null
  return {
    get generation() {
      return generation
    },
    reloadTools,
    reloadMachines: () => reloadMachines(),
    closed,
    close() {
      closing ??= (async () => {
        watcher?.close()
        await exclusive(async () => {}) // a reload in progress finishes first
        let timer: NodeJS.Timeout | undefined
        await Promise.race([Promise.allSettled([...inFlight]), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))])
        clearTimeout(timer)
        await mcp.close().catch(() => {})
        markClosed()
        await records.close()
      })()
      return closing
    },
  }
}

// ---- results ----

function success(value: Record<string, unknown>, replayed = false): CallToolResult {
  return {
    content: [{ type: 'text', text: JSON.stringify(value) }],
    structuredContent: value,
    ...(replayed ? { _meta: { 'lockstep/replayed': true } } : {}),
  }
}

/** Any error as a tool error result: `CODE: message`, CODE a LockstepError code or INTERNAL. */
function failure(error: unknown): CallToolResult {
  const { code, message, details } = isLockstepError(error)
    ? error
    : { code: 'INTERNAL', message: describe(error), details: {} }
  return {
    isError: true,
    content: [{ type: 'text', text: `${code}: ${message}` }],
    structuredContent: { error: { code, message, details } },
  }
}

/** instanceof, or the same shape from another copy of errors.js (a reloaded module graph). */
function isLockstepError(error: unknown): error is LockstepError {
  if (error instanceof LockstepError) return true
  const e = error as { code?: unknown; details?: unknown } | null
  return error instanceof Error && typeof e!.code === 'string' && /^[A-Z_]+$/.test(e!.code) && typeof e!.details === 'object' && e!.details !== null
}

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error))

// ---- idempotency records ----

interface CallHooks {
  apply(): Promise<Record<string, unknown>>
  recover?: (since: number) => Promise<Record<string, unknown> | undefined>
  afterApply?: () => void
}

/**
 * Idempotency keys of mutating calls, in the SQLite file itself (table `mcp_calls`,
 * through this server's own connection), so they survive restarts and SIGKILL.
 *
 * A call with a key:
 *   1. begin: in one IMMEDIATE transaction, read the key's row. A recorded result is
 *      returned as is (the call is not applied again). No row: insert a *pending* row
 *      holding the journal's current seq, and commit before applying.
 *   2. apply the call (the orchestrator's own transaction).
 *   3. record: replace the pending row by the result.
 * A LockstepError in 2 deletes the pending row (lockstep refusals write nothing, so a
 * retry is a fresh call); errors are never recorded.
 *
 * The window: applying (2) and recording (3) are two transactions on two connections,
 * so a crash between them leaves the effect committed and the row pending. A replay
 * that finds its key pending does not apply blindly: the tool's `recover` looks in the
 * journal after the saved seq for the call's effect (COMPLETE/FAIL/HEARTBEAT of that
 * run, CANCEL of that task, APPROVE/REVOKE/AUTHORIZE of that tool) and answers from it;
 * task_create passes the key to the board, which is exactly-once in its own
 * transaction; task_link is a no-op when the link exists. Only then is the call applied.
 * What remains at-least-once in that window:
 *   - task_claim_next: the claim's token is never journaled, so a claim made before the
 *     crash cannot be handed back; the replay claims again, and the first claim's lease
 *     lapses and its task is reclaimed (no work is lost or double-completed: fencing).
 *   - two processes using the same key at the same moment (within one process calls
 *     with one key are serialized).
 * A recovered answer is the state now (e.g. the task after completion), not a copy of a
 * response that was never recorded.
 */
class CallRecords {
  private readonly busy = new Map<string, Promise<unknown>>()

  constructor(private readonly table: CallRecordTable) {}

  /** Apply `hooks.apply` for `key` at most once (see above); the answer as a tool result. */
  async call(key: string, tool: string, hooks: CallHooks): Promise<CallToolResult> {
    // One call per key at a time in this process: a concurrent retry waits for the first.
    for (let running = this.busy.get(key); running; running = this.busy.get(key)) await running.catch(() => {})
    const promise = this.callOnce(key, tool, hooks)
    this.busy.set(key, promise)
    try {
      return await promise
    } finally {
      if (this.busy.get(key) === promise) this.busy.delete(key)
    }
  }

  private async callOnce(key: string, tool: string, hooks: CallHooks): Promise<CallToolResult> {
    const begun = await this.table.begin(key, tool)
    if ('done' in begun) return success(begun.done, true)
    // Pending: an earlier call with this key started and was never recorded (its server died).
    const replayed = begun.pending !== null
    let value: Record<string, unknown> | undefined
    try {
      if (begun.pending !== null && hooks.recover) value = await hooks.recover(begun.pending)
      if (value === undefined) {
        value = await hooks.apply()
        hooks.afterApply?.()
      }
    } catch (error) {
      if (isLockstepError(error)) await this.table.forget(key).catch(() => {})
      throw error
    }
    await this.table.record(key, value)
    return success(value, replayed)
  }

  close(): Promise<void> {
    return this.table.close()
  }
}

/** Where call records live: a table `mcp_calls` of the orchestrator's own store. */
interface CallRecordTable {
  /**
   * In one transaction: the recorded result of `key`, or (no row yet) a new pending row
   * holding the journal's current seq and `{ pending: null }`, or the seq a pending row
   * holds. A key used for another tool is INVALID_INPUT.
   */
  begin(key: string, tool: string): Promise<{ done: Record<string, unknown> } | { pending: number | null }>
  record(key: string, value: Record<string, unknown>): Promise<void>
  forget(key: string): Promise<void>
  close(): Promise<void>
}

type StoredCall = { ok: Record<string, unknown> } | { pending: { journalSeq: number } }

/** What begin() answers for an existing row. */
function begunFrom(key: string, tool: string, row: { tool: string; result: string }): { done: Record<string, unknown> } | { pending: number } {
  if (row.tool !== tool) {
    throw new InvalidInputError(`idempotencyKey ${JSON.stringify(key)} was used for ${row.tool}, not ${tool}`, { field: 'idempotencyKey', tool: row.tool })
  }
  const result = JSON.parse(row.result) as StoredCall
  return 'ok' in result ? { done: result.ok } : { pending: result.pending.journalSeq }
}

/** The SQLite file's mcp_calls, through this server's own connection. */
class SqliteCallRecordTable implements CallRecordTable {
  private readonly select
  private readonly insert
  private readonly update
  private readonly remove
  private readonly journalSeq: () => number

  private constructor(private readonly db: Db, inMemory: boolean) {
    this.select = db.prepare('SELECT tool, result FROM mcp_calls WHERE key = ?')
    this.insert = db.prepare('INSERT INTO mcp_calls (key, tool, result, at) VALUES (?, ?, ?, ?)')
    this.update = db.prepare('UPDATE mcp_calls SET result = ?, at = ? WHERE key = ?')
    this.remove = db.prepare('DELETE FROM mcp_calls WHERE key = ?')
    // ':memory:' is another database on this connection (and survives nothing anyway).
    const max = inMemory ? null : db.prepare('SELECT COALESCE(MAX(seq), 0) AS n FROM journal')
    this.journalSeq = () => (max ? (max.get() as { n: number }).n : 0)
  }

  /** Its own connection to the orchestrator's file, whose migrations created mcp_calls. */
  static open(path: string): SqliteCallRecordTable {
    const db = openDatabase({ path, busyTimeoutMs: 2_000 })
    if (path === ':memory:') {
      // Another, empty database on this connection: give it the table.
      db.exec('CREATE TABLE mcp_calls (key TEXT PRIMARY KEY, tool TEXT NOT NULL, result TEXT NOT NULL, at INTEGER NOT NULL)')
    }
    return new SqliteCallRecordTable(db, path === ':memory:')
  }

  begin(key: string, tool: string) {
    // Inside one IMMEDIATE transaction: read the row, or insert the pending one.
    return writeTransaction(this.db, () => {
      const row = this.select.get(key) as { tool: string; result: string } | undefined
      if (row) return begunFrom(key, tool, row)
      this.insert.run(key, tool, JSON.stringify({ pending: { journalSeq: this.journalSeq() } }), Date.now())
      return { pending: null }
    })
  }

  async record(key: string, value: Record<string, unknown>): Promise<void> {
    await withBusyRetry(() => this.update.run(JSON.stringify({ ok: value }), Date.now(), key))
  }

  async forget(key: string): Promise<void> {
    await withBusyRetry(() => this.remove.run(key))
  }

  async close(): Promise<void> {
    this.db.close()
  }
}

/** A PostgreSQL schema's mcp_calls, through a pool of this server's own. */
/**
 * The call records live beside the board (recovery reads the board's journal): in the
 * orchestrator's SQLite file, or in its PostgreSQL schema, which `postgres` must name
 * (the orchestrator does not hand out its URL). Refused before anything is opened when
 * they would be elsewhere: a PostgreSQL board without `postgres` used to be taken for a
 * SQLite path ("postgres://... (schema s)").
 */
async function openCallRecordTable(orch: Orchestrator, postgres: McpServeOptions['postgres']): Promise<CallRecordTable> {
  // A SQLite board's path is absolute or ':memory:'; a PostgreSQL board's is its URL and schema.
  const onPostgres = /^postgres(ql)?:\/\//i.test(orch.path)
  if (postgres === undefined) {
    if (onPostgres) {
      throw new InvalidInputError(`the board is ${orch.path}: pass postgres: { url, schema } so the call records live in its schema`, { field: 'postgres' })
    }
    return SqliteCallRecordTable.open(orch.path)
  }
  const { checkPgUrl, pgSchema } = await import('../../../persistence/postgres/connection.js')
  const where = `${checkPgUrl(postgres.url)} (schema ${pgSchema(postgres.schema).name})`
  if (where !== orch.path) {
    throw new InvalidInputError(`the call records must live beside the board: postgres names ${where}, the board is ${orch.path}`, { field: 'postgres' })
  }
  return PgCallRecordTable.open(postgres.url, postgres.schema)
}

class PgCallRecordTable implements CallRecordTable {
  private constructor(private readonly conn: PgConnection) {}

  static async open(url: string, schema: string | undefined): Promise<PgCallRecordTable> {
    const { openPostgres } = await import('../../../persistence/postgres/open.js')
    return new PgCallRecordTable(await openPostgres(url, { schema, pool: { max: 2 } }))
  }

  private get calls(): string {
    return this.conn.schema.table('mcp_calls')
  }

  async begin(key: string, tool: string) {
    const { withTransaction } = await import('../../../persistence/postgres/connection.js')
    return withTransaction(this.conn, async (tx) => {
      // The row is created if missing (a racing server's insert waits for ours), else read under a lock.
      // The journal's highest seq is the recovery point: this call's effect gets a higher one.
      const inserted = await tx.query(
        `INSERT INTO ${this.calls} (key, tool, result, at)
         VALUES ($1, $2, json_build_object('pending', json_build_object('journalSeq', (SELECT COALESCE(MAX(seq), 0) FROM ${this.conn.schema.table('journal')})))::text, $3)
         ON CONFLICT (key) DO NOTHING RETURNING key`,
        [key, tool, tx.now],
      )
      if (inserted.rows.length === 1) return { pending: null }
      const row = (await tx.query<{ tool: string; result: string }>(`SELECT tool, result FROM ${this.calls} WHERE key = $1 FOR UPDATE`, [key])).rows[0]!
      return begunFrom(key, tool, row)
    })
  }

  async record(key: string, value: Record<string, unknown>): Promise<void> {
    await this.conn.pool.query(`UPDATE ${this.calls} SET result = $1, at = $2 WHERE key = $3`, [JSON.stringify({ ok: value }), Date.now(), key])
  }

  async forget(key: string): Promise<void> {
    await this.conn.pool.query(`DELETE FROM ${this.calls} WHERE key = $1`, [key])
  }

  close(): Promise<void> {
    return this.conn.close()
  }
}

function hashOf(path: string): string {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex')
  } catch {
    return 'missing'
  }
}

// ---- helpers ----

/** The list a tool module returned, checked before anything is swapped. */
function checkTools(defs: unknown, from: string): ToolDef[] {
  if (!Array.isArray(defs)) throw new InvalidInputError(`createTools of ${from} must return an array of tools`)
  const names = new Set<string>()
  for (const def of defs as ToolDef[]) {
    if (!def || typeof def.name !== 'string' || !/^[a-z][a-z0-9_]*$/.test(def.name)) {
      throw new InvalidInputError(`${from}: tool names must be snake_case, not ${JSON.stringify(def?.name)}`)
    }
    if (names.has(def.name)) throw new InvalidInputError(`${from}: tool ${def.name} is defined twice`)
    if (typeof def.run !== 'function' || typeof def.input !== 'object' || def.input === null) {
      throw new InvalidInputError(`${from}: tool ${def.name} needs an input shape and a run function`)
    }
    names.add(def.name)
  }
  return defs as ToolDef[]
}

/** What clients see of a tool: a change means tools/list_changed. */
function fingerprintOf(def: ToolDef, shape: z.ZodRawShape): string {
  let schema: unknown
  try {
    schema = z.toJSONSchema(z.object(shape))
  } catch {
    schema = Math.random() // not describable: treat as changed
  }
  return JSON.stringify([def.title, def.description, def.annotations, schema])
}

/**
 * A machine module's definition: `export default { machine, version, migrations }` or the
 * same as named exports (as watchMachines reads them), or the built-in modules' naming
 * (taskMachine, TASK_MACHINE_VERSION, TASK_MACHINE_MIGRATIONS).
 */
function machineDefinition(name: 'task' | 'session', mod: Record<string, unknown>): MachineDefinition {
  const prefix = name.toUpperCase()
  const d = (mod.default ?? mod) as Record<string, unknown>
  const machine = d.machine ?? mod[`${name}Machine`]
  const version = d.version ?? mod[`${prefix}_MACHINE_VERSION`]
  const migrations = (d.migrations ?? mod[`${prefix}_MACHINE_MIGRATIONS`]) as MachineDefinition['migrations'] | undefined
  if (!machine || typeof version !== 'number') {
    throw new InvalidInputError(`the ${name} machine module must export { machine, version } or ${name}Machine and ${prefix}_MACHINE_VERSION`)
  }
  return { machine: machine as MachineDefinition['machine'], version, ...(migrations ? { migrations } : {}) }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** This package's version (from dist/src/mcp/ or src/mcp/ alike). */
const PACKAGE_VERSION = ((): string => {
  for (const candidate of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(resolve(here, candidate), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'lockstep' && pkg.version) return pkg.version
    } catch {
      // try the next
    }
  }
  return '0.0.0'
})()
