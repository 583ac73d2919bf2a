// The batchd dashboard. Plain JavaScript, no build step, no dependency. Every element is made with
// createElement and every text set with textContent, so nothing a task holds can become markup.
'use strict';

const PAGE_SIZE = 25;
const POLL_MS = 1500;
const STATS_EVERY_MS = 5000;
// The list's bulk actions: the Action of POST /api/v1/BatchTask/Bulk, and what the dialog says.
const BULK = {
  stop: { verb: 'Stop', past: 'Stopped', why: 'finished, CannotCancel, or gone',
    warning: 'Running tasks are told to stop and end Failed. Tasks marked CancelWithWarning may leave their work half done; CannotCancel tasks are left alone.' },
  retry: { verb: 'Retry', past: 'Retried', why: 'only Failed tasks are retried',
    warning: 'Failed tasks go back to New and run again; their earlier attempts stay in the timeline.' },
  delete: { verb: 'Delete', past: 'Deleted', why: 'running, or gone',
    warning: 'Deleted tasks are gone for good. Running tasks cannot be deleted: stop them first.' },
};
const BULK_MAX = 1000;
const STREAM_URL = '/api/v1/BatchTask/Events/stream';
const FINISHED = ['Succeeded', 'SucceededManualCleanup', 'Failed'];
const STATES = ['New', 'Aquired', 'Started', 'Succeeded', 'SucceededManualCleanup', 'Failed', 'Unknown'];
// The OData list writes State as its number.
const STATE_BY_NUMBER = ['Unknown', 'New', 'Aquired', 'Started', 'Succeeded', 'Failed', 'SucceededManualCleanup'];

const app = {
  me: null, // GET /api/v1/Session
  xsrf: '',
  view: null, // the view on screen: {refresh(), apply?(type, data), stop?()}
  associates: new Map(), // id -> name (admins only)
  selected: new Set(),
};

// ---------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = String(v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
}

function append(e, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const $ = (id) => document.getElementById(id);

function status(text, kind) {
  const s = $('status');
  s.textContent = text || '';
  s.className = 'status' + (kind ? ' ' + kind : '');
}

// ---------------------------------------------------------------------------------------------
// Values

/// `2018-06-22T16:32:48.2902380+02:00` → a Date (seven fractional digits cut to three).
function parseDate(text) {
  if (!text) return null;
  const d = new Date(String(text).replace(/(\.\d{3})\d+/, '$1'));
  return isNaN(d) ? null : d;
}

function timeEl(text) {
  const d = parseDate(text);
  if (!d) return h('span', { class: 'none', text: '–' });
  return h('time', { datetime: text, title: text, text: d.toLocaleString() });
}

function stateName(v) {
  return typeof v === 'number' ? STATE_BY_NUMBER[v] || String(v) : v || 'Unknown';
}

function stateBadge(state) {
  return h('span', { class: 'state state-' + state, text: state });
}

function ownerName(id) {
  if (id === 0) return 'system';
  if (app.me && id === app.me.AssociateId) return app.me.Associate;
  return app.associates.get(id) || '#' + id;
}

function seconds(ms) {
  return ms >= 10000 ? Math.round(ms / 1000) + ' s' : (ms / 1000).toFixed(1) + ' s';
}

function dash(v) {
  return v === undefined || v === null || v === '' ? '–' : String(v);
}

function progressEl(percent, description, id) {
  const p = h('progress', { max: 100, value: percent || 0, 'aria-label': 'Progress of task ' + id });
  p.textContent = (percent || 0) + '%';
  return h('div', { class: 'progress' }, p,
    h('span', { class: 'pct', text: (percent || 0) + '%' }),
    h('span', { class: 'stage', text: description || '' }));
}

function setProgress(box, percent, description) {
  const p = box.querySelector('progress');
  p.value = percent || 0;
  p.textContent = (percent || 0) + '%';
  box.querySelector('.pct').textContent = (percent || 0) + '%';
  if (description !== undefined) box.querySelector('.stage').textContent = description || '';
}

// ---------------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function xsrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)XSRF-TOKEN=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : app.xsrf;
}

async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json', 'X-Requested-With': 'batchd-dashboard' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-XSRF-TOKEN'] = xsrfToken();
  let payload;
  if (body instanceof URLSearchParams) {
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  const type = res.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await res.json().catch(() => null) : null;
  if (res.status === 401 && !opts.login) {
    showLogin('Your session has ended. Log in again.');
    throw new ApiError(401, 'not logged in', data);
  }
  if (!res.ok) {
    const msg = (data && (data.ErrorMessage || data.Message)) || res.status + ' ' + res.statusText;
    throw new ApiError(res.status, msg, data);
  }
  return { data, res };
}

function odataFilter(f) {
  const quote = (s) => "'" + String(s).replace(/'/g, "''") + "'";
  const parts = [];
  if (f.id) parts.push('batchTaskId eq ' + Number(f.id));
  if (f.state) parts.push('State eq ' + f.state);
  if (f.name) parts.push('contains(DefinitionName, ' + quote(f.name) + ')');
  if (f.owner !== '' && f.owner !== undefined && f.owner !== null) parts.push('registeredBy eq ' + Number(f.owner));
  return parts.join(' and ');
}

// ---------------------------------------------------------------------------------------------
// Live updates: the event stream, else polling

const live = {
  source: null,
  failures: 0,
  polling: null,
  pending: null,
  mode: 'off',

  start() {
    this.stop();
    if (typeof EventSource === 'undefined') return this.poll();
    const source = new EventSource(STREAM_URL);
    this.source = source;
    let opened = false;
    source.onopen = () => {
      opened = true;
      this.failures = 0;
      this.show('live');
    };
    source.onerror = () => {
      this.failures += 1;
      // Not a stream (404, 401, …): EventSource gives up at once. Or it keeps failing: poll.
      if (source.readyState === EventSource.CLOSED || !opened || this.failures >= 3) {
        source.close();
        if (this.source === source) this.source = null;
        this.poll();
      }
    };
    for (const type of ['created', 'state', 'progress', 'deleted', 'resync']) {
      source.addEventListener(type, (e) => {
        this.failures = 0;
        let data = {};
        try {
          data = JSON.parse(e.data);
        } catch (_) {
          return;
        }
        this.deliver(type, data);
      });
    }
  },

  deliver(type, data) {
    const view = app.view;
    if (!view) return;
    const handled = type !== 'resync' && view.apply && view.apply(type, data);
    if (!handled) this.soon();
  },

  /// One refresh for a burst of events.
  soon() {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      if (app.view) app.view.refresh().catch(() => {});
    }, 300);
  },

  poll() {
    if (this.polling) return;
    this.show('polling');
    this.polling = setInterval(() => {
      if (document.hidden || !app.view) return;
      app.view.refresh().catch(() => {});
    }, POLL_MS);
  },

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    if (this.polling) clearInterval(this.polling);
    this.polling = null;
    this.show('off');
  },

  show(mode) {
    this.mode = mode;
    const el = $('live');
    el.textContent = mode === 'live' ? '● live' : mode === 'polling' ? '◌ polling' : '';
    el.dataset.mode = mode;
  },
};

// ---------------------------------------------------------------------------------------------
// Session

async function boot() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  document.addEventListener('click', followLink);
  window.addEventListener('popstate', () => route());
  try {
    const { data } = await api('GET', '/api/v1/Session', undefined, { login: true });
    await loggedIn(data);
  } catch (e) {
    if (e.status === 401) showLogin();
    else status('The server did not answer: ' + e.message, 'error');
  }
}

async function loggedIn(me) {
  app.me = me;
  $('top').hidden = false;
  $('login-view').hidden = true;
  $('who').textContent = me.Associate + ' (' + me.Role + (me.ReadOnly ? ', read-only' : '') + ')';
  $('nav-nodes').hidden = me.Role !== 'admin';
  app.associates = new Map();
  if (me.Role === 'admin') {
    try {
      const { data } = await api('GET', '/api/v1/Associate');
      for (const a of data || []) app.associates.set(a.AssociateId, a.Name);
    } catch (_) {
      // Names are a nicety; ids are shown instead.
    }
  }
  if (location.pathname === '/login') {
    const next = new URLSearchParams(location.search).get('next');
    history.replaceState(null, '', next && next.startsWith('/') && !next.startsWith('//') ? next : '/');
  }
  live.start();
  await route();
}

function showLogin(message) {
  live.stop();
  if (app.view && app.view.stop) app.view.stop();
  app.view = null;
  app.me = null;
  $('top').hidden = true;
  $('view').replaceChildren();
  $('login-view').hidden = false;
  $('login-error').textContent = message || '';
  status('');
  if (location.pathname !== '/login') {
    const next = location.pathname + location.search;
    history.replaceState(null, '', '/login' + (next !== '/' ? '?next=' + encodeURIComponent(next) : ''));
  }
  document.title = 'Log in · batchd';
  $('login-name').focus();
}

async function login(e) {
  e.preventDefault();
  const form = e.target;
  const body = new URLSearchParams();
  body.set('UserName', form.elements.UserName.value);
  body.set('Password', form.elements.Password.value);
  $('login-error').textContent = '';
  try {
    const { data } = await api('POST', '/api/v1/Session', body, { login: true });
    app.xsrf = data.XsrfToken || '';
    form.elements.Password.value = '';
    const { data: me } = await api('GET', '/api/v1/Session');
    await loggedIn(me);
  } catch (err) {
    $('login-error').textContent =
      err.status === 401 ? 'Wrong user name or password.' : err.status === 429 ? 'Too many attempts: wait a little.' : err.message;
  }
}

async function logout() {
  try {
    await api('DELETE', '/api/v1/Session');
  } catch (_) {
    // Logged out either way.
  }
  showLogin('You have logged out.');
}

// ---------------------------------------------------------------------------------------------
// Routing

function followLink(e) {
  const a = e.target.closest('a');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api') || url.pathname.startsWith('/ui/')) return;
  e.preventDefault();
  go(url.pathname + url.search);
}

function go(path, replace) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  return route();
}

async function route() {
  if (!app.me) return;
  if (app.view && app.view.stop) app.view.stop();
  const path = location.pathname;
  const root = $('view');
  root.replaceChildren();
  status('');
  let view;
  let m;
  if (path === '/' || path === '/tasks') view = tasksView(root);
  else if ((m = path.match(/^\/tasks\/(\d+)$/))) view = taskView(root, Number(m[1]));
  else if (path === '/definitions') view = definitionsView(root);
  else if (path === '/nodes' && app.me.Role === 'admin') view = nodesView(root);
  else view = notFoundView(root);
  app.view = view;
  for (const a of document.querySelectorAll('[data-nav]')) {
    const here = path === '/' + a.dataset.nav || (a.dataset.nav === 'tasks' && path.startsWith('/tasks')) || (a.dataset.nav === 'tasks' && path === '/');
    if (here) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  try {
    await view.refresh();
  } catch (e) {
    if (e.status !== 401) status(e.message, 'error');
  }
}

function notFoundView(root) {
  document.title = 'Not found · batchd';
  root.append(h('h1', { text: 'Not found' }), h('p', {}, 'No such page. ', h('a', { href: '/', text: 'Back to the tasks' })));
  return { refresh: async () => {} };
}

// ---------------------------------------------------------------------------------------------
// Confirmation dialog

function confirmDialog(title, body, okText) {
  const d = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-body').replaceChildren(...[body].flat().map((b) => (b instanceof Node ? b : h('p', { text: b }))));
  $('confirm-ok').textContent = okText;
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.showModal();
    $('confirm-ok').focus();
  });
}

// ---------------------------------------------------------------------------------------------
// Task list

function readFilters() {
  const q = new URLSearchParams(location.search);
  return {
    state: STATES.includes(q.get('state')) ? q.get('state') : '',
    name: q.get('name') || '',
    owner: (q.get('owner') || '').replace(/\D/g, ''),
    id: (q.get('id') || '').replace(/\D/g, ''),
    page: Math.max(1, parseInt(q.get('page') || '1', 10) || 1),
  };
}

function writeFilters(f) {
  const q = new URLSearchParams();
  for (const k of ['state', 'name', 'owner', 'id']) if (f[k] !== '' && f[k] !== undefined) q.set(k, f[k]);
  if (f.page > 1) q.set('page', f.page);
  const s = q.toString();
  history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
}

function tasksView(root) {
  document.title = 'Tasks · batchd';
  const f = readFilters();
  const canWrite = !app.me.ReadOnly;
  const counts = h('ul', { class: 'counts', 'aria-label': 'Tasks per state' });
  const stateSel = h('select', { id: 'f-state', name: 'state' }, h('option', { value: '', text: 'Any state' }),
    STATES.map((s) => h('option', { value: s, text: s, selected: s === f.state })));
  const nameIn = h('input', { id: 'f-name', name: 'name', value: f.name, type: 'search', placeholder: 'part of the name' });
  const ownerSel = h('select', { id: 'f-owner', name: 'owner' }, h('option', { value: '', text: 'Anyone' }));
  const owners = app.me.Role === 'admin' ? [...app.associates.entries()] : [[app.me.AssociateId, app.me.Associate]];
  if (app.me.Role === 'admin') owners.unshift([0, 'system']);
  for (const [id, name] of owners) ownerSel.append(h('option', { value: id, text: name, selected: String(id) === f.owner }));
  const idIn = h('input', { id: 'f-id', name: 'id', value: f.id, inputmode: 'numeric', pattern: '[0-9]*', placeholder: 'task id', size: 8 });
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter tasks' },
    h('div', {}, h('label', { for: 'f-state', text: 'State' }), stateSel),
    h('div', {}, h('label', { for: 'f-name', text: 'Name' }), nameIn),
    h('div', {}, h('label', { for: 'f-owner', text: 'Owner' }), ownerSel),
    h('div', {}, h('label', { for: 'f-id', text: 'Id' }), idIn),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', text: 'Apply' }),
      h('button', { type: 'button', class: 'plain', text: 'Clear', onclick: () => { f.state = f.name = f.owner = f.id = ''; f.page = 1; writeFilters(f); route(); } })));
  const apply = (e) => {
    if (e) e.preventDefault();
    Object.assign(f, { state: stateSel.value, name: nameIn.value.trim(), owner: ownerSel.value, id: idIn.value.replace(/\D/g, ''), page: 1 });
    writeFilters(f);
    view.refresh().catch((err) => status(err.message, 'error'));
  };
  filters.addEventListener('submit', apply);
  stateSel.addEventListener('change', apply);
  ownerSel.addEventListener('change', apply);

  const bulkStop = h('button', { type: 'button', text: 'Stop selected', disabled: true, onclick: () => bulk('stop') });
  const bulkRetry = h('button', { type: 'button', text: 'Retry selected', disabled: true, onclick: () => bulk('retry') });
  const bulkDelete = h('button', { type: 'button', class: 'danger', text: 'Delete selected', disabled: true, onclick: () => bulk('delete') });
  const selectAll = h('input', { type: 'checkbox', 'aria-label': 'Select every task on this page' });
  const tbody = h('tbody', { id: 'task-rows' });
  const table = h('table', { class: 'tasks' },
    h('caption', { class: 'sr', text: 'Tasks, newest first' }),
    h('thead', {}, h('tr', {},
      canWrite ? h('th', { scope: 'col' }, selectAll) : null,
      ['Id', 'Name', 'Description', 'Owner', 'State', 'Progress', 'Created', 'Started', 'Updated'].map((t) => h('th', { scope: 'col', text: t })))),
    tbody);
  const prev = h('button', { type: 'button', text: '← Newer', disabled: true, onclick: () => { f.page -= 1; writeFilters(f); view.refresh(); } });
  const next = h('button', { type: 'button', text: 'Older →', disabled: true, onclick: () => { f.page += 1; writeFilters(f); view.refresh(); } });
  const pageText = h('span', { class: 'page' });
  const empty = h('p', { class: 'empty', hidden: true, text: 'No task matches.' });
  const charts = h('section', { class: 'charts', 'aria-labelledby': 'charts-title' }, h('h2', { id: 'charts-title', text: 'The last hour' }));

  root.append(
    h('div', { class: 'heading' }, h('h1', { text: 'Tasks' }),
      canWrite ? h('a', { class: 'button', href: '/definitions?start=', text: 'Start a task' }) : null),
    counts, filters,
    canWrite ? h('div', { class: 'bulk' }, bulkStop, bulkRetry, bulkDelete, h('span', { id: 'selected-count', class: 'muted' })) : null,
    h('div', { class: 'scroll' }, table), empty,
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, pageText, next),
    charts);

  function updateBulk() {
    const n = app.selected.size;
    bulkStop.disabled = bulkRetry.disabled = bulkDelete.disabled = n === 0;
    const c = $('selected-count');
    if (c) c.textContent = n ? n + ' selected' : '';
  }

  selectAll.addEventListener('change', () => {
    for (const box of tbody.querySelectorAll('input[type=checkbox]')) {
      box.checked = selectAll.checked;
      const id = Number(box.dataset.id);
      if (box.checked) app.selected.add(id);
      else app.selected.delete(id);
    }
    updateBulk();
  });

  function makeRow(t) {
    const id = t.PrimaryKey;
    const box = canWrite ? h('input', { type: 'checkbox', 'data-id': id, 'aria-label': 'Select task ' + id, checked: app.selected.has(id) }) : null;
    if (box) box.addEventListener('change', () => { if (box.checked) app.selected.add(id); else app.selected.delete(id); updateBulk(); });
    const tr = h('tr', { 'data-task-id': id },
      box ? h('td', { class: 'sel' }, box) : null,
      h('td', { 'data-label': 'Id' }, h('a', { href: '/tasks/' + id, text: '#' + id })),
      h('td', { 'data-label': 'Name', class: 'name' }),
      h('td', { 'data-label': 'Description', class: 'description' }),
      h('td', { 'data-label': 'Owner', class: 'owner' }),
      h('td', { 'data-label': 'State', class: 'state-cell' }),
      h('td', { 'data-label': 'Progress', class: 'progress-cell' }, progressEl(0, '', id)),
      h('td', { 'data-label': 'Created', class: 'created' }),
      h('td', { 'data-label': 'Started', class: 'started' }),
      h('td', { 'data-label': 'Updated', class: 'updated' }));
    fillRow(tr, t);
    return tr;
  }

  function fillRow(tr, t) {
    const cell = (cls) => tr.querySelector('.' + cls);
    cell('name').textContent = t.DefinitionName || '';
    cell('description').textContent = t.Description || '';
    cell('owner').textContent = ownerName(t.registeredBy);
    patchRow(tr, { State: stateName(t.State), ProgressPercent: t.ProgressPercent, ProgressDescription: t.ProgressDescription, LastStarted: t.LastStarted, updatedDate: t.updatedDate });
    cell('created').replaceChildren(timeEl(t.registeredDate));
  }

  /// Changes from the list or the stream (BatchTaskInfo names) written into a row.
  function patchRow(tr, c) {
    const cell = (cls) => tr.querySelector('.' + cls);
    if (c.State !== undefined) {
      cell('state-cell').replaceChildren(stateBadge(c.State));
      tr.dataset.state = c.State;
    }
    if (c.ProgressPercent !== undefined || c.ProgressDescription !== undefined) {
      setProgress(cell('progress-cell').firstChild, c.ProgressPercent !== undefined ? c.ProgressPercent : cell('progress-cell').querySelector('progress').value, c.ProgressDescription);
    }
    if (c.LastStarted !== undefined) cell('started').replaceChildren(timeEl(c.LastStarted));
    if (c.updatedDate !== undefined) cell('updated').replaceChildren(timeEl(c.updatedDate));
  }

  async function loadCounts() {
    const { data } = await api('GET', '/api/v1/Stats?minutes=60');
    counts.replaceChildren(...STATES.filter((s) => s !== 'Unknown' || data.States[s]).map((s) =>
      h('li', {}, h('a', {
        href: '/tasks?state=' + s, class: 'count state-' + s, 'data-state': s, 'aria-current': f.state === s ? 'true' : null,
      }, h('span', { class: 'n', text: data.States[s] || 0 }), ' ', s))));
    drawCharts(charts, data);
  }

  async function loadList() {
    const q = new URLSearchParams();
    q.set('$select', 'batchTaskId,DefinitionName,Description,registeredBy,State,ProgressPercent,ProgressDescription,registeredDate,LastStarted,updatedDate');
    q.set('$orderBy', 'batchTaskId desc');
    q.set('$top', PAGE_SIZE);
    q.set('$skip', (f.page - 1) * PAGE_SIZE);
    const filter = odataFilter(f);
    if (filter) q.set('$filter', filter);
    const { data } = await api('GET', '/api/v1/BatchTask?' + q.toString());
    const rows = data.value || [];
    const existing = new Map([...tbody.children].map((tr) => [Number(tr.dataset.taskId), tr]));
    let at = 0;
    for (const t of rows) {
      let tr = existing.get(t.PrimaryKey);
      if (tr) {
        fillRow(tr, t);
        existing.delete(t.PrimaryKey);
      } else {
        tr = makeRow(t);
      }
      // Move only what is out of place, so focus and selection stay where they are.
      if (tbody.children[at] !== tr) tbody.insertBefore(tr, tbody.children[at] || null);
      at += 1;
    }
    for (const tr of existing.values()) tr.remove();
    const visible = new Set(rows.map((t) => t.PrimaryKey));
    for (const id of [...app.selected]) if (!visible.has(id)) app.selected.delete(id);
    // The boxes say what is selected (a bulk action unselects what it did).
    for (const box of tbody.querySelectorAll('input[type=checkbox]')) box.checked = app.selected.has(Number(box.dataset.id));
    selectAll.checked = rows.length > 0 && rows.every((t) => app.selected.has(t.PrimaryKey));
    updateBulk();
    empty.hidden = rows.length > 0;
    prev.disabled = f.page <= 1;
    next.disabled = !data['odata.nextLink'];
    pageText.textContent = 'Page ' + f.page;
  }

  /// One `POST /api/v1/BatchTask/Bulk` for the selection: the server applies the caller's rights
  /// to each task and answers how many it matched and acted on.
  async function bulk(kind) {
    const ids = [...app.selected];
    if (!ids.length) return;
    const what = BULK[kind];
    const ok = await confirmDialog(what.verb + ' ' + ids.length + ' task' + (ids.length > 1 ? 's' : '') + '?',
      [what.warning, 'Tasks: ' + ids.map((i) => '#' + i).join(', ')], what.verb);
    if (!ok) return;
    let done = 0;
    // A $filter holds at most 1000 values, and a bulk action acts on at most 1000 tasks.
    for (let i = 0; i < ids.length; i += BULK_MAX) {
      const chunk = ids.slice(i, i + BULK_MAX);
      try {
        const { data } = await api('POST', '/api/v1/BatchTask/Bulk',
          { Action: what.verb, Filter: 'batchTaskId oneOf (' + chunk.join(',') + ')', DryRun: false });
        done += data ? data.Done : 0;
      } catch (e) {
        if (e.status !== 401) status(what.verb + ' failed after ' + done + ': ' + e.message, 'error');
        return;
      }
      for (const id of chunk) app.selected.delete(id);
    }
    const missed = ids.length - done;
    status(what.past + ' ' + done + '.' + (missed > 0 ? ' Not done: ' + missed + ' (' + what.why + ').' : ''), missed > 0 ? 'error' : 'ok');
    await view.refresh();
  }

  // The figures cost more than a page of the list (they group an hour of finished tasks): read
  // them at most every STATS_EVERY_MS, however often the list is.
  // When they are skipped, they are read once the wait is over, so they never stay behind.
  let countsAt = 0;
  let countsLater = null;
  const view = {
    async refresh() {
      const wait = countsAt + STATS_EVERY_MS - Date.now();
      if (wait <= 0) countsAt = Date.now();
      else if (!countsLater) {
        countsLater = setTimeout(() => {
          countsLater = null;
          countsAt = Date.now();
          loadCounts().catch(() => {});
        }, wait);
      }
      await Promise.all([loadList(), wait <= 0 ? loadCounts() : null]);
    },
    stop() {
      clearTimeout(countsLater);
    },
    apply(type, data) {
      if (type !== 'state' && type !== 'progress') return false;
      const tr = tbody.querySelector('tr[data-task-id="' + Number(data.Id) + '"]');
      if (!tr || !data.Changed) return false;
      patchRow(tr, data.Changed);
      if (type === 'progress') return true;
      // A state change may move the task out of the filter, and changes the counts.
      live.soon();
      return true;
    },
  };
  return view;
}

// ---------------------------------------------------------------------------------------------
// Charts (inline SVG)

function drawCharts(box, stats) {
  const minutes = stats.Minutes;
  const since = parseDate(stats.Since).getTime();
  const buckets = Array.from({ length: minutes }, (_, i) => ({ t: since + i * 60000, ok: 0, failed: 0, wait: 0, run: 0, started: 0, waitMax: 0, runMax: 0 }));
  for (const m of stats.Finished || []) {
    const i = Math.floor((parseDate(m.Minute).getTime() - since) / 60000);
    const b = buckets[i];
    if (!b) continue;
    if (m.State === 'Failed') b.failed += m.Count;
    else b.ok += m.Count;
    b.wait += m.WaitMsAvg * m.Started;
    b.run += m.RunMsAvg * m.Started;
    b.started += m.Started;
    b.waitMax = Math.max(b.waitMax, m.WaitMsMax);
    b.runMax = Math.max(b.runMax, m.RunMsMax);
  }
  const total = buckets.reduce((a, b) => ({ ok: a.ok + b.ok, failed: a.failed + b.failed, started: a.started + b.started, wait: a.wait + b.wait, run: a.run + b.run }), { ok: 0, failed: 0, started: 0, wait: 0, run: 0 });
  const W = 600, H = 160, L = 36, B = 20, T = 8;
  const x = (i) => L + (i * (W - L - 4)) / minutes;
  const bw = Math.max(1, (W - L - 4) / minutes - 1);
  const axis = (max, unit) => [0, 0.5, 1].map((f) => {
    const y = H - B - f * (H - B - T);
    return [svg('line', { x1: L, x2: W - 4, y1: y, y2: y, class: 'grid' }), svg('text', { x: L - 4, y: y + 4, class: 'tick', 'text-anchor': 'end' }, unit(max * f))];
  });
  const timeTicks = () => [[0, 'start'], [Math.floor(minutes / 2), 'middle'], [minutes - 1, 'end']].map(([i, anchor]) =>
    svg('text', { x: anchor === 'end' ? W - 4 : x(i), y: H - 4, class: 'tick', 'text-anchor': anchor }, new Date(buckets[i].t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })));

  // An even whole number, so the middle grid line is a whole number of tasks too.
  const maxCount = Math.max(2, 2 * Math.ceil(Math.max(...buckets.map((b) => b.ok + b.failed)) / 2));
  const scale = (v, max) => ((H - B - T) * v) / max;
  const bars = buckets.map((b, i) => {
    const okH = scale(b.ok, maxCount), failH = scale(b.failed, maxCount);
    const when = new Date(b.t).toLocaleTimeString();
    return svg('g', {},
      b.ok ? svg('rect', { x: x(i), y: H - B - okH, width: bw, height: okH, class: 'ok' }, svg('title', {}, when + ': ' + b.ok + ' succeeded')) : null,
      b.failed ? svg('rect', { x: x(i), y: H - B - okH - failH, width: bw, height: failH, class: 'failed' }, svg('title', {}, when + ': ' + b.failed + ' failed')) : null);
  });
  const finishedChart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-finished-t', class: 'chart', id: 'chart-finished' },
    svg('title', { id: 'chart-finished-t' }, `Tasks finished per minute: ${total.ok} succeeded and ${total.failed} failed in the last ${minutes} minutes`),
    axis(maxCount, (v) => String(Math.round(v))), bars, timeTicks());

  // Nodes' clocks may differ a little: a negative wait is drawn as none.
  const avg = (b, key) => (b.started ? Math.max(0, b[key] / b.started) : null);
  const maxMs = Math.max(1000, ...buckets.map((b) => Math.max(avg(b, 'wait') || 0, avg(b, 'run') || 0)));
  const line = (key, cls) => {
    const pts = buckets.map((b, i) => [x(i) + bw / 2, avg(b, key)]).filter(([, v]) => v !== null);
    return [svg('polyline', { points: pts.map(([px, v]) => px.toFixed(1) + ',' + (H - B - scale(v, maxMs)).toFixed(1)).join(' '), class: 'line ' + cls }),
      pts.map(([px, v]) => svg('circle', { cx: px.toFixed(1), cy: (H - B - scale(v, maxMs)).toFixed(1), r: 2.5, class: 'dot ' + cls }, svg('title', {}, (key === 'wait' ? 'queue wait ' : 'run time ') + seconds(v))))];
  };
  const timesChart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-times-t', class: 'chart', id: 'chart-times' },
    svg('title', { id: 'chart-times-t' }, 'Average queue wait and run time per minute' + (total.started ? `: overall ${seconds(total.wait / total.started)} wait, ${seconds(total.run / total.started)} run` : ': no task started')),
    axis(maxMs, (v) => seconds(v)), line('wait', 'wait'), line('run', 'run'), timeTicks());

  const keep = box.querySelector('h2');
  box.replaceChildren(keep,
    h('figure', {}, finishedChart, h('figcaption', {}, h('span', { class: 'key ok' }), 'Succeeded ', h('span', { class: 'key failed' }), 'Failed', ' — tasks finished per minute (' + total.ok + ' / ' + total.failed + ')')),
    h('figure', {}, timesChart, h('figcaption', {}, h('span', { class: 'key wait' }), 'Queue wait (Created → LastStarted) ', h('span', { class: 'key run' }), 'Run time (LastStarted → end), average per minute')));
}

// ---------------------------------------------------------------------------------------------
// One task

function taskView(root, id) {
  document.title = 'Task ' + id + ' · batchd';
  const heading = h('h1', { text: 'Task #' + id });
  const actions = h('div', { class: 'actions' });
  const progress = progressEl(0, '', id);
  const props = h('dl', { class: 'props' });
  const params = h('div');
  const outputs = h('div', { class: 'outputs' });
  const timeline = h('ol', { class: 'timeline' });
  const deps = h('div', { class: 'deps' });
  root.append(
    h('p', {}, h('a', { href: '/tasks', text: '← Tasks' })),
    h('div', { class: 'heading' }, heading, actions),
    h('section', { 'aria-label': 'Progress', class: 'task-progress' }, progress),
    h('div', { class: 'columns' },
      h('section', { 'aria-labelledby': 'props-t' }, h('h2', { id: 'props-t', text: 'Properties' }), props),
      h('section', {},
        h('h2', { text: 'ParameterObject' }), params,
        h('h2', { text: 'Output' }), outputs)),
    h('section', { 'aria-labelledby': 'deps-t' }, h('h2', { id: 'deps-t', text: 'Dependencies' }), deps),
    h('section', { 'aria-labelledby': 'events-t' }, h('h2', { id: 'events-t', text: 'Timeline' }), timeline));
  let task = null;
  let gone = false;

  const SHOWN = ['Id', 'Name', 'Description', 'State', 'AssociateId', 'Created', 'LastStarted', 'StartCount', 'ProgressPercent', 'ProgressDescription',
    'CancellationBehaviour', 'IsSystemTask', 'IsInternalTask', 'DetailsTable', 'DetailsRecord', 'DatabaseSerialNumber', 'Context', 'Request', 'FileName'];

  function render(t) {
    task = t;
    heading.textContent = 'Task #' + t.Id + ' · ' + t.Name;
    setProgress(progress, t.ProgressPercent, t.ProgressDescription);
    progress.dataset.state = t.State;
    const rows = [];
    for (const k of SHOWN) {
      let v = t[k];
      if (k === 'State') v = stateBadge(v);
      else if (k === 'AssociateId') v = ownerName(v) + (v ? ' (#' + v + ')' : '');
      else if (k === 'Created' || k === 'LastStarted') v = timeEl(v);
      else if (typeof v === 'boolean') v = v ? 'yes' : 'no';
      rows.push(h('dt', { text: k }), h('dd', { 'data-prop': k }, v instanceof Node ? v : dash(v)));
    }
    rows.push(h('dt', { text: 'TableRight' }), h('dd', { 'data-prop': 'TableRight', text: (t.TableRight && t.TableRight.Mask) || '–' }));
    const updatable = Object.entries(t.FieldProperties || {}).filter(([, p]) => p && p.FieldRight && p.FieldRight.Mask === 'Update').map(([k]) => k);
    rows.push(h('dt', { text: 'FieldProperties' }), h('dd', { 'data-prop': 'FieldProperties', text: updatable.length ? 'you may change ' + updatable.join(', ') : 'read only' }));
    props.replaceChildren(...rows);
    const entries = Object.entries(t.ParameterObject || {});
    params.replaceChildren(entries.length
      ? h('table', { class: 'kv' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Key' }), h('th', { scope: 'col', text: 'Value' }))),
        h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', {}, h('code', { text: v }))))))
      : h('p', { class: 'muted', text: 'No parameters.' }));
    const out = (label, v) => [h('h3', { text: label }), v ? h('pre', { 'data-out': label, text: v }) : h('p', { class: 'muted', text: '–' })];
    outputs.replaceChildren(...out('Result', t.Result), ...out('Response', t.Response), ...out('FileName', t.FileName));
    renderActions(t);
  }

  function renderActions(t) {
    const mask = (t.TableRight && t.TableRight.Mask) || '';
    const may = (right) => !app.me.ReadOnly && mask.split(',').map((s) => s.trim()).includes(right);
    const btns = [];
    if (may('Update') && !FINISHED.includes(t.State) && t.CancellationBehaviour !== 'CannotCancel') btns.push(h('button', { type: 'button', id: 'stop', text: 'Stop', onclick: stop }));
    if (may('Update') && t.State === 'Failed') btns.push(h('button', { type: 'button', id: 'retry', text: 'Retry', onclick: retry }));
    if (may('Delete')) btns.push(h('button', { type: 'button', id: 'delete', class: 'danger', text: 'Delete', onclick: remove }));
    // Rebuilt only when the choice changes, so a focused button keeps the focus.
    const key = btns.map((b) => b.id).join(',');
    if (actions.dataset.key !== key) {
      actions.dataset.key = key;
      actions.replaceChildren(...btns);
    }
  }

  async function stop() {
    const warn = task.CancellationBehaviour === 'CancelWithWarning';
    const body = ['Task #' + task.Id + ' (' + task.Name + ') ends Failed; a running one is told to stop.'];
    if (warn) body.push(h('p', { class: 'warning', role: 'note' }, h('strong', { text: 'Warning: ' }), 'this task is marked CancelWithWarning (its CancellationBehaviour): stopping it may leave its work half done.'));
    if (!(await confirmDialog('Stop task #' + task.Id + '?', body, 'Stop'))) return;
    try {
      const { data, res } = await api('POST', '/api/v1/BatchTask/' + task.Id + '/Stop');
      const warning = res.headers.get('Warning');
      const text = warning ? warning.replace(/^199 batchd "(.*)"$/, '$1') : '';
      status(data === false ? 'The task could not be stopped (finished, or CannotCancel).' : 'Stop asked.' + (text ? ' ' + text : ''), data === false ? 'error' : warning ? 'warn' : 'ok');
      await view.refresh();
    } catch (e) {
      if (e.status !== 401) status(e.message, 'error');
    }
  }

  async function retry() {
    try {
      await api('POST', '/api/v1/BatchTask/' + task.Id + '/Retry');
      status('Task #' + task.Id + ' runs again.', 'ok');
      await view.refresh();
    } catch (e) {
      if (e.status !== 401) status(e.message, 'error');
    }
  }

  async function remove() {
    if (!(await confirmDialog('Delete task #' + task.Id + '?', ['The task, its parameters and results are deleted for good.'], 'Delete'))) return;
    try {
      await api('DELETE', '/api/v1/BatchTask/' + task.Id);
      await go('/tasks');
      status('Task #' + task.Id + ' deleted.', 'ok');
    } catch (e) {
      if (e.status !== 401) status(e.message, 'error');
    }
  }

  function renderEvents(events) {
    // One group per attempt: each move to Started begins one; what came before is the queue.
    const groups = [{ title: 'Queued', items: [] }];
    let attempt = 0;
    for (const e of events) {
      if (e.To === 'Started' && e.From !== 'Started') {
        attempt += 1;
        groups.push({ title: 'Attempt ' + attempt, items: [] });
      }
      groups[groups.length - 1].items.push(e);
    }
    let stderr = '';
    for (const e of events) {
      const i = (e.Reason || '').indexOf('; stderr: ');
      if (i >= 0) stderr = e.Reason.slice(i + 10);
    }
    timeline.replaceChildren(...groups.filter((g) => g.items.length).map((g) => h('li', { class: 'attempt' },
      h('h3', { text: g.title }),
      h('ul', {}, g.items.map((e) => h('li', { class: 'event', 'data-event-id': e.Id },
        timeEl(e.Time), ' ',
        h('span', { class: 'move' }, e.From ? stateBadge(e.From) : 'created', ' → ', e.To ? stateBadge(e.To) : 'deleted'),
        h('span', { class: 'where', text: e.Node ? ' on ' + e.Node : '' }),
        h('span', { class: 'who', text: e.Associate ? ' by ' + e.Associate : '' }),
        e.Reason ? h('div', { class: 'why', text: e.Reason.split('; stderr: ')[0] }) : null))))));
    const old = outputs.querySelector('.stderr');
    if (old) old.remove();
    outputs.append(h('div', { class: 'stderr' }, h('h3', { text: 'stderr (last 4 KiB)' }),
      stderr ? h('pre', { 'data-out': 'stderr', text: stderr }) : h('p', { class: 'muted', text: '–' })));
  }

  // What it waits for (After) and what waits for it (Before): links, text only.
  function renderDeps(d) {
    const item = (x, way) => h('li', { 'data-dep': way, 'data-id': x.Id },
      h('a', { href: '/tasks/' + x.Id, text: '#' + x.Id + (x.Name ? ' ' + x.Name : '') }), ' ',
      x.State ? stateBadge(x.State) : h('span', { class: 'muted', text: 'deleted' }));
    const list = (title, way, items, none) => [h('h3', { text: title }), items.length
      ? h('ul', { class: 'dep-list' }, items.map((x) => item(x, way)))
      : h('p', { class: 'muted', text: none })];
    const shown = [...list('Waits for', 'after', d.After || [], 'Nothing: it runs when due.'),
      ...list('Waited for by', 'before', d.Before || [], 'No task waits for it.')];
    if (d.BeforeMore) shown.push(h('p', { class: 'muted', text: 'Only the first ' + d.BeforeMax + ' are listed.' }));
    deps.replaceChildren(...shown);
  }

  const view = {
    async refresh() {
      if (gone) return;
      try {
        const [{ data: t }, { data: events }, { data: d }] = await Promise.all([
          api('GET', '/api/v1/BatchTask/' + id),
          api('GET', '/api/v1/BatchTask/' + id + '/Events'),
          api('GET', '/api/v1/BatchTask/' + id + '/Dependencies'),
        ]);
        render(t);
        renderEvents(events || []);
        renderDeps(d || {});
      } catch (e) {
        if (e.status === 404) {
          gone = true;
          heading.textContent = 'Task #' + id + ' is not there';
          actions.replaceChildren();
          status('No task #' + id + ' (deleted, or not yours).', 'error');
          return;
        }
        throw e;
      }
    },
    apply(type, data) {
      if (Number(data.Id) !== id) return true;
      if (type === 'progress' && data.Changed && task) {
        Object.assign(task, data.Changed);
        setProgress(progress, task.ProgressPercent, data.Changed.ProgressDescription);
        return true;
      }
      return false;
    },
  };
  return view;
}

// ---------------------------------------------------------------------------------------------
// Definitions, and starting a task

function definitionsView(root) {
  document.title = 'Definitions · batchd';
  const canWrite = !app.me.ReadOnly;
  const canPause = canWrite && app.me.Role === 'admin';
  const tbody = h('tbody');
  const formBox = h('div', { id: 'start-box' });
  root.append(h('h1', { text: 'Definitions' }), formBox,
    h('div', { class: 'scroll' }, h('table', { class: 'defs' },
      h('thead', {}, h('tr', {}, ['Name', 'Runner', 'Limits', 'Schedule', 'Retries', 'New', 'Running', 'Failed', ''].map((t) => h('th', { scope: 'col', text: t })))),
      tbody)));
  let defs = [];

  function startForm(name) {
    const def = defs.find((d) => d.Name === name) || defs[0];
    const nameSel = h('select', { id: 's-name', name: 'Name', required: true }, defs.map((d) => h('option', { value: d.Name, text: d.Name, selected: d === def })));
    const desc = h('input', { id: 's-desc', name: 'Description', maxlength: 254 });
    const rows = h('tbody');
    const addRow = (k = '', v = '') => {
      const i = rows.children.length;
      const key = h('input', { name: 'key', value: k, 'aria-label': 'Parameter ' + (i + 1) + ' key', maxlength: 254 });
      const val = h('input', { name: 'value', value: v, 'aria-label': 'Parameter ' + (i + 1) + ' value' });
      const tr = h('tr', {}, h('td', {}, key), h('td', {}, val),
        h('td', {}, h('button', { type: 'button', class: 'plain', 'aria-label': 'Remove parameter ' + (i + 1), text: '✕', onclick: () => tr.remove() })));
      rows.append(tr);
      return key;
    };
    const prefill = (d) => {
      rows.replaceChildren();
      const keys = Array.isArray(d && d.Parameters) ? d.Parameters.map((p) => (typeof p === 'string' ? p : p && (p.Name || p.Key))).filter(Boolean) : [];
      if (!keys.length && d && d.Runner === 'sleep') keys.push('Seconds');
      for (const k of keys) addRow(k, '');
      if (!keys.length) addRow();
    };
    prefill(def);
    nameSel.addEventListener('change', () => prefill(defs.find((d) => d.Name === nameSel.value)));
    const error = h('p', { class: 'error', role: 'alert' });
    const form = h('form', { class: 'start', 'aria-labelledby': 'start-t' },
      h('h2', { id: 'start-t', text: 'Start a task' }), error,
      h('label', { for: 's-name', text: 'Definition' }), nameSel,
      h('label', { for: 's-desc', text: 'Description' }), desc,
      h('fieldset', {}, h('legend', { text: 'ParameterObject' }),
        h('table', { class: 'kv' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Key' }), h('th', { scope: 'col', text: 'Value' }), h('th', {}))), rows),
        h('button', { type: 'button', class: 'plain', text: '+ Parameter', onclick: () => addRow().focus() })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', text: 'Start' }),
        h('button', { type: 'button', class: 'plain', text: 'Cancel', onclick: () => { formBox.replaceChildren(); history.replaceState(null, '', '/definitions'); } })));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const parameters = {};
      for (const tr of rows.children) {
        const [k, v] = tr.querySelectorAll('input');
        if (k.value.trim()) parameters[k.value.trim()] = v.value;
      }
      const body = { Name: nameSel.value, Description: desc.value || null };
      if (Object.keys(parameters).length) body.ParameterObject = parameters;
      try {
        const { data: newId } = await api('POST', '/api/v1/BatchTask', body);
        await go('/tasks/' + newId);
        status('Task #' + newId + ' started.', 'ok');
      } catch (err) {
        if (err.status !== 401) error.textContent = err.message;
      }
    });
    formBox.replaceChildren(form);
    nameSel.focus();
  }

  // Admins pause a definition on every node (its tasks wait, its schedule creates none) and resume it.
  function pauseButton(d) {
    const action = d.Paused ? 'Resume' : 'Pause';
    return h('button', {
      type: 'button', class: 'plain', 'data-action': action.toLowerCase(), text: action, 'aria-label': action + ' ' + d.Name,
      onclick: async () => {
        try {
          await api('POST', '/api/v1/Definitions/' + encodeURIComponent(d.Name) + '/' + action);
          status(d.Name + (d.Paused ? ' resumed.' : ' paused: its tasks wait until it is resumed.'), 'ok');
          await view.refresh();
        } catch (e) {
          if (e.status !== 401) status(e.message, 'error');
        }
      },
    });
  }

  const view = {
    async refresh() {
      const { data } = await api('GET', '/api/v1/Definitions');
      defs = data || [];
      const count = (d, k) => (d.Counts && d.Counts[k] !== undefined && d.Counts[k] !== null ? String(d.Counts[k]) : '–');
      tbody.replaceChildren(...defs.map((d) => h('tr', { 'data-definition': d.Name },
        h('th', { scope: 'row', 'data-label': 'Name' }, h('a', { href: '/tasks?name=' + encodeURIComponent(d.Name), text: d.Name }),
          d.Paused ? h('span', { class: 'state state-Failed', text: 'paused' }) : null,
          d.Description ? h('div', { class: 'muted', text: d.Description }) : null),
        h('td', { 'data-label': 'Runner', text: d.Runner }),
        h('td', { 'data-label': 'Limits', text: 'timeout ' + (d.TimeOut ? d.TimeOut + ' s' : '–') + ', concurrency ' + dash(d.Concurrency) + ', ' + d.CancellationBehaviour }),
        h('td', { 'data-label': 'Schedule' }, d.Schedule ? String(d.Schedule) : d.StartInterval ? 'every ' + d.StartInterval + ' s' : '–',
          d.NextRun ? h('div', { class: 'muted' }, 'next ', timeEl(d.NextRun)) : null),
        h('td', { 'data-label': 'Retries', text: dash(d.Restarts) }),
        h('td', { 'data-label': 'New', class: 'num', text: count(d, 'New') }),
        h('td', { 'data-label': 'Running', class: 'num', text: count(d, 'Running') }),
        h('td', { 'data-label': 'Failed', class: 'num', text: count(d, 'Failed') }),
        h('td', {}, canWrite ? h('button', { type: 'button', 'data-action': 'start', text: 'Start', 'aria-label': 'Start a ' + d.Name + ' task', onclick: () => startForm(d.Name) }) : null,
          canPause ? pauseButton(d) : null))));
      const q = new URLSearchParams(location.search);
      if (canWrite && q.has('start') && !formBox.firstChild) startForm(q.get('start'));
    },
    // The counts (when the server gives them) change with the tasks: read them again.
    apply: () => false,
  };
  return view;
}

// ---------------------------------------------------------------------------------------------
// Nodes (admins)

function nodesView(root) {
  document.title = 'Nodes · batchd';
  const tbody = h('tbody');
  root.append(h('h1', { text: 'Nodes' }), h('div', { class: 'scroll' }, h('table', { class: 'nodes' },
    h('thead', {}, h('tr', {}, ['Name', 'Alive', 'Version', 'Address', 'Started', 'Last seen', 'Running', 'Runner'].map((t) => h('th', { scope: 'col', text: t })))),
    tbody)));
  // Nodes change without task events: read them again every few seconds.
  const timer = setInterval(() => { if (!document.hidden) view.refresh().catch(() => {}); }, 5000);
  const view = {
    stop: () => clearInterval(timer),
    async refresh() {
      const { data } = await api('GET', '/api/v1/Nodes');
      tbody.replaceChildren(...(data || []).map((n) => h('tr', { 'data-node': n.Name },
        h('th', { scope: 'row', 'data-label': 'Name', text: n.Name }),
        h('td', { 'data-label': 'Alive' }, h('span', { class: 'state ' + (n.Alive ? 'state-Succeeded' : 'state-Failed'), text: n.Alive ? 'alive' : 'gone' })),
        h('td', { 'data-label': 'Version', text: n.Version }),
        h('td', { 'data-label': 'Address', text: n.Address }),
        h('td', { 'data-label': 'Started' }, timeEl(n.Started)),
        h('td', { 'data-label': 'Last seen' }, timeEl(n.LastSeen)),
        h('td', { 'data-label': 'Running', class: 'num', text: n.Running }),
        h('td', { 'data-label': 'Runner', text: n.RunnerEnabled ? 'on' : 'off' }))));
    },
    apply: () => true,
  };
  return view;
}

boot();
