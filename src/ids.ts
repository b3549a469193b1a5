import { randomBytes } from 'node:crypto'

/**
 * `prefix_` + 9 base-36 characters of milliseconds + 10 hex characters of randomness:
 * unique across processes, and roughly sortable by creation time.
 */
export function newId(prefix: string): string {
  return `${prefix}_${Date.now().toString(36).padStart(9, '0')}${randomBytes(5).toString('hex')}`
}
