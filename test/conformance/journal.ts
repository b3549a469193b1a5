/**
 * Reading a whole board's journal through the public API (tasks.events pages at most
 * 10,000 entries), for audits that must see every entry in seq order.
 */
import type { JournalEntry, Orchestrator } from '../../src/index.js'

export async function wholeJournal(orch: Orchestrator): Promise<JournalEntry[]> {
  const all: JournalEntry[] = []
  for (;;) {
    const page = await orch.tasks.events({ after: all.at(-1)?.seq ?? 0, limit: 10_000 })
    all.push(...page)
    if (page.length < 10_000) return all
  }
}
