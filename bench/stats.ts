/**
 * Timing and summary helpers. Every runner, lockstep's and the baseline's, measures
 * through these, so the two sides cannot differ in how they are timed or summarized.
 */

/** Monotonic milliseconds. Never Date.now(): it can step, and has 1 ms resolution. */
export const now = (): number => performance.now()

/**
 * Wall-clock milliseconds with sub-millisecond resolution: performance.timeOrigin (the
 * process's start, read from the system clock) plus its monotonic performance.now().
 * Used where two processes' times are subtracted (create→start latency). Each process's
 * timeOrigin can be off by however long the process was preempted while Node read its
 * two start clocks, so cross-process differences are corrected with
 * clockOffsetMs().
 */
export const wallClock = (): number => performance.timeOrigin + performance.now()

/**
 * How far wallClock() is from the system clock (Date.now(), shared by all processes) in
 * this process, to a few microseconds: spin until Date.now() ticks to the next
 * millisecond, when the true time is that integer. A reading is only as good as the
 * loop iteration that saw the tick is short, so readings from iterations longer than
 * 20 µs (a preemption) are dropped; median of five good ones (~5 ms of spinning).
 */
export function clockOffsetMs(): number {
  const good: number[] = []
  const all: number[] = []
  let last = Date.now()
  let lastRead = performance.now()
  for (let ticks = 0; good.length < 5 && ticks < 100; ) {
    const at = wallClock()
    const tick = Date.now()
    const read = performance.now()
    if (tick !== last) {
      ticks++
      all.push(at - tick)
      // The tick happened between the two Date.now() reads, lastRead..read: so did `at`.
      if (read - lastRead < 0.02) good.push(at - tick)
      last = tick
    }
    lastRead = read
  }
  return median(good.length > 0 ? good : all)
}

/** Time one awaited call and push its duration (ms) onto `into`. */
export async function timed<T>(into: number[], fn: () => T | Promise<T>): Promise<T> {
  const start = now()
  const value = await fn()
  into.push(now() - start)
  return value
}

/** CPU milliseconds (user + system) this process has used since `since` (from process.cpuUsage()). */
export function cpuMsSince(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since)
  return (used.user + used.system) / 1000
}

export function perSecond(count: number, ms: number): number {
  return ms > 0 ? (count * 1000) / ms : 0
}

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50)
}

export interface LatencySummary {
  samples: number
  p50: number
  p99: number
  mean: number
  max: number
}

export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b)
  const sum = sorted.reduce((total, x) => total + x, 0)
  return {
    samples: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
  }
}
