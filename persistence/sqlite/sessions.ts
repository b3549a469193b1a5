/**
 * SQLite side of sessions: the statements behind the store's session operations and the
 * read queries. Writes run only inside a committed step (src/core/kernel.ts); the rules
 * live in src/core/session-kind.ts.
 */
import { SESSION_MACHINE_ID, SESSION_MACHINE_VERSION } from '../../machines/session.js'
import type { Db } from './connection.js'
import type { SessionRow } from '../store.js'

export type { SessionRow }


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
      snapshot: db.prepare('SELECT snapshot FROM sessions WHERE id = ?').pluck(),
      list: db.prepare('SELECT * FROM sessions WHERE (? IS NULL OR status = ?) ORDER BY created_at, id LIMIT ?'),
    }
  }

  insert(id: string, now: number): void {
    this.s.insert.run(id, now, now)
  }

  get(id: string): SessionRow | null {
    return (this.s.byId.get(id) as SessionRow | undefined) ?? null
  }

  /** The persisted snapshot, or null when the session does not exist. */
  snapshot(id: string): string | null {
    return (this.s.snapshot.get(id) as string | undefined) ?? null
  }

  list(status: string | null, limit: number): SessionRow[] {
    return this.s.list.all(status, status, limit) as SessionRow[]
  }
}
