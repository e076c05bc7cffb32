"""Issue: the hotline answers. Real Asterisk, the real controller (in strict mode: an illegal
event fails the call loudly), SIPp callers with RFC 2833 DTMF and SIPp desk phones."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from ivr.pbx import sipp
from ivr.records.calllog import load_call
from ivr.testing import wait_until
from tests.paths import REPO_ROOT

from .conftest import kinds, phones, place, rtp_both_ways

pytestmark = pytest.mark.e2e


# ------------------------------------------------------------------------------------ tests


async def test_each_branch_reaches_its_desk_phone(ivr):
    """Digits 1-8, all at once: each reaches a phone of its branch and is logged right."""
    first = {b.digit: b.targets[0] for b in ivr.routing.branches}
    async with phones(ivr, {ext: ("answer", {"hangup_after_ms": 2500}) for ext in first.values()}) as ph:
        calls = asyncio.ensure_future(asyncio.gather(*(
            place(ivr, d, hold_ms=30000, wait_for_bye_ms=30000) for d in first)))
        # RTP both ways on every desk phone's leg: it sent (RX) and heard the caller (TX)
        await rtp_both_ways(ivr.pbx, set(first.values()), 40)
        results = await calls
        stats = {ext: p.stats() for ext, p in ph.items()}
        invites = {ext: [m for m in sipp.parse_message_trace(p.trace_path)
                         if m.direction == "received" and m.first_line.startswith("INVITE ")]
                   for ext, p in ph.items()}
    for digit, (res, (call, events, legs)) in zip(first, results):
        b = ivr.routing.branch(digit)
        assert res.answered, res
        assert call.disposition == "answered", (digit, [(e.kind, e.detail) for e in events if e.kind.startswith("dial")], [(l.extension, l.result) for l in legs])
        assert call.branch_digit == digit and call.branch_name == b.name
        assert call.agency_code == b.agency and call.agency_name == ivr.routing.agencies[b.agency].name
        assert call.answered_by == first[digit]
        assert call.talk_s and call.talk_s > 1.5
        assert call.hangup_by == "agent"
        assert any(l.extension == first[digit] and l.result == "answered" for l in legs)
        assert "bridged" in kinds(events) and "menu_choice" in kinds(events)
        # staff see who is calling: the caller's number is in the desk phone's INVITE
        assert [m.headers["from"] for m in invites[first[digit]] if f"sip:{call.caller}@" in m.headers["from"]], \
            (call.caller, [m.headers["from"] for m in invites[first[digit]]])
    # two phones share SNV's branch agency but not extensions: every phone got exactly its call
    for ext, st in stats.items():
        assert st.answered == 1, (ext, st)


async def test_audio_flows_both_ways_when_bridged(ivr):
    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 5000})}):
        call = asyncio.create_task(place(ivr, "4", hold_ms=30000, wait_for_bye_ms=30000))
        await rtp_both_ways(ivr.pbx, {"trunk", "2401"}, 10)
        res, (row, events, legs) = await call
    assert row.disposition == "answered" and row.answered_by == "2401"


async def test_wrong_digit_then_right_digit_is_routed(ivr):
    async with phones(ivr, {"2301": ("answer", {"hangup_after_ms": 1000})}):
        # A: a key no branch has (0 is the look-up of a case).
        res, (call, events, legs) = await place(ivr, "A3", hold_ms=30000, wait_for_bye_ms=30000, dtmf_gap_ms=1500)
    assert call.disposition == "answered" and call.branch_digit == "3", kinds(events)
    ks = kinds(events)
    assert ks.index("menu_invalid") < ks.index("menu_choice")
    assert [e.detail for e in events if e.kind == "menu_invalid"] == [{"digit": "A", "count": 1}]


async def test_no_input_for_all_tries_goes_to_fallback(ivr):
    res, (call, events, legs) = await place(ivr, None, hold_ms=40000, wait_for_bye_ms=40000)
    assert res.hung_up_by == "callee"
    assert call.disposition == "invalid_input"
    assert kinds(events).count("menu_no_input") == ivr.routing.menu.max_tries
    assert any(e.kind == "menu_fallback" and e.detail["reason"] == "no_input" for e in events)
    assert call.branch_digit is None and legs == []


async def test_star_repeats_the_menu(ivr):
    async with phones(ivr, {"2801": ("answer", {"hangup_after_ms": 1000})}):
        res, (call, events, legs) = await place(ivr, "*8", hold_ms=30000, wait_for_bye_ms=30000, dtmf_gap_ms=1500)
    ks = kinds(events)
    assert "menu_repeat" in ks and ks.index("menu_repeat") < ks.index("menu_choice")
    assert call.branch_digit == "8" and call.disposition == "answered"
    # the menu was played again after the star
    plays = [e.detail["sounds"] for e in events if e.kind == "playback"]
    assert sum(1 for p in plays if "menu" in p) >= 1


async def test_caller_hangs_up_during_greeting(ivr):
    hold = int(ivr.durations["greeting"] * 1000 / 2)
    res, (call, events, legs) = await place(ivr, None, hold_ms=hold)
    assert call.disposition == "abandoned" and call.ended_in == "greeting" and call.hangup_by == "caller"


async def test_caller_hangs_up_during_menu(ivr):
    hold = int((ivr.durations["greeting"] + ivr.durations["menu"] / 2) * 1000) + 300
    res, (call, events, legs) = await place(ivr, None, hold_ms=hold)
    assert call.disposition == "abandoned" and call.ended_in == "menu"


async def test_caller_hangs_up_while_ringing(ivr):
    d = ivr.durations
    async with phones(ivr, {"2601": "noanswer", "2602": "noanswer"}) as ph:
        hold = int((0.5 + d["branch_6"] + d["connecting"] + 2.0) * 1000)
        res, (call, events, legs) = await place(ivr, "6", hold_ms=hold)
        await wait_until(lambda: all(p.stats().cancelled for p in ph.values()), 5, "both phones to get CANCEL")
        stats = {e: p.stats() for e, p in ph.items()}
    assert call.disposition == "abandoned" and call.ended_in == "dialing", kinds(events)
    assert {l.extension for l in legs} == {"2601", "2602"}
    assert all(st.cancelled == 1 for st in stats.values()), stats


async def test_ringall_first_answer_wins_others_cancelled(ivr):
    modes = {
        "2401": ("answer", {"answer_delay_ms": 300, "hangup_after_ms": 1000}),
        "2402": ("answer", {"answer_delay_ms": 4000}),
        "2403": ("answer", {"answer_delay_ms": 4000}),
    }
    async with phones(ivr, modes) as ph:
        res, (call, events, legs) = await place(ivr, "4", hold_ms=30000, wait_for_bye_ms=30000)
        await wait_until(lambda: ph["2402"].stats().cancelled and ph["2403"].stats().cancelled, 5,
                         "the other phones to get CANCEL")
        stats = {e: p.stats() for e, p in ph.items()}
    assert call.answered_by == "2401" and call.disposition == "answered"
    assert stats["2401"].answered == 1
    assert stats["2402"].answered == 0 and stats["2402"].cancelled == 1
    assert stats["2403"].answered == 0 and stats["2403"].cancelled == 1
    assert sorted((l.extension, l.result) for l in legs) == [("2401", "answered"), ("2402", "cancelled"), ("2403", "cancelled")]


async def test_hunt_moves_on_at_once_after_busy(ivr):
    async with phones(ivr, {"2201": "busy", "2202": ("answer", {"hangup_after_ms": 1000})}) as ph:
        res, (call, events, legs) = await place(ivr, "2", hold_ms=30000, wait_for_bye_ms=30000)
        stats = {e: p.stats() for e, p in ph.items()}
    assert call.answered_by == "2202" and call.disposition == "answered"
    assert stats["2201"].busy == 1 and stats["2202"].answered == 1
    assert [(l.extension, l.result) for l in legs] == [("2201", "busy"), ("2202", "answered")]
    busy_leg = legs[0]
    assert (busy_leg.ended_at - busy_leg.started_at).total_seconds() < 2  # not the 6 s ring timeout


async def test_nobody_answers_gives_no_answer_after_ring_timeout(ivr):
    async with phones(ivr, {"2601": "noanswer", "2602": "noanswer"}) as ph:
        res, (call, events, legs) = await place(ivr, "6", hold_ms=40000, wait_for_bye_ms=40000)
        stats = {e: p.stats() for e, p in ph.items()}
    assert call.disposition == "no_answer" and call.answered_by is None
    assert res.hung_up_by == "callee"
    assert {(l.extension, l.result) for l in legs} == {("2601", "no_answer"), ("2602", "no_answer")}
    ring = max((l.ended_at - l.started_at).total_seconds() for l in legs)
    assert 5.5 <= ring <= 9, ring
    assert all(st.invites_received == 1 and st.answered == 0 for st in stats.values())


async def test_unregistered_phones_fail_fast(ivr):
    # Nobody registered for branch 7: both legs fail at once, not after the ring timeout.
    res, (call, events, legs) = await place(ivr, "7", hold_ms=30000, wait_for_bye_ms=30000)
    assert call.disposition == "no_answer"
    assert {l.result for l in legs} == {"unreachable"}
    assert all((l.ended_at - l.started_at).total_seconds() < 2 for l in legs)


async def test_twenty_simultaneous_callers(ivr):
    """Twenty callers at once over eight branches with one desk phone each: every phone takes
    one caller at a time (no call waiting on focal points, issue 25); the others wait in the
    branch's queue and are answered in turn. Every call is logged right and no phone is ever in
    two calls."""
    first = {b.digit: b.targets[0] for b in ivr.routing.branches}
    digits = [str(1 + i % 8) for i in range(20)]
    async with phones(ivr, {ext: ("answer", {"hangup_after_ms": 2000}) for ext in first.values()}) as ph:
        results = await asyncio.gather(*(place(ivr, d, hold_ms=40000, wait_for_bye_ms=40000, timeout=80) for d in digits))
        stats = {ext: p.stats() for ext, p in ph.items()}
    talks: dict[str, list] = {}
    for d, (_res, (call, events, legs)) in zip(digits, results):
        assert call.branch_digit == d
        assert call.disposition == "answered", (d, kinds(events))
        assert call.answered_by == first[d]
        leg = next(l for l in legs if l.result == "answered")
        talks.setdefault(call.answered_by, []).append((leg.started_at, leg.ended_at))  # rung .. hung up
    assert set(talks) == set(first.values())  # every branch answered someone
    for ext, spans in talks.items():
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), (ext, spans)
    assert sum(st.answered for st in stats.values()) == sum(len(s) for s in talks.values())
    assert all(st.invites_received == st.answered for st in stats.values())  # no INVITE while busy


async def test_tongdai_call_command(ivr, tmp_path):
    """The operator's check after `make run`: a real call, a simulated desk phone, a verdict."""
    s = ivr.settings
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**s.env, "TONGDAI_ROUTING": str(REPO_ROOT / "routing.yaml"), "TMPDIR": str(tmp)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", "call", "--digits", "4", "--talk", "2",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "Nhánh 4" in text and "answered" in text and "2401" in text
    assert list(tmp.iterdir()) == []  # SIPp's traces of a good call are not left behind


async def test_caller_leaving_during_the_announcement_rings_nobody(ivr):
    """The first phone's channel is created while the branch announcement plays (route.prepare);
    a caller who hangs up then leaves no channel behind in Asterisk, and no phone rings."""
    async def leg_created() -> list[str]:  # the desk phone's channel, as Asterisk lists it
        return [c["id"] for c in await ivr.service._ari.request("GET", "/channels") if "-leg" in c["id"]]

    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 2000})}) as ph:
        # digit 4 at 0.5 s, hang up at 0.9 s: "Nhánh bốn. Xin chờ." lasts over a second
        placed = asyncio.create_task(place(ivr, "4", hold_ms=900))
        seen = await wait_until(leg_created, 10, "the first phone's channel to be created", interval=0.05)
        res, (call, events, legs) = await placed
        # Not synchronisation: the subject is that nothing arrives; this is the time a wrong
        # INVITE would take to reach the phone.
        await asyncio.sleep(1.5)
        stats = ph["2401"].stats()
    assert any(leg.startswith(call.id) for leg in seen), seen  # it was created, then hung up
    assert res.answered and res.hung_up_by == "caller", res
    assert call.disposition == "abandoned" and call.ended_in == "dialing", (call.disposition, call.ended_in)
    assert stats.invites_received == 0, stats
    assert legs == [] and "dial" not in kinds(events)
    left = [c["id"] for c in await ivr.service._ari.request("GET", "/channels") if c["id"].startswith(call.id)]
    assert left == []


async def test_unhandled_error_gets_apology_and_clean_hangup(ivr, monkeypatch):
    from ivr.call import route

    async def broken_dial(session, branch, plan=None):
        raise RuntimeError("simulated bug in routing")

    monkeypatch.setattr(route, "dial", broken_dial)
    res, (call, events, legs) = await place(ivr, "1", hold_ms=30000, wait_for_bye_ms=30000)
    monkeypatch.undo()
    assert res.hung_up_by == "callee"  # never dead air: the system hung up after apologising
    assert call.disposition == "failed"
    assert any(e.kind == "error" and "simulated bug" in e.detail["error"] for e in events)
    assert any(e.kind == "playback" and e.detail["sounds"] == ["sorry"] for e in events)
    # the error was logged (once) and nothing else went wrong
    errs = [ln for ln in ivr.log.lines() if ln.startswith("ERROR") and "simulated bug" in ln]
    assert len(errs) == 1
    ivr.log.records = [r for r in ivr.log.records if "simulated bug" not in r.getMessage()]


async def test_garbage_and_odd_caller_numbers_do_not_break_calls(ivr):
    """Digits that are no branch, a caller id with letters: handled, logged, no crash."""
    async with phones(ivr, {"2101": ("answer", {"hangup_after_ms": 800})}):
        sip_user = "tester"  # SIPp's -s; the caller number Asterisk sees is this user part
        res = await sipp.call(**ivr.pbx.peer(), to=ivr.routing.hotline.number, from_user=sip_user,
                              digits="#1", digits_at_ms=500, dtmf_gap_ms=1500, hold_ms=30000, wait_for_bye_ms=30000)
    assert res.answered
    call, events, legs = await wait_row_any(ivr, lambda c: c.caller == "anonymous")
    assert call.disposition == "answered" and call.branch_digit == "1"
    assert any(e.kind == "menu_invalid" and e.detail["digit"] == "#" for e in events)


async def wait_row_any(ivr, pred):
    """The latest finished call (of the last five) that ``pred`` accepts: (call, events, legs)."""
    from sqlalchemy import select

    from ivr.models import Call

    async def found():
        await ivr.service.calllog.flush()
        async with ivr.service.engine.connect() as conn:
            ids = (await conn.execute(select(Call.id).order_by(Call.started_at.desc()).limit(5))).scalars().all()
        for cid in ids:
            call, events, legs = await load_call(ivr.service.engine, cid)
            if pred(call) and call.disposition != "in_progress":
                return call, events, legs
        return None

    return await wait_until(found, 15, "a matching finished call", interval=0.1)
