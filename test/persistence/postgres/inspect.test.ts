/**
 * The inspector on PostgreSQL follows the journal as another host commits it: entries
 * appear in seq order up to the safe horizon, so one committed after a higher seq (its
 * transaction was still open) is streamed in its place, never skipped.
 */
import pg from 'pg'
import { describe, expect, it, vi } from 'vitest'
import { openPool } from '../../../persistence/postgres/connection.js'
import { appendJournal, type JournalAppend } from '../../../persistence/postgres/journal.js'
import { migrate } from '../../../persistence/postgres/migrations.js'
import { createOrchestrator, startInspector } from '../../../src/index.js'
import { sleep } from '../../helpers.js'
import { eventStream, get } from '../../tools/inspector-helpers.js'
import { freshSchema, pgUrl } from '../../postgres-server.js'

const entry = (actorId: string): JournalAppend => ({
  machineId: 'lockstep.task',
  actorId,
  kind: 'created',
  eventType: 'CREATE',
  event: '{"type":"CREATE"}',
  stateBefore: null,
  stateAfter: 'ready',
  runId: null,
  actorVersion: 1,
  at: 1000,
})

describe('the inspector on PostgreSQL', () => {
  it('streams an entry whose transaction commits after a higher seq in its place, in seq order', async (ctx) => {
    const schema = await freshSchema(ctx)
    const conn = await openPool(pgUrl, { schema })
    ctx.onTestFinished(() => conn.close())
    await migrate(conn)
    const i = await startInspector({ url: pgUrl, schema }, { port: 0, pollMs: 20 })
    ctx.onTestFinished(() => i.close())
    const stream = await eventStream(i.url)
    await stream.until(/event: hello/)

    const holder = new pg.Client({ connectionString: pgUrl })
    await holder.connect()
    ctx.onTestFinished(() => holder.end())
    await holder.query('BEGIN')
    const [first] = await appendJournal(holder, conn.schema, [entry('first')]) // still open
    const [second] = await appendJournal(conn.pool, conn.schema, [entry('second')]) // committed
    expect(second).toBeGreaterThan(first!)
    // Several polls later, the committed higher seq still waits for the open lower one.
    await sleep(300)
    expect(stream.entries()).toEqual([])
    expect((await get(i.url, '/api/journal')).body).toEqual({ entries: [], seq: 0 })

    await holder.query('COMMIT')
    await stream.until(/"actorId":"second"/)
    expect(stream.entries().map((e) => [e.seq, e.actorId])).toEqual([
      [first, 'first'],
      [second, 'second'],
    ])
    expect((await get(i.url, '/api/journal')).body.seq).toBe(second)
  })

  it("shows a session against the database's clock, not a host clock minutes off", async (ctx) => {
    const schema = await freshSchema(ctx)
    const orch = await createOrchestrator({ url: pgUrl, schema, runTimers: false })
    ctx.onTestFinished(() => orch.close())
    await orch.sessions.open('s', { models: ['a/one', 'b/two'] })
    const hostNow = Date.now.bind(Date)
    // This host's clock runs 7 minutes ahead from here on, as another host's might.
    const skew = vi.spyOn(Date, 'now').mockImplementation(() => hostNow() + 7 * 60_000)
    ctx.onTestFinished(() => skew.mockRestore())
    const i = await startInspector({ url: pgUrl, schema }, { port: 0 })
    ctx.onTestFinished(() => i.close())
    const session = (await get(i.url, '/api/sessions/s')).body
    expect(Math.abs(session.now - hostNow())).toBeLessThan(30_000)
  })
})
