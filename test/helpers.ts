import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach } from 'vitest'
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
