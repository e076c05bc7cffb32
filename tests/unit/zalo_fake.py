"""A local fake of Zalo's APIs (aiohttp), strict about what it receives, and test helpers.

It implements the three endpoints the service calls, checks their headers and bodies the way
Zalo documents them, and can be told to fail:

- ``POST /v3.0/oa/message/cs`` (header ``access_token``; ``recipient.user_id``, ``message.text``
  ≤ 2000 characters): -216 for an unknown or superseded access token, -201 for a malformed body,
  scripted codes per user (``script[user] = [-32, -230, …]``, consumed one per call);
- ``POST /message/template`` (ZNS; ``phone`` 84…, ``template_id``, ``template_data``,
  ``tracking_id`` ≤ 48): -124 for a bad token, -108 for a bad phone;
- ``POST /v4/oa/access_token`` (header ``secret_key``, form ``app_id``,
  ``grant_type=refresh_token``, ``refresh_token``): rotates the pair; a refresh token works once.

Only the latest access token is valid, so "the token expired" is :meth:`FakeZalo.expire_access`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
import socket

import aiohttp
from aiohttp import web

APP_ID = "3608465248940903967"
APP_SECRET = "app-secret-XYZ"
OA_SECRET = "oa-secret-ABC"
OA_ID = "388613280878808645"
SEED = "seed-refresh-token-0"


class FakeZalo:
    def __init__(self):
        self.counter = itertools.count(1)
        self.valid_refresh = {SEED}
        self.access: str | None = None
        self.expires_in = "90000"
        self.sent: list[dict] = []  # accepted CS messages
        self.zns: list[dict] = []  # accepted ZNS messages
        self.calls: list[tuple[str, int]] = []  # (endpoint, error) of every call
        self.refreshes = 0
        self.script: dict[str, list[int]] = {}
        self.refresh_fails = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    # -- control
    def expire_access(self) -> None:
        self.access = None

    def issue(self) -> tuple[str, str]:
        """A pair Zalo would hand out (used to seed a test that starts from a stored pair)."""
        n = next(self.counter)
        self.access, refresh = f"access-{n}", f"refresh-{n}"
        self.valid_refresh = {refresh}
        return self.access, refresh

    # -- server
    async def start(self) -> FakeZalo:
        app = web.Application()
        app.router.add_post("/v3.0/oa/message/cs", self.cs)
        app.router.add_post("/message/template", self.template)
        app.router.add_post("/v4/oa/access_token", self.token)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    def _answer(self, endpoint: str, error: int, message: str = "", data: dict | None = None) -> web.Response:
        self.calls.append((endpoint, error))
        body = {"error": error, "message": message or ("Success" if error == 0 else "error")}
        if data is not None:
            body["data"] = data
        return web.json_response(body)  # Zalo answers HTTP 200 even for errors

    async def cs(self, request: web.Request) -> web.Response:
        if not self.access or request.headers.get("access_token") != self.access:
            return self._answer("cs", -216, "Access token is invalid")
        try:
            body = await request.json()
            user, text = body["recipient"]["user_id"], body["message"]["text"]
            assert isinstance(user, str) and user and isinstance(text, str) and 0 < len(text) <= 2000
        except Exception:
            return self._answer("cs", -201, "message is invalid!")
        queue = self.script.get(user)
        if queue:
            code = queue.pop(0)
            if code != 0:
                return self._answer("cs", code, {-32: "Your OA reached limit call api",
                                                 -230: "User has not interacted with the OA in the past 7 days",
                                                 -234: "This message cannot be sent at night (10:00PM - 6:00AM)",
                                                 }.get(code, "error"))
        self.sent.append({"user_id": user, "text": text})
        return self._answer("cs", 0, data={"message_id": f"mid{len(self.sent)}", "user_id": user})

    async def template(self, request: web.Request) -> web.Response:
        if not self.access or request.headers.get("access_token") != self.access:
            return self._answer("zns", -124, "Access token invalid")
        try:
            body = await request.json()
            assert isinstance(body["template_id"], str) and body["template_id"]
            assert isinstance(body["template_data"], dict)
            assert isinstance(body["tracking_id"], str) and len(body["tracking_id"]) <= 48
        except Exception:
            return self._answer("zns", -1122, "Missing template parameter")
        if not re.fullmatch(r"84\d{9,10}", str(body.get("phone"))):
            return self._answer("zns", -108, "Phone number is invalid")
        self.zns.append(body)
        return self._answer("zns", 0, data={"msg_id": f"zns{len(self.zns)}", "sent_time": "1626926349402"})

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.headers.get("secret_key") != APP_SECRET or form.get("app_id") != APP_ID:
            self.calls.append(("token", -14001))
            return web.json_response({"error": -14001, "error_name": "Invalid app secret"})
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.valid_refresh \
                or self.refresh_fails:
            self.refresh_fails = max(0, self.refresh_fails - 1)
            self.calls.append(("token", -14014))
            return web.json_response({"error": -14014, "error_name": "Invalid refresh token"})
        self.refreshes += 1
        self.calls.append(("token", 0))
        access, refresh = self.issue()
        return web.json_response({"access_token": access, "refresh_token": refresh, "expires_in": self.expires_in})


def env(fake: FakeZalo, **extra: str) -> dict[str, str]:
    """Settings environment for a service talking to ``fake``."""
    base = {
        "TONGDAI_ZALO_APP_ID": APP_ID, "TONGDAI_ZALO_APP_SECRET": APP_SECRET, "TONGDAI_ZALO_OA_SECRET_KEY": OA_SECRET,
        "TONGDAI_ZALO_OA_ID": OA_ID, "TONGDAI_ZALO_REFRESH_TOKEN": SEED,
        "TONGDAI_ZALO_API_URL": fake.url, "TONGDAI_ZALO_OAUTH_URL": fake.url, "TONGDAI_ZALO_ZNS_URL": fake.url,
        "TONGDAI_WEB_ADDR": f"127.0.0.1:{free_tcp_port()}", "TONGDAI_ZALO_SURVEY_EVERY": "0",
    }
    base.update(extra)
    return base


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms(t: dt.datetime) -> str:
    return str(int(t.timestamp() * 1000))


def sign(raw: bytes, timestamp: str, *, app_id: str = APP_ID, secret: str = OA_SECRET) -> str:
    """What Zalo puts in X-ZEvent-Signature: mac=sha256(app_id + body + timestamp + OA secret)."""
    return "mac=" + hashlib.sha256(app_id.encode() + raw + timestamp.encode() + secret.encode()).hexdigest()


_msg = itertools.count(1)


def text_event(user: str, text: str, at: dt.datetime, *, msg_id: str | None = None) -> dict:
    return {"app_id": APP_ID, "sender": {"id": user}, "recipient": {"id": OA_ID}, "event_name": "user_send_text",
            "message": {"text": text, "msg_id": msg_id or f"msg{next(_msg):06d}abc"}, "timestamp": ms(at),
            "user_id_by_app": "552177279717587730"}


def image_event(user: str, url: str, at: dt.datetime) -> dict:
    return {"app_id": APP_ID, "sender": {"id": user}, "recipient": {"id": OA_ID}, "event_name": "user_send_image",
            "message": {"msg_id": f"img{next(_msg):06d}", "text": "",
                        "attachments": [{"type": "image", "payload": {"url": url, "thumbnail": url}}]},
            "timestamp": ms(at)}


def follow_event(user: str, at: dt.datetime, name: str = "follow") -> dict:
    return {"oa_id": OA_ID, "follower": {"id": user}, "user_id_by_app": "55217", "event_name": name,
            "source": "oa_profile", "app_id": APP_ID, "timestamp": ms(at)}


async def post_event(url: str, body: dict | bytes, *, signature: str | None = "auto", **headers) -> tuple[int, dict]:
    """POST an event over real HTTP, signed correctly unless told otherwise."""
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    h = {"Content-Type": "application/json", **headers}
    if signature == "auto":
        ts = json.loads(raw)["timestamp"] if isinstance(body, dict) else "0"
        h["X-ZEvent-Signature"] = sign(raw, str(ts))
    elif signature is not None:
        h["X-ZEvent-Signature"] = signature
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=raw, headers=h) as r:
            try:
                payload = await r.json(content_type=None)
            except ValueError:
                payload = {}
            return r.status, payload


class Clock:
    """An injectable clock: ``clock()`` → now; ``clock.t = …`` to move it."""

    def __init__(self, t: dt.datetime):
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, **kw) -> None:
        self.t += dt.timedelta(**kw)
