// Unit tests of herald-client.js against a fake WebSocket, a fake fetch and manual timers.
// Run: node --test web/test/

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';

import { HeraldClient, backoffDelay, MARK_SEEN_MAX_IDS } from '../herald-client.js';
import { FakeSocket, counts, notification, created, fakeServer, manualTimers, settle } from './fakes.mjs';

const MAX_CONNECTION_MS = 6_900_000;
const SYNC_TIMEOUT_MS = 15_000;

beforeEach(() => FakeSocket.reset());

/**
 * A started client whose socket is open and whose first sync was answered: the inbox holds
 * `items` at `version`. Returns the client, its socket, server state, fetch calls, timers and a
 * log of events.
 */
async function connected({ version = 4, items = [], unread = items.length, random = () => 0.5 } = {}) {
  const state = { counts: counts(version, unread), items };
  const { fetch, calls } = fakeServer(state);
  const timers = manualTimers();
  const client = new HeraldClient({
    httpUrl: 'http://api.test/',
    wsUrl: 'ws://ws.test/local',
    token: 'tok-alice',
    WebSocket: FakeSocket,
    fetch,
    timers,
    random,
    maxConnectionMs: MAX_CONNECTION_MS,
    syncTimeoutMs: SYNC_TIMEOUT_MS,
  });
  const log = { notification: [], updated: [], deleted: [], counts: [], status: [], error: [] };
  for (const name of Object.keys(log)) client.on(name, (e) => log[name].push(e));
  await client.start();
  await settle();
  const ws = FakeSocket.last;
  ws.open();
  ws.deliver({ type: 'sync.result', changes: [], upTo: version, more: false });
  return { client, ws, state, calls, timers, log };
}

test('loads counts then the first page over HTTP with the bearer token, then connects with ?token=', async () => {
  const { client, ws, calls } = await connected({ items: [notification(2), notification(1)], version: 4 });
  assert.deepEqual(calls.map((c) => c.path + c.search), ['/v1/notifications/counts', '/v1/notifications?limit=50']);
  assert.ok(calls.every((c) => c.authorization === 'Bearer tok-alice'));
  assert.equal(ws.url, 'ws://ws.test/local?token=tok-alice');
  assert.deepEqual(ws.sent[0], { action: 'sync', since: 4 });
  assert.equal(client.lastSeq, 4);
  assert.equal(client.unread, 2);
  assert.deepEqual(client.notifications.map((n) => n.id), ['n2', 'n1']);
  assert.equal(client.status, 'open');
});

test('fed seq 6 before 5, it syncs and ends with both applied exactly once, in order', async () => {
  const { client, ws, log } = await connected({ version: 4 });
  ws.deliver(created(6, 2));
  assert.equal(client.lastSeq, 4, 'seq 6 is held, not applied');
  assert.deepEqual(ws.actions('sync').at(-1), { action: 'sync', since: 4 });
  assert.equal(ws.actions('sync').length, 2, 'one sync for the gap (after the one on connect)');

  ws.deliver({ type: 'sync.result', changes: [created(5, 1), created(6, 2)], upTo: 6, more: false });

  assert.deepEqual(log.notification.map((n) => n.seq), [5, 6]);
  assert.equal(client.lastSeq, 6);
  assert.equal(client.unread, 2);
  assert.deepEqual(client.notifications.map((n) => n.id), ['n6', 'n5']);
  assert.equal(ws.actions('sync').length, 2, 'no further sync once the gap is filled');
});

test('a live frame that fills the gap first makes the sync reply a no-op', async () => {
  const { client, ws, log } = await connected({ version: 4 });
  ws.deliver(created(6, 2));
  ws.deliver(created(5, 1));
  assert.deepEqual(log.notification.map((n) => n.seq), [5, 6]);
  ws.deliver({ type: 'sync.result', changes: [created(5, 1), created(6, 2)], upTo: 6, more: false });
  assert.deepEqual(log.notification.map((n) => n.seq), [5, 6], 'the replies are duplicates');
  assert.equal(client.lastSeq, 6);
  assert.deepEqual(log.counts.map((c) => c.version), [4, 5, 6], 'counts only move forward');
});

test('duplicates and old frames are dropped', async () => {
  const { client, ws, log } = await connected({ version: 4, items: [notification(3)] });
  ws.deliver(created(5, 2));
  ws.deliver(created(5, 2));
  ws.deliver({ type: 'notification.updated', seq: 3, id: 'n3', changes: { read: true }, counts: counts(3, 0) });
  assert.deepEqual(log.notification.map((n) => n.seq), [5]);
  assert.equal(log.updated.length, 0);
  assert.equal(client.notifications.find((n) => n.id === 'n3').read, false);
  assert.equal(client.unread, 2);
  assert.equal(ws.actions('sync').length, 1, 'a duplicate is no gap');
});

test('one sync in flight at a time; a multi-page reply fills the gap', async () => {
  const { client, ws, log } = await connected({ version: 4 });
  ws.deliver(created(7, 3));
  ws.deliver(created(8, 4));
  ws.deliver(created(9, 5));
  assert.equal(ws.actions('sync').length, 2, 'one sync for all three');
  ws.deliver({ type: 'sync.result', changes: [created(5, 1)], upTo: 5, more: true });
  assert.equal(client.lastSeq, 5);
  assert.equal(ws.actions('sync').length, 2, 'no new sync while pages are coming');
  ws.deliver({ type: 'sync.result', changes: [created(6, 2), created(7, 3)], upTo: 7, more: false });
  assert.equal(client.lastSeq, 9);
  assert.deepEqual(log.notification.map((n) => n.seq), [5, 6, 7, 8, 9]);
  assert.equal(ws.actions('sync').length, 2);
});

test('a sync that cannot fill the gap falls back to HTTP instead of asking in a loop', async () => {
  const { client, ws, state, calls } = await connected({ version: 4 });
  ws.deliver(created(6, 2));
  state.counts = counts(6, 2);
  state.items = [notification(6), notification(5)];
  ws.deliver({ type: 'sync.result', changes: [], upTo: 4, more: false });
  await settle();
  assert.equal(calls.length, 4, 'counts and list fetched again');
  assert.equal(client.lastSeq, 6);
  assert.equal(ws.actions('sync').length, 2);
});

test('an unanswered sync is given up after its timeout and asked again while the gap remains', async () => {
  const { ws, timers } = await connected({ version: 4 });
  ws.deliver(created(6, 2));
  assert.equal(ws.actions('sync').length, 2);
  timers.fire(SYNC_TIMEOUT_MS);
  assert.equal(ws.actions('sync').length, 3);
});

test('resync refetches the inbox over HTTP and continues from counts.version', async () => {
  const { client, ws, state, calls, log } = await connected({ version: 4, items: [notification(1)] });
  state.counts = counts(1200, 7);
  state.items = [notification(1200), notification(1199)];
  ws.deliver({ type: 'resync', head: 1200 });
  // A frame arriving during the reload is held, then applied on top of it.
  ws.deliver(created(1201, 8));
  await settle();
  assert.deepEqual(calls.slice(2).map((c) => c.path), ['/v1/notifications/counts', '/v1/notifications']);
  assert.equal(client.lastSeq, 1201);
  assert.equal(client.unread, 8);
  assert.deepEqual(client.notifications.map((n) => n.id), ['n1201', 'n1200', 'n1199']);
  assert.deepEqual(log.notification.map((n) => n.seq), [1201]);
});

test('frames that arrive while the inbox loads are applied after it', async () => {
  const state = { counts: counts(4, 0), items: [] };
  const { fetch } = fakeServer(state);
  let release;
  const gate = new Promise((r) => { release = r; });
  const slowFetch = async (url, init) => { await gate; return fetch(url, init); };
  const timers = manualTimers();
  const client = new HeraldClient({ httpUrl: 'http://api.test', wsUrl: 'ws://ws.test/local', token: 't', WebSocket: FakeSocket, fetch: slowFetch, timers });
  const started = client.start();
  await settle();
  assert.equal(client.status, 'loading');
  release();
  await started;
  await settle();
  FakeSocket.last.open();
  assert.deepEqual(FakeSocket.last.sent, [{ action: 'sync', since: 4 }]);
});

test('a compact notification.created is fetched over HTTP; changes meanwhile apply to it', async () => {
  const { client, ws, state, calls, log } = await connected({ version: 4 });
  state.byId = { n5: notification(5) };
  ws.deliver(created(5, 1, { compact: true }));
  ws.deliver({ type: 'notification.updated', seq: 6, id: 'n5', changes: { read: true, seen: true }, counts: counts(6, 0) });
  await settle();
  assert.equal(calls.at(-1).path, '/v1/notifications/n5');
  assert.equal(log.notification.length, 1);
  assert.equal(client.notifications[0].id, 'n5');
  assert.equal(client.notifications[0].read, true);
  assert.equal(client.unread, 0);
});

test('updates, archives and deletes change the list; counts come from the frames', async () => {
  const { client, ws, log } = await connected({ version: 4, items: [notification(3), notification(2), notification(1)] });
  ws.deliver({ type: 'notification.updated', seq: 5, id: 'n3', changes: { read: true, seen: true }, counts: counts(5, 2) });
  ws.deliver({ type: 'notification.updated', seq: 6, id: 'n2', changes: { archived: true }, counts: counts(6, 1) });
  ws.deliver({ type: 'notification.deleted', seq: 7, id: 'n1', counts: counts(7, 0) });
  assert.deepEqual(client.notifications.map((n) => [n.id, n.read]), [['n3', true]]);
  assert.equal(client.unread, 0);
  assert.deepEqual(log.updated.map((u) => u.id), ['n3', 'n2']);
  assert.deepEqual(log.deleted, [{ id: 'n1' }]);
});

test('a digest update replaces the item\'s digest and leaves its flags and the counts as sent', async () => {
  const { client, ws } = await connected({ version: 4, items: [notification(3)] });
  const digest = { key: 'post-42', window: '10m', count: 2, firstAt: 't1', lastAt: 't2', items: [{ title: 'a', body: '', data: {} }, { title: 'b', body: '', data: {} }] };
  ws.deliver({ type: 'notification.updated', seq: 5, id: 'n3', changes: {}, counts: counts(5, 1), digest });
  assert.deepEqual(client.notifications.map((n) => [n.id, n.read, n.digest?.count]), [['n3', false, 2]]);
  assert.equal(client.unread, 1);
});

test('counts with allRead mark older local items of that type read, not newer ones', async () => {
  const items = [notification(4, { type: 'comment' }), notification(3, { type: 'invoice' }), notification(2, { type: 'comment' })];
  const { client, ws } = await connected({ version: 4, items });
  ws.deliver(created(5, 4, { type: 'comment' }));
  ws.deliver({ type: 'counts', seq: 6, counts: counts(6, 2, { comment: 1, invoice: 1 }), allRead: { notificationType: 'comment' } });
  const read = Object.fromEntries(client.notifications.map((n) => [n.id, n.read]));
  assert.deepEqual(read, { n5: true, n4: true, n3: false, n2: true });
  ws.deliver(created(7, 3, { type: 'comment' }));
  ws.deliver({ type: 'counts', seq: 8, counts: counts(8, 1), allRead: {} });
  const after = Object.fromEntries(client.notifications.map((n) => [n.id, n.read]));
  assert.deepEqual(after, { n7: true, n5: true, n4: true, n3: true, n2: true });
  assert.equal(client.unread, 1, 'the server counts win');
});

test('mutations are WebSocket actions, queued while disconnected and sent after the next sync', async () => {
  const { client, ws, timers } = await connected({ version: 4 });
  client.markRead('n1');
  client.markAllRead();
  client.markAllRead('comment');
  client.archive('n2');
  client.click('n3');
  client.ping();
  const ids = Array.from({ length: MARK_SEEN_MAX_IDS + 1 }, (_, i) => `n${i}`);
  client.markSeen(ids);
  assert.deepEqual(ws.sent.slice(1, 7), [
    { action: 'markRead', id: 'n1' },
    { action: 'markAllRead' },
    { action: 'markAllRead', type: 'comment' },
    { action: 'archive', id: 'n2' },
    { action: 'click', id: 'n3' },
    { action: 'ping' },
  ]);
  assert.deepEqual(ws.actions('markSeen').map((a) => a.ids.length), [MARK_SEEN_MAX_IDS, 1]);

  ws.serverClose();
  client.markRead('n9');
  timers.fire();
  await settle();
  const next = FakeSocket.last;
  assert.notEqual(next, ws);
  next.open();
  assert.deepEqual(next.sent, [{ action: 'sync', since: 4 }, { action: 'markRead', id: 'n9' }]);
});

test('server error frames and pongs are events; the connection stays', async () => {
  const { client, ws, log } = await connected();
  const pongs = [];
  client.on('pong', (p) => pongs.push(p));
  ws.deliver({ type: 'error', code: 'not-found', message: 'no such notification', action: 'markRead' });
  ws.deliver({ type: 'pong' });
  ws.onmessage({ data: 'not json' });
  assert.deepEqual(log.error.map((e) => e.code), ['not-found', 'protocol']);
  assert.equal(pongs.length, 1);
  assert.equal(client.status, 'open');
});

test('backoff grows with jitter and is capped', () => {
  const opts = { baseMs: 500, maxMs: 30_000 };
  const ceilings = Array.from({ length: 12 }, (_, a) => backoffDelay(a, opts, () => 0.999999));
  for (let a = 1; a < ceilings.length; a++) assert.ok(ceilings[a] >= ceilings[a - 1], `attempt ${a}`);
  assert.equal(ceilings[0], 499);
  assert.equal(ceilings[3], 3_999);
  assert.equal(ceilings.at(-1), 29_999, 'capped at maxMs');
  assert.equal(backoffDelay(1_000, opts, () => 0.999999), 29_999, 'huge attempt numbers stay capped');
  // Full jitter: anywhere in [0, ceiling).
  assert.equal(backoffDelay(5, opts, () => 0), 0);
  assert.equal(backoffDelay(5, opts, () => 0.25), 4_000);
  const draws = new Set(Array.from({ length: 50 }, () => backoffDelay(6, opts)));
  assert.ok(draws.size > 10, 'random draws differ');
  for (const d of draws) assert.ok(d >= 0 && d < 30_000);
});

test('reconnects with growing, capped delays; each reconnect syncs from lastSeq; success resets', async () => {
  const { client, ws, timers } = await connected({ version: 4, random: () => 0.999999 });
  ws.deliver(created(5, 1));
  timers.delays.length = 0;
  ws.serverClose();
  for (let i = 0; i < 9; i++) {
    timers.fire();
    await settle();
    FakeSocket.last.serverClose(); // refused before it opened
  }
  const reconnects = timers.delays.filter((d) => d !== MAX_CONNECTION_MS && d !== SYNC_TIMEOUT_MS);
  assert.deepEqual(reconnects, [499, 999, 1_999, 3_999, 7_999, 15_999, 29_999, 29_999, 29_999, 29_999]);
  assert.equal(client.status, 'reconnecting');

  timers.fire();
  await settle();
  const last = FakeSocket.last;
  last.open();
  assert.deepEqual(last.sent[0], { action: 'sync', since: 5 });
  last.deliver({ type: 'sync.result', changes: [], upTo: 5, more: false });
  assert.equal(client.status, 'open');
  timers.delays.length = 0;
  last.serverClose();
  assert.deepEqual(timers.delays, [499], 'a working connection resets the backoff');
});

test('reconnects proactively before the 2-hour cap: new socket first, then the old one closes', async () => {
  const { client, ws, timers } = await connected({ version: 4 });
  assert.ok([...timers.pending.values()].some((t) => t.ms === MAX_CONNECTION_MS));
  timers.fire(MAX_CONNECTION_MS);
  await settle();
  const next = FakeSocket.last;
  assert.notEqual(next, ws);
  assert.equal(ws.closedWith, null, 'the old socket stays until the new one is open');
  ws.deliver(created(5, 1)); // still delivered by the old socket
  next.open();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'replaced' });
  assert.deepEqual(next.sent[0], { action: 'sync', since: 5 });
  assert.equal(client.status, 'open');
  assert.equal(FakeSocket.all.length, 2, 'closing the replaced socket does not reconnect');
});

test('close() stops everything: no reconnect, no more events', async () => {
  const { client, ws, timers, log } = await connected();
  client.close();
  assert.equal(client.status, 'closed');
  assert.equal(ws.closedWith.code, 1000);
  assert.equal(timers.pending.size, 0);
  ws.deliver(created(5, 1));
  assert.equal(log.notification.length, 0);
  assert.throws(() => client.markRead('n1'));
});

test('an HTTP failure at start is reported and retried with backoff', async () => {
  const state = { counts: counts(2, 0), items: [], fail: true };
  const { fetch } = fakeServer(state);
  const timers = manualTimers();
  const client = new HeraldClient({ httpUrl: 'http://api.test', wsUrl: 'ws://ws.test/local', token: () => 'fresh', WebSocket: FakeSocket, fetch, timers, random: () => 0.5 });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  const started = client.start();
  await settle();
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /503/);
  assert.deepEqual(timers.delays, [250]);
  state.fail = false;
  timers.fire();
  await started;
  await settle();
  assert.equal(client.lastSeq, 2);
  assert.equal(FakeSocket.last.url, 'ws://ws.test/local?token=fresh');
});
