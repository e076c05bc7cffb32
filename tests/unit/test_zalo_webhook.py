"""The Zalo webhook over real HTTP: signatures, bad input, staleness, duplicates, durability, and
events becoming cases (real SQLite through the migrations, a fake Zalo API for the replies)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from ivr.config import routing as rt
from ivr.models.cases import Case, CaseEvent
from ivr.models.zalo import OutboxItem, ZaloEvent, ZaloUser
from ivr.records import db
from ivr.records.spool import Spool
from ivr.testing import wait_until
from ivr.zalo.intake import Intake
from ivr.zalo.service import ZaloService
from ivr.zalo.webhook import PATH, Webhook, signature_ok
from tests.paths import REPO_ROOT

from .zalo_fake import APP_ID, OA_SECRET, env, follow_event, image_event, ms, post_event, sign, text_event

ROUTING = rt.load(REPO_ROOT / "routing.yaml")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@pytest.fixture
async def svc(settings_factory, fake):
    s = settings_factory(**env(fake))
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


def test_signature_formula_matches_zalo_documentation():
    # mac = sha256(app_id + body + timestamp + OA secret key): a plain hash, not an HMAC.
    import hashlib

    raw, ts = b'{"event_name":"follow","timestamp":"1700000000000"}', "1700000000000"
    mac = hashlib.sha256(f"{APP_ID}{raw.decode()}{ts}{OA_SECRET}".encode()).hexdigest()
    assert signature_ok(f"mac={mac}", APP_ID, raw, ts, OA_SECRET)
    assert signature_ok(mac.upper(), APP_ID, raw, ts, OA_SECRET)  # hex case and missing prefix tolerated
    assert not signature_ok(f"mac={mac}", APP_ID, raw + b" ", ts, OA_SECRET)
    assert not signature_ok(f"mac={mac}", APP_ID, raw, "1700000000001", OA_SECRET)
    import hmac as _hmac

    as_hmac = _hmac.new(OA_SECRET.encode(), APP_ID.encode() + raw + ts.encode(), hashlib.sha256).hexdigest()
    assert not signature_ok(f"mac={as_hmac}", APP_ID, raw, ts, OA_SECRET)


async def test_text_message_opens_a_zalo_case_and_the_citizen_gets_its_code(svc, fake):
    status, _ = await post_event(svc.url, text_event("u1", "Tôi nộp hồ sơ đất đai 3 tuần chưa có kết quả", now()))
    assert status == 200
    await wait_until(lambda: count(svc, Case, Case.channel == "zalo"), 10, "a Zalo case")
    async with svc.sm() as s:
        case = (await s.execute(select(Case))).scalar_one()
    assert case.channel == "zalo" and case.caller == "u1" and case.status == "received"
    assert len(case.code) == 6 and case.code.isdigit() and case.code[0] != "0"
    assert "đất đai" in case.summary
    await wait_until(lambda: len(fake.sent) == 1, 10, "the automatic reply")
    reply = fake.sent[0]
    assert reply["user_id"] == "u1" and case.code in reply["text"] and ROUTING.hotline.number in reply["text"]
    # A follow-up joins the same open case, no second case and no second automatic reply.
    status, _ = await post_event(svc.url, image_event("u1", "https://zalo.example/a.jpg", now()))
    assert status == 200
    await wait_until(lambda: count(svc, CaseEvent, CaseEvent.action == "zalo_message"), 10, "the follow-up on the case")
    assert await count(svc, Case) == 1
    async with svc.sm() as s:
        note = (await s.execute(select(CaseEvent.note).where(CaseEvent.action == "zalo_message"))).scalar_one()
    assert "[ảnh] https://zalo.example/a.jpg" in note
    # Processed (above) without a reply queued, in the same transaction: none will be sent.
    assert await count(svc, OutboxItem) == 1 and len(fake.sent) == 1


async def test_the_case_code_space_is_shared_with_phone_cases(svc, fake, monkeypatch):
    from ivr.records import cases as cm

    phone = await cm.Cases(svc.engine, ROUTING).create(cm.NewCase(channel="phone", caller="0909000111"))
    codes = iter([phone.code, phone.code, "777777"])  # the first claims collide with the phone case
    monkeypatch.setattr(cm, "code_for", lambda n, key: next(codes))
    assert (await post_event(svc.url, text_event("u9", "phản ánh", now())))[0] == 200
    await wait_until(lambda: count(svc, Case, Case.channel == "zalo"), 10, "a Zalo case")
    async with svc.sm() as s:
        assert (await s.execute(select(Case.code).where(Case.channel == "zalo"))).scalar_one() == "777777"


async def test_bad_signature_is_refused_and_nothing_is_stored(svc):
    body = text_event("u2", "xin chào", now())
    raw = json.dumps(body).encode()
    good = sign(raw, body["timestamp"])
    cases = [
        None,  # no header at all
        "mac=" + "0" * 64,
        sign(raw, body["timestamp"], secret="another-oa-secret"),
        sign(raw, body["timestamp"], app_id="111"),
    ]
    for header in cases:
        status, _ = await post_event(svc.url, raw, signature=header)
        assert status == 401, header
    tampered = raw.replace(b"xin ch", b"XIN CH")
    assert (await post_event(svc.url, tampered, signature=good))[0] == 401
    # The 401 is sent before anything is written: nothing to wait for.
    assert svc.spool.pending() == 0 and not svc.spool.path.exists()
    assert await count(svc, ZaloEvent) == 0 and await count(svc, Case) == 0


async def test_malformed_json_is_400_and_nothing_is_stored(svc):
    for raw in (b"{not json", b"[1, 2]", b'{"event_name": "user_send_text"}', "\udcff".encode("utf-8", "surrogatepass")):
        status, _ = await post_event(svc.url, raw, signature="mac=" + "0" * 64)
        assert status == 400, raw
    assert not svc.spool.path.exists() and await count(svc, ZaloEvent) == 0


async def test_stale_or_future_timestamps_are_refused(svc):
    for at in (now() - dt.timedelta(hours=4), now() + dt.timedelta(minutes=10)):
        status, payload = await post_event(svc.url, text_event("u3", "cũ", at))
        assert status == 401 and "stale" in payload["message"]
    # Zalo retries for up to about two hours: such a retry is still accepted.
    assert (await post_event(svc.url, text_event("u3", "thử lại", now() - dt.timedelta(hours=2))))[0] == 200
    await wait_until(lambda: count(svc, ZaloEvent), 10, "the event to be processed")
    assert await count(svc, Case) == 1


async def test_duplicate_message_id_is_processed_once(svc, fake):
    body = text_event("u4", "cùng một tin", now(), msg_id="dupe-0001")
    for _ in range(3):
        assert (await post_event(svc.url, body))[0] == 200
    await wait_until(lambda: count(svc, ZaloEvent), 10, "the event to be processed")
    # And a redelivery after a restart (the in-memory memory is gone) is still ignored.
    svc.webhook._recent.clear()
    assert (await post_event(svc.url, body))[0] == 200
    await wait_until(lambda: svc.spool.pending() == 0 and svc.intake.processed == 1, 10, "the redelivery to be processed")
    assert await count(svc, ZaloEvent) == 1 and await count(svc, Case) == 1
    assert await count(svc, CaseEvent, CaseEvent.action == "zalo_message") == 0
    assert await count(svc, OutboxItem) == 1


async def test_unknown_event_is_logged_and_acknowledged(svc, caplog):
    body = {"app_id": APP_ID, "oa_id": "x", "event_name": "user_reacted_message", "timestamp": ms(now())}
    with caplog.at_level(logging.INFO, logger="tongdai.zalo"):
        assert (await post_event(svc.url, body))[0] == 200
        await wait_until(lambda: count(svc, ZaloEvent, ZaloEvent.status == "ignored"), 10, "the event to be recorded as ignored")
    assert any("user_reacted_message" in r.getMessage() for r in caplog.records)
    assert await count(svc, Case) == 0


async def test_follow_and_unfollow_are_recorded(svc):
    t = now()
    assert (await post_event(svc.url, follow_event("u5", t - dt.timedelta(minutes=5))))[0] == 200
    await wait_until(lambda: count(svc, ZaloUser, ZaloUser.following.is_(True)), 10, "a follower")
    assert (await post_event(svc.url, follow_event("u5", t, "unfollow")))[0] == 200
    await wait_until(lambda: count(svc, ZaloUser, ZaloUser.following.is_(False)), 10, "the unfollow")
    async with svc.sm() as s:
        u = await s.get(ZaloUser, "u5")
    assert u.followed_at is not None and u.unfollowed_at is not None and u.unfollowed_at > u.followed_at


async def test_acknowledged_event_survives_a_crash_right_after_the_200(settings_factory, fake):
    """The webhook alone (no processor, as if the process died after answering): the event is
    in the fsync'd spool; a later start turns it into a case."""
    s = settings_factory(**env(fake))
    await asyncio.to_thread(db.upgrade, s)
    spool = Spool(s.zalo.spool_path)
    app = web.Application()
    Webhook(s.zalo, spool).routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"
    try:
        assert (await post_event(url, text_event("u6", "mất điện sau khi trả lời", now())))[0] == 200
    finally:
        await runner.cleanup()  # "the process dies": nothing processed the event
    lines = s.zalo.spool_path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(json.loads(lines[0])["body"])["sender"]["id"] == "u6"
    engine = db.engine(s)
    try:
        assert await Spool(s.zalo.spool_path).drain(Intake(engine, s.zalo, lambda: ROUTING).write) == 1
        async with async_sessionmaker(engine)() as ss:
            case = (await ss.execute(select(Case))).scalar_one()
        assert case.caller == "u6" and case.channel == "zalo"
        assert Spool(s.zalo.spool_path).pending() == 0
    finally:
        await engine.dispose()


async def test_events_for_another_oa_are_not_turned_into_cases(svc):
    body = text_event("u7", "nhầm OA", now())
    body["recipient"]["id"] = "999"
    assert (await post_event(svc.url, body))[0] == 200
    await wait_until(lambda: count(svc, ZaloEvent, ZaloEvent.status == "ignored"), 10, "the event to be recorded as ignored")
    assert await count(svc, Case) == 0
