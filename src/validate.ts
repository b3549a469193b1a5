/**
 * Input checks that run before any transaction starts: bad input is rejected with
 * INVALID_INPUT (or PAYLOAD_TOO_LARGE) and nothing is written.
 */
import { TASK_STATUSES, type TaskStatus } from '../machines/task.js'
import { InvalidInputError, PayloadTooLargeError } from './errors.js'

const MAX_TEXT = 200

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function requireRecord(value: unknown, what: string): Record<string, unknown> {
  if (!isRecord(value)) throw new InvalidInputError(`${what} must be an object`, { field: what })
  return value
}

export function requireString(value: unknown, field: string, max = MAX_TEXT): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new InvalidInputError(`${field} must be a non-empty string`, { field })
  }
  if (value.length > max) throw new InvalidInputError(`${field} is longer than ${max} characters`, { field, max })
  return value
}

export function optionalString(value: unknown, field: string, max = MAX_TEXT): string | null {
  if (value === undefined || value === null) return null
  return requireString(value, field, max)
}

/** Free text that may be empty (a body, a summary). */
export function optionalText(value: unknown, field: string, max: number): string | null {
  if (value === undefined || value === null) return null
  if (typeof value !== 'string') throw new InvalidInputError(`${field} must be a string`, { field })
  if (value.length > max) throw new InvalidInputError(`${field} is longer than ${max} characters`, { field, max })
  return value
}

export function optionalInt(value: unknown, field: string, min: number, max: number, fallback: number): number {
  if (value === undefined || value === null) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidInputError(`${field} must be an integer from ${min} to ${max}`, { field, min, max })
  }
  return value
}

export function optionalBoolean(value: unknown, field: string, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new InvalidInputError(`${field} must be a boolean`, { field })
  return value
}

export function status(value: unknown): TaskStatus | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !(TASK_STATUSES as readonly string[]).includes(value)) {
    throw new InvalidInputError(`status must be one of ${TASK_STATUSES.join(', ')}`, { field: 'status' })
  }
  return value as TaskStatus
}

/**
 * Serialize a value that must round-trip through JSON exactly: plain objects, arrays,
 * strings, finite numbers, booleans and null. Anything JSON would silently change
 * (undefined, functions, Dates, Maps, NaN, cycles, class instances) is refused.
 */
export function jsonValue(value: unknown, field: string, maxBytes: number): string | null {
  if (value === undefined || value === null) return null
  checkJson(value, field, new Set())
  const json = JSON.stringify(value)
  const bytes = Buffer.byteLength(json)
  if (bytes > maxBytes) throw new PayloadTooLargeError(field, bytes, maxBytes)
  return json
}

function checkJson(value: unknown, path: string, seen: Set<object>): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new InvalidInputError(`${path} is not a finite number`, { field: path })
    return
  }
  if (typeof value !== 'object') {
    throw new InvalidInputError(`${path} is a ${typeof value}, which JSON cannot hold`, { field: path })
  }
  if (seen.has(value)) throw new InvalidInputError(`${path} contains a cycle`, { field: path })
  seen.add(value)
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      if (item === undefined) throw new InvalidInputError(`${path}[${i}] is undefined`, { field: path })
      checkJson(item, `${path}[${i}]`, seen)
    })
  } else {
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) {
      throw new InvalidInputError(`${path} is not a plain object (${proto?.constructor?.name ?? 'unknown'})`, {
        field: path,
      })
    }
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue // JSON drops undefined properties; harmless
      checkJson(item, `${path}.${key}`, seen)
    }
  }
  seen.delete(value)
}

export function idList(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw new InvalidInputError(`${field} must be an array of task ids`, { field })
  const ids = value.map((id, i) => requireString(id, `${field}[${i}]`))
  return [...new Set(ids)]
}
