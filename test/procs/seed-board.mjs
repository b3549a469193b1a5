// Writes a small board from a separate OS process, then closes the file (so its -wal and
// -shm are gone): a parent task claimed with a short lease, a child waiting on it, and a
// session. usage: node seed-board.mjs <db>; prints { parent, child, session, claim }.
import { createOrchestrator } from '../../dist/src/index.js'

const [db] = process.argv.slice(2)
const orch = await createOrchestrator({ path: db, runTimers: false })
const parent = await orch.tasks.create({ title: 'parent' })
const child = await orch.tasks.create({ title: 'child', parents: [parent.id] })
const claim = await orch.tasks.claim(parent.id, { worker: 'seed', leaseMs: 50 })
await orch.sessions.open('s1', { agent: 'a', models: ['m/one', 'm/two'] })
await orch.close()
process.stdout.write(JSON.stringify({ parent: parent.id, child: child.id, session: 's1', claim }) + '\n')
