/**
 * Tests that need a program or server from outside npm (Debian's chromium, later
 * PostgreSQL) use this, so `npm test` passes on a fresh machine: when the program is
 * missing, the test reports itself skipped with a notice saying how to get it. Under
 * CI=true (as `.ci/run` runs) a missing program fails the test instead, so CI always
 * runs what it installs.
 */
import type { TestContext } from 'vitest'

export interface OutsideProgram {
  /** What is needed, e.g. "Debian's chromium". */
  name: string
  /** How to get it, e.g. "apt-get install chromium". */
  install: string
}

/** Under CI a missing outside program is a failure, never a skip. */
export const outsideProgramsRequired = process.env.CI === 'true'

/**
 * `problem` is null when the program is there and usable. Otherwise: skip the test with a
 * notice (or, under CI=true, fail it).
 */
export function needOutsideProgram(ctx: TestContext, program: OutsideProgram, problem: string | null): void {
  if (problem === null) return
  const notice = `${program.name} is not available (${problem}); install it with \`${program.install}\``
  if (outsideProgramsRequired) throw new Error(`${notice}. CI=true: outside programs are required, not skipped.`)
  console.warn(`[lockstep tests] skipped: ${notice}`)
  ctx.skip(notice)
}
