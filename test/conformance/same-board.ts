/**
 * A second orchestrator on the board a factory opened (its `spec`), in this process: a
 * second connection, as a second host would have. (Other processes use open-store.mjs.)
 */
import type { TestContext } from 'vitest'
import { createOrchestrator, type Orchestrator } from '../../src/index.js'
import type { CommonOptions } from './stores.js'

export async function openSameBoard(ctx: TestContext, spec: string, options: CommonOptions = {}): Promise<Orchestrator> {
  const [url, schema] = spec.split('|')
  const orch = /^postgres(ql)?:\/\//.test(spec)
    ? await createOrchestrator({ url: url!, schema: schema!, pollMs: 10, ...options })
    : await createOrchestrator({ path: spec, pollMs: 10, ...options })
  // Registered last, so it runs first: closed before the factory's board and schema go.
  ctx.onTestFinished(() => orch.close())
  return orch
}
