/** The built package as a user imports it: `import { createOrchestrator } from 'lockstep'`. */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDbPath } from './helpers.js'

const root = join(import.meta.dirname, '..')

describe('package', () => {
  it('exports the built ESM entry with type declarations', () => {
    expect(existsSync(join(root, 'dist/src/index.js'))).toBe(true)
    expect(existsSync(join(root, 'dist/src/index.d.ts'))).toBe(true)
  })

  it("resolves 'lockstep' through package.json exports and runs the README example", () => {
    const script = `
      import { createOrchestrator, LockstepError } from 'lockstep'
      const orch = await createOrchestrator({ path: process.argv[1] })
      const research = await orch.tasks.create({ title: 'research', assignee: 'researcher', priority: 5 })
      const draft = await orch.tasks.create({ title: 'draft', parents: [research.id], payload: { topic: 'x' } })
      const claim = await orch.tasks.claimNext({ worker: 'w1', assignee: 'researcher' })
      await orch.tasks.complete(claim, { result: { notes: '...' }, summary: 'found 3 sources' })
      const after = await orch.tasks.get(draft.id)
      const error = await orch.tasks.create({ title: '' }).catch((e) => e)
      await orch.close()
      console.log(JSON.stringify([draft.status, after.status, error instanceof LockstepError, error.code]))
    `
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script, tempDbPath()], { cwd: root, encoding: 'utf8' })
    expect(JSON.parse(out)).toEqual(['todo', 'ready', true, 'INVALID_INPUT'])
  })

  it('installs without npm warnings, and better-sqlite3 is built from source, never downloaded', () => {
    // Without npm's variables from an outer `npm test`, so only the project's files count.
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)))
    const npm = (...args: string[]) => spawnSync('npm', args, { cwd: root, encoding: 'utf8', env, timeout: 60_000 })
    // An unknown key in a project .npmrc makes npm 11 warn on every command.
    const config = npm('config', 'list')
    expect(config.status).toBe(0)
    expect(config.stderr).not.toMatch(/warn/i)
    // The one install script is approved in package.json (allowScripts), so npm does not warn about it.
    expect(npm('install-scripts', 'ls').stdout).toMatch(/No packages with unreviewed install scripts/)
    // prebuild-install (better-sqlite3's install step) reads .prebuild-installrc: source build, no download.
    const rc = spawnSync(process.execPath, ['-e', "console.log(require('prebuild-install/rc')({ name: 'better-sqlite3' }).buildFromSource)"], {
      cwd: join(root, 'node_modules/better-sqlite3'),
      encoding: 'utf8',
      env,
    })
    expect(rc.stdout.trim()).toBe('true')
  })

  it('the public types are a leaf: src/types.ts imports types from the pure machines and xstate only', () => {
    const imports = (file: string) =>
      [...readFileSync(join(root, file), 'utf8').matchAll(/(?:^|\n)\s*(?:import|export)[^'"\n]*from\s+'([^']+)'|import\('([^']+)'\)/g)].map((m) => m[1] ?? m[2])
    expect(imports('src/types.ts').sort()).toEqual(['../machines/session.js', '../machines/task.js', 'xstate'])
    // The store boundary names the public types and the machines, never the runtime.
    for (const from of imports('persistence/store.ts')) expect(from).toMatch(/^\.\.\/(machines\/|src\/types\.js$)/)
  })
})
