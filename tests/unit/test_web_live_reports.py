"""The live board (server-sent events), the desk phones page and the reports' downloads, at the
HTTP level (both backends). The controller's status document is given by the test: the live
board against a real controller is in tests/e2e/test_console.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
import zipfile
import zoneinfo

import pytest
from sqlalchemy import insert, select

from ivr.models import AuditEntry, Call, RegistrationEvent, WebSession
from ivr.web.config import WebSettings

from .console_kit import Clock, close_kit, make_kit

VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
STAFF = {"snv": ("supervisor", "SNV"), "vanhanh": ("operator", None), "stp": ("officer", "STP")}


class FakeController:
    """What `GET /status` on the control socket answers; None: no controller running."""

    def __init__(self):
        self.doc: dict | None = {
            "controller": {"accepting": True}, "asterisk": {"version": "22.0.0"},
            "calls": [{"caller": "0909123456", "branch": "4", "branch_name": "Văn phòng UBND", "state": "bridged",
                       "duration_s": 75.0}],
            "phones": {"2401": {"status": "registered", "since": "2026-12-09T01:00:00+00:00",
                                "last_seen": "2026-12-09T03:00:00+00:00"}},
        }

    async def __call__(self):
        return self.doc


# Wednesday 9 December 2026, 10:00 in Vietnam: a working day, in opening hours.
NOW = dt.datetime(2026, 12, 9, 10, 0, tzinfo=VN).astimezone(dt.timezone.utc)


@pytest.fixture
async def kit(db_settings):
    fake = FakeController()
    k = await make_kit(db_settings, staff=STAFF, status=fake, clock=Clock(NOW))
    k.fake = fake
    yield k
    await close_kit(k)


async def wait_for(pred, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if await pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def next_event(resp, timeout: float = 5) -> tuple[str, dict]:
    """The next server-sent event: (event name, data)."""
    name, data = "message", None
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), timeout)).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            return name, data


async def test_the_live_board_masks_callers_and_updates_itself(kit):
    async with kit.console.engine.begin() as conn:
        await conn.execute(insert(Call), [
            {"id": "c1", "caller": "0911111111", "hotline": "1022", "started_at": NOW - dt.timedelta(hours=1),
             "branch_digit": "4", "branch_name": "Văn phòng UBND", "disposition": "answered"},
            {"id": "c2", "caller": "0922222222", "hotline": "1022", "started_at": NOW - dt.timedelta(minutes=30),
             "branch_digit": "4", "branch_name": "Văn phòng UBND", "disposition": "abandoned"},
            {"id": "c0", "caller": "0933333333", "hotline": "1022", "started_at": NOW - dt.timedelta(days=1),
             "branch_digit": "4", "branch_name": "Văn phòng UBND", "disposition": "answered"},  # yesterday
        ])
    await kit.new_case(branch_digit="4", branch_name="Văn phòng UBND", agency_code="VPUBND", received_at=NOW)
    b = await kit.signed_in("vanhanh")
    text = await (await b.get("/live")).text()
    assert "0909•••456" in text and "0909123456" not in text and "đang đàm thoại" in text and "1:15" in text
    assert '<script src="/static/live.js" defer></script>' in text
    today = text[text.index('id="live-today"'):]
    row4 = today[today.index("<td>4 "):].split("</tr>")[0]
    assert [c.split("<")[0] for c in row4.split("<td>")[2:]] == ["2", "1", "1", "1"]  # calls, answered, abandoned, complaints
    r = await b.client.get("/live/events")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    name, snap = await next_event(r)
    assert snap["calls"] == [{"caller": "0909•••456", "branch": "4", "branch_name": "Văn phòng UBND",
                              "state": "đang đàm thoại", "duration": "1:15"}]
    assert snap["controller"]["running"] and snap["today"]["total"]["calls"] == 2
    vp = [a for a in snap["phones"] if a["code"] == "VPUBND"][0]
    assert vp["up"] == 1 and vp["total"] >= 1
    # A new call appears without reloading; the controller stopping is shown too.
    kit.fake.doc["calls"].append({"caller": "0988000111", "branch": None, "state": "menu", "duration_s": 3})
    for _ in range(50):
        name, snap = await next_event(r)
        if len(snap["calls"]) == 2:
            break
    assert snap["calls"][1]["caller"] == "0988•••111" and snap["calls"][1]["state"] == "đang chọn"
    kit.fake.doc = None
    for _ in range(50):
        name, snap = await next_event(r)
        if not snap["controller"]["running"]:
            break
    assert snap["calls"] == [] and not snap["controller"]["running"]
    r.close()


async def test_the_stream_ends_with_the_session(kit):
    kit.console.live.session_check_every = 0.2
    b = await kit.signed_in("snv")
    r = await b.client.get("/live/events")
    await next_event(r)
    await b.get("/live")
    assert (await b.post("/logout")).status == 303
    for _ in range(100):
        name, _ = await next_event(r)
        if name == "ended":
            break
    assert name == "ended"
    r.close()
    assert (await b.client.get("/live/events", allow_redirects=False)).status == 303


async def test_the_board_lists_desk_phones_compactly(kit):
    routing = kit.console.routing()
    b = await kit.signed_in("vanhanh")
    text = await (await b.get("/live")).text()
    agencies = {e.agency for e in routing.extensions.values()}
    short_n = int(re.search(r'id="live-phones-short-n">(\d+)<', text).group(1))
    full_n = int(re.search(r'id="live-phones-full-n">(\d+)<', text).group(1))
    assert short_n + full_n == len(agencies) and full_n >= 0
    assert f'id="live-phones-up">1/{len(routing.extensions)}<' in text
    # Many agencies short of a phone: that list starts closed, as the complete ones always do.
    assert short_n > 10 and '<details id="live-phones-short-box">' in text
    assert '<details id="live-phones-full-box">' in text
    # Every phone registered: nobody is short, and the (empty) list is open.
    kit.fake.doc["phones"] = {n: {"status": "registered"} for n in routing.extensions}
    kit.console.live.feed.latest = None
    text = await (await b.get("/live")).text()
    assert 'id="live-phones-short-n">0<' in text and f'id="live-phones-full-n">{len(agencies)}<' in text
    assert '<details id="live-phones-short-box" open>' in text


async def test_a_watched_board_keeps_its_session_until_the_maximum_age(db_settings):
    fake = FakeController()
    k = await make_kit(db_settings, staff=STAFF, status=fake, clock=Clock(NOW),
                       web=WebSettings(idle=dt.timedelta(minutes=30), max_age=dt.timedelta(hours=2)))
    try:
        k.console.live.session_check_every = 0.05
        b = await k.signed_in("snv")
        r = await b.client.get("/live/events")
        await next_event(r)

        async def last_seen():
            async with k.console.engine.connect() as conn:
                return (await conn.execute(select(WebSession.last_seen_at))).scalar_one()

        # 90 minutes of watching, in steps of 10: each step the stream counts as use.
        for _ in range(9):
            k.clock.advance(minutes=10)
            want = k.clock.now

            async def touched(want=want):
                seen = await last_seen()
                return seen.replace(tzinfo=dt.timezone.utc) == want if seen.tzinfo is None else seen == want

            await wait_for(touched, 5, "the stream to count as use")
        assert (await b.get("/cases")).status == 200
        # The maximum age ends it even so: the board is told, and reloads onto the sign-in form.
        k.clock.advance(minutes=31)
        for _ in range(100):
            name, _ = await next_event(r)
            if name == "ended":
                break
        assert name == "ended"
        r.close()
        assert (await b.get("/cases")).status == 303
        # Without a board open, the idle time ends a session as before.
        b2 = await k.signed_in("vanhanh")
        k.clock.advance(minutes=31)
        assert (await b2.get("/live")).status == 303
    finally:
        await close_kit(k)


async def test_phones_every_desk_phone_and_who_was_unreachable_this_month(kit):
    day = dt.datetime(2026, 12, 8, tzinfo=VN)  # Tuesday
    async with kit.console.engine.begin() as conn:
        await conn.execute(insert(RegistrationEvent), [
            {"at": (day + dt.timedelta(hours=8)).astimezone(dt.timezone.utc), "extension": "2201",
             "agency_code": "HHDN", "status": "unregistered"},
            {"at": (day + dt.timedelta(hours=9, minutes=30)).astimezone(dt.timezone.utc), "extension": "2201",
             "agency_code": "HHDN", "status": "registered"},
        ])
    b = await kit.signed_in("vanhanh")
    text = await (await b.get("/phones")).text()
    assert 'data-ext="2401" data-status="registered"' in text
    assert 'data-ext="2101" data-status="never"' in text  # every phone of routing.yaml, registered or not
    unreachable = text[text.index('id="unreachable"'):text.index("</table>", text.index('id="unreachable"'))]
    assert 'data-ext="2201"' in unreachable and "1 giờ 30 phút" in unreachable and "2401" not in unreachable
    # Without a controller, the registration history says where each phone stands.
    kit.fake.doc = None
    text = await (await b.get("/phones")).text()
    assert 'data-ext="2201" data-status="registered"' in text and "bộ điều khiển không chạy" in text


async def test_the_monthly_report_and_the_exports_download(kit):
    async with kit.console.engine.begin() as conn:
        await conn.execute(insert(Call), [
            {"id": f"n{i}", "caller": f"09000000{i:02d}", "hotline": "1022",
             "started_at": dt.datetime(2026, 11, 10 + i, 9, tzinfo=VN), "branch_digit": "3",
             "branch_name": "Tư pháp", "agency_code": "STP", "agency_name": "Sở Tư pháp",
             "disposition": "answered", "wait_s": 5.0} for i in range(12)])
    await kit.new_case(caller="0912000999", anonymous=True, received_at=dt.datetime(2026, 11, 12, 9, tzinfo=VN))
    b = await kit.signed_in("snv")
    assert (await b.get("/reports")).status == 200
    r = await b.get("/reports/monthly.html?month=2026-11")
    assert r.status == 200 and "style-src 'unsafe-inline'" in r.headers["Content-Security-Policy"]
    text = await r.text()
    assert "11/2026" in text and 'data-k="calls.total" data-v="12"' in text
    r = await b.get("/reports/monthly.pdf?month=2026-11")
    assert r.status == 200 and r.headers["Content-Type"] == "application/pdf"
    assert (await r.read()).startswith(b"%PDF")
    r = await b.get("/reports/monthly.html?month=2027-05")
    assert r.status == 400 and "chưa bắt đầu" in await r.text()
    r = await b.get("/reports/export.csv?table=calls&from=2026-11-01&to=2026-11-30")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert 'filename="tongdai-calls-2026-11-01-2026-11-30.csv"' in r.headers["Content-Disposition"]
    lines = (await r.read()).decode("utf-8-sig").splitlines()
    assert lines[0].startswith("call_id,started_at,caller") and len(lines) == 13
    r = await b.get("/reports/export.csv?table=cases")
    body = (await r.read()).decode("utf-8-sig")
    assert "0912000999" not in body and len(body.splitlines()) == 2
    r = await b.get("/reports/export.xlsx?table=calls&branch=3")
    data = await r.read()
    assert r.status == 200 and data[:2] == b"PK"
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.read("xl/worksheets/sheet1.xml").count(b"<row ") == 13
    for bad, why in (("table=nope", "không có bảng"), ("table=calls&from=2026-13-01", "không phải ngày"),
                     ("table=calls&branch=0", "không có nhánh"), ("table=calls&from=2026-11-30&to=2026-11-01", "bị ngược")):
        r = await b.get(f"/reports/export.csv?{bad}")
        assert r.status == 400 and why in await r.text(), bad
    async with kit.console.engine.connect() as conn:
        trail = (await conn.execute(select(AuditEntry.action, AuditEntry.detail)
                                    .where(AuditEntry.action.in_(("report", "export"))).order_by(AuditEntry.id))).all()
    assert trail == [("report", "tháng 11/2026, html"), ("report", "tháng 11/2026, pdf"),
                     ("export", "calls csv from=2026-11-01 to=2026-11-30"), ("export", "cases csv"),
                     ("export", "calls xlsx branch=3")]


async def test_an_export_the_client_abandons_stops(kit):
    async with kit.console.engine.begin() as conn:
        await conn.execute(insert(Call), [
            {"id": f"x{i}", "caller": f"09{i:08d}", "hotline": "1022", "started_at": NOW - dt.timedelta(minutes=i),
             "disposition": "answered"} for i in range(20000)])
    b = await kit.signed_in("snv")
    r = await b.client.get("/reports/export.csv?table=calls")
    first = await r.content.read(1000)
    assert first.startswith("\ufeffcall_id".encode())
    r.close()
    # The worker thread sees the client gone and ends (no thread left writing).
    import threading

    async def gone():
        return not any(t.name == "console-export" for t in threading.enumerate())

    await wait_for(gone, 30, "the export thread to stop")
