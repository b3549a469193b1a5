// Seed 002's racy writer: creates a child that is `ready` (no parents yet), and links it
// to two never-finished parents a moment later. Half the links go through lockstep's
// API; half are written by raw SQL the way the pre-fix kernel did (a link row inserted
// behind the machine's back while the child still looks ready), which only the claim
// gate can catch.
// usage: node racy-creator.mjs <db> <rounds> <parentId>...
import Database from 'better-sqlite3'
import { createOrchestrator } from '../../dist/src/index.js'

const [db, rounds, ...parents] = process.argv.slice(2)
const orch = await createOrchestrator({ path: db, pollMs: 20 })
const rawDb = new Database(db)
rawDb.pragma('busy_timeout = 5000')
const rawLink = rawDb.prepare(
  `INSERT INTO task_links (parent_id, child_id, created_at)
   SELECT @parent, @child, @at WHERE EXISTS (SELECT 1 FROM tasks WHERE id = @child AND status = 'ready')`,
)
const out = { children: [], apiLinked: 0, apiRefused: 0, rawLinked: 0, rawSkipped: 0, errors: [] }
const sample = () => {
  const a = parents[Math.floor(Math.random() * parents.length)]
  let b = a
  while (b === a) b = parents[Math.floor(Math.random() * parents.length)]
  return [a, b]
}
for (let i = 0; i < Number(rounds); i++) {
  const child = await orch.tasks.create({ title: `child ${i}`, assignee: 'a' })
  out.children.push(child.id)
  await new Promise((r) => setTimeout(r, 0.1 + Math.random() * 2))
  const viaApi = i % 2 === 0
  for (const parent of sample()) {
    if (viaApi) {
      try {
        await orch.tasks.link(parent, child.id)
        out.apiLinked++
      } catch (error) {
        if (error.code === 'INVALID_TRANSITION') out.apiRefused++
        else out.errors.push(String(error.code ?? error.message))
      }
    } else {
      const changes = rawDb.transaction(() => rawLink.run({ parent, child: child.id, at: Date.now() }).changes).immediate()
      if (changes === 1) out.rawLinked++
      else out.rawSkipped++
    }
  }
}
rawDb.close()
await orch.close()
process.stdout.write(JSON.stringify(out) + '\n')
