"""The ARI client's transports against a local fake: an Asterisk that predates REST over the
websocket (it ignores the requests) gets HTTP; a websocket that drops fails what was pending at
once instead of leaving calls waiting for the request timeout."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from ivr.ari import Ari, AriError


class FakeAsterisk:
    """ARI's websocket and a few HTTP resources. ``rest_over_ws``: answer RESTRequests."""

    def __init__(self, *, rest_over_ws: bool):
        self.rest_over_ws = rest_over_ws
        self.http_hits: list[str] = []
        self.ws_requests: list[dict] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.silent: set[str] = set()  # uris never answered

    async def start(self) -> "FakeAsterisk":
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
        async for msg in ws:
            req = json.loads(msg.data)
            self.ws_requests.append(req)
            if not self.rest_over_ws or req["uri"] in self.silent:
                continue  # what an Asterisk before 22.4 does with a text message
            ok = req["uri"] == "asterisk/ping"
            await ws.send_str(json.dumps({
                "type": "RESTResponse", "request_id": req["request_id"], "status_code": 200 if ok else 404,
                "content_type": "application/json",
                "message_body": json.dumps({"ping": "pong"} if ok else {"message": "Channel not found"})}))
        return ws


async def connect(fake: FakeAsterisk, **kw) -> tuple[Ari, asyncio.Task]:
    ari = Ari("127.0.0.1", fake.port, "u", "p", "tongdai")
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
        while not any(r["uri"] == "channels/x/answer" for r in fake.ws_requests):
            await asyncio.sleep(0.01)
        t0 = asyncio.get_running_loop().time()
        await fake.sockets[-1].close()
        with pytest.raises(AriError) as e:
            await pending
        assert e.value.status == 0  # Asterisk unreachable: the call is interrupted, not retried
        assert asyncio.get_running_loop().time() - t0 < 2
        assert not ari.ws_rest  # until the next connection's probe
    finally:
        await close(ari, task)
        await fake.stop()
