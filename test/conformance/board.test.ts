/**
 * The board, worker pools and sessions behave the same on every store (one suite, run on
 * SQLite and on PostgreSQL through test/conformance/stores.ts): the claim gate, fencing,
 * idempotency keys, cycles, subscriptions in seq order, lease expiry through durable
 * timers, worker pools, and session fallback with approvals; then the board API in detail:
 * claims, dependencies, block/cancel/archive, idempotency, reads, subscriptions, restart,
 * exclusive assignees and bad arguments. (Raw-SQL twins: test/persistence/<store>/board.test.ts.)
 */
import { describe, expect, it, type TestContext } from 'vitest'
import { AssigneeMismatchError, InvalidInputError, type JournalEntry, type Orchestrator } from '../../src/index.js'
import { runProc, sleep, waitFor } from '../helpers.js'
import { openSameBoard } from './same-board.js'
import { STORES, type StoreUnderTest } from './stores.js'

const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'resolved',
    (error: { code?: string }) => error.code ?? String(error),
  )

/** `call` fails (throws or rejects) with INVALID_INPUT naming `field`, and no table changed. */
async function expectInvalid(store: StoreUnderTest, orch: Orchestrator & { spec: string }, call: () => unknown, field?: string) {
  const before = await store.tableCounts(orch.spec)
  let error: unknown
  try {
    await call()
  } catch (e) {
    error = e
  }
  expect(error).toBeInstanceOf(InvalidInputError)
  if (field !== undefined) expect((error as InvalidInputError).details.field).toBe(field)
  expect(await store.tableCounts(orch.spec)).toEqual(before)
}

describe.each(STORES)('on $name', (store) => {
  it('claim gate, fencing, cascade and the journal', async (ctx) => {
    const orch = await store.open(ctx)
    const parent = await orch.tasks.create({ title: 'parent', priority: 1 })
    const child = await orch.tasks.create({ title: 'child', parents: [parent.id] })
    expect([parent.status, child.status]).toEqual(['ready', 'todo'])
    // The child is not claimable while its parent is not done.
    expect(await orch.tasks.claim(child.id, { worker: 'w' })).toBeNull()

    const claim = (await orch.tasks.claimNext({ worker: 'w' }))!
    expect(claim.taskId).toBe(parent.id)
    expect(await orch.tasks.claimNext({ worker: 'w2' })).toBeNull()
    expect(await codeOf(orch.tasks.complete({ ...claim, token: 'forged' }))).toBe('LEASE_LOST')
    expect(await codeOf(orch.tasks.complete({ ...claim, runId: 'r_never' }))).toBe('RUN_NOT_FOUND')

    const done = await orch.tasks.complete(claim, { result: { pages: 3 }, summary: 'ok' })
    expect(done).toMatchObject({ status: 'done', result: { pages: 3 }, summary: 'ok' })
    expect((await orch.tasks.get(child.id))!.status).toBe('ready')
    expect(await orch.tasks.runs(parent.id)).toEqual([expect.objectContaining({ id: claim.runId, outcome: 'completed' })])

    const childClaim = (await orch.tasks.claimNext({ worker: 'w' }))!
    await orch.tasks.fail(childClaim, { error: 'broken', retryable: false })
    expect((await orch.tasks.get(child.id))!.status).toBe('failed')

    const kinds = (await orch.tasks.events()).map((e) => `${e.actorId === parent.id ? 'p' : 'c'}:${e.kind}`)
    expect(kinds).toEqual(['p:created', 'c:created', 'p:claimed', 'p:completed', 'c:promoted', 'c:claimed', 'c:failed'])
    const seqs = (await orch.tasks.events()).map((e) => e.seq)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    expect((await orch.tasks.list({ limit: 10 })).map((t) => t.title)).toEqual(['parent', 'child'])
    expect((await orch.tasks.get(child.id))!.parents).toEqual([parent.id])
  })

  it('idempotency keys, cycles and bad input write nothing', async (ctx) => {
    const orch = await store.open(ctx)
    const a = await orch.tasks.create({ title: 'a', idempotencyKey: 'k1' })
    expect((await orch.tasks.create({ title: 'a again', idempotencyKey: 'k1' })).id).toBe(a.id)
    const b = await orch.tasks.create({ title: 'b', parents: [a.id] })
    const c = await orch.tasks.create({ title: 'c', parents: [b.id] })
    expect(await codeOf(orch.tasks.link(c.id, a.id))).toBe('DEPENDENCY_CYCLE')
    expect(await codeOf(orch.tasks.link(a.id, a.id))).toBe('DEPENDENCY_CYCLE')
    expect(await codeOf(orch.tasks.create({ title: 'x', parents: ['t_missing'] }))).toBe('TASK_NOT_FOUND')
    expect(await codeOf(orch.tasks.create({ title: 'later', delay: 1000 } as never))).toBe('INVALID_INPUT')
    expect((await orch.tasks.list({ limit: 100 })).length).toBe(3)
    expect((await orch.tasks.events()).length).toBe(3)
  })

  it('a subscriber gets every entry once, in seq order', async (ctx) => {
    const orch = await store.open(ctx)
    const seen: JournalEntry[] = []
    const stop = orch.tasks.subscribe((entry) => seen.push(entry))
    const t = await orch.tasks.create({ title: 't' })
    const claim = (await orch.tasks.claimNext({ worker: 'w' }))!
    await orch.tasks.complete(claim)
    const deadline = Date.now() + 5_000
    while (seen.length < 3 && Date.now() < deadline) await sleep(10)
    stop()
    expect(seen.map((e) => [e.actorId, e.kind])).toEqual([
      [t.id, 'created'],
      [t.id, 'claimed'],
      [t.id, 'completed'],
    ])
    expect(seen.map((e) => e.seq)).toEqual([...seen.map((e) => e.seq)].sort((a, b) => a - b))
  })

  it('a lapsed lease is reclaimed by the durable timer and the task is claimable again', async (ctx) => {
    const orch = await store.open(ctx, { runTimers: false, defaults: { backoffBaseMs: 0, backoffMaxMs: 0 } })
    const t = await orch.tasks.create({ title: 't' })
    const claim = (await orch.tasks.claimNext({ worker: 'w', leaseMs: 200 }))!
    await sleep(350)
    expect(await orch.runDueTimers()).toBe(1)
    expect((await orch.tasks.get(t.id))!.status).toBe('ready')
    expect(await codeOf(orch.tasks.complete(claim))).toBe('LEASE_LOST')
    const again = (await orch.tasks.claimNext({ worker: 'w2' }))!
    expect(again).toMatchObject({ taskId: t.id, attempt: 2 })
    expect((await orch.tasks.runs(t.id)).map((r) => r.outcome)).toEqual(['reclaimed', null])
  })

  it('a worker pool works a DAG to the end', async (ctx) => {
    const orch = await store.open(ctx)
    const root = await orch.tasks.create({ title: 'root' })
    for (let i = 0; i < 12; i++) await orch.tasks.create({ title: `leaf ${i}`, parents: [root.id] })
    const handled: string[] = []
    const pool = orch.tasks.work({
      worker: 'pool',
      concurrency: 4,
      idlePollMs: 20,
      handler: async (task) => {
        handled.push(task.title)
        return { result: { title: task.title } }
      },
    })
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline && (await orch.tasks.list({ status: 'done', limit: 100 })).length < 13) await sleep(20)
    await pool.stop()
    expect((await orch.tasks.list({ status: 'done', limit: 100 })).length).toBe(13)
    expect(handled[0]).toBe('root')
    expect(new Set(handled).size).toBe(13)
  })

  it('a session falls back once per failure and keeps once-approvals exact', async (ctx) => {
    const orch = await store.open(ctx)
    const calls: string[] = []
    const result = await orch.sessions.run('s1', {
      models: ['m/primary', 'm/fallback'],
      message: { text: 'hi' },
      call: async ({ model, onToken }) => {
        calls.push(model)
        if (model === 'm/primary') throw Object.assign(new Error('rate limited'), { status: 429 })
        onToken()
        return `answer from ${model}`
      },
    })
    expect(result).toMatchObject({ output: 'answer from m/fallback', model: 'm/fallback' })
    expect(calls).toEqual(['m/primary', 'm/fallback'])
    const session = (await orch.sessions.get('s1'))!
    expect(session.models.find((m) => m.model === 'm/primary')!.coolingUntil).toBeGreaterThan(0)

    await orch.sessions.approve('s1', 'bash', { once: true })
    const answers = await Promise.all([1, 2, 3].map(() => orch.sessions.authorize('s1', 'bash')))
    expect(answers.filter(Boolean)).toHaveLength(1)
    expect(await orch.sessions.authorize('s1', 'toString')).toBe(false)
  })

  describe('the README example', () => {
    it('gates the child until its parent completes, then promotes it in the same transaction', async (ctx) => {
      const orch = await store.open(ctx)
      const research = await orch.tasks.create({ title: 'research', assignee: 'researcher', priority: 5 })
      const draft = await orch.tasks.create({ title: 'draft', parents: [research.id], payload: { topic: 'x' } })
      expect(research.status).toBe('ready')
      expect(draft.status).toBe('todo')
      expect(draft.parents).toEqual([research.id])
      expect(draft.payload).toEqual({ topic: 'x' })

      // The child is not claimable while its parent runs.
      expect(await orch.tasks.claim(draft.id, { worker: 'w2' })).toBeNull()
      const claim = await orch.tasks.claimNext({ worker: 'w1', assignee: 'researcher' })
      expect(claim).toMatchObject({ taskId: research.id, worker: 'w1', attempt: 1 })
      const done = await orch.tasks.complete(claim!, { result: { notes: '...' }, summary: 'found 3 sources' })
      expect(done).toMatchObject({ status: 'done', result: { notes: '...' }, summary: 'found 3 sources', runId: null })
      expect((await orch.tasks.get(draft.id))!.status).toBe('ready')

      // Completion and promotion share one transaction: adjacent seqs, same timestamp.
      const events = await orch.tasks.events()
      const completed = events.find((e) => e.kind === 'completed')!
      const promoted = events.find((e) => e.kind === 'promoted')!
      expect(promoted.seq).toBe(completed.seq + 1)
      expect(promoted.at).toBe(completed.at)
      expect(promoted).toMatchObject({ actorId: draft.id, stateBefore: 'todo', stateAfter: 'ready' })
    })
  })

  describe('claims', () => {
    it('claimNext takes the highest priority, then the oldest, and filters by assignee and tenant', async (ctx) => {
      const orch = await store.open(ctx)
      const low = await orch.tasks.create({ title: 'low', priority: 1 })
      const high1 = await orch.tasks.create({ title: 'high1', priority: 9 })
      const high2 = await orch.tasks.create({ title: 'high2', priority: 9 })
      const other = await orch.tasks.create({ title: 'for bob', assignee: 'bob', priority: 100 })
      const tenant = await orch.tasks.create({ title: 'acme', tenant: 'acme', priority: 50 })
      expect(await orch.tasks.claimNext({ worker: 'w', assignee: 'alice' })).toBeNull()
      expect((await orch.tasks.claimNext({ worker: 'w', assignee: 'bob' }))!.taskId).toBe(other.id)
      expect((await orch.tasks.claimNext({ worker: 'w', tenant: 'acme' }))!.taskId).toBe(tenant.id)
      const order = []
      for (let c = await orch.tasks.claimNext({ worker: 'w' }); c; c = await orch.tasks.claimNext({ worker: 'w' })) order.push(c.taskId)
      expect(order).toEqual([high1.id, high2.id, low.id])
    })

    it('every claim opens one run; every run is closed exactly once with its outcome', async (ctx) => {
      const orch = await store.open(ctx, { defaults: { backoffBaseMs: 0 } })
      const t = await orch.tasks.create({ title: 't', maxAttempts: 3 })
      const c1 = (await orch.tasks.claim(t.id, { worker: 'a' }))!
      await orch.tasks.fail(c1, { error: new Error('flaky') })
      await orch.runDueTimers()
      const c2 = (await orch.tasks.claim(t.id, { worker: 'b' }))!
      expect(c2.attempt).toBe(2)
      await orch.tasks.complete(c2)
      const runs = await orch.tasks.runs(t.id)
      expect(runs.map((r) => [r.id, r.worker, r.attempt, r.outcome, r.error])).toEqual([
        [c1.runId, 'a', 1, 'failed', 'flaky'],
        [c2.runId, 'b', 2, 'completed', null],
      ])
      expect(runs.every((r) => r.endedAt !== null)).toBe(true)
    })

    it('claimNext with an idempotency key: a retry gets the same claim, never a second task', async (ctx) => {
      const orch = await store.open(ctx)
      await orch.tasks.create({ title: 'a' })
      await orch.tasks.create({ title: 'b' })
      const [first, ...retries] = await Promise.all(
        Array.from({ length: 5 }, () => orch.tasks.claimNext({ worker: 'w', idempotencyKey: 'claim-1' })),
      )
      for (const retry of retries) expect(retry).toEqual(first)
      expect(await orch.tasks.list({ status: 'running' })).toHaveLength(1)
      // A different key claims the other task.
      expect((await orch.tasks.claimNext({ worker: 'w', idempotencyKey: 'claim-2' }))!.taskId).not.toBe(first!.taskId)
      // Once that claim is over, its key answers LEASE_LOST rather than claiming anew.
      await orch.tasks.complete(first!)
      await expect(orch.tasks.claimNext({ worker: 'w', idempotencyKey: 'claim-1' })).rejects.toMatchObject({ code: 'LEASE_LOST' })
    })

    it('retries racing the claim they retry never answer null while a task is ready for them', async (ctx) => {
      // On PostgreSQL a retry whose original is still in flight once skipped the task the
      // original had locked, found nothing else, and answered null ("nothing to claim").
      const orch = await store.open(ctx)
      for (let round = 0; round < 15; round++) {
        await orch.tasks.create({ title: `a${round}` })
        await orch.tasks.create({ title: `b${round}` })
        const claims = await Promise.all(
          Array.from({ length: 5 }, () => orch.tasks.claimNext({ worker: 'w', idempotencyKey: `round-${round}` })),
        )
        expect(claims[0]).not.toBeNull()
        for (const claim of claims) expect(claim).toEqual(claims[0])
        await orch.tasks.complete(claims[0]!)
      }
      expect(await orch.tasks.list({ status: 'done', limit: 100 })).toHaveLength(15)
      expect(await orch.tasks.list({ status: 'ready', limit: 100 })).toHaveLength(15)
    })

    it('a gated claim returns null and writes nothing', async (ctx) => {
      const orch = await store.open(ctx)
      const p = await orch.tasks.create({ title: 'p' })
      const c = await orch.tasks.create({ title: 'c', parents: [p.id] })
      const before = (await orch.tasks.events()).length
      const counts = await store.tableCounts(orch.spec)
      expect(await orch.tasks.claim(c.id, { worker: 'w' })).toBeNull()
      expect((await orch.tasks.events()).length).toBe(before)
      expect(await store.tableCounts(orch.spec)).toEqual(counts)
    })
  })

  describe('dependencies', () => {
    it('linking an unfinished parent demotes a ready child; unlinking promotes it again', async (ctx) => {
      const orch = await store.open(ctx)
      const p = await orch.tasks.create({ title: 'p' })
      const c = await orch.tasks.create({ title: 'c' })
      expect((await orch.tasks.link(p.id, c.id)).status).toBe('todo')
      expect(await orch.tasks.children(p.id)).toEqual([c.id])
      expect((await orch.tasks.link(p.id, c.id)).status).toBe('todo') // idempotent
      const kinds = (await orch.tasks.events({ taskId: c.id })).map((e) => e.kind)
      expect(kinds).toEqual(['created', 'linked', 'demoted'])
      expect((await orch.tasks.unlink(p.id, c.id)).status).toBe('ready')
    })

    it('fan-in: a child waits for all its parents, and only its own parents are looked at', async (ctx) => {
      const orch = await store.open(ctx)
      const a = await orch.tasks.create({ title: 'a' })
      const b = await orch.tasks.create({ title: 'b' })
      const unrelated = await orch.tasks.create({ title: 'unrelated' })
      const child = await orch.tasks.create({ title: 'child', parents: [a.id, b.id] })
      await orch.tasks.complete((await orch.tasks.claim(a.id, { worker: 'w' }))!)
      expect((await orch.tasks.get(child.id))!.status).toBe('todo')
      await orch.tasks.complete((await orch.tasks.claim(b.id, { worker: 'w' }))!)
      expect((await orch.tasks.get(child.id))!.status).toBe('ready')
      const promotedActors = (await orch.tasks.events()).filter((e) => e.kind === 'promoted').map((e) => e.actorId)
      expect(promotedActors).toEqual([child.id])
      expect((await orch.tasks.get(unrelated.id))!.updatedAt).toBe(unrelated.updatedAt)
    })

    it('a failed parent blocks its waiting children with a reason; retrying the parent releases them', async (ctx) => {
      const orch = await store.open(ctx)
      const p = await orch.tasks.create({ title: 'p', maxAttempts: 1 })
      const c1 = await orch.tasks.create({ title: 'c1', parents: [p.id] })
      const c2 = await orch.tasks.create({ title: 'c2', parents: [p.id] })
      const claim = (await orch.tasks.claim(p.id, { worker: 'w' }))!
      expect((await orch.tasks.fail(claim, { error: 'no' })).status).toBe('failed')
      for (const id of [c1.id, c2.id]) {
        const child = (await orch.tasks.get(id))!
        expect(child).toMatchObject({ status: 'blocked', blockedBy: p.id, blockedReason: `parent ${p.id} failed` })
      }
      // A manual unblock cannot override the failed parent.
      await expect(orch.tasks.unblock(c1.id)).rejects.toMatchObject({ code: 'INVALID_TRANSITION' })
      expect((await orch.tasks.retry(p.id)).status).toBe('ready')
      expect((await orch.tasks.get(c1.id))!.status).toBe('todo')
      await orch.tasks.complete((await orch.tasks.claim(p.id, { worker: 'w' }))!)
      expect((await orch.tasks.get(c1.id))!.status).toBe('ready')
      expect((await orch.tasks.get(c2.id))!.status).toBe('ready')
    })

    it('a cancelled parent blocks its children; unlinking it lets them proceed', async (ctx) => {
      const orch = await store.open(ctx)
      const p = await orch.tasks.create({ title: 'p' })
      const c = await orch.tasks.create({ title: 'c', parents: [p.id] })
      await orch.tasks.cancel(p.id, { reason: 'not needed' })
      expect((await orch.tasks.get(c.id))!).toMatchObject({ status: 'blocked', blockedReason: `parent ${p.id} cancelled` })
      expect((await orch.tasks.unlink(p.id, c.id)).status).toBe('ready')
    })

    it('a task created under a failed parent starts blocked', async (ctx) => {
      const orch = await store.open(ctx)
      const p = await orch.tasks.create({ title: 'p' })
      await orch.tasks.cancel(p.id)
      expect((await orch.tasks.create({ title: 'c', parents: [p.id] })).status).toBe('blocked')
    })

    it('refuses to give a running task an unfinished parent', async (ctx) => {
      const orch = await store.open(ctx)
      const p = await orch.tasks.create({ title: 'p' })
      const c = await orch.tasks.create({ title: 'c' })
      await orch.tasks.claim(c.id, { worker: 'w' })
      await expect(orch.tasks.link(p.id, c.id)).rejects.toMatchObject({ code: 'INVALID_TRANSITION' })
      expect(await orch.tasks.children(p.id)).toEqual([])
    })
  })

  describe('block, cancel, archive', () => {
    it('blocks and unblocks through the gate; a running task blocked loses its claim', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      const claim = (await orch.tasks.claim(t.id, { worker: 'w' }))!
      expect((await orch.tasks.block(t.id, { reason: 'needs a human' })).status).toBe('blocked')
      await expect(orch.tasks.complete(claim)).rejects.toMatchObject({ code: 'LEASE_LOST' })
      expect((await orch.tasks.runs(t.id))[0]!.outcome).toBe('blocked')
      expect((await orch.tasks.unblock(t.id)).status).toBe('ready')
    })

    it('cancel closes the run of a running task; archive only after the end', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      await orch.tasks.claim(t.id, { worker: 'w' })
      await expect(orch.tasks.archive(t.id)).rejects.toMatchObject({ code: 'INVALID_TRANSITION' })
      expect((await orch.tasks.cancel(t.id, { reason: 'stop' })).status).toBe('cancelled')
      expect((await orch.tasks.runs(t.id))[0]!.outcome).toBe('cancelled')
      expect((await orch.tasks.archive(t.id)).status).toBe('archived')
      expect(await orch.tasks.list({ status: 'archived' })).toHaveLength(1)
    })
  })

  describe('idempotency', () => {
    it('a second create with the same key returns the first task, even when both race', async (ctx) => {
      const orch = await store.open(ctx)
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => orch.tasks.create({ title: `try ${i}`, idempotencyKey: 'k1' })),
      )
      expect(new Set(results.map((t) => t.id)).size).toBe(1)
      expect(await orch.tasks.list()).toHaveLength(1)
    })

    it('concurrent creates with one key from several processes make one task', async (ctx) => {
      const orch = await store.open(ctx)
      const outs = await Promise.all(Array.from({ length: 4 }, () => runProc('idempotent-create.mjs', [orch.spec, 'same-key', '25'])))
      const ids = new Set<string>()
      for (const out of outs) {
        expect(out.stderr).toBe('')
        for (const id of JSON.parse(out.stdout).ids) ids.add(id)
      }
      expect(ids.size).toBe(1)
      expect((await store.tableCounts(orch.spec)).tasks).toBe(1)
      expect((await orch.tasks.events()).filter((e) => e.kind === 'created')).toHaveLength(1)
    })
  })

  describe('reads', () => {
    it('lists with filters and pages', async (ctx) => {
      const orch = await store.open(ctx)
      for (let i = 0; i < 5; i++) await orch.tasks.create({ title: `t${i}`, assignee: i % 2 ? 'odd' : 'even', tenant: 'x' })
      expect((await orch.tasks.list({ assignee: 'odd' })).map((t) => t.title)).toEqual(['t1', 't3'])
      const page1 = await orch.tasks.list({ limit: 2 })
      const page2 = await orch.tasks.list({ limit: 2, after: page1[1]!.id })
      expect([...page1, ...page2].map((t) => t.title)).toEqual(['t0', 't1', 't2', 't3'])
      expect(await orch.tasks.list({ status: 'running' })).toEqual([])
      expect(await orch.tasks.get('t_missing')).toBeNull()
    })

    it('journal entries carry actor, event, states, run id and a millisecond timestamp', async (ctx) => {
      const orch = await store.open(ctx)
      // PostgreSQL stamps entries from the database clock: the test server runs on this host.
      const before = Date.now()
      const t = await orch.tasks.create({ title: 't' })
      const claim = (await orch.tasks.claim(t.id, { worker: 'w' }))!
      await orch.tasks.heartbeat(claim)
      await orch.tasks.complete(claim, { summary: 'ok' })
      const entries = await orch.tasks.events({ taskId: t.id })
      expect(entries.map((e) => [e.kind, e.stateBefore, e.stateAfter, e.runId])).toEqual([
        ['created', null, 'ready', null],
        ['claimed', 'ready', 'running', claim.runId],
        ['heartbeat', 'running', 'running', claim.runId],
        ['completed', 'running', 'done', claim.runId],
      ])
      for (const e of entries) {
        expect(e.actorId).toBe(t.id)
        expect(Number.isInteger(e.at) && e.at >= before && e.at <= Date.now()).toBe(true)
      }
      expect(entries[1]!.event).toMatchObject({ type: 'CLAIM', worker: 'w' })
      // The fencing token is a secret: whoever reads the journal cannot complete the run.
      expect(JSON.stringify(entries)).not.toContain(claim.token)
      // seq is global and strictly increasing; `after` pages.
      expect((await orch.tasks.events({ after: entries[1]!.seq })).map((e) => e.kind)).toEqual(['heartbeat', 'completed'])
    })
  })

  describe('subscribe', () => {
    it('delivers entries in seq order, from this process and from other processes', async (ctx) => {
      const orch = await store.open(ctx)
      const seen: JournalEntry[] = []
      const stop = orch.tasks.subscribe((e) => seen.push(e))
      const local = await orch.tasks.create({ title: 'local' })
      await waitFor(() => seen.length >= 1)
      const out = await runProc('create-one.mjs', [orch.spec, 'from another process'])
      expect(out.stderr).toBe('')
      const remoteId = JSON.parse(out.stdout).id
      await waitFor(() => seen.some((e) => e.actorId === remoteId))
      expect(seen.map((e) => e.actorId)).toEqual([local.id, remoteId])
      expect(seen[1]!.seq).toBeGreaterThan(seen[0]!.seq)
      stop()
      await orch.tasks.create({ title: 'after unsubscribe' })
      await sleep(50)
      expect(seen).toHaveLength(2)
    })

    it('replays from a seq, and can follow one task', async (ctx) => {
      const orch = await store.open(ctx)
      const a = await orch.tasks.create({ title: 'a' })
      const b = await orch.tasks.create({ title: 'b' })
      const seen: string[] = []
      const stop = orch.tasks.subscribe((e) => seen.push(`${e.actorId}:${e.kind}`), { after: 0, taskId: b.id })
      ctx.onTestFinished(stop)
      await orch.tasks.claim(a.id, { worker: 'w' })
      await orch.tasks.claim(b.id, { worker: 'w' })
      await waitFor(() => seen.length >= 2)
      expect(seen).toEqual([`${b.id}:created`, `${b.id}:claimed`])
    })
  })

  describe('restart', () => {
    it('a new orchestrator on the same board sees everything, and its timers keep working', async (ctx) => {
      const first = await store.open(ctx)
      const t = await first.tasks.create({ title: 't' })
      // Long enough that the second orchestrator's open (a connection and a schema check on
      // PostgreSQL) surely ends before the lease does, short enough to wait for.
      const claim = (await first.tasks.claim(t.id, { worker: 'w', leaseMs: 1_500 }))!
      await first.close()
      const second = await openSameBoard(ctx, first.spec)
      expect((await second.tasks.get(t.id))!.status).toBe('running')
      // The lease timer row outlived the first orchestrator: the second reclaims the task.
      await waitFor(async () => (await second.tasks.get(t.id))!.status === 'ready')
      await expect(second.tasks.complete(claim)).rejects.toMatchObject({ code: 'LEASE_LOST' })
    })
  })

  describe('exclusive assignees (issue 9)', () => {
    it('a claim without assignee takes unassigned tasks only; a named claim only its own; anyAssignee takes all', async (ctx) => {
      const orch = await store.open(ctx)
      const bobs = await orch.tasks.create({ title: "bob's", assignee: 'bob', priority: 9 })
      const free = await orch.tasks.create({ title: 'free', priority: 1 })
      const alices = await orch.tasks.create({ title: "alice's", assignee: 'alice', priority: 5 })
      const free2 = await orch.tasks.create({ title: 'free 2', priority: 0 })

      // A generic claim never steals an assigned task, whatever its priority.
      expect((await orch.tasks.claimNext({ worker: 'generic' }))!.taskId).toBe(free.id)
      expect((await orch.tasks.claimNext({ worker: 'generic' }))!.taskId).toBe(free2.id)
      expect(await orch.tasks.claimNext({ worker: 'generic' })).toBeNull()
      // A named claim takes that assignee's tasks and nothing else.
      expect(await orch.tasks.claimNext({ worker: 'c', assignee: 'carol' })).toBeNull()
      expect((await orch.tasks.claimNext({ worker: 'a', assignee: 'alice' }))!.taskId).toBe(alices.id)
      // anyAssignee takes every remaining ready task, in claim order.
      expect((await orch.tasks.claimNext({ worker: 'any', anyAssignee: true }))!.taskId).toBe(bobs.id)
      expect(await orch.tasks.claimNext({ worker: 'any', anyAssignee: true })).toBeNull()
    })

    it('anyAssignee merges assigned and unassigned tasks in priority order', async (ctx) => {
      const orch = await store.open(ctx)
      const a = await orch.tasks.create({ title: 'a', assignee: 'x', priority: 3 })
      const b = await orch.tasks.create({ title: 'b', priority: 2 })
      const c = await orch.tasks.create({ title: 'c', assignee: 'y', priority: 2 })
      const d = await orch.tasks.create({ title: 'd', priority: 4 })
      const order = []
      for (let claim = await orch.tasks.claimNext({ worker: 'w', anyAssignee: true }); claim; claim = await orch.tasks.claimNext({ worker: 'w', anyAssignee: true })) {
        order.push(claim.taskId)
      }
      expect(order).toEqual([d.id, a.id, b.id, c.id])
    })

    it('the same rule within a tenant', async (ctx) => {
      const orch = await store.open(ctx)
      const assigned = await orch.tasks.create({ title: 'acme bob', tenant: 'acme', assignee: 'bob', priority: 9 })
      const free = await orch.tasks.create({ title: 'acme free', tenant: 'acme' })
      await orch.tasks.create({ title: 'other free', tenant: 'other', priority: 9 })
      const freeAcme2 = await orch.tasks.create({ title: 'acme free 2', tenant: 'acme' })
      expect((await orch.tasks.claimNext({ worker: 'w', tenant: 'acme' }))!.taskId).toBe(free.id)
      expect((await orch.tasks.claimNext({ worker: 'w', tenant: 'acme', assignee: 'bob' }))!.taskId).toBe(assigned.id)
      expect((await orch.tasks.claimNext({ worker: 'w', tenant: 'acme', anyAssignee: true }))!.taskId).toBe(freeAcme2.id)
      expect(await orch.tasks.claimNext({ worker: 'w', tenant: 'acme', anyAssignee: true })).toBeNull()
    })

    it("claiming by id a task that is not the claim's is ASSIGNEE_MISMATCH and writes nothing", async (ctx) => {
      const orch = await store.open(ctx)
      const bobs = await orch.tasks.create({ title: "bob's", assignee: 'bob' })
      const free = await orch.tasks.create({ title: 'free' })
      const before = await store.tableCounts(orch.spec)
      await expect(orch.tasks.claim(bobs.id, { worker: 'w' })).rejects.toMatchObject({
        code: 'ASSIGNEE_MISMATCH',
        details: { taskId: bobs.id, assignee: 'bob', claimant: null },
      })
      await expect(orch.tasks.claim(bobs.id, { worker: 'w', assignee: 'alice' })).rejects.toBeInstanceOf(AssigneeMismatchError)
      await expect(orch.tasks.claim(free.id, { worker: 'w', assignee: 'bob' })).rejects.toMatchObject({
        code: 'ASSIGNEE_MISMATCH',
        details: { taskId: free.id, assignee: null, claimant: 'bob' },
      })
      expect(await store.tableCounts(orch.spec)).toEqual(before)
      // Not ready is still null for the right claimant, and still a mismatch for another.
      const child = await orch.tasks.create({ title: 'child', assignee: 'bob', parents: [free.id] })
      expect(await orch.tasks.claim(child.id, { worker: 'w', assignee: 'bob' })).toBeNull()
      await expect(orch.tasks.claim(child.id, { worker: 'w' })).rejects.toMatchObject({ code: 'ASSIGNEE_MISMATCH' })
      // The named assignee, or anyAssignee, may take it.
      expect(await orch.tasks.claim(bobs.id, { worker: 'w', assignee: 'bob' })).toMatchObject({ taskId: bobs.id })
      expect(await orch.tasks.claim(free.id, { worker: 'w', anyAssignee: true })).toMatchObject({ taskId: free.id })
    })

    it('assignee and anyAssignee together are INVALID_INPUT', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't', assignee: 'bob' })
      await expect(orch.tasks.claimNext({ worker: 'w', assignee: 'bob', anyAssignee: true })).rejects.toMatchObject({
        code: 'INVALID_INPUT',
        details: { field: 'anyAssignee' },
      })
      await expect(orch.tasks.claim(t.id, { worker: 'w', assignee: 'bob', anyAssignee: true })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      await expect(orch.tasks.claimNext({ worker: 'w', anyAssignee: 'yes' as never })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      expect((await orch.tasks.get(t.id))!.status).toBe('ready')
    })

    it('processes claiming side by side each take only the tasks the rule gives them', async (ctx) => {
      const orch = await store.open(ctx)
      for (let i = 0; i < 60; i++) await orch.tasks.create({ title: `t${i}`, ...(i % 2 ? { assignee: 'bob' } : {}), priority: i % 7 })
      const [generic, bob] = await Promise.all([
        runProc('claim-worker.mjs', [orch.spec, 'generic', '1']),
        runProc('claim-worker.mjs', [orch.spec, 'bob-1', '1', 'bob']),
      ])
      for (const out of [generic, bob]) expect(out.stderr).toBe('')
      // Runs per (worker, task assignee), as a GROUP BY over runs joined to tasks would count them.
      const byWorker = new Map<string, number>()
      for (const task of await orch.tasks.list({ limit: 100 })) {
        for (const run of await orch.tasks.runs(task.id)) {
          const key = `${run.worker} ${task.assignee}`
          byWorker.set(key, (byWorker.get(key) ?? 0) + 1)
        }
      }
      expect([...byWorker].sort()).toEqual([
        ['bob-1 bob', 30],
        ['generic null', 30],
      ])
    })
  })

  describe('bad arguments are typed errors that write nothing (issue 9)', () => {
    async function setup(ctx: TestContext) {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      const r = await orch.tasks.create({ title: 'r' })
      const claim = (await orch.tasks.claim(r.id, { worker: 'w' }))!
      return { orch, t, claim }
    }
    type Setup = Awaited<ReturnType<typeof setup>>

    const nulls: Array<[string, (s: Setup) => unknown]> = [
      ['create(null)', (s) => s.orch.tasks.create(null as never)],
      ['link(null, id)', (s) => s.orch.tasks.link(null as never, s.t.id)],
      ['unlink(id, null)', (s) => s.orch.tasks.unlink(s.t.id, null as never)],
      ['claim(id, null)', (s) => s.orch.tasks.claim(s.t.id, null as never)],
      ['claim(null, options)', (s) => s.orch.tasks.claim(null as never, { worker: 'w' })],
      ['claimNext(null)', (s) => s.orch.tasks.claimNext(null as never)],
      ['heartbeat(claim, null)', (s) => s.orch.tasks.heartbeat(s.claim, null as never)],
      ['heartbeat(claim, 5)', (s) => s.orch.tasks.heartbeat(s.claim, 5 as never)],
      ['heartbeat(null)', (s) => s.orch.tasks.heartbeat(null as never)],
      ['complete(claim, null)', (s) => s.orch.tasks.complete(s.claim, null as never)],
      ['complete(claim, "done")', (s) => s.orch.tasks.complete(s.claim, 'done' as never)],
      ['fail(claim, null)', (s) => s.orch.tasks.fail(s.claim, null as never)],
      ['release(claim, null)', (s) => s.orch.tasks.release(s.claim, null as never)],
      ['block(id, null)', (s) => s.orch.tasks.block(s.t.id, null as never)],
      ['unblock(null)', (s) => s.orch.tasks.unblock(null as never)],
      ['cancel(id, null)', (s) => s.orch.tasks.cancel(s.t.id, null as never)],
      ['cancel(id, [])', (s) => s.orch.tasks.cancel(s.t.id, [] as never)],
      ['retry(null)', (s) => s.orch.tasks.retry(null as never)],
      ['archive(null)', (s) => s.orch.tasks.archive(null as never)],
      ['get(null)', (s) => s.orch.tasks.get(null as never)],
      ['list(null)', (s) => s.orch.tasks.list(null as never)],
      ['children(null)', (s) => s.orch.tasks.children(null as never)],
      ['runs(null)', (s) => s.orch.tasks.runs(null as never)],
      ['events(null)', (s) => s.orch.tasks.events(null as never)],
      ['subscribe(null)', (s) => s.orch.tasks.subscribe(null as never)],
      ['subscribe(fn, null)', (s) => s.orch.tasks.subscribe(() => {}, null as never)],
      ['work(null)', (s) => s.orch.tasks.work(null as never)],
    ]
    it.for(nulls)('%s', async ([, call], ctx) => {
      const s = await setup(ctx)
      await expectInvalid(store, s.orch, () => call(s))
    })

    const unknownKeys: Array<[string, string, (s: Setup) => unknown]> = [
      ['create with delay', 'delay', (s) => s.orch.tasks.create({ title: 'later', delay: 1_000 } as never)],
      ['create with runAt', 'runAt', (s) => s.orch.tasks.create({ title: 'later', runAt: Date.now() + 60_000 } as never)],
      ['create with queue', 'queue', (s) => s.orch.tasks.create({ title: 'q', queue: 'emails' } as never)],
      ['claim with tenant (claimNext only)', 'tenant', (s) => s.orch.tasks.claim(s.t.id, { worker: 'w', tenant: 'x' } as never)],
      ['claimNext with a typo', 'asignee', (s) => s.orch.tasks.claimNext({ worker: 'w', asignee: 'bob' } as never)],
      ['heartbeat with a typo', 'lease', (s) => s.orch.tasks.heartbeat(s.claim, { lease: 10 } as never)],
      ['complete with a typo', 'reslt', (s) => s.orch.tasks.complete(s.claim, { reslt: 1 } as never)],
      ['fail with retry', 'retry', (s) => s.orch.tasks.fail(s.claim, { error: 'x', retry: false } as never)],
      ['release with a typo', 'reasn', (s) => s.orch.tasks.release(s.claim, { reasn: 'x' } as never)],
      ['block with a typo', 'until', (s) => s.orch.tasks.block(s.t.id, { reason: 'x', until: 5 } as never)],
      ['cancel with a typo', 'force', (s) => s.orch.tasks.cancel(s.t.id, { force: true } as never)],
      ['list with state', 'state', (s) => s.orch.tasks.list({ state: 'ready' } as never)],
      ['events with actorId', 'actorId', (s) => s.orch.tasks.events({ actorId: s.t.id } as never)],
      ['subscribe with since', 'since', (s) => s.orch.tasks.subscribe(() => {}, { since: 0 } as never)],
    ]
    it.for(unknownKeys)('%s', async ([, key, call], ctx) => {
      const s = await setup(ctx)
      await expectInvalid(store, s.orch, () => call(s), key)
      // Nothing was created: no task that would have been ready at once.
      expect(await s.orch.tasks.list({ status: 'ready' })).toEqual([expect.objectContaining({ id: s.t.id })])
    })

    it('undefined where an argument is optional stays fine', async (ctx) => {
      const s = await setup(ctx)
      expect(await s.orch.tasks.list(undefined)).toHaveLength(2)
      expect(await s.orch.tasks.events(undefined)).not.toEqual([])
      const claim = await s.orch.tasks.heartbeat(s.claim, undefined)
      await s.orch.tasks.release(claim, undefined)
      await s.orch.tasks.cancel(s.t.id, undefined)
    })
  })
})
