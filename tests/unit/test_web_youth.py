"""The Youth Union coordinators' console pages (/youth, /youth/assist) at the HTTP level, on both
backends: the roster per desk and week within the coordinator's desks, check-in/out and assists
by POST (CSRF, audit trail, the database changed), refusals that show the reason and change
nothing. Which role may open the pages at all is test_web_matrix's."""

from __future__ import annotations

import datetime as dt
import html
import re
import zoneinfo

import pytest
from sqlalchemy import func, select

from ivr.models import AuditEntry, VolunteerAssist, VolunteerShift
from ivr.records import volunteers as vm
from ivr.vocab import AssistKind
from ivr.web.config import WebSettings

from .console_kit import ROUTING, Clock, close_kit, make_kit

ZONE = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
NOW = dt.datetime(2026, 12, 9, 9, 0, tzinfo=ZONE).astimezone(dt.timezone.utc)  # a Wednesday, 09:00
TODAY = NOW.astimezone(ZONE).date()
STAFF = {
    "snv": ("supervisor", "SNV"),
    "doan": ("youth", None),  # Tỉnh Đoàn: every desk
    "doanvt": ("youth", "DV930"),  # Thành phố Vị Thanh: its desk and its communes'
    "stp": ("officer", "STP"),
    "vanhanh": ("operator", None),
}
# phone -> (name, desk)
ROSTER = {
    "0901000001": ("Nguyễn Văn An", "TTPVHCC"),
    "0901000002": ("Trần Thị Bình", "DV930"),
    "0901000003": ("Lê Minh Chi", "DV31318"),  # Phường I, under Vị Thanh
    "0901000004": ("Phạm Dũng", "DV931"),  # Ngã Bảy: another district
}


@pytest.fixture
async def kit(db_settings, tmp_path):
    # Sessions last the day: the clock moves by hours between a check-in and a check-out.
    k = await make_kit(db_settings, staff=STAFF, clock=Clock(NOW),
                       web=WebSettings(idle=dt.timedelta(hours=24), max_age=dt.timedelta(hours=24)))
    svc = vm.Volunteers(k.console.engine, ROUTING)
    csv = tmp_path / "roster.csv"
    csv.write_text("name,phone,desk,unit\n" + "".join(f"{n},{p},{d},Chi đoàn {d}\n" for p, (n, d) in ROSTER.items()),
                   encoding="utf-8")
    await svc.import_roster(csv, now=NOW - dt.timedelta(days=30))
    k.shift = {}
    for phone in ROSTER:
        k.shift[phone] = (await svc.add_shift(phone, TODAY, dt.time(8), dt.time(11, 30), now=NOW - dt.timedelta(days=7))).id
    # Yesterday Bình checked in and nobody checked her out: shown, never guessed.
    y = await svc.add_shift("0901000002", TODAY - dt.timedelta(days=1), dt.time(13), dt.time(17), now=NOW - dt.timedelta(days=7))
    await svc.check_in("0901000002", NOW - dt.timedelta(hours=19, minutes=55), shift_id=y.id, now=NOW)
    k.yesterday = y.id
    k.svc = svc
    yield k
    await close_kit(k)


def shift_ids(text: str) -> set[int]:
    return {int(x) for x in re.findall(r'data-shift="(\d+)"', text)}


async def shift_row(kit, shift_id: int) -> VolunteerShift:
    async with kit.console.engine.connect() as conn:
        return (await conn.execute(select(VolunteerShift).where(VolunteerShift.id == shift_id))).one()


async def changes(kit) -> tuple:
    """Everything a youth action may write: the shifts' times, the assists, the audit trail."""
    async with kit.console.engine.connect() as conn:
        shifts = tuple((await conn.execute(select(VolunteerShift.id, VolunteerShift.checkin_at, VolunteerShift.checkout_at)
                                           .order_by(VolunteerShift.id))).all())
        assists = (await conn.execute(select(func.count()).select_from(VolunteerAssist))).scalar_one()
        audit = (await conn.execute(select(func.count()).select_from(AuditEntry)
                                    .where(AuditEntry.action.like("volunteer_%")))).scalar_one()
    return shifts, assists, audit


async def audit_rows(kit, action: str) -> list:
    async with kit.console.engine.connect() as conn:
        return list((await conn.execute(select(AuditEntry.login, AuditEntry.role, AuditEntry.detail)
                                        .where(AuditEntry.action == action).order_by(AuditEntry.id))).all())


async def test_the_roster_per_desk_and_week_within_the_coordinators_desks(kit):
    year, week, _ = TODAY.isocalendar()
    b = await kit.signed_in("doan")
    r = await b.get("/")
    assert r.status == 303 and r.headers["Location"] == "/youth"
    r = await b.get("/youth")
    text = await r.text()
    assert r.status == 200
    assert shift_ids(text) == set(kit.shift.values()) | {kit.yesterday}
    assert f"tuần {year}-W{week:02d}" in text
    assert f"week={year}-W{week - 1:02d}" in text and f"week={year}-W{week + 1:02d}" in text  # prev / next
    # The missing check-out is shown as such, with no hours.
    row = re.search(rf'<tr id="shift-{kit.yesterday}".*?</tr>', text, re.S).group(0)
    assert 'data-state="no_checkout"' in row and "thiếu giờ ra" in row and "—" in row
    assert "13:05" in row  # her check-in, local time
    assert "Phản ánh" not in text.split("<main>")[0]  # no case pages in the menu

    vt = await kit.signed_in("doanvt")
    text = await (await vt.get("/youth")).text()
    assert shift_ids(text) == {kit.shift["0901000002"], kit.shift["0901000003"], kit.yesterday}
    text = await (await vt.get("/youth?desk=DV31318")).text()
    assert shift_ids(text) == {kit.shift["0901000003"]}
    text = await (await vt.get(f"/youth?week={year}-W{week + 1:02d}")).text()
    assert shift_ids(text) == set() and 'id="empty"' in text
    assert (await vt.get("/youth?desk=DV931")).status == 403  # another district's desk
    assert (await vt.get("/youth?desk=STP")).status == 400  # not a one-stop desk
    assert (await vt.get("/youth?week=2026-W99")).status == 400
    assert (await vt.get("/youth?week=tuần-này")).status == 400

    sup = await kit.signed_in("snv")
    assert shift_ids(await (await sup.get("/youth")).text()) == set(kit.shift.values()) | {kit.yesterday}


async def test_check_in_and_out_by_post_change_the_database_and_are_audited(kit):
    b = await kit.signed_in("doanvt")
    sid = kit.shift["0901000002"]
    text = await (await b.get("/youth")).text()
    assert f'name="shift" value="{sid}"' in text and "Vào ca" in text
    kit.clock.advance(minutes=7, seconds=42)  # 09:07:42: kept to the minute
    r = await b.post("/youth/checkin", {"shift": str(sid), "desk": "", "week": ""})
    assert r.status == 303, await r.text()
    assert r.headers["Location"] == f"/youth?done=checkin#shift-{sid}"
    row = await shift_row(kit, sid)
    assert vm.utc(row.checkin_at) == NOW + dt.timedelta(minutes=7) and row.checkout_at is None
    text = await (await b.get("/youth?done=checkin")).text()
    assert "Đã ghi giờ vào ca." in text
    shown = re.search(rf'<tr id="shift-{sid}".*?</tr>', text, re.S).group(0)
    assert 'data-state="on_duty"' in shown and "09:07" in shown and "Ra ca" in shown

    kit.clock.advance(hours=2, minutes=23)  # 11:30:42
    r = await b.post("/youth/checkout", {"shift": str(sid), "desk": "DV930", "week": "2026-W50"})
    assert r.status == 303
    assert r.headers["Location"] == f"/youth?desk=DV930&week=2026-W50&done=checkout#shift-{sid}"
    row = await shift_row(kit, sid)
    assert vm.utc(row.checkout_at) == NOW + dt.timedelta(hours=2, minutes=30)
    shown = re.search(rf'<tr id="shift-{sid}".*?</tr>', await (await b.get("/youth")).text(), re.S).group(0)
    assert 'data-state="served"' in shown and "2 giờ 23 phút" in shown  # 09:07 → 11:30

    entries = await audit_rows(kit, "volunteer_checkin") + await audit_rows(kit, "volunteer_checkout")
    assert [(e.login, e.role) for e in entries] == [("doanvt", "youth")] * 2
    assert f"ca #{sid} DV930 0901000002 09/12/2026 09:07" == entries[0].detail
    assert entries[1].detail.endswith("11:30")


async def test_refused_check_ins_and_outs_show_the_reason_and_change_nothing(kit):
    b = await kit.signed_in("doanvt")
    await b.get("/youth")
    before = await changes(kit)
    chi = kit.shift["0901000003"]
    # Out before in: the service's reason, on the roster page.
    r = await b.post("/youth/checkout", {"shift": str(chi)})
    assert r.status == 409
    text = await r.text()
    assert 'id="error"' in text and "không có ca #" in text and f'data-shift="{chi}"' in text
    # Yesterday's shift: no check-out on another day (the hours would be guessed).
    r = await b.post("/youth/checkout", {"shift": str(kit.yesterday)})
    assert r.status == 409 and "giờ ra phải cùng ngày" in await r.text()
    # Another district's volunteer, a shift that does not exist, garbage: like nothing there.
    for shift in (kit.shift["0901000004"], 999999, "abc", "", "1 OR 1=1"):
        r = await b.post("/youth/checkin", {"shift": str(shift)})
        assert r.status == 404, shift
    assert await changes(kit) == before

    r = await b.post("/youth/checkin", {"shift": str(chi)})
    assert r.status == 303
    after_first = await changes(kit)
    r = await b.post("/youth/checkin", {"shift": str(chi)})  # twice
    assert r.status == 409 and "đã vào lúc 09:00" in await r.text()
    assert await changes(kit) == after_first

    # Roles without the volunteers' pages: 403, nothing written.
    for login in ("stp", "vanhanh"):
        other = await kit.signed_in(login)
        await other.get("/cases" if login == "stp" else "/live")
        for path, form in (("/youth/checkout", {"shift": str(chi)}),
                           ("/youth/assist", {"phone": "0901000003", "kind": "guidance"})):
            r = await other.post(path, form)
            assert r.status == 403, (login, path)
        assert (await other.get("/youth/assist")).status == 403
    assert await changes(kit) == after_first


async def test_every_youth_post_needs_the_sessions_csrf_token(kit):
    b = await kit.signed_in("doanvt")
    other = await kit.signed_in("doan")
    await b.get("/youth")
    await other.get("/youth")
    before = await changes(kit)
    posts = (("/youth/checkin", {"shift": str(kit.shift["0901000002"])}),
             ("/youth/assist", {"phone": "0901000002", "kind": "guidance"}))
    for path, form in posts:
        for token in (False, "", "x" * 43, other.csrf):  # none, empty, forged, another session's
            r = await b.post(path, form, csrf=token)
            assert r.status == 403, (path, token)
            assert "CSRF" in await r.text()
    assert await changes(kit) == before
    for path, form in posts:  # the same forms with the page's own token go through
        assert (await b.post(path, form)).status == 303, path
    assert await changes(kit) != before


async def test_an_assist_in_two_taps(kit):
    b = await kit.signed_in("doanvt")
    r = await b.get("/youth/assist")
    text = await r.text()
    assert r.status == 200
    # Tap 1 picks among today's volunteers of the coordinator's desks; none is chosen yet.
    assert set(re.findall(r'name="phone" value="(\d+)"', text)) == {"0901000002", "0901000003"}
    assert " checked" not in text
    # Tap 2 is the kind: one submit button each, in Vietnamese.
    assert re.findall(r'name="kind" value="(\w+)"', text) == list(AssistKind.values())
    for k in AssistKind:
        assert f">{k.label}</button>" in text
    r = await b.post("/youth/assist", {"phone": "0901000003", "kind": "vneid", "desk": "", "procedure": ""})
    assert r.status == 303
    async with kit.console.engine.connect() as conn:
        a = (await conn.execute(select(VolunteerAssist))).one()
    assert (a.kind, a.desk_code, a.created_by, a.procedure) == ("vneid", "DV31318", "doanvt", None)
    assert vm.utc(a.at) == NOW
    assert r.headers["Location"] == f"/youth/assist?phone=0901000003&done={a.id}"
    # The next person helped by the same volunteer is one tap: she stays chosen.
    text = await (await b.get(r.headers["Location"])).text()
    assert "Đã ghi: <b>hỗ trợ VNeID</b> — Lê Minh Chi" in text
    assert re.search(r'value="0901000003" required checked', text)
    [entry] = await audit_rows(kit, "volunteer_assist")
    assert (entry.login, entry.detail) == ("doanvt", f"#{a.id} DV31318 0901000003 vneid")

    # From the roster row: preselected. With a desk chosen: its whole roster.
    text = await (await b.get("/youth/assist?phone=0901000002")).text()
    assert re.search(r'value="0901000002" required checked', text)
    text = await (await b.get("/youth/assist?desk=DV31318")).text()
    assert set(re.findall(r'name="phone" value="(\d+)"', text)) == {"0901000003"}
    assert re.search(r'value="0901000003" required checked', text)  # the only one: already chosen
    # The provincial coordinator sees every desk's volunteers of the day.
    p = await kit.signed_in("doan")
    text = await (await p.get("/youth/assist")).text()
    assert set(re.findall(r'name="phone" value="(\d+)"', text)) == set(ROSTER)


@pytest.mark.parametrize("form, status, reason", [
    ({"phone": "0901000002", "kind": "singing"}, 409, "--kind 'singing' không hợp lệ"),
    ({"phone": "0901000002", "kind": "form_filling", "procedure": "Cấp hộ chiếu cho 0909 123 456"}, 409,
     "không ghi thông tin cá nhân"),
    ({"phone": "", "kind": "guidance"}, 409, "Chọn đoàn viên trước"),
    ({"phone": "0901000004", "kind": "guidance"}, 404, "không có đoàn viên hoặc ca này"),  # another district
    ({"phone": "0901999999", "kind": "guidance"}, 404, "không có đoàn viên hoặc ca này"),
    ({"phone": "không phải số", "kind": "guidance"}, 404, "không có đoàn viên hoặc ca này"),
])
async def test_a_refused_assist_shows_the_reason_and_writes_nothing(kit, form, status, reason):
    b = await kit.signed_in("doanvt")
    await b.get("/youth/assist")
    before = await changes(kit)
    r = await b.post("/youth/assist", form)
    text = html.unescape(await r.text())
    assert r.status == status, text
    assert reason.lower() in text.lower()
    assert await changes(kit) == before
    if status == 409:  # the form comes back as it was: the same volunteer still chosen
        assert 'id="error"' in text and 'name="kind"' in text
        if form["phone"]:
            assert re.search(rf'value="{form["phone"]}" required checked', text)
