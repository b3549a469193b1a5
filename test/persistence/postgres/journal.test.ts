/**
 * The journal's one global order on PostgreSQL: a follower delivers every committed entry
 * exactly once, in increasing seq, and never an uncommitted one, although seqs are handed
 * out before commit and so commit out of order. A naive "seq > cursor" follower, run on the
 * same writes, misses entries: the scenario can fail.
 */
import pg from 'pg'
import { describe, expect, it, type TestContext } from 'vitest'
import { openPool, type PgConnection } from '../../../persistence/postgres/connection.js'
import { appendJournal, JournalFollower, type JournalAppend } from '../../../persistence/postgres/journal.js'
import { migrate } from '../../../persistence/postgres/migrations.js'
import { runProc, sleep } from '../../helpers.js'
import { freshSchema, pgUrl } from '../../postgres-server.js'

async function setup(ctx: TestContext): Promise<PgConnection> {
  const schema = await freshSchema(ctx)
  const conn = await openPool(pgUrl, { schema })
  ctx.onTestFinished(() => conn.close())
  await migrate(conn)
  return conn
}

/** A raw connection whose transaction the test opens and ends by hand. */
async function rawClient(ctx: TestContext): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: pgUrl })
  await client.connect()
  ctx.onTestFinished(() => client.end())
  return client
}

const entry = (actorId: string): JournalAppend => ({
  machineId: 'test',
  actorId,
  kind: 'k',
  eventType: 'E',
  event: '{}',
  stateBefore: null,
  stateAfter: 's',
  runId: null,
  actorVersion: 1,
  at: 0,
})

/** What a follower that trusts seq order to be commit order does. */
class NaiveFollower {
  cursor = 0
  constructor(private readonly conn: PgConnection) {}
  async poll(): Promise<number[]> {
    const rows = (await this.conn.pool.query<{ seq: number }>(`SELECT seq FROM ${this.conn.schema.table('journal')} WHERE seq > $1 ORDER BY seq`, [this.cursor])).rows
    if (rows.length) this.cursor = rows[rows.length - 1]!.seq
    return rows.map((r) => Number(r.seq))
  }
}

const seqs = (entries: { seq: number }[]) => entries.map((e) => e.seq)

describe('journal order on PostgreSQL', () => {
  it('holds back a later seq until an earlier open transaction ends; the naive follower skips the earlier one', async (ctx) => {
    const conn = await setup(ctx)
    const [a, c] = [await rawClient(ctx), await rawClient(ctx)]
    const follower = new JournalFollower(conn)
    const naive = new NaiveFollower(conn)

    await a.query('BEGIN')
    expect(await appendJournal(a, conn.schema, [entry('a')])).toEqual([1]) // seq 1, not committed yet
    expect(await appendJournal(conn.pool, conn.schema, [entry('b')])).toEqual([2]) // seq 2, committed
    expect(await naive.poll()).toEqual([2])
    expect(seqs(await follower.poll())).toEqual([]) // 2 is committed but 1 might still commit
    expect(follower.pending).toBe(true)
    await a.query('COMMIT')
    expect(await naive.poll()).toEqual([]) // seq 1 is lost to the naive follower
    expect(seqs(await follower.poll())).toEqual([1, 2])

    await c.query('BEGIN')
    expect(await appendJournal(c, conn.schema, [entry('c')])).toEqual([3])
    expect(await appendJournal(conn.pool, conn.schema, [entry('d'), entry('e')])).toEqual([4, 5])
    expect(seqs(await follower.poll())).toEqual([])
    await c.query('ROLLBACK')
    expect(seqs(await follower.poll())).toEqual([4, 5]) // 3 is a gap, never delivered
    expect(follower.pending).toBe(false)
    expect(seqs(await follower.poll())).toEqual([])
  })

  it('a horizon waits only for the transactions open when it was taken, not for later ones', async (ctx) => {
    const conn = await setup(ctx)
    const [a, b] = [await rawClient(ctx), await rawClient(ctx)]
    const follower = new JournalFollower(conn)
    await appendJournal(conn.pool, conn.schema, [entry('x')]) // 1
    await a.query('BEGIN')
    await appendJournal(a, conn.schema, [entry('a')]) // 2, open
    expect(seqs(await follower.poll())).toEqual([])
    await b.query('BEGIN')
    await appendJournal(b, conn.schema, [entry('b')]) // 3, open, after the horizon 2 was taken
    await a.query('COMMIT')
    expect(seqs(await follower.poll())).toEqual([1, 2]) // 3 still open: horizon 2 is final, 3 is not
    await b.query('COMMIT')
    expect(seqs(await follower.poll())).toEqual([3])
  })

  it("another schema's open transaction does not hold this schema's follower back (one lock key per schema)", async (ctx) => {
    const conn = await setup(ctx)
    const other = await setup(ctx)
    const a = await rawClient(ctx)
    await a.query('BEGIN')
    await appendJournal(a, other.schema, [entry('elsewhere')])
    await appendJournal(conn.pool, conn.schema, [entry('here')])
    expect(seqs(await new JournalFollower(conn).poll())).toEqual([1])
    expect(seqs(await new JournalFollower(other).poll())).toEqual([])
    await a.query('COMMIT')
  })

  it('pages a backlog in seq order and filters by machine', async (ctx) => {
    const conn = await setup(ctx)
    await appendJournal(conn.pool, conn.schema, Array.from({ length: 7 }, (_, i) => ({ ...entry(`a${i}`), machineId: i % 2 ? 'odd' : 'even' })))
    const paged = new JournalFollower(conn, { pageSize: 3 })
    const got: number[] = []
    for (let i = 0; i < 5; i++) got.push(...seqs(await paged.poll()))
    expect(got).toEqual([1, 2, 3, 4, 5, 6, 7])
    const odd = new JournalFollower(conn, { machineId: 'odd', after: 2 })
    expect(seqs(await odd.poll())).toEqual([4, 6])
    expect(odd.cursor).toBe(7)
  })

  it('with concurrent writer processes (some holding their transaction open, some rolling back) the follower delivers every committed entry once, in order', async (ctx) => {
    const conn = await setup(ctx)
    const follower = new JournalFollower(conn, { pageSize: 50 })
    const naive = new NaiveFollower(conn)
    const delivered: number[] = []
    const naiveDelivered: number[] = []
    let writing = true
    const startAt = Date.now() + 1_500
    const writers = Promise.all([
      runProc('pg-journal-writer.mjs', [pgUrl, conn.schema.name, 'quick', '150', String(startAt)]),
      runProc('pg-journal-writer.mjs', [pgUrl, conn.schema.name, 'quick', '150', String(startAt)]),
      runProc('pg-journal-writer.mjs', [pgUrl, conn.schema.name, 'hold', '40', String(startAt)]),
      runProc('pg-journal-writer.mjs', [pgUrl, conn.schema.name, 'rollback', '60', String(startAt)]),
    ]).finally(() => (writing = false))
    while (writing) {
      delivered.push(...seqs(await follower.poll()))
      naiveDelivered.push(...(await naive.poll()))
      await sleep(2)
    }
    const results = await writers
    for (const result of results) expect(result.code, result.stderr).toBe(0)
    for (let i = 0; i < 100 && (follower.pending || i === 0); i++) delivered.push(...seqs(await follower.poll()))
    naiveDelivered.push(...(await naive.poll()))

    const reports = results.map((r) => JSON.parse(r.stdout) as { committed: number[]; rolledBack: number[] })
    const committed = reports.flatMap((r) => r.committed).sort((x, y) => x - y)
    const rolledBack = new Set(reports.flatMap((r) => r.rolledBack))
    const inTable = (await conn.pool.query<{ seq: number }>(`SELECT seq FROM ${conn.schema.table('journal')} ORDER BY seq`)).rows.map((r) => r.seq)
    expect(rolledBack.size).toBeGreaterThan(0)
    expect(inTable).toEqual(committed)
    // Every committed entry exactly once, in increasing seq, nothing rolled back.
    expect(delivered).toEqual(committed)
    expect(delivered.filter((seq) => rolledBack.has(seq))).toEqual([])
    // The naive follower, polling the same writes, lost entries that committed after a higher seq.
    const missed = committed.filter((seq) => !naiveDelivered.includes(seq))
    expect(missed.length).toBeGreaterThan(0)
    console.log(`journal order: ${committed.length} committed, ${rolledBack.size} rolled back; the naive follower missed ${missed.length}`)
  })
})
