/**
 * The journal's rows as every store returns them, and the entry the API gives for one:
 * one shape and one mapping, whichever store read it.
 */
import type { JournalEntry } from '../src/types.js'
import type { JournalRow } from './store.js'

export type { JournalRow }

export function toJournalEntry(row: JournalRow): JournalEntry {
  return {
    // Number(): also right for a driver that returns 64-bit integers as strings.
    seq: Number(row.seq),
    machineId: row.machine_id,
    actorId: row.actor_id,
    kind: row.kind,
    eventType: row.event_type,
    event: JSON.parse(row.event) as Record<string, unknown>,
    stateBefore: row.state_before,
    stateAfter: row.state_after,
    runId: row.run_id,
    actorVersion: Number(row.actor_version),
    at: Number(row.at),
  }
}
