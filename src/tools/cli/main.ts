#!/usr/bin/env node
/**
 * The `lockstep` command-line interface: a thin shell over the TaskBoard API.
 *
 * Every command is one row of COMMANDS: its flags (which also generate the usage
 * text and the parser configuration), a pure `parse` to the command's input and a
 * `run`. The runner resolves the command, parses strictly, and only then opens the
 * orchestrator, runs the command and closes the orchestrator on every path. Output
 * and exit codes follow one rule, documented in OUTPUT_RULES below.
 */
import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { createOrchestrator, InvalidInputError, LockstepError, TaskNotFoundError } from '../../index.js'
import type {
  Claim,
  CreateTaskInput,
  Json,
  JournalEntry,
  ListFilter,
  Orchestrator,
  Run,
  Task,
  TaskBoard,
  TaskStatus,
} from '../../index.js'

// ---- command table ----

interface Flag {
  type: 'string' | 'boolean'
  /** Placeholder for the value in usage text (string flags). */
  arg?: string
  required?: boolean
  multiple?: boolean
  short?: string
  help: string
}

type Values = Record<string, string | boolean | string[] | undefined>

/** What a command may touch once its input is valid. */
interface Io {
  orch: Orchestrator
  tasks: TaskBoard
  /** One output record: one line of JSON with --json, else `text`. */
  emit(value: unknown, text: string): void
}

interface Command<Input = unknown> {
  name: string
  summary: string
  /** Positional arguments: `ID` is required, `[ID]` optional. */
  args?: string[]
  flags?: Record<string, Flag>
  /** Only `init` may create a missing database file; the others refuse, so a mistyped --db fails loudly. */
  createsDb?: boolean
  /**
   * Only reads: the file is opened read-only (no WAL switch, no migration, no timer
   * deliveries), so it works on a file this user may not write and never changes one.
   */
  readsOnly?: boolean
  /**
   * Flags and arguments to the command's input, before the database is opened: bad
   * input throws (UsageError, or INVALID_INPUT for bad values) having touched nothing.
   */
  parse(values: Values, args: string[]): Input
  run(io: Io, input: Input): Promise<void>
}

/** Keeps each command's Input type checked between its parse and run, inside one table. */
const command = <Input>(spec: Command<Input>) => spec as unknown as Command

const GLOBAL_FLAGS: Record<string, Flag> = {
  db: { type: 'string', arg: 'PATH|URL', help: 'SQLite file (default ./lockstep.db), or a postgres:// URL' },
  schema: { type: 'string', arg: 'S', help: "with a postgres:// --db: the schema (default 'lockstep')" },
  json: { type: 'boolean', help: 'machine-readable output (see below)' },
  help: { type: 'boolean', short: 'h', help: 'show usage' },
}

const FENCE_FLAGS: Record<string, Flag> = {
  run: { type: 'string', arg: 'RUN', required: true, help: 'run id from the claim (RUN_NOT_FOUND if the task never had it)' },
  token: { type: 'string', arg: 'TOKEN', required: true, help: 'fencing token from the claim' },
  worker: { type: 'string', arg: 'W', help: "worker name recorded with the claim (default 'cli'; not checked)" },
}

const emitTask = ({ emit }: Io, task: Task) => emit(task, taskLine(task))

const COMMANDS: Command[] = [
  command({
    name: 'init',
    summary: 'create or migrate the database file and print its path',
    createsDb: true,
    parse: () => undefined,
    async run({ orch, emit }) {
      emit({ path: orch.path }, orch.path)
    },
  }),
  command({
    name: 'task create',
    summary: 'create a task',
    flags: {
      title: { type: 'string', arg: 'T', required: true, help: 'title' },
      body: { type: 'string', arg: 'B', help: 'free text' },
      assignee: { type: 'string', arg: 'A', help: 'exclusive: only claims with --assignee A (or --any-assignee) take it' },
      tenant: { type: 'string', arg: 'X', help: 'claimable by claims with --tenant X, or without --tenant' },
      priority: { type: 'string', arg: 'N', help: 'higher is claimed first (default 0)' },
      parent: { type: 'string', arg: 'ID', multiple: true, help: 'a task that must be done first (repeatable)' },
      payload: { type: 'string', arg: 'JSON', help: 'any JSON value; @FILE reads it from a file, @- from stdin' },
      'idempotency-key': { type: 'string', arg: 'K', help: 'a second create with this key returns the first task' },
      'max-attempts': { type: 'string', arg: 'N', help: 'claims allowed before the task stays failed (default 3)' },
    },
    parse: (values): CreateTaskInput => ({
      title: text(values, 'title')!,
      body: text(values, 'body'),
      assignee: text(values, 'assignee'),
      tenant: text(values, 'tenant'),
      priority: integer(values, 'priority'),
      parents: list(values, 'parent'),
      payload: json(values, 'payload'),
      idempotencyKey: text(values, 'idempotency-key'),
      maxAttempts: integer(values, 'max-attempts'),
    }),
    async run(io, input) {
      emitTask(io, await io.tasks.create(input))
    },
  }),
  command({
    name: 'task list',
    readsOnly: true,
    summary: 'list tasks in creation order',
    flags: {
      status: { type: 'string', arg: 'S', help: 'todo, ready, running, blocked, done, failed, cancelled or archived' },
      assignee: { type: 'string', arg: 'A', help: 'only this assignee' },
      tenant: { type: 'string', arg: 'X', help: 'only this tenant' },
      limit: { type: 'string', arg: 'N', help: '1..10000 (default 100)' },
    },
    parse: (values): ListFilter => ({
      // The board validates the status (INVALID_INPUT); the CLI does not keep a second list.
      status: text(values, 'status') as TaskStatus | undefined,
      assignee: text(values, 'assignee'),
      tenant: text(values, 'tenant'),
      limit: integer(values, 'limit'),
    }),
    async run({ tasks, emit }, filter) {
      const found = await tasks.list(filter)
      emit(found, found.length === 0 ? 'no tasks' : found.map(taskLine).join('\n'))
    },
  }),
  command({
    name: 'task show',
    readsOnly: true,
    summary: 'show a task, its runs and its journal entries',
    args: ['ID'],
    parse: (_, [id]) => id!,
    async run({ tasks, emit }, id) {
      const task = await tasks.get(id)
      if (!task) throw new TaskNotFoundError(id)
      const runs = await tasks.runs(id)
      const events = await allEvents(tasks, id)
      const lines = [taskDetails(task), 'runs:', ...indent(runs.map(runLine)), 'events:', ...indent(events.map(eventLine))]
      emit({ task, runs, events }, lines.join('\n'))
    },
  }),
  command({
    name: 'task link',
    summary: 'make CHILD depend on PARENT (refused if it would close a cycle)',
    args: ['PARENT', 'CHILD'],
    parse: (_, [parent, child]) => ({ parent: parent!, child: child! }),
    async run(io, { parent, child }) {
      emitTask(io, await io.tasks.link(parent, child))
    },
  }),
  command({
    name: 'task claim',
    summary: 'claim task ID, or the next ready task this claim may take; prints the claim, or "nothing to claim" (JSON null)',
    args: ['[ID]'],
    flags: {
      worker: { type: 'string', arg: 'W', required: true, help: 'who claims' },
      assignee: {
        type: 'string',
        arg: 'A',
        help: "claim as assignee A: A's tasks only. Assignees are exclusive: without it (or --any-assignee) only unassigned tasks; an ID assigned to another is ASSIGNEE_MISMATCH",
      },
      'any-assignee': { type: 'boolean', help: 'claim tasks of any assignee, or none (not with --assignee)' },
      tenant: { type: 'string', arg: 'X', help: 'without ID: only tasks of this tenant' },
      'lease-ms': { type: 'string', arg: 'N', help: 'lease length (default 30000)' },
    },
    parse(values, [id]) {
      const tenant = text(values, 'tenant')
      if (id !== undefined && tenant !== undefined) throw new UsageError('--tenant only applies without ID', 'task claim')
      const anyAssignee = values['any-assignee'] === true
      const assignee = text(values, 'assignee')
      if (anyAssignee && assignee !== undefined) throw new UsageError('--assignee and --any-assignee exclude each other', 'task claim')
      const options = {
        worker: text(values, 'worker')!,
        leaseMs: integer(values, 'lease-ms'),
        ...(anyAssignee ? { anyAssignee } : { assignee }),
      }
      return { id, tenant, options }
    },
    async run({ tasks, emit }, { id, tenant, options }) {
      const claim = id === undefined ? await tasks.claimNext({ ...options, tenant }) : await tasks.claim(id, options)
      emit(claim, claim ? claimLine(claim) : 'nothing to claim')
    },
  }),
  command({
    name: 'task complete',
    summary: 'complete a claimed task',
    args: ['ID'],
    flags: {
      ...FENCE_FLAGS,
      result: { type: 'string', arg: 'JSON', help: 'any JSON value; @FILE reads it from a file, @- from stdin' },
      summary: { type: 'string', arg: 'S', help: 'free text' },
    },
    parse: (values, args) => ({
      claim: claimOf(values, args),
      input: { result: json(values, 'result'), summary: text(values, 'summary') },
    }),
    async run(io, { claim, input }) {
      emitTask(io, await io.tasks.complete(claim, input))
    },
  }),
  command({
    name: 'task fail',
    summary: 'fail a claimed task; it is retried with backoff while attempts are left',
    args: ['ID'],
    flags: {
      ...FENCE_FLAGS,
      error: { type: 'string', arg: 'MSG', required: true, help: 'what went wrong' },
      'no-retry': { type: 'boolean', help: 'fail for good, even with attempts left' },
    },
    parse: (values, args) => ({
      claim: claimOf(values, args),
      input: { error: text(values, 'error')!, retryable: values['no-retry'] !== true },
    }),
    async run(io, { claim, input }) {
      emitTask(io, await io.tasks.fail(claim, input))
    },
  }),
  command({
    name: 'task cancel',
    summary: 'cancel a task (its children become blocked)',
    args: ['ID'],
    flags: { reason: { type: 'string', arg: 'R', help: 'recorded in the journal' } },
    parse: (values, [id]) => ({ id: id!, reason: text(values, 'reason') }),
    async run(io, { id, reason }) {
      emitTask(io, await io.tasks.cancel(id, { reason }))
    },
  }),
  command({
    name: 'mcp',
    summary: 'serve the board and session approvals as MCP tools on stdio, until stdin closes (see README: MCP server)',
    // An agent CLI starts the server with a path from its config: a fresh file is created.
    createsDb: true,
    flags: {
      watch: { type: 'boolean', help: 'hot-reload the tool module (and machine modules) when they change on disk' },
      tools: { type: 'string', arg: 'PATH', help: 'tool module to serve (default: the built-in dist/src/mcp/tools.js)' },
    },
    parse: (values) => {
      const db = text(values, 'db') ?? ''
      const schema = text(values, 'schema')
      // On PostgreSQL the call records live in the same schema, through the server's own pool.
      const postgres = isPostgresUrl(db) ? { url: db, ...(schema === undefined ? {} : { schema }) } : undefined
      return { watch: values.watch === true, tools: text(values, 'tools'), postgres }
    },
    async run({ orch }, options) {
      // Loaded on demand: the other commands do not pay for the MCP SDK.
      const { serveStdio } = await import('../mcp/server.js')
      await serveStdio(orch, options)
    },
  }),
  command({
    name: 'events',
    readsOnly: true,
    summary: 'print journal entries, one per line (NDJSON with --json)',
    flags: {
      task: { type: 'string', arg: 'ID', help: "only this task's entries" },
      after: { type: 'string', arg: 'SEQ', help: 'only entries after this seq' },
      limit: { type: 'string', arg: 'N', help: '1..10000 (default 1000); not with --follow' },
      follow: { type: 'boolean', help: 'print every entry after SEQ, then keep tailing until SIGINT/SIGTERM' },
      'until-idle': { type: 'string', arg: 'MS', help: 'with --follow: stop after MS without a new entry' },
    },
    parse(values) {
      const follow = values.follow === true
      if (!follow && values['until-idle'] !== undefined) throw new UsageError('--until-idle needs --follow', 'events')
      if (follow && values.limit !== undefined) throw new UsageError('--limit cannot be combined with --follow', 'events')
      return {
        query: { taskId: text(values, 'task'), after: integer(values, 'after'), limit: integer(values, 'limit') },
        follow,
        idleMs: integer(values, 'until-idle', 0, 2 ** 31 - 1),
      }
    },
    async run(io, { query, follow: tail, idleMs }) {
      if (tail) return follow(io, query, idleMs)
      for (const entry of await io.tasks.events(query)) emitEntry(io, entry)
    },
  }),
]

const OUTPUT_RULES = `Output:
  Results go to stdout: human-readable lines, or with --json exactly one JSON
  document (events: one JSON object per line). Exit codes:
    0  success, including "nothing to claim" (JSON null)
    1  lockstep error: "error CODE: message" on stderr; with --json instead
       {"error":{"code":CODE,"message":...,"details":{...}}} on stdout and
       nothing on stderr. CODE is a LockstepError code (INVALID_INPUT,
       DEPENDENCY_CYCLE, LEASE_LOST, ...) or INTERNAL for anything unexpected.
       Bad input (bad JSON, non-integer numbers, unknown status) is
       INVALID_INPUT and writes nothing.
    2  usage error (unknown command or flag, missing argument): message on
       stderr, whatever the output mode.
  A value that starts with '-' is fine: a string flag always takes the next
  argument (--priority -5, --token -abc).
Files:
  Only init and mcp create a missing file. task list, task show and events open
  it read-only: they work on a file you may not write and never change it (an
  empty, foreign or corrupt file is STORE_OPEN_FAILED); they show it as it is,
  without first delivering overdue lease expiries and retries.`

// ---- the commands' helpers ----

function text(values: Values, name: string): string | undefined {
  const value = values[name]
  return typeof value === 'string' ? value : undefined
}

function list(values: Values, name: string): string[] | undefined {
  const value = values[name]
  return Array.isArray(value) ? value : undefined
}

function integer(values: Values, name: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const value = text(values, name)
  if (value === undefined) return undefined
  const n = Number(value)
  if (/^\s*-?\d+\s*$/.test(value) && Number.isSafeInteger(n) && n >= min && n <= max) return n
  const range = min === Number.MIN_SAFE_INTEGER ? '' : ` from ${min} to ${max}`
  throw new InvalidInputError(`--${name} must be an integer${range}, not ${JSON.stringify(value)}`, { field: name })
}

/** A JSON flag: the text itself, or `@FILE` / `@-` (a value too large for a command line). */
function json(values: Values, name: string): Json | undefined {
  let value = text(values, name)
  if (value === undefined) return undefined
  // No JSON text starts with "@", so the prefix cannot shadow a value.
  if (value.startsWith('@')) {
    const source = value.slice(1)
    try {
      value = readFileSync(source === '-' ? 0 : source, 'utf8')
    } catch (error) {
      throw new InvalidInputError(`--${name} ${value}: cannot read ${source === '-' ? 'stdin' : source}: ${(error as Error).message}`, { field: name })
    }
  }
  try {
    return JSON.parse(value) as Json
  } catch (error) {
    throw new InvalidInputError(`--${name} is not valid JSON: ${(error as Error).message}`, { field: name })
  }
}

/** The fence only checks run id and token, so the CLI can rebuild a claim from them. */
function claimOf(values: Values, [taskId]: string[]): Claim {
  return {
    taskId: taskId!,
    runId: text(values, 'run')!,
    token: text(values, 'token')!,
    worker: text(values, 'worker') ?? 'cli',
    leaseExpiresAt: 0,
    attempt: 0,
  }
}

async function allEvents(tasks: TaskBoard, taskId: string): Promise<JournalEntry[]> {
  const entries: JournalEntry[] = []
  for (;;) {
    const page = await tasks.events({ taskId, after: entries.at(-1)?.seq ?? 0, limit: 10_000 })
    entries.push(...page)
    if (page.length < 10_000) return entries
  }
}

const emitEntry = ({ emit }: Io, entry: JournalEntry) => emit(entry, eventLine(entry))

/**
 * Tail the journal through subscribe(): every entry after `query.after`, then new ones
 * from any process, until SIGINT/SIGTERM, `idleMs` without an entry, or stdout closing.
 */
async function follow(io: Io, query: { taskId?: string; after?: number }, idleMs: number | undefined): Promise<void> {
  await new Promise<void>((done) => {
    let idle: NodeJS.Timeout | undefined
    const armIdle = () => {
      if (idleMs === undefined) return
      clearTimeout(idle)
      idle = setTimeout(stop, idleMs)
    }
    // Entries arrive asynchronously (never from inside subscribe), so `stop` and the
    // timers below exist by the time the listener runs; subscribe may throw on bad input.
    const unsubscribe = io.tasks.subscribe(
      (entry) => {
        if (output.closed) return stop()
        emitEntry(io, entry)
        armIdle()
      },
      { taskId: query.taskId, after: query.after ?? 0 },
    )
    // The feed's poll timer is unref'd: hold the event loop open while following.
    const keepAlive = setInterval(() => {}, 2 ** 30)
    function stop() {
      clearInterval(keepAlive)
      clearTimeout(idle)
      unsubscribe()
      process.off('SIGINT', stop).off('SIGTERM', stop)
      done()
    }
    process.on('SIGINT', stop).on('SIGTERM', stop)
    armIdle()
  })
}

// ---- human-readable formatting ----

function iso(ms: number): string
function iso(ms: number | null): string | null
function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}

const indent = (lines: string[]) => (lines.length === 0 ? ['  (none)'] : lines.map((line) => `  ${line}`))

/** `key=value` for every pair whose value is set. */
function pairs(entries: Array<[string, unknown]>): string {
  return entries
    .filter(([, value]) => value !== null && value !== undefined && value !== '')
    .map(([key, value]) => `${key}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`)
    .join(' ')
}

function taskLine(t: Task): string {
  const status = t.state === t.status ? t.status : `${t.status}(${t.state})`
  const extra = pairs([
    ['priority', t.priority === 0 ? null : t.priority],
    ['assignee', t.assignee],
    ['tenant', t.tenant],
    ['parents', t.parents.length === 0 ? null : t.parents.join(',')],
    ['attempts', t.attempts === 0 ? null : `${t.attempts}/${t.maxAttempts}`],
    ['worker', t.worker],
    ['retry-at', iso(t.retryAt)],
    ['blocked', t.blockedReason],
    ['error', t.lastError],
  ])
  return [t.id, status, JSON.stringify(t.title), extra].filter((part) => part !== '').join('  ')
}

function taskDetails(t: Task): string {
  const details: Array<[string, unknown]> = [
    ['body', t.body],
    ['payload', t.payload === null ? null : JSON.stringify(t.payload)],
    ['idempotency-key', t.idempotencyKey],
    ['run', t.runId],
    ['lease-until', iso(t.leaseExpiresAt)],
    ['result', t.result === null ? null : JSON.stringify(t.result)],
    ['summary', t.summary],
    ['created', iso(t.createdAt)],
    ['updated', iso(t.updatedAt)],
    ['completed', iso(t.completedAt)],
  ]
  const lines = details.filter(([, value]) => value !== null).map(([key, value]) => `  ${key}: ${value}`)
  return [taskLine(t), ...lines].join('\n')
}

function runLine(r: Run): string {
  const extra = pairs([
    ['worker', r.worker],
    ['attempt', r.attempt],
    ['started', iso(r.startedAt)],
    ['ended', iso(r.endedAt)],
    ['error', r.error],
    ['summary', r.summary],
  ])
  return `${r.id}  ${r.outcome ?? 'open'}  ${extra}`
}

function claimLine(c: Claim): string {
  return `claimed ${c.taskId}  ${pairs([['run', c.runId], ['token', c.token], ['attempt', c.attempt], ['lease-until', iso(c.leaseExpiresAt)]])}`
}

function eventLine(e: JournalEntry): string {
  return [e.seq, iso(e.at), e.actorId, e.kind, `${e.stateBefore ?? '(none)'}->${e.stateAfter}`, e.runId ?? '-'].join('  ')
}

// ---- usage ----

class UsageError extends Error {
  /** The command, group ('task') or everything ('') whose usage helps the user. */
  constructor(message: string, readonly topic?: string) {
    super(message)
  }
}

function synopsis(command: Command): string {
  const args = (command.args ?? []).join(' ')
  const flags = Object.entries(command.flags ?? {}).map(([name, flag]) => {
    const usage = `--${name}${flag.arg ? ` ${flag.arg}` : ''}`
    return flag.required ? usage : `[${usage}]${flag.multiple ? '...' : ''}`
  })
  return ['lockstep', command.name, args, ...flags].filter((part) => part !== '').join(' ')
}

function flagHelp(flags: Record<string, Flag>): string[] {
  return Object.entries(flags).map(([name, flag]) => {
    const usage = `${flag.short ? `-${flag.short}, ` : ''}--${name}${flag.arg ? ` ${flag.arg}` : ''}`
    return `  ${usage.padEnd(24)} ${flag.help}`
  })
}

/** Usage for a command, a group of commands ('task'), or everything (''). */
function usage(topic: string): string {
  const command = COMMANDS.find((c) => c.name === topic)
  if (command) {
    return [
      `Usage: ${synopsis(command)}`,
      '',
      command.summary,
      '',
      'Options:',
      ...flagHelp({ ...command.flags, ...GLOBAL_FLAGS }),
      '',
      "Output and exit codes: see 'lockstep --help'.",
    ].join('\n')
  }
  const commands = COMMANDS.filter((c) => topic === '' || c.name.startsWith(`${topic} `))
  return [
    `Usage: lockstep ${topic ? `${topic} ` : ''}<command> [options]`,
    '',
    'Commands:',
    ...commands.flatMap((c) => [`  ${synopsis(c)}`, `      ${c.summary}`]),
    ...(topic === ''
      ? [
          '  lockstep inspect [--db PATH|URL [--schema S]] [--port N] [--host H --token T]',
          "      serve the visual state inspector on 127.0.0.1 until interrupted (see 'lockstep inspect --help')",
        ]
      : []),
    '  lockstep help [COMMAND]',
    '      show usage (also: --help, -h, after any command)',
    '',
    'Global options:',
    ...flagHelp(GLOBAL_FLAGS),
    '',
    OUTPUT_RULES,
  ].join('\n')
}

const isGroup = (words: string[]) => words.length > 0 && COMMANDS.some((c) => c.name.startsWith(`${words.join(' ')} `))

// ---- argument parsing ----

type ParseOptions = NonNullable<Parameters<typeof parseArgs>[0]>['options']

function parseConfig(flags: Record<string, Flag>): ParseOptions {
  return Object.fromEntries(
    Object.entries(flags).map(([name, f]) => [
      name,
      { type: f.type, ...(f.multiple ? { multiple: true } : {}), ...(f.short ? { short: f.short } : {}) },
    ]),
  )
}

/** Every flag of every command: a flag name means the same thing (and type) everywhere. */
const ALL_FLAGS: Record<string, Flag> = Object.assign({}, GLOBAL_FLAGS, ...COMMANDS.map((c) => c.flags ?? {}))

/**
 * parseArgs refuses `--token -abc` as ambiguous, but claim tokens are base64url and
 * may start with '-'. Like getopt, let a string flag take the next argument whatever
 * it looks like, by rewriting `--flag value` to `--flag=value`.
 */
function attachValues(argv: string[]): string[] {
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--') {
      args.push(...argv.slice(i))
      break
    }
    const flag = arg.startsWith('--') ? ALL_FLAGS[arg.slice(2)] : undefined
    if (flag?.type === 'string' && i + 1 < argv.length) args.push(`${arg}=${argv[++i]}`)
    else args.push(arg)
  }
  return args
}

interface Invocation {
  command: Command
  values: Values
  args: string[]
}

/** Resolve and strictly parse; returns a usage topic to print when help was asked for. */
function parseInvocation(argv: string[]): Invocation | { help: string } {
  const args = attachValues(argv)
  // First pass: find the command words among the positionals, wherever the flags are.
  const loose = parseArgs({ args, options: parseConfig(ALL_FLAGS), strict: false, allowPositionals: true })
  let words = loose.positionals
  let help = loose.values.help === true
  if (words[0] === 'help') {
    words = words.slice(1)
    help = true
  }
  const command = COMMANDS.find((c) => c.name.split(' ').every((word, i) => words[i] === word))
  if (!command) {
    const topic = words.join(' ')
    if (words.length === 0 || isGroup(words)) {
      if (help) return { help: topic }
      throw new UsageError(words.length === 0 ? 'missing command' : `missing ${topic} command`, topic)
    }
    throw new UsageError(`unknown command: ${topic}`)
  }
  if (help) return { help: command.name }

  let parsed
  try {
    parsed = parseArgs({ args, options: parseConfig({ ...GLOBAL_FLAGS, ...command.flags }), strict: true, allowPositionals: true })
  } catch (error) {
    if (String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) {
      // Keep the first sentence: the rest of Node's message talks about positionals.
      throw new UsageError((error as Error).message.split(/\.\s/)[0]!, command.name)
    }
    throw error
  }
  const values = parsed.values as Values
  const positionals = parsed.positionals.slice(command.name.split(' ').length)
  const names = command.args ?? []
  const min = names.filter((name) => !name.startsWith('[')).length
  if (positionals.length < min) throw new UsageError(`missing ${names[positionals.length]}`, command.name)
  if (positionals.length > names.length) throw new UsageError(`unexpected argument: ${positionals[names.length]}`, command.name)
  for (const [name, flag] of Object.entries(command.flags ?? {})) {
    if (flag.required && values[name] === undefined) throw new UsageError(`missing --${name}`, command.name)
  }
  return { command, values, args: positionals }
}

// ---- running ----

const output = {
  /** Set when the reader of stdout went away (`lockstep events --follow | head`). */
  closed: false,
  line(line: string) {
    if (!this.closed) process.stdout.write(`${line}\n`)
  },
}

/** Open the file, run the command on its parsed input, close the file whatever happens. */
const isPostgresUrl = (db: string) => /^postgres(ql)?:\/\//i.test(db)

/** Open the store --db names: a SQLite file, or a PostgreSQL URL (and --schema). */
function openStore(command: Command, values: Values): Promise<Orchestrator> {
  const db = text(values, 'db') ?? './lockstep.db'
  const schema = text(values, 'schema')
  if (isPostgresUrl(db)) {
    // A one-shot command delivers no timers from its own loop (runDueTimers does, for
    // writers); the MCP server lives long and does. Read commands open read-only, as on
    // SQLite: their connections cannot write, and a missing schema is not created.
    return createOrchestrator({
      url: db,
      runTimers: command.name === 'mcp',
      readOnly: command.readsOnly === true,
      ...(schema === undefined ? {} : { schema }),
    })
  }
  if (schema !== undefined) throw new InvalidInputError('--schema goes with a postgres:// --db', { field: 'schema' })
  if (!command.createsDb && db !== ':memory:' && !existsSync(db)) {
    throw new InvalidInputError(`no lockstep database at ${resolve(db)}: run 'lockstep init' first, or pass --db`, {
      field: 'db',
      path: resolve(db),
    })
  }
  const readOnly = command.readsOnly === true && db !== ':memory:'
  // One-shot commands checkpoint inline (no extra thread to start); the MCP server lives long.
  return createOrchestrator({ path: db, readOnly, checkpoint: command.name === 'mcp' ? 'background' : 'inline' })
}

async function execute(command: Command, input: unknown, values: Values): Promise<void> {
  const asJson = values.json === true
  const orch = await openStore(command, values)
  try {
    // A CLI process lives too briefly for the timer loop to tick: deliver overdue lease
    // expiries and retries first, so it acts on the board as a long-lived process would
    // see it (a task whose backoff ended is claimable, a lapsed lease is lost). Reads show
    // the board as it is: delivering would be a write.
    if (command.readsOnly !== true) await orch.runDueTimers()
    const emit = (value: unknown, text: string) => output.line(asJson ? JSON.stringify(value) : text)
    await command.run({ orch, tasks: orch.tasks, emit }, input)
  } finally {
    await orch.close()
  }
}

/** Run one invocation; resolves with the exit code. */
async function main(argv: string[]): Promise<number> {
  // The inspector is a long-running server with its own options (and no orchestrator).
  if (argv[0] === 'inspect') {
    const { runInspectCommand } = await import('../inspector/cli.js')
    return runInspectCommand(argv.slice(1))
  }
  let asJson = false
  try {
    const invocation = parseInvocation(argv)
    if ('help' in invocation) {
      output.line(usage(invocation.help))
      return 0
    }
    const { command, values, args } = invocation
    asJson = values.json === true
    await execute(command, command.parse(values, args), values)
    return 0
  } catch (error) {
    if (error instanceof UsageError) {
      const command = COMMANDS.find((c) => c.name === error.topic)
      const help = command ? `Usage: ${synopsis(command)}\n` : error.topic === undefined ? '' : `${usage(error.topic)}\n`
      process.stderr.write(`lockstep: ${error.message}\n${help}Run 'lockstep --help' for usage.\n`)
      return 2
    }
    const { code, message, details } =
      error instanceof LockstepError ? error : { code: 'INTERNAL', message: (error as Error)?.message ?? String(error), details: {} }
    if (asJson) output.line(JSON.stringify({ error: { code, message, details } }))
    else process.stderr.write(`error ${code}: ${message}\n`)
    return 1
  }
}

process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error
  output.closed = true
})

process.exitCode = await main(process.argv.slice(2))
