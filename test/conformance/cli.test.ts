/**
 * The `lockstep` CLI on every store, run as real child processes with `--db PATH` or
 * `--db postgres://... --schema S`: tasks, claims and their fences, the journal and its
 * followers, bad input (exit 1, nothing written), usage errors (exit 2). What only SQLite
 * files have (the default ./lockstep.db, missing, foreign or unwritable files, the demo):
 * test/persistence/sqlite/cli-files.test.ts. Needs a prior `npm run build` (npm test does
 * it): this file builds nothing itself.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it, type TestContext } from 'vitest'
import type { Claim, JournalEntry, Run, Task } from '../../src/index.js'
import { tempDbPath } from '../helpers.js'
import { freshSchema, pgUrl } from '../postgres-server.js'
import { openSameBoard } from './same-board.js'
import { STORES, type StoreUnderTest } from './stores.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist/src/tools/cli/main.js')

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` before vitest`)
})

/** `lockstep ARGS`, any outcome. */
function run(args: string[], cwd = ROOT): Result {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 60_000 })
  if (r.error) throw r.error
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const ndjson = <T>(stdout: string): T[] =>
  stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T)

const ids = (tasks: Task[]) => tasks.map((t) => t.id)

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The CLI's way to name a board: `--db PATH`, or `--db URL --schema S`. */
const dbArgs = (spec: string): string[] =>
  /^postgres(ql)?:\/\//.test(spec) ? ['--db', spec.split('|')[0]!, '--schema', spec.slice(spec.lastIndexOf('|') + 1)] : ['--db', spec]

/**
 * A fresh, initialized board on `store` that nothing else has open (the CLI processes of
 * the test are its only users: nobody else delivers timers), a temp directory, and the CLI
 * aimed at the board.
 */
async function board(store: StoreUnderTest, ctx: TestContext) {
  const orch = await store.open(ctx)
  await orch.close()
  const { spec } = orch
  const db = dbArgs(spec)
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-cli-'))
  /** Background CLI processes of this test, killed if a failing test leaves one running. */
  const children: ChildProcess[] = []
  ctx.onTestFinished(() => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })

  /** `lockstep ARGS --db ...`, any outcome. */
  const attempt = (...args: string[]): Result => run([...args, ...db])

  /** `lockstep ARGS --db ...`, which must succeed; its stdout. */
  function cli(...args: string[]): string {
    const r = attempt(...args)
    expect(r.code, `lockstep ${args.join(' ')}\n${r.stderr}`).toBe(0)
    return r.stdout
  }

  /** `lockstep ARGS --db ... --json`, which must succeed; its one JSON document. */
  const cliJson = <T = any>(...args: string[]): T => JSON.parse(cli(...args, '--json')) as T

  const create = (...args: string[]): Task => cliJson<Task>('task', 'create', ...args)

  /**
   * The whole board: row counts (and task versions) of every table, every task with its
   * runs, the whole journal. Read in this process through the public API, on an
   * orchestrator that delivers no timers and is closed at once (cheaper than more CLI runs).
   */
  async function boardState() {
    const reader = await openSameBoard(ctx, spec, { runTimers: false })
    try {
      const tasks = await reader.tasks.list({ limit: 10_000 })
      return {
        counts: await store.tableCounts(spec),
        tasks,
        runs: await Promise.all(tasks.map((t) => reader.tasks.runs(t.id))),
        journal: await reader.tasks.events({ limit: 10_000 }),
      }
    } finally {
      await reader.close()
    }
  }

  /** Expect `fn` to change nothing on the board: no row, no version, no field of a task or run. */
  async function expectNothingWritten(fn: () => void): Promise<void> {
    const before = await boardState()
    expect(before.tasks).not.toEqual([]) // the checks below must have something to not change
    fn()
    expect(await boardState()).toEqual(before)
  }

  /** A CLI process left running (events --follow), with its stdout collected line by line. */
  function background(...args: string[]) {
    const child = spawn(process.execPath, [CLI, ...args, ...db], { cwd: ROOT })
    children.push(child)
    const lines: string[] = []
    let partial = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n')
      partial = parts.pop()!
      lines.push(...parts)
    })
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    )
    let running = true
    void exited.then(() => (running = false))
    return {
      child,
      lines,
      exited,
      stderr: () => stderr,
      running: () => running,
      async waitForLine(match: (line: string) => boolean, timeoutMs = 20_000): Promise<void> {
        const deadline = Date.now() + timeoutMs
        while (!lines.some(match)) {
          if (Date.now() > deadline) throw new Error(`no matching line in time; got:\n${lines.join('\n')}\n${stderr}`)
          await sleep(20)
        }
      },
    }
  }

  return { where: orch.path, spec, db, dir, attempt, cli, cliJson, create, expectNothingWritten, background }
}

describe.each(STORES)('on $name', (store) => {
  describe('lockstep init', () => {
    it('creates and migrates a store where there was none; the other commands then use it', async (ctx) => {
      // A location nothing has opened: a new file, or a schema that does not exist yet.
      const spec = store.name === 'postgres' ? `${pgUrl}|${await freshSchema(ctx)}` : tempDbPath()
      const init = run(['init', ...dbArgs(spec), '--json'])
      expect(init.code, init.stderr).toBe(0)
      const reader = await openSameBoard(ctx, spec, { runTimers: false })
      expect(JSON.parse(init.stdout)).toEqual({ path: reader.path })
      await reader.close()
      expect(run(['task', 'list', ...dbArgs(spec)])).toMatchObject({ code: 0, stdout: 'no tasks\n' })
    })

    it('migrates the store, prints where it is, and is idempotent', async (ctx) => {
      const { where, cli, cliJson } = await board(store, ctx)
      expect(cliJson('init')).toEqual({ path: where })
      expect(cliJson('init')).toEqual({ path: where })
      expect(cli('init')).toBe(`${where}\n`)
      expect(cli('events')).toBe('')
    })
  })

  describe('lockstep task', () => {
    it('create links parents and keeps the payload; list filters; show prints task, runs and journal', async (ctx) => {
      const { cli, cliJson, create, attempt } = await board(store, ctx)
      const a = create('--title', 'research', '--priority', '5', '--assignee', 'ann', '--tenant', 'acme')
      const b = create('--title', 'review', '--body', 'read it twice', '--priority', '-5')
      const payload = { topic: 'x', n: [1, 2], nested: { ok: true } }
      const c = create(
        '--title', 'draft',
        '--parent', a.id,
        '--parent', b.id,
        '--payload', JSON.stringify(payload),
        '--idempotency-key', 'draft-1',
        '--max-attempts', '5',
      )
      expect(a).toMatchObject({ status: 'ready', priority: 5, assignee: 'ann', tenant: 'acme', parents: [] })
      expect(b).toMatchObject({ status: 'ready', priority: -5, body: 'read it twice' })
      expect(c).toMatchObject({ title: 'draft', status: 'todo', payload, idempotencyKey: 'draft-1', maxAttempts: 5 })
      expect([...c.parents].sort()).toEqual([a.id, b.id].sort())
      // The idempotency key returns the first task instead of creating another.
      expect(create('--title', 'draft again', '--idempotency-key', 'draft-1').id).toBe(c.id)

      expect(ids(cliJson('task', 'list'))).toEqual([a.id, b.id, c.id])
      expect(ids(cliJson('task', 'list', '--status', 'ready'))).toEqual([a.id, b.id])
      expect(ids(cliJson('task', 'list', '--status', 'todo'))).toEqual([c.id])
      expect(ids(cliJson('task', 'list', '--status', 'done'))).toEqual([])
      expect(ids(cliJson('task', 'list', '--assignee', 'ann'))).toEqual([a.id])
      expect(ids(cliJson('task', 'list', '--tenant', 'acme'))).toEqual([a.id])
      expect(ids(cliJson('task', 'list', '--limit', '2'))).toEqual([a.id, b.id])

      const text = cli('task', 'list', '--status', 'ready').trim().split('\n')
      expect(text).toHaveLength(2)
      expect(text[0]).toMatch(new RegExp(`^${a.id}  ready  "research"  priority=5 assignee=ann tenant=acme$`))
      expect(cli('task', 'list', '--status', 'failed').trim()).toBe('no tasks')
      expect(cli('task', 'create', '--title', 'plain text')).toMatch(/^t_\S+  ready  "plain text"\n$/)

      const shown = cliJson<{ task: Task; runs: Run[]; events: JournalEntry[] }>('task', 'show', c.id)
      expect(shown.task).toEqual(c)
      expect(shown.runs).toEqual([])
      expect(shown.events).toHaveLength(1)
      expect(shown.events[0]).toMatchObject({ actorId: c.id, kind: 'created', stateBefore: null, stateAfter: 'todo' })
      const shownText = cli('task', 'show', c.id)
      expect(shownText).toContain(`payload: ${JSON.stringify(payload)}`)
      expect(shownText).toMatch(/runs:\n {2}\(none\)\nevents:\n {2}\d+ {2}\S+Z {2}t_\S+ {2}created {2}\(none\)->todo {2}-\n$/)

      const missing = attempt('task', 'show', 't_nope', '--json')
      expect(missing.code).toBe(1)
      expect(JSON.parse(missing.stdout)).toMatchObject({ error: { code: 'TASK_NOT_FOUND' } })
    })

    it('claims the next task and a task by id, and completes them with the printed run and token', async (ctx) => {
      const { cli, cliJson, create, attempt, expectNothingWritten } = await board(store, ctx)
      const a = create('--title', 'first', '--priority', '5')
      const b = create('--title', 'second', '--priority', '1')
      const c = create('--title', 'after first', '--parent', a.id)

      // c waits on a: a claim by id is refused, which is not an error.
      const refused = attempt('task', 'claim', c.id, '--worker', 'w1')
      expect(refused).toMatchObject({ code: 0, stdout: 'nothing to claim\n' })

      const claim = cliJson<Claim>('task', 'claim', '--worker', 'w1', '--lease-ms', '60000')
      expect(claim).toMatchObject({ taskId: a.id, worker: 'w1', attempt: 1 })
      expect(claim.token).toEqual(expect.any(String))
      expect(claim.leaseExpiresAt).toBeGreaterThan(Date.now() + 30_000)

      // The fence holds: a wrong token is LEASE_LOST and changes nothing.
      await expectNothingWritten(() => {
        const stale = attempt('task', 'complete', a.id, '--run', claim.runId, '--token', 'not-the-token')
        expect(stale.code).toBe(1)
        expect(stale.stderr).toMatch(/^error LEASE_LOST: /)
      })

      const done = cliJson<Task>(
        'task', 'complete', a.id, '--run', claim.runId, '--token', claim.token, '--result', '{"pages":3}', '--summary', 'found it',
      )
      expect(done).toMatchObject({ id: a.id, status: 'done', result: { pages: 3 }, summary: 'found it' })

      const shown = cliJson<{ task: Task; runs: Run[]; events: JournalEntry[] }>('task', 'show', a.id)
      expect(shown.runs).toEqual([
        expect.objectContaining({ id: claim.runId, worker: 'w1', attempt: 1, outcome: 'completed', result: { pages: 3 }, summary: 'found it' }),
      ])
      expect(shown.events.map((e) => e.kind)).toEqual(['created', 'claimed', 'completed'])

      // a is done, so c was promoted: claim it by id (over b, which claimNext would pick first).
      expect(cliJson('task', 'show', c.id)).toMatchObject({ task: { status: 'ready' } })
      const byId = cliJson<Claim>('task', 'claim', c.id, '--worker', 'w2')
      expect(byId).toMatchObject({ taskId: c.id, worker: 'w2', attempt: 1 })
      // Human output carries what `task complete` needs.
      const textClaim = cli('task', 'claim', '--worker', 'w3')
      const [, runId, token] = textClaim.match(/^claimed \S+ {2}run=(\S+) token=(\S+) attempt=1 lease-until=\S+Z\n$/)!
      expect(cliJson<Task>('task', 'complete', b.id, '--run', runId!, '--token', token!).status).toBe('done')
      expect(cliJson<Task>('task', 'complete', c.id, '--run', byId.runId, '--token', byId.token, '--worker', 'w2').status).toBe('done')

      expect(attempt('task', 'claim', '--worker', 'w1')).toMatchObject({ code: 0, stdout: 'nothing to claim\n' })
      expect(cliJson('task', 'claim', '--worker', 'w1')).toBeNull()
      expect(ids(cliJson('task', 'list', '--status', 'done'))).toEqual([a.id, b.id, c.id])
    })

    it('fail retries with backoff, the retry is claimable once due, and --no-retry fails for good', async (ctx) => {
      const { cliJson, create } = await board(store, ctx)
      const flaky = create('--title', 'flaky', '--max-attempts', '2')
      const first = cliJson<Claim>('task', 'claim', flaky.id, '--worker', 'w1')
      // A message starting with '-' is a value, not a flag.
      const failed = cliJson<Task>('task', 'fail', flaky.id, '--run', first.runId, '--token', first.token, '--error', '-boom')
      expect(failed).toMatchObject({ status: 'todo', state: 'backoff', lastError: '-boom', attempts: 1 })
      expect(failed.retryAt).toBeGreaterThan(failed.updatedAt)

      // Nothing else has the board open: the CLI itself delivers the due retry before claiming.
      await sleep(failed.retryAt! - Date.now() + 50)
      const second = cliJson<Claim>('task', 'claim', flaky.id, '--worker', 'w2')
      expect(second).toMatchObject({ taskId: flaky.id, attempt: 2 })

      const once = create('--title', 'once', '--max-attempts', '3')
      const claim = cliJson<Claim>('task', 'claim', once.id, '--worker', 'w1')
      const final = cliJson<Task>('task', 'fail', once.id, '--run', claim.runId, '--token', claim.token, '--error', 'fatal', '--no-retry')
      expect(final).toMatchObject({ status: 'failed', state: 'failed', lastError: 'fatal', attempts: 1 })

      const runs = cliJson<{ runs: Run[] }>('task', 'show', flaky.id).runs
      expect(runs.map((r) => [r.attempt, r.outcome, r.error])).toEqual([
        [1, 'failed', '-boom'],
        [2, null, null],
      ])
    })

    it('cancel records the reason and blocks the children', async (ctx) => {
      const { cli, cliJson, create, attempt } = await board(store, ctx)
      const parent = create('--title', 'parent')
      const child = create('--title', 'child', '--parent', parent.id)
      const cancelled = cliJson<Task>('task', 'cancel', parent.id, '--reason', 'not needed')
      expect(cancelled).toMatchObject({ id: parent.id, status: 'cancelled' })
      expect(cliJson<{ task: Task }>('task', 'show', child.id).task).toMatchObject({ status: 'blocked', blockedBy: parent.id })
      const last = ndjson<JournalEntry>(cli('events', '--task', parent.id, '--json')).at(-1)
      expect(last).toMatchObject({ kind: 'cancelled', event: { type: 'CANCEL', reason: 'not needed' }, stateAfter: 'cancelled' })

      const again = attempt('task', 'cancel', parent.id)
      expect(again.code).toBe(1)
      expect(again.stderr).toMatch(/^error INVALID_TRANSITION: /)
    })

    it('link refuses a cycle with DEPENDENCY_CYCLE and writes nothing', async (ctx) => {
      const { cli, cliJson, create, attempt, expectNothingWritten } = await board(store, ctx)
      const a = create('--title', 'a')
      const b = create('--title', 'b')
      const c = create('--title', 'c')
      expect(cliJson<Task>('task', 'link', a.id, b.id)).toMatchObject({ id: b.id, parents: [a.id], status: 'todo' })
      expect(cli('task', 'link', b.id, c.id)).toMatch(new RegExp(`^${c.id}  todo  "c"  parents=${b.id}\n$`))

      await expectNothingWritten(() => {
        const text = attempt('task', 'link', c.id, a.id)
        expect(text.code).toBe(1)
        expect(text.stdout).toBe('')
        expect(text.stderr).toMatch(/^error DEPENDENCY_CYCLE: /)

        const json = attempt('task', 'link', c.id, a.id, '--json')
        expect(json.code).toBe(1)
        expect(json.stderr).toBe('')
        expect(JSON.parse(json.stdout)).toEqual({
          error: { code: 'DEPENDENCY_CYCLE', message: expect.any(String), details: { parentId: c.id, childId: a.id } },
        })

        expect(attempt('task', 'link', a.id, a.id).stderr).toMatch(/^error DEPENDENCY_CYCLE: /)
      })
    })

    it('bad input is INVALID_INPUT (exit 1) and writes nothing', async (ctx) => {
      const { cliJson, create, attempt, expectNothingWritten } = await board(store, ctx)
      const task = create('--title', 'target')
      const claim = cliJson<Claim>('task', 'claim', task.id, '--worker', 'w1')

      await expectNothingWritten(() => {
        const payload = attempt('task', 'create', '--title', 'x', '--payload', '{oops')
        expect(payload.code).toBe(1)
        expect(payload.stderr).toMatch(/^error INVALID_INPUT: --payload is not valid JSON/)

        const json = attempt('task', 'create', '--title', 'x', '--payload', '{oops', '--json')
        expect(json.code).toBe(1)
        expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: 'INVALID_INPUT', details: { field: 'payload' } } })

        const result = attempt('task', 'complete', task.id, '--run', claim.runId, '--token', claim.token, '--result', 'nope')
        expect(result.code).toBe(1)
        expect(result.stderr).toMatch(/^error INVALID_INPUT: --result is not valid JSON/)

        for (const args of [
          ['task', 'create', '--title', 'x', '--priority', 'high'],
          ['task', 'create', '--title', 'x', '--priority', '1.5'],
          ['task', 'create', '--title', ''],
          ['task', 'list', '--status', 'bogus'],
          ['task', 'list', '--limit', '0'],
          ['events', '--after', 'x'],
        ]) {
          const r = attempt(...args)
          expect(r.code, args.join(' ')).toBe(1)
          expect(r.stderr, args.join(' ')).toMatch(/^error INVALID_INPUT: /)
        }
      })
      expect(cliJson<{ task: Task }>('task', 'show', task.id).task).toMatchObject({ status: 'running', runId: claim.runId })
    })

    it('unknown commands and flags, and missing arguments, are usage errors (exit 2) that write nothing', async (ctx) => {
      const { create, attempt, expectNothingWritten } = await board(store, ctx)
      create('--title', 'existing')
      await expectNothingWritten(() => {
        for (const args of [
          ['bogus'],
          ['task', 'bogus'],
          ['task'],
          [],
          ['task', 'create', '--title', 'x', '--bogus'],
          ['task', 'create', '--title', 'x', 'extra'],
          ['task', 'create'],
          ['task', 'show'],
          ['task', 'claim', 't_1', '--worker', 'w', '--tenant', 'a'],
          ['task', 'claim', '--worker', 'w', '--assignee', 'a', '--any-assignee'],
          ['task', 'complete', 't_1', '--run', 'r_1'],
          ['task', 'list', '--priority', '3'],
          ['events', '--until-idle', '10'],
          ['events', '--follow', '--limit', '3'],
        ]) {
          const r = attempt(...args, '--json')
          expect(r.code, args.join(' ')).toBe(2)
          expect(r.stdout, args.join(' ')).toBe('')
          expect(r.stderr, args.join(' ')).toMatch(/^lockstep: .*\n(.|\n)*Run 'lockstep --help' for usage\.\n$/)
        }
      })
      expect(attempt('bogus').stderr).toContain('unknown command: bogus')
    })
  })

  describe('lockstep events', () => {
    it('prints the journal as NDJSON in seq order, filtered by task and seq, or as text lines', async (ctx) => {
      const { cli, cliJson, create } = await board(store, ctx)
      const a = create('--title', 'a')
      const b = create('--title', 'b', '--parent', a.id)
      const claim = cliJson<Claim>('task', 'claim', a.id, '--worker', 'w')
      cli('task', 'complete', a.id, '--run', claim.runId, '--token', claim.token)

      const entries = ndjson<JournalEntry>(cli('events', '--json'))
      expect(entries.map((e) => [e.actorId, e.kind])).toEqual([
        [a.id, 'created'],
        [b.id, 'created'],
        [a.id, 'claimed'],
        [a.id, 'completed'],
        [b.id, 'promoted'],
      ])
      entries.slice(1).forEach((e, i) => expect(e.seq).toBeGreaterThan(entries[i]!.seq))

      expect(ndjson<JournalEntry>(cli('events', '--task', b.id, '--json')).map((e) => e.kind)).toEqual(['created', 'promoted'])
      expect(ndjson<JournalEntry>(cli('events', '--after', String(entries[2]!.seq), '--json'))).toEqual(entries.slice(3))
      expect(ndjson<JournalEntry>(cli('events', '--limit', '2', '--json'))).toEqual(entries.slice(0, 2))

      const lines = cli('events').trim().split('\n')
      expect(lines).toHaveLength(entries.length)
      expect(lines[2]).toBe(
        `${entries[2]!.seq}  ${new Date(entries[2]!.at).toISOString()}  ${a.id}  claimed  ready->running  ${claim.runId}`,
      )
      expect(lines[0]).toMatch(new RegExp(`^\\d+  \\S+Z  ${a.id}  created  \\(none\\)->ready  -$`))
    })

    it('--follow --until-idle prints the backlog, picks up entries of another process, then exits 0', async (ctx) => {
      const { create, background } = await board(store, ctx)
      const a = create('--title', 'before')
      const follower = background('events', '--follow', '--until-idle', '3000', '--json')
      await follower.waitForLine((line) => line.includes(a.id))

      const late = create('--title', 'written while following') // another process
      await follower.waitForLine((line) => line.includes(late.id))
      expect(await follower.exited).toEqual({ code: 0, signal: null })

      const entries = follower.lines.map((line) => JSON.parse(line) as JournalEntry)
      expect(entries.map((e) => [e.actorId, e.kind])).toEqual([
        [a.id, 'created'],
        [late.id, 'created'],
      ])
      expect(entries[1]!.seq).toBeGreaterThan(entries[0]!.seq)
      expect(follower.stderr()).toBe('')
    })

    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      it(`--follow keeps tailing until ${signal}, then exits 0`, async (ctx) => {
        const { cliJson, create, background } = await board(store, ctx)
        const a = create('--title', 'before')
        const follower = background('events', '--follow', '--task', a.id)
        await follower.waitForLine((line) => line.includes('created'))

        const claim = cliJson<Claim>('task', 'claim', a.id, '--worker', 'w') // another process, filtered task
        create('--title', 'other task, filtered out')
        await follower.waitForLine((line) => line.includes(`claimed  ready->running  ${claim.runId}`))
        await sleep(300)
        expect(follower.running()).toBe(true)

        follower.child.kill(signal)
        expect(await follower.exited).toEqual({ code: 0, signal: null })
        expect(follower.lines).toHaveLength(2)
        expect(follower.stderr()).toBe('')
      })
    }
  })

  describe('deeply nested JSON through the CLI', () => {
    it('is INVALID_INPUT at 10k levels (a flag) and 1M levels (@FILE and @- on stdin), writing nothing', async (ctx) => {
      const { db, dir, cliJson, create, attempt, expectNothingWritten } = await board(store, ctx)
      const task = create('--title', 'target')
      const claim = cliJson<Claim>('task', 'claim', task.id, '--worker', 'w1')
      const deep = (levels: number) => '['.repeat(levels) + ']'.repeat(levels)
      const million = join(dir, 'million.json')
      writeFileSync(million, deep(1_000_000))

      await expectNothingWritten(() => {
        const flag = attempt('task', 'create', '--title', 'x', '--payload', deep(10_000), '--json')
        expect(flag.code).toBe(1)
        expect(JSON.parse(flag.stdout)).toMatchObject({ error: { code: 'INVALID_INPUT' } })
        expect(JSON.parse(flag.stdout).error.message).toMatch(/nests deeper than 256 levels/)

        const file = attempt('task', 'create', '--title', 'x', '--payload', `@${million}`)
        expect(file.code).toBe(1)
        expect(file.stderr).toMatch(/^error INVALID_INPUT: payload\[0\].* nests deeper than 256 levels/)

        const stdin = spawnSync(
          process.execPath,
          [CLI, 'task', 'complete', task.id, '--run', claim.runId, '--token', claim.token, '--result', '@-', ...db],
          { input: deep(1_000_000), encoding: 'utf8', timeout: 60_000 },
        )
        expect(stdin.status).toBe(1)
        expect(stdin.stderr).toMatch(/^error INVALID_INPUT: result\[0\].* nests deeper than 256 levels/)

        const missing = attempt('task', 'create', '--title', 'x', '--payload', `@${join(dir, 'absent.json')}`)
        expect(missing.code).toBe(1)
        expect(missing.stderr).toMatch(/^error INVALID_INPUT: --payload @.*absent\.json: cannot read/)
      })

      // A value that is fine is read from the file as it is.
      writeFileSync(join(dir, 'ok.json'), '{"pages":[1,2]}')
      expect(create('--title', 'from a file', '--payload', `@${join(dir, 'ok.json')}`).payload).toEqual({ pages: [1, 2] })
    })
  })

  describe('read commands', () => {
    it('never write: an overdue lease stays as it is until a writing command delivers it', async (ctx) => {
      const { cli, cliJson, create, expectNothingWritten } = await board(store, ctx)
      const task = create('--title', 'claimed')
      cliJson<Claim>('task', 'claim', task.id, '--worker', 'w', '--lease-ms', '1')
      await sleep(50) // the lease is overdue from here on
      await expectNothingWritten(() => {
        expect(cliJson<Task[]>('task', 'list')[0]!.status).toBe('running')
        cli('task', 'show', task.id)
        cli('events')
      })
      expect(cliJson<Claim | null>('task', 'claim', '--worker', 'w2')!.taskId).toBe(task.id) // a write delivers it first
    })
  })

  describe('lockstep task claim: exclusive assignees (issue 9)', () => {
    it("without --assignee only unassigned tasks; --assignee A only A's; --any-assignee any; an assigned ID is ASSIGNEE_MISMATCH", async (ctx) => {
      const { cliJson, create, attempt, expectNothingWritten } = await board(store, ctx)
      const bobs = create('--title', "bob's", '--assignee', 'bob', '--priority', '9')
      const free = create('--title', 'free')
      const alices = create('--title', "alice's", '--assignee', 'alice')

      expect(cliJson<Claim>('task', 'claim', '--worker', 'w')).toMatchObject({ taskId: free.id })
      expect(cliJson('task', 'claim', '--worker', 'w')).toBeNull()
      // Claiming someone else's task by id is refused, with its own code, and writes nothing.
      await expectNothingWritten(() => {
        const mismatch = attempt('task', 'claim', bobs.id, '--worker', 'w', '--json')
        expect(mismatch.code).toBe(1)
        expect(JSON.parse(mismatch.stdout)).toMatchObject({
          error: { code: 'ASSIGNEE_MISMATCH', details: { taskId: bobs.id, assignee: 'bob', claimant: null } },
        })
        expect(attempt('task', 'claim', bobs.id, '--worker', 'w', '--assignee', 'alice').stderr).toMatch(/^error ASSIGNEE_MISMATCH: /)
      })
      expect(cliJson<Claim>('task', 'claim', bobs.id, '--worker', 'w', '--assignee', 'bob')).toMatchObject({ taskId: bobs.id })
      expect(cliJson<Claim>('task', 'claim', '--worker', 'w', '--any-assignee')).toMatchObject({ taskId: alices.id })
    })
  })

  describe('lockstep task complete --run with a run the task never had (issue 9)', () => {
    it('is RUN_NOT_FOUND and writes nothing; a run no longer held stays LEASE_LOST', async (ctx) => {
      const { cliJson, create, attempt, expectNothingWritten } = await board(store, ctx)
      const t = create('--title', 't')
      const claim = cliJson<Claim>('task', 'claim', t.id, '--worker', 'w')
      await expectNothingWritten(() => {
        const r = attempt('task', 'complete', t.id, '--run', 'r_x', '--token', claim.token, '--json')
        expect(r.code).toBe(1)
        expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'RUN_NOT_FOUND', details: { taskId: t.id, runId: 'r_x' } } })
        expect(attempt('task', 'fail', t.id, '--run', 'r_x', '--token', claim.token, '--error', 'e').stderr).toMatch(/^error RUN_NOT_FOUND: /)
      })
      cliJson('task', 'complete', t.id, '--run', claim.runId, '--token', claim.token)
      const again = attempt('task', 'complete', t.id, '--run', claim.runId, '--token', claim.token)
      expect(again.code).toBe(1)
      expect(again.stderr).toMatch(/^error LEASE_LOST: /)
    })
  })
})

// Help opens no store: once is enough.
describe('lockstep help', () => {
  it('--help, help and <group> --help print usage and exit 0', () => {
    for (const args of [['--help'], ['help'], ['-h']]) {
      const r = run(args)
      expect(r.code).toBe(0)
      for (const command of ['init', 'task create', 'task list', 'task claim', 'task fail', 'events']) {
        expect(r.stdout).toContain(`lockstep ${command}`)
      }
      expect(r.stdout).toContain('Exit codes')
    }
    const group = run(['task', '--help'])
    expect(group.code).toBe(0)
    expect(group.stdout).toContain('lockstep task complete ID --run RUN --token TOKEN')
    expect(group.stdout).not.toContain('lockstep events')
    for (const args of [['task', 'claim', '--help'], ['help', 'task', 'claim']]) {
      const r = run(args)
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/^Usage: lockstep task claim \[ID\] --worker W/)
    }
  })

  it('help says assignees are exclusive', () => {
    const help = (...args: string[]) => {
      const r = run(args)
      expect(r.code, args.join(' ')).toBe(0)
      return r.stdout
    }
    expect(help('task', 'claim', '--help')).toMatch(/--any-assignee/)
    expect(help('task', 'claim', '--help')).toMatch(/Assignees are exclusive/)
    expect(help('task', 'create', '--help')).toMatch(/exclusive: only claims with --assignee A/)
  })
})
