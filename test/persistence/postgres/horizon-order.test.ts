/**
 * JournalHorizon.advance() may be called again before an earlier call's answer arrives
 * (the journal feed, a page read and a new subscription each ask), and answers can arrive
 * in any order. A list of lock holders read before a horizon must never make that horizon
 * final: a transaction that drew its seq in between is not in it. Deterministic: a fake
 * pool answers the two reads in the order the test chooses.
 */
import { describe, expect, it } from 'vitest'
import { JournalHorizon } from '../../../persistence/postgres/journal.js'

interface Deferred {
  resolve(value: unknown): void
}

/** A pool whose horizon reads wait until the test answers them. */
function fakePool() {
  const pending: Deferred[] = []
  const pool = {
    query(sql: string) {
      // The one-off lookup of the journal lock's key.
      if (sql.includes('regclass')) return Promise.resolve({ rows: [{ objid: 1, db: 1 }] })
      return new Promise((resolve) => pending.push({ resolve }))
    },
  }
  const answer = (i: number, lastValue: number, holders: string[]) =>
    pending[i]!.resolve([{ rows: [{ last_value: lastValue, is_called: true }] }, { rows: holders.map((vxid) => ({ vxid })) }])
  const schema = { table: (name: string) => `"s".${name}` }
  return { conn: { pool, schema } as never, pending, answer }
}

const ticks = () => new Promise((resolve) => setImmediate(resolve))

describe('JournalHorizon with overlapping advance() calls', () => {
  it('an older list of lock holders arriving after a newer horizon does not make that horizon final', async () => {
    const { conn, pending, answer } = fakePool()
    const horizon = new JournalHorizon(conn)
    const first = horizon.advance() // reads seq 5, nobody holding the lock
    await ticks()
    const second = horizon.advance() // later: seq 10, transaction T (which drew a seq in 6..10) still open
    await ticks()
    expect(pending).toHaveLength(2)
    answer(1, 10, ['T'])
    expect(await second).toBe(0) // T is open: 10 is not final
    answer(0, 5, [])
    // The first read's holders were read before T took the lock: they say nothing about 10.
    expect(await first).toBe(0)
    expect(horizon.safe).toBe(0)
    // A read after T ended makes 10 final.
    const third = horizon.advance()
    await ticks()
    answer(2, 10, [])
    expect(await third).toBe(10)
  })

  it('answers in order still advance as before', async () => {
    const { conn, answer } = fakePool()
    const horizon = new JournalHorizon(conn)
    const first = horizon.advance()
    await ticks()
    answer(0, 4, ['A'])
    expect(await first).toBe(0)
    const second = horizon.advance()
    await ticks()
    answer(1, 7, [])
    expect(await second).toBe(7)
  })
})
