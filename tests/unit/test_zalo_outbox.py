"""The outbox against the fake Zalo with an injected clock: staff answers, quiet hours, retries
with backoff, final refusals with the reason, token refresh on -216."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo

import aiohttp
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from ivr.cli import main
from ivr.config import routing as rt
from ivr.models.cases import CaseEvent
from ivr.models.zalo import OutboxItem
from ivr.records import cases as cm
from ivr.records import db
from ivr.zalo.service import build
from tests.paths import REPO_ROOT

from .zalo_fake import Clock, FakeZalo, env

VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
ROUTING = rt.load(REPO_ROOT / "routing.yaml")


def vn(y, m, d, h, mi=0, s=0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, s, tzinfo=VN).astimezone(dt.timezone.utc)


@pytest.fixture
async def world(settings_factory):
    fake = await FakeZalo().start()
    s = settings_factory(**env(fake))
    await asyncio.to_thread(db.upgrade, s)
    engine = db.engine(s)
    clock = Clock(vn(2027, 3, 10, 10))
    session = aiohttp.ClientSession()
    _, tokens, outbox = build(s, engine, session, "Asia/Ho_Chi_Minh", clock=clock)

    class W:
        pass

    w = W()
    w.fake, w.settings, w.engine, w.clock, w.tokens, w.outbox = fake, s, engine, clock, tokens, outbox
    w.cases = cm.Cases(engine, ROUTING)
    w.sm = async_sessionmaker(engine, expire_on_commit=False)
    yield w
    await session.close()
    await engine.dispose()
    await fake.stop()


async def zalo_case_answered(w, user="citizen-1", text="Hồ sơ của Ông đã được giải quyết, mời nhận kết quả.") -> str:
    case = await w.cases.create(cm.NewCase(channel="zalo", caller=user, summary="hỏi hồ sơ"))
    for action, kw in (("classify", {"category": "procedure"}), ("assign", {"agencies": ["VPUBND"]}), ("start", {})):
        await w.cases.act(case.code, action, actor="staff", **kw)
    await w.cases.act(case.code, "answer", actor="staff", text=text, now=w.clock())
    return case.code


async def item(w, **where) -> OutboxItem:
    async with w.sm() as s:
        q = select(OutboxItem)
        for k, v in where.items():
            q = q.where(getattr(OutboxItem, k) == v)
        return (await s.execute(q)).scalar_one()


async def history(w, code: str) -> list[CaseEvent]:
    return (await w.cases.get(code)).history


async def test_cli_answer_of_a_zalo_case_is_queued_and_sent(world, monkeypatch):
    w = world
    case = await w.cases.create(cm.NewCase(channel="zalo", caller="citizen-cli", summary="hỏi"))
    for env_name, value in w.settings.env.items():
        monkeypatch.setenv(env_name, value)
    runner = CliRunner()
    for args in (["classify", case.code, "--category", "question"], ["assign", case.code, "--agency", "VPUBND"],
                 ["start", case.code], ["answer", case.code, "--text", "Thủ tục này nộp tại Bộ phận một cửa cấp huyện."]):
        r = await asyncio.to_thread(runner.invoke, main, ["cases", *args])  # the CLI runs its own loop
        assert r.exit_code == 0, r.output
    assert "Zalo" in r.output
    queued = await item(w, case_code=case.code)
    assert queued.status == "pending" and queued.kind == "answer" and queued.user_id == "citizen-cli"
    assert await w.outbox.run_once() == 1
    assert w.fake.sent == [{"user_id": "citizen-cli", "text": f"Trả lời phản ánh mã {case.code}:\n"
                                                               "Thủ tục này nộp tại Bộ phận một cửa cấp huyện."}]
    sent = await item(w, case_code=case.code)
    assert sent.status == "sent" and sent.zalo_msg_id == "mid1" and sent.attempts == 1
    assert [e.action for e in await history(w, case.code)][-2:] == ["zalo_queued", "zalo_sent"]
    # A phone case answered the same way queues nothing.
    phone = await w.cases.create(cm.NewCase(channel="phone", caller="0909"))
    for action, kw in (("classify", {"category": "other"}), ("assign", {"agencies": ["VPUBND"]}), ("start", {}),
                       ("answer", {"text": "ok"})):
        await w.cases.act(phone.code, action, actor="staff", **kw)
    async with w.sm() as s:
        assert (await s.execute(select(OutboxItem).where(OutboxItem.case_code == phone.code))).first() is None


async def test_answers_wait_out_the_quiet_hours_but_automatic_replies_do_not(world):
    w = world
    w.clock.t = vn(2027, 3, 10, 22, 30)
    code = await zalo_case_answered(w)
    async with w.sm.begin() as s:
        from ivr.zalo.outbox import enqueue

        await enqueue(s, dedupe_key="auto:x", kind="auto_reply", channel="cs", now=w.clock(), user_id="citizen-2",
                      text="Đã tiếp nhận")
    assert await w.outbox.run_once() == 1  # only the automatic reply
    assert [m["user_id"] for m in w.fake.sent] == ["citizen-2"]
    held = await item(w, case_code=code)
    assert held.status == "pending" and held.attempts == 0
    assert held.next_attempt_at == vn(2027, 3, 11, 6, 0) and "giờ yên lặng" in held.reason
    for t in (vn(2027, 3, 11, 0, 1), vn(2027, 3, 11, 5, 59, 59)):
        w.clock.t = t
        assert await w.outbox.run_once() == 0
    w.clock.t = vn(2027, 3, 11, 6, 0)
    assert await w.outbox.run_once() == 1
    assert w.fake.sent[-1]["user_id"] == "citizen-1" and (await item(w, case_code=code)).status == "sent"


async def test_retryable_errors_back_off_then_succeed(world):
    w = world
    w.fake.script["citizen-1"] = [-32, -32]  # "Your OA reached limit call api"
    code = await zalo_case_answered(w)
    t0 = w.clock()
    assert await w.outbox.run_once() == 1
    it = await item(w, case_code=code)
    assert it.status == "pending" and it.attempts == 1 and it.zalo_error == -32
    assert it.next_attempt_at == t0 + dt.timedelta(seconds=30) and "giới hạn" in it.reason
    w.clock.advance(seconds=29)
    assert await w.outbox.run_once() == 0  # not due yet
    w.clock.t = t0 + dt.timedelta(seconds=30)
    assert await w.outbox.run_once() == 1
    it = await item(w, case_code=code)
    assert it.attempts == 2 and it.next_attempt_at == w.clock() + dt.timedelta(seconds=60)  # doubled
    w.clock.advance(seconds=60)
    assert await w.outbox.run_once() == 1
    it = await item(w, case_code=code)
    assert it.status == "sent" and it.attempts == 3 and it.reason is None
    assert len(w.fake.sent) == 1


async def test_retries_give_up_after_max_attempts_with_the_reason(world):
    w = world
    w.outbox.max_attempts = 3
    w.fake.script["citizen-1"] = [-32] * 10
    code = await zalo_case_answered(w)
    for _ in range(3):
        assert await w.outbox.run_once() == 1
        w.clock.advance(hours=1)
    it = await item(w, case_code=code)
    assert it.status == "failed" and it.attempts == 3 and "đã thử 3 lần" in it.reason and "-32" in it.reason
    assert await w.outbox.run_once() == 0
    assert (await history(w, code))[-1].action == "zalo_failed"


async def test_closed_interaction_window_fails_at_once_and_tells_staff_to_call(world):
    w = world
    w.fake.script["citizen-1"] = [-230]
    code = await zalo_case_answered(w)
    assert await w.outbox.run_once() == 1
    it = await item(w, case_code=code)
    assert it.status == "failed" and it.attempts == 1 and it.zalo_error == -230
    assert "7 ngày" in it.reason and "User has not interacted" in it.reason
    last = (await history(w, code))[-1]
    assert last.action == "zalo_failed" and "điện thoại" in last.note and "7 ngày" in last.note
    w.clock.advance(days=1)
    assert await w.outbox.run_once() == 0 and w.fake.sent == []
    r = await asyncio.to_thread(CliRunner().invoke, main, ["zalo", "outbox", "--status", "failed"],
                                env=dict(w.settings.env))
    assert r.exit_code == 0 and code in r.output and "7 ngày" in r.output


async def test_refused_for_the_night_waits_for_morning(world):
    w = world
    w.outbox.quiet = type(w.outbox.quiet).parse("23:00", "05:00", "Asia/Ho_Chi_Minh")  # ours narrower than Zalo's
    w.clock.t = vn(2027, 3, 10, 22, 15)
    w.fake.script["citizen-1"] = [-234]
    code = await zalo_case_answered(w)
    assert await w.outbox.run_once() == 1
    it = await item(w, case_code=code)
    assert it.status == "pending" and it.zalo_error == -234 and it.next_attempt_at > w.clock()
    w.clock.t = it.next_attempt_at
    while (await item(w, case_code=code)).status == "pending":
        assert await w.outbox.run_once() <= 1
        w.clock.t = max(w.clock.t, (await item(w, case_code=code)).next_attempt_at)
    assert (await item(w, case_code=code)).status == "sent"


async def test_invalid_access_token_is_refreshed_and_the_message_resent(world):
    w = world
    await zalo_case_answered(w, user="c1")
    assert await w.outbox.run_once() == 1  # first use: refresh with the seed, then send
    assert w.fake.refreshes == 1 and len(w.fake.sent) == 1
    w.fake.expire_access()  # Zalo now answers -216 to the stored token
    await zalo_case_answered(w, user="c2")
    assert await w.outbox.run_once() == 1
    assert w.fake.refreshes == 2 and [m["user_id"] for m in w.fake.sent] == ["c1", "c2"]
    assert ("cs", -216) in w.fake.calls
    assert w.tokens.current().access_token == w.fake.access


async def test_zalo_unreachable_is_retried_not_failed(world):
    w = world
    code = await zalo_case_answered(w)
    await w.outbox.run_once()  # gets a token while the fake is up
    w.fake.expire_access()
    await w.fake.stop()
    await zalo_case_answered(w, user="c3")
    assert await w.outbox.run_once() == 1
    it = await item(w, user_id="c3")
    assert it.status == "pending" and it.attempts == 1 and "Zalo" in it.reason
    assert (await item(w, case_code=code)).status == "sent"


async def test_long_answers_are_split_under_zalo_s_2000_characters(world):
    w = world
    text = ("Căn cứ quy định hiện hành, hồ sơ của Ông/Bà cần bổ sung giấy tờ. " * 60).strip()
    code = await zalo_case_answered(w, text=text)
    while await w.outbox.run_once():
        pass
    parts = [m["text"] for m in w.fake.sent]  # the fake refuses a text over 2000 characters (-201)
    n = len(parts)
    assert n >= 2 and all(len(p) <= 2000 for p in parts)
    assert parts[0].startswith(f"Trả lời phản ánh mã {code}")
    assert [p.rsplit(" ", 1)[1] for p in parts] == [f"({i}/{n})" for i in range(1, n + 1)]
    body = " ".join(p.rsplit(" ", 1)[0] for p in parts).split(":\n", 1)[1]
    assert body.split() == text.split()  # nothing lost or reordered
