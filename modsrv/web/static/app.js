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
  const CONTROLS_EVERY = 10000;
  const DEVICES_EVERY = 5000;
  const RULES_EVERY = 15000;
  const WEBHOOKS_EVERY = 5000;  // targets' counters and the first page of dead letters
  const DEAD_PAGE = 20;
  const CHART_POINTS = 600;     // buckets at most when the chart shows a stored range
  const DAY = 86400000;
  const STORED_ALARMS = 100;    // alarms read from the history database

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

  // ---- language -----------------------------------------------------------

  // Every UI string is in i18n-<lang>.js; t looks a key up in the chosen
  // language (English when missing) and fills in {name} from vars.
  const LANGS = window.VOLTEDGE_I18N || {};
  const LANG_KEY = 'voltedge.lang';

  function pickLang() {
    try {
      const saved = localStorage.getItem(LANG_KEY);
      if (saved && LANGS[saved]) return saved;
    } catch (_) { /* storage may be off */ }
    const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
    for (const l of prefs) {
      const s = String(l).toLowerCase();
      if (s.startsWith('zh')) return 'zh-CN';
      if (s.startsWith('en')) return 'en';
    }
    return 'en';
  }

  let lang = pickLang();

  function t(key, vars) {
    const table = LANGS[lang] || {};
    let s = table[key];
    if (s === undefined) s = (LANGS.en || {})[key];
    if (s === undefined) return key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined || vars[k] === null ? '' : String(vars[k])));
    return s;
  }

  // applyStatic translates index.html's marked elements.
  function applyStatic() {
    document.documentElement.lang = lang;
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
    for (const e of document.querySelectorAll('[data-i18n-title]')) e.title = t(e.dataset.i18nTitle);
    $('lang-en').setAttribute('aria-pressed', String(lang === 'en'));
    $('lang-zh').setAttribute('aria-pressed', String(lang === 'zh-CN'));
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
        if (need && !state.ws) setLive(false, 'live.needLogin');
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
    models: new Map(),     // model id -> {card, tbody, links, rows: Map(point -> row), meta}
    modelIds: [],          // every model the API lists
    subscribed: new Set(), // models subscribed on the socket
    history: new Map(),    // "model\u0000point" -> [[ts, value], ...]
    chartKey: null,
    chartRange: 'live',    // 'live', or the range shown in ms (a string, as the select's value)
    chartHist: null,       // {key, from, to, step, rows: [[ts, min, avg, max], ...]} from /history
    chartMsg: null,        // [key, vars] of the chart's message
    historyOK: false,      // /history/events answered: the history database is there
    eventsStoredMore: true, // older pages may come from the history database
    alarmHist: null,       // stored alarms shown (an array), or null when hidden
    alarmHistMsg: null,    // [key, vars] of the alarm history's message
    channel: null,         // channel whose frames are shown
    channels: [],          // the channel list last read
    controls: null,        // the /controls answer last read
    controlsShape: '',     // what the control rows were made from
    sending: new Set(),    // "model\u0000control" of the controls being sent
    devices: null,         // the /devices answer last read
    alarms: null,          // the /alarms answer last read
    rules: null,           // the /rules answer last read
    editing: null,         // the rule in the form: {id, testOnly}, null for a new one
    runsRule: null,        // the rule whose run log is shown
    webhooks: null,        // the /webhooks/targets answer last read
    dead: null,            // dead letters shown: {list, total}
    deadNext: '',
    deadPaged: false,      // more pages of dead letters are shown: no refresh
    events: [],            // connection events shown
    eventsNext: '',
    live: ['live.connecting', false],
    ws: null,
    wsDelay: 1000,
  };

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
    $('device-add').hidden = !state.user;
    $('devices-login').hidden = !!state.user;
    renderAlarms();
    renderControls();
    renderDevices();
    renderRules();
    renderWebhooks();
    renderDead();
  }

  $('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('POST', '/login', { user: $('login-user').value, password: $('login-password').value });
      $('login-password').value = '';
      setUser(r.user);
      say(t('login.ok', { user: r.user }), true);
      reloadAll();
    } catch (e) {
      say(t('login.failed', { message: e.message }));
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
    refreshControls();
    refreshDevices();
    refreshRules();
    refreshWebhooks();
    refreshDead(false);
    if (!state.eventsPaged) loadEvents(false);
    clearTimeout(state.wsTimer);
    const old = state.ws;
    state.ws = null; // its close handler then leaves reconnecting to us
    if (old) old.close();
    state.wsDelay = 1000;
    connect();
  }

  // setLang switches the language and renders everything again from the
  // data last read.
  function setLang(l) {
    if (!LANGS[l]) return;
    lang = l;
    try { localStorage.setItem(LANG_KEY, l); } catch (_) { /* not remembered */ }
    applyStatic();
    setLive(state.live[1], state.live[0]);
    refreshHealth();
    renderChannels();
    selectChannel(state.channel);
    applyModelFilter();
    for (const m of state.models.values()) renderModelLinks(m);
    renderAlarms();
    renderControls();
    renderDevices();
    renderRules();
    renderWebhooks();
    renderDead();
    if (state.runsRule) showRuns(state.runsRule);
    renderEvents();
    renderAlarmHistory();
    selectPoint(state.chartKey);
  }

  $('lang-en').addEventListener('click', () => setLang('en'));
  $('lang-zh').addEventListener('click', () => setLang('zh-CN'));

  // ---- health ---------------------------------------------------------------

  async function refreshHealth() {
    try {
      const h = await api('GET', '/health');
      const parts = [t('health.redis', { state: h.redis })];
      if (h.lua_version) parts.push(t('health.lua', { version: h.lua_version }));
      if (h.uptime_s !== undefined) parts.push(t('health.up', { min: Math.round(Number(h.uptime_s) / 60) }));
      $('health').textContent = parts.join(' · ');
    } catch (e) {
      const b = e.body || {};
      $('health').textContent = t('health.redis', { state: b.redis || t('health.unreachable') });
    }
  }

  // ---- links between channels and models ----------------------------------------

  // flash scrolls to a node and highlights it for a moment.
  function flash(node) {
    if (!node) return;
    node.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    node.classList.remove('flash');
    void node.offsetWidth; // restart the animation
    node.classList.add('flash');
    setTimeout(() => node.classList.remove('flash'), 1600);
  }

  // link is a button that looks like a link: label is text.
  function link(label, title, onClick) {
    const b = el('button', 'link', label);
    b.type = 'button';
    if (title) b.title = title;
    b.addEventListener('click', (ev) => { ev.stopPropagation(); onClick(); });
    return b;
  }

  function channelById(id) {
    return state.channels.find((c) => String(c.id) === String(id)) || null;
  }

  function showModel(id) {
    const f = $('model-filter');
    if (!state.models.has(id) && f.value) {
      f.value = '';
      applyModelFilter();
    }
    const m = state.models.get(id);
    if (m) flash(m.card);
  }

  function showChannel(id) {
    selectChannel(String(id));
    const tr = [...$('channels').tBodies[0].rows].find((r) => r.dataset.channel === String(id));
    flash(tr);
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
    state.channels = Array.isArray(data.channels) ? data.channels : [];
    state.channelsTotal = data.total !== undefined ? data.total : state.channels.length;
    renderChannels();
    for (const m of state.models.values()) renderModelLinks(m);
    renderDevices();
    if (state.channel === null && state.channels.length > 0) selectChannel(String(state.channels[0].id));
  }

  function stateCell(online) {
    return online ? el('td', 'on', t('state.online')) : el('td', 'off', t('state.offline'));
  }

  function renderChannels() {
    const list = state.channels;
    const online = list.filter((c) => c.online === true).length;
    $('channels-count').textContent = t('channels.count', { online, total: state.channelsTotal !== undefined ? state.channelsTotal : list.length });
    const body = $('channels').tBodies[0];
    clear(body);
    for (const c of list) {
      const name = el('td', 'name', el('div', null, c.name !== undefined && c.name !== String(c.id) ? c.name : ''));
      if (c.template) name.appendChild(el('div', 'sub', c.template));
      const models = el('td', 'links');
      for (const m of Array.isArray(c.models) ? c.models : []) {
        models.appendChild(link(m, t('channels.showModel', { model: m }), () => showModel(String(m))));
      }
      const tr = el('tr', 'pick',
        el('td', 'id', c.id),
        name,
        models,
        stateCell(c.online),
        el('td', 'wrap', c.registration),
        el('td', null, c.remote),
        el('td', 'num', fmtCount(c.polls_ok)),
        el('td', 'num', fmtCount(c.timeouts)),
        el('td', 'num', fmtCount(c.crc_errors)),
        el('td', 'num', fmtCount(c.bytes_in)),
        el('td', null, fmtTime(c.last_heartbeat)),
        el('td', 'wrap', c.online ? '' : c.disconnect_reason));
      tr.dataset.channel = String(c.id);
      if (String(c.id) === state.channel) tr.classList.add('sel');
      tr.addEventListener('click', () => selectChannel(String(c.id)));
      body.appendChild(tr);
    }
  }

  function selectChannel(id) {
    if (id === null || id === undefined) {
      $('frames-channel').textContent = t('frames.select');
      return;
    }
    state.channel = id;
    for (const tr of $('channels').tBodies[0].rows) tr.classList.toggle('sel', tr.dataset.channel === id);
    const c = channelById(id);
    $('frames-channel').textContent = id + (c && c.name && c.name !== id ? ' · ' + c.name : '');
    refreshFrames();
  }

  async function refreshFrames() {
    const id = state.channel;
    if (id === null) return;
    let data;
    let points;
    try {
      [data, points] = await Promise.all([
        api('GET', '/channels/' + enc(id) + '/frames?limit=20'),
        api('GET', '/channels/' + enc(id) + '/points').catch(() => null)]);
    } catch (e) {
      $('frames-channel').textContent = id + ' (' + e.message + ')';
      return;
    }
    if (id !== state.channel) return;
    renderPoints(points);
    const body = $('frames').tBodies[0];
    clear(body);
    for (const f of Array.isArray(data.frames) ? data.frames : []) {
      const [shown, ascii] = frameCells(f);
      body.appendChild(el('tr', null,
        el('td', null, fmtTime(f.ts)),
        el('td', null, f.dir === 'rx' ? t('dir.rx') : f.dir === 'tx' ? t('dir.tx') : f.dir),
        el('td', null, f.kind),
        el('td', f.kind === 'line' ? 'text' : 'hex', shown),
        el('td', 'ascii', ascii)));
    }
    if (body.rows.length === 0) body.appendChild(el('tr', null, el('td', 'muted', t('frames.none'))));
  }

  // renderPoints shows a channel's points with their names and units.
  function renderPoints(data) {
    const body = $('points').tBodies[0];
    clear(body);
    const pts = data && data.points && typeof data.points === 'object' ? data.points : {};
    const ids = Object.keys(pts).sort((a, b) => (Number(a) - Number(b)) || (a < b ? -1 : a > b ? 1 : 0));
    for (const id of ids) {
      const p = pts[id] || {};
      const model = p.model ? link(p.model + ':' + (p.model_point || ''), t('channels.showModel', { model: p.model }), () => showModel(String(p.model))) : '';
      const tr = el('tr', p.quality === 'stale' ? 'stale' : null,
        el('td', 'id', id), el('td', null, p.name), el('td', 'val', p.value), el('td', 'unit', p.unit),
        el('td', 'type', p.type), el('td', 'links', model));
      if (p.description) tr.title = String(p.description);
      body.appendChild(tr);
    }
    if (ids.length === 0) body.appendChild(el('tr', null, el('td', 'muted', t('points.none'))));
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
    const matching = state.modelIds.filter((id) => id.toLowerCase().includes(f));
    const shown = matching.slice(0, MAX_MODELS);
    const want = new Set(shown);
    $('models-count').textContent = shown.length < matching.length ?
      t('models.countOf', { shown: shown.length, n: matching.length }) : t('models.count', { n: matching.length });
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
        loadModel(id);
      }
      box.appendChild(state.models.get(id).card); // keeps the sorted order
    }
    syncSubscription();
  }

  $('model-filter').addEventListener('input', applyModelFilter);

  function makeCard(id) {
    const tbody = el('tbody');
    const links = el('div', 'links sub');
    const card = el('div', 'model', el('h3', null, id), links, el('table', null, tbody));
    card.dataset.model = id;
    return { id, card, tbody, links, rows: new Map(), channels: [] };
  }

  // renderModelLinks lists a model's channels on its card, each a link to
  // the channel's row.
  function renderModelLinks(m) {
    clear(m.links);
    if (m.channels.length === 0) return;
    m.links.appendChild(text(t('models.channels') + ' '));
    for (const ch of m.channels) {
      const c = channelById(ch);
      const label = c && c.name && c.name !== String(ch) ? ch + ' ' + c.name : ch;
      const a = link(label, t('models.showChannel', { channel: ch }), () => showChannel(ch));
      if (c) a.classList.add(c.online ? 'on' : 'off');
      m.links.appendChild(a);
    }
  }

  async function loadModel(id) {
    let meta = null;
    let data = null;
    try {
      [meta, data] = await Promise.all([
        api('GET', '/models/' + enc(id)).catch(() => null),
        api('GET', '/models/' + enc(id) + '/values')]);
    } catch (e) {
      return; // the live updates fill the card
    }
    const m = state.models.get(id);
    if (!m) return;
    if (meta) {
      m.channels = (Array.isArray(meta.channels) ? meta.channels : []).map(String);
      renderModelLinks(m);
      const pts = meta.points && typeof meta.points === 'object' ? meta.points : {};
      for (const name of Object.keys(pts)) setMeta(id, name, pts[name]);
    }
    if (!data || !data.values) return;
    for (const name of Object.keys(data.values).sort()) {
      const v = data.values[name];
      setMeta(id, name, v);
      setValue(id, name, v.value, v.ts, v.quality, false);
    }
  }

  // row returns the table row of a model point, making it when new.
  function row(id, name) {
    const m = state.models.get(id);
    if (!m) return null;
    let r = m.rows.get(name);
    if (r) return r;
    const type = el('span', 'type');
    const val = el('td', 'val');
    const unit = el('td', 'unit');
    const ts = el('td', 'muted');
    const tr = el('tr', 'pick', el('td', 'name', name, type), val, unit, ts);
    tr.dataset.point = name;
    tr.addEventListener('click', () => selectPoint(id + '\u0000' + name));
    r = { tr, val, unit, type, ts };
    m.rows.set(name, r);
    // keep rows sorted by point name
    let before = null;
    for (const [n, other] of m.rows) {
      if (n > name && (before === null || n < before.dataset.point)) before = other.tr;
    }
    m.tbody.insertBefore(tr, before);
    return r;
  }

  // setMeta shows a point's unit, type and description when the API gives them.
  function setMeta(id, name, p) {
    if (!p || typeof p !== 'object') return;
    if (p.unit === undefined && p.type === undefined && p.description === undefined) return;
    const r = row(id, name);
    if (!r) return;
    if (p.unit !== undefined) r.unit.textContent = p.unit === null ? '' : String(p.unit);
    if (p.type !== undefined) r.type.textContent = p.type === null ? '' : String(p.type);
    if (p.description) r.tr.title = String(p.description);
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
      const tm = Number(ts) || Date.now();
      if (h.length === 0 || h[h.length - 1][0] !== tm || h[h.length - 1][1] !== n) h.push([tm, n]);
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

  function selectPoint(key) {
    const changed = (key || null) !== state.chartKey;
    state.chartKey = key || null;
    if (state.chartKey) {
      const [id, name] = state.chartKey.split('\u0000');
      const m = state.models.get(id);
      const r = m && m.rows.get(name);
      const unit = r && r.unit.textContent ? ' (' + r.unit.textContent + ')' : '';
      $('chart-title').textContent = id + ' · ' + name + unit;
    } else {
      $('chart-title').textContent = t('chart.select');
    }
    $('export-msg').textContent = '';
    if (changed) {
      loadChartHistory();
      return;
    }
    renderChartMsg();
    drawChart();
  }

  function renderChartMsg() {
    $('chart-msg').textContent = state.chartMsg ? t(state.chartMsg[0], state.chartMsg[1]) : '';
  }

  // loadChartHistory reads the chart point's stored range (none when live):
  // buckets of min/avg/max, at most CHART_POINTS of them; live values are
  // appended as they come. When history is unavailable its message shows
  // and the chart keeps the live values.
  async function loadChartHistory() {
    const key = state.chartKey;
    const range = state.chartRange;
    state.chartHist = null;
    state.chartMsg = null;
    if (!key || range === 'live') {
      renderChartMsg();
      drawChart();
      return;
    }
    const span = Number(range);
    const to = Date.now();
    const from = to - span;
    const step = Math.max(1, Math.ceil(span / CHART_POINTS / 1000));
    const [model, point] = key.split('\u0000');
    state.chartMsg = ['chart.loading'];
    renderChartMsg();
    drawChart();
    const q = new URLSearchParams({ model, point, from: String(from), to: String(to), step: step + 's' });
    let d;
    try {
      d = await api('GET', '/history?' + q.toString());
    } catch (e) {
      if (key !== state.chartKey || range !== state.chartRange) return;
      state.chartMsg = ['chart.unavailable', { message: e.message }];
      renderChartMsg();
      drawChart();
      return;
    }
    if (key !== state.chartKey || range !== state.chartRange) return;
    const rows = [];
    for (const r of Array.isArray(d.rows) ? d.rows : []) {
      const v = [Number(r.ts), Number(r.min), Number(r.avg), Number(r.max)];
      if (v.every(Number.isFinite)) rows.push(v);
    }
    state.chartHist = { key, from, to, step: step * 1000, rows };
    state.chartMsg = rows.length ? null : ['chart.empty'];
    renderChartMsg();
    drawChart();
  }

  $('chart-range').addEventListener('change', (e) => {
    state.chartRange = e.target.value;
    $('export-msg').textContent = '';
    loadChartHistory();
  });

  function drawChart() {
    const cv = $('chart');
    const ctx = cv.getContext('2d');
    const w = cv.width;
    const h = cv.height;
    ctx.clearRect(0, 0, w, h);
    ctx.font = '12px system-ui, sans-serif';
    ctx.fillStyle = '#6b7786';
    const live = state.chartKey ? state.history.get(state.chartKey) || [] : [];
    const hist = state.chartHist && state.chartHist.key === state.chartKey ? state.chartHist : null;
    // A stored range: the buckets' averages as the line and their min..max
    // as a band, then the live values that came after them.
    const band = hist ? hist.rows : [];
    let data = live;
    if (hist) {
      data = band.map((r) => [r[0] + hist.step / 2, r[2]]);
      const after = data.length ? data[data.length - 1][0] : hist.from;
      for (const p of live) if (p[0] > after) data.push(p);
    }
    // What is drawn, for tests and the curious: stored buckets and points.
    cv.dataset.stored = String(band.length);
    cv.dataset.points = String(data.length);
    if (data.length === 0) {
      if (!hist) ctx.fillText(state.chartKey ? t('chart.waiting') : t('chart.hint'), 12, 20);
      return;
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (const [, v] of data) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    for (const r of band) {
      lo = Math.min(lo, r[1]);
      hi = Math.max(hi, r[3]);
    }
    if (lo === hi) { lo -= 1; hi += 1; }
    const t0 = hist ? hist.from : data[0][0];
    const t1 = Math.max(data[data.length - 1][0], hist ? hist.to : 0, t0 + 1);
    const L = 56; const R = 8; const T = 10; const B = 22;
    const x = (t) => L + (w - L - R) * (t - t0) / (t1 - t0);
    const y = (v) => T + (h - T - B) * (1 - (v - lo) / (hi - lo));
    ctx.strokeStyle = '#d9dee5';
    ctx.beginPath();
    ctx.moveTo(L, T); ctx.lineTo(L, h - B); ctx.lineTo(w - R, h - B);
    ctx.stroke();
    ctx.fillText(String(+hi.toPrecision(6)), 4, T + 8);
    ctx.fillText(String(+lo.toPrecision(6)), 4, h - B);
    // Times of day, with the month and day when the chart spans days.
    const when = (ms) => (t1 - t0 > DAY / 2 ? fmtTime(ms).slice(5, 16) : fmtTime(ms).slice(11));
    ctx.fillText(when(t0), L, h - 6);
    const last = when(t1);
    ctx.fillText(last, w - R - ctx.measureText(last).width, h - 6);
    if (band.length) {
      ctx.fillStyle = 'rgba(36, 99, 181, 0.18)';
      ctx.beginPath();
      band.forEach((r, i) => (i === 0 ? ctx.moveTo(x(r[0] + hist.step / 2), y(r[3])) : ctx.lineTo(x(r[0] + hist.step / 2), y(r[3]))));
      for (let i = band.length - 1; i >= 0; i--) ctx.lineTo(x(band[i][0] + hist.step / 2), y(band[i][1]));
      ctx.closePath();
      ctx.fill();
      ctx.fillStyle = '#6b7786';
    }
    ctx.strokeStyle = '#2463b5';
    ctx.lineWidth = 2;
    ctx.beginPath();
    data.forEach(([t, v], i) => (i === 0 ? ctx.moveTo(x(t), y(v)) : ctx.lineTo(x(t), y(v))));
    ctx.stroke();
    if (data.length === 1) ctx.fillRect(x(data[0][0]) - 2, y(data[0][1]) - 2, 4, 4);
  }

  // ---- export ---------------------------------------------------------------------

  // exportURL is the export of the charted point's model over the chart's
  // range (the last 24 h when the chart is live).
  function exportURL(format) {
    const [model] = state.chartKey.split('\u0000');
    const span = state.chartRange === 'live' ? DAY : Number(state.chartRange);
    const to = Date.now();
    return '/export?' + new URLSearchParams({ format, model, from: String(to - span), to: String(to) }).toString();
  }

  // download saves url through a link, so the browser streams it to disk.
  function download(url) {
    const a = document.createElement('a');
    a.href = url;
    a.download = '';
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  // exportHistory asks (HEAD) whether the server can export; when it can,
  // the browser downloads it, otherwise the server's message is shown.
  async function exportHistory(format) {
    const out = $('export-msg');
    if (!state.chartKey) {
      out.textContent = t('export.select');
      return;
    }
    const url = exportURL(format);
    out.textContent = t('export.asking');
    const ctrl = new AbortController();
    try {
      const h = await fetch(url, { method: 'HEAD', credentials: 'same-origin' });
      if (h.ok) {
        out.textContent = '';
        download(url);
        return;
      }
      // HEAD has no body: ask again for the message.
      const r = await fetch(url, { credentials: 'same-origin', signal: ctrl.signal });
      if (r.ok) {
        ctrl.abort();
        out.textContent = '';
        download(url);
        return;
      }
      let m = 'HTTP ' + r.status;
      try {
        const b = await r.json();
        if (b && b.error && b.error.message) m = b.error.message;
      } catch (_) { /* keep the status */ }
      out.textContent = t('export.unavailable', { message: m });
    } catch (e) {
      out.textContent = t('export.failed', { message: e.message });
    }
  }

  $('export-csv').addEventListener('click', () => exportHistory('csv'));
  $('export-xlsx').addEventListener('click', () => exportHistory('xlsx'));

  // ---- controls ---------------------------------------------------------------------

  // load reads path into state[key] (or {error} when the API refuses) and
  // renders it with render.
  async function load(key, path, render) {
    try {
      state[key] = await api('GET', path);
    } catch (e) {
      state[key] = { error: e.message };
    }
    render();
  }

  function refreshControls() { return load('controls', '/controls', renderControls); }

  function fmtRange(c) {
    const has = (v) => v !== undefined && v !== null && v !== '';
    if (!has(c.min) && !has(c.max)) return '';
    return (has(c.min) ? c.min : '…') + ' – ' + (has(c.max) ? c.max : '…') + (c.unit ? ' ' + c.unit : '');
  }

  function isBool(c) {
    const ty = String(c.type || '').toLowerCase();
    return ty === 'bool' || ty === 'boolean' || ty === 'bit' || ty === 'coil';
  }

  function isNumber(c) {
    return /^(u?int(8|16|32|64)?|float(32|64)?|double|number|decimal|word|dword)$/.test(String(c.type || '').toLowerCase());
  }

  // lastCell shows a control's last outcome: status and time, the message
  // as the title.
  function fillLast(td, last) {
    clear(td);
    if (!last) return;
    const ok = last.status === 'ok';
    td.appendChild(el('span', ok ? 'on' : 'off', last.status));
    if (last.value !== undefined && last.value !== null && last.value !== '') td.appendChild(text(' = ' + last.value));
    if (last.ts) td.appendChild(el('span', 'muted', ' ' + fmtWhen(last.ts)));
    const detail = [last.id ? '#' + last.id : '', last.code, last.message].filter((s) => s).join(' ');
    td.title = detail;
  }

  function controlForm(c, lastTd) {
    const f = el('form', 'inline ctl');
    let input;
    if (isBool(c)) {
      input = el('input');
      input.type = 'checkbox';
      f.appendChild(el('label', 'switch', input, ' ' + t('controls.on')));
    } else {
      input = el('input');
      if (isNumber(c)) {
        input.type = 'number';
        input.step = 'any';
        if (c.min !== undefined && c.min !== null && c.min !== '') input.min = String(c.min);
        if (c.max !== undefined && c.max !== null && c.max !== '') input.max = String(c.max);
      } else {
        input.maxLength = 64;
      }
      input.required = true;
      input.size = 8;
      f.appendChild(input);
    }
    input.name = 'value';
    input.setAttribute('aria-label', c.model + ' ' + c.control);
    const b = el('button', null, t('controls.send'));
    b.type = 'submit';
    f.appendChild(b);
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      let value;
      if (isBool(c)) value = input.checked;
      else if (isNumber(c)) value = Number(input.value);
      else value = input.value.trim();
      const key = c.model + '\u0000' + c.control;
      state.sending.add(key);
      b.disabled = true;
      clear(lastTd);
      lastTd.appendChild(el('span', 'muted', t('controls.sending')));
      try {
        const r = await api('POST', '/models/' + enc(c.model) + '/control/' + enc(c.control), { value });
        c.last = { id: r.id, status: r.status, code: r.code, message: r.message, value: r.value !== undefined ? r.value : value, ts: Number(r.ts) || Date.now() };
        fillLast(lastTd, c.last);
      } catch (e) {
        const body = e.body || {};
        c.last = { id: body.id, status: (body.result && body.result.status) || body.status || 'error', code: e.code, message: e.message, value, ts: Date.now() };
        fillLast(lastTd, c.last);
        say(t('controls.failed', { model: c.model, control: c.control, message: e.message }));
        if (e.status === 401) setUser(null);
      } finally {
        state.sending.delete(key);
        b.disabled = false;
      }
    });
    return f;
  }

  // renderControls shows the list. When only the outcomes changed, it
  // updates those cells and leaves the forms (and what is typed in them).
  function renderControls() {
    const body = $('controls').tBodies[0];
    const d = state.controls;
    const count = $('controls-count');
    const list = d && Array.isArray(d.controls) ? d.controls : [];
    const shape = JSON.stringify([lang, state.user, d && d.error, list.map((c) => [c.model, c.control, c.channel, c.point, c.type, c.unit, c.min, c.max, c.writable, c.description])]);
    if (d && !d.error && shape === state.controlsShape && body.rows.length === Math.max(list.length, 1)) {
      list.forEach((c, i) => {
        const td = body.rows[i].querySelector('td.last');
        if (td && !state.sending.has(c.model + '\u0000' + c.control)) fillLast(td, c.last);
      });
      return;
    }
    state.controlsShape = shape;
    clear(body);
    count.textContent = '';
    if (!d) return;
    if (d.error) {
      count.textContent = '(' + d.error + ')';
      return;
    }
    count.textContent = String(list.length) + (d.truncated ? ' · ' + t('controls.truncated') : '');
    for (const c of list) {
      const last = el('td', 'last');
      fillLast(last, c.last);
      const form = el('td');
      if (c.writable === false) form.appendChild(el('span', 'muted', t('controls.readOnly')));
      else if (state.user) form.appendChild(controlForm(c, last));
      else form.appendChild(el('span', 'muted', t('controls.loginToSend')));
      const point = el('td', null, link(c.channel + ':' + c.point, t('models.showChannel', { channel: c.channel }), () => showChannel(String(c.channel))));
      const tr = el('tr', null,
        el('td', null, link(c.model, t('channels.showModel', { model: c.model }), () => showModel(String(c.model)))),
        el('td', 'name', c.control),
        point,
        el('td', 'type', c.type),
        el('td', null, isBool(c) ? '' : fmtRange(c)),
        form,
        last);
      tr.dataset.model = String(c.model);
      tr.dataset.control = String(c.control);
      if (c.description) tr.cells[1].title = String(c.description);
      body.appendChild(tr);
    }
    if (list.length === 0) body.appendChild(el('tr', null, el('td', 'muted', t('controls.none'))));
  }

  // ---- devices ------------------------------------------------------------------------

  function refreshDevices() { return load('devices', '/devices', renderDevices); }

  function templateSelect(templates, cur) {
    const sel = el('select');
    for (const name of templates) {
      const o = el('option', null, name);
      o.value = String(name);
      sel.appendChild(o);
    }
    if (cur) sel.value = cur;
    return sel;
  }

  async function addDevice(id, template) {
    try {
      await api('POST', '/devices', { id, template });
      say(t('devices.added', { id, template }), true);
      refreshDevices();
      return true;
    } catch (e) {
      say(t('devices.failed', { id, message: e.message }));
      if (e.status === 401) setUser(null);
      return false;
    }
  }

  async function removeDevice(id) {
    if (!window.confirm(t('devices.confirmRemove', { id }))) return;
    try {
      await api('DELETE', '/devices/' + enc(id));
      say(t('devices.removed', { id }), true);
    } catch (e) {
      say(t('devices.failed', { id, message: e.message }));
      if (e.status === 401) setUser(null);
    }
    refreshDevices();
  }

  // deviceOnline finds a registry device's channel: the channel with its id,
  // else one whose registration it is.
  function deviceChannel(id) {
    return channelById(id) || state.channels.find((c) => String(c.registration) === String(id)) || null;
  }

  function renderDevices() {
    const d = state.devices;
    const body = $('devices').tBodies[0];
    const rbody = $('refused').tBodies[0];
    clear(body);
    if (!rbody.contains(document.activeElement)) clear(rbody);
    $('devices-count').textContent = '';
    if (!d) return;
    if (d.error) {
      $('devices-count').textContent = '(' + d.error + ')';
      return;
    }
    const templates = Array.isArray(d.templates) ? d.templates.map(String) : [];
    const sel = $('device-template');
    const cur = sel.value;
    clear(sel);
    for (const o of templateSelect(templates, '').children) sel.appendChild(o.cloneNode(true));
    if (cur) sel.value = cur;
    const list = Array.isArray(d.devices) ? d.devices : [];
    $('devices-count').textContent = String(list.length);
    for (const dev of list) {
      const c = deviceChannel(dev.id);
      const st = c ? stateCell(c.online) : el('td', 'muted', t('state.unknown'));
      const act = el('td');
      if (state.user) {
        const b = el('button', 'remove', t('devices.remove'));
        b.type = 'button';
        b.addEventListener('click', () => removeDevice(String(dev.id)));
        act.appendChild(b);
      }
      const idCell = el('td', 'wrap', c ? link(dev.id, t('models.showChannel', { channel: c.id }), () => showChannel(String(c.id))) : dev.id);
      const tr = el('tr', null, idCell, el('td', null, dev.template), st, act);
      tr.dataset.device = String(dev.id);
      body.appendChild(tr);
    }
    if (list.length === 0) body.appendChild(el('tr', null, el('td', 'muted', t('devices.none'))));
    const refused = Array.isArray(d.refused) ? d.refused : [];
    if (rbody.contains(document.activeElement)) return; // a template is being chosen there
    for (const r of refused) {
      const act = el('td');
      if (state.user && templates.length > 0) {
        const f = el('form', 'inline');
        const s = templateSelect(templates, cur);
        s.setAttribute('aria-label', t('devices.template'));
        const b = el('button', null, t('devices.add'));
        b.type = 'submit';
        f.appendChild(s);
        f.appendChild(b);
        f.addEventListener('submit', (ev) => { ev.preventDefault(); addDevice(String(r.registration), s.value); });
        act.appendChild(f);
      }
      const tr = el('tr', null, el('td', 'wrap', el('div', null, r.registration), el('div', 'sub', r.remote)), el('td', 'wrap', r.reason),
        el('td', null, fmtWhen(r.ts)), el('td', 'num', fmtCount(r.count)), act);
      tr.dataset.registration = String(r.registration);
      rbody.appendChild(tr);
    }
    if (refused.length === 0) rbody.appendChild(el('tr', null, el('td', 'muted', t('devices.noRefused'))));
  }

  $('device-add').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const id = $('device-id').value.trim();
    if (await addDevice(id, $('device-template').value)) $('device-id').value = '';
  });

  // ---- alarms ---------------------------------------------------------------------------

  async function refreshAlarms() {
    try {
      state.alarms = await api('GET', '/alarms');
    } catch (e) {
      return;
    }
    renderAlarms();
  }

  function renderAlarms() {
    const d = state.alarms || {};
    const active = Array.isArray(d.active) ? d.active : [];
    const body = $('alarms').tBodies[0];
    if (body.contains(document.activeElement) && document.activeElement.tagName === 'SELECT') return; // a duration is being chosen
    clear(body);
    const levels = $('alarm-levels');
    clear(levels);
    const by = d.by_level || {};
    for (const l of ['critical', 'warning', 'info']) {
      const n = Number(by[l] || 0);
      const b = el('span', 'badge level-' + l + (n ? '' : ' zero'), levelName(l) + ' ' + n);
      b.dataset.level = l;
      levels.appendChild(b);
    }
    for (const a of active) {
      const ref = String(a.ref !== undefined ? a.ref : a.model + ':' + a.point);
      const ack = el('td');
      if (a.acked || a.ack) {
        const who = a.ack && a.ack.user ? a.ack.user : '';
        ack.appendChild(text('✓ ' + who + (a.ack && a.ack.ts ? ' ' + fmtTime(a.ack.ts).slice(11) : '')));
      } else if (state.user) {
        const b = el('button', null, t('alarms.ack'));
        b.type = 'button';
        b.addEventListener('click', () => ackAlarm(ref));
        ack.appendChild(b);
      } else {
        ack.appendChild(text(t('alarms.no')));
      }
      const level = LEVELS.includes(a.level) ? a.level : 'warning';
      const tr = el('tr', 'alarm-' + (a.kind === 'low' ? 'low' : 'high') + ' level-' + level,
        el('td', null, ref), el('td', 'level', el('span', 'badge level-' + level, levelName(level))),
        el('td', null, alarmKind(a.kind)), el('td', null, a.value), el('td', null, a.limit),
        el('td', null, fmtWhen(a.ts)), ack, shelfCell(ref, a.shelved));
      tr.dataset.ref = ref;
      if (a.shelved) tr.classList.add('shelved');
      body.appendChild(tr);
    }
    if (active.length === 0) body.appendChild(el('tr', null, el('td', 'muted', t('alarms.none'))));
    const ul = $('alarm-events');
    clear(ul);
    for (const ev of Array.isArray(d.recent) ? d.recent : []) ul.appendChild(alarmLine(ev));
  }

  const LEVELS = ['info', 'warning', 'critical'];
  const LEVEL_KEYS = { info: 'level.info', warning: 'level.warning', critical: 'level.critical' };
  const levelName = (l) => (LEVEL_KEYS[l] ? t(LEVEL_KEYS[l]) : String(l));
  // Shelving durations: the API's "until" and the label's key.
  const SHELVE_FOR = [['1h', 'shelve.hour'], ['2h', 'shelve.hours2'], ['8h', 'shelve.hours8'], ['24h', 'shelve.day'], ['168h', 'shelve.week']];

  // shelfCell shows who shelved an alarm until when, with Unshelve; or,
  // for a logged-in user, a duration and Shelve.
  function shelfCell(ref, sh) {
    const td = el('td', 'shelf');
    if (sh) {
      td.appendChild(el('span', 'shelved-by', t('alarms.shelvedUntil', { until: fmtWhen(sh.until), user: sh.user })));
      if (state.user) {
        const b = el('button', 'unshelve', t('alarms.unshelve'));
        b.type = 'button';
        b.addEventListener('click', () => unshelveAlarm(ref));
        td.appendChild(b);
      }
      return td;
    }
    if (!state.user) {
      td.appendChild(text(t('alarms.no')));
      return td;
    }
    const f = el('form', 'inline shelve');
    const sel = el('select');
    sel.setAttribute('aria-label', t('alarms.shelveFor'));
    for (const [d, key] of SHELVE_FOR) {
      const o = el('option', null, t(key));
      o.value = d;
      sel.appendChild(o);
    }
    sel.value = '2h';
    const b = el('button', null, t('alarms.shelve'));
    b.type = 'submit';
    f.appendChild(sel);
    f.appendChild(b);
    f.addEventListener('submit', (ev) => { ev.preventDefault(); shelveAlarm(ref, sel.value); });
    td.appendChild(f);
    return td;
  }

  async function shelveAlarm(ref, until) {
    try {
      await api('POST', '/alarms/' + enc(ref) + '/shelve', { until });
      say(t('alarms.shelvedDone', { ref }), true);
    } catch (e) {
      say(t('alarms.shelveFailed', { message: e.message }));
      if (e.status === 401) setUser(null);
    }
    if (document.activeElement) document.activeElement.blur();
    refreshAlarms();
  }

  async function unshelveAlarm(ref) {
    try {
      await api('DELETE', '/alarms/' + enc(ref) + '/shelve');
      say(t('alarms.unshelvedDone', { ref }), true);
    } catch (e) {
      say(t('alarms.shelveFailed', { message: e.message }));
      if (e.status === 401) setUser(null);
    }
    refreshAlarms();
  }

  // ---- alarm history (the history database) -----------------------------------------

  async function toggleAlarmHistory() {
    if (state.alarmHist) {
      state.alarmHist = null;
      state.alarmHistMsg = null;
      renderAlarmHistory();
      return;
    }
    state.alarmHist = [];
    state.alarmHistMsg = ['alarms.historyLoading'];
    renderAlarmHistory();
    try {
      const d = await api('GET', '/history/alarms?limit=' + STORED_ALARMS);
      if (!state.alarmHist) return;
      state.alarmHist = Array.isArray(d.alarms) ? d.alarms : [];
      state.alarmHistMsg = state.alarmHist.length ? null : ['alarms.historyNone'];
    } catch (e) {
      if (!state.alarmHist) return;
      state.alarmHistMsg = ['alarms.historyUnavailable', { message: e.message }];
    }
    renderAlarmHistory();
  }

  function renderAlarmHistory() {
    const shown = state.alarmHist !== null;
    $('alarm-history-toggle').textContent = t(shown ? 'alarms.historyHide' : 'alarms.history');
    $('alarm-history-msg').textContent = state.alarmHistMsg ? t(state.alarmHistMsg[0], state.alarmHistMsg[1]) : '';
    const ul = $('alarm-history');
    clear(ul);
    ul.hidden = !shown || state.alarmHist.length === 0;
    for (const a of shown ? state.alarmHist : []) {
      let line = t('alarms.historyLine', { ts: fmtTime(a.raised_ts), ref: a.model + ':' + a.point, kind: alarmKind(a.kind),
        level: a.level, value: a.value, limit: a.limit });
      if (Number(a.cleared_ts) > 0) line += t('alarms.historyCleared', { ts: fmtTime(a.cleared_ts) });
      if (Number(a.acknowledged_ts) > 0) line += t('alarms.historyAcked', { user: a.acknowledged_by, ts: fmtTime(a.acknowledged_ts) });
      ul.appendChild(el('li', Number(a.cleared_ts) > 0 ? 'on' : 'off', line));
    }
  }

  $('alarm-history-toggle').addEventListener('click', toggleAlarmHistory);

  function alarmKind(k) {
    if (k === 'high') return t('alarm.high');
    if (k === 'low') return t('alarm.low');
    return k;
  }

  async function ackAlarm(ref) {
    try {
      await api('POST', '/alarms/' + enc(ref) + '/ack');
      say(t('alarms.done', { ref }), true);
    } catch (e) {
      say(t('alarms.ackFailed', { message: e.message }));
      if (e.status === 401) setUser(null);
    }
    refreshAlarms();
  }

  function alarmLine(ev) {
    const kind = ev.event || ev.type;
    const label = kind === 'raise' ? t('alarm.raise') : kind === 'clear' ? t('alarm.clear') : kind;
    return el('li', kind === 'raise' ? 'off' : 'on', t('alarms.line', {
      ts: fmtTime(ev.ts), event: label, ref: ev.model + ':' + ev.point, kind: alarmKind(ev.kind || ''), value: ev.value, limit: ev.limit }));
  }

  function onAlarm(ev) {
    const d = state.alarms || (state.alarms = { active: [], recent: [] });
    d.recent = [ev].concat(Array.isArray(d.recent) ? d.recent : []).slice(0, RECENT_ALARMS);
    renderAlarms();
    refreshAlarms();
  }

  // ---- alarm rules ------------------------------------------------------------------------

  function refreshRules() { return load('rules', '/rules', renderRules); }

  // ruleMatch summarises where a rule applies.
  function ruleMatch(r) {
    const parts = [];
    if (r.channel) parts.push(t('rules.channelIs', { p: r.channel }));
    if (r.model) parts.push(t('rules.modelIs', { p: r.model }));
    if (r.point) parts.push(t('rules.pointIs', { p: r.point }));
    if (r.min_level) parts.push(t('rules.minLevel', { level: levelName(r.min_level) }));
    return parts.length ? parts.join(', ') : t('rules.any');
  }

  function ruleCondition(r) {
    const c = r.condition;
    if (!c) return '';
    let s = c.op === 'changed' ? t('rules.changed') : c.op + ' ' + c.value;
    if (c.on_delay && c.on_delay !== '0s') s += ' ' + t('rules.onDelay', { d: c.on_delay });
    if (c.off_delay && c.off_delay !== '0s') s += ' ' + t('rules.offDelay', { d: c.off_delay });
    return s;
  }

  // ruleBody is a rule as PUT /rules/{id} takes it (origin left out).
  function ruleBody(r) {
    const b = Object.assign({}, r);
    delete b.origin;
    return b;
  }

  function renderRules() {
    const d = state.rules;
    const body = $('rules').tBodies[0];
    clear(body);
    $('rules-count').textContent = '';
    $('rule-new').hidden = !state.user;
    $('rules-login').hidden = !!state.user;
    if (!state.user) $('rule-form').hidden = true;
    if (!d) return;
    if (d.error) {
      $('rules-count').textContent = '(' + d.error + ')';
      return;
    }
    const list = Array.isArray(d.rules) ? d.rules : [];
    const invalid = d.invalid && typeof d.invalid === 'object' ? Object.keys(d.invalid) : [];
    $('rules-count').textContent = String(list.length) + (invalid.length ? ' · ' + t('rules.invalid', { n: invalid.length }) : '');
    for (const r of list) {
      const id = String(r.id);
      const api_ = r.origin !== 'file';
      const en = el('td');
      if (state.user && api_) {
        const cb = el('input');
        cb.type = 'checkbox';
        cb.checked = !!r.enabled;
        cb.setAttribute('aria-label', t('rules.enabled'));
        cb.addEventListener('change', () => toggleRule(r, cb.checked));
        en.appendChild(cb);
      } else {
        en.appendChild(text(r.enabled ? t('rules.yes') : t('rules.no')));
      }
      const act = el('td', 'actions');
      const runs = el('button', 'runs', t('rules.runs'));
      runs.type = 'button';
      runs.addEventListener('click', () => showRuns(id));
      act.appendChild(runs);
      if (state.user) {
        const test = el('button', 'test', api_ ? t('rules.edit') : t('rules.test'));
        test.type = 'button';
        test.addEventListener('click', () => editRule(r, !api_));
        act.appendChild(test);
        if (api_) {
          const del = el('button', 'remove', t('rules.delete'));
          del.type = 'button';
          del.addEventListener('click', () => deleteRule(id));
          act.appendChild(del);
        }
      }
      const name = el('td', 'wrap', el('div', 'id', id));
      if (r.name) name.appendChild(el('div', 'sub', r.name));
      const tr = el('tr', r.enabled ? null : 'disabled', name,
        el('td', 'wrap', (Array.isArray(r.events) ? r.events : []).join(', ')),
        el('td', 'wrap', ruleMatch(r)), el('td', 'wrap', ruleCondition(r)),
        el('td', null, r.level ? el('span', 'badge level-' + r.level, levelName(r.level)) : ''),
        el('td', 'wrap', (Array.isArray(r.targets) ? r.targets : []).join(', ')),
        el('td', null, r.origin === 'file' ? t('rules.file') : t('rules.api')), en, act);
      tr.dataset.rule = id;
      body.appendChild(tr);
    }
    for (const id of invalid) {
      const tr = el('tr', 'invalid', el('td', 'wrap', id), el('td', 'wrap', t('rules.invalidRule', { message: d.invalid[id] })));
      tr.lastChild.colSpan = 8;
      body.appendChild(tr);
    }
    if (list.length === 0 && invalid.length === 0) body.appendChild(el('tr', null, el('td', 'muted', t('rules.none'))));
  }

  async function toggleRule(r, enabled) {
    const b = ruleBody(r);
    b.enabled = enabled;
    try {
      await api('PUT', '/rules/' + enc(r.id), b);
      say(t(enabled ? 'rules.enabledDone' : 'rules.disabledDone', { id: r.id }), true);
    } catch (e) {
      say(t('rules.failed', { id: r.id, message: e.message }));
      if (e.status === 401) setUser(null);
    }
    refreshRules();
  }

  async function deleteRule(id) {
    if (!window.confirm(t('rules.confirmDelete', { id }))) return;
    try {
      await api('DELETE', '/rules/' + enc(id));
      say(t('rules.deleted', { id }), true);
    } catch (e) {
      say(t('rules.failed', { id, message: e.message }));
      if (e.status === 401) setUser(null);
    }
    refreshRules();
  }

  const NEW_RULE = { id: 'new_rule', name: '', enabled: true, events: ['alarm_raised'], model: '', point: '', level: 'warning', targets: [] };
  const SAMPLE_EVENT = { type: 'alarm_raised', model: 'pcs1', point: 'temp', value: '85', level: 'warning' };

  // editRule opens the form: a new rule, an API rule to change, or a file
  // rule to test only.
  function editRule(r, testOnly) {
    state.editing = r ? { id: String(r.id), testOnly: !!testOnly } : null;
    $('rule-json').value = JSON.stringify(r ? ruleBody(r) : NEW_RULE, null, 2);
    if (!$('rule-event').value) $('rule-event').value = JSON.stringify(SAMPLE_EVENT, null, 2);
    $('rule-form-title').textContent = !r ? t('rules.creating') : testOnly ? t('rules.testing', { id: r.id }) : t('rules.editing', { id: r.id });
    $('rule-save').hidden = !!testOnly;
    $('rule-result').hidden = true;
    $('rule-form').hidden = false;
    $('rule-json').focus();
  }

  function parseJSON(id, what) {
    try {
      return JSON.parse($(id).value);
    } catch (e) {
      throw new Error(t('rules.badJSON', { what: t(what), message: e.message }));
    }
  }

  function showResult(id, s, bad) {
    const out = $(id);
    out.textContent = s;
    out.className = bad ? 'out bad' : 'out';
    out.hidden = false;
  }

  $('rule-new').addEventListener('click', () => editRule(null, false));
  $('rule-cancel').addEventListener('click', () => { $('rule-form').hidden = true; state.editing = null; });

  $('rule-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const ed = state.editing;
    try {
      const rule = parseJSON('rule-json', 'rules.json');
      const r = ed ? await api('PUT', '/rules/' + enc(ed.id), rule) : await api('POST', '/rules', rule);
      say(t('rules.saved', { id: r.id }), true);
      $('rule-form').hidden = true;
      state.editing = null;
    } catch (e) {
      showResult('rule-result', e.message, true);
      if (e.status === 401) setUser(null);
    }
    refreshRules();
  });

  $('rule-test').addEventListener('click', async () => {
    try {
      const rule = parseJSON('rule-json', 'rules.json');
      const event = parseJSON('rule-event', 'rules.sample');
      const r = await api('POST', '/rules/test', { rule, event });
      const lines = [r.fires ? t('rules.fires') : r.matched ? t('rules.matchesOnly') : t('rules.noMatch'), r.reason];
      if (r.fires) lines.push(t('rules.wouldSend', { level: r.level || '', targets: (r.targets || []).join(', ') || t('rules.noTargets') }));
      showResult('rule-result', lines.join('\n'), !r.fires);
    } catch (e) {
      showResult('rule-result', e.message, true);
    }
  });

  async function showRuns(id) {
    state.runsRule = id;
    $('runs-rule').textContent = id;
    $('runs-box').hidden = false;
    const body = $('runs').tBodies[0];
    let d;
    try {
      d = await api('GET', '/rules/' + enc(id) + '/runs?limit=50');
    } catch (e) {
      clear(body);
      body.appendChild(el('tr', null, el('td', 'muted', e.message)));
      return;
    }
    clear(body);
    const runs = Array.isArray(d.runs) ? d.runs : [];
    for (const r of runs) {
      const ev = r.event || {};
      const where = [ev.channel, ev.model && ev.point ? ev.model + ':' + ev.point : ev.model || ev.point].filter(Boolean).join(' ');
      const acts = (Array.isArray(r.actions) ? r.actions : []).map((a) => a.target).join(', ');
      body.appendChild(el('tr', r.suppressed ? 'muted' : null, el('td', null, fmtWhen(r.ts)), el('td', null, r.kind),
        el('td', 'wrap', ev.type + (where ? ' ' + where : '') + (ev.value ? ' = ' + ev.value : '')),
        el('td', 'wrap', acts), el('td', null, r.suppressed || '')));
    }
    if (runs.length === 0) body.appendChild(el('tr', null, el('td', 'muted', t('runs.none'))));
  }

  // ---- webhook targets --------------------------------------------------------------------

  function refreshWebhooks() { return load('webhooks', '/webhooks/targets', renderWebhooks); }

  function renderWebhooks() {
    const d = state.webhooks;
    const body = $('webhooks').tBodies[0];
    clear(body);
    $('webhooks-count').textContent = '';
    if (!d) return;
    if (d.error) {
      $('webhooks-count').textContent = '(' + d.error + ')';
      return;
    }
    const list = Array.isArray(d.targets) ? d.targets : [];
    $('webhooks-count').textContent = String(list.length);
    for (const w of list) {
      const id = String(w.id);
      const c = w.counters || {};
      const h = w.health || {};
      const tg = w.target || null;
      const health = el('td', 'wrap');
      if (w.invalid) {
        health.appendChild(el('span', 'off', t('webhooks.invalid', { message: w.invalid })));
      } else if (!h.enabled) {
        health.appendChild(el('span', 'off', t('webhooks.disabled')));
        if (h.disabled_reason) health.appendChild(el('div', 'sub', h.disabled_reason));
      } else if (h.failing_since) {
        health.appendChild(el('span', 'warn', t('webhooks.failingSince', { since: fmtWhen(h.failing_since) })));
      } else {
        health.appendChild(el('span', 'on', t('webhooks.ok')));
      }
      const last = c.last_status ? 'HTTP ' + c.last_status : c.last_error ? '' : '—';
      const lastCell = el('td', 'wrap', last);
      if (c.last_error && c.last_error !== last) lastCell.appendChild(el('div', 'sub', c.last_error));
      const act = el('td', 'actions');
      if (state.user && tg) {
        const test = el('button', 'test', t('webhooks.test'));
        test.type = 'button';
        test.addEventListener('click', () => testWebhook(id, test));
        act.appendChild(test);
        const tog = el('button', 'toggle', h.enabled ? t('webhooks.disable') : t('webhooks.enable'));
        tog.type = 'button';
        tog.addEventListener('click', () => toggleTarget(tg, !h.enabled));
        act.appendChild(tog);
      }
      const name = el('td', 'wrap', el('div', 'id', id));
      if (tg && tg.url) name.appendChild(el('div', 'sub url', (tg.method || 'POST') + ' ' + tg.url));
      const n = (v) => el('td', 'num', fmtCount(v || 0));
      const tr = el('tr', null, name, health, n(c.matched), n(c.delivered), n(c.failed), n(c.in_flight), n(c.queued),
        el('td', 'num' + (c.dead ? ' off' : ''), fmtCount(c.dead || 0)), n(c.dropped), lastCell, act);
      tr.dataset.target = id;
      body.appendChild(tr);
    }
    if (list.length === 0) body.appendChild(el('tr', null, el('td', 'muted', t('webhooks.none'))));
  }

  async function testWebhook(id, button) {
    button.disabled = true;
    showResult('webhook-result', t('webhooks.testing', { id }), false);
    try {
      const r = await api('POST', '/webhooks/test', { target: id });
      const lines = [t('webhooks.answer', { id, status: r.status, ms: r.duration_ms })];
      const hdr = r.headers || {};
      for (const k of Object.keys(hdr).sort()) lines.push(k + ': ' + [].concat(hdr[k]).join(', '));
      lines.push('', r.body || '');
      showResult('webhook-result', lines.join('\n'), !r.ok);
    } catch (e) {
      showResult('webhook-result', t('webhooks.testFailed', { id, message: e.message }), true);
      if (e.status === 401) setUser(null);
    }
    button.disabled = false;
  }

  async function toggleTarget(tg, enabled) {
    const b = Object.assign({}, tg, { enabled });
    try {
      await api('PUT', '/webhooks/targets/' + enc(tg.id), b);
      say(t(enabled ? 'webhooks.enabledDone' : 'webhooks.disabledDone', { id: tg.id }), true);
    } catch (e) {
      say(t('webhooks.changeFailed', { id: tg.id, message: e.message }));
      if (e.status === 401) setUser(null);
    }
    refreshWebhooks();
  }

  // ---- dead letters -------------------------------------------------------------------------

  async function refreshDead(more) {
    let d;
    const q = '/webhooks/dead?count=' + DEAD_PAGE + (more && state.deadNext ? '&from=' + enc(state.deadNext) : '');
    try {
      d = await api('GET', q);
    } catch (e) {
      state.dead = { error: e.message, list: [] };
      renderDead();
      return;
    }
    const list = Array.isArray(d.dead) ? d.dead : [];
    state.dead = { list: more && state.dead && state.dead.list ? state.dead.list.concat(list) : list, total: d.total };
    state.deadNext = d.next || '';
    renderDead();
  }

  function renderDead() {
    const d = state.dead;
    const body = $('dead').tBodies[0];
    clear(body);
    $('dead-count').textContent = '';
    $('dead-more').hidden = !state.deadNext;
    $('dead-retry-all').hidden = !state.user || !d || !d.list || d.list.length === 0;
    if (!d) return;
    if (d.error) {
      $('dead-count').textContent = '(' + d.error + ')';
      return;
    }
    $('dead-count').textContent = String(d.total !== undefined ? d.total : d.list.length);
    for (const x of d.list) {
      const act = el('td');
      if (state.user) {
        const b = el('button', 'resend', t('dead.retry'));
        b.type = 'button';
        b.addEventListener('click', () => retryDead(String(x.entry)));
        act.appendChild(b);
      }
      const status = x.last_status ? 'HTTP ' + x.last_status : '';
      const last = el('td', 'wrap', status);
      if (x.last_error && x.last_error !== status) last.appendChild(el('div', 'sub', x.last_error));
      const body_ = String(x.body || '');
      const tr = el('tr', null, el('td', null, fmtWhen(x.dead_at)), el('td', 'wrap', el('div', null, x.target), el('div', 'sub', x.id)),
        el('td', 'num', x.attempts), last, el('td', 'text body', body_.length > 300 ? body_.slice(0, 300) + ' …' : body_), act);
      tr.dataset.entry = String(x.entry);
      body.appendChild(tr);
    }
    if (d.list.length === 0) body.appendChild(el('tr', null, el('td', 'muted', t('dead.none'))));
  }

  async function retryDead(entry) {
    try {
      await api('POST', '/webhooks/dead/' + enc(entry) + '/retry');
      say(t('dead.retried', { entry }), true);
    } catch (e) {
      say(t('dead.failed', { message: e.message }));
      if (e.status === 401) setUser(null);
    }
    state.deadPaged = false;
    refreshDead(false);
    refreshWebhooks();
  }

  $('dead-more').addEventListener('click', () => { state.deadPaged = true; refreshDead(true); });
  $('dead-retry-all').addEventListener('click', async () => {
    if (!window.confirm(t('dead.confirmAll'))) return;
    try {
      const r = await api('POST', '/webhooks/dead/retry');
      say(t('dead.retriedAll', { n: r.retried }), true);
    } catch (e) {
      say(t('dead.failed', { message: e.message }));
      if (e.status === 401) setUser(null);
    }
    state.deadPaged = false;
    refreshDead(false);
    refreshWebhooks();
  });

  // ---- connection history ------------------------------------------------------------------

  async function loadEvents(older) {
    if (older && !state.eventsNext && state.historyOK) {
      loadStoredEvents();
      return;
    }
    let data;
    const q = '/events?count=' + EVENTS_PAGE + (older && state.eventsNext ? '&before=' + enc(state.eventsNext) : '');
    try {
      data = await api('GET', q);
    } catch (e) {
      return;
    }
    const list = Array.isArray(data.events) ? data.events : [];
    state.events = older ? state.events.concat(list) : list;
    state.eventsNext = data.next || '';
    if (!older) {
      state.eventsStoredMore = true;
      $('events-msg').textContent = '';
    }
    renderEvents();
  }

  // loadStoredEvents continues the connection history from the history
  // database once Redis's stream has no older events: the page ending at
  // the oldest event shown (events of the same millisecond already shown
  // are left out by id).
  async function loadStoredEvents() {
    const last = state.events[state.events.length - 1];
    const to = last && Number(last.ts) > 0 ? Number(last.ts) + 1 : Date.now();
    let d;
    try {
      d = await api('GET', '/history/events?limit=' + EVENTS_PAGE + '&to=' + to);
    } catch (e) {
      $('events-msg').textContent = t('events.storedUnavailable', { message: e.message });
      return;
    }
    const seen = new Set(state.events.map((e) => e.id));
    const list = (Array.isArray(d.events) ? d.events : []).filter((e) => !seen.has(e.id));
    state.events = state.events.concat(list);
    state.eventsStoredMore = Boolean(d.more) && list.length > 0;
    $('events-msg').textContent = state.eventsStoredMore ? '' : t('events.storedEnd');
    renderEvents();
  }

  // probeHistory finds out whether the history database answers.
  async function probeHistory() {
    try {
      await api('GET', '/history/events?limit=1');
      state.historyOK = true;
    } catch (_) {
      state.historyOK = false;
    }
    renderEvents();
  }

  function eventLabel(e) {
    switch (e) {
      case 'online': return t('event.online');
      case 'offline': return t('event.offline');
      case 'replaced': return t('event.replaced');
      case 'refused': return t('event.refused');
      default: return e;
    }
  }

  function renderEvents() {
    const body = $('events').tBodies[0];
    clear(body);
    for (const ev of state.events) {
      body.appendChild(el('tr', ev.event === 'online' ? 'on' : (ev.event === 'offline' || ev.event === 'refused' ? 'off' : null),
        el('td', null, fmtTime(ev.ts)), el('td', null, eventLabel(ev.event)), el('td', null, ev.channel),
        el('td', null, ev.registration), el('td', null, ev.remote), el('td', null, ev.reason)));
    }
    $('events-older').hidden = !(state.eventsNext || (state.historyOK && state.eventsStoredMore));
  }

  $('events-older').addEventListener('click', () => { state.eventsPaged = true; loadEvents(true); });

  // ---- WebSocket ------------------------------------------------------------------------------

  // setLive shows the live connection's state; key is a string's key.
  function setLive(on, key) {
    state.live = [key, on];
    const b = $('live');
    b.textContent = t(key);
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

  // onUpdate applies a model's values; a snapshot may carry each point as
  // {value, unit, type} instead of a bare value.
  function onUpdate(m) {
    for (const name of Object.keys(m.values)) {
      let v = m.values[name];
      if (v && typeof v === 'object') {
        setMeta(m.model, name, v);
        v = v.value;
      }
      setValue(m.model, name, v, m.ts, null, true);
    }
    for (const extra of [m.points, m.meta]) {
      if (extra && typeof extra === 'object') for (const name of Object.keys(extra)) setMeta(m.model, name, extra[name]);
    }
    if (m.units && typeof m.units === 'object') for (const name of Object.keys(m.units)) setMeta(m.model, name, { unit: m.units[name] });
    if (m.types && typeof m.types === 'object') for (const name of Object.keys(m.types)) setMeta(m.model, name, { type: m.types[name] });
  }

  function connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      setLive(false, 'live.offline');
      state.wsTimer = setTimeout(connect, state.wsDelay);
      return;
    }
    state.ws = ws;
    state.subscribed = new Set();
    ws.addEventListener('open', () => {
      state.wsDelay = 1000;
      setLive(true, 'live.live');
      send({ type: 'subscribe', models: [], alarms: true });
      syncSubscription();
    });
    ws.addEventListener('message', (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (_) { return; }
      if (!m || typeof m !== 'object') return;
      switch (m.type) {
        case 'update':
        case 'snapshot':
          if (state.models.has(m.model) && m.values && typeof m.values === 'object') onUpdate(m);
          break;
        case 'subscribed':
          // The models' point units and types (model → point → {unit, type}).
          if (m.meta && typeof m.meta === 'object') {
            for (const id of Object.keys(m.meta)) {
              const pts = m.meta[id];
              if (state.models.has(id) && pts && typeof pts === 'object') for (const name of Object.keys(pts)) setMeta(id, name, pts[name]);
            }
          }
          break;
        case 'quality':
          if (state.models.has(m.model) && m.quality) setQuality(m.model, m.quality);
          break;
        case 'alarm':
          onAlarm(m);
          break;
        case 'error':
          say(t('live.error', { message: m.message }));
          break;
        default:
          break;
      }
    });
    ws.addEventListener('close', (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      if (state.needLogin && !state.user) {
        setLive(false, 'live.needLogin');
      } else {
        setLive(false, ev.code === 1008 ? 'live.dropped' : 'live.reconnecting');
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

  applyStatic();
  setLive(false, 'live.connecting');
  selectChannel(null);
  selectPoint(null);
  refreshMe();
  every(HEALTH_EVERY, refreshHealth);
  every(CHANNELS_EVERY, () => { refreshChannels(); refreshFrames(); });
  every(MODELS_EVERY, refreshModels);
  every(ALARMS_EVERY, refreshAlarms);
  every(CONTROLS_EVERY, refreshControls);
  every(DEVICES_EVERY, refreshDevices);
  every(RULES_EVERY, refreshRules);
  every(WEBHOOKS_EVERY, () => { refreshWebhooks(); if (!state.deadPaged) refreshDead(false); });
  every(EVENTS_EVERY, () => { if (!state.eventsPaged) loadEvents(false); });
  every(MODELS_EVERY, probeHistory);
  connect();
})();
