/**
 * `npm start`: a small DAG of tasks worked by a few worker processes on ./lockstep.db,
 * with progress printed as the journal commits and a summary at the end.
 *
 *   npm start -- [--db PATH | --db postgres://... [--schema S]] [--workers N] [--port P] [--exit]
 *
 * On PostgreSQL the workers open the same URL and schema (default `lockstep`, as for every
 * lockstep tool, so `lockstep task list --db URL` sees the run without --schema).
 * Every run uses its own tenant, so repeated runs on the same board do not mix.
 *
 * The worker processes stop when this process goes, however it goes (they watch their IPC
 * channel). A closed stdout (`npm start | head`) or a signal is a clean shutdown here:
 * printing stops, the workers are told to stop and waited for, then this process exits.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createOrchestrator, type Inspector, type Task } from '../../index.js'

const { values } = parseArgs({
  options: {
    db: { type: 'string', default: './lockstep.db' },
    schema: { type: 'string' },
    workers: { type: 'string', default: '3' },
    port: { type: 'string', default: '4600' },
    exit: { type: 'boolean', default: false },
  },
})
const db = values.db!
const isUrl = /^postgres(ql)?:\/\//i.test(db)
if (values.schema !== undefined && !isUrl) throw new Error('--schema goes with a postgres:// --db')
const schema = isUrl ? (values.schema ?? 'lockstep') : undefined
const workerCount = Math.max(1, Math.min(16, Number(values.workers) || 3))

const store = schema === undefined ? { path: db } : { url: db, schema }
const orch = await createOrchestrator({ ...store, defaults: { backoffBaseMs: 300 } })
/** The --db (and --schema) to show in commands, without a password. */
const dbArgs = schema === undefined ? `--db ${db}` : `--db ${withoutPassword(db)} --schema ${schema}`

function withoutPassword(url: string): string {
  const parsed = new URL(url)
  if (parsed.password) parsed.password = '***'
  return parsed.toString()
}
let workers: ChildProcess[] = []
let inspector: Inspector | null = null
/** Set when stdout's reader went away: every later line is dropped instead of thrown at. */
let stdoutClosed = false
let shuttingDown: Promise<never> | null = null
const say = (line = '') => {
  if (!stdoutClosed) console.log(line)
}

/** Stop the workers (they release their claims), close everything, exit. */
function shutdown(code: number): Promise<never> {
  shuttingDown ??= (async () => {
    for (const w of workers) if (w.connected) w.send('stop')
    await Promise.all(workers.map((w) => (w.exitCode !== null || w.signalCode !== null ? null : new Promise((resolve) => w.once('exit', resolve)))))
    await inspector?.close()
    await orch.close()
    process.exit(code)
  })()
  return shuttingDown
}
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error
  stdoutClosed = true
  void shutdown(0)
})
/** The run is over (its exit code is set); a signal then only ends the inspector's serving. */
let finished = false
const onSignal = (code: number) => () => void shutdown(finished ? Number(process.exitCode ?? 0) : code)
process.once('SIGINT', onSignal(130))
process.once('SIGTERM', onSignal(143))

const tenant = `demo-${Date.now().toString(36)}`
const started = Date.now()
const elapsed = () => `+${((Date.now() - started) / 1000).toFixed(2)}s`.padStart(8)

// plan -> three research tasks (fan-out) -> draft (fan-in) -> review + fact-check -> publish
const titles = new Map<string, string>()
async function task(title: string, parents: Task[] = [], payload: Record<string, unknown> = {}, priority = 0): Promise<Task> {
  const t = await orch.tasks.create({ title, tenant, parents: parents.map((p) => p.id), payload: { workMs: 300, ...payload }, priority, maxAttempts: 3 })
  titles.set(t.id, title)
  say(`${elapsed()}  ${'created'.padEnd(15)} ${title} -> ${t.status}`)
  return t
}

/** The run itself. A shutdown may close the orchestrator under it: it then ends quietly. */
async function run(): Promise<void> {
  // The inspector shows the run live; a busy default port falls back to any free one.
  inspector = await orch.inspect({ port: Number(values.port) }).catch(() => orch.inspect({ port: 0 }))
  say(`lockstep demo on ${orch.path} (run ${tenant}), ${workerCount} worker processes`)
  say(`inspector: ${inspector.url}\n`)
  let lastSeq = 0
  const stop = orch.tasks.subscribe((entry) => {
    lastSeq = entry.seq
    const title = titles.get(entry.actorId)
    if (!title) return // another run's task (or a creation, printed as it returns)
    if (entry.kind === 'heartbeat') return // counted in the summary, too chatty to print
    const by = typeof entry.event.worker === 'string' ? ` by ${entry.event.worker}` : ''
    const detail =
      entry.kind === 'retry_scheduled' ? ` (${String(entry.event.error)})` : ''
    say(`${elapsed()}  ${entry.kind.padEnd(15)} ${title}${by}${detail}`)
  })

  // Session fallbacks, from whichever worker process runs the model call.
  const stopSessions = orch.sessions.subscribe((entry) => {
    if (!entry.actorId.startsWith(tenant)) return
    if (entry.kind === 'fallback') {
      const log =
        (entry.event.error as { message?: string } | undefined)?.message ??
        (entry.eventType === 'FIRST_TOKEN_TIMEOUT' ? 'no first token in time' : entry.eventType.toLowerCase())
      say(`${elapsed()}  ${'model fallback'.padEnd(15)} ${entry.actorId.slice(tenant.length + 1)}: ${log} -> now on ${entry.stateAfter === 'active.awaitingFirstToken' ? 'the next model' : entry.stateAfter}`)
    } else if (entry.kind === 'completed') {
      say(`${elapsed()}  ${'model answered'.padEnd(15)} ${entry.actorId.slice(tenant.length + 1)}`)
    }
  })

  const plan = await task('plan the article', [], {}, 10)
  // These call a simulated model through orch.sessions.run: injected 429s and a silent model.
  const research = await Promise.all([
    task('research: sources', [plan], { llm: { inject: '429' } }),
    task('research: interviews', [plan], { failFirstAttempts: 1 }),
    task('research: data', [plan], { workMs: 600 }),
  ])
  const draft = await task('write the draft', research, { workMs: 500, llm: { inject: 'timeout' } })
  const review = await task('review', [draft])
  const factCheck = await task('fact-check', [draft], { failFirstAttempts: 1 })
  await task('publish', [review, factCheck], {}, 10)

  const workerScript = fileURLToPath(new URL('./worker.js', import.meta.url))
  // No new workers once shutting down (stdout may close while the tasks are being created).
  if (shuttingDown) await shuttingDown
  // The same store: the file, or the URL and schema.
  workers = Array.from({ length: workerCount }, (_, i) => fork(workerScript, [db, tenant, `worker-${i + 1}`, ...(schema === undefined ? [] : [schema])]))

  const total = titles.size
  for (;;) {
    const tasks = await orch.tasks.list({ tenant, limit: 1_000 })
    if (tasks.every((t) => ['done', 'failed', 'cancelled', 'blocked'].includes(t.status))) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  for (const w of workers) w.send('stop')
  // Let the feed print the last entries other processes committed before unsubscribing.
  const runJournal = (await Promise.all([...titles.keys()].map((taskId) => orch.tasks.events({ taskId })))).flat()
  const lastOfRun = Math.max(...runJournal.map((e) => e.seq))
  while (lastSeq < lastOfRun) await new Promise((resolve) => setTimeout(resolve, 20))
  await Promise.all(workers.map((w) => new Promise((resolve) => (w.exitCode !== null ? resolve(null) : w.on('exit', resolve)))))
  stop()
  stopSessions()

  const tasks = await orch.tasks.list({ tenant, limit: 1_000 })
  const runs = (await Promise.all(tasks.map((t) => orch.tasks.runs(t.id)))).flat()
  const byWorker = new Map<string, number>()
  for (const run of runs) if (run.outcome === 'completed') byWorker.set(run.worker, (byWorker.get(run.worker) ?? 0) + 1)
  const byOutcome = new Map<string, number>()
  for (const run of runs) byOutcome.set(run.outcome ?? 'open', (byOutcome.get(run.outcome ?? 'open') ?? 0) + 1)

  say(`\nsummary (${((Date.now() - started) / 1000).toFixed(2)} s)`)
  say(`  tasks:   ${tasks.filter((t) => t.status === 'done').length}/${total} done`)
  say(`  runs:    ${runs.length} (${[...byOutcome].map(([k, v]) => `${v} ${k}`).join(', ')})`)
  say(`  workers: ${[...byWorker].sort().map(([k, v]) => `${k} ${v}`).join(', ')}`)
  const journal = (await Promise.all(tasks.map((t) => orch.tasks.events({ taskId: t.id })))).flat()
  const sessions = (await orch.sessions.list({ limit: 10_000 })).filter((s) => s.id.startsWith(tenant))
  say(`  models:  ${sessions.map((s) => `${s.id.slice(tenant.length + 1)} answered by ${s.model} after ${s.log.length - 1} fallback(s)`).join('; ')}`)
  say(`  journal: ${journal.length} entries for this run (${journal.filter((e) => e.kind === 'heartbeat').length} heartbeats)`)
  say(`\ninspect it: npx lockstep events ${dbArgs}   |   npx lockstep task list ${dbArgs} --tenant ${tenant}`)
  process.exitCode = tasks.every((t) => t.status === 'done') ? 0 : 1
  finished = true
  if (values.exit) {
    await inspector.close()
    await orch.close()
  } else {
    say(`\nthe inspector keeps serving at ${inspector.url} - press Ctrl-C to stop (or run with --exit)`)
  }
}

await run().catch((error: unknown) => {
  if (shuttingDown) return
  throw error
})
