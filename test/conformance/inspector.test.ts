/**
 * The visual state inspector behaves the same on every store: its JSON API (counts, pages,
 * errors with codes, the DAG, time travel, sessions), its event stream, `lockstep inspect`,
 * the Stately bridge, and live updates when another OS process commits (on PostgreSQL, the
 * inspector follows the journal's horizon, as another host would). It never writes.
 * What is not about the store (auth, hosts, options, which SQLite files it opens, the page
 * in a browser) is in test/inspector.test.ts.
 * Proc scripts import dist/: run `npm run build` first.
 */
import { describe, expect, it, type TestContext } from 'vitest'
import { runInspectCommand } from '../../src/tools/inspector/cli.js'
import { startInspector, type Inspector } from '../../src/tools/inspector/server.js'
import type { InspectorOptions, Orchestrator } from '../../src/index.js'
import { runProc, sleep, waitFor } from '../helpers.js'
import { eventStream, get, scenario } from '../tools/inspector-helpers.js'
import { locationOf } from './reopen.js'
import { STORES } from './stores.js'

/** orch.inspect() on a free port, closed after the test (before the board goes). */
async function inspect(ctx: TestContext, orch: Orchestrator, options: InspectorOptions = {}): Promise<Inspector> {
  const i = await orch.inspect({ port: 0, ...options })
  ctx.onTestFinished(() => i.close())
  return i
}

/** `lockstep inspect`'s --db (and --schema) for a board. */
function dbArgs(spec: string): string[] {
  const where = locationOf(spec)
  return 'path' in where ? ['--db', where.path] : ['--db', where.url, '--schema', where.schema]
}

describe.each(STORES)('on $name', (store) => {
  it('serves counts, pages, errors as JSON with codes, the DAG, the statechart and time travel; writes nothing', async (ctx) => {
    const orch = await store.open(ctx)
    const { research, outline, intro, review } = await scenario(orch)
    const before = await store.tableCounts(orch.spec)
    const i = await inspect(ctx, orch)
    expect(i.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)

    const summary = await get(i.url, '/api/summary')
    expect(summary.status).toBe(200)
    expect(summary.body.tasks).toEqual({ todo: 2, ready: 1, running: 0, blocked: 0, done: 1, failed: 0, cancelled: 0, archived: 0 })
    expect(summary.body.totalTasks).toBe(4)
    expect(summary.body.sessions).toEqual({ idle: 0, active: 1, exhausted: 0, archived: 0, deleted: 0 })
    const journal = await get(i.url, '/api/journal?limit=3')
    expect(journal.body.entries).toHaveLength(3)
    expect(journal.body.seq).toBe(summary.body.seq)
    expect(journal.body.entries.at(-1).seq).toBe(summary.body.seq)
    expect(journal.body.entries.map((e: { kind: string }) => e.kind)).toEqual(['prompted', 'fallback', 'approved'])

    // Paged and filtered lists.
    const page1 = await get(i.url, '/api/tasks?limit=2')
    expect(page1.body.tasks.map((t: { title: string }) => t.title)).toEqual(['research sources', 'draft outline'])
    const page2 = await get(i.url, `/api/tasks?limit=2&after=${page1.body.next}`)
    expect(page2.body.tasks.map((t: { title: string }) => t.title)).toEqual(['write intro', 'review'])
    expect(page2.body.next).toBeNull()
    expect((await get(i.url, '/api/tasks?status=todo&assignee=editor')).body.tasks.map((t: { id: string }) => t.id)).toEqual([review.id])
    expect((await get(i.url, '/api/tasks?q=OUTLINE')).body.tasks.map((t: { id: string }) => t.id)).toEqual([outline.id])
    expect((await get(i.url, `/api/tasks?q=${review.id}`)).body.tasks.map((t: { id: string }) => t.id)).toEqual([review.id])
    expect((await get(i.url, '/api/tasks?q=100%25')).body.tasks).toEqual([])
    expect((await get(i.url, '/api/tasks?q=_')).body.tasks).toEqual([])

    // Malformed parameters: 400 with a code, naming the field.
    for (const bad of [
      '/api/tasks?limit=abc',
      '/api/tasks?limit=0',
      '/api/tasks?status=bogus',
      '/api/tasks?limt=5',
      '/api/tasks?limit=1&limit=2',
      '/api/tasks?after=t_nope',
      '/api/tasks?q=',
      '/api/sessions?after=nope',
      '/api/graph?depth=-1',
      `/api/actors/${research.id}/snapshot`,
      `/api/actors/${research.id}/snapshot?seq=1.5`,
      '/api/journal?after=x',
      '/events?after=-3',
    ]) {
      const r = await get(i.url, bad)
      expect(r.status, bad).toBe(400)
      expect(r.body.error.code, bad).toBe('INVALID_INPUT')
      expect(typeof r.body.error.details.field, bad).toBe('string')
    }
    // Unknown ids: 404 JSON.
    for (const missing of ['/api/actors/t_nope', '/api/actors/t_nope/snapshot?seq=1', '/api/sessions/nope', '/api/machines/nope', `/api/actors/${research.id}/snapshot?seq=999999`, '/api/graph?focus=t_nope', '/api/nothing']) {
      const r = await get(i.url, missing)
      expect(r.status, missing).toBe(404)
      expect(r.body.error.code, missing).toBe('NOT_FOUND')
    }
    expect((await get(i.url, '/api/summary', { method: 'POST' })).status).toBe(405)

    // The DAG.
    const graph = await get(i.url, '/api/graph')
    expect(graph.body.nodes).toHaveLength(4)
    expect(graph.body.edges).toHaveLength(4)
    const focused = await get(i.url, `/api/graph?focus=${research.id}&depth=1`)
    expect(focused.body.nodes.map((n: { id: string }) => n.id)).toEqual([research.id, outline.id])
    const deep = await get(i.url, `/api/graph?focus=${review.id}`)
    expect(deep.body.nodes.map((n: { title: string }) => n.title)).toEqual(['research sources', 'draft outline', 'write intro', 'review'])
    const cut = await get(i.url, '/api/graph?limit=3')
    expect(cut.body).toMatchObject({ truncated: true, externalParents: 0 })
    expect(cut.body.edges).toEqual([
      { parent: research.id, child: outline.id },
      { parent: outline.id, child: intro.id },
    ])
    const waiting = await get(i.url, '/api/graph?status=todo')
    expect(waiting.body).toMatchObject({ truncated: false, externalParents: 2, edges: [{ parent: intro.id, child: review.id }] })

    // The statechart: node ids, transitions with event and guard names.
    const chart = (await get(i.url, '/api/machines/lockstep.task')).body
    expect(chart.initial).toBe('created')
    const complete = chart.edges.find((e: { event: string; source: string }) => e.event === 'COMPLETE' && e.source === 'task.running')
    expect(complete).toMatchObject({ target: 'task.done', branches: [{ guard: 'holdsLease', kinds: ['completed'] }] })

    // One actor: context (no fencing token), runs, journal; then its state after an older entry.
    const actor = (await get(i.url, `/api/actors/${research.id}`)).body
    expect(actor).toMatchObject({ kind: 'task', state: 'done', status: 'done' })
    expect(actor.task).toMatchObject({ id: research.id, parents: [], children: [outline.id], result: { sources: 3 } })
    expect(actor.context).not.toHaveProperty('token')
    expect(actor.runs).toMatchObject({ total: 1, items: [{ outcome: 'completed', worker: 'w1' }] })
    expect(actor.journal.entries.map((e: { kind: string }) => e.kind)).toEqual(['completed', 'claimed', 'created'])
    expect(actor.journal.total).toBe(3)
    const older = (await get(i.url, `/api/actors/${research.id}/journal?limit=1&before=${actor.journal.entries[0].seq}`)).body
    expect(older.entries.map((e: { kind: string }) => e.kind)).toEqual(['claimed'])
    expect(older.next).toBe(actor.journal.entries[1].seq)
    const claimed = actor.journal.entries[1]
    const then = (await get(i.url, `/api/actors/${research.id}/snapshot?seq=${claimed.seq}`)).body
    expect(then).toMatchObject({ state: 'running', eventType: 'CLAIM', fidelity: 'exact', verified: true })
    expect(then.context).toMatchObject({ attempts: 1, worker: 'w1', completedAt: null })
    expect(then.context).not.toHaveProperty('token')
    const claimEdge = chart.edges.find((e: { id: string }) => e.id === then.transition.edges[0])
    expect(claimEdge).toMatchObject({ source: 'task.ready', target: 'task.running', event: 'CLAIM' })
    // A child's replay re-derives the facts its guards saw from its parents' journals.
    const outlineActor = (await get(i.url, `/api/actors/${outline.id}`)).body
    const promoted = outlineActor.journal.entries.find((e: { kind: string }) => e.kind === 'promoted')
    expect((await get(i.url, `/api/actors/${outline.id}/snapshot?seq=${promoted.seq}`)).body).toMatchObject({ state: 'ready', fidelity: 'exact', verified: true })

    // A session mid-fallback: the chain with each model's status, attempts, approvals.
    const session = (await get(i.url, '/api/sessions/chat-1')).body
    expect(session.session.state).toBe('active.awaitingFirstToken')
    expect(session.session.models.map((m: { model: string; current: boolean; coolingUntil: number | null }) => [m.model, m.current, m.coolingUntil !== null])).toEqual([
      ['anthropic/claude-x', false, true],
      ['openai/gpt-y', true, false],
      ['google/gemini-z', false, false],
    ])
    expect(session.session.log).toMatchObject([{ model: 'anthropic/claude-x', outcome: 'failed' }])
    expect(session.session.approvals).toMatchObject([{ tool: 'bash', once: true }])
    const prompted = session.journal.entries.find((e: { kind: string }) => e.kind === 'prompted')
    const before2 = (await get(i.url, `/api/actors/chat-1/snapshot?seq=${prompted.seq}`)).body
    expect(before2).toMatchObject({ state: 'active.awaitingFirstToken', fidelity: 'exact' })
    expect(before2.context.model).toBe('anthropic/claude-x')
    expect((await get(i.url, '/api/sessions?status=active')).body.sessions.map((s: { id: string }) => s.id)).toEqual(['chat-1'])
    expect((await get(i.url, '/api/sessions?status=idle')).body.sessions).toEqual([])

    expect(await store.tableCounts(orch.spec)).toEqual(before)
  })

  it('streams every committed entry once, in seq order, and closes the stream with the server', async (ctx) => {
    const orch = await store.open(ctx)
    const i = await inspect(ctx, orch, { pollMs: 20 })
    const stream = await eventStream(i.url)
    await stream.until(/event: hello/)
    const task = await orch.tasks.create({ title: 'streamed', tenant: 'live' })
    await stream.until(new RegExp(`id: \\d+\\nevent: entry\\ndata: [^\\n]*"actorId":"${task.id}"[^\\n]*"kind":"created"`))
    await stream.until(/event: summary\ndata: .*"ready":1/)
    const claim = (await orch.tasks.claimNext({ worker: 'w' }))!
    await orch.tasks.complete(claim)
    await stream.until(/"kind":"completed"/)
    const entries = stream.entries()
    expect(entries.map((e) => e.kind)).toEqual(['created', 'claimed', 'completed'])
    expect(entries.map((e) => e.seq)).toEqual([...entries.map((e) => e.seq)].sort((a, b) => a - b))
    // close() ends open streams instead of waiting for them.
    await i.close()
    const end = await Promise.race([stream.reader.read().catch(() => ({ done: true })), sleep(3_000).then(() => 'timeout')])
    expect(end).not.toBe('timeout')
  })

  it('another process commits: the API and the event stream show it live, each entry once', async (ctx) => {
    const orch = await store.open(ctx)
    const { outline, intro } = await scenario(orch)
    const i = await inspect(ctx, orch, { pollMs: 20 })
    const stream = await eventStream(i.url)
    await stream.until(/event: hello/)
    const r = await runProc('inspector-complete.mjs', [orch.spec, outline.id])
    expect(r.code, r.stderr).toBe(0)
    // Completing the outline promotes the intro (its only parent is done), in the same step.
    await stream.until(new RegExp(`"actorId":"${intro.id}"[^\\n]*"kind":"promoted"`))
    await stream.until(/event: summary\ndata: [^\n]*"done":2/)
    const entries = stream.entries()
    expect(entries.map((e) => [e.actorId, e.kind])).toEqual([
      [outline.id, 'claimed'],
      [outline.id, 'completed'],
      [intro.id, 'promoted'],
    ])
    const actor = (await get(i.url, `/api/actors/${outline.id}`)).body
    expect(actor).toMatchObject({ state: 'done', runs: { total: 1, items: [{ worker: 'other-process', outcome: 'completed' }] } })
    expect(actor.journal.entries.map((e: { kind: string }) => e.kind)).toEqual(['completed', 'claimed', 'promoted', 'created'])
    expect((await get(i.url, '/api/summary')).body.tasks).toMatchObject({ done: 2, ready: 1, todo: 1 })
    // A stream that reconnects after an entry it saw gets the ones after it, and only those.
    const again = await eventStream(i.url, `/events?after=${entries[0]!.seq}`)
    await again.until(/"kind":"promoted"/)
    await again.reader.cancel()
    expect(again.entries().map((e) => e.kind)).toEqual(['completed', 'promoted'])
  })

  it('runs as `lockstep inspect` until stopped', async (ctx) => {
    const orch = await store.open(ctx)
    await orch.tasks.create({ title: 'cli' })
    let stop!: (reason: string) => void
    const stopped = new Promise<string>((resolve) => (stop = resolve))
    const lines: string[] = []
    const done = runInspectCommand([...dbArgs(orch.spec), '--port', '0', '--json'], { out: (l) => lines.push(l), err: (l) => lines.push(l), untilStopped: () => stopped })
    await waitFor(() => lines.length > 0, 15_000)
    const out = JSON.parse(lines[0]!)
    expect(out.error).toBeUndefined()
    expect((await get(out.url, '/api/summary')).body.tasks.ready).toBe(1)
    stop('SIGINT')
    expect(await done).toBe(0)
  })

  it('streams actors, events and snapshots to a Stately inspector', async (ctx) => {
    const orch = await store.open(ctx)
    const calls: Array<[string, unknown, unknown]> = []
    const fake = {
      actor: (a: unknown, snapshot?: unknown) => calls.push(['actor', a, snapshot]),
      event: (a: unknown, event: unknown) => calls.push(['event', a, event]),
      snapshot: (a: unknown, snapshot: unknown) => calls.push(['snapshot', a, snapshot]),
    }
    const i = await startInspector(orch, { port: 0, pollMs: 20, stately: { inspector: fake } })
    ctx.onTestFinished(() => i.close())
    const parent = await orch.tasks.create({ title: 'parent' })
    const child = await orch.tasks.create({ title: 'child', parents: [parent.id] })
    const claim = await orch.tasks.claim(parent.id, { worker: 'w' })
    await orch.tasks.complete(claim!)
    await waitFor(() => calls.filter((c) => c[0] === 'snapshot').length >= 5, 10_000)
    const announced = calls.filter((c) => c[0] === 'actor').map((c) => c[1] as { sessionId: string; logic: { config: { id: string } } })
    expect(announced.map((a) => a.sessionId)).toEqual([parent.id, child.id])
    expect(announced[0]!.logic.config.id).toBe('task')
    const snapshots = calls.filter((c) => c[0] === 'snapshot' && c[1] === parent.id).map((c) => (c[2] as { value: unknown }).value)
    expect(snapshots).toEqual(['ready', 'running', 'done'])
    expect(calls.filter((c) => c[0] === 'event' && c[1] === child.id).map((c) => (c[2] as { type: string }).type)).toEqual(['CREATE', 'PARENT_DONE'])
    const last = calls.filter((c) => c[0] === 'snapshot').at(-1)![2] as { context: Record<string, unknown> }
    expect(last.context).not.toHaveProperty('token')
  })
})
