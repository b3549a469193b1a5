/**
 * `lockstep inspect --db ./lockstep.db|postgres://... [--schema S] [--port 4600] [--host H
 * --token T]`: serve the inspector on a file or a PostgreSQL schema until SIGINT/SIGTERM.
 * Reads only: its connection is read-only at the database, and it delivers no timers.
 *
 * `argv` is what follows `inspect` on the command line. Resolves with the exit code:
 * 0 after a signal, 1 for a refused start (bad value, missing file, port in use), 2 for
 * bad usage.
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { LockstepError } from '../../errors.js'
import { DEFAULT_INSPECTOR_PORT, startInspector } from './server.js'

export const INSPECT_USAGE = `Usage: lockstep inspect [--db PATH|URL [--schema S]] [--port N] [--host H --token T] [--json]

Serve the visual state inspector (board, DAG, statecharts, journal with time travel,
sessions) for a lockstep file or PostgreSQL schema, live (commits of every process and
host appear as they happen), until Ctrl-C. Read-only at the database.

  --db PATH|URL SQLite file (default ./lockstep.db), or a postgres:// URL
  --schema S    with a postgres:// --db: the schema (default lockstep)
  --port N      TCP port (default ${DEFAULT_INSPECTOR_PORT}; 0 picks a free one)
  --host H      interface to bind (default 127.0.0.1); any non-loopback host needs --token
  --token T     require this secret on every request (?token= or Authorization: Bearer);
                also read from LOCKSTEP_INSPECT_TOKEN
  --json        print {"url": ...} as one JSON line
`

export interface InspectIo {
  out(line: string): void
  err(line: string): void
  /** Resolves when the process should stop (default: SIGINT or SIGTERM). */
  untilStopped?: () => Promise<string>
}

const defaultIo: InspectIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
}

function untilSignal(): Promise<string> {
  return new Promise((done) => {
    const stop = (signal: string) => {
      process.off('SIGINT', onInt)
      process.off('SIGTERM', onTerm)
      done(signal)
    }
    const onInt = () => stop('SIGINT')
    const onTerm = () => stop('SIGTERM')
    process.on('SIGINT', onInt)
    process.on('SIGTERM', onTerm)
  })
}

export async function runInspectCommand(argv: string[], io: InspectIo = defaultIo): Promise<number> {
  let values: Record<string, string | boolean | undefined>
  try {
    ;({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        db: { type: 'string' },
        schema: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }))
  } catch (error) {
    io.err(`lockstep: ${(error as Error).message}\n${INSPECT_USAGE}`)
    return 2
  }
  if (values.help) {
    io.out(INSPECT_USAGE)
    return 0
  }
  const asJson = values.json === true
  const port = values.port === undefined ? DEFAULT_INSPECTOR_PORT : Number(values.port)
  if (typeof values.port === 'string' && !/^\d{1,5}$/.test(values.port)) {
    io.err(`lockstep: --port must be a number 0..65535\n${INSPECT_USAGE}`)
    return 2
  }
  const db = typeof values.db === 'string' ? values.db : './lockstep.db'
  const schema = typeof values.schema === 'string' ? values.schema : undefined
  const token = typeof values.token === 'string' ? values.token : process.env.LOCKSTEP_INSPECT_TOKEN || undefined
  try {
    let target: { path: string } | { url: string; schema?: string }
    let shown: string
    if (/^postgres(ql)?:\/\//i.test(db)) {
      target = { url: db, ...(schema === undefined ? {} : { schema }) }
      // Never the password: the URL as the store names it.
      shown = `${maskPassword(db)} (schema ${schema ?? 'lockstep'})`
    } else {
      if (schema !== undefined) throw new LockstepError('INVALID_INPUT', '--schema goes with a postgres:// --db', { field: 'schema' })
      if (!existsSync(db)) {
        throw new LockstepError('INVALID_INPUT', `no lockstep database at ${resolve(db)}: run 'lockstep init' first, or pass --db`, { field: 'db', path: resolve(db) })
      }
      target = { path: resolve(db) }
      shown = resolve(db)
    }
    const inspector = await startInspector(target, { port, host: typeof values.host === 'string' ? values.host : undefined, token })
    io.out(asJson ? JSON.stringify({ url: inspector.url, port: inspector.port, host: inspector.host, db: shown }) : `lockstep inspector for ${shown}: ${inspector.url}  (Ctrl-C to stop)`)
    await (io.untilStopped ?? untilSignal)()
    await inspector.close()
    return 0
  } catch (error) {
    const e = error as NodeJS.ErrnoException
    const { code, message, details } =
      error instanceof LockstepError
        ? error
        : e?.code === 'EADDRINUSE'
          ? { code: 'PORT_IN_USE', message: `port ${port} is in use: pass another --port (0 picks a free one)`, details: { port } }
          : e?.code === 'EADDRNOTAVAIL' || e?.code === 'ENOTFOUND'
            ? { code: 'INVALID_INPUT', message: `cannot bind ${String(values.host)}: ${e.message}`, details: { host: values.host } }
            : { code: 'INTERNAL', message: e?.message ?? String(error), details: {} }
    if (asJson) io.out(JSON.stringify({ error: { code, message, details } }))
    else io.err(`error ${code}: ${message}`)
    return 1
  }
}

function maskPassword(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@')
  }
}
