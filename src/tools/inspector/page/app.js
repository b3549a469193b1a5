/* lockstep inspector page: board, DAG, actor (statechart + journal + time travel) and
 * sessions views, kept live by the server's /events stream. Plain JS, no build step, no
 * external resources. Every piece of data is inserted as text (never as HTML). */
;(function () {
  'use strict'
  const TOKEN = new URLSearchParams(location.search).get('token')
  const TASK_STATUSES = ['todo', 'ready', 'running', 'blocked', 'done', 'failed', 'cancelled', 'archived']
  const SESSION_STATUSES = ['idle', 'active', 'exhausted', 'archived', 'deleted']
  const PAGE = 50
  const view = document.getElementById('view')
  const countsEl = document.getElementById('counts')
  const liveEl = document.getElementById('live')

  // ---- helpers ----

  function url(path, params) {
    const u = new URL(path, location.origin)
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v))
    if (TOKEN) u.searchParams.set('token', TOKEN)
    return u.pathname + u.search
  }

  async function api(path, params) {
    const res = await fetch(url(path, params), { headers: { Accept: 'application/json' } })
    const body = await res.json().catch(() => null)
    if (!res.ok) {
      const error = new Error((body && body.error && body.error.message) || res.statusText)
      error.status = res.status
      error.code = body && body.error && body.error.code
      throw error
    }
    return body
  }

  /** h('div', { class: 'x', text: 'y', onclick: fn, 'data-id': 1 }, ...children) */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag)
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue
      if (k === 'text') node.textContent = String(v)
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v)
      else node.setAttribute(k, v === true ? '' : String(v))
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue
      node.appendChild(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child)
    }
    return node
  }

  const enc = encodeURIComponent
  const pad = (n, w = 2) => String(n).padStart(w, '0')
  function clock(ms) {
    if (ms === null || ms === undefined) return ''
    const d = new Date(ms)
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  }
  function when(ms) {
    if (ms === null || ms === undefined) return '—'
    const d = new Date(ms)
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`
  }
  function inWords(ms) {
    const s = Math.round(ms / 1000)
    if (Math.abs(s) < 90) return `${s} s`
    const m = Math.round(s / 60)
    if (Math.abs(m) < 90) return `${m} min`
    return `${Math.round(m / 60)} h`
  }
  const pill = (status) => h('span', { class: `pill s-${status}`, text: status })
  const json = (value) => h('pre', { class: 'json', text: JSON.stringify(value, null, 2) })
  function debounce(fn, ms) {
    let t = null
    return (...args) => {
      clearTimeout(t)
      t = setTimeout(() => fn(...args), ms)
    }
  }
  function likeMatch(task, q) {
    if (!q) return true
    return task.id === q || task.title.toLowerCase().includes(q.toLowerCase())
  }

  // ---- live connection, summary ----

  let current = null
  let summary = null

  function setLive(on, text) {
    liveEl.className = `live ${on ? 'on' : 'off'}`
    liveEl.querySelector('span').textContent = text || (on ? 'live' : 'reconnecting')
  }

  function setSummary(s) {
    summary = s
    countsEl.textContent = ''
    for (const status of TASK_STATUSES) {
      const n = s.tasks[status] || 0
      if (n === 0 && (status === 'archived' || status === 'cancelled')) continue
      countsEl.appendChild(h('span', { class: `c s-${status}`, 'data-status': status, title: `${n} task(s) ${status}` }, h('i', { class: 'dot' }), status, ' ', h('b', { text: n })))
    }
    const active = (s.sessions.active || 0) + (s.sessions.exhausted || 0)
    countsEl.appendChild(h('span', { class: 'c', title: 'sessions' }, 'sessions ', h('b', { text: s.totalSessions }), active ? ` (${active} busy)` : ''))
    if (current && current.onSummary) current.onSummary(s)
  }

  function connect() {
    const es = new EventSource(url('/events'))
    es.addEventListener('hello', (m) => {
      setLive(true)
      setSummary(JSON.parse(m.data).summary)
    })
    es.addEventListener('entry', (m) => {
      const entry = JSON.parse(m.data)
      if (current && current.onEntry) current.onEntry(entry)
    })
    es.addEventListener('summary', (m) => setSummary(JSON.parse(m.data)))
    es.addEventListener('resync', () => current && current.onResync && current.onResync())
    es.onopen = () => setLive(true)
    es.onerror = () => setLive(false) // EventSource reconnects by itself (Last-Event-ID resumes)
  }

  // ---- router ----

  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/board'
    const [path, query] = raw.split('?')
    return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || '') }
  }

  function setHashParams(params) {
    const { parts } = parseHash()
    const q = new URLSearchParams()
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v)
    const next = `#/${parts.map(enc).join('/')}${q.toString() ? `?${q}` : ''}`
    history.replaceState(null, '', next)
  }

  async function route() {
    if (current && current.destroy) current.destroy()
    current = null
    const { parts, params } = parseHash()
    const tab = parts[0] || 'board'
    for (const a of document.querySelectorAll('.tabs a')) a.classList.toggle('on', a.dataset.tab === tab || (tab === 'actor' && a.dataset.tab === 'board'))
    view.textContent = ''
    try {
      if (tab === 'graph') current = await graphView(params)
      else if (tab === 'sessions') current = await sessionsView(params)
      else if (tab === 'actor' && parts[1]) current = await actorView(parts[1], params)
      else current = await boardView(params)
      if (summary && current && current.onSummary) current.onSummary(summary)
    } catch (error) {
      view.appendChild(h('div', { class: 'panel err', text: `${error.code || 'ERROR'}: ${error.message}` }))
    }
  }

  // ---- board ----

  async function boardView(params) {
    const filters = { assignee: params.get('assignee') || '', tenant: params.get('tenant') || '', q: params.get('q') || '' }
    const hidden = new Set((params.get('hide') || 'archived').split(',').filter(Boolean))
    const tasks = new Map() // id -> { task, el, col }
    const columns = new Map()
    const filtered = () => !!(filters.assignee || filters.tenant || filters.q)

    const input = (name, placeholder) =>
      h('input', {
        name,
        placeholder,
        value: filters[name],
        oninput: debounce((ev) => {
          filters[name] = ev.target.value.trim()
          saveParams()
          reload()
        }, 300),
      })
    const chips = h('div', { class: 'chips' })
    for (const status of TASK_STATUSES) {
      const chip = h('span', { class: `chip s-${status}${hidden.has(status) ? ' off' : ''}`, 'data-status': status }, h('i', { class: 'dot' }), status)
      chip.addEventListener('click', () => {
        if (hidden.has(status)) hidden.delete(status)
        else hidden.add(status)
        chip.classList.toggle('off')
        saveParams()
        buildColumns()
        reload()
      })
      chips.appendChild(chip)
    }
    const saveParams = () => setHashParams({ ...filters, hide: [...hidden].join(',') || 'none' })
    const bar = h('div', { class: 'bar' }, input('q', 'search title or id'), input('assignee', 'assignee'), input('tenant', 'tenant'), h('span', { class: 'grow' }), chips)
    const board = h('div', { class: 'board', id: 'board' })
    const feedList = h('ol')
    const feed = h('aside', { class: 'feed' }, h('h3', { text: 'Live journal' }), feedList)
    view.append(bar, h('div', { class: 'board-wrap' }, board, feed))

    function buildColumns() {
      board.textContent = ''
      columns.clear()
      tasks.clear()
      for (const status of TASK_STATUSES) {
        if (hidden.has(status)) continue
        const count = h('span', { class: 'count', text: '…' })
        const cards = h('div', { class: 'cards' })
        const more = h('button', { class: 'more', text: 'load more', hidden: true })
        const col = { status, el: h('section', { class: `col s-${status}`, 'data-status': status }, h('h3', null, h('i', { class: 'dot' }), status, count), cards, more), count, cards, more, ns: [], next: null, token: 0, loaded: false }
        more.addEventListener('click', () => load(col, true))
        columns.set(status, col)
        board.appendChild(col.el)
      }
    }

    function cardOf(t) {
      const el = h('div', { class: `card s-${t.status}`, 'data-id': t.id, onclick: () => (location.hash = `#/actor/${enc(t.id)}`) })
      fillCard(el, t)
      return el
    }
    function fillCard(el, t) {
      el.className = `card s-${t.status}`
      el.textContent = ''
      el.append(
        h('div', { class: 't', title: t.title, text: t.title }),
        h('div', { class: 'm' }, h('code', { text: t.id }), t.state !== t.status ? h('span', { text: t.state }) : null, t.assignee ? h('span', { text: `@${t.assignee}` }) : null, t.tenant ? h('span', { text: `#${t.tenant}` }) : null, t.priority ? h('span', { text: `p${t.priority}` }) : null, t.attempts ? h('span', { text: `×${t.attempts}` }) : null),
      )
    }

    function insertSorted(col, t, el) {
      // Cards are in creation order (n); a card past the loaded page waits for "load more".
      let lo = 0
      let hi = col.ns.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (col.ns[mid] < t.n) lo = mid + 1
        else hi = mid
      }
      col.ns.splice(lo, 0, t.n)
      col.cards.insertBefore(el, col.cards.children[lo] || null)
    }
    function removeFrom(col, t, el) {
      const i = col.ns.indexOf(t.n)
      if (i >= 0) col.ns.splice(i, 1)
      el.remove()
    }

    async function load(col, more) {
      const token = ++col.token
      const page = await api('/api/tasks', { status: col.status, ...filters, after: more ? col.next : undefined, limit: PAGE })
      if (token !== col.token || columns.get(col.status) !== col) return
      if (!more) {
        // The page is authoritative for this column: drop what live updates put there meanwhile.
        for (const [id, rec] of tasks) if (rec.col === col) tasks.delete(id)
        col.cards.textContent = ''
        col.ns = []
        col.loaded = true
      }
      for (const t of page.tasks) {
        if (tasks.has(t.id)) continue
        const el = cardOf(t)
        tasks.set(t.id, { task: t, el, col })
        col.ns.push(t.n)
        col.cards.appendChild(el)
      }
      col.next = page.next
      col.more.hidden = page.next === null
      if (!col.ns.length) col.cards.appendChild(h('div', { class: 'empty', text: 'none' }))
      else col.cards.querySelector('.empty')?.remove()
      updateCount(col)
    }

    function updateCount(col) {
      if (!filtered() && summary) col.count.textContent = String(summary.tasks[col.status] || 0)
      else col.count.textContent = `${col.ns.length}${col.next ? '+' : ''}`
    }

    function reload() {
      tasks.clear()
      for (const col of columns.values()) load(col, false).catch(showError)
    }

    function place(t) {
      const known = tasks.get(t.id)
      const matches = (!filters.assignee || t.assignee === filters.assignee) && (!filters.tenant || t.tenant === filters.tenant) && likeMatch(t, filters.q)
      const target = matches ? columns.get(t.status) : undefined
      // Only place a card where the loaded page reaches (or everything is loaded).
      const fits = target && target.loaded && (target.next === null || (target.ns.length > 0 && t.n < target.ns[target.ns.length - 1]))
      if (known) {
        if (known.col === target && fits) {
          fillCard(known.el, t)
          known.task = t
          return
        }
        removeFrom(known.col, known.task, known.el)
        if (!known.col.ns.length) known.col.cards.appendChild(h('div', { class: 'empty', text: 'none' }))
        if (filtered()) updateCount(known.col)
        tasks.delete(t.id)
      }
      if (!fits) return
      const el = cardOf(t)
      target.cards.querySelector('.empty')?.remove()
      insertSorted(target, t, el)
      tasks.set(t.id, { task: t, el, col: target })
      el.classList.add('flash')
      if (filtered()) updateCount(target)
    }

    function addFeed(e) {
      const li = h('li', { 'data-seq': e.seq }, h('span', { class: 'seq', text: `#${e.seq}` }), h('b', { text: e.kind }), h('a', { href: `#/actor/${enc(e.actorId)}`, text: (e.task && e.task.title) || e.actorId, title: e.actorId }), h('span', { class: 'muted', text: e.stateAfter }))
      feedList.insertBefore(li, feedList.firstChild)
      while (feedList.children.length > 60) feedList.lastChild.remove()
    }

    buildColumns()
    reload()
    api('/api/journal', { limit: 30 })
      .then((page) => {
        for (const e of page.entries) addFeed(e)
      })
      .catch(showError)

    return {
      onEntry(e) {
        addFeed(e)
        if (e.task) place(e.task)
      },
      onSummary() {
        for (const col of columns.values()) updateCount(col)
      },
      onResync: reload,
    }
  }

  function showError(error) {
    console.error(error)
    const box = h('div', { class: 'panel err', text: `${error.code || 'ERROR'}: ${error.message}` })
    view.prepend(box)
    setTimeout(() => box.remove(), 6000)
  }

  // ---- DAG ----

  async function graphView(params) {
    const f = { status: params.get('status') || '', tenant: params.get('tenant') || '', assignee: params.get('assignee') || '', q: params.get('q') || '', focus: params.get('focus') || '', limit: params.get('limit') || '300' }
    const status = h('select', { name: 'status' }, h('option', { value: '', text: 'any status' }), ...TASK_STATUSES.map((s) => h('option', { value: s, text: s, selected: f.status === s })))
    const fields = {
      q: h('input', { name: 'q', placeholder: 'search', value: f.q }),
      assignee: h('input', { name: 'assignee', placeholder: 'assignee', value: f.assignee }),
      tenant: h('input', { name: 'tenant', placeholder: 'tenant', value: f.tenant }),
      focus: h('input', { name: 'focus', placeholder: 'focus: task id (ancestors + descendants)', value: f.focus, size: 30 }),
      limit: h('input', { name: 'limit', type: 'number', min: 1, max: 2000, value: f.limit, style: 'width:80px' }),
    }
    const info = h('span', { class: 'note' })
    const fresh = h('button', { text: 'redraw', hidden: true })
    const box = h('div', { class: 'dag', id: 'dag' })
    view.append(h('div', { class: 'bar' }, fields.q, fields.assignee, fields.tenant, status, fields.focus, h('label', { text: 'max' }), fields.limit, h('button', { text: 'lay out', onclick: draw }), fresh, h('span', { class: 'grow' }), info), box)
    fresh.addEventListener('click', draw)
    let dag = null
    let added = 0
    async function draw() {
      for (const k of Object.keys(fields)) f[k] = fields[k].value.trim()
      f.status = status.value
      setHashParams(f)
      info.textContent = 'laying out…'
      fresh.hidden = true
      added = 0
      try {
        const data = await api('/api/graph', f)
        if (!data.nodes.length) {
          box.textContent = ''
          box.appendChild(h('div', { class: 'empty', text: 'no tasks match' }))
          info.textContent = ''
          return
        }
        dag = await window.LockstepGraph.drawDag(box, data, (id) => (location.hash = `#/actor/${enc(id)}`))
        info.textContent = `${data.nodes.length} tasks, ${data.edges.length} links${data.truncated ? ' (more exist: narrow the filter or raise max)' : ''}${data.externalParents ? `, ${data.externalParents} parent links outside the view` : ''}`
      } catch (error) {
        info.textContent = `${error.code || 'ERROR'}: ${error.message}`
      }
    }
    await draw()
    return {
      onEntry(e) {
        if (!e.task || !dag) return
        if (!dag.update(e.task) && e.kind === 'created') {
          added++
          fresh.hidden = false
          fresh.textContent = `redraw (${added} new)`
        }
      },
      onResync: draw,
    }
  }

  // ---- sessions ----

  async function sessionsView(params) {
    let status = params.get('status') || ''
    const select = h('select', { name: 'status' }, h('option', { value: '', text: 'any status' }), ...SESSION_STATUSES.map((s) => h('option', { value: s, text: s, selected: s === status })))
    const tbody = h('tbody')
    const more = h('button', { text: 'load more', hidden: true })
    const rows = new Map()
    let next = null
    view.append(
      h('div', { class: 'bar' }, h('label', { text: 'status' }), select),
      h('div', { class: 'panel' }, h('h3', { text: 'Sessions' }), h('table', { id: 'sessions' }, h('thead', null, h('tr', null, ...['session', 'agent', 'status', 'state', 'model', 'gen', 'fallbacks', 'updated'].map((t) => h('th', { text: t })))), tbody), more),
    )
    const row = (s) => {
      const tr = h('tr', { class: 'click', 'data-id': s.id, onclick: () => (location.hash = `#/actor/${enc(s.id)}`) })
      fill(tr, s)
      return tr
    }
    const fill = (tr, s) => {
      tr.textContent = ''
      tr.append(h('td', null, h('code', { text: s.id })), h('td', { text: s.agent || '—' }), h('td', null, pill(s.status)), h('td', null, h('code', { text: s.state })), h('td', null, h('code', { text: s.model || '' })), h('td', { text: s.generation }), h('td', { text: s.attempts }), h('td', { text: when(s.updatedAt) }))
    }
    async function load(append) {
      const page = await api('/api/sessions', { status, after: append ? next : undefined, limit: PAGE })
      if (!append) {
        tbody.textContent = ''
        rows.clear()
      }
      for (const s of page.sessions) {
        const tr = row(s)
        rows.set(s.id, tr)
        tbody.appendChild(tr)
      }
      next = page.next
      more.hidden = next === null
      if (!rows.size) tbody.appendChild(h('tr', null, h('td', { colspan: 8, class: 'empty', text: 'no sessions' })))
    }
    select.addEventListener('change', () => {
      status = select.value
      setHashParams({ status })
      load(false).catch(showError)
    })
    more.addEventListener('click', () => load(true).catch(showError))
    await load(false)
    return {
      onEntry(e) {
        if (!e.session) return
        const s = e.session
        const tr = rows.get(s.id)
        const matches = !status || s.status === status
        if (tr && matches) fill(tr, s)
        else if (tr) {
          tr.remove()
          rows.delete(s.id)
        } else if (matches && next === null) {
          tbody.querySelector('.empty')?.parentElement?.remove()
          const fresh = row(s)
          rows.set(s.id, fresh)
          tbody.appendChild(fresh)
        }
      },
      onResync: () => load(false),
    }
  }

  // ---- one actor: statechart, journal, time travel ----

  async function actorView(id, params) {
    const actor = await api(`/api/actors/${enc(id)}`)
    const chart = await api(`/api/machines/${enc(actor.machineId)}`)
    const isTask = actor.kind === 'task'
    let live = actor
    let selected = null
    let timeOffset = actor.now ? actor.now - Date.now() : 0

    const statePill = h('span')
    const stateCode = h('code')
    const head = h('div', { class: 'actor-head' }, h('a', { href: isTask ? '#/board' : '#/sessions', text: isTask ? '← board' : '← sessions' }), h('h2', { text: isTask ? actor.task.title : `session ${actor.id}` }), statePill, stateCode, h('code', { class: 'muted', text: actor.id }), isTask ? h('a', { href: `#/graph?focus=${enc(actor.id)}`, text: 'show in graph' }) : null)
    const bannerText = h('span')
    const banner = h('div', { class: 'banner', id: 'timetravel' }, bannerText, h('button', { text: 'back to live', onclick: () => unselect() }))
    const chartBox = h('div', { class: 'chart', id: 'statechart' }, h('div', { class: 'empty', text: 'laying out…' }))
    const legend = h('div', { class: 'legend' }, h('span', { style: '--sw: #dbeafe', text: 'current state' }), h('span', { style: '--sw: #fef3c7', text: 'state after the selected entry' }), h('span', { style: '--sw: #f59e0b', text: 'transition it took' }))
    const jbody = h('tbody')
    const older = h('button', { text: 'older entries', hidden: true })
    const jcount = h('span', { class: 'x muted' })
    const contextTitle = h('span', { text: 'Context' })
    const contextNote = h('div', { class: 'note' })
    const contextBox = h('div')
    const detailsBox = h('div')
    const runsBox = h('div')
    const sizeButton = h('button', { text: 'actual size', onclick: () => (sizeButton.textContent = chartBox.classList.toggle('actual') ? 'fit' : 'actual size') })
    const journalPanel = h('div', { class: 'panel' }, h('h3', null, 'Journal', jcount), h('div', { class: 'note', text: 'click an entry to see the state as it was after it' }), h('div', { class: 'journal' }, h('table', { id: 'journal' }, h('thead', null, h('tr', null, ...['seq', 'time', 'kind', 'event', 'state'].map((t) => h('th', { text: t })))), jbody)), older)
    const left = h('div', null, h('div', { class: 'panel' }, h('h3', null, `Statechart`, h('span', { class: 'x muted' }, `${chart.machineId} v${chart.version} `, sizeButton)), chartBox, legend))
    const contextPanel = h('div', { class: 'panel' }, h('h3', null, contextTitle), contextNote, contextBox)
    // A task: its journal (the time-travel control) first. A session: its chain first.
    const right = isTask ? h('div', null, journalPanel, contextPanel, detailsBox, runsBox) : h('div', null, detailsBox, journalPanel, contextPanel)
    view.append(head, banner, h('div', { class: 'actor-grid' }, left, right))

    let drawn = null
    window.LockstepGraph.drawStatechart(chartBox, chart)
      .then((d) => {
        drawn = d
        drawn.setCurrent(live.state)
        // A chart much wider than its panel is shown at actual size (scrollable), centred on the current state.
        const natural = Number(d.svg.getAttribute('width'))
        if (natural > chartBox.clientWidth * 1.5) {
          chartBox.classList.add('actual')
          sizeButton.textContent = 'fit'
          const cur = d.svg.querySelector('.state.current:not(.compound)') || d.svg.querySelector('.state.current')
          if (cur) {
            const box = cur.getBBox()
            chartBox.scrollLeft = Math.max(0, box.x + box.width / 2 - chartBox.clientWidth / 2)
            chartBox.scrollTop = Math.max(0, box.y + box.height / 2 - chartBox.clientHeight / 2)
          }
        }
        if (selected) drawn.setPast(selected.state, selected.transition ? selected.transition.edges : [])
      })
      .catch((error) => {
        chartBox.textContent = `layout failed: ${error.message}`
      })

    function renderHead() {
      statePill.textContent = ''
      statePill.appendChild(pill(live.status))
      stateCode.textContent = live.state
    }

    function renderContext() {
      contextBox.textContent = ''
      if (selected) {
        contextTitle.textContent = `Context after #${selected.seq}`
        contextNote.textContent = `${selected.fidelity === 'exact' ? 'replayed and verified' : selected.fidelity === 'approximate' ? 'replayed, approximate' : 'recorded state only'}${selected.note ? `: ${selected.note}` : ''}`
        contextBox.appendChild(selected.context ? json(selected.context) : h('div', { class: 'empty', text: 'context not available for this entry' }))
      } else {
        contextTitle.textContent = 'Context (live)'
        contextNote.textContent = ''
        contextBox.appendChild(json(live.context))
      }
    }

    function renderDetails() {
      detailsBox.textContent = ''
      runsBox.textContent = ''
      if (isTask) {
        const t = live.task
        const kv = h('dl', { class: 'kv' })
        const add = (k, v) => {
          if (v === null || v === undefined || v === '' || (Array.isArray(v) && !v.length)) return
          kv.append(h('dt', { text: k }), h('dd', null, v instanceof Node ? v : String(v)))
        }
        const links = (ids) => h('span', null, ...ids.flatMap((p, i) => [i ? ', ' : '', h('a', { href: `#/actor/${enc(p)}`, text: p })]))
        add('status', pill(live.status))
        add('state', live.state)
        add('assignee', t.assignee)
        add('tenant', t.tenant)
        add('priority', t.priority)
        add('attempts', `${t.attempts} of ${t.maxAttempts}`)
        add('worker', t.worker)
        add('run', t.runId)
        add('lease until', t.leaseExpiresAt && when(t.leaseExpiresAt))
        add('retry at', t.retryAt && when(t.retryAt))
        add('blocked', t.blockedReason)
        add('last error', t.lastError)
        add('summary', t.summary)
        add('parents', t.parents.length ? links(t.parents) : null)
        add('children', t.children.length ? links(t.children) : null)
        add('created', when(t.createdAt))
        add('updated', when(t.updatedAt))
        add('completed', t.completedAt && when(t.completedAt))
        detailsBox.appendChild(h('div', { class: 'panel', id: 'details' }, h('h3', { text: 'Task' }), kv, t.body ? h('p', { text: t.body }) : null, t.payload !== null ? h('div', null, h('div', { class: 'note', text: 'payload' }), json(t.payload)) : null, t.result !== null ? h('div', null, h('div', { class: 'note', text: 'result' }), json(t.result)) : null))
        const tb = h('tbody')
        for (const r of live.runs.items) {
          tb.appendChild(h('tr', null, h('td', null, h('code', { text: r.id })), h('td', { text: r.attempt }), h('td', { text: r.worker }), h('td', { text: clock(r.startedAt) }), h('td', { text: r.endedAt ? clock(r.endedAt) : 'open' }), h('td', null, r.outcome ? h('b', { text: r.outcome }) : '—', r.error ? h('div', { class: 'muted', text: r.error }) : null)))
        }
        runsBox.appendChild(h('div', { class: 'panel' }, h('h3', null, 'Runs', h('span', { class: 'x muted', text: `${live.runs.total}` })), live.runs.items.length ? h('table', { id: 'runs' }, h('thead', null, h('tr', null, ...['run', '#', 'worker', 'started', 'ended', 'outcome'].map((x) => h('th', { text: x })))), tb) : h('div', { class: 'empty', text: 'no runs yet' })))
      } else {
        renderSession()
      }
    }

    const chainBox = h('div', { class: 'chain', id: 'chain' })
    function renderSession() {
      const s = live.session
      const now = Date.now() + timeOffset
      chainBox.textContent = ''
      s.models.forEach((m, i) => {
        const cooling = m.coolingUntil !== null && m.coolingUntil > now
        const st = m.current ? (cooling ? 'current, cooling' : 'current') : cooling ? `cooling until ${clock(m.coolingUntil)} (${inWords(m.coolingUntil - now)})` : m.reason ? 'available (cooled)' : 'available'
        chainBox.appendChild(h('div', { class: `model${m.current ? ' current' : ''}${cooling ? ' cooling' : ' ok'}`, 'data-model': m.model }, h('span', { class: 'n', text: i + 1 }), h('span', { class: 'name', text: m.model }), m.current ? h('span', { class: 'pill s-active', text: 'current' }) : i === 0 ? h('span', { class: 'muted', text: 'primary' }) : null, h('span', { class: 'st' }, st, m.reason ? h('div', { class: 'muted', text: m.reason }) : null)))
      })
      const attempts = h('tbody')
      for (const a of s.log) attempts.appendChild(h('tr', null, h('td', { text: a.generation }), h('td', null, h('code', { text: a.model })), h('td', null, h('b', { text: a.outcome })), h('td', { text: a.reason }), h('td', { text: clock(a.at) })))
      const approvals = h('tbody')
      for (const a of s.approvals) approvals.appendChild(h('tr', null, h('td', null, h('code', { text: a.tool })), h('td', { text: a.once ? 'once' : 'always' }), h('td', { text: when(a.at) })))
      detailsBox.append(
        h('div', { class: 'panel' }, h('h3', null, 'Model chain', h('span', { class: 'x muted', text: `agent ${s.agent || '—'} · generation ${s.generation} · ${s.attempts} fallback(s)` })), chainBox, s.lastFailure ? h('p', { class: 'note', text: `last failure: ${s.lastFailure}` }) : null),
        h('div', { class: 'panel' }, h('h3', null, 'Attempts (current prompt)', h('span', { class: 'x muted', text: s.messageId ? `message ${s.messageId}` : '' })), s.log.length ? h('table', { id: 'attempts' }, h('thead', null, h('tr', null, ...['gen', 'model', 'outcome', 'reason', 'at'].map((x) => h('th', { text: x })))), attempts) : h('div', { class: 'empty', text: 'no attempts yet' })),
        h('div', { class: 'panel' }, h('h3', { text: 'Approvals' }), s.approvals.length ? h('table', { id: 'approvals' }, h('thead', null, h('tr', null, ...['tool', 'kind', 'since'].map((x) => h('th', { text: x })))), approvals) : h('div', { class: 'empty', text: 'no tool approvals' })),
      )
    }

    function entryRow(e, fresh) {
      const tr = h('tr', { class: `click${fresh ? ' fresh' : ''}${selected && selected.seq === e.seq ? ' sel' : ''}`, 'data-seq': e.seq, 'data-state': e.stateAfter, title: e.event ? JSON.stringify(e.event).slice(0, 600) : 'event too large to show' })
      tr.append(h('td', null, h('code', { text: e.seq })), h('td', { text: clock(e.at) }), h('td', null, h('b', { text: e.kind })), h('td', null, h('code', { text: e.eventType })), h('td', null, h('code', { text: `${e.stateBefore || '∅'} → ${e.stateAfter}` })))
      tr.addEventListener('click', () => select(e.seq))
      return tr
    }
    let nextBefore = actor.journal.next
    const seen = new Set()
    function appendEntries(entries) {
      for (const e of entries) {
        if (seen.has(e.seq)) continue
        seen.add(e.seq)
        jbody.appendChild(entryRow(e, false))
      }
      older.hidden = nextBefore === null
    }
    older.addEventListener('click', async () => {
      const page = await api(`/api/actors/${enc(id)}/journal`, { before: nextBefore, limit: PAGE })
      nextBefore = page.next
      appendEntries(page.entries)
    })
    let total = actor.journal.total
    jcount.textContent = `${total} entries`
    appendEntries(actor.journal.entries)

    async function select(seq) {
      try {
        const snap = await api(`/api/actors/${enc(id)}/snapshot`, { seq })
        selected = snap
        for (const tr of jbody.querySelectorAll('tr.sel')) tr.classList.remove('sel')
        for (const tr of jbody.querySelectorAll('tr')) if (Number(tr.dataset.seq) >= snap.step.firstSeq && Number(tr.dataset.seq) <= snap.step.lastSeq) tr.classList.add('sel')
        bannerText.textContent = ''
        bannerText.append(h('b', { text: `Time travel: #${snap.seq}` }), ` ${snap.eventType} took ${snap.stateBefore || '(new)'} → ${snap.state} at ${when(snap.at)}`)
        banner.classList.add('on')
        if (drawn) drawn.setPast(snap.state, snap.transition ? snap.transition.edges : [])
        setHashParams({ seq })
        renderContext()
      } catch (error) {
        showError(error)
      }
    }
    function unselect() {
      selected = null
      for (const tr of jbody.querySelectorAll('tr.sel')) tr.classList.remove('sel')
      banner.classList.remove('on')
      if (drawn) drawn.setPast(null)
      setHashParams({})
      renderContext()
    }

    const refresh = debounce(async () => {
      try {
        const next = await api(`/api/actors/${enc(id)}`, { limit: 1 })
        live = next
        timeOffset = next.now ? next.now - Date.now() : timeOffset
        renderHead()
        renderDetails()
        if (!selected) renderContext()
      } catch (error) {
        showError(error)
      }
    }, 150)

    renderHead()
    renderDetails()
    renderContext()
    if (params.get('seq')) select(Number(params.get('seq')))
    const ticker = isTask ? null : setInterval(() => live.session && renderSession0(), 1000)
    function renderSession0() {
      // Countdowns only: rebuild the chain rows, nothing else.
      const s = live.session
      const now = Date.now() + timeOffset
      for (const row of chainBox.querySelectorAll('.model')) {
        const m = s.models.find((x) => x.model === row.dataset.model)
        if (!m || m.coolingUntil === null) continue
        const st = row.querySelector('.st')
        if (m.coolingUntil > now && !m.current) st.firstChild.textContent = `cooling until ${clock(m.coolingUntil)} (${inWords(m.coolingUntil - now)})`
        else if (m.coolingUntil <= now && !m.current) {
          st.firstChild.textContent = 'available (cooled)'
          row.classList.remove('cooling')
          row.classList.add('ok')
        }
      }
    }

    return {
      onEntry(e) {
        if (e.actorId !== id) return
        if (!seen.has(e.seq)) {
          seen.add(e.seq)
          jbody.insertBefore(entryRow(e, true), jbody.firstChild)
          total++
          jcount.textContent = `${total} entries`
        }
        live = { ...live, state: e.stateAfter, status: (e.task && e.task.status) || (e.session && e.session.status) || live.status }
        renderHead()
        if (drawn) drawn.setCurrent(e.stateAfter)
        refresh()
      },
      onResync: refresh,
      destroy() {
        if (ticker) clearInterval(ticker)
      },
    }
  }

  window.addEventListener('hashchange', route)
  connect()
  route()
})()
