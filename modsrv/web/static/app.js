// VoltEdge operator console. Plain JavaScript, no dependencies.
//
// Every string that comes from a device or from Redis (ids, names, values,
// frames, reasons) is inserted as text (createTextNode / textContent),
// never as HTML.
'use strict';

(() => {
  const MAX_MODELS = 50;        // model cards shown and subscribed
  const HISTORY = 300;          // samples kept per point for the chart
  const CHANNELS_EVERY = 5000;  // ms between refreshes
  const ALARMS_EVERY = 10000;
  const MODELS_EVERY = 30000;
  const HEALTH_EVERY = 10000;
  const EVENTS_PAGE = 20;
  const EVENTS_EVERY = 5000;   // the connection history's refresh, unless older pages are shown
  const RECENT_ALARMS = 50;

  const $ = (id) => document.getElementById(id);

  // text makes a text node: the only way device strings enter the page.
  const text = (v) => document.createTextNode(v === undefined || v === null ? '' : String(v));

  // el builds an element; children are nodes or values (made text nodes).
  function el(tag, cls, ...kids) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const k of kids) e.appendChild(k instanceof Node ? k : text(k));
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function pad(n, w = 2) { return String(n).padStart(w, '0'); }

  // fmtTime renders Unix ms as local "YYYY-MM-DD HH:MM:SS".
  function fmtTime(ms) {
    const n = Number(ms);
    if (!Number.isFinite(n) || n <= 0) return '';
    const d = new Date(n);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  // fmtWhen renders Unix ms as the time of day when it is today, else with
  // its date: a value from yesterday must not look current.
  function fmtWhen(ms) {
    const full = fmtTime(ms);
    return full.slice(0, 10) === fmtTime(Date.now()).slice(0, 10) ? full.slice(11) : full;
  }

  // frameBytes decodes a frame's hex into bytes (an empty array for bad hex).
  function frameBytes(hex) {
    const s = String(hex || '');
    if (s.length % 2 || /[^0-9a-fA-F]/.test(s)) return new Uint8Array(0);
    const b = new Uint8Array(s.length / 2);
    for (let i = 0; i < b.length; i++) b[i] = parseInt(s.substr(2 * i, 2), 16);
    return b;
  }

  // frameCells renders a frame for the table: a line device's frame as its
  // text; any other as spaced hex with the printable ASCII beside it.
  function frameCells(f) {
    const hex = f.hex !== undefined ? f.hex : f.raw;
    const b = frameBytes(hex);
    const cut = f.cut ? ' …' : '';
    if (f.kind === 'line') return [new TextDecoder().decode(b) + cut, ''];
    const pairs = String(hex || '').match(/../g) || [];
    let ascii = '';
    for (const c of b) ascii += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.';
    return [pairs.join(' ') + cut, ascii];
  }

  function fmtCount(v) {
    if (v === undefined || v === null || v === '') return '';
    const n = Number(v);
    return Number.isFinite(n) ? n.toLocaleString('en-US') : String(v);
  }

  // ---- messages -------------------------------------------------------

  let msgTimer = 0;
  function say(message, info) {
    const m = $('msg');
    m.textContent = message;
    m.className = info ? 'msg info' : 'msg';
    m.hidden = false;
    clearTimeout(msgTimer);
    msgTimer = setTimeout(() => { m.hidden = true; }, 8000);
  }

  // ---- HTTP -------------------------------------------------------------

  class APIError extends Error {
    constructor(status, code, message, body) {
      super(message);
      this.status = status;
      this.code = code;
      this.body = body;
    }
  }

  // api calls the REST API and returns the JSON body; errors carry the
  // server's message ({"error":{"code","message"}}).
  async function api(method, path, body) {
    const opt = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (body !== undefined) {
      opt.headers['Content-Type'] = 'application/json';
      opt.body = JSON.stringify(body);
    }
    const r = await fetch(path, opt);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (method === 'GET' && path !== '/me') {
      // Reads need credentials when modsrv's read_open is false.
      const need = r.status === 401;
      if (need !== state.needLogin) {
        state.needLogin = need;
        if (need && !state.ws) setLive(false, 'log in to see live values');
      }
    }
    if (!r.ok) {
      const e = data && data.error ? data.error : {};
      throw new APIError(r.status, e.code || String(r.status), e.message || r.statusText || ('HTTP ' + r.status), data);
    }
    return data;
  }

  const enc = encodeURIComponent;

  // ---- state --------------------------------------------------------------

  const state = {
    user: null,
    needLogin: false,      // reads answered 401: credentials are needed
    eventsPaged: false,    // older connection events are shown: no refresh
    models: new Map(),     // model id -> {card, rows: Map(point -> row)}
    modelIds: [],          // every model the API lists
    subscribed: new Set(), // models subscribed on the socket
    history: new Map(),    // "model\u0000point" -> [[ts, value], ...]
    chartKey: null,
    channel: null,         // channel whose frames are shown
    eventsNext: '',
    ws: null,
    wsDelay: 1000,
  };

  let lastAlarms = []; // the active alarms last read

  // ---- login --------------------------------------------------------------

  async function refreshMe() {
    try {
      const me = await api('GET', '/me');
      setUser(me.user);
    } catch (e) {
      setUser(null);
    }
  }

  function setUser(user) {
    state.user = user || null;
    $('login').hidden = !!state.user;
    $('whoami').hidden = !state.user;
    $('whoami-name').textContent = state.user ? state.user : '';
    $('sec-control').hidden = !state.user;
    renderAlarmsTable(lastAlarms);
  }

  $('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('POST', '/login', { user: $('login-user').value, password: $('login-password').value });
      $('login-password').value = '';
      setUser(r.user);
      say('Logged in as ' + r.user, true);
      reloadAll();
    } catch (e) {
      say('Login failed: ' + e.message);
    }
  });

  $('logout').addEventListener('click', async () => {
    try { await api('POST', '/logout'); } catch (_) { /* the session ends anyway */ }
    setUser(null);
    reloadAll();
  });

  // reloadAll reads everything again and reopens the live connection with
  // the credentials in force (after a login or a logout).
  function reloadAll() {
    refreshHealth();
    refreshChannels();
    refreshFrames();
    refreshModels();
    refreshAlarms();
    if (!state.eventsPaged) loadEvents(false);
    clearTimeout(state.wsTimer);
    const old = state.ws;
    state.ws = null; // its close handler then leaves reconnecting to us
    if (old) old.close();
    state.wsDelay = 1000;
    connect();
  }

  // ---- health ---------------------------------------------------------------

  async function refreshHealth() {
    try {
      const h = await api('GET', '/health');
      $('health').textContent = 'Redis ' + h.redis + (h.lua_version ? ' · Lua v' + h.lua_version : '') +
        (h.uptime_s !== undefined ? ' · up ' + Math.round(Number(h.uptime_s) / 60) + ' min' : '');
    } catch (e) {
      const b = e.body || {};
      $('health').textContent = 'Redis ' + (b.redis || 'unreachable');
    }
  }

  // ---- channels ---------------------------------------------------------------

  async function refreshChannels() {
    let data;
    try {
      data = await api('GET', '/channels');
    } catch (e) {
      $('channels-count').textContent = '(' + e.message + ')';
      return;
    }
    const list = Array.isArray(data.channels) ? data.channels : [];
    const online = list.filter((c) => c.online === true).length;
    $('channels-count').textContent = online + ' online of ' + (data.total !== undefined ? data.total : list.length);
    const body = $('channels').tBodies[0];
    clear(body);
    for (const c of list) {
      const tr = el('tr', 'pick',
        el('td', null, c.id),
        el('td', c.online ? 'on' : 'off', c.online ? 'online' : 'offline'),
        el('td', null, c.registration),
        el('td', null, c.remote),
        el('td', null, fmtCount(c.polls_ok)),
        el('td', null, fmtCount(c.timeouts)),
        el('td', null, fmtCount(c.crc_errors)),
        el('td', null, fmtCount(c.bytes_in)),
        el('td', null, fmtTime(c.last_heartbeat)),
        el('td', null, c.online ? '' : c.disconnect_reason));
      tr.dataset.channel = String(c.id);
      if (String(c.id) === state.channel) tr.classList.add('sel');
      tr.addEventListener('click', () => selectChannel(String(c.id)));
      body.appendChild(tr);
    }
    if (state.channel === null && list.length > 0) selectChannel(String(list[0].id));
  }

  function selectChannel(id) {
    state.channel = id;
    for (const tr of $('channels').tBodies[0].rows) tr.classList.toggle('sel', tr.dataset.channel === id);
    $('frames-channel').textContent = 'channel ' + id;
    refreshFrames();
  }

  async function refreshFrames() {
    const id = state.channel;
    if (id === null) return;
    let data;
    try {
      data = await api('GET', '/channels/' + enc(id) + '/frames?limit=20');
    } catch (e) {
      $('frames-channel').textContent = 'channel ' + id + ' (' + e.message + ')';
      return;
    }
    if (id !== state.channel) return;
    const body = $('frames').tBodies[0];
    clear(body);
    for (const f of Array.isArray(data.frames) ? data.frames : []) {
      const [shown, ascii] = frameCells(f);
      body.appendChild(el('tr', null,
        el('td', null, fmtTime(f.ts)),
        el('td', null, f.dir),
        el('td', null, f.kind),
        el('td', f.kind === 'line' ? 'text' : 'hex', shown),
        el('td', 'ascii', ascii)));
    }
    if (body.rows.length === 0) body.appendChild(el('tr', null, el('td', 'muted', 'no frames')));
  }

  // ---- models and live values -----------------------------------------------

  async function refreshModels() {
    let data;
    try {
      data = await api('GET', '/models');
    } catch (e) {
      $('models-count').textContent = '(' + e.message + ')';
      return;
    }
    state.modelIds = (Array.isArray(data.models) ? data.models : []).map((m) => String(m.id)).sort();
    applyModelFilter();
  }

  // applyModelFilter shows (and subscribes to) the first MAX_MODELS models
  // matching the filter.
  function applyModelFilter() {
    const f = $('model-filter').value.trim().toLowerCase();
    const shown = state.modelIds.filter((id) => id.toLowerCase().includes(f)).slice(0, MAX_MODELS);
    const want = new Set(shown);
    const matching = state.modelIds.filter((id) => id.toLowerCase().includes(f)).length;
    $('models-count').textContent = shown.length < matching ? shown.length + ' of ' + matching + ' models' : matching + ' models';
    for (const [id, m] of state.models) {
      if (!want.has(id)) {
        m.card.remove();
        state.models.delete(id);
      }
    }
    const box = $('models');
    for (const id of shown) {
      if (!state.models.has(id)) {
        const m = makeCard(id);
        state.models.set(id, m);
        loadValues(id);
      }
      box.appendChild(state.models.get(id).card); // keeps the sorted order
    }
    syncSubscription();
    fillControlModels();
  }

  $('model-filter').addEventListener('input', applyModelFilter);

  function makeCard(id) {
    const tbody = el('tbody');
    const card = el('div', 'model', el('h3', null, id), el('table', null, tbody));
    card.dataset.model = id;
    return { card, tbody, rows: new Map() };
  }

  async function loadValues(id) {
    let data;
    try {
      data = await api('GET', '/models/' + enc(id) + '/values');
    } catch (e) {
      return; // the live updates fill the card
    }
    const m = state.models.get(id);
    if (!m || !data.values) return;
    for (const name of Object.keys(data.values).sort()) {
      const v = data.values[name];
      setValue(id, name, v.value, v.ts, v.quality, false);
    }
  }

  // row returns the table row of a model point, making it when new.
  function row(id, name) {
    const m = state.models.get(id);
    if (!m) return null;
    let r = m.rows.get(name);
    if (r) return r;
    const val = el('td', 'val');
    const ts = el('td', 'muted');
    const tr = el('tr', 'pick', el('td', null, name), val, ts);
    tr.dataset.point = name;
    tr.addEventListener('click', () => selectPoint(id, name));
    r = { tr, val, ts };
    m.rows.set(name, r);
    // keep rows sorted by point name
    let before = null;
    for (const [n, other] of m.rows) {
      if (n > name && (before === null || n < before.dataset.point)) before = other.tr;
    }
    m.tbody.insertBefore(tr, before);
    return r;
  }

  function setValue(id, name, value, ts, quality, live) {
    const r = row(id, name);
    if (r) {
      r.val.textContent = String(value);
      r.ts.textContent = fmtWhen(ts); // time of day, with the date when not today; the full time is the title
      r.ts.title = fmtTime(ts);
      if (quality) r.tr.classList.toggle('stale', quality === 'stale');
      if (live) {
        r.val.classList.add('changed');
        setTimeout(() => r.val.classList.remove('changed'), 600);
      }
    }
    const n = Number(value);
    if (Number.isFinite(n)) {
      const key = id + '\u0000' + name;
      let h = state.history.get(key);
      if (!h) {
        h = [];
        state.history.set(key, h);
      }
      const t = Number(ts) || Date.now();
      if (h.length === 0 || h[h.length - 1][0] !== t || h[h.length - 1][1] !== n) h.push([t, n]);
      if (h.length > HISTORY) h.splice(0, h.length - HISTORY);
      if (key === state.chartKey) drawChart();
    }
  }

  function setQuality(id, quality) {
    for (const name of Object.keys(quality)) {
      const r = row(id, name);
      if (r) r.tr.classList.toggle('stale', quality[name] === 'stale');
    }
  }

  // ---- chart --------------------------------------------------------------------

  function selectPoint(id, name) {
    state.chartKey = id + '\u0000' + name;
    $('chart-title').textContent = id + ' · ' + name;
    $('export-msg').textContent = '';
    drawChart();
  }

  function drawChart() {
    const cv = $('chart');
    const ctx = cv.getContext('2d');
    const w = cv.width;
    const h = cv.height;
    ctx.clearRect(0, 0, w, h);
    ctx.font = '12px system-ui, sans-serif';
    ctx.fillStyle = '#6b7786';
    const data = state.chartKey ? state.history.get(state.chartKey) || [] : [];
    if (data.length === 0) {
      ctx.fillText(state.chartKey ? 'waiting for values…' : 'click a point in Live values', 12, 20);
      return;
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (const [, v] of data) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    if (lo === hi) { lo -= 1; hi += 1; }
    const t0 = data[0][0];
    const t1 = Math.max(data[data.length - 1][0], t0 + 1);
    const L = 56; const R = 8; const T = 10; const B = 22;
    const x = (t) => L + (w - L - R) * (t - t0) / (t1 - t0);
    const y = (v) => T + (h - T - B) * (1 - (v - lo) / (hi - lo));
    ctx.strokeStyle = '#d9dee5';
    ctx.beginPath();
    ctx.moveTo(L, T); ctx.lineTo(L, h - B); ctx.lineTo(w - R, h - B);
    ctx.stroke();
    ctx.fillText(String(+hi.toPrecision(6)), 4, T + 8);
    ctx.fillText(String(+lo.toPrecision(6)), 4, h - B);
    ctx.fillText(fmtTime(t0).slice(11), L, h - 6);
    const last = fmtTime(t1).slice(11);
    ctx.fillText(last, w - R - ctx.measureText(last).width, h - 6);
    ctx.strokeStyle = '#2463b5';
    ctx.lineWidth = 2;
    ctx.beginPath();
    data.forEach(([t, v], i) => (i === 0 ? ctx.moveTo(x(t), y(v)) : ctx.lineTo(x(t), y(v))));
    ctx.stroke();
    if (data.length === 1) ctx.fillRect(x(data[0][0]) - 2, y(data[0][1]) - 2, 4, 4);
  }

  // ---- export ---------------------------------------------------------------------

  // exportHistory asks for an export; when the server can give one, the
  // browser downloads it, otherwise its message is shown.
  async function exportHistory(format) {
    const params = new URLSearchParams({ format });
    if (state.chartKey) {
      const [model, point] = state.chartKey.split('\u0000');
      params.set('model', model);
      params.set('point', point);
    }
    const url = '/export?' + params.toString();
    const out = $('export-msg');
    out.textContent = 'asking…';
    const ctrl = new AbortController();
    try {
      const r = await fetch(url, { credentials: 'same-origin', signal: ctrl.signal });
      if (r.ok) {
        ctrl.abort(); // the download below streams it again, straight to disk
        out.textContent = '';
        window.location.assign(url);
        return;
      }
      let m = 'HTTP ' + r.status;
      try {
        const b = await r.json();
        if (b && b.error && b.error.message) m = b.error.message;
      } catch (_) { /* keep the status */ }
      out.textContent = 'Export unavailable: ' + m;
    } catch (e) {
      out.textContent = 'Export failed: ' + e.message;
    }
  }

  $('export-csv').addEventListener('click', () => exportHistory('csv'));
  $('export-xlsx').addEventListener('click', () => exportHistory('xlsx'));

  // ---- control ----------------------------------------------------------------------

  function fillControlModels() {
    const sel = $('control-model');
    const cur = sel.value;
    clear(sel);
    for (const id of state.modelIds.slice(0, 1000)) {
      const o = el('option', null, id);
      o.value = id;
      sel.appendChild(o);
    }
    if (cur) sel.value = cur;
  }

  $('control').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const model = $('control-model').value;
    const name = $('control-name').value.trim();
    const value = $('control-value').value.trim();
    const out = $('control-result');
    out.textContent = 'sending ' + model + ' ' + name + ' = ' + value + ' …';
    try {
      const r = await api('POST', '/models/' + enc(model) + '/control/' + enc(name), { value });
      out.textContent = 'command ' + r.id + ': ' + r.status + (r.message ? ' (' + r.message + ')' : '');
    } catch (e) {
      const b = e.body || {};
      const res = b.result || {};
      out.textContent = (b.id ? 'command ' + b.id + ': ' : '') + (res.status ? res.status + ': ' : '') + e.message;
      if (e.status === 401) setUser(null);
    }
  });

  // ---- alarms ---------------------------------------------------------------------------

  async function refreshAlarms() {
    let data;
    try {
      data = await api('GET', '/alarms');
    } catch (e) {
      return;
    }
    lastAlarms = Array.isArray(data.active) ? data.active : [];
    renderAlarmsTable(lastAlarms);
    const ul = $('alarm-events');
    clear(ul);
    for (const ev of Array.isArray(data.recent) ? data.recent : []) ul.appendChild(alarmLine(ev));
  }

  function renderAlarmsTable(active) {
    const body = $('alarms').tBodies[0];
    clear(body);
    for (const a of active) {
      const ref = String(a.ref !== undefined ? a.ref : a.model + ':' + a.point);
      const ack = el('td');
      if (a.acked || a.ack) {
        const who = a.ack && a.ack.user ? a.ack.user : '';
        ack.appendChild(text('✓ ' + who + (a.ack && a.ack.ts ? ' ' + fmtTime(a.ack.ts).slice(11) : '')));
      } else if (state.user) {
        const b = el('button', null, 'Ack');
        b.type = 'button';
        b.addEventListener('click', () => ackAlarm(ref));
        ack.appendChild(b);
      } else {
        ack.appendChild(text('no'));
      }
      body.appendChild(el('tr', 'alarm-' + (a.kind === 'low' ? 'low' : 'high'),
        el('td', null, ref), el('td', null, a.kind), el('td', null, a.value), el('td', null, a.limit),
        el('td', null, fmtTime(a.ts)), ack));
    }
    if (active.length === 0) body.appendChild(el('tr', null, el('td', 'muted', 'no active alarms')));
  }

  async function ackAlarm(ref) {
    try {
      await api('POST', '/alarms/' + enc(ref) + '/ack');
      say('Alarm ' + ref + ' acknowledged', true);
    } catch (e) {
      say('Acknowledge failed: ' + e.message);
      if (e.status === 401) setUser(null);
    }
    refreshAlarms();
  }

  function alarmLine(ev) {
    const kind = ev.event || ev.type;
    return el('li', kind === 'raise' ? 'off' : 'on',
      fmtTime(ev.ts) + ' ' + kind + ' ' + ev.model + ':' + ev.point + ' ' + (ev.kind || '') +
      ' value ' + ev.value + ' limit ' + ev.limit);
  }

  function onAlarm(ev) {
    const ul = $('alarm-events');
    ul.insertBefore(alarmLine(ev), ul.firstChild);
    while (ul.children.length > RECENT_ALARMS) ul.removeChild(ul.lastChild);
    refreshAlarms();
  }

  // ---- connection history ------------------------------------------------------------------

  async function loadEvents(older) {
    let data;
    const q = '/events?count=' + EVENTS_PAGE + (older && state.eventsNext ? '&before=' + enc(state.eventsNext) : '');
    try {
      data = await api('GET', q);
    } catch (e) {
      return;
    }
    const body = $('events').tBodies[0];
    if (!older) clear(body);
    for (const ev of Array.isArray(data.events) ? data.events : []) {
      body.appendChild(el('tr', ev.event === 'online' ? 'on' : (ev.event === 'offline' || ev.event === 'refused' ? 'off' : null),
        el('td', null, fmtTime(ev.ts)), el('td', null, ev.event), el('td', null, ev.channel),
        el('td', null, ev.registration), el('td', null, ev.remote), el('td', null, ev.reason)));
    }
    state.eventsNext = data.next || '';
    $('events-older').hidden = !state.eventsNext;
  }

  $('events-older').addEventListener('click', () => { state.eventsPaged = true; loadEvents(true); });

  // ---- WebSocket ------------------------------------------------------------------------------

  function setLive(on, label) {
    const b = $('live');
    b.textContent = label;
    b.className = 'badge ' + (on ? 'on' : 'off');
  }

  function send(msg) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
  }

  // syncSubscription brings the socket's model subscription in line with
  // the cards shown.
  function syncSubscription() {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    const add = [];
    const drop = [];
    for (const id of state.models.keys()) if (!state.subscribed.has(id)) add.push(id);
    for (const id of state.subscribed) if (!state.models.has(id)) drop.push(id);
    if (drop.length) send({ type: 'unsubscribe', models: drop });
    if (add.length) send({ type: 'subscribe', models: add, alarms: true });
    for (const id of drop) state.subscribed.delete(id);
    for (const id of add) state.subscribed.add(id);
  }

  function connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      setLive(false, 'offline');
      state.wsTimer = setTimeout(connect, state.wsDelay);
      return;
    }
    state.ws = ws;
    state.subscribed = new Set();
    ws.addEventListener('open', () => {
      state.wsDelay = 1000;
      setLive(true, 'live');
      send({ type: 'subscribe', models: [], alarms: true });
      syncSubscription();
    });
    ws.addEventListener('message', (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (_) { return; }
      if (!m || typeof m !== 'object') return;
      switch (m.type) {
        case 'update':
          if (state.models.has(m.model) && m.values) {
            for (const name of Object.keys(m.values)) setValue(m.model, name, m.values[name], m.ts, null, true);
          }
          break;
        case 'quality':
          if (state.models.has(m.model) && m.quality) setQuality(m.model, m.quality);
          break;
        case 'alarm':
          onAlarm(m);
          break;
        case 'error':
          say('Live updates: ' + m.message);
          break;
        default:
          break;
      }
    });
    ws.addEventListener('close', (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      if (state.needLogin && !state.user) {
        setLive(false, 'log in to see live values');
      } else {
        setLive(false, ev.code === 1008 ? 'dropped (too slow), reconnecting' : 'offline, reconnecting');
      }
      state.wsTimer = setTimeout(connect, state.wsDelay);
      state.wsDelay = Math.min(state.wsDelay * 2, 10000);
    });
  }

  // ---- start ----------------------------------------------------------------------------------

  function every(ms, fn) {
    fn();
    setInterval(() => { if (!document.hidden) fn(); }, ms);
  }

  refreshMe();
  every(HEALTH_EVERY, refreshHealth);
  every(CHANNELS_EVERY, () => { refreshChannels(); refreshFrames(); });
  every(MODELS_EVERY, refreshModels);
  every(ALARMS_EVERY, refreshAlarms);
  every(EVENTS_EVERY, () => { if (!state.eventsPaged) loadEvents(false); });
  drawChart();
  connect();
})();
