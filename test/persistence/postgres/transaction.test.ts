/**
 * withTransaction against the real server: lost connections (pg_terminate_backend, a lost
 * COMMIT answer, a server that stops answering), serialization failures and deadlocks are
 * retried whole and apply exactly once, or end in a typed error after the budget; anything
 * else reaches the caller and rolls back.
 */
import { describe, expect, it, type TestContext } from 'vitest'
import {
  databaseNowMs,
  openPool,
  withTransaction,
  type FailureKind,
  type PgConnection,
  type PgOpenOptions,
} from '../../../persistence/postgres/connection.js'
import { migrate } from '../../../persistence/postgres/migrations.js'
import { LockstepError } from '../../../src/errors.js'
import { runProc, sleep } from '../../helpers.js'
import { adminQuery, freshSchema, pgUrl } from '../../postgres-server.js'
import { startProxy, type TcpProxy } from './tcp-proxy.js'

/** A migrated schema with a scratch table `t (id, n)` holding rows 1 and 2. */
async function setup(ctx: TestContext, url = pgUrl, options: PgOpenOptions = {}): Promise<PgConnection> {
  const schema = await freshSchema(ctx)
  const conn = await openPool(url, { ...options, schema })
  ctx.onTestFinished(() => conn.close())
  await migrate(conn)
  await adminQuery(`CREATE TABLE "${schema}".t (id int PRIMARY KEY, n int NOT NULL); INSERT INTO "${schema}".t VALUES (1, 0), (2, 0)`)
  return conn
}

async function proxy(ctx: TestContext): Promise<TcpProxy> {
  const p = await startProxy()
  ctx.onTestFinished(() => p.close())
  return p
}

const rowsOf = async (conn: PgConnection) =>
  (await adminQuery<{ id: number; n: number }>(`SELECT id, n FROM ${conn.schema.table('t')} ORDER BY id`)).map((r) => [r.id, r.n])

describe('withTransaction', () => {
  it('reruns a transaction whose backend was terminated mid-way, on a new connection, and applies it once', async (ctx) => {
    const conn = await setup(ctx)
    const pids: number[] = []
    const retries: FailureKind[] = []
    const result = await withTransaction(
      conn,
      async (tx) => {
        const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
        pids.push(pid)
        await tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = 1`)
        if (tx.attempt === 1) await adminQuery('SELECT pg_terminate_backend($1)', [pid])
        await tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = 2`)
        return tx.attempt
      },
      { onRetry: (info) => void retries.push(info.kind) },
    )
    expect(result).toBe(2)
    expect(retries).toEqual(['connection'])
    expect(pids[1]).not.toBe(pids[0])
    expect(await rowsOf(conn)).toEqual([[1, 1], [2, 1]])
    // The dead client was destroyed, not pooled: every later checkout works.
    for (let i = 0; i < 5; i++) await withTransaction(conn, async (tx) => tx.query('SELECT 1'))
  })

  it('a COMMIT whose answer was lost is confirmed with pg_xact_status, not rerun (exactly once)', async (ctx) => {
    const p = await proxy(ctx)
    const conn = await setup(ctx, p.url)
    const retries: unknown[] = []
    const result = await withTransaction(
      conn,
      async (tx) => {
        await tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = 1`)
        if (tx.attempt === 1) p.loseNextCommitAnswer()
        return 'done'
      },
      { onRetry: (info) => void retries.push(info.error) },
    )
    expect(p.commitAnswersLost).toBe(1)
    expect(result).toBe('done')
    expect(retries).toEqual([])
    expect(await rowsOf(conn)).toEqual([[1, 1], [2, 0]])
  })

  it('a COMMIT that was lost before it was applied is rerun', async (ctx) => {
    const p = await proxy(ctx)
    const conn = await setup(ctx, p.url)
    // A deferred constraint trigger makes COMMIT itself slow; the proxy cuts the connection
    // (and the terminated backend aborts) before the commit record is written.
    await adminQuery(`
      CREATE FUNCTION ${conn.schema.table('slow')}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON ${conn.schema.table('t')} DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW WHEN (NEW.id = 2) EXECUTE FUNCTION ${conn.schema.table('slow')}()`)
    const kinds: FailureKind[] = []
    await withTransaction(
      conn,
      async (tx) => {
        await tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = ${tx.attempt === 1 ? 2 : 1}`)
        if (tx.attempt === 1) p.loseNextCommitAnswer(100)
      },
      { onRetry: (info) => void kinds.push(info.kind) },
    )
    expect(kinds).toEqual(['connection'])
    expect(await rowsOf(conn)).toEqual([[1, 1], [2, 0]])
  })

  it('retries a serialization failure (40001) and the rerun applies once', async (ctx) => {
    const conn = await setup(ctx)
    const errors: string[] = []
    await withTransaction(
      conn,
      async (tx) => {
        await tx.query(`SELECT n FROM ${tx.schema.table('t')} WHERE id = 1`) // the snapshot is taken here
        if (tx.attempt === 1) await adminQuery(`UPDATE ${tx.schema.table('t')} SET n = n + 10 WHERE id = 1`)
        await tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = 1`)
      },
      { isolation: 'repeatable read', onRetry: (info) => void errors.push((info.error as { code: string }).code) },
    )
    expect(errors).toEqual(['40001'])
    expect(await rowsOf(conn)).toEqual([[1, 11], [2, 0]])
  })

  it('retries the victim of a deadlock (40P01); both transactions apply once', async (ctx) => {
    const conn = await setup(ctx)
    let arrived = 0
    let release!: () => void
    const bothHoldOne = new Promise<void>((resolve) => (release = resolve))
    const errors: string[] = []
    const crosswise = (first: number, second: number) =>
      withTransaction(
        conn,
        async (tx) => {
          await tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = ${first}`)
          if (tx.attempt === 1) {
            if (++arrived === 2) release()
            await bothHoldOne
          }
          await tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = ${second}`)
        },
        { onRetry: (info) => void errors.push((info.error as { code: string }).code) },
      )
    await Promise.all([crosswise(1, 2), crosswise(2, 1)])
    expect(errors).toEqual(['40P01'])
    expect(await rowsOf(conn)).toEqual([[1, 2], [2, 2]])
  })

  it('conflicts that never stop end in STORE_BUSY after the budget, with nothing written', async (ctx) => {
    const conn = await setup(ctx)
    const error = await withTransaction(
      conn,
      async (tx) => {
        await tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = 1`)
        await tx.query(`DO $$ BEGIN RAISE EXCEPTION 'always' USING ERRCODE = 'serialization_failure'; END $$`)
      },
      { retryBudgetMs: 300 },
    ).catch((e: unknown) => e)
    expect((error as LockstepError).code).toBe('STORE_BUSY')
    expect(await rowsOf(conn)).toEqual([[1, 0], [2, 0]])
  })

  it('a server that stops answering is STORE_UNAVAILABLE after the budget, never a hang; it recovers when the server is back', async (ctx) => {
    const p = await proxy(ctx)
    const conn = await setup(ctx, p.url, { retryBudgetMs: 1_500, pool: { connectionTimeoutMillis: 300, query_timeout: 500 } })
    await withTransaction(conn, async (tx) => tx.query('SELECT 1')) // a pooled idle client exists
    p.blackhole()
    const started = performance.now()
    const error = await withTransaction(conn, async (tx) => tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = 1`)).catch((e: unknown) => e)
    expect((error as LockstepError).code).toBe('STORE_UNAVAILABLE')
    expect(performance.now() - started).toBeLessThan(20_000) // bounded (the budget is 1.5 s), not a speed claim
    p.resume()
    await withTransaction(conn, async (tx) => tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = 1`))
    expect(await rowsOf(conn)).toEqual([[1, 1], [2, 0]])
  })

  it('any other error rolls back and reaches the caller as is, after one attempt', async (ctx) => {
    const conn = await setup(ctx)
    let attempts = 0
    const error = await withTransaction(conn, async (tx) => {
      attempts++
      await tx.query(`UPDATE ${tx.schema.table('t')} SET n = n + 1 WHERE id = 1`)
      throw new Error('boom')
    }).catch((e: unknown) => e)
    expect((error as Error).message).toBe('boom')
    expect(attempts).toBe(1)
    const sqlError = await withTransaction(conn, async (tx) => tx.query('SELECT * FROM no_such_table')).catch((e: unknown) => e)
    expect((sqlError as { code: string }).code).toBe('42P01')
    expect(await rowsOf(conn)).toEqual([[1, 0], [2, 0]])
  })

  it("reads the database's clock", async (ctx) => {
    const conn = await setup(ctx)
    const [server] = await adminQuery<{ ms: string }>('SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::int8 AS ms')
    const now = await databaseNowMs(conn.pool)
    expect(typeof now).toBe('number')
    expect(Math.abs(now - Number(server!.ms))).toBeLessThan(5_000)
    const inTx = await withTransaction(conn, async (tx) => tx.now)
    expect(inTx).toBeGreaterThanOrEqual(now)
  })

  it('under load from writer processes whose backends are terminated at random, nothing is lost and nothing is applied twice', async (ctx) => {
    const conn = await setup(ctx)
    const s = conn.schema
    await adminQuery(`CREATE TABLE ${s.table('ledger')} (proc int NOT NULL, i int NOT NULL); CREATE TABLE ${s.table('total')} (n int NOT NULL); INSERT INTO ${s.table('total')} VALUES (0)`)
    const [procs, each] = [3, 150]
    let writing = true
    const startAt = Date.now() + 1_500
    const writers = Promise.all(
      Array.from({ length: procs }, () => runProc('pg-ledger-writer.mjs', [pgUrl, s.name, String(each), String(startAt)])),
    ).finally(() => (writing = false))
    await sleep(startAt - Date.now())
    let terminated = 0
    while (writing) {
      const killed = await adminQuery<{ ok: boolean }>(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 ORDER BY random() LIMIT 1`,
        [`lockstep-load-${s.name}`],
      )
      terminated += killed.filter((k) => k.ok).length
      await sleep(15 + Math.random() * 30)
    }
    const results = await writers
    for (const result of results) expect(result.code, result.stderr).toBe(0)
    const reruns = results.reduce((sum, r) => sum + (JSON.parse(r.stdout) as { reruns: number }).reruns, 0)
    const [ledger] = await adminQuery<{ rows: string; distinct_rows: string }>(
      `SELECT count(*) AS rows, count(DISTINCT (proc, i)) AS distinct_rows FROM ${s.table('ledger')}`,
    )
    const [total] = await adminQuery<{ n: number }>(`SELECT n FROM ${s.table('total')}`)
    const [journal] = await adminQuery<{ n: string }>(`SELECT count(*) AS n FROM ${s.table('journal')}`)
    expect(terminated).toBeGreaterThan(0)
    expect(reruns).toBeGreaterThan(0)
    expect(Number(ledger!.rows)).toBe(procs * each)
    expect(Number(ledger!.distinct_rows)).toBe(procs * each)
    expect(total!.n).toBe(procs * each)
    expect(Number(journal!.n)).toBe(procs * each)
    console.log(`terminate under load: ${terminated} backends terminated, ${reruns} reruns, ${procs * each} transactions applied once each`)
  })
})
