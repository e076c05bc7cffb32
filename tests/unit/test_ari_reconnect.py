"""The ARI client comes back as soon as Asterisk does: while Asterisk is down a cheap probe
notices its return and the websocket is retried at once, whatever the backoff has grown to;
the backoff only spaces out attempts that reach an Asterisk which refuses the websocket."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ivr.pbx.ari import MAX_BACKOFF, Ari
from ivr.testing import wait_until


class RestartableAsterisk:
    """ARI's websocket and ping on a fixed port that can go away and come back (a restart).
    ``refuse``: the websocket is refused with 503 (an Asterisk whose ARI is not loaded yet)."""

    def __init__(self) -> None:
        self.port = 0
        self.refuse = False
        self.attempts = 0  # websocket handshakes tried
        self.sockets: list[web.WebSocketResponse] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> RestartableAsterisk:
        app = web.Application()
        app.router.add_get("/ari/events", self.events)
        app.router.add_get("/ari/asterisk/ping", self.ping)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        self.sockets.clear()
        await self.runner.cleanup()

    async def ping(self, request: web.Request) -> web.Response:
        if self.refuse:
            return web.json_response({"message": "ARI not loaded"}, status=503)
        return web.json_response({"ping": "pong"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        if self.refuse:
            return web.json_response({"message": "ARI not loaded"}, status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for _ in ws:
            pass  # an Asterisk without REST over the websocket: requests go over HTTP
        return ws


async def running(fake: RestartableAsterisk, **kw) -> tuple[Ari, asyncio.Task, list[int]]:
    ari = Ari("127.0.0.1", fake.port, "u", "p", "tongdai")
    ari.probe_timeout = 0.2
    await ari.__aenter__()
    connects: list[int] = []

    async def on_connect() -> None:
        connects.append(len(connects) + 1)

    task = asyncio.create_task(ari.run(lambda ev: None, on_connect, **kw))
    return ari, task, connects


async def close(ari: Ari, task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await ari.__aexit__(None, None, None)


async def test_back_as_soon_as_asterisk_is_however_long_it_was_away():
    fake = await RestartableAsterisk().start()
    # A backoff this long would keep the controller away for half a minute after Asterisk's
    # return; the probe must bring it back long before.
    ari, task, connects = await running(fake, min_backoff=30, max_backoff=30)
    try:
        await wait_until(lambda: connects == [1] and ari.connected.is_set(), 5, "the first connection")
        await asyncio.sleep(1.1)  # a connection that lasts under a second counts as a refusal
        await fake.stop()  # Asterisk killed: the websocket closes, the port is closed
        await wait_until(lambda: not ari.connected.is_set(), 5, "the loss to be seen")
        await asyncio.sleep(0.5)  # a few attempts fail while it is away
        await fake.start()  # the same port again
        await wait_until(lambda: ari.connected.is_set() and connects == [1, 2], 5, "the reconnection")
        assert ari.lost_at is not None and ari.connected_at > ari.lost_at
    finally:
        await close(ari, task)
        await fake.stop()


async def test_a_closed_websocket_is_retried_at_once():
    """Asterisk restarted between two probes: the websocket closes and the port still answers."""
    fake = await RestartableAsterisk().start()
    ari, task, connects = await running(fake, min_backoff=30, max_backoff=30)
    try:
        await wait_until(lambda: connects == [1], 5, "the first connection")
        await asyncio.sleep(1.1)  # a connection that lasts under a second counts as a refusal
        for ws in list(fake.sockets):
            await ws.close()
        await wait_until(lambda: connects == [1, 2] and ari.connected.is_set(), 5, "the reconnection")
    finally:
        await close(ari, task)
        await fake.stop()


async def test_a_refusing_asterisk_is_retried_with_backoff():
    fake = await RestartableAsterisk().start()
    fake.refuse = True
    ari, task, connects = await running(fake, min_backoff=0.05)
    try:
        await wait_until(lambda: fake.attempts >= 3, 5, "a few refused attempts")
        # Not a tight loop: the attempts are spaced out (0.05, 0.1, 0.2 … s), never more than
        # MAX_BACKOFF (and its jitter) apart.
        seen = fake.attempts
        await asyncio.sleep(0.3)  # not synchronisation: the window in which attempts are counted
        assert fake.attempts <= seen + 3
        await wait_until(lambda: fake.attempts >= 8, 8 * MAX_BACKOFF * 1.5, "the attempts to go on")
        assert connects == []
        fake.refuse = False
        await wait_until(lambda: connects == [1], MAX_BACKOFF * 1.5 + 1, "the connection once ARI accepts")
    finally:
        await close(ari, task)
        await fake.stop()


async def test_wake_cuts_the_backoff_short():
    """AMI's FullyBooted wakes the client: it does not sit out the rest of its backoff."""
    fake = await RestartableAsterisk().start()
    fake.refuse = True
    ari, task, connects = await running(fake, min_backoff=10, max_backoff=10)
    try:
        await wait_until(lambda: fake.attempts == 1, 5, "the refused attempt")
        fake.refuse = False
        ari.wake()
        await wait_until(lambda: connects == [1], 2, "the connection after wake()")
    finally:
        await close(ari, task)
        await fake.stop()
