/** The facts a reader needs to compare bench results across machines. */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { arch, cpus, platform, release, tmpdir } from 'node:os'
import Database from 'better-sqlite3'

export interface MachineFacts {
  node: string
  os: string
  cpuCount: number
  cpuModel: string
  betterSqlite3: string
  /** node-postgres, both PostgreSQL sides' driver. */
  pg: string
  sqlite: string
  xstate: string
  /** The SQLite section's third contender (issue 11). */
  plainjob: string
  tmpdir: string
}

const require = createRequire(import.meta.url)

function packageVersion(name: string): string {
  const manifest = JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')) as { version: string }
  return manifest.version
}

function sqliteVersion(): string {
  const db = new Database(':memory:')
  try {
    return db.prepare('SELECT sqlite_version()').pluck().get() as string
  } finally {
    db.close()
  }
}

export function machineFacts(): MachineFacts {
  const cores = cpus()
  return {
    node: process.version,
    os: `${platform()} ${arch()} ${release()}`,
    cpuCount: cores.length,
    cpuModel: cores[0]?.model.trim() ?? 'unknown',
    betterSqlite3: packageVersion('better-sqlite3'),
    pg: packageVersion('pg'),
    sqlite: sqliteVersion(),
    xstate: packageVersion('xstate'),
    plainjob: packageVersion('plainjob'),
    tmpdir: tmpdir(),
  }
}
