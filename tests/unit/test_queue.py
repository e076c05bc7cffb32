"""Issue 25: the branch queue on the shipped fakes: FIFO, position announcements with hold music
in between, key 2, max_wait, the caller hanging up, expected wait from history, routing.yaml."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from ivr.call import queue
from ivr.call.errors import CallerHangup
from ivr.call.route import DialOutcome
from ivr.call.session import State
from ivr.config import routing as rt
from ivr.testing import FakeAri, make_call, wait_until
from tests.paths import REPO_ROOT

TEXT = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")
ROUTING = rt.loads(TEXT)


def branch(max_wait=60, announce_every=10):
    return dataclasses.replace(ROUTING.branch("4"), queue=rt.Queue(max_wait, announce_every, True))


def waiting_call(busy, cid="c1", queues=None):
    c = make_call(ROUTING, ari=FakeAri(), channel_id=cid, state=State.DIALING, busy=busy, reachable=lambda ext: True)
    if queues is not None:
        c.session.ctx.queues = queues
    return c


def moh(c, method="POST") -> int:
    return c.ari.sent.count((method, f"/channels/{c.session.id}/moh"))


async def test_the_head_waits_with_music_and_position_then_takes_a_freed_phone():
    free = {"now": False}
    c = waiting_call(lambda ext, s: not free["now"])
    task = asyncio.create_task(queue.wait(c.session, branch()))
    pb = await c.hear()
    assert pb.sounds == ["queue_wait", "queue_position", "number:1", "queue_keys"]
    assert c.session.state is State.QUEUE
    await wait_until(lambda: moh(c) == 1, 2, "hold music after the announcement")
    assert not task.done()
    free["now"] = True  # the desk hung up
    assert await asyncio.wait_for(task, 2) == "turn"
    assert moh(c, "DELETE") == 1  # the music stopped before the ringing
    assert c.events("queued")[0]["position"] == 1
    assert c.events("dequeued")[0]["why"] == "turn"
    assert c.session.ctx.queues.waiting("4") == 0


async def test_first_come_first_served_and_a_caller_hanging_up_leaves():
    """The second caller never takes a phone while the first waits; the first hangs up (abandoned
    in the queue), the second moves up to position 1 and takes the phone."""
    class Counting(queue.Queues):
        looks: dict[str, int] = {}

        def position(self, waiter):
            self.looks[waiter.session.id] = self.looks.get(waiter.session.id, 0) + 1
            return super().position(waiter)

    queues = Counting()
    first = waiting_call(None, "c1", queues)
    # the phone is free as far as the second caller is concerned: only the head may take it
    first.session.ctx.busy = lambda ext, s: s is first.session
    second = waiting_call(lambda ext, s: s is first.session, "c2", queues)
    t1 = asyncio.create_task(queue.wait(first.session, branch()))
    await first.hear()
    t2 = asyncio.create_task(queue.wait(second.session, branch()))
    pb = await second.hear()
    assert pb.sounds == ["queue_wait", "queue_position", "number:2", "queue_keys"]
    await wait_until(lambda: moh(second) == 1, 2, "the second caller's hold music")
    # the second caller has looked at its place several times (one look per poll) and stayed
    before = queues.looks["c2"]
    await wait_until(lambda: queues.looks["c2"] >= before + 3, 3, "the second caller to poll three times")
    assert not t2.done() and queues.position(queues.lines["4"][1]) == 2
    first.hangup()
    with pytest.raises(CallerHangup):
        await asyncio.wait_for(t1, 2)
    assert first.events("dequeued")[0]["why"] == "hangup"
    assert await asyncio.wait_for(t2, 2) == "turn"
    assert queues.waiting("4") == 0


async def test_key_2_leaves_for_the_complaint():
    c = waiting_call(lambda ext, s: True)
    task = asyncio.create_task(queue.wait(c.session, branch()))
    await c.hear()
    c.dtmf("2")
    assert await asyncio.wait_for(task, 2) == "complaint"
    assert c.session.ctx.queues.waiting("4") == 0


async def test_max_wait_gives_up_and_positions_are_repeated():
    c = waiting_call(lambda ext, s: True)
    task = asyncio.create_task(queue.wait(c.session, branch(max_wait=1)))
    await c.hear()
    assert await asyncio.wait_for(task, 3) == "timeout"
    assert c.events("dequeued")[0]["why"] == "timeout" and c.events("dequeued")[0]["waited_s"] >= 1


def test_expected_wait_once_there_is_history():
    qs = queue.Queues()
    assert qs.expected_wait("4", 2) is None
    for waited, position in ((60.0, 1), (200.0, 2), (100.0, 1)):
        w = qs.join("4", object())  # type: ignore[arg-type]
        w.joined -= waited
        w.position_at_join = position
        qs.leave(w, served=True)
    assert qs.expected_wait("4", 2) == pytest.approx(2 * 360 / 4)
    assert queue.announcement(2, 180.0, first=False) == [
        "queue_position", "number:2", "queue_expected", "number:3", "queue_minutes", "queue_keys"]


def test_requeue_only_when_every_busy_phone_was_known_busy():
    assert DialOutcome(False, results={"a": "busy", "b": "unreachable"}, skipped={"a", "b"}).all_busy_unrung
    assert not DialOutcome(False, results={"a": "busy"}).all_busy_unrung  # refused with 486


def test_routing_queue_defaults_overrides_and_errors():
    assert ROUTING.branch("1").queue == rt.Queue(300, 30, True)
    text = TEXT.replace("  max_wait: 300", "  max_wait: 120", 1)
    text = text.replace("    no_answer: complaint\n", "    no_answer: complaint\n    queue: {announce_every: 20, callback: false}\n", 1)
    r = rt.loads(text)
    overridden = [b for b in r.branches if b.queue.announce_every == 20]
    assert len(overridden) == 1 and overridden[0].queue == rt.Queue(120, 20, False)
    assert all(b.queue == rt.Queue(120, 30, True) for b in r.branches if b not in overridden)
    bad = TEXT.replace("  announce_every: 30", "  announce_every: 5", 1).replace("  callback: true", "  callback: maybe", 1)
    with pytest.raises(rt.RoutingError) as e:
        rt.loads(bad.replace("    no_answer: complaint\n", "    no_answer: complaint\n    queue: {max_wait: -1, wait: 3}\n", 1))
    msgs = [str(p) for p in e.value.errors]
    assert any("queue.announce_every" in m and "out of range" in m for m in msgs), msgs
    assert any("queue.callback" in m for m in msgs), msgs
    assert any(".queue.max_wait" in m for m in msgs) and any("unknown key 'wait'" in m for m in msgs), msgs
