"""The post-call survey step on the shipped fakes: a score from 1 to 5, or none, never a loop."""

from __future__ import annotations

import asyncio

import pytest

from ivr.call import survey
from ivr.call.errors import CallerHangup
from ivr.call.session import State
from ivr.testing import make_call

from .conftest import hasty


def start(routing):
    call = make_call(routing, state=State.SURVEY)
    return call, asyncio.create_task(survey.run(call.session))


@pytest.mark.parametrize("score", [1, 2, 3, 4, 5])
async def test_a_score_from_one_to_five_is_kept_and_thanked_for(routing, score):
    call, task = start(routing)
    pb = await call.hear()
    assert pb.sounds == ["survey"]
    call.dtmf(str(score))
    assert (await call.hear()).sounds == ["survey_thanks"]
    assert await asyncio.wait_for(task, 2) == score
    assert call.session.rec.survey_score == score
    assert call.events("survey") == [{"score": score, "pressed": str(score)}]
    assert len(call.ari.requests("POST")) == 2  # the question and the thanks: no loop


async def test_a_score_pressed_during_the_question_counts(routing):
    call, task = start(routing)
    pb = await call.playback()
    call.dtmf("5")
    assert (await call.hear()).sounds == ["survey_thanks"]
    assert await asyncio.wait_for(task, 2) == 5
    assert ("DELETE", f"/playbacks/{pb.id}") in call.ari.sent


async def test_no_input_stores_no_score(routing):
    call, task = start(hasty(routing))
    await call.hear()
    assert (await call.hear()).sounds == ["thanks"]
    assert await asyncio.wait_for(task, 2) is None
    assert call.session.rec.survey_score is None
    assert call.events("survey") == [{"score": None, "pressed": None}]


@pytest.mark.parametrize("key", ["0", "6", "9", "*", "#"])
async def test_a_key_outside_one_to_five_stores_no_score(routing, key):
    call, task = start(routing)
    await call.hear()
    call.dtmf(key)
    assert (await call.hear()).sounds == ["thanks"]
    assert await asyncio.wait_for(task, 2) is None
    assert call.session.rec.survey_score is None
    assert call.events("survey") == [{"score": None, "pressed": key}]


async def test_a_caller_hanging_up_during_the_question_leaves_no_score(routing):
    call, task = start(routing)
    await call.playback()
    call.hangup()
    with pytest.raises(CallerHangup):
        await asyncio.wait_for(task, 2)
    assert call.session.rec.survey_score is None and call.events("survey") == []
    assert call.events("hangup") == [{"by": "caller", "state": "survey"}]


async def test_a_caller_hanging_up_during_the_thanks_keeps_the_score(routing):
    call, task = start(routing)
    await call.hear()
    call.dtmf("4")
    await call.playback()
    call.hangup()
    with pytest.raises(CallerHangup):
        await asyncio.wait_for(task, 2)
    assert call.session.rec.survey_score == 4
