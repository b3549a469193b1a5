/** Read side of the journal: pages in `seq` order, and change detection across processes. */
import type { JournalEntry } from '../../src/types.js'
import type { JournalPage, JournalSource } from '../store.js'
import type { Db } from './connection.js'

export type { JournalPage }

/** A journal row as SQLite returns it. */
export interface JournalRow {
  seq: number
  machine_id: string
  actor_id: string
  kind: string
  event_type: string
  event: string
  state_before: string | null
  state_after: string
  run_id: string | null
  actor_version: number
  at: number
}


/** One writer at a time: every seq up to the highest is final, so the horizon is the highest seq. */
export class JournalQueries implements JournalSource {
  private readonly s
  private lastDataVersion = -1

  constructor(db: Db) {
    this.s = {
      page: db.prepare('SELECT * FROM journal WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?'),
      pageForMachine: db.prepare('SELECT * FROM journal WHERE seq > ? AND seq <= ? AND machine_id = ? ORDER BY seq LIMIT ?'),
      pageForActor: db.prepare(
        'SELECT * FROM journal WHERE actor_id = ? AND seq > ? AND seq <= ? AND (? IS NULL OR machine_id = ?) ORDER BY seq LIMIT ?',
      ),
      maxSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) AS seq FROM journal'),
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
    }
  }

  page(query: JournalPage): JournalEntry[] {
    const machineId = query.machineId ?? null
    const upTo = query.upTo ?? Number.MAX_SAFE_INTEGER
    const rows = (
      query.actorId !== undefined
        ? this.s.pageForActor.all(query.actorId, query.after, upTo, machineId, machineId, query.limit)
        : machineId !== null
          ? this.s.pageForMachine.all(query.after, upTo, machineId, query.limit)
          : this.s.page.all(query.after, upTo, query.limit)
    ) as JournalRow[]
    return rows.map(toEntry)
  }

  horizon(): number {
    return (this.s.maxSeq.get() as { seq: number }).seq
  }

  /** `PRAGMA data_version` moves whenever another connection commits to the file. */
  changed(): boolean {
    const version = this.s.dataVersion.get() as number
    if (version === this.lastDataVersion) return false
    this.lastDataVersion = version
    return true
  }
}

function toEntry(row: JournalRow): JournalEntry {
  return {
    seq: row.seq,
    machineId: row.machine_id,
    actorId: row.actor_id,
    kind: row.kind,
    eventType: row.event_type,
    event: JSON.parse(row.event) as Record<string, unknown>,
    stateBefore: row.state_before,
    stateAfter: row.state_after,
    runId: row.run_id,
    actorVersion: row.actor_version,
    at: row.at,
  }
}
