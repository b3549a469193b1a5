/**
 * Time travel: an actor's state as it was after journal entry N.
 *
 * The journal stores, per entry, the event (without the facts read for the guards and
 * without secrets such as the claim token) and the state after it. The state value at
 * any entry is therefore exact. The context is rebuilt by replaying the actor's events
 * through its machine from the start, in a sandbox (pure `xstate.transition`, nothing
 * executed, nothing written):
 *
 * - task facts (the parents' statuses the guards saw) are re-derived from the journal:
 *   the parents linked at that point and each parent's state just before the step;
 * - a fenced event gets the replayed context's token (the real one is never journaled);
 * - every replayed step must reproduce the recorded state and journal kinds, or the replay
 *   stops and later entries are `state-only`;
 * - inputs the journal does not hold (a task's backoff settings, a session's initial chain)
 *   come from the current snapshot; the final replayed context is compared with the
 *   persisted one (`verified`).
 */
import { TASK_STATE_STATUS, type ParentFacts, type TaskState } from '../../../machines/task.js'
import type { ParentRow } from '../../../persistence/store.js'
import { stateName } from '../../core/kernel.js'
import { parentFacts } from '../../core/task-kind.js'
import { isDeepStrictEqual } from 'node:util'
import { initialTransition, transition, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate'
import type { InspectorStore, JournalRowLite } from './store.js'

export type Fidelity = 'exact' | 'approximate' | 'state-only'

export interface ReplayedStep {
  actorVersion: number
  firstSeq: number
  lastSeq: number
  eventType: string
  kinds: string[]
  stateBefore: string | null
  stateAfter: string
  context: Record<string, unknown> | null
  fidelity: Fidelity
  note: string | null
}

export interface Replay {
  steps: ReplayedStep[]
  /** The replay reproduced every recorded state and ends in the persisted context. */
  verified: boolean
  note: string | null
  /** Last seq replayed (the cache key). */
  lastSeq: number
}

/** Replays longer than this are not attempted: their entries are `state-only`. */
export const MAX_REPLAY_ENTRIES = 5_000
const MAX_PARENTS_FOR_FACTS = 256
const TASK_MACHINE = 'lockstep.task'
const SESSION_MACHINE = 'lockstep.session'
const FENCED = new Set(['HEARTBEAT', 'COMPLETE', 'FAIL', 'RELEASE'])

interface ActorInfo {
  id: string
  machineId: string
  state: string
  /** The persisted snapshot (JSON-parsed). */
  snapshot: { value?: unknown; context?: Record<string, unknown> } | null
  /** The machine version the row was written with, and the one the inspector knows. */
  rowMachineVersion: number
  knownMachineVersion: number
}

/** Group an actor's journal rows into steps (one committed event each; entries of a step share actor_version). */
function stepsOf(rows: JournalRowLite[]): Array<{ rows: JournalRowLite[]; event: Record<string, unknown> }> {
  const steps: Array<{ rows: JournalRowLite[]; event: Record<string, unknown> }> = []
  for (const row of rows) {
    const last = steps[steps.length - 1]
    if (last && last.rows[0]!.actor_version === row.actor_version) last.rows.push(row)
    else steps.push({ rows: [row], event: JSON.parse(row.event) as Record<string, unknown> })
  }
  return steps
}

/** The context as the inspector shows it: JSON, without secrets (a claim's fencing token). */
export function publicContext(context: unknown): Record<string, unknown> | null {
  if (!context || typeof context !== 'object') return null
  const copy = JSON.parse(JSON.stringify(context)) as Record<string, unknown>
  delete copy.token
  return copy
}

function journalKindsOf(actions: Array<{ type: string; params?: unknown }>): string[] {
  const kinds: string[] = []
  for (const action of actions) {
    if (action.type !== 'journal') continue
    const list = (action.params as { kinds?: unknown } | undefined)?.kinds
    if (Array.isArray(list)) kinds.push(...(list as string[]))
  }
  return kinds
}

const sameList = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i])

export async function replayActor(store: InspectorStore, machine: AnyStateMachine | null, actor: ActorInfo): Promise<Replay> {
  const rows = await store.actorJournalAsc(actor.id, actor.machineId, MAX_REPLAY_ENTRIES + 1)
  const truncated = rows.length > MAX_REPLAY_ENTRIES
  if (truncated) rows.length = MAX_REPLAY_ENTRIES
  const steps = stepsOf(rows)
  const lastSeq = rows.length ? rows[rows.length - 1]!.seq : 0
  const out: ReplayedStep[] = steps.map((s) => ({
    actorVersion: s.rows[0]!.actor_version,
    firstSeq: s.rows[0]!.seq,
    lastSeq: s.rows[s.rows.length - 1]!.seq,
    eventType: s.rows[0]!.event_type,
    kinds: s.rows.map((r) => r.kind),
    stateBefore: s.rows[0]!.state_before,
    stateAfter: s.rows[0]!.state_after,
    context: null,
    fidelity: 'state-only' as Fidelity,
    note: null,
  }))
  const done = (note: string | null, verified = false): Replay => ({ steps: out, verified, note, lastSeq })

  if (truncated) return done(`the actor has more than ${MAX_REPLAY_ENTRIES} journal entries: only recorded states are shown`)
  if (!machine || (actor.machineId !== TASK_MACHINE && actor.machineId !== SESSION_MACHINE)) return done('no replay for this machine: only recorded states are shown')
  if (actor.rowMachineVersion !== actor.knownMachineVersion || steps.some((s) => s.rows.some((r) => r.kind === 'migrated'))) {
    return done('the actor was written by another machine version (or migrated): only recorded states are shown')
  }
  const current = actor.snapshot?.context
  if (!current || steps.length === 0) return done('no snapshot to start from: only recorded states are shown')

  // Inputs the journal does not record, from the current snapshot.
  let guessedUntil = -1
  let input: Record<string, unknown>
  const first = steps[0]!.event
  if (actor.machineId === TASK_MACHINE) {
    input = {
      id: actor.id,
      maxAttempts: typeof first.maxAttempts === 'number' ? first.maxAttempts : current.maxAttempts,
      backoffBaseMs: current.backoffBaseMs,
      backoffMaxMs: current.backoffMaxMs,
    }
  } else {
    input = { id: actor.id, agent: current.agent ?? null, models: current.models, policy: current.policy }
    // The chain and policy a session was opened with are not journaled; a CONFIGURE is.
    const configured = steps.findIndex((s) => s.rows[0]!.event_type === 'CONFIGURE')
    if (configured >= 0) guessedUntil = configured - 1
  }

  let snapshot: AnyMachineSnapshot
  try {
    snapshot = initialTransition(machine, input as never)[0] as AnyMachineSnapshot
  } catch (error) {
    return done(`cannot start the machine: ${(error as Error).message}`)
  }
  const parents = new Set<string>()
  let failedAt = -1
  let failure: string | null = null
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!
    const recorded = out[i]!
    const base = step.event
    const candidates: Array<Record<string, unknown>> = []
    if (actor.machineId === TASK_MACHINE) {
      if (base.type === 'CREATE' && Array.isArray(base.parents)) for (const p of base.parents) if (typeof p === 'string') parents.add(p)
      const withToken = FENCED.has(String(base.type)) ? { token: (snapshot.context as { token?: unknown }).token } : {}
      const exact = await taskFacts(store, parents, base, recorded.firstSeq)
      if (exact) candidates.push({ ...base, ...withToken, facts: exact })
      for (const facts of [
        { unfinished: 0, failed: [] },
        { unfinished: 1, failed: [] },
        { unfinished: 1, failed: [typeof base.parentId === 'string' ? base.parentId : [...parents][0] ?? 'unknown'] },
      ]) {
        candidates.push({ ...base, ...withToken, facts })
      }
    } else {
      candidates.push(base)
    }
    let next: AnyMachineSnapshot | null = null
    for (const event of candidates) {
      try {
        const [after, actions] = transition(machine, snapshot, event as never) as [AnyMachineSnapshot, Array<{ type: string; params?: unknown }>]
        const kinds = journalKindsOf(actions)
        if (stateName(after.value) === recorded.stateAfter && sameList(kinds, recorded.kinds)) {
          next = after
          break
        }
      } catch {
        // try the next candidate
      }
    }
    if (!next) {
      failedAt = i
      failure = `replay diverged at seq ${recorded.firstSeq} (${recorded.eventType}): later entries show the recorded state only`
      break
    }
    snapshot = next
    recorded.context = publicContext(snapshot.context)
    recorded.fidelity = i <= guessedUntil ? 'approximate' : 'exact'
    if (i <= guessedUntil) recorded.note = "the session's chain before its first CONFIGURE is not journaled; the later chain is shown"
    if (actor.machineId === TASK_MACHINE) {
      if (base.type === 'LINK' && typeof base.parentId === 'string') parents.add(base.parentId)
      if (base.type === 'UNLINK' && typeof base.parentId === 'string') parents.delete(base.parentId)
    }
  }
  if (failedAt >= 0) {
    for (const step of out) if (step.fidelity === 'exact') step.fidelity = 'approximate'
    return done(failure)
  }
  const verified =
    stateName(snapshot.value) === actor.state && isDeepStrictEqual(publicContext(snapshot.context), publicContext(current))
  if (!verified) {
    for (const step of out) if (step.fidelity === 'exact') step.fidelity = 'approximate'
    return done('the replay does not end in the persisted context: contexts are approximate')
  }
  return done(guessedUntil >= 0 ? "the session's chain before its first CONFIGURE is a guess" : null, true)
}

/**
 * What the task's guards saw: its parents then (with the one being linked, without the one
 * being unlinked) and whether each was finished or failed, from each parent's last journal
 * entry before the step. Null when there are too many parents to look up.
 */
async function taskFacts(store: InspectorStore, parents: Set<string>, event: Record<string, unknown>, seq: number): Promise<ParentFacts | null> {
  const ids = new Set(parents)
  if (event.type === 'LINK' && typeof event.parentId === 'string') ids.add(event.parentId)
  if (event.type === 'UNLINK' && typeof event.parentId === 'string') ids.delete(event.parentId)
  if (ids.size > MAX_PARENTS_FOR_FACTS) return null
  const lastEntries = await store.lastEntriesBefore([...ids], TASK_MACHINE, seq)
  // Each parent's row as it was then, from its last entry: the status its state projects to,
  // and completed_at set when it had finished (done, or archived after done). The rule of
  // what those mean is the step's own (parentFacts), not a copy.
  const rows: ParentRow[] = [...ids].map((id) => {
    const last = lastEntries.get(id)
    const state = last?.state_after ?? 'todo'
    const finished = state === 'done' || (state === 'archived' && last?.state_before === 'done')
    const status = Object.hasOwn(TASK_STATE_STATUS, state) ? TASK_STATE_STATUS[state as TaskState] : 'todo'
    return { id, status, completed_at: finished ? (last?.at ?? 0) : null }
  })
  return parentFacts(rows, { type: String(event.type), parentId: event.parentId })
}

/** Small LRU of replays, invalidated when the actor's journal grows. */
export class ReplayCache {
  private readonly map = new Map<string, Replay>()
  constructor(private readonly size = 32) {}

  get(actorId: string, lastSeq: number): Replay | null {
    const hit = this.map.get(actorId)
    if (!hit || hit.lastSeq !== lastSeq) return null
    this.map.delete(actorId)
    this.map.set(actorId, hit)
    return hit
  }

  set(actorId: string, replay: Replay): void {
    this.map.delete(actorId)
    this.map.set(actorId, replay)
    while (this.map.size > this.size) this.map.delete(this.map.keys().next().value!)
  }
}
