/**
 * `lockstep mcp`: the stdio MCP server, driven by the SDK's own client over real
 * processes (`node dist/src/cli/main.js mcp ...`). Needs a prior `npm run build`.
 *
 * Seed 000 (an MCP server's hot-reload race test) ported: 50 calls at 10/s while the
 * watched tool module is rewritten after call 15; then the same stream with the server
 * SIGKILLed after call 20 and restarted by the client's retry, idempotency keys making
 * every retried call exactly-once.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js'
import { ToolListChangedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import Database from 'better-sqlite3'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createOrchestrator, type Claim, type Orchestrator } from '../src/index.js'
import { freshSchema, pgUrl } from './postgres-server.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'dist/src/cli/main.js')
const TOOLS_URL = pathToFileURL(join(ROOT, 'dist/src/mcp/tools.js')).href
const SERVER_URL = pathToFileURL(join(ROOT, 'dist/src/mcp/server.js')).href
const TASK_MACHINE_URL = pathToFileURL(join(ROOT, 'dist/machines/task.js')).href

const TOTAL_CALLS = 50
const CALL_INTERVAL_MS = 100 // 10 calls per second
const RELOAD_AFTER_CALL = 15
const KILL_AFTER_CALL = 20

let dir: string
let db: string
const cleanups: Array<() => Promise<unknown> | unknown> = []

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` before vitest`)
})
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-mcp-'))
  db = join(dir, 'board.db')
})
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  rmSync(dir, { recursive: true, force: true })
})

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A client connected to a fresh `lockstep mcp` process. */
interface Connection {
  client: Client
  transport: StdioClientTransport
  stderr: () => string
  listChanged: () => number
}

async function connect(args: string[], env: Record<string, string> = {}): Promise<Connection> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'mcp', '--db', db, ...args],
    env: { ...(process.env as Record<string, string>), ...env },
    stderr: 'pipe',
  })
  let stderr = ''
  transport.stderr!.on('data', (chunk) => (stderr += chunk))
  const client = new Client({ name: 'lockstep-test', version: '1.0.0' })
  let listChanged = 0
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    listChanged++
  })
  await client.connect(transport)
  cleanups.push(() => client.close().catch(() => {}))
  return { client, transport, stderr: () => stderr, listChanged: () => listChanged }
}

/**
 * The client's retry logic: a call whose connection dies (transport closed, process
 * killed) is resent, unchanged (same idempotencyKey), to a newly spawned server.
 */
class RetryingClient {
  private current: Promise<Connection>
  private spawned = 1
  retries = 0

  constructor(private readonly args: string[], private readonly envFor: (spawn: number) => Record<string, string> = () => ({})) {
    this.current = connect(args, envFor(1))
  }

  get connection(): Promise<Connection> {
    return this.current
  }

  async call(name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
    for (let attempt = 0; ; attempt++) {
      const connection = this.current
      const { client } = await connection
      try {
        return (await client.callTool({ name, arguments: args })) as CallToolResult
      } catch (error) {
        if (attempt >= 5) throw error
        this.retries++
        // Many calls in flight die together: only the first respawns.
        if (this.current === connection) this.current = connect(this.args, this.envFor(++this.spawned))
      }
    }
  }
}

/** Open a session (with the approvals under test) before any server runs. */
async function withOrchestrator<T>(fn: (orch: Orchestrator) => Promise<T>): Promise<T> {
  const orch = await createOrchestrator({ path: db, runTimers: false })
  try {
    return await fn(orch)
  } finally {
    await orch.close()
  }
}

const json = (result: CallToolResult) => result.structuredContent as Record<string, any>
const text = (result: CallToolResult) => (result.content[0] as { text: string }).text

function wrapper(marker: string, extra: string): string {
  return [
    `import { createTools as base } from ${JSON.stringify(TOOLS_URL)}`,
    `export const marker = ${JSON.stringify(marker)}`,
    extra,
  ].join('\n')
}

/** v1 re-exports the built-in tools; v2 loads slowly and adds a tool, so the tool list changes. */
const TOOLS_V1 = wrapper('v1', 'export const createTools = base')
const TOOLS_V2 = wrapper(
  'v2',
  `// A slow reload: calls arriving while it holds the barrier must wait, not fail.
await new Promise((resolve) => setTimeout(resolve, 300))
export function createTools(orch, host) {
  return [...base(orch, host), { name: 'reload_probe', description: 'which tool module is live', input: {}, mutating: false, run: async () => ({ marker }) }]
}`,
)

/**
 * The seed's call sequence: identity queries, an approval, its use, creates (with keys,
 * some of them retried), lists and journal reads around the reload, the approval used
 * again after it.
 */
function sequence(): Array<{ name: string; args: Record<string, unknown> }> {
  /** call -> the earlier call whose create it retries (same key): across the reload, across the kill. */
  const retries: Record<number, number> = { 19: 10, 23: 18, 31: 22, 43: 30, 47: 38 }
  const calls: Array<{ name: string; args: Record<string, unknown> }> = []
  for (let i = 1; i <= TOTAL_CALLS; i++) {
    if (i <= 4 || i === 26 || i === 46) calls.push({ name: 'server_info', args: {} })
    else if (i === 5) calls.push({ name: 'session_approve', args: { sessionId: 's1', tool: 'deploy', idempotencyKey: 'approve-deploy' } })
    else if (i === 6 || i === 36) calls.push({ name: 'session_authorize', args: { sessionId: 's1', tool: 'deploy' } })
    else if (i % 4 === 0) calls.push({ name: 'task_list', args: { limit: 1000 } })
    else if (i % 4 === 1) calls.push({ name: 'events_since', args: { after: 0, limit: 50 } })
    else {
      const key = retries[i] ?? i
      calls.push({ name: 'task_create', args: { title: `task ${key}`, payload: { key }, idempotencyKey: `create-${key}` } })
    }
  }
  return calls
}

interface Outcome {
  call: number
  name: string
  ok: boolean
  text: string
  startedAt: number
  endedAt: number
  result?: CallToolResult
}

/** Fire the sequence at 10/s without waiting for answers (as the seed does); `before(i)` runs before call i. */
async function stream(send: (name: string, args: Record<string, unknown>) => Promise<CallToolResult>, before: (call: number) => void): Promise<Outcome[]> {
  const pending: Array<Promise<Outcome>> = []
  for (const [index, { name, args }] of sequence().entries()) {
    const call = index + 1
    before(call)
    const startedAt = Date.now()
    pending.push(
      send(name, args).then(
        (result) => ({ call, name, ok: !result.isError, text: text(result), startedAt, endedAt: Date.now(), result }),
        (error: Error) => ({ call, name, ok: false, text: String(error?.message ?? error), startedAt, endedAt: Date.now() }),
      ),
    )
    await sleep(CALL_INTERVAL_MS)
  }
  return Promise.all(pending)
}

/** Nothing applied twice: one task and one `created` entry per distinct create key. */
function expectExactlyOnce(outcomes: Outcome[]) {
  const keys = new Set(sequence().filter((c) => c.name === 'task_create').map((c) => c.args.idempotencyKey as string))
  const raw = new Database(db, { readonly: true })
  try {
    const tasks = raw.prepare('SELECT idempotency_key AS key FROM tasks').all() as Array<{ key: string }>
    expect(tasks.length).toBe(keys.size)
    expect(new Set(tasks.map((t) => t.key))).toEqual(keys)
    const created = raw.prepare(`SELECT actor_id FROM journal WHERE kind = 'created' AND machine_id = 'lockstep.task'`).all()
    expect(created.length).toBe(keys.size)
    // A retried key answered with the first task.
    const byKey = new Map<string, string>()
    for (const o of outcomes.filter((o) => o.name === 'task_create')) {
      const { task } = json(o.result!)
      const first = byKey.get(task.idempotencyKey)
      if (first) expect(task.id).toBe(first)
      byKey.set(task.idempotencyKey, task.id)
    }
    // Approved once: one journaled approval.
    const approvals = raw.prepare(`SELECT COUNT(*) AS n FROM journal WHERE kind = 'approved'`).get() as { n: number }
    expect(approvals.n).toBe(1)
    const records = raw.prepare('SELECT key, result FROM mcp_calls').all() as Array<{ key: string; result: string }>
    for (const r of records) expect(JSON.parse(r.result)).toHaveProperty('ok')
  } finally {
    raw.close()
  }
}

describe('lockstep mcp', () => {
  it('seed 000: 50 calls at 10/s across a hot reload of the tool module all succeed; approvals and idempotency hold', async () => {
    await withOrchestrator((orch) => orch.sessions.open('s1', { agent: 'build', models: ['a/primary', 'b/fallback'] }))
    const toolsPath = join(dir, 'tools-wrapper.mjs')
    writeFileSync(toolsPath, TOOLS_V1)
    const conn = await connect(['--watch', '--tools', toolsPath])
    const send = (name: string, args: Record<string, unknown>) => conn.client.callTool({ name, arguments: args }) as Promise<CallToolResult>

    const before = json(await send('server_info', {}))
    expect(before).toMatchObject({ name: 'lockstep', db, generation: 0, watching: true, toolsModule: toolsPath })
    expect(before.pid).toBe(conn.transport.pid)

    let rewrittenAt = 0
    const outcomes = await stream(send, (call) => {
      if (call === RELOAD_AFTER_CALL + 1) {
        rewrittenAt = Date.now()
        writeFileSync(toolsPath, TOOLS_V2)
      }
    })
    const failures = outcomes.filter((o) => !o.ok)
    expect(failures, JSON.stringify(failures, null, 2)).toEqual([])
    expect(outcomes.length).toBe(TOTAL_CALLS)

    // The reload happened, while calls were arriving, and the tool list change was announced.
    const after = json(await send('server_info', {}))
    expect(after.generation).toBe(1)
    expect(after.pid).toBe(before.pid)
    expect(conn.stderr()).toMatch(/tool handlers reloaded: generation 1 .*tool list changed/)
    expect(conn.listChanged()).toBe(1)
    expect(json(await send('reload_probe', {}))).toEqual({ marker: 'v2' })
    const generations = outcomes.filter((o) => o.name === 'server_info').map((o) => json(o.result!).generation as number)
    expect(generations.at(0)).toBe(0)
    expect(generations.at(-1)).toBe(1)
    // Calls sent while the slow module was loading (it holds the barrier 300 ms) waited
    // for the new handlers instead of failing: answers normally take a few ms.
    const held = outcomes.filter((o) => o.startedAt >= rewrittenAt && o.endedAt - o.startedAt >= 100)
    expect(held.length).toBeGreaterThan(0)
    expect(held.every((o) => o.ok)).toBe(true)

    // The approval granted before the reload (call 5) authorizes before and after it.
    expect(json(outcomes[5]!.result!)).toEqual({ authorized: true })
    expect(json(outcomes[35]!.result!)).toEqual({ authorized: true })
    expect(json(await send('session_authorize', { sessionId: 's1', tool: 'deploy' }))).toEqual({ authorized: true })
    // Replaying the approval's key does not approve again.
    const replay = await send('session_approve', { sessionId: 's1', tool: 'deploy', idempotencyKey: 'approve-deploy' })
    expect(replay._meta).toEqual({ 'lockstep/replayed': true })
    expect(json(replay)).toEqual(json(outcomes[4]!.result!))

    expectExactlyOnce(outcomes)
  })

  it('seed 000 with the server SIGKILLed after call 20: the retried calls are exactly-once', async () => {
    await withOrchestrator((orch) => orch.sessions.open('s1', { agent: 'build', models: ['a/primary'] }))
    const client = new RetryingClient([])
    const firstPid = (await client.connection).transport.pid!
    const outcomes = await stream(
      (name, args) => client.call(name, args),
      (call) => {
        if (call === KILL_AFTER_CALL + 1) process.kill(firstPid, 'SIGKILL')
      },
    )
    const failures = outcomes.filter((o) => !o.ok)
    expect(failures, JSON.stringify(failures, null, 2)).toEqual([])
    expect(client.retries).toBeGreaterThan(0)
    const info = json(await client.call('server_info'))
    expect(info.pid).not.toBe(firstPid)
    expect(json(outcomes[35]!.result!)).toEqual({ authorized: true })
    expectExactlyOnce(outcomes)
  })

  it('a crash between applying a call and recording it: the replay finds the effect in the journal and does not apply again', async () => {
    const { claim, heartbeatClaim } = await withOrchestrator(async (orch) => {
      await orch.sessions.open('s1', { models: ['a/primary'] })
      await orch.sessions.approve('s1', 'rm-rf', { once: true })
      await orch.tasks.create({ title: 'one' })
      await orch.tasks.create({ title: 'two' })
      const claim = (await orch.tasks.claimNext({ worker: 'w1', leaseMs: 60_000 }))!
      const heartbeatClaim = (await orch.tasks.claimNext({ worker: 'w2', leaseMs: 60_000 }))!
      return { claim, heartbeatClaim }
    })
    /** Call `name` on a server that SIGKILLs itself right after applying it; the retry goes to a clean server. */
    async function crashOnce(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
      const client = new RetryingClient([], (spawn): Record<string, string> => (spawn === 1 ? { LOCKSTEP_MCP_CRASH_AFTER_APPLY: name } : {}))
      const result = await client.call(name, args)
      expect(client.retries).toBe(1)
      expect(result._meta).toEqual({ 'lockstep/replayed': true })
      return result
    }
    const raw = new Database(db, { readonly: true })
    cleanups.push(() => raw.close())
    const count = (sql: string, ...params: unknown[]) => (raw.prepare(sql).get(...params) as { n: number }).n

    // A once approval consumed just before the crash: the replay says true (and does not consume another).
    const authorized = await crashOnce('session_authorize', { sessionId: 's1', tool: 'rm-rf', idempotencyKey: 'auth-1' })
    expect(json(authorized)).toEqual({ authorized: true })
    expect(count(`SELECT COUNT(*) AS n FROM journal WHERE kind = 'authorized'`)).toBe(1)

    // A completion applied just before the crash: the replay answers with the done task, not LEASE_LOST.
    const completed = await crashOnce('task_complete', { claim, result: { ok: 1 }, idempotencyKey: 'complete-1' })
    expect(json(completed).task).toMatchObject({ id: claim.taskId, status: 'done', result: { ok: 1 } })
    expect(count(`SELECT COUNT(*) AS n FROM journal WHERE kind = 'completed'`)).toBe(1)

    // A heartbeat: journaled once, the replay returns the extended claim.
    const beat = await crashOnce('task_heartbeat', { claim: heartbeatClaim, leaseMs: 120_000, idempotencyKey: 'beat-1' })
    expect((json(beat).claim as Claim).leaseExpiresAt).toBeGreaterThan(heartbeatClaim.leaseExpiresAt)
    expect(count(`SELECT COUNT(*) AS n FROM journal WHERE kind = 'heartbeat'`)).toBe(1)

    // A create: the board's own key.
    const created = await crashOnce('task_create', { title: 'three', idempotencyKey: 'create-1' })
    expect(json(created).task.title).toBe('three')
    expect(count(`SELECT COUNT(*) AS n FROM tasks`)).toBe(3)

    // A claim: the board's claim key hands the same claim back, and no second run is opened.
    const runsBefore = count(`SELECT COUNT(*) AS n FROM runs`)
    const claimed = await crashOnce('task_claim_next', { worker: 'mcp', idempotencyKey: 'claim-next-1' })
    const replayedClaim = json(claimed).claim as Claim
    expect(replayedClaim.taskId).toBe(json(created).task.id)
    expect(count(`SELECT COUNT(*) AS n FROM runs`)).toBe(runsBefore + 1)
    expect(count(`SELECT COUNT(*) AS n FROM runs WHERE id = ? AND ended_at IS NULL`, replayedClaim.runId)).toBe(1)

    // Every key ends recorded: the next replay is served from the record.
    for (const row of raw.prepare('SELECT result FROM mcp_calls').all() as Array<{ result: string }>) {
      expect(JSON.parse(row.result)).toHaveProperty('ok')
    }
  })

  it('errors are tool errors with lockstep codes; the server keeps answering', async () => {
    const { client } = await connect([])
    const missing = (await client.callTool({ name: 'task_show', arguments: { taskId: 't_nope' } })) as CallToolResult
    expect(missing.isError).toBe(true)
    expect(text(missing)).toMatch(/^TASK_NOT_FOUND: /)
    expect(json(missing).error).toMatchObject({ code: 'TASK_NOT_FOUND', details: { taskId: 't_nope' } })

    // Arguments that fail the tool's schema are INVALID_INPUT like every other refusal,
    // not the SDK's "MCP error -32602".
    const invalid = (await client.callTool({ name: 'task_create', arguments: { title: 42 } })) as CallToolResult
    expect(invalid.isError).toBe(true)
    expect(text(invalid)).toMatch(/^INVALID_INPUT: invalid arguments for task_create: .*title/)
    expect(json(invalid).error).toMatchObject({ code: 'INVALID_INPUT', details: { tool: 'task_create', issues: [{ path: ['title'] }] } })
    const missingArgs = (await client.callTool({ name: 'task_show', arguments: {} })) as CallToolResult
    expect(text(missingArgs)).toMatch(/^INVALID_INPUT: invalid arguments for task_show: .*taskId/)
    // An argument the tool does not have is refused, not dropped (the task would be ready at once).
    const unknownArg = (await client.callTool({ name: 'task_create', arguments: { title: 'later', delay: 1000 } })) as CallToolResult
    expect(text(unknownArg)).toMatch(/^INVALID_INPUT: invalid arguments for task_create: .*delay/)
    expect(json(unknownArg).error.details.issues).toEqual([expect.objectContaining({ message: expect.stringContaining('delay') })])
    const listed = (await client.listTools()).tools.find((tool) => tool.name === 'task_create')!
    expect(listed.inputSchema.additionalProperties).toBe(false)
    const noSuchTool = (await client.callTool({ name: 'constructor', arguments: {} })) as CallToolResult
    expect(noSuchTool.isError).toBe(true)
    expect(text(noSuchTool)).toMatch(/^INVALID_INPUT: there is no tool named "constructor"/)

    const badStatus = (await client.callTool({ name: 'task_create', arguments: { title: 'x', parents: ['t_missing'] } })) as CallToolResult
    expect(badStatus.isError).toBe(true)
    expect(text(badStatus)).toMatch(/^TASK_NOT_FOUND: /)

    const stale = (await client.callTool({
      name: 'task_complete',
      arguments: { claim: { taskId: 't_nope', runId: 'r_x', token: 'x' }, idempotencyKey: 'k' },
    })) as CallToolResult
    expect(text(stale)).toMatch(/^TASK_NOT_FOUND: /)
    // An error is not recorded: the key is free for a real call.
    const reused = (await client.callTool({ name: 'task_create', arguments: { title: 'y', idempotencyKey: 'k' } })) as CallToolResult
    expect(reused.isError).toBeFalsy()
    const wrongTool = (await client.callTool({ name: 'task_cancel', arguments: { taskId: json(reused).task.id, idempotencyKey: 'k' } })) as CallToolResult
    expect(text(wrongTool)).toMatch(/^INVALID_INPUT: idempotencyKey "k" was used for task_create/)

    const unknownSession = (await client.callTool({ name: 'session_approve', arguments: { sessionId: 'nope', tool: 'x' } })) as CallToolResult
    expect(text(unknownSession)).toMatch(/^SESSION_NOT_FOUND: /)

    const info = (await client.callTool({ name: 'server_info', arguments: {} })) as CallToolResult
    expect(info.isError).toBeFalsy()
  })

  it('a tool module that fails to load is refused: the old handlers keep serving until a good one arrives', async () => {
    const toolsPath = join(dir, 'tools-wrapper.mjs')
    writeFileSync(toolsPath, TOOLS_V1)
    const orch = await createOrchestrator({ path: db, pollMs: 10 })
    cleanups.push(() => orch.close())
    const { startMcpServer } = (await import(SERVER_URL)) as typeof import('../src/mcp/server.js')
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair()
    const logs: string[] = []
    const server = await startMcpServer({ orch, transport: serverSide, toolsPath, watch: true, machines: false, log: (line) => logs.push(line) })
    cleanups.push(() => server.close())
    const client = new Client({ name: 'lockstep-test', version: '1.0.0' })
    await client.connect(clientSide)
    const info = async () => json((await client.callTool({ name: 'server_info', arguments: {} })) as CallToolResult)

    writeFileSync(toolsPath, 'export const createTools = (') // a half-written file
    for (let i = 0; i < 100 && !logs.some((l) => l.startsWith('tool reload failed')); i++) await sleep(20)
    expect(logs.find((l) => l.startsWith('tool reload failed'))).toMatch(/generation 0 kept/)
    expect(await info()).toMatchObject({ generation: 0 })

    writeFileSync(toolsPath, TOOLS_V1.replace("'v1'", "'v1b'"))
    for (let i = 0; i < 100 && server.generation === 0; i++) await sleep(20)
    expect(await info()).toMatchObject({ generation: 1 })
    expect(logs.at(-1)).toMatch(/^tool handlers reloaded: generation 1 in \d+ ms$/) // same tool list: no list_changed
  })

  it('--watch reloads the machine modules through orch.reload (version bump with a migration)', async () => {
    const machinePath = join(dir, 'task-machine.mjs')
    const machineModule = (version: number) =>
      [
        `export { taskMachine } from ${JSON.stringify(TASK_MACHINE_URL)}`,
        `export const TASK_MACHINE_VERSION = ${version}`,
        `export const TASK_MACHINE_MIGRATIONS = { 1: (snapshot) => ({ ...snapshot, context: { ...snapshot.context, migratedBy: 'mcp' } }) }`,
      ].join('\n')
    writeFileSync(machinePath, machineModule(1))
    const orch = await createOrchestrator({ path: db, pollMs: 10 })
    cleanups.push(() => orch.close())
    const { startMcpServer } = (await import(SERVER_URL)) as typeof import('../src/mcp/server.js')
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair()
    const logs: string[] = []
    const server = await startMcpServer({ orch, transport: serverSide, watch: true, machines: { task: machinePath }, log: (line) => logs.push(line) })
    cleanups.push(() => server.close())
    const client = new Client({ name: 'lockstep-test', version: '1.0.0' })
    await client.connect(clientSide)
    const call = async (name: string, args: Record<string, unknown>) => json((await client.callTool({ name, arguments: args })) as CallToolResult)

    const { task } = await call('task_create', { title: 'before the reload' })
    const { claim } = await call('task_claim_next', { worker: 'w' })
    writeFileSync(machinePath, machineModule(2))
    for (let i = 0; i < 100 && !logs.some((l) => l.startsWith('machines reloaded')); i++) await sleep(20)
    expect(logs.find((l) => l.startsWith('machines reloaded'))).toBe('machines reloaded: lockstep.task@2 (1 migrated)')
    const raw = new Database(db, { readonly: true })
    cleanups.push(() => raw.close())
    const row = raw.prepare('SELECT machine_version AS v, snapshot FROM tasks WHERE id = ?').get(task.id) as { v: number; snapshot: string }
    expect(row.v).toBe(2)
    expect(JSON.parse(row.snapshot).context.migratedBy).toBe('mcp')
    // The claim taken before the reload still completes.
    expect((await call('task_complete', { claim })).task.status).toBe('done')
    expect(server.generation).toBe(0) // tool handlers untouched
  })
})

describe('deeply nested JSON through MCP', () => {
  /**
   * One tools/call sent as raw JSON-RPC text: the SDK client would JSON.stringify the
   * arguments itself, which a million-level value does not survive.
   */
  async function rawToolCall(name: string, argumentsJson: string): Promise<CallToolResult> {
    const child = spawn(process.execPath, [CLI, 'mcp', '--db', db], { stdio: ['pipe', 'pipe', 'pipe'] })
    cleanups.push(() => child.kill('SIGKILL'))
    let buffered = ''
    const response = new Promise<CallToolResult>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        buffered += chunk
        for (const line of buffered.split('\n').slice(0, -1)) {
          const message = JSON.parse(line) as { id?: number; result?: CallToolResult; error?: unknown }
          if (message.id === 2) (message.result ? resolve(message.result) : reject(new Error(JSON.stringify(message.error))))
        }
        buffered = buffered.slice(buffered.lastIndexOf('\n') + 1)
      })
      child.on('exit', (code) => reject(new Error(`server exited with ${code}`)))
    })
    const send = (text: string) => child.stdin!.write(`${text}\n`)
    send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }))
    send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }))
    send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":${JSON.stringify(name)},"arguments":${argumentsJson}}}`)
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer in 30 s')), 30_000))
    return Promise.race([response, timeout])
  }

  for (const depth of [10_000, 1_000_000]) {
    it(`task_create with a payload ${depth.toLocaleString('en')} levels deep is INVALID_INPUT and writes nothing`, async () => {
      const deep = '['.repeat(depth) + ']'.repeat(depth)
      const result = await rawToolCall('task_create', `{"title":"deep","payload":${deep}}`)
      expect(result.isError).toBe(true)
      expect(text(result)).toMatch(/^INVALID_INPUT: payload\[0\].* nests deeper than 256 levels/)
      const sqlite = new Database(db, { readonly: true })
      try {
        expect(sqlite.prepare('SELECT COUNT(*) AS n FROM tasks').get()).toEqual({ n: 0 })
      } finally {
        sqlite.close()
      }
    })
  }
})

describe('session_authorize and inherited names', () => {
  it('every Object.prototype name (and __proto__) is not authorized without an approval; an approved __proto__ is, once', async () => {
    const names = [...new Set([...Object.getOwnPropertyNames(Object.prototype), '__proto__'])]
    await withOrchestrator((orch) => orch.sessions.open('s1', { models: ['a/primary'] }))
    const { client } = await connect([])
    const call = async (name: string, args: Record<string, unknown>) => {
      const result = (await client.callTool({ name, arguments: args })) as CallToolResult
      expect(result.isError).toBeFalsy()
      return json(result)
    }
    for (const tool of names) expect(await call('session_authorize', { sessionId: 's1', tool })).toEqual({ authorized: false })
    await call('session_approve', { sessionId: 's1', tool: '__proto__', once: true })
    expect(await call('session_authorize', { sessionId: 's1', tool: '__proto__' })).toEqual({ authorized: true })
    expect(await call('session_authorize', { sessionId: 's1', tool: '__proto__' })).toEqual({ authorized: false })
  })
})

describe('lockstep mcp: exclusive assignees (issue 9)', () => {
  it('task_claim_next without assignee takes unassigned tasks only; with assignee its own; anyAssignee any', async () => {
    const orch = await createOrchestrator({ path: db, pollMs: 10 })
    cleanups.push(() => orch.close())
    const { startMcpServer } = (await import(SERVER_URL)) as typeof import('../src/mcp/server.js')
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair()
    const server = await startMcpServer({ orch, transport: serverSide, machines: false, log: () => {} })
    cleanups.push(() => server.close())
    const client = new Client({ name: 'lockstep-test', version: '1.0.0' })
    await client.connect(clientSide)
    const call = async (name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args })) as CallToolResult

    const tools = (await client.listTools()).tools
    const claimNext = tools.find((t) => t.name === 'task_claim_next')!
    expect(claimNext.description).toMatch(/Assignees are exclusive/)
    expect(claimNext.inputSchema.properties).toHaveProperty('anyAssignee')

    const bobs = json(await call('task_create', { title: "bob's", assignee: 'bob', priority: 9 })).task
    const free = json(await call('task_create', { title: 'free' })).task
    const carols = json(await call('task_create', { title: "carol's", assignee: 'carol' })).task
    expect(json(await call('task_claim_next', { worker: 'w' })).claim).toMatchObject({ taskId: free.id })
    expect(json(await call('task_claim_next', { worker: 'w' })).claim).toBeNull()
    expect(json(await call('task_claim_next', { worker: 'w', assignee: 'bob' })).claim).toMatchObject({ taskId: bobs.id })
    expect(json(await call('task_claim_next', { worker: 'w', anyAssignee: true })).claim).toMatchObject({ taskId: carols.id })
    const both = await call('task_claim_next', { worker: 'w', assignee: 'bob', anyAssignee: true })
    expect(both.isError).toBe(true)
    expect(text(both)).toMatch(/^INVALID_INPUT: /)
  })
})

describe('lockstep mcp on PostgreSQL', () => {
  it('serves a schema: idempotency keys live in it, and a call applied just before a SIGKILL is recovered, not repeated', async (ctx) => {
    const schema = await freshSchema(ctx)
    const start = async (env: Record<string, string> = {}) => {
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: [CLI, 'mcp', '--db', pgUrl, '--schema', schema],
        env: { ...(process.env as Record<string, string>), ...env },
        stderr: 'pipe',
      })
      const client = new Client({ name: 'lockstep-test', version: '1.0.0' })
      await client.connect(transport)
      cleanups.push(() => client.close().catch(() => {}))
      return client
    }
    const call = async (client: Client, name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args })) as CallToolResult

    const first = await start()
    const created = await call(first, 'task_create', { title: 'one', idempotencyKey: 'create-1' })
    const again = await call(first, 'task_create', { title: 'one, retried', idempotencyKey: 'create-1' })
    expect(json(again).task.id).toBe(json(created).task.id)
    expect(again._meta).toEqual({ 'lockstep/replayed': true })
    await first.close()

    // The server dies between applying a completion and recording it; the retry, to a new
    // server, recognizes the applied completion from the journal and answers with it.
    const orch = await createOrchestrator({ url: pgUrl, schema })
    cleanups.push(() => orch.close())
    const claim = (await orch.tasks.claimNext({ worker: 'mcp' }))!
    const dying = await start({ LOCKSTEP_MCP_CRASH_AFTER_APPLY: 'task_complete' })
    await expect(call(dying, 'task_complete', { claim, result: { ok: 1 }, idempotencyKey: 'complete-1' })).rejects.toThrow()
    expect((await orch.tasks.get(claim.taskId))!.status).toBe('done')
    const retry = await start()
    const completed = await call(retry, 'task_complete', { claim, result: { ok: 1 }, idempotencyKey: 'complete-1' })
    expect(completed.isError).toBeFalsy()
    expect(json(completed).task).toMatchObject({ id: claim.taskId, status: 'done', result: { ok: 1 } })
    expect(completed._meta).toEqual({ 'lockstep/replayed': true })
    expect((await orch.tasks.events({ taskId: claim.taskId })).filter((e) => e.kind === 'completed')).toHaveLength(1)
  })
})
