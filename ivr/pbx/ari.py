"""A thin ARI client on aiohttp: REST calls and one event websocket.

Why in-house: the PyPI clients either do not import on Python 3 or do not survive a websocket
drop (see docs). This one only moves bytes: business rules live in the call session.

- REST: :meth:`Ari.request` raises :class:`AriError` with the status and Asterisk's message.
  Requests go over websockets when Asterisk offers that (ARI "REST over WebSocket", Asterisk
  20.14 / 21.9 / 22.4 and later; probed after every connection), else over HTTP. Over a
  websocket a request costs both sides a fraction of an HTTP round trip: the bench measured the
  aiohttp client as the largest part of the controller's CPU per call. Asterisk handles one
  websocket's requests one after another, each waiting for the channel's thread, so under load
  they queued (100 ms and more per request at 200 calls): requests go to whichever of
  ``1 + REST_LINKS`` websockets (the event one and extra ones that carry requests only) has the
  fewest in flight.
- Events: :meth:`Ari.run` keeps one websocket open (heartbeat), reconnects, and calls
  ``on_connect`` after every (re)connection so the caller can reconcile what happened while it
  was away (events sent meanwhile are lost by Asterisk). Each event is handed to ``on_event``;
  the dispatcher puts it on the owning call's queue.
- Reconnecting: every moment the Stasis application is not registered, callers are held by the
  dialplan, so the controller must be back as soon as Asterisk is. A websocket that closes is
  retried at once. While Asterisk cannot be reached, a cheap probe (``GET /asterisk/ping``, a
  refused connection while Asterisk is down) runs every ``PROBE_EVERY`` seconds and the
  websocket is retried the moment it answers, or when :meth:`Ari.wake` is called (AMI's
  ``FullyBooted``). The backoff (with jitter, capped at ``MAX_BACKOFF``) only spaces out attempts
  that reach an Asterisk which refuses the websocket (ARI not loaded yet, wrong credentials).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

log = logging.getLogger("tongdai.ari")


# JSON: orjson decodes an ARI event (~600 bytes) in a third of the time of the json module; the
# bench's profile had JSON at 11-13% of the controller's CPU per call, nearly all of it here.
def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


_loads = orjson.loads  # raises orjson.JSONDecodeError, a ValueError

HTTP_CONNECTIONS = 32  # REST requests in flight at once; more wait for a free connection
REQUEST_TIMEOUT = 10.0  # seconds, for one REST request over either transport
PROBE_TIMEOUT = 2.0  # an Asterisk without REST over WebSocket ignores the probe: HTTP after this
REST_LINKS = 3  # websockets that carry requests only, besides the event websocket
MAX_BACKOFF = 2.0  # seconds between websocket attempts at most (measured: 15 s with no cap)
PROBE_EVERY = 0.1  # seconds between probes while Asterisk is unreachable (a refused connect costs nothing)


def _message(text: str) -> str:
    """Asterisk's error text: the ``message`` of a JSON body, else the body itself."""
    try:
        return str(_loads(text).get("message", text)).strip()
    except (ValueError, AttributeError):
        return text.strip()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _Link:
    """One websocket that carries REST requests, and its requests in flight (by request_id)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.pending: dict[str, asyncio.Future] = {}

    def resolve(self, msg: dict) -> None:
        fut = self.pending.get(str(msg.get("request_id")))
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def fail(self, why: str) -> None:
        """The websocket closed: what it carried fails now (Asterisk unreachable), not at its timeout."""
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(why))
        self.pending.clear()


class AriError(Exception):
    """An ARI request failed: ``status`` is the HTTP status (0 when Asterisk is unreachable)."""

    def __init__(self, status: int, method: str, path: str, message: str):
        self.status = status
        self.path = path
        super().__init__(f"ARI {method} {path}: {status} {message}")


class Ari:
    def __init__(self, host: str, port: int, user: str, password: str, app: str | list[str]):
        """``app``: the application, or several (one event websocket takes all of them)."""
        self.base = f"http://{host}:{port}/ari"
        self.ws_url = f"ws://{host}:{port}/ari/events"
        self.apps = [app] if isinstance(app, str) else list(app)
        self.app = self.apps[0]
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._http: aiohttp.ClientSession | None = None
        self.connected = asyncio.Event()
        self.lost_at: float | None = None  # time.time() when the websocket was last lost
        self.ws_rest = False  # REST requests go over the websocket (probed at each connection)
        self.use_ws_rest = True  # False: always HTTP (a setting, and for comparisons)
        self.probe_timeout = PROBE_TIMEOUT
        self.rest_links = REST_LINKS
        self._links: list[_Link] = []  # open websockets that take requests (the event one among them)
        self._extra: list[asyncio.Task] = []
        self._ids = itertools.count(1)
        self._stopping = False
        self._wake = asyncio.Event()  # set by wake(): Asterisk is back, retry now
        self._main_up = asyncio.Event()  # replaced at every connection: wakes the REST links
        self.connected_at: float | None = None  # time.time() when the controller was last ready
        self.probe_every = PROBE_EVERY

    def wake(self) -> None:
        """Asterisk is back (AMI's FullyBooted): a pending reconnection is tried now."""
        if not self.connected.is_set():
            self._wake.set()

    async def __aenter__(self) -> Ari:
        # ARI sets no cookies: a dummy jar spares every request the cookie bookkeeping.
        # At most HTTP_CONNECTIONS kept-alive connections: Asterisk serves 100 HTTP sessions
        # (http.conf session_limit) and refuses the next, and aiohttp's default pool (100) plus
        # the event websocket went past that under the bench's load, failing calls.
        self._http = aiohttp.ClientSession(
            headers=self._headers, timeout=aiohttp.ClientTimeout(total=10), json_serialize=_dumps,
            cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        self._stopping = True
        await self._stop_extra()
        if self._http:
            await self._http.close()

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      ok_missing: bool = False) -> Any:
        """One REST call. ``ok_missing``: a 404 (the resource is already gone) is not an error."""
        assert self._http is not None, "use `async with Ari(...)`"
        clean = {k: ("true" if v is True else "false" if v is False else v) for k, v in (params or {}).items() if v is not None}
        if self.ws_rest and self._links:
            link = min(self._links, key=lambda ln: len(ln.pending))
            return await self._ws_request(link, method, path, clean, body, ok_missing)
        try:
            async with self._http.request(method, self.base + path, params=clean, json=body) as r:
                if r.status == 404 and ok_missing:
                    return None
                if r.status >= 400:
                    raise AriError(r.status, method, path, _message(await r.text()))
                if r.status == 204:
                    return None
                ctype = r.headers.get("Content-Type", "")
                return await r.json(loads=_loads) if "json" in ctype else await r.read()
        except aiohttp.ClientError as e:
            raise AriError(0, method, path, f"unreachable: {e}") from None
        except TimeoutError:
            raise AriError(0, method, path, "timed out") from None

    async def _ws_request(self, link: _Link, method: str, path: str, params: dict, body: Any, ok_missing: bool,
                          timeout: float = REQUEST_TIMEOUT) -> Any:
        """One REST call as a ``RESTRequest`` message; the link's reader resolves it by ``request_id``."""
        rid = str(next(self._ids))
        uri = path.lstrip("/")
        if params:
            uri += "?" + urlencode(params, quote_via=quote)
        msg = {"type": "RESTRequest", "request_id": rid, "method": method, "uri": uri}
        if body is not None:
            msg["content_type"] = "application/json"
            msg["message_body"] = _dumps(body)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        link.pending[rid] = fut
        # A timer instead of asyncio.wait_for: no extra task per request (measured in the bench).
        timer = loop.call_later(timeout, _expire, fut)
        try:
            await link.ws.send_str(_dumps(msg))
            resp = await fut
        except TimeoutError:
            raise AriError(0, method, path, "timed out") from None
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as e:
            raise AriError(0, method, path, f"unreachable: {e}") from None
        finally:
            timer.cancel()
            link.pending.pop(rid, None)
        status = int(resp.get("status_code") or 0)
        text = resp.get("message_body") or ""
        if status == 404 and ok_missing:
            return None
        if status >= 400:
            raise AriError(status, method, path, _message(text) or str(resp.get("reason_phrase", "")))
        if status == 204 or not text:
            return None
        return _loads(text) if "json" in (resp.get("content_type") or "") else text

    async def _probe_ws_rest(self, link: _Link) -> bool:
        """Whether this Asterisk answers REST requests on the websocket (an older one ignores them)."""
        try:
            await self._ws_request(link, "GET", "/asterisk/ping", {}, None, False, timeout=self.probe_timeout)
            return True
        except AriError:
            return False

    async def run(self, on_event: Callable[[dict], None], on_connect: Callable[[], Awaitable[None]] | None = None,
                  *, min_backoff: float = 0.2, max_backoff: float = MAX_BACKOFF) -> None:
        """Receive events until cancelled, reconnecting forever (see the module's docstring)."""
        assert self._http is not None
        backoff = min_backoff
        while not self._stopping:
            self._wake.clear()
            unreachable = False  # the attempt did not reach an Asterisk with ARI loaded
            refused = False  # it did, and ARI refused the websocket
            try:
                async with self._http.ws_connect(
                    self.ws_url, params={"app": ",".join(self.apps), "subscribeAll": "false"},
                    heartbeat=5.0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                ) as ws:
                    log.info("ari websocket connected app=%s", ",".join(self.apps))
                    backoff = min_backoff
                    link = _Link(ws)
                    # Responses (to the probe and to on_connect's requests) arrive on this
                    # websocket, so the reader runs while the connection is set up.
                    setup = asyncio.create_task(self._setup(link, on_connect), name="ari-setup")
                    try:
                        await self._read(link, on_event)
                    finally:
                        setup.cancel()
                        self.ws_rest = False
                        self._drop(link, "ari websocket closed")
                    log.warning("ari websocket closed")
            except asyncio.CancelledError:
                await self._stop_extra()
                raise
            except aiohttp.WSServerHandshakeError as e:
                # Asterisk answered. 404/503: its HTTP server is up but ARI is not loaded yet
                # (Asterisk is booting); anything else (401: credentials) is a refusal.
                unreachable = e.status in (404, 503)
                refused = not unreachable
                log.warning("ari websocket refused: %s %s", e.status, e.message)
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                unreachable = True
                if self.connected.is_set() or backoff == min_backoff:
                    log.warning("ari websocket unavailable: %s", e.__class__.__name__)
            was_up = self.connected.is_set()
            lost = time.time()
            if was_up:
                self.lost_at = lost
            self.connected.clear()
            if self._stopping:
                break
            if was_up and lost - (self.connected_at or 0) > 1:
                continue  # a websocket that closed is tried again at once: Asterisk may only have restarted
            # One that closed within a second of its connection counts as a refusal: no tight loop.
            refused = refused or was_up
            await self._pause(backoff * (0.5 + random.random()), probe=not refused)
            backoff = min(max_backoff, backoff * 2)

    async def _pause(self, delay: float, probe: bool) -> None:
        """Wait before the next attempt: ``delay`` at most, less when :meth:`wake` is called or,
        with ``probe`` (the attempt found no ARI to talk to), as soon as ARI answers a ping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (left := deadline - loop.time()) > 0:
            if probe and await self._answers():
                log.info("ari: Asterisk answers again; reconnecting")
                return
            try:
                await asyncio.wait_for(self._wake.wait(), min(left, self.probe_every) if probe else left)
                log.info("ari: woken (Asterisk booted); reconnecting")
                return
            except TimeoutError:
                pass

    async def _answers(self) -> bool:
        """Whether Asterisk's ARI answers a ping now (refused at once while it is down)."""
        assert self._http is not None
        try:
            async with self._http.get(self.base + "/asterisk/ping", timeout=aiohttp.ClientTimeout(total=0.5)) as r:
                return r.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def _setup(self, link: _Link, on_connect: Callable[[], Awaitable[None]] | None) -> None:
        """After a connection: pick the REST transport, let the owner reconcile, then say connected."""
        if self.use_ws_rest and await self._probe_ws_rest(link):
            self._links.insert(0, link)
            self.ws_rest = True
            while len(self._extra) < self.rest_links:
                self._extra.append(asyncio.create_task(self._extra_link(len(self._extra) + 1), name="ari-rest-link"))
        log.info("ari rest requests over %s", f"{1 + len(self._extra)} websockets" if self.ws_rest else "http")
        try:
            if on_connect:
                await on_connect()
        except Exception:  # a failed reconcile must not take the event stream down
            log.exception("ari on_connect failed")
        self.connected_at = time.time()
        self.connected.set()
        up, self._main_up = self._main_up, asyncio.Event()
        up.set()
        if self.lost_at is not None:
            log.info("ari ready again %.2fs after the websocket was lost", self.connected_at - self.lost_at)

    async def _extra_link(self, n: int) -> None:
        """A websocket for requests only, kept open (with backoff) until the client stops. It
        registers its own, empty application: a second websocket of the main app would take the
        main one's events."""
        assert self._http is not None  # started by run(), inside `async with`
        backoff = 0.2
        while not self._stopping:
            try:
                async with self._http.ws_connect(
                    self.ws_url, params={"app": f"{self.app}-rest{n}", "subscribeAll": "false"},
                    heartbeat=5.0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                ) as ws:
                    backoff = 0.2
                    link = _Link(ws)
                    self._links.append(link)
                    try:
                        await self._read(link, lambda ev: None)
                    finally:
                        self._drop(link, "ari websocket closed")
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            # Again when the event websocket is back (Asterisk restarted), or after the backoff.
            try:
                await asyncio.wait_for(self._main_up.wait(), backoff * (0.5 + random.random()))
            except TimeoutError:
                pass
            backoff = min(MAX_BACKOFF, backoff * 2)

    def _drop(self, link: _Link, why: str) -> None:
        if link in self._links:
            self._links.remove(link)
        link.fail(why)

    async def _stop_extra(self) -> None:
        for t in self._extra:
            t.cancel()
        await asyncio.gather(*self._extra, return_exceptions=True)
        self._extra.clear()

    async def _read(self, link: _Link, on_event: Callable[[dict], None]) -> None:
        async for msg in link.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    event = _loads(msg.data)
                except ValueError:
                    log.warning("ari: undecodable event dropped: %.200s", msg.data)
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "RESTResponse":
                    link.resolve(event)
                else:
                    on_event(event)
            elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                break
