"""The Zalo webhook and worker in the console's process (`tongdai web`), not the controller's:
a signed event posted to the console becomes a case; an officer answers it in the console and
the worker sends the answer to the citizen (a strict fake of Zalo's API; both backends)."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from ivr.models.cases import Case
from ivr.records import db
from ivr.web.app import Console
from ivr.web.config import WebSettings
from ivr.zalo.service import ZaloService
from ivr.zalo.webhook import PATH

from .console_kit import PASSWORD, ROUTING, Browser, Clock
from .zalo_fake import env, post_event, text_event


def quiet_hours_away_from_now() -> str:
    h = (dt.datetime.now(zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")).hour + 12) % 24
    return f"{h:02d}:00-{h:02d}:30"


async def wait_until(pred, timeout: float = 15.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if await pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
async def console(settings_factory, database_url, fake):
    s = settings_factory(TONGDAI_DATABASE_URL=database_url, **env(fake, TONGDAI_ZALO_QUIET_HOURS=quiet_hours_away_from_now()))
    await asyncio.to_thread(db.upgrade, s)
    c = Console(s, engine=db.engine(s), routing=lambda: ROUTING, clock=Clock(), web_settings=WebSettings())
    c._own_engine = True
    c.zalo = ZaloService(s, c.engine, c.routing, poll=0.1)
    server = TestServer(c.app())
    await server.start_server()
    await c.zalo.start(serve_webhook=False)
    await c.accounts.add("snv", "supervisor", PASSWORD)
    await c.accounts.add("stp", "officer", PASSWORD, agency="STP")
    c.test_server = server
    yield c
    await server.close()  # the app's cleanup stops the Zalo worker


async def test_the_console_takes_the_webhook_and_its_worker_sends_the_answer(console, fake):
    url = str(console.test_server.make_url(PATH))
    # Signed by Zalo: no session, no CSRF field; a bad signature is still refused.
    status, _ = await post_event(url, text_event("u9", "Xin hỏi thủ tục cấp bản sao", dt.datetime.now(dt.timezone.utc)),
                                 signature="mac=00")
    assert status == 401
    status, _ = await post_event(url, text_event("u9", "Xin hỏi thủ tục cấp bản sao", dt.datetime.now(dt.timezone.utc)))
    assert status == 200

    async def case_made():
        async with console.engine.connect() as conn:
            return (await conn.execute(select(Case.code).where(Case.channel == "zalo"))).scalar_one_or_none()

    await wait_until(case_made)
    code = await case_made()
    await wait_until(lambda: asyncio.sleep(0, len(fake.sent) == 1))  # the automatic reply with the code
    assert code in fake.sent[0]["text"]
    svc = console.cases()
    await svc.act(code, "classify", actor="snv", category="question")
    await svc.act(code, "assign", actor="snv", agencies=["STP"])
    await svc.act(code, "start", actor="stp")
    from aiohttp.test_utils import TestClient

    client = TestClient(console.test_server)
    await client.start_server()
    try:
        b = Browser(client)
        await b.get("/login")
        assert (await b.post("/login", {"username": "stp", "password": PASSWORD})).status == 303
        await b.get(f"/cases/{code}")
        r = await b.post(f"/cases/{code}/answer", {"text": "Anh mang CCCD đến bộ phận một cửa Sở Tư pháp."})
        assert r.status == 303
        await wait_until(lambda: asyncio.sleep(0, len(fake.sent) == 2))
        assert fake.sent[1]["user_id"] == "u9" and "bộ phận một cửa" in fake.sent[1]["text"]
        text = await (await b.get(f"/cases/{code}")).text()
        assert "đã gửi" in text
    finally:
        await client.close()
