/** The printed table and the JSON file: the same rows, two renderings. */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

export interface Cell {
  /** The reported figure: median over repetitions (rates) or over pooled samples (latencies). */
  value: number
  /** Per-repetition values, for rates: the spread shows how noisy the machine was. */
  repetitions?: number[]
}

export interface Row {
  id: string
  label: string
  unit: 'tasks/s' | 'cycles/s' | 'ms'
  /** Which direction is good; the ratio is always lockstep / baseline. */
  better: 'higher' | 'lower'
  lockstep: Cell
  baseline: Cell
  ratio: number
  /** SQLite rows issue 11 measures against plainjob: its figure, and lockstep / plainjob. */
  plainjob?: Cell
  plainjobRatio?: number
  /** What the two sides of this row run, when that is not the obvious same work: printed as a footnote. */
  note?: string
}

export interface Section {
  synchronous: string
  rows: Row[]
  /** Extra figures for the JSON only (complete latencies, file row counts, ...). */
  details: Record<string, unknown>
}

export function row(id: string, label: string, unit: Row['unit'], lockstep: Cell, baseline: Cell, note?: string): Row {
  const r: Row = { id, label, unit, better: unit === 'ms' ? 'lower' : 'higher', lockstep, baseline, ratio: lockstep.value / baseline.value }
  if (note) r.note = note
  return r
}

/** The row with plainjob's figure beside it (a third column in the table). */
export function withPlainjob(r: Row, plainjob: Cell): Row {
  return { ...r, plainjob, plainjobRatio: r.lockstep.value / plainjob.value }
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

function formatValue(value: number, unit: Row['unit']): string {
  if (!Number.isFinite(value)) return 'n/a'
  return unit === 'ms' ? value.toFixed(3) : integer.format(value)
}

function formatCell(cell: Cell, unit: Row['unit']): string {
  const value = formatValue(cell.value, unit)
  const reps = cell.repetitions
  if (!reps || reps.length < 2) return value
  return `${value} (${formatValue(Math.min(...reps), unit)}-${formatValue(Math.max(...reps), unit)})`
}

/** Fixed-width text table; the first column left-aligned, the figures right-aligned. */
export function renderTable(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)))
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('   '), ...body.map(line)].join('\n')
}

/** The table, then its notes: rows sharing a note share its number. */
export function renderSection(section: Section): string {
  const notes: string[] = []
  const marker = (note: string | undefined) => {
    if (!note) return ''
    if (!notes.includes(note)) notes.push(note)
    return ` [${notes.indexOf(note) + 1}]`
  }
  // plainjob's columns only when some row has its figure (the SQLite section), blank elsewhere.
  const plainjob = section.rows.some((r) => r.plainjob)
  const body = section.rows.map((r) => [
    `${r.label} (${r.unit})${marker(r.note)}`,
    formatCell(r.lockstep, r.unit),
    formatCell(r.baseline, r.unit),
    `${r.ratio.toFixed(2)}x`,
    ...(plainjob ? (r.plainjob ? [formatCell(r.plainjob, r.unit), `${r.plainjobRatio!.toFixed(2)}x`] : ['', '']) : []),
  ])
  const header = ['scenario', 'lockstep', 'baseline', 'lockstep/baseline', ...(plainjob ? ['plainjob', 'lockstep/plainjob'] : [])]
  const table = renderTable(header, body)
  return [table, ...notes.map((note, i) => wrap(`[${i + 1}] ${note}`, 100, '    '))].join('\n')
}

/** Greedy word wrap; continuation lines indented. */
function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line)
      line = indent + word
    } else line = line ? `${line} ${word}` : word
  }
  if (line) lines.push(line)
  return lines.join('\n')
}

export function writeJson(path: string, data: unknown): void {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`)
}
