/**
 * Pure tests of the task machine: no database, no clock. Each test drives the machine
 * with events (time and parent facts inside them) and checks the next state and the
 * actions the runtime would apply.
 */
import { describe, expect, it } from 'vitest'
import { initialTransition, transition, type AnyMachineSnapshot } from 'xstate'
import { assigneeAdmits, retryDelayMs, taskMachine, type ParentFacts, type TaskContext, type TaskEvent } from '../../machines/task.js'

type Ev = TaskEvent extends infer E ? (E extends TaskEvent ? Omit<E, 'at' | 'facts'> : never) : never

const OK: ParentFacts = { unfinished: 0, failed: [] }
const WAITING: ParentFacts = { unfinished: 1, failed: [] }
const FAILED: ParentFacts = { unfinished: 1, failed: ['p1'] }

interface Action {
  type: string
  params?: any
}

function send(snapshot: AnyMachineSnapshot, event: Ev, facts: ParentFacts = OK, at = 1_000) {
  const [next, actions] = transition(taskMachine, snapshot as never, { ...event, at, facts } as TaskEvent)
  return { next: next as AnyMachineSnapshot, actions: actions as Action[], ctx: next.context as TaskContext }
}

function kinds(actions: Action[]): string[] {
  return actions.filter((a) => a.type === 'journal').flatMap((a) => a.params.kinds)
}
function only(actions: Action[], type: string): Action[] {
  return actions.filter((a) => a.type === type)
}

function created(facts: ParentFacts = OK, maxAttempts = 3): AnyMachineSnapshot {
  const [initial] = initialTransition(taskMachine, { id: 't1', maxAttempts, backoffBaseMs: 100, backoffMaxMs: 1_000 })
  return send(initial as AnyMachineSnapshot, { type: 'CREATE' }, facts).next
}

const CLAIM = { type: 'CLAIM', runId: 'r1', token: 'tok', worker: 'w1', leaseMs: 500 } as const
function running(maxAttempts = 3): AnyMachineSnapshot {
  return send(created(OK, maxAttempts), CLAIM).next
}

describe('create', () => {
  it('is ready when every parent is done (or there are none)', () => {
    const s = created(OK)
    expect(s.value).toBe('ready')
  })
  it('waits in todo while a parent is unfinished', () => {
    expect(created(WAITING).value).toBe('todo')
  })
  it('is blocked, naming the parent, when a parent failed or was cancelled', () => {
    const s = created(FAILED)
    expect(s.value).toBe('blocked')
    expect((s.context as TaskContext).blockedByParent).toBe('p1')
  })
  it('journals created', () => {
    const [initial] = initialTransition(taskMachine, { id: 't1', maxAttempts: 3, backoffBaseMs: 1, backoffMaxMs: 1 })
    expect(kinds(send(initial as AnyMachineSnapshot, { type: 'CREATE' }).actions)).toEqual(['created'])
  })
})

describe('the claim gate', () => {
  it('claims a ready task whose parents are all done: run opened, lease timer raised', () => {
    const { next, actions, ctx } = send(created(), CLAIM, OK, 2_000)
    expect(next.value).toBe('running')
    expect(ctx).toMatchObject({ attempts: 1, runId: 'r1', token: 'tok', worker: 'w1', leaseExpiresAt: 2_500 })
    expect(only(actions, 'openRun')[0]!.params).toEqual({ runId: 'r1', worker: 'w1', attempt: 1, leaseExpiresAt: 2_500, claimKey: null })
    const raise = only(actions, 'xstate.raise')[0]!
    expect(raise.params).toMatchObject({ id: 'lease', delay: 500, event: { type: 'LEASE_EXPIRED', runId: 'r1' } })
    expect(kinds(actions)).toEqual(['claimed'])
  })
  it('refuses a ready task with an unfinished parent and demotes it (seed 002)', () => {
    const { next, actions } = send(created(), CLAIM, WAITING)
    expect(next.value).toBe('todo')
    expect(kinds(actions)).toEqual(['claim_rejected'])
    expect(only(actions, 'openRun')).toEqual([])
  })
  it('refuses a ready task with a failed parent and blocks it', () => {
    const { next, actions } = send(created(), CLAIM, FAILED)
    expect(next.value).toBe('blocked')
    expect(kinds(actions)).toEqual(['claim_rejected', 'blocked'])
  })
  it.each(['todo', 'running', 'blocked'] as const)('ignores CLAIM in %s', (state) => {
    const s = state === 'todo' ? created(WAITING) : state === 'running' ? running() : created(FAILED)
    const { next, actions } = send(s, { ...CLAIM, runId: 'r2', token: 'other' })
    expect(next).toBe(s)
    expect(actions).toEqual([])
  })
})

describe('fencing', () => {
  it('accepts heartbeat/complete only with the current run and token', () => {
    const s = running()
    for (const bad of [
      { runId: 'r1', token: 'wrong' },
      { runId: 'r0', token: 'tok' },
    ]) {
      expect(send(s, { type: 'HEARTBEAT', ...bad }).next).toBe(s)
      expect(send(s, { type: 'COMPLETE', ...bad }).next).toBe(s)
      expect(send(s, { type: 'FAIL', ...bad, error: 'x', retryable: true, jitter: 0 }).next).toBe(s)
    }
  })
  it('heartbeat extends the lease and replaces the lease timer', () => {
    const { next, actions, ctx } = send(running(), { type: 'HEARTBEAT', runId: 'r1', token: 'tok', leaseMs: 800 }, OK, 1_300)
    expect(next.value).toBe('running')
    expect(ctx.leaseExpiresAt).toBe(2_100)
    expect(only(actions, 'xstate.raise')[0]!.params).toMatchObject({ id: 'lease', delay: 800 })
    expect(only(actions, 'xstate.cancel')).toEqual([])
    expect(kinds(actions)).toEqual(['heartbeat'])
  })
})

describe('complete', () => {
  it('closes the run as completed, cancels the lease timer, promotes children', () => {
    const { next, actions, ctx } = send(
      running(),
      { type: 'COMPLETE', runId: 'r1', token: 'tok', result: { ok: 1 }, summary: 's' },
      OK,
      1_200,
    )
    expect(next.value).toBe('done')
    expect(ctx.completedAt).toBe(1_200)
    expect(only(actions, 'closeRun')[0]!.params).toMatchObject({ runId: 'r1', outcome: 'completed', result: { ok: 1 }, summary: 's' })
    expect(only(actions, 'xstate.cancel')[0]!.params).toEqual({ sendId: 'lease' })
    expect(only(actions, 'promoteChildren')).toHaveLength(1)
    expect(kinds(actions)).toEqual(['completed'])
  })
})

describe('fail and retry', () => {
  const FAIL = { type: 'FAIL', runId: 'r1', token: 'tok', error: 'boom', retryable: true, jitter: 0.5 } as const

  it('with attempts left: backoff with a durable retry timer, run closed as failed', () => {
    const { next, actions, ctx } = send(running(), FAIL, OK, 2_000)
    expect(next.value).toBe('backoff')
    // attempt 1, base 100: exponential 100, equal jitter 0.5 -> 75
    expect(ctx.retryAt).toBe(2_075)
    expect(ctx.lastError).toBe('boom')
    expect(only(actions, 'closeRun')[0]!.params).toMatchObject({ outcome: 'failed', error: 'boom' })
    expect(only(actions, 'xstate.raise')[0]!.params).toMatchObject({ id: 'retry', delay: 75, event: { type: 'RETRY_DUE' } })
    expect(kinds(actions)).toEqual(['retry_scheduled'])
  })
  it('non-retryable: failed at once, children blocked', () => {
    const { next, actions } = send(running(), { ...FAIL, retryable: false })
    expect(next.value).toBe('failed')
    expect(only(actions, 'blockChildren')[0]!.params).toEqual({ status: 'failed' })
    expect(kinds(actions)).toEqual(['failed'])
  })
  it('out of attempts: failed', () => {
    expect(send(running(1), FAIL).next.value).toBe('failed')
  })
  it('RETRY_DUE passes the gate again', () => {
    const b = send(running(), FAIL).next
    expect(send(b, { type: 'RETRY_DUE' }, OK).next.value).toBe('ready')
    expect(send(b, { type: 'RETRY_DUE' }, WAITING).next.value).toBe('todo')
    expect(send(b, { type: 'RETRY_DUE' }, FAILED).next.value).toBe('blocked')
    expect(kinds(send(b, { type: 'RETRY_DUE' }, OK).actions)).toEqual(['promoted'])
  })
  it('leaving backoff early cancels the retry timer', () => {
    const b = send(running(), FAIL).next
    const { next, actions } = send(b, { type: 'CANCEL', reason: 'no' })
    expect(next.value).toBe('cancelled')
    expect(only(actions, 'xstate.cancel')[0]!.params).toEqual({ sendId: 'retry' })
  })
  it('retry of a failed task resets attempts, restores children and passes the gate', () => {
    const f = send(running(1), { ...FAIL, retryable: false }).next
    const { next, actions, ctx } = send(f, { type: 'RETRY' }, OK)
    expect(next.value).toBe('ready')
    expect(ctx.attempts).toBe(0)
    expect(only(actions, 'restoreChildren')).toHaveLength(1)
    expect(kinds(actions)).toEqual(['retried'])
  })
  it('backoff delay doubles per attempt, is capped, and jitter stays within [half, full]', () => {
    expect(retryDelayMs(100, 10_000, 1, 0)).toBe(50)
    expect(retryDelayMs(100, 10_000, 1, 0.999)).toBe(100)
    expect(retryDelayMs(100, 10_000, 3, 0)).toBe(200)
    expect(retryDelayMs(100, 1_000, 10, 1)).toBe(1_000)
  })
})

describe('release', () => {
  it('the holder gives the task back: ready at once, run released, the attempt not counted', () => {
    const { next, actions, ctx } = send(running(), { type: 'RELEASE', runId: 'r1', token: 'tok', reason: 'worker stopping' })
    expect(next.value).toBe('ready')
    expect(ctx.attempts).toBe(0)
    expect(only(actions, 'closeRun')[0]!.params).toMatchObject({ runId: 'r1', outcome: 'released', error: 'worker stopping' })
    expect(only(actions, 'xstate.cancel')[0]!.params).toEqual({ sendId: 'lease' })
    expect(kinds(actions)).toEqual(['released'])
  })
  it('is fenced like complete', () => {
    const s = running()
    expect(send(s, { type: 'RELEASE', runId: 'r1', token: 'nope' }).next).toBe(s)
  })
})

describe('lease expiry', () => {
  it('a lapsed lease reclaims the task to ready and closes the run as reclaimed', () => {
    const { next, actions } = send(running(), { type: 'LEASE_EXPIRED', runId: 'r1' }, OK, 1_500)
    expect(next.value).toBe('ready')
    expect(only(actions, 'closeRun')[0]!.params).toMatchObject({ runId: 'r1', outcome: 'reclaimed' })
    expect(kinds(actions)).toEqual(['reclaimed'])
  })
  it('a timer that fires before the (extended) lease lapsed is a no-op', () => {
    const s = running()
    expect(send(s, { type: 'LEASE_EXPIRED', runId: 'r1' }, OK, 1_499).next).toBe(s)
  })
  it('a timer for an older run is a no-op', () => {
    const s = running()
    expect(send(s, { type: 'LEASE_EXPIRED', runId: 'r0' }, OK, 9_999).next).toBe(s)
  })
  it('the last attempt losing its lease fails the task (poison task)', () => {
    const { next, actions } = send(running(1), { type: 'LEASE_EXPIRED', runId: 'r1' }, OK, 1_500)
    expect(next.value).toBe('failed')
    expect(kinds(actions)).toEqual(['reclaimed', 'failed'])
  })
  it('after a reclaim the old token is refused', () => {
    const reclaimed = send(running(), { type: 'LEASE_EXPIRED', runId: 'r1' }, OK, 1_500).next
    const again = send(reclaimed, { ...CLAIM, runId: 'r2', token: 'tok2' }).next
    expect(again.value).toBe('running')
    expect(send(again, { type: 'COMPLETE', runId: 'r1', token: 'tok' }).next).toBe(again)
  })
})

describe('links', () => {
  it('linking an unfinished parent demotes a ready task', () => {
    const { next, actions } = send(created(), { type: 'LINK', parentId: 'p' }, WAITING)
    expect(next.value).toBe('todo')
    expect(only(actions, 'insertLink')[0]!.params).toEqual({ parentId: 'p' })
    expect(kinds(actions)).toEqual(['linked', 'demoted'])
  })
  it('linking a done parent keeps a ready task ready', () => {
    expect(send(created(), { type: 'LINK', parentId: 'p' }, OK).next.value).toBe('ready')
  })
  it('linking a failed parent blocks', () => {
    expect(send(created(WAITING), { type: 'LINK', parentId: 'p1' }, FAILED).next.value).toBe('blocked')
  })
  it('a running task accepts only a done parent', () => {
    const r = running()
    expect(send(r, { type: 'LINK', parentId: 'p' }, WAITING).next).toBe(r)
    expect(send(r, { type: 'LINK', parentId: 'p' }, OK).next.value).toBe('running')
  })
  it('unlinking the last unfinished parent promotes', () => {
    const { next, actions } = send(created(WAITING), { type: 'UNLINK', parentId: 'p' }, OK)
    expect(next.value).toBe('ready')
    expect(kinds(actions)).toEqual(['unlinked', 'promoted'])
  })
  it('unlinking the failed parent that blocked a task unblocks it', () => {
    const { next, actions } = send(created(FAILED), { type: 'UNLINK', parentId: 'p1' }, OK)
    expect(next.value).toBe('ready')
    expect(kinds(actions)).toEqual(['unlinked', 'unblocked'])
  })
  it.each(['done', 'failed', 'cancelled'] as const)('a %s task refuses links', (state) => {
    const r = running(1)
    const s =
      state === 'done'
        ? send(r, { type: 'COMPLETE', runId: 'r1', token: 'tok' }).next
        : state === 'failed'
          ? send(r, { type: 'FAIL', runId: 'r1', token: 'tok', error: 'e', retryable: false, jitter: 0 }).next
          : send(r, { type: 'CANCEL' }).next
    expect(s.value).toBe(state)
    expect(send(s, { type: 'LINK', parentId: 'p' }, OK).next).toBe(s)
  })
})

describe('parents finishing', () => {
  it('PARENT_DONE promotes only when every parent is done', () => {
    const t = created(WAITING)
    expect(send(t, { type: 'PARENT_DONE', parentId: 'p' }, WAITING).next).toBe(t)
    const { next, actions } = send(t, { type: 'PARENT_DONE', parentId: 'p' }, OK)
    expect(next.value).toBe('ready')
    expect(kinds(actions)).toEqual(['promoted'])
  })
  it('PARENT_FAILED blocks a waiting child with a reason naming the parent', () => {
    const { next, ctx } = send(created(WAITING), { type: 'PARENT_FAILED', parentId: 'p9', parentStatus: 'cancelled' }, FAILED)
    expect(next.value).toBe('blocked')
    expect(ctx.blockedByParent).toBe('p9')
    expect(ctx.blockedReason).toBe('parent p9 cancelled')
  })
  it('PARENT_RESTORED unblocks only a child blocked by that parent', () => {
    const b = send(created(WAITING), { type: 'PARENT_FAILED', parentId: 'p1', parentStatus: 'failed' }, FAILED).next
    expect(send(b, { type: 'PARENT_RESTORED', parentId: 'other' }, WAITING).next).toBe(b)
    const { next, ctx } = send(b, { type: 'PARENT_RESTORED', parentId: 'p1' }, WAITING)
    expect(next.value).toBe('todo')
    expect(ctx.blockedByParent).toBeNull()
  })
  it('PARENT_RESTORED with another failed parent keeps it blocked, now naming that one', () => {
    const b = send(created(WAITING), { type: 'PARENT_FAILED', parentId: 'p1', parentStatus: 'failed' }, FAILED).next
    const { next, ctx } = send(b, { type: 'PARENT_RESTORED', parentId: 'p1' }, { unfinished: 2, failed: ['p2'] })
    expect(next.value).toBe('blocked')
    expect(ctx.blockedByParent).toBe('p2')
  })
})

describe('block, unblock, cancel, archive', () => {
  it('block from ready, unblock back through the gate', () => {
    const b = send(created(), { type: 'BLOCK', reason: 'needs a human' }).next
    expect(b.value).toBe('blocked')
    expect((b.context as TaskContext).blockedReason).toBe('needs a human')
    expect(send(b, { type: 'UNBLOCK' }, OK).next.value).toBe('ready')
    expect(send(b, { type: 'UNBLOCK' }, WAITING).next.value).toBe('todo')
  })
  it('unblock is refused while a failed parent blocks', () => {
    const b = created(FAILED)
    expect(send(b, { type: 'UNBLOCK' }, FAILED).next).toBe(b)
  })
  it('blocking a running task closes its run as blocked', () => {
    const { next, actions } = send(running(), { type: 'BLOCK', reason: 'stuck' })
    expect(next.value).toBe('blocked')
    expect(only(actions, 'closeRun')[0]!.params).toMatchObject({ outcome: 'blocked' })
    expect(only(actions, 'xstate.cancel')[0]!.params).toEqual({ sendId: 'lease' })
  })
  it('cancelling a running task closes its run and blocks children', () => {
    const { next, actions } = send(running(), { type: 'CANCEL', reason: 'x' })
    expect(next.value).toBe('cancelled')
    expect(only(actions, 'closeRun')[0]!.params).toMatchObject({ outcome: 'cancelled' })
    expect(only(actions, 'blockChildren')[0]!.params).toEqual({ status: 'cancelled' })
  })
  it('archive only from done, failed or cancelled; archived is final', () => {
    const r = running()
    expect(send(r, { type: 'ARCHIVE' }).next).toBe(r)
    const done = send(r, { type: 'COMPLETE', runId: 'r1', token: 'tok' }).next
    const archived = send(done, { type: 'ARCHIVE' }).next
    expect(archived.value).toBe('archived')
    expect(archived.status).toBe('done')
    expect(send(archived, { type: 'RETRY' }).next).toBe(archived)
  })
})

describe('the assignee rule (issue 9)', () => {
  function assigned(assignee: string | null, facts: ParentFacts = OK): AnyMachineSnapshot {
    const [initial] = initialTransition(taskMachine, { id: 't1', maxAttempts: 3, backoffBaseMs: 100, backoffMaxMs: 1_000 })
    return send(initial as AnyMachineSnapshot, { type: 'CREATE', assignee }, facts).next
  }
  it('CREATE keeps the assignee in the context', () => {
    expect((assigned('bob').context as TaskContext).assignee).toBe('bob')
    expect((assigned(null).context as TaskContext).assignee).toBeNull()
  })
  it('a claim naming no assignee, or another one, is refused outright: no run, no journal, no demotion', () => {
    for (const facts of [OK, WAITING, FAILED]) {
      const s = assigned('bob')
      for (const claimant of [{}, { assignee: 'alice' }, { assignee: null }]) {
        const { next, actions } = send(s, { ...CLAIM, ...claimant }, facts)
        expect(next).toBe(s)
        expect(actions).toEqual([])
      }
    }
    const free = assigned(null)
    const { next, actions } = send(free, { ...CLAIM, assignee: 'bob' })
    expect(next).toBe(free)
    expect(actions).toEqual([])
  })
  it('the named assignee, or anyAssignee, passes on to the gate', () => {
    expect(send(assigned('bob'), { ...CLAIM, assignee: 'bob' }).next.value).toBe('running')
    expect(send(assigned('bob'), { ...CLAIM, anyAssignee: true }).next.value).toBe('running')
    expect(send(assigned(null), { ...CLAIM, anyAssignee: true }).next.value).toBe('running')
    expect(send(assigned(null), CLAIM).next.value).toBe('running')
    // The gate still decides for an admitted claim.
    expect(kinds(send(assigned('bob'), { ...CLAIM, assignee: 'bob' }, WAITING).actions)).toEqual(['claim_rejected'])
  })
  it('assigneeAdmits is the one rule the guard and the board share', () => {
    expect(assigneeAdmits('bob', { assignee: 'bob' })).toBe(true)
    expect(assigneeAdmits('bob', {})).toBe(false)
    expect(assigneeAdmits(null, {})).toBe(true)
    expect(assigneeAdmits(undefined, { assignee: null })).toBe(true)
    expect(assigneeAdmits(null, { assignee: 'bob' })).toBe(false)
    expect(assigneeAdmits('bob', { anyAssignee: true })).toBe(true)
  })
})
