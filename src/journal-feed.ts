/**
 * Subscriptions to the journal, on any store. Local commits wake the feed at once; commits
 * of other processes are noticed by polling the store's cheap change check (SQLite:
 * `PRAGMA data_version`, no query of the journal unless it moved). Every subscriber has its
 * own cursor and reads only up to the journal's horizon (every seq at or below it is
 * final), so entries arrive exactly once and in `seq` order whoever wrote them, even on a
 * store whose commits do not land in seq order (PostgreSQL). Where a local commit is final
 * at once (SQLite: one writer at a time), a batch that directly follows what a subscriber
 * has been served is handed over from memory; anything else is read from the journal.
 */
import type { JournalPage, JournalSource } from '../persistence/store.js'
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
/**
 * How long a page waits for the horizon to cover this process's own commits. It waits for
 * the step transactions that were open below them (milliseconds); a transaction stuck
 * open (a frozen process) must not hang every events() call, so past this the page is
 * what is final.
 */
const OWN_COMMITS_WAIT_MS = 2_000

export class JournalFeed {
  private readonly subscribers = new Set<Subscriber>()
  private timer: NodeJS.Timeout | null = null
  private flushing = false
  /** A wake or poll arrived while flushing: flush once more when done. */
  private again = false
  private closed = false
  /** Local commits not yet delivered, in seq order. */
  private pending: JournalEntry[] = []
  /** The highest seq this process knows to be final (read from the horizon, or committed here in order). */
  private known = 0
  /** The highest seq this process has committed: a page includes it (read your own writes). */
  private committedHere = 0

  constructor(
    private readonly source: JournalSource,
    private readonly pollMs: number,
    private readonly onError: (error: unknown) => void,
    /** A local commit's entries are final at once and no lower seq can commit later (SQLite). */
    private readonly localCommitsInOrder: boolean,
    private readonly ownCommitsWaitMs = OWN_COMMITS_WAIT_MS,
  ) {}

  /** Read the horizon once, so that subscriptions without `after` start at the present. */
  async open(): Promise<void> {
    this.known = await this.source.horizon()
  }

  /**
   * A page of committed entries, never beyond the horizon, and with every entry this
   * process committed before the call: where commits land out of seq order (PostgreSQL)
   * the horizon can lag behind a commit while another transaction holds a lower seq, so
   * the page waits for it to catch up (bounded) rather than leave the caller's own write out.
   */
  async page(query: JournalPage): Promise<JournalEntry[]> {
    if (this.closed) throw new ClosedError()
    const own = this.committedHere
    const deadline = Date.now() + this.ownCommitsWaitMs
    let upTo = await this.source.horizon()
    while (upTo < own && Date.now() < deadline && !this.closed) {
      await new Promise((resolve) => setTimeout(resolve, 2))
      upTo = await this.source.horizon()
    }
    return this.source.page({ ...query, upTo })
  }

  subscribe(listener: (entry: JournalEntry) => void, options: { after?: number; machineId?: string; actorId?: string }): () => void {
    // Every subscription (tasks, sessions, run drivers, pools) starts here: after close the
    // connection is gone, so refuse with CLOSED rather than fail on it.
    if (this.closed) throw new ClosedError()
    const start = options.after ?? this.present()
    const subscriber: Subscriber = {
      listener,
      cursor: start,
      position: start,
      machineId: options.machineId,
      actorId: options.actorId,
    }
    this.subscribers.add(subscriber)
    this.ensurePolling()
    if (options.after !== undefined) queueMicrotask(() => void this.flush())
    return () => {
      this.subscribers.delete(subscriber)
      if (this.subscribers.size === 0) this.stopPolling()
    }
  }

  /** A local commit wrote these entries (consecutive seqs). */
  wake(entries: JournalEntry[]): void {
    if (entries.length > 0) this.committedHere = Math.max(this.committedHere, entries[entries.length - 1]!.seq)
    if (entries.length > 0 && this.localCommitsInOrder) this.known = Math.max(this.known, entries[entries.length - 1]!.seq)
    if (this.subscribers.size === 0) return
    this.pending.push(...entries)
    queueMicrotask(() => void this.flush())
  }

  /** Another process announced a commit: look now rather than at the next poll. */
  poke(): void {
    if (this.subscribers.size > 0) queueMicrotask(() => void this.flush())
  }

  close(): void {
    this.closed = true
    this.subscribers.clear()
    this.stopPolling()
  }

  /**
   * Where a subscription without `after` starts: the horizon now when the store answers
   * at once; otherwise the highest seq known final, so nothing committed after the call
   * is missed (a few entries from just before it may be delivered).
   */
  private present(): number {
    const horizon = this.source.horizon()
    if (typeof horizon === 'number') return horizon
    horizon.then((value) => (this.known = Math.max(this.known, value)), this.onError)
    return this.known
  }

  private ensurePolling(): void {
    if (this.timer || this.closed) return
    this.timer = setInterval(() => void this.poll(), this.pollMs)
    this.timer.unref()
  }

  private async poll(): Promise<void> {
    try {
      if (await this.source.changed()) await this.flush()
    } catch (error) {
      // A look that was under way when the feed closed (the store is closing) is no error.
      if (!this.closed) this.onError(error)
    }
  }

  private stopPolling(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  private async flush(): Promise<void> {
    if (this.closed) return
    if (this.flushing) {
      this.again = true
      return
    }
    this.flushing = true
    try {
      do {
        this.again = false
        const batch = this.pending
        this.pending = []
        const contiguous = this.localCommitsInOrder && batch.every((entry, i) => i === 0 || entry.seq === batch[i - 1]!.seq + 1)
        for (const subscriber of this.subscribers) {
          if (contiguous && batch.length > 0 && batch[0]!.seq === subscriber.position + 1) {
            this.deliver(subscriber, batch.filter((entry) => matches(subscriber, entry)))
            subscriber.position = batch[batch.length - 1]!.seq
          } else {
            await this.catchUp(subscriber)
          }
        }
      } while (this.again && !this.closed)
    } catch (error) {
      if (!this.closed) this.onError(error)
    } finally {
      this.flushing = false
    }
  }

  /** Read everything the subscriber has not seen, up to the horizon. */
  private async catchUp(subscriber: Subscriber): Promise<void> {
    const upTo = await this.source.horizon()
    this.known = Math.max(this.known, upTo)
    for (;;) {
      const entries = await this.source.page({
        after: subscriber.cursor,
        upTo,
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
