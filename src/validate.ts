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

/**
 * An options object: a plain object whose every own key is one of `known`. An unknown
 * key (a typo, or an option this version does not have, such as `delay`) is refused
 * with INVALID_INPUT naming it, instead of being silently ignored.
 */
export function requireOptions(value: unknown, what: string, known: readonly string[]): Record<string, unknown> {
  const record = requireRecord(value, what)
  for (const key of Object.keys(record)) {
    if (!known.includes(key)) {
      throw new InvalidInputError(`${what} has an unknown option ${JSON.stringify(key)} (known: ${known.join(', ')})`, {
        field: key,
        known,
      })
    }
  }
  return record
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

export function requireInt(value: unknown, field: string, min: number, max: number): number {
  if (value === undefined || value === null) throw new InvalidInputError(`${field} is required: an integer from ${min} to ${max}`, { field, min, max })
  return optionalInt(value, field, min, max, min)
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
 * How deeply a payload, result, metadata or message may nest (objects and arrays).
 * Deeper values are refused with INVALID_INPUT before anything recursive touches them:
 * JSON.stringify, structured clones and the journal's readers all recurse.
 */
export const MAX_JSON_DEPTH = 256

/**
 * Serialize a value that must round-trip through JSON exactly: plain objects, arrays,
 * strings, finite numbers, booleans and null, nested at most MAX_JSON_DEPTH levels.
 * Anything JSON would silently change (undefined, functions, Dates, Maps, NaN, cycles,
 * class instances) is refused.
 */
export function jsonValue(value: unknown, field: string, maxBytes: number): string | null {
  if (value === undefined || value === null) return null
  checkJson(value, field)
  const json = JSON.stringify(value)
  const bytes = Buffer.byteLength(json)
  if (bytes > maxBytes) throw new PayloadTooLargeError(field, bytes, maxBytes)
  return json
}

/** A value met during the walk; its path is spelled out only for an error message. */
interface Visit {
  value: unknown
  parent: Visit | null
  key: string | number
  depth: number
}

function pathOf(visit: Visit, field: string): string {
  const parts: string[] = []
  for (let v: Visit | null = visit; v?.parent; v = v.parent) {
    parts.push(typeof v.key === 'number' ? `[${v.key}]` : `.${v.key}`)
  }
  return field + parts.reverse().join('')
}

/**
 * Iterative (an explicit stack, no recursion), so a value nested a million levels deep
 * is refused with INVALID_INPUT instead of overflowing the call stack.
 */
function checkJson(root: unknown, field: string): void {
  // The objects on the path from the root to the value visited now (a cycle is a repeat).
  const ancestors = new Set<object>()
  // `leave` entries take an object off the path once all of its children are done.
  const stack: Array<Visit | { leave: object }> = [{ value: root, parent: null, key: '', depth: 0 }]
  const fail = (visit: Visit, problem: string): never => {
    const path = pathOf(visit, field)
    throw new InvalidInputError(`${path} ${problem}`, { field: path })
  }
  while (stack.length > 0) {
    const item = stack.pop()!
    if ('leave' in item) {
      ancestors.delete(item.leave)
      continue
    }
    const { value } = item
    if (value === null || typeof value === 'string' || typeof value === 'boolean') continue
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) fail(item, 'is not a finite number')
      continue
    }
    if (value === undefined) fail(item, 'is undefined')
    if (typeof value !== 'object') fail(item, `is a ${typeof value}, which JSON cannot hold`)
    const object = value as object
    if (ancestors.has(object)) fail(item, 'contains a cycle')
    if (item.depth >= MAX_JSON_DEPTH) fail(item, `nests deeper than ${MAX_JSON_DEPTH} levels`)
    if (!Array.isArray(object)) {
      const proto = Object.getPrototypeOf(object)
      if (proto !== Object.prototype && proto !== null) {
        fail(item, `is not a plain object (${proto?.constructor?.name ?? 'unknown'})`)
      }
    }
    ancestors.add(object)
    stack.push({ leave: object })
    const depth = item.depth + 1
    if (Array.isArray(object)) {
      for (let i = object.length - 1; i >= 0; i--) stack.push({ value: object[i], parent: item, key: i, depth })
    } else {
      const entries = Object.entries(object)
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i]!
        if (child === undefined) continue // JSON drops undefined properties; harmless
        stack.push({ value: child, parent: item, key, depth })
      }
    }
  }
}

export function idList(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw new InvalidInputError(`${field} must be an array of task ids`, { field })
  const ids = value.map((id, i) => requireString(id, `${field}[${i}]`))
  return [...new Set(ids)]
}

/**
 * Text that must be recorded even when it is too long (a handler's error, a model's error
 * report): keep the head and say how long the original was, so the record is bounded
 * and nothing pretends to be whole.
 */
export function truncateText(text: string, max: number): string {
  if (text.length <= max) return text
  const note = ` … [truncated: ${text.length} characters in all]`
  return text.slice(0, Math.max(0, max - note.length)) + note
}
