/**
 * Wake-ups between processes sharing one PostgreSQL schema: a commit is announced with
 * NOTIFY after it commits, so another orchestrator's subscribers and timer loop react at
 * once instead of at their next poll (here 10 s apart, far longer than the test waits).
 */
import { describe, expect, it } from 'vitest'
import { commitWakeOf } from '../../../persistence/postgres/open.js'
import { createOrchestrator, type JournalEntry } from '../../../src/index.js'
import { sleep, waitFor } from '../../helpers.js'
import { freshSchema, pgUrl } from '../../postgres-server.js'

describe('PostgreSQL wake-ups', () => {
  it("another orchestrator's commit reaches a subscriber and a timer loop long before their next poll", async (ctx) => {
    const schema = await freshSchema(ctx)
    const watcher = await createOrchestrator({ url: pgUrl, schema, pollMs: 10_000, defaults: { backoffBaseMs: 0, backoffMaxMs: 0 } })
    const writer = await createOrchestrator({ url: pgUrl, schema, pollMs: 10_000, runTimers: false })
    ctx.onTestFinished(async () => {
      await writer.close()
      await watcher.close()
    })
    // The watcher's loops have taken their first look: from now on only a wake-up is sooner than 10 s.
    await sleep(300)
    const seen: JournalEntry[] = []
    const stop = watcher.tasks.subscribe((entry) => seen.push(entry))
    ctx.onTestFinished(stop)

    const started = Date.now()
    const task = await writer.tasks.create({ title: 'from another process' })
    await waitFor(() => seen.some((e) => e.actorId === task.id), 5_000)
    expect(Date.now() - started).toBeLessThan(5_000)

    // A lease taken elsewhere lapses: the watcher's timer loop, woken by the claim's
    // announcement, sleeps until the lease is due and reclaims it.
    await writer.tasks.claimNext({ worker: 'w', leaseMs: 300 })
    await waitFor(async () => (await watcher.tasks.get(task.id))!.status === 'ready', 5_000)
    // Its subscriber hears of it too (the reclaim was this process's own commit).
    await waitFor(() => seen.some((e) => e.kind === 'reclaimed'), 5_000)
  })
})

describe('what a wake-up tells a timer loop', () => {
  it('a commit without timers says so; one with timers names the earliest due; a reconnect or an unknown payload says look now', () => {
    expect(commitWakeOf({ kind: 'commit', ids: null })).toEqual({ timerDue: null })
    expect(commitWakeOf({ kind: 'timer', ids: ['1767225600000'] })).toEqual({ timerDue: 1767225600000 })
    expect(commitWakeOf({ kind: '*', ids: null })).toEqual({ timerDue: 0 })
    for (const wake of [{ kind: 'timer', ids: null }, { kind: 'timer', ids: ['soon'] }, { kind: 'timer', ids: ['1', '2'] }, { kind: 'other', ids: [] }]) {
      expect(commitWakeOf(wake)).toEqual({ timerDue: 0 })
    }
  })
})
