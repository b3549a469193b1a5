/**
 * `npm test` passes on a fresh machine: a test that needs an outside program (here the
 * browser test and Debian's chromium) is reported skipped with a notice naming the install
 * command when the program is missing, and fails under CI=true. Proven by running that
 * test in a nested vitest with the browser pointed at a path that does not exist.
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = join(import.meta.dirname, '..')

function browserTestWithoutBrowser(env: Record<string, string>): Promise<{ code: number; output: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', LOCKSTEP_CHROMIUM: '/nonexistent/chromium', ...env }
  // The outer run may itself be under CI=true; each case sets it explicitly.
  if (!('CI' in env)) delete childEnv.CI
  delete childEnv.VITEST_WORKER_ID
  delete childEnv.VITEST_POOL_ID
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', 'test/tools/inspector.test.ts', '-t', 'in a real browser', '--reporter=verbose'],
      { cwd: ROOT, env: childEnv, timeout: 90_000 },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, output: stdout + stderr }),
    )
  })
}

describe('tests that need an outside program', () => {
  it('skip with a notice naming the install command when it is missing', async () => {
    const { code, output } = await browserTestWithoutBrowser({})
    // The browser test's own line: skipped (↓), with the notice as its note.
    expect(output).toMatch(/↓ .*in a real browser.*install it with `apt-get update && apt-get install -y chromium`/)
    expect(output).toMatch(/Tests +\d+ skipped/)
    expect(output).not.toMatch(/\d+ failed/)
    expect(code).toBe(0)
  })

  it('fail under CI=true when it is missing', async () => {
    const { code, output } = await browserTestWithoutBrowser({ CI: 'true' })
    expect(output).toContain('CI=true: outside programs are required')
    // The browser test runs on each store (test/conformance/stores.ts): SQLite and PostgreSQL.
    expect(output).toMatch(/Tests +2 failed/)
    expect(code).not.toBe(0)
  })
})
