"""The OA webhook: ``POST /zalo/webhook``, verified, stored durably, answered 200 fast.

Zalo posts each event as JSON and signs it in the ``X-ZEvent-Signature`` header:
``mac=<hex>`` where hex = SHA-256 (a plain hash, not an HMAC) of
``app_id + raw body + timestamp + OA secret key``, the timestamp being the body's ``timestamp``
field (milliseconds, a string). Zalo wants a 200 within about 2 seconds and retries otherwise
(https://developers.zalo.me/docs/official-account/webhook/tong-quan; the formula is also given
in https://hainh.me/zalo-api-php-webhook-callback-official-account.html). So this handler only:

1. rejects a body that is not a JSON object with ``event_name`` and ``timestamp`` (400);
2. checks the signature in constant time over the raw bytes (401, nothing stored);
3. refuses an event older than ``TONGDAI_ZALO_MAX_EVENT_AGE`` or dated in the future (401): a
   replayed capture; the default, 3 h, still accepts Zalo's own retries;
4. drops a message id it has just accepted (Zalo retried it; the database dedupes for good);
5. appends the raw event to an fsync'd spool (``$TONGDAI_HOME/spool/zalo-events.jsonl``) and
   only then answers 200, so an acknowledged event survives the process dying right after.

:mod:`.intake` turns spooled events into cases afterwards.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Callable

from aiohttp import web

from ivr.config.settings import ZaloSettings
from ivr.records.spool import Spool
from ivr.zalo.tokens import utcnow

log = logging.getLogger("tongdai.zalo.webhook")

PATH = "/zalo/webhook"
HEADER = "X-ZEvent-Signature"
MAX_BODY = 1024 * 1024
FUTURE_SKEW = dt.timedelta(minutes=5)


def signature(app_id: str, raw: bytes, timestamp: str, oa_secret_key: str) -> str:
    return hashlib.sha256(app_id.encode() + raw + timestamp.encode() + oa_secret_key.encode()).hexdigest()


def signature_ok(header: str | None, app_id: str, raw: bytes, timestamp: str, oa_secret_key: str) -> bool:
    if not header:
        return False
    given = header.strip()
    if given.lower().startswith("mac="):
        given = given[4:].strip()
    expected = signature(app_id, raw, timestamp, oa_secret_key)
    return hmac.compare_digest(expected.encode(), given.lower().encode())


def event_key(body: dict, raw: bytes) -> str:
    """The message id for message events; a hash of the body for the others (follow, …)."""
    msg = body.get("message")
    if isinstance(msg, dict) and msg.get("msg_id"):
        return f"msg:{msg['msg_id']}"[:80]
    return "sha:" + hashlib.sha256(raw).hexdigest()[:40]


def event_time(body: dict) -> dt.datetime | None:
    raw = body.get("timestamp")
    try:
        ms = int(str(raw))
    except (TypeError, ValueError):
        return None
    try:
        return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


class Webhook:
    def __init__(self, z: ZaloSettings, spool: Spool, *, clock: Callable[[], dt.datetime] = utcnow,
                 on_event: Callable[[], None] = lambda: None):
        self.z = z
        self.spool = spool
        self.clock = clock
        self.on_event = on_event
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.accepted = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _answer(413, "body too large")
        raw = await request.read()
        if len(raw) > MAX_BODY:
            return _answer(413, "body too large")
        try:
            text = raw.decode("utf-8")
            body = json.loads(text)
        except ValueError:  # also a body that is not UTF-8
            log.warning("zalo webhook: malformed JSON from %s (%d bytes)", request.remote, len(raw))
            return _answer(400, "malformed JSON")
        when = event_time(body) if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("event_name"), str) or when is None:
            log.warning("zalo webhook: not a Zalo event from %s", request.remote)
            return _answer(400, "not a Zalo event")
        if not signature_ok(request.headers.get(HEADER), self.z.app_id, raw, str(body["timestamp"]), self.z.oa_secret_key):
            log.warning("zalo webhook: bad signature from %s, event %s refused", request.remote, body["event_name"][:40])
            return _answer(401, "bad signature")
        now = self.clock()
        if now - when > dt.timedelta(seconds=self.z.max_event_age) or when - now > FUTURE_SKEW:
            log.warning("zalo webhook: stale event %s from %s (timestamp %s), refused",
                        body["event_name"][:40], request.remote, when.isoformat())
            return _answer(401, "stale timestamp")
        key = event_key(body, raw)
        if key in self._recent:
            log.info("zalo webhook: duplicate %s ignored", key)
            return _answer(200, "duplicate")
        # Durable before the 200: fsync'd append (synchronous on purpose: the spool's drain
        # rewrites the file from this same thread, so the two never interleave).
        self.spool.append({"key": key, "received_at": now, "body": text})
        self._recent[key] = None
        while len(self._recent) > 10000:
            self._recent.popitem(last=False)
        self.accepted += 1
        self.on_event()
        return _answer(200, "ok")


def _answer(status: int, message: str) -> web.Response:
    return web.json_response({"error": 0 if status == 200 else status, "message": message}, status=status)
