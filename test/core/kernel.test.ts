/**
 * The committed step is storage-free: the kernel with the task kind runs on an in-memory
 * store (no database), through the synchronous driver (as SQLite runs it) and through
 * the asynchronous one (every operation a promise, as PostgreSQL runs it), and both give
 * the same journal, runs, timers and cascade.
 */
import { describe, expect, it } from 'vitest'
import { io } from '../../src/core/io.js'
import { Kernel } from '../../src/core/kernel.js'
import { taskKind } from '../../src/core/task-kind.js'
import { kernelScenario, SCENARIO_JOURNAL, type ScenarioBoard } from './kernel-scenario.js'
import { MemoryStore, memoryDriver } from './memory-store.js'

const T0 = 1_000_000

function board(async: boolean) {
  const store = new MemoryStore()
  let clock = T0
  const kernel = new Kernel(memoryDriver(store, { async, now: () => clock }))
  kernel.register(taskKind())
  const b: ScenarioBoard = {
    kernel,
    status: (id) => store.actors.get('tasks')!.get(id)!.columns.status as string,
    runs: () => store.runs,
    timers: () => [...store.timers.values()],
    journal: () => store.journal,
    advance: (ms) => void (clock += ms),
  }
  return { store, kernel, b }
}

const scenario = (async: boolean) => kernelScenario(board(async).b)

describe('the committed step on an in-memory store', () => {
  it('runs the same program synchronously and asynchronously, with the same outcome', async () => {
    const sync = await scenario(false)
    const async = await scenario(true)
    expect(async).toEqual(sync)
    expect(sync.map(([, actor, kind]) => `${actor}:${kind}`)).toEqual(SCENARIO_JOURNAL)
  })

  it('an operation that fails is thrown into the program at its yield', async () => {
    for (const async of [false, true]) {
      const { kernel } = board(async)
      let cleanedUp = false
      const failing = kernel.write(function* () {
        try {
          yield* io((s) => s.insertLink('a', 'b', 0))
          yield* io(() => {
            throw new Error('the store refused')
          })
          return 'not reached'
        } finally {
          cleanedUp = true
        }
      })
      await expect(failing).rejects.toThrow('the store refused')
      expect(cleanedUp).toBe(true)
    }
  })
})
