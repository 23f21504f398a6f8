"""schemathesis hooks for Herald (scripts/test.d/40-contract).

The OpenAPI document states every rule JSON Schema can state. These hooks supply, for requests
schemathesis generated as *valid*, the few rules it cannot (each is written in the document's
descriptions too):

- a create's `expiresAt` must be in the future;
- a create's escalation `after` is at most 7 days, its digest `window` from 10s to 24h and its
  digest `key` at most 128 bytes (the pattern states the duration's syntax, not its range);
- a create's (and a broadcast's) `sendAt` lies in the future and at most 30 days ahead (else an
  hour ahead), `within` comes
  only with `sendAt: optimal` (above 0, at most 7 days) and `cancelKey` only with `sendAt` (and on a create, never on a
  broadcast), and a `cancelKey` is at most 128 bytes;
- a create's `Idempotency-Key` is new: reusing one with another body is 422 by design;
- a create names the token's own user, so the document's links (create -> get, patch, delete,
  deliveries, click) reach a notification the caller owns (a service creating for another user
  is the same request; only the follow-up reads differ);
- a push subscription's `p256dh` is a point on P-256, `expirationTime` lies in the future, and
  its endpoint is one of five on this machine's discard port (a user holds at most 10; the same
  endpoint again replaces its keys);
- a device's token is one of five per platform (a user holds at most 20 devices; the same token
  again replaces the entry);
- quiet hours' `start` and `end` differ;
- `/v1/analytics`: `from` is not after `to`, and the range spans at most 366 days;
- `/v1/unsubscribe`: the token is signed with the deployment's secret.

Requests generated as invalid are left alone. Environment: HERALD_FUZZ_USER (the token's
subject), HERALD_UNSUBSCRIBE_SECRET (devstack's `push/unsubscribe.secret`).
"""

import base64
import datetime
import hashlib
import hmac
import os
import random
import uuid

import schemathesis

USER = os.environ.get("HERALD_FUZZ_USER", "fuzz-user")
UNSUBSCRIBE_SECRET = os.environ.get("HERALD_UNSUBSCRIBE_SECRET", "").encode()
# The P-256 generator point, uncompressed: a valid browser key.
P256DH = "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"
AUTH = "AAAAAAAAAAAAAAAAAAAAAA"
MAX_ANALYTICS_DAYS = 366


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsubscribe_token(user: str, kind: str) -> str:
    payload = f"v1\n{user}\n{kind}".encode()
    tag = hmac.new(UNSUBSCRIBE_SECRET, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(tag)}"


def _positive(case) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


def _future(value) -> bool:
    try:
        at = datetime.datetime.fromisoformat(str(value).replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return True  # not ours to fix: the API parses it
    if at.tzinfo is None:
        return True
    return at > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)


def _soon(value) -> bool:
    """In the future and at most 30 days ahead (a scheduled send's range)."""
    try:
        at = datetime.datetime.fromisoformat(str(value).replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return True  # not ours to fix: the API parses it
    if at.tzinfo is None:
        return True
    now = datetime.datetime.now(datetime.timezone.utc)
    return now + datetime.timedelta(minutes=5) < at < now + datetime.timedelta(days=29)


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(duration) -> int:
    text = str(duration)
    try:
        return int(text[:-1]) * _UNIT_SECONDS[text[-1]]
    except (KeyError, ValueError, IndexError):
        return -1  # not ours to fix: the API parses it


def _workflows(body: dict) -> None:
    for step in body.get("escalate") or []:
        if isinstance(step, dict) and _seconds(step.get("after")) > 7 * 86400:
            step["after"] = "15m"
    digest = body.get("digest")
    if isinstance(digest, dict):
        if not 10 <= _seconds(digest.get("window")) <= 86400 and _seconds(digest.get("window")) != -1:
            digest["window"] = "10m"
        if isinstance(digest.get("key"), str) and len(digest["key"].encode()) > 128:
            digest["key"] = "fuzz-digest"


def _schedule(body: dict, broadcast: bool = False) -> None:
    send_at = body.get("sendAt")
    if send_at is not None and send_at != "optimal" and not _soon(send_at):
        body["sendAt"] = (
            datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        ).isoformat().replace("+00:00", "Z")
    if broadcast or body.get("sendAt") != "optimal":
        body.pop("within", None)
    elif body.get("within") is not None and not 0 < _seconds(body["within"]) <= 7 * 86400:
        body["within"] = "24h"
    if broadcast or body.get("sendAt") is None:
        body.pop("cancelKey", None)
    if isinstance(body.get("cancelKey"), str) and len(body["cancelKey"].encode()) > 128:
        body["cancelKey"] = "fuzz-cancel"


def _create(body: dict) -> None:
    _workflows(body)
    _schedule(body, broadcast="userId" not in body and "userIds" not in body)
    if "userId" in body:
        body["userId"] = USER
    if isinstance(body.get("userIds"), list) and body["userIds"]:
        body["userIds"][0] = USER
    if body.get("expiresAt") is not None and not _future(body["expiresAt"]):
        body["expiresAt"] = "2999-01-01T00:00:00Z"


def _subscription(body: dict) -> None:
    body["endpoint"] = f"http://127.0.0.1:9/push/{random.randrange(5)}"
    keys = body.get("keys")
    if isinstance(keys, dict):
        keys["p256dh"] = P256DH
        keys["auth"] = AUTH
    expiration = body.get("expirationTime")
    if isinstance(expiration, (int, float)):
        now_ms = datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000
        if not now_ms < expiration < 253402300799000:  # chrono's last representable instant
            body["expirationTime"] = None


def _device(body: dict) -> None:
    n = random.randrange(5)
    if body.get("platform") == "ios":
        body["token"] = hashlib.sha256(f"fuzz-device-{n}".encode()).hexdigest()
    elif body.get("platform") == "android":
        body["token"] = f"fuzz{n}:APA91b" + "x" * 140


def _preferences(body: dict) -> None:
    quiet = body.get("quietHours")
    if isinstance(quiet, dict) and quiet.get("start") == quiet.get("end"):
        quiet["end"] = "07:00" if quiet.get("start") != "07:00" else "08:00"


def _analytics(query: dict) -> None:
    def day(name):
        try:
            return datetime.date.fromisoformat(query[name]) if query.get(name) else None
        except ValueError:
            return None

    today = datetime.datetime.now(datetime.timezone.utc).date()
    start, end = day("from"), day("to")
    end_or_today = end or today
    if start is not None and (start > end_or_today or (end_or_today - start).days >= MAX_ANALYTICS_DAYS):
        query["from"] = end_or_today.isoformat()


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if not _positive(case):
        return
    path, method = case.operation.path, case.operation.method.upper()
    body = case.body if isinstance(case.body, dict) else None
    if method == "POST" and path in ("/v1/notifications", "/v1/notifications/batch") and body:
        _create(body)
        if case.headers and "Idempotency-Key" in case.headers:
            case.headers["Idempotency-Key"] = str(uuid.uuid4())
    elif method == "POST" and path == "/v1/topics/{key}/notifications" and body:
        _create(body)
        if case.headers and "Idempotency-Key" in case.headers:
            case.headers["Idempotency-Key"] = str(uuid.uuid4())
    elif method == "POST" and path == "/v1/scheduled/cancel" and body:
        if isinstance(body.get("cancelKey"), str) and len(body["cancelKey"].encode()) > 128:
            body["cancelKey"] = "fuzz-cancel"
    elif method == "POST" and path == "/v1/push-subscriptions" and body:
        _subscription(body)
    elif method == "POST" and path == "/v1/devices" and body:
        _device(body)
    elif method == "PUT" and path == "/v1/preferences":
        if body:
            _preferences(body)
        # A valid If-Match is the ETag of what is stored now, which a generator cannot know; `*`
        # (any stored copy) is the valid value it can send. Stale tags get 412 by design.
        for name in list(case.headers or {}):
            if name.lower() == "if-match":
                case.headers[name] = "*"

    elif path == "/v1/analytics" and case.query:
        _analytics(case.query)
    elif path == "/v1/unsubscribe" and UNSUBSCRIBE_SECRET:
        case.query = dict(case.query or {}, token=_unsubscribe_token(USER, "fuzz.type"))
