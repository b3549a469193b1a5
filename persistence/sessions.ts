/**
 * SQLite side of sessions: the session actor kind (projection, after-commit host calls)
 * and its queries. Every write runs inside a committed step (kernel.ts).
 */
import type { AnyMachineSnapshot } from 'xstate'
import {
  SESSION_MACHINE_ID,
  SESSION_MACHINE_VERSION,
  sessionMachine,
  type SessionContext,
} from '../machines/session.js'
import type { Db } from './connection.js'
import { stateName, type ActorKind, type StepInfo } from './kernel.js'

export interface SessionRow {
  id: string
  state: string
  status: string
  agent: string | null
  model: string | null
  generation: number
  attempts: number
  snapshot: string
  created_at: number
  updated_at: number
}

/** Host calls the machine asks for, run after commit by the runtime. */
export type SessionEffects = Record<'dispatch' | 'abort' | 'notify', (sessionId: string, params: any) => void>

const PROJECTION = ['status', 'agent', 'model', 'generation', 'attempts'] as const

export class SessionQueries {
  private readonly s

  constructor(readonly db: Db) {
    this.s = {
      insert: db.prepare(
        // Version 0 and an empty snapshot: the creating step (kernel.createInTx) fills them in.
        `INSERT INTO sessions (id, machine_id, machine_version, snapshot, version, state, status, created_at, updated_at)
         VALUES (?, '${SESSION_MACHINE_ID}', ${SESSION_MACHINE_VERSION}, '{}', 0, 'opening', 'idle', ?, ?)`,
      ),
      byId: db.prepare('SELECT * FROM sessions WHERE id = ?'),
      list: db.prepare('SELECT * FROM sessions WHERE (? IS NULL OR status = ?) ORDER BY created_at, id LIMIT ?'),
    }
  }

  insert(id: string, now: number): void {
    this.s.insert.run(id, now, now)
  }

  get(id: string): SessionRow | null {
    return (this.s.byId.get(id) as SessionRow | undefined) ?? null
  }

  list(status: string | null, limit: number): SessionRow[] {
    return this.s.list.all(status, status, limit) as SessionRow[]
  }

  actorKind(effects: SessionEffects): ActorKind {
    return {
      machineId: SESSION_MACHINE_ID,
      machineVersion: SESSION_MACHINE_VERSION,
      machine: sessionMachine,
      table: 'sessions',
      projection: PROJECTION,
      project: (step: StepInfo): unknown[] => {
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
}

/** Top-level state: idle, active, exhausted, archived or deleted. */
export function statusOf(snapshot: AnyMachineSnapshot): string {
  const name = stateName(snapshot.value)
  const top = name.split('.')[0]!
  return top === 'opening' ? 'idle' : top
}
