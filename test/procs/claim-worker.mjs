// A competing worker in its own OS process: claimNext -> (short work) -> complete, until
// the board stays empty. Prints one JSON line with everything it did.
// usage: node claim-worker.mjs <store> <worker> [maxWorkMs] [assignee]   (store: see open-store.mjs)
import { openStore } from './open-store.mjs'

const [store, worker, maxWorkMs = '3', assignee] = process.argv.slice(2)
const orch = await openStore(store, { pollMs: 20 })
const events = []
let empty = 0
const started = Date.now()
while (empty < 20 && Date.now() - started < 80_000) {
  let claim
  try {
    claim = await orch.tasks.claimNext({ worker, ...(assignee ? { assignee } : {}) })
  } catch (error) {
    events.push({ kind: 'error_on_claim', code: error.code ?? null, message: String(error.message) })
    continue
  }
  if (!claim) {
    empty++
    await new Promise((r) => setTimeout(r, 10))
    continue
  }
  empty = 0
  events.push({ kind: 'claimed', task: claim.taskId, run: claim.runId })
  const work = Math.random() * Number(maxWorkMs)
  if (work >= 1) await new Promise((r) => setTimeout(r, work))
  try {
    await orch.tasks.complete(claim, { result: { by: worker }, summary: `${worker} finished`, metadata: { run: claim.runId } })
    events.push({ kind: 'completed', task: claim.taskId, run: claim.runId })
  } catch (error) {
    events.push({ kind: 'error_on_complete', task: claim.taskId, code: error.code ?? null, message: String(error.message) })
  }
}
await orch.close()
process.stdout.write(JSON.stringify({ worker, events }) + '\n')
