// Run as a user who may read but not write the file: opens it read-only and lists the
// board, then tries a write on that orchestrator, then a read-write open. Prints every
// outcome as one JSON line. usage: node read-only-reader.mjs <db>
import { createOrchestrator } from '../../dist/src/index.js'

const [db] = process.argv.slice(2)
const out = { uid: process.getuid?.() ?? null }
const code = (error) => error?.code ?? `untyped: ${error?.message ?? String(error)}`
try {
  const orch = await createOrchestrator({ path: db, readOnly: true })
  out.tasks = (await orch.tasks.list()).length
  out.write = await orch.tasks.create({ title: 'nope' }).then(() => 'written', code)
  await orch.close()
} catch (error) {
  out.readOnlyOpen = code(error)
}
out.readWriteOpen = await createOrchestrator({ path: db }).then(async (orch) => {
  await orch.close()
  return 'opened'
}, code)
process.stdout.write(JSON.stringify(out) + '\n')
