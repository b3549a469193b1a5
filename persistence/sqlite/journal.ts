/** Read side of the journal: pages in `seq` order, and change detection across processes. */
import type { JournalEntry } from '../../src/types.js'
import { toJournalEntry, type JournalRow } from '../journal-rows.js'
import type { JournalPage, JournalSource } from '../store.js'
import type { Db } from './connection.js'

export type { JournalPage, JournalRow }



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
    return rows.map(toJournalEntry)
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
