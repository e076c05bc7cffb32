"""Issue 24: no call lost or unlogged across restarts of Asterisk or of the controller.

These tests kill Asterisk and the controller, so they run on an Asterisk of their own (own data
directory, own free ports), never on the session's: other tests and other developers' runs are
not disturbed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time

import pytest

from ivr.config import hours as cal
from ivr.config import routing as rt
from ivr.pbx import sounds as prompts
from ivr.records import db
from ivr.server import Service
from ivr.testing import wait_until

from .conftest import TEST_PROMPTS, Ivr, Records, pbx_settings, phones, place, routing_text_for_tests, start_pbx

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def lone(tmp_path_factory):
    """A private Asterisk with the test prompts, a migrated database and the test routing."""
    home = tmp_path_factory.mktemp("tongdai-no-call-lost")
    s = pbx_settings(home, sip=26160, ari=29188, ami=26138, rtp=(32000, 32999))
    routing = rt.loads(routing_text_for_tests())
    pbx = start_pbx(s, routing)
    layout = pbx.layout
    await asyncio.to_thread(prompts.build, layout.host(layout.ast("data/sounds/vi")), texts_path=TEST_PROMPTS)
    layout.chown()
    await asyncio.to_thread(db.upgrade, s)
    cal.write_override(s.hours_override_path, "open", None, dt.datetime.now(dt.timezone.utc))
    yield pbx
    layout.stop()


async def controller(pbx) -> Ivr:
    """The controller, in process, on the private Asterisk."""
    service = Service(pbx.settings, strict=True, routing=pbx.routing)
    await service.start()
    return Ivr(pbx, service, pbx.routing, Records(), {})


def restart_asterisk(pbx) -> float:
    """SIGKILL Asterisk (a crash), start it again; return when it was fully booted (time.monotonic())."""
    os.kill(pbx.layout.pid(), signal.SIGKILL)
    pbx.layout.stop()  # reaps it and clears the PID file
    pbx.layout.start()  # returns once `core waitfullybooted` has
    return time.monotonic()


async def test_a_call_two_seconds_after_asterisk_restarted_reaches_the_desk_phone(lone):
    ivr = await controller(lone)
    try:
        ari = ivr.service._ari
        booted = await asyncio.to_thread(restart_asterisk, lone)
        await wait_until(ari.connected.is_set, 20, "the controller to be ready again")
        assert ari.connected_at > ari.lost_at
        async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 1000})}):
            await wait_until(lambda: time.monotonic() >= booted + 2, 10, "two seconds after the boot")
            res, (row, events, legs) = await place(ivr, "4", hold_ms=20000, wait_for_bye_ms=20000)
        assert res.answered
        assert row.disposition == "answered" and row.answered_by == "2401", [e.kind for e in events]
    finally:
        await ivr.service.stop(5)
