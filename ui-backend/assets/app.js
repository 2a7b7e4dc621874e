// Hubble UI page: the service map and the flow table, fed by /api/events.
'use strict';

(() => {
  /** Rows kept in the table; older rows are removed as new ones arrive. */
  const TABLE_MAX_ROWS = 500;
  /** Wait after the last keystroke before applying filters. */
  const FILTER_DEBOUNCE_MS = 250;

  // Map layout, in SVG units.
  const BOX_W = 184;
  const BOX_H = 58;
  const BOX_GAP = 30;
  const COL_GAP = 130;
  const LAYER_GAP = 150;
  const REGION_PAD = 22;
  const REGION_TITLE = 30;
  const MARGIN = 24;
  /** Height of an edge label, and the distance between stacked labels. */
  const LABEL_H = 19;
  const LABEL_STEP = 23;
  /**
   * The map is scaled down to fit its pane, but not below this: a larger map is drawn
   * at this scale and scrolls.
   */
  const MIN_MAP_SCALE = 0.5;

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);
  const form = $('filters');
  const rows = $('flow-rows');
  const svg = $('map');

  /** Figures read by the browser tests and the load script. */
  const stats = {
    updates: 0,
    resets: 0,
    flowsReceived: 0,
    rowsRendered: 0,
    renderMs: 0,
    mapRenders: 0,
    lastLagMs: 0,
    maxLagMs: 0,
    missedFlows: 0,
    skippedFlows: 0,
    notDrawnFlows: 0,
    streamOpen: false,
    serverConnected: false,
    mapScale: 1,
  };
  window.hubbleUi = { stats, setFilters, currentQuery: () => query() };

  let source = null;
  let paused = false;
  let pausedFlows = [];
  let selectedRow = null;
  let selectedMapKey = null;
  let debounce = null;
  let lastMap = null;
  /** Size of the drawn map in SVG units, before it is scaled to its pane. */
  let mapSize = null;

  // === filters ===

  function query() {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (String(value).trim() !== '') params.append(name, String(value).trim());
    }
    return params;
  }

  /** Replaces every filter with `values` (name -> value) and applies them. */
  function setFilters(values, mapKey) {
    for (const el of form.elements) {
      if (el.name) el.value = values[el.name] ?? '';
    }
    selectedMapKey = mapKey ?? null;
    if (lastMap) renderMap(lastMap);
    applyFilters();
  }

  function showFilterError(message) {
    const box = $('filter-error');
    box.textContent = message;
    box.classList.toggle('hidden', !message);
  }

  async function applyFilters() {
    const params = query();
    // Validate first: an EventSource cannot read the 400 answer's message.
    const check = new URLSearchParams(params);
    check.set('limit', '1');
    try {
      const answer = await fetch('/api/flows?' + check);
      if (!answer.ok) {
        const body = await answer.json().catch(() => ({ error: answer.statusText }));
        showFilterError(body.error || 'invalid filter');
        return;
      }
    } catch (err) {
      showFilterError('cannot reach hubble-ui: ' + err);
      return;
    }
    showFilterError('');
    params.set('limit', String(TABLE_MAX_ROWS));
    openStream(params);
  }

  form.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      selectedMapKey = null;
      if (lastMap) renderMap(lastMap);
      applyFilters();
    }, FILTER_DEBOUNCE_MS);
  });
  form.addEventListener('submit', (ev) => ev.preventDefault());
  $('clear').addEventListener('click', () => setFilters({}));
  $('pause').addEventListener('click', () => {
    paused = !paused;
    $('pause').textContent = paused ? 'Resume' : 'Pause';
    $('pause').setAttribute('aria-pressed', String(paused));
    if (!paused) {
      addFlows(pausedFlows);
      pausedFlows = [];
    }
  });

  // === live stream ===

  function openStream(params) {
    if (source) source.close();
    source = new EventSource('/api/events?' + params);
    source.addEventListener('update', (ev) => onUpdate(JSON.parse(ev.data)));
    source.onopen = () => {
      stats.streamOpen = true;
    };
    source.onerror = () => {
      stats.streamOpen = false;
      setPill('ui-down', 'hubble-ui unreachable, retrying…');
    };
  }

  // Messages are taken in as they come, but drawn at most once per frame: a page that
  // cannot draw every batch draws the newest rows and never builds up a backlog.
  let pending = { reset: false, status: null, map: null, flows: [], seen: null };
  let flushScheduled = false;

  function onUpdate(message) {
    stats.updates += 1;
    if (message.reset) {
      stats.resets += 1;
      pending = { reset: true, status: null, map: null, flows: [], seen: null };
    }
    if (message.status) pending.status = message.status;
    // Flows received by hubble-ui so far: sent with every message while flows arrive,
    // so that the header keeps up with the table between status messages.
    if (typeof message.flows_received === 'number') pending.seen = message.flows_received;
    if (message.map) pending.map = message.map;
    stats.missedFlows = message.missed_flows;
    stats.skippedFlows = message.skipped_flows;
    if (message.flows.length > 0) {
      stats.flowsReceived += message.flows.length;
      const newest = Date.parse(message.flows[message.flows.length - 1].time);
      if (!Number.isNaN(newest)) {
        stats.lastLagMs = Date.now() - newest;
        stats.maxLagMs = Math.max(stats.maxLagMs, stats.lastLagMs);
      }
      for (const flow of message.flows) pending.flows.push(flow);
      if (pending.flows.length > TABLE_MAX_ROWS) {
        stats.notDrawnFlows += pending.flows.length - TABLE_MAX_ROWS;
        pending.flows = pending.flows.slice(-TABLE_MAX_ROWS);
      }
    }
    if (!flushScheduled) {
      flushScheduled = true;
      requestAnimationFrame(flush);
      // Hidden tabs get no animation frames; draw anyway, less often.
      setTimeout(flush, 500);
    }
  }

  function flush() {
    if (!flushScheduled) return;
    flushScheduled = false;
    const work = pending;
    pending = { reset: false, status: null, map: null, flows: [], seen: null };
    if (work.reset) {
      rows.replaceChildren();
      pausedFlows = [];
      closeDetail();
    }
    if (work.status) renderStatus(work.status);
    if (work.seen !== null) $('seen').textContent = work.seen.toLocaleString();
    if (work.map) renderMap(work.map);
    const missed = stats.missedFlows + stats.skippedFlows;
    $('missed').textContent = missed.toLocaleString();
    $('missed-box').classList.toggle('hidden', missed === 0);
    if (paused) {
      pausedFlows = pausedFlows.concat(work.flows).slice(-TABLE_MAX_ROWS);
    } else {
      addFlows(work.flows);
    }
    updateFoot();
  }

  // === status header ===

  function setPill(state, text) {
    const pill = $('connection');
    pill.dataset.state = state;
    pill.textContent = text;
  }

  function renderStatus(s) {
    stats.serverConnected = s.connected;
    $('server').textContent = s.server;
    if (s.connected) {
      setPill('connected', 'connected');
    } else {
      setPill('disconnected', 'disconnected' + (s.last_error ? ': ' + s.last_error : ''));
    }
    const nodes = $('nodes');
    const unavailable = s.unavailable_nodes || [];
    nodes.textContent = `${s.connected_nodes} connected` +
      (unavailable.length ? ` · ${unavailable.length} unavailable` : '');
    nodes.classList.toggle('warn', unavailable.length > 0);
    nodes.title = Object.entries(s.nodes || {}).map(([n, st]) => `${n}: ${st}`).join('\n') ||
      'no node reported';
    $('rate').textContent = s.flows_per_second.toFixed(1);
    const lost = $('lost');
    lost.textContent = s.lost_events_total.toLocaleString();
    lost.classList.toggle('warn', s.lost_events_total > 0);
    lost.title = Object.entries(s.lost_events || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
    $('seen').textContent = s.flows_received.toLocaleString();
  }

  // === flow table ===

  function endpointName(ep) {
    if (!ep) return '';
    if (ep.pod_name) return (ep.namespace ? ep.namespace + '/' : '') + ep.pod_name;
    const reserved = (ep.labels || []).find((l) => l.startsWith('reserved:'));
    if (reserved) return reserved.slice('reserved:'.length);
    return ep.identity ? `identity ${ep.identity}` : '';
  }

  function l4(flow) {
    const proto = flow.l4 || {};
    for (const name of ['TCP', 'UDP', 'SCTP']) {
      if (proto[name]) return { name, src: proto[name].source_port, dst: proto[name].destination_port };
    }
    for (const name of ['ICMPv4', 'ICMPv6', 'VRRP', 'IGMP']) {
      if (proto[name]) return { name };
    }
    return null;
  }

  function l7Info(flow) {
    const l7 = flow.l7;
    if (!l7) return '';
    if (l7.http) {
      const h = l7.http;
      return [h.method, h.url, h.code ? String(h.code) : ''].filter(Boolean).join(' ');
    }
    if (l7.dns) {
      const d = l7.dns;
      return `DNS ${d.qtypes ? d.qtypes.join(',') + ' ' : ''}${d.query || ''}` +
        (d.ips ? ' → ' + d.ips.join(', ') : '');
    }
    return l7.type || '';
  }

  // Event types and verdicts as `hubble observe` prints them.
  const MESSAGE_TYPE_POLICY_VERDICT = 5;

  /** The event kind named as `hubble observe --type` takes it, for the type's tooltip. */
  function eventKind(flow) {
    if (flow.l7) return 'l7';
    const type = (flow.event_type && flow.event_type.type) || 0;
    const kinds = { 1: 'drop', 3: 'capture', 4: 'trace', 5: 'policy-verdict', 7: 'trace-sock' };
    return kinds[type] || 'unknown';
  }

  /** The verdict word: ALLOWED, DENIED or AUDITED for policy verdicts, else the verdict. */
  function verdictWord(flow) {
    const verdict = flow.verdict || 'VERDICT_UNKNOWN';
    const isPolicyVerdict = !flow.l7 && flow.event_type && flow.event_type.type === MESSAGE_TYPE_POLICY_VERDICT;
    if (!isPolicyVerdict) return verdict;
    if (verdict === 'FORWARDED' || verdict === 'REDIRECTED') return 'ALLOWED';
    if (verdict === 'DROPPED' || verdict === 'ERROR') return 'DENIED';
    if (verdict === 'AUDIT') return 'AUDITED';
    return verdict;
  }

  function formatTime(text) {
    const t = new Date(text);
    if (Number.isNaN(t.getTime())) return text || '';
    const pad = (n, w = 2) => String(n).padStart(w, '0');
    return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
  }

  function cell(tr, text, className, title) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    tr.appendChild(td);
    return td;
  }

  function endpointCell(tr, ep, ip, port) {
    const td = document.createElement('td');
    const name = document.createElement('div');
    name.className = 'ep-name';
    name.textContent = endpointName(ep) || ip || '';
    const addr = document.createElement('div');
    addr.className = 'ep-addr';
    addr.textContent = ip ? (port ? `${ip}:${port}` : ip) : '';
    td.append(name, addr);
    if (ep && ep.labels) td.title = ep.labels.join('\n');
    tr.appendChild(td);
  }

  function flowRow(flow) {
    const tr = document.createElement('tr');
    const p = l4(flow);
    const ip = flow.IP || {};
    cell(tr, formatTime(flow.time), 'time', flow.time);
    endpointCell(tr, flow.source, ip.source, p && p.src);
    endpointCell(tr, flow.destination, ip.destination, p && p.dst);
    cell(tr, p ? (p.dst !== undefined ? `${p.name} ${p.dst}` : p.name) : '', 'port');
    cell(tr, l7Info(flow), 'l7');
    // The TYPE column as `hubble observe` prints it, written by the backend.
    const type = flow.type_text || '';
    cell(tr, type, 'type', `${eventKind(flow)}: ${type}`);
    const verdict = flow.verdict || 'VERDICT_UNKNOWN';
    const vd = cell(tr, '', 'verdict');
    const badge = document.createElement('span');
    badge.className = 'badge ' + verdict.toLowerCase();
    badge.textContent = verdictWord(flow);
    vd.appendChild(badge);
    vd.title = verdict + (flow.drop_reason_desc ? ': ' + flow.drop_reason_desc : '');
    cell(tr, flow.Summary || '', 'summary');
    tr.dataset.verdict = verdict;
    tr.dataset.type = type;
    tr.flow = flow;
    return tr;
  }

  function addFlows(flows) {
    if (flows.length === 0) return;
    const start = performance.now();
    const shown = flows.slice(-TABLE_MAX_ROWS);
    const fragment = document.createDocumentFragment();
    for (let i = shown.length - 1; i >= 0; i--) fragment.appendChild(flowRow(shown[i]));
    rows.prepend(fragment);
    while (rows.childElementCount > TABLE_MAX_ROWS) {
      const last = rows.lastElementChild;
      if (last === selectedRow) closeDetail();
      last.remove();
    }
    stats.rowsRendered += shown.length;
    stats.renderMs += performance.now() - start;
  }

  function updateFoot() {
    const n = rows.childElementCount;
    $('table-empty').classList.toggle('hidden', n > 0);
    const q = query().toString();
    $('table-foot').textContent = `${n} flow${n === 1 ? '' : 's'} shown, newest first` +
      (paused ? ` · paused (${pausedFlows.length} waiting)` : '') +
      (q ? ` · filter: ${decodeURIComponent(q.replaceAll('+', ' ')).replaceAll('&', ', ')}` : '');
  }

  rows.addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr');
    if (!tr || !tr.flow) return;
    if (selectedRow) selectedRow.classList.remove('selected');
    selectedRow = tr;
    tr.classList.add('selected');
    $('detail-json').textContent = JSON.stringify(tr.flow, null, 2);
    $('detail').classList.remove('hidden');
  });

  function closeDetail() {
    if (selectedRow) selectedRow.classList.remove('selected');
    selectedRow = null;
    $('detail').classList.add('hidden');
  }
  $('detail-close').addEventListener('click', closeDetail);

  // === service map ===

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function edgeClass(edge) {
    const v = edge.verdicts || {};
    const last = edge.last_verdict;
    if (last === 'DROPPED' || last === 'ERROR') return 'dropped';
    if (last === 'AUDIT' || v.DROPPED || v.ERROR || v.AUDIT) return 'mixed';
    return 'forwarded';
  }

  /**
   * Deterministic layout: one region per namespace (entities outside the cluster first,
   * then namespaces by name), laid out left to right. Inside a region, workloads sit in
   * columns by their depth along the namespace's own edges (callers left of callees).
   */
  function layout(map) {
    const groups = new Map();
    for (const node of map.nodes) {
      const key = node.namespace || '';
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(node);
    }
    const keys = [...groups.keys()].sort((a, b) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b)));
    const boxes = new Map();
    const regions = [];
    let x = MARGIN;
    let height = 0;
    let column = 0;
    for (const key of keys) {
      const nodes = groups.get(key).sort((a, b) => a.name.localeCompare(b.name));
      const ids = new Set(nodes.map((n) => n.id));
      const inner = map.edges.filter((e) => e.source !== e.destination && ids.has(e.source) && ids.has(e.destination));
      const depth = new Map(nodes.map((n) => [n.id, 0]));
      // Longest path from the region's callers; bounded so that cycles end.
      for (let round = 0; round < nodes.length; round++) {
        let changed = false;
        for (const e of inner) {
          const d = depth.get(e.source) + 1;
          if (d > depth.get(e.destination) && d < nodes.length) {
            depth.set(e.destination, d);
            changed = true;
          }
        }
        if (!changed) break;
      }
      const columns = [];
      for (const n of nodes) {
        const d = depth.get(n.id);
        (columns[d] = columns[d] || []).push(n);
      }
      const used = columns.filter(Boolean);
      // Order each column by where its callers sit, to keep lines short and uncrossed.
      const row = new Map();
      used.forEach((col) => {
        const weight = (n) => {
          const callers = inner.filter((e) => e.destination === n.id && row.has(e.source)).map((e) => row.get(e.source));
          return callers.length ? callers.reduce((a, b) => a + b, 0) / callers.length : Infinity;
        };
        col.sort((a, b) => (weight(a) - weight(b)) || a.name.localeCompare(b.name));
        col.forEach((n, i) => row.set(n.id, i));
      });
      const tallest = Math.max(...used.map((c) => c.length));
      const regionH = REGION_TITLE + REGION_PAD + tallest * (BOX_H + BOX_GAP) - BOX_GAP + REGION_PAD;
      const regionW = used.length * BOX_W + (used.length - 1) * LAYER_GAP + 2 * REGION_PAD;
      regions.push({ key, x, y: MARGIN, w: regionW, h: regionH });
      used.forEach((col, c) => {
        const offset = ((tallest - col.length) * (BOX_H + BOX_GAP)) / 2;
        col.forEach((node, i) => {
          boxes.set(node.id, {
            node,
            x: x + REGION_PAD + c * (BOX_W + LAYER_GAP),
            y: MARGIN + REGION_TITLE + REGION_PAD + offset + i * (BOX_H + BOX_GAP),
            column: column + c,
          });
        });
      });
      column += used.length;
      height = Math.max(height, MARGIN + regionH);
      x += regionW + COL_GAP;
    }
    return { boxes, regions, width: x - COL_GAP + MARGIN, height: height + MARGIN };
  }

  /** Which side of each box an edge leaves and enters by. */
  function edgeSides(a, b) {
    if (a.column < b.column) return ['right', 'left'];
    if (a.column > b.column) return ['left', 'right'];
    return ['right', 'right'];
  }

  /**
   * Spreads the ends of the edges that meet a box side over its height, ordered by
   * where the other end sits, so that lines into one box do not pile up in one point.
   */
  function edgeAnchors(edges, boxes) {
    const slots = new Map();
    const add = (box, side, edge, end, otherY) => {
      const key = box.node.id + '|' + side;
      if (!slots.has(key)) slots.set(key, { box, items: [] });
      slots.get(key).items.push({ edge, end, otherY });
    };
    for (const e of edges) {
      const a = boxes.get(e.source);
      const b = boxes.get(e.destination);
      if (!a || !b || a === b) continue;
      const [out, into] = edgeSides(a, b);
      add(a, out, e, 'start', b.y);
      add(b, into, e, 'end', a.y);
    }
    const anchors = new Map();
    for (const { box, items } of slots.values()) {
      items.sort((p, q) => (p.otherY - q.otherY) || (p.edge.port - q.edge.port));
      items.forEach((item, i) => {
        const y = box.y + 10 + ((BOX_H - 20) * (i + 1)) / (items.length + 1);
        if (!anchors.has(item.edge)) anchors.set(item.edge, {});
        anchors.get(item.edge)[item.end] = y;
      });
    }
    return anchors;
  }

  /** The point at `t` (0..1) of the cubic Bézier curve `c` = [x0,y0, x1,y1, x2,y2, x3,y3]. */
  function cubicAt(c, t) {
    const u = 1 - t;
    const k = [u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t];
    return [k[0] * c[0] + k[1] * c[2] + k[2] * c[4] + k[3] * c[6],
      k[0] * c[1] + k[1] * c[3] + k[2] * c[5] + k[3] * c[7]];
  }

  /** A path of joined cubic curves: its `d` attribute and its point at `t` (0..1). */
  function curvePath(curves) {
    const d = `M${curves[0][0]},${curves[0][1]} ` +
      curves.map((c) => `C${c[2]},${c[3]} ${c[4]},${c[5]} ${c[6]},${c[7]}`).join(' ');
    const at = (t) => {
      const n = curves.length;
      const i = Math.min(n - 1, Math.floor(t * n));
      return cubicAt(curves[i], t * n - i);
    };
    return { d, at };
  }

  function edgePath(a, b, anchor, obstacles) {
    const ay = anchor ? anchor.start : a.y + BOX_H / 2;
    const by = anchor ? anchor.end : b.y + BOX_H / 2;
    if (a === b) {
      const x0 = a.x + BOX_W;
      const y = a.y + BOX_H / 2;
      return curvePath([[x0, y - 12, x0 + 70, y - 50, x0 + 70, y + 50, x0 + 4, y + 14]]);
    }
    if (a.column === b.column) {
      const x0 = a.x + BOX_W;
      const bend = x0 + 50 + Math.abs(by - ay) * 0.25;
      return curvePath([[x0, ay, bend, ay, bend, by, x0 + 4, by]]);
    }
    const forward = a.column < b.column;
    const x0 = forward ? a.x + BOX_W : a.x;
    const x1 = forward ? b.x - 4 : b.x + BOX_W + 4;
    const dx = (x1 - x0) * 0.5;
    const curve = [x0, ay, x0 + dx, ay, x1 - dx, by, x1, by];
    // A line that would pass behind boxes between its ends goes around below them.
    const lo = Math.min(x0, x1);
    const hi = Math.max(x0, x1);
    const between = [...obstacles].filter((o) => o !== a && o !== b && o.x > lo && o.x + BOX_W < hi);
    const hits = between.some((o) => {
      for (let t = 0; t <= 1; t += 0.05) {
        const [px, py] = cubicAt(curve, t);
        if (px > o.x - 6 && px < o.x + BOX_W + 6 && py > o.y - 6 && py < o.y + BOX_H + 6) return true;
      }
      return false;
    });
    if (!hits) return curvePath([curve]);
    // Down before the first box in the way, along below them all, up after the last.
    const below = Math.max(...between.map((o) => o.y + BOX_H)) + BOX_GAP / 2;
    const sign = forward ? 1 : -1;
    const first = forward ? Math.min(...between.map((o) => o.x)) - 14 : Math.max(...between.map((o) => o.x + BOX_W)) + 14;
    const last = forward ? Math.max(...between.map((o) => o.x + BOX_W)) + 14 : Math.min(...between.map((o) => o.x)) - 14;
    const q0 = Math.max(20, Math.abs(first - x0) * 0.55) * sign;
    const q1 = Math.max(20, Math.abs(x1 - last) * 0.55) * sign;
    const third = (last - first) / 3;
    return curvePath([[x0, ay, x0 + q0, ay, first - q0, below, first, below],
      [first, below, first + third, below, last - third, below, last, below],
      [last, below, last + q1, below, x1 - q1, by, x1, by]]);
  }

  /**
   * Places edge labels so that none hides another. Labels of parallel edges (same
   * source and destination: one per port and protocol) are stacked around the middle of
   * their bundle, in the order their lines leave the box; any label that would still
   * cover a placed label or a box moves to the nearest free spot, first along its own
   * line, then above or below it.
   */
  function placeLabels(groups, boxes) {
    const placed = [];
    const boxRects = [...boxes.values()].map((b) => ({ x: b.x, y: b.y, w: BOX_W, h: BOX_H }));
    const overlaps = (r, list) => list.some((o) =>
      r.x < o.x + o.w + 4 && o.x < r.x + r.w + 4 && r.y < o.y + o.h + 3 && o.y < r.y + r.h + 3);
    const rectAt = (item, x, y) => ({ x: x - item.w / 2, y: y - LABEL_H / 2, w: item.w, h: LABEL_H });
    for (const group of groups) {
      const n = group.length;
      const mid = group.map((item) => item.path.at(0.5));
      const cx = mid.reduce((sum, p) => sum + p[0], 0) / n;
      const cy = mid.reduce((sum, p) => sum + p[1], 0) / n;
      group.forEach((item, i) => {
        const stacked = [cx, cy + (i - (n - 1) / 2) * LABEL_STEP];
        const candidates = [stacked];
        for (const t of [0.36, 0.64, 0.24, 0.76]) candidates.push(item.path.at(t));
        for (const k of [1, -1, 2, -2, 3, -3]) candidates.push([stacked[0], stacked[1] + k * LABEL_STEP]);
        const free = (p) => !overlaps(rectAt(item, p[0], p[1]), placed);
        const best = candidates.find((p) => free(p) && !overlaps(rectAt(item, p[0], p[1]), boxRects)) ||
          candidates.find(free) || stacked;
        item.x = best[0];
        item.y = best[1];
        placed.push(rectAt(item, best[0], best[1]));
      });
    }
  }

  /**
   * Scales the drawn map to fit its pane (never above its natural size, never below
   * MIN_MAP_SCALE, past which the pane scrolls), so every box stays in reach.
   */
  function fitMap() {
    if (!mapSize) return;
    const pane = $('map-scroll');
    const fit = Math.min(1, pane.clientWidth / mapSize.width, pane.clientHeight / mapSize.height);
    const scale = Math.max(MIN_MAP_SCALE, fit);
    stats.mapScale = scale;
    svg.setAttribute('width', String(Math.floor(mapSize.width * scale)));
    svg.setAttribute('height', String(Math.floor(mapSize.height * scale)));
  }
  new ResizeObserver(fitMap).observe($('map-scroll'));

  function nodeFilter(node, side) {
    // Every flow drawn at a service (from its clients, to its backends) was sent to it.
    if (node.filter_kind === 'service') return { to_service: node.filter_value };
    if (node.filter_kind === 'pod') return { [side ? side + '_pod' : 'pod']: node.filter_value };
    return { [side ? side + '_label' : 'label']: node.filter_value };
  }

  function renderMap(map) {
    lastMap = map;
    stats.mapRenders += 1;
    $('map-empty').classList.toggle('hidden', map.nodes.length > 0);
    const { boxes, regions, width, height } = layout(map);
    svg.replaceChildren();
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    mapSize = { width, height };
    fitMap();
    const defs = el('defs', {}, svg);
    for (const kind of ['forwarded', 'dropped', 'mixed']) {
      const marker = el('marker', { id: 'arrow-' + kind, viewBox: '0 0 10 10', refX: '9', refY: '5',
        markerWidth: '11', markerHeight: '11', markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' }, defs);
      el('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow ' + kind }, marker);
    }
    for (const r of regions) {
      const g = el('g', { class: 'region' + (r.key ? '' : ' entities') }, svg);
      el('rect', { x: r.x, y: r.y, width: r.w, height: r.h, rx: 10 }, g);
      const title = el('text', { x: r.x + 14, y: r.y + 21, class: 'region-title' }, g);
      title.textContent = r.key ? r.key : 'outside the cluster';
    }
    // Parallel edges between the same pair are listed together.
    const pairs = new Map();
    for (const e of map.edges) {
      const key = e.source + '\u0000' + e.destination;
      if (!pairs.has(key)) pairs.set(key, []);
      pairs.get(key).push(e);
    }
    const anchors = edgeAnchors(map.edges, boxes);
    const edgeLayer = el('g', { class: 'edges' }, svg);
    const labelLayer = el('g', { class: 'edge-labels' }, svg);
    const labelGroups = [];
    for (const group of pairs.values()) {
      const items = [];
      for (const e of group) {
        const a = boxes.get(e.source);
        const b = boxes.get(e.destination);
        if (!a || !b) continue;
        const kind = edgeClass(e);
        const path = edgePath(a, b, anchors.get(e), boxes.values());
        const key = `edge:${e.source}>${e.destination}:${e.protocol}/${e.port}`;
        const g = el('g', { class: `edge ${kind}` + (selectedMapKey === key ? ' selected' : ''),
          'data-source': e.source, 'data-destination': e.destination, 'data-verdict': kind,
          'data-port': e.port, 'data-protocol': e.protocol }, edgeLayer);
        el('path', { d: path.d, class: 'hit' }, g);
        el('path', { d: path.d, class: 'line', 'marker-end': `url(#arrow-${kind})` }, g);
        const counts = Object.entries(e.verdicts).map(([v, n]) => `${n} ${v.toLowerCase()}`).join(', ');
        const titleEl = el('title', {}, g);
        titleEl.textContent = `${e.source} → ${e.destination}\n${e.protocol}/${e.port}: ${counts}\nlast: ${e.last_verdict}`;
        const forwarded = (e.verdicts.FORWARDED || 0) + (e.verdicts.REDIRECTED || 0) + (e.verdicts.TRANSLATED || 0) + (e.verdicts.TRACED || 0);
        const dropped = (e.verdicts.DROPPED || 0) + (e.verdicts.ERROR || 0);
        const audit = e.verdicts.AUDIT || 0;
        const text = `${e.port ? e.protocol + '/' + e.port : e.protocol}` +
          (forwarded ? ` ✓${forwarded}` : '') + (audit ? ` ◐${audit}` : '') + (dropped ? ` ✕${dropped}` : '');
        const select = () => setFilters({
          ...nodeFilter(a.node, 'from'), ...nodeFilter(b.node, 'to'),
          port: e.port ? String(e.port) : '', protocol: e.protocol === 'unknown' ? '' : e.protocol.toLowerCase(),
        }, key);
        g.addEventListener('click', select);
        items.push({ e, kind, path, text, w: text.length * 6.6 + 12, select, start: (anchors.get(e) || {}).start || 0 });
      }
      // Stacked in the order the lines leave their box, top first.
      items.sort((p, q) => (p.start - q.start) || (p.e.port - q.e.port));
      if (items.length) labelGroups.push(items);
    }
    placeLabels(labelGroups, boxes);
    for (const item of labelGroups.flat()) {
      const e = item.e;
      const label = el('g', { class: `edge-label ${item.kind}`, transform: `translate(${item.x},${item.y})`,
        'data-source': e.source, 'data-destination': e.destination, 'data-port': e.port,
        'data-protocol': e.protocol }, labelLayer);
      el('rect', { x: -item.w / 2, y: -LABEL_H / 2, width: item.w, height: LABEL_H, rx: LABEL_H / 2 }, label);
      const t = el('text', { 'text-anchor': 'middle', dy: '4' }, label);
      t.textContent = item.text;
      label.addEventListener('click', item.select);
    }
    const nodeLayer = el('g', { class: 'nodes' }, svg);
    for (const box of boxes.values()) {
      const n = box.node;
      const key = 'node:' + n.id;
      const g = el('g', { class: `node ${n.kind}` + (selectedMapKey === key ? ' selected' : ''),
        transform: `translate(${box.x},${box.y})`, 'data-id': n.id, 'data-name': n.name, 'data-kind': n.kind }, nodeLayer);
      el('rect', { width: BOX_W, height: BOX_H, rx: 8 }, g);
      el('rect', { width: 5, height: BOX_H, rx: 2, class: 'accent' }, g);
      const name = el('text', { x: 16, y: 24, class: 'node-name' }, g);
      name.textContent = n.name.length > 22 ? n.name.slice(0, 21) + '…' : n.name;
      const sub = el('text', { x: 16, y: 43, class: 'node-sub' }, g);
      const labels = (n.labels || []).filter((l) => !l.includes('io.kubernetes') && !l.includes('io.cilium'))
        .map((l) => l.replace(/^k8s:/, ''));
      const subText = n.kind === 'service' ? `service · ${n.filter_value}`
        : labels.slice(0, 2).join(' ') || (n.namespace ? n.namespace : 'entity');
      sub.textContent = subText.length > 28 ? subText.slice(0, 27) + '…' : subText;
      const title = el('title', {}, g);
      title.textContent = `${n.id}\n${(n.labels || []).join('\n')}\n${n.flows} flows`;
      g.addEventListener('click', () => setFilters(nodeFilter(n), key));
    }
  }

  applyFilters();
})();
