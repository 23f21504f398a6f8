// Test doubles for herald-client.js: a WebSocket the test drives by hand, an inbox served over a
// fake fetch, and timers that fire only when the test says so.

/** A WebSocket whose server side is the test: `open()`, `deliver(frame)`, `serverClose()`. */
export class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  /** Every socket constructed, oldest first. */
  static all = [];

  constructor(url) {
    this.url = url;
    this.readyState = FakeSocket.CONNECTING;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }

  static reset() {
    FakeSocket.all = [];
  }

  static get last() {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }

  send(data) {
    if (this.readyState !== FakeSocket.OPEN) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data));
  }

  close(code = 1000, reason = '') {
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    this.closedWith = { code, reason };
    this.onclose?.({ code, reason });
  }

  // --- the server's side ---
  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.({});
  }

  deliver(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  serverClose(code = 1001) {
    this.close(code, 'server');
  }

  /** The actions sent, by name. */
  actions(name) {
    return this.sent.filter((a) => a.action === name);
  }
}

/** Counts as the server reports them. */
export function counts(version, unread, byType = {}) {
  return { unread, unseen: unread, total: unread, byType, version };
}

/** A stored notification. */
export function notification(seq, { type = 'comment', read = false, title } = {}) {
  return {
    id: `n${seq}`,
    seq,
    userId: 'alice',
    type,
    title: title ?? `notification ${seq}`,
    body: '',
    data: {},
    channels: ['IN_APP'],
    priority: 'NORMAL',
    read,
    seen: read,
    archived: false,
    createdAt: new Date(1_700_000_000_000 + seq * 1000).toISOString(),
  };
}

/** A `notification.created` frame (compact when `compact`). */
export function created(seq, unread, { compact = false, type = 'comment' } = {}) {
  const frame = { type: 'notification.created', seq, id: `n${seq}`, counts: counts(seq, unread) };
  if (!compact) frame.notification = notification(seq, { type });
  return frame;
}

/**
 * An inbox behind a fake `fetch`: `state.counts`, `state.items` (newest first) answer the list,
 * counts and get routes; `calls` records every request.
 */
export function fakeServer(state) {
  const calls = [];
  const json = (status, body) => ({ ok: status >= 200 && status < 300, status, json: async () => body });
  const fetch = async (url, init = {}) => {
    const u = new URL(url);
    calls.push({ path: u.pathname, search: u.search, authorization: init.headers?.authorization });
    if (state.fail) return json(503, { detail: 'unavailable' });
    if (u.pathname === '/v1/notifications/counts') return json(200, structuredClone(state.counts));
    if (u.pathname === '/v1/notifications') return json(200, { items: structuredClone(state.items), nextCursor: null });
    const m = u.pathname.match(/^\/v1\/notifications\/([^/]+)$/);
    if (m) {
      const n = (state.byId ?? {})[decodeURIComponent(m[1])] ?? state.items.find((i) => i.id === m[1]);
      return n ? json(200, structuredClone(n)) : json(404, { detail: 'not found' });
    }
    return json(404, { detail: 'no route' });
  };
  return { fetch, calls };
}

/** Timers that run only when `fire` or `fireAll` is called. `delays` records every delay asked. */
export function manualTimers() {
  let next = 1;
  const pending = new Map();
  const delays = [];
  return {
    delays,
    pending,
    setTimeout(fn, ms) {
      const id = next++;
      pending.set(id, { fn, ms });
      delays.push(ms);
      return id;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    /** Fires every pending timer whose delay is `ms` (or every one when `ms` is undefined). */
    fire(ms) {
      for (const [id, t] of [...pending]) {
        if (ms === undefined || t.ms === ms) {
          pending.delete(id);
          t.fn();
        }
      }
    },
  };
}

/** Lets promises, microtasks and pending I/O callbacks run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
