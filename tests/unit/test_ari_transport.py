"""The ARI client's transports against a local fake: an Asterisk that predates REST over the
websocket (it ignores the requests) gets HTTP; a websocket that drops fails what was pending at
once instead of leaving calls waiting for the request timeout."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from ivr.pbx.ari import Ari, AriError
from ivr.testing import wait_until


class FakeAsterisk:
    """ARI's websocket and a few HTTP resources. ``rest_over_ws``: answer RESTRequests."""

    def __init__(self, *, rest_over_ws: bool, delay: float = 0):
        self.rest_over_ws = rest_over_ws
        self.delay = delay  # seconds before each answer: Asterisk handles a websocket's requests in turn
        self.apps: list[str] = []
        self.served_by: dict[str, str] = {}  # uri -> app of the websocket it came on
        self.http_hits: list[str] = []
        self.ws_requests: list[dict] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.silent: set[str] = set()  # uris never answered

    async def start(self) -> FakeAsterisk:
        app = web.Application()
        app.router.add_get("/ari/events", self.events)
        app.router.add_route("*", "/ari/{path:.*}", self.http)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def http(self, request: web.Request) -> web.Response:
        self.http_hits.append(f"{request.method} /{request.match_info['path']}")
        if request.match_info["path"] == "asterisk/ping":
            return web.json_response({"ping": "pong"})
        return web.json_response({"message": "Channel not found"}, status=404)

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        app = request.query["app"]
        self.apps.append(app)
        async for msg in ws:
            req = json.loads(msg.data)
            self.ws_requests.append(req)
            self.served_by[req["uri"]] = app
            if not self.rest_over_ws or req["uri"] in self.silent:
                continue  # what an Asterisk before 22.4 does with a text message
            await asyncio.sleep(self.delay)  # the fake's simulated service time, not synchronisation
            ok = req["uri"].startswith("asterisk/ping")
            await ws.send_str(json.dumps({
                "type": "RESTResponse", "request_id": req["request_id"], "status_code": 200 if ok else 404,
                "content_type": "application/json",
                "message_body": json.dumps({"ping": "pong"} if ok else {"message": "Channel not found"})}))
        return ws


async def connect(fake: FakeAsterisk, app: str | list[str] = "tongdai", **kw) -> tuple[Ari, asyncio.Task]:
    ari = Ari("127.0.0.1", fake.port, "u", "p", app)
    await ari.__aenter__()
    for k, v in kw.items():
        setattr(ari, k, v)
    task = asyncio.create_task(ari.run(lambda ev: None, min_backoff=5))
    await asyncio.wait_for(ari.connected.wait(), 5)
    return ari, task


async def close(ari: Ari, task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await ari.__aexit__(None, None, None)


async def test_an_asterisk_without_rest_over_websocket_gets_http():
    fake = await FakeAsterisk(rest_over_ws=False).start()
    ari, task = await connect(fake, probe_timeout=0.3)
    try:
        assert ari.ws_rest is False
        assert [r["uri"] for r in fake.ws_requests] == ["asterisk/ping"]  # the probe, unanswered
        assert await ari.request("GET", "/asterisk/ping") == {"ping": "pong"}
        with pytest.raises(AriError) as e:
            await ari.request("POST", "/channels/x/answer")
        assert e.value.status == 404 and str(e.value).endswith("Channel not found")
        assert await ari.request("DELETE", "/channels/x", ok_missing=True) is None
        assert fake.http_hits == ["GET /asterisk/ping", "POST /channels/x/answer", "DELETE /channels/x"]
    finally:
        await close(ari, task)
        await fake.stop()


async def test_requests_go_over_the_websocket_when_offered():
    fake = await FakeAsterisk(rest_over_ws=True).start()
    ari, task = await connect(fake)
    try:
        assert ari.ws_rest is True
        assert await ari.request("GET", "/asterisk/ping") == {"ping": "pong"}
        with pytest.raises(AriError) as e:
            await ari.request("POST", "/channels/x/play/p1", params={"media": "sound:tongdai/a,digits:12", "lang": "vi"})
        assert e.value.status == 404 and str(e.value).endswith("Channel not found")
        assert fake.ws_requests[-1]["uri"] == "channels/x/play/p1?media=sound%3Atongdai%2Fa%2Cdigits%3A12&lang=vi"
        assert fake.http_hits == []
    finally:
        await close(ari, task)
        await fake.stop()


async def test_a_dropped_websocket_fails_pending_requests_at_once():
    fake = await FakeAsterisk(rest_over_ws=True).start()
    fake.silent.add("channels/x/answer")
    ari, task = await connect(fake)
    try:
        pending = asyncio.create_task(ari.request("POST", "/channels/x/answer"))
        await wait_until(lambda: any(r["uri"] == "channels/x/answer" for r in fake.ws_requests), 5,
                         "the request to reach Asterisk")
        t0 = asyncio.get_running_loop().time()
        for ws in fake.sockets:  # Asterisk goes away: every websocket closes
            await ws.close()
        with pytest.raises(AriError) as e:
            await pending
        assert e.value.status == 0  # Asterisk unreachable: the call is interrupted, not retried
        assert asyncio.get_running_loop().time() - t0 < 2
        assert not ari.ws_rest  # until the next connection's probe
    finally:
        await close(ari, task)
        await fake.stop()


async def test_concurrent_requests_spread_over_the_websockets():
    """Asterisk serves one websocket's requests in turn: concurrent calls must not queue on one."""
    fake = await FakeAsterisk(rest_over_ws=True, delay=0.2).start()
    ari, task = await connect(fake, ["tongdai", "tongdai-2"])
    try:
        # the event websocket and three that carry requests only
        await wait_until(lambda: len(ari._links) >= 4, 5, "four websockets")
        # The call lanes share the event websocket; the request-only ones are named after the first.
        assert sorted(fake.apps) == ["tongdai,tongdai-2", "tongdai-rest1", "tongdai-rest2", "tongdai-rest3"]
        got = await asyncio.gather(*(ari.request("GET", "/asterisk/ping", params={"n": i}) for i in range(4)))
        assert got == [{"ping": "pong"}] * 4
        served = [fake.served_by[f"asterisk/ping?n={i}"] for i in range(4)]
        assert sorted(served) == sorted(fake.apps)
    finally:
        await close(ari, task)
        await fake.stop()
