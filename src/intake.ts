/**
 * The request barrier. Every public call enters through `run()`. `exclusive()` pauses
 * intake (new calls wait; none fail), waits for the calls already in flight to settle
 * (bounded), runs its function alone, then lets the waiting calls through in order.
 * Reloads and MCP handler swaps use it.
 */
import { ClosedError } from './errors.js'

export class Intake {
  private readonly inFlight = new Set<Promise<unknown>>()
  /** Resolves when the current exclusive section ends; null when intake is open. */
  private paused: Promise<void> | null = null
  private closed = false

  run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new ClosedError())
    if (this.paused) return this.paused.then(() => this.run(operation))
    const promise = operation()
    this.inFlight.add(promise)
    const forget = () => this.inFlight.delete(promise)
    promise.then(forget, forget)
    return promise
  }

  /**
   * Run `fn` with intake paused. Calls in flight get up to `drainMs` to finish first;
   * ones still running after that keep running (they are single transactions already
   * committed or about to be), and `fn` proceeds.
   */
  async exclusive<T>(fn: () => Promise<T> | T, drainMs = 10_000): Promise<T> {
    while (this.paused) await this.paused
    if (this.closed) throw new ClosedError()
    let resume!: () => void
    this.paused = new Promise<void>((resolve) => (resume = resolve))
    try {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        Promise.allSettled([...this.inFlight]),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs))),
      ])
      clearTimeout(timer)
      return await fn()
    } finally {
      this.paused = null
      resume()
    }
  }

  /** Refuse new calls and wait for those in flight. */
  async close(): Promise<void> {
    while (this.paused) await this.paused
    this.closed = true
    await Promise.allSettled([...this.inFlight])
  }

  get isClosed(): boolean {
    return this.closed
  }
}
