"""The call's state table: legal paths pass, anything else fails loudly."""

from __future__ import annotations

import pytest

from ivr.call.errors import IllegalTransition
from ivr.call.session import TRANSITIONS, State
from ivr.records.calllog import clean_number


def session():
    from ivr.config import routing as rt
    from ivr.testing import make_call
    from tests.paths import REPO_ROOT

    return make_call(rt.load(REPO_ROOT / "routing.yaml"), caller="0909 123;drop table").session


def test_happy_path_is_legal_and_logged():
    s = session()
    for new in (State.GREETING, State.MENU, State.DIALING, State.BRIDGED, State.SURVEY, State.ENDED):
        s.transition(new, "test")
    assert [e[2]["to"] for e in s.rec.events if e[1] == "state"] == ["greeting", "menu", "dialing", "bridged", "survey", "ended"]


@pytest.mark.parametrize("frm,to", [(State.ANSWERING, State.BRIDGED), (State.MENU, State.SURVEY), (State.ENDED, State.MENU),
                                    (State.GREETING, State.DIALING)])
def test_illegal_transitions_raise(frm, to):
    s = session()
    s.state = frm
    with pytest.raises(IllegalTransition):
        s.transition(to, "test")


def test_every_state_can_end():
    for st, allowed in TRANSITIONS.items():
        assert st is State.ENDED or State.ENDED in allowed


def test_unexpected_event_is_loud_in_strict_mode():
    from ivr.call.errors import IllegalEvent

    s = session()
    s.state = State.MENU
    s.unexpected({"type": "ChannelVarset"})  # harmless: ignored
    s.unexpected({"type": "ChannelDtmfReceived", "digit": "5"})  # stray digit: ignored, logged
    with pytest.raises(IllegalEvent):
        s.unexpected({"type": "TextMessageReceived", "message": {"body": "x"}})
    s.ctx.strict = False
    s.unexpected({"type": "TextMessageReceived", "message": {"body": "x"}})  # logged only


def test_caller_numbers_are_sanitised():
    assert session().rec.caller == "0909123"
    assert clean_number("+84<script>") == "+84"
    assert clean_number("9" * 100) == "9" * 32


async def test_a_request_on_a_channel_that_just_hung_up_is_a_hangup_not_an_error():
    """The caller hangs up between an event and our next request: Asterisk answers 404 before
    the StasisEnd arrives. That ends the call as abandoned, without the fallback's apology."""
    from ivr.pbx.ari import AriError

    class GoneAri:
        def __init__(self):
            self.paths = []

        async def request(self, method, path, **kw):
            self.paths.append((method, path))
            raise AriError(404, method, path, "Channel not found")

    class Log:
        def opened(self, rec):
            pass

        def closed(self, rec):
            self.rec = rec

    s = session()
    s.ari = s.ctx.ari = GoneAri()
    s.ctx.calllog = Log()
    s.ctx.finished = lambda sess: None
    from ivr.call import flow

    await flow.run(s)
    assert s.state is State.ENDED
    assert (s.rec.disposition, s.rec.hangup_by) == ("abandoned", "caller")
    assert not [e for e in s.rec.events if e[1] == "error"]
    assert s.ari.paths == [("POST", "/channels/c1/answer")]  # no apology played, no second hangup


async def test_an_interrupted_prompt_is_stopped_without_waiting_for_asterisk():
    """Barge-in: the digit is returned while the playback's DELETE is still in flight (the
    next prompt's request need not wait for it), and cleanup waits for that DELETE."""
    import asyncio

    from ivr.call import prompt
    from ivr.testing import wait_until

    class SlowStopAri:
        def __init__(self):
            self.sent = []
            self.gate = asyncio.Event()

        async def request(self, method, path, **kw):
            self.sent.append((method, path))
            if method == "DELETE" and path.startswith("/playbacks/"):
                await self.gate.wait()

    s = session()
    s.ari = s.ctx.ari = SlowStopAri()
    play = asyncio.create_task(prompt.play(s, ["greeting"], max_digits=1))
    await wait_until(lambda: s.ari.sent, 2, "the playback to be asked for")
    (method, path), = s.ari.sent
    assert method == "POST" and path.startswith("/channels/c1/play/")
    pb = path.rsplit("/", 1)[1]
    s.queue.put_nowait({"type": "ChannelDtmfReceived", "channel": {"id": "c1"}, "digit": "2"})
    result = await asyncio.wait_for(play, 2)  # not held up by the DELETE
    assert (result.status, result.digits) == ("digits", "2")
    assert ("DELETE", f"/playbacks/{pb}") in s.ari.sent and s.in_flight
    cleanup = asyncio.create_task(s.cleanup())
    await wait_until(lambda: s._entering is None, 2, "the cleanup to begin")
    assert not cleanup.done()  # still waiting for the DELETE
    s.ari.gate.set()
    await asyncio.wait_for(cleanup, 2)
    assert s.ari.sent[-1] == ("DELETE", "/channels/c1") and not s.in_flight
