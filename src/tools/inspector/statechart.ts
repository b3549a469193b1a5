/**
 * A machine definition as a drawable statechart: its state nodes and transitions (event,
 * guard, actions, the journal kinds each branch writes), read from the XState machine
 * object (`machine.root`), plus the matching of a journal step to the transitions it took.
 */
import type { AnyStateMachine } from 'xstate'

export interface ChartNode {
  /** XState state node id, e.g. `task.running` or `session.active.streaming`. */
  id: string
  /** The state as the journal and the `state` column name it: `running`, `active.streaming` ('' for the root). */
  path: string
  key: string
  parent: string | null
  type: string
  /** Path of the initial child, for compound states. */
  initial: string | null
  entry: string[]
  exit: string[]
  /** Eventless (`always`) transitions leave at once: the actor never rests here. */
  transient: boolean
}

export interface ChartBranch {
  /** Order among the transitions of its source for this event (guards are tried in this order). */
  order: number
  guard: string | null
  /** Source text of an inline guard function (truncated), for a tooltip. */
  guardSource?: string
  actions: string[]
  /** Journal kinds this branch writes (its `journal` actions). */
  kinds: string[]
  /** A note a branch's journal action carries (e.g. why a report is ignored). */
  note?: string
  reenter: boolean
}

export interface ChartEdge {
  /** Stable within one machine definition. */
  id: string
  source: string
  /** The source itself for a targetless transition (actions only, no state change). */
  target: string
  /** Event type; `always` for eventless transitions. */
  event: string
  targetless: boolean
  /** Every transition with this source, event and target, in guard order. */
  branches: ChartBranch[]
}

export interface Statechart {
  machineId: string
  /** XState's id of the root node (`task`, `session`). */
  rootId: string
  /** Path of the state a new actor starts in. */
  initial: string
  nodes: ChartNode[]
  edges: ChartEdge[]
}

/** One committed step of an actor, as the journal records it. */
export interface StepRef {
  stateBefore: string | null
  stateAfter: string
  eventType: string
  kinds: string[]
}

export interface TakenTransition {
  edges: string[]
  /** Branch order of each taken edge, same index as `edges`. */
  branches: number[]
  /** True when a branch's journal kinds matched the step's exactly (else: matched by states only). */
  exact: boolean
}

// The structural parts of XState's StateNode / TransitionDefinition that are read here.
interface XNode {
  id: string
  key: string
  type: string
  path: string[]
  parent?: XNode
  states: Record<string, XNode>
  transitions: Map<string, XTransition[]>
  always?: XTransition[]
  initial?: { target: XNode[] }
  entry: unknown[]
  exit: unknown[]
}
interface XTransition {
  target?: XNode[]
  source: XNode
  eventType: string
  guard?: unknown
  actions: unknown[]
  reenter?: boolean
}

const MAX_SOURCE = 300

/** Read a machine definition into a statechart. Bounded by the machine's own size. */
export function statechartOf(machineId: string, machine: AnyStateMachine): Statechart {
  const root = machine.root as unknown as XNode
  const nodes: ChartNode[] = []
  const edges = new Map<string, ChartEdge>()

  const visit = (node: XNode) => {
    nodes.push({
      id: node.id,
      path: node.path.join('.'),
      key: node.key,
      parent: node.parent ? node.parent.id : null,
      type: node.type,
      initial: node.initial?.target?.[0] ? node.initial.target[0].path.join('.') : null,
      entry: node.entry.map(actionName),
      exit: node.exit.map(actionName),
      transient: (node.always?.length ?? 0) > 0,
    })
    const all: XTransition[] = []
    for (const list of node.transitions.values()) all.push(...list)
    all.push(...(node.always ?? []))
    const order = new Map<string, number>()
    for (const t of all) {
      const event = t.eventType === '' || t.eventType === undefined ? 'always' : t.eventType
      const n = order.get(event) ?? 0
      order.set(event, n + 1)
      const targets = t.target && t.target.length > 0 ? t.target : null
      const target = targets ? targets[0]!.id : node.id
      const key = `${node.id}|${event}|${targets ? target : '(self)'}`
      let edge = edges.get(key)
      if (!edge) {
        edge = { id: `e${edges.size}`, source: node.id, target, event, targetless: targets === null, branches: [] }
        edges.set(key, edge)
      }
      const branch: ChartBranch = {
        order: n,
        guard: guardName(t.guard),
        actions: t.actions.map(actionName),
        kinds: journalKinds(t.actions),
        reenter: t.reenter === true,
      }
      const note = journalNote(t.actions)
      if (note) branch.note = note
      if (typeof t.guard === 'function' && !isCombinator(t.guard)) branch.guardSource = String(t.guard).slice(0, MAX_SOURCE)
      edge.branches.push(branch)
    }
    for (const child of Object.values(node.states ?? {})) visit(child)
  }
  visit(root)
  const initialNode = (machine.root as unknown as XNode).initial?.target?.[0]
  return { machineId, rootId: root.id, initial: initialNode ? initialNode.path.join('.') : '', nodes, edges: [...edges.values()] }
}

/**
 * The transitions one journal step took: from the state before (or the initial state, for
 * a creation) on its event type to the state after, preferring branches whose journal
 * kinds equal the step's (that tells apart e.g. a claim to `running` from one rejected to
 * `todo`). Follows eventless transitions out of transient states (`evaluateRetry`).
 */
export function takenTransition(chart: Statechart, step: StepRef): TakenTransition {
  const byPath = new Map(chart.nodes.map((n) => [n.path, n]))
  const byId = new Map(chart.nodes.map((n) => [n.id, n]))
  const before = step.stateBefore ?? chart.initial
  const sources = new Set<string>()
  for (let node = byPath.get(before); node; node = node.parent ? byId.get(node.parent) : undefined) sources.add(node.id)
  const lands = (nodeId: string) => {
    const path = byId.get(nodeId)?.path ?? ''
    return step.stateAfter === path || (path !== '' && step.stateAfter.startsWith(`${path}.`))
  }
  type Match = { edges: string[]; branches: number[]; kinds: string[][] }
  const matches: Match[] = []
  for (const edge of chart.edges) {
    if (edge.event !== step.eventType || !sources.has(edge.source)) continue
    if (edge.targetless) {
      if (step.stateAfter === before) matches.push({ edges: [edge.id], branches: edge.branches.map((b) => b.order), kinds: edge.branches.map((b) => b.kinds) })
      continue
    }
    if (lands(edge.target)) {
      matches.push({ edges: [edge.id], branches: edge.branches.map((b) => b.order), kinds: edge.branches.map((b) => b.kinds) })
      continue
    }
    // A transient target: its eventless transitions continue the same step.
    const target = byId.get(edge.target)
    if (target?.transient) {
      for (const next of chart.edges) {
        if (next.source !== target.id || next.event !== 'always' || next.targetless || !lands(next.target)) continue
        const kinds: string[][] = []
        const pairs: number[] = []
        for (const a of edge.branches) for (const b of next.branches) {
          kinds.push([...a.kinds, ...b.kinds])
          pairs.push(b.order)
        }
        matches.push({ edges: [edge.id, next.id], branches: pairs, kinds })
      }
    }
  }
  const same = (a: string[], b: string[]) => a.length === b.length && a.every((k, i) => k === b[i])
  const exact: TakenTransition = { edges: [], branches: [], exact: true }
  for (const m of matches) {
    const i = m.kinds.findIndex((k) => same(k, step.kinds))
    if (i < 0) continue
    for (const id of m.edges) {
      exact.edges.push(id)
      exact.branches.push(m.branches[i] ?? 0)
    }
  }
  if (exact.edges.length > 0) return exact
  const loose: TakenTransition = { edges: [], branches: [], exact: false }
  for (const m of matches) for (const id of m.edges) {
    loose.edges.push(id)
    loose.branches.push(-1)
  }
  return loose
}

function isCombinator(guard: unknown): guard is { guards: unknown[]; name: string } {
  return typeof guard === 'function' && Array.isArray((guard as { guards?: unknown }).guards)
}

/** A readable guard: `holdsLease`, `not(stale)`, `and(attemptsLeft, nextModelAvailable)`, `inline`. */
export function guardName(guard: unknown, depth = 0): string | null {
  if (guard === undefined || guard === null) return null
  if (depth > 8) return '…'
  if (typeof guard === 'string') return guard
  if (isCombinator(guard)) {
    const op = guard.name === 'and' || guard.name === 'or' || guard.name === 'not' ? guard.name : 'guard'
    return `${op}(${guard.guards.map((g) => guardName(g, depth + 1)).join(', ')})`
  }
  if (typeof guard === 'object' && typeof (guard as { type?: unknown }).type === 'string') return (guard as { type: string }).type
  if (typeof guard === 'function') return guard.name && guard.name !== 'guard' ? guard.name : 'inline'
  return 'guard'
}

function actionName(action: unknown): string {
  if (typeof action === 'string') return action
  if (typeof action === 'function') {
    const type = (action as { type?: unknown }).type
    if (typeof type === 'string') return type
    return action.name || 'inline'
  }
  if (action && typeof action === 'object') {
    const a = action as { type?: unknown; params?: unknown }
    if (a.type === 'journal' && a.params && typeof a.params === 'object' && Array.isArray((a.params as { kinds?: unknown }).kinds)) {
      return `journal(${((a.params as { kinds: string[] }).kinds).join(', ')})`
    }
    if (typeof a.type === 'string') return a.type
  }
  return 'action'
}

function journalKinds(actions: unknown[]): string[] {
  const kinds: string[] = []
  for (const action of actions) {
    if (!action || typeof action !== 'object') continue
    const a = action as { type?: unknown; params?: unknown }
    if (a.type !== 'journal' || !a.params || typeof a.params !== 'object') continue
    const list = (a.params as { kinds?: unknown }).kinds
    if (Array.isArray(list)) kinds.push(...list.filter((k): k is string => typeof k === 'string'))
  }
  return kinds
}

function journalNote(actions: unknown[]): string | null {
  for (const action of actions) {
    if (!action || typeof action !== 'object') continue
    const a = action as { type?: unknown; params?: { reason?: unknown } }
    if (a.type === 'journal' && typeof a.params?.reason === 'string') return a.params.reason
  }
  return null
}
