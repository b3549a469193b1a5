/**
 * Parent side of the worker protocol (protocol.ts): fork one OS process per job, hold
 * them all at a start barrier, release them together and time the wall clock from
 * `go` to the last `finished`. Timing from the parent's single clock avoids comparing
 * performance.now() across processes (each has its own time origin).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ChildMessage, Job, JobResult } from './protocol.js'
import { now } from './stats.js'

const WORKER_SCRIPT = fileURLToPath(new URL('./worker.js', import.meta.url))

export interface ClusterOptions {
  /** Node flags for the workers (e.g. --cpu-prof). */
  execArgv?: string[]
  /** Give up (and kill the workers) if a phase takes longer than this. */
  timeoutMs: number
}

export interface ClusterRun {
  /** From releasing the barrier to the last process finishing its last operation. */
  wallMs: number
  /** Date.now() when the barrier was released: for scenarios that time the run from the file's own timestamps. */
  goEpochMs: number
  results: JobResult[]
}

type MessageType = ChildMessage['type']

/** One forked worker; each message type arrives at most once, so waiting is by type. */
class WorkerProcess {
  readonly child: ChildProcess
  readonly exited: Promise<void>
  private readonly arrived = new Map<MessageType, ChildMessage>()
  private readonly waiters = new Map<MessageType, { resolve(m: ChildMessage): void; reject(e: Error): void }>()
  private failure: Error | null = null

  constructor(
    private readonly name: string,
    job: Job,
    execArgv: string[],
  ) {
    this.child = fork(WORKER_SCRIPT, [JSON.stringify(job)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.child.on('message', (message: ChildMessage) => this.receive(message))
    this.child.on('error', (error) => this.fail(error))
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        if (code !== 0) this.fail(new Error(`${name} exited with ${signal ?? `code ${code}`}`))
        resolve()
      })
    })
  }

  next(type: MessageType): Promise<ChildMessage> {
    const message = this.arrived.get(type)
    if (message) return Promise.resolve(message)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => this.waiters.set(type, { resolve, reject }))
  }

  /** A worker that reported its result and then crashed (e.g. while closing) still fails the run. */
  throwIfFailed(): void {
    if (this.failure) throw this.failure
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
  }

  private receive(message: ChildMessage): void {
    if (message.type === 'error') return this.fail(new Error(`${this.name} failed:\n${message.message}`))
    this.arrived.set(message.type, message)
    this.waiters.get(message.type)?.resolve(message)
    this.waiters.delete(message.type)
  }

  private fail(error: Error): void {
    this.failure ??= error
    for (const waiter of this.waiters.values()) waiter.reject(this.failure)
    this.waiters.clear()
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`bench: ${what} took longer than ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Run `jobs` in parallel, one process each, released together from a start barrier. */
export async function runJobs(jobs: Job[], options: ClusterOptions): Promise<ClusterRun> {
  const workers = jobs.map((job, i) => new WorkerProcess(`worker ${i} (${'board' in job ? job.board.impl : 'plainjob'} ${job.mode})`, job, options.execArgv ?? []))
  const all = (type: MessageType) =>
    withTimeout(Promise.all(workers.map((w) => w.next(type))), options.timeoutMs, `waiting for '${type}'`)
  try {
    await all('ready')
    const goEpochMs = Date.now()
    const start = now()
    for (const w of workers) w.child.send({ type: 'go' })
    await all('finished')
    const wallMs = now() - start
    const results = (await all('result')).map((m) => (m as Extract<ChildMessage, { type: 'result' }>).result)
    await withTimeout(Promise.all(workers.map((w) => w.exited)), options.timeoutMs, 'workers to exit')
    for (const w of workers) w.throwIfFailed()
    return { wallMs, goEpochMs, results }
  } finally {
    for (const w of workers) w.kill()
  }
}
