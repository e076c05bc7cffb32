"""Issue 25: a desk phone that is gone or busy is not rung. Real Asterisk qualifying the SIPp desk
phones (OPTIONS), AMI presence, `tongdai status`."""

from __future__ import annotations

import json
import time

import pytest

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
