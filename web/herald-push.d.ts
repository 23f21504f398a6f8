// Types of herald-push.js, the Web Push logic shared by the service worker (sw.js) and the page.

export declare const DEFAULT_TITLE: string;
export declare const TOKEN_MARGIN_MS: number;
export declare const MAX_QUEUED_CLICKS: number;
export declare const QUEUED_CLICK_MAX_AGE_MS: number;

/** A push message as it will be shown. `trimmed`: `{id, title}` only; the rest can be fetched. */
export interface PushPayload {
  id: string | null;
  title: string;
  body: string;
  actionUrl: string | null;
  data: unknown;
  trimmed: boolean;
}

/** What the page leaves in IndexedDB for the worker. */
export interface StoredSession {
  userId: string;
  httpUrl: string;
  token: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export interface QueuedClick {
  id: string;
  /** Epoch milliseconds of the click. */
  at: number;
  /** The user whose token was stored at the click, if any. */
  userId: string | null;
}

export type ClickOutcome = 'recorded' | 'retry' | 'dropped';

export interface ClickResult {
  outcome: ClickOutcome;
  /** The click route's status; 0 when it was not reached. */
  status: number;
  reason?: string;
}

type Fetch = typeof globalThis.fetch;

export declare function parsePushPayload(text: string | null | undefined): PushPayload;
export declare function withFetched(payload: PushPayload, notification: unknown): PushPayload;
export declare function clickTarget(actionUrl: unknown, fallback: string): string;
export declare function appPage(scope: string, userId?: string | null): string;
export declare function notificationToShow(
  payload: PushPayload,
  opts: { fallbackUrl: string },
): { title: string; options: { body: string; tag?: string; data: { id: string | null; actionUrl: string | null; url: string } } };

export declare function usableSession(session: unknown, now?: number): session is StoredSession;
export declare function fetchNotification(opts: { id: string | null; session: StoredSession | null; fetch?: Fetch; now?: number }): Promise<unknown | null>;
export declare function clickOutcome(status: number): ClickOutcome;
export declare function recordClick(opts: { id: string; session: StoredSession | null; fetch?: Fetch; now?: number }): Promise<ClickResult>;
export declare function flushClicks(opts: {
  queue: QueuedClick[];
  session: StoredSession | null;
  fetch?: Fetch;
  now?: number;
}): Promise<{ sent: Array<ClickResult & { id: string }>; keep: QueuedClick[]; drop: string[] }>;

export declare class PushError extends Error {
  /** The step that failed. */
  code: 'not-configured' | 'vapid-key' | 'subscribe' | 'register' | 'unregister';
  /** The API's status, when it answered. */
  status?: number;
}

export declare function base64UrlToBytes(text: string): Uint8Array;
export declare function bytesToBase64Url(bytes: ArrayBuffer | Uint8Array): string;

export declare function enablePush(opts: {
  registration: ServiceWorkerRegistration;
  httpUrl: string;
  token: string;
  fetch?: Fetch;
  subscribeTimeoutMs?: number;
}): Promise<{ subscription: { id: string; endpoint: string; expiresAt?: string; createdAt: string }; status: 200 | 201 }>;

export declare function disablePush(opts: {
  registration: ServiceWorkerRegistration | undefined;
  httpUrl: string;
  token: string;
  fetch?: Fetch;
}): Promise<boolean>;

export declare class PushStore {
  constructor(idb?: IDBFactory);
  session(): Promise<StoredSession | null>;
  setSession(session: StoredSession): Promise<void>;
  clearSession(): Promise<void>;
  queuedClicks(): Promise<QueuedClick[]>;
  queueClick(entry: QueuedClick): Promise<void>;
  dropClicks(ids: string[]): Promise<void>;
  flush(session: StoredSession | null, fetch?: Fetch): Promise<{ sent: Array<ClickResult & { id: string }>; keep: QueuedClick[]; drop: string[] }>;
}
