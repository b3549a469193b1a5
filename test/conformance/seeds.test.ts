/**
 * Seed 003 on every store: real OS processes race to claim one board (one SQLite file, or
 * one PostgreSQL schema, as processes on different hosts would), and every invariant is
 * checked through the public API: no double claim or completion, one run per claim,
 * closed as completed by its claimer, and journal counts that match.
 */
import { describe, expect, it } from 'vitest'
import { checkedClaims, runProc } from '../helpers.js'
import { STORES } from './stores.js'

const TASKS = 300
const WORKERS = 4

describe.each(STORES)('seed 003 on $name', (store) => {
  it(`${WORKERS} processes x ${TASKS} tasks: no double claim or completion, one closed run per claim, counts match`, async (ctx) => {
    const orch = await store.open(ctx)
    const ids: string[] = []
    for (let i = 0; i < TASKS; i++) ids.push((await orch.tasks.create({ title: `task #${i}` })).id)

    const results = await Promise.all(Array.from({ length: WORKERS }, (_, i) => runProc('claim-worker.mjs', [orch.spec, `worker-${i}`, '2'])))
    // No error reached a worker (busy, conflicts, dropped connections); no double claim or completion.
    const claims = checkedClaims(results)
    expect(claims.size).toBe(TASKS)
    expect(new Set([...claims.values()].map((c) => c.worker)).size).toBeGreaterThan(1)

    // The board agrees: every task done, exactly one run each, closed as completed by its claimer.
    expect((await orch.tasks.list({ status: 'done', limit: 10_000 })).length).toBe(TASKS)
    for (const id of ids) {
      const runs = await orch.tasks.runs(id)
      expect(runs).toHaveLength(1)
      expect(runs[0]).toMatchObject({ id: claims.get(id)!.run, worker: claims.get(id)!.worker, outcome: 'completed' })
      expect(runs[0]!.endedAt).not.toBeNull()
    }
    // The journal agrees, in one seq order.
    const journal = await orch.tasks.events({ limit: 10_000 })
    const count = (kind: string) => journal.filter((e) => e.kind === kind).length
    expect([count('created'), count('claimed'), count('completed')]).toEqual([TASKS, TASKS, TASKS])
    expect(new Set(journal.filter((e) => e.kind === 'claimed').map((e) => e.runId)).size).toBe(TASKS)
    const seqs = journal.map((e) => e.seq)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
  })
})
