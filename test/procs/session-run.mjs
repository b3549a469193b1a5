// A run() on a shared session from its own OS process. Prints what happened as JSON.
// usage: node session-run.mjs <store> <sessionId> <mode>
// (<store>: a SQLite path or "postgres://...|<schema>", see open-store.mjs)
//   try:            one run() whose model answers at once; prints { output } or { code, message }
//   die-streaming:  a run() whose model streams and never ends; the process SIGKILLs itself
//                   once the first token is committed (a host that crashed mid-answer)
//   retry-only:     the script's only pending work is `await run()` with a same-model retry
//                   waiting on a durable timer; prints { output, calls } (and must exit 0)
import { openStore } from './open-store.mjs'

const [db, sessionId, mode] = process.argv.slice(2)
const models = ['a/primary', 'b/fallback']
const orch = await openStore(db, { pollMs: 10 })

if (mode === 'try') {
  const out = await orch.sessions
    .run(sessionId, { models, message: { text: 'from the child' }, call: async ({ onToken }) => (onToken(), 'child answer') })
    .then(
      (reply) => ({ output: reply.output }),
      (error) => ({ code: error.code, message: error.message }),
    )
  await orch.close()
  process.stdout.write(JSON.stringify(out) + '\n')
} else if (mode === 'die-streaming') {
  orch.sessions.subscribe(
    (entry) => {
      if (entry.kind === 'first_token') process.kill(process.pid, 'SIGKILL')
    },
    { sessionId },
  )
  await orch.sessions.run(sessionId, { models, message: { text: 'never answered' }, call: ({ onToken }) => (onToken(), new Promise(() => {})) })
} else if (mode === 'retry-only') {
  let calls = 0
  const reply = await orch.sessions.run(sessionId, {
    models,
    config: { sameModelRetries: 1, sameModelRetryDelayMs: 200 },
    message: { text: 'x' },
    call: async ({ onToken }) => {
      calls++
      if (calls === 1) throw Object.assign(new Error('internal server error'), { status: 500 })
      onToken()
      return 'after a retry'
    },
  })
  process.stdout.write(JSON.stringify({ output: reply.output, model: reply.model, calls }) + '\n')
  await orch.close()
}
