/**
 * `npm start -- --db postgres://... --schema S`: the demo on PostgreSQL, its worker
 * processes opening the same URL and schema. (The demo on a SQLite file: test/cli.test.ts.)
 * Runs dist/: run `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { sleep, waitFor } from '../helpers.js'
import { adminQuery, freshSchema, pgUrl } from '../postgres-server.js'

const DEMO = join(import.meta.dirname, '..', '..', 'dist/src/tools/demo/main.js')

const children: ChildProcess[] = []
const dirs: string[] = []
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** The URL with a password in it: the server trusts local connections, so it is never checked, only never printed. */
function urlWithPassword(): string {
  const url = new URL(pgUrl)
  if (!url.password) url.password = 'not-to-be-printed'
  return url.toString()
}

/** Pids whose parent is `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
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
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z'
  } catch {
    return false
  }
}

function startDemo(args: string[]) {
  // Its own working directory: a stray ./lockstep.db would show that it ignored --db.
  const cwd = mkdtempSync(join(tmpdir(), 'lockstep-demo-'))
  dirs.push(cwd)
  const demo = spawn(process.execPath, [DEMO, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(demo)
  const out = { stdout: '', stderr: '' }
  demo.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out.stdout += chunk))
  demo.stderr!.setEncoding('utf8').on('data', (chunk: string) => (out.stderr += chunk))
  const exited = new Promise<number | null>((resolve) => demo.on('exit', (code) => resolve(code)))
  return { demo, out, exited, cwd }
}

describe('the demo on PostgreSQL', () => {
  it('runs the DAG to the end with worker processes on the same schema, and never prints the password', async (ctx) => {
    const schema = await freshSchema(ctx)
    const url = urlWithPassword()
    const password = new URL(url).password
    const { out, exited } = startDemo(['--db', url, '--schema', schema, '--port', '0', '--exit', '--workers', '3'])
    expect(await Promise.race([exited, sleep(90_000).then(() => 'timeout')]), out.stdout + out.stderr).toBe(0)
    expect(out.stdout).toMatch(/tasks: +8\/8 done/)
    expect(out.stdout).toMatch(/^inspector: http:\/\/127\.0\.0\.1:\d+\//m)
    expect(out.stdout).toContain(`--schema ${schema}`)
    expect(out.stdout + out.stderr).not.toContain(password)

    // The board is in that schema: every task done, by the worker processes.
    const tasks = await adminQuery<{ status: string; tenant: string }>(`SELECT status, tenant FROM "${schema}".tasks`)
    expect(tasks.map((t) => t.status)).toEqual(Array(8).fill('done'))
    expect(new Set(tasks.map((t) => t.tenant)).size).toBe(1)
    const workers = await adminQuery<{ worker: string }>(`SELECT DISTINCT worker FROM "${schema}".runs WHERE outcome = 'completed'`)
    expect(workers.length).toBeGreaterThan(0)
    for (const { worker } of workers) expect(worker).toMatch(/^worker-[123]$/)
    // The simulated models fell back through sessions on the same schema.
    const sessions = await adminQuery<{ model: string }>(`SELECT model FROM "${schema}".sessions`)
    expect(sessions.map((s) => s.model)).toEqual(['sim/gpt', 'sim/gpt'])
  })

  it('a closed stdout (| head) shuts it down cleanly, workers included, claims released', async (ctx) => {
    const schema = await freshSchema(ctx)
    const { demo, out, exited } = startDemo(['--db', pgUrl, '--schema', schema, '--port', '0'])
    // Let claims happen, then go away like `head` does.
    await waitFor(async () => (await adminQuery(`SELECT 1 FROM "${schema}".runs LIMIT 1`).catch(() => [])).length > 0, 60_000)
    const workers = childrenOf(demo.pid!)
    expect(workers).toHaveLength(3)
    demo.stdout!.destroy()
    expect(await Promise.race([exited, sleep(30_000).then(() => 'timeout')]), out.stderr).toBe(0)
    expect(out.stderr).not.toMatch(/EPIPE|Error/)
    // Every worker released its claim as it stopped: nothing is left running.
    expect(await adminQuery(`SELECT id FROM "${schema}".tasks WHERE status = 'running'`)).toEqual([])
    try {
      await waitFor(() => !workers.some(alive), 15_000)
    } finally {
      for (const pid of workers) if (alive(pid)) process.kill(pid, 'SIGKILL')
    }
  })
})
