// The demo inbox (index.html): a session from devstack, then herald-client.js keeps the list
// and the badge in step with the server. Nothing here knows the protocol; the client does.

import { HeraldClient } from './herald-client.js';
import { PushError, PushStore, disablePush, enablePush } from './herald-push.js';

const el = (id) => document.querySelector(`[data-testid="${id}"]`);

/** Renew the session token this long before it expires. */
const RENEW_BEFORE_MS = 5 * 60 * 1000;

/** Bound of waiting for the service worker to activate. */
const WORKER_READY_MS = 10_000;

/** A token for `user` (a random demo user when absent), with the API's and WebSocket's URLs. */
async function fetchSession(user) {
  const query = user ? `?user=${encodeURIComponent(user)}` : '';
  const resp = await fetch(`/_devstack/demo/session${query}`);
  if (!resp.ok) throw new Error(`session: ${resp.status} ${await resp.text()}`);
  const s = await resp.json();
  return { ...s, expiresAt: Date.now() + s.expiresIn * 1000 };
}

function log(text, kind = 'info') {
  const li = document.createElement('li');
  li.className = kind;
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  const list = el('log');
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

function render(client) {
  const unread = client.unread;
  const badge = el('badge');
  badge.textContent = String(unread);
  badge.classList.toggle('zero', unread === 0);
  document.title = unread > 0 ? `(${unread}) Herald · demo inbox` : 'Herald · demo inbox';

  const c = client.counts;
  el('counts').textContent = c ? `${c.unread} unread · ${c.unseen} unseen · ${c.total} total · seq ${client.lastSeq}` : '';

  const template = document.getElementById('item-template');
  const items = client.notifications.map((n) => {
    const li = template.content.firstElementChild.cloneNode(true);
    li.dataset.id = n.id;
    li.dataset.read = String(n.read);
    li.classList.toggle('unread', !n.read);
    li.classList.toggle('unseen', !n.seen);
    li.querySelector('[data-testid="item-type"]').textContent = n.type;
    // A digest item shows how many events it collected and the latest one.
    const latest = n.digest?.items?.at(-1);
    li.querySelector('[data-testid="item-title"]').textContent =
      n.digest ? `${latest?.title ?? n.title} · ${n.digest.count} events` : n.title;
    li.querySelector('[data-testid="item-body"]').textContent = latest?.body ?? n.body;
    const time = li.querySelector('[data-testid="item-time"]');
    time.dateTime = n.createdAt;
    time.textContent = new Date(n.createdAt).toLocaleString();
    li.querySelector('[data-testid="mark-read"]').hidden = n.read;
    return li;
  });
  el('list').replaceChildren(...items);
  el('empty').hidden = items.length > 0;
}

// --- Browser push (sw.js, herald-push.js) ---------------------------------------------------
//
// The worker records clicks with the user's token, which it reads from IndexedDB (PushStore):
// the page leaves its session there while push is on (and refreshes it with every renewal), and
// removes it when push is turned off. Clicks the worker could not record (its token had expired)
// are queued there too; the page sends them with its own token when it starts.

const pushSupported = 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window && 'indexedDB' in window;
const pushStore = pushSupported ? new PushStore() : null;

/** The state of the push panel: `checking` (at load), `off`, `working`, `on`, `error`, `denied` or `unsupported`. */
function setPushState(state, text, status) {
  const out = el('push-state');
  out.dataset.state = state;
  if (status === undefined) delete out.dataset.status;
  else out.dataset.status = String(status);
  out.textContent = text;
  el('push-enable').hidden = state === 'on';
  el('push-enable').disabled = state === 'working' || state === 'unsupported';
  el('push-disable').hidden = state !== 'on';
}

/** What the worker reports (sw.js): logged, and kept for the console and the browser test. */
function onWorkerMessage(m) {
  if (!m || typeof m.type !== 'string' || !m.type.startsWith('herald:')) return;
  window.heraldPush.messages.push(m);
  if (m.type === 'herald:push-shown') {
    log(`push shown: ${m.title}${m.trimmed ? (m.fetched ? ' (trimmed; completed from the API)' : ' (trimmed)') : ''}`);
  } else if (m.type === 'herald:click') {
    const what = m.outcome === 'retry' ? 'queued' : m.outcome;
    log(`push click ${m.id?.slice(-6) ?? '-'}: ${what}${m.status ? ` (${m.status})` : ''}; ${m.opened ?? ''}`, m.outcome === 'recorded' ? 'info' : 'error');
  }
}

async function waitForWorker() {
  let timer;
  try {
    return await Promise.race([
      navigator.serviceWorker.ready,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the service worker did not activate within ${WORKER_READY_MS / 1000} s`)), WORKER_READY_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The push panel: shows whether this browser is subscribed for this user, keeps the worker's
 * token fresh, sends queued clicks, and wires the buttons. `current()` is the page's session,
 * renewed when it is close to expiring.
 */
async function setupPush(current) {
  // `ready`: the panel shows this browser's state and queued clicks were sent (the test waits).
  window.heraldPush = { messages: [], store: pushStore, ready: false };
  if (!pushSupported) {
    setPushState('unsupported', 'this browser has no Web Push (service workers, PushManager, Notification, IndexedDB)');
    window.heraldPush.ready = true;
    return { sessionRenewed: async () => {} };
  }
  navigator.serviceWorker.addEventListener('message', (e) => onWorkerMessage(e.data));

  let on = false;
  const sessionRenewed = async (session) => {
    const flushed = await pushStore.flush(session);
    for (const c of flushed.sent) log(`queued push click ${c.id.slice(-6)}: ${c.outcome} (${c.status || 'no answer'})`, c.outcome === 'recorded' ? 'info' : 'error');
    if (on) await pushStore.setSession(session);
  };

  const session = await current();
  const registration = await navigator.serviceWorker.getRegistration();
  const subscription = await registration?.pushManager.getSubscription();
  const stored = await pushStore.session();
  if (subscription && stored?.userId === session.userId && Notification.permission === 'granted') {
    on = true;
    setPushState('on', 'on: this browser gets Web Push for this user');
  } else {
    // Subscribed for another user, or not at all: this user's token is not left for the worker.
    if (stored && stored.userId === session.userId) await pushStore.clearSession();
    if (Notification.permission === 'denied') setPushState('denied', 'notifications are blocked for this site');
    else setPushState('off', 'off');
  }
  await sessionRenewed(session).catch((e) => log(`push: ${e.message}`, 'error'));
  window.heraldPush.ready = true;

  el('push-enable').addEventListener('click', async () => {
    setPushState('working', 'asking for permission…');
    try {
      const permission = await Notification.requestPermission();
      if (permission !== 'granted') {
        setPushState('denied', permission === 'denied' ? 'notifications are blocked for this site' : 'notification permission was not given');
        return;
      }
      setPushState('working', 'registering the service worker…');
      await navigator.serviceWorker.register('sw.js', { type: 'module' });
      const ready = await waitForWorker();
      setPushState('working', 'subscribing…');
      const s = await current();
      const { subscription: view, status } = await enablePush({ registration: ready, httpUrl: s.httpUrl, token: s.token });
      await pushStore.setSession(s);
      on = true;
      setPushState('on', `on: subscription ${view.id} registered (${status})`, status);
      log(`push on: POST /v1/push-subscriptions → ${status}`);
    } catch (e) {
      const text = e instanceof PushError ? e.message : `failed: ${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${e.message}`;
      setPushState('error', text, e.status ?? 'error');
      log(`push: ${text}`, 'error');
    }
  });

  el('push-disable').addEventListener('click', async () => {
    setPushState('working', 'turning off…');
    try {
      const s = await current();
      const registration = await navigator.serviceWorker.getRegistration();
      await disablePush({ registration, httpUrl: s.httpUrl, token: s.token });
      await pushStore.clearSession();
      on = false;
      setPushState('off', 'off');
      log('push off');
    } catch (e) {
      setPushState('error', e.message, e.status ?? 'error');
      log(`push: ${e.message}`, 'error');
    }
  });

  return { sessionRenewed };
}

async function main() {
  const params = new URLSearchParams(location.search);
  let session = await fetchSession(params.get('user'));
  // Keep the same inbox across reloads (and in a second tab: another "device" of this user).
  if (params.get('user') !== session.userId) {
    params.set('user', session.userId);
    history.replaceState(null, '', `?${params}`);
  }
  el('user').textContent = session.userId;

  let push = null;
  /** The session, renewed when it is close to expiring (and handed to the worker then). */
  const current = async () => {
    if (Date.now() > session.expiresAt - RENEW_BEFORE_MS) {
      session = await fetchSession(session.userId);
      await push?.sessionRenewed(session).catch((e) => log(`push: ${e.message}`, 'error'));
    }
    return session;
  };
  const token = async () => (await current()).token;
  const client = new HeraldClient({ httpUrl: session.httpUrl, wsUrl: session.wsUrl, token });
  // For the console and the browser test.
  window.herald = client;

  client.on('change', () => render(client));
  client.on('status', (s) => {
    const status = el('status');
    status.dataset.status = s;
    status.textContent = { loading: 'loading', connecting: 'connecting', open: 'live', reconnecting: 'reconnecting…', closed: 'closed' }[s] ?? s;
    log(`connection: ${s}`);
  });
  client.on('notification', (n) => log(`new: ${n.title} (seq ${n.seq})`));
  client.on('updated', (u) => log(`updated ${u.id.slice(-6)}: ${JSON.stringify(u.changes)}`));
  client.on('deleted', (d) => log(`deleted ${d.id.slice(-6)}`));
  client.on('error', (e) => log(`${e.code}: ${e.message}`, 'error'));

  el('list').addEventListener('click', (ev) => {
    const button = ev.target.closest('button');
    const id = ev.target.closest('[data-id]')?.dataset.id;
    if (!id) return;
    if (button?.dataset.testid === 'mark-read') client.markRead(id);
    else if (button?.dataset.testid === 'archive') client.archive(id);
    else client.click(id);
  });
  el('mark-all-read').addEventListener('click', () => client.markAllRead());
  el('bell').addEventListener('click', () => {
    const unseen = client.notifications.filter((n) => !n.seen).map((n) => n.id);
    if (unseen.length > 0) client.markSeen(unseen);
    el('list').scrollIntoView({ behavior: 'smooth' });
  });

  // The form's "When": undefined (now), an RFC 3339 time some seconds ahead, or 'optimal'.
  const sendAt = (when) => {
    if (!when || when === 'now') return undefined;
    if (when === 'optimal') return 'optimal';
    return new Date(Date.now() + Number(when) * 1000).toISOString();
  };

  el('send-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const out = el('send-result');
    const button = el('send-button');
    button.disabled = true;
    out.className = '';
    delete out.dataset.status; // set again when the answer is in
    delete out.dataset.id;
    out.textContent = 'sending…';
    try {
      const resp = await fetch('/_devstack/demo/send', {
        method: 'POST',
        headers: { authorization: `Bearer ${await token()}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          title: form.get('title'),
          body: form.get('body'),
          type: form.get('type'),
          channels: form.get('push') ? ['IN_APP', 'PUSH'] : undefined,
          sendAt: sendAt(form.get('when')),
        }),
      });
      const body = await resp.json().catch(() => ({}));
      out.dataset.status = String(resp.status);
      if (body.id) out.dataset.id = body.id;
      if (resp.status === 202) {
        out.className = 'ok';
        const why = body.reason ? `, ${body.reason}` : '';
        out.textContent = `202: scheduled ${body.id} for ${body.sendAt}${why}`;
      } else if (resp.ok) {
        out.className = 'ok';
        out.textContent = `${resp.status}: created ${body.id} (seq ${body.seq})`;
      } else {
        out.className = 'error';
        out.textContent = `${resp.status}: ${body.detail ?? body.message ?? 'failed'}`;
      }
    } catch (e) {
      out.dataset.status = 'error';
      out.className = 'error';
      out.textContent = `failed: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  });

  el('broadcast-button').addEventListener('click', async () => {
    const form = new FormData(el('send-form'));
    const out = el('send-result');
    const button = el('broadcast-button');
    button.disabled = true;
    out.className = '';
    delete out.dataset.status;
    delete out.dataset.id;
    out.textContent = 'broadcasting…';
    try {
      const resp = await fetch('/_devstack/demo/broadcast', {
        method: 'POST',
        headers: { authorization: `Bearer ${await token()}`, 'content-type': 'application/json' },
        body: JSON.stringify({ title: form.get('title'), body: form.get('body'), type: form.get('type') }),
      });
      const body = await resp.json().catch(() => ({}));
      out.dataset.status = String(resp.status);
      if (body.broadcastId) out.dataset.id = body.broadcastId;
      out.className = resp.ok ? 'ok' : 'error';
      out.textContent = resp.ok
        ? `${resp.status}: broadcast ${body.broadcastId} to topic ${body.topic} (${body.status})`
        : `${resp.status}: ${body.detail ?? body.message ?? 'failed'}`;
    } catch (e) {
      out.dataset.status = 'error';
      out.className = 'error';
      out.textContent = `failed: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  });

    render(client);
  // Alongside the inbox: neither waits for the other.
  const pushReady = setupPush(current).then(
    (p) => {
      push = p;
    },
    (e) => setPushState('error', `push: ${e.message}`, 'error'),
  );
  await Promise.all([client.start(), pushReady]);
}

main().catch((e) => {
  log(`the demo could not start: ${e.message}`, 'error');
  el('status').dataset.status = 'failed';
  el('status').textContent = 'failed';
});
