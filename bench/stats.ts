/**
 * Timing and summary helpers. Every runner, lockstep's and the baseline's, measures
 * through these, so the two sides cannot differ in how they are timed or summarized.
 */

/** Monotonic milliseconds. Never Date.now(): it can step, and has 1 ms resolution. */
export const now = (): number => performance.now()

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
