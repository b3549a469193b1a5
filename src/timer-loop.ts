/**
 * Delivers durable timers (lease expiry, retry backoff, ...) through the committed step.
 * Every open orchestrator runs one, so timers fire as long as any process has the file
 * open; two loops racing for one timer are serialized by the write lock and the second
 * finds the row gone. The loop sleeps until the earliest due timer, but never longer
 * than `pollMs`, so timers written by other processes are noticed promptly.
 */
import type { Kernel } from './core/kernel.js'

const BATCH = 256

export class TimerLoop {
  private timer: NodeJS.Timeout | null = null
  /** When the pending setTimeout fires. */
  private wakeAt = Number.POSITIVE_INFINITY
  private running: Promise<void> | null = null
  private stopped = false
  /** Only a started loop delivers: `runTimers: false` must mean no delivery from this process. */
  private started = false
  /** Bumped by every schedule(): a store that answers the due time asynchronously must not set a stale timer. */
  private scheduling = 0
  /** The last delivery run of this process (tick or runDueTimers); the next one waits for it. */
  private delivering: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly kernel: Kernel,
    private readonly pollMs: number,
    private readonly onError: (error: unknown) => void,
    /** Entry point for deliveries (the orchestrator's intake, so reloads pause them). */
    private readonly enter: <T>(operation: () => Promise<T>) => Promise<T> = (operation) => operation(),
  ) {}

  start(): void {
    this.started = true
    this.schedule()
  }

  /**
   * Deliver everything due now; resolves with the number of timers delivered. One delivery
   * at a time per process: a runDueTimers() call waits for a tick under way rather than
   * skip the rows it holds (PostgreSQL's SKIP LOCKED) and resolve before that tick commits.
   */
  runDue(): Promise<number> {
    const run = this.delivering.then(
      () => this.deliverDue(),
      () => this.deliverDue(),
    )
    this.delivering = run.catch(() => undefined)
    return run
  }

  private async deliverDue(): Promise<number> {
    let total = 0
    for (;;) {
      // A read first: an idle orchestrator must not take the write lock on every tick.
      const due = await this.kernel.nextTimerDue()
      if (due === null || due > this.kernel.now()) return total
      const delivered = await this.kernel.deliverDueTimers(BATCH)
      total += delivered
      if (delivered < BATCH) return total
    }
  }

  /** A local commit scheduled a timer due at `dueAt`: wake earlier if it is sooner than planned. */
  poke(dueAt: number): void {
    if (!this.started || this.stopped || this.running || dueAt >= this.wakeAt) return
    this.schedule()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    await this.running
  }

  private schedule(): void {
    if (this.stopped) return
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    const scheduling = ++this.scheduling
    let due: number | null | Promise<number | null> = null
    try {
      due = this.kernel.nextTimerDue()
    } catch (error) {
      this.onError(error)
    }
    if (due instanceof Promise) {
      due.then(
        (at) => scheduling === this.scheduling && this.sleepUntil(at),
        (error: unknown) => {
          // A look that was under way when the loop stopped (the store is closing) is no error.
          if (this.stopped) return
          this.onError(error)
          if (scheduling === this.scheduling) this.sleepUntil(null)
        },
      )
    } else {
      this.sleepUntil(due)
    }
  }

  /** Sleep until `due` (never longer than pollMs), then tick. */
  private sleepUntil(due: number | null): void {
    if (this.stopped) return
    const delay = due === null ? this.pollMs : Math.max(0, Math.min(this.pollMs, due - this.kernel.now()))
    this.wakeAt = this.kernel.now() + delay
    this.timer = setTimeout(() => this.tick(), delay)
    this.timer.unref()
  }

  private tick(): void {
    this.timer = null
    this.wakeAt = Number.POSITIVE_INFINITY
    this.running = this.enter(() => this.runDue())
      .then(
        () => undefined,
        // Closing races a tick: nothing to report.
        (error: unknown) => {
          if ((error as { code?: string }).code !== 'CLOSED') this.onError(error)
        },
      )
      .finally(() => {
        this.running = null
        this.schedule()
      })
  }
}
