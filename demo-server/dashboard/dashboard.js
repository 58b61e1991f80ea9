// The dashboard's script: plain browser JavaScript, no build step, nothing loaded from elsewhere.
// Waterfalls come from the browser's own PerformanceServerTiming entries (the answer's Server-Timing header,
// `db;dur=201.3;desc="queued 21.2 ms"`), live stats from /events (server-sent events).
/* global document, location, EventSource */
'use strict';

const MAX_RESPONSES = 6;
const LOOP_POINTS = 120;

// A burst's answers are resource timings too: room for them, so that later answers still get theirs.
performance.setResourceTimingBufferSize(5000);

/** `queued 21.2 ms; at 3 ms; fallback` → { queued, at, outcome words }. */
function parseDescription(description) {
  const parsed = { queued: 0, at: 0, notes: [] };
  for (const part of description.split('; ')) {
    const timed = /^(queued|at) ([\d.]+) ms$/.exec(part);
    if (timed) parsed[timed[1]] = Number(timed[2]);
    else if (part !== '') parsed.notes.push(part);
  }
  return parsed;
}

/** The resource timing of the last fetch of `url`, once the browser has recorded it. */
async function timingOf(url) {
  for (let i = 0; i < 100; i++) {
    const entries = performance.getEntriesByName(url);
    const entry = entries[entries.length - 1];
    if (entry && entry.serverTiming) return entry;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return null;
}

const fmt = (ms) => `${Math.round(ms * 10) / 10} ms`;

function el(tag, attributes, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === 'text') node.textContent = value;
    else if (key === 'style') Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children || []) node.append(child);
  return node;
}

function row(name, entry, span, extraClass) {
  const { queued, at, notes } = parseDescription(entry.description || '');
  const duration = entry.duration;
  const fallback = notes.some((n) => n.startsWith('fallback'));
  const failed = notes.some((n) => /^(failed|timeout|shed|aborted|skipped)$/.test(n));
  const queuePart = duration > 0 ? Math.min(queued, duration) / duration : 0;
  const bar = el(
    'div',
    {
      class: `bar${fallback ? ' fallback' : ''}${failed ? ' failed' : ''}`,
      'data-dur': String(duration),
      'data-queued': String(queued),
      'data-at': String(at),
      title: `${name}: ${fmt(duration)}${entry.description ? ` (${entry.description})` : ''}`,
      style: { left: `${(at / span) * 100}%`, width: `${(duration / span) * 100}%` },
    },
    [el('div', { class: 'queue', style: { width: `${queuePart * 100}%` } }), el('div', { class: 'run' })],
  );
  const info = [fmt(duration)];
  if (queued > 0) info.push(`queued ${fmt(queued)}`);
  info.push(...notes);
  return el('div', { class: `row${extraClass ? ` ${extraClass}` : ''}`, 'data-task': name }, [
    el('div', { class: 'name', text: name }),
    el('div', { class: 'track' }, [bar]),
    el('div', { class: 'info', text: info.join(' · ') }),
  ]);
}

function drawWaterfall(path, status, timing) {
  const entries = timing.serverTiming;
  const total = entries.find((e) => e.name === 'total');
  const tasks = entries.filter((e) => e.name !== 'total');
  let span = total ? total.duration : 0;
  for (const e of tasks) span = Math.max(span, parseDescription(e.description || '').at + e.duration);
  if (!(span > 0)) span = 1;
  const box = el(
    'div',
    { class: 'response', 'data-path': path, 'data-status': String(status), 'data-span': String(span) },
    [
      el('header', {}, [
        `GET ${path} → ${status} `,
        el('small', { text: `${tasks.length} task${tasks.length === 1 ? '' : 's'}, scale ${fmt(span)}` }),
      ]),
      ...tasks.map((e) => row(e.name, e, span)),
      ...(total ? [row('total', total, span, 'total')] : []),
    ],
  );
  const list = document.getElementById('responses');
  list.prepend(box);
  while (list.children.length > MAX_RESPONSES) list.lastElementChild.remove();
}

async function call(path) {
  const url = new URL(path, location.href).href;
  const response = await fetch(url, { cache: 'no-store' });
  await response.arrayBuffer();
  const timing = await timingOf(url);
  if (timing) drawWaterfall(path, response.status, timing);
}

// Live stats.
const statsList = document.getElementById('stats');
const loopPoints = [];
let lastStats = null;

function showStats(stats) {
  lastStats = stats;
  const shown = {
    running: stats.running,
    queued: stats.queued,
    limit: stats.limit,
    completed: stats.completed,
    failed: stats.failed,
    timedOut: stats.timedOut,
    shed: stats.shed,
    abandoned: stats.abandoned,
    retries: stats.retries,
    hedges: stats.hedges,
    'workers busy': stats.workers.busy,
    'workers idle': stats.workers.idle,
    'worker queue': stats.workers.pending,
    'worker shed': stats.workers.shed,
    'loop delay p99': fmt(stats.eventLoopDelayMs.p99),
    'loop delay max': fmt(stats.eventLoopDelayMs.max),
  };
  // The door (`eventLoop` option): the loop's queueing delay it judges by, and the requests it turned away
  // (503 before any task was built), counted apart from the tasks shed from the queues above.
  if (stats.eventLoop) {
    shown['door: loop delay'] = fmt(stats.eventLoop.delayMs);
    shown['door: in flight'] = stats.eventLoop.inFlight;
    shown['door: shed'] = stats.eventLoop.shed;
    shown['door: shedding'] = stats.eventLoop.shedding ? 'yes' : 'no';
  }
  statsList.replaceChildren(
    ...Object.entries(shown).flatMap(([k, v]) => [
      el('dt', { text: k }),
      el('dd', { text: String(v), 'data-stat': k }),
    ]),
  );
  drawDependencies(stats.dependencies || {});
  loopPoints.push(stats.eventLoopDelayMs.max);
  if (loopPoints.length > LOOP_POINTS) loopPoints.shift();
  drawLoop();
}

/**
 * One row per dependency's bulkhead: its limit, tasks running and queued (a bar: running solid, queued hatched,
 * on the scale of its limit) and its tasks shed since the start.
 */
function drawDependencies(dependencies) {
  const names = Object.keys(dependencies);
  const body = document.getElementById('deps-body');
  document.getElementById('deps-empty').hidden = names.length > 0;
  body.replaceChildren(
    ...names.map((name) => {
      const { limit, running, queued, shed } = dependencies[name];
      const scale = Math.max(limit, running + queued, 1);
      const bar = el('div', { class: 'dep-bar' }, [
        el('div', { class: 'run', style: { width: `${(running / scale) * 100}%` } }),
        el('div', { class: 'queue', style: { width: `${(queued / scale) * 100}%` } }),
      ]);
      const cell = (key, value) => el('td', { 'data-dep-stat': key, text: String(value) });
      return el('tr', { 'data-dependency': name, class: shed > 0 ? 'shed' : '' }, [
        el('th', { text: name, title: name }),
        cell('limit', limit),
        cell('running', running),
        cell('queued', queued),
        cell('shed', shed),
        el('td', {}, [bar]),
      ]);
    }),
  );
}

function drawLoop() {
  const svg = document.getElementById('loop');
  const top = Math.max(10, ...loopPoints);
  const points = loopPoints.map((v, i) => `${i},${60 - (v / top) * 56}`).join(' ');
  svg.innerHTML = `<polyline fill="none" stroke="#3b82c4" stroke-width="1" vector-effect="non-scaling-stroke" points="${points}"/>`;
  document.getElementById('loop-top').textContent = `(top: ${Math.round(top)} ms)`;
}

const live = document.getElementById('live');
const events = new EventSource('/events');
events.onmessage = (message) => {
  live.textContent = 'live';
  showStats(JSON.parse(message.data));
};
events.onerror = () => {
  live.textContent = 'reconnecting…';
};

// Burst.
async function burst() {
  const out = document.getElementById('burst-result');
  out.textContent = 'running 500 requests…';
  const before = lastStats;
  const peakStart = loopPoints.length;
  const response = await fetch('/dashboard/burst', { method: 'POST' });
  const report = await response.json();
  // One more stats event, so that the counters include the burst's end.
  await new Promise((resolve) => setTimeout(resolve, 600));
  const after = lastStats;
  const peak = Math.max(0, ...loopPoints.slice(Math.max(0, peakStart - 1)));
  const statuses = Object.entries(report.statuses)
    .map(([status, n]) => `${n} × ${status}`)
    .join(', ');
  const delta = (of) => (before && after ? of(after) - of(before) : 0);
  out.replaceChildren(
    el('div', { text: `${report.requests} requests in ${fmt(report.ms)}: ${statuses}` }),
    el('div', { 'data-burst': 'fallbacks', text: `fallbacks: ${report.fallbacks}` }),
    el('div', {
      'data-burst': 'shed',
      text:
        `tasks shed: ${delta((s) => s.shed)}, timed out: ${delta((s) => s.timedOut)}; ` +
        `worker calls shed: ${delta((s) => s.workers.shed)}; ` +
        `requests shed at the door: ${delta((s) => (s.eventLoop ? s.eventLoop.shed : 0))}`,
    }),
    el('div', { 'data-burst': 'loop', text: `event-loop delay, max: ${fmt(peak)}` }),
  );
}

for (const button of document.querySelectorAll('button[data-path]')) {
  button.addEventListener('click', () => call(button.dataset.path));
}
document.getElementById('burst').addEventListener('click', () => burst());
