"""The case pages at the HTTP level (both backends): the inbox's filters and pages in SQL, search
input with SQL wildcards and quotes, the case page and its actions through the Cases service,
recordings with HTTP Range, the audit trail, a Zalo answer queued for the citizen."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select, update

from ivr.models import AuditEntry, CaseEvent, OutboxItem
from ivr.records import cases as cm
from ivr.records.lookup import Lookup

from .console_kit import close_kit, make_kit

STAFF = {"snv": ("supervisor", "SNV"), "stp": ("officer", "STP"), "hhdn": ("officer", "HHDN"),
         "ktra": ("inspector", None)}


@pytest.fixture
async def kit(db_settings):
    k = await make_kit(db_settings, staff=STAFF)
    yield k
    await close_kit(k)


def codes(html: str) -> list[str]:
    return re.findall(r'data-code="(\d+)"', html)


async def listed(b, query: str = "") -> list[str]:
    r = await b.get("/cases" + query)
    assert r.status == 200, (query, r.status)
    return codes(await r.text())


async def audit(kit) -> list[tuple]:
    async with kit.console.engine.connect() as conn:
        return (await conn.execute(select(AuditEntry.login, AuditEntry.action, AuditEntry.case_code, AuditEntry.address)
                                   .order_by(AuditEntry.id))).all()


# ---------------------------------------------------------------- the inbox


async def test_filters_counts_and_overdue_in_working_days(kit):
    now = kit.clock.now
    old = now - dt.timedelta(days=40)
    a = await kit.new_case(category="procedure")
    b = await kit.new_case(channel="zalo", caller="zalo-user-1", category="question", summary="Hỏi về hộ tịch")
    c = await kit.new_case(received_at=old)  # long overdue
    d = await kit.new_case(agency_code="HHDN", agency_name="HHDN", branch_digit="2")
    await kit.cases.act(a.code, "classify", actor="snv", category="procedure")
    sup = await kit.signed_in("snv")
    assert set(await listed(sup)) == {a.code, b.code, c.code, d.code}
    assert await listed(sup, "?status=classified") == [a.code]
    assert await listed(sup, "?channel=zalo") == [b.code]
    assert await listed(sup, "?category=question") == [b.code]
    assert await listed(sup, "?overdue=1") == [c.code]
    assert await listed(sup, "?agency=HHDN") == [d.code]
    assert await listed(sup, "?agency=STP&status=received&overdue=1") == [c.code]
    text = await (await sup.get("/cases")).text()
    assert re.search(r'data-status="received"[^>]*>[^<]*<b>3</b>', text)
    assert re.search(r'data-status="classified"[^>]*>[^<]*<b>1</b>', text)
    # The deadline in working days, from the case's own deadline and the hotline's calendar.
    m = re.search(rf'data-code="{c.code}".*?class="deadline late">quá hạn (\d+) ngày<', text, re.S)
    assert m and int(m.group(1)) >= 10
    assert re.search(rf'data-code="{a.code}".*?class="deadline (ok|due)">(còn \d+ ngày làm việc|hạn hôm nay)<', text, re.S)
    # An officer's agency filter stays inside their scope.
    stp = await kit.signed_in("stp")
    assert set(await listed(stp)) == {a.code, b.code, c.code}
    assert await listed(stp, "?agency=HHDN") == []
    for bad in ("?status=nope", "?channel=fax", "?category=x", "?overdue=yes", "?agency=NOPE", "?page=0", "?page=x"):
        r = await sup.get("/cases" + bad)
        assert r.status == 400 and "không hợp lệ" in await r.text(), bad


async def test_fifty_per_page_newest_first(kit):
    start = kit.clock.now - dt.timedelta(days=3)
    made = [await kit.new_case(received_at=start + dt.timedelta(minutes=i)) for i in range(120)]
    newest_first = [c.code for c in reversed(made)]
    b = await kit.signed_in("stp")
    pages = [await listed(b, f"?page={p}") for p in (1, 2, 3)]
    assert [len(p) for p in pages] == [50, 50, 20]
    assert pages[0] + pages[1] + pages[2] == newest_first
    assert await listed(b, "?page=4") == []
    text = await (await b.get("/cases?page=2")).text()
    assert "120 phản ánh" in text and "trang 2/3" in text
    assert 'href="/cases?page=1"' in text and 'href="/cases?page=3"' in text
    # A case assigned to an officer's agency on top of those it owns is paged in with them.
    other = await kit.new_case(agency_code="HHDN", agency_name="HHDN", received_at=start + dt.timedelta(minutes=60, seconds=30))
    await kit.cases.act(other.code, "classify", actor="snv", category="other")
    await kit.cases.act(other.code, "assign", actor="snv", agencies=["STP"])
    everything = [c.code for c in sorted(made + [other], key=lambda c: c.received_at, reverse=True)]
    assert sum([await listed(b, f"?page={p}") for p in (1, 2, 3)], []) == everything


@pytest.mark.parametrize("needle, expected", [
    ("100%", {"pct"}), ("%", {"pct"}), ("_", {"under"}), ("a_b", {"under"}), ("O'Brien", {"quote"}),
    ('"trích"', {"dquote"}), ("\\", {"backslash"}), ("%' OR '1'='1", set()), ("'; DROP TABLE cases; --", set()),
    ("[a-z]*", set()), ("ĐÚNG", {"pct"}), ("hạn", {"pct"}),
])
async def test_search_takes_wildcards_and_quotes_literally(kit, needle, expected):
    made = {
        "pct": await kit.new_case(summary="Giải quyết 100% đúng hạn"),
        "under": await kit.new_case(summary="mã hồ sơ a_b"),
        "quote": await kit.new_case(summary="ông O'Brien hỏi"),
        "dquote": await kit.new_case(summary='nội dung "trích" dẫn'),
        "backslash": await kit.new_case(summary="đường dẫn C:\\temp"),
        "plain": await kit.new_case(summary="không có gì đặc biệt"),
    }
    b = await kit.signed_in("snv")
    r = await b.client.get("/cases", params={"q": needle}, allow_redirects=False)
    assert r.status == 200
    found = set(codes(await r.text()))
    if needle in ("ĐÚNG",):
        # Case-insensitive matching of non-ASCII letters is the database's: PostgreSQL folds
        # Vietnamese capitals, SQLite's LIKE folds ASCII only.
        assert found <= {made["pct"].code}
        return
    assert found == {made[k].code for k in expected}, needle
    async with kit.console.engine.connect() as conn:  # the table is still there
        assert len((await conn.execute(select(cm.Case.id))).all()) == 6


async def test_search_by_number_never_finds_an_anonymous_caller(kit):
    known = await kit.new_case(caller="0909555111")
    await kit.new_case(caller="0909555222", anonymous=True)
    for login in ("snv", "stp"):
        b = await kit.signed_in(login)
        assert await listed(b, "?q=0909555") == [known.code], login
        assert await listed(b, "?q=0909555222") == [], login
    code_search = await listed(await kit.signed_in("stp"), f"?q={known.code}")
    assert code_search == [known.code]


# ---------------------------------------------------------------- one case, its actions


async def test_the_whole_lifecycle_in_the_console(kit):
    case = await kit.with_recording("life")
    sup = await kit.signed_in("snv")
    stp = await kit.signed_in("stp")
    await sup.get(f"/cases/{case.code}")
    r = await sup.post(f"/cases/{case.code}/classify", {"category": "procedure"})
    assert r.status == 303 and r.headers["Location"] == f"/cases/{case.code}?done=classify"
    r = await sup.post(f"/cases/{case.code}/assign", [("agency", "STP"), ("agency", "SNV"), ("note", "gấp")])
    assert r.status == 303
    await stp.get(f"/cases/{case.code}")
    # A refused action shows the service's reason and changes nothing.
    r = await stp.post(f"/cases/{case.code}/answer", {"text": "Trả lời trước khi bắt đầu"})
    assert r.status == 409 and "không thể trả lời" in await r.text()
    assert (await kit.cases.get(case.code)).status == "assigned"
    r = await stp.post(f"/cases/{case.code}/answer", {"text": "   "})
    assert r.status == 409
    assert (await stp.post(f"/cases/{case.code}/start", {})).status == 303
    r = await stp.post(f"/cases/{case.code}/answer", {"text": "Hồ sơ đã được giải quyết ngày 5/12."})
    assert r.status == 303
    assert (await stp.post(f"/cases/{case.code}/note", {"text": "Đã gọi lại cho công dân"})).status == 303
    r = await sup.post(f"/cases/{case.code}/close", {"reason": "resolved", "note": "xong"})
    assert r.status == 303
    r = await sup.post(f"/cases/{case.code}/close", {"reason": "resolved"})
    assert r.status == 409 and "không thể đóng" in await r.text()
    final = await kit.cases.get(case.code)
    assert final.status == "closed" and final.answer == "Hồ sơ đã được giải quyết ngày 5/12."
    assert {a.agency_code for a in final.assignments} == {"STP", "SNV"}
    assert [(e.actor, e.action) for e in final.history] == [
        ("system", "receive"), ("snv", "classify"), ("snv", "assign"), ("stp", "start"), ("stp", "answer"),
        ("stp", "note"), ("snv", "close")]
    text = await (await stp.get(f"/cases/{case.code}")).text()
    assert "Cán bộ snv" in text and "Cán bộ stp" in text and "đã đóng" in text
    actions = [(login, action) for login, action, code, _ in await audit(kit) if code == case.code]
    assert actions == [("snv", "classify"), ("snv", "assign"), ("stp", "start"), ("stp", "answer"),
                       ("stp", "note"), ("snv", "close")]


def timeline(html: str) -> str:
    return html.split('id="timeline"', 1)[1].split("</ol>", 1)[0]


async def test_the_timeline_reads_the_channel_and_citizens_events_in_vietnamese(kit):
    phone = await kit.new_case()
    zalo = await kit.new_case(channel="zalo", caller="zalo-user-5", branch_digit=None)
    # A receipt written before the label was used ("kênh zalo"), and a citizen's look-up.
    async with kit.console.engine.begin() as conn:
        await conn.execute(update(CaseEvent).where(CaseEvent.case_id == zalo.id, CaseEvent.action == "receive")
                           .values(note="kênh zalo"))
    await Lookup(kit.console.engine).by_phone4(phone.code, "3456")
    b = await kit.signed_in("snv")
    t = timeline(await (await b.get(f"/cases/{phone.code}")).text())
    assert "kênh điện thoại" in t and "kênh phone" not in t
    assert "người dân tra cứu" in t and 'data-action="lookup"' in t and ">lookup<" not in t
    t = timeline(await (await b.get(f"/cases/{zalo.code}")).text())
    assert "kênh Zalo" in t and "kênh zalo" not in t


async def test_answering_a_zalo_case_queues_the_answer_for_the_citizen(kit):
    case = await kit.new_case(channel="zalo", caller="zalo-user-77", summary="Xin hỏi thủ tục", branch_digit=None)
    await kit.cases.act(case.code, "classify", actor="snv", category="question")
    await kit.cases.act(case.code, "assign", actor="snv", agencies=["STP"])
    await kit.cases.act(case.code, "start", actor="stp")
    b = await kit.signed_in("stp")
    text = await (await b.get(f"/cases/{case.code}")).text()
    assert "Tin nhắn Zalo" in text and "Xin hỏi thủ tục" in text and "gửi cho người dân qua Zalo" in text
    assert (await b.post(f"/cases/{case.code}/answer", {"text": "Mời anh mang CCCD đến bộ phận một cửa."})).status == 303
    async with kit.console.engine.connect() as conn:
        items = (await conn.execute(select(OutboxItem.kind, OutboxItem.user_id, OutboxItem.text)
                                    .where(OutboxItem.case_code == case.code))).all()
    assert len(items) == 1 and items[0].kind == "answer" and items[0].user_id == "zalo-user-77"
    assert "Mời anh mang CCCD" in items[0].text
    assert "chờ gửi" in await (await b.get(f"/cases/{case.code}")).text()


async def test_an_anonymous_number_is_shown_only_on_a_recorded_reveal(kit):
    case = await kit.new_case(caller="0912345678", anonymous=True, category="misconduct", agency_code=None,
                              inspection_reason="phím 9")
    sup = await kit.signed_in("snv")
    insp = await kit.signed_in("ktra")
    for b in (sup, insp):
        text = await (await b.get(f"/cases/{case.code}")).text()
        assert "0912345678" not in text and "ẩn danh" in text
    assert "Hiện số" in await (await sup.get(f"/cases/{case.code}")).text()
    r = await insp.post(f"/cases/{case.code}/reveal", {})
    assert r.status == 403
    assert [a for a in await audit(kit) if a[1] == "reveal_number"] == []
    r = await sup.post(f"/cases/{case.code}/reveal", {})
    assert r.status == 200 and "0912345678" in await r.text()
    assert r.headers["Cache-Control"] == "no-store"
    reveals = [a for a in await audit(kit) if a[1] == "reveal_number"]
    assert reveals == [("snv", "reveal_number", case.code, "127.0.0.1")]
    assert "0912345678" not in await (await sup.get(f"/cases/{case.code}")).text()  # one reveal, one view
    # The supervisor sees the trail.
    text = await (await sup.get(f"/audit?case={case.code}")).text()
    assert "xem số người gọi ẩn danh" in text and "snv" in text and "127.0.0.1" in text


# ---------------------------------------------------------------- recordings


async def test_recording_with_range_requests_and_one_audit_entry_per_play(kit):
    case = await kit.with_recording("range", seconds=1.0)
    data = (kit.settings.home / case.recording).read_bytes()
    size = len(data)
    b = await kit.signed_in("stp")
    url = f"/cases/{case.code}/recording"
    r = await b.get(url)
    assert r.status == 200 and await r.read() == data
    assert r.headers["Content-Type"] == "audio/wav" and r.headers.get("Accept-Ranges") == "bytes"
    r = await b.get(url, headers={"Range": "bytes=0-99"})
    assert r.status == 206 and r.headers["Content-Range"] == f"bytes 0-99/{size}" and await r.read() == data[:100]
    r = await b.get(url, headers={"Range": "bytes=100-"})
    assert r.status == 206 and await r.read() == data[100:]
    r = await b.get(url, headers={"Range": "bytes=-44"})
    assert r.status == 206 and await r.read() == data[-44:]
    r = await b.get(url, headers={"Range": f"bytes={size + 10}-"})
    assert r.status == 416
    plays = [a for a in await audit(kit) if a[1] == "play_recording"]
    assert plays == [("stp", "play_recording", case.code, "127.0.0.1")] * 2  # the full GET and bytes=0-


async def test_a_recording_path_outside_the_recordings_folder_is_never_served(kit):
    secret = kit.settings.home / "secrets.json"
    secret.write_text('{"ari": "x"}')
    case = await kit.new_case(recording="recordings/../secrets.json", recording_seconds=1.0)
    b = await kit.signed_in("snv")
    r = await b.get(f"/cases/{case.code}/recording")
    assert r.status == 404 and "ari" not in await r.text()
    for path in ("/cases/..%2F..%2Fsecrets.json/recording", "/cases/../../secrets.json", "/static/../../secrets.json",
                 "/static/..%2F..%2Fsecrets.json"):
        r = await b.client.get(path, allow_redirects=False)
        assert r.status in (400, 403, 404), path
        assert '"ari"' not in await r.text()
