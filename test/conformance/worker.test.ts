/**
 * Worker pools on every store: claim, heartbeat, retry, timeout, cancel, stop/drain, lease
 * loss, refused results, exclusive assignees and argument checks, through the public API
 * only (one suite, run on SQLite and on PostgreSQL through test/conformance/stores.ts).
 */
import { describe, expect, it } from 'vitest'
import {
  HandlerTimeoutError,
  LeaseLostError,
  NonRetryableError,
  startWorkerPool,
  TaskCancelledError,
  WorkerStoppedError,
  type Orchestrator,
  type Task,
} from '../../src/index.js'
import { runProc, sleep, waitFor } from '../helpers.js'
import { STORES } from './stores.js'

const statusOf = async (orch: Orchestrator, id: string) => (await orch.tasks.get(id))!.status

describe.each(STORES)('on $name', (store) => {
  describe('worker pools', () => {
    it('runs the handler and commits its result', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't', payload: { n: 2 } })
      const seen: Array<[Task, number, string]> = []
      const pool = orch.tasks.work({
        worker: 'w1',
        handler: async (task, { attempt, runId }) => {
          seen.push([task, attempt, runId])
          return { result: { doubled: (task.payload as { n: number }).n * 2 }, summary: 'done' }
        },
      })
      await waitFor(async () => (await statusOf(orch, t.id)) === 'done')
      const done = (await orch.tasks.get(t.id))!
      expect(done).toMatchObject({ result: { doubled: 4 }, summary: 'done' })
      expect(seen[0]![0].id).toBe(t.id)
      expect(seen[0]![1]).toBe(1)
      expect((await orch.tasks.runs(t.id))[0]).toMatchObject({ id: seen[0]![2], worker: 'w1', outcome: 'completed' })
      await pool.stop()
    })

    it('a thrown error fails the run and the task is retried with backoff until it succeeds', async (ctx) => {
      const orch = await store.open(ctx, { defaults: { backoffBaseMs: 20 } })
      const t = await orch.tasks.create({ title: 't', maxAttempts: 3 })
      const attempts: number[] = []
      const pool = orch.tasks.work({
        worker: 'w',
        handler: async (_task, { attempt }) => {
          attempts.push(attempt)
          if (attempt < 3) throw new Error(`transient ${attempt}`)
          return { summary: 'third time lucky' }
        },
      })
      await waitFor(async () => (await statusOf(orch, t.id)) === 'done')
      expect(attempts).toEqual([1, 2, 3])
      const runs = await orch.tasks.runs(t.id)
      expect(runs.map((r) => [r.outcome, r.error])).toEqual([
        ['failed', 'transient 1'],
        ['failed', 'transient 2'],
        ['completed', null],
      ])
      const kinds = (await orch.tasks.events({ taskId: t.id })).map((e) => e.kind)
      expect(kinds.filter((k) => k === 'retry_scheduled')).toHaveLength(2)
      await pool.stop()
    })

    it('a NonRetryableError fails the task at once', async (ctx) => {
      const orch = await store.open(ctx, { defaults: { backoffBaseMs: 10 } })
      const t = await orch.tasks.create({ title: 't', maxAttempts: 5 })
      const pool = orch.tasks.work({
        worker: 'w',
        handler: async () => {
          throw new NonRetryableError('bad input, retrying will not help')
        },
      })
      await waitFor(async () => (await statusOf(orch, t.id)) === 'failed')
      expect((await orch.tasks.get(t.id))!).toMatchObject({ attempts: 1, lastError: 'bad input, retrying will not help' })
      await pool.stop()
    })

    it('a handler past timeoutMs is aborted and its run failed; its late result is discarded', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't', maxAttempts: 1 })
      let reason: unknown
      const pool = orch.tasks.work({
        worker: 'w',
        timeoutMs: 50,
        handler: async (_task, { signal }) => {
          await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()))
          reason = signal.reason
          await sleep(30)
          return { result: 'too late' }
        },
      })
      await waitFor(async () => (await statusOf(orch, t.id)) === 'failed')
      await waitFor(() => reason)
      expect(reason).toBeInstanceOf(HandlerTimeoutError)
      await pool.stop()
      const task = (await orch.tasks.get(t.id))!
      expect(task.result).toBeNull()
      expect(task.lastError).toMatch(/timed out after 50 ms/)
    })

    it('cancel() of a running task aborts its handler and the result is discarded', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      let started = false
      let reason: unknown
      const pool = orch.tasks.work({
        worker: 'w',
        handler: async (_task, { signal }) => {
          started = true
          await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()))
          reason = signal.reason
          return { result: 'ignored' }
        },
      })
      await waitFor(() => started)
      await orch.tasks.cancel(t.id, { reason: 'user changed their mind' })
      await waitFor(() => reason)
      expect(reason).toBeInstanceOf(TaskCancelledError)
      await pool.stop()
      expect((await orch.tasks.get(t.id))!).toMatchObject({ status: 'cancelled', result: null })
      expect((await orch.tasks.runs(t.id)).map((r) => r.outcome)).toEqual(['cancelled'])
    })

    it('a lost lease aborts the handler and its eventual result is never committed', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      let reason: unknown
      // Heartbeats far apart: the 80 ms lease lapses while the handler runs.
      const pool = orch.tasks.work({
        worker: 'frozen',
        leaseMs: 80,
        heartbeatMs: 60_000,
        handler: async (_task, { signal }) => {
          await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()))
          reason = signal.reason
          return { result: 'stale' }
        },
      })
      await waitFor(() => reason)
      expect(reason).toBeInstanceOf(LeaseLostError)
      await pool.stop({ timeoutMs: 0 })
      const runs = await orch.tasks.runs(t.id)
      expect(runs[0]).toMatchObject({ worker: 'frozen', outcome: 'reclaimed' })
      expect(runs.some((r) => r.outcome === 'completed' && r.worker === 'frozen')).toBe(false)
      expect((await orch.tasks.get(t.id))!.result).toBeNull()
    })

    it('heartbeats keep a long handler alive past its lease', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      const pool = orch.tasks.work({
        worker: 'w',
        leaseMs: 300,
        heartbeatMs: 50,
        handler: async () => {
          await sleep(1_000)
          return { summary: 'slow but alive' }
        },
      })
      await waitFor(async () => (await statusOf(orch, t.id)) === 'done')
      expect((await orch.tasks.runs(t.id)).map((r) => r.outcome)).toEqual(['completed'])
      await pool.stop()
    })

    it('never runs more handlers than its concurrency, and works through every task', async (ctx) => {
      const orch = await store.open(ctx)
      for (let i = 0; i < 30; i++) await orch.tasks.create({ title: `t${i}` })
      let running = 0
      let peak = 0
      // The first handlers wait until four run at once, so the pool fills its slots however
      // long a claim takes (a PostgreSQL claim is a round trip or more: a handler of a few
      // ms finished before the next claim landed). If it never runs four, nothing finishes.
      let fourRan!: () => void
      const fourRunning = new Promise<void>((resolve) => (fourRan = resolve))
      const pool = orch.tasks.work({
        worker: 'w',
        concurrency: 4,
        // A pool that never ran four leaves handlers waiting: the close after the failed
        // test aborts them soon rather than after the default drain.
        stopTimeoutMs: 1_000,
        handler: async () => {
          peak = Math.max(peak, ++running)
          if (running === 4) fourRan()
          await fourRunning
          await sleep(5)
          running--
        },
      })
      await waitFor(async () => (await orch.tasks.list({ status: 'done', limit: 100 })).length === 30)
      expect(peak).toBe(4)
      // Never more claims than slots: at most `concurrency` tasks were ever running at once.
      const maxRunning = Math.max(
        ...(await orch.tasks.events({ limit: 10_000 })).reduce(
          (acc, e) => {
            const last = acc[acc.length - 1]!
            acc.push(last + (e.kind === 'claimed' ? 1 : e.kind === 'completed' ? -1 : 0))
            return acc
          },
          [0],
        ),
      )
      expect(maxRunning).toBe(4)
      await pool.stop()
    })

    it('stop() lets running handlers finish, then resolves; nothing more is claimed', async (ctx) => {
      const orch = await store.open(ctx)
      const a = await orch.tasks.create({ title: 'a' })
      let release!: () => void
      const gate = new Promise<void>((r) => (release = r))
      let started = false
      const pool = orch.tasks.work({
        worker: 'w',
        handler: async () => {
          started = true
          await gate
          return { summary: 'finished during drain' }
        },
      })
      await waitFor(() => started)
      const b = await orch.tasks.create({ title: 'b' })
      const stopping = pool.stop({ timeoutMs: 5_000 })
      setTimeout(release, 50)
      await stopping
      expect(await statusOf(orch, a.id)).toBe('done')
      expect(await statusOf(orch, b.id)).toBe('ready')
      expect(pool.active).toBe(0)
    })

    it('stop() past its timeout aborts the handler and releases the task at once (not after the lease)', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't', maxAttempts: 1 })
      let started = false
      let reason: unknown
      const pool = orch.tasks.work({
        worker: 'w',
        leaseMs: 60_000,
        handler: async (_task, { signal }) => {
          started = true
          await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()))
          reason = signal.reason
        },
      })
      // The handler itself, not just the claim (the task reads 'running' while the pool
      // still reads the task, a round trip on PostgreSQL).
      await waitFor(() => started)
      await pool.stop({ timeoutMs: 20 })
      expect(reason).toBeInstanceOf(WorkerStoppedError)
      const task = (await orch.tasks.get(t.id))!
      // Ready again immediately, and the released attempt does not use up maxAttempts: 1.
      expect(task).toMatchObject({ status: 'ready', attempts: 0 })
      expect((await orch.tasks.runs(t.id)).map((r) => r.outcome)).toEqual(['released'])
    })

    it('a run stopped while its task is still being read never starts its handler, and the task is released', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't', maxAttempts: 1 })
      // The pool's board, with its read of the claimed task held until the test lets it go.
      let reading: Promise<unknown> | null = null
      let letRead!: () => void
      const readGate = new Promise<void>((resolve) => (letRead = resolve))
      const methods = ['claimMany', 'heartbeat', 'complete', 'fail', 'release', 'subscribe'] as const
      const board = Object.fromEntries(methods.map((m) => [m, (orch.tasks[m] as (...args: unknown[]) => unknown).bind(orch.tasks)]))
      board.get = (id: unknown) => (reading ??= readGate.then(() => orch.tasks.get(id as string)))
      let called = false
      const pool = startWorkerPool(board as never, { worker: 'w', leaseMs: 60_000, handler: async () => void (called = true) }, 60_000)
      await waitFor(() => reading !== null)
      await pool.stop({ timeoutMs: 0 })
      letRead()
      await reading
      // Whatever the pool does once the read answers runs in microtasks: all done by now.
      await new Promise((resolve) => setImmediate(resolve))
      expect(called).toBe(false)
      expect(await orch.tasks.get(t.id)).toMatchObject({ status: 'ready', attempts: 0 })
      expect((await orch.tasks.runs(t.id)).map((r) => r.outcome)).toEqual(['released'])
    })

    it('picks up a task the moment it becomes ready in this process (no polling)', async (ctx) => {
      const orch = await store.open(ctx)
      const parent = await orch.tasks.create({ title: 'parent', assignee: 'human' })
      const child = await orch.tasks.create({ title: 'child', assignee: 'bot', parents: [parent.id] })
      const pool = orch.tasks.work({ worker: 'bot-1', assignee: 'bot', idlePollMs: 600_000, handler: async () => {} })
      await sleep(50) // the pool is idle now, and its safety poll is ten minutes away
      await orch.tasks.complete((await orch.tasks.claim(parent.id, { worker: 'human', assignee: 'human' }))!)
      await waitFor(async () => (await statusOf(orch, child.id)) === 'done', 5_000)
      await pool.stop()
    })

    it('handles a task created by another process, noticed through the journal', async (ctx) => {
      const orch = await store.open(ctx)
      const handled: string[] = []
      const pool = orch.tasks.work({
        worker: 'in-A',
        idlePollMs: 600_000,
        handler: async (task) => {
          handled.push(task.title)
        },
      })
      await sleep(50)
      const out = await runProc('create-one.mjs', [orch.spec, 'made in process B'])
      const id = JSON.parse(out.stdout).id
      await waitFor(async () => (await orch.tasks.get(id))!.status === 'done', 5_000)
      expect(handled).toEqual(['made in process B'])
      await orch.close() // also stops the pool
      expect(pool.active).toBe(0)
    })

    it('a handler returning a non-JSON result fails the task without retrying', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't', maxAttempts: 3 })
      const pool = orch.tasks.work({ worker: 'w', handler: async () => ({ result: { when: new Date() } as never }) })
      await waitFor(async () => (await statusOf(orch, t.id)) === 'failed')
      expect((await orch.tasks.get(t.id))!.lastError).toBe('RESULT_REFUSED: INVALID_INPUT: result.when is not a plain object (Date)')
      await pool.stop()
    })

    it('rejects bad options with INVALID_INPUT', async (ctx) => {
      const orch = await store.open(ctx)
      expect(() => orch.tasks.work({ worker: '', handler: async () => {} })).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }))
      expect(() => orch.tasks.work({ worker: 'w' } as never)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }))
      expect(() => orch.tasks.work({ worker: 'w', concurrency: 0, handler: async () => {} })).toThrow(
        expect.objectContaining({ code: 'INVALID_INPUT' }),
      )
    })
  })

  describe('worker pools always end the run they hold (issue 9)', () => {
    it('a handler error of 200,000 characters fails the run with the head of it and its length; retried per attempts', async (ctx) => {
      const orch = await store.open(ctx, { defaults: { backoffBaseMs: 10 } })
      const t = await orch.tasks.create({ title: 't', maxAttempts: 2 })
      const errors: unknown[] = []
      const message = 'x'.repeat(200_000)
      let calls = 0
      const pool = orch.tasks.work({
        worker: 'w',
        onError: (e) => errors.push(e),
        handler: async () => {
          calls++
          throw new Error(message)
        },
      })
      await waitFor(async () => (await statusOf(orch, t.id)) === 'failed')
      await pool.stop()
      expect(calls).toBe(2)
      const runs = await orch.tasks.runs(t.id)
      expect(runs.map((r) => r.outcome)).toEqual(['failed', 'failed'])
      for (const run of runs) {
        expect(run.error!.length).toBeLessThanOrEqual(100_000)
        expect(run.error!.startsWith('x'.repeat(1_000))).toBe(true)
        expect(run.error).toMatch(/truncated: 200000 characters in all\]$/)
      }
      expect((await orch.tasks.get(t.id))!.lastError).toBe(runs[1]!.error)
      expect(errors).toEqual([])
      expect(pool.active).toBe(0)
    })

    const deep = () => {
      let value: unknown = 'bottom'
      for (let i = 0; i < 5_000; i++) value = [value]
      return value
    }
    const cycle = () => {
      const a: Record<string, unknown> = {}
      a.self = a
      return a
    }
    const refusals: Array<[string, () => unknown, string]> = [
      ['a result nested 5,000 levels deep', () => ({ result: deep() }), 'INVALID_INPUT'],
      ['a BigInt result', () => ({ result: 10n }), 'INVALID_INPUT'],
      ['a class instance', () => ({ result: new (class Point { x = 1 })() }), 'INVALID_INPUT'],
      ['a function', () => ({ metadata: () => 1 }), 'INVALID_INPUT'],
      ['a cycle', () => ({ result: cycle() }), 'INVALID_INPUT'],
      ['a result over maxPayloadBytes', () => ({ result: 'y'.repeat(5_000) }), 'PAYLOAD_TOO_LARGE'],
      ['an unknown key', () => ({ reslt: 1 }), 'INVALID_INPUT'],
      ['not an object', () => 'done', 'INVALID_INPUT'],
      [
        'a getter that throws',
        () => ({
          get result() {
            throw new Error('boom')
          },
        }),
        'INTERNAL',
      ],
    ]
    it.for(refusals)('a handler returning %s: failed without retry, run closed, the error names why', async ([_name, value, code], ctx) => {
      const orch = await store.open(ctx, { maxPayloadBytes: 1_000 })
      const t = await orch.tasks.create({ title: 't', maxAttempts: 3 })
      const errors: unknown[] = []
      const pool = orch.tasks.work({ worker: 'w', onError: (e) => errors.push(e), handler: async () => value() as never })
      await waitFor(async () => (await statusOf(orch, t.id)) === 'failed')
      await pool.stop()
      const task = (await orch.tasks.get(t.id))!
      expect(task).toMatchObject({ status: 'failed', attempts: 1, runId: null })
      expect(task.lastError!.startsWith(`RESULT_REFUSED: ${code}: `)).toBe(true)
      const runs = await orch.tasks.runs(t.id)
      expect(runs).toHaveLength(1)
      expect(runs[0]).toMatchObject({ outcome: 'failed', error: task.lastError })
      expect(runs[0]!.endedAt).not.toBeNull()
      expect(errors).toEqual([])
      expect(pool.active).toBe(0)
      await orch.close()
    })
  })

  describe('worker pools and exclusive assignees (issue 9)', () => {
    it("a pool without assignee never takes another pool's tasks; a named pool and an anyAssignee pool do", async (ctx) => {
      const orch = await store.open(ctx)
      const bobs = await orch.tasks.create({ title: "bob's", assignee: 'bob', priority: 9 })
      const free = await orch.tasks.create({ title: 'free' })
      const seen: Record<string, string[]> = { generic: [], bob: [], any: [] }
      const generic = orch.tasks.work({ worker: 'generic', idlePollMs: 20, handler: async (t) => void seen.generic!.push(t.id) })
      await waitFor(async () => (await statusOf(orch, free.id)) === 'done')
      await sleep(100) // several claim attempts by the generic pool
      expect(await statusOf(orch, bobs.id)).toBe('ready')
      await generic.stop()
      const bob = orch.tasks.work({ worker: 'bob-1', assignee: 'bob', handler: async (t) => void seen.bob!.push(t.id) })
      await waitFor(async () => (await statusOf(orch, bobs.id)) === 'done')
      await bob.stop()
      const carols = await orch.tasks.create({ title: "carol's", assignee: 'carol' })
      const free2 = await orch.tasks.create({ title: 'free 2' })
      const any = orch.tasks.work({ worker: 'any', anyAssignee: true, handler: async (t) => void seen.any!.push(t.id) })
      await waitFor(async () => (await statusOf(orch, carols.id)) === 'done' && (await statusOf(orch, free2.id)) === 'done')
      await any.stop()
      expect(seen).toEqual({ generic: [free.id], bob: [bobs.id], any: [carols.id, free2.id] })
    })

    it('assignee and anyAssignee together are refused', async (ctx) => {
      const orch = await store.open(ctx)
      expect(() => orch.tasks.work({ worker: 'w', assignee: 'bob', anyAssignee: true, handler: async () => {} })).toThrow(
        expect.objectContaining({ code: 'INVALID_INPUT', details: expect.objectContaining({ field: 'anyAssignee' }) }),
      )
    })
  })

  describe('worker pool arguments (issue 9)', () => {
    it('unknown or wrong-typed work options are INVALID_INPUT naming the key, and start nothing', async (ctx) => {
      const orch = await store.open(ctx)
      const t = await orch.tasks.create({ title: 't' })
      const before = await store.tableCounts(orch.spec)
      const handler = async () => {}
      for (const [options, field] of [
        [{ worker: 'w', handler, rateLimit: 10 }, 'rateLimit'],
        [{ worker: 'w', handler, queue: 'emails' }, 'queue'],
        [{ worker: 'w', handler, concurency: 4 }, 'concurency'],
        [{ worker: 'w', handler, onError: 'log' }, 'onError'],
        [{ worker: 'w', handler, anyAssignee: 1 }, 'anyAssignee'],
      ] as const) {
        expect(() => orch.tasks.work(options as never)).toThrow(
          expect.objectContaining({ code: 'INVALID_INPUT', details: expect.objectContaining({ field }) }),
        )
      }
      expect(() => orch.tasks.work(null as never)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }))
      await sleep(50)
      expect(await store.tableCounts(orch.spec)).toEqual(before)
      expect((await orch.tasks.get(t.id))!.status).toBe('ready')
      await orch.close()
    })

    it('stop(null), stop(5) and unknown stop options are INVALID_INPUT; stop() and stop(undefined) work', async (ctx) => {
      const orch = await store.open(ctx)
      const pool = orch.tasks.work({ worker: 'w', handler: async () => {} })
      await expect(pool.stop(null as never)).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      await expect(pool.stop(5 as never)).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      await expect(pool.stop({ timeout: 10 } as never)).rejects.toMatchObject({ code: 'INVALID_INPUT', details: { field: 'timeout' } })
      await expect(pool.stop({ timeoutMs: -1 })).rejects.toMatchObject({ code: 'INVALID_INPUT', details: { field: 'timeoutMs' } })
      // None of those stopped it: it still runs tasks.
      const t = await orch.tasks.create({ title: 't' })
      await waitFor(async () => (await statusOf(orch, t.id)) === 'done')
      await pool.stop(undefined)
      await pool.stop()
      // Still checked once stopped.
      await expect(pool.stop(null as never)).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    })
  })

  describe('startWorkerPool arguments (issue 9)', () => {
    it('a missing board or lease default is INVALID_INPUT, not a TypeError', async (ctx) => {
      const orch = await store.open(ctx)
      const options = { worker: 'w', handler: async () => {} }
      expect(() => startWorkerPool(null as never, options, 1_000)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT', details: { field: 'board' } }))
      expect(() => startWorkerPool({} as never, options, 1_000)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }))
      expect(() => startWorkerPool(orch.tasks, options, undefined as never)).toThrow(
        expect.objectContaining({ code: 'INVALID_INPUT', details: expect.objectContaining({ field: 'defaultLeaseMs' }) }),
      )
      expect(() => startWorkerPool(orch.tasks, null as never, 1_000)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }))
      const pool = startWorkerPool(orch.tasks, options, 1_000)
      await pool.stop()
    })
  })
})
