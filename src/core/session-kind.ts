/**
 * The session actor kind, storage-free: the `sessions` projection and the host calls the
 * session machine asks for (dispatch, abort, notify), run after commit by the runtime.
 */
import type { AnyMachineSnapshot } from 'xstate'
import { SESSION_MACHINE_ID, SESSION_MACHINE_VERSION, sessionMachine, type SessionContext } from '../../machines/session.js'
import { stateName, type ActorKind } from './kernel.js'

/** Host calls the machine asks for, run after commit by the runtime. */
export type SessionEffects = Record<'dispatch' | 'abort' | 'notify', (sessionId: string, params: any) => void>

/** Projection columns of the session table, in the order `project()` returns their values. */
export const SESSION_PROJECTION = ['status', 'agent', 'model', 'generation', 'attempts'] as const

/** Top-level state: idle, active, exhausted, archived or deleted. */
export function statusOf(snapshot: AnyMachineSnapshot): string {
  const name = stateName(snapshot.value)
  const top = name.split('.')[0]!
  return top === 'opening' ? 'idle' : top
}

export function sessionKind(effects: SessionEffects): ActorKind {
  return {
    machineId: SESSION_MACHINE_ID,
    machineVersion: SESSION_MACHINE_VERSION,
    machine: sessionMachine,
    table: 'sessions',
    projection: SESSION_PROJECTION,
    project: (step) => {
      const c = step.after.context as SessionContext
      return [statusOf(step.after), c.agent, c.model, c.generation, c.attempts]
    },
    runIdOf: (step) => {
      const generation = (step.after.context as SessionContext).generation
      return generation > 0 ? `g${generation}` : null
    },
    effects: {},
    afterCommit: effects,
  }
}
