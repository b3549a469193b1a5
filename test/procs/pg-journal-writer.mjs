// Appends journal entries from a separate OS process, one transaction at a time, and
// reports which seqs committed and which rolled back.
// usage: node pg-journal-writer.mjs <url> <schema> <mode: quick|hold|rollback> <transactions> <startAtMs>
//   quick:    append 1-3 entries and commit at once
//   hold:     append, then keep the transaction open 10-80 ms before committing
//   rollback: append, wait 0-40 ms, then roll back
import { openPool, withTransaction } from '../../dist/persistence/postgres/connection.js'
import { appendJournal } from '../../dist/persistence/postgres/journal.js'

const [url, schema, mode, count, startAt] = process.argv.slice(2)
const conn = await openPool(url, { schema, pool: { max: 1 } })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const wait = Number(startAt) - Date.now()
if (wait > 0) await sleep(wait)
const committed = []
const rolledBack = []
class RollBack extends Error {}
for (let i = 0; i < Number(count); i++) {
  let seqs = []
  try {
    seqs = await withTransaction(conn, async (tx) => {
      const n = mode === 'quick' ? 1 + (i % 3) : 1
      const entries = Array.from({ length: n }, (_, j) => ({
        machineId: 'test', actorId: `${process.pid}-${i}`, kind: mode, eventType: 'E', event: JSON.stringify({ i, j }),
        stateBefore: null, stateAfter: 's', runId: null, actorVersion: i, at: tx.now,
      }))
      seqs = await appendJournal(tx, tx.schema, entries)
      if (mode === 'hold') await sleep(10 + Math.random() * 70)
      if (mode === 'rollback') {
        await sleep(Math.random() * 40)
        throw new RollBack()
      }
      return seqs
    })
    committed.push(...seqs)
  } catch (error) {
    if (!(error instanceof RollBack)) throw error
    rolledBack.push(...seqs)
  }
}
await conn.close()
process.stdout.write(JSON.stringify({ committed, rolledBack }) + '\n')
