/**
 * The task board on SQLite where the test must write or read raw SQL: a link written
 * behind the machine's back, and a file from before exclusive assignees. (The behaviour
 * itself runs on every store: test/conformance/board.test.ts.)
 */
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { createOrchestrator } from '../../../src/index.js'
import { raw, tempDbPath } from '../../helpers.js'

describe('claims', () => {
  it('the gate re-reads parents at claim time: a link written behind the machine is refused and demoted (seed 002)', async () => {
    const path = tempDbPath()
    const orch = await createOrchestrator({ path })
    const parent = await orch.tasks.create({ title: 'parent' })
    const child = await orch.tasks.create({ title: 'child' })
    expect(child.status).toBe('ready')
    // What the pre-fix Hermes kernel did: a link row inserted while the child is ready.
    const w = new Database(path)
    w.prepare('INSERT INTO task_links (parent_id, child_id, created_at) VALUES (?, ?, ?)').run(parent.id, child.id, Date.now())
    w.close()
    expect(await orch.tasks.claim(child.id, { worker: 'w' })).toBeNull()
    const after = (await orch.tasks.get(child.id))!
    expect(after.status).toBe('todo')
    const events = await orch.tasks.events({ taskId: child.id })
    expect(events.map((e) => e.kind)).toEqual(['created', 'claim_rejected'])
    expect(await orch.tasks.runs(child.id)).toEqual([])
    // Completing the parent promotes it as usual.
    const pc = (await orch.tasks.claim(parent.id, { worker: 'w' }))!
    await orch.tasks.complete(pc)
    expect((await orch.tasks.get(child.id))!.status).toBe('ready')
    await orch.close()
  })
})

describe('exclusive assignees (issue 9)', () => {
  it('a file from before exclusive assignees is migrated: its task snapshots learn their assignee', async () => {
    const path = tempDbPath()
    const first = await createOrchestrator({ path })
    const bobs = await first.tasks.create({ title: "bob's", assignee: 'bob' })
    const free = await first.tasks.create({ title: 'free' })
    await first.close()
    // Roll the file back to schema 4: snapshots without the assignee, the old ready indexes.
    const w = new Database(path)
    w.exec(`
      UPDATE tasks SET snapshot = json_remove(snapshot, '$.context.assignee');
      DROP INDEX tasks_ready_by_assignee; DROP INDEX tasks_ready_assigned; DROP INDEX tasks_ready_by_tenant;
      CREATE INDEX tasks_ready ON tasks (priority DESC, created_at) WHERE status = 'ready';
      CREATE INDEX tasks_ready_assignee ON tasks (assignee, priority DESC, created_at) WHERE status = 'ready' AND assignee IS NOT NULL;
      CREATE INDEX tasks_ready_tenant ON tasks (tenant, priority DESC, created_at) WHERE status = 'ready' AND tenant IS NOT NULL;
      PRAGMA user_version = 4;
    `)
    w.close()
    const second = await createOrchestrator({ path })
    const snapshotOf = (id: string) =>
      JSON.parse((raw(path).prepare('SELECT snapshot FROM tasks WHERE id = ?').get(id) as { snapshot: string }).snapshot)
    expect(snapshotOf(bobs.id).context.assignee).toBe('bob')
    expect(snapshotOf(free.id).context.assignee).toBeNull()
    await expect(second.tasks.claim(bobs.id, { worker: 'w' })).rejects.toMatchObject({ code: 'ASSIGNEE_MISMATCH' })
    expect((await second.tasks.claimNext({ worker: 'w' }))!.taskId).toBe(free.id)
    expect((await second.tasks.claimNext({ worker: 'w', assignee: 'bob' }))!.taskId).toBe(bobs.id)
    await second.close()
  })
})
