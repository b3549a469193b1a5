/**
 * Wake-ups across hosts: LISTEN/NOTIFY on one channel per schema. Payloads carry a kind and
 * ids only, split or reduced to "something changed" well under PostgreSQL's 8,000-byte
 * cap. One dedicated listening connection per process, outside the pool (a pooled client
 * would be handed to a transaction, and a pooler in transaction mode breaks LISTEN), that
 * reconnects with backoff when it drops. Notifications only make a consumer sooner: it
 * polls at its interval regardless, so a lost notification (a crash between commit and
 * NOTIFY, a listener reconnecting) costs latency, never an event.
 */
import type { Client, ClientConfig } from 'pg'
import { InvalidInputError } from '../../src/errors.js'
import type { PgConnection, PgSchema } from './connection.js'
import type { Queryable } from './journal.js'

/** `lockstep_<schema>`: at most 63 bytes, since schema names are at most 54 (connection.ts). */
export function channelOf(schema: PgSchema): string {
  return `lockstep_${schema.name}`
}

/** lockstep's payload cap, well under PostgreSQL's 8,000 bytes (payloads share a queue that a slow listener can fill). */
export const PAYLOAD_LIMIT_BYTES = 2_000
/** Beyond this many payloads for one call, one id-less "something changed" is sent instead. */
export const MAX_PAYLOADS = 4

export interface Wake {
  kind: string
  /** null: something of this kind changed; look (too many ids to list, or the listener reconnected). */
  ids: string[] | null
}

const KIND = /^[a-z][a-z0-9_.-]{0,31}$/

/**
 * The payloads announcing `ids` of `kind`: `{"k":kind,"ids":[...]}`, split so each stays
 * under `limit` bytes; more than MAX_PAYLOADS of them (or one id too long for any) become a
 * single `{"k":kind}`.
 */
export function wakePayloads(kind: string, ids: readonly string[], limit = PAYLOAD_LIMIT_BYTES): string[] {
  if (!KIND.test(kind)) throw new InvalidInputError('a wake-up kind is a short lower-case word', { field: 'kind' })
  const bare = JSON.stringify({ k: kind })
  const unique = [...new Set(ids)]
  if (unique.length === 0) return [bare]
  const head = `{"k":${JSON.stringify(kind)},"ids":[`
  const payloads: string[] = []
  let current: string[] = []
  let bytes = Buffer.byteLength(head) + 2
  for (const id of unique) {
    const size = Buffer.byteLength(JSON.stringify(id)) + 1
    if (Buffer.byteLength(head) + 2 + size > limit) return [bare]
    if (bytes + size > limit) {
      payloads.push(`${head}${current.map((x) => JSON.stringify(x)).join(',')}]}`)
      if (payloads.length >= MAX_PAYLOADS) return [bare]
      current = []
      bytes = Buffer.byteLength(head) + 2
    }
    current.push(id)
    bytes += size
  }
  payloads.push(`${head}${current.map((x) => JSON.stringify(x)).join(',')}]}`)
  return payloads.length > MAX_PAYLOADS ? [bare] : payloads
}

/**
 * Send the wake-ups for `ids` on the schema's channel, in one round trip. Inside a
 * transaction they are delivered at its commit (and dropped by a rollback); PostgreSQL then
 * holds a database-wide lock from the NOTIFY's queueing through the commit's WAL flush,
 * which serializes every notifying commit: prefer sending them right after COMMIT (see the
 * README).
 */
export async function notifyWake(q: Queryable, schema: PgSchema, kind: string, ids: readonly string[]): Promise<void> {
  const payloads = wakePayloads(kind, ids)
  await q.query('SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p', [channelOf(schema), payloads])
}

export function parseWake(payload: string | undefined): Wake | null {
  try {
    const value = JSON.parse(payload ?? '') as { k?: unknown; ids?: unknown }
    if (typeof value.k !== 'string') return null
    const ids = Array.isArray(value.ids) && value.ids.every((id) => typeof id === 'string') ? (value.ids as string[]) : null
    return { kind: value.k, ids }
  } catch {
    return null
  }
}

export interface WakeListenerOptions {
  /** Called for each wake-up, and with `{ kind: '*', ids: null }` after every reconnect. */
  onWake?: (wake: Wake) => void
  /** A query on the idle listening connection this often finds a half-open TCP connection (default 30000 ms). */
  heartbeatMs?: number
  /** Reconnect backoff: full jitter from `minBackoffMs` doubling to `maxBackoffMs` (defaults 100 and 5000). */
  minBackoffMs?: number
  maxBackoffMs?: number
}

/**
 * The process's listening connection for one schema. `start()` resolves once it listens or
 * its first attempt failed (it then keeps retrying in the background); `nextWake(ms)` is the
 * consumer's sleep between polls, cut short by a wake-up.
 */
export class WakeListener {
  /** Reconnections after the first connect (tests, metrics). */
  reconnects = 0
  private client: Client | null = null
  private listening = false
  private closed = false
  private failures = 0
  private timer: NodeJS.Timeout | null = null
  private heartbeat: NodeJS.Timeout | null = null
  private woken = false
  private waiters: Array<() => void> = []
  private everConnected = false

  constructor(
    private readonly conn: Pick<PgConnection, 'schema' | 'clientConfig' | 'pg'>,
    private readonly options: WakeListenerOptions = {},
  ) {}

  get connected(): boolean {
    return this.listening
  }

  /** The listening connection's server process id (null while disconnected). */
  get backendPid(): number | null {
    return this.listening ? ((this.client as unknown as { processID: number | null } | null)?.processID ?? null) : null
  }

  async start(): Promise<void> {
    await this.connect()
  }

  /**
   * Resolves 'woken' at the next wake-up (or at once if one came since the last call), else
   * 'timeout' after `ms`: the consumer polls either way.
   */
  nextWake(ms: number): Promise<'woken' | 'timeout'> {
    if (this.woken || this.closed) {
      this.woken = false
      return Promise.resolve('woken')
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timeout)
        this.waiters = this.waiters.filter((w) => w !== done)
        this.woken = false
        resolve('woken')
      }
      const timeout = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done)
        resolve('timeout')
      }, ms)
      this.waiters.push(done)
    })
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.timer) clearTimeout(this.timer)
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.listening = false
    const client = this.client
    this.client = null
    for (const waiter of [...this.waiters]) waiter()
    await client?.end().catch(() => {})
  }

  private wake(wake: Wake): void {
    this.woken = true
    for (const waiter of [...this.waiters]) waiter()
    try {
      this.options.onWake?.(wake)
    } catch {
      // A consumer's callback error must not stop the listener.
    }
  }

  private async connect(): Promise<void> {
    if (this.closed) return
    const { pg, clientConfig, schema } = this.conn
    const config: ClientConfig = { ...(clientConfig as ClientConfig), application_name: 'lockstep-listen' }
    const client = new pg.Client(config)
    this.client = client
    client.on('notification', (message) => {
      if (message.channel !== channelOf(schema)) return
      const wake = parseWake(message.payload)
      if (wake) this.wake(wake)
    })
    const lost = () => this.lost(client)
    client.on('error', lost)
    client.on('end', lost)
    try {
      await client.connect()
      await client.query(`LISTEN "${channelOf(schema)}"`)
    } catch {
      this.lost(client)
      return
    }
    if (this.closed || this.client !== client) {
      await client.end().catch(() => {})
      return
    }
    this.listening = true
    this.failures = 0
    if (this.everConnected) {
      this.reconnects++
      // Deaf while disconnected: tell the consumer to look.
      this.wake({ kind: '*', ids: null })
    }
    this.everConnected = true
    const every = this.options.heartbeatMs ?? 30_000
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.heartbeat = setInterval(() => {
      if (this.client === client && this.listening) client.query('SELECT 1').catch(() => this.lost(client))
    }, every)
    this.heartbeat.unref()
  }

  private lost(client: Client): void {
    if (this.client !== client) return
    this.client = null
    this.listening = false
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.heartbeat = null
    client.removeAllListeners('notification')
    client.on('error', () => {})
    void client.end().catch(() => {})
    if (this.closed) return
    this.failures++
    const min = this.options.minBackoffMs ?? 100
    const max = this.options.maxBackoffMs ?? 5_000
    const delay = Math.random() * Math.min(max, min * 2 ** Math.min(this.failures - 1, 20))
    this.timer = setTimeout(() => {
      this.timer = null
      void this.connect()
    }, delay)
    this.timer.unref()
  }
}
