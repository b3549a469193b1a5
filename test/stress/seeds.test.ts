/**
 * Ports of seeds 002 and 003 (../shared/seeds): real OS processes racing on one SQLite
 * file, with every invariant checked from lockstep's own journal and runs.
 */
import { describe, expect, it } from 'vitest'
import { createOrchestrator } from '../../src/index.js'
import { checkedClaims, raw, runProc, tempDbPath } from '../helpers.js'

describe('seed 003: processes race to claim on one file', () => {
  it('5 processes x 1,000 tasks: no double claim or completion, one closed run per claim, counts match', async () => {
    const path = tempDbPath()
    const TASKS = 1_000
    const WORKERS = 5
    const seedOrch = await createOrchestrator({ path })
    const ids = new Set<string>()
    for (let i = 0; i < TASKS; i++) {
      const task = await seedOrch.tasks.create({ title: `task #${i}`, assignee: 'shared', tenant: 'concurrency-test' })
      ids.add(task.id)
    }
    await seedOrch.close()

    const results = await Promise.all(
      Array.from({ length: WORKERS }, (_, i) => runProc('claim-worker.mjs', [path, `worker-${i}`, '3', 'shared'])),
    )
    // No error (SQLite busy/locked included) reached a worker; no double claim or completion.
    const claims = checkedClaims(results)
    expect(claims.size).toBe(TASKS)
    // The work was really shared between processes.
    expect(new Set([...claims.values()].map((c) => c.worker)).size).toBeGreaterThan(1)

    const db = raw(path)
    const count = (sql: string, ...params: unknown[]) => (db.prepare(sql).get(...params) as { n: number }).n
    expect(count(`SELECT COUNT(*) n FROM tasks WHERE status != 'done' OR run_id IS NOT NULL`)).toBe(0)
    // Exactly one run per task, closed once, as completed, by its claimer.
    expect(count('SELECT COUNT(*) n FROM (SELECT task_id FROM runs GROUP BY task_id HAVING COUNT(*) != 1)')).toBe(0)
    expect(count('SELECT COUNT(*) n FROM runs')).toBe(TASKS)
    expect(count(`SELECT COUNT(*) n FROM runs WHERE ended_at IS NULL OR outcome IS NOT 'completed'`)).toBe(0)
    for (const run of db.prepare('SELECT id, task_id, worker FROM runs').all() as Array<{ id: string; task_id: string; worker: string }>) {
      expect(claims.get(run.task_id)).toEqual({ worker: run.worker, run: run.id })
    }
    // The journal agrees: runs == claimed == completed == tasks, each run id journaled once per kind.
    expect(count(`SELECT COUNT(*) n FROM journal WHERE kind = 'claimed'`)).toBe(TASKS)
    expect(count(`SELECT COUNT(*) n FROM journal WHERE kind = 'completed'`)).toBe(TASKS)
    expect(count(`SELECT COUNT(DISTINCT run_id) n FROM journal WHERE kind IN ('claimed', 'completed')`)).toBe(TASKS)
    expect(count(`SELECT COUNT(*) n FROM journal WHERE kind NOT IN ('created', 'claimed', 'completed')`)).toBe(0)
    // Nothing left scheduled: every lease timer was cancelled with its run.
    expect(count('SELECT COUNT(*) n FROM timers')).toBe(0)
  })
})

describe('opening a fresh file', () => {
  it('several processes creating the same new file at once all succeed (WAL switch and migration serialized)', async () => {
    for (let trial = 0; trial < 3; trial++) {
      const path = tempDbPath()
      const outs = await Promise.all(Array.from({ length: 4 }, (_, i) => runProc('create-one.mjs', [path, `from process ${i}`])))
      for (const out of outs) {
        expect(out.stderr).toBe('')
        expect(out.code).toBe(0)
      }
      expect(raw(path).prepare('SELECT COUNT(*) n FROM tasks').get()).toEqual({ n: 4 })
    }
  })
})

describe('seed 002: the parent gate under a create-then-link race', () => {
  it('no claim ever succeeds while a parent is not done; racing links are refused or demote', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path })
    // Ten parents that never finish: nobody claims assignee 'parents'.
    const parents: string[] = []
    for (let i = 0; i < 10; i++) parents.push((await orch.tasks.create({ title: `parent-${i}`, assignee: 'parents' })).id)
    await orch.close()

    const creator = runProc('racy-creator.mjs', [path, '200', ...parents])
    const claimers = Array.from({ length: 4 }, (_, i) => runProc('gate-claimer.mjs', [path, `w${i}`, '1500']))
    const [created, ...claimed] = await Promise.all([creator, ...claimers])
    for (const r of [created, ...claimed]) {
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
    }
    const c = JSON.parse(created.stdout)
    expect(c.children).toHaveLength(200)
    expect(c.errors).toEqual([])
    const claimerOut = claimed.map((r) => JSON.parse(r.stdout))
    // The claimers' own check, made right after each successful claim.
    expect(claimerOut.flatMap((o) => o.violations)).toEqual([])
    expect(claimerOut.flatMap((o) => o.errors)).toEqual([])

    const db = raw(path)
    const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n
    // The journal audit: a child that has a link to a (never done) parent was never claimed.
    expect(
      count(`SELECT COUNT(*) n FROM journal j JOIN task_links l ON l.child_id = j.actor_id WHERE j.kind = 'claimed'`),
    ).toBe(0)
    // Every child is accounted for: claimed and done (it won the race), or waiting behind its parents.
    expect(count(`SELECT COUNT(*) n FROM tasks WHERE assignee = 'a' AND status NOT IN ('done', 'todo')`)).toBe(0)
    expect(
      count(`SELECT COUNT(*) n FROM tasks t WHERE assignee = 'a' AND status = 'todo'
             AND NOT EXISTS (SELECT 1 FROM task_links l WHERE l.child_id = t.id)`),
    ).toBe(0)
    // Links written behind the machine's back left children `ready`; the gate refused each
    // of them at its next claim, demoted it and journaled claim_rejected.
    const rawLinkedChildren = count(
      `SELECT COUNT(DISTINCT l.child_id) n FROM task_links l JOIN tasks t ON t.id = l.child_id
       WHERE t.assignee = 'a' AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.actor_id = t.id AND j.kind = 'linked')`,
    )
    expect(count(`SELECT COUNT(DISTINCT actor_id) n FROM journal WHERE kind = 'claim_rejected'`)).toBe(rawLinkedChildren)
    expect(c.rawLinked).toBeGreaterThan(0)
    // And the parents themselves were never claimed.
    expect(count(`SELECT COUNT(*) n FROM tasks WHERE assignee = 'parents' AND status != 'ready'`)).toBe(0)
  })
})
