/**
 * The journal feed on a store whose commits do not land in seq order (as on PostgreSQL,
 * where seq 2 can commit before seq 1): a subscriber reads only up to the store's horizon,
 * so it gets every entry exactly once, in seq order, and never one beyond the horizon,
 * even when this process committed it; a page (events()) waits, bounded, for the horizon
 * to cover this process's own commits.
 */
import { describe, expect, it } from 'vitest'
import type { JournalPage, JournalSource } from '../../persistence/store.js'
import { JournalFeed } from '../../src/journal-feed.js'
import type { JournalEntry } from '../../src/types.js'

const entry = (seq: number): JournalEntry => ({
  seq,
  machineId: 'm',
  actorId: `a${seq}`,
  kind: 'k',
  eventType: 'E',
  event: {},
  stateBefore: null,
  stateAfter: 's',
  runId: null,
  actorVersion: 1,
  at: seq,
})

/** Committed entries (in commit order, not seq order) and a horizon set by the test; every answer a promise. */
class OutOfOrderJournal implements JournalSource {
  readonly committed: JournalEntry[] = []
  horizonSeq = 0
  async page(q: JournalPage): Promise<JournalEntry[]> {
    return this.committed
      .filter((e) => e.seq > q.after && e.seq <= (q.upTo ?? Number.MAX_SAFE_INTEGER))
      .sort((a, b) => a.seq - b.seq)
      .slice(0, q.limit)
  }
  async horizon(): Promise<number> {
    return this.horizonSeq
  }
  async changed(): Promise<boolean> {
    return true
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 40))

describe('journal feed on a store whose commits land out of seq order', () => {
  it('delivers each entry once, in seq order, only up to the horizon', async () => {
    const journal = new OutOfOrderJournal()
    const errors: unknown[] = []
    const feed = new JournalFeed(journal, 5, (e) => errors.push(e), false)
    await feed.open()
    const seen: number[] = []
    const stop = feed.subscribe((e) => seen.push(e.seq), {})

    // seq 2 commits while seq 1 is still in flight: the horizon stays at 0.
    journal.committed.push(entry(2))
    await settle()
    expect(seen).toEqual([])

    // Seq 1 commits: every seq up to 2 is final.
    journal.committed.push(entry(1))
    journal.horizonSeq = 2
    await settle()
    expect(seen).toEqual([1, 2])

    // A local commit is not handed over from memory on such a store: it waits for the horizon.
    journal.committed.push(entry(4))
    feed.wake([entry(4)])
    await settle()
    expect(seen).toEqual([1, 2])
    journal.committed.push(entry(3))
    journal.horizonSeq = 4
    await settle()
    expect(seen).toEqual([1, 2, 3, 4])

    // events() pages stop at the horizon too.
    journal.committed.push(entry(6))
    expect((await feed.page({ after: 0, limit: 10 })).map((e) => e.seq)).toEqual([1, 2, 3, 4])

    stop()
    feed.close()
    expect(errors).toEqual([])
  })

  it("a page waits for the horizon to cover this process's own commits (read your writes)", async () => {
    const journal = new OutOfOrderJournal()
    const feed = new JournalFeed(journal, 5, (e) => expect.fail(String(e)), false)
    await feed.open()
    // This process committed seq 2 while another transaction still holds seq 1.
    journal.committed.push(entry(2))
    feed.wake([entry(2)])
    let answered = false
    const page = feed.page({ after: 0, limit: 10 }).then((entries) => ((answered = true), entries))
    await settle()
    expect(answered).toBe(false)
    journal.committed.push(entry(1))
    journal.horizonSeq = 2
    expect((await page).map((e) => e.seq)).toEqual([1, 2])
    feed.close()
  })

  it('a page waits a bounded time: a transaction stuck below its own commit leaves what is final', async () => {
    const journal = new OutOfOrderJournal()
    const feed = new JournalFeed(journal, 5, (e) => expect.fail(String(e)), false, 50)
    await feed.open()
    journal.committed.push(entry(1))
    journal.horizonSeq = 1
    journal.committed.push(entry(3))
    feed.wake([entry(3)])
    expect((await feed.page({ after: 0, limit: 10 })).map((e) => e.seq)).toEqual([1])
    feed.close()
  })
})
