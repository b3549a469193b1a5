/**
 * A bench worker process (forked by cluster.ts). Runs one job against one board,
 * lockstep or baseline, through the same loop, and reports to the parent.
 * See protocol.ts for the conversation.
 */
import { onScratchBoard, openBoard, type BenchBoard } from './boards.js'
import { runPlainjobAdd, runPlainjobPool } from './plainjob.js'
import { runLatency, runPool, type Lifecycle } from './pool-jobs.js'
import type { BoardSpec, ChildMessage, Job, JobResult, ParentMessage } from './protocol.js'
import { cpuMsSince, now, timed } from './stats.js'

function send(message: ChildMessage): Promise<void> {
  return new Promise((resolve, reject) => process.send!(message, undefined, {}, (error) => (error ? reject(error) : resolve())))
}

function startBarrier(): Promise<void> {
  return new Promise((resolve) => {
    const onMessage = (message: ParentMessage) => {
      if (message.type !== 'go') return
      process.off('message', onMessage)
      resolve()
    }
    process.on('message', onMessage)
  })
}

async function createTasks(board: BenchBoard, count: number): Promise<JobResult> {
  const create: number[] = []
  const cpu = process.cpuUsage()
  const start = now()
  for (let i = 0; i < count; i++) await timed(create, () => board.create(`task ${i}`))
  return { ops: count, elapsedMs: now() - start, cpuMs: cpuMsSince(cpu), latencies: { create } }
}

async function runCycles(board: BenchBoard, worker: string): Promise<JobResult> {
  const claim: number[] = []
  const complete: number[] = []
  const cpu = process.cpuUsage()
  const start = now()
  let cycles = 0
  for (;;) {
    const held = await timed(claim, () => board.claimNext(worker))
    if (held === null) break
    await timed(complete, () => board.complete(held))
    cycles++
  }
  const elapsedMs = now() - start
  const cpuMs = cpuMsSince(cpu)
  // The last call found nothing to claim: a different (cheaper) query, not a claim.
  claim.pop()
  return { ops: cycles, elapsedMs, cpuMs, latencies: { claim, complete } }
}

/** Run the job's code paths on a private scratch board first (boards.ts onScratchBoard). */
async function warmUp(spec: BoardSpec, tasks: number): Promise<void> {
  if (tasks <= 0) return
  await onScratchBoard(spec, async (scratch) => {
    const board = await openBoard(scratch)
    try {
      await createTasks(board, tasks)
      await runCycles(board, 'warmup')
    } finally {
      await board.close()
    }
  })
}

/** Set when this worker disconnects itself (its result sent): any other disconnect means the parent is gone. */
let leaving = false

function leave(): void {
  leaving = true
  process.disconnect()
}

// A parent that dies (Ctrl-C, a crash) must not leave workers running on: on a shared
// PostgreSQL server they would hold connections and keep writing.
process.on('disconnect', () => {
  if (!leaving) process.exit(1)
})

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]!) as Job
  if (job.mode === 'pool' || job.mode === 'latency' || job.mode === 'plainjob-add' || job.mode === 'plainjob-pool') {
    // These pace the barrier themselves (a latency pool must be idle and waiting before `go`;
    // plainjob's jobs open a queue, not a BenchBoard).
    const life: Lifecycle = {
      barrier: async () => {
        const go = startBarrier()
        await send({ type: 'ready' })
        await go
      },
      finished: () => send({ type: 'finished' }),
    }
    const result =
      job.mode === 'pool'
        ? await runPool(job, life)
        : job.mode === 'latency'
          ? await runLatency(job, life)
          : job.mode === 'plainjob-add'
            ? await runPlainjobAdd(job, life)
            : await runPlainjobPool(job, life)
    await send({ type: 'result', result })
    leave()
    return
  }
  await warmUp(job.board, job.warmup)
  const board = await openBoard(job.board)
  const go = startBarrier()
  await send({ type: 'ready' })
  await go
  const result = job.mode === 'create' ? await createTasks(board, job.count) : await runCycles(board, job.worker)
  await send({ type: 'finished' })
  await send({ type: 'result', result })
  await board.close()
  leave()
}

main().catch(async (error: unknown) => {
  await send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) }).catch(() => {})
  process.exit(1)
})
