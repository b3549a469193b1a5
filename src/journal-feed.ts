/**
 * Subscriptions to the journal. Local commits wake the feed at once; commits of other
 * processes are noticed by polling `PRAGMA data_version` (a cheap counter, no query of
 * the journal unless it moved). Every subscriber reads the journal itself from its own
 * cursor, so entries arrive exactly once and in `seq` order whoever wrote them.
 */
import type { JournalPage, JournalQueries } from '../persistence/journal.js'
import type { JournalEntry } from './types.js'

interface Subscriber {
  listener: (entry: JournalEntry) => void
  cursor: number
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

  constructor(
    private readonly journal: JournalQueries,
    private readonly pollMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  page(query: JournalPage): JournalEntry[] {
    return this.journal.page(query)
  }

  subscribe(listener: (entry: JournalEntry) => void, options: { after?: number; machineId?: string; actorId?: string }): () => void {
    const subscriber: Subscriber = {
      listener,
      cursor: options.after ?? this.journal.maxSeq(),
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

  /** A local commit happened. */
  wake(): void {
    if (this.subscribers.size > 0) queueMicrotask(() => this.flush())
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
    try {
      for (const subscriber of this.subscribers) {
        for (;;) {
          const entries = this.journal.page({
            after: subscriber.cursor,
            limit: BATCH,
            machineId: subscriber.machineId,
            actorId: subscriber.actorId,
          })
          for (const entry of entries) {
            subscriber.cursor = entry.seq
            if (!this.subscribers.has(subscriber)) break
            try {
              subscriber.listener(entry)
            } catch (error) {
              this.onError(error)
            }
          }
          if (entries.length < BATCH || !this.subscribers.has(subscriber)) break
        }
      }
    } finally {
      this.flushing = false
    }
  }
}
