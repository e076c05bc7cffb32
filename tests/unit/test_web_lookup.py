"""The public look-up page /tra-cuu at the HTTP level (aiohttp server, both backends): the right
pair shows the case, a wrong pair and an unknown code are the same page, malformed input is
explained, the per-address limit, and nothing personal on the page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from ivr.models import CaseEvent
from ivr.vocab import PublicStatus
from ivr.web.config import WebSettings

from .console_kit import close_kit, make_kit

STAFF = {"snv": ("supervisor", "SNV"), "stp": ("officer", "STP")}
ANSWER = "Sở Tư pháp đã cấp lại bản sao trích lục khai sinh ngày 15/12; mời ông đến nhận tại bộ phận một cửa."


@pytest.fixture
async def kit(db_settings):
    k = await make_kit(db_settings, staff=STAFF, web=WebSettings(lookup_per_minute=10))
    yield k
    await close_kit(k)


async def answered(kit):
    """A phone case from 0909123456, assigned, answered by its officer, with a note and a recording."""
    case = await kit.with_recording("lookup", caller="0909123456", summary="Chậm cấp trích lục")
    await kit.cases.act(case.code, "classify", actor="snv", category="procedure")
    await kit.cases.act(case.code, "assign", actor="snv", agencies=["STP"])
    await kit.cases.note(case.code, actor="stp", text="Ghi chú nội bộ: gọi lại cho ông Nguyễn Văn A")
    await kit.cases.act(case.code, "start", actor="stp")
    await kit.cases.act(case.code, "answer", actor="stp", text=ANSWER)
    return case


def unknown_code(*taken: str) -> str:
    return next(c for c in ("987654", "876543", "765432") if c not in taken)


async def test_the_form_needs_no_sign_in(kit):
    b = await kit.browser()
    r = await b.get("/tra-cuu")
    text = await r.text()
    assert r.status == 200 and 'name="code"' in text and 'name="phone4"' in text
    assert "Đăng xuất" not in text
    h = r.headers
    assert "frame-ancestors 'none'" in h["Content-Security-Policy"] and h["X-Frame-Options"] == "DENY"
    assert h["Cache-Control"] == "no-store" and h["X-Content-Type-Options"] == "nosniff"
    assert not re.search(r'(src|href)="(https?:)?//', text)  # no CDN
    assert "<script" not in text and " style=" not in text
    assert 'name="viewport"' in text


async def test_right_pair_shows_status_agency_deadline_and_answer(kit):
    case = await answered(kit)
    open_case = await kit.new_case(caller="+84912000111")
    b = await kit.browser()
    r = await b.get(f"/tra-cuu?code={case.code}&phone4=3456")
    text = await r.text()
    assert r.status == 200, text
    assert PublicStatus.ANSWERED.label in text and "Sở Tư pháp" in text
    assert ANSWER.replace("&", "&amp;") in text
    # An open case: its status and deadline as a date in the hotline's zone (8 digits and slashes).
    r = await b.get(f"/tra-cuu?code={open_case.code}&phone4=0111")
    text = await r.text()
    assert r.status == 200 and PublicStatus.RECEIVED.label in text
    deadline = open_case.deadline_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Ho_Chi_Minh"))
    assert deadline.strftime("%d/%m/%Y") in text and "Chưa có câu trả lời" in text
    # The look-up is in the case's history, as the citizen's.
    async with kit.console.engine.connect() as conn:
        actors = list((await conn.execute(select(CaseEvent.actor).where(CaseEvent.action == "lookup"))).scalars())
    assert actors == ["người dân (trang web)"] * 2


async def test_wrong_pair_and_unknown_code_are_the_same_page(kit):
    case = await answered(kit)
    other = unknown_code(case.code)
    b = await kit.browser()
    wrong = await b.get(f"/tra-cuu?code={case.code}&phone4=3457")
    unknown = await b.get(f"/tra-cuu?code={other}&phone4=3457")
    w, u = await wrong.text(), await unknown.text()
    assert wrong.status == unknown.status == 404
    assert case.code in w and other in u and "Không tìm thấy" in w
    assert w.replace(case.code, "CODE") == u.replace(other, "CODE")
    assert ANSWER not in w and "Sở Tư pháp" not in w
    # Someone else's code with the digits of one's own number: the same page again.
    await kit.new_case(caller="0988777666")
    r = await b.get(f"/tra-cuu?code={case.code}&phone4=7666")
    assert r.status == 404 and (await r.text()).replace(case.code, "CODE") == u.replace(other, "CODE")


async def test_malformed_input_is_explained(kit):
    b = await kit.browser()
    for query, says in (("code=12345&phone4=6789", "6 chữ số"), ("code=1234567&phone4=6789", "6 chữ số"),
                        ("code=abcdef&phone4=6789", "6 chữ số"), ("code=123456&phone4=678", "4 chữ số cuối"),
                        ("code=123456&phone4=", "4 chữ số cuối"), ("code=123456", "4 chữ số cuối"),
                        ("code=%3Cscript%3E&phone4=12a4", "6 chữ số")):
        r = await b.get("/tra-cuu?" + query)
        text = await r.text()
        assert r.status == 400 and says in text, (query, r.status)
        assert "<script>" not in text
    # Spaces typed inside the code are forgiven.
    r = await b.get("/tra-cuu?code=123+456&phone4=6789")
    assert r.status == 404


async def test_the_eleventh_look_up_in_a_minute_gets_429(kit):
    case = await answered(kit)
    b = await kit.browser()
    for i in range(10):
        r = await b.get(f"/tra-cuu?code={unknown_code(case.code)}&phone4={i:04d}")
        assert r.status == 404, i
    r = await b.get(f"/tra-cuu?code={case.code}&phone4=3456")  # even the right pair
    text = await r.text()
    assert r.status == 429 and "quá 10 lần trong một phút" in text and ANSWER not in text
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.headers["Content-Security-Policy"]
    assert (await b.get("/tra-cuu")).status == 200  # the bare form is not a look-up
    # Another address is not held back by this one.
    proxied = await make_kit(kit.settings, staff={}, web=WebSettings(trusted_proxies=("127.0.0.1",)), clock=kit.clock)
    try:
        c = await proxied.browser()
        for _i in range(10):
            r = await c.get("/tra-cuu?code=987654&phone4=0000", headers={"X-Forwarded-For": "203.0.113.7"})
            assert r.status == 404
        r = await c.get(f"/tra-cuu?code={case.code}&phone4=3456", headers={"X-Forwarded-For": "203.0.113.7"})
        assert r.status == 429
        r = await c.get(f"/tra-cuu?code={case.code}&phone4=3456", headers={"X-Forwarded-For": "203.0.113.8"})
        assert r.status == 200
    finally:
        await close_kit(proxied)
    # A minute later the first address may look again.
    kit.clock.advance(seconds=61)
    r = await b.get(f"/tra-cuu?code={case.code}&phone4=3456")
    assert r.status == 200


async def test_an_untrusted_peer_cannot_spread_its_look_ups_over_forged_addresses(kit):
    b = await kit.browser()
    for i in range(10):
        r = await b.get("/tra-cuu?code=987654&phone4=0000", headers={"X-Forwarded-For": f"203.0.113.{i}"})
        assert r.status == 404
    r = await b.get("/tra-cuu?code=987654&phone4=0000", headers={"X-Forwarded-For": "203.0.113.99"})
    assert r.status == 429


async def test_no_personal_data_on_the_page(kit):
    case = await answered(kit)
    b = await kit.browser()
    r = await b.get(f"/tra-cuu?code={case.code}&phone4=3456")
    text = (await r.text()).split("<main>", 1)[1]
    assert r.status == 200 and ANSWER.replace("&", "&amp;") in text
    for secret in ("0909123456", "909123456", "123456", "Cán bộ", "stp", "snv", "Ghi chú nội bộ", "Nguyễn Văn A",
                   "recording", ".wav", "<audio", "Chậm cấp trích lục"):
        assert secret not in text, secret
