"""Issue 22 by phone: menu key 0, the code and '#', the case told only to the number that made
it. A real CallSession on a scripted fake caller, the real flow, a real database (both backends)."""

from __future__ import annotations

import asyncio

import pytest

from ivr.call import flow
from ivr.config import routing as rt
from ivr.records import cases as cm
from ivr.records import db
from ivr.records.lookup import canonical_number
from ivr.testing import FakeSpeech, ScriptedCaller, make_call
from ivr.vocab import Disposition
from tests.paths import REPO_ROOT

TEXT = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")
# Timeouts at their minimum: a try without input costs a second, not five.
FAST = TEXT.replace("first_digit_timeout: 5", "first_digit_timeout: 1", 1).replace("inter_digit_timeout: 3", "inter_digit_timeout: 1", 1)
ROUTING = rt.loads(FAST)
OWNER = "0909123456"


# ------------------------------------------------------------------------------ routing.yaml


def test_lookup_digit_defaults_to_zero_and_none_turns_it_off():
    assert rt.loads(TEXT).menu.lookup_digit == "0"
    without = TEXT.replace("  lookup_digit: 0 ", "  # lookup_digit: 0 ", 1)
    assert rt.loads(without).menu.lookup_digit == "0"  # the default
    assert rt.loads(TEXT.replace("lookup_digit: 0", "lookup_digit: none", 1)).menu.lookup_digit is None
    assert "phím 0 tra cứu" in rt.summary(rt.loads(TEXT))


@pytest.mark.parametrize("value,message", [
    ("5", "digit 5 is already a branch"),
    ("9", "digit 9 is already complaints.misconduct_digit"),
    ("12", "'12' is not a single digit 0–9 (or none)"),
    ("'*'", "'*' is not a single digit"),
])
def test_a_lookup_digit_that_cannot_work_is_refused_at_its_line(value, message):
    text = TEXT.replace("lookup_digit: 0", f"lookup_digit: {value}", 1)
    with pytest.raises(rt.RoutingError) as e:
        rt.loads(text)
    line = text[: text.index("lookup_digit:")].count("\n") + 1
    assert [(p.line, p.path) for p in e.value.errors if message in p.message] == [(line, "menu.lookup_digit")], e.value.errors


def test_the_default_gives_way_to_a_misconduct_digit_on_zero():
    text = TEXT.replace("  lookup_digit: 0 ", "  # lookup_digit: 0 ", 1).replace("misconduct_digit: 9", "misconduct_digit: 0", 1)
    r = rt.loads(text)
    assert r.menu.lookup_digit is None and r.complaints.misconduct_digit == "0"


# ------------------------------------------------------------------------------ the call


@pytest.fixture
async def engine(db_settings):
    await asyncio.to_thread(db.upgrade, db_settings)
    eng = db.engine(db_settings)
    yield eng
    await eng.dispose()


async def new_case(engine, caller=OWNER, **kw):
    return await cm.Cases(engine, ROUTING).create(cm.NewCase(
        channel="phone", caller=caller, branch_digit="3", agency_code="STP", agency_name="Sở Tư pháp", **kw))


async def place(engine, script, *, caller=OWNER, routing=ROUTING, speech=None, tmp_path=None):
    """One call through the real flow; returns (call, caller fake)."""
    ari = ScriptedCaller(script, spool=tmp_path / "spool" if tmp_path else None)
    call = make_call(routing, ari=ari, caller=caller, engine=engine, speech=speech,
                     home=tmp_path or REPO_ROOT / "var" / "none", recording_spool=tmp_path / "spool" if tmp_path else None)
    await asyncio.wait_for(flow.run(call.session), 30)
    return call, ari


async def answered(c, code, text):
    """Through the lifecycle to an answer (none when ``text`` is empty: stops in progress)."""
    await c.act(code, "classify", actor="t", category="procedure")
    await c.act(code, "assign", actor="t", agencies=["STP"])
    await c.act(code, "start", actor="t")
    if text:
        await c.act(code, "answer", actor="t", text=text)


def keyed(call) -> list[dict]:
    return call.events("lookup_keyed")


async def history(engine, code) -> list[tuple[str, str]]:
    case = await cm.Cases(engine, ROUTING).get(code)
    return [(e.action, e.actor) for e in case.history]


async def test_the_menu_announces_the_lookup_key_and_a_case_is_told_to_its_caller(engine):
    case = await new_case(engine)
    speech = FakeSpeech(made=("Sở Tư pháp",))
    call, ari = await place(engine, [("greeting", "0"), ("lookup_enter_code", case.code + "#")], speech=speech)
    rec = call.session.rec
    assert rec.disposition == Disposition.CASE_LOOKUP and rec.case_code == case.code
    assert keyed(call) == [{"keyed": case.code, "found": True, "attempt": 1}]
    assert call.events("menu_choice") == [{"digit": "0", "lookup": True}]
    told = next(p for p in ari.plays if "lookup_status_received" in p)
    local = case.deadline_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Ho_Chi_Minh"))
    assert told == ["lookup_status_received", "lookup_agency", speech.ready("Sở Tư pháp").removeprefix("sound:tongdai/"),
                    "lookup_deadline", f"number:{local.day}", f"sound:digits/mon-{local.month - 1}", "lookup_year",
                    f"number:{local.year}"]
    assert ari.plays[-1] == ["thanks"] and rec.hangup_by == "system"
    # The reveal is in the case's history, by the citizen, on the phone.
    assert ("lookup", "người dân (điện thoại)") in await history(engine, case.code)


async def test_menu_plays_the_lookup_line_only_when_the_key_is_on(engine):
    call, ari = await place(engine, [("menu", "hangup")], routing=ROUTING)
    menu_media = next(p for p in ari.plays if "menu" in p)
    assert menu_media[-2:] == ["menu_lookup", "digits:0"]
    off = rt.loads(FAST.replace("lookup_digit: 0", "lookup_digit: none", 1))
    call, ari = await place(engine, [("menu", "0"), ("menu", "0"), ("menu", "hangup")], routing=off)
    assert all("menu_lookup" not in p for p in ari.plays)
    assert [e["digit"] for e in call.events("menu_invalid")] == ["0", "0"]  # just a wrong key then
    assert not keyed(call)


async def test_another_number_and_an_unknown_code_hear_the_same_not_found(engine):
    case = await new_case(engine)
    other = "0912000111" if case.code != "999999" else "0912000112"
    unknown = "999999" if case.code != "999999" else "888888"
    script = [("greeting", "0")] + [("lookup_enter_code", case.code + "#")] * 3 + [("menu", "hangup")]
    call1, ari1 = await place(engine, script, caller=other)
    script = [("greeting", "0")] + [("lookup_enter_code", unknown + "#")] * 3 + [("menu", "hangup")]
    call2, ari2 = await place(engine, script, caller=OWNER)
    for call in (call1, call2):
        rec = call.session.rec
        assert rec.disposition == Disposition.CASE_LOOKUP and rec.case_code is None
        assert [k["found"] for k in keyed(call)] == [False, False, False]
        assert call.events("lookup_gave_up") == [{"tries": 3}]
    assert [k["keyed"] for k in keyed(call1)] == [case.code] * 3
    # Word for word the same prompts: nothing tells a guesser the code exists.
    assert ari1.plays == ari2.plays
    assert ari1.plays[1:4] == [["lookup_enter_code"], ["lookup_not_found", "lookup_enter_code"],
                               ["lookup_not_found", "lookup_enter_code"]]
    assert ari1.plays[4] == ["lookup_not_found"]  # then the menu again
    assert "menu" in ari1.plays[5]
    assert [a for a, _ in await history(engine, case.code)] == ["receive"]  # nothing was shown


async def test_the_number_is_compared_in_one_form():
    assert canonical_number("+84909123456") == canonical_number("84909123456") == "0909123456"
    assert canonical_number("anonymous") is None and canonical_number("") is None


async def test_a_case_is_told_to_its_number_written_the_international_way(engine):
    case = await new_case(engine, caller="0909123456")
    call, _ = await place(engine, [("greeting", "0"), ("lookup_enter_code", case.code + "#")], caller="+84909123456")
    assert call.session.rec.case_code == case.code


async def test_an_anonymous_caller_is_never_told_an_anonymous_case(engine):
    case = await new_case(engine, caller="anonymous")
    call, _ = await place(engine, [("greeting", "0"), ("lookup_enter_code", case.code + "#")] + [
        ("lookup_enter_code", case.code + "#")] * 2 + [("menu", "hangup")], caller="")
    assert call.session.rec.caller == "anonymous" and call.session.rec.case_code is None


async def test_a_misconduct_case_kept_anonymous_is_told_to_the_number_that_made_it(engine):
    case = await new_case(engine, anonymous=True)
    call, _ = await place(engine, [("greeting", "0"), ("lookup_enter_code", case.code + "#")])
    assert call.session.rec.case_code == case.code


async def test_a_wrong_length_and_no_input_have_their_own_prompts(engine):
    call, ari = await place(engine, [("greeting", "0"), ("lookup_enter_code", "12345#"), ("lookup_enter_code", ""),
                                          ("menu", "hangup")])
    assert [(k["keyed"], k["why"]) for k in keyed(call)] == [("12345", "not_a_code"), ("", "no_input"), ("", "no_input")]
    assert ["lookup_bad_code", "lookup_enter_code"] in ari.plays and ["no_input", "lookup_enter_code"] in ari.plays


async def test_six_digits_and_a_pause_are_a_code_too(engine):
    case = await new_case(engine)
    call, _ = await place(engine, [("greeting", "0"), ("lookup_enter_code", case.code)])
    assert call.session.rec.case_code == case.code


async def test_the_answer_is_read_once_answered_and_1_repeats_it(engine):
    case = await new_case(engine)
    c = cm.Cases(engine, ROUTING)
    await answered(c, case.code, "")
    answer = "Hồ sơ của ông đã được giải quyết ngày 15/12."
    await c.act(case.code, "answer", actor="t", text=answer)
    speech = FakeSpeech(made=(answer, "Sở Tư pháp"))
    call, ari = await place(engine, [("greeting", "0"), ("lookup_enter_code", case.code + "#"), ("lookup_options", "1")],
                            speech=speech)
    said = speech.ready(answer).removeprefix("sound:tongdai/")
    told = [p for p in ari.plays if "lookup_status_answered" in p]
    assert len(told) == 2 and all("lookup_deadline" not in p for p in told)  # said again after 1
    assert ari.plays.count(["lookup_answer_is", said, "lookup_options"]) == 2
    assert call.events("lookup_repeat") == [{"code": case.code}]


async def test_an_answer_not_synthesised_yet_is_started_and_the_call_goes_on(engine):
    case = await new_case(engine)
    c = cm.Cases(engine, ROUTING)
    await answered(c, case.code, "Đã xử lý xong.")
    speech = FakeSpeech()
    call, ari = await place(engine, [("greeting", "0"), ("lookup_enter_code", case.code + "#")], speech=speech)
    assert set(speech.asked) == {"Sở Tư pháp", "Đã xử lý xong."}  # started, not waited for
    assert ["lookup_answer_not_ready", "lookup_options"] in ari.plays
    assert call.events("lookup_answer") == [{"code": case.code, "ready": False}]
    # Made while the status was said: the same call plays it.
    speech = FakeSpeech(instant=True)
    call, ari = await place(engine, [("greeting", "0"), ("lookup_enter_code", case.code + "#")], speech=speech)
    assert any(p[0] == "lookup_answer_is" and p[1].startswith("speech/") for p in ari.plays)


async def test_key_2_leaves_a_further_complaint_on_the_same_case(engine, tmp_path):
    case = await new_case(engine)
    c = cm.Cases(engine, ROUTING)
    await c.act(case.code, "close", actor="t", reason="duplicate")
    call, ari = await place(engine, [("greeting", "0"), ("lookup_enter_code", case.code + "#"), ("lookup_options", "2")],
                            tmp_path=tmp_path)
    assert ["lookup_status_closed"] in ari.plays
    (ev,) = call.events("reopen_request")
    assert ev["code"] == case.code and ev["stored"] is True and (tmp_path / ev["file"]).is_file()
    assert ari.plays[-1] == ["lookup_further_done", "thanks"]
    after = await c.get(case.code)
    assert after.status == "closed"  # a request for staff, not a new status
    last = after.history[-1]
    assert (last.action, last.actor) == ("reopen_request", "người dân (điện thoại)") and ev["file"] in last.note
    assert len(await c.list()) == 1  # no new case


async def test_a_database_that_is_down_is_said_never_dead_air(settings_factory, tmp_path):
    broken = db.engine(settings_factory(TONGDAI_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db"))
    call, ari = await place(broken, [("greeting", "0"), ("lookup_enter_code", "482913#")])
    assert call.events("lookup_failed") and ari.plays[-1] == ["lookup_unavailable", "goodbye"]
    assert call.session.rec.disposition == Disposition.CASE_LOOKUP and call.session.rec.case_code is None
    await broken.dispose()


async def test_the_controller_speaks_from_asterisks_sounds_and_warms_the_branches_agencies(settings_factory):
    from ivr.call.dispatcher import Controller
    from ivr.pbx.speech import Speech
    from ivr.testing import FakeAri, FakeCallLog, wait_until

    ctl = Controller(settings_factory(), ROUTING, FakeAri(), FakeCallLog())
    assert isinstance(ctl.context.speech, Speech)
    assert ctl.context.speech.sounds_dir == ctl.layout.host(ctl.layout.ast("data/sounds/vi"))
    asked: list[list[str]] = []

    class Warm:
        async def warm(self, texts):
            asked.append(texts)

    ctl.speech = Warm()
    ctl.swap_routing(ROUTING)  # a reload warms the new routing's names, in the background
    await wait_until(lambda: asked, 2, "the names to be warmed")
    assert asked == [[ROUTING.agencies[b.agency].name for b in ROUTING.branches]]
    assert "Sở Tư pháp" in asked[0] and len(asked[0]) == len(ROUTING.branches)
