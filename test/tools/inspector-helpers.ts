/** What the inspector's tests share: HTTP reads of its API and the board they inspect. */
import { expect } from 'vitest'
import type { Orchestrator } from '../../src/index.js'
import { sleep } from '../helpers.js'

export async function get(base: string, path: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(new URL(path, base), init)
  const text = await res.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // not JSON (the page)
  }
  return { status: res.status, body }
}

/** A small board: a done parent, a ready child, two waiting grandchildren; a session mid-fallback. */
export async function scenario(orch: Orchestrator) {
  orch.sessions.setAdapter({ prompt: () => {}, abort: () => {} })
  const research = await orch.tasks.create({ title: 'research sources', assignee: 'researcher', tenant: 'acme' })
  const outline = await orch.tasks.create({ title: 'draft outline', parents: [research.id], assignee: 'writer', tenant: 'acme' })
  const intro = await orch.tasks.create({ title: 'write intro', parents: [outline.id], assignee: 'writer', tenant: 'acme' })
  const review = await orch.tasks.create({ title: 'review', parents: [outline.id, intro.id], assignee: 'editor', tenant: 'acme' })
  const claim = await orch.tasks.claim(research.id, { worker: 'w1', assignee: 'researcher' })
  await orch.tasks.complete(claim!, { result: { sources: 3 }, summary: 'found 3 sources' })
  await orch.sessions.open('chat-1', { agent: 'coder', models: ['anthropic/claude-x', 'openai/gpt-y', 'google/gemini-z'] })
  await orch.sessions.prompt('chat-1', { messageId: 'm1', message: { text: 'refactor this' } })
  const fallback = await orch.sessions.error('chat-1', { model: 'anthropic/claude-x', error: { status: 429, message: 'rate limit exceeded' } })
  expect(fallback.kinds).toEqual(['fallback'])
  await orch.sessions.approve('chat-1', 'bash', { once: true })
  return { research, outline, intro, review }
}

/** An open /events stream and the text it sent so far. */
export async function eventStream(url: string, path = '/events') {
  const res = await fetch(new URL(path, url))
  expect(res.headers.get('content-type')).toContain('text/event-stream')
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  const stream = {
    text: '',
    reader,
    /** Read until `pattern` matches what the stream sent (fails after `ms`). */
    async until(pattern: RegExp, ms = 10_000): Promise<void> {
      const deadline = Date.now() + ms
      while (!pattern.test(stream.text)) {
        if (Date.now() > deadline) throw new Error(`no ${pattern} in ${stream.text}`)
        const chunk = await Promise.race([reader.read(), sleep(deadline - Date.now()).then(() => null)])
        if (!chunk || chunk.done) break
        stream.text += decoder.decode(chunk.value)
      }
      expect(stream.text).toMatch(pattern)
    },
    /** The `entry` events sent so far, parsed. */
    entries(): Array<{ seq: number; actorId: string; kind: string }> {
      return [...stream.text.matchAll(/event: entry\ndata: ([^\n]*)\n/g)].map((m) => JSON.parse(m[1]!))
    },
  }
  return stream
}
