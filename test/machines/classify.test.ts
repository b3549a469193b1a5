/**
 * Pure tests of the failure classifier used by session fallback chains: no clock, no I/O.
 * Every test asserts the exact class and flags, so a policy change shows up here.
 */
import { describe, expect, it } from 'vitest'
import {
  classifyModelError,
  DEFAULT_RETRYABLE_STATUS,
  parseRetryAfter,
  type Classification,
  type ClassifyOptions,
  type FailureClass,
  type ModelError,
} from '../../machines/classify.js'

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0) // Wed, 15 Jan 2025 12:00:00 GMT

function cls(error: ModelError, options?: ClassifyOptions, now?: number): Classification {
  return classifyModelError(error, options, now)
}

function expectClass(c: Classification, klass: FailureClass, retryable: boolean): void {
  expect({ class: c.class, retryable: c.retryable, quota: c.quota }).toEqual({
    class: klass,
    retryable,
    quota: klass === 'quota',
  })
}

describe('DEFAULT_RETRYABLE_STATUS', () => {
  it('is exactly the policy list', () => {
    expect([...DEFAULT_RETRYABLE_STATUS]).toEqual([401, 402, 429, 500, 502, 503, 504, 529])
  })

  it('every listed status is classified retryable on its own', () => {
    for (const status of DEFAULT_RETRYABLE_STATUS) expect(cls({ status }).retryable, `HTTP ${status}`).toBe(true)
  })
})

describe('status codes', () => {
  const cases: Array<[number, FailureClass, boolean]> = [
    [401, 'auth', true],
    [402, 'quota', true],
    [429, 'rate_limit', true],
    [500, 'server', true],
    [502, 'server', true],
    [503, 'server', true],
    [504, 'server', true],
    [529, 'overloaded', true],
    [408, 'timeout', true],
    [400, 'bad_request', false],
    [403, 'auth', false],
    [404, 'bad_request', false],
    [413, 'context_overflow', false],
    [422, 'bad_request', false],
    [409, 'bad_request', false],
    [418, 'bad_request', false],
  ]
  for (const [status, klass, retryable] of cases) {
    it(`HTTP ${status} → ${klass}, retryable ${retryable}`, () => {
      const c = cls({ status, message: 'Something went wrong' })
      expectClass(c, klass, retryable)
      expect(c.reason.startsWith(`HTTP ${status} `)).toBe(true)
    })
  }

  it('reason is a short human string', () => {
    expect(cls({ status: 429 }).reason).toBe('HTTP 429 rate limit')
    expect(cls({ status: 402 }).reason).toBe('HTTP 402 quota exhausted')
    expect(cls({ status: 400 }).reason).toBe('HTTP 400 bad request')
  })

  it('quota is true only for the quota class', () => {
    expect(cls({ status: 402 }).quota).toBe(true)
    expect(cls({ status: 429 }).quota).toBe(false)
    expect(cls({ status: 500 }).quota).toBe(false)
  })

  it('an unlisted 5xx with no text is unknown and not retryable', () => {
    const c = cls({ status: 501, message: 'Not Implemented' })
    expectClass(c, 'unknown', false)
    expect(c.reason).toBe('HTTP 501 unknown error')
  })

  it('an unlisted 5xx with retryable text follows the text', () => {
    expectClass(cls({ status: 520, message: 'Web server is returning an unknown error, try again' }), 'server', true)
    expectClass(cls({ status: 520, code: 'ECONNRESET' }), 'server', true)
  })

  it('status 0, NaN, non-integers and out-of-range values are ignored', () => {
    expectClass(cls({ status: 0, message: 'fetch failed' }), 'server', true)
    expectClass(cls({ status: 0 }), 'unknown', false)
    expectClass(cls({ status: Number.NaN }), 'unknown', false)
    expectClass(cls({ status: 429.5 }), 'unknown', false)
    expectClass(cls({ status: 999 }), 'unknown', false)
    expectClass(cls({ status: null, message: null, name: null, code: null, retryAfter: null }), 'unknown', false)
  })
})

describe('retryable message patterns (no status)', () => {
  const cases: Array<[string, FailureClass]> = [
    ['Rate limit exceeded', 'rate_limit'],
    ['rate-limit hit', 'rate_limit'],
    ['You are being RATELIMITED', 'rate_limit'],
    ['rate_limit_exceeded', 'rate_limit'],
    ['Too Many Requests', 'rate_limit'],
    ['RESOURCE_EXHAUSTED', 'rate_limit'],
    ['You exceeded your current quota', 'quota'],
    ['Usage limit reached for this month', 'quota'],
    ['Insufficient credits', 'quota'],
    ['insufficient balance on account', 'quota'],
    ['Your credit balance is too low to access the API', 'quota'],
    ['credit balance too low', 'quota'],
    ['Please check your billing details', 'quota'],
    ['Overloaded', 'overloaded'],
    ['The model is currently overloaded with other requests', 'overloaded'],
    ['Service Unavailable', 'server'],
    ['The service is temporarily unavailable', 'server'],
    ['Internal Server Error', 'server'],
    ['Something odd happened, please try again', 'server'],
  ]
  for (const [message, klass] of cases) {
    it(`"${message}" → ${klass}`, () => {
      expectClass(cls({ message }), klass, true)
    })
  }

  it('matches the code and the error name too', () => {
    expectClass(cls({ code: 'insufficient_quota' }), 'quota', true)
    expectClass(cls({ code: 'rate_limit_exceeded' }), 'rate_limit', true)
    expectClass(cls({ name: 'RateLimitError' }), 'rate_limit', true)
    expectClass(cls({ name: 'InternalServerError' }), 'server', true)
    expectClass(cls({ code: 'overloaded_error' }), 'overloaded', true)
  })

  it('quota text wins over rate-limit text in the same message', () => {
    expectClass(cls({ message: 'Rate limit: daily quota exceeded' }), 'quota', true)
  })

  it('overloaded text wins over "try again"', () => {
    expectClass(cls({ message: 'Overloaded, please try again later' }), 'overloaded', true)
  })
})

describe('timeouts', () => {
  it('name TimeoutError', () => {
    const c = cls({ name: 'TimeoutError', message: 'The operation was aborted due to timeout' })
    expectClass(c, 'timeout', true)
    expect(c.reason).toBe('timeout')
  })
  it('message "timed out"', () => expectClass(cls({ message: 'Request timed out.' }), 'timeout', true))
  it('message "timeout"', () => expectClass(cls({ message: 'upstream timeout' }), 'timeout', true))
  it('code ETIMEDOUT', () => expectClass(cls({ code: 'ETIMEDOUT', message: 'connect ETIMEDOUT 1.2.3.4:443' }), 'timeout', true))
  it('undici timeout codes', () => expectClass(cls({ code: 'UND_ERR_HEADERS_TIMEOUT' }), 'timeout', true))
  it('SDK timeout error name', () => expectClass(cls({ name: 'APIConnectionTimeoutError' }), 'timeout', true))
  it('"time" followed by an unrelated word is not a timeout', () => {
    expectClass(cls({ message: 'at the time outstanding jobs were 3' }), 'unknown', false)
  })
  it('timeout text does not override a 4xx', () => {
    expectClass(cls({ status: 400, message: "Invalid value for 'timeout'" }), 'bad_request', false)
  })
})

describe('network errors → retryable server', () => {
  for (const code of ['ECONNRESET', 'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN']) {
    it(`code ${code}`, () => {
      const c = cls({ code })
      expectClass(c, 'server', true)
      expect(c.reason).toBe(`server error (network ${code})`)
    })
  }
  it('code found in the message only', () => {
    expectClass(cls({ message: 'connect ECONNREFUSED 127.0.0.1:11434' }), 'server', true)
    expectClass(cls({ message: 'getaddrinfo EAI_AGAIN api.example.com' }), 'server', true)
  })
  it('"fetch failed"', () => expectClass(cls({ name: 'TypeError', message: 'fetch failed' }), 'server', true))
  it('"socket hang up"', () => expectClass(cls({ message: 'socket hang up' }), 'server', true))
  it('a network code does not override a 4xx status', () => {
    expectClass(cls({ status: 400, code: 'ECONNRESET' }), 'bad_request', false)
  })
})

describe('unknown', () => {
  it('no status and no matching text → unknown, not retryable', () => {
    const c = cls({ name: 'Error', message: 'Cannot read properties of undefined' })
    expectClass(c, 'unknown', false)
    expect(c.reason).toBe('unknown error')
    expect(c.retryAfterMs).toBeNull()
  })
  it('an empty error', () => expectClass(cls({}), 'unknown', false))
  it('never throws on odd runtime values', () => {
    const odd = { status: '429', message: 42, name: {}, code: [] } as unknown as ModelError
    expect(() => cls(odd)).not.toThrow()
    expectClass(cls(odd), 'unknown', false)
  })
})

describe('non-retryable content classes', () => {
  const overflow = [
    "This model's maximum context length is 8192 tokens",
    'context_length_exceeded',
    'Input exceeds the context window of this model',
    'prompt is too long: 210000 tokens > 200000 maximum',
    'Too many tokens in the request',
    'The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).',
  ]
  for (const message of overflow) {
    it(`context overflow: "${message}"`, () => {
      const c = cls({ status: 400, message })
      expectClass(c, 'context_overflow', false)
      expect(c.reason).toBe('HTTP 400 context overflow')
    })
  }

  const policy = [
    'Your request was rejected as a result of our safety system',
    'This prompt violates our content policy',
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy",
    'Blocked by content filter',
    'Input was flagged by moderation',
  ]
  for (const message of policy) {
    it(`content policy: "${message}"`, () => expectClass(cls({ status: 400, message }), 'content_policy', false))
  }
  it('content policy via code', () => expectClass(cls({ code: 'content_filter' }), 'content_policy', false))

  it('content classes win over a retryable status', () => {
    expectClass(cls({ status: 429, message: 'maximum context length exceeded' }), 'context_overflow', false)
    expectClass(cls({ status: 500, message: 'Output blocked by content filter' }), 'content_policy', false)
    expectClass(cls({ status: 503, message: 'prompt is too long' }), 'context_overflow', false)
  })

  it('content classes win over retryable text', () => {
    expectClass(cls({ message: 'Rate limit hit; also your prompt is too long' }), 'context_overflow', false)
  })

  it('"too many tokens per minute" is a rate limit, not an overflow', () => {
    expectClass(cls({ status: 429, message: 'Too many tokens per minute, slow down' }), 'rate_limit', true)
    expectClass(cls({ message: 'too many tokens/min' }), 'unknown', false)
  })
})

describe('user abort', () => {
  it('name AbortError', () => {
    const c = cls({ name: 'AbortError', message: 'This operation was aborted' })
    expectClass(c, 'user_abort', false)
    expect(c.reason).toBe('aborted by user')
  })
  it('name MessageAbortedError', () => expectClass(cls({ name: 'MessageAbortedError' }), 'user_abort', false))
  it('SDK APIUserAbortError', () => expectClass(cls({ name: 'APIUserAbortError' }), 'user_abort', false))
  it('message "aborted by user"', () => expectClass(cls({ message: 'Request ABORTED BY USER' }), 'user_abort', false))
  it('abort wins over status and retryable text', () => {
    expectClass(cls({ status: 503, name: 'AbortError', message: 'rate limit' }), 'user_abort', false)
  })
  it('abort wins over content classes', () => {
    expectClass(cls({ name: 'AbortError', message: 'prompt is too long' }), 'user_abort', false)
  })
  it('a TimeoutError is not an abort', () => expectClass(cls({ name: 'TimeoutError' }), 'timeout', true))
})

describe('model not found', () => {
  it('404 whose message says the model was not found → retryable', () => {
    const c = cls({ status: 404, message: "model 'llama9' not found, try pulling it first" })
    expectClass(c, 'model_not_found', true)
    expect(c.reason).toBe('HTTP 404 model not found')
  })
  it('OpenAI "does not exist"', () => {
    expectClass(
      cls({ status: 404, message: 'The model `gpt-4.1-turbo` does not exist or you do not have access to it.' }),
      'model_not_found',
      true,
    )
  })
  it('Google "models/x is not found"', () => {
    expectClass(
      cls({ status: 404, message: 'models/gemini-1.0-pro is not found for API version v1beta' }),
      'model_not_found',
      true,
    )
  })
  it('Anthropic 404 "model: x" with not_found_error', () => {
    expectClass(cls({ status: 404, message: 'model: claude-3-nope' }), 'model_not_found', true)
    expectClass(cls({ name: 'NotFoundError', message: 'model: claude-3-nope' }), 'model_not_found', true)
  })
  it('model_not_found code', () => expectClass(cls({ code: 'model_not_found' }), 'model_not_found', true))
  it('"unknown model" on a 400 beats the status', () => {
    expectClass(cls({ status: 400, message: 'Unknown model: foo-1' }), 'model_not_found', true)
  })
  it('a 404 that is not about a model stays a non-retryable bad_request', () => {
    expectClass(cls({ status: 404, message: 'Not Found' }), 'bad_request', false)
  })
  it('"model is overloaded" is not model-not-found', () => {
    expectClass(cls({ status: 503, message: 'That model is currently overloaded' }), 'overloaded', true)
  })
  it('content classes win over model not found', () => {
    expectClass(cls({ status: 404, message: 'model not found; prompt is too long' }), 'context_overflow', false)
  })
})

describe('status vs message conflicts', () => {
  it('400 + "rate limit exceeded" → the message wins: retryable rate_limit', () => {
    const c = cls({ status: 400, message: 'rate limit exceeded' })
    expectClass(c, 'rate_limit', true)
    expect(c.reason).toBe('HTTP 400 rate limit (from message)')
  })
  it('429 + "quota" → quota', () => {
    const c = cls({ status: 429, message: 'You exceeded your current quota, please check your plan' })
    expectClass(c, 'quota', true)
    expect(c.reason).toBe('HTTP 429 quota exhausted (from message)')
  })
  it('400 + "credit balance is too low" (Anthropic) → quota', () => {
    expectClass(cls({ status: 400, message: 'Your credit balance is too low to access the API' }), 'quota', true)
  })
  it('403 + "quota exceeded" (legacy Google) → quota', () => {
    expectClass(cls({ status: 403, message: 'Daily Limit Exceeded: quota exceeded' }), 'quota', true)
  })
  it('422 + "overloaded" → overloaded', () => {
    expectClass(cls({ status: 422, message: 'Engine overloaded' }), 'overloaded', true)
  })
  it('400 + "service unavailable" → server', () => {
    expectClass(cls({ status: 400, message: 'Service Unavailable' }), 'server', true)
  })
  it('400 + "try again" stays a non-retryable bad_request (weak text)', () => {
    expectClass(cls({ status: 400, message: 'Invalid request. Please check your input and try again.' }), 'bad_request', false)
  })
  it('503 + "overloaded" → overloaded', () => {
    expectClass(cls({ status: 503, message: 'Overloaded' }), 'overloaded', true)
  })
  it('500 + "rate limit" → rate_limit', () => {
    expectClass(cls({ status: 500, message: 'upstream rate limit' }), 'rate_limit', true)
  })
  it('429 + "service unavailable" stays rate_limit', () => {
    expectClass(cls({ status: 429, message: 'Service Unavailable' }), 'rate_limit', true)
  })
  it('529 + "overloaded" → overloaded', () => {
    expectClass(cls({ status: 529, message: 'Overloaded' }), 'overloaded', true)
  })
  it('402 is quota whatever the text', () => {
    expectClass(cls({ status: 402, message: 'rate limit' }), 'quota', true)
  })
  it('401 stays auth, except for quota/billing text', () => {
    expectClass(cls({ status: 401, message: 'rate limit' }), 'auth', true)
    expectClass(cls({ status: 401, message: 'Invalid API key' }), 'auth', true)
    expectClass(cls({ status: 401, message: 'insufficient balance' }), 'quota', true)
  })
  it('a 5xx carrying a timeout message stays server', () => {
    expectClass(cls({ status: 504, message: 'Gateway Timeout' }), 'server', true)
  })
  it('auth text without a status → auth, retryable', () => {
    expectClass(cls({ message: 'Incorrect API key provided' }), 'auth', true)
    expectClass(cls({ name: 'AuthenticationError' }), 'auth', true)
  })
  it('auth text does not make a 403 retryable', () => {
    expectClass(cls({ status: 403, message: 'Unauthorized' }), 'auth', false)
  })
})

describe('user patterns', () => {
  it('retryPatterns (substring, case-insensitive) force retryable, keep the class', () => {
    const c = cls({ status: 400, message: 'Upstream Provider Hiccup' }, { retryPatterns: ['provider hiccup'] })
    expectClass(c, 'bad_request', true)
    expect(c.reason).toBe('user retry pattern "provider hiccup": HTTP 400 bad request')
  })
  it('retryPatterns as /regex/i', () => {
    expectClass(cls({ message: 'Weird ERR-42 thing' }, { retryPatterns: ['/err-\\d+/i'] }), 'unknown', true)
  })
  it('a regex without the i flag is case-sensitive', () => {
    expectClass(cls({ message: 'Weird ERR-42 thing' }, { retryPatterns: ['/err-\\d+/'] }), 'unknown', false)
    expectClass(cls({ message: 'Weird err-42 thing' }, { retryPatterns: ['/err-\\d+/'] }), 'unknown', true)
  })
  it('fatalPatterns force non-retryable, keep the class', () => {
    const c = cls({ status: 429, message: 'rate limit: organization suspended' }, { fatalPatterns: ['suspended'] })
    expectClass(c, 'rate_limit', false)
    expect(c.reason).toBe('user fatal pattern "suspended": HTTP 429 rate limit')
  })
  it('fatalPatterns as /regex/flags', () => {
    expectClass(cls({ status: 503, message: 'Account BANNED' }, { fatalPatterns: ['/banned$/i'] }), 'server', false)
  })
  it('fatal wins over retry', () => {
    const c = cls({ message: 'flaky but banned' }, { retryPatterns: ['flaky'], fatalPatterns: ['banned'] })
    expectClass(c, 'unknown', false)
    expect(c.reason.startsWith('user fatal pattern "banned"')).toBe(true)
  })
  it('user retry wins over user abort and content classes', () => {
    expectClass(cls({ name: 'AbortError' }, { retryPatterns: ['AbortError'] }), 'user_abort', true)
    expectClass(cls({ message: 'prompt is too long' }, { retryPatterns: ['too long'] }), 'context_overflow', true)
  })
  it('user fatal wins over a retryable status', () => {
    expectClass(cls({ status: 500 }, { fatalPatterns: ['HTTP 500'] }), 'server', false)
  })
  it('patterns match the name, the code and "HTTP <status>"', () => {
    expectClass(cls({ name: 'FancyProviderError' }, { retryPatterns: ['fancyprovider'] }), 'unknown', true)
    expectClass(cls({ code: 'E_WEIRD' }, { retryPatterns: ['e_weird'] }), 'unknown', true)
    expectClass(cls({ status: 520 }, { retryPatterns: ['/^HTTP 52\\d$/'] }), 'unknown', true)
  })
  it('an invalid regex string is treated as a substring and never throws', () => {
    const opts = { retryPatterns: ['/[unclosed/'] }
    expect(() => cls({ message: 'x' }, opts)).not.toThrow()
    expectClass(cls({ message: 'x' }, opts), 'unknown', false)
    expectClass(cls({ message: 'saw /[UNCLOSED/ here' }, opts), 'unknown', true)
    expectClass(cls({ message: 'saw /a/q here' }, { fatalPatterns: ['/a/q'], retryPatterns: ['saw'] }), 'unknown', false)
  })
  it('g and y flags do not make matching stateful', () => {
    const opts = { retryPatterns: ['/boom/g'] }
    expect(cls({ message: 'boom' }, opts).retryable).toBe(true)
    expect(cls({ message: 'boom' }, opts).retryable).toBe(true)
  })
  it('empty patterns and non-matching patterns change nothing', () => {
    expectClass(cls({ status: 400 }, { retryPatterns: [''], fatalPatterns: ['nope'] }), 'bad_request', false)
    expectClass(cls({ status: 429 }, { retryPatterns: [], fatalPatterns: [] }), 'rate_limit', true)
  })
})

describe('retryAfterMs', () => {
  it('from the retryAfter header value, in seconds', () => {
    expect(cls({ status: 429, retryAfter: '20' }).retryAfterMs).toBe(20_000)
    expect(cls({ status: 429, retryAfter: 1.5 }).retryAfterMs).toBe(1500)
  })
  it('from an HTTP-date header relative to now', () => {
    expect(cls({ status: 503, retryAfter: 'Wed, 15 Jan 2025 12:00:30 GMT' }, undefined, NOW).retryAfterMs).toBe(30_000)
  })
  it('an HTTP-date without now cannot be resolved', () => {
    expect(cls({ status: 503, retryAfter: 'Wed, 15 Jan 2025 12:00:30 GMT' }).retryAfterMs).toBeNull()
  })
  it('the header wins over the message', () => {
    expect(cls({ status: 429, retryAfter: '5', message: 'Please retry in 3m' }).retryAfterMs).toBe(5000)
  })
  it('a garbage header falls back to the message', () => {
    expect(cls({ status: 429, retryAfter: 'soon', message: 'Please retry in 3m' }).retryAfterMs).toBe(180_000)
  })
  const messages: Array<[string, number]> = [
    ['Rate limited, retry after 20s', 20_000],
    ['Please try again in 1.5 seconds.', 1500],
    ['Please retry in 3m', 180_000],
    ['Rate limit reached for gpt-4o. Please try again in 6ms.', 6],
    ['Please try again in 1m30s', 90_000],
    ['try again in 2 minutes and 5 seconds', 125_000],
    ['Retry-After: 30', 30_000],
    ['retry after 30.', 30_000],
    ['Quota exceeded. {"retryDelay": "39s"}', 39_000],
    ['try again in 1 hour', 3_600_000],
  ]
  for (const [message, ms] of messages) {
    it(`from the message: "${message}" → ${ms}`, () => {
      expect(cls({ status: 429, message }).retryAfterMs).toBe(ms)
    })
  }
  it('no hint → null', () => {
    expect(cls({ status: 429, message: 'Too Many Requests' }).retryAfterMs).toBeNull()
    expect(cls({ status: 429, message: 'try again later' }).retryAfterMs).toBeNull()
    expect(cls({ status: 429, message: 'we will retry 3 times' }).retryAfterMs).toBeNull()
    expect(cls({ status: 429, message: 'try again in 5 more minutes' }).retryAfterMs).toBeNull()
  })
})

describe('parseRetryAfter', () => {
  it('seconds as a number', () => {
    expect(parseRetryAfter(0, NOW)).toBe(0)
    expect(parseRetryAfter(120, NOW)).toBe(120_000)
    expect(parseRetryAfter(1.5, NOW)).toBe(1500)
  })
  it('seconds as a numeric string', () => {
    expect(parseRetryAfter('120', NOW)).toBe(120_000)
    expect(parseRetryAfter(' 7 ', NOW)).toBe(7000)
  })
  it('decimal seconds', () => {
    expect(parseRetryAfter('1.5', NOW)).toBe(1500)
    expect(parseRetryAfter('0.25', NOW)).toBe(250)
  })
  it('durations found in provider messages', () => {
    expect(parseRetryAfter('20s', NOW)).toBe(20_000)
    expect(parseRetryAfter('500ms', NOW)).toBe(500)
    expect(parseRetryAfter('2m', NOW)).toBe(120_000)
    expect(parseRetryAfter('1h', NOW)).toBe(3_600_000)
    expect(parseRetryAfter('1m30s', NOW)).toBe(90_000)
    expect(parseRetryAfter('1.5 seconds', NOW)).toBe(1500)
    expect(parseRetryAfter('39.5s', NOW)).toBe(39_500)
    expect(parseRetryAfter('2 MIN', NOW)).toBe(120_000)
  })
  it('IMF-fixdate relative to now', () => {
    expect(parseRetryAfter('Wed, 15 Jan 2025 12:01:00 GMT', NOW)).toBe(60_000)
    expect(parseRetryAfter('Thu, 16 Jan 2025 12:00:00 GMT', NOW)).toBe(86_400_000)
  })
  it('RFC 850 and asctime dates (always UTC)', () => {
    expect(parseRetryAfter('Wednesday, 15-Jan-25 12:00:10 GMT', NOW)).toBe(10_000)
    expect(parseRetryAfter('Wed Jan 15 12:00:10 2025', NOW)).toBe(10_000)
    expect(parseRetryAfter('Wed Jan  5 12:00:10 2025', Date.UTC(2025, 0, 5, 12, 0, 0))).toBe(10_000)
  })
  it('ISO 8601 with a zone', () => {
    expect(parseRetryAfter('2025-01-15T12:00:05Z', NOW)).toBe(5000)
    expect(parseRetryAfter('2025-01-15T13:00:05+01:00', NOW)).toBe(5000)
  })
  it('a past date → 0', () => {
    expect(parseRetryAfter('Tue, 14 Jan 2025 12:00:00 GMT', NOW)).toBe(0)
    expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', NOW)).toBe(0)
  })
  it('garbage → null', () => {
    for (const v of [
      'soon',
      '',
      '   ',
      '-5',
      '1e3',
      '12abc',
      'Wed, 31 Feb 2025 12:00:00 GMT',
      'Wed, 15 Foo 2025 12:00:00 GMT',
      'Wed, 15 Jan 2025 25:00:00 GMT',
      '2025-01-15T12:00:05',
      '2025-01-15',
    ]) {
      expect(parseRetryAfter(v, NOW), JSON.stringify(v)).toBeNull()
    }
    expect(parseRetryAfter(null, NOW)).toBeNull()
    expect(parseRetryAfter(undefined, NOW)).toBeNull()
    expect(parseRetryAfter(-1, NOW)).toBeNull()
    expect(parseRetryAfter(Number.NaN, NOW)).toBeNull()
    expect(parseRetryAfter(Number.POSITIVE_INFINITY, NOW)).toBeNull()
  })
  it('does not depend on the clock: same input, same output', () => {
    expect(parseRetryAfter('Wed, 15 Jan 2025 12:00:30 GMT', NOW)).toBe(parseRetryAfter('Wed, 15 Jan 2025 12:00:30 GMT', NOW))
    expect(parseRetryAfter('Wed, 15 Jan 2025 12:00:30 GMT', NOW + 10_000)).toBe(20_000)
  })
})
