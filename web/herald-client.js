// herald-client.js — the browser client of Herald's real-time protocol (docs/realtime.md; frame
// and action shapes in shared/src/protocol/frames.rs). A dependency-free ES module: it works in
// any browser, and in Node 20+ with an injected WebSocket (the unit tests inject fakes).
//
// Contract:
// - The inbox is loaded over HTTP first (counts, then the first page of the list), and `lastSeq`
//   starts at `counts.version`. Counts come first so that the list is at least as new as
//   `lastSeq`: every change after it is replayed by `sync`, and replaying a change the list
//   already shows is harmless (each change sets state, it does not add to it).
// - Every state-changing frame is applied exactly once and in `seq` order: a frame at or below
//   `lastSeq` is dropped, `lastSeq + 1` is applied, a later one is held while one `sync` (at most
//   one in flight) fetches the gap, and held frames are applied as soon as the gap is filled.
// - After every (re)connect the client sends `sync {since: lastSeq}`; `resync` reloads over HTTP.
// - The connection is reopened after any close, with exponential backoff and full jitter, and
//   proactively (new socket first, then the old one closed) before API Gateway's 2-hour cap.
// - Mutations are WebSocket actions; their effect arrives as frames, like any other device's.
//   Actions sent while disconnected are queued (bounded) and sent after the next `sync`.

/** Most ids one `markSeen` action may carry (`MARK_SEEN_MAX_IDS` on the server). */
export const MARK_SEEN_MAX_IDS = 100;

/** Actions kept while disconnected; older ones are dropped beyond this. */
const MAX_QUEUED_ACTIONS = 100;

/** Held out-of-order frames beyond this mean something is badly wrong: reload over HTTP. */
const MAX_HELD_FRAMES = 1000;

const DEFAULTS = {
  pageSize: 50,
  backoff: { baseMs: 500, maxMs: 30_000 },
  // API Gateway closes a WebSocket connection after 2 hours; reconnect 5 minutes before.
  maxConnectionMs: (2 * 60 - 5) * 60 * 1000,
  // A `sync` unanswered for this long is given up, so a lost reply cannot stall the client.
  syncTimeoutMs: 15_000,
};

const EVENTS = ['notification', 'updated', 'deleted', 'counts', 'change', 'status', 'error', 'pong'];

/**
 * The delay before reconnect attempt `attempt` (0-based): "full jitter", a uniform draw from
 * [0, min(maxMs, baseMs * 2^attempt)), so that clients dropped together do not return together.
 */
export function backoffDelay(attempt, { baseMs, maxMs } = DEFAULTS.backoff, random = Math.random) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** An HTTP call that did not answer 2xx; `problem` is the problem+json body when there is one. */
export class HttpError extends Error {
  constructor(status, url, problem) {
    super(`${status} from ${url}${problem?.detail ? `: ${problem.detail}` : ''}`);
    this.name = 'HttpError';
    this.status = status;
    this.problem = problem;
  }
}

const STATE_FRAMES = new Set(['notification.created', 'notification.updated', 'notification.deleted', 'counts']);

export class HeraldClient {
  #opts;
  #fetch;
  #WebSocket;
  #timers;
  #random;
  #listeners = new Map(EVENTS.map((e) => [e, new Set()]));

  #items = new Map(); // id → notification (not archived), what `notifications` shows
  #counts = null;
  #lastSeq = 0;
  #held = new Map(); // seq → frame that arrived before the frames below it
  #fetching = new Map(); // id → changes that arrived while a compact frame's notification is fetched

  #status = 'idle';
  #loading = false; // frames are held, not applied, while the inbox loads over HTTP
  #reloading = null; // the load in progress
  #ws = null;
  #attempt = 0;
  #reconnectTimer = null;
  #rotateTimer = null;
  #syncInFlight = false;
  #syncFrom = 0; // lastSeq when the sync in flight was sent
  #syncTimer = null;
  #queue = [];
  #closed = false;
  #started = null; // the promise start() returns
  #changePending = false;

  /**
   * @param {object} options see herald-client.d.ts (`HeraldClientOptions`)
   */
  constructor(options) {
    if (!options?.httpUrl || !options?.wsUrl || !options?.token) {
      throw new TypeError('HeraldClient needs httpUrl, wsUrl and token');
    }
    this.#opts = {
      ...DEFAULTS,
      ...options,
      backoff: { ...DEFAULTS.backoff, ...options.backoff },
      httpUrl: options.httpUrl.replace(/\/+$/, ''),
    };
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.#timers = options.timers ?? { setTimeout: globalThis.setTimeout.bind(globalThis), clearTimeout: globalThis.clearTimeout.bind(globalThis) };
    this.#random = options.random ?? Math.random;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError('no WebSocket implementation: pass options.WebSocket');
    }
  }

  // --- public API -------------------------------------------------------------------------

  /** Subscribes to an event; returns the function that unsubscribes. */
  on(event, fn) {
    const set = this.#listeners.get(event);
    if (!set) throw new TypeError(`unknown event ${JSON.stringify(event)}; known: ${EVENTS.join(', ')}`);
    set.add(fn);
    return () => set.delete(fn);
  }

  /**
   * Loads the inbox over HTTP (retrying with backoff, emitting `error` on each failure), then
   * opens the WebSocket. Resolves once the inbox is loaded; calling it again returns the same
   * promise.
   */
  start() {
    this.#started ??= this.#firstLoad();
    return this.#started;
  }

  async #firstLoad() {
    for (;;) {
      if (this.#closed) return;
      try {
        await this.#reload();
        break;
      } catch (e) {
        this.#emit('error', { code: 'http', message: `loading the inbox failed: ${e.message}`, cause: e });
        await new Promise((r) => this.#timers.setTimeout(r, this.#nextDelay()));
      }
    }
    this.#attempt = 0;
    this.#connect();
  }

  /** Number of unread notifications (server-exact, from the latest counts). */
  get unread() { return this.#counts?.unread ?? 0; }
  /** The latest counts (`{unread, unseen, total, byType, version}`), or null before the first load. */
  get counts() { return this.#counts ? { ...this.#counts, byType: { ...this.#counts.byType } } : null; }
  /** Loaded notifications that are not archived, newest first. */
  get notifications() {
    return [...this.#items.values()].sort((a, b) => b.seq - a.seq).map((n) => ({ ...n }));
  }
  /** The highest `seq` applied. */
  get lastSeq() { return this.#lastSeq; }
  /** `idle`, `loading`, `connecting`, `open`, `reconnecting` or `closed`. */
  get status() { return this.#status; }

  markRead(id) { this.#action({ action: 'markRead', id }); }
  markSeen(ids) {
    const list = [...ids];
    for (let i = 0; i < list.length; i += MARK_SEEN_MAX_IDS) {
      this.#action({ action: 'markSeen', ids: list.slice(i, i + MARK_SEEN_MAX_IDS) });
    }
  }
  markAllRead(type) { this.#action(type ? { action: 'markAllRead', type } : { action: 'markAllRead' }); }
  archive(id) { this.#action({ action: 'archive', id }); }
  click(id) { this.#action({ action: 'click', id }); }
  ping() { this.#action({ action: 'ping' }); }

  /**
   * Closes the connection for good: no reconnect, no more events after `status: closed`; an
   * action after it throws.
   */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [this.#reconnectTimer, this.#rotateTimer, this.#syncTimer]) {
      if (t !== null) this.#timers.clearTimeout(t);
    }
    const ws = this.#ws;
    this.#ws = null;
    ws?.close(1000, 'client closed');
    this.#setStatus('closed');
  }

  // --- events ---------------------------------------------------------------------------------

  #emit(event, payload) {
    for (const fn of this.#listeners.get(event)) {
      try {
        fn(payload);
      } catch (e) {
        // A listener's bug must not break frame processing.
        if (event !== 'error') this.#emit('error', { code: 'listener', message: String(e?.message ?? e), cause: e });
      }
    }
  }

  /** One `change` per burst of updates (a sync page applies many frames at once). */
  #changed() {
    if (this.#changePending) return;
    this.#changePending = true;
    queueMicrotask(() => {
      this.#changePending = false;
      if (!this.#closed) this.#emit('change', { notifications: this.notifications, counts: this.counts, unread: this.unread });
    });
  }

  #setStatus(status) {
    if (this.#status === status) return;
    this.#status = status;
    this.#emit('status', status);
  }

  // --- HTTP -----------------------------------------------------------------------------------

  async #token() {
    const t = this.#opts.token;
    return typeof t === 'function' ? await t() : t;
  }

  async #get(path) {
    const url = `${this.#opts.httpUrl}${path}`;
    const resp = await this.#fetch(url, { headers: { authorization: `Bearer ${await this.#token()}` } });
    if (!resp.ok) {
      let problem;
      try { problem = await resp.json(); } catch { problem = undefined; }
      throw new HttpError(resp.status, url, problem);
    }
    return resp.json();
  }

  /**
   * (Re)loads counts, then the first page; frames arriving meanwhile are held, then applied.
   * Concurrent callers share one reload.
   */
  #reload() {
    this.#reloading ??= this.#load().finally(() => { this.#reloading = null; });
    return this.#reloading;
  }

  async #load() {
    if (this.#status === 'idle') this.#setStatus('loading');
    this.#loading = true;
    try {
      const counts = await this.#get('/v1/notifications/counts');
      const page = await this.#get(`/v1/notifications?limit=${this.#opts.pageSize}`);
      this.#items = new Map(page.items.filter((n) => !n.archived).map((n) => [n.id, { ...n }]));
      this.#counts = counts;
      this.#lastSeq = counts.version;
    } finally {
      this.#loading = false;
    }
    this.#emit('counts', this.counts);
    this.#changed();
    this.#drain();
  }

  /** Fetches the notification a compact `notification.created` frame left out. */
  async #fetchCreated(id) {
    this.#fetching.set(id, []);
    try {
      const n = await this.#get(`/v1/notifications/${encodeURIComponent(id)}`);
      const later = this.#fetching.get(id);
      if (later === null || this.#closed) return; // deleted meanwhile
      for (const changes of later) applyFlags(n, changes);
      if (!n.archived) this.#items.set(id, n);
      this.#emit('notification', { ...n });
      this.#changed();
    } catch (e) {
      // 404: deleted before we asked. Anything else: it shows up at the next reload.
      if (!(e instanceof HttpError && e.status === 404)) {
        this.#emit('error', { code: 'http', message: `fetching notification ${id} failed: ${e.message}`, cause: e });
      }
    } finally {
      this.#fetching.delete(id);
    }
  }

  // --- WebSocket ------------------------------------------------------------------------------

  async #connect() {
    if (this.#closed) return;
    this.#setStatus(this.#status === 'open' ? 'open' : (this.#attempt === 0 ? 'connecting' : 'reconnecting'));
    let token;
    try {
      token = await this.#token();
    } catch (e) {
      this.#emit('error', { code: 'token', message: `getting a token failed: ${e.message}`, cause: e });
      this.#scheduleReconnect();
      return;
    }
    if (this.#closed) return;
    const previous = this.#ws;
    const ws = new this.#WebSocket(`${this.#opts.wsUrl}?token=${encodeURIComponent(token)}`);
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    const current = () => ws === this.#ws;

    ws.onopen = () => {
      if (!current()) return;
      // The proactive replacement is up: the old socket may go (frames it still delivers are
      // dropped by seq, or fill a gap).
      if (previous && previous !== ws) previous.close(1000, 'replaced');
      this.#setStatus('open');
      this.#syncInFlight = false;
      this.#requestSync(true);
      this.#flushQueue();
      if (this.#rotateTimer !== null) this.#timers.clearTimeout(this.#rotateTimer);
      this.#rotateTimer = this.#timers.setTimeout(() => {
        this.#rotateTimer = null;
        this.#connect();
      }, this.#opts.maxConnectionMs);
    };
    // Frames from a socket being replaced still count: seq order makes them safe.
    ws.onmessage = (ev) => this.#receive(ev.data);
    ws.onclose = () => {
      if (!current() || this.#closed) return;
      if (previous && previous !== ws) previous.close(1000, 'replacement failed');
      this.#ws = null;
      this.#syncInFlight = false;
      if (this.#syncTimer !== null) this.#timers.clearTimeout(this.#syncTimer);
      if (this.#rotateTimer !== null) this.#timers.clearTimeout(this.#rotateTimer);
      this.#rotateTimer = null;
      this.#setStatus('reconnecting');
      this.#scheduleReconnect();
    };
    ws.onerror = () => {}; // a close event follows and handles it
  }

  #nextDelay() {
    return backoffDelay(this.#attempt++, this.#opts.backoff, this.#random);
  }

  #scheduleReconnect() {
    if (this.#closed || this.#reconnectTimer !== null) return;
    this.#reconnectTimer = this.#timers.setTimeout(() => {
      this.#reconnectTimer = null;
      this.#connect();
    }, this.#nextDelay());
  }

  #isOpen() {
    return this.#ws !== null && this.#ws.readyState === 1;
  }

  #send(obj) {
    this.#ws.send(JSON.stringify(obj));
  }

  #action(obj) {
    if (this.#closed) throw new Error('the client is closed');
    if (this.#isOpen()) {
      this.#send(obj);
      return;
    }
    this.#queue.push(obj);
    if (this.#queue.length > MAX_QUEUED_ACTIONS) this.#queue.shift();
  }

  #flushQueue() {
    const queued = this.#queue;
    this.#queue = [];
    for (const obj of queued) this.#send(obj);
  }

  /**
   * Sends `sync {since: lastSeq}` unless one is in flight (or `force`, after a connect: the
   * previous socket's reply will never come). One in flight at a time: its reply covers every
   * gap below the server's head.
   */
  #requestSync(force = false) {
    if (!this.#isOpen() || this.#loading || (this.#syncInFlight && !force)) return;
    this.#syncInFlight = true;
    this.#syncFrom = this.#lastSeq;
    this.#send({ action: 'sync', since: this.#lastSeq });
    if (this.#syncTimer !== null) this.#timers.clearTimeout(this.#syncTimer);
    this.#syncTimer = this.#timers.setTimeout(() => {
      this.#syncTimer = null;
      this.#syncInFlight = false;
      if (this.#hasGap()) this.#requestSync();
    }, this.#opts.syncTimeoutMs);
  }

  #syncDone() {
    this.#syncInFlight = false;
    if (this.#syncTimer !== null) this.#timers.clearTimeout(this.#syncTimer);
    this.#syncTimer = null;
    // The connection works end to end: the next failure starts the backoff from the beginning.
    this.#attempt = 0;
    if (!this.#hasGap() || this.#loading) return;
    if (this.#lastSeq === this.#syncFrom) {
      // The server's change log could not fill the gap (it always holds a committed change
      // below one we were sent): start again from HTTP rather than asking in a loop.
      this.#reloadOrReconnect();
    } else {
      this.#requestSync();
    }
  }

  /** Reloads over HTTP; if that fails, reconnects, whose `sync` leads back here if needed. */
  #reloadOrReconnect() {
    this.#reload().catch((e) => {
      this.#emit('error', { code: 'http', message: `reloading the inbox failed: ${e.message}`, cause: e });
      this.#ws?.close(4000, 'reload failed');
    });
  }

  #hasGap() {
    return this.#held.size > 0;
  }

  // --- frames ---------------------------------------------------------------------------------

  #receive(data) {
    if (this.#closed) return;
    let frame;
    try {
      frame = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch {
      this.#emit('error', { code: 'protocol', message: 'a frame that is not JSON' });
      return;
    }
    switch (frame?.type) {
      case 'notification.created':
      case 'notification.updated':
      case 'notification.deleted':
      case 'counts':
        this.#offer(frame);
        break;
      case 'sync.result':
        for (const change of frame.changes ?? []) this.#offer(change);
        if (!frame.more) this.#syncDone();
        break;
      case 'resync':
        // The reload holds frames from its first step on, so the sync below waits for it.
        this.#reloadOrReconnect();
        this.#syncDone();
        break;
      case 'pong':
        this.#emit('pong', frame);
        break;
      case 'error':
        this.#emit('error', { code: frame.code, message: frame.message, action: frame.action });
        break;
      default:
        // Unknown frame types are ignored: newer servers may send more.
        break;
    }
  }

  /** Applies `frame` if it is next, drops it if it is old, holds it (and syncs) if early. */
  #offer(frame) {
    if (!STATE_FRAMES.has(frame.type) || !Number.isSafeInteger(frame.seq)) return;
    if (this.#loading) {
      this.#held.set(frame.seq, frame);
      return;
    }
    if (frame.seq <= this.#lastSeq) return;
    if (frame.seq === this.#lastSeq + 1) {
      this.#apply(frame);
      this.#drain();
      return;
    }
    this.#held.set(frame.seq, frame);
    if (this.#held.size > MAX_HELD_FRAMES) {
      this.#reloadOrReconnect();
      return;
    }
    this.#requestSync();
  }

  /** Applies held frames that are now next; drops the ones already covered. */
  #drain() {
    for (const seq of [...this.#held.keys()]) {
      if (seq <= this.#lastSeq) this.#held.delete(seq);
    }
    let next;
    while ((next = this.#held.get(this.#lastSeq + 1))) {
      this.#held.delete(next.seq);
      this.#apply(next);
    }
    if (this.#hasGap()) this.#requestSync();
  }

  #apply(frame) {
    this.#lastSeq = frame.seq;
    switch (frame.type) {
      case 'notification.created':
        if (frame.notification) {
          if (!frame.notification.archived) this.#items.set(frame.id, { ...frame.notification });
          this.#emit('notification', { ...frame.notification });
        } else {
          this.#fetchCreated(frame.id);
        }
        break;
      case 'notification.updated': {
        const changes = frame.changes ?? {};
        this.#fetching.get(frame.id)?.push(changes);
        const item = this.#items.get(frame.id);
        if (item) {
          applyFlags(item, changes);
          // A digest item that collected one more event (docs/workflows.md); the compact frame
          // leaves its events out, so the item is fetched again.
          if (frame.digest?.items?.length === 0 && frame.digest.count > 0) this.#fetchCreated(frame.id);
          else if (frame.digest) item.digest = frame.digest;
          if (item.archived) this.#items.delete(frame.id);
        } else if (changes.archived === false) {
          this.#fetchCreated(frame.id); // unarchived: back in the list
        }
        this.#emit('updated', { id: frame.id, changes, notification: item ? { ...item } : undefined });
        break;
      }
      case 'notification.deleted':
        if (this.#fetching.has(frame.id)) this.#fetching.set(frame.id, null);
        this.#items.delete(frame.id);
        this.#emit('deleted', { id: frame.id });
        break;
      case 'counts': {
        const type = frame.allRead?.notificationType;
        if (frame.allRead) {
          for (const item of this.#items.values()) {
            if (item.seq < frame.seq && (!type || item.type === type)) {
              item.read = true;
              item.seen = true;
            }
          }
        }
        break;
      }
    }
    if (frame.counts) {
      this.#counts = frame.counts;
      this.#emit('counts', this.counts);
    }
    this.#changed();
  }
}

function applyFlags(n, changes) {
  for (const k of ['read', 'seen', 'archived']) {
    if (typeof changes[k] === 'boolean') n[k] = changes[k];
  }
}
