/**
 * Opening a PostgreSQL pool for one lockstep schema, and the transaction runner that keeps
 * serialization failures, deadlocks and lost connections away from callers (they are
 * retried whole, with jittered backoff, inside a bounded budget) and makes a commit whose
 * answer was lost count exactly once. `pg` is imported lazily: SQLite-only users never
 * load it.
 */
import type { Pool, PoolClient, PoolConfig, QueryResult, QueryResultRow } from 'pg'
import { InvalidInputError, SchemaTooNewError, StoreBusyError, StoreOpenError, StoreUnavailableError } from '../../src/errors.js'
import { requireOptions } from '../../src/validate.js'
import { SCHEMA_VERSION } from './migrations.js'

/**
 * Every statement names its tables as `"schema".table` (never through `search_path`): no
 * per-connection setup, nothing a pooler or a host's own `SET search_path` can redirect,
 * and function bodies (the journal's seq default) resolve the same from any caller.
 */
export interface PgSchema {
  /** The plain identifier, e.g. `lockstep`. */
  readonly name: string
  /** Quoted for SQL, e.g. `"lockstep"`. */
  readonly ident: string
  /** `"schema".table`. */
  table(name: string): string
}

/**
 * A schema name is a plain lower-case identifier (what PostgreSQL folds unquoted names
 * to), at most 54 bytes so that the NOTIFY channel `lockstep_<schema>` fits PostgreSQL's
 * 63-byte identifier limit; `pg_` names are the server's own.
 */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,53}$/

export function pgSchema(name: unknown = 'lockstep'): PgSchema {
  if (typeof name !== 'string' || !SCHEMA_NAME.test(name) || name.startsWith('pg_')) {
    throw new InvalidInputError(
      'schema must be a plain identifier: a lower-case letter or _, then up to 53 lower-case letters, digits or _ (not starting with pg_)',
      { field: 'schema' },
    )
  }
  const ident = `"${name}"`
  return { name, ident, table: (table: string) => `${ident}.${table}` }
}

/** Options of pg.Pool that lockstep passes through (see node-postgres's Pool and Client). */
export const POOL_OPTION_KEYS = [
  'max',
  'min',
  'idleTimeoutMillis',
  'connectionTimeoutMillis',
  'maxLifetimeSeconds',
  'maxUses',
  'allowExitOnIdle',
  'query_timeout',
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'keepAlive',
  'keepAliveInitialDelayMillis',
  'application_name',
  'ssl',
] as const

export type PgPoolOptions = Pick<PoolConfig, (typeof POOL_OPTION_KEYS)[number]>

export interface PgOpenOptions {
  /** Schema holding lockstep's tables (default `lockstep`); one database can hold several. */
  schema?: string
  /**
   * Passed to pg.Pool. lockstep's defaults: connectionTimeoutMillis 5000, query_timeout
   * 60000, keepAlive true, idle_in_transaction_session_timeout 30000, application_name lockstep.
   */
  pool?: PgPoolOptions
  /**
   * How long one transaction may keep retrying serialization failures, deadlocks and lost
   * connections before the caller gets STORE_BUSY / STORE_UNAVAILABLE (default 30000 ms).
   */
  retryBudgetMs?: number
  /**
   * Every connection of the pool (and the LISTEN connection) is read-only at the server
   * (`default_transaction_read_only`): a reader that tried to write would get an error
   * from PostgreSQL, not a changed board.
   */
  readOnly?: boolean
}

const OPEN_OPTION_KEYS = ['schema', 'pool', 'retryBudgetMs', 'readOnly'] as const

/** An open pool for one schema. */
export interface PgConnection {
  readonly pool: Pool
  readonly schema: PgSchema
  /** Its sessions are read-only at the server (PgOpenOptions.readOnly). */
  readonly readOnly: boolean
  /** The URL without its password, for messages. */
  readonly where: string
  readonly retryBudgetMs: number
  /** The client config, for connections outside the pool (the LISTEN connection). */
  readonly clientConfig: PoolConfig
  /** The loaded `pg` module. */
  readonly pg: typeof import('pg').default
  close(): Promise<void>
}

/** Is this string a PostgreSQL URL lockstep opens (rather than a SQLite path)? */
export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//i.test(value)
}

/** The URL with its password masked; throws INVALID_INPUT for anything but a postgres(ql):// URL. */
export function checkPgUrl(url: unknown): string {
  if (typeof url !== 'string' || !isPostgresUrl(url)) {
    throw new InvalidInputError('url must be a postgres:// or postgresql:// URL', { field: 'url' })
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new InvalidInputError('url is not a valid URL', { field: 'url' })
  }
  if (parsed.password) parsed.password = '***'
  return parsed.toString()
}

const READ_ONLY_SETTING = '-c default_transaction_read_only=on'

/**
 * The URL with `default_transaction_read_only=on` added to its startup `options`. Set in
 * the URL, not in the pool config: node-postgres lets a URL's own `options` replace the
 * config's, so a URL that carried some would silently drop the setting.
 */
function readOnlyUrl(url: string): string {
  const parsed = new URL(url)
  const given = parsed.searchParams.get('options')
  parsed.searchParams.set('options', given ? `${given} ${READ_ONLY_SETTING}` : READ_ONLY_SETTING)
  return parsed.toString()
}

// int8 (oid 20) comes back as a string by default; lockstep's BIGINTs (times in ms, seqs,
// versions) are within 2^53. Set per pool, never globally, so the host's own pg keeps its parsers.
function parseInt8(text: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${text} is outside JavaScript's safe integers`)
  return n
}

/**
 * Open a pool on `url` for `options.schema` and check that the server answers. Bad options
 * are INVALID_INPUT; a server that refuses, is unreachable or does not answer within
 * `pool.connectionTimeoutMillis` (default 5 s) is STORE_OPEN_FAILED. Does not migrate
 * (see migrations.ts).
 */
export async function openPool(url: unknown, options: PgOpenOptions = {}): Promise<PgConnection> {
  const where = checkPgUrl(url)
  const opts = requireOptions(options, 'PostgreSQL options', OPEN_OPTION_KEYS) as PgOpenOptions
  const schema = pgSchema(opts.schema ?? 'lockstep')
  const poolOptions = requireOptions(opts.pool ?? {}, 'pool options', POOL_OPTION_KEYS) as PgPoolOptions
  const retryBudgetMs = opts.retryBudgetMs ?? 30_000
  if (typeof retryBudgetMs !== 'number' || !Number.isFinite(retryBudgetMs) || retryBudgetMs < 0) {
    throw new InvalidInputError('retryBudgetMs must be a non-negative number of milliseconds', { field: 'retryBudgetMs' })
  }
  const readOnly = opts.readOnly ?? false
  if (typeof readOnly !== 'boolean') throw new InvalidInputError('readOnly must be true or false', { field: 'readOnly' })
  const pg = (await import('pg')).default
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === 20 && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
  }
  const clientConfig: PoolConfig = {
    // Bounded waits by default: pg's own defaults wait forever for a connection or an answer.
    connectionTimeoutMillis: 5_000,
    query_timeout: 60_000,
    keepAlive: true,
    // A lockstep transaction never idles (handlers run outside it); one that does belongs to
    // a frozen or stuck process, and it holds row locks and the journal followers' horizon.
    idle_in_transaction_session_timeout: 30_000,
    application_name: 'lockstep',
    ...poolOptions,
    connectionString: readOnly ? readOnlyUrl(url as string) : (url as string),
    types,
  }
  const pool = new pg.Pool(clientConfig)
  // An idle client whose server connection dies emits 'error' on the pool; unhandled, that
  // would end the process. The pool drops that client and the next checkout reconnects.
  pool.on('error', () => {})
  // A client can also emit 'error' while nobody listens on it (a backend terminated right
  // as the client changes hands, seen under pg_terminate_backend load): never let that end
  // the host process. The failure still surfaces: the client is no longer queryable, so
  // its next query fails (a connection error, rerun by withTransaction) and the pool drops it.
  pool.on('connect', (client) => client.on('error', () => {}))
  try {
    const client = await pool.connect()
    // A checked-out client has no listener of the pool's: one whose backend is terminated
    // during this probe would otherwise emit an unhandled 'error' and end the process.
    let lost: unknown = null
    const onError = (error: unknown) => void (lost ??= error)
    client.on('error', onError)
    try {
      const probe = await client.query<{ read_only: string }>("SELECT current_setting('default_transaction_read_only') AS read_only")
      // A server or pooler that dropped the startup option would make a reader writable.
      if (readOnly && probe.rows[0]?.read_only !== 'on') {
        throw new Error('the server did not apply default_transaction_read_only = on to a read-only connection')
      }
    } finally {
      client.off('error', onError)
      client.release((lost as Error | null) ?? undefined)
    }
  } catch (error) {
    await pool.end().catch(() => {})
    throw new StoreOpenError(where, error)
  }
  let closed: Promise<void> | undefined
  return {
    pool,
    schema,
    readOnly,
    where,
    retryBudgetMs,
    clientConfig,
    pg,
    close: () => (closed ??= pool.end()),
  }
}

/** SQLSTATEs retried as conflicts: the transaction lost a race and is rerun whole. */
const CONFLICT_CODES = new Set(['40001', '40P01'])
/**
 * SQLSTATEs that mean the connection or the server went away (class 08, the admin or crash
 * shutdowns of 57P, "cannot connect now", too many connections).
 */
const CONNECTION_CODES = /^(08...|57P0[1-4]|53300)$/
/** Node and node-postgres errors of a lost or unusable connection (they carry no SQLSTATE). */
const CONNECTION_MESSAGES =
  /Connection terminated|connection error|not queryable|timeout exceeded when trying to connect|Query read timeout|ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|socket hang up/i

export type FailureKind = 'conflict' | 'connection' | 'other'

/** How withTransaction treats an error. */
export function classifyError(error: unknown): FailureKind {
  const e = error as { code?: unknown; message?: unknown; errno?: unknown } | null
  const code = typeof e?.code === 'string' ? e.code : ''
  if (CONFLICT_CODES.has(code)) return 'conflict'
  if (CONNECTION_CODES.test(code)) return 'connection'
  if (/^E[A-Z]+$/.test(code) && CONNECTION_MESSAGES.test(code)) return 'connection'
  if (typeof e?.message === 'string' && CONNECTION_MESSAGES.test(e.message) && !/^[0-9A-Z]{5}$/.test(code)) return 'connection'
  return 'other'
}

/** What a transaction body gets. */
export interface PgTx {
  readonly client: PoolClient
  readonly schema: PgSchema
  /** The database clock at BEGIN, ms since the epoch: leases, backoffs and timers use it, never the host's clock. */
  readonly now: number
  /** 1 for the first run of the body, 2 for its first retry, ... */
  readonly attempt: number
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>
  /** Run after the commit is known to have happened (once, also when it was confirmed after a lost answer); errors are ignored. */
  afterCommit(fn: () => unknown): void
}

export interface TransactionOptions {
  isolation?: 'read committed' | 'repeatable read' | 'serializable'
  /**
   * A read-only transaction: no transaction id is taken at BEGIN (nothing to confirm after
   * a lost COMMIT answer) and the server refuses writes.
   */
  readOnly?: boolean
  /** Overrides the connection's retryBudgetMs for this call. */
  retryBudgetMs?: number
  /** Called before each retry (tests and metrics). */
  onRetry?: (info: { attempt: number; kind: FailureKind; error: unknown; delayMs: number }) => void
}

/** What runOnce throws when the whole transaction should be rerun. */
class Retryable {
  constructor(readonly kind: Exclude<FailureKind, 'other'>, readonly error: unknown) {}
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Full-jitter exponential backoff: conflicts start at 2 ms (the other transaction is
 * about to commit), lost connections at 50 ms (a restart or failover takes longer).
 */
function backoffMs(kind: FailureKind, retry: number): number {
  const [base, cap] = kind === 'conflict' ? [2, 250] : [50, 2_000]
  return Math.random() * Math.min(cap, base * 2 ** Math.min(retry - 1, 20))
}

/**
 * Run `fn` in one transaction on one pooled client: BEGIN (with the schema version check,
 * the database clock and, for writes, the transaction id, in the same round trip), the
 * body, COMMIT.
 *
 * - Serialization failures (40001) and deadlocks (40P01) roll back and rerun the body
 *   after a jittered backoff; once the budget is spent the caller gets STORE_BUSY.
 * - A lost connection (terminated backend, server restart, network, no answer within
 *   query_timeout) destroys the client (never returned to the pool) and reruns the body;
 *   after the budget, STORE_UNAVAILABLE. If it was lost during COMMIT, the transaction's
 *   fate is read with pg_xact_status from another connection first: committed means done
 *   (the body is not rerun), aborted means rerun.
 * - A schema migrated past this lockstep since open is SCHEMA_TOO_NEW.
 * - Anything else the body throws rolls back and reaches the caller as is.
 *
 * The body may run more than once, so it must keep its effects inside the transaction (or
 * in `afterCommit`).
 */
export async function withTransaction<T>(conn: PgConnection, fn: (tx: PgTx) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  const budget = options.retryBudgetMs ?? conn.retryBudgetMs
  const deadline = performance.now() + budget
  const isolation = options.isolation ?? 'read committed'
  // One round trip: BEGIN, then one row per applied migration (the schema version is their
  // max; returning the rows plans cheaper than max(), measured), each with the database
  // clock and, for writes, the transaction id. Taking the id now costs no round trip and is
  // what lets a lost COMMIT answer be resolved (it makes a body that writes nothing commit a
  // record too).
  const begin =
    `BEGIN ISOLATION LEVEL ${isolation.toUpperCase()}${options.readOnly ? ' READ ONLY' : ''}; ` +
    `SELECT version, floor(date_part('epoch', clock_timestamp()) * 1000)::int8 AS now_ms` +
    (options.readOnly ? '' : ', pg_current_xact_id()::text AS xid') +
    ` FROM ${conn.schema.table('lockstep_migrations')}`
  for (let attempt = 1; ; attempt++) {
    let retry: Retryable
    try {
      return await runOnce(conn, fn, begin, attempt, SCHEMA_VERSION, deadline, budget)
    } catch (error) {
      if (!(error instanceof Retryable)) throw error
      retry = error
    }
    const delayMs = backoffMs(retry.kind, attempt)
    if (performance.now() + delayMs > deadline) {
      if (retry.kind === 'conflict') throw new StoreBusyError(budget, retry.error)
      throw new StoreUnavailableError(conn.where, budget, retry.error)
    }
    options.onRetry?.({ attempt, kind: retry.kind, error: retry.error, delayMs })
    await sleep(delayMs)
  }
}

async function runOnce<T>(
  conn: PgConnection,
  fn: (tx: PgTx) => Promise<T>,
  begin: string,
  attempt: number,
  knownVersion: number,
  deadline: number,
  budget: number,
): Promise<T> {
  let client: PoolClient
  try {
    client = await conn.pool.connect()
  } catch (error) {
    throw new Retryable('connection', error)
  }
  // A checked-out client that loses its connection between queries emits 'error'; without
  // a listener that would end the process. The failed query reports it.
  let lost: unknown = null
  const onError = (error: unknown) => void (lost ??= error)
  client.on('error', onError)
  let released = false
  const release = (destroy: boolean) => {
    if (released) return
    released = true
    client.off('error', onError)
    // release(error) makes the pool destroy the client instead of reusing it.
    client.release(destroy ? ((lost as Error | null) ?? new Error('lockstep: connection lost')) : undefined)
  }
  const backendPid = (client as unknown as { processID: number | null }).processID
  let xid: string | null = null
  let committing = false
  let value: T | undefined
  const after: Array<() => unknown> = []
  try {
    const results = (await client.query(begin)) as unknown as QueryResult[]
    const rows = results[1]!.rows as Array<{ version: number; now_ms: number; xid?: string }>
    // No rows: the schema was never migrated (the store migrates at open).
    const row = rows[0] ?? (await client.query(`SELECT floor(date_part('epoch', clock_timestamp()) * 1000)::int8 AS now_ms${begin.includes('pg_current_xact_id') ? ', pg_current_xact_id()::text AS xid' : ''}`)).rows[0]
    const found = rows.reduce((max, r) => Math.max(max, r.version), 0)
    xid = row.xid ?? null
    if (found > knownVersion) throw new SchemaTooNewError(`${conn.where} (schema ${conn.schema.name})`, found, knownVersion)
    const tx: PgTx = {
      client,
      schema: conn.schema,
      now: row.now_ms,
      attempt,
      query: (text, values) => client.query(text, values as unknown[]),
      afterCommit: (f) => void after.push(f),
    }
    value = await fn(tx)
    committing = true
    await client.query('COMMIT')
    release(false)
    runAfterCommit(after)
    return value
  } catch (error) {
    // A body that caught a lost connection's error and threw its own is still a lost connection.
    const kind = lost !== null ? 'connection' : classifyError(error)
    if (kind === 'connection') {
      release(true)
      if (committing && xid !== null) {
        // COMMIT may have been applied with only its answer lost: find out before rerunning.
        if ((await commitFate(conn, xid, backendPid, deadline, budget, error)) === 'committed') {
          runAfterCommit(after)
          return value as T
        }
      }
      throw new Retryable('connection', error)
    }
    if (!released) {
      try {
        await client.query('ROLLBACK')
        release(false)
      } catch {
        release(true)
      }
    }
    throw kind === 'conflict' ? new Retryable('conflict', error) : error
  } finally {
    release(lost !== null)
  }
}

function runAfterCommit(after: Array<() => unknown>): void {
  for (const f of after) {
    try {
      void Promise.resolve(f()).catch(() => {})
    } catch {
      // After-commit work is best effort (wake-ups; pollers catch up).
    }
  }
}

/**
 * Whether transaction `xid`, whose COMMIT answer was lost, committed. "in progress" means
 * its old backend has not noticed yet; terminating it settles the question either way (a
 * commit already under way finishes, anything else aborts). Unknown by the deadline is
 * STORE_UNAVAILABLE: rerunning could apply the transaction twice.
 */
async function commitFate(
  conn: PgConnection,
  xid: string,
  backendPid: number | null,
  deadline: number,
  budget: number,
  cause: unknown,
): Promise<'committed' | 'aborted'> {
  for (let retry = 1; ; retry++) {
    try {
      const result = await conn.pool.query<{ status: string | null }>('SELECT pg_xact_status($1::xid8) AS status', [xid])
      const status = result.rows[0]?.status
      if (status === 'committed' || status === 'aborted') return status
      if (status === 'in progress' && backendPid !== null) {
        // Without the right to signal it (another role's backend), wait for it to notice instead.
        await conn.pool.query('SELECT pg_terminate_backend($1)', [backendPid]).catch(() => {})
      }
    } catch (error) {
      if (classifyError(error) === 'other') throw error
    }
    const delayMs = backoffMs('connection', retry)
    if (performance.now() + delayMs > deadline) {
      throw new StoreUnavailableError(conn.where, budget, cause, { commit: 'unknown', xid })
    }
    await sleep(delayMs)
  }
}

/** The database clock in ms since the epoch (`clock_timestamp()`, not the transaction's start). */
export async function databaseNowMs(queryable: { query: PoolClient['query'] } | Pool): Promise<number> {
  const result = await (queryable as Pool).query<{ now_ms: number }>("SELECT floor(date_part('epoch', clock_timestamp()) * 1000)::int8 AS now_ms")
  return result.rows[0]!.now_ms
}
