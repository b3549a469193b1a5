/**
 * Claims on PostgreSQL with real OS processes (test/procs/pg-claim-loop.mjs: the claimNext
 * loop of src/task-board.ts through the kernel, then a fenced complete): competing
 * claimers each lock a different candidate (SKIP LOCKED), so no task is claimed twice,
 * every claim has one run, closed once, and the journal counts match; and a process whose
 * host clock is minutes off writes lease times from the database clock.
 */
import { describe, expect, it, type TestContext } from 'vitest'
import type { PgConnection } from '../../../persistence/postgres/connection.js'
import { openPostgres } from '../../../persistence/postgres/open.js'
import { PgDriver } from '../../../persistence/postgres/store.js'
import { io } from '../../../src/core/io.js'
import { Kernel } from '../../../src/core/kernel.js'
import { taskKind } from '../../../src/core/task-kind.js'
import { TASK_MACHINE_ID } from '../../../machines/task.js'
import { runProc } from '../../helpers.js'
import { adminQuery, freshSchema, pgUrl } from '../../postgres-server.js'

interface LoopReport {
  tasks: string[]
  runs: string[]
  leases: number[]
  driverNow: number
  retries: { conflict: number; connection: number }
  elapsedMs: number
}

/** `count` tasks; with `children`, the last `children` of them each wait for a parent in the middle of the claim order. */
async function board(ctx: TestContext, count: number, children = 0): Promise<{ conn: PgConnection; ids: string[] }> {
  const schema = await freshSchema(ctx)
  const conn = await openPostgres(pgUrl, { schema })
  ctx.onTestFinished(() => conn.close())
  const kernel = new Kernel(await PgDriver.open(conn))
  kernel.register(taskKind())
  const ids = Array.from({ length: count }, (_, i) => `t${String(i).padStart(4, '0')}`)
  for (let from = 0; from < count; from += 100) {
    const batch = ids.slice(from, from + 100)
    await kernel.write(function* (tx) {
      for (const id of batch) {
        const i = ids.indexOf(id)
        const parent = i >= count - children ? ids[i - Math.floor(count / 2)]! : null
        yield* io((s) => s.insertTask({ id, title: id, body: null, assignee: null, tenant: null, priority: 0, payload: null, idempotencyKey: null, maxAttempts: 3 }, tx.now))
        if (parent !== null) yield* io((s) => s.insertLink(parent, id, tx.now))
        yield* kernel.createInTx(tx, TASK_MACHINE_ID, id, { id, maxAttempts: 3, backoffBaseMs: 0, backoffMaxMs: 0 }, { type: 'CREATE', assignee: null })
      }
    })
  }
  return { conn, ids }
}

async function loops(conn: PgConnection, n: number, skews: number[] = []): Promise<LoopReport[]> {
  const startAt = Date.now() + 2_000
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => runProc('pg-claim-loop.mjs', [pgUrl, conn.schema.name, String(startAt), String(skews[i] ?? 0)])),
  )
  return results.map((r) => {
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    return JSON.parse(r.stdout) as LoopReport
  })
}

const q = <R extends Record<string, unknown>>(conn: PgConnection, text: string) => adminQuery<R>(text.replaceAll('$s.', `${conn.schema.ident}.`))
const dbNow = async () => (await adminQuery<{ now: number }>("SELECT floor(date_part('epoch', clock_timestamp()) * 1000)::float8 AS now"))[0]!.now

describe('claims on PostgreSQL from several processes', () => {
  it('4 processes over 500 tasks (100 waiting for a parent): no task claimed twice, one run per claim, every run closed, journal counts match, no claim before the parent was done', async (ctx) => {
    const { conn, ids } = await board(ctx, 500, 100)
    const reports = await loops(conn, 4)
    const claimed = reports.flatMap((r) => r.tasks)
    expect(claimed).toHaveLength(500)
    expect(new Set(claimed).size).toBe(500)
    expect([...claimed].sort()).toEqual(ids)
    // SKIP LOCKED: claimers never even collide on a candidate (no version conflict to rerun).
    expect(reports.map((r) => r.retries.conflict)).toEqual([0, 0, 0, 0])
    expect(reports.filter((r) => r.tasks.length > 0).length).toBeGreaterThan(1)

    const runs = await q<{ task_id: string; id: string; outcome: string | null; ended: boolean }>(
      conn,
      'SELECT task_id, id, outcome, ended_at IS NOT NULL AS ended FROM $s.runs ORDER BY task_id',
    )
    expect(runs).toHaveLength(500)
    expect(new Set(runs.map((r) => r.task_id)).size).toBe(500)
    expect(runs.every((r) => r.ended && r.outcome === 'completed')).toBe(true)
    expect(new Set(runs.map((r) => r.id))).toEqual(new Set(reports.flatMap((r) => r.runs)))
    expect(await q(conn, 'SELECT status, count(*)::int AS n FROM $s.tasks GROUP BY status')).toEqual([{ status: 'done', n: 500 }])
    expect(await q(conn, 'SELECT kind, count(*)::int AS n, count(DISTINCT actor_id)::int AS actors FROM $s.journal GROUP BY kind ORDER BY kind')).toEqual([
      { kind: 'claimed', n: 500, actors: 500 },
      { kind: 'completed', n: 500, actors: 500 },
      { kind: 'created', n: 500, actors: 500 },
      { kind: 'promoted', n: 100, actors: 100 },
    ])
    // The claim gate under concurrency: every child was claimed after its parent completed,
    // on the database clock and in its own journal order (promoted, then claimed).
    const gate = await q<{ child: string; parent_done: number; claimed_at: number; promoted_seq: number; claimed_seq: number }>(
      conn,
      `SELECT l.child_id AS child, pc.at::float8 AS parent_done, cc.at::float8 AS claimed_at, cp.seq::float8 AS promoted_seq, cc.seq::float8 AS claimed_seq
       FROM $s.task_links l
       JOIN $s.journal pc ON pc.actor_id = l.parent_id AND pc.kind = 'completed'
       JOIN $s.journal cc ON cc.actor_id = l.child_id AND cc.kind = 'claimed'
       JOIN $s.journal cp ON cp.actor_id = l.child_id AND cp.kind = 'promoted'`,
    )
    expect(gate).toHaveLength(100)
    for (const row of gate) {
      expect(row.claimed_at, row.child).toBeGreaterThanOrEqual(row.parent_done)
      expect(row.claimed_seq, row.child).toBeGreaterThan(row.promoted_seq)
    }
    expect(await q(conn, 'SELECT count(*)::int AS n FROM $s.timers')).toEqual([{ n: 0 }])
  })

  it('a process whose host clock is 7 minutes ahead writes lease times from the database clock', async (ctx) => {
    const { conn } = await board(ctx, 20)
    const skewMs = 7 * 60_000
    const before = await dbNow()
    const [report] = await loops(conn, 1, [skewMs])
    const after = await dbNow()
    expect(report!.tasks).toHaveLength(20)
    // Each lease was 60 s from the database's now at its claim, not from the skewed host's.
    for (const lease of report!.leases) {
      expect(lease - 60_000).toBeGreaterThanOrEqual(before)
      expect(lease - 60_000).toBeLessThanOrEqual(after)
    }
    const started = await q<{ started: number }>(conn, 'SELECT min(started_at)::float8 AS started FROM $s.runs')
    expect(started[0]!.started).toBeGreaterThanOrEqual(before)
    // Outside a transaction the driver's clock is the database's too (host clock + measured offset).
    expect(report!.driverNow).toBeGreaterThanOrEqual(before)
    expect(report!.driverNow).toBeLessThanOrEqual(after)
  })
})
