/**
 * The conformance suite's factory: every store an orchestrator can open, each giving a
 * fresh, empty board for one test and closing it afterwards. A behaviour test written once
 * runs on each (`describe.each(STORES)`); tests that read raw SQL live per store instead
 * (test/persistence/sqlite, test/persistence/postgres).
 */
import type { TestContext } from 'vitest'
import { createOrchestrator, type Orchestrator, type OrchestratorOptions } from '../../src/index.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { tableCounts } from '../helpers.js'
import { adminQuery, freshSchema, pgUrl } from '../postgres-server.js'

/** Options every store takes (the store's own location options are the factory's). */
export type CommonOptions = Omit<OrchestratorOptions, 'path' | 'url' | 'schema' | 'pool' | 'readOnly' | 'synchronous' | 'checkpoint' | 'busyTimeoutMs' | 'now'>

export interface StoreUnderTest {
  name: string
  /**
   * A fresh board (skips the test, or fails it under CI=true, when the store's server is
   * missing), and how another process opens the same one (test/procs/open-store.mjs).
   */
  open(ctx: TestContext, options?: CommonOptions): Promise<Orchestrator & { spec: string }>
  /**
   * Row counts of every board and session table, plus the sums of task and session
   * versions, read with the store's own SQL: "bad input writes nothing" means these do not
   * change.
   */
  tableCounts(spec: string): Promise<Record<string, number>>
}

const BOARD_TABLES = ['tasks', 'task_links', 'runs', 'journal', 'timers', 'sessions']

export const STORES: StoreUnderTest[] = [
  {
    name: 'sqlite',
    async open(ctx, options = {}) {
      // onTestFinished callbacks run last registered first, and after afterEach hooks: the
      // directory goes only once the orchestrator (and any opened later) has closed; removed
      // earlier, a live checkpointer could put a file back mid-removal (ENOTEMPTY, seen once).
      const dir = mkdtempSync(join(tmpdir(), 'lockstep-test-'))
      ctx.onTestFinished(() => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 }))
      const path = join(dir, 'lockstep.db')
      const orch = await createOrchestrator({ path, pollMs: 10, ...options })
      ctx.onTestFinished(() => orch.close())
      return Object.assign(orch, { spec: path })
    },
    async tableCounts(spec) {
      return tableCounts(spec)
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
    async tableCounts(spec) {
      const schema = spec.slice(spec.lastIndexOf('|') + 1)
      const counts: Record<string, number> = {}
      for (const table of BOARD_TABLES) {
        counts[table] = Number((await adminQuery<{ n: string }>(`SELECT COUNT(*) AS n FROM "${schema}".${table}`))[0]!.n)
      }
      counts.changes = Number((await adminQuery<{ n: string }>(`SELECT COALESCE(SUM(version), 0) AS n FROM "${schema}".tasks`))[0]!.n)
      counts.sessionChanges = Number((await adminQuery<{ n: string }>(`SELECT COALESCE(SUM(version), 0) AS n FROM "${schema}".sessions`))[0]!.n)
      return counts
    },
  },
]
