/**
 * The visual state inspector, what is not about the store it reads (the behaviour on every
 * store is test/conformance/inspector.test.ts): hosts, tokens and options, which SQLite
 * files it opens, the Stately bridge over a WebSocket and, end to end on each store, the
 * page in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core)
 * updating live when another OS process completes a task.
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
import { MIGRATIONS } from '../../persistence/sqlite/migrations.js'
import { runInspectCommand } from '../../src/tools/inspector/cli.js'
import { startInspector, type Inspector } from '../../src/tools/inspector/server.js'
import { InvalidInputError, type Orchestrator } from '../../src/index.js'
import { STORES } from '../conformance/stores.js'
import { open, runProc, sleep, tempDbPath as tempPath } from '../helpers.js'
import { get, scenario } from './inspector-helpers.js'
import { needOutsideProgram } from '../outside-programs.js'

const run = promisify(execFile)
// Debian's chromium; LOCKSTEP_CHROMIUM points elsewhere (the suite uses it to prove the skip path).
const CHROMIUM = process.env.LOCKSTEP_CHROMIUM ?? '/usr/bin/chromium'
const CHROMIUM_PROGRAM = { name: `Debian's chromium (${CHROMIUM})`, install: 'apt-get update && apt-get install -y chromium' }
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
const ROOT = join(import.meta.dirname, '..', '..')

const inspectors: Inspector[] = []
afterEach(async () => {
  for (const i of inspectors.splice(0)) await i.close()
})

async function inspector(orch: Orchestrator, options: Parameters<typeof startInspector>[1] = {}): Promise<Inspector> {
  const i = await startInspector(orch, { port: 0, ...options })
  inspectors.push(i)
  return i
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

  it('refuses other Host names than loopback without a token (DNS rebinding)', async () => {
    const orch = await open()
    const i = await inspector(orch)
    expect(await statusWithHost(i.url, 'evil.example')).toBe(403)
    expect(await statusWithHost(i.url, `localhost:${i.port}`)).toBe(200)
  })

  it('`lockstep inspect`: a missing file, a stray --schema and bad usage are refused', async () => {
    const lines: string[] = []
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) }
    expect(await runInspectCommand(['--db', join(tmpdir(), 'no-such-lockstep.db'), '--port', '0'], io)).toBe(1)
    expect(lines.pop()).toMatch(/^error INVALID_INPUT: no lockstep database at /)
    const orch = await open()
    expect(await runInspectCommand(['--db', orch.path, '--schema', 'lockstep', '--port', '0'], io)).toBe(1)
    expect(lines.pop()).toMatch(/^error INVALID_INPUT: --schema goes with a postgres/)
    expect(await runInspectCommand(['--bogus'], io)).toBe(2)
    expect(await runInspectCommand(['--help'], io)).toBe(0)
    expect(lines.pop()).toMatch(/--db PATH\|URL[\s\S]*--schema S/)
  })
})

describe('inspector: what it loads', () => {
  it('on a SQLite file, neither the orchestrator nor the inspector loads node-postgres', async () => {
    const r = await runProc('sqlite-without-pg.mjs', [tempPath()])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ loaded: [], tasks: 1 })
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

describe.each(STORES)('inspector page in a real browser, on $name', (store) => {
  // The page's own artifacts keep their names on SQLite.
  const suffix = store.name === 'sqlite' ? '' : `-${store.name}`

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

      const orch = await store.open(ctx)
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
      await page.screenshot({ path: artifact(`inspector-board${suffix}.png`) })

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
      const { stdout } = await run(process.execPath, [join(ROOT, 'test/procs/inspector-complete.mjs'), orch.spec, outline.id], { timeout: 30_000 })
      expect(JSON.parse(stdout).status).toBe('done')
      await page.waitForSelector('#statechart svg .state.current[data-path="done"]', { timeout: 15_000 })
      await expect.poll(() => entries.count(), { timeout: 15_000 }).toBe(4)
      expect(await page.locator('#journal tbody tr td:nth-child(3)').allTextContents()).toEqual(['completed', 'claimed', 'promoted', 'created'])
      await expect.poll(() => page.locator('#counts [data-status="done"] b').textContent(), { timeout: 15_000 }).toBe('2')
      await expect.poll(() => page.locator('#details .pill').first().textContent(), { timeout: 15_000 }).toBe('done')
      await expect.poll(() => page.locator('#runs tbody tr').count(), { timeout: 15_000 }).toBe(1)
      expect(await page.locator('#runs tbody').textContent()).toContain('other-process')
      // The time-travel selection is still shown beside the live state.
      expect(await page.locator('#statechart svg .state.past[data-path="todo"]').count()).toBe(1)
      expect(await page.evaluate(() => (globalThis as unknown as { __noReload?: number }).__noReload)).toBe(42)
      mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true })
      await page.screenshot({ path: join(ROOT, `test-artifacts/inspector${suffix}.png`), fullPage: true })

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
      await page.screenshot({ path: artifact(`inspector-session${suffix}.png`), fullPage: true })

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
