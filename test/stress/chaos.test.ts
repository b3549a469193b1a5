/**
 * Chaos: worker-pool processes work a 2,000-task DAG on one file with short leases; two
 * of them are killed with SIGKILL mid-run and replaced. Nothing may be lost or done twice.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createOrchestrator } from '../../src/index.js'
import { raw, startPoolWorker, tempDbPath, waitFor } from '../helpers.js'

const TASKS = 2_000
const LEASE_MS = 1_500

describe('a frozen holder', () => {
  it('wakes up after its task was reclaimed and completed elsewhere: its late result is refused', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path, pollMs: 10 })
    const t = await orch.tasks.create({ title: 't' })
    const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'procs', 'frozen-holder.mjs'), path, t.id, '100', '300'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout!.on('data', (d) => (out += d))
    child.stderr!.on('data', (d) => (out += d))
    const exited = new Promise((r) => child.on('exit', r))
    await waitFor(() => out.includes('claimed r_'))
    child.kill('SIGSTOP')
    // While it is frozen its lease lapses; another worker takes over and finishes.
    await waitFor(async () => (await orch.tasks.get(t.id))!.status === 'ready')
    const claim = (await orch.tasks.claim(t.id, { worker: 'healthy' }))!
    await orch.tasks.complete(claim, { result: 'the real result' })
    child.kill('SIGCONT')
    await exited
    expect(out).toContain('refused LEASE_LOST')
    expect((await orch.tasks.get(t.id))!.result).toBe('the real result')
    expect((await orch.tasks.runs(t.id)).map((r) => [r.worker, r.outcome])).toEqual([
      ['frozen', 'reclaimed'],
      ['healthy', 'completed'],
    ])
    await orch.close()
  })
})

describe('chaos: kill -9 worker processes mid-run', () => {
  it('4 pools x 2,000 DAG tasks, two killed and replaced: every task done once, every run closed', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path })
    // A DAG with fan-out and fan-in: 100 roots, then each task depends on 1-3 earlier ones.
    const ids: string[] = []
    for (let i = 0; i < TASKS; i++) {
      const parents =
        i < 100 ? [] : [...new Set(Array.from({ length: 1 + (i % 3) }, (_, k) => ids[(i * 7919 + k * 104_729) % i]!))]
      ids.push((await orch.tasks.create({ title: `task ${i}`, parents, maxAttempts: 10 })).id)
    }
    await orch.close()

    const workers = ['a', 'b', 'c', 'd'].map((name) => startPoolWorker(path, name, LEASE_MS))
    // Kill two workers once they are busy, and start replacements.
    await Promise.all([workers[0]!.progress, workers[1]!.progress])
    workers[0]!.child.kill('SIGKILL')
    workers[1]!.child.kill('SIGKILL')
    const replacements = ['e', 'f'].map((name) => startPoolWorker(path, name, LEASE_MS))
    const survivors = [workers[2]!, workers[3]!, ...replacements]
    const codes = await Promise.all(survivors.map((w) => w.exit))
    expect(await workers[0]!.exit).toBeNull()
    for (const [i, code] of codes.entries()) expect(code, survivors[i]!.output()).toBe(0)

    // No handler ever ran twice for the same run id, across kills and restarts.
    const handled = [...workers, ...replacements].flatMap((w) => w.output().match(/^run \S+$/gm) ?? [])
    expect(handled.length).toBeGreaterThanOrEqual(TASKS)
    expect(new Set(handled).size).toBe(handled.length)

    const db = raw(path)
    const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n
    expect(count(`SELECT COUNT(*) n FROM tasks WHERE status != 'done'`)).toBe(0)
    // Exactly one completed run per task; the others were reclaimed from the killed workers.
    expect(count(`SELECT COUNT(*) n FROM (SELECT task_id FROM runs WHERE outcome = 'completed' GROUP BY task_id HAVING COUNT(*) = 1)`)).toBe(TASKS)
    expect(count(`SELECT COUNT(*) n FROM runs WHERE outcome = 'completed'`)).toBe(TASKS)
    expect(count(`SELECT COUNT(*) n FROM runs WHERE ended_at IS NULL OR outcome NOT IN ('completed', 'reclaimed', 'released')`)).toBe(0)
    const reclaimed = count(`SELECT COUNT(*) n FROM runs WHERE outcome = 'reclaimed'`)
    // Killed mid-run with 4 handlers each: their in-flight claims were reclaimed. (A live
    // worker starved of CPU on this 2-core machine may lose a lease too; that is safe,
    // the fence discards its result, so it is not asserted against.)
    expect(count(`SELECT COUNT(*) n FROM runs WHERE outcome = 'reclaimed' AND worker IN ('a', 'b')`)).toBeGreaterThan(0)
    // Journal counts match the runs exactly.
    expect(count(`SELECT COUNT(*) n FROM journal WHERE kind = 'claimed'`)).toBe(count('SELECT COUNT(*) n FROM runs'))
    expect(count(`SELECT COUNT(*) n FROM journal WHERE kind = 'completed'`)).toBe(TASKS)
    expect(count(`SELECT COUNT(*) n FROM journal WHERE kind = 'reclaimed'`)).toBe(reclaimed)
    expect(count(`SELECT COUNT(*) n FROM journal WHERE kind = 'released'`)).toBe(count(`SELECT COUNT(*) n FROM runs WHERE outcome = 'released'`))
    // The gate held: no task was claimed before all its parents were done.
    expect(
      count(`SELECT COUNT(*) n FROM journal c JOIN task_links l ON l.child_id = c.actor_id
             JOIN journal p ON p.actor_id = l.parent_id AND p.kind = 'completed'
             WHERE c.kind = 'claimed' AND p.seq > c.seq`),
    ).toBe(0)
    expect(count('SELECT COUNT(*) n FROM timers')).toBe(0)
  })
})
