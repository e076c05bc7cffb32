"""Issue 22 end to end: a caller leaves a complaint with a real call, calls again, presses 0,
keys the code and '#', and hears their case; another number hears "not found"; an answered
case is read by the synthesised voice. Real Asterisk, SIPp callers, the real database."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import hours as cal
from ivr.pbx.speech import Speech, plausible_seconds, seconds
from ivr.records import cases as cm

from .conftest import kinds, new_caller, place

pytestmark = pytest.mark.e2e


def ms(s: float) -> int:
    return int(s * 1000)


def playbacks(events) -> list[list[str]]:
    return [e.detail["sounds"] for e in events if e.kind == "playback"]


async def complaint(ivr, caller: str) -> str:
    """A voice complaint left outside working hours (as in test_complaints); its code."""
    d = ivr.durations
    now = dt.datetime.now(dt.timezone.utc)
    cal.write_override(ivr.settings.hours_override_path, "closed", None, now)
    try:
        _, (call, events, _) = await place(ivr, "#", digits_at_ms=ms(d["closed"] + d["record_offer"] + 2.5),
                                           hold_ms=40000, wait_for_bye_ms=40000, caller=caller)
    finally:
        cal.write_override(ivr.settings.hours_override_path, "open", None, now)
    assert call.case_code, kinds(events)
    return call.case_code


async def look_up(ivr, caller: str, code: str, **kw):
    """0 during the greeting, then the code and '#' while the look-up asks for it. Asterisk must
    have found every sound it was asked to play (the deadline's numbers and month included)."""
    log = ivr.pbx.layout.log_file
    start = log.stat().st_size if log.exists() else 0
    gaps = [700] + [240] * 7
    result = await place(ivr, "0" + code + "#", digits_at_ms=500, dtmf_gap_ms=gaps, caller=caller, **kw)
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        missing = [ln for ln in f if "does not exist in any format" in ln]
    assert missing == [], missing
    return result


def keyed(events) -> list[dict]:
    return [e.detail for e in events if e.kind == "lookup_keyed"]


async def cli(ivr, *args: str):
    env = {k: v for k, v in ivr.settings.env.items() if k.startswith("TONGDAI_") or k in ("PATH", "HOME")}
    res = await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)
    assert res.exit_code == 0, res.output
    return res.output


async def test_a_caller_follows_their_complaint_and_another_number_is_not_told(ivr):
    d = ivr.durations
    owner = new_caller()
    code = await complaint(ivr, owner)

    _, (call, events, _) = await look_up(ivr, owner, code, hold_ms=40000, wait_for_bye_ms=40000)
    assert (call.disposition, call.case_code) == ("case_lookup", code), kinds(events)
    assert keyed(events) == [{"keyed": code, "found": True, "attempt": 1}]
    told = next(p for p in playbacks(events) if p[0] == "lookup_status_received")
    assert told[1] == "lookup_deadline" and told[3].startswith("sound:digits/mon-")  # no agency: no branch
    assert playbacks(events)[-1] == ["thanks"] and call.hangup_by == "system"

    stranger = new_caller()
    # Stay on long enough to hear the not-found prompt and the next request for a code, then go.
    hold = 0.5 + 0.7 + 7 * 0.4 + d["lookup_not_found"] + d["lookup_enter_code"] + 1.5
    _, (call, events, _) = await look_up(ivr, stranger, code, hold_ms=ms(hold))
    assert (call.disposition, call.case_code) == ("case_lookup", None), kinds(events)
    assert keyed(events)[0] == {"keyed": code, "found": False, "attempt": 1}
    heard = next(e for e in events if e.kind == "playback" and e.detail["sounds"][0] == "lookup_not_found")
    hangup = next(e for e in events if e.kind == "hangup")
    assert hangup.detail["by"] == "caller"
    assert (hangup.at - heard.at).total_seconds() > d["lookup_not_found"], "hung up before the prompt was over"
    # Nothing was revealed to the stranger: the case's history has the owner's look-up only.
    case = await cm.Cases(ivr.service.engine, ivr.routing).get(code)
    assert [e.action for e in case.history].count("lookup") == 1


async def test_an_answered_case_is_read_to_its_caller_in_the_synthesised_voice(ivr):
    d = ivr.durations
    owner = new_caller()
    code = await complaint(ivr, owner)
    answer = "Ngày 15/12, UBND xã đã giải quyết hồ sơ của ông. Xin mời ông đến nhận kết quả."
    await cli(ivr, "cases", "classify", code, "--category", "procedure")
    await cli(ivr, "cases", "assign", code, "--agency", "STNMT")
    await cli(ivr, "cases", "start", code)
    out = await cli(ivr, "cases", "answer", code, "--text", answer)
    assert "Đã tạo bản đọc câu trả lời" in out
    # The CLI synthesised the answer into the sounds directory the running Asterisk reads.
    layout = ivr.pbx.layout
    speech = Speech(layout.host(layout.ast("data/sounds/vi")))
    wav = speech.wav(answer)
    assert wav.is_file() and speech.ready(answer)
    lo, hi = plausible_seconds(answer)
    said = seconds(wav)
    assert lo < said < hi, (said, lo, hi)

    _, (call, events, _) = await look_up(ivr, owner, code, hold_ms=60000, wait_for_bye_ms=60000)
    assert (call.disposition, call.case_code) == ("case_lookup", code), kinds(events)
    plays = [e for e in events if e.kind == "playback"]
    status = next(e for e in plays if e.detail["sounds"][0] == "lookup_status_answered")
    assert status.detail["sounds"] == ["lookup_status_answered", "lookup_agency", speech.media("Sở Tài nguyên và Môi trường")]
    read = next(e for e in plays if e.detail["sounds"][:2] == ["lookup_answer_is", speech.media(answer)])
    after = plays[plays.index(read) + 1]
    assert after.detail["sounds"] == ["thanks"]
    # Asterisk really played the file: the next prompt came only after the answer's length
    # (and the options and the wait for a key) had passed.
    waited = (after.at - read.at).total_seconds()
    assert waited > d["lookup_answer_is"] + said + d["lookup_options"], (waited, said)
    assert [e.detail for e in events if e.kind == "lookup_answer"] == [{"code": code, "ready": True}]
