/**
 * Summarize a V8 CPU profile (from `npm run bench -- --profile`, or any `node --cpu-prof`):
 *
 *   node dist/bench/profile-summary.js <file.cpuprofile> [--per 2200] [--top 40] [--under runCycles]
 *
 * Prints functions by inclusive and by self time. `--under NAME` keeps only samples
 * with NAME on the stack (e.g. `runCycles`: the claim→complete loop, without start-up);
 * `--per N` adds a "ms per op" column (total ms / N), e.g. cycles run by that process
 * (timed cycles + warm-up cycles).
 */
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { parseArgs } from 'node:util'
import { renderTable } from './report.js'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

/** A readable, stable name for a frame: function, file and line. */
function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame
  const file = url ? `${basename(url)}:${lineNumber + 1}` : ''
  return `${functionName || '(anonymous)'}${file ? ` ${file}` : ''}`
}

function summarizeProfile(profile: Profile, under?: string) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)

  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let total = 0
  profile.samples.forEach((leaf, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000
    const stack: string[] = []
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) stack.push(frameName(byId.get(id)!))
    if (under && !stack.some((name) => name.startsWith(`${under} `))) return
    total += ms
    self.set(stack[0]!, (self.get(stack[0]!) ?? 0) + ms)
    // A recursive function counts once per sample.
    for (const name of new Set(stack)) inclusive.set(name, (inclusive.get(name) ?? 0) + ms)
  })
  return { total, self, inclusive }
}

function table(title: string, times: Map<string, number>, total: number, top: number, per?: number): string {
  const rows = [...times.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, ms]) => [name, ms.toFixed(1), `${((100 * ms) / total).toFixed(1)}%`, ...(per ? [(ms / per).toFixed(4)] : [])])
  return `${title}\n${renderTable(['function', 'ms', '%', ...(per ? ['ms/op'] : [])], rows)}`
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { per: { type: 'string' }, top: { type: 'string', default: '40' }, under: { type: 'string' } },
  })
  if (positionals.length !== 1) throw new Error('usage: profile-summary <file.cpuprofile> [--per N] [--top N] [--under NAME]')
  const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile
  const per = values.per ? Number(values.per) : undefined
  const top = Number(values.top)
  const { total, self, inclusive } = summarizeProfile(profile, values.under)
  console.log(`${positionals[0]}: ${total.toFixed(1)} ms sampled${values.under ? ` under ${values.under}` : ''}\n`)
  console.log(table('inclusive time (the function and everything it calls)', inclusive, total, top, per))
  console.log()
  console.log(table('self time', self, total, top, per))
}

main()
