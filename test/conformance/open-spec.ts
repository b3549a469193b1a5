/**
 * Another orchestrator on the board a conformance test already opened (`orch.spec`): a
 * restart, or a second process's view, in this process. The same spec rule as
 * test/procs/open-store.mjs; closed after the test, before the factory drops the schema.
 */
import type { TestContext } from 'vitest'
import { createOrchestrator, type Orchestrator } from '../../src/index.js'
import type { CommonOptions } from './stores.js'

export async function openSpec(ctx: TestContext, spec: string, options: CommonOptions = {}): Promise<Orchestrator> {
  const location = /^postgres(ql)?:\/\//.test(spec)
    ? { url: spec.slice(0, spec.lastIndexOf('|')), schema: spec.slice(spec.lastIndexOf('|') + 1) }
    : { path: spec }
  const orch = await createOrchestrator({ ...location, pollMs: 10, ...options })
  ctx.onTestFinished(() => orch.close())
  return orch
}
