/**
 * The read side on PostgreSQL: rows in the shapes the board and sessions read on SQLite
 * (tasks with their parents, paging in insertion order, runs, sessions), and the journal
 * source that the feed follows: pages never beyond the safe horizon, which waits for a
 * transaction holding a lower seq.
 */
import pg from 'pg'
import { describe, expect, it, type TestContext } from 'vitest'
import { openPool, type PgConnection } from '../../../persistence/postgres/connection.js'
import { appendJournal, type JournalAppend } from '../../../persistence/postgres/journal.js'
import { migrate } from '../../../persistence/postgres/migrations.js'
import { PgJournalSource, PgReadDriver, PgReads } from '../../../persistence/postgres/reads.js'
import { JournalFeed } from '../../../src/journal-feed.js'
import { sleep } from '../../helpers.js'
import { freshSchema, pgUrl } from '../../postgres-server.js'

async function setup(ctx: TestContext): Promise<PgConnection> {
  const schema = await freshSchema(ctx)
  const conn = await openPool(pgUrl, { schema })
  ctx.onTestFinished(() => conn.close())
  await migrate(conn)
  return conn
}

async function insertTask(conn: PgConnection, id: string, extra: { status?: string; assignee?: string } = {}): Promise<void> {
  await conn.pool.query(
    `INSERT INTO ${conn.schema.table('tasks')} (id, machine_id, machine_version, snapshot, version, title, max_attempts, state, status, assignee, created_at, updated_at)
     VALUES ($1, 'lockstep.task', 1, '{}', 1, $1, 3, 'ready', $2, $3, 1000, 1000)`,
    [id, extra.status ?? 'ready', extra.assignee ?? null],
  )
}

const entry = (actorId: string): JournalAppend => ({
  machineId: 'lockstep.task',
  actorId,
  kind: 'created',
  eventType: 'CREATE',
  event: '{}',
  stateBefore: null,
  stateAfter: 'ready',
  runId: null,
  actorVersion: 1,
  at: 0,
})

describe('PostgreSQL reads', () => {
  it('tasks, parents, paging, runs and sessions come back in the shapes SQLite gives', async (ctx) => {
    const conn = await setup(ctx)
    for (const id of ['t_b', 't_a', 't_c']) await insertTask(conn, id, id === 't_c' ? { status: 'todo', assignee: 'bob' } : {})
    await conn.pool.query(`INSERT INTO ${conn.schema.table('task_links')} (parent_id, child_id, created_at) VALUES ('t_b', 't_c', 1), ('t_a', 't_c', 1)`)
    await conn.pool.query(
      `INSERT INTO ${conn.schema.table('runs')} (task_id, id, worker, attempt, started_at, lease_expires_at) VALUES ('t_a', 'r2', 'w', 2, 20, 30), ('t_a', 'r1', 'w', 1, 10, 15)`,
    )
    await conn.pool.query(
      `INSERT INTO ${conn.schema.table('sessions')} (id, machine_id, machine_version, snapshot, version, state, status, created_at, updated_at)
       VALUES ('s1', 'lockstep.session', 1, '{}', 1, 'idle', 'idle', 5, 5), ('s2', 'lockstep.session', 1, '{}', 1, 'exhausted', 'exhausted', 6, 6)`,
    )
    const reads = new PgReadDriver(conn, new PgReads(conn))

    const c = await reads.read((r) => r.task('t_c'))
    expect(c).toMatchObject({ id: 't_c', title: 't_c', status: 'todo', assignee: 'bob', priority: 0, max_attempts: 3, created_at: 1000, parents: '["t_a", "t_b"]' })
    expect(JSON.parse(c!.parents)).toEqual(['t_a', 't_b'])
    expect((await reads.read((r) => r.task('t_a')))!.parents).toBe('[]')
    expect(await reads.read((r) => r.task('nope'))).toBeNull()
    expect(await reads.read((r) => r.taskExists('t_a'))).toBe(true)

    // Insertion order, paged by id; filters.
    const ids = (rows: Array<{ id: string }>) => rows.map((row) => row.id)
    expect(ids(await reads.read((r) => r.tasks({ limit: 10 })))).toEqual(['t_b', 't_a', 't_c'])
    expect(ids(await reads.read((r) => r.tasks({ limit: 10, after: 't_b' })))).toEqual(['t_a', 't_c'])
    expect(ids(await reads.read((r) => r.tasks({ limit: 1, status: 'ready', after: 't_b' })))).toEqual(['t_a'])
    expect(ids(await reads.read((r) => r.tasks({ limit: 10, assignee: 'bob' })))).toEqual(['t_c'])

    expect(await reads.read((r) => r.childIds('t_a'))).toEqual(['t_c'])
    expect((await reads.read((r) => r.runs('t_a'))).map((run) => [run.id, run.attempt, run.started_at, run.ended_at])).toEqual([
      ['r1', 1, 10, null],
      ['r2', 2, 20, null],
    ])
    expect((await reads.read((r) => r.session('s1')))!.status).toBe('idle')
    expect((await reads.read((r) => r.sessions(null, 10))).map((s) => s.id)).toEqual(['s1', 's2'])
    expect((await reads.read((r) => r.sessions('exhausted', 10))).map((s) => s.id)).toEqual(['s2'])
  })

  it('the journal feed on PostgreSQL delivers an entry committed after a higher seq, in seq order', async (ctx) => {
    const conn = await setup(ctx)
    const feed = new JournalFeed(new PgJournalSource(conn), 10, (error) => {
      throw error
    }, false)
    await feed.open()
    const seen: string[] = []
    const stop = feed.subscribe((e) => seen.push(`${e.seq}:${e.actorId}`), {})
    ctx.onTestFinished(() => {
      stop()
      feed.close()
    })

    const holder = new pg.Client({ connectionString: pgUrl })
    await holder.connect()
    ctx.onTestFinished(() => holder.end())
    await holder.query('BEGIN')
    expect(await appendJournal(holder, conn.schema, [entry('first')])).toEqual([1]) // open
    expect(await appendJournal(conn.pool, conn.schema, [entry('second')])).toEqual([2]) // committed
    await sleep(150)
    expect(seen).toEqual([]) // seq 2 waits for seq 1's transaction
    expect(await feed.page({ after: 0, limit: 10 })).toEqual([])

    await holder.query('COMMIT')
    const deadline = Date.now() + 5_000
    while (seen.length < 2 && Date.now() < deadline) await sleep(10)
    expect(seen).toEqual(['1:first', '2:second'])
    expect((await feed.page({ after: 0, limit: 10, actorId: 'second' })).map((e) => e.seq)).toEqual([2])
  })
})
