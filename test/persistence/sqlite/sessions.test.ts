/**
 * Sessions in a SQLite file, read with raw SQL: what the rows hold, where the public API
 * cannot show it (the behaviour itself is in test/conformance/sessions.test.ts).
 */
import { describe, expect, it } from 'vitest'
import type { SessionAdapter } from '../../../src/index.js'
import { MAX_ERROR_MESSAGE } from '../../../src/sessions.js'
import { open, raw } from '../../helpers.js'

const CHAIN = ['anthropic/claude-x', 'openai/gpt-y', 'google/gemini-z']
const adapter: SessionAdapter = { prompt: () => {}, abort: () => {} }

describe('bounded error texts in the rows', () => {
  it('a 22 MB error report journals a bounded row, also for each ignored repeat, and the snapshot stays small', async () => {
    const orch = await open({ sessionAdapter: adapter })
    await orch.sessions.open('s', { models: CHAIN })
    await orch.sessions.prompt('s', { message: 'x', model: CHAIN[0] })
    const huge = `rate limit exceeded ${'x'.repeat(22 * 1024 * 1024)}`
    const error = { status: 429, message: huge, name: huge, code: huge, retryAfter: huge }
    expect((await orch.sessions.error('s', { model: CHAIN[0], error })).kinds).toEqual(['fallback'])
    expect((await orch.sessions.error('s', { error })).kinds).toEqual(['ignored'])
    expect((await orch.sessions.error('s', { error: Object.assign(new Error(huge), { status: 429 }) })).kinds).toEqual(['ignored'])
    expect((await orch.sessions.error('s', { error: huge })).kinds).toEqual(['ignored'])
    const db = raw(orch.path)
    const rows = db.prepare(`SELECT kind, event FROM journal WHERE actor_id = 's' AND event_type = 'ERROR'`).all() as Array<{ event: string }>
    expect(rows).toHaveLength(4)
    for (const row of rows) {
      expect(row.event.length).toBeLessThan(MAX_ERROR_MESSAGE + 2_000)
      expect(JSON.parse(row.event).error.message).toMatch(new RegExp(`^rate limit exceeded x+ … \\[truncated: ${huge.length} characters in all\\]$`))
    }
    const { snapshot } = db.prepare(`SELECT snapshot FROM sessions WHERE id = 's'`).get() as { snapshot: string }
    expect(snapshot.length).toBeLessThan(10_000)
  })
})
