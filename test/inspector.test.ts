/**
 * The visual state inspector: its HTTP API (auth, errors, counts, time travel, the event
 * stream) and, end to end, the page in a real headless Chromium (Debian's
 * /usr/bin/chromium driven by playwright-core) updating live when another OS process
 * completes a task.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { get as httpGet } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import { chromium, type BrowserContext } from 'playwright-core'
import { afterEach, describe, expect, it } from 'vitest'
import { MIGRATIONS } from '../persistence/sqlite/migrations.js'
import { runInspectCommand } from '../src/inspector/cli.js'
import { startInspector, type Inspector } from '../src/inspector/server.js'
import { InvalidInputError, type Orchestrator } from '../src/index.js'
import { open, sleep, tempDbPath as tempPath } from './helpers.js'
import { needOutsideProgram } from './outside-programs.js'

const run = promisify(execFile)
// Debian's chromium; LOCKSTEP_CHROMIUM points elsewhere (the suite uses it to prove the skip path).
const CHROMIUM = process.env.LOCKSTEP_CHROMIUM ?? '/usr/bin/chromium'
const CHROMIUM_PROGRAM = { name: `Debian's chromium (${CHROMIUM})`, install: 'apt-get update && apt-get install -y chromium' }
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
const ROOT = join(import.meta.dirname, '..')

const inspectors: Inspector[] = []
afterEach(async () => {
  for (const i of inspectors.splice(0)) await i.close()
})

async function inspector(orch: Orchestrator, options: Parameters<typeof startInspector>[1] = {}): Promise<Inspector> {
  const i = await startInspector(orch, { port: 0, ...options })
  inspectors.push(i)
  return i
}

async function get(base: string, path: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(new URL(path, base), init)
  const text = await res.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // not JSON (the page)
  }
  return { status: res.status, body }
}

/** A small board: a done parent, a ready child, two waiting grandchildren; a session mid-fallback. */
async function scenario(orch: Orchestrator) {
  orch.sessions.setAdapter({ prompt: () => {}, abort: () => {} })
  const research = await orch.tasks.create({ title: 'research sources', assignee: 'researcher', tenant: 'acme' })
  const outline = await orch.tasks.create({ title: 'draft outline', parents: [research.id], assignee: 'writer', tenant: 'acme' })
  const intro = await orch.tasks.create({ title: 'write intro', parents: [outline.id], assignee: 'writer', tenant: 'acme' })
  const review = await orch.tasks.create({ title: 'review', parents: [outline.id, intro.id], assignee: 'editor', tenant: 'acme' })
  const claim = await orch.tasks.claim(research.id, { worker: 'w1', assignee: 'researcher' })
  await orch.tasks.complete(claim!, { result: { sources: 3 }, summary: 'found 3 sources' })
  await orch.sessions.open('chat-1', { agent: 'coder', models: ['anthropic/claude-x', 'openai/gpt-y', 'google/gemini-z'] })
  await orch.sessions.prompt('chat-1', { messageId: 'm1', message: { text: 'refactor this' } })
  const fallback = await orch.sessions.error('chat-1', { model: 'anthropic/claude-x', error: { status: 429, message: 'rate limit exceeded' } })
  expect(fallback.kinds).toEqual(['fallback'])
  await orch.sessions.approve('chat-1', 'bash', { once: true })
  return { research, outline, intro, review }
}

describe('inspector server', () => {
  it('refuses a non-loopback host without a token, before binding anything', async () => {
    const orch = await open()
    for (const host of ['0.0.0.0', '192.168.1.10', '::', 'example.com']) {
      const error = await startInspector(orch, { host, port: 0 }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(InvalidInputError)
      expect((error as InvalidInputError).code).toBe('INVALID_INPUT')
      expect((error as InvalidInputError).details.field).toBe('host')
    }
    await expect(startInspector(orch, { port: 70_000 })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await expect(startInspector(orch, { token: 'short' })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await expect(startInspector(':memory:')).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    // The CLI says the same, with exit code 1.
    const lines: string[] = []
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), untilStopped: async () => 'test' }
    expect(await runInspectCommand(['--db', orch.path, '--host', '0.0.0.0', '--port', '0'], io)).toBe(1)
    expect(lines.join('\n')).toMatch(/INVALID_INPUT.*not a loopback/)
  })

  it('answers 401 without the token when one is set, on every path', async () => {
    const orch = await open()
    await scenario(orch)
    const token = 'secret-token-1234'
    const i = await inspector(orch, { token })
    expect(i.url).toContain(`?token=${token}`)
    const base = i.url.split('?')[0]!
    for (const path of ['/', '/api/summary', '/events', '/assets/app.js', '/api/actors/x']) {
      const r = await get(base, path)
      expect(r.status, path).toBe(401)
    }
    expect((await get(base, '/api/summary?token=wrong-token-12345')).status).toBe(401)
    expect((await get(base, '/api/summary', { headers: { Authorization: 'Bearer nope-nope-nope' } })).status).toBe(401)
    const withQuery = await get(base, `/api/summary?token=${token}`)
    expect(withQuery.status).toBe(200)
    expect(withQuery.body.tasks.done).toBe(1)
    const withHeader = await get(base, '/api/summary', { headers: { Authorization: `Bearer ${token}` } })
    expect(withHeader.status).toBe(200)
    // The page carries the token into its own asset and API requests.
    const page = await get(base, `/?token=${token}`)
    expect(page.status).toBe(200)
    expect(page.body).toContain(`/assets/app.js?token=${token}`)
  })

  it('serves counts, pages, errors as JSON with codes, the statechart and time travel', async () => {
    const orch = await open()
    const { research, outline, review } = await scenario(orch)
    const i = await inspector(orch)
    expect(i.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)

    const summary = await get(i.url, '/api/summary')
    expect(summary.status).toBe(200)
    expect(summary.body.tasks).toEqual({ todo: 2, ready: 1, running: 0, blocked: 0, done: 1, failed: 0, cancelled: 0, archived: 0 })
    expect(summary.body.totalTasks).toBe(4)
    expect(summary.body.sessions).toEqual({ idle: 0, active: 1, exhausted: 0, archived: 0, deleted: 0 })

    // Paged and filtered lists.
    const page1 = await get(i.url, '/api/tasks?limit=2')
    expect(page1.body.tasks.map((t: { title: string }) => t.title)).toEqual(['research sources', 'draft outline'])
    const page2 = await get(i.url, `/api/tasks?limit=2&after=${page1.body.next}`)
    expect(page2.body.tasks.map((t: { title: string }) => t.title)).toEqual(['write intro', 'review'])
    expect(page2.body.next).toBeNull()
    expect((await get(i.url, '/api/tasks?status=todo&assignee=editor')).body.tasks.map((t: { id: string }) => t.id)).toEqual([review.id])
    expect((await get(i.url, '/api/tasks?q=OUTLINE')).body.tasks.map((t: { id: string }) => t.id)).toEqual([outline.id])
    expect((await get(i.url, '/api/tasks?q=100%25')).body.tasks).toEqual([])

    // Malformed parameters: 400 with a code, naming the field.
    for (const bad of [
      '/api/tasks?limit=abc',
      '/api/tasks?limit=0',
      '/api/tasks?status=bogus',
      '/api/tasks?limt=5',
      '/api/tasks?limit=1&limit=2',
      '/api/tasks?after=t_nope',
      '/api/tasks?q=',
      '/api/graph?depth=-1',
      `/api/actors/${research.id}/snapshot`,
      `/api/actors/${research.id}/snapshot?seq=1.5`,
      '/api/journal?after=x',
      '/events?after=-3',
    ]) {
      const r = await get(i.url, bad)
      expect(r.status, bad).toBe(400)
      expect(r.body.error.code, bad).toBe('INVALID_INPUT')
      expect(typeof r.body.error.details.field, bad).toBe('string')
    }
    // Unknown ids: 404 JSON.
    for (const missing of ['/api/actors/t_nope', '/api/actors/t_nope/snapshot?seq=1', '/api/sessions/nope', '/api/machines/nope', `/api/actors/${research.id}/snapshot?seq=999999`, '/api/nothing']) {
      const r = await get(i.url, missing)
      expect(r.status, missing).toBe(404)
      expect(r.body.error.code, missing).toBe('NOT_FOUND')
    }
    expect((await get(i.url, '/api/summary', { method: 'POST' })).status).toBe(405)
    // Another Host name than loopback is refused without a token (DNS rebinding).
    expect(await statusWithHost(i.url, 'evil.example')).toBe(403)
    expect(await statusWithHost(i.url, `localhost:${i.port}`)).toBe(200)

    // The DAG.
    const graph = await get(i.url, '/api/graph')
    expect(graph.body.nodes).toHaveLength(4)
    expect(graph.body.edges).toHaveLength(4)
    const focused = await get(i.url, `/api/graph?focus=${research.id}&depth=1`)
    expect(focused.body.nodes.map((n: { id: string }) => n.id).sort()).toEqual([research.id, outline.id].sort())

    // The statechart: node ids, transitions with event and guard names.
    const chart = (await get(i.url, '/api/machines/lockstep.task')).body
    expect(chart.initial).toBe('created')
    expect(chart.nodes.map((n: { path: string }) => n.path)).toEqual(expect.arrayContaining(['ready', 'running', 'backoff', 'done', 'archived']))
    const complete = chart.edges.find((e: { event: string; source: string }) => e.event === 'COMPLETE' && e.source === 'task.running')
    expect(complete).toMatchObject({ target: 'task.done', branches: [{ guard: 'holdsLease', kinds: ['completed'] }] })
    const sessionChart = (await get(i.url, '/api/machines/lockstep.session')).body
    expect(sessionChart.nodes.map((n: { path: string }) => n.path)).toContain('active.awaitingFirstToken')
    expect(sessionChart.edges.some((e: { branches: Array<{ guard: string | null }> }) => e.branches.some((b) => b.guard === 'and(attemptsLeft, nextModelAvailable)'))).toBe(true)

    // One actor: context (no fencing token), runs, journal; then its state after an older entry.
    const actor = (await get(i.url, `/api/actors/${research.id}`)).body
    expect(actor).toMatchObject({ kind: 'task', state: 'done', status: 'done' })
    expect(actor.context).not.toHaveProperty('token')
    expect(actor.runs.items[0]).toMatchObject({ outcome: 'completed', worker: 'w1' })
    expect(actor.journal.entries.map((e: { kind: string }) => e.kind)).toEqual(['completed', 'claimed', 'created'])
    const claimed = actor.journal.entries[1]
    const then = (await get(i.url, `/api/actors/${research.id}/snapshot?seq=${claimed.seq}`)).body
    expect(then).toMatchObject({ state: 'running', eventType: 'CLAIM', fidelity: 'exact', verified: true })
    expect(then.context).toMatchObject({ attempts: 1, worker: 'w1', completedAt: null })
    expect(then.context).not.toHaveProperty('token')
    const claimEdge = chart.edges.find((e: { id: string }) => e.id === then.transition.edges[0])
    expect(claimEdge).toMatchObject({ source: 'task.ready', target: 'task.running', event: 'CLAIM' })

    // A session mid-fallback: the chain with each model's status, attempts, approvals.
    const session = (await get(i.url, '/api/sessions/chat-1')).body
    expect(session.session.state).toBe('active.awaitingFirstToken')
    expect(session.session.models.map((m: { model: string; current: boolean; coolingUntil: number | null }) => [m.model, m.current, m.coolingUntil !== null])).toEqual([
      ['anthropic/claude-x', false, true],
      ['openai/gpt-y', true, false],
      ['google/gemini-z', false, false],
    ])
    expect(session.session.log).toMatchObject([{ model: 'anthropic/claude-x', outcome: 'failed' }])
    expect(session.session.approvals).toMatchObject([{ tool: 'bash', once: true }])
    // Session time travel replays too: after the prompt, the primary was current.
    const prompted = session.journal.entries.find((e: { kind: string }) => e.kind === 'prompted')
    const before = (await get(i.url, `/api/actors/chat-1/snapshot?seq=${prompted.seq}`)).body
    expect(before).toMatchObject({ state: 'active.awaitingFirstToken', fidelity: 'exact' })
    expect(before.context.model).toBe('anthropic/claude-x')
    expect((await get(i.url, '/api/sessions?status=active')).body.sessions.map((s: { id: string }) => s.id)).toEqual(['chat-1'])
  })

  it('streams every committed entry as server-sent events, and closes the stream with the server', async () => {
    const orch = await open()
    const i = await inspector(orch, { pollMs: 20 })
    const res = await fetch(new URL('/events', i.url))
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let text = ''
    const until = async (pattern: RegExp, ms = 5_000) => {
      const deadline = Date.now() + ms
      while (!pattern.test(text)) {
        if (Date.now() > deadline) throw new Error(`no ${pattern} in ${text}`)
        const chunk = await Promise.race([reader.read(), sleep(deadline - Date.now()).then(() => null)])
        if (!chunk || chunk.done) break
        text += decoder.decode(chunk.value)
      }
      expect(text).toMatch(pattern)
    }
    await until(/event: hello/)
    const task = await orch.tasks.create({ title: 'streamed', tenant: 'live' })
    await until(new RegExp(`id: \\d+\\nevent: entry\\ndata: [^\\n]*"actorId":"${task.id}"[^\\n]*"kind":"created"`))
    await until(/event: summary\ndata: .*"ready":1/)
    // close() ends open streams instead of waiting for them.
    const closing = i.close()
    inspectors.splice(inspectors.indexOf(i), 1)
    await closing
    const end = await Promise.race([reader.read().catch(() => ({ done: true })), sleep(3_000).then(() => 'timeout')])
    expect(end).not.toBe('timeout')
  })

  it('runs as `lockstep inspect` until stopped', async () => {
    const orch = await open()
    await orch.tasks.create({ title: 'cli' })
    let stop!: (reason: string) => void
    const stopped = new Promise<string>((resolve) => (stop = resolve))
    const lines: string[] = []
    const done = runInspectCommand(['--db', orch.path, '--port', '0', '--json'], { out: (l) => lines.push(l), err: (l) => lines.push(l), untilStopped: () => stopped })
    const deadline = Date.now() + 10_000
    while (lines.length === 0 && Date.now() < deadline) await sleep(10)
    const { url } = JSON.parse(lines[0]!)
    expect((await get(url, '/api/summary')).body.tasks.ready).toBe(1)
    stop('SIGINT')
    expect(await done).toBe(0)
    expect(await runInspectCommand(['--db', join(tmpdir(), 'no-such-lockstep.db'), '--port', '0'], { out: () => {}, err: () => {} })).toBe(1)
    expect(await runInspectCommand(['--bogus'], { out: () => {}, err: () => {} })).toBe(2)
  })
})

describe('inspector: which files it opens', () => {
  const inspectJson = async (path: string) => {
    const lines: string[] = []
    const code = await runInspectCommand(['--db', path, '--port', '0', '--json'], { out: (l) => lines.push(l), err: (l) => lines.push(l), untilStopped: async () => 'SIGINT' })
    return { code, out: lines.length ? JSON.parse(lines[0]!) : null }
  }

  it('another application\'s database, even one with a user_version, or an old lockstep schema: typed, never INTERNAL; the file unchanged', async () => {
    const path = tempPath()
    const other = new Database(path)
    other.exec("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ann')")
    other.pragma('user_version = 3')
    other.close()
    const before = readFileSync(path).toString('base64')
    expect(await inspectJson(path)).toMatchObject({ code: 1, out: { error: { code: 'STORE_OPEN_FAILED' } } })
    await expect(startInspector(path, { port: 0 })).rejects.toMatchObject({ code: 'STORE_OPEN_FAILED' })
    expect(readFileSync(path).toString('base64')).toBe(before)

    const old = tempPath()
    const first = new Database(old)
    first.exec(MIGRATIONS[0]!.sql)
    first.pragma('user_version = 1')
    first.close()
    expect(await inspectJson(old)).toMatchObject({ code: 1, out: { error: { code: 'SCHEMA_TOO_OLD' } } })
  })

  it('after close(), orch.inspect() is CLOSED and starts no server', async () => {
    const orch = await open()
    await orch.close()
    await expect(orch.inspect({ port: 0 })).rejects.toMatchObject({ code: 'CLOSED' })
  })

  it('refuses options it does not know, naming them', async () => {
    const orch = await open()
    await expect(orch.inspect({ port: 0, tokn: 'abcdefghij' } as never)).rejects.toMatchObject({ code: 'INVALID_INPUT', details: { field: 'tokn' } })
    await expect(startInspector(orch, { port: 0, poll: 10 } as never)).rejects.toMatchObject({ code: 'INVALID_INPUT', details: { field: 'poll' } })
  })
})

describe('inspector → Stately inspector (@statelyai/inspect)', () => {
  it('streams actors, events and snapshots to a given inspector', async () => {
    const orch = await open()
    const calls: Array<[string, unknown, unknown]> = []
    const fake = {
      actor: (a: unknown, snapshot?: unknown) => calls.push(['actor', a, snapshot]),
      event: (a: unknown, event: unknown) => calls.push(['event', a, event]),
      snapshot: (a: unknown, snapshot: unknown) => calls.push(['snapshot', a, snapshot]),
    }
    await inspector(orch, { pollMs: 20, stately: { inspector: fake } })
    const parent = await orch.tasks.create({ title: 'parent' })
    const child = await orch.tasks.create({ title: 'child', parents: [parent.id] })
    const claim = await orch.tasks.claim(parent.id, { worker: 'w' })
    await orch.tasks.complete(claim!)
    const deadline = Date.now() + 5_000
    while (calls.filter((c) => c[0] === 'snapshot').length < 5 && Date.now() < deadline) await sleep(20)
    const announced = calls.filter((c) => c[0] === 'actor').map((c) => (c[1] as { sessionId: string; logic: { config: { id: string } } }))
    expect(announced.map((a) => a.sessionId)).toEqual([parent.id, child.id])
    expect(announced[0]!.logic.config.id).toBe('task')
    const snapshots = calls.filter((c) => c[0] === 'snapshot' && c[1] === parent.id).map((c) => (c[2] as { value: unknown }).value)
    expect(snapshots).toEqual(['ready', 'running', 'done'])
    expect(calls.filter((c) => c[0] === 'event' && c[1] === child.id).map((c) => (c[2] as { type: string }).type)).toEqual(['CREATE', 'PARENT_DONE'])
    const last = calls.filter((c) => c[0] === 'snapshot').at(-1)![2] as { context: Record<string, unknown> }
    expect(last.context).not.toHaveProperty('token')
  })

  it('connects createWebSocketInspector to a ws:// url (a local server here)', async () => {
    const { WebSocketServer } = (await import('ws' as string)) as { WebSocketServer: new (o: { host: string; port: number }) => any }
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await new Promise((resolve) => wss.on('listening', resolve))
    const received: Array<{ type: string; sessionId: string }> = []
    wss.on('connection', (socket: any) => socket.on('message', (data: Buffer) => received.push(JSON.parse(String(data)))))
    try {
      const orch = await open()
      await inspector(orch, { pollMs: 20, stately: { url: `ws://127.0.0.1:${wss.address().port}` } })
      const task = await orch.tasks.create({ title: 'to stately' })
      const deadline = Date.now() + 10_000
      while (!received.some((m) => m.type === '@xstate.snapshot') && Date.now() < deadline) await sleep(20)
      expect(received.map((m) => m.type)).toEqual(['@xstate.actor', '@xstate.event', '@xstate.snapshot'])
      expect(received.every((m) => m.sessionId === task.id)).toBe(true)
    } finally {
      for (const i of inspectors.splice(0)) await i.close()
      await new Promise((resolve) => wss.close(resolve))
    }
    await expect(startInspector(tempPath(), { stately: { url: 'http://nope' } })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
  })
})

describe('inspector page in a real browser', () => {
  it('shows the board, a statechart with time travel, the session chain, and updates live when another process completes a task', async (ctx) => {
    expect(existsSync(join(ROOT, 'dist/src/index.js')), 'run `npm run build` first: the other process uses dist/').toBe(true)
    const userDataDir = mkdtempSync(join(tmpdir(), 'lockstep-chromium-'))
    let browser: BrowserContext | null = null
    try {
      // A browser that cannot be started skips this test (fails it under CI=true).
      // playwright-core manages the profile directory itself: a fresh temp dir per run.
      let problem: string | null = existsSync(CHROMIUM) ? null : `${CHROMIUM} does not exist`
      if (problem === null) {
        try {
          browser = await chromium.launchPersistentContext(userDataDir, {
            executablePath: CHROMIUM,
            headless: true,
            viewport: { width: 1500, height: 1000 },
            timeout: 30_000,
            args: CHROMIUM_ARGS,
          })
        } catch (error) {
          problem = `it did not start: ${(error as Error).message.split('\n')[0]}`
        }
      }
      needOutsideProgram(ctx, CHROMIUM_PROGRAM, problem)
      browser = browser!

      const orch = await open()
      const { outline } = await scenario(orch)
      const i = await inspector(orch)
      const page = browser.pages()[0] ?? (await browser.newPage())
      page.setDefaultTimeout(10_000)
      const errors: string[] = []
      page.on('pageerror', (e) => errors.push(e.message))
      // Nothing leaves the machine: any request not to the inspector fails the test.
      const foreign: string[] = []
      page.on('request', (r) => {
        if (!r.url().startsWith(i.url.replace(/\/$/, ''))) foreign.push(r.url())
      })

      await page.goto(i.url)
      // The board: columns by status with live counts.
      await page.waitForSelector('#live.on')
      const count = (status: string) => page.locator(`.col[data-status="${status}"] .count`)
      await expect.poll(() => count('done').textContent()).toBe('1')
      await expect.poll(() => count('todo').textContent()).toBe('2')
      await expect.poll(() => count('ready').textContent()).toBe('1')
      expect(await page.locator('.col[data-status="ready"] .card .t').allTextContents()).toEqual(['draft outline'])
      expect(await page.locator('.col[data-status="todo"] .card .t').allTextContents()).toEqual(['write intro', 'review'])
      expect(await page.locator('#counts [data-status="done"] b').textContent()).toBe('1')
      await page.screenshot({ path: artifact('inspector-board.png') })

      // One task: its statechart with the current state highlighted.
      await page.evaluate(() => ((globalThis as unknown as { __noReload: number }).__noReload = 42))
      await page.click(`.card[data-id="${outline.id}"]`)
      await page.waitForSelector('#statechart svg .state.current[data-path="ready"]')
      expect(await page.locator('#statechart svg .state.current').count()).toBe(1)
      expect(await page.locator('#statechart svg text', { hasText: 'COMPLETE [holdsLease]' }).count()).toBe(1)
      const entries = page.locator('#journal tbody tr')
      await expect.poll(() => entries.count()).toBe(2)
      // An older journal entry: the state as it was after it, and the transition it took.
      await page.click('#journal tbody tr:last-child')
      await page.waitForSelector('#statechart svg .state.past[data-path="todo"]')
      expect(await page.locator('#statechart svg .edge.taken').count()).toBe(1)
      expect(await page.locator('#timetravel').textContent()).toContain('CREATE')
      expect(await page.locator('#statechart svg .state.current[data-path="ready"]').count()).toBe(1)

      // Another OS process claims and completes it: the page follows without a reload.
      const { stdout } = await run(process.execPath, [join(ROOT, 'test/procs/inspector-complete.mjs'), orch.path, outline.id], { timeout: 30_000 })
      expect(JSON.parse(stdout).status).toBe('done')
      await page.waitForSelector('#statechart svg .state.current[data-path="done"]', { timeout: 5_000 })
      await expect.poll(() => entries.count(), { timeout: 5_000 }).toBe(4)
      expect(await page.locator('#journal tbody tr td:nth-child(3)').allTextContents()).toEqual(['completed', 'claimed', 'promoted', 'created'])
      await expect.poll(() => page.locator('#counts [data-status="done"] b').textContent(), { timeout: 5_000 }).toBe('2')
      await expect.poll(() => page.locator('#details .pill').first().textContent(), { timeout: 5_000 }).toBe('done')
      await expect.poll(() => page.locator('#runs tbody tr').count(), { timeout: 5_000 }).toBe(1)
      expect(await page.locator('#runs tbody').textContent()).toContain('other-process')
      // The time-travel selection is still shown beside the live state.
      expect(await page.locator('#statechart svg .state.past[data-path="todo"]').count()).toBe(1)
      expect(await page.evaluate(() => (globalThis as unknown as { __noReload?: number }).__noReload)).toBe(42)
      mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true })
      await page.screenshot({ path: join(ROOT, 'test-artifacts/inspector.png'), fullPage: true })

      // Back on the board (no reload): its children moved to ready.
      await page.click('a[href="#/board"].brand')
      await expect.poll(() => count('ready').textContent()).toBe('1')
      await expect.poll(() => page.locator('.col[data-status="ready"] .card .t').allTextContents()).toEqual(['write intro'])

      // The session mid-fallback: the chain with each model's status, attempts, approvals.
      await page.click('.tabs a[data-tab="sessions"]')
      await page.click('#sessions tr[data-id="chat-1"]')
      await page.waitForSelector('#chain .model.current[data-model="openai/gpt-y"]')
      expect(await page.locator('#chain .model[data-model="anthropic/claude-x"] .st').textContent()).toMatch(/cooling until .*HTTP 429/)
      expect(await page.locator('#attempts tbody tr').count()).toBe(1)
      expect(await page.locator('#approvals tbody td code').textContent()).toBe('bash')
      await page.waitForSelector('#statechart svg .state.current[data-path="active.awaitingFirstToken"]')
      await page.screenshot({ path: artifact('inspector-session.png'), fullPage: true })

      expect(errors).toEqual([])
      expect(foreign).toEqual([])
    } finally {
      await browser?.close()
      rmSync(userDataDir, { recursive: true, force: true })
    }
  })
})

/** fetch() will not send another Host header; node:http will. */
function statusWithHost(base: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpGet(new URL('/api/summary', base), { headers: { Host: host } }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', reject)
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')))
  })
}

function artifact(name: string): string {
  mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true })
  return join(ROOT, 'test-artifacts', name)
}
