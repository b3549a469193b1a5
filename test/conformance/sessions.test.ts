/**
 * Sessions on every store, through the public API only (one suite, run on SQLite and on
 * PostgreSQL through test/conformance/stores.ts).
 */
import { describe, expect, it } from 'vitest'
import type { CallContext } from '../../src/index.js'
import { STORES } from './stores.js'

const CHAIN = ['anthropic/claude-x', 'openai/gpt-y', 'google/gemini-z']

const answer = (text: string) => async ({ onToken }: CallContext) => {
  onToken()
  return text
}

describe.each(STORES)('on $name', (store) => {
  describe('run(): the app calls models, lockstep falls back', () => {
    it('twenty run()s in a row on one session each answer, and each journals its first token before its completion', async (ctx) => {
      // On PostgreSQL a new run()'s driver used to read the session before its own prompt
      // committed and reject as "superseded", and a call's COMPLETED report could commit
      // before its TOKEN report (which was then refused): both in RunDriver, src/sessions.ts.
      const orch = await store.open(ctx)
      for (let i = 0; i < 20; i++) {
        const reply = await orch.sessions.run('s', { models: CHAIN, message: { text: `${i}` }, call: answer(`answer ${i}`) })
        expect(reply).toMatchObject({ output: `answer ${i}`, model: CHAIN[0] })
      }
      const kinds = (await orch.sessions.events({ sessionId: 's' })).map((e) => e.kind)
      expect(kinds).toEqual(['opened', ...Array.from({ length: 20 }, () => ['prompted', 'first_token', 'completed']).flat()])
    })
  })
})
