"""Issue 25, callback that keeps the place: real Asterisk, SIPp desk phone and callers, and a SIPp
'telco' on the outbound trunk (TONGDAI_TRUNK_OUT). A caller waiting in branch 4's queue presses
1, confirms and hangs up; when the desk phone frees, it rings first (the whisper), then the telco
gets the INVITE for the caller's number; the call log holds the callback row. A controller
restart with the request pending still calls back exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json

import pytest
from sqlalchemy import select

from ivr.dialplan import render as rd
from ivr.models import Call, CallbackRequest
from ivr.pbx import sipp
from ivr.records.calllog import load_call
from ivr.server import Service
from ivr.testing import wait_until

from .conftest import new_caller, phones, place, wait_row
from .test_busy_phones import bridged, in_state, invites
from .test_live import tongdai

pytestmark = pytest.mark.e2e


def render(ivr, settings) -> None:
    """Asterisk's pjsip.conf for ``settings`` (with or without the outbound trunk), reloaded."""
    layout = ivr.pbx.layout
    rd.write(rd.render(ivr.pbx.routing, settings, ivr.pbx.secrets, layout), layout.etc)
    layout.chown()
    ivr.pbx.rx("module reload res_pjsip.so")


async def swap(ivr, settings, grace: float = 5) -> None:
    """Stop the running controller; start one on ``settings`` as ``ivr.service``."""
    await ivr.service.calllog.flush()
    await ivr.service.stop(grace)
    service = Service(settings, strict=True, routing=ivr.routing)
    await service.start()
    ivr.service = service


@contextlib.asynccontextmanager
async def trunk(ivr):
    """A telco on the outbound trunk, Asterisk's trunk-out endpoint and a controller that knows it."""
    peer = ivr.pbx.peer()
    async with sipp.Telco(local_port=peer["local_port"], media_port=peer["media_port"],
                          control_port=peer["control_port"], hangup_after_ms=3000) as telco:
        s = dataclasses.replace(ivr.settings, trunk_out=("127.0.0.1", telco.local_port))
        render(ivr, s)
        await wait_until(lambda: "trunk-out" in ivr.pbx.rx("pjsip show endpoint trunk-out"), 10,
                         "the trunk-out endpoint loaded")
        await swap(ivr, s)
        try:
            yield telco, s
        finally:
            render(ivr, ivr.settings)
            await swap(ivr, ivr.settings)


async def request_callback(ivr, caller: str):
    """``caller`` calls branch 4, waits in the queue, presses 1 and confirms with 1; the call
    ends with the thanks. Its finished row."""
    # 4 at once (barge-in on the greeting), 1 once queued, 1 again during the read-back.
    await place(ivr, "411", caller=caller, digits_at_ms=500, dtmf_gap_ms=[5000, 2500, 240],
                hold_ms=20000, wait_for_bye_ms=20000, timeout=40)
    return await wait_row(ivr, caller)


async def callback_rows(ivr, call_id: str):
    await ivr.service.calllog.flush()
    async with ivr.service.engine.connect() as conn:
        ids = (await conn.execute(select(Call.id).where(Call.callback_of == call_id))).scalars().all()
    return [await load_call(ivr.service.engine, cid) for cid in ids]


async def request_rows(ivr, call_id: str) -> list:
    """The callback requests of the call ``call_id`` (other tests' stay in the database)."""
    async with ivr.service.engine.connect() as conn:
        return list((await conn.execute(select(CallbackRequest.__table__)
                                        .where(CallbackRequest.call_id == call_id))).all())


async def finished_callback(ivr, call_id: str):
    async def done():
        rows = await callback_rows(ivr, call_id)
        return rows if rows and all(c.disposition != "in_progress" for c, _, _ in rows) else None
    return await wait_until(done, 60, "the callback's call row", interval=0.5)


def check_callback(rows, b: str, b_id: str, telco, s) -> None:
    (call, events, legs), = rows
    assert call.disposition == "callback_answered", call.disposition
    assert call.caller == b and call.answered_by == "2401" and call.callback_of == b_id
    kinds = [e.kind for e in events]
    # agent first: the desk phone rang and answered before the citizen was called
    assert kinds.index("dial") < kinds.index("callback_dial") < kinds.index("bridged"), kinds
    assert [leg.extension for leg in legs] == ["2401"] and legs[0].result == "answered"
    assert legs[0].answered_at <= call.started_at  # the row's call (to the citizen) began after the answer
    assert telco.invites() == [f"sip:{b}@127.0.0.1:{s.trunk_out[1]}"]
    assert telco.answered() == 1


async def test_a_waiting_caller_presses_1_and_is_called_back_when_the_phone_frees(ivr):
    async with trunk(ivr) as (telco, s), phones(ivr, {"2401": ("answer", {"hangup_after_ms": 15000})}) as ph:
        ctl = ivr.service.controller
        await wait_until(lambda: ivr.service.presence.reachable("2401") is True, 10, "2401 registered")
        first = asyncio.create_task(place(ivr, "4", hold_ms=40000, wait_for_bye_ms=40000, timeout=60))
        await wait_until(lambda: bridged(ctl) == 1, 20, "the first caller bridged with 2401")
        b = new_caller()
        bcall, bevents, _ = await request_callback(ivr, b)
        assert bcall.disposition == "busy" and bcall.ended_in == "queue" and bcall.hangup_by == "system"
        assert [e.detail["number"] for e in bevents if e.kind == "callback_requested"] == [b]
        assert [e.detail["why"] for e in bevents if e.kind == "dequeued"] == ["callback"]
        assert any(e.kind == "playback" and "queue_keys_callback" in e.detail["sounds"] for e in bevents)
        assert telco.invites() == []  # the phone is still busy: nothing yet
        code, out, err = await tongdai(ivr, "status", "--json")
        assert code == 0 and json.loads(out)["callbacks"] == {"4": 1}, out + err
        code, out, err = await tongdai(ivr, "status")
        assert "Chờ gọi lại (giữ chỗ trong hàng đợi): nhánh 4: 1" in out, out
        assert [r.status for r in await request_rows(ivr, bcall.id)] == ["pending"]
        await first
        rows = await finished_callback(ivr, bcall.id)
        check_callback(rows, b, bcall.id, telco, s)
        assert invites(ph["2401"]) == 2  # the first caller, then the callback
        (req,) = await request_rows(ivr, bcall.id)
        assert req.status == "done" and req.attempts == 1 and req.number == b
        assert not in_state(ctl, "queue")


async def test_a_pending_callback_survives_a_controller_restart_and_is_made_once(ivr):
    async with trunk(ivr) as (telco, s), phones(ivr, {"2401": ("answer", {"hangup_after_ms": 15000})}) as ph:
        ctl = ivr.service.controller
        await wait_until(lambda: ivr.service.presence.reachable("2401") is True, 10, "2401 registered")
        first = asyncio.create_task(place(ivr, "4", hold_ms=40000, wait_for_bye_ms=40000, timeout=60))
        await wait_until(lambda: bridged(ctl) == 1, 20, "the first caller bridged with 2401")
        b = new_caller()
        bcall, _, _ = await request_callback(ivr, b)
        assert [r.status for r in await request_rows(ivr, bcall.id)] == ["pending"]
        # The controller restarts while the phone is still busy (the first call is cut by the
        # stop's grace): the new one reloads the request and serves it once the phone is free.
        await swap(ivr, s, grace=1)
        await first
        rows = await finished_callback(ivr, bcall.id)
        check_callback(rows, b, bcall.id, telco, s)
        # exactly once: one INVITE to the telco, the request done
        (req,) = await request_rows(ivr, bcall.id)
        assert req.status == "done" and req.attempts == 1
        assert len([u for u in telco.invites() if b in u]) == 1
        assert invites(ph["2401"]) == 2
