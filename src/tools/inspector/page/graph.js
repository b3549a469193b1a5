/* lockstep inspector: automatic layout (elkjs, served locally) and SVG drawing of
 * statecharts and the task DAG. Exposes window.LockstepGraph. No external resources. */
;(function () {
  'use strict'
  const SVG = 'http://www.w3.org/2000/svg'
  const elk = new window.ELK()
  const ctx = document.createElement('canvas').getContext('2d')
  const FONT_STATE = '600 12px system-ui, sans-serif'
  const FONT_EDGE = '10.5px system-ui, sans-serif'

  function measure(text, font) {
    ctx.font = font
    return Math.ceil(ctx.measureText(text).width)
  }

  function el(tag, attrs, parent) {
    const node = document.createElementNS(SVG, tag)
    if (attrs) for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v))
    if (parent) parent.appendChild(node)
    return node
  }

  function arrow(parent, from, to, size) {
    const dx = to.x - from.x
    const dy = to.y - from.y
    const len = Math.hypot(dx, dy) || 1
    const ux = dx / len
    const uy = dy / len
    const bx = to.x - ux * size
    const by = to.y - uy * size
    const points = [
      [to.x, to.y],
      [bx - uy * size * 0.5, by + ux * size * 0.5],
      [bx + uy * size * 0.5, by - ux * size * 0.5],
    ]
    el('polygon', { points: points.map((p) => p.join(',')).join(' ') }, parent)
  }

  function drawSections(g, sections, off) {
    for (const s of sections || []) {
      const pts = [s.startPoint, ...(s.bendPoints || []), s.endPoint].map((p) => ({ x: p.x + off.x, y: p.y + off.y }))
      el('path', { d: pts.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ') }, g)
      arrow(g, pts[pts.length - 2], pts[pts.length - 1], 7)
    }
  }

  /** Absolute positions of every laid-out node (ELK gives them relative to their parent). */
  function absolute(root) {
    const pos = new Map()
    pos.set(root.id, { x: 0, y: 0, w: root.width, h: root.height, node: root })
    const walk = (node, ox, oy) => {
      for (const child of node.children || []) {
        const x = ox + child.x
        const y = oy + child.y
        pos.set(child.id, { x, y, w: child.width, h: child.height, node: child })
        walk(child, x, y)
      }
    }
    walk(root, 0, 0)
    return pos
  }

  const guardsOf = (edge) => {
    const guards = []
    for (const b of edge.branches) if (b.guard && !guards.includes(b.guard)) guards.push(b.guard)
    return guards
  }
  /** One line per transition: `EVENT [guard | guard]` (targetless ones become rows inside their state). */
  const lineOf = (edge) => {
    const guards = guardsOf(edge)
    return `${edge.event}${guards.length ? ` [${guards.join(' | ')}]` : ''}`
  }

  function branchTitle(edge) {
    return edge.branches
      .map((b) => {
        const parts = [`${edge.event}${b.guard ? ` [${b.guard}]` : ''}${edge.targetless ? ' (no state change)' : ''}`]
        if (b.kinds.length) parts.push(`journal: ${b.kinds.join(', ')}`)
        if (b.note) parts.push(b.note)
        if (b.guardSource) parts.push(`guard: ${b.guardSource}`)
        const acts = b.actions.filter((a) => !a.startsWith('journal('))
        if (acts.length) parts.push(`actions: ${acts.join(', ')}`)
        return parts.join('\n  ')
      })
      .join('\n')
  }

  const ROW = 14
  const HEAD = 30

  /**
   * Lay out and draw a statechart (from /api/machines/:id) into `container`: states (with
   * their targetless transitions as rows inside them), transitions between states as
   * edges labelled `EVENT [guard]` (several events between the same two states share one
   * edge). Returns handles to highlight the current state, a past state and the
   * transitions a journal step took.
   */
  async function drawStatechart(container, chart) {
    const root = chart.nodes.find((n) => n.parent === null)
    const kids = new Map()
    for (const n of chart.nodes) {
      if (n.parent === null) continue
      if (!kids.has(n.parent)) kids.set(n.parent, [])
      kids.get(n.parent).push(n)
    }
    const ANY = '__any'
    const vid = (id) => (id === root.id ? ANY : id)
    // Targetless transitions: rows of their state. Others: grouped by (source, target).
    const rows = new Map()
    const visual = new Map()
    for (const e of chart.edges) {
      if (e.targetless) {
        const key = vid(e.source)
        if (!rows.has(key)) rows.set(key, [])
        rows.get(key).push(e)
        continue
      }
      const key = `${vid(e.source)}->${e.target}`
      if (!visual.has(key)) visual.set(key, { id: `v${visual.size}`, source: vid(e.source), target: e.target, edges: [] })
      visual.get(key).edges.push(e)
    }
    const rowWidth = (id) => Math.max(0, ...(rows.get(id) || []).map((e) => measure(lineOf(e), FONT_EDGE)))
    const build = (n) => {
      const children = kids.get(n.id) || []
      const r = (rows.get(n.id) || []).length
      const node = { id: n.id }
      if (children.length) {
        node.children = children.map(build)
        if (n.initial) node.children.unshift({ id: `${n.id}::init`, width: 10, height: 10 })
        node.layoutOptions = { 'elk.padding': `[top=${HEAD + r * ROW + (r ? 6 : 0)},left=14,bottom=14,right=14]`, 'elk.nodeSize.minimum': `(${Math.max(measure(n.key, FONT_STATE), rowWidth(n.id)) + 28}, 40)`, 'elk.nodeSize.constraints': 'MINIMUM_SIZE' }
      } else {
        node.width = Math.max(74, measure(n.key, FONT_STATE) + 30, rowWidth(n.id) + 20)
        node.height = r ? HEAD + r * ROW + 6 : 34
      }
      return node
    }
    const top = (kids.get(root.id) || []).map(build)
    const children = [{ id: '__init', width: 12, height: 12 }, ...top]
    if (rows.has(ANY) || [...visual.values()].some((v) => v.source === ANY)) {
      const r = (rows.get(ANY) || []).length
      children.push({ id: ANY, width: Math.max(measure('any state', FONT_STATE) + 30, rowWidth(ANY) + 20), height: r ? HEAD + r * ROW + 6 : 34 })
    }
    const edges = []
    const initialNode = chart.nodes.find((n) => n.path === chart.initial)
    if (initialNode) edges.push({ id: '__init_e', sources: ['__init'], targets: [initialNode.id] })
    for (const n of chart.nodes) {
      if (n.parent !== null && (kids.get(n.id) || []).length && n.initial) {
        const target = chart.nodes.find((c) => c.path === n.initial)
        if (target) edges.push({ id: `${n.id}::init_e`, sources: [`${n.id}::init`], targets: [target.id] })
      }
    }
    for (const v of visual.values()) {
      const lines = v.edges.map(lineOf)
      edges.push({
        id: v.id,
        sources: [v.source],
        targets: [v.target],
        labels: [{ text: lines.join('\n'), width: Math.max(...lines.map((l) => measure(l, FONT_EDGE))) + 6, height: lines.length * 13 + 2 }],
      })
    }
    const graph = {
      id: '__root',
      layoutOptions: {
        'elk.algorithm': 'layered',
        'elk.direction': 'DOWN',
        'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
        'elk.layered.cycleBreaking.strategy': 'DEPTH_FIRST',
        'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
        'elk.layered.spacing.nodeNodeBetweenLayers': '34',
        'elk.spacing.nodeNode': '28',
        'elk.spacing.edgeLabel': '2',
        'elk.spacing.edgeEdge': '10',
        'elk.layered.spacing.edgeNodeBetweenLayers': '14',
        'elk.layered.spacing.edgeEdgeBetweenLayers': '8',
        'elk.edgeLabels.placement': 'CENTER',
        'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
        'elk.padding': '[top=14,left=14,bottom=14,right=14]',
      },
      children,
      edges,
    }
    const laid = await elk.layout(graph)
    const pos = absolute(laid)
    container.textContent = ''
    const W = Math.ceil(laid.width)
    const H = Math.ceil(laid.height)
    const svg = el('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'statechart', role: 'img', 'aria-label': `statechart of ${chart.machineId}`, 'data-natural-width': W }, container)
    const statesLayer = el('g', { class: 'states' }, svg)
    const edgesLayer = el('g', { class: 'edges' }, svg)
    const byId = new Map(chart.nodes.map((n) => [n.id, n]))
    const nodeEls = new Map()
    const lineEls = new Map() // chart edge id -> [svg elements]
    const groupOf = new Map() // chart edge id -> visual edge <g>
    const depth = (id) => {
      let d = 0
      for (let n = byId.get(id); n && n.parent; n = byId.get(n.parent)) d++
      return d
    }
    const order = [...pos.entries()].filter(([id]) => id !== '__root').sort((a, b) => depth(a[0]) - depth(b[0]))
    for (const [id, p] of order) {
      if (id === '__init' || id.endsWith('::init')) {
        el('circle', { cx: p.x + p.w / 2, cy: p.y + p.h / 2, r: Math.min(p.w, p.h) / 2, class: 'initial' }, statesLayer)
        continue
      }
      const n = byId.get(id)
      const compound = !!(kids.get(id) || []).length
      const cls = ['state', compound ? 'compound' : 'atomic', n && n.type === 'final' ? 'final' : '', n && n.transient ? 'transient' : '', id === ANY ? 'any' : '']
      const g = el('g', { class: cls.filter(Boolean).join(' '), 'data-id': id, 'data-path': n ? n.path : '' }, statesLayer)
      el('rect', { x: p.x, y: p.y, width: p.w, height: p.h, rx: compound ? 10 : 8 }, g)
      if (n && n.type === 'final') el('rect', { x: p.x + 3, y: p.y + 3, width: p.w - 6, height: p.h - 6, rx: 6, fill: 'none', class: 'inner' }, g)
      const own = rows.get(id) || []
      const label = id === ANY ? 'any state' : n.key
      const t = el('text', compound || own.length ? { x: p.x + 10, y: p.y + 19 } : { x: p.x + p.w / 2, y: p.y + p.h / 2 + 4, 'text-anchor': 'middle' }, g)
      t.textContent = label
      own.forEach((e, i) => {
        const row = el('text', { x: p.x + 10, y: p.y + HEAD + i * ROW + 6, class: 'row', 'data-edge': e.id }, g)
        row.textContent = lineOf(e)
        el('title', null, row).textContent = branchTitle(e)
        lineEls.set(e.id, [row])
      })
      if (own.length) el('line', { x1: p.x, x2: p.x + p.w, y1: p.y + 26, y2: p.y + 26, class: 'sep' }, g)
      el('title', null, g).textContent = n
        ? `${n.path || n.id}${n.entry.length ? `\nentry: ${n.entry.join(', ')}` : ''}${n.exit.length ? `\nexit: ${n.exit.join(', ')}` : ''}${n.transient ? '\n(transient: leaves at once)' : ''}`
        : 'transitions valid in any state'
      if (n) nodeEls.set(n.path, g)
    }

    const visualById = new Map([...visual.values()].map((v) => [v.id, v]))
    for (const e of laid.edges || []) {
      const off = pos.get(e.container || '__root') || { x: 0, y: 0 }
      const v = visualById.get(e.id)
      const g = el('g', { class: v ? 'edge' : 'edge init', 'data-id': e.id }, edgesLayer)
      drawSections(g, e.sections, off)
      for (const l of e.labels || []) {
        const x = off.x + l.x
        const y = off.y + l.y
        el('rect', { x: x - 2, y: y - 1, width: l.width + 2, height: l.height, rx: 3, class: 'lbg' }, g)
        const text = el('text', { x, y: y + 10 }, g)
        v.edges.forEach((ce, i) => {
          const span = el('tspan', { x: x + 1, dy: i === 0 ? 0 : 13, 'data-edge': ce.id }, text)
          span.textContent = lineOf(ce)
          lineEls.set(ce.id, [span])
          groupOf.set(ce.id, g)
        })
      }
      if (v) el('title', null, g).textContent = v.edges.map(branchTitle).join('\n')
    }

    const pathsOf = (path) => {
      // A nested state highlights its ancestors too: `active.streaming` -> active, active.streaming.
      const parts = path ? path.split('.') : []
      const out = []
      for (let i = 1; i <= parts.length; i++) out.push(parts.slice(0, i).join('.'))
      return out
    }
    return {
      svg,
      setCurrent(path) {
        for (const g of svg.querySelectorAll('.state.current')) g.classList.remove('current')
        for (const p of pathsOf(path)) nodeEls.get(p)?.classList.add('current')
      },
      setPast(path, edgeIds) {
        for (const g of svg.querySelectorAll('.past, .taken')) g.classList.remove('past', 'taken')
        if (path === null) return
        for (const p of pathsOf(path)) nodeEls.get(p)?.classList.add('past')
        for (const id of edgeIds || []) {
          for (const line of lineEls.get(id) || []) line.classList.add('taken')
          const g = groupOf.get(id)
          if (g) {
            g.classList.add('taken')
            g.parentNode.appendChild(g) // on top
          }
        }
      },
    }
  }

  const subtitle = (t) => {
    const text = `${t.state === t.status ? t.status : `${t.status} (${t.state})`} · ${t.id}`
    return text.length > 34 ? `${text.slice(0, 33)}…` : text
  }

  /** Lay out and draw the task DAG (from /api/graph). */
  async function drawDag(container, data, onOpen) {
    const NODE_W = 200
    const NODE_H = 42
    const graph = {
      id: '__root',
      layoutOptions: {
        'elk.algorithm': 'layered',
        'elk.direction': 'RIGHT',
        'elk.layered.spacing.nodeNodeBetweenLayers': '60',
        'elk.spacing.nodeNode': '16',
        'elk.padding': '[top=16,left=16,bottom=16,right=16]',
        'elk.layered.thoroughness': data.nodes.length > 400 ? '1' : '7',
      },
      children: data.nodes.map((n) => ({ id: n.id, width: NODE_W, height: NODE_H })),
      edges: data.edges.map((e, i) => ({ id: `d${i}`, sources: [e.parent], targets: [e.child] })),
    }
    const laid = await elk.layout(graph)
    container.textContent = ''
    const W = Math.ceil(laid.width)
    const H = Math.ceil(laid.height)
    const svg = el('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'dag-svg' }, container)
    const edgesLayer = el('g', null, svg)
    const nodesLayer = el('g', null, svg)
    for (const e of laid.edges || []) {
      const g = el('g', { class: 'dedge' }, edgesLayer)
      drawSections(g, e.sections, { x: 0, y: 0 })
    }
    const byId = new Map(data.nodes.map((n) => [n.id, n]))
    const els = new Map()
    for (const c of laid.children || []) {
      const n = byId.get(c.id)
      const g = el('g', { class: `tnode s-${n.status}`, 'data-id': n.id, 'data-status': n.status }, nodesLayer)
      el('rect', { x: c.x, y: c.y, width: c.width, height: c.height, rx: 7 }, g)
      el('rect', { x: c.x, y: c.y, width: 5, height: c.height, rx: 2, class: 'band' }, g)
      const title = el('text', { x: c.x + 12, y: c.y + 17 }, g)
      title.textContent = n.title.length > 26 ? `${n.title.slice(0, 25)}…` : n.title
      const sub = el('text', { x: c.x + 12, y: c.y + 32, class: 'sub' }, g)
      sub.textContent = subtitle(n)
      const tip = el('title', null, g)
      tip.textContent = `${n.title}\n${n.id} (${n.state})`
      g.addEventListener('click', () => onOpen(n.id))
      els.set(n.id, { g, sub, node: n })
    }
    return {
      svg,
      update(task) {
        const hit = els.get(task.id)
        if (!hit) return false
        hit.g.setAttribute('class', `tnode s-${task.status} flash`)
        hit.g.setAttribute('data-status', task.status)
        hit.sub.textContent = subtitle(task)
        return true
      },
    }
  }

  window.LockstepGraph = { drawStatechart, drawDag }
})()
