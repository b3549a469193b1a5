// Claims and completes one task from its own OS process (the inspector's live-update tests).
// usage: node inspector-complete.mjs <store> <taskId>   (a SQLite path or "postgres://...|<schema>")
import { openStore } from './open-store.mjs'

const [store, taskId] = process.argv.slice(2)
const orch = await openStore(store, { runTimers: false })
// Whatever the task's assignee: this process stands in for whoever owns it.
const claim = await orch.tasks.claim(taskId, { worker: 'other-process', anyAssignee: true })
if (!claim) throw new Error(`could not claim ${taskId}`)
const task = await orch.tasks.complete(claim, { summary: 'done from another process' })
await orch.close()
process.stdout.write(JSON.stringify({ status: task.status, runId: claim.runId }) + '\n')
