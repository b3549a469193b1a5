/**
 * The one interface both contenders are driven through, so a single runner (worker.ts)
 * measures them. Lockstep's methods return promises, the SQLite baseline's return values;
 * the runner awaits both, which costs that baseline one microtask per call (~1 µs), noise
 * beside a sub-millisecond transaction.
 */
import { rmSync } from 'node:fs'
import { createOrchestrator, type Claim, type Orchestrator } from '../src/index.js'
import { BaselineBoard } from './baseline.js'
import { PgBaselineBoard } from './baseline-postgres.js'
import { dropSchema, scratchSchemaName } from './postgres.js'
import type { BoardSpec } from './protocol.js'

export interface BenchBoard<C = unknown> {
  create(title: string): unknown
  claimNext(worker: string): C | null | Promise<C | null>
  complete(claim: C): unknown
  close(): unknown
}

export async function openBoard(spec: BoardSpec): Promise<BenchBoard> {
  if (spec.impl === 'lockstep') return openLockstep(spec)
  return (spec.store === 'sqlite' ? new BaselineBoard(spec) : await PgBaselineBoard.open(spec)) as BenchBoard<unknown>
}

/**
 * lockstep on the spec's store, with defaults everywhere else (timer loop, journal feed,
 * lease, the PostgreSQL pool), as an app would run it.
 */
export function openOrchestrator(spec: BoardSpec, pollMs?: number): Promise<Orchestrator> {
  return spec.store === 'sqlite'
    ? createOrchestrator({ path: spec.path, synchronous: spec.synchronous, busyTimeoutMs: spec.busyTimeoutMs, pollMs })
    : createOrchestrator({ url: spec.url, schema: spec.schema, pollMs })
}

async function openLockstep(spec: BoardSpec): Promise<BenchBoard<Claim>> {
  const orch = await openOrchestrator(spec)
  return {
    create: (title) => orch.tasks.create({ title }),
    claimNext: (worker) => orch.tasks.claimNext({ worker }),
    complete: (claim) => orch.tasks.complete(claim),
    close: () => orch.close(),
  }
}

/**
 * Run `fn` on a private scratch board beside `spec` (a file next to it, or a schema of
 * this process's), removed afterwards: warm-ups, so the timed loop measures steady state
 * rather than V8 compiling XState (lockstep) or the statements (baseline).
 */
export async function onScratchBoard(spec: BoardSpec, fn: (scratch: BoardSpec) => Promise<unknown>): Promise<void> {
  if (spec.store === 'sqlite') {
    const path = `${spec.path}.warmup-${process.pid}`
    try {
      await fn({ ...spec, path })
    } finally {
      for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true })
    }
    return
  }
  const schema = scratchSchemaName(spec.schema)
  try {
    await fn({ ...spec, schema })
  } finally {
    await dropSchema(spec.url, schema)
  }
}

/** Where each contender journals its events, for the post-run consistency check. */
export const EVENTS_TABLE: Record<BoardSpec['impl'], string> = {
  lockstep: 'journal',
  baseline: 'events',
}
