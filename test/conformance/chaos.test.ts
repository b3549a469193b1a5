/**
 * Chaos on every store: worker-pool processes work a DAG with short leases; two of them
 * are killed with SIGKILL mid-run and replaced. Nothing may be lost or done twice, and
 * that is checked through the public API only (runs, list, the journal), so the same
 * test holds a SQLite file and a PostgreSQL schema to one standard. (test/stress keeps
 * the SQLite version that audits the tables themselves.)
 */
import { describe, expect, it } from 'vitest'
import type { Run } from '../../src/index.js'
import { startPoolWorker } from '../helpers.js'
import { wholeJournal } from './journal.js'
import { STORES } from './stores.js'

const TASKS = 500
const ROOTS = 40
const LEASE_MS = 1_500
// A worker gives up (exits 0) after this long; a healthy run takes a few seconds.
const DEADLINE_MS = 45_000

describe.each(STORES)('chaos on $name: kill -9 worker processes mid-run', (store) => {
  it(`4 pools x ${TASKS} DAG tasks, two killed and replaced: every task done once, every run closed`, async (ctx) => {
    // This process only reads: leases of the killed workers must be reclaimed by the
    // surviving processes' timer loops, not by the test's.
    const orch = await store.open(ctx, { runTimers: false })
    // A DAG with fan-out and fan-in: roots, then each task depends on 1-3 earlier ones.
    const ids: string[] = []
    for (let i = 0; i < TASKS; i++) {
      const parents = i < ROOTS ? [] : [...new Set(Array.from({ length: 1 + (i % 3) }, (_, k) => ids[(i * 7919 + k * 104_729) % i]!))]
      ids.push((await orch.tasks.create({ title: `task ${i}`, parents, maxAttempts: 10 })).id)
    }

    const workers = ['a', 'b', 'c', 'd'].map((name) => startPoolWorker(orch.spec, name, LEASE_MS, DEADLINE_MS))
    // Kill two workers once they are busy, and start replacements. A worker that ends
    // before it got busy (the others took the work, on a starved machine) is not waited
    // for forever: it is just not killed.
    await Promise.all([workers[0]!, workers[1]!].map((w) => Promise.race([w.progress, w.exit])))
    const killed = [workers[0]!, workers[1]!].filter((w) => w.child.exitCode === null && w.child.signalCode === null)
    expect(killed.length, 'a worker to kill mid-run').toBeGreaterThan(0)
    for (const w of killed) w.child.kill('SIGKILL')
    const replacements = ['e', 'f'].map((name) => startPoolWorker(orch.spec, name, LEASE_MS, DEADLINE_MS))
    const survivors = [...[workers[0]!, workers[1]!].filter((w) => !killed.includes(w)), workers[2]!, workers[3]!, ...replacements]
    const codes = await Promise.all(survivors.map((w) => w.exit))
    for (const w of killed) expect(await w.exit).toBeNull()
    for (const [i, code] of codes.entries()) expect(code, survivors[i]!.output()).toBe(0)
    // Every task done. (A task left behind is shown with its parents' statuses: a `todo`
    // task whose parents are all done lost its promotion.)
    const left = []
    for (const id of ids) {
      const task = (await orch.tasks.get(id))!
      if (task.status === 'done') continue
      const parents = await Promise.all(task.parents.map(async (p) => `${p}=${(await orch.tasks.get(p))!.status}`))
      left.push(`${task.title} ${id} ${task.status} (parents ${parents.join(' ') || 'none'})`)
    }
    expect(left.slice(0, 5), `${left.length} tasks not done`).toEqual([])

    // No handler ever ran twice for the same run id, across kills and restarts.
    const handled = [...workers, ...replacements].flatMap((w) => w.output().match(/^run \S+$/gm) ?? [])
    expect(handled.length).toBeGreaterThanOrEqual(TASKS)
    expect(new Set(handled).size).toBe(handled.length)

    // The board: every task done; exactly one completed run each; every run closed.
    expect((await orch.tasks.list({ status: 'done', limit: 10_000 })).length).toBe(TASKS)
    const runs: Run[] = []
    for (const id of ids) {
      const own = await orch.tasks.runs(id)
      expect(own.filter((r) => r.outcome === 'completed'), `completed runs of ${id}`).toHaveLength(1)
      runs.push(...own)
    }
    const open = runs.filter((r) => r.endedAt === null || !['completed', 'reclaimed', 'released'].includes(r.outcome ?? ''))
    expect(open).toEqual([])
    expect(new Set(runs.map((r) => r.id)).size).toBe(runs.length)
    // Every handled run id is a run of the board (a handler only ever ran for a real claim).
    const runIds = new Set(runs.map((r) => r.id))
    expect(handled.filter((line) => !runIds.has(line.slice('run '.length)))).toEqual([])
    const outcome = (o: string) => runs.filter((r) => r.outcome === o).length
    // Killed with 4 handlers each in flight: their claims were reclaimed. (A live worker
    // starved of CPU on a 2-core machine may lose a lease too; that is safe, the fence
    // discards its result, so it is not asserted against.)
    const killedNames: string[] = killed.map((w) => (w === workers[0] ? 'a' : 'b'))
    expect(runs.filter((r) => r.outcome === 'reclaimed' && killedNames.includes(r.worker)).length).toBeGreaterThan(0)

    // The journal agrees with the runs exactly, in one seq order.
    const journal = await wholeJournal(orch)
    const count = (kind: string) => journal.filter((e) => e.kind === kind).length
    expect(count('created')).toBe(TASKS)
    expect(count('claimed')).toBe(runs.length)
    expect(new Set(journal.filter((e) => e.kind === 'claimed').map((e) => e.runId))).toEqual(runIds)
    expect(count('completed')).toBe(TASKS)
    expect(count('reclaimed')).toBe(outcome('reclaimed'))
    expect(count('released')).toBe(outcome('released'))
    const seqs = journal.map((e) => e.seq)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    // The gate held: every claim came after all the task's parents' completions.
    const completedAt = new Map(journal.filter((e) => e.kind === 'completed').map((e) => [e.actorId, e.seq]))
    const parentsOf = new Map(journal.filter((e) => e.kind === 'created').map((e) => [e.actorId, e.event.parents as string[]]))
    const early = journal
      .filter((e) => e.kind === 'claimed')
      .flatMap((c) => parentsOf.get(c.actorId)!.filter((p) => !(completedAt.get(p)! < c.seq)).map((p) => `${c.actorId}@${c.seq} before ${p}`))
    expect(early).toEqual([])
  })
})
