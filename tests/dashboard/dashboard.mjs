// Drives the dashboard in Debian's chromium (playwright-core; no browser is ever downloaded)
// against a running batchd. Run by tests/api/dashboard.rs, which starts the server and passes:
// BATCHD_URL, BATCHD_ADMIN/_PASSWORD, BATCHD_USER/_PASSWORD, CHROMIUM, SCREENSHOTS.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const base = process.env.BATCHD_URL;
const origin = new URL(base).origin;
const admin = [process.env.BATCHD_ADMIN, process.env.BATCHD_ADMIN_PASSWORD];
const user = [process.env.BATCHD_USER, process.env.BATCHD_USER_PASSWORD];
const shots = process.env.SCREENSHOTS || 'screenshots';
mkdirSync(shots, { recursive: true });

/** The API as a script would use it (Basic credentials), outside the browser. */
async function api(who, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: {
      Authorization: 'Basic ' + Buffer.from(who.join(':')).toString('base64'),
      'Content-Type': 'application/json',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const step = (name) => console.log('step: ' + name);

const profile = mkdtempSync(join(tmpdir(), 'batchd-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
    '--no-first-run', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 860 },
});
const requests = [];
const problems = [];
// Method and path of each request, for the checks of which endpoints the page calls.
const calls = [];
context.on('request', (r) => { requests.push(r.url()); calls.push(r.method() + ' ' + new URL(r.url()).pathname); });
const page = context.pages()[0] || (await context.newPage());
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
page.on('console', (m) => {
  // Chrome reports every 4xx fetch as "Failed to load resource"; the page handles those.
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push('console: ' + m.text());
});
page.setDefaultTimeout(20000);

const row = (id) => page.locator(`[data-task-id="${id}"]`);
async function login([name, password]) {
  await page.locator('#login-view').waitFor({ state: 'visible' });
  await page.fill('input[name="UserName"]', name);
  await page.fill('input[name="Password"]', password);
  await page.click('#login-form button[type="submit"]');
  await page.locator('#top').waitFor({ state: 'visible' });
}

try {
  step('an unknown visitor gets the login form');
  await page.goto(base + '/');
  await page.locator('#login-view').waitFor({ state: 'visible' });
  await page.screenshot({ path: join(shots, 'login.png') });

  step('log in as the admin, with the keyboard only');
  assert.equal(await page.evaluate(() => document.activeElement.name), 'UserName', 'the form has the focus');
  await page.keyboard.type(admin[0]);
  await page.keyboard.press('Tab');
  await page.keyboard.type(admin[1]);
  await page.keyboard.press('Enter');
  await page.locator('#top').waitFor({ state: 'visible' });
  await page.locator('h1', { hasText: 'Tasks' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/');
  assert.ok(await page.locator('#nav-nodes').isVisible(), 'admins see the Nodes page');

  step('a task created through the API appears without a reload');
  const marker = await page.evaluate(() => (window.__noReload = Math.random()));
  const hostile = '<img src=x onerror="window.__owned=1">';
  const sleeper = await api(admin, 'POST', '/api/v1/BatchTask', { Name: 'Sleep', Description: hostile, ParameterObject: { Seconds: '6' } });
  await row(sleeper).waitFor();
  assert.equal(await page.evaluate(() => window.__noReload), marker, 'the page was not reloaded');
  assert.equal(await row(sleeper).locator('.description').textContent(), hostile, 'task text is shown as text');
  assert.equal(await row(sleeper).locator('img').count(), 0, 'task text never becomes markup');
  assert.equal(await page.evaluate(() => window.__owned), undefined);
  for (const cell of ['Sleep', 'admin']) assert.ok((await row(sleeper).textContent()).includes(cell), cell);

  step('the page follows the server\'s event stream, not polling');
  await page.waitForFunction(() => document.querySelector('#live')?.getAttribute('data-mode') === 'live', null, { timeout: 10000 });

  step("the Sleep task's progress bar moves");
  const seen = new Set();
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    seen.add(await row(sleeper).locator('progress').evaluate((p) => p.value));
    if ((await row(sleeper).getAttribute('data-state')) === 'Succeeded') break;
    await page.waitForTimeout(150);
  }
  const values = [...seen].filter((v) => v > 0 && v <= 100);
  assert.ok(values.length >= 2, 'progress took at least two values: ' + [...seen].join(', '));
  await page.locator(`[data-task-id="${sleeper}"][data-state="Succeeded"]`).waitFor();
  assert.ok((await row(sleeper).locator('.stage').textContent()).includes('slept'), 'the stage text is shown');
  await page.waitForFunction(() => Number(document.querySelector('.counts a[data-state="Succeeded"] .n').textContent) >= 1);

  step('filters live in the URL');
  await page.selectOption('#f-state', 'Succeeded');
  await page.waitForURL(/state=Succeeded/);
  await page.fill('#f-name', 'lee');
  await page.press('#f-name', 'Enter');
  await page.waitForURL(/name=lee/);
  await row(sleeper).waitFor();
  await page.goto(base + '/tasks?name=nothing-like-this');
  await page.locator('.empty').waitFor({ state: 'visible' });
  assert.equal(await row(sleeper).count(), 0, 'a shared URL filters the same way');
  await page.goto(base + '/');

  step('stop a running task from its page: the warning, then Failed');
  const careful = await api(admin, 'POST', '/api/v1/BatchTask', { Name: 'Careful', ParameterObject: { Seconds: '600' } });
  await row(careful).locator('a').click();
  await page.waitForURL(new RegExp(`/tasks/${careful}$`));
  await page.locator('[data-prop="State"]', { hasText: 'Started' }).waitFor();
  await page.locator('#stop').click();
  await page.locator('#confirm[open]').waitFor();
  assert.ok((await page.locator('#confirm-body').textContent()).includes('CancelWithWarning'), 'the confirmation warns');
  await page.locator('#confirm-ok').click();
  await page.locator('[data-prop="State"]', { hasText: 'Failed' }).waitFor();
  assert.ok((await page.locator('#status').textContent()).includes('CancelWithWarning'), "the server's warning is shown");
  await page.locator('.event', { hasText: 'Cancelled by admin' }).waitFor();
  assert.ok((await page.locator('.attempt h3').allTextContents()).includes('Attempt 1'), 'one timeline entry per attempt');
  assert.equal(await page.locator('#stop').count(), 0, 'no Stop button on a finished task');
  await page.screenshot({ path: join(shots, 'task.png'), fullPage: true });

  step('a failing command: Result, stderr tail and the timeline');
  const broken = await api(admin, 'POST', '/api/v1/BatchTask', { Name: 'Broken' });
  await page.goto(base + '/tasks/' + broken);
  await page.locator('[data-prop="State"]', { hasText: 'Failed' }).waitFor();
  await page.locator('[data-out="stderr"]', { hasText: 'disk on fire' }).waitFor();
  assert.ok((await page.locator('[data-out="Result"]').textContent()).includes('exit status 3'));
  assert.ok((await page.locator('.event').allTextContents()).some((t) => t.includes(' on ')), 'where it ran');

  step('retry a Failed task from its page: it runs again, attempt 2');
  assert.equal(await page.locator('#stop').count(), 0, 'no Stop on a Failed task');
  await page.locator('#retry').click();
  await page.locator('#status', { hasText: 'runs again' }).waitFor();
  await page.locator('.attempt h3', { hasText: 'Attempt 2' }).waitFor();
  await page.locator('[data-prop="State"]', { hasText: 'Failed' }).waitFor();
  assert.equal((await api(admin, 'GET', '/api/v1/BatchTask/' + broken)).StartCount, 2, 'run again by the server');
  await page.locator('#retry').waitFor();

  step('dependencies: the After and Before lists link both ways');
  const waiter = await api(admin, 'POST', '/api/v1/BatchTask', { Name: 'Noop', After: [broken] });
  await page.goto(base + '/tasks/' + broken);
  const link = page.locator(`[data-dep="before"][data-id="${waiter}"] a`);
  await link.waitFor();
  await link.click();
  await page.waitForURL(new RegExp(`/tasks/${waiter}$`));
  await page.locator(`[data-dep="after"][data-id="${broken}"]`, { hasText: 'Failed' }).waitFor();
  await page.locator('[data-out="Result"]', { hasText: `dependency ${broken} failed` }).waitFor();
  const runningTask = await api(admin, 'POST', '/api/v1/BatchTask', { Name: 'Sleep', ParameterObject: { Seconds: '600' } });
  await page.goto(base + '/tasks/' + runningTask);
  await page.locator('[data-prop="State"]', { hasText: 'Started' }).waitFor();
  await page.locator('#stop').waitFor();
  assert.equal(await page.locator('#retry').count(), 0, 'no Retry unless Failed');
  await api(admin, 'POST', `/api/v1/BatchTask/${runningTask}/Stop`);

  step('start a task from a definition, with parameters');
  await page.goto(base + '/definitions');
  await page.locator('tr[data-definition="Sleep"] button[data-action="start"]').click();
  assert.equal(await page.locator('.start input[name="key"]').first().inputValue(), 'Seconds', 'parameter keys prefilled');
  await page.locator('.start input[name="value"]').first().fill('1');
  await page.fill('#s-desc', 'from the page');
  await page.click('.start button[type="submit"]');
  await page.waitForURL(/\/tasks\/\d+$/);
  await page.locator('[data-prop="Description"]', { hasText: 'from the page' }).waitFor();
  await page.locator('.kv td', { hasText: '1' }).waitFor();
  await page.goto(base + '/definitions');
  await page.locator('tr[data-definition="Careful"]').waitFor();

  step('an admin pauses a definition on the definitions page, and resumes it');
  const pausedOf = async (name) => (await api(admin, 'GET', '/api/v1/Definitions')).find((d) => d.Name === name).Paused;
  const careful2 = page.locator('tr[data-definition="Careful"]');
  assert.equal(await careful2.locator('.state', { hasText: 'paused' }).count(), 0);
  await careful2.locator('button[data-action="pause"]').click();
  await careful2.locator('.state', { hasText: 'paused' }).waitFor();
  await careful2.locator('button[data-action="resume"]').waitFor();
  assert.equal(await pausedOf('Careful'), true, 'paused on the server');
  await page.screenshot({ path: join(shots, 'definitions.png'), fullPage: true });
  await careful2.locator('button[data-action="resume"]').click();
  await careful2.locator('button[data-action="pause"]').waitFor();
  assert.equal(await careful2.locator('.state', { hasText: 'paused' }).count(), 0, 'the Paused mark is gone');
  assert.equal(await pausedOf('Careful'), false, 'resumed on the server');
  await page.goto(base + '/nodes');
  await page.locator('.nodes tbody tr').first().waitFor();
  await page.screenshot({ path: join(shots, 'nodes.png'), fullPage: true });

  step('bulk stop, retry and delete of selected tasks');
  const bulkFrom = calls.length;
  const waiting = [];
  for (let i = 0; i < 3; i++) waiting.push(await api(admin, 'POST', '/api/v1/BatchTask', { Name: 'LaterByWorker' }));
  await page.goto(base + '/tasks?name=LaterByWorker');
  for (const id of waiting) await row(id).locator('input[type="checkbox"]').check();
  await page.click('button:has-text("Stop selected")');
  await page.locator('#confirm[open]').waitFor();
  await page.locator('#confirm-ok').click();
  for (const id of waiting) await page.locator(`[data-task-id="${id}"][data-state="Failed"]`).waitFor();
  assert.ok((await page.locator('#status').textContent()).includes('Stopped 3'));
  for (const id of waiting) await row(id).locator('input[type="checkbox"]').check();
  await page.click('button:has-text("Retry selected")');
  await page.locator('#confirm[open]').waitFor();
  await page.locator('#confirm-ok').click();
  for (const id of waiting) await page.locator(`[data-task-id="${id}"][data-state="New"]`).waitFor();
  assert.ok((await page.locator('#status').textContent()).includes('Retried 3'));
  for (const id of waiting) await row(id).locator('input[type="checkbox"]').check();
  await page.click('button:has-text("Delete selected")');
  await page.locator('#confirm[open]').waitFor();
  await page.locator('#confirm-ok').click();
  for (const id of waiting) await row(id).waitFor({ state: 'detached' });
  assert.ok((await page.locator('#status').textContent()).includes('Deleted 3'));
  // Each bulk action is one call of the Bulk endpoint, not one call per task.
  const bulkCalls = calls.slice(bulkFrom);
  assert.equal(bulkCalls.filter((c) => c === 'POST /api/v1/BatchTask/Bulk').length, 3, 'stop, retry and delete each made one Bulk call');
  assert.deepEqual(bulkCalls.filter((c) => /^(POST \/api\/v1\/BatchTask\/\d+\/(Stop|Retry)|DELETE \/api\/v1\/BatchTask\/\d+)$/.test(c)), [], 'no per-task Stop, Retry or Delete');

  step('definitions show the server\'s counts, or – without them');
  const defs = await api(admin, 'GET', '/api/v1/Definitions');
  const sleepDef = defs.find((d) => d.Name === 'Sleep');
  await page.goto(base + '/definitions');
  await page.locator('tr[data-definition="Sleep"]').waitFor();
  const cells = await page.locator('tr[data-definition="Sleep"] td.num').allTextContents();
  const want = ['New', 'Running', 'Failed'].map((k) => (sleepDef.Counts && sleepDef.Counts[k] != null ? String(sleepDef.Counts[k]) : '–'));
  assert.deepEqual(cells, want, 'counts of New, running and failed tasks');

  step('stream events change the list in place');
  // Three answers of a fake stream: a progress event (patched into the row), then, after a
  // reconnect, a state event for a task stopped meanwhile (the row changes, the list is re-read).
  const later = await api(admin, 'POST', '/api/v1/BatchTask', { Name: 'LaterByWorker' });
  let answers = 0;
  await page.route('**/api/v1/BatchTask/Events/stream*', async (route) => {
    answers += 1;
    const sse = (retry, events) => route.fulfill({
      status: 200,
      headers: { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' },
      body: `retry: ${retry}\n\n` + events.map(([id, type, data]) => `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`).join(''),
    });
    if (answers === 1) {
      await new Promise((r) => setTimeout(r, 1500)); // after the list has loaded
      return sse(2500, [['1-1', 'progress', { Id: sleeper, Name: 'Sleep', Changed: { ProgressPercent: 42, ProgressDescription: 'from the stream' } }]]);
    }
    if (answers === 2) {
      await api(admin, 'POST', `/api/v1/BatchTask/${later}/Stop`);
      return sse(60000, [['1-2', 'state', { Id: later, Name: 'LaterByWorker', Changed: { State: 'Failed' } }]]);
    }
    return sse(60000, []);
  });
  await page.goto(base + '/');
  await row(later).waitFor();
  await row(sleeper).locator('.stage', { hasText: 'from the stream' }).waitFor();
  assert.equal(await row(sleeper).locator('progress').evaluate((p) => p.value), 42);
  assert.equal(await page.locator('#live').getAttribute('data-mode'), 'live');
  await page.locator(`[data-task-id="${later}"][data-state="Failed"]`).waitFor();
  await page.unroute('**/api/v1/BatchTask/Events/stream*');

  step('a read-only session sees no button it cannot use');
  await page.route('**/api/v1/Session', async (route) => {
    if (route.request().method() !== 'GET') return route.continue();
    const res = await route.fetch();
    const me = await res.json();
    await route.fulfill({ response: res, json: { ...me, ReadOnly: true, Scope: 'read' } });
  });
  await page.goto(base + '/tasks/' + broken);
  await page.locator('[data-prop="State"]', { hasText: 'Failed' }).waitFor();
  assert.equal(await page.locator('#delete, #stop, #retry').count(), 0, 'no Stop, Retry or Delete');
  await page.goto(base + '/');
  await row(sleeper).waitFor();
  assert.equal(await page.locator('input[type="checkbox"], .bulk, a:has-text("Start a task")').count(), 0, 'no selection, bulk or start');
  await page.goto(base + '/definitions');
  await page.locator('tr[data-definition="Sleep"]').waitFor();
  assert.equal(await page.locator('.defs button').count(), 0, 'no Start buttons');
  await page.unroute('**/api/v1/Session');

  step('paging');
  const paged = [];
  for (let i = 0; i < 27; i++) paged.push(await api(admin, 'POST', '/api/v1/BatchTask', { Name: 'PagedByWorker', Description: 'page test ' + i }));
  await page.goto(base + '/tasks?name=PagedByWorker');
  await row(paged[26]).waitFor();
  assert.equal(await page.locator('#task-rows tr').count(), 25, 'a page holds 25, newest first');
  assert.ok(await page.locator('button:has-text("Newer")').isDisabled());
  await page.click('button:has-text("Older")');
  await page.waitForURL(/page=2/);
  await row(paged[0]).waitFor();
  assert.equal(await page.locator('#task-rows tr').count(), 2);
  assert.ok(await page.locator('button:has-text("Older")').isDisabled());
  await page.reload();
  await row(paged[1]).waitFor();
  assert.equal(await page.locator('#task-rows tr').count(), 2, 'the page number is in the URL');
  for (const id of paged) await api(admin, 'DELETE', '/api/v1/BatchTask/' + id);

  step('dark and narrow');
  await page.goto(base + '/');
  await row(careful).waitFor();
  await page.screenshot({ path: join(shots, 'tasks.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize({ width: 400, height: 860 });
  await page.screenshot({ path: join(shots, 'tasks-dark-narrow.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1280, height: 860 });

  step('log out, log in as a user: no admin task, no admin page');
  await page.click('#logout');
  await page.locator('#login-view').waitFor({ state: 'visible' });
  const own = await api(user, 'POST', '/api/v1/BatchTask', { Name: 'Sleep', Description: 'mine', ParameterObject: { Seconds: '0' } });
  await login(user);
  await row(own).waitFor();
  for (const id of [sleeper, careful, broken]) assert.equal(await row(id).count(), 0, `the user does not see admin task ${id}`);
  assert.equal(await page.locator('#nav-nodes').isVisible(), false, 'no Nodes link for users');
  await page.goto(base + '/tasks/' + careful);
  await page.locator('h1', { hasText: 'is not there' }).waitFor();
  await page.goto(base + '/nodes');
  await page.locator('h1', { hasText: 'Not found' }).waitFor();
  await page.goto(base + '/definitions');
  await page.locator('tr[data-definition="Sleep"] button[data-action="start"]').waitFor();
  assert.equal(await page.locator('button[data-action="pause"], button[data-action="resume"]').count(), 0, 'users do not pause');

  step('an expired session goes back to the login form');
  await page.goto(base + '/definitions');
  await page.locator('tr[data-definition="Sleep"]').waitFor();
  await context.clearCookies();
  await page.click('a[data-nav="tasks"]');
  await page.locator('#login-view').waitFor({ state: 'visible' });
  assert.ok((await page.locator('#login-error').textContent()).includes('session'));

  step('every request stayed on the server');
  const away = requests.filter((u) => new URL(u).origin !== origin);
  assert.deepEqual(away, [], 'requests to other origins');
  assert.ok(requests.length > 20, 'requests were recorded: ' + requests.length);
  assert.deepEqual(problems, [], 'no script errors and no CSP violations');
  console.log(`ok ${requests.length} requests, all to ${origin}`);
} catch (e) {
  await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  console.error('at ' + page.url());
  console.error('problems: ' + JSON.stringify(problems));
  throw e;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
