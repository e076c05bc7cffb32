"""Issue: complaints and satisfaction on the phone. Real Asterisk records real audio from SIPp
callers; cases land in the database with their recording; the code is read back in Vietnamese."""

from __future__ import annotations

import datetime as dt
import wave

import pytest

from ivr.config import hours as cal
from ivr.records import cases as cm

from .conftest import kinds, phones, place

pytestmark = pytest.mark.e2e


def ms(seconds: float) -> int:
    return int(seconds * 1000)


async def case_of(ivr, code):
    return await cm.Cases(ivr.service.engine, ivr.routing).get(code)


def recorded_seconds(ivr, case) -> float:
    path = ivr.settings.home / case.recording
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def playbacks(events) -> list[list[str]]:
    return [e.detail["sounds"] for e in events if e.kind == "playback"]


async def test_outside_hours_records_a_complaint_and_reads_the_code_back(ivr):
    d = ivr.durations
    now = dt.datetime.now(dt.timezone.utc)
    cal.write_override(ivr.settings.hours_override_path, "closed", None, now)
    try:
        # '#' ends the recording about two seconds after the beep.
        at = d["closed"] + d["record_offer"] + 2.5
        res, (call, events, legs) = await place(ivr, "#", digits_at_ms=ms(at), hold_ms=40000, wait_for_bye_ms=40000)
    finally:
        cal.write_override(ivr.settings.hours_override_path, "open", None, now)
    assert call.disposition == "closed" and call.case_code, kinds(events)
    assert res.hung_up_by == "callee"
    case = await case_of(ivr, call.case_code)
    assert case.channel == "phone" and case.caller == call.caller and case.call_id == call.id
    assert case.status == "received" and not case.inspection and case.category == "other"
    assert (ivr.settings.home / case.recording).is_file()
    assert 1.0 < recorded_seconds(ivr, case) < 6
    # The code was read back digit by digit (SayDigits with language vi), then goodbye.
    assert ["case_code_is", f"digits:{case.code}", "repeat_offer"] in playbacks(events)
    # Deadline: 10 working days (category other) from the receipt.
    assert case.deadline_at == cm.deadline(ivr.routing, case.received_at, "other")


async def test_all_phones_reject_leads_to_a_complaint_with_the_code_repeated(ivr):
    d = ivr.durations
    async with phones(ivr, {"2201": "busy", "2202": "busy"}):
        # digit 2, then '#' after ~2 s of recording, then '1' to hear the code again
        t_hash = 0.5 + d["branch_2"] + d["connecting"] + d["all_busy"] + d["record_offer"] + 3.0
        gap1 = ms(t_hash - 0.5 - 0.16)
        res, (call, events, legs) = await place(ivr, "2#", dtmf_gap_ms=gap1, hold_ms=60000, wait_for_bye_ms=60000)
    assert call.disposition == "busy" and call.case_code, [(e.kind, e.detail) for e in events]
    assert [(l.extension, l.result) for l in legs] == [("2201", "busy"), ("2202", "busy")]
    case = await case_of(ivr, call.case_code)
    assert case.branch_digit == "2" and case.agency_code == "HHDN"
    assert recorded_seconds(ivr, case) > 1.0
    assert ["case_code_is", f"digits:{case.code}", "repeat_offer"] in playbacks(events)


async def test_code_is_repeated_once_on_request(ivr):
    d = ivr.durations
    now = dt.datetime.now(dt.timezone.utc)
    cal.write_override(ivr.settings.hours_override_path, "closed", None, now)
    try:
        t_hash = d["closed"] + d["record_offer"] + 2.5
        # after '#': case_code_is + six digits + repeat_offer, then '1'
        longest_digit = max(d[f"digits/{n}"] for n in range(10))
        t_one = t_hash + 0.3 + d["case_code_is"] + 6 * longest_digit + d["repeat_offer"] + 0.8
        res, (call, events, legs) = await place(ivr, "#1", digits_at_ms=ms(t_hash), dtmf_gap_ms=ms(t_one - t_hash - 0.16),
                                                hold_ms=60000, wait_for_bye_ms=60000)
    finally:
        cal.write_override(ivr.settings.hours_override_path, "open", None, now)
    assert "code_repeated" in kinds(events), kinds(events)
    code = call.case_code
    assert playbacks(events).count(["case_code_is", f"digits:{code}"]) == 1  # repeated once, not a loop


async def test_misconduct_digit_records_anonymous_flagged_case(ivr):
    d = ivr.durations
    # 9 during the greeting; 1 = stay anonymous; '#' ~2 s into the recording
    t_one = 0.5 + d["anonymous_offer"] + 0.5
    t_hash = t_one + 0.3 + d["record_misconduct"] + 0.5 + 2.0
    gaps = [ms(t_one - 0.5 - 0.16), ms(t_hash - t_one - 0.16), 200]
    res, (call, events, legs) = await place(ivr, "91#", dtmf_gap_ms=gaps, hold_ms=60000, wait_for_bye_ms=60000)
    assert call.disposition == "complaint" and call.case_code, [(e.kind, e.detail) for e in events]
    assert call.branch_digit is None and legs == []
    case = await case_of(ivr, call.case_code)
    assert case.category == "misconduct" and case.inspection and case.anonymous
    assert case.caller == call.caller  # kept for the Home Affairs office, hidden from agencies
    assert [e.action for e in case.history] == ["receive", "flag_inspection"]
    assert 1.0 < recorded_seconds(ivr, case) < 6
    assert case.deadline_at == cm.deadline(ivr.routing, case.received_at, "misconduct")


async def test_caller_hanging_up_during_recording_keeps_what_was_said(ivr):
    d = ivr.durations
    # 9, then 2 (not anonymous), then hang up about 3 s after the beep
    t_two = 0.5 + d["anonymous_offer"] + 0.5
    hold = t_two + 0.3 + d["record_misconduct"] + 3.5
    res, (call, events, legs) = await place(ivr, "92", dtmf_gap_ms=ms(t_two - 0.5 - 0.16), hold_ms=ms(hold))
    assert res.hung_up_by == "caller"
    assert call.case_code and call.hangup_by == "caller" and call.ended_in == "complaint", kinds(events)
    case = await case_of(ivr, call.case_code)
    assert not case.anonymous and case.category == "misconduct"
    assert recorded_seconds(ivr, case) > 1.5


async def test_survey_after_the_staff_member_hangs_up(ivr):
    d = ivr.durations
    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 1500})}):
        # 4 for the branch; the agent hangs up after 1.5 s of talk; then 4 as the score
        t_score = 0.5 + d["branch_4"] + d["connecting"] + 0.5 + 1.5 + d["survey"] * 0.5 + 0.5
        res, (call, events, legs) = await place(ivr, "44", dtmf_gap_ms=ms(t_score - 0.66), hold_ms=40000, wait_for_bye_ms=40000)
    assert call.disposition == "answered" and call.hangup_by == "agent"
    assert call.survey_score == 4, [(e.kind, e.detail) for e in events]
    assert call.answered_by == "2401" and call.branch_digit == "4"
    assert ["survey_thanks"] in playbacks(events)


async def test_survey_without_input_stores_no_score_and_ends(ivr):
    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 1000})}):
        res, (call, events, legs) = await place(ivr, "4", hold_ms=40000, wait_for_bye_ms=40000)
    assert call.disposition == "answered" and call.survey_score is None
    assert kinds(events).count("survey") == 1 and res.hung_up_by == "callee"
    assert [e.detail for e in events if e.kind == "survey"] == [{"score": None, "pressed": None}]


async def test_survey_ignores_a_key_outside_one_to_five(ivr):
    d = ivr.durations
    async with phones(ivr, {"2401": ("answer", {"hangup_after_ms": 1500})}):
        t_score = 0.5 + d["branch_4"] + d["connecting"] + 0.5 + 1.5 + d["survey"] * 0.5 + 0.5
        res, (call, events, legs) = await place(ivr, "48", dtmf_gap_ms=ms(t_score - 0.66), hold_ms=40000, wait_for_bye_ms=40000)
    assert call.survey_score is None
    assert [e.detail for e in events if e.kind == "survey"] == [{"score": None, "pressed": "8"}]
