/**
 * Subscriptions to the journal. Local commits wake the feed at once; commits of other
 * processes are noticed by polling `PRAGMA data_version` (a cheap counter, no query of
 * the journal unless it moved). Every subscriber has its own cursor, so entries arrive
 * exactly once and in `seq` order whoever wrote them. A local commit that directly follows
 * what a subscriber has already been served is handed over from memory; anything else
 * (a gap means another process committed in between) is read from the journal.
 */
import type { JournalPage, JournalQueries } from '../persistence/sqlite/journal.js'
import { ClosedError } from './errors.js'
import type { JournalEntry } from './types.js'

interface Subscriber {
  listener: (entry: JournalEntry) => void
  /** The last entry delivered to this subscriber (matching its filter). */
  cursor: number
  /** Every entry up to this seq, matching or not, has been considered. */
  position: number
  machineId?: string
  actorId?: string
}

const BATCH = 1_000

export class JournalFeed {
  private readonly subscribers = new Set<Subscriber>()
  private timer: NodeJS.Timeout | null = null
  private lastDataVersion = -1
  private flushing = false
  private closed = false
  /** Local commits not yet delivered, in seq order. */
  private pending: JournalEntry[] = []

  constructor(
    private readonly journal: JournalQueries,
    private readonly pollMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  page(query: JournalPage): JournalEntry[] {
    if (this.closed) throw new ClosedError()
    return this.journal.page(query)
  }

  subscribe(listener: (entry: JournalEntry) => void, options: { after?: number; machineId?: string; actorId?: string }): () => void {
    // Every subscription (tasks, sessions, run drivers, pools) starts here: after close the
    // connection is gone, so refuse with CLOSED rather than fail on it.
    if (this.closed) throw new ClosedError()
    const start = options.after ?? this.journal.maxSeq()
    const subscriber: Subscriber = {
      listener,
      cursor: start,
      position: start,
      machineId: options.machineId,
      actorId: options.actorId,
    }
    this.subscribers.add(subscriber)
    this.ensurePolling()
    if (options.after !== undefined) queueMicrotask(() => this.flush())
    return () => {
      this.subscribers.delete(subscriber)
      if (this.subscribers.size === 0) this.stopPolling()
    }
  }

  /** A local commit wrote these entries (consecutive seqs). */
  wake(entries: JournalEntry[]): void {
    if (this.subscribers.size === 0) return
    this.pending.push(...entries)
    queueMicrotask(() => this.flush())
  }

  close(): void {
    this.closed = true
    this.subscribers.clear()
    this.stopPolling()
  }

  private ensurePolling(): void {
    if (this.timer || this.closed) return
    this.timer = setInterval(() => {
      try {
        const version = this.journal.dataVersion()
        if (version === this.lastDataVersion) return
        this.lastDataVersion = version
        this.flush()
      } catch (error) {
        this.onError(error)
      }
    }, this.pollMs)
    this.timer.unref()
  }

  private stopPolling(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  private flush(): void {
    if (this.flushing || this.closed) return
    this.flushing = true
    const batch = this.pending
    this.pending = []
    const contiguous = batch.every((entry, i) => i === 0 || entry.seq === batch[i - 1]!.seq + 1)
    try {
      for (const subscriber of this.subscribers) {
        if (contiguous && batch.length > 0 && batch[0]!.seq === subscriber.position + 1) {
          this.deliver(subscriber, batch.filter((entry) => matches(subscriber, entry)))
          subscriber.position = batch[batch.length - 1]!.seq
        } else {
          this.catchUp(subscriber)
        }
      }
    } finally {
      this.flushing = false
    }
  }

  /** Read everything the subscriber has not seen from the journal. */
  private catchUp(subscriber: Subscriber): void {
    const upTo = this.journal.maxSeq()
    for (;;) {
      const entries = this.journal.page({
        after: subscriber.cursor,
        limit: BATCH,
        machineId: subscriber.machineId,
        actorId: subscriber.actorId,
      })
      this.deliver(subscriber, entries)
      if (entries.length < BATCH || !this.subscribers.has(subscriber)) break
    }
    subscriber.position = Math.max(upTo, subscriber.cursor)
  }

  private deliver(subscriber: Subscriber, entries: JournalEntry[]): void {
    for (const entry of entries) {
      if (entry.seq <= subscriber.cursor) continue
      if (!this.subscribers.has(subscriber)) return
      subscriber.cursor = entry.seq
      try {
        subscriber.listener(entry)
      } catch (error) {
        this.onError(error)
      }
    }
  }
}

function matches(subscriber: Subscriber, entry: JournalEntry): boolean {
  return (
    (subscriber.machineId === undefined || entry.machineId === subscriber.machineId) &&
    (subscriber.actorId === undefined || entry.actorId === subscriber.actorId)
  )
}
