"""Issue 25: a desk phone that is gone or busy is not rung. Real Asterisk qualifying the SIPp desk
phones (OPTIONS), AMI presence, `tongdai status`."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from ivr.pbx import sipp
from ivr.testing import wait_until

from .conftest import phones, place, talking
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


async def test_a_phone_in_a_hotline_call_gets_no_second_invite(ivr):
    """Branch 4 with only 2401 registered: while it talks to the first caller, the second caller
    finds the branch busy (no call waiting on focal points) and 2401 sees one INVITE."""
    ctl = ivr.service.controller
    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 8000})}) as ph:
        await wait_until(lambda: ivr.service.presence.reachable("2401") is True, 10, "2401 registered")
        first = asyncio.create_task(place(ivr, "4", hold_ms=30000, wait_for_bye_ms=30000))
        await wait_until(lambda: talking(ctl), 20, "the first caller bridged with 2401")
        res, (call, events, legs) = await place(ivr, "4", hold_ms=30000, wait_for_bye_ms=30000)
        assert call.disposition == "busy" and call.answered_by is None
        assert {(leg.extension, leg.result) for leg in legs} == {
            ("2401", "busy"), ("2402", "unreachable"), ("2403", "unreachable")}
        _, (call1, _, _) = await first
        assert call1.disposition == "answered" and call1.answered_by == "2401"
        assert invites(ph["2401"]) == 1


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
