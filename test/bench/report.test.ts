/**
 * The bench table's plainjob columns (issue 11): present only where some row has
 * plainjob's figure, blank on the rows it does not run, ratio lockstep / plainjob.
 */
import { describe, expect, it } from 'vitest'
import { renderSection, row, withPlainjob, type Section } from '../../bench/report.js'

const section = (rows: Section['rows']): Section => ({ synchronous: 'NORMAL', rows, details: {} })

describe('bench table', () => {
  it('has no plainjob columns when no row has its figure (the PostgreSQL section)', () => {
    const text = renderSection(section([row('create', 'create', 'tasks/s', { value: 100 }, { value: 200 })]))
    expect(text.split('\n')[0]).not.toContain('plainjob')
  })

  it('prints plainjob and lockstep/plainjob beside the rows that have it, blank beside the others', () => {
    const pool = withPlainjob(row('pool_1p', 'worker pool, 1 process', 'tasks/s', { value: 3000 }, { value: 9000 }), { value: 12000 })
    expect(pool.plainjobRatio).toBe(0.25)
    const cycles = row('cycles_1p', 'claim→complete, 1 process', 'cycles/s', { value: 3000 }, { value: 6000 })
    const [header, , poolLine, cyclesLine] = renderSection(section([pool, cycles])).split('\n')
    expect(header).toMatch(/lockstep\/baseline\s+plainjob\s+lockstep\/plainjob$/)
    expect(poolLine).toMatch(/0\.33x\s+12,000\s+0\.25x$/)
    expect(cyclesLine).toMatch(/0\.50x\s*$/)
  })
})
