/**
 * Group commit on SQLite: writes issued in the same turn of the event loop share one
 * IMMEDIATE transaction and one COMMIT, each isolated in a savepoint. Wired by hand (the
 * kernel over a counting driver, the board over that kernel) to see the transactions;
 * what callers see is in the conformance suite (test/conformance/claim-many.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest'
import { openSqlite, type OpenedStore } from '../../../persistence/sqlite/open.js'
import { io } from '../../../src/core/io.js'
import { GroupAbortedError, Kernel, type StoreDriver } from '../../../src/core/kernel.js'
import { taskKind } from '../../../src/core/task-kind.js'
import { JournalFeed } from '../../../src/journal-feed.js'
import { StoreTaskBoard } from '../../../src/task-board.js'
import { tableCounts, tempDbPath } from '../../helpers.js'

const opened: OpenedStore[] = []
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close()
})

async function wire(options: { failGroupOnce?: unknown } = {}) {
  const path = tempDbPath()
  const store = await openSqlite({ path, readOnly: false, synchronous: 'NORMAL', checkpoint: 'inline', busyTimeoutMs: 2_000, busyRetryMs: 5_000 })
  opened.push(store)
  const transactions = { alone: 0, groups: [] as number[] }
  let failGroup = options.failGroupOnce
  const driver: StoreDriver = {
    write: (program) => {
      transactions.alone++
      return store.driver.write(program)
    },
    writeEach: (programs) => {
      transactions.groups.push(programs.length)
      if (failGroup !== undefined) {
        const error = failGroup
        failGroup = undefined
        return Promise.reject(error)
      }
      return store.driver.writeEach!(programs)
    },
    now: () => store.driver.now(),
    nextTimerDue: () => store.driver.nextTimerDue(),
  }
  const errors: unknown[] = []
  const kernel = new Kernel(driver, { onError: (error) => errors.push(error) })
  kernel.register(taskKind())
  const feed = new JournalFeed(store.journal, 10, () => {}, true)
  await feed.open()
  const board = new StoreTaskBoard({
    kernel,
    reads: store.reads,
    feed,
    defaults: { leaseMs: 30_000, maxAttempts: 3, backoffBaseMs: 100, backoffMaxMs: 1_000 },
    maxPayloadBytes: 1_000_000,
    assertOpen: () => {},
    guard: (operation) => operation(),
  })
  const published: number[] = []
  kernel.onCommit((commit) => published.push(...commit.journal.map((e) => e.seq)))
  return { path, kernel, board, transactions, published, errors }
}

describe('group commit (SQLite)', () => {
  it('writes issued together share one transaction; a lone write runs alone, without a savepoint', async () => {
    const { board, transactions, published } = await wire()
    const lone = await board.create({ title: 'lone' })
    expect(transactions).toEqual({ alone: 1, groups: [] })

    const tasks = await Promise.all(Array.from({ length: 10 }, (_, i) => board.create({ title: `t${i}`, parents: [lone.id] })))
    expect(transactions).toEqual({ alone: 1, groups: [10] })
    // Each caller got its own task, committed, in call order.
    expect(tasks.map((t) => t.title)).toEqual(Array.from({ length: 10 }, (_, i) => `t${i}`))
    for (const task of tasks) expect(await board.get(task.id)).toEqual(task)
    // Published after the COMMIT, every entry once, in seq order.
    expect(published).toEqual([...published].sort((a, b) => a - b))
    expect(new Set(published).size).toBe(11)
  })

  it('a program that throws is rolled back alone: what it wrote is gone, the others commit', async () => {
    const { path, kernel, board, transactions } = await wire()
    const before = tableCounts(path)
    const half = kernel.write(function* (tx) {
      // Writes a task row, then fails: the savepoint must take the row back.
      yield* io((s) => s.insertTask({ id: 't_half', title: 'half', body: null, assignee: null, tenant: null, priority: 0, payload: null, idempotencyKey: null, maxAttempts: 1 }, tx.now))
      throw new Error('the program failed half way')
    })
    const results = await Promise.allSettled([board.create({ title: 'a' }), half, board.create({ title: 'b' }), board.create({ title: 'x', parents: ['t_missing'] })])
    expect(transactions.groups).toEqual([4])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected'])
    expect((results[1] as PromiseRejectedResult).reason.message).toBe('the program failed half way')
    expect((results[3] as PromiseRejectedResult).reason.code).toBe('TASK_NOT_FOUND')
    expect(await board.get('t_half')).toBeNull()
    const after = tableCounts(path)
    expect(after.tasks! - before.tasks!).toBe(2)
    expect(after.journal! - before.journal!).toBe(2)
  })

  it('a later program of the group sees what the earlier ones wrote: claims in one group take different tasks', async () => {
    const { board, transactions } = await wire()
    for (let i = 0; i < 3; i++) await board.create({ title: `r${i}` })
    const claims = await Promise.all(Array.from({ length: 5 }, (_, i) => board.claimNext({ worker: `w${i}` })))
    expect(transactions.groups).toEqual([5])
    const taken = claims.filter((c) => c !== null)
    expect(taken).toHaveLength(3)
    expect(new Set(taken.map((c) => c!.taskId)).size).toBe(3)
    // Completing in one group too: each run closed once, each task done.
    await Promise.all(taken.map((c) => board.complete(c!, { summary: 'ok' })))
    for (const c of taken) expect(await board.runs(c!.taskId)).toEqual([expect.objectContaining({ id: c!.runId, outcome: 'completed' })])
  })

  it('steps of one actor in one group follow each other (the second starts from the first)', async () => {
    const { board } = await wire()
    const t = await board.create({ title: 't' })
    const claim = (await board.claim(t.id, { worker: 'w' }))!
    const [beat, done, late] = await Promise.allSettled([board.heartbeat(claim, { leaseMs: 60_000 }), board.complete(claim, { summary: 'ok' }), board.heartbeat(claim)])
    expect(beat.status).toBe('fulfilled')
    expect(done).toMatchObject({ status: 'fulfilled', value: { status: 'done', summary: 'ok' } })
    // The completion ended the run: the heartbeat after it in the same group is refused.
    expect(late).toMatchObject({ status: 'rejected', reason: { code: 'LEASE_LOST' } })
  })

  it('a commit listener that throws does not leave the other callers of the group waiting', async () => {
    const { kernel, board, errors } = await wire()
    let throws = true
    kernel.onCommit(() => {
      if (throws) {
        throws = false
        throw new Error('a listener failed')
      }
    })
    const tasks = await Promise.all([board.create({ title: 'a' }), board.create({ title: 'b' }), board.create({ title: 'c' })])
    expect(tasks.map((t) => t.title)).toEqual(['a', 'b', 'c'])
    expect(errors).toEqual([new Error('a listener failed')])
  })

  it('when one program undid the whole transaction, each write is rerun on its own and gets its own fate', async () => {
    const { board, transactions } = await wire({ failGroupOnce: new GroupAbortedError(new Error('disk full')) })
    const results = await Promise.allSettled([board.create({ title: 'a' }), board.create({ title: 'x', parents: ['t_missing'] }), board.create({ title: 'b' })])
    expect(transactions).toEqual({ alone: 3, groups: [3] })
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
  })

  it('when the transaction cannot run at all, every write of the group gets that error and nothing is written', async () => {
    const busy = Object.assign(new Error('database is busy'), { code: 'STORE_BUSY' })
    const { path, board, transactions } = await wire({ failGroupOnce: busy })
    const before = tableCounts(path)
    const results = await Promise.allSettled([board.create({ title: 'a' }), board.create({ title: 'b' })])
    expect(transactions).toEqual({ alone: 0, groups: [2] })
    expect(results.map((r) => (r.status === 'rejected' ? r.reason.code : r.status))).toEqual(['STORE_BUSY', 'STORE_BUSY'])
    expect(tableCounts(path)).toEqual(before)
  })
})
