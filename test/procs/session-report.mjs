// Reports to a session from its own OS process, after a start signal file appears (so
// several processes report at nearly the same moment). Prints what the machine did.
// Once open it creates <startFile>.ready.<pid>, so the test can wait for every process.
// usage: node session-report.mjs <store> <sessionId> <error|authorize> <startFile> [arg]
// (<store>: a SQLite path or "postgres://...|<schema>", see open-store.mjs)
import { existsSync, writeFileSync } from 'node:fs'
import { openStore } from './open-store.mjs'

const [db, sessionId, action, startFile, arg] = process.argv.slice(2)
const prompts = []
const orch = await openStore(db, {
  runTimers: false,
  // This process's host: records the re-prompts the machine asks it for.
  sessionAdapter: { prompt: (_id, model, _message, info) => void prompts.push({ model, generation: info.generation }), abort: () => {} },
})
// Opened: say so (the test starts everyone at once only when all are), then wait for the signal.
writeFileSync(`${startFile}.ready.${process.pid}`, '')
const deadline = Date.now() + 20_000
while (!existsSync(startFile) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1))
let out
if (action === 'error') {
  const r = await orch.sessions.error(sessionId, { model: arg, error: { status: 429, message: 'rate limit exceeded' } })
  out = { kinds: r.kinds, prompts }
} else if (action === 'authorize') {
  out = { authorized: await orch.sessions.authorize(sessionId, arg) }
}
await orch.close()
process.stdout.write(JSON.stringify(out) + '\n')
