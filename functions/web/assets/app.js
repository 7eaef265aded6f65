// Active sessions: Settings → Security → Active sessions, and the workspace admin's member view.
// Plain ES module, no build step. The session token is an HttpOnly cookie this script never sees;
// every call is same-origin, so the browser sends it and the API checks Sec-Fetch-Site.

const APP_NAMES = { chatgpt: 'ChatGPT', codex: 'Codex', 'api-console': 'API Platform' };
const appName = (id) => APP_NAMES[id] ?? id;
const CLIENT_LABEL = { browser: 'Browser', desktop_app: 'Desktop app', mobile_app: 'Mobile app', cli: 'Command line' };

const $ = (sel) => document.querySelector(sel);
const app = () => $('#app');

/** An element: el('p', {class: 'x', text: 'y'}, child, ...). Text only, never HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

class ApiError extends Error {
  constructor(kind, status, problem) {
    super(problem?.detail ?? kind);
    Object.assign(this, { kind, status, problem });
  }
}

/** A same-origin API call: JSON in, JSON (or nothing) out; failures as ApiError by kind. */
async function api(path, { method = 'GET', body } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body ? { 'content-type': 'application/json', accept: 'application/json' } : { accept: 'application/json' },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new ApiError('network', 0, null);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (res.ok) return data;
  const type = data?.type ?? '';
  const kind = res.status === 401 ? 'signed-out'
    : res.status === 403 && type.endsWith('sso-managed') ? 'sso'
    : res.status === 503 || res.status === 502 || res.status === 504 ? 'unavailable'
    : 'failed';
  throw new ApiError(kind, res.status, data);
}

// ---------------------------------------------------------------- time

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
function relative(iso) {
  const secs = (Date.parse(iso) - Date.now()) / 1000;
  const steps = [[60, 'second'], [3600, 'minute'], [86400, 'hour'], [86400 * 30, 'day'], [86400 * 365, 'month']];
  for (const [limit, unit] of steps) {
    if (Math.abs(secs) < limit) {
      const div = { second: 1, minute: 60, hour: 3600, day: 86400, month: 86400 * 30 }[unit];
      return rtf.format(Math.round(secs / div), unit);
    }
  }
  return rtf.format(Math.round(secs / (86400 * 365)), 'year');
}
const exact = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeEl = (iso) => el('time', { datetime: iso, title: exact(iso), text: relative(iso) });

// ---------------------------------------------------------------- status, dialog, errors

function announce(message) {
  $('#status').textContent = message;
}

/** How many times the dialog has opened: a `close` event is queued, so one from an earlier
 * opening can arrive after the dialog has opened again (a fast keyboard), and must not answer it. */
let openings = 0;

/** Asks before acting. Resolves to the reason typed (or '') when confirmed, null when not. */
function confirmDialog({ title, body, ok, reason = false }) {
  const dialog = $('#confirm');
  const opener = document.activeElement;
  $('#confirm-title').textContent = title;
  $('#confirm-body').textContent = body;
  $('#confirm-ok').textContent = ok;
  $('#confirm-reason-row').hidden = !reason;
  $('#confirm-reason').value = '';
  dialog.returnValue = 'cancel';
  const mine = ++openings;
  return new Promise((resolve) => {
    const onClose = () => {
      // An earlier opening's close, arriving while this one still shows: not ours to answer.
      if (mine === openings && dialog.open) return;
      dialog.removeEventListener('close', onClose);
      if (mine !== openings) { resolve(null); return; }
      if (opener && opener.isConnected) opener.focus();
      resolve(dialog.returnValue === 'ok' ? $('#confirm-reason').value.trim() : null);
    };
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    (reason ? $('#confirm-reason') : dialog.querySelector('button.secondary')).focus();
  });
}

/** Replaces the page with a clear message and a way forward. */
function showError(err, retry) {
  const box = el('section', { class: 'notice', role: 'alert', 'aria-labelledby': 'notice-title' });
  const action = (label, fn) => el('button', { type: 'button', text: label, on: { click: fn } });
  if (err.kind === 'signed-out') {
    box.append(el('h2', { id: 'notice-title', text: "You've been signed out" }),
      el('p', { text: 'This browser no longer has a valid session (it was logged out, or it expired). Sign in again to manage your sessions.' }),
      el('a', { class: 'button', href: '/', text: 'Sign in again' }));
  } else if (err.kind === 'sso') {
    const ws = err.problem?.workspace;
    box.append(el('h2', { id: 'notice-title', text: 'Your organisation manages your sessions' }),
      el('p', { text: `This account signs in through single sign-on, so the administrators of ${ws ? `workspace “${ws}”` : 'your workspace'} manage where it is signed in. Ask them to sign you out of a device you don't recognise.` }));
  } else if (err.kind === 'network') {
    box.append(el('h2', { id: 'notice-title', text: "Can't reach Active sessions" }),
      el('p', { text: 'Check your connection, then try again. Nothing was changed.' }), action('Try again', retry));
  } else if (err.kind === 'unavailable') {
    box.append(el('h2', { id: 'notice-title', text: 'Sessions are temporarily unavailable' }),
      el('p', { text: 'The service is busy. Nothing was changed. Try again in a moment.' }), action('Try again', retry));
  } else {
    box.append(el('h2', { id: 'notice-title', text: 'Something went wrong' }),
      el('p', { text: err.problem?.detail ?? 'The request failed. Nothing was changed.' }), action('Try again', retry));
  }
  app().replaceChildren(box);
  app().removeAttribute('aria-busy');
  box.querySelector('button, a')?.focus();
}

/** Shows an action's failure without losing the page (a signed-out answer replaces it). */
function actionFailed(err, retry) {
  if (err.kind === 'signed-out' || err.kind === 'sso') return showError(err, retry);
  const what = err.kind === 'network' ? "Can't reach the server" : err.kind === 'unavailable' ? 'The service is busy' : err.message;
  announce(`${what}. Nothing was changed; try again.`);
}

// ---------------------------------------------------------------- a session row

// Outline icons (24×24 paths), drawn with the DOM: no font or image request.
const ICONS = {
  desktop: 'M3 4h18v12H3z M8 20h8 M12 16v4',
  mobile: 'M7 2h10v20H7z M11 18h2',
  cli: 'M3 4h18v16H3z M7 9l3 3-3 3 M12 15h5',
};
function deviceIcon(s) {
  const kind = s.client === 'cli' ? 'cli' : s.device?.type === 'mobile' ? 'mobile' : 'desktop';
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  for (const [k, v] of Object.entries({ viewBox: '0 0 24 24', width: '20', height: '20', class: 'icon', 'aria-hidden': 'true', focusable: 'false' })) svg.setAttribute(k, v);
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[kind]);
  svg.append(path);
  return svg;
}

function place(loc) {
  if (!loc) return 'Location unknown';
  return [loc.city, loc.region, loc.country].filter(Boolean).join(', ') || 'Location unknown';
}

/** One session as a list item. `actions(s)` gives its buttons; `current` rows get guidance instead. */
function sessionRow(s, actions) {
  const apps = s.apps?.length ? s.apps.map(appName).join(', ') : CLIENT_LABEL[s.client] ?? s.client;
  const title = el('h3', { class: 'device', id: `s-${s.id}` }, deviceIcon(s), ' ', s.device?.label || 'Unknown device');
  const badges = el('span', { class: 'badges' },
    s.current ? el('span', { class: 'badge current', text: 'Current session' }) : null,
    s.trusted ? el('span', { class: 'badge trusted', text: 'Trusted' }) : null);
  const facts = el('dl', { class: 'facts' },
    el('div', {}, el('dt', { text: 'Apps' }), el('dd', { class: 'apps', text: apps })),
    el('div', {}, el('dt', { text: 'Location' }), el('dd', { text: place(s.location) })),
    el('div', {}, el('dt', { text: 'Signed in' }), el('dd', {}, timeEl(s.signed_in_at))),
    el('div', {}, el('dt', { text: 'Last active' }), el('dd', {}, timeEl(s.last_active_at))));
  const li = el('li', { class: 'session', dataset: { sessionId: s.id }, 'aria-labelledby': `s-${s.id}` },
    el('div', { class: 'head' }, title, badges), facts);
  if (s.current) {
    li.append(el('p', { class: 'hint', text: "This is the device you're using now. To end it, sign out, or use “Log out of all sessions” below." }));
  }
  const buttons = actions(s);
  if (buttons.length) li.append(el('div', { class: 'row-actions' }, buttons));
  return li;
}

// ---------------------------------------------------------------- receipts

/** After a log-out: "Signing out of ChatGPT, Codex…" until every product let go, then the time. */
async function showReceipt(li, session, receiptPath) {
  const names = session.apps?.length ? session.apps.map(appName).join(', ') : 'your apps';
  const line = el('p', { class: 'receipt', role: 'status', text: `Signing out of ${names}…` });
  const gone = el('li', { class: 'session gone', dataset: { receiptFor: session.id } },
    el('h3', { class: 'device' }, deviceIcon(session), ' ', session.device?.label || 'Unknown device'), line);
  li.replaceWith(gone);
  const started = Date.now();
  while (Date.now() - started < 30000) {
    let r;
    try { r = await api(receiptPath); } catch { break; }
    const failed = (r.products ?? []).filter((p) => p.status === 'failed');
    if (r.complete || failed.length) {
      const times = [r.caches_invalidated_at, ...(r.products ?? []).map((p) => p.delivered_at)].filter(Boolean).map(Date.parse);
      const secs = ((Math.max(...times) - Date.parse(r.revoked_at)) / 1000).toFixed(1);
      const cutOff = {
        write_through: 'access cut off before the log-out finished',
        stream: 'access cut off in the background',
        window: 'access cut off within a minute',
      }[r.caches_invalidated_by];
      line.textContent = failed.length
        ? `${names}: signed out here; ${failed.map((p) => appName(p.product)).join(', ')} did not confirm. Its sign-in ends with its own session.`
        : `Signing out of ${names}… ✓ signed out everywhere (${secs} s)${cutOff ? `; ${cutOff}` : ''}`;
      line.classList.add(failed.length ? 'warn' : 'done');
      return;
    }
    await new Promise((ok) => setTimeout(ok, 300));
  }
  line.textContent = `Signed out. ${names} will let go shortly.`;
}

function receiptSummary(r) {
  if (!r || !r.products) return null;
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const text = r.completed_at
    ? `✓ ${r.products === 1 ? 'the product sign-in' : `all ${plural(r.products, 'product sign-in')}`} ended`
    : r.failed ? `${r.failed} of ${r.products} products did not confirm`
    : `${r.delivered} of ${r.products} products signed out so far`;
  return el('span', { class: `summary ${r.completed_at ? 'done' : r.failed ? 'warn' : ''}`, text });
}

/** Re-reads the activity list in place (after a log-out, its receipt summary changes). */
async function refreshActivity(path) {
  const list = document.querySelector('#activity');
  if (!list) return;
  try { list.replaceChildren(eventsList((await api(path)).events)); } catch { /* the list stays as it was */ }
}

function eventsList(events) {
  if (!events.length) return el('p', { class: 'muted', text: 'No sign-outs yet.' });
  return el('ul', { class: 'events' }, events.map((e) => el('li', {},
    el('span', { class: 'what', text: e.summary }), ' ', timeEl(e.at), ' ', receiptSummary(e.receipts))));
}

// ---------------------------------------------------------------- the user's page

const state = { includeCli: false, cursor: null, sessions: [] };

async function loadSessions(append = false) {
  const q = new URLSearchParams({ limit: '20' });
  if (state.includeCli) q.set('include_cli', 'true');
  if (append && state.cursor) q.set('cursor', state.cursor);
  const page = await api(`/v1/sessions?${q}`);
  state.sessions = append ? state.sessions.concat(page.sessions) : page.sessions;
  state.cursor = page.next_cursor ?? null;
}

function userActions(s) {
  if (s.current) {
    return [trustButton(s, `/v1/sessions/${s.id}`, renderUser)];
  }
  const logout = logoutButton(s, {
    title: 'Log out this session?',
    body: `${s.device?.label || 'This device'} will be signed out of ${s.apps?.map(appName).join(', ') || 'every app'}.`,
    base: '/v1/sessions',
    events: '/v1/sessions/events?limit=10',
    done: `Logged out ${s.device?.label || 'the session'}.`,
    heading: '#sessions-heading',
    retry: renderUser,
    removed: () => { state.sessions = state.sessions.filter((x) => x.id !== s.id); },
  });
  return [logout, trustButton(s, `/v1/sessions/${s.id}`, renderUser)];
}

/** A row's Log out: confirmed, then the session revoked (`${base}/${id}`), the row turned into
 * its receipt, focus moved to the list's heading, and the activity list read again. */
function logoutButton(s, { title, body, base, events, done, heading, retry, removed = () => {} }) {
  const b = el('button', { type: 'button', class: 'danger', text: 'Log out', 'aria-describedby': `s-${s.id}` });
  b.addEventListener('click', async () => {
    if (await confirmDialog({ title, body, ok: 'Log out' }) === null) return;
    try { await api(`${base}/${s.id}`, { method: 'DELETE' }); } catch (err) { return actionFailed(err, retry); }
    removed();
    const li = document.querySelector(`li[data-session-id="${s.id}"]`);
    announce(done);
    $(heading)?.focus();
    if (li) await showReceipt(li, s, `${base}/${s.id}/revocation`);
    await refreshActivity(events);
  });
  return b;
}

function trustButton(s, path, rerender) {
  const b = el('button', { type: 'button', class: 'secondary', text: s.trusted ? 'Untrust' : 'Trust', 'aria-describedby': `s-${s.id}` });
  b.addEventListener('click', async () => {
    try {
      const updated = await api(path, { method: 'PATCH', body: { trusted: !s.trusted } });
      Object.assign(s, { trusted: updated?.trusted ?? !s.trusted });
    } catch (err) { return actionFailed(err, rerender); }
    announce(s.trusted ? 'Device trusted.' : 'Device no longer trusted.');
    await rerender(false, `li[data-session-id="${s.id}"] button.secondary`);
  });
  return b;
}

async function logoutAll(scope) {
  const all = scope === 'all';
  const ok = await confirmDialog(all
    ? { title: 'Log out of all sessions?', body: 'Every session ends, including this one: this device is signed out too, and you will need to sign in again.', ok: 'Log out of all sessions' }
    : { title: 'Log out of all other sessions?', body: 'Every session except this one ends. You stay signed in here.', ok: 'Log out of other sessions' });
  if (ok === null) return;
  let result;
  try {
    result = await api(all ? '/v1/sessions' : '/v1/sessions?scope=others', { method: 'DELETE' });
  } catch (err) { return actionFailed(err, renderUser); }
  if (all) {
    const box = el('section', { class: 'notice', role: 'alert', 'aria-labelledby': 'notice-title' },
      el('h2', { id: 'notice-title', text: "You're signed out everywhere" }),
      el('p', { text: `${result?.revoked ?? 0} sessions ended, this one included. Sign in again to use your account.` }),
      el('a', { class: 'button', href: '/', text: 'Sign in again' }));
    app().replaceChildren(box);
    box.querySelector('a').focus();
    return;
  }
  announce(`Logged out of ${result?.revoked ?? 0} other sessions.`);
  await renderUser(true);
}

async function renderUser(reload = true, focusSelector = null) {
  const root = app();
  root.setAttribute('aria-busy', 'true');
  let events;
  try {
    if (reload) await loadSessions(false);
    events = (await api('/v1/sessions/events?limit=10')).events;
  } catch (err) { return showError(err, () => renderUser(true)); }
  const cli = el('input', { type: 'checkbox', id: 'include-cli', checked: state.includeCli });
  cli.addEventListener('change', async () => { state.includeCli = cli.checked; await renderUser(true, '#include-cli'); });
  const list = el('ul', { class: 'sessions', 'aria-labelledby': 'sessions-heading' }, state.sessions.map((s) => sessionRow(s, userActions)));
  const more = state.cursor ? el('button', { type: 'button', class: 'secondary', id: 'show-more', text: 'Show more' }) : null;
  more?.addEventListener('click', async () => {
    try { await loadSessions(true); } catch (err) { return actionFailed(err, renderUser); }
    await renderUser(false, '#show-more');
  });
  const others = el('button', { type: 'button', id: 'logout-others', text: 'Log out of all other sessions', on: { click: () => logoutAll('others') } });
  const everything = el('button', { type: 'button', id: 'logout-all', class: 'danger', text: 'Log out of all sessions', on: { click: () => logoutAll('all') } });
  root.replaceChildren(
    el('section', { 'aria-labelledby': 'sessions-heading' },
      el('div', { class: 'section-head' },
        el('h2', { id: 'sessions-heading', tabindex: '-1', text: 'Where you’re signed in' }),
        el('label', { class: 'toggle', for: 'include-cli' }, cli, ' Show CLI sessions')),
      list, more,
      el('div', { class: 'bulk' }, others, everything)),
    el('section', { 'aria-labelledby': 'activity-heading' },
      el('h2', { id: 'activity-heading', text: 'Recent activity' }), el('div', { id: 'activity' }, eventsList(events))));
  root.removeAttribute('aria-busy');
  if (focusSelector) document.querySelector(focusSelector)?.focus();
}

// ---------------------------------------------------------------- the admin's view

const admin = { members: [], cursor: null, open: null };

async function loadMembers(append = false) {
  const q = new URLSearchParams({ limit: '20' });
  if (append && admin.cursor) q.set('cursor', admin.cursor);
  const page = await api(`/v1/admin/members?${q}`);
  admin.members = append ? admin.members.concat(page.members) : page.members;
  admin.cursor = page.next_cursor ?? null;
}

async function renderMember(member) {
  const base = `/v1/admin/users/${encodeURIComponent(member.user_id)}`;
  const panel = el('section', { class: 'member-panel', 'aria-labelledby': 'member-heading' });
  let sessions, events;
  try {
    sessions = (await api(`${base}/sessions?include_cli=true&limit=50`)).sessions;
    events = (await api(`${base}/events?limit=10`)).events;
  } catch (err) { return actionFailed(err, () => renderMember(member)); }
  const actions = (s) => [logoutButton(s, {
    title: `Log out this session of ${member.user_id}?`,
    body: `${s.device?.label || 'This device'} will be signed out.`,
    base: `${base}/sessions`,
    events: `${base}/events?limit=10`,
    done: `Logged out ${s.device?.label || 'the session'} of ${member.user_id}.`,
    heading: '#member-heading',
    retry: () => renderMember(member),
  })];
  const offboard = el('button', { type: 'button', class: 'danger', id: 'offboard', text: 'Sign out everywhere' });
  offboard.addEventListener('click', async () => {
    const reason = await confirmDialog({ title: `Sign ${member.user_id} out everywhere?`, body: 'Every session of this member ends on every device and app. Use this when someone leaves, or when an account may be compromised.', ok: 'Sign out everywhere', reason: true });
    if (reason === null) return;
    const q = reason ? `?reason=${encodeURIComponent(reason)}` : '';
    let result;
    try { result = await api(`${base}/sessions${q}`, { method: 'DELETE' }); } catch (err) { return actionFailed(err, () => renderMember(member)); }
    announce(`Signed ${member.user_id} out of ${result?.revoked ?? 0} sessions.`);
    await renderMember(member);
    $('#member-heading')?.focus();
  });
  panel.append(
    el('h2', { id: 'member-heading', tabindex: '-1', text: `Sessions of ${member.user_id}` }),
    sessions.length ? el('ul', { class: 'sessions' }, sessions.map((s) => sessionRow(s, actions))) : el('p', { class: 'muted', text: 'No active sessions.' }),
    el('div', { class: 'bulk' }, offboard),
    el('h3', { text: 'Recent activity' }), el('div', { id: 'activity' }, eventsList(events)));
  document.querySelector('.member-panel')?.remove();
  app().append(panel);
}

async function renderAdmin(reload = true) {
  const root = app();
  root.setAttribute('aria-busy', 'true');
  try { if (reload) await loadMembers(false); } catch (err) { return showError(err, () => renderAdmin(true)); }
  const rows = admin.members.map((m) => el('tr', { dataset: { userId: m.user_id } },
    el('th', { scope: 'row', text: m.user_id }),
    el('td', { text: m.role === 'admin' ? 'Admin' : 'Member' }),
    el('td', { text: m.sso_linked ? 'SSO' : 'Password' }),
    el('td', {}, el('button', { type: 'button', class: 'secondary', text: 'View sessions', 'aria-label': `View sessions of ${m.user_id}`, on: { click: () => renderMember(m).then(() => $('#member-heading')?.focus()) } }))));
  const more = admin.cursor ? el('button', { type: 'button', class: 'secondary', id: 'show-more', text: 'Show more' }) : null;
  more?.addEventListener('click', async () => {
    try { await loadMembers(true); } catch (err) { return actionFailed(err, renderAdmin); }
    await renderAdmin(false);
  });
  root.replaceChildren(el('section', { 'aria-labelledby': 'members-heading' },
    el('h2', { id: 'members-heading', text: 'People in your workspace' }),
    el('div', { class: 'table-wrap' }, el('table', { class: 'members' },
      el('thead', {}, el('tr', {}, ['Member', 'Role', 'Sign-in', 'Sessions'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows))), more));
  root.removeAttribute('aria-busy');
}

if (document.body.dataset.view === 'admin') renderAdmin(); else renderUser();
