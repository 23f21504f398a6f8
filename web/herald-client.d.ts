// Types of herald-client.js, the browser client of Herald's real-time protocol (docs/realtime.md).

// The shapes the server sends are generated from /openapi.json into herald-api.d.ts
// (openapi-typescript; scripts/test.d/40-contract regenerates it and fails on a difference).
import type { components } from './herald-api.js';

type Schemas = components['schemas'];

export type Channel = Schemas['Channel'];
export type Priority = Schemas['Priority'];
/** A stored notification, as `GET /v1/notifications` and `notification.created` carry it. */
export type Notification = Schemas['Notification'];
/** Exact counts, valid at `version` (the user's `seq` when they were computed). */
export type Counts = Schemas['Counts'];
/** Only the flags that changed. */
export type FlagsPatch = Schemas['FlagsPatch'];
export type ErrorCode = Schemas['ErrorCode'];
/** Frames the server sends (shared/src/protocol/frames.rs; /asyncapi.json is their contract). */
export type Frame = Schemas['Frame'];

export type Status = 'idle' | 'loading' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/**
 * An error: a server `error` frame (its `code`), or a local failure with code `http`,
 * `protocol` (a frame that is not JSON), `token` (the token function threw) or `listener`
 * (an event listener threw).
 */
export interface ClientError {
  code: ErrorCode | 'http' | 'protocol' | 'token' | 'listener';
  message: string;
  action?: string;
  cause?: unknown;
}

export interface EventMap {
  /** A notification arrived (live, by sync, or fetched after a compact frame). */
  notification: Notification;
  /** Flags changed; `notification` is the local copy after the change, if it is loaded. */
  updated: { id: string; changes: FlagsPatch; notification?: Notification };
  deleted: { id: string };
  counts: Counts;
  /** Anything visible changed; one event per burst (a sync page applies many frames). */
  change: { notifications: Notification[]; counts: Counts | null; unread: number };
  status: Status;
  error: ClientError;
  /** The reply to `ping()`. */
  pong: { type: 'pong' };
}

export interface HeraldClientOptions {
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:3000`. */
  httpUrl: string;
  /** The WebSocket stage URL, e.g. `ws://127.0.0.1:3001/local`; `?token=` is appended. */
  wsUrl: string;
  /** A user token, or a function giving a fresh one (called before every HTTP load and connect). */
  token: string | (() => string | Promise<string>);
  /** A WebSocket constructor (default: the global one). */
  WebSocket?: new (url: string) => WebSocket;
  /** A fetch function (default: the global one). */
  fetch?: typeof fetch;
  /** How many notifications the HTTP load reads (default 50). */
  pageSize?: number;
  /** Reconnect delays: full jitter over `min(maxMs, baseMs * 2^attempt)` (default 500 ms, 30 s). */
  backoff?: { baseMs?: number; maxMs?: number };
  /** Reconnect proactively after this long (default 1 h 55 min; API Gateway's cap is 2 h). */
  maxConnectionMs?: number;
  /** Give up on an unanswered `sync` after this long (default 15 s). */
  syncTimeoutMs?: number;
  /** Timer functions (tests inject manual ones). */
  timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(id: unknown): void };
  /** Random source in [0, 1) for the jitter (default `Math.random`). */
  random?: () => number;
}

export declare const MARK_SEEN_MAX_IDS: 100;

/** The reconnect delay of attempt `attempt` (0-based): uniform in [0, min(maxMs, baseMs * 2^attempt)). */
export declare function backoffDelay(
  attempt: number,
  backoff?: { baseMs: number; maxMs: number },
  random?: () => number,
): number;

export declare class HttpError extends Error {
  readonly status: number;
  /** The problem+json body, when the server sent one. */
  readonly problem?: { type?: string; title?: string; status?: number; detail?: string; [k: string]: unknown };
}

/**
 * The inbox of one user, kept in step with the server: loaded over HTTP, then updated by
 * WebSocket frames applied exactly once, in `seq` order.
 */
export declare class HeraldClient {
  constructor(options: HeraldClientOptions);
  /** Loads the inbox over HTTP (retrying with backoff), then connects. Resolves once loaded; later calls return the same promise. */
  start(): Promise<void>;
  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof EventMap>(event: K, fn: (payload: EventMap[K]) => void): () => void;

  /** Unread count, from the latest server counts. */
  readonly unread: number;
  readonly counts: Counts | null;
  /** Loaded, non-archived notifications, newest first (copies). */
  readonly notifications: Notification[];
  /** The highest `seq` applied. */
  readonly lastSeq: number;
  readonly status: Status;

  markRead(id: string): void;
  /** Sent in actions of at most 100 ids. */
  markSeen(ids: Iterable<string>): void;
  markAllRead(type?: string): void;
  archive(id: string): void;
  /** Records a click (analytics); changes no state. */
  click(id: string): void;
  /** The server answers with a `pong` event. */
  ping(): void;
  /** Closes for good: no reconnect, no more events; an action after it throws. */
  close(): void;
}
