"""The menu step on the shipped fakes: a real CallSession driven by ARI events as Asterisk
would send them, checked by what it asked Asterisk for and what its record says."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from ivr.call import flow, menu
from ivr.call.errors import CallerHangup
from ivr.call.session import State
from ivr.testing import make_call, wait_until
from ivr.vocab import MenuAction

from .conftest import hasty

# The menu, then the look-up key's announcement with its digit (menu.lookup_digit, 0).
MENU = ["menu", "menu_lookup", "digits:0"]


def start(routing, first_digit: str | None = None):
    call = make_call(routing, state=State.MENU)
    return call, asyncio.create_task(menu.run(call.session, first_digit))


async def test_a_digit_after_the_menu_is_the_choice(routing):
    call, task = start(routing)
    pb = await call.hear()
    assert pb.media == ["sound:tongdai/menu", "sound:tongdai/menu_lookup", "digits:0"]
    assert call.ari.params[f"/channels/c1/play/{pb.id}"]["lang"] == "vi"
    call.dtmf("4")
    assert await asyncio.wait_for(task, 2) == MenuAction("branch", "4")
    assert call.events("dtmf") == [{"digit": "4", "during": "wait"}]
    assert call.events("menu_choice") == [{"digit": "4"}]
    assert not any(p.startswith("/playbacks/") for p in call.ari.requests("DELETE"))


async def test_a_digit_during_the_menu_stops_it_and_is_the_choice(routing):
    call, task = start(routing)
    pb = await call.playback()
    call.dtmf("7")
    assert await asyncio.wait_for(task, 2) == MenuAction("branch", "7")
    await wait_until(lambda: ("DELETE", f"/playbacks/{pb.id}") in call.ari.sent, 2, "the menu to be stopped")
    assert call.events("dtmf") == [{"digit": "7", "during": "prompt"}]


async def test_a_digit_pressed_during_the_greeting_needs_no_menu(routing):
    call, task = start(routing, first_digit="2")
    assert await asyncio.wait_for(task, 2) == MenuAction("branch", "2")
    assert call.ari.sent == []  # nothing played
    assert call.events("menu_choice") == [{"digit": "2"}]


async def test_star_repeats_the_menu(routing):
    call, task = start(routing)
    assert (await call.hear()).sounds == MENU
    call.dtmf("*")
    assert (await call.hear()).sounds == MENU  # again, with no reproach before it
    call.dtmf("8")
    assert await asyncio.wait_for(task, 2) == MenuAction("branch", "8")
    assert call.events("menu_repeat") == [{"count": 1}]
    assert call.events("menu_invalid") == [] and call.events("menu_no_input") == []


async def test_no_input_and_wrong_keys_are_counted_apart_until_the_fallback(routing):
    """Three tries in routing.yaml: two wrong keys and two silences do not add up to a
    fallback; the third silence does, with the fallback routing.yaml names."""
    call, task = start(hasty(routing))
    heard = [(await call.hear()).sounds]  # silence
    heard.append((await call.hear()).sounds)
    call.dtmf("A")  # no branch A (0 is the look-up)
    heard.append((await call.hear()).sounds)  # silence
    heard.append((await call.hear()).sounds)
    call.dtmf("#")
    heard.append((await call.hear()).sounds)  # silence: the third
    assert await asyncio.wait_for(task, 2) == MenuAction("complaint")
    assert heard == [MENU, ["no_input", *MENU], ["invalid", *MENU], ["no_input", *MENU], ["invalid", *MENU]]
    assert call.events("menu_no_input") == [{"count": 1}, {"count": 2}, {"count": 3}]
    assert call.events("menu_invalid") == [{"digit": "A", "count": 1}, {"digit": "#", "count": 2}]
    assert call.events("menu_fallback") == [{"reason": "no_input", "action": "complaint"}]


@pytest.mark.parametrize("fallback,action", [("complaint", MenuAction("complaint")), ("hangup", MenuAction("hangup")),
                                             ("branch:1", MenuAction("branch", "1"))])
async def test_wrong_keys_alone_reach_the_fallback(routing, fallback, action):
    assert routing.menu.max_tries == 3
    call, task = start(hasty(routing, fallback=fallback))
    for key in ("A", "D", "#"):  # DTMF keys that are no branch
        await call.hear()
        call.dtmf(key)
    assert await asyncio.wait_for(task, 2) == action
    assert [e["count"] for e in call.events("menu_invalid")] == list(range(1, routing.menu.max_tries + 1))
    assert call.events("menu_no_input") == []
    assert call.events("menu_fallback") == [{"reason": "invalid", "action": fallback}]


async def test_a_digit_during_the_no_input_prompt_counts(routing):
    call, task = start(hasty(routing))
    await call.hear()  # silence
    pb = await call.playback()
    assert pb.sounds == ["no_input", *MENU]
    call.dtmf("3")
    assert await asyncio.wait_for(task, 2) == MenuAction("branch", "3")
    await wait_until(lambda: ("DELETE", f"/playbacks/{pb.id}") in call.ari.sent, 2, "the prompt to be stopped")


async def test_the_misconduct_digit_is_not_a_branch(routing):
    assert routing.complaints.misconduct_digit == "9" and routing.branch("9") is None
    call, task = start(routing)
    await call.hear()
    call.dtmf("9")
    assert await asyncio.wait_for(task, 2) == MenuAction("misconduct")
    assert call.events("menu_choice") == [{"digit": "9", "misconduct": True}]


async def test_a_caller_hanging_up_during_the_menu_ends_the_step(routing):
    call, task = start(routing)
    await call.playback()
    call.hangup()
    with pytest.raises(CallerHangup):
        await asyncio.wait_for(task, 2)
    assert call.session.caller_gone and call.events("hangup") == [{"by": "caller", "state": "menu"}]


# ------------------------------------------------------------------ the menu in the call's flow


async def test_a_digit_during_the_greeting_stops_it_and_goes_straight_on(routing):
    """Barge-in: the misconduct digit pressed during the greeting stops it; no menu is played
    and the caller is offered anonymity at once."""
    call = make_call(routing)
    task = asyncio.create_task(flow.run(call.session))
    greeting = await call.playback()
    assert greeting.sounds == ["greeting"]
    call.dtmf("9")
    offer = await call.playback()
    assert offer.sounds == ["anonymous_offer"]
    assert ("DELETE", f"/playbacks/{greeting.id}") in call.ari.sent
    call.hangup()
    await asyncio.wait_for(task, 2)
    s = call.session
    assert [(e["frm"], e["to"], e["why"]) for e in call.events("state")] == [
        ("answering", "greeting", "answered"), ("greeting", "menu", "dtmf 9"), ("menu", "complaint", "dtmf 9"),
        ("complaint", "ended", "cleanup")]
    assert (s.rec.disposition, s.rec.hangup_by, s.rec.ended_in) == ("complaint", "caller", "complaint")
    assert call.ari.requests("POST") == ["/channels/c1/answer", f"/channels/c1/play/{greeting.id}",
                                         f"/channels/c1/play/{offer.id}"]
    assert ("DELETE", "/channels/c1") not in call.ari.sent  # the caller had gone: nothing to hang up
    assert call.calllog.closed_records == [s.rec] and call.finished == [s]


async def test_a_caller_who_never_chooses_is_offered_a_complaint(routing):
    """The menu's fallback in routing.yaml is the voice complaint; the call is logged as
    invalid input."""
    call = make_call(hasty(routing))
    task = asyncio.create_task(flow.run(call.session))
    assert (await call.hear()).sounds == ["greeting"]
    for _ in range(routing.menu.max_tries):
        await call.hear()
    assert (await call.playback()).sounds == ["record_offer"]
    call.hangup()
    await asyncio.wait_for(task, 2)
    s = call.session
    assert s.rec.disposition == "invalid_input" and s.rec.ended_in == "complaint"
    assert call.events("menu_fallback") == [{"reason": "no_input", "action": "complaint"}]
    assert [e["to"] for e in call.events("state")] == ["greeting", "menu", "complaint", "ended"]


async def test_the_lookup_digit_is_the_lookup_and_none_makes_it_a_wrong_key(routing):
    call, task = start(routing)
    await call.hear()
    call.dtmf("0")
    assert await asyncio.wait_for(task, 2) == MenuAction("lookup")
    assert call.events("menu_choice") == [{"digit": "0", "lookup": True}]
    off = dataclasses.replace(routing, menu=dataclasses.replace(routing.menu, lookup_digit=None))
    call, task = start(off)
    assert (await call.hear()).sounds == ["menu"]  # not announced
    call.dtmf("0")
    assert (await call.playback()).sounds == ["invalid", "menu"]
    assert call.events("menu_invalid") == [{"digit": "0", "count": 1}]
    call.hangup()
    with pytest.raises(CallerHangup):
        await asyncio.wait_for(task, 2)
