// sw.js — the demo page's service worker (a module worker: register with {type: 'module'}).
// It shows Herald's Web Push messages and records clicks on them; the rules are herald-push.js's.
//
// - push: the payload (`{id, title, body, actionUrl?, data?}`, or `{id, title}` when trimmed) is
//   shown with `showNotification(title, {body, tag: id, data: {id, actionUrl, url}})`; a trimmed
//   one is completed with `GET /v1/notifications/{id}` when a token is at hand.
// - notificationclick: the notification is closed, the click recorded
//   (`POST /v1/notifications/{id}/click` with the token the page left in IndexedDB; queued when
//   that cannot be done now) and `actionUrl` (or the demo page) focused or opened — all of it
//   without any page of ours being open.
// - Every open page of the origin hears what happened: `{type: 'herald:push-shown', ...}` and
//   `{type: 'herald:click', ...}` (the demo page logs them; the browser test waits for them).
// - message `{type: 'herald:simulate-click', tag}`: runs the click handler for the notification
//   shown with that tag, as a click would. For tests: a headless browser cannot click a system
//   notification. Only pages of this origin can post it, and they hold the token anyway.

import {
  PushStore,
  appPage,
  clickTarget,
  fetchNotification,
  notificationToShow,
  parsePushPayload,
  recordClick,
  usableSession,
  withFetched,
} from './herald-push.js';

const store = new PushStore();

/** The stored session, or null when IndexedDB fails (the worker then works without a token). */
const session = () => store.session().catch(() => null);

/** Tells every window of ours. */
async function tell(message) {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const w of windows) w.postMessage(message);
}

async function showPush(text) {
  let payload = parsePushPayload(text);
  const { trimmed } = payload;
  const current = await session();
  let fetched = false;
  if (trimmed) {
    const stored = await fetchNotification({ id: payload.id, session: current });
    if (stored) {
      payload = withFetched(payload, stored);
      fetched = true;
    }
  }
  const { title, options } = notificationToShow(payload, { fallbackUrl: appPage(self.registration.scope, current?.userId) });
  await self.registration.showNotification(title, options);
  await tell({ type: 'herald:push-shown', id: payload.id, title, body: options.body, trimmed, fetched });
}

/** Focuses a window already at `url`, else opens one. Browsers allow both only during a click. */
async function open(url) {
  try {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const same = windows.find((w) => w.url === url);
    if (same) {
      await same.focus();
      return 'focused';
    }
    await self.clients.openWindow(url);
    return 'opened';
  } catch (e) {
    return `not opened: ${e.message}`;
  }
}

/** Records a click on `id` (queued when it cannot be now), then sends clicks queued earlier. */
async function record(id) {
  const current = await session();
  const result = await recordClick({ id, session: current });
  if (result.outcome === 'retry') {
    await store.queueClick({ id, at: Date.now(), userId: current?.userId ?? null }).catch(() => {});
  } else if (usableSession(current)) {
    await store.flush(current).catch(() => {});
  }
  return result;
}

/** What a click on a notification shown with `data` does. */
async function handleClick(data) {
  // `url` was chosen when the notification was shown; checked again, as data may be anything.
  const url = data?.url
    ? clickTarget(data.url, self.registration.scope)
    : appPage(self.registration.scope, (await session())?.userId);
  const [click, opened] = await Promise.all([data?.id ? record(data.id) : { outcome: 'none', status: 0 }, open(url)]);
  await tell({ type: 'herald:click', id: data?.id ?? null, url, opened, ...click });
}

self.addEventListener('install', () => self.skipWaiting());

self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  event.waitUntil(showPush(event.data ? event.data.text() : ''));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil(handleClick(event.notification.data));
});

self.addEventListener('message', (event) => {
  if (event.data?.type !== 'herald:simulate-click') return;
  event.waitUntil(
    (async () => {
      const [notification] = await self.registration.getNotifications({ tag: String(event.data.tag) });
      if (!notification) {
        await tell({ type: 'herald:click', id: null, outcome: 'no-notification', status: 0, tag: event.data.tag });
        return;
      }
      notification.close();
      await handleClick(notification.data);
    })(),
  );
});
