/**
 * The MCP tools of `lockstep mcp`: names, input schemas and handlers.
 *
 * This module is hot-reloadable (`lockstep mcp --watch`): the server re-imports it with a
 * cache-busting query (`tools.js?v=N`) and calls `createTools` again. So it keeps no
 * module-level state: everything a handler needs comes from the factory's arguments, and
 * a fresh import yields fresh handlers. The factory runs while the server holds the
 * orchestrator's intake barrier, so it must only build the list: never call `orch` from
 * the factory itself (handlers may, of course).
 *
 * Handlers return a plain JSON object (the server sends it as text and as
 * structuredContent) or throw: a LockstepError becomes a tool error `CODE: message`,
 * anything else `INTERNAL: message`. Mutating tools are marked `mutating`; the server
 * adds their optional `idempotencyKey` and records their results (see server.ts). Their
 * `recover` tells, after a crash between applying a call and recording its result,
 * whether the journal already holds the call's effect.
 */
import { z } from 'zod'
import { TASK_STATUSES, TaskNotFoundError, type Claim, type JournalEntry, type Json, type Orchestrator, type Task } from '../../index.js'

/** One tool as the server registers it. */
export interface ToolDef<Shape extends z.ZodRawShape = z.ZodRawShape> {
  /** snake_case; part of the contract. */
  name: string
  title?: string
  description: string
  /** The input fields (a zod raw shape). Mutating tools get `idempotencyKey` added by the server. */
  input: Shape
  /** Changes the board or a session: accepts `idempotencyKey`, result recorded. */
  mutating: boolean
  annotations?: { readOnlyHint?: boolean; destructiveHint?: boolean; idempotentHint?: boolean; openWorldHint?: boolean }
  run(args: z.output<z.ZodObject<Shape>>, call: CallContext): Promise<Record<string, unknown>>
  /**
   * Replay of an idempotency key whose first call may have been applied without its
   * result being recorded (the server died in between): return the answer if the
   * journal after `since` (a global seq taken before the first call started) shows the
   * effect, or undefined to have the server apply the call now.
   */
  recover?(args: z.output<z.ZodObject<Shape>>, since: number): Promise<Record<string, unknown> | undefined>
}

/** About the call being handled. */
export interface CallContext {
  /** The caller's idempotency key (mutating tools), when given. */
  idempotencyKey?: string
}

/** What the server tells the tools about itself. */
export interface ToolHost {
  /** name, version, pid, db path, handler generation, ... (server_info / whoami). */
  info(): Record<string, unknown>
}

/** The factory the server calls on start and on every reload. */
export type CreateTools = (orch: Orchestrator, host: ToolHost) => ToolDef[]

/** Keeps each tool's argument types checked against its own schema, inside one list. */
const tool = <Shape extends z.ZodRawShape>(def: ToolDef<Shape>) => def as unknown as ToolDef

const id = (what: string) => z.string().min(1).max(200).describe(what)
const json = (what: string) => z.unknown().optional().describe(`${what} (any JSON value)`)
const claimInput = z
  .object({
    taskId: z.string().min(1),
    runId: z.string().min(1),
    token: z.string().min(1),
    worker: z.string().min(1).optional(),
    leaseExpiresAt: z.number().optional(),
    attempt: z.number().optional(),
  })
  .describe('the claim returned by task_claim_next (taskId, runId and token are what count)')

type ClaimInput = z.output<typeof claimInput>

/** The board checks only run id and token; the rest of a claim is informative. */
const toClaim = (c: ClaimInput): Claim => ({
  taskId: c.taskId,
  runId: c.runId,
  token: c.token,
  worker: c.worker ?? 'mcp',
  leaseExpiresAt: c.leaseExpiresAt ?? 0,
  attempt: c.attempt ?? 0,
})

/** The first journal entry after `since` that matches, paging through `page`. */
async function findEntry(
  page: (after: number) => Promise<JournalEntry[]>,
  since: number,
  match: (entry: JournalEntry) => boolean,
): Promise<JournalEntry | undefined> {
  let after = since
  for (;;) {
    const entries = await page(after)
    const found = entries.find(match)
    if (found || entries.length < 1_000) return found
    after = entries.at(-1)!.seq
  }
}

export const createTools: CreateTools = (orch, host) => {
  const { tasks, sessions } = orch
  const taskEvents = (taskId: string) => (after: number) => tasks.events({ taskId, after, limit: 1_000 })
  const sessionEvents = (sessionId: string) => (after: number) => sessions.events({ sessionId, after, limit: 1_000 })
  const mustGet = async (taskId: string): Promise<Task> => {
    const task = await tasks.get(taskId)
    if (!task) throw new TaskNotFoundError(taskId)
    return task
  }
  /** Did an event of `type` on this task (for this run, if given) commit after `since`? Then answer with the task as it is now. */
  const taskEffect = async (taskId: string, type: string, since: number, runId?: string) => {
    const entry = await findEntry(taskEvents(taskId), since, (e) => e.eventType === type && (runId === undefined || e.event.runId === runId))
    return entry ? { task: await mustGet(taskId) } : undefined
  }
  const info = async () => host.info()

  return [
    tool({
      name: 'server_info',
      title: 'Server info',
      description: 'This server: name, version, pid, database path, and the generation of its tool handlers (incremented by every hot reload).',
      input: {},
      mutating: false,
      annotations: { readOnlyHint: true },
      run: info,
    }),
    tool({
      name: 'whoami',
      title: 'Who am I talking to',
      description: 'Same as server_info.',
      input: {},
      mutating: false,
      annotations: { readOnlyHint: true },
      run: info,
    }),
    tool({
      name: 'task_create',
      title: 'Create a task',
      description:
        'Create a task on the board. With parents it waits (todo) until they are all done. ' +
        'Retrying with the same idempotencyKey returns the first task instead of creating another.',
      input: {
        title: z.string().min(1).max(200),
        body: z.string().optional(),
        assignee: z
          .string()
          .min(1)
          .max(200)
          .optional()
          .describe('exclusive: only task_claim_next with this assignee (or anyAssignee) claims it; without one, any claim that names none'),
        tenant: z.string().min(1).max(200).optional(),
        priority: z.number().int().optional().describe('higher is claimed first (default 0)'),
        parents: z.array(z.string().min(1)).optional().describe('task ids that must be done first'),
        payload: json('input for the worker'),
        maxAttempts: z.number().int().min(1).max(1_000).optional(),
      },
      mutating: true,
      // The board's own idempotency key makes create exactly-once inside its transaction.
      async run(a, { idempotencyKey }) {
        const task = await tasks.create({ ...a, payload: a.payload as Json | undefined, idempotencyKey })
        return { task }
      },
    }),
    tool({
      name: 'task_list',
      title: 'List tasks',
      description: 'Tasks in creation order, optionally filtered; page with `after` (a task id).',
      input: {
        status: z.enum(TASK_STATUSES as [string, ...string[]]).optional(),
        assignee: z.string().min(1).optional(),
        tenant: z.string().min(1).optional(),
        limit: z.number().int().min(1).max(10_000).optional().describe('default 100'),
        after: z.string().min(1).optional(),
      },
      mutating: false,
      annotations: { readOnlyHint: true },
      async run(a) {
        const found = await tasks.list(a as Parameters<typeof tasks.list>[0])
        return { tasks: found, count: found.length }
      },
    }),
    tool({
      name: 'task_show',
      title: 'Show a task',
      description: 'A task with its runs and its journal entries.',
      input: { taskId: id('task id') },
      mutating: false,
      annotations: { readOnlyHint: true },
      async run({ taskId }) {
        const task = await mustGet(taskId)
        const events: JournalEntry[] = []
        for (;;) {
          const page = await tasks.events({ taskId, after: events.at(-1)?.seq ?? 0, limit: 10_000 })
          events.push(...page)
          if (page.length < 10_000) break
        }
        return { task, runs: await tasks.runs(taskId), events }
      },
    }),
    tool({
      name: 'task_claim_next',
      title: 'Claim the next task',
      description:
        'Claim the highest-priority, oldest ready task this claim may take. Assignees are exclusive: with `assignee`, ' +
        "only that assignee's tasks; without it, only unassigned tasks; with anyAssignee=true, any task. " +
        'Returns {claim: null} when there is nothing to claim. Keep the claim: heartbeat, complete and fail need it.',
      input: {
        worker: z.string().min(1).max(200).describe('who claims'),
        assignee: z.string().min(1).optional().describe("claim as this assignee: its tasks only"),
        anyAssignee: z.boolean().optional().describe('take tasks of any assignee, and unassigned ones (not with assignee)'),
        tenant: z.string().min(1).optional().describe('only tasks of this tenant'),
        leaseMs: z.number().int().min(1).optional().describe('lease length (default 30000); heartbeat before it lapses'),
      },
      mutating: true,
      // The board's own claim key: a replay after a crash between the claim and the record
      // of its result gets the same claim back (exactly-once inside the claim's transaction).
      async run(a, { idempotencyKey }) {
        return { claim: await tasks.claimNext({ ...a, idempotencyKey }) }
      },
    }),
    tool({
      name: 'task_heartbeat',
      title: 'Extend a lease',
      description:
        'Extend the lease of a claim. A stale claim (lease lapsed and task reclaimed, cancelled, ...) gets LEASE_LOST; ' +
        'a runId the task never had, RUN_NOT_FOUND.',
      input: { claim: claimInput, leaseMs: z.number().int().min(1).optional() },
      mutating: true,
      async run({ claim, leaseMs }) {
        return { claim: await tasks.heartbeat(toClaim(claim), { leaseMs }) }
      },
      async recover({ claim }, since) {
        const entry = await findEntry(taskEvents(claim.taskId), since, (e) => e.eventType === 'HEARTBEAT' && e.event.runId === claim.runId)
        const task = entry && (await mustGet(claim.taskId))
        if (!task || task.status !== 'running' || task.runId !== claim.runId) return undefined // lost since: applying says LEASE_LOST
        return { claim: { ...toClaim(claim), leaseExpiresAt: task.leaseExpiresAt, attempt: task.attempts } }
      },
    }),
    tool({
      name: 'task_complete',
      title: 'Complete a claimed task',
      description:
        'Complete the task of a claim; its children whose parents are now all done become ready. A stale claim gets LEASE_LOST; ' +
        'a runId the task never had, RUN_NOT_FOUND.',
      input: { claim: claimInput, result: json('the result'), summary: z.string().optional(), metadata: json('metadata') },
      mutating: true,
      async run({ claim, result, summary, metadata }) {
        const task = await tasks.complete(toClaim(claim), { result: result as Json | undefined, summary, metadata: metadata as Json | undefined })
        return { task }
      },
      recover: ({ claim }, since) => taskEffect(claim.taskId, 'COMPLETE', since, claim.runId),
    }),
    tool({
      name: 'task_fail',
      title: 'Fail a claimed task',
      description:
        'Fail the task of a claim: retried with backoff while attempts are left and retryable (default true), else failed. ' +
        'A stale claim gets LEASE_LOST; a runId the task never had, RUN_NOT_FOUND.',
      input: { claim: claimInput, error: z.string().min(1).describe('what went wrong'), retryable: z.boolean().optional() },
      mutating: true,
      async run({ claim, error, retryable }) {
        return { task: await tasks.fail(toClaim(claim), { error, retryable }) }
      },
      recover: ({ claim }, since) => taskEffect(claim.taskId, 'FAIL', since, claim.runId),
    }),
    tool({
      name: 'task_link',
      title: 'Add a dependency',
      description: 'Make childId depend on parentId (refused with DEPENDENCY_CYCLE if it would close a cycle). Linking twice is a no-op.',
      input: { parentId: id('the task that must be done first'), childId: id('the task that waits') },
      mutating: true,
      // Already idempotent in the board (an existing link is left alone): no recover needed.
      async run({ parentId, childId }) {
        return { task: await tasks.link(parentId, childId) }
      },
    }),
    tool({
      name: 'task_cancel',
      title: 'Cancel a task',
      description: 'Cancel a task from any unfinished state; its waiting children become blocked.',
      input: { taskId: id('task id'), reason: z.string().optional() },
      mutating: true,
      annotations: { destructiveHint: true },
      async run({ taskId, reason }) {
        return { task: await tasks.cancel(taskId, { reason }) }
      },
      recover: ({ taskId }, since) => taskEffect(taskId, 'CANCEL', since),
    }),
    tool({
      name: 'events_since',
      title: 'Journal entries since a seq',
      description:
        'Journal entries with seq greater than `after`, in commit order: the task journal, or one session\'s with sessionId. ' +
        'Pass the returned lastSeq as `after` next time.',
      input: {
        after: z.number().int().min(0).optional().describe('default 0'),
        taskId: z.string().min(1).optional(),
        sessionId: z.string().min(1).optional(),
        limit: z.number().int().min(1).max(10_000).optional().describe('default 100'),
      },
      mutating: false,
      annotations: { readOnlyHint: true },
      async run({ after = 0, taskId, sessionId, limit = 100 }) {
        const events =
          sessionId === undefined
            ? await tasks.events({ taskId, after, limit })
            : await sessions.events({ sessionId, after, limit })
        return { events, lastSeq: events.at(-1)?.seq ?? after }
      },
    }),
    tool({
      name: 'session_approve',
      title: 'Approve a tool for a session',
      description: 'Approve `tool` for the session: standing, or with once=true consumed by the first session_authorize that uses it.',
      input: { sessionId: id('session id'), tool: id('tool name'), once: z.boolean().optional() },
      mutating: true,
      async run({ sessionId, tool, once }) {
        return { session: await sessions.approve(sessionId, tool, { once }) }
      },
      async recover({ sessionId, tool }, since) {
        const entry = await findEntry(sessionEvents(sessionId), since, (e) => e.eventType === 'APPROVE' && e.event.tool === tool)
        return entry ? { session: await sessions.get(sessionId) } : undefined
      },
    }),
    tool({
      name: 'session_revoke',
      title: 'Revoke a tool approval',
      description: 'Remove the approval of `tool` for the session (no-op if there is none).',
      input: { sessionId: id('session id'), tool: id('tool name') },
      mutating: true,
      async run({ sessionId, tool }) {
        return { session: await sessions.revoke(sessionId, tool) }
      },
      async recover({ sessionId, tool }, since) {
        const entry = await findEntry(sessionEvents(sessionId), since, (e) => e.eventType === 'REVOKE' && e.event.tool === tool)
        return entry ? { session: await sessions.get(sessionId) } : undefined
      },
    }),
    tool({
      name: 'session_authorize',
      title: 'Check a tool approval',
      description:
        'Is `tool` approved for the session? A once approval is consumed by the call that returns true (exactly once, ' +
        'also across processes); pass an idempotencyKey so a retried call does not consume a second one.',
      input: { sessionId: id('session id'), tool: id('tool name') },
      mutating: true,
      async run({ sessionId, tool }) {
        return { authorized: await sessions.authorize(sessionId, tool) }
      },
      async recover({ sessionId, tool }, since) {
        // Every accepted AUTHORIZE (one that returned true) is journaled.
        const entry = await findEntry(sessionEvents(sessionId), since, (e) => e.eventType === 'AUTHORIZE' && e.event.tool === tool)
        return entry ? { authorized: true } : undefined
      },
    }),
  ]
}

export default createTools
