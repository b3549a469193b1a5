/**
 * A TCP proxy in front of the PostgreSQL server, so tests can make the network fail at an
 * exact point: drop the connection right after a COMMIT reached the server (the commit
 * happens, its answer is lost), or stop answering altogether (a server that is down or
 * unreachable), which pg_terminate_backend cannot imitate.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import { pgUrl } from '../../postgres-server.js'

export interface TcpProxy {
  /** pgUrl with the proxy's host and port. */
  url: string
  /**
   * The next client message containing `COMMIT` is passed on, and from then on nothing
   * comes back: after `afterMs` both sockets are destroyed.
   */
  loseNextCommitAnswer(afterMs?: number): void
  /** How many commit answers were dropped so far. */
  readonly commitAnswersLost: number
  /** Destroy every connection and, until `resume()`, accept new ones but never answer them. */
  blackhole(): void
  resume(): void
  close(): Promise<void>
}

export async function startProxy(): Promise<TcpProxy> {
  const target = new URL(pgUrl)
  const sockets = new Set<Socket>()
  let armed: number | null = null
  let lost = 0
  let silent = false
  const server: Server = createServer((client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    if (silent) return // accepted, never answered
    const upstream = connect(Number(target.port || 5432), target.hostname)
    sockets.add(upstream)
    upstream.on('close', () => {
      sockets.delete(upstream)
      client.destroy()
    })
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    let answering = true
    upstream.on('data', (chunk) => {
      if (answering) client.write(chunk)
    })
    client.on('data', (chunk) => {
      upstream.write(chunk)
      if (armed !== null && chunk.includes('COMMIT')) {
        const afterMs = armed
        armed = null
        answering = false
        lost++
        setTimeout(() => {
          client.destroy()
          upstream.destroy()
        }, afterMs)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const url = new URL(pgUrl)
  url.hostname = '127.0.0.1'
  url.port = String(port)
  return {
    url: url.toString(),
    loseNextCommitAnswer: (afterMs = 300) => void (armed = afterMs),
    get commitAnswersLost() {
      return lost
    },
    blackhole() {
      silent = true
      for (const socket of sockets) socket.destroy()
    },
    resume: () => void (silent = false),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
