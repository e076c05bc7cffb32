"""A thin ARI client on aiohttp: REST calls and one event websocket.

Why in-house: the PyPI clients either do not import on Python 3 or do not survive a websocket
drop (see docs). This one only moves bytes: business rules live in the call session.

- REST: :meth:`Ari.request` raises :class:`AriError` with the status and Asterisk's message.
- Events: :meth:`Ari.run` keeps one websocket open (heartbeat), reconnects with exponential
  backoff and jitter, and calls ``on_connect`` after every (re)connection so the caller can
  reconcile what happened while it was away (events sent meanwhile are lost by Asterisk).
  Each event is handed to ``on_event``; the dispatcher puts it on the owning call's queue.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from typing import Any, Awaitable, Callable

import aiohttp

log = logging.getLogger("tongdai.ari")

HTTP_CONNECTIONS = 32  # REST requests in flight at once; more wait for a free connection


class AriError(Exception):
    """An ARI request failed: ``status`` is the HTTP status (0 when Asterisk is unreachable)."""

    def __init__(self, status: int, method: str, path: str, message: str):
        self.status = status
        super().__init__(f"ARI {method} {path}: {status} {message}")


class Ari:
    def __init__(self, host: str, port: int, user: str, password: str, app: str):
        self.base = f"http://{host}:{port}/ari"
        self.ws_url = f"ws://{host}:{port}/ari/events"
        self.app = app
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._http: aiohttp.ClientSession | None = None
        self.connected = asyncio.Event()
        self.lost_at: float | None = None  # time.time() when the websocket was last lost
        self._stopping = False

    async def __aenter__(self) -> "Ari":
        # ARI sets no cookies: a dummy jar spares every request the cookie bookkeeping.
        # At most HTTP_CONNECTIONS kept-alive connections: Asterisk serves 100 HTTP sessions
        # (http.conf session_limit) and refuses the next, and aiohttp's default pool (100) plus
        # the event websocket went past that under the bench's load, failing calls.
        self._http = aiohttp.ClientSession(
            headers=self._headers, timeout=aiohttp.ClientTimeout(total=10), json_serialize=json.dumps,
            cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        self._stopping = True
        if self._http:
            await self._http.close()

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      ok_missing: bool = False) -> Any:
        """One REST call. ``ok_missing``: a 404 (the resource is already gone) is not an error."""
        assert self._http is not None, "use `async with Ari(...)`"
        clean = {k: ("true" if v is True else "false" if v is False else v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self._http.request(method, self.base + path, params=clean, json=body) as r:
                if r.status == 404 and ok_missing:
                    return None
                if r.status >= 400:
                    text = await r.text()
                    try:
                        text = json.loads(text).get("message", text)
                    except (ValueError, AttributeError):
                        pass
                    raise AriError(r.status, method, path, text.strip())
                if r.status == 204:
                    return None
                ctype = r.headers.get("Content-Type", "")
                return await r.json() if "json" in ctype else await r.read()
        except aiohttp.ClientError as e:
            raise AriError(0, method, path, f"unreachable: {e}") from None
        except asyncio.TimeoutError:
            raise AriError(0, method, path, "timed out") from None

    async def run(self, on_event: Callable[[dict], None], on_connect: Callable[[], Awaitable[None]] | None = None,
                  *, min_backoff: float = 0.2, max_backoff: float = 10.0) -> None:
        """Receive events until cancelled, reconnecting forever with backoff and jitter."""
        assert self._http is not None
        backoff = min_backoff
        while not self._stopping:
            try:
                async with self._http.ws_connect(
                    self.ws_url, params={"app": self.app, "subscribeAll": "false"},
                    heartbeat=5.0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                ) as ws:
                    log.info("ari websocket connected app=%s", self.app)
                    backoff = min_backoff
                    self.connected.set()
                    if on_connect:
                        await on_connect()
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            try:
                                event = json.loads(msg.data)
                            except ValueError:
                                log.warning("ari: undecodable event dropped: %.200s", msg.data)
                                continue
                            if isinstance(event, dict):
                                on_event(event)
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                            break
                    log.warning("ari websocket closed")
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                log.warning("ari websocket unavailable: %s", e.__class__.__name__)
            if self.connected.is_set():
                self.lost_at = time.time()
            self.connected.clear()
            if self._stopping:
                break
            delay = backoff * (0.5 + random.random())
            log.info("ari reconnect in %.2fs", delay)
            await asyncio.sleep(delay)
            backoff = min(max_backoff, backoff * 2)
