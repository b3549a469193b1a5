/**
 * The one interface both contenders are driven through, so a single runner (worker.ts)
 * measures them. Lockstep's methods return promises, the baseline's return values; the
 * runner awaits both, which costs the baseline one microtask per call (~1 µs), noise
 * beside a sub-millisecond transaction.
 */
import { createOrchestrator, type Claim } from '../src/index.js'
import { BaselineBoard } from './baseline.js'
import type { BoardSpec } from './protocol.js'

export interface BenchBoard<C = unknown> {
  create(title: string): unknown
  claimNext(worker: string): C | null | Promise<C | null>
  complete(claim: C): unknown
  close(): unknown
}

export async function openBoard(spec: BoardSpec): Promise<BenchBoard> {
  return spec.impl === 'lockstep' ? openLockstep(spec) : (new BaselineBoard(spec) as BenchBoard<unknown>)
}

async function openLockstep(spec: BoardSpec): Promise<BenchBoard<Claim>> {
  // Defaults everywhere else: the timer loop and journal feed run as they would in an app.
  const orch = await createOrchestrator({
    path: spec.path,
    synchronous: spec.synchronous,
    busyTimeoutMs: spec.busyTimeoutMs,
  })
  return {
    create: (title) => orch.tasks.create({ title }),
    claimNext: (worker) => orch.tasks.claimNext({ worker }),
    complete: (claim) => orch.tasks.complete(claim),
    close: () => orch.close(),
  }
}

/** Where each contender journals its events, for the post-run consistency check. */
export const EVENTS_TABLE: Record<BoardSpec['impl'], string> = {
  lockstep: 'journal',
  baseline: 'events',
}
