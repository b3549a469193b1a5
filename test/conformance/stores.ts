/**
 * The conformance suite's factory: every store an orchestrator can open, each giving a
 * fresh, empty board for one test and closing it afterwards. A behaviour test written once
 * runs on each (`describe.each(STORES)`); tests that read raw SQL live per store instead
 * (test/api for SQLite, test/persistence/postgres for PostgreSQL).
 */
import type { TestContext } from 'vitest'
import { createOrchestrator, type Orchestrator, type OrchestratorOptions } from '../../src/index.js'
import { tempDbPath } from '../helpers.js'
import { freshSchema, pgUrl } from '../postgres-server.js'

/** Options every store takes (the store's own location options are the factory's). */
export type CommonOptions = Omit<OrchestratorOptions, 'path' | 'url' | 'schema' | 'pool' | 'readOnly' | 'synchronous' | 'checkpoint' | 'busyTimeoutMs' | 'now'>

export interface StoreUnderTest {
  name: string
  /**
   * A fresh board (skips the test, or fails it under CI=true, when the store's server is
   * missing), and how another process opens the same one (test/procs/open-store.mjs).
   */
  open(ctx: TestContext, options?: CommonOptions): Promise<Orchestrator & { spec: string }>
}

export const STORES: StoreUnderTest[] = [
  {
    name: 'sqlite',
    async open(ctx, options = {}) {
      const path = tempDbPath()
      const orch = await createOrchestrator({ path, pollMs: 10, ...options })
      ctx.onTestFinished(() => orch.close())
      return Object.assign(orch, { spec: path })
    },
  },
  {
    name: 'postgres',
    async open(ctx, options = {}) {
      const schema = await freshSchema(ctx)
      const orch = await createOrchestrator({ url: pgUrl, schema, pollMs: 10, ...options })
      // Registered after freshSchema's drop: closing first, then the schema goes.
      ctx.onTestFinished(() => orch.close())
      return Object.assign(orch, { spec: `${pgUrl}|${schema}` })
    },
  },
]
