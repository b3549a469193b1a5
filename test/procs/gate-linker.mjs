// Seed 002's creator on any store, through the public API only: each round creates a
// parent that claimers will race to finish, and a child that is linked to unfinished
// parents while claimers hunt for ready tasks: created `ready` and linked a moment
// later (tasks.link), or created with its parents (tasks.create({ parents })). A third of
// the children are also linked to a parent that never finishes.
// usage: node gate-linker.mjs <store> <rounds> <neverParentId>...
import { openStore } from './open-store.mjs'

const [store, rounds, ...never] = process.argv.slice(2)
const orch = await openStore(store, { pollMs: 20 })
const out = { parents: [], children: [], linked: 0, refused: 0, errors: [] }
const pause = () => new Promise((r) => setTimeout(r, Math.random() * 2))
const link = async (parent, child) => {
  try {
    await orch.tasks.link(parent, child)
    out.linked++
  } catch (error) {
    // The child was claimed first: a running or finished task takes no unfinished parent.
    if (error.code === 'INVALID_TRANSITION') out.refused++
    else out.errors.push(String(error.code ?? error.message))
  }
}
for (let i = 0; i < Number(rounds); i++) {
  const parent = (await orch.tasks.create({ title: `parent ${i}`, assignee: 'a' })).id
  const previous = out.parents.at(-1) ?? parent
  out.parents.push(parent)
  if (i % 3 === 1) {
    out.children.push((await orch.tasks.create({ title: `child ${i}`, assignee: 'a', parents: [...new Set([parent, previous])] })).id)
    continue
  }
  const child = (await orch.tasks.create({ title: `child ${i}`, assignee: 'a' })).id
  out.children.push(child)
  await pause()
  await link(parent, child)
  if (i % 3 === 2) await link(never[i % never.length], child)
  else if (previous !== parent) await link(previous, child)
}
await orch.close()
process.stdout.write(JSON.stringify(out) + '\n')
