/**
 * The bench's PostgreSQL section, without running it: the command line refuses what it
 * cannot run (one line, exit 2, nothing written), and the hand-written node-postgres
 * baseline keeps the guarantees it is measured for (a ready task goes to one claimer, a
 * completion only counts from the run that holds the task). The bench checks its own
 * figures' row counts every run; these are the cases a run never exercises.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { PgBaselineBoard } from '../../bench/baseline-postgres.js'
import { adminQuery, freshSchema, needPostgres, pgUrl } from '../postgres-server.js'

const BENCH = resolve('dist/bench/main.js')

/** Run the built bench in an empty directory (it writes .bench/ under its cwd). */
function bench(args: string[]): { code: number | null; stdout: string; stderr: string; wroteResults: boolean } {
  const cwd = mkdtempSync(join(tmpdir(), 'lockstep-bench-args-'))
  try {
    const r = spawnSync(process.execPath, [BENCH, ...args], { cwd, encoding: 'utf8', timeout: 30_000 })
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, wroteResults: existsSync(join(cwd, '.bench')) }
  } finally {
    rmSync(cwd, { recursive: true, force: true })
  }
}

describe('npm run bench -- --db', () => {
  it.each([
    [['--db', 'lockstep.db'], /^bench: --db: url must be a postgres:\/\/ or postgresql:\/\/ URL .*without --db the bench runs on SQLite\)$/],
    [['--db', 'http://127.0.0.1:5432/test'], /^bench: --db: url must be a postgres:\/\/ or postgresql:\/\/ URL/],
    [['--db'], /^bench: Option '--db <value>' argument missing/],
    [['--db', pgUrl, '--full'], /^bench: --full runs the SQLite scenarios with synchronous=FULL: it does not apply with --db$/],
    [['--db', 'postgres://lockstep:secret@127.0.0.1:1/none'], /^bench: --db: no PostgreSQL server answers at postgres:\/\/lockstep:\*\*\*@127\.0\.0\.1:1\/none: /],
  ])('%j is refused in one line, exit 2, nothing run or written', (args, message) => {
    const r = bench(args)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr.trim()).toMatch(message)
    expect(r.stderr).not.toContain('secret')
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.wroteResults).toBe(false)
  })
})

describe('the hand-written node-postgres baseline', () => {
  async function board(ctx: Parameters<typeof freshSchema>[0]) {
    const schema = await freshSchema(ctx)
    const db = await PgBaselineBoard.open({ store: 'postgres', impl: 'baseline', url: pgUrl, schema })
    ctx.onTestFinished(() => db.close())
    const count = async (sql: string) => Number((await adminQuery<{ n: string }>(sql.replaceAll('$s', `"${schema}"`)))[0]!.n)
    return { db, schema, count }
  }

  it('gives each ready task to one claimer, with a run and an event per claim', async (ctx) => {
    await needPostgres(ctx)
    const { db, count } = await board(ctx)
    for (let i = 0; i < 3; i++) await db.create(`task ${i}`)
    // Eight claimers at once on three tasks: SKIP LOCKED hands out each task once; the rest find none.
    const claims = await Promise.all(Array.from({ length: 8 }, (_, i) => db.claimNextTitled(`w${i}`)))
    const won = claims.filter((c) => c !== null)
    expect(won.map((c) => c.title).sort()).toEqual(['task 0', 'task 1', 'task 2'])
    expect(new Set(won.map((c) => c.taskId)).size).toBe(3)
    expect(await count(`SELECT count(*) AS n FROM $s.runs`)).toBe(3)
    expect(await count(`SELECT count(*) AS n FROM $s.events WHERE kind = 'claimed'`)).toBe(3)
    expect(await db.claimNext('late')).toBeNull()
    expect(await db.hasReady()).toBe(false)
  })

  it('refuses a completion from a run that does not hold the task, and writes nothing for it', async (ctx) => {
    await needPostgres(ctx)
    const { db, count } = await board(ctx)
    await db.create('only')
    const claim = (await db.claimNext('w1'))!
    await expect(db.complete({ taskId: claim.taskId, runId: 'someone-else' })).rejects.toThrow(/lease lost/)
    expect(await count(`SELECT count(*) AS n FROM $s.tasks WHERE status = 'running'`)).toBe(1)
    expect(await count(`SELECT count(*) AS n FROM $s.events WHERE kind = 'completed'`)).toBe(0)
    expect(await count(`SELECT count(*) AS n FROM $s.runs WHERE ended_at IS NOT NULL`)).toBe(0)
    await db.complete(claim)
    // Completing twice is refused the same way: the fence also checks the status.
    await expect(db.complete(claim)).rejects.toThrow(/lease lost/)
    expect(await count(`SELECT count(*) AS n FROM $s.tasks WHERE status = 'done'`)).toBe(1)
    expect(await count(`SELECT count(*) AS n FROM $s.events WHERE kind = 'completed'`)).toBe(1)
  })
})
