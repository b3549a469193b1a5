/**
 * Numbered schema migrations, applied in order on open inside one IMMEDIATE
 * transaction. `PRAGMA user_version` records the last one applied; a file written by a
 * newer lockstep is refused rather than misread.
 */
import type Database from 'better-sqlite3'
import { SchemaTooNewError, SchemaTooOldError, StoreOpenError } from '../../src/errors.js'

export interface Migration {
  version: number
  name: string
  sql: string
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'journal, timers, tasks, links, runs',
    sql: `
      -- The event log: one row per journal kind of every accepted event, in commit order.
      CREATE TABLE journal (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        machine_id   TEXT NOT NULL,
        actor_id     TEXT NOT NULL,
        kind         TEXT NOT NULL,
        event_type   TEXT NOT NULL,
        event        TEXT NOT NULL,
        state_before TEXT,
        state_after  TEXT NOT NULL,
        run_id       TEXT,
        actor_version INTEGER NOT NULL,
        at           INTEGER NOT NULL
      );
      CREATE INDEX journal_actor ON journal (actor_id, seq);

      -- Durable timers (XState delayed raises): delivered by any open orchestrator.
      CREATE TABLE timers (
        actor_id   TEXT NOT NULL,
        timer_id   TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        due_at   INTEGER NOT NULL,
        event    TEXT NOT NULL,
        PRIMARY KEY (actor_id, timer_id)
      ) WITHOUT ROWID;
      CREATE INDEX timers_due ON timers (due_at);

      -- Task actors. The standard actor columns (machine_id .. version) hold the persisted
      -- XState snapshot; the rest is its projection for queries and claimNext. The
      -- committed step writes both with one UPDATE.
      CREATE TABLE tasks (
        id               TEXT PRIMARY KEY,
        machine_id       TEXT NOT NULL,
        machine_version  INTEGER NOT NULL,
        snapshot         TEXT NOT NULL,
        version          INTEGER NOT NULL,
        title            TEXT NOT NULL,
        body             TEXT,
        assignee         TEXT,
        tenant           TEXT,
        priority         INTEGER NOT NULL DEFAULT 0,
        payload          TEXT,
        idempotency_key  TEXT UNIQUE,
        max_attempts     INTEGER NOT NULL,
        state            TEXT NOT NULL,
        status           TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        run_id           TEXT,
        worker           TEXT,
        lease_expires_at INTEGER,
        retry_at         INTEGER,
        blocked_reason   TEXT,
        blocked_by       TEXT,
        last_error       TEXT,
        result           TEXT,
        summary          TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        completed_at     INTEGER
      );
      CREATE INDEX tasks_status ON tasks (status);
      -- Claim order (priority, then age) of ready tasks, overall and per assignee/tenant.
      -- Partial: a row is in them only while ready, so a step that does not enter or leave
      -- ready does not touch them. Queries name them with INDEXED BY (see tasks.ts).
      CREATE INDEX tasks_ready ON tasks (priority DESC, created_at) WHERE status = 'ready';
      CREATE INDEX tasks_ready_assignee ON tasks (assignee, priority DESC, created_at)
        WHERE status = 'ready' AND assignee IS NOT NULL;
      CREATE INDEX tasks_ready_tenant ON tasks (tenant, priority DESC, created_at)
        WHERE status = 'ready' AND tenant IS NOT NULL;

      CREATE TABLE task_links (
        parent_id TEXT NOT NULL REFERENCES tasks (id),
        child_id  TEXT NOT NULL REFERENCES tasks (id),
        created_at INTEGER NOT NULL,
        PRIMARY KEY (parent_id, child_id)
      ) WITHOUT ROWID;
      CREATE INDEX task_links_child ON task_links (child_id, parent_id);

      -- One row per successful claim, closed exactly once with an outcome.
      -- Keyed by (task, run): one b-tree serves both "the runs of a task" and the run itself.
      CREATE TABLE runs (
        task_id          TEXT NOT NULL REFERENCES tasks (id),
        id               TEXT NOT NULL,
        worker           TEXT NOT NULL,
        attempt          INTEGER NOT NULL,
        started_at       INTEGER NOT NULL,
        lease_expires_at INTEGER NOT NULL,
        ended_at         INTEGER,
        outcome          TEXT,
        error            TEXT,
        summary          TEXT,
        result           TEXT,
        metadata         TEXT,
        PRIMARY KEY (task_id, id)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    name: 'sessions',
    sql: `
      -- Session actors (model fallback chains and tool approvals): snapshot + projection.
      CREATE TABLE sessions (
        id              TEXT PRIMARY KEY,
        machine_id      TEXT NOT NULL,
        machine_version INTEGER NOT NULL,
        snapshot        TEXT NOT NULL,
        version         INTEGER NOT NULL,
        state           TEXT NOT NULL,
        status          TEXT NOT NULL,
        agent           TEXT,
        model           TEXT,
        generation      INTEGER NOT NULL DEFAULT 0,
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
      );
      CREATE INDEX sessions_status ON sessions (status);
    `,
  },
  {
    version: 3,
    name: 'mcp call records',
    sql: `
      -- The MCP server's idempotency keys: a retried tool call returns the first result.
      CREATE TABLE mcp_calls (
        key    TEXT PRIMARY KEY,
        tool   TEXT NOT NULL,
        result TEXT NOT NULL,
        at     INTEGER NOT NULL
      );
    `,
  },
  {
    version: 4,
    name: 'claim idempotency keys',
    sql: `
      -- claimNext({ idempotencyKey }): a retried claim returns the run it opened.
      ALTER TABLE runs ADD COLUMN claim_key TEXT;
      CREATE UNIQUE INDEX runs_claim_key ON runs (claim_key) WHERE claim_key IS NOT NULL;
    `,
  },
  {
    version: 5,
    name: 'exclusive assignees',
    sql: `
      -- An assignee is exclusive: a claim naming none takes unassigned tasks only, so the
      -- claim order must be indexed per assignee including "none" (NULL), and per tenant
      -- and assignee. Every ready row still sits in as many ready indexes as before:
      -- unassigned rows in one (plus tenant), assigned rows in two (plus tenant).
      DROP INDEX tasks_ready;
      DROP INDEX tasks_ready_assignee;
      DROP INDEX tasks_ready_tenant;
      CREATE INDEX tasks_ready_by_assignee ON tasks (assignee, priority DESC, created_at) WHERE status = 'ready';
      -- Claim order across assignees, for claims that ask for any assignee (merged with
      -- the unassigned rows of tasks_ready_by_assignee).
      CREATE INDEX tasks_ready_assigned ON tasks (priority DESC, created_at)
        WHERE status = 'ready' AND assignee IS NOT NULL;
      CREATE INDEX tasks_ready_by_tenant ON tasks (tenant, assignee, priority DESC, created_at)
        WHERE status = 'ready' AND tenant IS NOT NULL;
      -- The task machine's CLAIM guard reads the assignee from the snapshot's context now;
      -- snapshots written before this version do not hold it yet.
      UPDATE tasks SET snapshot = json_set(snapshot, '$.context.assignee', assignee)
        WHERE version > 0 AND json_type(snapshot, '$.context.assignee') IS NULL;
    `,
  },
]

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version

/** Apply pending migrations. Call inside an IMMEDIATE transaction, so two processes opening a new file cannot both migrate. */
export function migrate(db: Database.Database, path: string): void {
  const current = db.pragma('user_version', { simple: true }) as number
  if (current > SCHEMA_VERSION) throw new SchemaTooNewError(path, current, SCHEMA_VERSION)
  for (const migration of MIGRATIONS) {
    if (migration.version <= current) continue
    db.exec(migration.sql)
    db.pragma(`user_version = ${migration.version}`)
  }
}

/** The tables a file at schema `version` has, read from the migrations that made them. */
function tablesOf(version: number): string[] {
  return MIGRATIONS.filter((m) => m.version <= version).flatMap((m) => [...m.sql.matchAll(/CREATE TABLE (\w+)/g)].map((match) => match[1]!))
}

/**
 * What the file holds: its `user_version`, and whether it is lockstep's (every table the
 * migrations up to that version create is there). `user_version` 0 with no tables is an
 * empty database; with tables it is another application's.
 */
function inspectFile(db: Database.Database): { version: number; tables: string[]; lockstep: boolean } {
  // One read transaction, one snapshot: another process migrating the file meanwhile must
  // not be seen half (its tables without its version), which would look like a foreign file.
  const { version, tables } = db.transaction(() => ({
    version: db.pragma('user_version', { simple: true }) as number,
    tables: db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[],
  }))()
  // A newer lockstep may have reshaped its tables; its journal is what it cannot do without.
  const lockstep = version > SCHEMA_VERSION ? tables.includes('journal') : version > 0 && tablesOf(version).every((table) => tables.includes(table))
  return { version, tables, lockstep }
}

function foreign(path: string, tables: string[]): StoreOpenError {
  const shown = tables.slice(0, 5).join(', ') + (tables.length > 5 ? ', ...' : '')
  return new StoreOpenError(path, null, `it is not a lockstep database (it holds tables ${shown || 'of another schema'}); lockstep does not add its tables to another application's database`)
}

/**
 * Before a read-write open converts or migrates the file: a new or empty database, or a
 * lockstep file, pass (migrate() then refuses a newer schema); another application's
 * database is refused, untouched.
 */
export function checkWritable(db: Database.Database, path: string): void {
  const file = inspectFile(db)
  if (file.version === 0 && file.tables.length === 0) return
  if (!file.lockstep) throw foreign(path, file.tables)
}

/**
 * A read-only open cannot create or migrate anything: the file must already be a lockstep
 * database of a schema this version reads (`minSchema`..SCHEMA_VERSION).
 */
export function checkReadable(db: Database.Database, path: string, minSchema = SCHEMA_VERSION): void {
  const file = inspectFile(db)
  if (file.version === 0 && file.tables.length === 0) throw new StoreOpenError(path, null, "it holds no lockstep database (an empty SQLite file); run 'lockstep init' or open it read-write first")
  if (!file.lockstep) throw foreign(path, file.tables)
  if (file.version > SCHEMA_VERSION) throw new SchemaTooNewError(path, file.version, SCHEMA_VERSION)
  if (file.version < minSchema) throw new SchemaTooOldError(path, file.version, SCHEMA_VERSION)
}
