"""The staff console in a real browser (Debian's Chromium driven by Playwright) against a real
complaint: a SIPp caller records it through Asterisk and the controller; a supervisor classifies
and assigns it in the console; the assigned agency's officer finds it with the inbox's filters,
plays its recording, starts and answers it; another agency's officer can neither list it, nor
open it, nor fetch its recording. The live board shows a real call in progress from the
controller's control socket. A Youth Union coordinator, at a phone's width, checks a volunteer
in and logs assists in two taps. Screenshots: test-artefacts/console/ (kept after the run)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
import uuid
import zoneinfo

import pytest
from aiohttp import web
from sqlalchemy import select

from ivr.config import hours as cal
from ivr.models import AuditEntry
from ivr.records import db
from ivr.web.app import Console
from tests.paths import REPO_ROOT

from .conftest import need, phones, place

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# GUIDE.md: Debian's Chromium, never a downloaded one; these flags keep it off the network.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO_ROOT / "test-artefacts" / "console"
PASSWORD = "mật khẩu thử nghiệm 1"


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shots():
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return SHOTS


@pytest.fixture
async def console(ivr):
    """The console on the controller's data directory and database, on a port of its own."""
    engine = db.engine(ivr.settings)
    c = Console(ivr.settings, engine=engine, routing=lambda: ivr.routing)
    runner = web.AppRunner(c.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    c.url = f"http://127.0.0.1:{port}"
    tag = uuid.uuid4().hex[:6]
    c.logins = {"snv": f"snv-{tag}", "stp": f"stp-{tag}", "hhdn": f"hhdn-{tag}", "ops": f"ops-{tag}"}
    await c.accounts.add(c.logins["snv"], "supervisor", PASSWORD, name="Trần Thị Hòa (Sở Nội vụ)")
    await c.accounts.add(c.logins["stp"], "officer", PASSWORD, agency="STP", name="Nguyễn Văn Lâm (Sở Tư pháp)")
    await c.accounts.add(c.logins["hhdn"], "officer", PASSWORD, agency="HHDN", name="Lê Thu (Hiệp hội DN)")
    await c.accounts.add(c.logins["ops"], "operator", PASSWORD, name="Vận hành")
    yield c
    await runner.cleanup()  # disposes nothing of the controller's: the console's own engine
    await engine.dispose()


@pytest.fixture
async def browser():
    need(os.path.exists(CHROMIUM), "Debian's chromium is not installed (scripts/install-system-deps.sh)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need(False, "Playwright for Python is not installed (pip install -e '.[test]')")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


async def sign_in(browser, console, who: str, start: str = "/cases"):
    ctx = await browser.new_context(viewport={"width": 412, "height": 915}, locale="vi-VN")  # a phone's screen
    page = await ctx.new_page()
    await page.goto(console.url + start)
    assert page.url.startswith(console.url + "/login")
    await page.fill("input[name=username]", console.logins[who])
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    return ctx, page


async def real_complaint(ivr) -> str:
    """A caller outside opening hours records a complaint ('#' ends it after ~2 s): its code."""
    d = ivr.durations
    now = dt.datetime.now(dt.timezone.utc)
    cal.write_override(ivr.settings.hours_override_path, "closed", None, now)
    try:
        at = d["closed"] + d["record_offer"] + 2.5
        res, (call, events, legs) = await place(ivr, "#", digits_at_ms=ms(at), hold_ms=40000, wait_for_bye_ms=40000)
    finally:
        cal.write_override(ivr.settings.hours_override_path, "open", None, now)
    assert call.case_code, [e.kind for e in events]
    return call.case_code


async def test_a_real_complaint_handled_in_the_browser(ivr, console, browser, shots):
    code = await real_complaint(ivr)
    case = await console.cases().get(code)
    assert case.recording and (ivr.settings.home / case.recording).is_file()

    # The supervisor classifies and assigns it to Sở Tư pháp.
    ctx, page = await sign_in(browser, console, "snv")
    await page.goto(f"{console.url}/cases?q={code}")
    await page.screenshot(path=str(shots / "01-supervisor-inbox.png"), full_page=True)
    await page.click(f'li[data-code="{code}"] a')
    await page.select_option("#f-classify select[name=category]", "procedure")
    await page.click("#f-classify button")
    await page.wait_for_selector("p.done")
    await page.select_option("#f-assign select[name=agency]", ["STP"])
    await page.fill("#f-assign input[name=note]", "Hồ sơ chứng thực, đề nghị Sở Tư pháp trả lời")
    await page.click("#f-assign button")
    await page.wait_for_selector("p.done")
    assert "Sở Tư pháp" in await page.inner_text("#assigned")
    await page.screenshot(path=str(shots / "02-supervisor-assigned.png"), full_page=True)
    await ctx.close()

    # The officer of Sở Tư pháp filters the inbox down to it, listens, starts and answers.
    ctx, page = await sign_in(browser, console, "stp")
    await page.select_option("select[name=channel]", "phone")
    await page.select_option("select[name=category]", "procedure")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_load_state()
    await page.click('a[data-status="assigned"]')
    await page.wait_for_load_state()
    assert "status=assigned" in page.url and "channel=phone" in page.url and "category=procedure" in page.url
    listed = await page.eval_on_selector_all("li.case", "els => els.map(e => e.dataset.code)")
    assert code in listed
    await page.screenshot(path=str(shots / "03-officer-filtered-inbox.png"), full_page=True)
    await page.click(f'li[data-code="{code}"] a')
    await page.wait_for_selector("audio#recording")
    duration = await page.evaluate("""async () => {
        const a = document.getElementById('recording');
        a.muted = true;
        await a.play();
        if (!(a.duration > 0)) await new Promise(r => a.addEventListener('loadedmetadata', r, {once: true}));
        return a.duration;
    }""")
    assert duration > 0.5, duration
    await page.evaluate("document.getElementById('recording').pause()")
    await page.screenshot(path=str(shots / "04-officer-case-playing.png"), full_page=True)
    await page.click("#f-start button")
    await page.wait_for_selector("#f-answer textarea")
    await page.fill("#f-answer textarea", "Kính gửi ông/bà: hồ sơ chứng thực đã được giải quyết ngày 8/12; "
                                         "mời ông/bà nhận kết quả tại Bộ phận một cửa Sở Tư pháp.")
    await page.click("#f-answer button")
    await page.wait_for_selector("p.done")
    assert await page.inner_text("#status") == "đã trả lời"
    assert "Bộ phận một cửa Sở Tư pháp" in await page.inner_text("#answer")
    await page.screenshot(path=str(shots / "05-officer-answered.png"), full_page=True)
    await ctx.close()

    final = await console.cases().get(code)
    assert final.status == "answered" and [e.action for e in final.history] == [
        "receive", "classify", "assign", "start", "answer"]
    async with console.engine.connect() as conn:
        trail = (await conn.execute(select(AuditEntry.login, AuditEntry.action).where(AuditEntry.case_code == code)
                                    .order_by(AuditEntry.id))).all()
    stp = console.logins["stp"]
    assert ("%s" % stp, "play_recording") in trail and (stp, "answer") in trail

    # Another agency's officer: not in the list (not even by its code), no page, no recording.
    ctx, page = await sign_in(browser, console, "hhdn")
    await page.goto(f"{console.url}/cases?q={code}")
    assert await page.eval_on_selector_all("li.case", "els => els.length") == 0
    await page.screenshot(path=str(shots / "06-other-officer-search.png"), full_page=True)
    resp = await page.goto(f"{console.url}/cases/{code}")
    assert resp.status == 404
    await page.screenshot(path=str(shots / "07-other-officer-case-404.png"), full_page=True)
    resp = await page.request.get(f"{console.url}/cases/{code}/recording", headers={"Range": "bytes=0-"})
    assert resp.status == 404
    await ctx.close()

    # The citizen, on a phone without an account, reads the answer on /tra-cuu (issue 22).
    ctx = await browser.new_context(viewport={"width": 412, "height": 915}, locale="vi-VN")
    page = await ctx.new_page()
    await page.goto(f"{console.url}/tra-cuu")
    await page.fill("input[name=code]", code)
    await page.fill("input[name=phone4]", "".join(ch for ch in case.caller if ch.isdigit())[-4:])
    await page.click("section.lookup button[type=submit]")
    await page.wait_for_selector("p.answer")
    assert "Bộ phận một cửa Sở Tư pháp" in await page.inner_text("p.answer")
    assert "đã trả lời" in await page.inner_text(".result")
    assert case.caller not in await page.content()
    await page.screenshot(path=str(shots / "09-citizen-lookup.png"), full_page=True)
    await ctx.close()


async def test_the_live_board_shows_a_real_call(ivr, console, browser, shots):
    ctx, page = await sign_in(browser, console, "ops", "/live")
    assert page.url == console.url + "/live"
    await page.wait_for_selector("#live-controller.up")
    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 6000})}):
        call = asyncio.create_task(place(ivr, "4", hold_ms=40000, wait_for_bye_ms=40000, caller="0909777123"))
        try:
            # The board updates itself (server-sent events): no reload.
            await page.wait_for_function(
                "() => [...document.querySelectorAll('#live-calls td')].some(td => td.textContent === '0909•••123')",
                timeout=20000)
            await page.screenshot(path=str(shots / "08-live-board-call.png"), full_page=True)
            assert "0909777123" not in await page.content()
        finally:
            await call
    await page.wait_for_function("() => document.getElementById('live-count').textContent === '0'", timeout=20000)
    await ctx.close()


@pytest.fixture
async def youth_console(settings_factory, tmp_path):
    """A console on a database of its own (no call is needed): a Youth Union coordinator of Vị
    Thanh and two volunteers with a shift today at its desks."""
    from ivr.config import routing as rt
    from ivr.records import volunteers as vm

    s = settings_factory(TONGDAI_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'youth.db'}")
    await asyncio.to_thread(db.upgrade, s)
    routing = rt.load(REPO_ROOT / "routing.yaml")
    engine = db.engine(s)
    c = Console(s, engine=engine, routing=lambda: routing)
    runner = web.AppRunner(c.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    c.url = f"http://127.0.0.1:{port}"
    c.logins = {"doan": "doan.vithanh"}
    await c.accounts.add("doan.vithanh", "youth", PASSWORD, agency="DV930", name="Thành Đoàn Vị Thanh")
    roster = tmp_path / "roster.csv"
    roster.write_text("name,phone,desk,unit\nTrần Thị Bình,0901000002,DV930,Chi đoàn Văn phòng\n"
                      "Lê Minh Chi,0901000003,DV31318,Đoàn phường I\n", encoding="utf-8")
    svc = vm.Volunteers(engine, routing)
    await svc.import_roster(roster)
    today = dt.datetime.now(zoneinfo.ZoneInfo(routing.hotline.timezone)).date()
    for phone in ("0901000002", "0901000003"):
        await svc.add_shift(phone, today, dt.time(0, 0), dt.time(23, 59))
    c.volunteers = svc
    yield c
    await runner.cleanup()
    await engine.dispose()


async def test_a_youth_coordinator_checks_in_and_logs_assists_on_a_phone(youth_console, browser, shots):
    """At phone width: the roster, a check-in, then an assist in two taps (volunteer, kind) and,
    with the volunteer already chosen, the next one in one tap."""
    from ivr.models import VolunteerAssist

    c = youth_console
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, locale="vi-VN")
    page = await ctx.new_page()
    await page.goto(c.url + "/youth")
    await page.fill("input[name=username]", c.logins["doan"])
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert page.url.startswith(c.url + "/youth")
    row = page.locator("tr[data-state]", has_text="Trần Thị Bình")
    await row.locator("button", has_text="Vào ca").click()
    await page.wait_for_selector("#done")
    assert await row.get_attribute("data-state") == "on_duty"
    await page.screenshot(path=str(shots / "09-youth-roster-phone.png"), full_page=True)
    # At a phone's width the roster is one card per shift: the buttons are on screen.
    assert await page.evaluate("() => [...document.querySelectorAll('.table-wrap')]"
                               ".every(w => w.scrollWidth <= w.clientWidth)")
    assert await row.locator("button", has_text="Ra ca").is_visible()

    await page.goto(c.url + "/youth/assist")
    assert await page.locator("input[name=phone]:checked").count() == 0
    await page.screenshot(path=str(shots / "10-youth-assist-phone.png"))
    await page.click("label.pick:has-text('Lê Minh Chi')")  # tap 1
    await page.click("button.kind[value=vneid]")  # tap 2
    await page.wait_for_selector("#done")
    assert "hỗ trợ VNeID" in await page.inner_text("#done")
    await page.click("button.kind[value=online_submission]")  # the next person: one tap
    await page.wait_for_selector("#done:has-text('hỗ trợ nộp hồ sơ trực tuyến')")
    await page.screenshot(path=str(shots / "11-youth-assist-saved-phone.png"))
    # Nothing overflows a phone's width (no sideways scrolling to reach a button).
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 390
    async with c.engine.connect() as conn:
        rows = (await conn.execute(select(VolunteerAssist.kind, VolunteerAssist.desk_code, VolunteerAssist.created_by)
                                   .order_by(VolunteerAssist.id))).all()
    assert [tuple(r) for r in rows] == [("vneid", "DV31318", "doan.vithanh"), ("online_submission", "DV31318", "doan.vithanh")]
    await ctx.close()
