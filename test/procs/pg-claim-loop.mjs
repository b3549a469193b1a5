// A worker process on a PostgreSQL board: claims the next ready task through the kernel
// (the claimNext loop of src/task-board.ts: one candidate per query, a refused candidate
// tried again by the next query) and completes it, until nothing is ready. Reports the
// task ids it claimed, its run ids, the transactions withTransaction reran by cause, and
// how long the loop took.
// usage: node pg-claim-loop.mjs <url> <schema> <startAtMs> [clockSkewMs]
//   clockSkewMs: this process's Date.now() runs that far off (a host with a wrong clock).
import { randomUUID } from 'node:crypto'
import { openPostgres } from '../../dist/persistence/postgres/open.js'
import { PgDriver } from '../../dist/persistence/postgres/store.js'
import { io } from '../../dist/src/core/io.js'
import { Kernel } from '../../dist/src/core/kernel.js'
import { taskKind } from '../../dist/src/core/task-kind.js'
import { TASK_MACHINE_ID } from '../../dist/machines/task.js'

const [url, schema, startAt, skew = '0'] = process.argv.slice(2)
if (Number(skew) !== 0) {
  const realNow = Date.now.bind(Date)
  Date.now = () => realNow() + Number(skew)
}
const conn = await openPostgres(url, { schema, retryBudgetMs: 60_000, pool: { max: 2 } })
const driver = await PgDriver.open(conn)
const kernel = new Kernel(driver)
kernel.register(taskKind())
const worker = `w${process.pid}`
const leaseMs = 60_000

// The body of TaskBoard.claimNext / tryClaim (an unassigned claimant, no idempotency key).
function* claimNext(tx) {
  for (;;) {
    const [id] = yield* io((s) => s.readyCandidates({}, 1))
    if (id === undefined) return null
    const runId = `r${randomUUID()}`
    const token = randomUUID()
    const step = yield* kernel.stepInTx(tx, TASK_MACHINE_ID, id, { type: 'CLAIM', runId, token, worker, leaseMs, claimKey: null, assignee: null })
    if (!step) throw new Error(`task ${id} not found`)
    if (!step.accepted || step.snapshot.value !== 'running') continue
    return { taskId: id, runId, token, leaseExpiresAt: step.snapshot.context.leaseExpiresAt }
  }
}

const wait = Number(startAt) - Date.now() + Number(skew)
if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
const claims = []
const started = performance.now()
for (;;) {
  const claim = await kernel.write(claimNext)
  if (claim === null) break
  claims.push(claim)
  const done = await kernel.write((tx) => kernel.stepInTx(tx, TASK_MACHINE_ID, claim.taskId, { type: 'COMPLETE', runId: claim.runId, token: claim.token, result: { by: worker } }))
  if (!done?.accepted) throw new Error(`completing ${claim.taskId} was refused`)
}
const elapsedMs = performance.now() - started
const driverNow = driver.now()
await conn.close()
process.stdout.write(
  JSON.stringify({
    tasks: claims.map((c) => c.taskId),
    runs: claims.map((c) => c.runId),
    leases: claims.map((c) => c.leaseExpiresAt),
    hostNow: Date.now(),
    driverNow,
    retries: driver.retries,
    elapsedMs,
  }) + '\n',
)
