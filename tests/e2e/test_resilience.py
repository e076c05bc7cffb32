"""Faults: Asterisk killed mid-call and started again; the controller reconnects by itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal

import pytest

from ivr.testing import wait_until

from .conftest import kinds, phones, place, talking

pytestmark = pytest.mark.e2e


async def test_asterisk_killed_during_a_bridged_call(ivr):
    ari = ivr.service._ari
    ctl = ivr.service.controller
    async with phones(ivr, {"2401": "answer"}):
        call = asyncio.create_task(place(ivr, "4", hold_ms=12000, timeout=40))
        await wait_until(lambda: talking(ctl), 20, "a bridged call")
        pid = ivr.pbx.layout.pid()
        killed_at = dt.datetime.now(dt.timezone.utc)
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: not ari.connected.is_set(), 10, "the websocket to drop")
        await asyncio.to_thread(ivr.pbx.layout.stop)  # reap; the PID file is cleared
        await asyncio.to_thread(ivr.pbx.layout.start)
        await wait_until(ari.connected.is_set, 20, "the controller to reconnect by itself")
        res, (row, events, legs) = await call
    assert row.disposition == "interrupted", kinds(events)
    assert row.ended_in == "bridged" and row.answered_by == "2401"
    assert abs((row.ended_at - killed_at).total_seconds()) < 3
    assert "interrupted" in kinds(events)
    assert ctl.sessions == {}
    # AMI reconnects by itself too, and presence is read again from scratch
    presence = ivr.service.presence
    await wait_until(lambda: presence.connected, 20, "AMI to reconnect")
    # The phone unregistered when its block ended (200 OK from the restarted Asterisk). Asterisk
    # keeps contacts in astdb across the kill, and once in 20 runs its ContactStatus Removed came
    # seconds after the snapshot that still listed the contact: wait for presence to follow.
    await wait_until(lambda: presence.reachable("2401") is False, 10, "presence to see 2401 unregistered")
    # the next call is routed normally
    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 1000})}):
        await wait_until(lambda: presence.reachable("2401"), 5, "2401 registered again")
        res, (row, events, legs) = await place(ivr, "4", hold_ms=30000, wait_for_bye_ms=30000)
    assert row.disposition == "answered" and row.answered_by == "2401"
