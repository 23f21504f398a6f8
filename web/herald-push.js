// herald-push.js — Web Push in the browser, shared by the service worker (sw.js) and the page
// (app.js). A dependency-free ES module; everything but `PushStore` runs in Node too (the unit
// tests inject fetch and fake push managers).
//
// Contract:
// - A push message is what the `push` function sends (docs/channels.md): `{id, title, body,
//   actionUrl?, data?}`, or `{id, title}` when the whole was too large ("trimmed"). Whatever
//   arrives, the worker shows a notification (Chrome requires one per push, `userVisibleOnly`):
//   a payload that is not such an object is shown with a generic title.
// - Notifications are tagged with the notification id, so a push delivered twice (Web Push is
//   at-least-once) replaces the one on screen instead of adding a second.
// - A click is recorded with `POST /v1/notifications/{id}/click` and the user's token, which the
//   page leaves in IndexedDB for the worker (`PushStore`). A click that cannot be recorded now
//   (no valid token, network down, 5xx) is queued and sent later by the worker or the page, with
//   a token then valid; one the API refuses for good (404: not this user's, or deleted) is
//   dropped. So a click is recorded at least once, and the analytics history keeps the first.
// - Clicks open `actionUrl` when it is http(s), else the app's own page; nothing else is opened.

/** The title of a notification whose payload has none. */
export const DEFAULT_TITLE = 'New notification';

/** A token with less than this left is not used: it could expire on the way. */
export const TOKEN_MARGIN_MS = 30_000;

/** Clicks kept while they cannot be recorded; the oldest go first. */
export const MAX_QUEUED_CLICKS = 100;

/** Queued clicks older than this are dropped unsent. */
export const QUEUED_CLICK_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

/** Bound of one call to the API from the worker. */
const API_TIMEOUT_MS = 10_000;

/** Bound of `pushManager.subscribe` (it waits on the browser's push service). */
const SUBSCRIBE_TIMEOUT_MS = 15_000;

/** Plain-text payloads are shown cut to this many characters. */
const PLAIN_BODY_MAX = 200;

// --- payloads -----------------------------------------------------------------------------

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const nonEmpty = (v) => (typeof v === 'string' && v.trim() !== '' ? v : null);

/**
 * A push message's text as a notification to show: `{id, title, body, actionUrl, data,
 * trimmed}`. `trimmed` is true for `{id, title}` (no `body` key): the rest can be fetched by id.
 * Never throws.
 */
export function parsePushPayload(text) {
  let value = null;
  let plain = '';
  if (typeof text === 'string' && text.trim() !== '') {
    try {
      value = JSON.parse(text);
    } catch {
      plain = text.trim(); // not JSON: shown as the body
    }
  }
  if (!isObject(value)) {
    if (typeof value === 'string') plain = value.trim();
    return { id: null, title: DEFAULT_TITLE, body: plain.slice(0, PLAIN_BODY_MAX), actionUrl: null, data: null, trimmed: false };
  }
  const id = nonEmpty(value.id);
  return {
    id,
    title: nonEmpty(value.title) ?? DEFAULT_TITLE,
    body: typeof value.body === 'string' ? value.body : '',
    actionUrl: nonEmpty(value.actionUrl),
    data: value.data ?? null,
    trimmed: id !== null && !('body' in value),
  };
}

/** A trimmed payload completed from the stored notification (`GET /v1/notifications/{id}`). */
export function withFetched(payload, notification) {
  if (!isObject(notification) || notification.id !== payload.id) return payload;
  return {
    ...payload,
    title: nonEmpty(notification.title) ?? payload.title,
    body: typeof notification.body === 'string' ? notification.body : payload.body,
    actionUrl: nonEmpty(notification.actionUrl) ?? payload.actionUrl,
    data: notification.data ?? payload.data,
    trimmed: false,
  };
}

/**
 * Where a click goes: `actionUrl` resolved against `fallback` when it is http(s), else
 * `fallback` (the app's page). `javascript:`, `data:` and the like are never opened.
 */
export function clickTarget(actionUrl, fallback) {
  if (typeof actionUrl === 'string' && actionUrl.trim() !== '') {
    try {
      const url = new URL(actionUrl, fallback);
      if (url.protocol === 'https:' || url.protocol === 'http:') return url.href;
    } catch {
      // not a URL: the fallback
    }
  }
  return fallback;
}

/** The app's page for `userId` under the worker's `scope` (the demo page takes `?user=`). */
export function appPage(scope, userId) {
  const url = new URL(scope);
  if (userId) url.searchParams.set('user', userId);
  return url.href;
}

/**
 * `showNotification`'s arguments for a parsed payload: `{title, options}`. `options.data` is
 * `{id, actionUrl, url}`, what a click needs; `tag` is the id (see the contract).
 */
export function notificationToShow(payload, { fallbackUrl }) {
  const options = {
    body: payload.body,
    data: { id: payload.id, actionUrl: payload.actionUrl, url: clickTarget(payload.actionUrl, fallbackUrl) },
  };
  if (payload.id) options.tag = payload.id;
  return { title: payload.title, options };
}

// --- the token the worker uses --------------------------------------------------------------

/** A stored session (`{userId, httpUrl, token, expiresAt}`) still good for `marginMs`. */
export function usableSession(session, now = Date.now()) {
  return (
    isObject(session) &&
    typeof session.token === 'string' &&
    session.token !== '' &&
    typeof session.httpUrl === 'string' &&
    Number.isFinite(session.expiresAt) &&
    session.expiresAt - now > TOKEN_MARGIN_MS
  );
}

const apiUrl = (httpUrl, path) => `${httpUrl.replace(/\/+$/, '')}${path}`;

const timeoutSignal = (ms) => (typeof AbortSignal?.timeout === 'function' ? AbortSignal.timeout(ms) : undefined);

/**
 * The stored notification `id` with the session's token, or `null` (no token, not found, the
 * API unreachable): a trimmed push is then shown with its title only.
 */
export async function fetchNotification({ id, session, fetch = globalThis.fetch, now = Date.now() }) {
  if (!id || !usableSession(session, now)) return null;
  try {
    const resp = await fetch(apiUrl(session.httpUrl, `/v1/notifications/${encodeURIComponent(id)}`), {
      headers: { authorization: `Bearer ${session.token}` },
      signal: timeoutSignal(API_TIMEOUT_MS),
    });
    return resp.ok ? await resp.json() : null;
  } catch {
    return null;
  }
}

// --- clicks ---------------------------------------------------------------------------------

/**
 * What to do after the click route answered `status` (0: no answer): `recorded` (2xx),
 * `retry` (no answer, 401 — the token expired —, 408, 429, 5xx: queue it) or `dropped` (any
 * other 4xx, e.g. 404 for a notification that is not this user's or was deleted: retrying
 * cannot help).
 */
export function clickOutcome(status) {
  if (status >= 200 && status < 300) return 'recorded';
  if (status === 0 || status === 401 || status === 408 || status === 429 || status >= 500) return 'retry';
  return 'dropped';
}

/**
 * Records a click on `id` with `session`'s token: `{outcome, status, reason?}` (see
 * `clickOutcome`; without a usable token the outcome is `retry` with status 0). Never throws.
 */
export async function recordClick({ id, session, fetch = globalThis.fetch, now = Date.now() }) {
  if (!usableSession(session, now)) return { outcome: 'retry', status: 0, reason: 'no valid token' };
  try {
    const resp = await fetch(apiUrl(session.httpUrl, `/v1/notifications/${encodeURIComponent(id)}/click`), {
      method: 'POST',
      headers: { authorization: `Bearer ${session.token}` },
      signal: timeoutSignal(API_TIMEOUT_MS),
    });
    return { outcome: clickOutcome(resp.status), status: resp.status };
  } catch (e) {
    return { outcome: 'retry', status: 0, reason: e?.message ?? String(e) };
  }
}

/**
 * Sends queued clicks (`[{id, at, userId?}]`) with `session`, one at a time: `{sent, keep,
 * drop}` — `sent` the results of those tried, `keep` the entries to keep queued (retry, or
 * another user's), `drop` the ids to remove (recorded, refused for good, or too old).
 */
export async function flushClicks({ queue, session, fetch = globalThis.fetch, now = Date.now() }) {
  const sent = [];
  const keep = [];
  const drop = [];
  for (const entry of queue) {
    if (!(now - entry.at < QUEUED_CLICK_MAX_AGE_MS)) {
      drop.push(entry.id);
    } else if (!usableSession(session, now) || (entry.userId && entry.userId !== session.userId)) {
      keep.push(entry);
    } else {
      const result = await recordClick({ id: entry.id, session, fetch, now });
      sent.push({ id: entry.id, ...result });
      if (result.outcome === 'retry') keep.push(entry);
      else drop.push(entry.id);
    }
  }
  return { sent, keep, drop };
}

// --- subscribing (the page) -----------------------------------------------------------------

/** A step of enabling or disabling push that failed; `code` names the step. */
export class PushError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = 'PushError';
    this.code = code;
    this.status = status;
  }
}

/** Base64url (padded or not) to bytes. */
export function base64UrlToBytes(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** Bytes to base64url without padding. */
export function bytesToBase64Url(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  return btoa(String.fromCharCode(...view)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function sameBytes(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function withTimeout(promise, ms, message) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function problemText(resp) {
  const body = await resp.json().catch(() => ({}));
  return body.detail ?? body.title ?? body.message ?? '';
}

/**
 * Subscribes `registration` (a service worker registration) with the server's VAPID key and
 * registers the subscription: `GET /v1/push/vapid-public-key`, `pushManager.subscribe` (an
 * existing subscription is reused, or replaced when it was made with another key), then
 * `POST /v1/push-subscriptions`. Returns `{subscription, status}` (the API's view, 201 or 200);
 * throws `PushError` with `code` `not-configured`, `vapid-key`, `subscribe` or `register`.
 * Notification permission is the caller's (it needs a user gesture).
 */
export async function enablePush({ registration, httpUrl, token, fetch = globalThis.fetch, subscribeTimeoutMs = SUBSCRIBE_TIMEOUT_MS }) {
  const auth = { authorization: `Bearer ${token}` };
  const keyResp = await fetch(apiUrl(httpUrl, '/v1/push/vapid-public-key'), { headers: auth });
  if (keyResp.status === 404) {
    throw new PushError('not-configured', 'Web Push is not configured on this server (no VAPID key)', 404);
  }
  if (!keyResp.ok) {
    throw new PushError('vapid-key', `GET /v1/push/vapid-public-key: ${keyResp.status} ${await problemText(keyResp)}`.trim(), keyResp.status);
  }
  const { publicKey } = await keyResp.json().catch(() => ({}));
  if (typeof publicKey !== 'string' || publicKey === '') {
    throw new PushError('vapid-key', 'GET /v1/push/vapid-public-key answered without a publicKey', keyResp.status);
  }
  const key = base64UrlToBytes(publicKey);

  let sub = await registration.pushManager.getSubscription();
  if (sub && !sameBytes(sub.options?.applicationServerKey, key)) {
    // Made with another server key: the push service would refuse our sends to it.
    await sub.unsubscribe().catch(() => {});
    sub = null;
  }
  if (!sub) {
    try {
      sub = await withTimeout(
        registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
        subscribeTimeoutMs,
        `no answer from the browser's push service within ${subscribeTimeoutMs / 1000} s`,
      );
    } catch (e) {
      throw new PushError('subscribe', `the browser could not subscribe: ${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${e.message}`);
    }
  }

  const resp = await fetch(apiUrl(httpUrl, '/v1/push-subscriptions'), {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify(sub.toJSON()),
  });
  if (!resp.ok) {
    throw new PushError('register', `POST /v1/push-subscriptions: ${resp.status} ${await problemText(resp)}`.trim(), resp.status);
  }
  return { subscription: await resp.json(), status: resp.status };
}

/**
 * Removes this browser's subscription: from the API (found by endpoint; the id is the API's)
 * and from the browser. Returns whether there was one.
 */
export async function disablePush({ registration, httpUrl, token, fetch = globalThis.fetch }) {
  const sub = await registration?.pushManager.getSubscription();
  if (!sub) return false;
  const auth = { authorization: `Bearer ${token}` };
  const list = await fetch(apiUrl(httpUrl, '/v1/push-subscriptions'), { headers: auth });
  if (!list.ok) throw new PushError('unregister', `GET /v1/push-subscriptions: ${list.status} ${await problemText(list)}`.trim(), list.status);
  const { items = [] } = await list.json();
  const mine = items.find((s) => s.endpoint === sub.endpoint);
  if (mine) {
    const resp = await fetch(apiUrl(httpUrl, `/v1/push-subscriptions/${encodeURIComponent(mine.id)}`), { method: 'DELETE', headers: auth });
    if (!resp.ok && resp.status !== 404) {
      throw new PushError('unregister', `DELETE /v1/push-subscriptions/${mine.id}: ${resp.status}`, resp.status);
    }
  }
  await sub.unsubscribe();
  return true;
}

// --- what the page leaves for the worker (IndexedDB) ----------------------------------------

const DB_NAME = 'herald-push';
const DB_VERSION = 1;

const done = (request) =>
  new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });

/**
 * The IndexedDB the page and the worker share (same origin): `session` holds the user's session
 * (`{userId, httpUrl, token, expiresAt}`), `clicks` the clicks waiting to be recorded
 * (`{id, at, userId}`, one per notification, at most `MAX_QUEUED_CLICKS`).
 */
export class PushStore {
  #db = null;
  #idb;

  constructor(idb = globalThis.indexedDB) {
    this.#idb = idb;
  }

  #open() {
    this.#db ??= new Promise((resolve, reject) => {
      const request = this.#idb.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = () => {
        request.result.createObjectStore('session');
        request.result.createObjectStore('clicks', { keyPath: 'id' });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    }).catch((e) => {
      this.#db = null;
      throw e;
    });
    return this.#db;
  }

  async #store(name, mode) {
    return (await this.#open()).transaction(name, mode).objectStore(name);
  }

  async session() {
    return (await done((await this.#store('session', 'readonly')).get('current'))) ?? null;
  }

  async setSession({ userId, httpUrl, token, expiresAt }) {
    await done((await this.#store('session', 'readwrite')).put({ userId, httpUrl, token, expiresAt }, 'current'));
  }

  async clearSession() {
    await done((await this.#store('session', 'readwrite')).delete('current'));
  }

  async queuedClicks() {
    const all = await done((await this.#store('clicks', 'readonly')).getAll());
    return all.sort((a, b) => a.at - b.at);
  }

  async queueClick(entry) {
    await done((await this.#store('clicks', 'readwrite')).put(entry));
    const all = await this.queuedClicks();
    if (all.length > MAX_QUEUED_CLICKS) await this.dropClicks(all.slice(0, all.length - MAX_QUEUED_CLICKS).map((e) => e.id));
  }

  async dropClicks(ids) {
    if (ids.length === 0) return;
    const store = await this.#store('clicks', 'readwrite');
    await Promise.all(ids.map((id) => done(store.delete(id))));
  }

  /** Sends the queued clicks with `session` (see `flushClicks`) and updates the queue. */
  async flush(session, fetch = globalThis.fetch) {
    const queue = await this.queuedClicks();
    if (queue.length === 0) return { sent: [], keep: [], drop: [] };
    const result = await flushClicks({ queue, session, fetch });
    await this.dropClicks(result.drop);
    return result;
  }
}
