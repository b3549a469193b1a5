import { randomFillSync } from 'node:crypto'

// Random bytes are drawn in blocks: one syscall per 256 ids instead of one per id.
const POOL_SIZE = 4_096
const pool = Buffer.allocUnsafe(POOL_SIZE)
let offset = POOL_SIZE

function randomHex(bytes: number): string {
  if (offset + bytes > POOL_SIZE) {
    randomFillSync(pool)
    offset = 0
  }
  const hex = pool.toString('hex', offset, offset + bytes)
  offset += bytes
  return hex
}

/**
 * `prefix_` + 9 base-36 characters of milliseconds + 10 hex characters of randomness:
 * unique across processes, and roughly sortable by creation time.
 */
export function newId(prefix: string): string {
  return `${prefix}_${Date.now().toString(36).padStart(9, '0')}${randomHex(5)}`
}

/** 128 random bits, hex (so it never starts with '-' on a command line): a claim's fencing token. */
export function newToken(): string {
  return randomHex(16)
}
