/**
 * `lockstep mcp` on every store: the stdio MCP server, driven by the SDK's own client over
 * real processes (`node dist/src/tools/cli/main.js mcp --db ... [--schema S]`), and the server
 * started in-process over an in-memory transport. Needs a prior `npm run build`.
 *
 * Seed 000 (an MCP server's hot-reload race test) ported: 50 calls at 10/s while the
 * watched tool module is rewritten after call 15; then the same stream with the server
 * SIGKILLed after call 20 and restarted by the client's retry, idempotency keys making
 * every retried call exactly-once. Everything is checked through the public API and the
 * MCP tools themselves (replays served from the call records), so it runs on each store.
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
import { beforeAll, describe, expect, it, type TestContext } from 'vitest'
import { taskMachine, type Claim, type Orchestrator } from '../../src/index.js'
import type { McpServeOptions } from '../../src/tools/mcp/server.js'
import { wholeJournal } from './journal.js'
import { adminQuery } from '../postgres-server.js'
import { openSameBoard } from './same-board.js'
import { STORES, type StoreUnderTest } from './stores.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist/src/tools/cli/main.js')
const TOOLS_URL = pathToFileURL(join(ROOT, 'dist/src/tools/mcp/tools.js')).href
const SERVER_URL = pathToFileURL(join(ROOT, 'dist/src/tools/mcp/server.js')).href
const TASK_MACHINE_URL = pathToFileURL(join(ROOT, 'dist/machines/task.js')).href

const TOTAL_CALLS = 50
const CALL_INTERVAL_MS = 100 // 10 calls per second
const RELOAD_AFTER_CALL = 15
const KILL_AFTER_CALL = 20

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` before vitest`)
})

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const isPostgres = (spec: string) => /^postgres(ql)?:\/\//.test(spec)
const schemaOf = (spec: string) => spec.slice(spec.lastIndexOf('|') + 1)

/** The CLI's way to name a board: `--db PATH`, or `--db URL --schema S`. */
const dbArgs = (spec: string): string[] => (isPostgres(spec) ? ['--db', spec.split('|')[0]!, '--schema', schemaOf(spec)] : ['--db', spec])

/** What startMcpServer needs to keep its call records beside the board. */
const recordsOn = (spec: string): Pick<McpServeOptions, 'postgres'> =>
  isPostgres(spec) ? { postgres: { url: spec.split('|')[0]!, schema: schemaOf(spec) } } : {}

/** A fresh board (left open, delivering no timers, for checks through the public API) and a temp directory. */
async function setup(store: StoreUnderTest, ctx: TestContext) {
  const orch = await store.open(ctx, { runTimers: false })
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-mcp-'))
  ctx.onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return { orch, dir }
}

/** A client connected to a fresh `lockstep mcp` process. */
interface Connection {
  client: Client
  transport: StdioClientTransport
  stderr: () => string
  listChanged: () => number
}

async function connect(ctx: TestContext, args: string[], env: Record<string, string> = {}): Promise<Connection> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'mcp', ...args],
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
  ctx.onTestFinished(() => client.close().catch(() => {}))
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

  constructor(
    private readonly ctx: TestContext,
    private readonly args: string[],
    private readonly envFor: (spawn: number) => Record<string, string> = () => ({}),
  ) {
    this.current = connect(ctx, args, envFor(1))
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
        if (this.current === connection) this.current = connect(this.ctx, this.args, this.envFor(++this.spawned))
      }
    }
  }
}

/** A server started in this process on `orch`, over an in-memory transport, and its client. */
async function inProcessServer(ctx: TestContext, orch: Orchestrator & { spec: string }, options: Omit<McpServeOptions, 'orch' | 'transport'>) {
  const { startMcpServer } = (await import(SERVER_URL)) as typeof import('../../src/tools/mcp/server.js')
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair()
  const server = await startMcpServer({ orch, transport: serverSide, ...recordsOn(orch.spec), ...options })
  ctx.onTestFinished(() => server.close())
  const client = new Client({ name: 'lockstep-test', version: '1.0.0' })
  await client.connect(clientSide)
  return { server, client }
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

/**
 * Nothing applied twice: one task and one `created` entry per distinct create key, one
 * approval; and every key sent ends recorded: sent again, it is answered from the record
 * (marked replayed) with the first answer.
 */
async function expectExactlyOnce(
  orch: Orchestrator,
  outcomes: Outcome[],
  send: (name: string, args: Record<string, unknown>) => Promise<CallToolResult>,
): Promise<void> {
  const keys = new Set(sequence().filter((c) => c.name === 'task_create').map((c) => c.args.idempotencyKey as string))
  const tasks = await orch.tasks.list({ limit: 1000 })
  expect(tasks.length).toBe(keys.size)
  expect(new Set(tasks.map((t) => t.idempotencyKey))).toEqual(keys)
  const created = (await wholeJournal(orch)).filter((e) => e.kind === 'created')
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
  expect((await orch.sessions.events()).filter((e) => e.kind === 'approved')).toHaveLength(1)
  // Every keyed call is recorded with its answer.
  const firstOfKey = new Map<string, Outcome>()
  for (const o of outcomes) {
    const key = sequence()[o.call - 1]!.args.idempotencyKey as string | undefined
    if (key !== undefined && !firstOfKey.has(key)) firstOfKey.set(key, o)
  }
  expect(firstOfKey.size).toBe(keys.size + 1) // the creates and the approval
  for (const [key, first] of firstOfKey) {
    const replay = await send(first.name, sequence()[first.call - 1]!.args)
    expect(replay._meta, key).toEqual({ 'lockstep/replayed': true })
    expect(json(replay), key).toEqual(json(first.result!))
  }
}

describe.each(STORES)('on $name', (store) => {
  describe('lockstep mcp', () => {
    it('seed 000: 50 calls at 10/s across a hot reload of the tool module all succeed; approvals and idempotency hold', async (ctx) => {
      const { orch, dir } = await setup(store, ctx)
      await orch.sessions.open('s1', { agent: 'build', models: ['a/primary', 'b/fallback'] })
      const toolsPath = join(dir, 'tools-wrapper.mjs')
      writeFileSync(toolsPath, TOOLS_V1)
      const conn = await connect(ctx, [...dbArgs(orch.spec), '--watch', '--tools', toolsPath])
      const send = (name: string, args: Record<string, unknown>) => conn.client.callTool({ name, arguments: args }) as Promise<CallToolResult>

      const before = json(await send('server_info', {}))
      expect(before).toMatchObject({ name: 'lockstep', db: orch.path, generation: 0, watching: true, toolsModule: toolsPath })
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

      await expectExactlyOnce(orch, outcomes, send)
    })

    it('seed 000 with the server SIGKILLed after call 20: the retried calls are exactly-once', async (ctx) => {
      const { orch } = await setup(store, ctx)
      await orch.sessions.open('s1', { agent: 'build', models: ['a/primary'] })
      const client = new RetryingClient(ctx, dbArgs(orch.spec))
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
      await expectExactlyOnce(orch, outcomes, (name, args) => client.call(name, args))
    })

    it('a crash between applying a call and recording it: the replay finds the effect in the journal and does not apply again', async (ctx) => {
      const { orch } = await setup(store, ctx)
      await orch.sessions.open('s1', { models: ['a/primary'] })
      await orch.sessions.approve('s1', 'rm-rf', { once: true })
      await orch.tasks.create({ title: 'one' })
      await orch.tasks.create({ title: 'two' })
      const claim = (await orch.tasks.claimNext({ worker: 'w1', leaseMs: 60_000 }))!
      const heartbeatClaim = (await orch.tasks.claimNext({ worker: 'w2', leaseMs: 60_000 }))!
      /**
       * Call `name` on a server that SIGKILLs itself right after applying it; the retry goes
       * to a clean server. The key ends recorded: sent once more, the call is answered from
       * the record with the same answer.
       */
      async function crashOnce(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
        const client = new RetryingClient(ctx, dbArgs(orch.spec), (spawn): Record<string, string> =>
          spawn === 1 ? { LOCKSTEP_MCP_CRASH_AFTER_APPLY: name } : {},
        )
        const result = await client.call(name, args)
        expect(client.retries).toBe(1)
        expect(result._meta).toEqual({ 'lockstep/replayed': true })
        const again = await client.call(name, args)
        expect(again._meta, name).toEqual({ 'lockstep/replayed': true })
        expect(json(again), name).toEqual(json(result))
        return result
      }
      const taskEvents = async (kind: string) => (await orch.tasks.events()).filter((e) => e.kind === kind)
      const allRuns = async () => (await Promise.all((await orch.tasks.list()).map((t) => orch.tasks.runs(t.id)))).flat()

      // A once approval consumed just before the crash: the replay says true (and does not consume another).
      const authorized = await crashOnce('session_authorize', { sessionId: 's1', tool: 'rm-rf', idempotencyKey: 'auth-1' })
      expect(json(authorized)).toEqual({ authorized: true })
      expect((await orch.sessions.events()).filter((e) => e.kind === 'authorized')).toHaveLength(1)

      // A completion applied just before the crash: the replay answers with the done task, not LEASE_LOST.
      const completed = await crashOnce('task_complete', { claim, result: { ok: 1 }, idempotencyKey: 'complete-1' })
      expect(json(completed).task).toMatchObject({ id: claim.taskId, status: 'done', result: { ok: 1 } })
      expect(await taskEvents('completed')).toHaveLength(1)

      // A heartbeat: journaled once, the replay returns the extended claim.
      const beat = await crashOnce('task_heartbeat', { claim: heartbeatClaim, leaseMs: 120_000, idempotencyKey: 'beat-1' })
      expect((json(beat).claim as Claim).leaseExpiresAt).toBeGreaterThan(heartbeatClaim.leaseExpiresAt)
      expect(await taskEvents('heartbeat')).toHaveLength(1)

      // A create: the board's own key.
      const created = await crashOnce('task_create', { title: 'three', idempotencyKey: 'create-1' })
      expect(json(created).task.title).toBe('three')
      expect(await orch.tasks.list()).toHaveLength(3)

      // A claim: the board's claim key hands the same claim back, and no second run is opened.
      const runsBefore = (await allRuns()).length
      const claimed = await crashOnce('task_claim_next', { worker: 'mcp', idempotencyKey: 'claim-next-1' })
      const replayedClaim = json(claimed).claim as Claim
      expect(replayedClaim.taskId).toBe(json(created).task.id)
      expect((await allRuns()).length).toBe(runsBefore + 1)
      expect((await orch.tasks.runs(replayedClaim.taskId)).filter((r) => r.id === replayedClaim.runId && r.endedAt === null)).toHaveLength(1)

    })

    it('errors are tool errors with lockstep codes; the server keeps answering', async (ctx) => {
      const { orch } = await setup(store, ctx)
      const { client } = await connect(ctx, dbArgs(orch.spec))
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
      // None of the refusals wrote anything.
      expect(await store.tableCounts(orch.spec)).toMatchObject({ tasks: 0, journal: 0 })

      const stale = (await client.callTool({
        name: 'task_complete',
        arguments: { claim: { taskId: 't_nope', runId: 'r_x', token: 'x' }, idempotencyKey: 'k' },
      })) as CallToolResult
      expect(text(stale)).toMatch(/^TASK_NOT_FOUND: /)
      // An error is not recorded: the key is free for a real call.
      const reused = (await client.callTool({ name: 'task_create', arguments: { title: 'y', idempotencyKey: 'k' } })) as CallToolResult
      expect(reused.isError).toBeFalsy()
      expect(reused._meta).toBeUndefined()
      const wrongTool = (await client.callTool({ name: 'task_cancel', arguments: { taskId: json(reused).task.id, idempotencyKey: 'k' } })) as CallToolResult
      expect(text(wrongTool)).toMatch(/^INVALID_INPUT: idempotencyKey "k" was used for task_create/)

      const unknownSession = (await client.callTool({ name: 'session_approve', arguments: { sessionId: 'nope', tool: 'x' } })) as CallToolResult
      expect(text(unknownSession)).toMatch(/^SESSION_NOT_FOUND: /)

      const info = (await client.callTool({ name: 'server_info', arguments: {} })) as CallToolResult
      expect(info.isError).toBeFalsy()
    })

    it('a tool module that fails to load is refused: the old handlers keep serving until a good one arrives', async (ctx) => {
      const { orch, dir } = await setup(store, ctx)
      const toolsPath = join(dir, 'tools-wrapper.mjs')
      writeFileSync(toolsPath, TOOLS_V1)
      const logs: string[] = []
      const { server, client } = await inProcessServer(ctx, orch, { toolsPath, watch: true, machines: false, log: (line) => logs.push(line) })
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

    it('--watch reloads the machine modules through orch.reload (version bump with a migration)', async (ctx) => {
      const { orch, dir } = await setup(store, ctx)
      const machinePath = join(dir, 'task-machine.mjs')
      const machineModule = (version: number) =>
        [
          `export { taskMachine } from ${JSON.stringify(TASK_MACHINE_URL)}`,
          `export const TASK_MACHINE_VERSION = ${version}`,
          `export const TASK_MACHINE_MIGRATIONS = { 1: (snapshot) => ({ ...snapshot, context: { ...snapshot.context, migratedBy: 'mcp' } }) }`,
        ].join('\n')
      writeFileSync(machinePath, machineModule(1))
      const logs: string[] = []
      const { server, client } = await inProcessServer(ctx, orch, { watch: true, machines: { task: machinePath }, log: (line) => logs.push(line) })
      const call = async (name: string, args: Record<string, unknown>) => json((await client.callTool({ name, arguments: args })) as CallToolResult)

      const { task } = await call('task_create', { title: 'before the reload' })
      const { claim } = await call('task_claim_next', { worker: 'w' })
      writeFileSync(machinePath, machineModule(2))
      for (let i = 0; i < 100 && !logs.some((l) => l.startsWith('machines reloaded')); i++) await sleep(20)
      expect(logs.find((l) => l.startsWith('machines reloaded'))).toBe('machines reloaded: lockstep.task@2 (1 migrated)')
      // The task went through the module's migration and is stored at version 2: another
      // process running version 2 without migrations has nothing left to migrate.
      const migrated = (await orch.tasks.events({ taskId: task.id })).filter((e) => e.kind === 'migrated')
      expect(migrated).toEqual([expect.objectContaining({ event: expect.objectContaining({ fromVersion: 1, toVersion: 2 }) })])
      const other = await openSameBoard(ctx, orch.spec, { runTimers: false })
      expect(await other.reload({ machines: { task: { machine: taskMachine, version: 2 } } })).toEqual({
        machines: [{ machineId: 'lockstep.task', version: 2, migrated: 0 }],
      })
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
    async function rawToolCall(ctx: TestContext, spec: string, name: string, argumentsJson: string): Promise<CallToolResult> {
      const child = spawn(process.execPath, [CLI, 'mcp', ...dbArgs(spec)], { stdio: ['pipe', 'pipe', 'pipe'] })
      ctx.onTestFinished(() => void child.kill('SIGKILL'))
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
      it(`task_create with a payload ${depth.toLocaleString('en')} levels deep is INVALID_INPUT and writes nothing`, async (ctx) => {
        const { orch } = await setup(store, ctx)
        const before = await store.tableCounts(orch.spec)
        const deep = '['.repeat(depth) + ']'.repeat(depth)
        const result = await rawToolCall(ctx, orch.spec, 'task_create', `{"title":"deep","payload":${deep}}`)
        expect(result.isError).toBe(true)
        expect(text(result)).toMatch(/^INVALID_INPUT: payload\[0\].* nests deeper than 256 levels/)
        expect(await store.tableCounts(orch.spec)).toEqual(before)
        expect(before.tasks).toBe(0)
      })
    }
  })

  describe('session_authorize and inherited names', () => {
    it('every Object.prototype name (and __proto__) is not authorized without an approval; an approved __proto__ is, once', async (ctx) => {
      const names = [...new Set([...Object.getOwnPropertyNames(Object.prototype), '__proto__'])]
      const { orch } = await setup(store, ctx)
      await orch.sessions.open('s1', { models: ['a/primary'] })
      const { client } = await connect(ctx, dbArgs(orch.spec))
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

  describe('startMcpServer', () => {
    it('keeps the call records beside the board: records named elsewhere are INVALID_INPUT before anything is opened', async (ctx) => {
      const { orch } = await setup(store, ctx)
      const { startMcpServer } = (await import(SERVER_URL)) as typeof import('../../src/tools/mcp/server.js')
      // A schema nothing has created: refusing must not create it either.
      const elsewhere = `elsewhere_${process.pid}_${Date.now().toString(36)}`
      const wrong: Array<Pick<McpServeOptions, 'postgres'>> = isPostgres(orch.spec)
        ? [{}, { postgres: { url: orch.spec.split('|')[0]!, schema: elsewhere } }]
        : [{ postgres: { url: 'postgres://postgres@127.0.0.1:1/test', schema: elsewhere } }]
      for (const records of wrong) {
        const [, serverSide] = InMemoryTransport.createLinkedPair()
        const error = await startMcpServer({ orch, transport: serverSide, machines: false, log: () => {}, ...records }).catch((e: unknown) => e)
        expect(error, JSON.stringify(records)).toMatchObject({ code: 'INVALID_INPUT', details: { field: 'postgres' } })
      }
      if (isPostgres(orch.spec)) {
        expect(await adminQuery('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [elsewhere])).toEqual([])
      }
    })
  })

  describe('lockstep mcp: exclusive assignees (issue 9)', () => {
    it('task_claim_next without assignee takes unassigned tasks only; with assignee its own; anyAssignee any', async (ctx) => {
      const { orch } = await setup(store, ctx)
      const { client } = await inProcessServer(ctx, orch, { machines: false, log: () => {} })
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
})
