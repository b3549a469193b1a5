/**
 * `npm run bench`: lockstep against hand-written baselines doing the same work, in the
 * same run, on the same machine: better-sqlite3 by default, node-postgres with --db.
 *
 *   npm run bench                                                   SQLite section
 *   npm run bench -- --db postgres://postgres@127.0.0.1:5432/test   PostgreSQL section (a fresh schema per measurement, dropped after)
 *   node dist/bench/main.js [--quick] [--full] [--reps N] [--profile] [--db URL]
 *   LOCKSTEP_BENCH_TASKS=5000 LOCKSTEP_BENCH_LATENCY_SAMPLES=500 npm run bench
 *
 * --quick    300 tasks, 1 repetition, 40 latency samples (a smoke run)
 * --full     SQLite: also run every scenario with synchronous=FULL
 * --db URL   a postgres:// or postgresql:// URL: run the PostgreSQL section instead of SQLite's
 *            (create, claim→complete at 1, 2 and 4 processes, create→start latency)
 * --profile  write a V8 CPU profile of every measured worker to .bench/profiles/<scenario>/
 *            (summarize one with: node dist/bench/profile-summary.js <file> --under runCycles;
 *            the pool scenario's workers run the pool's work in microtasks, so read those whole)
 *
 * Prints a table per section and writes the same figures to .bench/results.json (SQLite)
 * or .bench/results-postgres.json (PostgreSQL).
 */
import { rmSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { machineFacts, type MachineFacts } from './machine.js'
import { checkDbUrl, dropLiveSchemas, serverFacts, type ServerFacts } from './postgres.js'
import type { Implementation, Synchronous } from './protocol.js'
import { renderSection, row, withPlainjob, writeJson, type Cell, type Row, type Section } from './report.js'
import {
  measureCreate,
  measureCycles,
  measureLatency,
  measurePlainjobCreate,
  measurePlainjobPool,
  measurePool,
  POOL_CONCURRENCY,
  type CreateSample,
  type CycleSample,
  type LatencySample,
  type Placement,
  type PoolSample,
  type ScenarioConfig,
  type StoreTarget,
} from './scenarios.js'
import { median, summarize, type LatencySummary } from './stats.js'

const SQLITE_PROCESS_COUNTS = [1, 4]
/** Issue 11's worker-pool targets against plainjob are at 1, 2 and 4 processes. */
const SQLITE_POOL_PROCESS_COUNTS = [1, 2, 4]
/** Parallel writers are the point of the PostgreSQL store: 2 shows the curve between. */
const POSTGRES_PROCESS_COUNTS = [1, 2, 4]
const IMPLEMENTATIONS: readonly Implementation[] = ['lockstep', 'baseline']
/** plainjob (bench/plainjob.ts) runs create and the worker pool, SQLite only: it has no claim→complete API or latency hook here. */
type Contender = Implementation | 'plainjob'
const PLACEMENTS: readonly Placement[] = ['in-process', 'cross-process']
/** lockstep's default pollMs, and a tighter one; the baseline poller runs at the same period. */
const POLL_MS = [50, 10] as const
/** Gap between creates in the latency runs (uniform): long enough that each task meets an idle worker in-process. */
const LATENCY_GAP_MS: [number, number] = [5, 20]
/** The design target (DESIGN.md): lockstep at least half the hand-written cycle rate. */
const TARGET_RATIO = 0.5
const RESULTS_PATH = resolve('.bench/results.json')
const POSTGRES_RESULTS_PATH = resolve('.bench/results-postgres.json')
const EXAMPLE_DB = 'postgres://postgres@127.0.0.1:5432/test'

/** A mistake on the command line: printed as one line, no stack. */
class UsageError extends Error {}

interface BenchOptions {
  /** A postgres:// URL: run the PostgreSQL section instead of SQLite's. */
  db?: string
  tasks: number
  repetitions: number
  warmup: number
  modes: Synchronous[]
  busyTimeoutMs: number
  timeoutMs: number
  profileDir?: string
  latencySamples: number
  latencyGapMs: [number, number]
}

function parseOptions(): BenchOptions {
  const { values } = parseArgsOrExplain({
    options: {
      quick: { type: 'boolean', default: false },
      full: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      reps: { type: 'string' },
      db: { type: 'string' },
    },
  })
  const db = values.db
  if (db !== undefined) {
    const checked = checkDbUrl(db)
    if (!checked.ok) throw new UsageError(`--db: ${checked.problem} (e.g. --db ${EXAMPLE_DB}; without --db the bench runs on SQLite)`)
    if (values.full) throw new UsageError('--full runs the SQLite scenarios with synchronous=FULL: it does not apply with --db')
  }
  const envTasks = process.env.LOCKSTEP_BENCH_TASKS
  const envSamples = process.env.LOCKSTEP_BENCH_LATENCY_SAMPLES
  return {
    db,
    tasks: envTasks ? positiveInt(envTasks, 'LOCKSTEP_BENCH_TASKS') : values.quick ? 300 : 2000,
    repetitions: values.reps ? positiveInt(values.reps, '--reps') : values.quick ? 1 : 3,
    warmup: values.quick ? 50 : 200,
    modes: values.full ? ['NORMAL', 'FULL'] : ['NORMAL'],
    // Far above any transaction here; it only matters under 4-process contention, and
    // both sides get the same value.
    busyTimeoutMs: 5000,
    timeoutMs: 300_000,
    profileDir: values.profile ? resolve('.bench/profiles') : undefined,
    latencySamples: envSamples ? positiveInt(envSamples, 'LOCKSTEP_BENCH_LATENCY_SAMPLES') : values.quick ? 40 : 200,
    latencyGapMs: LATENCY_GAP_MS,
  }
}

/** parseArgs, its refusals (an unknown flag, --db without a value) as usage errors. */
function parseArgsOrExplain<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config)
  } catch (error) {
    const code = (error as { code?: unknown }).code
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) throw new UsageError((error as Error).message)
    throw error
  }
}

function positiveInt(text: string, name: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer, got ${JSON.stringify(text)}`)
  return n
}

const progress = (line: string) => process.stderr.write(`  ${line}\n`)

interface ModeSamples {
  /** plainjob's list stays empty where it does not run (PostgreSQL). */
  create: Record<Contender, CreateSample[]>
  cycles: Map<number, Record<Implementation, CycleSample[]>>
  /** SQLite only (empty on PostgreSQL). */
  pool: Map<number, Record<Contender, PoolSample[]>>
  /** By latencyKey(); one run each (not per repetition): its samples are the repetitions. */
  latency: Map<string, LatencySample>
}

const latencyKey = (impl: Implementation, placement: Placement, pollMs: number) => `${impl} ${placement} pollMs=${pollMs}`

/** One section's plan: where the boards live and which scenarios run. */
interface SectionPlan {
  /** Printed before the table, and the prefix of progress lines and profile directories. */
  name: string
  target: StoreTarget
  processCounts: readonly number[]
  /** The worker-pool scenario's process counts (SQLite only for now: none on PostgreSQL). */
  poolProcessCounts: readonly number[]
  /** plainjob beside the other two in create and the worker pool (SQLite only). */
  plainjob: boolean
}

function measureCreateOf(contender: Contender, config: ScenarioConfig, label: string): Promise<CreateSample> {
  return contender === 'plainjob' ? measurePlainjobCreate(config, label) : measureCreate(contender, config, label)
}

function measurePoolOf(contender: Contender, processes: number, config: ScenarioConfig, label: string): Promise<PoolSample> {
  return contender === 'plainjob' ? measurePlainjobPool(processes, config, label) : measurePool(contender, processes, config, label)
}

async function runSection(plan: SectionPlan, options: BenchOptions): Promise<ModeSamples> {
  const config: ScenarioConfig = { ...options, target: plan.target }
  const both = () => ({ lockstep: [], baseline: [] })
  const all = () => ({ lockstep: [], baseline: [], plainjob: [] })
  const contenders: readonly Contender[] = plan.plainjob ? [...IMPLEMENTATIONS, 'plainjob'] : IMPLEMENTATIONS
  const samples: ModeSamples = {
    create: all(),
    cycles: new Map(plan.processCounts.map((p) => [p, both()])),
    pool: new Map(plan.poolProcessCounts.map((p) => [p, all()])),
    latency: new Map(),
  }
  const name = plan.name
  for (let rep = 0; rep < options.repetitions; rep++) {
    // Alternate who goes first, so a machine that warms up or throttles favours neither.
    const order = rep % 2 === 0 ? IMPLEMENTATIONS : [...IMPLEMENTATIONS].reverse()
    const everyone = rep % 2 === 0 ? contenders : [...contenders].reverse()
    const tag = `[${name} ${rep + 1}/${options.repetitions}]`
    for (const impl of everyone) {
      const sample = await measureCreateOf(impl, config, `${name}-create-r${rep + 1}`)
      samples.create[impl].push(sample)
      progress(`${tag} create ${impl}: ${Math.round(sample.rate)} tasks/s`)
    }
    for (const [processes, bySide] of samples.cycles) {
      for (const impl of order) {
        const sample = await measureCycles(impl, processes, config, `${name}-p${processes}-r${rep + 1}`)
        bySide[impl].push(sample)
        progress(`${tag} claim→complete ${impl} x${processes}: ${Math.round(sample.rate)} cycles/s`)
      }
    }
    for (const [processes, bySide] of samples.pool) {
      for (const impl of everyone) {
        const sample = await measurePoolOf(impl, processes, config, `${name}-pool-p${processes}-r${rep + 1}`)
        bySide[impl].push(sample)
        progress(`${tag} worker pool ${impl} x${processes}: ${Math.round(sample.rate)} tasks/s`)
      }
    }
  }
  // Latency: one run per case (its samples are many), after the repetitions.
  let run = 0
  for (const placement of PLACEMENTS) {
    for (const pollMs of POLL_MS) {
      const order = run++ % 2 === 0 ? IMPLEMENTATIONS : [...IMPLEMENTATIONS].reverse()
      for (const impl of order) {
        const label = `${name}-latency-${placement}-poll${pollMs}`
        const sample = await measureLatency(impl, placement, pollMs, config, label)
        samples.latency.set(latencyKey(impl, placement, pollMs), sample)
        const { p50, p99 } = summarize(sample.start)
        progress(`[${name}] create→start ${impl} ${placement} pollMs ${pollMs}: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`)
      }
    }
  }
  return samples
}

const plural = (n: number) => (n === 1 ? '1 process' : `${n} processes`)

/** Rates and CPU costs: the median repetition, with every repetition kept. */
function perRepetition(values: number[]) {
  return { value: median(values), repetitions: values }
}

/** Latencies: every sample of every process and repetition, pooled. */
function latencies(samples: CycleSample[], op: 'claim' | 'complete'): LatencySummary {
  return summarize(samples.flatMap((s) => s[op]))
}

/** One table row: the same figure picked for each side. */
function compare(id: string, label: string, unit: Row['unit'], pick: (impl: Implementation) => Cell): Row {
  return row(id, label, unit, pick('lockstep'), pick('baseline'))
}

/** Where plainjob ran (the SQLite section): its figure beside the row's, picked the same way. */
function besidePlainjob<S>(r: Row, plainjob: S[], pick: (samples: S[]) => Cell): Row {
  return plainjob.length > 0 ? withPlainjob(r, pick(plainjob)) : r
}

function createRows(samples: ModeSamples): Row[] {
  const of = (impl: Contender) => samples.create[impl]
  const rate = (s: CreateSample[]) => perRepetition(s.map((x) => x.rate))
  const cpu = (s: CreateSample[]) => perRepetition(s.map((x) => x.cpuPerOp))
  return [
    besidePlainjob(compare('create', 'create', 'tasks/s', (impl) => rate(of(impl))), of('plainjob'), rate),
    besidePlainjob(compare('create_cpu', 'CPU per create', 'ms', (impl) => cpu(of(impl))), of('plainjob'), cpu),
  ]
}

function cycleRows(samples: ModeSamples): Row[] {
  const each = (fn: (processes: number, of: (impl: Implementation) => CycleSample[]) => Row[]) =>
    [...samples.cycles].flatMap(([processes, bySide]) => fn(processes, (impl) => bySide[impl]))
  return [
    ...each((n, of) => [
      compare(`cycles_${n}p`, `claim→complete, ${plural(n)}`, 'cycles/s', (impl) => perRepetition(of(impl).map((s) => s.rate))),
    ]),
    ...each((n, of) => [
      compare(`cycle_cpu_${n}p`, `CPU per cycle, ${plural(n)}`, 'ms', (impl) => perRepetition(of(impl).map((s) => s.cpuPerOp))),
    ]),
    ...each((n, of) =>
      (['p50', 'p99'] as const).map((p) =>
        compare(`claim_${p}_${n}p`, `claim ${p}, ${plural(n)}`, 'ms', (impl) => ({ value: latencies(of(impl), 'claim')[p] })),
      ),
    ),
  ]
}

const POOL_NOTE =
  `lockstep: one orch.tasks.work({ concurrency: ${POOL_CONCURRENCY}, handler: async () => {} }) per process. ` +
  'The baseline has no pool: each process runs the claim→complete loop of the rows above (claim, complete, repeat). ' +
  'Rate: tasks / (start barrier → completed_at of the last task in the file, ms resolution).'

const PLAINJOB_POOL_NOTE =
  "plainjob (bench/plainjob.ts): one defineWorker('bench', async () => {}, { queue }).start() per process, one job at a time, " +
  'its default pollIntervall (1000 ms: with the jobs added beforehand a worker only sleeps once the queue is empty); ' +
  "rate: jobs / (start barrier → the latest Date.now() its onCompleted callback stamped in any process: plainjob's table keeps no completion time)."

function poolRows(samples: ModeSamples): Row[] {
  const each = (fn: (processes: number, of: (impl: Contender) => PoolSample[]) => Row) =>
    [...samples.pool].map(([processes, bySide]) => fn(processes, (impl) => bySide[impl]))
  const rate = (s: PoolSample[]) => perRepetition(s.map((x) => x.rate))
  const cpu = (s: PoolSample[]) => perRepetition(s.map((x) => x.cpuPerOp))
  const note = (of: (impl: Contender) => PoolSample[]) => (of('plainjob').length > 0 ? `${POOL_NOTE} ${PLAINJOB_POOL_NOTE}` : POOL_NOTE)
  return [
    ...each((n, of) =>
      besidePlainjob(row(`pool_${n}p`, `worker pool, ${plural(n)}`, 'tasks/s', rate(of('lockstep')), rate(of('baseline')), note(of)), of('plainjob'), rate),
    ),
    ...each((n, of) =>
      besidePlainjob(
        row(`pool_cpu_${n}p`, `CPU per task, worker pool, ${plural(n)}`, 'ms', cpu(of('lockstep')), cpu(of('baseline')), note(of)),
        of('plainjob'),
        cpu,
      ),
    ),
  ]
}

function latencyNote(
  placement: Placement,
  store: StoreTarget['store'],
  samples: ModeSamples,
  options: { latencySamples: number; latencyGapMs: [number, number] },
): string {
  const [min, max] = options.latencyGapMs
  const poller =
    store === 'sqlite'
      ? 'baseline: a hand-written poller that every pollMs reads for a ready task '
      : 'baseline: a hand-written poller, LISTENing on its own client, that at a NOTIFY (sent by create after commit) or every pollMs reads for a ready task '
  const common =
    `t0 just before tasks.create(), t1 on the handler's first line; ${options.latencySamples} tasks per run, created one at a time ${min}-${max} ms apart (uniform). ` +
    `lockstep: an idle pool (concurrency ${POOL_CONCURRENCY}), the orchestrator's pollMs as in the row; ${poller}` +
    'and, if there is one, claims, runs the handler and completes until none is left (one handler at a time).'
  if (placement === 'in-process') {
    const wake =
      store === 'sqlite'
        ? "lockstep's pool wakes from the journal subscription at commit, not from the pollMs poll."
        : "lockstep's pool wakes from the journal subscription at commit (which reads the journal up to its safe horizon), not from the pollMs poll."
    return `In-process: one process creates and works. ${common} ${wake}`
  }
  const wake =
    store === 'sqlite'
      ? "lockstep's B wakes from its PRAGMA data_version poll every pollMs."
      : "lockstep's B wakes at A's NOTIFY (sent after each commit) or its journal poll every pollMs, then reads the journal up to its safe horizon."
  const skews = [...samples.latency.values()].map((s) => Math.abs(s.clockSkewMs))
  return (
    `Cross-process: process A creates, process B works. ${common} ${wake} ` +
    `t0 and t1 are performance.timeOrigin + performance.now() of A and B, B's corrected by the two clocks' difference measured against ` +
    `Date.now() tick edges (at most ${Math.max(...skews).toFixed(3)} ms in this run).`
  )
}

function latencyRows(samples: ModeSamples, store: StoreTarget['store'], options: BenchOptions): Row[] {
  return PLACEMENTS.flatMap((placement) => {
    const note = latencyNote(placement, store, samples, options)
    const short = placement === 'in-process' ? 'local' : 'cross'
    return POLL_MS.flatMap((pollMs) => {
      const of = (impl: Implementation) => summarize(samples.latency.get(latencyKey(impl, placement, pollMs))!.start)
      const [lockstep, baseline] = [of('lockstep'), of('baseline')]
      return (['p50', 'p99'] as const).map((p) =>
        row(`start_${p}_${short}_poll${pollMs}`, `create→start ${p}, ${placement}, pollMs ${pollMs}`, 'ms', { value: lockstep[p] }, { value: baseline[p] }, note),
      )
    })
  })
}

/** Figures for the JSON only: full latency summaries, per-process shares, the checked row counts. */
function details(samples: ModeSamples): Record<string, unknown> {
  const perSide = <T>(fn: (impl: Implementation) => T) => Object.fromEntries(IMPLEMENTATIONS.map((impl) => [impl, fn(impl)]))
  // plainjob where it ran: create and the pool only.
  const contenders: Contender[] = samples.create.plainjob.length > 0 ? [...IMPLEMENTATIONS, 'plainjob'] : [...IMPLEMENTATIONS]
  const perContender = <T>(fn: (impl: Contender) => T) => Object.fromEntries(contenders.map((impl) => [impl, fn(impl)]))
  return {
    create: perContender((impl) => ({
      latency: summarize(samples.create[impl].flatMap((s) => s.create)),
      fileCounts: samples.create[impl].map((s) => s.counts),
    })),
    cycles: Object.fromEntries(
      [...samples.cycles].map(([processes, bySide]) => [
        `${processes}p`,
        perSide((impl) => ({
          claimLatency: latencies(bySide[impl], 'claim'),
          completeLatency: latencies(bySide[impl], 'complete'),
          wallMs: bySide[impl].map((s) => s.wallMs),
          cyclesPerProcess: bySide[impl].map((s) => s.cyclesPerProcess),
          fileCounts: bySide[impl].map((s) => s.counts),
        })),
      ]),
    ),
    pool: Object.fromEntries(
      [...samples.pool].map(([processes, bySide]) => [
        `${processes}p`,
        perContender((impl) => ({
          wallMs: bySide[impl].map((s) => s.wallMs),
          parentWallMs: bySide[impl].map((s) => s.parentWallMs),
          tasksPerProcess: bySide[impl].map((s) => s.tasksPerProcess),
          fileCounts: bySide[impl].map((s) => s.counts),
        })),
      ]),
    ),
    latency: Object.fromEntries(
      [...samples.latency].map(([key, s]) => [key, { start: summarize(s.start), clockSkewMs: s.clockSkewMs, fileCounts: s.counts }]),
    ),
  }
}

function buildSection(title: string, store: StoreTarget['store'], samples: ModeSamples, options: BenchOptions): Section {
  const rows = [...createRows(samples), ...cycleRows(samples), ...poolRows(samples), ...latencyRows(samples, store, options)]
  return { synchronous: title, rows, details: details(samples) }
}

function targetLines(section: Section): string[] {
  const cycles = section.rows.filter((r) => r.unit === 'cycles/s')
  const verdicts = cycles.map((r) => `${r.label.replace('claim→complete, ', '')} ${r.ratio.toFixed(2)}x ${r.ratio >= TARGET_RATIO ? 'met' : 'MISSED'}`)
  return [`design target lockstep >= ${TARGET_RATIO}x baseline on claim→complete: ${verdicts.join(', ')}`, ...plainjobTargetLines(section)]
}

/** Issue 11: lockstep's worker pool at least as fast as plainjob's worker, at every process count measured. */
function plainjobTargetLines(section: Section): string[] {
  return section.rows
    .filter((r) => r.unit === 'tasks/s' && r.id.startsWith('pool_') && r.plainjob)
    .map((r) => {
      const n = r.label.replace('worker pool, ', '')
      const figures = `lockstep ${Math.round(r.lockstep.value)} vs plainjob ${Math.round(r.plainjob!.value)} tasks/s, ${r.plainjobRatio!.toFixed(2)}x`
      return `issue 11 target worker pool >= plainjob at ${n}: ${figures} ${r.plainjobRatio! >= 1 ? 'met' : 'MISSED'}`
    })
}

/** PostgreSQL's second target: parallel writers are the point of that store, so more processes must go faster. */
function scalingLine(section: Section): string {
  const byId = new Map(section.rows.map((r) => [r.id, r]))
  const one = byId.get('cycles_1p')!
  const four = byId.get('cycles_4p')!
  const side = (impl: Implementation) => {
    const gain = four[impl].value / one[impl].value
    return `${impl} ${gain.toFixed(2)}x${impl === 'lockstep' ? (gain > 1 ? ' met' : ' MISSED') : ''}`
  }
  return `target 4 processes faster than 1 on claim→complete (x4 / x1 rate): ${side('lockstep')}; ${side('baseline')}`
}

const COMMON_HEADER = [
  '  rates and CPU: median over repetitions (min-max); latencies: nearest-rank over all samples pooled',
  '  the sides alternate (who goes first flips every repetition): compare ratios; absolute figures move with the',
  "  machine's other load",
]

function sqliteHeader(machine: MachineFacts, options: BenchOptions): string {
  return [
    'lockstep bench: lockstep vs hand-written better-sqlite3 baseline (same work, same run)',
    `  node ${machine.node} | ${machine.os} | ${machine.cpuCount} CPUs (${machine.cpuModel})`,
    `  better-sqlite3 ${machine.betterSqlite3} | SQLite ${machine.sqlite} | xstate ${machine.xstate} | plainjob ${machine.plainjob}`,
    `  ${options.tasks} tasks per scenario | ${options.repetitions} repetition(s) | warm-up ${options.warmup} tasks per process`,
    `  create→start: ${options.latencySamples} samples per case, one run each after the repetitions`,
    `  WAL | busy_timeout ${options.busyTimeoutMs} ms | synchronous passed explicitly to every side | files in ${machine.tmpdir}`,
    "  checkpoints: lockstep's default (a background thread, PASSIVE every 100 ms); baseline and plainjob: SQLite's automatic one inside commits",
    '  plainjob (create and worker pool only): its defaults but a quiet logger, synchronous and busy_timeout as above (bench/plainjob.ts)',
    ...COMMON_HEADER,
    '  CPU per op: user+system time of the worker processes / ops: the cost without fsync and lock waits',
  ].join('\n')
}

function postgresHeader(machine: MachineFacts, server: ServerFacts, options: BenchOptions): string {
  const settings = Object.entries(server.settings)
    .map(([name, value]) => `${name}=${value}`)
    .join(' | ')
  return [
    'lockstep bench: lockstep on PostgreSQL vs hand-written node-postgres baseline (same work, same run)',
    `  node ${machine.node} | ${machine.os} | ${machine.cpuCount} CPUs (${machine.cpuModel})`,
    `  PostgreSQL ${server.version} at ${server.where} | pg ${machine.pg} | xstate ${machine.xstate}`,
    `  ${settings}`,
    `  ${options.tasks} tasks per scenario | ${options.repetitions} repetition(s) | warm-up ${options.warmup} tasks per process`,
    `  create→start: ${options.latencySamples} samples per case, one run each after the repetitions`,
    "  each measurement on a fresh schema of its own (dropped after) | pool size pg's default (10) per process, both sides | READ COMMITTED",
    "  lockstep: createOrchestrator({ url, schema }) with its defaults (timer loop, journal feed, LISTEN/NOTIFY wake-ups) | baseline: bench/baseline-postgres.ts",
    ...COMMON_HEADER,
    "  CPU per op: user+system time of the Node worker processes / ops (the server's backends are not counted)",
  ].join('\n')
}

async function runSqlite(options: BenchOptions, machine: MachineFacts): Promise<void> {
  console.log(sqliteHeader(machine, options))
  const sections: Section[] = []
  for (const synchronous of options.modes) {
    const plan: SectionPlan = {
      name: synchronous,
      target: { store: 'sqlite', synchronous, busyTimeoutMs: options.busyTimeoutMs },
      processCounts: SQLITE_PROCESS_COUNTS,
      poolProcessCounts: SQLITE_POOL_PROCESS_COUNTS,
      plainjob: true,
    }
    const section = buildSection(synchronous, 'sqlite', await runSection(plan, options), options)
    sections.push(section)
    console.log(`\nsynchronous=${synchronous}`)
    console.log(renderSection(section))
    for (const line of targetLines(section)) console.log(line)
  }
  writeJson(RESULTS_PATH, { generatedAt: new Date().toISOString(), machine, options, targetRatio: TARGET_RATIO, sections })
  console.log(`\nwrote ${RESULTS_PATH}${options.profileDir ? `; CPU profiles in ${options.profileDir}` : ''}`)
  console.log(`PostgreSQL rows (not run): npm run bench -- --db ${EXAMPLE_DB}`)
}

async function runPostgres(url: string, options: BenchOptions, machine: MachineFacts): Promise<void> {
  const where = (checkDbUrl(url) as { masked: string }).masked
  let server: ServerFacts
  try {
    server = await serverFacts(url, where)
  } catch (error) {
    throw new UsageError(`--db: no PostgreSQL server answers at ${where}: ${(error as Error).message || String(error)}`)
  }
  // Ctrl-C: the workers exit with their parent (worker.ts); drop the schemas of the
  // measurement under way, which its `finally` would have, then leave.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`\nbench: ${signal}: dropping this run's schemas`)
      dropLiveSchemas()
        .catch((error: unknown) => console.error(`bench: could not drop every schema: ${(error as Error).message}`))
        .finally(() => process.exit(130))
    })
  }
  console.log(postgresHeader(machine, server, options))
  const plan: SectionPlan = {
    name: 'postgres',
    target: { store: 'postgres', url },
    processCounts: POSTGRES_PROCESS_COUNTS,
    poolProcessCounts: [],
    plainjob: false,
  }
  const title = `postgres synchronous_commit=${server.settings.synchronous_commit}`
  const section = buildSection(title, 'postgres', await runSection(plan, options), options)
  console.log(`\n${title}`)
  console.log(renderSection(section))
  for (const line of targetLines(section)) console.log(line)
  console.log(scalingLine(section))
  // The URL may carry a password: the JSON gets the masked one.
  writeJson(POSTGRES_RESULTS_PATH, {
    generatedAt: new Date().toISOString(),
    machine,
    server,
    options: { ...options, db: where },
    targetRatio: TARGET_RATIO,
    sections: [section],
  })
  console.log(`\nwrote ${POSTGRES_RESULTS_PATH}${options.profileDir ? `; CPU profiles in ${options.profileDir}` : ''}`)
}

async function main(): Promise<void> {
  const options = parseOptions()
  // Profiles are named by time and pid only: start from an empty directory so every file is from this run.
  if (options.profileDir) rmSync(options.profileDir, { recursive: true, force: true })
  const machine = machineFacts()
  if (options.db !== undefined) await runPostgres(options.db, options, machine)
  else await runSqlite(options, machine)
}

main().catch((error: unknown) => {
  if (error instanceof UsageError) {
    console.error(`bench: ${error.message}`)
    process.exitCode = 2
    return
  }
  console.error(error)
  process.exitCode = 1
})
