/**
 * The PostgreSQL store under the storage-free step: the kernel scenario of
 * test/core/kernel.test.ts on a real schema gives the same journal as the in-memory store;
 * the version check makes a step that lost a race rerun and see the new version (no lost
 * update); two opposite links committed at the same moment never both succeed.
 */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it, type TestContext } from 'vitest'
import { TASK_MACHINE_ID } from '../../../machines/task.js'
import type { PgConnection } from '../../../persistence/postgres/connection.js'
import { openPostgres } from '../../../persistence/postgres/open.js'
import { PgDriver } from '../../../persistence/postgres/store.js'
import { io } from '../../../src/core/io.js'
import { Kernel, type ActorKind } from '../../../src/core/kernel.js'
import { taskKind } from '../../../src/core/task-kind.js'
import { DependencyCycleError } from '../../../src/errors.js'
import { sleep } from '../../helpers.js'
import { adminQuery, freshSchema, pgUrl } from '../../postgres-server.js'
import { createTask, kernelScenario, SCENARIO_JOURNAL, sendTask } from '../../core/kernel-scenario.js'
import { MemoryStore, memoryDriver } from '../../core/memory-store.js'
import type { ReadyFilter } from '../../../persistence/store.js'

async function open(ctx: TestContext, schema?: string): Promise<PgConnection> {
  const conn = await openPostgres(pgUrl, { schema: schema ?? (await freshSchema(ctx)), pool: { max: 4 } })
  ctx.onTestFinished(() => conn.close())
  return conn
}

async function kernelOn(conn: PgConnection, kind: ActorKind = taskKind()) {
  const driver = await PgDriver.open(conn)
  const kernel = new Kernel(driver)
  kernel.register(kind)
  return { driver, kernel }
}

const q = <R extends Record<string, unknown>>(conn: PgConnection, text: string, values?: unknown[]) =>
  adminQuery<R>(text.replaceAll('$s.', `${conn.schema.ident}.`), values)

describe('PgStore under the kernel', () => {
  it('runs the kernel scenario with the same journal as the in-memory store', async (ctx) => {
    const conn = await open(ctx)
    const { kernel } = await kernelOn(conn)
    const journal = await kernelScenario({
      kernel,
      status: async (id) => (await q<{ status: string }>(conn, 'SELECT status FROM $s.tasks WHERE id = $1', [id]))[0]!.status,
      runs: () =>
        q(conn, 'SELECT task_id AS "taskId", id AS "runId", ended_at::float8 AS "endedAt", outcome FROM $s.runs ORDER BY started_at, attempt') as never,
      timers: () => q(conn, 'SELECT actor_id, due_at::float8 AS due_at FROM $s.timers ORDER BY due_at') as never,
      journal: () =>
        q(
          conn,
          `SELECT seq::float8 AS seq, actor_id AS "actorId", kind, state_before AS "stateBefore", state_after AS "stateAfter",
                  run_id AS "runId", at::float8 AS at FROM $s.journal ORDER BY seq`,
        ) as never,
      advance: (ms) => sleep(ms),
    })
    expect(journal.map(([, actor, kind]) => `${actor}:${kind}`)).toEqual(SCENARIO_JOURNAL)
    expect(journal.map(([seq]) => seq)).toEqual([1, 2, 3, 4, 5, 6, 7])
  })

  it('two writers of one actor serialize on its row: the second waits for the first and sees its version (no lost update)', async (ctx) => {
    const conn = await open(ctx)
    const other = await open(ctx, conn.schema.name)
    // Writer A pauses after loading the row (and so holding its lock), on its first attempt,
    // until the test lets it go; writer B (another pool and kernel, as another process)
    // steps the same actor meanwhile.
    let releaseA!: () => void
    const gate = new Promise<void>((resolve) => (releaseA = resolve))
    let aRead!: () => void
    const aHasRead = new Promise<void>((resolve) => (aRead = resolve))
    let attempts = 0
    const base = taskKind()
    const paused: ActorKind = {
      ...base,
      *facts(tx, actorId, event) {
        const facts = yield* base.facts!(tx, actorId, event)
        if (event.type === 'HEARTBEAT' && ++attempts === 1) {
          aRead()
          yield* io(() => gate)
        }
        return facts
      },
    }
    const a = await kernelOn(conn, paused)
    const b = await kernelOn(other)
    await createTask(b.kernel, 't')
    await sendTask(b.kernel, 't', { type: 'CLAIM', runId: 'r1', token: 'k1', worker: 'w', leaseMs: 60_000 })
    const v0 = (await q<{ version: number }>(conn, 'SELECT version::float8 AS version FROM $s.tasks'))[0]!.version

    const stepA = sendTask(a.kernel, 't', { type: 'HEARTBEAT', runId: 'r1', token: 'k1', leaseMs: 30_000 })
    await aHasRead
    let bDone = false
    const stepB = sendTask(b.kernel, 't', { type: 'HEARTBEAT', runId: 'r1', token: 'k1', leaseMs: 20_000 }).finally(() => (bDone = true))
    await sleep(300)
    expect(bDone).toBe(false) // B waits for A's row lock
    releaseA()
    const [resultA, resultB] = await Promise.all([stepA, stepB])
    expect(resultA!.version).toBe(v0 + 1)
    expect(resultB!.version).toBe(v0 + 2)
    // Nobody lost a race: the row lock made B read A's committed version.
    expect(attempts).toBe(1)
    expect(a.driver.retries.conflict + b.driver.retries.conflict).toBe(0)
    const beats = await q<{ v: number }>(conn, "SELECT actor_version::float8 AS v FROM $s.journal WHERE kind = 'heartbeat' ORDER BY seq")
    expect(beats.map((r) => r.v)).toEqual([v0 + 1, v0 + 2])
    const version = (await q<{ version: number }>(conn, 'SELECT version::float8 AS version FROM $s.tasks'))[0]!.version
    expect(version).toBe(v0 + 2)
    // The lease timer is the last committed heartbeat's (B's), as the row says.
    const lease = await q<{ due: number; lease: number }>(
      conn,
      "SELECT t.due_at::float8 AS due, k.lease_expires_at::float8 AS lease FROM $s.timers t JOIN $s.tasks k ON k.id = t.actor_id WHERE t.timer_id = 'lease'",
    )
    expect(lease).toHaveLength(1)
    expect(lease[0]!.due).toBe(lease[0]!.lease)
    expect(lease[0]!.due - (await q<{ at: number }>(conn, "SELECT max(at)::float8 AS at FROM $s.journal"))[0]!.at).toBe(20_000)
  })

  it("a step's timer changes in one statement end as applying them in action order would", async (ctx) => {
    const conn = await open(ctx)
    const { kernel } = await kernelOn(conn)
    await createTask(kernel, 't')
    const timer = (timer_id: string, due_at: number) => ({ upsert: { actor_id: 't', timer_id, machine_id: TASK_MACHINE_ID, due_at, event: '{"type":"X"}' } })
    const cancel = (timerId: string) => ({ cancel: { actorId: 't', timerId } })
    const row = (await q<{ version: number; snapshot: string; state: string }>(conn, 'SELECT version::float8 AS version, snapshot, state FROM $s.tasks'))[0]!
    await kernel.write(function* () {
      const kind = taskKind()
      const write = { machineId: TASK_MACHINE_ID, machineVersion: kind.machineVersion, state: row.state, snapshot: row.snapshot, updatedAt: 1, projection: ['ready', 0, null, null, null, null, null, null, null, null] }
      const changes = [cancel('x'), timer('x', 5), timer('y', 1), cancel('y'), timer('y', 2), timer('z', 3), cancel('z'), cancel('w')]
      return yield* io((s) => s.saveStep(kind, 't', row.version, write, [], changes))
    })
    expect(await q(conn, 'SELECT timer_id, due_at::float8 AS due FROM $s.timers ORDER BY timer_id')).toEqual([
      { timer_id: 'x', due: 5 },
      { timer_id: 'y', due: 2 },
    ])
  })

  it('two opposite links committed at the same moment never both succeed (the graph lock)', async (ctx) => {
    const conn = await open(ctx)
    const other = await open(ctx, conn.schema.name)
    const a = await kernelOn(conn)
    const b = await kernelOn(other)
    // The link body of src/task-board.ts, with a pause before commit on request.
    const link = (kernel: Kernel, parent: string, child: string, holdMs: number) =>
      kernel.write(function* (tx) {
        yield* io((s) => s.lockGraph())
        if (yield* io((s) => s.linkExists(parent, child))) return 'exists'
        if (parent === child || (yield* io((s) => s.isAncestor(child, parent)))) throw new DependencyCycleError(parent, child)
        const step = yield* kernel.stepInTx(tx, TASK_MACHINE_ID, child, { type: 'LINK', parentId: parent })
        if (!step?.accepted) throw new Error(`LINK ${parent} -> ${child} refused`)
        if (holdMs > 0) yield* io(() => sleep(holdMs))
        return 'linked'
      })
    for (let i = 0; i < 3; i++) {
      const [x, y] = [`x${i}`, `y${i}`]
      await createTask(a.kernel, x)
      await createTask(a.kernel, y)
      // A checks and links x -> y, then holds its transaction open; B checks y -> x meanwhile.
      const first = link(a.kernel, x, y, 300)
      await sleep(100)
      const second = link(b.kernel, y, x, 0)
      const outcomes = await Promise.allSettled([first, second])
      expect(outcomes[0]).toEqual({ status: 'fulfilled', value: 'linked' })
      expect(outcomes[1].status).toBe('rejected')
      expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(DependencyCycleError)
    }
    const links = await q(conn, 'SELECT parent_id, child_id FROM $s.task_links ORDER BY parent_id')
    expect(links).toEqual([0, 1, 2].map((i) => ({ parent_id: `x${i}`, child_id: `y${i}` })))
  })

  it('readyCandidates admits exactly what the in-memory store does, in claim order, for every filter', async (ctx) => {
    const conn = await open(ctx)
    const { kernel } = await kernelOn(conn)
    const memory = new Kernel(memoryDriver(new MemoryStore(), { async: false, now: () => 1_000 }))
    memory.register(taskKind())
    let i = 0
    const tasks: Array<{ id: string; assignee: string | null; tenant: string | null; priority: number }> = []
    for (const assignee of [null, 'a', 'b']) {
      for (const tenant of [null, 'n', 'm']) {
        for (const priority of [0, 5, -1]) tasks.push({ id: `t${String(i++).padStart(2, '0')}`, assignee, tenant, priority })
      }
    }
    // Shuffled so that insertion order differs from id order; one transaction, so ties on created_at.
    tasks.sort((x, y) => ((x.id.charCodeAt(2) * 7) % 11) - ((y.id.charCodeAt(2) * 7) % 11))
    const create = (k: Kernel) =>
      k.write(function* (tx) {
        for (const t of tasks) {
          yield* io((s) => s.insertTask({ ...t, title: t.id, body: null, payload: null, idempotencyKey: null, maxAttempts: 1 }, tx.now))
          yield* k.createInTx(tx, TASK_MACHINE_ID, t.id, { id: t.id, maxAttempts: 1, backoffBaseMs: 0, backoffMaxMs: 0 }, { type: 'CREATE', assignee: t.assignee })
        }
      })
    await create(kernel)
    await create(memory)
    const filters: ReadyFilter[] = [{}, { assignee: 'a' }, { anyAssignee: true }, { tenant: 'n' }, { tenant: 'n', assignee: 'b' }, { tenant: 'm', anyAssignee: true }, { assignee: 'nobody' }]
    for (const filter of filters) {
      const read = (k: Kernel) => k.write(() => io((s) => s.readyCandidates(filter, 100)))
      const expected = await read(memory)
      expect(expected.length, JSON.stringify(filter)).toBeGreaterThanOrEqual(filter.assignee === 'nobody' ? 0 : 3)
      expect(await read(kernel), JSON.stringify(filter)).toEqual(expected)
    }
  })

  it('two creates racing with one idempotency key: the loser of the unique index reruns and returns the winner', async (ctx) => {
    const conn = await open(ctx)
    const other = await open(ctx, conn.schema.name)
    const a = await kernelOn(conn)
    const b = await kernelOn(other)
    // The create body of src/task-board.ts (key check, insert, creating step), with a pause before commit on request.
    const create = (kernel: Kernel, id: string, holdMs: number) =>
      kernel.write(function* (tx) {
        const existing = yield* io((s) => s.taskByIdempotencyKey('k'))
        if (existing) return existing
        yield* io((s) => s.insertTask({ id, title: id, body: null, assignee: null, tenant: null, priority: 0, payload: null, idempotencyKey: 'k', maxAttempts: 1 }, tx.now))
        yield* kernel.createInTx(tx, TASK_MACHINE_ID, id, { id, maxAttempts: 1, backoffBaseMs: 0, backoffMaxMs: 0 }, { type: 'CREATE', assignee: null })
        if (holdMs > 0) yield* io(() => sleep(holdMs))
        return id
      })
    const first = create(a.kernel, 'ta', 300)
    await sleep(100)
    const second = create(b.kernel, 'tb', 0)
    expect(await Promise.all([first, second])).toEqual(['ta', 'ta'])
    expect(b.driver.retries.conflict).toBeGreaterThanOrEqual(1)
    expect(await q(conn, 'SELECT id FROM $s.tasks')).toEqual([{ id: 'ta' }])
    expect(await q(conn, "SELECT actor_id FROM $s.journal WHERE kind = 'created'")).toEqual([{ actor_id: 'ta' }])
  })

  it('importing the store and its driver does not load pg (SQLite-only users never pay for it)', () => {
    const store = join(import.meta.dirname, '../../../dist/persistence/postgres/store.js')
    const script = `
      import { createRequire } from 'node:module'
      await import(${JSON.stringify(store)})
      process.stdout.write(String(Object.keys(createRequire(import.meta.url).cache).some((k) => /node_modules[\\/]pg[\\/]/.test(k))))`
    expect(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })).toBe('false')
  })
})
