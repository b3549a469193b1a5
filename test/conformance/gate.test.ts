/**
 * Seed 002 on every store: the claim gate under racing links. A creator process links
 * children to unfinished parents (tasks.link on a child that is already `ready`, or
 * tasks.create({ parents })) while claimer processes claim and complete as fast as they
 * can. The audit reads the journal through the public API: no child was ever claimed
 * while a parent linked to it before that claim had not completed. (test/stress keeps the
 * SQLite version that also writes links behind the machine's back with raw SQL.)
 */
import { describe, expect, it } from 'vitest'
import { runProc } from '../helpers.js'
import { wholeJournal } from './journal.js'
import { STORES } from './stores.js'

const ROUNDS = 150
const CLAIMERS = 3

describe.each(STORES)('seed 002 on $name: the claim gate under racing links', (store) => {
  it(`1 linker x ${ROUNDS} rounds, ${CLAIMERS} claimers: no claim before every linked parent completed`, async (ctx) => {
    const orch = await store.open(ctx)
    // Parents that never finish: nobody claims assignee 'parents'.
    const never: string[] = []
    for (let i = 0; i < 5; i++) never.push((await orch.tasks.create({ title: `never-${i}`, assignee: 'parents' })).id)

    const [linker, ...claimers] = await Promise.all([
      runProc('gate-linker.mjs', [orch.spec, String(ROUNDS), ...never]),
      ...Array.from({ length: CLAIMERS }, (_, i) => runProc('gate-claimer.mjs', [orch.spec, `w${i}`, '2500'])),
    ])
    for (const r of [linker!, ...claimers]) {
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
    }
    const made = JSON.parse(linker!.stdout) as { parents: string[]; children: string[]; linked: number; refused: number; errors: string[] }
    expect(made.children).toHaveLength(ROUNDS)
    expect(made.errors).toEqual([])
    const claimerOut = claimers.map((r) => JSON.parse(r.stdout) as { claimed: number; violations: string[]; errors: string[] })
    // The claimers' own check, made right after each successful claim.
    expect(claimerOut.flatMap((o) => o.violations)).toEqual([])
    expect(claimerOut.flatMap((o) => o.errors)).toEqual([])

    // The journal audit. A child's parents at a claim are create's parents and every
    // parent a `linked` entry added before that claim; each must have completed before it.
    const journal = await wholeJournal(orch)
    const links = new Map<string, Array<{ parent: string; seq: number }>>()
    const completed = new Map<string, number>()
    const early: string[] = []
    let gatedClaims = 0
    for (const e of journal) {
      const own = links.get(e.actorId) ?? []
      links.set(e.actorId, own)
      if (e.kind === 'created') for (const parent of e.event.parents as string[]) own.push({ parent, seq: e.seq })
      else if (e.kind === 'linked') own.push({ parent: e.event.parentId as string, seq: e.seq })
      else if (e.kind === 'completed') completed.set(e.actorId, e.seq)
      else if (e.kind === 'claimed') {
        if (own.length > 0) gatedClaims++
        for (const { parent } of own) {
          if (!(completed.get(parent)! < e.seq)) early.push(`${e.actorId} claimed at seq ${e.seq} before its parent ${parent} completed`)
        }
      }
    }
    expect(early).toEqual([])
    // The race was really run: linked children were claimed once their parents were done,
    // and links caught children that were ready (demoted) or already taken (refused).
    expect(gatedClaims).toBeGreaterThan(0)
    expect(journal.filter((e) => e.kind === 'demoted').length + made.refused).toBeGreaterThan(0)
    // The never-finishing parents were never claimed, nor any child linked to one.
    for (const id of never) expect((await orch.tasks.get(id))!.status).toBe('ready')

    // The board agrees: every child is done (it won the race, or its parents finished
    // first) or waits in `todo` behind a parent that is not done.
    const stuck: string[] = []
    for (const id of [...made.parents, ...made.children]) {
      const task = (await orch.tasks.get(id))!
      if (task.status === 'done') continue
      const parents = await Promise.all(task.parents.map(async (p) => (await orch.tasks.get(p))!.status))
      if (task.status !== 'todo' || parents.every((s) => s === 'done')) stuck.push(`${task.title} ${id} ${task.status} (parents ${parents.join(' ')})`)
    }
    expect(stuck).toEqual([])
  })
})
