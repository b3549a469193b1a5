/** WAL checkpoints run in a background thread, not inside commits. */
import { statSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { createOrchestrator } from '../../../src/index.js'
import { sleep, tempDbPath, waitFor } from '../../helpers.js'

async function fileAfterWrites(checkpoint: 'background' | 'inline') {
  const path = tempDbPath()
  const orch = await createOrchestrator({ path, checkpoint })
  const before = statSync(path).size
  // About 50 x 9 WAL pages: under SQLite's own threshold of 1,000, so only the
  // background checkpointer copies them into the database file.
  for (let i = 0; i < 50; i++) await orch.tasks.create({ title: `t${i}`, payload: { i } })
  return { orch, path, before }
}

describe('checkpoints', () => {
  it('background (default): a worker thread copies committed pages into the database file', async () => {
    const { orch, path, before } = await fileAfterWrites('background')
    await waitFor(() => statSync(path).size > before, 5_000)
    await orch.close()
  })

  it('inline: nothing is checkpointed until SQLite crosses its own threshold', async () => {
    const { orch, path, before } = await fileAfterWrites('inline')
    await sleep(400)
    expect(statSync(path).size).toBe(before)
    await orch.close()
  })

  it('rejects an unknown checkpoint mode', async () => {
    await expect(createOrchestrator({ path: tempDbPath(), checkpoint: 'sometimes' as never })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
  })
})
