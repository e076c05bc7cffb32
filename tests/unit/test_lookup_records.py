"""The look-up service (ivr.records.lookup): who may see a case, and what they are shown. Real
database on both backends; the migration that lets a call be logged as case_lookup."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest
from sqlalchemy import insert

from ivr.config import routing as rt
from ivr.models import Call, ZaloUser
from ivr.records import cases as cm
from ivr.records import db
from ivr.records.lookup import Lookup, PublicView
from ivr.vocab import CaseStatus, Disposition, PublicStatus
from tests.paths import REPO_ROOT

ROUTING = rt.load(REPO_ROOT / "routing.yaml")
NOW = dt.datetime(2026, 12, 8, 3, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
async def engine(db_settings):
    await asyncio.to_thread(db.upgrade, db_settings)
    eng = db.engine(db_settings)
    yield eng
    await eng.dispose()


async def phone_case(engine, caller="0909123456", **kw):
    return await cm.Cases(engine, ROUTING).create(cm.NewCase(
        channel="phone", caller=caller, branch_digit="3", agency_code="STP", agency_name="Sở Tư pháp", **kw),
        received_at=NOW)


async def zalo_case(engine, user="zu-1", phone=None):
    if phone:
        async with engine.begin() as conn:
            await conn.execute(insert(ZaloUser).values(user_id=user, following=True, phone=phone))
    return await cm.Cases(engine, ROUTING).create(cm.NewCase(channel="zalo", caller=user, summary="đất đai"),
                                                  received_at=NOW)


def test_every_case_status_has_a_public_word():
    assert {PublicStatus.of(s) for s in CaseStatus} == set(PublicStatus)
    assert PublicStatus.of("classified") is PublicStatus.RECEIVED and PublicStatus.of("reopened") is PublicStatus.IN_PROGRESS
    assert [p.label for p in PublicStatus] == ["đã tiếp nhận", "đang xử lý", "đã trả lời", "đã đóng"]


def test_the_public_view_holds_nothing_personal():
    fields = {f.name for f in dataclasses.fields(PublicView)}
    assert fields == {"code", "status", "agencies", "received_at", "deadline_at", "answer", "answered_at"}


async def test_a_call_can_be_logged_as_a_case_lookup(engine):
    async with engine.begin() as conn:
        await conn.execute(insert(Call).values(id="c-lookup", caller="0909", hotline="1022", started_at=NOW,
                                               disposition=Disposition.CASE_LOOKUP, case_code="123456"))


async def test_by_number_phone4_and_zalo_user(engine):
    case = await phone_case(engine)
    look = Lookup(engine)
    view = await look.by_number(case.code, "0909123456", now=NOW)
    assert view is not None and view.code == case.code and view.status is PublicStatus.RECEIVED
    assert view.agencies == ("Sở Tư pháp",) and view.deadline_at == case.deadline_at and view.answer is None
    assert await look.by_number(case.code, "+84 909 123 456") == view
    assert await look.by_phone4(case.code, "3456") == view
    # Not theirs, malformed, unknown: all the same None.
    for who in ("0909123457", "anonymous", ""):
        assert await look.by_number(case.code, who) is None
    for p4 in ("3457", "456", "abcd", "", "23456"):
        assert await look.by_phone4(case.code, p4) is None
    for code in (" ", "12345", "0" + case.code[1:], "abcdef", case.code + "0"):
        assert await look.by_number(code, "0909123456") is None
    assert await look.by_zalo_user(case.code, "0909123456") is None  # a phone case is not a Zalo user's
    # Every reveal is in the history; a refusal leaves none.
    got = await cm.Cases(engine, ROUTING).get(case.code)
    assert [(e.action, e.actor) for e in got.history if e.action == "lookup"] == [
        ("lookup", "người dân (điện thoại)"), ("lookup", "người dân (điện thoại)"), ("lookup", "người dân (trang web)")]


async def test_a_zalo_case_is_its_users_and_of_the_number_they_shared(engine):
    shared = await zalo_case(engine, "zu-1", phone="84912345678")
    silent = await zalo_case(engine, "zu-2")
    look = Lookup(engine)
    assert (await look.by_zalo_user(shared.code, "zu-1")).code == shared.code
    assert await look.by_zalo_user(shared.code, "zu-2") is None
    assert await look.by_zalo_user(shared.code, "") is None
    assert (await look.by_number(shared.code, "0912345678")).agencies == ()  # not assigned yet
    assert (await look.by_phone4(shared.code, "5678")).code == shared.code
    assert await look.by_phone4(silent.code, "5678") is None


async def test_what_is_told_follows_the_lifecycle(engine):
    case = await phone_case(engine)
    c, look = cm.Cases(engine, ROUTING), Lookup(engine)
    await c.act(case.code, "classify", actor="t", category="procedure")
    assert (await look.by_number(case.code, "0909123456")).status is PublicStatus.RECEIVED
    await c.act(case.code, "assign", actor="t", agencies=["STC", "SNV"])
    v = await look.by_number(case.code, "0909123456")
    assert v.status is PublicStatus.IN_PROGRESS and v.agencies == ("Sở Tài chính", "Sở Nội vụ")
    await c.act(case.code, "start", actor="t")
    await c.act(case.code, "answer", actor="t", text="Đã giải quyết.")
    v = await look.by_number(case.code, "0909123456")
    assert (v.status, v.answer, v.deadline_at) == (PublicStatus.ANSWERED, "Đã giải quyết.", None) and v.answered_at
    await c.act(case.code, "reopen", actor="t", note="người dân chưa đồng ý")
    v = await look.by_number(case.code, "0909123456")
    assert v.status is PublicStatus.IN_PROGRESS and v.answer is None and v.deadline_at  # reconsidered
    await c.act(case.code, "close", actor="t", reason="no_further_action")
    v = await look.by_number(case.code, "0909123456")
    assert v.status is PublicStatus.CLOSED and v.answer == "Đã giải quyết."


async def test_a_further_complaint_is_a_request_in_the_history(engine):
    case = await phone_case(engine)
    look = Lookup(engine)
    assert await look.further(case.code, "0909000000", note="x") is False
    assert await look.further(case.code, "0909123456", note="ghi âm 5 giây: recordings/a.wav") is True
    got = await cm.Cases(engine, ROUTING).get(case.code)
    assert got.status == "received"
    assert [(e.action, e.note) for e in got.history][-1] == ("reopen_request", "ghi âm 5 giây: recordings/a.wav")
