/**
 * Leases, heartbeats, fencing and retry backoff, with real (short) timers, on every store.
 * (Raw-SQL twins: test/persistence/<store>/leases.test.ts.)
 */
import { describe, expect, it } from 'vitest'
import { RunNotFoundError } from '../../src/index.js'
import { runProc, sleep, waitFor } from '../helpers.js'
import { openSameBoard } from './same-board.js'
import { STORES } from './stores.js'

describe.each(STORES)('on $name', (store) => {
  describe('leases', () => {
    it('a lease that lapses without heartbeat returns the task to ready; the old holder gets LEASE_LOST', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      const stale = (await orch.tasks.claim(t.id, { worker: 'slow', leaseMs: 60 }))!
      await waitFor(async () => (await orch.tasks.get(t.id))!.status === 'ready')
      const fresh = (await orch.tasks.claim(t.id, { worker: 'fast' }))!
      await expect(orch.tasks.heartbeat(stale)).rejects.toMatchObject({ code: 'LEASE_LOST' })
      await expect(orch.tasks.complete(stale, { result: 'late' })).rejects.toMatchObject({ code: 'LEASE_LOST' })
      await orch.tasks.complete(fresh, { result: 'on time' })
      const task = (await orch.tasks.get(t.id))!
      expect(task.result).toBe('on time')
      const runs = await orch.tasks.runs(t.id)
      expect(runs.map((r) => [r.worker, r.outcome])).toEqual([
        ['slow', 'reclaimed'],
        ['fast', 'completed'],
      ])
      const kinds = (await orch.tasks.events({ taskId: t.id })).map((e) => e.kind)
      expect(kinds).toEqual(['created', 'claimed', 'reclaimed', 'claimed', 'completed'])
    })

    it('heartbeats keep a short lease alive well past its length', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      // Heartbeats every 50 ms keep a 400 ms lease for three lease lengths.
      let claim = (await orch.tasks.claim(t.id, { worker: 'w', leaseMs: 400 }))!
      const started = Date.now()
      while (Date.now() - started < 1_200) {
        await sleep(50)
        claim = await orch.tasks.heartbeat(claim)
      }
      expect((await orch.tasks.get(t.id))!.status).toBe('running')
      // PostgreSQL reckons leases by the database clock: the test server runs on this host.
      expect(claim.leaseExpiresAt).toBeGreaterThan(Date.now())
      // The run row records the extended lease too.
      expect((await orch.tasks.runs(t.id))[0]!.leaseExpiresAt).toBe(claim.leaseExpiresAt)
      await orch.tasks.complete(claim)
    })

    it('a heartbeat can change the lease length', async (ctx) => {
      // Timers delivered by hand: on a loaded machine the timer loop could end the 50 ms
      // lease before the heartbeat arrives, which is not what this test is about.
      const orch = await store.open(ctx, { runTimers: false })
      const t = await orch.tasks.create({ title: 't' })
      const claim = (await orch.tasks.claim(t.id, { worker: 'w', leaseMs: 50 }))!
      const extended = await orch.tasks.heartbeat(claim, { leaseMs: 10_000 })
      expect(extended.leaseExpiresAt - Date.now()).toBeGreaterThan(5_000)
      await sleep(150)
      // Past the old lease: its timer moved with the heartbeat, nothing is due.
      expect(await orch.runDueTimers()).toBe(0)
      expect((await orch.tasks.get(t.id))!.status).toBe('running')
    })

    it('the last attempt losing its lease fails the task instead of handing it out forever', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 'poison', maxAttempts: 2 })
      await orch.tasks.claim(t.id, { worker: 'w1', leaseMs: 30 })
      await waitFor(async () => (await orch.tasks.get(t.id))!.status === 'ready')
      await orch.tasks.claim(t.id, { worker: 'w2', leaseMs: 30 })
      await waitFor(async () => (await orch.tasks.get(t.id))!.status === 'failed')
      expect((await orch.tasks.get(t.id))!.lastError).toMatch(/lease expired/)
    })

    it('a lease held by a process killed with SIGKILL is reclaimed by another process', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      const result = await runProc('claim-and-die.mjs', [orch.spec, t.id, '200'])
      expect(result.signal).toBe('SIGKILL')
      expect((await orch.tasks.get(t.id))!.status).toBe('running')
      await waitFor(async () => (await orch.tasks.get(t.id))!.status === 'ready')
      const claim = (await orch.tasks.claim(t.id, { worker: 'survivor' }))!
      await orch.tasks.complete(claim)
      const runs = await orch.tasks.runs(t.id)
      expect(runs.map((r) => r.outcome)).toEqual(['reclaimed', 'completed'])
      expect(runs[0]!.worker).toMatch(/^doomed-/)
    })
  })

  describe('retries', () => {
    it('a retryable failure waits out an exponential backoff in a durable timer, then is ready again', async (ctx) => {
      // Timers delivered by hand (runDueTimers): on a loaded machine the loop could deliver
      // the 40-80 ms retry before the claim that must find the task still backing off.
      const orch = await store.open(ctx, { runTimers: false, defaults: { backoffBaseMs: 80, backoffMaxMs: 1_000 } })
      const deliverDue = () => waitFor(async () => (await orch.runDueTimers()) === 1)
      const t = await orch.tasks.create({ title: 't', maxAttempts: 3 })
      const c1 = (await orch.tasks.claim(t.id, { worker: 'w' }))!
      const waiting = await orch.tasks.fail(c1, { error: 'rate limited' })
      expect(waiting).toMatchObject({ status: 'todo', state: 'backoff', lastError: 'rate limited' })
      // Attempt 1: between half and all of the 80 ms base, counted from the failing step.
      expect(waiting.retryAt! - waiting.updatedAt).toBeGreaterThanOrEqual(40)
      expect(waiting.retryAt! - waiting.updatedAt).toBeLessThanOrEqual(80)
      expect(await orch.tasks.claim(t.id, { worker: 'w' })).toBeNull()
      await deliverDue()
      // Not delivered before it was due (the database clock on PostgreSQL: the test server
      // runs on this host).
      expect(Date.now()).toBeGreaterThanOrEqual(waiting.retryAt!)
      expect((await orch.tasks.get(t.id))!.status).toBe('ready')

      const c2 = (await orch.tasks.claim(t.id, { worker: 'w' }))!
      const again = await orch.tasks.fail(c2, { error: 'rate limited' })
      // Attempt 2: the base doubles to 160 ms.
      expect(again.retryAt! - again.updatedAt).toBeGreaterThanOrEqual(80)
      expect(again.retryAt! - again.updatedAt).toBeLessThanOrEqual(160)
      await deliverDue()
      expect(Date.now()).toBeGreaterThanOrEqual(again.retryAt!)
      expect((await orch.tasks.get(t.id))!.status).toBe('ready')
      const c3 = (await orch.tasks.claim(t.id, { worker: 'w' }))!
      expect((await orch.tasks.fail(c3, { error: 'still' })).status).toBe('failed')
      const kinds = (await orch.tasks.events({ taskId: t.id })).map((e) => e.kind)
      expect(kinds).toEqual([
        'created', 'claimed', 'retry_scheduled', 'promoted', 'claimed', 'retry_scheduled', 'promoted', 'claimed', 'failed',
      ])
    })

    it('runDueTimers resolves only once every timer due is delivered, while the timer loop runs too', async (ctx) => {
      // On PostgreSQL runDueTimers once skipped a timer the loop of its own process had
      // locked (SKIP LOCKED) and resolved before the loop's delivery committed.
      const orch = await store.open(ctx, { defaults: { backoffBaseMs: 0, backoffMaxMs: 0 } })
      const t = await orch.tasks.create({ title: 't', maxAttempts: 1_000 })
      for (let round = 1; round <= 40; round++) {
        const claim = (await orch.tasks.claim(t.id, { worker: 'w' }))!
        expect(claim).toMatchObject({ attempt: round })
        await orch.tasks.fail(claim, { error: 'again' })
        await orch.runDueTimers()
        expect((await orch.tasks.get(t.id))!.status).toBe('ready')
      }
    })

    it('a backoff timer survives a restart of the only process', async (ctx) => {
      const first = await store.open(ctx, { defaults: { backoffBaseMs: 100 } })
      const t = await first.tasks.create({ title: 't' })
      await first.tasks.fail((await first.tasks.claim(t.id, { worker: 'w' }))!, { error: 'x' })
      await first.close()
      await sleep(150)
      const second = await openSameBoard(ctx, first.spec)
      await waitFor(async () => (await second.tasks.get(t.id))!.status === 'ready')
    })

    it('cancelling during backoff removes the retry timer', async (ctx) => {
      const orch = await store.open(ctx, { defaults: { backoffBaseMs: 60_000 } })
      const t = await orch.tasks.create({ title: 't' })
      await orch.tasks.fail((await orch.tasks.claim(t.id, { worker: 'w' }))!, { error: 'x' })
      // The lease timer went with the run; the retry timer is the one left (its id is
      // checked with raw SQL in test/persistence/<store>/leases.test.ts).
      expect((await store.tableCounts(orch.spec)).timers).toBe(1)
      await orch.tasks.cancel(t.id)
      expect((await store.tableCounts(orch.spec)).timers).toBe(0)
    })
  })

  describe('RUN_NOT_FOUND (issue 9)', () => {
    it('a run id the task never had is RUN_NOT_FOUND and writes nothing; a run no longer held stays LEASE_LOST', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      const other = await orch.tasks.create({ title: 'other' })
      const claim = (await orch.tasks.claim(t.id, { worker: 'w' }))!
      const otherClaim = (await orch.tasks.claim(other.id, { worker: 'w' }))!
      const madeUp = { ...claim, runId: 'r_never_existed' }
      // A real run, but of another task: this task never had it.
      const elsewhere = { ...claim, runId: otherClaim.runId }
      for (const stale of [madeUp, elsewhere]) {
        const before = await store.tableCounts(orch.spec)
        for (const call of [
          () => orch.tasks.complete(stale),
          () => orch.tasks.fail(stale, { error: 'x' }),
          () => orch.tasks.heartbeat(stale),
          () => orch.tasks.release(stale),
        ]) {
          await expect(call()).rejects.toMatchObject({ code: 'RUN_NOT_FOUND', details: { taskId: t.id, runId: stale.runId } })
        }
        await expect(orch.tasks.complete(stale)).rejects.toBeInstanceOf(RunNotFoundError)
        expect(await store.tableCounts(orch.spec)).toEqual(before)
      }
      // The run existed and ended: LEASE_LOST, as before.
      await orch.tasks.complete(claim)
      await expect(orch.tasks.complete(claim)).rejects.toMatchObject({ code: 'LEASE_LOST' })
      await expect(orch.tasks.heartbeat(claim)).rejects.toMatchObject({ code: 'LEASE_LOST' })
    })
  })
})
