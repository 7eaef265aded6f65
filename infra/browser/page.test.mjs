// The Active sessions page in a real browser: Debian's Chromium driven by playwright-core, against
// the local stack infra/test.sh starts (E2E_BASE_URL: the local API Gateway, which also serves the
// pages and, locally only, the sign-in link). Run by infra/test.sh: node --test infra/browser/.
//
// Each test signs in users of its own through the internal API, signs the browser in with the
// local sign-in link (which sets the __Host- cookie), and checks the page and the API's state.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';

const require = createRequire(process.env.BROWSER_NODE_MODULES + '/');
const { chromium } = require('playwright-core');
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const BASE = process.env.E2E_BASE_URL;
const SHOTS = process.env.SCREENSHOT_DIR;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
assert.ok(BASE, 'E2E_BASE_URL: run infra/test.sh');

const UA = {
  mac: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  iphone: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
  windows: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0',
  cli: 'codex-cli/0.42.0 (Linux; x86_64)',
};

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-features=Translate,OptimizationHints,MediaRouter'],
  });
});
after(async () => { await browser?.close(); });

const unique = (tag) => `web-${tag}-${randomUUID().slice(0, 8)}`;

async function call(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body) headers['content-type'] = 'application/json';
  const res = await fetch(BASE + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const PLACES = [{ city: 'San Francisco', region: 'California', country: 'US' }, { city: 'Dublin', country: 'IE' }, { city: 'Tokyo', country: 'JP' }];
let placed = 0;

async function signIn(user, { client = 'browser', ua = UA.mac, apps = ['chatgpt'], ip = '198.51.100.10' } = {}) {
  const location = PLACES[placed++ % PLACES.length];
  const { status, body } = await call('POST', '/v1/internal/sessions', {
    body: { user_id: user, apps, client, user_agent: ua, ip, location },
  });
  assert.equal(status, 201, JSON.stringify(body));
  return { id: body.session_id, token: body.token };
}

async function putUser(user, profile) {
  const { status } = await call('PUT', `/v1/internal/users/${user}`, { body: profile });
  assert.ok(status === 200 || status === 201 || status === 204, `put-user ${status}`);
}

/** A browser page signed in with `token` (the local sign-in link sets the cookie). */
async function open(token, { path = '/settings/security/sessions', width = 1280, height = 900, dark = false } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, colorScheme: dark ? 'dark' : 'light' });
  const page = await context.newPage();
  const offsite = [];
  page.on('request', (r) => { if (!r.url().startsWith(BASE)) offsite.push(r.url()); });
  await page.goto(`${BASE}/local/sign-in?token=${encodeURIComponent(token)}&next=${encodeURIComponent(path)}`);
  await page.waitForSelector('#app:not([aria-busy])');
  page.offsite = offsite;
  return { context, page };
}

async function axe(page, label) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(' ')})`), [], `axe on ${label}`);
}

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

const rows = (page) => page.locator('li.session[data-session-id]');

test('the list: current row first and labelled, apps by name, trusted badge, no log-out on the current row', async () => {
  const user = unique('list');
  const phone = await signIn(user, { client: 'mobile_app', ua: UA.iphone, apps: ['chatgpt', 'codex'] });
  const pc = await signIn(user, { ua: UA.windows, apps: ['api-console'] });
  const me = await signIn(user, { ua: UA.mac, apps: ['chatgpt'] });
  await call('PATCH', `/v1/sessions/${pc.id}`, { token: me.token, body: { trusted: true } });
  const { context, page } = await open(me.token);
  const first = rows(page).first();
  assert.equal(await first.getAttribute('data-session-id'), me.id);
  assert.match(await first.innerText(), /current session/i);
  assert.match(await first.innerText(), /Chrome on macOS/);
  assert.equal(await first.locator('button.danger').count(), 0, 'no log-out on the current row');
  assert.match(await first.locator('.hint').innerText(), /sign out|Log out of all sessions/);
  const phoneRow = page.locator(`li[data-session-id="${phone.id}"]`);
  assert.match(await phoneRow.locator('.apps').innerText(), /ChatGPT, Codex/);
  const pcRow = page.locator(`li[data-session-id="${pc.id}"]`);
  assert.match(await pcRow.locator('.apps').innerText(), /API Platform/);
  assert.match(await pcRow.innerText(), /trusted/i);
  assert.equal(await rows(page).count(), 3);
  assert.ok(await page.locator('time[datetime][title]').count() >= 6, 'relative times with the exact time');
  assert.deepEqual(page.offsite, [], 'no request leaves the origin');
  await axe(page, 'the list');
  await context.close();
});

test('log out one: confirm, the row goes, its receipt shows, the token is 401 at the API', async () => {
  const user = unique('one');
  const other = await signIn(user, { client: 'mobile_app', ua: UA.iphone, apps: ['chatgpt', 'codex'] });
  const me = await signIn(user);
  const { context, page } = await open(me.token);
  await page.locator(`li[data-session-id="${other.id}"] button.danger`).click();
  await page.waitForSelector('dialog[open]');
  await axe(page, 'a dialog open');
  await shot(page, 'dialog-desktop-light');
  await page.locator('#confirm-ok').click();
  await page.waitForSelector(`li[data-session-id="${other.id}"]`, { state: 'detached' });
  const receipt = page.locator(`li[data-receipt-for="${other.id}"] .receipt`);
  assert.match(await receipt.innerText(), /ChatGPT, Codex/);
  await page.waitForSelector(`li[data-receipt-for="${other.id}"] .receipt.done`, { timeout: 20000 });
  assert.match(await receipt.innerText(), /✓ signed out everywhere \(\d+\.\d s\); access cut off before the log-out finished/);
  // The activity list shows the log-out, with its receipt summary, once the receipt completes.
  await page.waitForFunction(() => /signed out/i.test(document.querySelector('#activity')?.innerText ?? ''));
  assert.match(await page.locator('#activity').innerText(), /product sign-ins? ended|signed out so far/);
  await shot(page, 'receipt-desktop-light');
  assert.equal((await call('GET', '/v1/sessions', { token: other.token })).status, 401);
  await context.close();
});

test('keyboard only: log out one, and focus returns sensibly after the dialog', async () => {
  const user = unique('keys');
  const other = await signIn(user, { client: 'desktop_app', ua: UA.windows });
  const me = await signIn(user);
  const { context, page } = await open(me.token);
  const target = `li[data-session-id="${other.id}"] button.danger`;
  let found = false;
  for (let i = 0; i < 40 && !found; i++) {
    await page.keyboard.press('Tab');
    found = await page.evaluate((sel) => document.activeElement === document.querySelector(sel), target);
  }
  assert.ok(found, 'the Log out button is reachable with Tab');
  // Escape cancels and gives focus back to the button that opened the dialog.
  await page.keyboard.press('Enter');
  await page.waitForSelector('dialog[open]');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.querySelector('#confirm').open);
  assert.ok(await page.evaluate((sel) => document.activeElement === document.querySelector(sel), target));
  // Confirm with the keyboard: Tab from Cancel to Log out, Enter.
  await page.keyboard.press('Enter');
  await page.waitForSelector('dialog[open]');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'confirm-ok');
  await page.keyboard.press('Enter');
  await page.waitForSelector(`li[data-session-id="${other.id}"]`, { state: 'detached' });
  assert.equal(await page.evaluate(() => document.activeElement.id), 'sessions-heading', 'focus goes to the list, not the body');
  assert.equal((await call('GET', '/v1/sessions', { token: other.token })).status, 401);
  await context.close();
});

test('log out all other sessions, then untrust this device', async () => {
  const user = unique('others');
  const a = await signIn(user, { client: 'mobile_app', ua: UA.iphone });
  const b = await signIn(user, { ua: UA.windows });
  const me = await signIn(user);
  await call('PATCH', `/v1/sessions/${me.id}`, { token: me.token, body: { trusted: true } });
  const { context, page } = await open(me.token);
  await page.locator('#logout-others').click();
  await page.locator('#confirm-ok').click();
  await page.waitForFunction(() => document.querySelectorAll('li.session[data-session-id]').length === 1);
  for (const s of [a, b]) assert.equal((await call('GET', '/v1/sessions', { token: s.token })).status, 401);
  assert.equal((await call('GET', '/v1/sessions', { token: me.token })).status, 200);
  const mine = page.locator(`li[data-session-id="${me.id}"]`);
  assert.match(await mine.innerText(), /trusted/i);
  await mine.getByRole('button', { name: 'Untrust' }).click();
  await page.waitForFunction((id) => !document.querySelector(`li[data-session-id="${id}"]`).innerText.includes('TRUSTED')
    && !document.querySelector(`li[data-session-id="${id}"] .badge.trusted`), me.id);
  const listed = (await call('GET', '/v1/sessions', { token: me.token })).body.sessions;
  assert.equal(listed[0].trusted, false);
  await context.close();
});

test('log out of all sessions: the confirmation says this device too, then the signed-out state', async () => {
  const user = unique('all');
  const other = await signIn(user, { client: 'mobile_app', ua: UA.iphone });
  const me = await signIn(user);
  const { context, page } = await open(me.token);
  await page.locator('#logout-all').click();
  assert.match(await page.locator('#confirm-body').innerText(), /this device is signed out too/);
  await page.locator('#confirm-ok').click();
  await page.getByText(/signed out everywhere/).waitFor();
  for (const s of [me, other]) assert.equal((await call('GET', '/v1/sessions', { token: s.token })).status, 401);
  await page.reload();
  await page.getByText(/been signed out/).waitFor();
  await axe(page, 'an error state (signed out)');
  await shot(page, 'signed-out-desktop-light');
  await context.close();
});

test('show CLI sessions and show more follow include_cli and next_cursor', async () => {
  const user = unique('page');
  for (let i = 0; i < 22; i++) await signIn(user, { ua: UA.windows });
  const cli = await signIn(user, { client: 'cli', ua: UA.cli, apps: ['codex'] });
  const me = await signIn(user);
  const { context, page } = await open(me.token);
  assert.equal(await page.locator(`li[data-session-id="${cli.id}"]`).count(), 0, 'CLI hidden by default');
  const before = await rows(page).count();
  assert.ok(before <= 20, `a page: ${before}`);
  await page.locator('#show-more').click();
  await page.waitForFunction((n) => document.querySelectorAll('li.session[data-session-id]').length > n, before);
  await page.locator('#include-cli').check();
  await page.waitForSelector(`li[data-session-id="${cli.id}"]`, { timeout: 10000 }).catch(async () => {
    // The CLI session is the second newest: it is on the first page once CLI sessions show.
    throw new Error('the CLI session did not appear');
  });
  assert.match(await page.locator(`li[data-session-id="${cli.id}"]`).innerText(), /Codex/);
  await context.close();
});

test('an SSO-linked account is told its organisation manages its sessions', async () => {
  const ws = unique('ws');
  const user = unique('sso');
  await putUser(user, { workspace_id: ws, role: 'member', sso_linked: true });
  const me = await signIn(user);
  const { context, page } = await open(me.token);
  const notice = page.locator('.notice');
  assert.match(await notice.innerText(), /organisation manages your sessions/);
  assert.match(await notice.innerText(), new RegExp(ws));
  await context.close();
});

test('errors: a 503 and a network failure each get a message and a way forward', async () => {
  const user = unique('err');
  const me = await signIn(user);
  const { context, page } = await open(me.token);
  await page.route('**/v1/sessions?*', (r) => r.fulfill({ status: 503, contentType: 'application/problem+json', body: '{"type":"urn:active-sessions:problem:unavailable","title":"x","status":503,"detail":"busy"}' }));
  await page.reload();
  await page.getByText('Sessions are temporarily unavailable').waitFor();
  await axe(page, 'an error state (503)');
  await page.unroute('**/v1/sessions?*');
  await page.route('**/v1/sessions?*', (r) => r.abort('internetdisconnected'));
  await page.getByRole('button', { name: 'Try again' }).click();
  await page.getByText(/reach Active sessions/).waitFor();
  await page.unroute('**/v1/sessions?*');
  await page.getByRole('button', { name: 'Try again' }).click();
  await page.waitForSelector(`li[data-session-id="${me.id}"]`);
  assert.ok(!(await page.content()).includes('"type":'), 'never a raw JSON body');
  await context.close();
});

test('the admin: the member list, a member\'s sessions, revoke one, offboard with a reason', async () => {
  const ws = unique('acme');
  const adminUser = unique('admin');
  const member = unique('member');
  await putUser(adminUser, { workspace_id: ws, role: 'admin', sso_linked: false });
  await putUser(member, { workspace_id: ws, role: 'member', sso_linked: true });
  const m1 = await signIn(member, { client: 'mobile_app', ua: UA.iphone, apps: ['chatgpt', 'codex'] });
  const m2 = await signIn(member, { ua: UA.windows });
  const m3 = await signIn(member, { ua: UA.mac });
  const admin = await signIn(adminUser);
  const { context, page } = await open(admin.token, { path: '/admin/members' });
  const row = page.locator(`tr[data-user-id="${member}"]`);
  assert.match(await row.innerText(), /Member/);
  assert.match(await row.innerText(), /SSO/);
  await axe(page, 'the admin view');
  await row.getByRole('button').click();
  await page.waitForSelector(`li[data-session-id="${m1.id}"]`);
  await shot(page, 'admin-desktop-light');
  await page.locator(`li[data-session-id="${m1.id}"] button.danger`).click();
  await page.locator('#confirm-ok').click();
  await page.waitForSelector(`li[data-session-id="${m1.id}"]`, { state: 'detached' });
  assert.equal((await call('GET', '/v1/sessions', { token: m1.token })).status, 401);
  await page.locator('#offboard').click();
  await page.locator('#confirm-reason').fill('left the company');
  await page.locator('#confirm-ok').click();
  await page.getByText('No active sessions.').waitFor();
  for (const s of [m2, m3]) assert.equal((await call('GET', '/v1/sessions', { token: s.token })).status, 401);
  const events = (await call('GET', `/v1/admin/users/${member}/events`, { token: admin.token })).body.events;
  assert.equal(events[0].note, 'left the company');
  await context.close();
});

test('the admin reads, in words, that the identity provider signed a member out', async () => {
  const IDP = process.env.E2E_IDP_URL;
  assert.ok(IDP, 'E2E_IDP_URL: run infra/test.sh');
  const ws = unique('idp');
  const adminUser = unique('admin');
  const member = unique('member');
  const gtr = `${BASE}/v1/workspaces/${ws}/global-token-revocation`;
  const provider = { issuer: IDP, jwks_url: `${IDP}/jwks.json`, audience: gtr, subject_format: 'email' };
  assert.equal((await call('PUT', `/v1/internal/workspaces/${ws}/identity-provider`, { body: provider })).status, 200);
  await putUser(adminUser, { workspace_id: ws, role: 'admin' });
  await putUser(member, { workspace_id: ws, sso_linked: true, email: `${member}@example.org` });
  const m1 = await signIn(member, { ua: UA.windows });
  await signIn(member, { client: 'mobile_app', ua: UA.iphone });
  const admin = await signIn(adminUser);
  const jwt = await (await fetch(`${IDP}/sign/gtr?audience=${encodeURIComponent(gtr)}`)).text();
  const res = await fetch(gtr, {
    method: 'POST',
    headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
    body: JSON.stringify({ sub_id: { format: 'email', email: `${member}@example.org` } }),
  });
  assert.equal(res.status, 204);
  assert.equal((await call('GET', '/v1/sessions', { token: m1.token })).status, 401);
  const { context, page } = await open(admin.token, { path: '/admin/members' });
  await page.locator(`tr[data-user-id="${member}"]`).getByRole('button').click();
  await page.getByText('No active sessions.').waitFor();
  const activity = await page.locator('#activity').innerText();
  assert.match(activity, /All sessions \(2\) signed out by your organisation's identity provider/);
  await shot(page, 'admin-idp-desktop-light');
  await context.close();
});

test('a cross-site page on another loopback port cannot revoke with the user\'s cookie', async () => {
  const user = unique('csrf');
  const victim = await signIn(user, { client: 'mobile_app', ua: UA.iphone });
  const me = await signIn(user);
  const evil = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<!doctype html><title>win a prize</title><script>
      const out = [];
      for (const method of ['DELETE', 'POST']) {
        fetch(${JSON.stringify(BASE)} + '/v1/sessions/${victim.id}', { method, credentials: 'include', mode: method === 'POST' ? 'no-cors' : 'cors' })
          .then((r) => out.push(method + ' ' + r.status), (e) => out.push(method + ' blocked'))
          .finally(() => { if (out.length === 2) document.title = out.join(','); });
      }</script>`);
  });
  await new Promise((ok) => evil.listen(0, '127.0.0.1', ok));
  const { context, page } = await open(me.token);
  const attack = await context.newPage();
  await attack.goto(`http://127.0.0.1:${evil.address().port}/`);
  await attack.waitForFunction(() => document.title.includes(','));
  assert.equal((await call('GET', '/v1/sessions', { token: victim.token })).status, 200, 'the victim session survived');
  // The same request with the cookie, as a browser sends it cross-site, is refused by the API.
  const cookie = (await context.cookies(BASE)).find((c) => c.name === '__Host-as_session');
  assert.ok(cookie && cookie.httpOnly && cookie.secure && cookie.sameSite === 'Strict' && cookie.path === '/', JSON.stringify(cookie));
  const forged = await fetch(`${BASE}/v1/sessions/${victim.id}`, { method: 'DELETE', headers: { cookie: `${cookie.name}=${cookie.value}`, 'sec-fetch-site': 'same-site', origin: `http://127.0.0.1:${evil.address().port}` } });
  assert.equal(forged.status, 403);
  assert.equal(forged.headers.get('content-type'), 'application/problem+json');
  assert.equal((await call('GET', '/v1/sessions', { token: victim.token })).status, 200);
  evil.close();
  await context.close();
});

test('weight, headers, and screenshots at desktop and 375 px, light and dark', async () => {
  const user = unique('shots');
  await signIn(user, { client: 'mobile_app', ua: UA.iphone, apps: ['chatgpt', 'codex'] });
  await signIn(user, { client: 'desktop_app', ua: UA.windows, apps: ['codex'] });
  await signIn(user, { ua: UA.windows, apps: ['api-console'] });
  const me = await signIn(user, { ua: UA.mac, apps: ['chatgpt'] });
  for (const [width, height, name] of [[1280, 900, 'desktop'], [375, 812, 'mobile']]) {
    for (const dark of [false, true]) {
      const { context, page } = await open(me.token, { width, height, dark });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `no horizontal scroll at ${width}px: ${overflow}`);
      await shot(page, `sessions-${name}-${dark ? 'dark' : 'light'}`);
      await context.close();
    }
  }
  // The page's weight: everything it loads from its own origin, as sent over the wire.
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${BASE}/local/sign-in?token=${encodeURIComponent(me.token)}`);
  await page.waitForSelector('#app:not([aria-busy])');
  const bytes = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource').filter((r) => r.initiatorType !== 'fetch' && r.initiatorType !== 'xmlhttprequest');
    return [nav, ...res].reduce((n, e) => n + e.transferSize, 0);
  });
  console.log(`page weight: ${bytes} bytes (HTML, CSS and JS over the wire)`);
  assert.ok(bytes > 0 && bytes <= 60 * 1024, `at most 60 KB: ${bytes}`);
  const res = await fetch(`${BASE}/settings/security/sessions`);
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  await context.close();
});
