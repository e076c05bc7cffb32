"""Issue 22 by Zalo: ``TC <code>`` answers the case's status and answer to its own Zalo user only,
opens no case; over the real webhook, the spool, the outbox and the fake Zalo API."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from ivr.config import routing as rt
from ivr.models.cases import Case, CaseEvent
from ivr.models.zalo import ZaloEvent
from ivr.records import cases as cm
from ivr.records import db
from ivr.testing import wait_until
from ivr.zalo.intake import lookup_code
from ivr.zalo.service import ZaloService
from ivr.zalo.webhook import PATH
from tests.paths import REPO_ROOT

from .zalo_fake import env, post_event, text_event

ROUTING = rt.load(REPO_ROOT / "routing.yaml")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@pytest.fixture
async def svc(settings_factory, fake, database_url):
    s = settings_factory(**env(fake), TONGDAI_DATABASE_URL=database_url)
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    service = ZaloService(s, engine, lambda: ROUTING, poll=0.1)
    await service.start()
    service.url = f"http://127.0.0.1:{service.port}{PATH}"
    service.sm = async_sessionmaker(engine, expire_on_commit=False)
    yield service
    await service.stop()
    await engine.dispose()


async def count(svc, model, *where) -> int:
    async with svc.sm() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def say(svc, fake, user: str, text: str) -> str:
    """The citizen writes; return the reply the OA sent them."""
    before = len(fake.sent)
    assert (await post_event(svc.url, text_event(user, text, now())))[0] == 200
    await wait_until(lambda: len(fake.sent) > before, 10, f"a reply to {text!r}")
    return "\n".join(m["text"] for m in fake.sent[before:] if m["user_id"] == user)


@pytest.mark.parametrize("text", ["TC 482913", "tc482913", "Tra cứu 482913", "TRA CỨU 482913", "tra cuu 482913",
                                  "tra cứu mã số: 482913", "  Tc: 482913 "])
def test_the_lookup_message_in_any_case_with_or_without_diacritics(text):
    assert lookup_code(text) == "482913"


@pytest.mark.parametrize("text", ["TC 482913 xin cảm ơn", "Tôi muốn tra cứu 482913", "tc abc", "KS 5 5 5 5 5"])
def test_other_texts_are_not_lookups(text):
    assert lookup_code(text) is None


async def test_tc_code_answers_its_own_citizen_and_nobody_else(svc, fake):
    reply = await say(svc, fake, "u1", "Tôi nộp hồ sơ đất đai 3 tuần chưa có kết quả")
    async with svc.sm() as s:
        code = (await s.execute(select(Case.code))).scalar_one()
    assert code in reply
    # While open: the status, and the deadline as a date; the message joins no case.
    reply = await say(svc, fake, "u1", f"TC {code}")
    case = await cm.Cases(svc.engine, ROUTING).get(code)
    deadline = case.deadline_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Ho_Chi_Minh"))
    assert reply == f"Phản ánh mã {code}: đã tiếp nhận.\nHạn trả lời: {deadline:%d/%m/%Y}."
    assert await count(svc, CaseEvent, CaseEvent.action == "zalo_message") == 0
    # Answered: the status and the answer itself.
    c = cm.Cases(svc.engine, ROUTING)
    await c.act(code, "classify", actor="t", category="procedure")
    await c.act(code, "assign", actor="t", agencies=["STNMT"])
    await c.act(code, "start", actor="t")
    await c.act(code, "answer", actor="t", text="Hồ sơ đã được giải quyết, mời ông đến nhận kết quả.")
    await wait_until(lambda: any("Trả lời phản ánh mã" in m["text"] for m in fake.sent), 10, "the answer sent")
    reply = await say(svc, fake, "u1", f"tra cứu {code}")
    assert reply == (f"Phản ánh mã {code}: đã trả lời.\nCơ quan giải quyết: Sở Tài nguyên và Môi trường.\n"
                     "Nội dung trả lời: Hồ sơ đã được giải quyết, mời ông đến nhận kết quả.")
    # Another Zalo user, and an unknown code: the same reply but for the code echoed.
    other = await say(svc, fake, "u2", f"TC {code}")
    unknown_code = "999999" if code != "999999" else "888888"
    unknown = await say(svc, fake, "u1", f"TC {unknown_code}")
    assert other.replace(code, "X") == unknown.replace(unknown_code, "X")
    assert "Không tìm thấy phản ánh mã" in other and "đã trả lời" not in other
    # No case was opened by any look-up; each reveal is in the history, the refusals are not.
    assert await count(svc, Case) == 1
    case = await cm.Cases(svc.engine, ROUTING).get(code)
    assert [e.actor for e in case.history if e.action == "lookup"] == ["người dân (Zalo)"] * 2
    async with svc.sm() as s:
        rows = (await s.execute(select(ZaloEvent.user_id, ZaloEvent.case_code, ZaloEvent.note)
                                .where(ZaloEvent.note.like("tra cứu%")).order_by(ZaloEvent.id))).all()
    assert [(u, c, n) for u, c, n in rows] == [("u1", code, "tra cứu: tìm thấy"), ("u1", code, "tra cứu: tìm thấy"),
                                               ("u2", None, "tra cứu: không tìm thấy"),
                                               ("u1", None, "tra cứu: không tìm thấy")]


async def test_a_phone_case_is_not_told_on_zalo(svc, fake):
    case = await cm.Cases(svc.engine, ROUTING).create(cm.NewCase(channel="phone", caller="0909123456"))
    reply = await say(svc, fake, "0909123456", f"TC {case.code}")
    assert reply.startswith(f"Không tìm thấy phản ánh mã {case.code}")
    assert await count(svc, Case) == 1
