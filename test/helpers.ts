import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, expect } from 'vitest'
import { createOrchestrator, type Orchestrator, type OrchestratorOptions } from '../src/index.js'

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** A fresh directory with a lockstep.db path in it, removed after the test. */
export function tempDbPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-test-'))
  // Retried: a file handle closing at that moment (a checkpointer thread, a child process
  // exiting) can leave the directory briefly not empty.
  cleanups.push(() => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 }))
  return join(dir, 'lockstep.db')
}

/** An orchestrator on a fresh file, closed after the test. */
export async function open(options: OrchestratorOptions = {}): Promise<Orchestrator> {
  const orch = await createOrchestrator({ path: tempDbPath(), pollMs: 10, ...options })
  cleanups.push(() => orch.close())
  return orch
}

/** A raw read-only connection, to check what lockstep wrote with plain SQL. */
export function raw(path: string): Database.Database {
  const db = new Database(path, { readonly: true })
  cleanups.push(() => {
    db.close()
  })
  return db
}

/**
 * Row counts of every lockstep table, plus the sums of task and session versions (a step
 * that writes a row bumps its version): "writes nothing" means these do not change.
 */
export function tableCounts(path: string): Record<string, number> {
  const db = new Database(path, { readonly: true })
  try {
    const counts: Record<string, number> = {}
    for (const table of ['tasks', 'task_links', 'runs', 'journal', 'timers', 'sessions']) {
      counts[table] = (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n
    }
    counts.changes = (db.prepare('SELECT COALESCE(SUM(version), 0) AS n FROM tasks').get() as { n: number }).n
    counts.sessionChanges = (db.prepare('SELECT COALESCE(SUM(version), 0) AS n FROM sessions').get() as { n: number }).n
    return counts
  } finally {
    db.close()
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export async function waitFor<T>(probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value) return value
    if (Date.now() > deadline) throw new Error('waitFor: condition not met in time')
    await sleep(10)
  }
}

export interface ProcResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Run a test/procs script in a real OS process; resolves when it exits. */
export function runProc(script: string, args: string[], timeoutMs = 90_000): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'procs', script), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

export interface PoolWorkerProcess {
  child: ChildProcess
  /** Resolves once the worker has finished 50 handlers: it is busy, a kill lands mid-run. */
  progress: Promise<void>
  exit: Promise<number | null>
  output: () => string
}

/**
 * A worker-pool process (test/procs/pool-worker.mjs) on `store` (a SQLite path or a spec of
 * open-store.mjs): concurrency 4, the given lease, and optionally a deadline after which it
 * gives up and exits 0.
 */
export function startPoolWorker(store: string, name: string, leaseMs: number, deadlineMs?: number): PoolWorkerProcess {
  const args = [join(import.meta.dirname, 'procs', 'pool-worker.mjs'), store, name, '4', String(leaseMs)]
  if (deadlineMs !== undefined) args.push(String(deadlineMs))
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let resolveProgress!: () => void
  const progress = new Promise<void>((resolve) => (resolveProgress = resolve))
  child.stdout!.on('data', (d) => {
    out += d
    if (out.includes('progress')) resolveProgress()
  })
  child.stderr!.on('data', (d) => (out += d))
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, progress, exit, output: () => out }
}

/**
 * What test/procs/claim-worker.mjs processes report, checked as seed 003 demands: each
 * exited cleanly, no error of any kind reached a worker, no task was claimed twice, and
 * every completion came from the worker and run that claimed its task. Returns the claims
 * by task id.
 */
export function checkedClaims(results: ProcResult[]): Map<string, { worker: string; run: string }> {
  const events: Array<{ kind: string; task: string; run: string; worker: string }> = []
  for (const result of results) {
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const { worker, events: own } = JSON.parse(result.stdout)
    for (const e of own) events.push({ ...e, worker })
  }
  expect(events.filter((e) => e.kind.startsWith('error'))).toEqual([])
  const claims = new Map<string, { worker: string; run: string }>()
  for (const e of events.filter((x) => x.kind === 'claimed')) {
    expect(claims.has(e.task), `double claim of ${e.task}`).toBe(false)
    claims.set(e.task, { worker: e.worker, run: e.run })
  }
  const completions = events.filter((e) => e.kind === 'completed')
  expect(new Set(completions.map((e) => e.task)).size).toBe(completions.length)
  for (const e of completions) expect(claims.get(e.task)).toEqual({ worker: e.worker, run: e.run })
  return claims
}
