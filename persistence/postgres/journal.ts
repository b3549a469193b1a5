/**
 * The journal on PostgreSQL: appending entries, and following them in one global `seq`
 * order without ever skipping one.
 *
 * The problem: a seq is handed out at insert time, before commit, so seq 20 can commit after
 * seq 21; a follower that read 21 and moved on to "seq > 21" never sees 20.
 *
 * The mechanism (commits stay parallel): every journal insert takes a SHARED
 * transaction-level advisory lock on the schema's journal key before its seq exists (the
 * seq column's default does it, see migrations.ts) and holds it to commit or rollback. A
 * follower reads, in this order,
 *   1. h = the sequence's last handed-out value, then
 *   2. the set S of transactions (virtualtransaction) holding that lock, from pg_locks.
 * Any transaction with a seq <= h called nextval before step 1, so it already held the lock
 * then: at step 2 it is either in S or finished. Once no member of S is in pg_locks any
 * more (at once if S is empty), every seq <= h is final: committed and visible to new
 * snapshots (PostgreSQL releases a transaction's locks only after it is visible), or
 * rolled back for good (a gap). The follower then reads cursor < seq <= h in seq order and
 * moves its cursor to h. Horizons wait only for the transactions that were open at step 2,
 * never for later ones; a later horizon's set contains every still-open member of an
 * earlier one, so horizons drain in order.
 *
 * Shared locks never conflict with one another: writers do not wait for each other or for
 * followers. The sequence must not cache values per session (CACHE 1), or a session could
 * hold seqs <= h and use them after the follower moved past h.
 */
import type { QueryResult, QueryResultRow } from 'pg'
import type { JournalEntry } from '../../src/types.js'
import { toJournalEntry, type JournalRow } from '../journal-rows.js'
import type { JournalWrite } from '../store.js'
import type { PgConnection, PgSchema } from './connection.js'
import { JOURNAL_LOCK_CLASS } from './migrations.js'

/** Anything that runs a query: a PgTx, a PoolClient, the pool. */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>
}

/** One journal row to append; `event` is JSON text (the step serializes it). */
export type JournalAppend = JournalWrite

/** A journal row as node-postgres returns it (int8 parsed to numbers by the pool). */
export type PgJournalRow = JournalRow

const APPEND_COLUMNS = 10

/**
 * Append entries inside the caller's transaction, in one statement (one round trip for any
 * number of entries), and return their seqs in order. Multi-row VALUES, not unnest() of
 * arrays: unnest made a one-entry step's transaction ~25% slower (measured, README). Append
 * after the actor's row is written (the UPDATE with the version check): the row lock
 * orders two steps of one actor, so their seqs are in the order they committed.
 */
export async function appendJournal(tx: Queryable, schema: PgSchema, entries: readonly JournalAppend[]): Promise<number[]> {
  if (entries.length === 0) return []
  const rows = entries.map((_, i) => `(${Array.from({ length: APPEND_COLUMNS }, (_, j) => `$${i * APPEND_COLUMNS + j + 1}`).join(', ')})`)
  const values = entries.flatMap((e) => [
    e.machineId,
    e.actorId,
    e.kind,
    e.eventType,
    e.event,
    e.stateBefore,
    e.stateAfter,
    e.runId,
    e.actorVersion,
    e.at,
  ])
  const result = await tx.query<{ seq: number }>(
    `INSERT INTO ${schema.table('journal')} (machine_id, actor_id, kind, event_type, event, state_before, state_after, run_id, actor_version, at)
     VALUES ${rows.join(', ')} RETURNING seq`,
    values,
  )
  // RETURNING gives rows in VALUES order. Number(): also right on a client without
  // lockstep's int8 parser (a raw pg.Client).
  return result.rows.map((row) => Number(row.seq))
}

export { toJournalEntry }

export interface JournalFollowerOptions {
  /** Deliver entries with seq greater than this (default 0: everything). */
  after?: number
  /** Only this machine's entries (the cursor still moves over the others). */
  machineId?: string
  /** Entries per poll at most (default 500). */
  pageSize?: number
}

interface Horizon {
  seq: number
  /** virtualtransaction ids that held the journal lock right after `seq` was read. */
  open: Set<string>
  /** Which advance() read it (they are numbered as they start). */
  read: number
}

/**
 * The journal's safe horizon of one schema: the highest seq at or below which every entry
 * is final. `advance()` takes one round trip (the sequence's last value, then the lock's
 * holders) and returns the horizon as far as it is known now.
 */
export class JournalHorizon {
  /** Every seq up to here is final (committed or rolled back for good). */
  safe: number
  private readonly horizons: Horizon[] = []
  private horizonSql: string | null = null
  /** advance() calls started so far: callers may overlap, and their answers arrive in any order. */
  private reads = 0

  constructor(
    private readonly conn: Pick<PgConnection, 'pool' | 'schema'>,
    start = 0,
  ) {
    this.safe = start
  }

  /** True while a read horizon waits for transactions that were open when it was taken. */
  get waiting(): boolean {
    return this.horizons.length > 0
  }

  /** One round trip: the sequence's last value, then the journal lock's holders. */
  async advance(): Promise<number> {
    this.horizonSql ??= await this.prepareHorizonSql()
    const read = ++this.reads
    // Two statements in one simple query run in order: the seq is read strictly before the locks.
    const [seqResult, lockResult] = (await this.conn.pool.query(this.horizonSql)) as unknown as [
      QueryResult<{ last_value: number; is_called: boolean }>,
      QueryResult<{ vxid: string }>,
    ]
    const { last_value, is_called } = seqResult.rows[0]!
    const h = is_called ? last_value : last_value - 1
    const open = new Set(lockResult.rows.map((r) => r.vxid))
    const last = this.horizons[this.horizons.length - 1]
    if (h > Math.max(this.safe, last?.seq ?? 0)) this.horizons.push({ seq: h, open: new Set(open), read })
    // A horizon is final when none of its transactions still holds the lock, checked only
    // against holders read after it (in the same round trip or a later one): an answer that
    // overtook this one may have queued a horizon whose transactions this older list of
    // holders predates.
    while (this.horizons.length > 0) {
      const first = this.horizons[0]!
      if (first.read > read || [...first.open].some((vxid) => open.has(vxid))) break
      this.safe = Math.max(this.safe, first.seq)
      this.horizons.shift()
    }
    return this.safe
  }

  private async prepareHorizonSql(): Promise<string> {
    const { schema, pool } = this.conn
    const key = await pool.query<{ objid: number; db: number }>(
      `SELECT $1::regclass::oid::int8 AS objid, (SELECT oid FROM pg_database WHERE datname = current_database())::int8 AS db`,
      [schema.table('journal_seq')],
    )
    const { objid, db } = key.rows[0]!
    // Numbers we read from the server, inlined because a multi-statement query takes no parameters.
    return (
      `SELECT last_value, is_called FROM ${schema.table('journal_seq')}; ` +
      `SELECT virtualtransaction AS vxid FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted ` +
      `AND database = ${Number(db)} AND classid = ${JOURNAL_LOCK_CLASS} AND objid = ${Number(objid)} AND objsubid = 2`
    )
  }
}

/**
 * Follows the journal of one schema. Poll-driven: `poll()` returns the entries that became
 * safe since the last call, in seq order, each exactly once, never an uncommitted one. When
 * `pending` is true some entries wait for transactions still open; poll again soon (a
 * notification or the next tick).
 */
export class JournalFollower {
  /** Every seq up to here has been delivered or skipped (rolled back, or another machine's). */
  cursor: number
  private readonly horizon: JournalHorizon
  private readonly pageSql: string
  private readonly pageSize: number

  constructor(
    private readonly conn: Pick<PgConnection, 'pool' | 'schema'>,
    private readonly options: JournalFollowerOptions = {},
  ) {
    this.cursor = options.after ?? 0
    this.horizon = new JournalHorizon(conn, this.cursor)
    this.pageSize = options.pageSize ?? 500
    const table = conn.schema.table('journal')
    this.pageSql =
      options.machineId === undefined
        ? `SELECT * FROM ${table} WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`
        : `SELECT * FROM ${table} WHERE seq > $1 AND seq <= $2 AND machine_id = $4 ORDER BY seq LIMIT $3`
  }

  /** True while a read horizon waits for transactions that were open when it was taken. */
  get pending(): boolean {
    return this.horizon.waiting || this.horizon.safe > this.cursor
  }

  /** Newly final entries in seq order (at most pageSize; `pending` says whether more may be ready). */
  async poll(): Promise<JournalEntry[]> {
    if (this.horizon.safe <= this.cursor) await this.horizon.advance()
    const safe = this.horizon.safe
    if (safe <= this.cursor) return []
    const values: unknown[] = [this.cursor, safe, this.pageSize]
    if (this.options.machineId !== undefined) values.push(this.options.machineId)
    const rows = (await this.conn.pool.query<PgJournalRow>(this.pageSql, values)).rows
    // A full page may stop short of `safe`; otherwise every seq up to `safe` is done.
    this.cursor = rows.length === this.pageSize ? rows[rows.length - 1]!.seq : safe
    return rows.map(toJournalEntry)
  }
}
