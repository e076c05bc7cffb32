"""Issue 25: a desk phone that is gone or busy is not rung. Real Asterisk qualifying the SIPp desk
phones (OPTIONS), AMI presence, `tongdai status`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest

from ivr.config import routing as rt
from ivr.pbx import sipp
from ivr.testing import wait_until

from .conftest import phones, place
from .test_live import tongdai

pytestmark = pytest.mark.e2e


def invites(phone: sipp.DeskPhone) -> int:
    return sum(1 for m in sipp.parse_message_trace(phone.trace_path)
               if m.direction == "received" and m.first_line.startswith("INVITE "))


async def test_an_unplugged_phone_is_unreachable_within_90_s_and_not_rung(ivr):
    """2402 dies without unregistering (SIGKILL: nothing sent). Qualify marks it unreachable,
    `tongdai status` says so, and a call to branch 4 (ringall) rings only 2401 and 2403."""
    presence = ivr.service.presence
    modes = {"2401": ("answer", {"answer_delay_ms": 300, "hangup_after_ms": 1000}),
             "2402": "answer", "2403": ("answer", {"answer_delay_ms": 4000})}
    async with phones(ivr, modes) as ph:
        for ext in modes:
            await wait_until(lambda ext=ext: presence.reachable(ext) is True, 10, f"{ext} registered over AMI")
        # Asterisk qualifies the phones; the test phones answer 200 and count no call.
        await wait_until(lambda: ph["2402"].stats().qualified >= 1, 40, "a qualify OPTIONS answered by 2402")
        assert ph["2402"].stats().invites_received == 0 and ph["2402"].stats().answered == 0

        killed = time.monotonic()
        await ph["2402"].kill()
        await wait_until(lambda: presence.reachable("2402") is False, 90, "2402 unreachable over AMI", interval=0.5)
        code, out, err = await tongdai(ivr, "status", "--json")
        assert code == 0, err
        st = json.loads(out)
        assert st["phones"]["2402"]["status"] == "unreachable", st["phones"]["2402"]
        assert st["phones"]["2401"]["status"] == "registered"
        code, out, err = await tongdai(ivr, "status")
        assert "2402 ✗ không phản hồi" in out, out
        assert time.monotonic() - killed < 90

        res, (call, events, legs) = await place(ivr, "4", hold_ms=30000, wait_for_bye_ms=30000)
        assert call.disposition == "answered" and call.answered_by == "2401"
        results = {leg.extension: leg for leg in legs}
        assert results["2402"].result == "unreachable"
        # skipped, not rung into nothing for the ring timeout
        assert (results["2402"].ended_at - results["2402"].started_at).total_seconds() < 1
        assert results["2403"].result == "cancelled"
        assert invites(ph["2401"]) == 1 and invites(ph["2403"]) == 1
    # stop() removed the dead phone's binding: the next tests find it unregistered
    await wait_until(lambda: presence.reachable("2402") is False and presence.phones["2402"].status == "unregistered",
                     10, "2402 unregistered")


def in_state(ctl, state: str) -> list:
    return [s for s in ctl.sessions.values() if s.state.value == state]


def bridged(ctl) -> int:
    return sum(1 for s in ctl.sessions.values() if s.state.value == "bridged" and s.rec.answered_by)


def never_two_calls(legs_by_call) -> None:
    """No desk phone was rung while it was in a call: no leg that rang it (skipped ones did not)
    starts inside one of its answered legs (rung .. hung up)."""
    rung = [leg for legs in legs_by_call for leg in legs if "-skip" not in leg.channel_id]
    for talk in (leg for leg in rung if leg.result == "answered"):
        for other in rung:
            if other is not talk and other.extension == talk.extension:
                assert not talk.started_at <= other.started_at < talk.ended_at, (talk.extension, talk, other)


async def test_busy_phones_queue_two_callers_answered_in_arrival_order(ivr):
    """Branch 4's three desk phones are in calls; two more callers wait in the queue, hear their
    positions, and are answered in arrival order as phones free up. No phone gets an INVITE while
    it is in a call."""
    ctl = ivr.service.controller
    # the phones free up in this order, long enough after the second caller queues for `tongdai status`
    modes = {"2401": ("answer", {"hangup_after_ms": 16000}), "2402": ("answer", {"hangup_after_ms": 21000}),
             "2403": ("answer", {"hangup_after_ms": 40000})}
    async with phones(ivr, modes) as ph:
        for ext in modes:
            await wait_until(lambda ext=ext: ivr.service.presence.reachable(ext) is True, 10, f"{ext} registered")
        busy = []
        for n in range(3):
            busy.append(asyncio.create_task(place(ivr, "4", hold_ms=60000, wait_for_bye_ms=60000, timeout=90)))
            await wait_until(lambda n=n: bridged(ctl) == n + 1, 20, f"{n + 1} callers bridged")
        fourth = asyncio.create_task(place(ivr, "4", hold_ms=60000, wait_for_bye_ms=60000, timeout=90))
        await wait_until(lambda: len(in_state(ctl, "queue")) == 1, 20, "the fourth caller queued")
        fifth = asyncio.create_task(place(ivr, "4", hold_ms=60000, wait_for_bye_ms=60000, timeout=90))
        await wait_until(lambda: len(in_state(ctl, "queue")) == 2, 20, "the fifth caller queued")
        code, out, err = await tongdai(ivr, "status", "--json")
        assert code == 0 and json.loads(out)["queues"] == {"4": 2}, out + err
        code, out, err = await tongdai(ivr, "status")
        assert "Đang chờ trong hàng đợi: nhánh 4: 2" in out and "đang chờ trong hàng đợi" in out, out
        (_, (c4, ev4, legs4)), (_, (c5, ev5, legs5)) = await asyncio.gather(fourth, fifth)
        first3 = await asyncio.gather(*busy)
        stats = {ext: p.stats() for ext, p in ph.items()}
    assert all(c.disposition == "answered" for _, (c, _, _) in first3)
    assert c4.disposition == "answered" and c5.disposition == "answered"
    assert c4.answered_at < c5.answered_at  # first come, first served
    assert [e.detail["position"] for e in ev4 if e.kind == "queued"] == [1]
    assert [e.detail["position"] for e in ev5 if e.kind == "queued"] == [2]
    # the position prompts, as the call events say: the fifth moved up when the fourth left
    assert 1 in [e.detail["position"] for e in ev4 if e.kind == "queue_position"]
    pos5 = [e.detail["position"] for e in ev5 if e.kind == "queue_position"]
    assert pos5[0] == 2 and pos5 == sorted(pos5, reverse=True), pos5
    assert any(e.kind == "playback" and "queue_position" in e.detail["sounds"] for e in ev5)
    for ev in (ev4, ev5):
        done = [e.detail for e in ev if e.kind == "dequeued"]
        assert len(done) == 1 and done[0]["why"] == "turn" and done[0]["waited_s"] > 0
    # the fourth took the first phone to free up (2401), the fifth the next (2402)
    assert (c4.answered_by, c5.answered_by) == ("2401", "2402")
    never_two_calls([legs for _, (_, _, legs) in first3] + [legs4, legs5])
    # every INVITE a phone got was answered or cancelled (ringall: the first answer wins)
    assert all(st.invites_received == st.answered + st.cancelled for st in stats.values()), stats


async def test_a_caller_hanging_up_in_the_queue_is_abandoned_in_step_queue(ivr):
    ctl = ivr.service.controller
    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 20000})}) as ph:
        await wait_until(lambda: ivr.service.presence.reachable("2401") is True, 10, "2401 registered")
        first = asyncio.create_task(place(ivr, "4", hold_ms=40000, wait_for_bye_ms=40000))
        await wait_until(lambda: bridged(ctl) == 1, 20, "the first caller bridged with 2401")
        res, (call, events, legs) = await place(ivr, "4", hold_ms=12000)
        assert call.disposition == "abandoned" and call.ended_in == "queue" and call.hangup_by == "caller"
        done = [e.detail for e in events if e.kind == "dequeued"]
        assert len(done) == 1 and done[0]["why"] == "hangup" and done[0]["waited_s"] > 2
        assert invites(ph["2401"]) == 1  # never rung for the second caller
        await first


async def test_max_wait_sends_the_caller_to_the_complaint_path(ivr):
    """Branch 2 (no_answer: complaint) with a queue of 8 s: 2201 is in a call, the next caller
    waits 8 s and then records a complaint."""
    ctl = ivr.service.controller
    short = dataclasses.replace(ivr.routing.branch("2"), queue=rt.Queue(8, 10, True))
    routing = dataclasses.replace(ivr.routing, branches=tuple(short if b.digit == "2" else b for b in ivr.routing.branches))
    ctl.swap_routing(routing)
    try:
        async with phones(ivr, {"2201": ("answer", {"hangup_after_ms": 30000})}):
            await wait_until(lambda: ivr.service.presence.reachable("2201") is True, 10, "2201 registered")
            first = asyncio.create_task(place(ivr, "2", hold_ms=40000, wait_for_bye_ms=40000, timeout=60))
            await wait_until(lambda: bridged(ctl) == 1, 20, "the first caller bridged with 2201")
            res, (call, events, legs) = await place(ivr, "2", hold_ms=40000, wait_for_bye_ms=40000, timeout=60)
            await first
    finally:
        ctl.swap_routing(ivr.routing)
    kinds_ = [e.kind for e in events]
    assert "queue_timeout" in kinds_ and kinds_.index("queue_timeout") < kinds_.index("dequeued") + 2
    done = [e.detail for e in events if e.kind == "dequeued"]
    assert done[0]["why"] == "timeout" and 7.5 <= done[0]["waited_s"] <= 12
    states = [e.detail["to"] for e in events if e.kind == "state"]
    assert states[-2:] == ["complaint", "ended"], states
    assert call.disposition == "busy"


async def test_a_phone_on_a_private_call_is_busy_from_ami_device_state(ivr):
    """2401 calls 2402 (an internal call the controller knows nothing of); a hotline call to
    branch 4 rings only 2403."""
    presence = ivr.service.presence
    ari = ivr.service._ari
    modes = {"2401": ("answer", {"hangup_after_ms": 20000}), "2402": ("answer", {"hangup_after_ms": 20000}),
             "2403": ("answer", {"hangup_after_ms": 1000})}
    async with phones(ivr, modes) as ph:
        for ext in modes:
            await wait_until(lambda ext=ext: presence.reachable(ext) is True, 10, f"{ext} registered")
        # 2401 is rung, answers, and the stations dialplan dials 2402 for it.
        private = await ari.request("POST", "/channels", params={
            "endpoint": "PJSIP/2401", "context": "dial-station", "extension": "s", "priority": 1},
            body={"variables": {"ARG1": "2402"}})
        try:
            await wait_until(lambda: presence.in_use("2401") and presence.in_use("2402"), 15,
                             "AMI to show 2401 and 2402 in use")
            assert not any(s.holds("2401") or s.holds("2402") for s in ivr.service.controller.sessions.values())
            res, (call, events, legs) = await place(ivr, "4", hold_ms=30000, wait_for_bye_ms=30000)
        finally:
            await ari.request("DELETE", f"/channels/{private['id']}", ok_missing=True)
        assert call.disposition == "answered" and call.answered_by == "2403"
        assert {(leg.extension, leg.result) for leg in legs} == {
            ("2401", "busy"), ("2402", "busy"), ("2403", "answered")}
        assert invites(ph["2401"]) == 1 and invites(ph["2402"]) == 1  # the private call's only
