// Opens a SQLite board, writes, inspects it over HTTP and closes, noting every module of
// node-postgres that gets loaded meanwhile (SQLite-only users must load none).
// usage: node sqlite-without-pg.mjs <db>
import Module from 'node:module'

const loaded = []
const load = Module._load
Module._load = function (request, ...rest) {
  if (/^pg(-|\/|$)/.test(request)) loaded.push(request)
  return load.call(this, request, ...rest)
}
const { createOrchestrator } = await import('../../dist/src/index.js')
const [db] = process.argv.slice(2)
const orch = await createOrchestrator({ path: db })
await orch.tasks.create({ title: 'x' })
const inspector = await orch.inspect({ port: 0 })
const summary = await (await fetch(new URL('/api/summary', inspector.url))).json()
await inspector.close()
await orch.close()
process.stdout.write(JSON.stringify({ loaded, tasks: summary.totalTasks }) + '\n')
