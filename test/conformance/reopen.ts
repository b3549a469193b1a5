/**
 * Opening a second orchestrator, in this process, on the board a conformance test's
 * `store.open` made (its `spec`, as test/procs/open-store.mjs reads it), closed after the test.
 */
import type { TestContext } from 'vitest'
import { createOrchestrator, type Orchestrator, type OrchestratorOptions } from '../../src/index.js'

/** The orchestrator options naming the board of `spec`: a SQLite path, or "postgres://...|<schema>". */
export function locationOf(spec: string): { path: string } | { url: string; schema: string } {
  if (/^postgres(ql)?:\/\//.test(spec)) {
    const cut = spec.lastIndexOf('|')
    return { url: spec.slice(0, cut), schema: spec.slice(cut + 1) }
  }
  return { path: spec }
}

export async function reopen(ctx: TestContext, spec: string, options: OrchestratorOptions = {}): Promise<Orchestrator> {
  const orch = await createOrchestrator({ ...locationOf(spec), pollMs: 10, ...options })
  // Registered after the board's own cleanup: runs first (closing before a schema is dropped).
  ctx.onTestFinished(() => orch.close())
  return orch
}
