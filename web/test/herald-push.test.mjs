// Unit tests of herald-push.js, the logic sw.js and the demo page share: payloads, click targets,
// the click policy and queue, and subscribing against a fake push manager and a fake API.
// Run: node --test web/test/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  DEFAULT_TITLE,
  MAX_QUEUED_CLICKS,
  QUEUED_CLICK_MAX_AGE_MS,
  PushError,
  appPage,
  base64UrlToBytes,
  bytesToBase64Url,
  clickOutcome,
  clickTarget,
  disablePush,
  enablePush,
  fetchNotification,
  flushClicks,
  notificationToShow,
  parsePushPayload,
  recordClick,
  usableSession,
  withFetched,
} from '../herald-push.js';

const NOW = 1_700_000_000_000;
const session = (over = {}) => ({ userId: 'alice', httpUrl: 'http://api.test/', token: 'tok-alice', expiresAt: NOW + 3_600_000, ...over });

/** A fetch answering `answer(method, path)` → `{status, body?}` (or throwing), recording calls. */
function fakeFetch(answer) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const u = new URL(url);
    const call = { method: init.method ?? 'GET', path: u.pathname, authorization: init.headers?.authorization, body: init.body };
    calls.push(call);
    const { status, body } = await answer(call.method, call.path, call);
    return {
      status,
      ok: status >= 200 && status < 300,
      json: async () => (body === undefined ? Promise.reject(new SyntaxError('no body')) : body),
    };
  };
  return { fetch, calls };
}

// --- payloads ---

test('a full payload is shown as it is; `data` and `actionUrl` are kept', () => {
  const p = parsePushPayload(JSON.stringify({ id: 'n1', title: 'Invoice paid', body: 'Thanks!', actionUrl: '/invoices/7', data: { k: 1 } }));
  assert.deepEqual(p, { id: 'n1', title: 'Invoice paid', body: 'Thanks!', actionUrl: '/invoices/7', data: { k: 1 }, trimmed: false });
});

test('`{id, title}` is the trimmed form: no body key; an empty body is not trimmed', () => {
  assert.equal(parsePushPayload('{"id":"n1","title":"Big one"}').trimmed, true);
  assert.equal(parsePushPayload('{"id":"n1","title":"Big one"}').body, '');
  assert.equal(parsePushPayload('{"id":"n1","title":"t","body":""}').trimmed, false);
  assert.equal(parsePushPayload('{"title":"no id"}').trimmed, false, 'without an id there is nothing to fetch');
});

test('anything else still gives a notification to show (userVisibleOnly): a generic title', () => {
  for (const text of ['', '   ', undefined, null, '[1,2]', '42', 'null', '{"id":5,"title":7}']) {
    const p = parsePushPayload(text);
    assert.equal(p.title, DEFAULT_TITLE, String(text));
    assert.equal(p.trimmed, false);
  }
  assert.equal(parsePushPayload('{"id":5}').id, null, 'an id must be a string');
  assert.equal(parsePushPayload('not json at all').body, 'not json at all');
  assert.equal(parsePushPayload('"a JSON string"').body, 'a JSON string');
  assert.equal(parsePushPayload('x'.repeat(1000)).body.length, 200);
  assert.equal(parsePushPayload('{"id":"n","title":"  "}').title, DEFAULT_TITLE);
});

test('a trimmed payload is completed from the stored notification of the same id only', () => {
  const trimmed = parsePushPayload('{"id":"n1","title":"Big one"}');
  const full = withFetched(trimmed, { id: 'n1', title: 'Big one', body: 'all of it', actionUrl: 'https://app.test/x', data: { a: 1 } });
  assert.deepEqual(full, { id: 'n1', title: 'Big one', body: 'all of it', actionUrl: 'https://app.test/x', data: { a: 1 }, trimmed: false });
  assert.equal(withFetched(trimmed, { id: 'other', body: 'no' }), trimmed);
  assert.equal(withFetched(trimmed, null), trimmed);
});

test('notificationToShow: tag is the id (a redelivered push replaces), data carries what a click needs', () => {
  const { title, options } = notificationToShow(parsePushPayload('{"id":"n1","title":"T","body":"B","actionUrl":"/go"}'), {
    fallbackUrl: 'http://app.test/?user=alice',
  });
  assert.equal(title, 'T');
  assert.deepEqual(options, { body: 'B', tag: 'n1', data: { id: 'n1', actionUrl: '/go', url: 'http://app.test/go' } });
  const untagged = notificationToShow(parsePushPayload('hello'), { fallbackUrl: 'http://app.test/' });
  assert.equal('tag' in untagged.options, false);
  assert.equal(untagged.options.data.url, 'http://app.test/');
});

test('clicks open http(s) links only, relative ones against the app; else the app page', () => {
  const app = 'http://127.0.0.1:3000/?user=alice';
  assert.equal(clickTarget('https://example.com/a?b=1', app), 'https://example.com/a?b=1');
  assert.equal(clickTarget('/invoices/7', app), 'http://127.0.0.1:3000/invoices/7');
  for (const bad of ['javascript:alert(1)', 'data:text/html,hi', 'file:///etc/passwd', '', '  ', null, undefined, 42, 'http://[bad']) {
    assert.equal(clickTarget(bad, app), app, String(bad));
  }
  assert.equal(appPage('http://127.0.0.1:3000/', 'demo-1 2'), 'http://127.0.0.1:3000/?user=demo-1+2');
  assert.equal(appPage('http://127.0.0.1:3000/', undefined), 'http://127.0.0.1:3000/');
});

// --- the token and clicks ---

test('a session is usable with a token, a URL and more than 30 s left', () => {
  assert.equal(usableSession(session(), NOW), true);
  assert.equal(usableSession(session({ expiresAt: NOW + 29_000 }), NOW), false);
  assert.equal(usableSession(session({ token: '' }), NOW), false);
  assert.equal(usableSession(session({ expiresAt: undefined }), NOW), false);
  assert.equal(usableSession(null, NOW), false);
});

test('click outcomes: 2xx recorded; no answer, 401, 408, 429 and 5xx retried; other 4xx dropped', () => {
  for (const s of [200, 202, 204]) assert.equal(clickOutcome(s), 'recorded', String(s));
  for (const s of [0, 401, 408, 429, 500, 503]) assert.equal(clickOutcome(s), 'retry', String(s));
  for (const s of [400, 403, 404, 410, 422]) assert.equal(clickOutcome(s), 'dropped', String(s));
});

test('recordClick POSTs /v1/notifications/{id}/click with the bearer token', async () => {
  const { fetch, calls } = fakeFetch(() => ({ status: 202 }));
  assert.deepEqual(await recordClick({ id: 'n/1', session: session(), fetch, now: NOW }), { outcome: 'recorded', status: 202 });
  assert.deepEqual(calls, [{ method: 'POST', path: '/v1/notifications/n%2F1/click', authorization: 'Bearer tok-alice', body: undefined }]);
});

test('recordClick without a usable token or an answer says retry, and never throws', async () => {
  const { fetch, calls } = fakeFetch(() => ({ status: 202 }));
  assert.equal((await recordClick({ id: 'n1', session: session({ expiresAt: NOW }), fetch, now: NOW })).outcome, 'retry');
  assert.equal(calls.length, 0, 'an expired token is not sent');
  const down = fakeFetch(() => {
    throw new TypeError('Failed to fetch');
  });
  assert.deepEqual(await recordClick({ id: 'n1', session: session(), fetch: down.fetch, now: NOW }), {
    outcome: 'retry',
    status: 0,
    reason: 'Failed to fetch',
  });
});

test('flushClicks sends what it can, keeps what must wait, drops what is done or too old', async () => {
  const { fetch, calls } = fakeFetch((_, path) => ({ status: { '/v1/notifications/a/click': 202, '/v1/notifications/b/click': 503, '/v1/notifications/c/click': 404 }[path] }));
  const queue = [
    { id: 'a', at: NOW - 1000, userId: 'alice' },
    { id: 'b', at: NOW - 1000, userId: 'alice' },
    { id: 'c', at: NOW - 1000, userId: null },
    { id: 'bob-s', at: NOW - 1000, userId: 'bob' },
    { id: 'old', at: NOW - QUEUED_CLICK_MAX_AGE_MS - 1, userId: 'alice' },
  ];
  const r = await flushClicks({ queue, session: session(), fetch, now: NOW });
  assert.deepEqual(calls.map((c) => c.path), ['/v1/notifications/a/click', '/v1/notifications/b/click', '/v1/notifications/c/click']);
  assert.deepEqual(r.sent.map((s) => [s.id, s.outcome]), [['a', 'recorded'], ['b', 'retry'], ['c', 'dropped']]);
  assert.deepEqual(r.keep.map((e) => e.id), ['b', 'bob-s'], "a retry and another user's click wait");
  assert.deepEqual(r.drop, ['a', 'c', 'old']);

  const none = await flushClicks({ queue: queue.slice(0, 2), session: null, fetch, now: NOW });
  assert.deepEqual([none.sent, none.keep.length, none.drop], [[], 2, []], 'without a token everything waits');
  assert.ok(MAX_QUEUED_CLICKS >= 10);
});

test('fetchNotification gets the stored notification, or null on any failure', async () => {
  const { fetch, calls } = fakeFetch((_, path) => (path === '/v1/notifications/n1' ? { status: 200, body: { id: 'n1', body: 'b' } } : { status: 404, body: {} }));
  assert.deepEqual(await fetchNotification({ id: 'n1', session: session(), fetch, now: NOW }), { id: 'n1', body: 'b' });
  assert.equal(calls[0].authorization, 'Bearer tok-alice');
  assert.equal(await fetchNotification({ id: 'n2', session: session(), fetch, now: NOW }), null);
  assert.equal(await fetchNotification({ id: 'n1', session: null, fetch, now: NOW }), null);
  const down = fakeFetch(() => {
    throw new TypeError('offline');
  });
  assert.equal(await fetchNotification({ id: 'n1', session: session(), fetch: down.fetch, now: NOW }), null);
});

// --- subscribing ---

const VAPID = 'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4';

/** A push manager with `existing` (or no) subscription; `subscribe` makes one unless `fail`. */
function fakeRegistration({ existing = null, fail = null, hang = false } = {}) {
  const log = { subscribed: [], unsubscribed: [] };
  const subscription = (key, endpoint) => ({
    endpoint,
    options: { userVisibleOnly: true, applicationServerKey: key.buffer },
    toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh: 'p', auth: 'a' } }),
    unsubscribe: async () => {
      log.unsubscribed.push(endpoint);
      current = null;
      return true;
    },
  });
  let current = existing ? subscription(base64UrlToBytes(existing.key), existing.endpoint) : null;
  const pushManager = {
    getSubscription: async () => current,
    subscribe: (options) => {
      log.subscribed.push(options);
      if (hang) return new Promise(() => {});
      if (fail) return Promise.reject(fail);
      current = subscription(new Uint8Array(options.applicationServerKey), 'https://push.test/new');
      return Promise.resolve(current);
    },
  };
  return { registration: { pushManager }, log };
}

const api = (over = {}) =>
  fakeFetch((method, path, call) => {
    const key = `${method} ${path}`;
    if (key in over) return over[key](call);
    if (key === 'GET /v1/push/vapid-public-key') return { status: 200, body: { publicKey: VAPID } };
    if (key === 'POST /v1/push-subscriptions') return { status: 201, body: { id: 'sub1', endpoint: JSON.parse(call.body).endpoint, createdAt: 'now' } };
    return { status: 404, body: { title: 'Not Found' } };
  });

test('enablePush: the VAPID key, subscribe (userVisibleOnly, that key), then POST the subscription JSON', async () => {
  const { registration, log } = fakeRegistration();
  const { fetch, calls } = api();
  const r = await enablePush({ registration, httpUrl: 'http://api.test', token: 'tok', fetch });
  assert.deepEqual(r, { subscription: { id: 'sub1', endpoint: 'https://push.test/new', createdAt: 'now' }, status: 201 });
  assert.equal(log.subscribed.length, 1);
  assert.equal(log.subscribed[0].userVisibleOnly, true);
  assert.equal(bytesToBase64Url(log.subscribed[0].applicationServerKey), VAPID);
  assert.deepEqual(calls.map((c) => `${c.method} ${c.path}`), ['GET /v1/push/vapid-public-key', 'POST /v1/push-subscriptions']);
  assert.ok(calls.every((c) => c.authorization === 'Bearer tok'));
  assert.deepEqual(JSON.parse(calls[1].body), { endpoint: 'https://push.test/new', expirationTime: null, keys: { p256dh: 'p', auth: 'a' } });
});

test('enablePush reuses a subscription made with the same key, replaces one made with another', async () => {
  const same = fakeRegistration({ existing: { key: VAPID, endpoint: 'https://push.test/old' } });
  await enablePush({ registration: same.registration, httpUrl: 'http://api.test', token: 't', fetch: api().fetch });
  assert.deepEqual([same.log.subscribed.length, same.log.unsubscribed], [0, []]);

  const other = fakeRegistration({ existing: { key: bytesToBase64Url(new Uint8Array(65).fill(4)), endpoint: 'https://push.test/old' } });
  const r = await enablePush({ registration: other.registration, httpUrl: 'http://api.test', token: 't', fetch: api().fetch });
  assert.deepEqual(other.log.unsubscribed, ['https://push.test/old']);
  assert.equal(r.subscription.endpoint, 'https://push.test/new');
});

test('enablePush names the failed step: not configured, subscribe (error or no answer), register', async () => {
  const notConfigured = api({ 'GET /v1/push/vapid-public-key': () => ({ status: 404, body: {} }) });
  await assert.rejects(enablePush({ registration: fakeRegistration().registration, httpUrl: 'http://api.test', token: 't', fetch: notConfigured.fetch }), {
    name: 'PushError',
    code: 'not-configured',
  });

  const refused = Object.assign(new Error('Registration failed - permission denied'), { name: 'AbortError' });
  await assert.rejects(enablePush({ registration: fakeRegistration({ fail: refused }).registration, httpUrl: 'http://api.test', token: 't', fetch: api().fetch }), (e) => {
    assert.ok(e instanceof PushError);
    assert.equal(e.code, 'subscribe');
    assert.match(e.message, /could not subscribe: AbortError: Registration failed - permission denied/);
    return true;
  });

  await assert.rejects(
    enablePush({ registration: fakeRegistration({ hang: true }).registration, httpUrl: 'http://api.test', token: 't', fetch: api().fetch, subscribeTimeoutMs: 20 }),
    { code: 'subscribe', message: /no answer from the browser's push service/ },
  );

  const invalid = api({ 'POST /v1/push-subscriptions': () => ({ status: 422, body: { detail: 'endpoint must be https' } }) });
  await assert.rejects(enablePush({ registration: fakeRegistration().registration, httpUrl: 'http://api.test', token: 't', fetch: invalid.fetch }), {
    code: 'register',
    status: 422,
    message: 'POST /v1/push-subscriptions: 422 endpoint must be https',
  });
});

test('disablePush deletes the subscription the API knows by endpoint, then unsubscribes', async () => {
  const { registration, log } = fakeRegistration({ existing: { key: VAPID, endpoint: 'https://push.test/old' } });
  const { fetch, calls } = api({
    'GET /v1/push-subscriptions': () => ({ status: 200, body: { items: [{ id: 'x', endpoint: 'https://elsewhere' }, { id: 'mine', endpoint: 'https://push.test/old' }] } }),
    'DELETE /v1/push-subscriptions/mine': () => ({ status: 204 }),
  });
  assert.equal(await disablePush({ registration, httpUrl: 'http://api.test', token: 't', fetch }), true);
  assert.deepEqual(calls.map((c) => `${c.method} ${c.path}`), ['GET /v1/push-subscriptions', 'DELETE /v1/push-subscriptions/mine']);
  assert.deepEqual(log.unsubscribed, ['https://push.test/old']);
  assert.equal(await disablePush({ registration, httpUrl: 'http://api.test', token: 't', fetch }), false, 'nothing left');
});

test('base64url round-trips, padded or not', () => {
  const bytes = Uint8Array.from({ length: 65 }, (_, i) => (i * 37) & 255);
  const text = bytesToBase64Url(bytes);
  assert.doesNotMatch(text, /[+/=]/);
  assert.deepEqual(base64UrlToBytes(text), bytes);
  assert.deepEqual(base64UrlToBytes(`${text}==`.slice(0, text.length + ((4 - (text.length % 4)) % 4))), bytes);
});
