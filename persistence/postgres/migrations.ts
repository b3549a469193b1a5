/**
 * Numbered schema migrations for the PostgreSQL store, the counterpart of
 * persistence/migrations.ts. They run in one transaction under a transaction-level advisory
 * lock keyed on the schema name, so processes opening a new schema at the same moment
 * serialize and exactly one applies each migration; `lockstep_migrations` records them. A
 * schema migrated by a newer lockstep is refused with SCHEMA_TOO_NEW, as on SQLite.
 */
import type { PoolClient } from 'pg'
import { SchemaTooNewError, StoreOpenError } from '../../src/errors.js'
import type { PgConnection, PgSchema } from './connection.js'

export interface PgMigration {
  version: number
  name: string
  sql: (schema: PgSchema) => string
}

/**
 * Class key of the journal's shared advisory lock (`pg_advisory_xact_lock_shared(int4,
 * int4)`); the object key is the OID of the schema's journal sequence, so two schemas in
 * one database never share the lock. See journal.ts for why every journal insert takes it.
 */
export const JOURNAL_LOCK_CLASS = 0x6c6b7370 // 'lksp'

export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    name: 'journal, timers, tasks, links, runs, sessions, mcp calls (SQLite schema 5)',
    sql: (s) => `
      -- Journal seqs are handed out at insert time by a sequence; CACHE 1 (the default,
      -- stated because it is load-bearing): with a cache, a session could hold seqs at or
      -- below the followers' safe horizon and use them later (journal.ts).
      CREATE SEQUENCE ${s.table('journal_seq')} AS bigint CACHE 1;
      -- Every journal insert takes the journal's shared lock before its seq exists and holds
      -- it to commit: followers read the holders in pg_locks to know when seqs are final.
      -- As the column default, no writer can forget it; re-taking a lock the transaction
      -- holds is a local counter bump. plpgsql keeps its plans per session (a multi-statement
      -- SQL function is planned again by every statement); lock and seq cost ~3% of a
      -- one-row insert transaction, measured (README).
      CREATE FUNCTION ${s.table('journal_next_seq')}() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $fn$
      BEGIN
        PERFORM pg_advisory_xact_lock_shared(${JOURNAL_LOCK_CLASS}, '${s.ident}.journal_seq'::regclass::oid::int4);
        RETURN nextval('${s.ident}.journal_seq'::regclass);
      END
      $fn$;

      -- The event log: one row per journal kind of every accepted event, in seq order.
      CREATE TABLE ${s.table('journal')} (
        seq           bigint PRIMARY KEY DEFAULT ${s.table('journal_next_seq')}(),
        machine_id    text NOT NULL,
        actor_id      text NOT NULL,
        kind          text NOT NULL,
        event_type    text NOT NULL,
        event         text NOT NULL,
        state_before  text,
        state_after   text NOT NULL,
        run_id        text,
        actor_version bigint NOT NULL,
        at            bigint NOT NULL
      );
      ALTER SEQUENCE ${s.table('journal_seq')} OWNED BY ${s.table('journal')}.seq;
      CREATE INDEX journal_actor ON ${s.table('journal')} (actor_id, seq);

      -- Durable timers (XState delayed raises), delivered by any open orchestrator. A queue:
      -- rows come and go with every claim, so vacuum after a fixed number of dead rows
      -- rather than a fraction of a table that stays small.
      CREATE TABLE ${s.table('timers')} (
        actor_id   text NOT NULL,
        timer_id   text NOT NULL,
        machine_id text NOT NULL,
        due_at     bigint NOT NULL,
        event      text NOT NULL,
        PRIMARY KEY (actor_id, timer_id)
      ) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
      CREATE INDEX timers_due ON ${s.table('timers')} (due_at);

      -- Task actors: the persisted snapshot (machine_id .. version) and its projection,
      -- written by one UPDATE per step. n is the insertion order (SQLite's rowid): lists
      -- page by it and it breaks claim-order ties. Every step rewrites the row: fillfactor
      -- leaves room for HOT updates (steps that change no indexed column, e.g. heartbeats),
      -- and vacuum runs at 2% dead rows instead of 20%, since the claim index's dead entries
      -- are what every claim walks past (graphile-worker #350).
      CREATE TABLE ${s.table('tasks')} (
        id               text PRIMARY KEY,
        n                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        machine_id       text NOT NULL,
        machine_version  integer NOT NULL,
        snapshot         text NOT NULL,
        version          bigint NOT NULL,
        title            text NOT NULL,
        body             text,
        assignee         text,
        tenant           text,
        priority         integer NOT NULL DEFAULT 0,
        payload          text,
        idempotency_key  text UNIQUE,
        max_attempts     integer NOT NULL,
        state            text NOT NULL,
        status           text NOT NULL,
        attempts         integer NOT NULL DEFAULT 0,
        run_id           text,
        worker           text,
        lease_expires_at bigint,
        retry_at         bigint,
        blocked_reason   text,
        blocked_by       text,
        last_error       text,
        result           text,
        summary          text,
        created_at       bigint NOT NULL,
        updated_at       bigint NOT NULL,
        completed_at     bigint
      ) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
      CREATE INDEX tasks_status ON ${s.table('tasks')} (status);
      -- Claim order (priority, then age, then insertion) of ready tasks, per assignee (NULL
      -- = unassigned: an assignee is exclusive), across assignees, and per tenant. Partial:
      -- a row is in them only while ready. The any-assignee claim merges the unassigned head
      -- of the first with the second (PostgreSQL plans it as a Merge Append of two index
      -- scans), so a ready row sits in at most two of them, plus the tenant one.
      CREATE INDEX tasks_ready_by_assignee ON ${s.table('tasks')} (assignee, priority DESC, created_at, n) WHERE status = 'ready';
      CREATE INDEX tasks_ready_assigned ON ${s.table('tasks')} (priority DESC, created_at, n)
        WHERE status = 'ready' AND assignee IS NOT NULL;
      CREATE INDEX tasks_ready_by_tenant ON ${s.table('tasks')} (tenant, assignee, priority DESC, created_at, n)
        WHERE status = 'ready' AND tenant IS NOT NULL;

      CREATE TABLE ${s.table('task_links')} (
        parent_id  text NOT NULL REFERENCES ${s.table('tasks')} (id),
        child_id   text NOT NULL REFERENCES ${s.table('tasks')} (id),
        created_at bigint NOT NULL,
        PRIMARY KEY (parent_id, child_id)
      );
      CREATE INDEX task_links_child ON ${s.table('task_links')} (child_id, parent_id);

      -- One row per successful claim, closed exactly once with an outcome. Updated by lease
      -- extensions and the close, neither touching an indexed column: room for HOT updates.
      CREATE TABLE ${s.table('runs')} (
        task_id          text NOT NULL REFERENCES ${s.table('tasks')} (id),
        id               text NOT NULL,
        worker           text NOT NULL,
        attempt          integer NOT NULL,
        started_at       bigint NOT NULL,
        lease_expires_at bigint NOT NULL,
        ended_at         bigint,
        outcome          text,
        error            text,
        summary          text,
        result           text,
        metadata         text,
        claim_key        text,
        PRIMARY KEY (task_id, id)
      ) WITH (fillfactor = 90);
      CREATE UNIQUE INDEX runs_claim_key ON ${s.table('runs')} (claim_key) WHERE claim_key IS NOT NULL;

      -- Session actors (model fallback chains and tool approvals): snapshot + projection.
      CREATE TABLE ${s.table('sessions')} (
        id              text PRIMARY KEY,
        n               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        machine_id      text NOT NULL,
        machine_version integer NOT NULL,
        snapshot        text NOT NULL,
        version         bigint NOT NULL,
        state           text NOT NULL,
        status          text NOT NULL,
        agent           text,
        model           text,
        generation      integer NOT NULL DEFAULT 0,
        attempts        integer NOT NULL DEFAULT 0,
        created_at      bigint NOT NULL,
        updated_at      bigint NOT NULL
      ) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02);
      CREATE INDEX sessions_status ON ${s.table('sessions')} (status);

      -- The MCP server's idempotency keys: a retried tool call returns the first result.
      CREATE TABLE ${s.table('mcp_calls')} (
        key    text PRIMARY KEY,
        tool   text NOT NULL,
        result text NOT NULL,
        at     bigint NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'one ready index in claim order for any-assignee claims',
    // The any-assignee claim must lock as it reads (FOR NO KEY UPDATE SKIP LOCKED), and a
    // locking query cannot be a UNION: the Merge Append of tasks_ready_by_assignee's
    // unassigned head and tasks_ready_assigned that migration 1 planned for is not
    // available to it. One partial index over every ready row in claim order serves it as
    // an ordered scan (no sort of the ready set); tasks_ready_assigned then serves no query.
    sql: (s) => `
      CREATE INDEX tasks_ready ON ${s.table('tasks')} (priority DESC, created_at, n) WHERE status = 'ready';
      DROP INDEX ${s.table('tasks_ready_assigned')};
    `,
  },
]

export const SCHEMA_VERSION = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]!.version

export interface MigrateResult {
  /** The schema's version before (0: new). */
  from: number
  to: number
  /** The versions this call applied (empty when another process had already). */
  applied: number[]
}

/**
 * Bring `conn.schema` to SCHEMA_VERSION. A current schema costs one query and no lock.
 * Otherwise, in one transaction under the schema's advisory lock: create the schema and
 * `lockstep_migrations` if missing, lock `lockstep_migrations` (write transactions read it
 * at BEGIN, so they wait for the migration and then see its version), apply what is
 * missing. A schema holding tables but no `lockstep_migrations` is another application's
 * and is refused untouched (STORE_OPEN_FAILED); a newer version is SCHEMA_TOO_NEW.
 */
export function migrate(conn: PgConnection): Promise<MigrateResult> {
  return onOpeningClient(conn, 'during migration', async (client, where, lost) => {
    const { schema } = conn
    const current = await readVersion(client, schema)
    if (current === SCHEMA_VERSION) return { from: current, to: current, applied: [] }
    if (current !== null && current > SCHEMA_VERSION) throw new SchemaTooNewError(where, current, SCHEMA_VERSION)
    await client.query('BEGIN')
    try {
      await client.query("SELECT pg_advisory_xact_lock(hashtextextended('lockstep:migrate:' || $1, 0))", [schema.name])
      const found = await readVersion(client, schema)
      if (found === null) {
        const tables = await client.query<{ relname: string }>(
          `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname LIMIT 6`,
          [schema.name],
        )
        if (tables.rows.length > 0) {
          const shown = tables.rows.slice(0, 5).map((r) => r.relname).join(', ') + (tables.rows.length > 5 ? ', ...' : '')
          throw new StoreOpenError(
            where,
            null,
            `schema ${schema.name} is not lockstep's (it holds ${shown}); lockstep does not add its tables to another application's schema`,
          )
        }
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema.ident}`)
        await client.query(
          `CREATE TABLE ${schema.table('lockstep_migrations')} (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)`,
        )
      }
      const from = found ?? 0
      if (from > SCHEMA_VERSION) throw new SchemaTooNewError(where, from, SCHEMA_VERSION)
      await client.query(`LOCK TABLE ${schema.table('lockstep_migrations')} IN ACCESS EXCLUSIVE MODE`)
      const applied: number[] = []
      for (const migration of PG_MIGRATIONS) {
        if (migration.version <= from) continue
        await client.query(migration.sql(schema))
        await client.query(
          `INSERT INTO ${schema.table('lockstep_migrations')} (version, name, applied_at)
           VALUES ($1, $2, floor(extract(epoch FROM clock_timestamp()) * 1000)::int8)`,
          [migration.version, migration.name],
        )
        applied.push(migration.version)
      }
      await client.query('COMMIT')
      return { from, to: SCHEMA_VERSION, applied }
    } catch (error) {
      await client.query('ROLLBACK').catch(lost)
      throw error
    }
  })
}

/**
 * Run `fn` on a client of its own while a store is being opened: a failure to connect, or
 * any error that is not already lockstep's, is STORE_OPEN_FAILED; a client that lost its
 * connection (or that `fn` reports lost) is destroyed, not returned to the pool.
 */
async function onOpeningClient<T>(
  conn: PgConnection,
  doing: string,
  fn: (client: PoolClient, where: string, lost: () => void) => Promise<T>,
): Promise<T> {
  const where = `${conn.where} (schema ${conn.schema.name})`
  let client: PoolClient
  try {
    client = await conn.pool.connect()
  } catch (error) {
    throw new StoreOpenError(where, error)
  }
  let broken = false
  const lost = () => void (broken = true)
  client.on('error', lost)
  try {
    return await fn(client, where, lost)
  } catch (error) {
    if (error instanceof SchemaTooNewError || error instanceof StoreOpenError) throw error
    throw new StoreOpenError(where, error)
  } finally {
    client.off('error', lost)
    client.release(broken ? new Error(`lockstep: connection lost ${doing}`) : undefined)
  }
}

/** The schema's version, or null when it has no `lockstep_migrations` table (new or foreign). */
async function readVersion(client: PoolClient, schema: PgSchema): Promise<number | null> {
  // A plain catalog query, not to_regclass(): that reads the backend's catalog cache, which
  // an advisory lock does not refresh, so after waiting for another opener's migration it
  // would still say "no table" and the schema would look foreign (seen in the 5-opener test).
  const exists = await client.query<{ present: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = $1 AND c.relname = 'lockstep_migrations') AS present`,
    [schema.name],
  )
  if (!exists.rows[0]!.present) return null
  const result = await client.query<{ version: number | null }>(`SELECT max(version) AS version FROM ${schema.table('lockstep_migrations')}`)
  return result.rows[0]!.version ?? 0
}

/**
 * For a reader (readOnly, the inspector), which never migrates: the schema's version, if
 * it is a lockstep schema this version can read. Every migration so far only adds tables
 * or indexes, so any version up to SCHEMA_VERSION reads. A missing schema, one without
 * `lockstep_migrations` (new or another application's) or an empty one is
 * STORE_OPEN_FAILED; a newer one SCHEMA_TOO_NEW. Reads only.
 */
export function checkReadable(conn: PgConnection): Promise<number> {
  return onOpeningClient(conn, 'while reading the schema version', async (client, where) => {
    const { schema } = conn
    const version = await readVersion(client, schema)
    if (version === null || version === 0) {
      throw new StoreOpenError(where, null, `schema ${schema.name} holds no lockstep board (a read-only open never creates one)`)
    }
    if (version > SCHEMA_VERSION) throw new SchemaTooNewError(where, version, SCHEMA_VERSION)
    return version
  })
}
