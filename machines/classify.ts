/**
 * Failure classification for LLM calls: given what a provider returned (status, error
 * name, message, code, Retry-After), decide whether the session fallback chain should
 * move on to the next model/provider (`retryable`), what kind of failure it was
 * (`class`), how long the provider asked us to wait (`retryAfterMs`) and whether it is
 * a quota/billing failure that deserves a long cooldown (`quota`).
 *
 * Pure by construction: no I/O, no clock, no randomness. The current time arrives as an
 * argument and is only needed to turn an HTTP-date Retry-After into a delay.
 *
 * Precedence (first rule that matches wins):
 *   1. user fatalPatterns           → not retryable (fatal wins over retry)
 *   2. user retryPatterns           → retryable
 *   3. user abort                   → 'user_abort', not retryable
 *   4. context overflow / content policy text → not retryable, whatever the status
 *   5. model not found              → 'model_not_found', retryable (another model may exist)
 *   6. status code, refined by message text (see `fromStatus`)
 *   7. message patterns
 *   8. network error codes/messages → 'server', retryable
 *   9. anything else                → 'unknown', not retryable
 * User patterns (1, 2) only flip `retryable`: `class` stays what the built-in rules say,
 * so logs still tell what actually happened.
 */

export type FailureClass =
  | 'rate_limit'
  | 'quota'
  | 'overloaded'
  | 'server'
  | 'auth'
  | 'timeout'
  | 'model_not_found'
  | 'context_overflow'
  | 'content_policy'
  | 'bad_request'
  | 'user_abort'
  | 'unknown'

/** What we know about a failed model call. Every field is optional; garbage is ignored. */
export interface ModelError {
  /** HTTP status. Anything that is not an integer in 100..599 is treated as absent (e.g. 0 from a failed fetch). */
  status?: number | null
  name?: string | null
  message?: string | null
  code?: string | null
  /** The Retry-After header: seconds (number or numeric string) or an HTTP-date. */
  retryAfter?: string | number | null
}

/**
 * User patterns: case-insensitive substrings, or `/regex/flags` strings (the flags are
 * the user's: `/Foo/` is case-sensitive, `/foo/i` is not; `g` and `y` are dropped so
 * matching stays stateless). A string that looks like a regex but does not compile is
 * used as a plain substring. Empty patterns are ignored. A pattern is tested against the
 * message, the name, the code and `HTTP <status>` separately (so `'HTTP 520'` works).
 */
export interface ClassifyOptions {
  /** Force retryable. */
  retryPatterns?: string[]
  /** Force not retryable. Wins over retryPatterns. */
  fatalPatterns?: string[]
}

export interface Classification {
  retryable: boolean
  class: FailureClass
  /** Short human string, e.g. "HTTP 429 rate limit". */
  reason: string
  /**
   * How long the provider asked us to wait, from `retryAfter` or else from the message
   * ("try again in 20s"); null when unknown. Reported even when not retryable.
   */
  retryAfterMs: number | null
  /** Always `class === 'quota'`: the caller gives these a much longer cooldown. */
  quota: boolean
}

/** Statuses the policy treats as retryable (408 is retryable too, as a timeout: see `RETRYABLE_STATUS`). */
export const DEFAULT_RETRYABLE_STATUS: readonly number[] = Object.freeze([401, 402, 429, 500, 502, 503, 504, 529])

/** Retryable status → class. 408 Request Timeout is not in the spec's list but is a timeout, and timeouts are retryable. */
const RETRYABLE_STATUS = new Map<number, FailureClass>([
  [401, 'auth'], // another provider's key may work
  [402, 'quota'],
  [408, 'timeout'],
  [429, 'rate_limit'],
  [500, 'server'],
  [502, 'server'],
  [503, 'server'],
  [504, 'server'],
  [529, 'overloaded'],
])

/** Non-retryable 4xx → class. Any other 4xx is 'bad_request'. */
const FATAL_STATUS = new Map<number, FailureClass>([
  [400, 'bad_request'],
  [403, 'auth'], // forbidden: the key works but may not do this; not retryable per policy
  [404, 'bad_request'], // unless the model was not found (rule 5)
  [413, 'context_overflow'], // request too large
  [422, 'bad_request'],
])

const LABEL: Record<FailureClass, string> = {
  rate_limit: 'rate limit',
  quota: 'quota exhausted',
  overloaded: 'overloaded',
  server: 'server error',
  auth: 'auth error',
  timeout: 'timeout',
  model_not_found: 'model not found',
  context_overflow: 'context overflow',
  content_policy: 'content policy',
  bad_request: 'bad request',
  user_abort: 'aborted by user',
  unknown: 'unknown error',
}

// ---- patterns (tested against the normalized text: lower case, '_' and '-' as spaces, camelCase names split) ----

const ABORT_NAMES = new Set(['AbortError', 'MessageAbortedError', 'APIUserAbortError'])

const CONTEXT_OVERFLOW = [
  /context (?:length|window)/,
  /maximum context/,
  // "too many tokens per minute" is a rate limit, not an overflow.
  /too many (?:input )?tokens(?! ?(?:per\b|\/))/,
  /prompt is too long/,
  /input is too long/,
  /input token count .{0,40}exceeds/,
]

const CONTENT_POLICY = [/content (?:management )?polic(?:y|ies)/, /\bsafety\b/, /content filter/, /\bflagged\b/]

const MODEL_NOT_FOUND = [
  /\bmodels?\b[^\n]{0,60}?\b(?:not found|does not exist|doesn'?t exist|not exist)\b/,
  /\b(?:no such|unknown|invalid|unsupported) model\b/,
]

/** Strong retryable texts: they override a non-retryable 4xx (providers mislabel these). In priority order. */
const STRONG_TEXT: Array<[FailureClass, RegExp[]]> = [
  [
    'quota',
    [
      /quota/,
      /usage limit/,
      /insufficient (?:credits?|balance|funds)/,
      /credit balance (?:is )?too low/,
      /out of credits?/,
      /\bbilling\b/,
      /payment required/,
    ],
  ],
  ['rate_limit', [/rate ?limit/, /too many requests/, /resource exhausted/]],
  ['overloaded', [/overloaded/, /at capacity/]],
  ['server', [/(?:service|temporarily|currently) unavailable/, /internal server error/, /bad gateway/]],
]

/**
 * Weak retryable texts: they classify an error without a status, but do not override a
 * 4xx ("please check your input and try again" is a validation error).
 */
const WEAK_TEXT: Array<[FailureClass, RegExp[]]> = [
  ['timeout', [/\btime ?outs?\b/, /\btimed ?out\b/, /\b(?:e|esocket)timedout\b/]],
  [
    'auth',
    [
      /invalid (?:x )?api key/,
      /incorrect api key/,
      /api key (?:is )?(?:invalid|not valid|missing|expired)/,
      /unauthori[sz]ed/,
      /authentication (?:failed|error|required)/,
    ],
  ],
  // The provider says to retry: a transient failure of unknown kind, reported as 'server'.
  ['server', [/try again/, /\bretry (?:after|in)\b/]],
]

const NETWORK_CODE =
  /\b(?:ECONNRESET|ECONNREFUSED|ECONNABORTED|ENOTFOUND|EAI_AGAIN|EPIPE|ENETUNREACH|EHOSTUNREACH|ENETDOWN|UND_ERR_SOCKET)\b/i
const NETWORK_TEXT = [/fetch failed/, /socket hang up/, /connection (?:error|reset|refused|closed)/, /network error/]

// ---- classification ----

interface Verdict {
  class: FailureClass
  retryable: boolean
  reason: string
}

export function classifyModelError(error: ModelError, options?: ClassifyOptions, now?: number): Classification {
  const e = error ?? {}
  const status = validStatus(e.status)
  const name = str(e.name)
  const message = str(e.message)
  const code = str(e.code)

  const verdict = builtIn(status, name, message, code)
  const retryAfterMs = parseRetryAfterAt(e.retryAfter, now) ?? retryAfterFromMessage(message)

  const fields = [message, name, code, status === null ? '' : `HTTP ${status}`]
  let final = verdict
  const fatal = firstMatch(options?.fatalPatterns, fields)
  const retry = fatal === null ? firstMatch(options?.retryPatterns, fields) : null
  if (fatal !== null) final = { ...verdict, retryable: false, reason: `user fatal pattern ${JSON.stringify(fatal)}: ${verdict.reason}` }
  else if (retry !== null) final = { ...verdict, retryable: true, reason: `user retry pattern ${JSON.stringify(retry)}: ${verdict.reason}` }

  return { retryable: final.retryable, class: final.class, reason: final.reason, retryAfterMs, quota: final.class === 'quota' }
}

function builtIn(status: number | null, name: string, message: string, code: string): Verdict {
  const http = status === null ? '' : `HTTP ${status} `
  const verdict = (cls: FailureClass, retryable: boolean, detail = ''): Verdict => ({
    class: cls,
    retryable,
    reason: `${http}${LABEL[cls]}${detail}`,
  })

  // 3. User abort: the user asked to stop; never retry, never fall back.
  if (ABORT_NAMES.has(name) || code === 'ABORT_ERR' || /aborted by user/i.test(message)) return verdict('user_abort', false)

  const text = normalize(name, code, message)

  // 4. The request itself is the problem: another attempt would fail the same way, whatever the
  //    status says (a 429 or 500 carrying "context length exceeded" is still an overflow).
  if (matchesAny(CONTEXT_OVERFLOW, text)) return verdict('context_overflow', false)
  if (matchesAny(CONTENT_POLICY, text)) return verdict('content_policy', false)

  // 5. Model not found, explicit ("model x does not exist") or a 404 / not_found_error that names a
  //    model (Anthropic: 404 "model: claude-x"). Retryable: the next model in the chain may exist.
  if (matchesAny(MODEL_NOT_FOUND, text) || ((status === 404 || /not found error/.test(text)) && /\bmodels?\b/.test(text)))
    return verdict('model_not_found', true)

  const strong = firstClass(STRONG_TEXT, text)
  const weak = firstClass(WEAK_TEXT, text)

  // 6. Status code.
  if (status !== null) {
    const retryableClass = RETRYABLE_STATUS.get(status)
    if (retryableClass !== undefined) {
      // 402 is always quota. 401 stays auth unless the text is about quota/billing (longer cooldown).
      // Otherwise a more specific strong text refines the status: 429 + "quota" → quota,
      // 503 + "overloaded" → overloaded, 500 + "rate limit" → rate_limit.
      if (status === 402) return verdict('quota', true)
      if (status === 401) return strong === 'quota' ? verdict('quota', true, ' (from message)') : verdict('auth', true)
      if (strong !== null && strong !== 'server' && strong !== retryableClass)
        return verdict(strong, true, ' (from message)')
      return verdict(retryableClass, true)
    }
    if (status >= 400 && status < 500) {
      // A strong retryable message wins over a non-retryable 4xx: some providers send rate limits
      // as 400, legacy Google APIs send quota errors as 403, Anthropic sends "credit balance is
      // too low" as 400. Weak texts ("try again", "timeout") do not.
      if (strong !== null) return verdict(strong, true, ' (from message)')
      return verdict(FATAL_STATUS.get(status) ?? 'bad_request', false)
    }
    // Any other status (501, 505, 520, 3xx, ...) is not decided by the status alone: fall through.
  }

  // 7. Message patterns.
  if (strong !== null) return verdict(strong, true)
  if (weak !== null) return verdict(weak, true)

  // 8. Network errors (no response at all): retryable, reported as 'server'.
  const net = NETWORK_CODE.exec(code) ?? NETWORK_CODE.exec(message)
  if (net !== null) return verdict('server', true, ` (network ${net[0].toUpperCase()})`)
  if (matchesAny(NETWORK_TEXT, text)) return verdict('server', true, ' (network)')

  // 9. Nothing we recognise: do not retry blindly (users can opt in with retryPatterns).
  return verdict('unknown', false)
}

function validStatus(status: unknown): number | null {
  return typeof status === 'number' && Number.isInteger(status) && status >= 100 && status <= 599 ? status : null
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : ''
}

/** Lower case, '_'/'-' as spaces, camelCase names split ("RateLimitError" → "rate limit error"). */
function normalize(name: string, code: string, message: string): string {
  const splitName = name.replace(/([a-z0-9])([A-Z])/g, '$1 $2')
  return [splitName, code, message]
    .filter((s) => s !== '')
    .join(' | ')
    .toLowerCase()
    .replace(/[_-]+/g, ' ')
}

function matchesAny(patterns: readonly RegExp[], text: string): boolean {
  return patterns.some((p) => p.test(text))
}

function firstClass(table: ReadonlyArray<[FailureClass, RegExp[]]>, text: string): FailureClass | null {
  for (const [cls, patterns] of table) if (matchesAny(patterns, text)) return cls
  return null
}

/** The first user pattern that matches any of the fields, or null. Never throws. */
function firstMatch(patterns: readonly string[] | undefined, fields: readonly string[]): string | null {
  if (!Array.isArray(patterns)) return null
  for (const pattern of patterns) {
    if (typeof pattern !== 'string' || pattern === '') continue
    const test = compileUserPattern(pattern)
    if (fields.some((f) => f !== '' && test(f))) return pattern
  }
  return null
}

function compileUserPattern(pattern: string): (text: string) => boolean {
  const m = /^\/(.+)\/([a-z]*)$/s.exec(pattern)
  if (m !== null) {
    try {
      const re = new RegExp(m[1] ?? '', (m[2] ?? '').replace(/[gy]/g, ''))
      return (text) => re.test(text)
    } catch {
      // Not a valid regex: use it as a substring.
    }
  }
  const needle = pattern.toLowerCase()
  return (text) => text.toLowerCase().includes(needle)
}

// ---- Retry-After ----

const UNIT = String.raw`(?:milliseconds?|msecs?|ms|minutes?|mins?|m|hours?|hrs?|h|seconds?|secs?|s)(?![a-z])`
const NUM = String.raw`\d+(?:\.\d+)?`
const DURATION = String.raw`(?:${NUM}\s*${UNIT}(?:\s*,?\s*(?:and\s+)?${NUM}\s*${UNIT})*)`
const DURATION_ONLY = new RegExp(`^${DURATION}$`, 'i')
const DURATION_PART = new RegExp(`(${NUM})\\s*(${UNIT})`, 'gi')
/** "retry after 20s", "try again in 1.5 seconds", "Please retry in 3m", "retry-after: 30", "retryDelay": "39s". */
const MESSAGE_HINT = new RegExp(
  String.raw`(?:retry|try again)(?:[\s_-]*(?:after|in|delay)\b|\s*[:=])["'\s:=]*(?:(${DURATION})|(${NUM})(?!\.?\d|\s*[a-z%]))`,
  'i',
)

/**
 * A Retry-After value in milliseconds: seconds (number or numeric string, '1.5' → 1500),
 * a duration as found in provider messages ('20s', '500ms', '2m', '1m30s', '1.5 seconds'),
 * or an HTTP-date (IMF-fixdate, RFC 850, asctime; ISO 8601 with a zone is accepted too)
 * turned into the time left after `now`, clamped at 0. Anything else → null.
 */
export function parseRetryAfter(value: string | number | null | undefined, now: number): number | null {
  return parseRetryAfterAt(value, now)
}

/** As parseRetryAfter; without `now`, dates cannot be resolved and give null. */
function parseRetryAfterAt(value: unknown, now: number | undefined): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : null
  if (typeof value !== 'string') return null
  const s = value.trim()
  if (s === '') return null
  if (/^\d+(?:\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000)
  if (DURATION_ONLY.test(s)) return durationMs(s)
  if (now === undefined || !Number.isFinite(now)) return null
  const at = parseHttpDate(s, now)
  return at === null ? null : Math.max(0, at - now)
}

function durationMs(s: string): number | null {
  let total = 0
  for (const m of s.matchAll(DURATION_PART)) {
    const n = Number(m[1])
    const unit = (m[2] ?? '').toLowerCase()
    const scale =
      unit.startsWith('ms') || unit.startsWith('milli')
        ? 1
        : unit.startsWith('m')
          ? 60_000
          : unit.startsWith('h')
            ? 3_600_000
            : 1000
    total += n * scale
  }
  return Number.isFinite(total) ? Math.round(total) : null
}

function retryAfterFromMessage(message: string): number | null {
  const m = MESSAGE_HINT.exec(message)
  if (m === null) return null
  if (m[1] !== undefined) return durationMs(m[1])
  if (m[2] !== undefined) return Math.round(Number(m[2]) * 1000)
  return null
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
const IMF_FIXDATE = /^[a-z]{3}, (\d{1,2}) ([a-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/i
const RFC_850 = /^[a-z]+, (\d{2})-([a-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/i
const ASCTIME = /^[a-z]{3} ([a-z]{3}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/i
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})$/i

/** Epoch ms of an HTTP-date, or null. Parsed by hand: Date.parse would read asctime as local time. */
function parseHttpDate(s: string, now: number): number | null {
  let m = IMF_FIXDATE.exec(s)
  if (m !== null) return utc(m[3], m[2], m[1], m[4], m[5], m[6])
  m = ASCTIME.exec(s)
  if (m !== null) return utc(m[6], m[1], m[2], m[3], m[4], m[5])
  m = RFC_850.exec(s)
  if (m !== null) {
    // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
    const nowYear = new Date(now).getUTCFullYear()
    let year = 2000 + Number(m[3])
    if (year > nowYear + 50) year -= 100
    return utc(String(year), m[2], m[1], m[4], m[5], m[6])
  }
  if (ISO_8601.test(s)) {
    const t = Date.parse(s)
    return Number.isNaN(t) ? null : t
  }
  return null
}

function utc(
  year: string | undefined,
  month: string | undefined,
  day: string | undefined,
  hour: string | undefined,
  minute: string | undefined,
  second: string | undefined,
): number | null {
  const mon = MONTHS.indexOf((month ?? '').toLowerCase())
  const [y, d, h, mi, s] = [year, day, hour, minute, second].map(Number) as [number, number, number, number, number]
  if (mon < 0 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return null
  const t = Date.UTC(y, mon, d, h, mi, Math.min(s, 59))
  // Reject dates that roll over (31 Feb).
  return new Date(t).getUTCDate() === d ? t : null
}
