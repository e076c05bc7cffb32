"""Helpers for the console's server-level tests: a console on a fresh database (both backends),
staff accounts of every role, cases, and a browser-like client (cookies, CSRF fields)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from ivr import testing
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.records import cases as cm
from ivr.records import db
from ivr.web.app import Console
from ivr.web.config import WebSettings
from tests.paths import REPO_ROOT

ROUTING = rt.load(REPO_ROOT / "routing.yaml")
PASSWORD = "một mật khẩu đủ dài"
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')

# login -> (role, agency)
STAFF = {
    "snv": ("supervisor", "SNV"),
    "stp": ("officer", "STP"),  # Sở Tư pháp
    "hhdn": ("officer", "HHDN"),  # Hiệp hội Doanh nghiệp
    "vithanh": ("officer", "DV930"),  # Thành phố Vị Thanh (a district): its communes too
    "phuong1": ("officer", "DV31318"),  # Phường I, a commune of Vị Thanh
    "ktra": ("inspector", None),
    "vanhanh": ("operator", None),
    "doan": ("youth", None),  # Tỉnh Đoàn: every desk's volunteers, no case
}

# Still Argon2id, hashed and verified for real, at the lowest cost the algorithm allows: the
# console's tests sign in hundreds of times and the production cost (test_users checks it is
# the default) would take minutes of the suite.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Clock:
    def __init__(self, start: dt.datetime | None = None):
        self.now = start or dt.datetime.now(dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += dt.timedelta(**kw)


def write_wav(path: Path, seconds: float = 2.0) -> Path:
    """A real PCM WAV like Asterisk's (8 kHz, 16-bit mono): ivr.testing's, two seconds by default."""
    return testing.write_wav(path, seconds)


@dataclass
class Kit:
    settings: Settings
    console: Console
    server: TestServer
    clock: Clock
    cases: cm.Cases
    clients: list = field(default_factory=list)

    async def browser(self) -> Browser:
        client = TestClient(self.server)
        await client.start_server()
        self.clients.append(client)
        return Browser(client)

    async def signed_in(self, login: str) -> Browser:
        b = await self.browser()
        r = await b.login(login, PASSWORD)
        assert r.status == 303, (login, r.status, await r.text())
        return b

    async def new_case(self, **kw) -> cm.Case:
        base = dict(channel="phone", caller="0909123456", branch_digit="3", branch_name="Tư pháp, hộ tịch",
                    agency_code="STP", agency_name="Sở Tư pháp")
        base.update(kw)
        received = base.pop("received_at", None)
        return await self.cases.create(cm.NewCase(**base), received_at=received)

    async def with_recording(self, code_hint: str = "rec", seconds: float = 2.0, **kw) -> cm.Case:
        rel = Path("recordings") / "2026" / "12" / f"{code_hint}.wav"
        write_wav(self.settings.home / rel, seconds)
        return await self.new_case(recording=str(rel), recording_seconds=seconds, **kw)


class Browser:
    """A client that keeps its cookies and reads the CSRF field off the last page, as a browser
    submitting a form would."""

    def __init__(self, client: TestClient):
        self.client = client
        self.csrf: str | None = None

    def _remember(self, text: str) -> None:
        m = CSRF_RE.search(text)
        if m:
            self.csrf = m.group(1)

    async def get(self, path: str, **kw):
        r = await self.client.get(path, allow_redirects=False, **kw)
        if r.content_type == "text/html":
            self._remember(await r.text())
        return r

    async def post(self, path: str, data: dict | list | None = None, *, csrf: bool | str = True, **kw):
        fields = list(data.items()) if isinstance(data, dict) else list(data or [])
        if csrf is True:
            fields.append(("_csrf", self.csrf or ""))
        elif isinstance(csrf, str):
            fields.append(("_csrf", csrf))
        r = await self.client.post(path, data=fields, allow_redirects=False, **kw)
        if r.content_type == "text/html":
            self._remember(await r.text())
        return r

    async def login(self, login: str, password: str, **kw):
        await self.get("/login")
        return await self.post("/login", {"username": login, "password": password}, **kw)

    def cookie(self, name: str) -> str | None:
        for c in self.client.session.cookie_jar:
            if c.key == name:
                return c.value
        return None


async def make_kit(settings: Settings, *, web: WebSettings | None = None, staff: dict | None = None,
                   status=None, clock: Clock | None = None) -> Kit:
    """``status``: what the controller's control socket would answer (an async callable)."""
    await asyncio.to_thread(db.upgrade, settings)
    clock = clock or Clock()
    console = Console(settings, engine=db.engine(settings), routing=lambda: ROUTING, clock=clock, hasher=CHEAP_HASHER,
                      web_settings=web or WebSettings(), status=status, live_every=0.1)
    console._own_engine = True
    for login, (role, agency) in (STAFF if staff is None else staff).items():
        await console.accounts.add(login, role, PASSWORD, agency=agency, name=f"Cán bộ {login}")
    server = TestServer(console.app())
    await server.start_server()
    return Kit(settings, console, server, clock, cm.Cases(console.engine, ROUTING))


async def close_kit(kit: Kit) -> None:
    for c in kit.clients:
        await c.close()
    await kit.server.close()
