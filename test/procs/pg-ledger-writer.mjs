// Runs transactions from a separate OS process while a test terminates its backends: each
// transaction adds one ledger row, bumps a total and appends a journal entry. Reports how
// many it ran and how many reruns withTransaction did.
// usage: node pg-ledger-writer.mjs <url> <schema> <transactions> <startAtMs>  (opens first: the test kills from startAt on)
import { openPool, withTransaction } from '../../dist/persistence/postgres/connection.js'
import { appendJournal } from '../../dist/persistence/postgres/journal.js'

const [url, schema, count, startAt] = process.argv.slice(2)
const conn = await openPool(url, { schema, retryBudgetMs: 60_000, pool: { max: 2, application_name: `lockstep-load-${schema}` } })
const wait = Number(startAt) - Date.now()
if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
let reruns = 0
const onRetry = () => reruns++
for (let i = 0; i < Number(count); i++) {
  await withTransaction(
    conn,
    async (tx) => {
      await tx.query(`INSERT INTO ${tx.schema.table('ledger')} (proc, i) VALUES ($1, $2)`, [process.pid, i])
      await tx.query(`UPDATE ${tx.schema.table('total')} SET n = n + 1`)
      await appendJournal(tx, tx.schema, [
        { machineId: 'test', actorId: `${process.pid}`, kind: 'k', eventType: 'E', event: JSON.stringify({ i }), stateBefore: null, stateAfter: 's', runId: null, actorVersion: i, at: tx.now },
      ])
    },
    { onRetry },
  )
}
await conn.close()
process.stdout.write(JSON.stringify({ done: Number(count), reruns }) + '\n')
