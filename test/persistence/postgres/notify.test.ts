/**
 * Wake-ups over LISTEN/NOTIFY: a notification sent from another connection arrives with
 * its ids; the listener reconnects after its backend is terminated and hears again; many
 * ids stay under the payload cap; a consumer's sleep ends at the poll interval without any
 * notification (the polling fallback).
 */
import { describe, expect, it, type TestContext } from 'vitest'
import { openPool, type PgConnection } from '../../../persistence/postgres/connection.js'
import { migrate } from '../../../persistence/postgres/migrations.js'
import { channelOf, notifyWake, PAYLOAD_LIMIT_BYTES, WakeListener, wakePayloads, type Wake } from '../../../persistence/postgres/notify.js'
import { waitFor } from '../../helpers.js'
import { adminQuery, freshSchema, pgUrl } from '../../postgres-server.js'

async function setup(ctx: TestContext): Promise<{ conn: PgConnection; listener: WakeListener; wakes: Wake[] }> {
  const schema = await freshSchema(ctx)
  const conn = await openPool(pgUrl, { schema })
  ctx.onTestFinished(() => conn.close())
  await migrate(conn)
  const wakes: Wake[] = []
  const listener = new WakeListener(conn, { onWake: (wake) => void wakes.push(wake), minBackoffMs: 20, maxBackoffMs: 200 })
  ctx.onTestFinished(() => listener.close())
  await listener.start()
  expect(listener.connected).toBe(true)
  return { conn, listener, wakes }
}

describe('wake-ups', () => {
  it('a notification from another connection arrives with its kind and ids; other schemas stay silent', async (ctx) => {
    const { conn, wakes } = await setup(ctx)
    const other = await freshSchema(ctx)
    await adminQuery(`SELECT pg_notify($1, '{"k":"task","ids":["elsewhere"]}')`, [`lockstep_${other}`])
    await notifyWake(conn.pool, conn.schema, 'task', ['t1', 't2', 't1'])
    await waitFor(() => wakes.length > 0)
    expect(wakes).toEqual([{ kind: 'task', ids: ['t1', 't2'] }])
  })

  it('a NOTIFY inside a transaction arrives at commit, and never after a rollback', async (ctx) => {
    const { conn, wakes } = await setup(ctx)
    const client = await conn.pool.connect()
    try {
      await client.query('BEGIN')
      await notifyWake(client, conn.schema, 'task', ['rolled-back'])
      await client.query('ROLLBACK')
      await client.query('BEGIN')
      await notifyWake(client, conn.schema, 'task', ['committed'])
      await client.query('COMMIT')
    } finally {
      client.release()
    }
    await waitFor(() => wakes.length > 0)
    expect(wakes).toEqual([{ kind: 'task', ids: ['committed'] }])
  })

  it('reconnects after its backend is terminated, says "look" once, and hears notifications again', async (ctx) => {
    const { conn, listener, wakes } = await setup(ctx)
    const pid = listener.backendPid
    expect(pid).not.toBeNull()
    await adminQuery('SELECT pg_terminate_backend($1)', [pid])
    await waitFor(() => listener.reconnects === 1 && listener.connected)
    expect(listener.backendPid).not.toBe(pid)
    expect(wakes).toEqual([{ kind: '*', ids: null }])
    await notifyWake(conn.pool, conn.schema, 'done', ['t9'])
    await waitFor(() => wakes.length > 1)
    expect(wakes[1]).toEqual({ kind: 'done', ids: ['t9'] })
    const listening = await adminQuery<{ n: string }>(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'lockstep-listen' AND pid = $1",
      [listener.backendPid],
    )
    expect(Number(listening[0]!.n)).toBe(1)
  })

  it('many ids stay under the payload cap: split into a few payloads, or one "something changed"', async (ctx) => {
    const { conn, wakes } = await setup(ctx)
    const ids = (n: number) => Array.from({ length: n }, (_, i) => `task-${String(i).padStart(30, '0')}`)
    const some = wakePayloads('task', ids(120))
    expect(some.length).toBeGreaterThan(1)
    for (const payload of some) expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(PAYLOAD_LIMIT_BYTES)
    expect(some.flatMap((p) => (JSON.parse(p) as { ids: string[] }).ids)).toEqual(ids(120))
    expect(wakePayloads('task', ids(5_000))).toEqual(['{"k":"task"}'])
    expect(wakePayloads('task', ['x'.repeat(10_000)])).toEqual(['{"k":"task"}'])
    // The server takes them (a payload over 8,000 bytes is an error) and the listener hears them.
    await notifyWake(conn.pool, conn.schema, 'task', ids(5_000))
    await notifyWake(conn.pool, conn.schema, 'done', ids(120))
    await waitFor(() => wakes.length >= 1 + some.length)
    expect(wakes[0]).toEqual({ kind: 'task', ids: null })
    expect(wakes.slice(1).flatMap((w) => w.ids)).toEqual(ids(120))
    expect(channelOf(conn.schema).length).toBeLessThanOrEqual(63)
  })

  it('nextWake is the polling fallback: it ends at the interval without a notification, at once after one', async (ctx) => {
    const { conn, listener } = await setup(ctx)
    expect(await listener.nextWake(50)).toBe('timeout')
    const woken = listener.nextWake(60_000)
    await notifyWake(conn.pool, conn.schema, 'task', ['t1'])
    expect(await woken).toBe('woken')
    // A wake-up that came while the consumer was busy is not lost: the next sleep ends at once.
    await notifyWake(conn.pool, conn.schema, 'task', ['t2'])
    await waitFor(async () => (await listener.nextWake(1)) === 'woken')
  })
})
