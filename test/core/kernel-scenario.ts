/**
 * The committed step's scenario, written once against any store (the in-memory fake
 * through both drivers in kernel.test.ts, PostgreSQL in
 * test/persistence/postgres/store.test.ts): claim gate, fenced completion, the cascade to
 * a child, and a lapsed lease reclaimed by timer delivery. Times are checked against the
 * journal's own `at`s, since a real store's clock is its own.
 */
import { expect } from 'vitest'
import { TASK_MACHINE_ID } from '../../machines/task.js'
import type { Awaitable } from '../../persistence/store.js'
import { io, type Io } from '../../src/core/io.js'
import type { Kernel, StepResult, StepTx } from '../../src/core/kernel.js'

/** What the scenario reads back from a store, besides the kernel it drives. */
export interface ScenarioBoard {
  kernel: Kernel
  status(id: string): Awaitable<string>
  runs(): Awaitable<Array<{ taskId: string; runId: string; endedAt: number | null; outcome: string | null }>>
  timers(): Awaitable<Array<{ actor_id: string; due_at: number }>>
  journal(): Awaitable<Array<{ seq: number; actorId: string; kind: string; stateBefore: string | null; stateAfter: string; runId: string | null; at: number }>>
  /** Let `ms` pass on the store's clock. */
  advance(ms: number): Awaitable<void>
}

export function createTask(kernel: Kernel, id: string, parents: string[] = []) {
  return kernel.write(function* (tx) {
    yield* io((s) => s.insertTask({ id, title: id, body: null, assignee: null, tenant: null, priority: 0, payload: null, idempotencyKey: null, maxAttempts: 2 }, tx.now))
    for (const parent of parents) yield* io((s) => s.insertLink(parent, id, tx.now))
    return yield* kernel.createInTx(tx, TASK_MACHINE_ID, id, { id, maxAttempts: 2, backoffBaseMs: 0, backoffMaxMs: 0 }, { type: 'CREATE', assignee: null })
  })
}

export function sendTask(kernel: Kernel, id: string, event: Record<string, unknown> & { type: string }) {
  return kernel.write((tx: StepTx): Io<StepResult | null> => kernel.stepInTx(tx, TASK_MACHINE_ID, id, event))
}

/** Runs the scenario; returns the journal as [seq, actor, kind, before, after, run]. */
export async function kernelScenario(b: ScenarioBoard) {
  const { kernel } = b
  const send = (id: string, event: Record<string, unknown> & { type: string }) => sendTask(kernel, id, event)
  const atOf = async (actorId: string, kind: string) => (await b.journal()).find((e) => e.actorId === actorId && e.kind === kind)!.at
  await createTask(kernel, 'p')
  await createTask(kernel, 'c', ['p'])
  expect([await b.status('p'), await b.status('c')]).toEqual(['ready', 'todo'])

  // The claim gate: the child cannot be claimed while its parent is not done.
  const early = await send('c', { type: 'CLAIM', runId: 'r0', token: 'k0', worker: 'w', leaseMs: 1_000 })
  expect(early!.accepted).toBe(false)

  const claimed = await send('p', { type: 'CLAIM', runId: 'r1', token: 'k1', worker: 'w', leaseMs: 1_000 })
  expect(claimed!.accepted).toBe(true)
  expect((await b.runs()).map((r) => [r.taskId, r.runId, r.endedAt])).toEqual([['p', 'r1', null]])
  const claimedAt = await atOf('p', 'claimed')
  expect((await b.timers()).map((t) => [t.actor_id, t.due_at])).toEqual([['p', claimedAt + 1_000]])

  // A refused event writes nothing.
  const journalBefore = (await b.journal()).length
  const forged = await send('p', { type: 'COMPLETE', runId: 'r1', token: 'forged' })
  expect(forged!.accepted).toBe(false)
  expect(await b.journal()).toHaveLength(journalBefore)

  // Completing closes the run, cancels the lease timer and promotes the child in the same write.
  await send('p', { type: 'COMPLETE', runId: 'r1', token: 'k1', result: { ok: true } })
  expect([await b.status('p'), await b.status('c')]).toEqual(['done', 'ready'])
  expect((await b.runs())[0]).toMatchObject({ endedAt: await atOf('p', 'completed'), outcome: 'completed' })
  expect(await b.timers()).toHaveLength(0)

  // A lease that lapses is reclaimed by the timer delivery, through the same step.
  await send('c', { type: 'CLAIM', runId: 'r2', token: 'k2', worker: 'w', leaseMs: 500 })
  expect(await kernel.nextTimerDue()).toBe((await atOf('c', 'claimed')) + 500)
  await b.advance(600)
  expect(await kernel.deliverDueTimers()).toBe(1)
  expect(await b.status('c')).toBe('ready') // attempts left, no backoff: ready again at once
  expect((await b.runs())[1]).toMatchObject({ runId: 'r2', outcome: 'reclaimed' })

  return (await b.journal()).map((e) => [e.seq, e.actorId, e.kind, e.stateBefore, e.stateAfter, e.runId])
}

/** The journal every store must produce for the scenario (actor:kind, in seq order). */
export const SCENARIO_JOURNAL = ['p:created', 'c:created', 'p:claimed', 'p:completed', 'c:promoted', 'c:claimed', 'c:reclaimed']
