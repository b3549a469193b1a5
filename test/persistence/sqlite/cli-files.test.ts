/**
 * The `lockstep` CLI on SQLite files, where only files behave so: the default
 * ./lockstep.db, a missing file refused, files that are not lockstep's, read commands
 * leaving the file's bytes alone, a file its user may not write, --schema without a
 * postgres:// --db, and the demo (it runs on a file). The CLI's behaviour on every store:
 * test/conformance/cli.test.ts. Needs a prior `npm run build` (npm test does it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Claim, Task } from '../../../src/index.js'

const ROOT = fileURLToPath(new URL('../../..', import.meta.url))
const CLI = join(ROOT, 'dist/src/tools/cli/main.js')

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

let dir: string
let db: string
/** Background CLI processes of the current test, killed if a failing test leaves one running. */
const children: ChildProcess[] = []

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` before vitest`)
})
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-cli-'))
  db = join(dir, 'board.db')
})
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

/** `lockstep ARGS`, any outcome. */
function run(args: string[], cwd = ROOT): Result {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 60_000 })
  if (r.error) throw r.error
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** `lockstep ARGS --db DB`, any outcome. */
const attempt = (...args: string[]): Result => run([...args, '--db', db])

/** `lockstep ARGS --db DB`, which must succeed; its stdout. */
function cli(...args: string[]): string {
  const r = attempt(...args)
  expect(r.code, `lockstep ${args.join(' ')}\n${r.stderr}`).toBe(0)
  return r.stdout
}

/** `lockstep ARGS --db DB --json`, which must succeed; its one JSON document. */
function cliJson<T = any>(...args: string[]): T {
  return JSON.parse(cli(...args, '--json')) as T
}

const create = (...args: string[]): Task => cliJson<Task>('task', 'create', ...args)
const ids = (tasks: Task[]) => tasks.map((t) => t.id)

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

describe('lockstep init', () => {
  it('creates and migrates the file, prints its path, defaults to ./lockstep.db and is idempotent', () => {
    const r = run(['init'], dir)
    expect(r.code, r.stderr).toBe(0)
    const defaultPath = join(realpathSync(dir), 'lockstep.db')
    expect(r.stdout.trim()).toBe(defaultPath)
    const sqlite = new Database(defaultPath, { readonly: true })
    expect(sqlite.pragma('user_version', { simple: true })).toBeGreaterThan(0)
    sqlite.close()

    expect(cliJson('init')).toEqual({ path: db })
    expect(cliJson('init')).toEqual({ path: db })
    expect(cli('events')).toBe('')
  })

  it('other commands refuse a missing file instead of creating it', () => {
    const r = attempt('task', 'list')
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error INVALID_INPUT: no lockstep database at .*board\.db/)
    expect(existsSync(db)).toBe(false)
  })
})

describe('opening files', () => {
  const DEMO = join(ROOT, 'dist/src/tools/demo/main.js')
  const fingerprint = (path: string) => ({ bytes: readFileSync(path).toString('base64'), mtimeMs: statSync(path).mtimeMs })
  const foreign = (path: string) => {
    const sqlite = new Database(path)
    sqlite.exec("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ann')")
    sqlite.close()
  }
  const notLockstep: Record<string, (path: string) => void> = {
    empty: (path) => writeFileSync(path, ''),
    foreign,
    garbage: (path) => writeFileSync(path, 'not a database, just text long enough to fill a header '.repeat(40)),
  }

  it.each(Object.keys(notLockstep))('%s file: read commands, inspect and mcp say STORE_OPEN_FAILED and leave it as it was', (kind) => {
    notLockstep[kind]!(db)
    const before = fingerprint(db)
    for (const args of [['task', 'list'], ['task', 'show', 't_x'], ['events'], ['inspect', '--port', '0'], ...(kind === 'empty' ? [] : [['mcp']])]) {
      const r = spawnSync(process.execPath, [CLI, ...args, '--db', db, '--json'], { cwd: ROOT, encoding: 'utf8', input: '', timeout: 30_000 })
      expect(r.status, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(1)
      expect(JSON.parse(r.stdout).error.code, args.join(' ')).toBe('STORE_OPEN_FAILED')
    }
    expect(fingerprint(db)).toEqual(before)
    expect(existsSync(`${db}-wal`)).toBe(false)
  })

  it('read commands never write: an overdue lease stays as it is until a writing command delivers it', () => {
    cli('init')
    const task = create('--title', 'claimed')
    cliJson<Claim>('task', 'claim', task.id, '--worker', 'w', '--lease-ms', '1')
    const before = fingerprint(db)
    expect(cliJson<Task[]>('task', 'list')[0]!.status).toBe('running')
    cli('task', 'show', task.id)
    cli('events')
    expect(fingerprint(db)).toEqual(before)
    expect(cliJson<Claim | null>('task', 'claim', '--worker', 'w2')!.taskId).toBe(task.id) // a write delivers it first
  })

  it('a user who may not write the file can read it; writing commands say STORE_OPEN_FAILED', () => {
    cli('init')
    const task = create('--title', 'readable')
    const asRoot = process.getuid?.() === 0
    // Root ignores permission bits: read as nobody. The directory stays writable to the
    // reader (SQLite creates the -shm it needs to read a WAL file there); the file is not.
    chmodSync(db, 0o444)
    chmodSync(dir, asRoot ? 0o777 : 0o755)
    const before = fingerprint(db)
    const as = (...args: string[]) => {
      const r = spawnSync(process.execPath, [CLI, ...args, '--db', db, '--json'], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 30_000,
        ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
      })
      return { code: r.status, out: r.stdout, err: r.stderr }
    }
    const list = as('task', 'list')
    expect(list.code, list.err + list.out).toBe(0)
    expect(ids(JSON.parse(list.out))).toEqual([task.id])
    expect(as('task', 'show', task.id).code).toBe(0)
    expect(as('events').code).toBe(0)
    const write = as('task', 'create', '--title', 'nope')
    expect(write.code).toBe(1)
    expect(JSON.parse(write.out).error.code).toBe('STORE_OPEN_FAILED')
    expect(fingerprint(db)).toEqual(before)
    chmodSync(dir, 0o700)
  })

  /** Pids whose parent is `pid`, from /proc. */
  const childrenOf = (pid: number): number[] =>
    readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .filter((name) => {
        try {
          // Fields after the command's closing paren: state, ppid, ...
          return Number(readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === pid
        } catch {
          return false // gone meanwhile
        }
      })
      .map(Number)
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0)
      return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z'
    } catch {
      return false
    }
  }
  async function waitGone(pids: number[], timeoutMs: number): Promise<number[]> {
    const deadline = Date.now() + timeoutMs
    while (pids.some(alive) && Date.now() < deadline) await sleep(50)
    return pids.filter(alive)
  }

  it('the demo: its worker processes stop soon after the main process is killed, even while they start', async () => {
    const demo = spawn(process.execPath, [DEMO, '--db', db, '--port', '0', '--exit'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(demo)
    demo.stdout!.resume()
    demo.stderr!.resume()
    // Kill it the moment its three workers exist: they are still loading and opening the file.
    let workers: number[] = []
    const deadline = Date.now() + 30_000
    while ((workers = childrenOf(demo.pid!)).length < 3 && Date.now() < deadline) await sleep(5)
    expect(workers).toHaveLength(3)
    demo.kill('SIGKILL')
    try {
      expect(await waitGone(workers, 15_000)).toEqual([])
    } finally {
      for (const pid of workers) if (alive(pid)) process.kill(pid, 'SIGKILL')
    }
  })

  it('the demo: a closed stdout (| head) shuts it down cleanly, workers included, claims released', async () => {
    const demo = spawn(process.execPath, [DEMO, '--db', db, '--port', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(demo)
    let stderr = ''
    demo.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const exited = new Promise<number | null>((resolve) => demo.on('exit', (code) => resolve(code)))
    let workers: number[] = []
    const deadline = Date.now() + 30_000
    while ((workers = childrenOf(demo.pid!)).length < 3 && Date.now() < deadline) await sleep(5)
    expect(workers).toHaveLength(3)
    // Let a claim or two happen, then go away like `head` does.
    await sleep(700)
    demo.stdout!.destroy()
    try {
      expect(await exited, stderr).toBe(0)
      expect(stderr).not.toMatch(/EPIPE|Error/)
      expect(await waitGone(workers, 15_000)).toEqual([])
    } finally {
      for (const pid of workers) if (alive(pid)) process.kill(pid, 'SIGKILL')
    }
    const running = cliJson<Task[]>('task', 'list', '--status', 'running')
    expect(running).toEqual([])
  })
})

describe('--schema', () => {
  it('without a postgres:// --db is INVALID_INPUT', () => {
    cli('init')
    const stray = run(['task', 'list', '--db', db, '--schema', 'lockstep'])
    expect(stray.code).toBe(1)
    expect(stray.stderr).toMatch(/^error INVALID_INPUT: --schema goes with a postgres:\/\/ --db/)
  })
})
