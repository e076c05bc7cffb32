"""Issue 25, callbacks: numbers that may be called back, the request keeping its place in the
queue, the store's claim (never twice) and expiry on SQLite and PostgreSQL, key 1 in the queue,
the service serving a request only at its turn with a free phone, one attempt end to end on the
fake ARI (agent first, whisper, the citizen through the trunk, the call log row)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select

from ivr.call import callback as cb
from ivr.call import queue
from ivr.call.session import State
from ivr.config import routing as rt
from ivr.models import Call, CallbackRequest
from ivr.records import db
from ivr.records.callbacks import EXPIRE_AFTER, CallbackStore, Request, callback_number
from ivr.testing import FakeAri, FakeCallLog, make_call, wait_until, write_wav
from ivr.vocab import CallbackStatus, Disposition
from tests.paths import REPO_ROOT

ROUTING = rt.loads((REPO_ROOT / "routing.yaml").read_text(encoding="utf-8"))
T0 = dt.datetime(2026, 12, 8, 2, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(("raw", "want"), [
    ("0912345678", "0912345678"), ("+84912345678", "0912345678"), ("84912345678", "0912345678"),
    ("+84 91 234 5678", "0912345678"), ("02363822111", "02363822111"), ("842363822111", "02363822111"),
    ("anonymous", None), ("", None), (None, None), ("1022", None), ("+14155550100", None),
    ("0112345678", None), ("091234567", None), ("09123456789", None), ("113", None),
])
def test_only_vietnamese_subscriber_numbers_are_called_back(raw, want):
    assert callback_number(raw) == want


def request(rid: int, minutes: float, branch: str = "4", due: dt.datetime | None = None) -> Request:
    at = T0 + dt.timedelta(minutes=minutes)
    return Request(rid, f"call-{rid}", "0912345678", branch, at, due or at)


def live(queues: queue.Queues, cid: str, minutes: float) -> queue.Waiter:
    c = make_call(ROUTING, channel_id=cid, state=State.DIALING)
    w = queues.join("4", c.session)
    w.arrived = T0 + dt.timedelta(minutes=minutes)
    return w


def test_a_request_keeps_its_place_and_a_retry_not_due_holds_none():
    q = queue.Queues()
    a, b, c = live(q, "a", 0), live(q, "b", 1), live(q, "c", 2)
    p = q.to_callback(b, request(1, 1))
    assert q.lines["4"] == [a, p, c] and q.position(c) == 3 and q.head("4") is a
    assert q.status() == {"4": 2} and q.callbacks_status() == {"4": 1}  # `tongdai status`
    q.leave(a, served=True)
    assert q.head("4") is p and q.position(c) == 2  # the request before the later caller
    q.take(p)  # served: the caller behind moves up
    assert q.head("4") is c and q.position(c) == 1
    # put back for a retry, not due yet: in its place but holding none
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2)
    p2 = q.add_pending(dataclasses.replace(request(1, 1), due_at=later))
    assert q.lines["4"] == [p2, c] and q.head("4") is c and q.position(c) == 1 and q.waiting("4") == 1
    p2.request.due_at = T0
    assert q.head("4") is p2 and q.position(c) == 2


def test_reloaded_requests_go_back_in_arrival_order():
    q = queue.Queues()
    late = live(q, "late", 30)
    for rid, minutes in ((2, 5), (1, 3), (3, 40)):
        q.add_pending(request(rid, minutes))
    order = [e.request.id if isinstance(e, queue.Pending) else e.session.id for e in q.lines["4"]]
    assert order == [1, 2, "late", 3]
    assert q.position(late) == 3


@pytest.fixture
async def engine(db_settings):
    await asyncio.to_thread(db.upgrade, db_settings)
    eng = db.engine(db_settings)
    yield eng
    await eng.dispose()


async def rows(engine) -> list[CallbackRequest]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(CallbackRequest.__table__).order_by(CallbackRequest.id))).all())


async def test_store_claims_once_puts_back_and_expires(engine):
    now = dt.datetime.now(dt.timezone.utc)
    one, two = CallbackStore(engine, "ctl-1"), CallbackStore(engine, "ctl-2")
    r2 = await one.add("c2", "0912345678", "4", now - dt.timedelta(minutes=1))
    r1 = await one.add("c1", "0987654321", "4", now - dt.timedelta(minutes=2))
    old = await one.add("c0", "0911111111", "4", now - EXPIRE_AFTER - dt.timedelta(seconds=1))
    pending = await two.pending()
    assert [r.id for r in pending] == [r1.id, r2.id]  # arrival order; the old one expired
    assert {r.id: r.status for r in await rows(engine)}[old.id] == CallbackStatus.EXPIRED
    # Two controllers race for one request: one wins.
    got = await asyncio.gather(one.claim(r1), two.claim(pending[0]))
    assert sorted(got) == [False, True]
    assert not await one.claim(r1)  # and nobody takes it again
    r1.attempts = 1
    await one.put_back(r1, now + dt.timedelta(seconds=120))
    row = {r.id: r for r in await rows(engine)}[r1.id]
    assert row.status == CallbackStatus.PENDING and row.attempts == 1 and row.queued_at == r1.queued_at
    assert [r.id for r in await one.pending()] == [r1.id, r2.id]  # its place is kept
    assert await one.claim(r1)
    await one.finish(r1, CallbackStatus.DONE)
    assert not await two.claim(r1)
    assert [r.id for r in await two.pending()] == [r2.id]


def test_routing_validates_the_callback_section():
    text = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")
    r = rt.loads(text + "\ncallback: {attempts: 2, retry_after: 60}\n")
    assert r.callback == rt.Callback(2, 60)
    assert rt.loads(text).callback == rt.Callback(3, 120)
    with pytest.raises(rt.RoutingError) as e:
        rt.loads(text + "\ncallback: {attempts: 0, retry_after: 5, when: now}\n")
    said = str(e.value)
    assert "callback.attempts" in said and "callback.retry_after" in said and "when" in said


class MemoryStore:
    """The store's part the queue and the service use, in memory (the real one is tested above)."""

    def __init__(self) -> None:
        self.rows: dict[int, dict] = {}

    async def add(self, call_id, number, branch, queued_at):
        rid = len(self.rows) + 1
        self.rows[rid] = {"status": "pending", "attempts": 0}
        return Request(rid, call_id, number, branch, queued_at, queued_at)

    async def claim(self, req):
        if self.rows[req.id]["status"] != "pending":
            return False
        self.rows[req.id]["status"] = "serving"
        return True

    async def finish(self, req, status):
        self.rows[req.id].update(status=str(status), attempts=req.attempts)

    async def put_back(self, req, due_at):
        req.due_at = due_at
        self.rows[req.id].update(status="pending", attempts=req.attempts)

    async def pending(self):
        return []

    async def expire(self, req):
        self.rows[req.id]["status"] = "expired"


def service(c, store, busy=lambda ext, s: False, routing=ROUTING) -> cb.Callbacks:
    ctx = c.session.ctx
    ctx.busy = busy
    svc = cb.Callbacks(ctx, store, lambda: routing, "tongdai", lambda ch: None)  # type: ignore[arg-type]
    ctx.callbacks = svc
    return svc


def branch4():
    return dataclasses.replace(ROUTING.branch("4"), queue=rt.Queue(60, 10, True))


async def test_key_1_reads_the_number_back_and_the_request_takes_the_place():
    c = make_call(ROUTING, ari=FakeAri(), caller="+84912345678", state=State.DIALING,
                  busy=lambda ext, s: True, reachable=lambda ext: True)
    store = MemoryStore()
    svc = service(c, store, busy=lambda ext, s: True)
    task = asyncio.create_task(queue.wait(c.session, branch4()))
    pb = await c.hear()
    assert pb.sounds[-1] == "queue_keys_callback"
    c.dtmf("1")
    confirm = await c.hear()
    assert confirm.sounds == ["callback_confirm", "digits:0912345678", "callback_confirm_keys"]
    c.dtmf("2")  # back to waiting
    again = await c.hear()
    assert again.sounds[:2] == ["queue_position", "number:1"]
    c.dtmf("1")
    await c.hear()
    c.dtmf("1")
    assert await asyncio.wait_for(task, 2) == "callback"
    (p,) = svc.queues.pendings()
    assert p.request.number == "0912345678" and store.rows[p.request.id]["status"] == "pending"
    assert c.events("callback_requested")[0]["number"] == "0912345678"
    assert c.events("dequeued")[0]["why"] == "callback"


async def test_no_key_1_for_a_withheld_number_or_without_a_trunk():
    for caller, with_service in (("anonymous", True), ("0912345678", False)):
        c = make_call(ROUTING, ari=FakeAri(), caller=caller, state=State.DIALING,
                      busy=lambda ext, s: True, reachable=lambda ext: True)
        if with_service:
            service(c, MemoryStore(), busy=lambda ext, s: True)
        task = asyncio.create_task(queue.wait(c.session, branch4()))
        assert (await c.hear()).sounds[-1] == "queue_keys"
        c.dtmf("1")  # nothing happens
        c.dtmf("2")
        assert await asyncio.wait_for(task, 2) == "complaint"


async def test_the_service_waits_for_its_turn_and_a_free_phone():
    c = make_call(ROUTING, ari=FakeAri(), state=State.DIALING)
    busy = {"now": True}
    svc = service(c, MemoryStore(), busy=lambda ext, s: busy["now"])
    started: list[tuple[int, str]] = []

    async def serve(req, branch, ext):
        started.append((req.id, ext))
    svc._serve = serve  # type: ignore[method-assign]
    q = svc.queues
    ahead = live(q, "ahead", 0)
    q.add_pending(request(1, 1))
    assert svc.tick() == []  # a caller is ahead
    q.leave(ahead, served=True)
    assert svc.tick() == []  # every phone busy
    busy["now"] = False
    (task,) = svc.tick()
    await task
    assert started == [(1, ROUTING.branch("4").targets[0])] and q.pendings() == []
    assert svc.holds(ROUTING.branch("4").targets[0])  # held until the attempt is over


async def test_an_expired_request_is_dropped():
    c = make_call(ROUTING, ari=FakeAri(), state=State.DIALING)
    store = MemoryStore()
    svc = service(c, store)
    req = await store.add("c1", "0912345678", "4", dt.datetime.now(dt.timezone.utc) - EXPIRE_AFTER)
    svc.queues.add_pending(req)
    svc.tick()
    await wait_until(lambda: store.rows[req.id]["status"] == "expired", 2, "the request expired")
    assert svc.queues.pendings() == []


class Attempt:
    """One callback attempt on the fake ARI: the events Asterisk would send."""

    def __init__(self, svc: cb.Callbacks, ari: FakeAri, owners: dict) -> None:
        self.svc, self.ari, self.owners = svc, ari, owners

    async def channel(self, kind: str) -> str:
        def made():
            return next((p["channelId"] for path, p in self.ari.params.items()
                         if path == "/channels" and f"-{kind}" in p.get("channelId", "")
                         and p["channelId"] in self.owners), None)
        return await wait_until(made, 2, f"the {kind} channel")

    def send(self, owner_of: str, ev: dict) -> None:
        self.owners[owner_of].queue.put_nowait(ev)


async def run_attempt(citizen_answers: bool, attempts_before: int = 0, cut: bool = False, home=None,
                      routing=ROUTING):
    log = FakeCallLog()
    c = make_call(routing, ari=FakeAri(), state=State.DIALING, calllog=log, home=home)
    owners: dict = {}
    c.session.ctx.own = owners.__setitem__
    store = MemoryStore()
    svc = service(c, store, routing=routing)
    req = await store.add("orig-1", "0912345678", "4", dt.datetime.now(dt.timezone.utc))
    req.attempts = attempts_before
    store.rows[req.id]["attempts"] = attempts_before
    svc.queues.add_pending(req)
    ari = c.ari
    (task,) = svc.tick()
    a = Attempt(svc, ari, owners)
    agent = await a.channel("agent")
    assert ari.params["/channels"]["endpoint"] == f"PJSIP/{ROUTING.branch('4').targets[0]}"
    a.send(agent, {"type": "StasisStart", "channel": {"id": agent}})  # the focal point answered
    whisper = await wait_until(lambda: next((p for p in ari.requests("POST", f"/channels/{agent}/play/")), None), 2,
                               "the whisper")
    assert ari.params[whisper]["media"] == "sound:tongdai/callback_whisper,digits:0912345678"
    assert not any("citizen" in (p.get("channelId") or "") for p in [ari.params["/channels"]])  # agent first
    a.send(agent, {"type": "PlaybackFinished", "playback": {"id": whisper.rsplit("/", 1)[1]}})
    citizen = await a.channel("citizen")
    assert ari.params["/channels"]["endpoint"] == "PJSIP/0912345678@trunk-out"
    if citizen_answers:
        a.send(citizen, {"type": "StasisStart", "channel": {"id": citizen}})
        await wait_until(lambda: any(p.endswith("/addChannel") for p in ari.requests("POST", "/bridges/")), 2, "the bridge")
        if cut:  # the controller stops past its grace mid-conversation
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return svc, store, req, log, agent
        name = None
        if routing.recording.enabled:  # the bridge is recorded, as a call's is
            rec_path = await wait_until(lambda: next((p for p in ari.requests("POST", "/bridges/")
                                                      if p.endswith("/record")), None), 2, "the recording")
            name = ari.params[rec_path]["name"]
            bridge_id = rec_path.split("/")[2]
            write_wav(c.session.ctx.recording_spool / f"{name}.wav", 2.0)
        a.send(citizen, {"type": "StasisEnd", "channel": {"id": citizen}})
        if name is not None:
            await wait_until(lambda: ("POST", f"/recordings/live/{name}/stop") in ari.sent, 2, "the recording stopped")
            a.send(bridge_id, {"type": "RecordingFinished", "recording": {"name": name, "target_uri": f"bridge:{bridge_id}"}})
    else:
        a.send(citizen, {"type": "ChannelDestroyed", "channel": {"id": citizen}, "cause": 19})
    await asyncio.wait_for(task, 2)
    return svc, store, req, log, agent


async def test_an_answered_callback_is_logged_and_done():
    svc, store, req, log, agent = await run_attempt(True)
    (row,) = [r for r in log.closed_records if r.callback_of == "orig-1"]
    assert row.disposition == Disposition.CALLBACK_ANSWERED and row.caller == "0912345678"
    assert row.answered_by == ROUTING.branch("4").targets[0] and row.answered_at is not None
    assert store.rows[req.id] == {"status": "done", "attempts": 1}
    assert not svc.held and svc.queues.pendings() == []


async def test_a_citizen_who_does_not_answer_is_tried_again_later_without_keeping_the_desk():
    svc, store, req, log, agent = await run_attempt(False)
    (row,) = log.closed_records
    assert row.disposition == Disposition.CALLBACK_NO_ANSWER and row.callback_of == "orig-1"
    assert store.rows[req.id] == {"status": "pending", "attempts": 1}
    assert ("DELETE", f"/channels/{agent}") in svc.ctx.ari.sent  # the focal point is free at once
    assert not svc.held
    (p,) = svc.queues.pendings()
    wait = (p.request.due_at - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert ROUTING.callback.retry_after - 5 < wait <= ROUTING.callback.retry_after
    assert svc.queues.head("4") is None  # not due: holds no place meanwhile


async def test_a_callback_is_recorded_when_its_branch_records(tmp_path):
    routing = dataclasses.replace(ROUTING, recording=rt.Recording(enabled=True))
    assert routing.records(routing.branch("4"))
    svc, store, req, log, agent = await run_attempt(True, home=tmp_path, routing=routing)
    (row,) = log.closed_records
    assert row.disposition == Disposition.CALLBACK_ANSWERED
    assert row.recording and (tmp_path / row.recording).is_file() and row.recording_s == pytest.approx(2.0, abs=0.1)
    assert [k for _, k, _ in row.events if k.startswith("recording")] == ["recording_started", "recording_stored"]


async def test_a_conversation_cut_by_a_shutdown_is_logged_and_not_called_again():
    svc, store, req, log, agent = await run_attempt(True, cut=True)
    (row,) = log.closed_records
    assert row.disposition == Disposition.CALLBACK_ANSWERED and row.talk_ended_at is not None
    assert store.rows[req.id] == {"status": "done", "attempts": 1}
    assert svc.queues.pendings() == [] and not svc.held
    assert ("DELETE", f"/channels/{agent}") in svc.ctx.ari.sent


async def test_the_last_attempt_gives_up():
    svc, store, req, log, agent = await run_attempt(False, attempts_before=ROUTING.callback.attempts - 1)
    assert store.rows[req.id] == {"status": "failed", "attempts": ROUTING.callback.attempts}
    assert svc.queues.pendings() == []


async def test_a_callback_row_is_written_with_its_link(engine):
    """The callback columns reach the database (migration 0012's CHECK and column)."""
    from ivr.records.calllog import CallLog, CallRecord

    logw = CallLog(engine)
    logw.start()
    now = dt.datetime.now(dt.timezone.utc)
    rec = CallRecord(id="cb1-1", caller="0912345678", hotline="1022", started_at=now, ended_at=now,
                     disposition=Disposition.CALLBACK_NO_ANSWER, callback_of="orig-1", answered_by="2001")
    logw.closed(rec)
    await logw.close()
    async with engine.connect() as conn:
        row = (await conn.execute(select(Call.__table__).where(Call.id == "cb1-1"))).one()
    assert row.disposition == "callback_no_answer" and row.callback_of == "orig-1"
