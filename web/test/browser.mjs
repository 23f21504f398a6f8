// The demo inbox in headless Chromium against a running devstack, as a person would use it:
// open the page, send yourself a notification with the form, watch the badge go to 1 and the
// item appear, mark it read and watch the badge go to 0. Then browser push: enable it, send a
// notification with PUSH, and follow it through Herald's push function, a push service on this
// machine (test/push-service.mjs), the DevTools protocol's ServiceWorker.deliverPushMessage and
// the page's service worker (sw.js) to a shown notification, a recorded click and the funnel.
//
// Run by scripts/test.d/30-browser, which starts devstack. Environment:
//   BROWSER_URL         the demo page (default http://127.0.0.1:3000/)
//   BROWSER_REALTIME    0 when the template wires no WebSocket functions (ws, delivery): the
//                       live checks are skipped and the HTTP path is checked with reloads
//   BROWSER_FUNCTIONS   the template's functions, space-separated (default: all of them): the
//                       push checks need delivery and push, the funnel checks analytics
//   CHROMIUM_PATH       default /usr/bin/chromium (Debian's; playwright-core downloads nothing)
//   BROWSER_SCREENSHOT  default artifacts/demo-inbox.png at the repository root (the first
//                       failure's page goes to demo-inbox-failure.png beside it; the page with
//                       push enabled to demo-push.png)
// Prints one line per check and `browser: N passed, M failed[, K skipped]`; exits 1 on failure.

import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { startPushService, verifyVapid } from './push-service.mjs';

const BASE = process.env.BROWSER_URL ?? 'http://127.0.0.1:3000/';
const ORIGIN = new URL(BASE).origin;
const REALTIME = process.env.BROWSER_REALTIME !== '0';
const FUNCTIONS = new Set((process.env.BROWSER_FUNCTIONS ?? 'api ws delivery push analytics').split(/\s+/).filter(Boolean));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOT = process.env.BROWSER_SCREENSHOT ?? fileURLToPath(new URL('../../artifacts/demo-inbox.png', import.meta.url));
const PUSH_SCREENSHOT = join(dirname(SCREENSHOT), 'demo-push.png');
/** Bound of one check. */
const CHECK_MS = 20_000;
/** Bound of the whole run, browser start included. */
const TOTAL_MS = 240_000;

const results = { passed: 0, failed: 0, skipped: 0 };

function finish(code) {
  const skipped = results.skipped > 0 ? `, ${results.skipped} skipped` : '';
  console.log(`browser: ${results.passed} passed, ${results.failed} failed${skipped}`);
  process.exit(code);
}

const watchdog = setTimeout(() => {
  console.log(`FAILED - the run did not finish within ${TOTAL_MS / 1000} s`);
  results.failed += 1;
  finish(1);
}, TOTAL_MS);

let broken = false; // after a failure, later checks (which build on it) are skipped
let page = null; // for a screenshot of the first failure
const shots = []; // screenshots written

async function screenshot(path) {
  mkdirSync(dirname(path), { recursive: true });
  await page.screenshot({ path, fullPage: true });
  shots.push(path);
}

/** Runs one named check, bounded by CHECK_MS. `skip` is a reason not to run it. */
async function check(name, fn, { skip } = {}) {
  if (skip || broken) {
    results.skipped += 1;
    console.log(`skipped - ${name}: ${skip ?? 'an earlier check failed'}`);
    return;
  }
  const t0 = Date.now();
  let timer;
  try {
    // A check may return a note for its line (what it saw that is worth reading).
    const note = await Promise.race([
      fn(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_MS / 1000} s`)), CHECK_MS); }),
    ]);
    results.passed += 1;
    console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)${typeof note === 'string' ? ` — ${note}` : ''}`);
  } catch (e) {
    results.failed += 1;
    broken = true;
    console.log(`FAILED - ${name}: ${e.message.split('\n')[0]}`);
    await screenshot(SCREENSHOT.replace(/\.png$/, '-failure.png')).catch(() => {});
  } finally {
    clearTimeout(timer);
  }
}

const byId = (id) => `[data-testid="${id}"]`;

/** Waits until the badge shows `n`. */
async function badgeIs(page, n) {
  await page.waitForFunction(
    ([sel, want]) => document.querySelector(sel)?.textContent === want,
    [byId('badge'), String(n)],
    { timeout: CHECK_MS },
  );
}

function item(page, title) {
  return page.locator(byId('item'), { hasText: title });
}

/** Sends a notification through the page's form and waits for the API's answer; its id. */
async function send(page, title, body = 'sent by the browser test') {
  await page.fill(byId('send-title'), title);
  await page.fill(byId('send-body'), body);
  await page.fill(byId('send-type'), 'demo.browser');
  // The page clears data-status when the form is submitted and sets it to the answer's status.
  await page.click(byId('send-button'));
  await page.waitForSelector(`${byId('send-result')}[data-status]`);
  const status = await page.getAttribute(byId('send-result'), 'data-status');
  const text = await page.textContent(byId('send-result'));
  if (status !== '201') throw new Error(`the send form answered ${text}`);
  return page.getAttribute(byId('send-result'), 'data-id');
}

// --- push helpers ---

/** A demo session (token) for `user`, as the page gets it. */
async function sessionFor(user) {
  const resp = await fetch(new URL(`_devstack/demo/session?user=${encodeURIComponent(user)}`, BASE));
  if (!resp.ok) throw new Error(`session: ${resp.status}`);
  return resp.json();
}

/** `GET`/`POST` on the API with `token`; the parsed body (null when empty) and the status. */
async function api(token, path, init = {}) {
  const resp = await fetch(new URL(path, BASE), { ...init, headers: { authorization: `Bearer ${token}`, ...init.headers } });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

/** Polls `fn` (returning a truthy value when done) every 250 ms for up to `ms`. */
async function until(fn, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`${what} (waited ${ms / 1000} s)`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The `n`-th (1-based) message of `type` about `id` the worker sent the page (sw.js `tell`). */
async function workerMessage(page, type, id, n = 1) {
  await page.waitForFunction(
    ([t, i, k]) => (window.heraldPush?.messages ?? []).filter((m) => m.type === t && m.id === i).length >= k,
    [type, id, n],
    { timeout: CHECK_MS },
  );
  return page.evaluate(([t, i, k]) => window.heraldPush.messages.filter((m) => m.type === t && m.id === i)[k - 1], [type, id, n]);
}

/** The notifications the worker shows with tag `tag`. */
function shownWithTag(page, tag) {
  return page.evaluate(async (t) => {
    const registration = await navigator.serviceWorker.ready;
    return (await registration.getNotifications({ tag: t })).map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
  }, tag);
}

/** Waits until the page's push panel has settled (app.js `setupPush`: state shown, queue sent). */
function pushReady(page) {
  return page.waitForFunction(() => window.heraldPush?.ready === true, null, { timeout: CHECK_MS });
}

/** Posts sw.js's test hook: run the click handler on the notification tagged `tag`. */
function simulateClick(page, tag) {
  return page.evaluate(async (t) => (await navigator.serviceWorker.ready).active.postMessage({ type: 'herald:simulate-click', tag: t }), tag);
}

/**
 * Replaces the browser's push service in `page` (which headless Chromium cannot reach) with
 * `service`: `pushManager.subscribe` returns a subscription at its endpoint with its keys; the
 * page's own code does everything else. Records what subscribe was asked in `window.__pushStub`.
 */
function stubPushManager(page, service) {
  return page.evaluate(({ endpoint, keys }) => {
    let current = null;
    const stub = (window.__pushStub = { subscribeCalls: [] });
    PushManager.prototype.getSubscription = async function getSubscription() {
      return current;
    };
    PushManager.prototype.subscribe = async function subscribe(options) {
      const key = new Uint8Array(options.applicationServerKey);
      stub.subscribeCalls.push({ userVisibleOnly: options.userVisibleOnly, key: btoa(String.fromCharCode(...key)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') });
      current = {
        endpoint,
        expirationTime: null,
        options: { userVisibleOnly: true, applicationServerKey: key.buffer },
        toJSON: () => ({ endpoint, expirationTime: null, keys }),
        unsubscribe: async () => {
          current = null;
          return true;
        },
      };
      return current;
    };
  }, { endpoint: service.endpoint(`browser-test-${Date.now()}`), keys: service.keys });
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: CHECK_MS });
  const pageErrors = [];
  const pushService = await startPushService();
  // Service worker registrations, as the DevTools protocol reports them (per page session).
  const registrations = new Map();
  const openPage = async (context) => {
    const p = await context.newPage();
    p.setDefaultTimeout(CHECK_MS);
    p.on('pageerror', (e) => pageErrors.push(e.message));
    const cdp = await context.newCDPSession(p);
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
      for (const r of e.registrations) registrations.set(r.registrationId, r);
    });
    await cdp.send('ServiceWorker.enable');
    return { page: p, cdp };
  };
  try {
    const context = await browser.newContext({ viewport: { width: 1200, height: 820 } });
    // What a person does at the permission prompt; Notification.requestPermission() then says so.
    await context.grantPermissions(['notifications'], { origin: ORIGIN });
    let cdp;
    ({ page, cdp } = await openPage(context));
    const tag = Math.random().toString(36).slice(2, 8);
    const first = `Browser test ${tag}`;
    const noLive = REALTIME ? undefined : 'the template wires no WebSocket functions (ws, delivery)';

    await check('the page gets a demo session and loads the inbox over HTTP', async () => {
      await page.goto(BASE);
      await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.startsWith('demo-'), byId('user'));
      if (!new URL(page.url()).searchParams.get('user')?.startsWith('demo-')) throw new Error(`no ?user= in ${page.url()}`);
      await badgeIs(page, 0);
      await page.waitForSelector(`${byId('empty')}:not([hidden])`);
    });

    await check('the WebSocket connects (status live)', async () => {
      await page.waitForSelector(`${byId('status')}[data-status="open"]`);
    }, { skip: noLive });

    await check('the form sends a notification through the API (201)', async () => {
      await send(page, first);
    });

    await check('it arrives live: the badge goes to 1 and the unread item appears', async () => {
      await badgeIs(page, 1);
      await item(page, first).waitFor();
      if ((await item(page, first).getAttribute('data-read')) !== 'false') throw new Error('the new item is not unread');
    }, { skip: noLive });

    await check('mark read: the badge goes to 0 and the item is shown read', async () => {
      await item(page, first).locator(byId('mark-read')).click();
      await badgeIs(page, 0);
      await page.waitForSelector(`${byId('item')}[data-read="true"]:has-text("${first}")`);
      if (await item(page, first).evaluate((li) => li.classList.contains('unread'))) throw new Error('still styled unread');
    }, { skip: noLive });

    await check('two more, then mark all read: 2, then 0; archive removes an item', async () => {
      await send(page, `Second ${tag}`);
      await send(page, `Third ${tag}`);
      await badgeIs(page, 2);
      await item(page, `Third ${tag}`).waitFor();
      await screenshot(SCREENSHOT);
      await page.click(byId('mark-all-read'));
      await badgeIs(page, 0);
      await item(page, `Second ${tag}`).locator(byId('archive')).click();
      await item(page, `Second ${tag}`).waitFor({ state: 'detached' });
    }, { skip: noLive });

    await check('after a reload the inbox comes back over HTTP as it was', async () => {
      await page.reload();
      await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.startsWith('demo-'), byId('user'));
      await item(page, first).waitFor();
      if (REALTIME) {
        await badgeIs(page, 0);
        const titles = await page.locator(`${byId('item')} ${byId('item-title')}`).allTextContents();
        if (titles.join('|') !== `Third ${tag}|${first}`) throw new Error(`items after reload: ${titles.join(', ')}`);
      } else {
        await badgeIs(page, 1);
        await screenshot(SCREENSHOT);
      }
    });

    // --- browser push ---
    const noPush = !REALTIME || !FUNCTIONS.has('delivery') || !FUNCTIONS.has('push')
      ? 'the template wires no delivery and push functions'
      : undefined;
    const noFunnel = noPush ?? (FUNCTIONS.has('analytics') ? undefined : 'the template wires no analytics function');
    const user = await page.textContent(byId('user')).catch(() => '');
    let session = null; // a token of the page's user, for checks through the API
    let vapidKey = null;
    let pushed = null; // {id, plaintext} of the notification sent with PUSH
    let registrationId = null;

    await check('enable push with no push service reachable: sw.js registers, the page shows the outcome (on, or a clear error)', async () => {
      await pushReady(page);
      await page.click(byId('push-enable'));
      const state = await page.waitForSelector(`${byId('push-state')}:is([data-state="on"], [data-state="error"], [data-state="denied"], [data-state="unsupported"])`);
      const [kind, text] = [await state.getAttribute('data-state'), (await state.textContent()).trim()];
      if (kind === 'denied' || kind === 'unsupported') throw new Error(`${kind}: ${text}`);
      if (kind === 'error' && !/could not subscribe|push service/.test(text)) throw new Error(`an unclear error: ${text}`);
      const script = await page.evaluate(async () => (await navigator.serviceWorker.getRegistration())?.active?.scriptURL);
      if (script !== `${ORIGIN}/sw.js`) throw new Error(`the active service worker is ${script}`);
      return `${kind}: ${text}`;
    }, { skip: noPush });

    await check('enable push: permission, sw.js, the VAPID key, subscribe, POST /v1/push-subscriptions (201)', async () => {
      session = await sessionFor(user);
      const key = await api(session.token, 'v1/push/vapid-public-key');
      if (key.status !== 200) throw new Error(`GET /v1/push/vapid-public-key: ${key.status}`);
      vapidKey = key.body.publicKey;
      await stubPushManager(page, pushService);
      await page.click(byId('push-enable'));
      await page.waitForSelector(`${byId('push-state')}[data-state="on"]`);
      const status = await page.getAttribute(byId('push-state'), 'data-status');
      if (status !== '201') throw new Error(`registered with ${status}`);
      const calls = await page.evaluate(() => window.__pushStub.subscribeCalls);
      if (calls.length !== 1 || calls[0].userVisibleOnly !== true || calls[0].key !== vapidKey) {
        throw new Error(`subscribe was called with ${JSON.stringify(calls)}, the VAPID key is ${vapidKey}`);
      }
      const list = await api(session.token, 'v1/push-subscriptions');
      if (!list.body?.items?.some((i) => i.endpoint.startsWith(pushService.origin))) throw new Error(`not registered: ${JSON.stringify(list.body)}`);
      const stored = await page.evaluate(() => window.heraldPush.store.session());
      if (stored?.userId !== user || !stored.token) throw new Error(`the worker's session is ${JSON.stringify(stored)}`);
      await screenshot(PUSH_SCREENSHOT);
    }, { skip: noPush });

    await check('a notification sent with PUSH reaches the push service: aes128gcm, VAPID-signed, {id, title, body}', async () => {
      await page.check(byId('send-push'));
      const id = await send(page, `Push ${tag}`, `pushed by the browser test ${tag}`);
      await page.uncheck(byId('send-push'));
      const message = await pushService.next(CHECK_MS - 2000);
      if (message.headers['content-encoding'] !== 'aes128gcm') throw new Error(`Content-Encoding ${message.headers['content-encoding']}`);
      if (!(Number(message.headers.ttl) > 0)) throw new Error(`TTL ${message.headers.ttl}`);
      const { key } = verifyVapid(message.headers.authorization, pushService.origin);
      if (key !== vapidKey) throw new Error('signed with another key than the one the page subscribed with');
      const plaintext = pushService.decrypt(message).toString('utf8');
      const payload = JSON.parse(plaintext);
      if (payload.id !== id || payload.title !== `Push ${tag}` || payload.body !== `pushed by the browser test ${tag}`) {
        throw new Error(`payload ${plaintext} for ${id}`);
      }
      pushed = { id, plaintext };
      return `${message.body.length} bytes, ${plaintext.length} of JSON`;
    }, { skip: noPush });

    /** Delivers `data` to the page's service worker as its push service would. */
    const deliver = async (data) => {
      registrationId ??= (await until(
        () => [...registrations.values()].find((r) => r.scopeURL === `${ORIGIN}/` && !r.isDeleted),
        5000,
        'no service worker registration reported by the DevTools protocol',
      )).registrationId;
      await cdp.send('ServiceWorker.deliverPushMessage', { origin: ORIGIN, registrationId, data });
    };

    await check('ServiceWorker.deliverPushMessage hands it to sw.js, which shows the notification', async () => {
      await deliver(pushed.plaintext);
      await workerMessage(page, 'herald:push-shown', pushed.id, 1);
      const shown = await shownWithTag(page, pushed.id);
      const want = { title: `Push ${tag}`, body: `pushed by the browser test ${tag}`, tag: pushed.id, data: { id: pushed.id, actionUrl: null, url: `${ORIGIN}/?user=${user}` } };
      if (JSON.stringify(shown) !== JSON.stringify([want])) throw new Error(`shown: ${JSON.stringify(shown)}`);
    }, { skip: noPush });

    await check('a trimmed push {id, title}: sw.js completes it from GET /v1/notifications/{id} with the stored token', async () => {
      await page.evaluate(async (t) => {
        for (const n of await (await navigator.serviceWorker.ready).getNotifications({ tag: t })) n.close();
      }, pushed.id);
      await deliver(JSON.stringify({ id: pushed.id, title: `Push ${tag}` }));
      const m = await workerMessage(page, 'herald:push-shown', pushed.id, 2);
      if (!m.trimmed || !m.fetched) throw new Error(`the worker reported ${JSON.stringify(m)}`);
      const shown = await shownWithTag(page, pushed.id);
      if (shown.length !== 1 || shown[0].body !== `pushed by the browser test ${tag}`) throw new Error(`shown: ${JSON.stringify(shown)}`);
    }, { skip: noPush });

    await check("a click (sw.js's notificationclick handler, through its test hook) is recorded: POST /v1/notifications/{id}/click 202", async () => {
      await simulateClick(page, pushed.id);
      const m = await workerMessage(page, 'herald:click', pushed.id, 1);
      if (m.outcome !== 'recorded' || m.status !== 202) throw new Error(`the worker reported ${JSON.stringify(m)}`);
      if ((await shownWithTag(page, pushed.id)).length !== 0) throw new Error('the notification is still shown');
      if (m.url !== `${ORIGIN}/?user=${user}`) throw new Error(`it would open ${m.url}`);
      return `window: ${m.opened}`;
    }, { skip: noPush });

    /** The outcomes of `id` as `CHANNEL/status` once they include every one of `want`. */
    const funnelHas = (id, want) => until(async () => {
      const r = await api(session.token, `v1/notifications/${id}/deliveries`);
      const got = (r.body?.deliveries ?? []).map((d) => `${d.channel}/${d.status}`);
      return want.every((w) => got.includes(w)) && got;
    }, CHECK_MS - 2000, `the funnel of ${id} lacks one of ${want.join(', ')}`);

    await check('the funnel (GET /v1/notifications/{id}/deliveries) shows PUSH sent and IN_APP clicked', async () => {
      return (await funnelHas(pushed.id, ['IN_APP/sent', 'PUSH/sent', 'IN_APP/clicked'])).join(', ');
    }, { skip: noFunnel });

    await check('with every page closed, the worker still records a click with its stored token', async () => {
      const other = await api(session.token, '_devstack/demo/send', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: `Closed ${tag}`, body: 'clicked with no page open', type: 'demo.browser' }),
      });
      if (other.status !== 201) throw new Error(`send: ${other.status}`);
      const id = other.body.id;
      await deliver(JSON.stringify({ id, title: `Closed ${tag}`, body: 'clicked with no page open' }));
      await workerMessage(page, 'herald:push-shown', id, 1);
      const [worker] = context.serviceWorkers().filter((w) => w.url() === `${ORIGIN}/sw.js`);
      if (!worker) throw new Error('playwright sees no service worker');
      await page.close();
      // The worker posts the test hook to itself: no page of ours exists to do it.
      await worker.evaluate((t) => self.registration.active.postMessage({ type: 'herald:simulate-click', tag: t }), id);
      const got = await funnelHas(id, ['IN_APP/clicked']);
      ({ page, cdp } = await openPage(context));
      await page.goto(`${BASE}?user=${encodeURIComponent(user)}`);
      await pushReady(page);
      return got.join(', ');
    }, { skip: noFunnel });

    await check('with no valid token the click is queued, and the page sends it when it next starts', async () => {
      // As after an hour with no page open: the worker's token has expired.
      await page.evaluate(async (s) => window.heraldPush.store.setSession({ ...s, expiresAt: Date.now() - 1000 }), {
        userId: user,
        httpUrl: session.httpUrl,
        token: session.token,
      });
      await deliver(pushed.plaintext);
      await workerMessage(page, 'herald:push-shown', pushed.id, 1);
      await simulateClick(page, pushed.id);
      const m = await workerMessage(page, 'herald:click', pushed.id, 1);
      if (m.outcome !== 'retry' || m.status !== 0) throw new Error(`the worker reported ${JSON.stringify(m)}`);
      const queued = await page.evaluate(() => window.heraldPush.store.queuedClicks());
      if (!queued.some((q) => q.id === pushed.id && q.userId === user)) throw new Error(`queue: ${JSON.stringify(queued)}`);
      await page.reload();
      await pushReady(page);
      const left = await page.evaluate(() => window.heraldPush.store.queuedClicks());
      if (left.length !== 0) throw new Error(`still queued: ${JSON.stringify(left)}`);
      await page.locator(`${byId('log')} li`, { hasText: `queued push click ${pushed.id.slice(-6)}: recorded (202)` }).waitFor();
    }, { skip: noPush });

    await check('no uncaught errors in the page', async () => {
      if (pageErrors.length > 0) throw new Error(pageErrors.join('; '));
    });
  } finally {
    await browser.close();
    await pushService.close();
  }
}

try {
  await main();
} catch (e) {
  results.failed += 1;
  console.log(`FAILED - the browser run: ${e.message.split('\n')[0]}`);
}
clearTimeout(watchdog);
for (const shot of shots) console.log(`screenshot: ${shot}`);
finish(results.failed > 0 ? 1 : 0);
