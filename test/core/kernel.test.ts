/**
 * The committed step is storage-free: the kernel with the task kind runs on an in-memory
 * store (no database), through the synchronous driver (as SQLite runs it) and through
 * the asynchronous one (every operation a promise, as PostgreSQL runs it), and both give
 * the same journal, runs, timers and cascade.
 */
import { describe, expect, it } from 'vitest'
import { TASK_MACHINE_ID } from '../../machines/task.js'
import { io, type Io } from '../../src/core/io.js'
import { Kernel, type StepResult, type StepTx } from '../../src/core/kernel.js'
import { taskKind } from '../../src/core/task-kind.js'
import { MemoryStore, memoryDriver } from './memory-store.js'

const T0 = 1_000_000

function board(async: boolean) {
  const store = new MemoryStore()
  let clock = T0
  const kernel = new Kernel(memoryDriver(store, { async, now: () => clock }))
  kernel.register(taskKind())
  const create = (id: string, parents: string[] = []) =>
    kernel.write(function* (tx) {
      yield* io((s) => s.insertTask({ id, title: id, body: null, assignee: null, tenant: null, priority: 0, payload: null, idempotencyKey: null, maxAttempts: 2 }, tx.now))
      for (const parent of parents) yield* io((s) => s.insertLink(parent, id, tx.now))
      return yield* kernel.createInTx(tx, TASK_MACHINE_ID, id, { id, maxAttempts: 2, backoffBaseMs: 0, backoffMaxMs: 0 }, { type: 'CREATE', assignee: null })
    })
  const send = (id: string, event: Record<string, unknown> & { type: string }) =>
    kernel.write((tx: StepTx): Io<StepResult | null> => kernel.stepInTx(tx, TASK_MACHINE_ID, id, event))
  const status = (id: string) => store.actors.get('tasks')!.get(id)!.columns.status
  return { store, kernel, create, send, status, advance: (ms: number) => (clock += ms) }
}

async function scenario(async: boolean) {
  const b = board(async)
  await b.create('p')
  await b.create('c', ['p'])
  expect([b.status('p'), b.status('c')]).toEqual(['ready', 'todo'])

  // The claim gate: the child cannot be claimed while its parent is not done.
  const early = await b.send('c', { type: 'CLAIM', runId: 'r0', token: 'k0', worker: 'w', leaseMs: 1_000 })
  expect(early!.accepted).toBe(false)

  const claimed = await b.send('p', { type: 'CLAIM', runId: 'r1', token: 'k1', worker: 'w', leaseMs: 1_000 })
  expect(claimed!.accepted).toBe(true)
  expect(b.store.runs.map((r) => [r.taskId, r.runId, r.endedAt])).toEqual([['p', 'r1', null]])
  expect([...b.store.timers.values()].map((t) => [t.actor_id, t.due_at])).toEqual([['p', T0 + 1_000]])

  // A refused event writes nothing.
  const journalBefore = b.store.journal.length
  const forged = await b.send('p', { type: 'COMPLETE', runId: 'r1', token: 'forged' })
  expect(forged!.accepted).toBe(false)
  expect(b.store.journal).toHaveLength(journalBefore)

  // Completing closes the run, cancels the lease timer and promotes the child in the same write.
  await b.send('p', { type: 'COMPLETE', runId: 'r1', token: 'k1', result: { ok: true } })
  expect([b.status('p'), b.status('c')]).toEqual(['done', 'ready'])
  expect(b.store.runs[0]).toMatchObject({ endedAt: T0, outcome: 'completed' })
  expect(b.store.timers.size).toBe(0)

  // A lease that lapses is reclaimed by the timer delivery, through the same step.
  await b.send('c', { type: 'CLAIM', runId: 'r2', token: 'k2', worker: 'w', leaseMs: 500 })
  expect(await b.kernel.nextTimerDue()).toBe(T0 + 500)
  b.advance(600)
  expect(await b.kernel.deliverDueTimers()).toBe(1)
  expect(b.status('c')).toBe('ready') // attempts left, no backoff: ready again at once
  expect(b.store.runs[1]).toMatchObject({ runId: 'r2', outcome: 'reclaimed' })

  return b.store.journal.map((e) => [e.seq, e.actorId, e.kind, e.stateBefore, e.stateAfter, e.runId])
}

describe('the committed step on an in-memory store', () => {
  it('runs the same program synchronously and asynchronously, with the same outcome', async () => {
    const sync = await scenario(false)
    const async = await scenario(true)
    expect(async).toEqual(sync)
    expect(sync.map(([, actor, kind]) => `${actor}:${kind}`)).toEqual([
      'p:created',
      'c:created',
      'p:claimed',
      'p:completed',
      'c:promoted',
      'c:claimed',
      'c:reclaimed',
    ])
  })

  it('an operation that fails is thrown into the program at its yield', async () => {
    for (const async of [false, true]) {
      const { kernel } = board(async)
      let cleanedUp = false
      const failing = kernel.write(function* () {
        try {
          yield* io((s) => s.insertLink('a', 'b', 0))
          yield* io(() => {
            throw new Error('the store refused')
          })
          return 'not reached'
        } finally {
          cleanedUp = true
        }
      })
      await expect(failing).rejects.toThrow('the store refused')
      expect(cleanedUp).toBe(true)
    }
  })
})
