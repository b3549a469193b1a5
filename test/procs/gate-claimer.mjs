// Seed 002's claimer: repeatedly claims a random ready task, and checks at once (before
// completing) that every parent of what it claimed is done.
// usage: node gate-claimer.mjs <store> <worker> <stopAfterIdleMs>
// (<store>: a SQLite path or "postgres://...|<schema>", see open-store.mjs)
import { openStore } from './open-store.mjs'

const [store, worker, idleMs = '1500'] = process.argv.slice(2)
const orch = await openStore(store, { pollMs: 20 })
const out = { worker, claimed: 0, nulls: 0, violations: [], errors: [] }
let lastActivity = Date.now()
while (Date.now() - lastActivity < Number(idleMs)) {
  const ready = await orch.tasks.list({ status: 'ready', assignee: 'a', limit: 50 })
  if (ready.length === 0) {
    await new Promise((r) => setTimeout(r, 2))
    continue
  }
  lastActivity = Date.now()
  const pick = ready[Math.floor(Math.random() * ready.length)]
  try {
    const claim = await orch.tasks.claim(pick.id, { worker, assignee: 'a' })
    if (!claim) {
      out.nulls++
      continue
    }
    out.claimed++
    const task = await orch.tasks.get(pick.id)
    for (const parentId of task.parents) {
      const parent = await orch.tasks.get(parentId)
      if (parent.status !== 'done') out.violations.push(`${pick.id} claimed while parent ${parentId} is ${parent.status}`)
    }
    await orch.tasks.complete(claim, { summary: 'stress-ok' })
  } catch (error) {
    out.errors.push(String(error.code ?? error.message))
  }
}
await orch.close()
process.stdout.write(JSON.stringify(out) + '\n')
