/**
 * Development hot reload: watch machine modules on disk and push every change through
 * `orch.reload()` (the request barrier: calls wait, none fail).
 *
 * A watched module exports a machine definition, as `default` or as named exports:
 *   export default { machine: taskMachineV2, version: 2, migrations: { 1: (s) => s } }
 * ESM modules cannot be unloaded, so each change is imported under a new URL
 * (`?v=N`); keep machine modules free of module-level state.
 */
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { MachineDefinition } from './core/kernel.js'
import { InvalidInputError } from './errors.js'
import { FileWatcher } from './file-watcher.js'
import type { Orchestrator, ReloadResult } from './types.js'

export interface WatchMachinesOptions {
  /** Module files exporting a machine definition, by machine name. */
  modules: { task?: string; session?: string }
  /** Quiet time after the last change before reloading (default 100 ms): editors write files in bursts. */
  debounceMs?: number
  /** Safety poll of the files' size and mtime, for file systems where watching misses changes (default 500 ms). */
  pollMs?: number
  onReload?(result: ReloadResult): void
  /** A module that fails to import or a reload that is refused (default: console.error). The old machines stay. */
  onError?(error: unknown): void
}

export interface MachineWatcher {
  /** Reload now (also what a file change does). */
  reloadNow(): Promise<ReloadResult | null>
  close(): void
}

export function watchMachines(orch: Orchestrator, options: WatchMachinesOptions): MachineWatcher {
  const entries = Object.entries(options.modules ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string')
  if (entries.length === 0) throw new InvalidInputError('modules must name at least one machine module', { field: 'modules' })
  const debounceMs = options.debounceMs ?? 100
  const onError = options.onError ?? ((error: unknown) => console.error('[lockstep reload]', error))
  let generation = 0
  let chain: Promise<unknown> = Promise.resolve()
  let closed = false

  const reloadNow = (): Promise<ReloadResult | null> => {
    const run = chain.then(async () => {
      if (closed) return null
      generation++
      const machines: Record<string, MachineDefinition> = {}
      try {
        for (const [name, file] of entries) {
          const url = `${pathToFileURL(resolve(file)).href}?v=${Date.now()}-${generation}`
          const module = (await import(url)) as { default?: MachineDefinition } & Partial<MachineDefinition>
          machines[name] = module.default ?? { machine: module.machine!, version: module.version!, migrations: module.migrations }
        }
        const result = await orch.reload({ machines })
        options.onReload?.(result)
        return result
      } catch (error) {
        onError(error)
        return null
      }
    })
    chain = run
    return run
  }

  const watcher = new FileWatcher(
    entries.map(([, file]) => resolve(file)),
    debounceMs,
    options.pollMs ?? 500,
    (line) => onError(new Error(line)),
    () => void reloadNow(),
  )

  return {
    reloadNow,
    close() {
      closed = true
      watcher.close()
    },
  }
}
