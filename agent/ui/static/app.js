// picket status page: plain JavaScript, no framework, no build step, nothing from the network
// but this agent's own /v1 API. The Content-Security-Policy forbids inline code, eval and
// HTML strings (Trusted Types), so every element is built with createElement/textContent.
//
// Data flow: /v1/members, /v1/checks and /v1/leader are polled every 2 s; /v1/events and
// /v1/logs are followed as Server-Sent Events read through fetch() (EventSource cannot send
// the Authorization header). Everything else — latency history, transitions, placement
// moves — is kept in memory and lost on reload.
'use strict';

(() => {
  const POLL_MS = 2000;
  const TOKEN_KEY = 'picket.token';
  const MAX_EVENTS = 500;
  const MAX_LOGS = 1000;
  const LOG_PAGE = 200;
  const HISTORY = 60;
  const VIEWS = ['cluster', 'checks', 'placement', 'logs'];
  const LEVELS = { debug: 0, info: 1, warn: 2, warning: 2, error: 3 };
  // Member updates that change every few seconds and that the cards show anyway.
  const NOISY_UPDATES = new Set(['', 'load', 'health']);

  // The API lives next to /ui/, also behind a reverse proxy that adds a path prefix.
  const BASE = location.pathname.replace(/ui(\/.*)?$/, '');

  const ICONS = {
    alive: '●', suspect: '◐', dead: '✖', left: '○',
    passing: '✔', warning: '▲', critical: '✖', unknown: '?', none: '–',
  };
  const EVENT_ICONS = {
    join: '+', leave: '↩', fail: '✖', update: '↻', drift: '⚠', leader: '♛', check: '◆', placement: '⇄', move: '⇄',
  };

  const st = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    authNeeded: false,
    agent: null,
    members: null, // null until the first answer
    checks: null,
    leader: null,
    leaderState: 'loading', // loading | ok | none | unavailable | error
    leaderNote: '',
    checksError: '',
    events: [],
    lastEventId: 0,
    eventsState: 'connecting', // connecting | live | unavailable | down
    history: new Map(), // check \0 node → [{t, d, s}]
    assigned: new Map(), // cluster check → "n1,n2" as last seen, to notice moves
    moves: [], // {time, check, from, to, reason}
    prevMember: new Map(),
    prevResult: new Map(),
    pollOK: null,
    pollError: '',
    lastUpdate: null,
    view: 'cluster',
    selected: null,
    logs: {
      state: 'idle', // idle | loading | live | paused | unavailable | error
      note: '',
      records: [],
      keys: new Set(),
      filter: { level: '', node: '', contains: '', since: '', follow: true },
      running: '', // JSON of the filter the current query and stream were started with
      ctl: null,
    },
  };

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers -------------------------------------------------------------------

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') el.textContent = String(v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'data') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.append(typeof k === 'string' || typeof k === 'number' ? String(k) : k);
    }
  }

  // h builds an HTML element: h('p', {class: 'x'}, 'text', child...).
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }

  // s builds an SVG element.
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }

  // fill replaces the children of container and gives focus back to the element with the
  // same data-key, so a re-render every 2 s does not steal keyboard focus.
  function fill(container, ...kids) {
    const active = document.activeElement;
    const key = active && container.contains(active) ? active.dataset.key : undefined;
    container.replaceChildren();
    append(container, kids);
    if (key !== undefined) {
      const el = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (el) el.focus({ preventScroll: true });
    }
  }

  // Re-render a container only when the data it shows changed.
  const sigs = new Map();
  function changed(id, data) {
    const sig = JSON.stringify(data);
    if (sigs.get(id) === sig) return false;
    sigs.set(id, sig);
    return true;
  }

  function pill(status, label) {
    const known = ICONS[status] !== undefined ? status : 'unknown';
    return h('span', { class: `st st-${known}`, data: { status } },
      h('span', { class: 'ic', 'aria-hidden': 'true', text: ICONS[known] }), label || status);
  }

  // ---- time and number formats -----------------------------------------------------------

  function validTime(t) {
    if (!t) return null;
    const d = t instanceof Date ? t : new Date(t);
    if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 2000) return null;
    return d;
  }

  function relative(d) {
    const sec = Math.round((Date.now() - d.getTime()) / 1000);
    const a = Math.abs(sec);
    let v;
    if (a < 3) return 'just now';
    if (a < 60) v = `${a} s`;
    else if (a < 3600) v = `${Math.floor(a / 60)} min`;
    else if (a < 86400) v = `${Math.floor(a / 3600)} h ${Math.floor((a % 3600) / 60)} min`;
    else v = `${Math.floor(a / 86400)} d`;
    return sec >= 0 ? `${v} ago` : `in ${v}`;
  }

  function absolute(d) {
    return `${d.toLocaleString()} (${d.toISOString()})`;
  }

  // timeEl shows a time relative, with the absolute time as title; the ticker refreshes it.
  function timeEl(t, prefix) {
    const d = validTime(t);
    if (!d) return h('span', { class: 'empty', text: 'never' });
    return h('time', {
      datetime: d.toISOString(), title: absolute(d), class: 'rel', data: { prefix: prefix || '' },
      text: (prefix || '') + relative(d),
    });
  }

  function tickTimes() {
    if (document.hidden) return;
    for (const el of document.querySelectorAll('time.rel')) {
      const d = new Date(el.getAttribute('datetime'));
      const text = (el.dataset.prefix || '') + relative(d);
      if (el.textContent !== text) el.textContent = text;
    }
  }

  function fmtDur(sec) {
    if (typeof sec !== 'number' || !Number.isFinite(sec)) return '–';
    if (sec < 0.01) return `${(sec * 1000).toFixed(1)} ms`;
    if (sec < 1) return `${Math.round(sec * 1000)} ms`;
    return `${sec.toFixed(2)} s`;
  }

  function fmtLoad(l) {
    return typeof l === 'number' && Number.isFinite(l) ? l.toFixed(2) : '–';
  }

  function shortHash(hh) {
    return hh ? String(hh).slice(0, 12) : '–';
  }

  // ---- API -----------------------------------------------------------------------------

  class HTTPError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function headers(extra) {
    const hd = Object.assign({}, extra);
    if (st.token) hd.Authorization = `Bearer ${st.token}`;
    return hd;
  }

  async function errorOf(resp) {
    let msg = `${resp.status} ${resp.statusText}`;
    try {
      const j = await resp.json();
      if (j && j.error) msg = `${resp.status}: ${j.error}`;
    } catch (_) { /* not JSON */ }
    return new HTTPError(resp.status, msg);
  }

  async function api(path, signal) {
    const resp = await fetch(BASE + path, {
      headers: headers({ Accept: 'application/json' }), cache: 'no-store', signal, credentials: 'omit',
    });
    if (resp.status === 401) {
      needLogin(await errorOf(resp));
      throw new HTTPError(401, 'unauthorized');
    }
    if (!resp.ok) throw await errorOf(resp);
    return resp.json();
  }

  // sse reads a Server-Sent Events stream with fetch and calls onEvent({event, id, data})
  // for each event until the stream ends or signal aborts.
  async function sse(path, { signal, lastEventId, onOpen, onEvent }) {
    const hd = headers({ Accept: 'text/event-stream' });
    if (lastEventId) hd['Last-Event-ID'] = String(lastEventId);
    const resp = await fetch(BASE + path, { headers: hd, cache: 'no-store', signal, credentials: 'omit' });
    if (resp.status === 401) {
      needLogin(await errorOf(resp));
      throw new HTTPError(401, 'unauthorized');
    }
    if (!resp.ok) throw await errorOf(resp);
    const type = resp.headers.get('Content-Type') || '';
    if (!type.startsWith('text/event-stream')) throw new HTTPError(resp.status, `not an event stream (${type})`);
    if (onOpen) onOpen();
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let data = [];
    let event = '';
    let id = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          let line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (data.length) onEvent({ event: event || 'message', id, data: data.join('\n') });
            data = [];
            event = '';
            continue;
          }
          if (line[0] === ':') continue; // comment: keepalive
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let val = c < 0 ? '' : line.slice(c + 1);
          if (val[0] === ' ') val = val.slice(1);
          if (field === 'data') data.push(val);
          else if (field === 'event') event = val;
          else if (field === 'id') id = val;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // follow runs open() again and again with a growing pause after failures, until signal
  // aborts. open returns when its stream ends; it throws on failure.
  async function follow(signal, open, onDown) {
    let pause = 1000;
    while (!signal.aborted) {
      const began = Date.now();
      try {
        await open();
      } catch (err) {
        if (signal.aborted || (err instanceof HTTPError && (err.status === 401 || err.status === 404))) return err;
        if (onDown) onDown(err);
      }
      if (Date.now() - began > 10000) pause = 1000;
      await sleep(pause, signal);
      pause = Math.min(pause * 2, 15000);
    }
    return null;
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  // ---- login -----------------------------------------------------------------------------

  let session = null; // AbortController of the streams of this signed-in session

  function needLogin(err) {
    if (st.authNeeded) return;
    st.authNeeded = true;
    if (session) session.abort();
    stopLogs();
    clearTimeout(pollTimer);
    const hadToken = !!st.token;
    st.token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    $('login-error').textContent = hadToken ? `The token was refused (${err ? err.message : '401'}). Sign in again.` : '';
    $('login').hidden = false;
    for (const v of VIEWS) $(`view-${v}`).hidden = true;
    document.querySelector('.tabs-nav').hidden = true;
    $('banner').hidden = true;
    $('signout').hidden = true;
    $('summary').textContent = 'Sign in to see the cluster.';
    setConn('down', 'signed out');
    $('token').focus();
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const token = $('token').value.trim();
    if (!token) return;
    const btn = ev.target.querySelector('button[type="submit"]');
    btn.disabled = true;
    $('login-error').textContent = '';
    try {
      const resp = await fetch(`${BASE}v1/agent`, {
        headers: { Accept: 'application/json', Authorization: `Bearer ${token}` }, cache: 'no-store', credentials: 'omit',
      });
      if (resp.status === 401) {
        $('login-error').textContent = 'That token was refused (401). Check http.token in the agent\'s config.';
        $('token').select();
        return;
      }
      if (!resp.ok) throw await errorOf(resp);
      st.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
      st.agent = await resp.json();
      $('token').value = '';
      $('login').hidden = true;
      document.querySelector('.tabs-nav').hidden = false;
      st.authNeeded = false;
      begin();
      route();
      $('main').focus();
    } catch (err) {
      $('login-error').textContent = `Cannot reach the agent: ${err.message}`;
    } finally {
      btn.disabled = false;
    }
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    st.token = '';
    location.reload();
  }

  // ---- polling ---------------------------------------------------------------------------

  let pollTimer = null;
  let polling = false;
  let pollAgain = false;
  let leaderAsked = 0; // when /v1/leader was last asked; a 404 is asked again only every 30 s

  function askLeader() {
    if (st.leaderState === 'unavailable' && Date.now() - leaderAsked < 30000) {
      return Promise.reject(new HTTPError(404, 'not available'));
    }
    leaderAsked = Date.now();
    return api('v1/leader');
  }

  async function loadAgent() {
    try {
      st.agent = await api('v1/agent');
      render();
    } catch (_) { /* shown through the poll */ }
  }

  async function poll() {
    if (st.authNeeded) return;
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    clearTimeout(pollTimer);
    try {
      const [members, checks, leader] = await Promise.allSettled([
        api('v1/members'), api('v1/checks'), askLeader(),
      ]);
      if (st.authNeeded) return;
      if (members.status === 'fulfilled') {
        st.pollOK = true;
        st.pollError = '';
        st.lastUpdate = new Date();
        updateMembers(Array.isArray(members.value) ? members.value : []);
        if (!st.agent) loadAgent();
      } else {
        st.pollOK = false;
        st.pollError = members.reason && members.reason.message ? members.reason.message : String(members.reason);
      }
      if (checks.status === 'fulfilled') {
        st.checksError = '';
        updateChecks(Array.isArray(checks.value) ? checks.value : []);
      } else if (st.pollOK) {
        st.checksError = checks.reason.message;
      }
      if (leader.status === 'fulfilled' && leader.value && leader.value.name) {
        st.leaderState = 'ok';
        st.leader = leader.value;
        st.leaderNote = '';
      } else if (leader.status === 'fulfilled') {
        st.leaderState = 'none';
        st.leader = null;
        st.leaderNote = 'no aggregator is known';
      } else {
        const e = leader.reason;
        st.leader = null;
        if (e instanceof HTTPError && (e.status === 404 || e.status === 405 || e.status === 501)) {
          st.leaderState = 'unavailable';
          st.leaderNote = '';
        } else if (e instanceof HTTPError && e.status === 503) {
          st.leaderState = 'none';
          st.leaderNote = e.message;
        } else {
          st.leaderState = 'error';
          st.leaderNote = e && e.message ? e.message : String(e);
        }
      }
      render();
    } finally {
      polling = false;
      if (!st.authNeeded) {
        pollTimer = setTimeout(poll, pollAgain ? 150 : POLL_MS);
        pollAgain = false;
      }
    }
  }

  // pollSoon polls shortly after an event said something changed.
  function pollSoon() {
    if (st.authNeeded) return;
    if (polling) {
      pollAgain = true;
      return;
    }
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, 150);
  }

  function updateMembers(ms) {
    ms.sort((a, b) => a.name.localeCompare(b.name));
    const first = st.members === null;
    for (const m of ms) {
      const before = st.prevMember.get(m.name);
      if (!first && before !== m.status) {
        announce(before ? `Member ${m.name} is now ${m.status} (was ${before}).` : `Member ${m.name} joined (${m.status}).`);
      }
      st.prevMember.set(m.name, m.status);
    }
    st.members = ms;
  }

  function updateChecks(cs) {
    cs.sort((a, b) => a.name.localeCompare(b.name));
    const first = st.checks === null;
    const now = new Date();
    for (const c of cs) {
      for (const r of c.results || []) {
        const key = `${c.name}\u0000${r.node}`;
        const prev = st.prevResult.get(key);
        const state = nodeState(c, r);
        if (!first && prev && prev !== state && (state === 'critical' || prev === 'critical')) {
          announce(`Check ${c.name} on ${r.node} is now ${state}.`);
        }
        st.prevResult.set(key, state);
        const t = validTime(r.time);
        if (!t || typeof r.duration_seconds !== 'number') continue;
        let hist = st.history.get(key);
        if (!hist) st.history.set(key, hist = []);
        if (hist.length && hist[hist.length - 1].t === t.getTime()) continue;
        hist.push({ t: t.getTime(), d: r.duration_seconds, s: r.status });
        if (hist.length > HISTORY) hist.splice(0, hist.length - HISTORY);
      }
      if (c.placement === 'cluster') {
        const nodes = (c.nodes || []).slice().sort().join(', ');
        const before = st.assigned.get(c.name);
        if (before !== undefined && before !== nodes) {
          st.moves.unshift({ time: now, check: c.name, from: before, to: nodes, reason: moveReason(now) });
          st.moves.length = Math.min(st.moves.length, 100);
        }
        st.assigned.set(c.name, nodes);
      }
    }
    st.checks = cs;
  }

  // moveReason guesses why an assignment changed from the membership events just before.
  function moveReason(now) {
    for (let i = st.events.length - 1; i >= 0; i--) {
      const e = st.events[i];
      const t = validTime(e.time);
      if (!t || now - t > 30000) break;
      if (['fail', 'leave', 'join', 'leader', 'placement', 'move'].includes(e.type)) {
        return `after ${e.type}${e.node ? ` of ${e.node}` : ''}${e.detail ? `: ${e.detail}` : ''}`;
      }
    }
    return 'no membership change seen just before';
  }

  // ---- events ----------------------------------------------------------------------------

  async function runEvents(signal) {
    const err = await follow(signal, () => sse('v1/events?follow=true', {
      signal,
      lastEventId: st.lastEventId,
      onOpen: () => { st.eventsState = 'live'; render(); },
      onEvent: (msg) => {
        if (msg.event !== 'event') return;
        let e;
        try { e = JSON.parse(msg.data); } catch (_) { return; }
        onEvent(e);
      },
    }), () => { st.eventsState = 'down'; render(); });
    if (err instanceof HTTPError && err.status === 404) {
      st.eventsState = 'unavailable';
      render();
    }
  }

  function onEvent(e) {
    if (typeof e.id === 'number') {
      if (e.id <= st.lastEventId) return;
      st.lastEventId = e.id;
    }
    // A member's load changes every few seconds; the 2 s poll shows it. Keep the ring for
    // the changes people look for.
    if (e.type === 'update' && String(e.detail || '').split(',').every((f) => NOISY_UPDATES.has(f.trim()))) return;
    st.events.push(e);
    if (st.events.length > MAX_EVENTS) st.events.splice(0, st.events.length - MAX_EVENTS);
    if (['join', 'leave', 'fail', 'update', 'leader', 'check', 'drift', 'placement', 'move'].includes(e.type)) pollSoon();
    if (['placement', 'move'].includes(e.type)) {
      st.moves.unshift({ time: validTime(e.time) || new Date(), check: e.check || '', from: e.from || '', to: e.to || '', reason: e.detail || e.type });
    }
    render();
  }

  // ---- logs ------------------------------------------------------------------------------

  function logQuery(extra) {
    const f = st.logs.filter;
    const q = new URLSearchParams();
    if (f.level) q.set('level', f.level);
    if (f.node) q.set('node', f.node);
    if (f.contains) q.set('contains', f.contains);
    const since = sinceTime(f.since);
    if (since) q.set('since', since.toISOString());
    for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
    return q.toString();
  }

  // sinceTime turns "15m", "1h" or an RFC 3339 time into a Date.
  function sinceTime(v) {
    if (!v) return null;
    const m = /^(\d+)(m|h)$/.exec(v);
    if (m) return new Date(Date.now() - Number(m[1]) * (m[2] === 'h' ? 3600e3 : 60e3));
    return validTime(v);
  }

  function logMatches(r) {
    const f = st.logs.filter;
    if (f.level && (LEVELS[String(r.level).toLowerCase()] ?? 0) < LEVELS[f.level]) return false;
    if (f.node && r.node !== f.node) return false;
    if (f.contains && !String(r.message || '').toLowerCase().includes(f.contains.toLowerCase())) return false;
    const since = sinceTime(f.since);
    const t = validTime(r.time);
    if (since && t && t < since) return false;
    return true;
  }

  function logKey(r) {
    return r.seq !== undefined ? `${r.node}/${r.seq}` : `${r.node}/${r.time}/${r.message}`;
  }

  function stopLogs() {
    if (st.logs.ctl) st.logs.ctl.abort();
    st.logs.ctl = null;
    st.logs.running = '';
  }

  async function startLogs() {
    stopLogs();
    if (st.authNeeded) return;
    const L = st.logs;
    const ctl = new AbortController();
    L.ctl = ctl;
    L.running = JSON.stringify(L.filter);
    L.state = 'loading';
    L.note = '';
    L.records = [];
    L.keys = new Set();
    renderLogs(true);
    try {
      const recs = await api(`v1/logs?${logQuery({ limit: String(LOG_PAGE) })}`, ctl.signal);
      if (ctl.signal.aborted) return;
      for (const r of Array.isArray(recs) ? recs : []) {
        const k = logKey(r);
        if (L.keys.has(k)) continue;
        L.keys.add(k);
        L.records.push(r);
      }
    } catch (err) {
      if (ctl.signal.aborted) return;
      if (err instanceof HTTPError && err.status === 404) {
        L.state = 'unavailable';
        L.note = 'Logs are not available on this agent: GET /v1/logs answered 404.';
      } else {
        L.state = 'error';
        L.note = `Cannot read logs: ${err.message}`;
      }
      renderLogs(true);
      return;
    }
    L.state = L.filter.follow ? 'live' : 'paused';
    renderLogs(true);
    if (!L.filter.follow) return;
    const err = await follow(ctl.signal, () => {
      const newest = L.records.length ? validTime(L.records[0].time) : null;
      const extra = { follow: 'true' };
      if (newest && !L.filter.since) extra.since = newest.toISOString();
      let q = logQuery(extra);
      if (newest && L.filter.since) {
        const p = new URLSearchParams(q);
        p.set('since', new Date(Math.max(newest, sinceTime(L.filter.since))).toISOString());
        q = p.toString();
      }
      return sse(`v1/logs?${q}`, {
        signal: ctl.signal,
        onOpen: () => { L.state = 'live'; L.note = ''; renderLogStatus(); },
        onEvent: (msg) => {
          let r;
          try { r = JSON.parse(msg.data); } catch (_) { return; }
          for (const rec of Array.isArray(r) ? r : [r]) addLog(rec);
        },
      });
    }, (e) => { L.state = 'error'; L.note = `Log stream interrupted (${e.message}); reconnecting…`; renderLogStatus(); });
    if (err instanceof HTTPError && err.status === 404 && !ctl.signal.aborted) {
      L.state = 'paused';
      L.note = 'Follow mode is not available on this agent (404); showing a snapshot.';
      renderLogStatus();
    }
  }

  function addLog(r) {
    const L = st.logs;
    if (!r || typeof r !== 'object' || !logMatches(r)) return;
    const k = logKey(r);
    if (L.keys.has(k)) return;
    L.keys.add(k);
    L.records.unshift(r);
    const body = $('logs-body');
    if (body.querySelector('.empty')) body.replaceChildren();
    const row = logRow(r);
    row.classList.add('fresh');
    body.prepend(row);
    while (L.records.length > MAX_LOGS) {
      const old = L.records.pop();
      L.keys.delete(logKey(old));
      if (body.lastElementChild) body.lastElementChild.remove();
    }
    renderLogStatus();
  }

  function logRow(r) {
    const lv = String(r.level || '').toLowerCase();
    const attrs = r.attrs && typeof r.attrs === 'object' ? Object.entries(r.attrs) : [];
    return h('tr', { data: { node: r.node || '', level: lv } },
      h('td', { class: 't' }, timeEl(r.time)),
      h('td', { class: 'lvc' }, h('span', { class: `lv lv-${lv === 'warning' ? 'warn' : lv}`, text: lv || '?' })),
      h('td', { class: 'node mono', text: r.node || '' }),
      h('td', { class: 'msg' }, r.message || '',
        attrs.length ? h('div', { class: 'attrs' }, attrs.map(([k, v]) => h('span', { text: `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}` }))) : null));
  }

  function renderLogStatus() {
    const L = st.logs;
    const count = `${L.records.length} record${L.records.length === 1 ? '' : 's'}`;
    let text;
    switch (L.state) {
      case 'loading': text = 'Loading…'; break;
      case 'live': text = `${count} · following new records`; break;
      case 'paused': text = `${count} · follow is off`; break;
      default: text = '';
    }
    if (L.note) text = text ? `${text} · ${L.note}` : L.note;
    if ($('logs-status').textContent !== text) $('logs-status').textContent = text;
  }

  function renderLogs(full) {
    renderLogStatus();
    if (!full) return;
    const L = st.logs;
    if (L.state === 'unavailable' || L.state === 'error') {
      fill($('logs-body'), h('tr', null, h('td', { colspan: '4', class: 'empty', text: L.note })));
      return;
    }
    if (!L.records.length) {
      fill($('logs-body'), h('tr', null, h('td', { colspan: '4', class: 'empty', text: L.state === 'loading' ? 'Loading…' : 'No records match these filters.' })));
      return;
    }
    fill($('logs-body'), L.records.map(logRow));
  }

  // filterFromForm returns the filter the form shows. It leaves st.logs.filter alone: route()
  // applies a filter, and restarts the query only when it differs from the running one.
  function filterFromForm() {
    return {
      level: $('f-level').value,
      node: $('f-node').value,
      contains: $('f-contains').value.trim(),
      since: $('f-since').value,
      follow: $('f-follow').checked,
    };
  }

  function formFromFilter() {
    const f = st.logs.filter;
    $('f-level').value = LEVELS[f.level] !== undefined ? f.level : '';
    ensureOption($('f-node'), f.node, f.node);
    $('f-node').value = f.node;
    $('f-contains').value = f.contains;
    if (f.since && !/^(\d+)(m|h)$/.test(f.since)) {
      const d = validTime(f.since);
      ensureOption($('f-since'), f.since, d ? `since ${d.toLocaleTimeString()}` : f.since);
    }
    $('f-since').value = f.since;
    $('f-follow').checked = f.follow;
  }

  function ensureOption(sel, value, label) {
    if (!value) return;
    for (const o of sel.options) if (o.value === value) return;
    sel.append(h('option', { value, text: label }));
  }

  // logsHash is the address of the logs view with filter f.
  function logsHash(f) {
    const q = new URLSearchParams();
    for (const k of ['level', 'node', 'contains', 'since']) if (f[k]) q.set(k, f[k]);
    if (f.follow === false) q.set('follow', 'false');
    const qs = q.toString();
    return `#logs${qs ? `?${qs}` : ''}`;
  }

  // applyForm puts the form's filter into the address; route() then runs the query. With an
  // unchanged address (Apply pressed again) it runs the query again here.
  function applyForm() {
    const f = filterFromForm();
    const target = logsHash(f);
    if (location.hash !== target) {
      location.hash = target;
      return;
    }
    Object.assign(st.logs.filter, f);
    startLogs();
  }

  function onFilterSubmit(ev) {
    ev.preventDefault();
    applyForm();
  }

  // ---- routing and tabs -------------------------------------------------------------------

  function route() {
    const raw = location.hash.replace(/^#/, '');
    const [path, query] = raw.split('?');
    const parts = path.split('/');
    let view = parts[0] || 'cluster';
    if (!VIEWS.includes(view)) view = 'cluster';
    const prevView = st.view;
    st.view = view;
    if (view === 'checks') {
      const sel = parts.length > 1 ? decodeURIComponent(parts.slice(1).join('/')) : null;
      const opened = sel && sel !== st.selected;
      st.selected = sel;
      sigs.delete('detail');
      if (opened) focusDetail = true;
    }
    for (const v of VIEWS) {
      const tab = $(`tab-${v}`);
      const on = v === view;
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      tab.tabIndex = on ? 0 : -1;
      if (!st.authNeeded) $(`view-${v}`).hidden = !on;
    }
    if (view === 'logs') {
      const q = new URLSearchParams(query || '');
      const f = st.logs.filter;
      const next = {
        level: q.get('level') || '', node: q.get('node') || '', contains: q.get('contains') || '',
        since: q.get('since') || '', follow: q.get('follow') !== 'false',
      };
      const same = prevView === 'logs' && st.logs.ctl !== null && st.logs.running === JSON.stringify(next);
      Object.assign(f, next);
      formFromFilter();
      if (!same) startLogs();
    } else {
      stopLogs();
    }
    render();
  }

  function onTabKey(ev) {
    const tabs = VIEWS.map((v) => $(`tab-${v}`));
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    let j = -1;
    if (ev.key === 'ArrowRight') j = (i + 1) % tabs.length;
    else if (ev.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
    else if (ev.key === 'Home') j = 0;
    else if (ev.key === 'End') j = tabs.length - 1;
    else if (ev.key === ' ') j = i;
    if (j < 0) return;
    ev.preventDefault();
    tabs[j].focus();
    tabs[j].click();
  }

  // ---- rendering --------------------------------------------------------------------------

  let renderQueued = false;
  let focusDetail = false; // move focus to the details once they are drawn
  function render() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(() => {
      renderQueued = false;
      if (st.authNeeded) return;
      renderChrome();
      if (st.view === 'cluster') renderCluster();
      if (st.view === 'checks') renderChecks();
      if (st.view === 'placement') renderPlacement();
      if (st.view === 'logs') renderLogNodes();
    }, 0);
  }

  const announced = [];
  function announce(text) {
    const box = $('announcer');
    box.append(h('p', { text }));
    announced.push(text);
    while (box.childElementCount > 5) box.firstElementChild.remove();
  }

  function setConn(cls, text) {
    const el = $('conn');
    el.className = `conn ${cls}`;
    if (el.textContent !== text) el.textContent = text;
  }

  function leaderName() {
    return st.leaderState === 'ok' && st.leader ? st.leader.name : null;
  }

  function renderChrome() {
    const a = st.agent;
    $('agent-name').textContent = a ? `@ ${a.name}` : '';
    $('signout').hidden = !st.token;
    if (st.pollOK === false) {
      setConn('down', 'offline — retrying');
      $('banner').hidden = false;
      $('banner').textContent = `Cannot reach the agent at ${location.host}: ${st.pollError}. Showing the last data; retrying every ${POLL_MS / 1000} s.`;
    } else if (st.pollOK) {
      $('banner').hidden = true;
      setConn(st.eventsState === 'live' ? 'live' : '', st.eventsState === 'live' ? 'live' : 'polling');
    }
    // Summary (announced politely when it changes).
    const ms = st.members || [];
    const count = (status) => ms.filter((m) => m.status === status).length;
    const parts = [];
    if (st.members) {
      let p = `${ms.length} member${ms.length === 1 ? '' : 's'}: ${count('alive')} alive`;
      for (const x of ['suspect', 'dead', 'left']) if (count(x)) p += `, ${count(x)} ${x}`;
      parts.push(p);
    }
    if (leaderName()) parts.push(`aggregator ${leaderName()}`);
    else if (st.leaderState === 'none') parts.push('no aggregator');
    if (st.checks) {
      const by = {};
      for (const c of st.checks) by[c.status] = (by[c.status] || 0) + 1;
      let p = `${st.checks.length} check${st.checks.length === 1 ? '' : 's'}`;
      const bits = ['critical', 'warning', 'passing', 'unknown'].filter((k) => by[k]).map((k) => `${by[k]} ${k}`);
      if (bits.length) p += `: ${bits.join(', ')}`;
      parts.push(p);
    }
    const text = parts.join(' · ') || 'Loading…';
    if ($('summary').textContent !== text) $('summary').textContent = text;
    // Tab badges: critical checks, members not alive.
    tabBadge('tab-checks', 'Checks', st.checks ? st.checks.filter((c) => c.status === 'critical').length : 0, 'critical');
    tabBadge('tab-cluster', 'Cluster', ms.filter((m) => m.status === 'dead' || m.status === 'suspect').length, 'down');
    const foot = [];
    if (a) foot.push(`agent ${a.name} · picket ${a.version}${a.revision ? ` (${a.revision})` : ''}`);
    fill($('foot-agent'), foot.join(''));
    if (st.lastUpdate && changed('foot', st.lastUpdate.getTime())) fill($('foot-updated'), timeEl(st.lastUpdate, 'updated '));
  }

  function tabBadge(id, label, n, what) {
    const tab = $(id);
    if (tab.dataset.count === String(n)) return;
    tab.dataset.count = String(n);
    tab.replaceChildren(label);
    if (n) tab.append(h('span', { class: 'count', title: `${n} ${what}` }, String(n), h('span', { class: 'sr-only', text: ` ${what}` })));
  }

  // configDrift returns the hash most alive members run and the members that differ.
  function configDrift(ms) {
    const counts = new Map();
    for (const m of ms) {
      if (m.status !== 'alive' || !m.config_hash) continue;
      counts.set(m.config_hash, (counts.get(m.config_hash) || 0) + 1);
    }
    if (counts.size < 2) return { major: null, drifted: new Set() };
    const major = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0][0];
    return { major, drifted: new Set(ms.filter((m) => m.status === 'alive' && m.config_hash && m.config_hash !== major).map((m) => m.name)) };
  }

  function loadBar(load, label, stale) {
    const fillEl = h('div', { class: `load-fill${stale ? ' stale' : ''}` });
    const v = typeof load === 'number' && Number.isFinite(load) ? Math.max(0, load) : 0;
    fillEl.style.width = `${Math.min(v, 1) * 100}%`; // CSSOM, not an inline style attribute
    if (v >= 1) fillEl.classList.add('over');
    else if (v >= 0.7) fillEl.classList.add('high');
    return h('div', { class: 'load' },
      h('span', { class: 'sr-only', text: label || 'load' }),
      h('div', {
        class: 'load-track', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '1',
        'aria-valuenow': v.toFixed(2), 'aria-label': `${label || 'load'} ${fmtLoad(v)} per CPU`,
      }, fillEl),
      h('span', { class: 'load-num', title: stale ? 'last known 1-minute load average per CPU' : '1-minute load average per CPU', text: stale ? `${fmtLoad(load)}*` : fmtLoad(load) }));
  }

  function renderCluster() {
    const ms = st.members || [];
    const lead = leaderName();
    const drift = configDrift(ms);
    const self = st.agent ? st.agent.name : '';
    const recent = st.events.filter((e) => e.type !== 'check').slice(-25).reverse();
    if (!changed('cluster', [ms, lead, st.leaderState, st.leaderNote, self, recent.map((e) => e.id), st.eventsState, st.members === null])) return;

    const notes = [];
    if (st.leaderState === 'unavailable') {
      notes.push(h('p', { class: 'note' }, 'Aggregator: not available — this agent does not serve ', h('code', { text: 'GET /v1/leader' }), ' yet.'));
    } else if (st.leaderState === 'none') {
      notes.push(h('p', { class: 'note bad' }, h('strong', { text: 'No aggregator elected. ' }), st.leaderNote || 'Cluster checks are not placed and logs are spooled until a Raft majority of voters is alive.'));
    } else if (st.leaderState === 'error') {
      notes.push(h('p', { class: 'note warn', text: `Aggregator unknown: ${st.leaderNote}` }));
    }
    if (drift.drifted.size) {
      notes.push(h('p', { class: 'note warn', data: { drift: [...drift.drifted].join(',') } },
        h('strong', { text: '⚠ Configuration drift: ' }),
        `${[...drift.drifted].join(', ')} ${drift.drifted.size === 1 ? 'runs' : 'run'} a config that differs from the majority (hash ${shortHash(drift.major)}).`));
    }
    const down = ms.filter((m) => m.status === 'dead' || m.status === 'suspect');
    if (down.length) {
      notes.push(h('p', { class: 'note bad' }, h('strong', { text: '✖ Not healthy: ' }), down.map((m) => `${m.name} (${m.status})`).join(', ')));
    }
    if (st.eventsState === 'unavailable') notes.push(h('p', { class: 'note', text: 'Live events are not available on this agent (GET /v1/events answered 404).' }));
    fill($('cluster-notes'), notes);

    if (st.members === null) {
      fill($('members'), h('li', { class: 'empty', text: 'Loading members…' }));
    } else if (!ms.length) {
      fill($('members'), h('li', { class: 'empty', text: 'No members.' }));
    } else {
      fill($('members'), ms.map((m) => memberCard(m, m.name === lead, drift, m.name === self)));
    }
    fill($('member-events'), recent.length ? recent.map(eventItem) : h('li', { class: 'empty', text: 'No membership events yet.' }));
  }

  function memberCard(m, isLeader, drift, isSelf) {
    const roles = (m.roles || []).length ? m.roles.map((r) => h('span', { class: 'badge', text: r })) : [h('span', { class: 'empty', text: 'none' })];
    const tags = Object.entries(m.tags || {});
    const badges = [];
    if (isLeader) badges.push(h('span', { class: 'badge crown', title: `Raft leader${st.leader && st.leader.term ? `, term ${st.leader.term}` : ''}` }, h('span', { 'aria-hidden': 'true', text: '♛' }), 'aggregator'));
    if (isSelf) badges.push(h('span', { class: 'badge self', title: 'The agent serving this page', text: 'this agent' }));
    if (drift.drifted.has(m.name)) badges.push(h('span', { class: 'badge drift', title: `config ${shortHash(m.config_hash)} differs from the majority ${shortHash(drift.major)}` }, h('span', { 'aria-hidden': 'true', text: '⚠' }), 'config differs'));
    return h('li', {
      class: `card m-${m.status}${isLeader ? ' leader' : ''}`,
      data: { name: m.name, status: m.status, leader: isLeader ? 'true' : 'false' },
      'aria-label': `${m.name}, ${m.status}${isLeader ? ', aggregator' : ''}`,
    },
    h('div', { class: 'card-head' }, h('h3', { class: 'card-name', text: m.name }), pill(m.status)),
    badges.length ? h('div', { class: 'card-badges' }, badges) : null,
    loadBar(m.load, 'load', m.status === 'dead' || m.status === 'left'),
    h('dl', { class: 'kv' },
      h('dt', { text: 'roles' }), h('dd', { class: 'roles' }, roles),
      h('dt', { text: 'version' }), h('dd', { text: m.version || '–' }),
      h('dt', { text: 'gossip' }), h('dd', { class: 'mono', text: m.address || '–' }),
      m.http_address ? [h('dt', { text: 'http' }), h('dd', { class: 'mono', text: m.http_address })] : null,
      m.health ? [h('dt', { text: 'health' }), h('dd', { title: 'memberlist awareness score; 0 is best', text: `score ${m.health}` })] : null,
      m.config_hash ? [h('dt', { text: 'config' }), h('dd', { class: 'mono', title: m.config_hash, text: shortHash(m.config_hash) })] : null,
      tags.length ? [h('dt', { text: 'tags' }), h('dd', { text: tags.map(([k, v]) => `${k}=${v}`).join(' ') })] : null));
  }

  function eventItem(e) {
    let what = e.node || '';
    if (e.check) what = `${e.check}${e.node ? ` on ${e.node}` : ''}`;
    return h('li', { data: { type: e.type } },
      timeEl(e.time),
      h('span', { class: 'ev-type' }, h('span', { 'aria-hidden': 'true', text: `${EVENT_ICONS[e.type] || '•'} ` }), e.type),
      h('span', { class: 'mono', text: what }),
      e.from || e.to ? h('span', null, pill(e.from || 'unknown'), ' → ', pill(e.to || 'unknown')) : null,
      e.detail ? h('span', { class: 'ev-detail', text: e.detail }) : null);
  }

  function checkNodes(cs) {
    const nodes = new Set();
    for (const c of cs) {
      for (const n of c.nodes || []) nodes.add(n);
      for (const r of c.results || []) if (r.node) nodes.add(r.node);
    }
    return [...nodes].sort();
  }

  // nodeState is what a matrix cell shows: the check's state (after thresholds) when one node
  // runs it, else that node's latest result.
  function nodeState(c, r) {
    if (r.error) return 'unknown';
    const results = c.results || [];
    if (results.length === 1 && (c.nodes || []).length <= 1 && c.status) return c.status;
    return r.status;
  }

  function memberStatus(name) {
    const m = (st.members || []).find((x) => x.name === name);
    return m ? m.status : 'unknown';
  }

  function renderChecks() {
    const cs = st.checks || [];
    const nodes = checkNodes(cs);
    const statuses = nodes.map(memberStatus);
    if (changed('matrix', [cs.map((c) => [c.name, c.type, c.placement, c.status, c.flapping, c.nodes, (c.results || []).map((r) => [r.node, r.status, r.duration_seconds, r.error, r.output])]), nodes, statuses, st.selected, st.checksError, st.checks === null])) {
      renderMatrix(cs, nodes, statuses);
    }
    renderDetail();
  }

  function renderMatrix(cs, nodes, statuses) {
    const box = $('checks-matrix');
    if (st.checks === null) {
      fill(box, h('p', { class: 'empty', text: st.checksError ? `Cannot read checks: ${st.checksError}` : 'Loading checks…' }));
      return;
    }
    if (!cs.length) {
      fill(box, h('p', { class: 'empty', text: 'No checks are defined. Add checks to the agent config (checks:) or POST /v1/checks.' }));
      return;
    }
    const head = h('tr', null, h('th', { scope: 'col', text: 'Check' }),
      nodes.map((n, i) => h('th', { scope: 'col', class: `col-node mono ${statuses[i]}` }, n,
        statuses[i] !== 'alive' && statuses[i] !== 'unknown' ? h('span', { class: 'st-note', text: ` (${statuses[i]})` }) : null)));
    const rows = cs.map((c) => {
      const byNode = new Map((c.results || []).map((r) => [r.node, r]));
      const assigned = new Set(c.nodes || []);
      return h('tr', { class: c.name === st.selected ? 'selected' : '', data: { check: c.name, status: c.status } },
        h('th', { scope: 'row' },
          h('button', {
            type: 'button', class: 'check-btn', data: { key: `check:${c.name}` },
            'aria-expanded': c.name === st.selected ? 'true' : 'false', 'aria-controls': 'check-detail',
            onclick: () => { location.hash = `#checks/${encodeURIComponent(c.name)}`; },
            text: c.name,
          }),
          h('div', { class: 'check-sub' }, pill(c.status), h('span', { text: `${c.type} · ${c.placement || 'local'}` }),
            c.flapping ? h('span', { class: 'badge flap', title: 'changes state too often' }, h('span', { 'aria-hidden': 'true', text: '↯' }), 'flapping') : null)),
        nodes.map((n) => {
          const r = byNode.get(n);
          if (!r) {
            return assigned.has(n)
              ? h('td', { class: 'cell-unknown', data: { check: c.name, node: n, status: 'unknown' } }, pill('unknown', 'pending'))
              : h('td', { data: { check: c.name, node: n, status: 'none' } }, h('span', { 'aria-hidden': 'true', text: '–' }), h('span', { class: 'sr-only', text: 'not run here' }));
          }
          const status = nodeState(c, r);
          const lastDiffers = !r.error && r.status !== status;
          return h('td', {
            class: `cell-${status}`, data: { check: c.name, node: n, status, result: r.error ? 'error' : r.status },
            title: r.error || r.output || '',
          }, pill(status),
          lastDiffers ? h('span', { class: 'dur', text: `last run ${r.status}` }) : null,
          h('span', { class: 'dur', text: fmtDur(r.duration_seconds) }));
        }));
    });
    fill(box, h('table', { class: 'matrix' },
      h('caption', { class: 'sr-only', text: 'Checks by node: each cell is the latest result of the check on that node' }),
      h('thead', null, head), h('tbody', null, rows)));
  }

  function renderDetail() {
    const box = $('check-detail');
    const c = st.selected && st.checks ? st.checks.find((x) => x.name === st.selected) : null;
    if (!st.selected) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    if (focusDetail) {
      focusDetail = false;
      setTimeout(() => box.focus(), 0);
    }
    const trans = st.events.filter((e) => e.type === 'check' && e.check === st.selected).slice(-20).reverse();
    const hist = c ? (c.results || []).map((r) => st.history.get(`${c.name}\u0000${r.node}`) || []) : [];
    if (!changed('detail', [c, trans.map((e) => e.id), hist.map((x) => x.length && x[x.length - 1].t), st.checks === null])) return;
    if (!c) {
      fill(box, h('div', { class: 'detail-head' }, h('h2', { id: 'detail-h', text: st.selected }), closeBtn()),
        h('p', { class: 'empty', text: st.checks === null ? 'Loading…' : 'This check is not defined (any more).' }));
      return;
    }
    const results = c.results || [];
    fill(box,
      h('div', { class: 'detail-head' },
        h('div', { class: 'detail-title' },
          h('h2', { id: 'detail-h', text: c.name }),
          pill(c.status),
          c.flapping ? h('span', { class: 'badge flap' }, h('span', { 'aria-hidden': 'true', text: '↯' }), 'flapping') : null),
        closeBtn()),
      h('dl', { class: 'kv' },
        h('dt', { text: 'type' }), h('dd', { text: c.type }),
        h('dt', { text: 'placement' }), h('dd', { text: c.placement || 'local' }),
        h('dt', { text: 'runs on' }), h('dd', { class: 'mono', text: (c.nodes || []).join(', ') || '–' }),
        h('dt', { text: 'status since' }), h('dd', null, timeEl(c.since)),
        h('dt', { text: 'output' }), h('dd', null, h('pre', { class: 'output', text: c.output || '–' }))),
      h('h3', { text: 'Per node' }),
      h('div', { class: 'scroll-x' }, h('table', { class: 'results' },
        h('thead', null, h('tr', null, ['Node', 'Last result', 'Latency', 'Latency history', 'Output', 'When'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', null, results.length ? results.map((r, i) => h('tr', { data: { node: r.node } },
          h('th', { scope: 'row', class: 'mono', text: r.node }),
          h('td', null, pill(r.error ? 'unknown' : r.status), r.reason ? h('div', { class: 'hint', text: `reason: ${r.reason}` }) : null),
          h('td', { class: 'mono', text: fmtDur(r.duration_seconds) }),
          h('td', null, sparkline(hist[i], `${c.name} on ${r.node}`)),
          h('td', null, h('pre', { class: 'output', text: r.error || r.output || '–' }),
            (r.phases || []).length ? h('div', { class: 'hint', text: r.phases.map((p) => `${p.name}: ${fmtDur(p.duration_seconds)}`).join(' · ') }) : null),
          h('td', null, timeEl(r.time)))) : h('tr', null, h('td', { colspan: '6', class: 'empty', text: 'No results yet.' }))))),
      h('h3', { text: 'Recent transitions' }),
      h('ol', { class: 'events' }, trans.length ? trans.map((e) => h('li', { data: { type: 'check' } },
        timeEl(e.time),
        h('span', { class: 'mono', text: e.node || '' }),
        h('span', null, pill(e.from || 'unknown'), ' → ', pill(e.to || 'unknown')),
        e.detail ? h('span', { class: 'ev-detail', text: e.detail }) : null,
        h('a', { href: logsHash({ node: e.node || '', since: new Date(new Date(e.time).getTime() - 60000).toISOString(), follow: true }), data: { key: `logs:${e.id}` } }, 'logs around then')))
        : h('li', { class: 'empty', text: st.eventsState === 'unavailable' ? 'Transitions need /v1/events, which this agent does not serve.' : 'No transitions since this page was opened.' })));
  }

  function closeBtn() {
    return h('button', {
      type: 'button', class: 'btn-quiet', data: { key: 'close' }, 'aria-label': 'Close check details',
      onclick: () => {
        const name = st.selected;
        location.hash = '#checks';
        setTimeout(() => {
          const b = document.querySelector(`[data-key="${CSS.escape(`check:${name}`)}"]`);
          if (b) b.focus();
        }, 0);
      },
      text: 'Close',
    });
  }

  // sparkline draws the latencies of the last results as an SVG line; non-passing results
  // are dots in their state's colour.
  function sparkline(hist, label) {
    const W = 140;
    const H = 30;
    if (!hist || hist.length < 2) {
      return h('span', { class: 'spark-cap', text: hist && hist.length ? fmtDur(hist[0].d) : 'collecting…' });
    }
    const max = Math.max(...hist.map((p) => p.d), 1e-6);
    const min = Math.min(...hist.map((p) => p.d));
    const step = (W - 6) / (hist.length - 1);
    const pts = hist.map((p, i) => [3 + i * step, H - 3 - (p.d / max) * (H - 6)]);
    const dots = hist.map((p, i) => (p.s === 'critical' || p.s === 'warning'
      ? s('circle', { cx: pts[i][0].toFixed(1), cy: pts[i][1].toFixed(1), r: '2.5', class: p.s === 'critical' ? 'spark-bad' : 'spark-warn' })
      : null));
    const last = hist[hist.length - 1].d;
    const desc = `Latency of ${label} over the last ${hist.length} results: last ${fmtDur(last)}, min ${fmtDur(min)}, max ${fmtDur(max)}`;
    return h('div', null,
      s('svg', { class: 'spark', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': desc },
        s('title', { text: desc }),
        s('polyline', { class: 'spark-line', points: pts.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(' ') }),
        dots),
      h('span', { class: 'spark-cap', text: `${hist.length} runs · max ${fmtDur(max)}` }));
  }

  function renderPlacement() {
    const cs = (st.checks || []).filter((c) => c.placement === 'cluster');
    const ms = st.members || [];
    const moveEvents = st.events.filter((e) => ['placement', 'move', 'leader', 'fail', 'leave'].includes(e.type));
    const moves = [
      ...st.moves.filter((m) => m.to !== undefined && m.check).map((m) => ({ kind: 'move', time: m.time, m })),
      ...moveEvents.filter((e) => e.type !== 'placement' && e.type !== 'move').map((e) => ({ kind: 'event', time: validTime(e.time), e })),
    ].sort((a, b) => (b.time || 0) - (a.time || 0)).slice(0, 30);
    if (!changed('placement', [cs.map((c) => [c.name, c.nodes, c.status]), ms.map((m) => [m.name, m.status, m.load]), moves.map((x) => [x.kind, x.time && x.time.getTime()]), leaderName()])) return;

    const perNode = new Map(ms.map((m) => [m.name, []]));
    for (const c of cs) for (const n of c.nodes || []) {
      if (!perNode.has(n)) perNode.set(n, []);
      perNode.get(n).push(c.name);
    }
    const lead = leaderName();
    fill($('placement-nodes'), h('table', { class: 'place' },
      h('caption', { class: 'sr-only', text: 'Load and cluster checks per node' }),
      h('thead', null, h('tr', null, ['Node', 'Status', 'Load', 'Cluster checks', ''].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', null, [...perNode.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([n, names]) => {
        const m = ms.find((x) => x.name === n);
        return h('tr', { data: { node: n } },
          h('th', { scope: 'row', class: 'mono' }, n, n === lead ? h('span', { class: 'badge crown', title: 'aggregator' }, h('span', { 'aria-hidden': 'true', text: ' ♛' }), 'aggregator') : null),
          h('td', null, pill(m ? m.status : 'unknown')),
          h('td', null, loadBar(m ? m.load : NaN, `load of ${n}`, !m || m.status === 'dead' || m.status === 'left')),
          h('td', { class: 'nums', text: String(names.length) }),
          h('td', { class: 'mono', text: names.join(', ') }));
      }))));

    fill($('placement-checks'), cs.length
      ? h('table', { class: 'place' },
        h('caption', { class: 'sr-only', text: 'Where each cluster check runs' }),
        h('thead', null, h('tr', null, ['Check', 'Runs on', 'Status', 'Since'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', null, cs.map((c) => h('tr', { data: { check: c.name } },
          h('th', { scope: 'row' }, h('a', { href: `#checks/${encodeURIComponent(c.name)}`, class: 'mono', data: { key: `pl:${c.name}` }, text: c.name })),
          h('td', { class: 'mono', text: (c.nodes || []).join(', ') || 'unassigned' }),
          h('td', null, pill(c.status)),
          h('td', null, timeEl(c.since))))))
      : h('p', { class: 'empty' }, 'No cluster checks. A check with ', h('code', { text: 'placement: cluster' }), ' is run by the least-loaded node and moved when that node fails.'));

    fill($('placement-moves'), moves.length ? moves.map((x) => {
      if (x.kind === 'move') {
        const m = x.m;
        return h('li', { data: { type: 'move' } }, timeEl(m.time),
          h('span', { class: 'ev-type' }, h('span', { 'aria-hidden': 'true', text: '⇄ ' }), 'moved'),
          h('span', { class: 'mono', text: m.check }),
          h('span', { class: 'mono', text: `${m.from || 'unassigned'} → ${m.to || 'unassigned'}` }),
          h('span', { class: 'ev-detail', text: m.reason }));
      }
      return eventItem(x.e);
    }) : h('li', { class: 'empty', text: 'No moves since this page was opened.' }));
  }

  function renderLogNodes() {
    const names = (st.members || []).map((m) => m.name);
    if (!changed('lognodes', names)) return;
    const sel = $('f-node');
    const cur = sel.value || st.logs.filter.node;
    sel.replaceChildren(h('option', { value: '', text: 'any' }), names.map((n) => h('option', { value: n, text: n })));
    ensureOption(sel, cur, cur);
    sel.value = cur;
  }

  // ---- start ------------------------------------------------------------------------------

  function begin() {
    if (session) session.abort();
    session = new AbortController();
    st.authNeeded = false;
    loadAgent();
    poll();
    runEvents(session.signal);
  }

  function init() {
    $('login-form').addEventListener('submit', onLogin);
    $('signout').addEventListener('click', signOut);
    $('log-filters').addEventListener('submit', onFilterSubmit);
    $('f-follow').addEventListener('change', applyForm);
    $('f-clear').addEventListener('click', () => {
      location.hash = '#logs';
    });
    $('tabs').addEventListener('keydown', onTabKey);
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) { tickTimes(); pollSoon(); } });
    setInterval(tickTimes, 1000);
    route();
    begin();
  }

  // Hooks for the browser tests: what the page announced to screen readers.
  window.picketUI = Object.freeze({ announced: () => announced.slice() });

  init();
})();
