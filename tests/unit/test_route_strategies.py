"""Ring strategies: the order in which a branch's phones are tried."""

from __future__ import annotations

from ivr.call.route import DialOutcome, RouteState
from ivr.config.routing import Branch
from ivr.testing import idle, wait_until


def branch(strategy: str, targets=("2101", "2102", "2103")) -> Branch:
    return Branch("1", "x", "SNV", tuple(targets), strategy, 20, "complaint")


def test_ringall_rings_everyone_at_once():
    assert RouteState().order(branch("ringall")) == [["2101", "2102", "2103"]]


def test_hunt_keeps_the_configured_order():
    st = RouteState()
    assert st.order(branch("hunt")) == [["2101"], ["2102"], ["2103"]]
    assert st.order(branch("hunt")) == [["2101"], ["2102"], ["2103"]]


def test_roundrobin_starts_one_further_each_call():
    st = RouteState()
    firsts = [st.order(branch("roundrobin"))[0][0] for _ in range(4)]
    assert firsts == ["2101", "2102", "2103", "2101"]
    assert st.order(branch("roundrobin")) == [["2102"], ["2103"], ["2101"]]


def test_leastrecent_prefers_the_phone_idle_longest():
    st = RouteState()
    assert st.order(branch("leastrecent"))[0] == ["2101"]  # nobody answered yet: config order
    st.last_answered.update({"2101": 300.0, "2102": 100.0})
    assert st.order(branch("leastrecent")) == [["2103"], ["2102"], ["2101"]]
    st.answered("2103")
    assert st.order(branch("leastrecent"))[0] == ["2102"]


def test_busy_only_when_every_phone_was_busy():
    assert DialOutcome(False, results={"a": "busy", "b": "busy"}).disposition == "busy"
    assert DialOutcome(False, results={"a": "busy", "b": "no_answer"}).disposition == "no_answer"
    assert DialOutcome(False, results={}).disposition == "no_answer"


# ------------------------------------------------------------------ dial(): requests and events

class GatedAri:
    """Records requests; the ringback and the originates wait until the test opens the gate."""

    def __init__(self):
        import asyncio

        self.sent: list[tuple[str, str]] = []
        self.gate = asyncio.Event()

        self.params: dict[str, dict] = {}

    async def request(self, method, path, **kw):
        self.sent.append((method, path))
        self.params[path] = kw.get("params") or {}
        if method == "POST" and (path == "/channels" or path.endswith("/ring") or path.endswith("/dial")):
            await self.gate.wait()
        return None


def dial_session(ari):
    """A real CallSession in the dialing state, on ``ari`` and the shipped fakes."""
    from ivr.call.session import State
    from ivr.config import routing as rt
    from ivr.testing import make_call
    from tests.paths import REPO_ROOT

    call = make_call(rt.load(REPO_ROOT / "routing.yaml"), ari=ari, app="tongdai-3", state=State.DIALING)
    s = call.session
    s.name = "PJSIP/caller-00000001"
    s.owners = call.owners  # what the dispatcher would route to this call
    return s


async def until_sent(ari, request: tuple[str, str]) -> None:
    """Wait until ``ari`` has been sent ``request``; fail the test after two seconds."""
    await wait_until(lambda: request in ari.sent, 2.0, f"{request} to be sent")


async def prepared(ari, strategy: str = "hunt", targets=("2101",)):
    """A call past route.prepare (the gate open): its session, branch, plan and created legs."""
    import asyncio

    from ivr.call.route import prepare

    ari.gate.set()
    s = dial_session(ari)
    b = branch(strategy, targets)
    plan = prepare(s, b)
    legs = list((await asyncio.wait_for(plan.created, 2)).values())
    return s, b, plan, legs


def entered(s, leg: str) -> None:
    """The leg's StasisStart, handed to the call by the step in progress (the announcement)."""
    s.unexpected({"type": "StasisStart", "channel": {"id": leg}, "args": ["leg", "c1"]})


async def test_ringing_goes_out_with_the_originates_and_the_answer_is_the_legs_stasis_start():
    """Ringback and every phone's originate leave together (one round trip after the
    announcement); a Dial ANSWER is not yet an answer: the leg can join a bridge only once
    it is in the app."""
    import asyncio

    from ivr.call.route import dial

    ari = GatedAri()
    s = dial_session(ari)
    task = asyncio.create_task(dial(s, branch("ringall", ("2101", "2102"))))
    # 2 endpoint look-ups (no AMI here), 2 originates, the ringback
    await wait_until(lambda: len(ari.sent) >= 5, 2, "five requests")
    # All three were sent while none had been answered: sent together, not one after another.
    assert sorted(p for m, p in ari.sent if m == "POST") == ["/channels", "/channels", "/channels/c1/ring"], ari.sent
    legs = sorted(s.legs)
    assert all(s.owners[leg] is s for leg in legs)  # registered before their channels exist
    ari.gate.set()
    s.queue.put_nowait({"type": "Dial", "peer": {"id": legs[1]}, "dialstatus": "RINGING"})
    s.queue.put_nowait({"type": "Dial", "peer": {"id": legs[1]}, "dialstatus": "ANSWER"})
    await wait_until(lambda: idle(s), 2, "the call to take the Dial events")
    assert not task.done()  # answered at the phone, not yet in the app
    s.queue.put_nowait({"type": "StasisStart", "channel": {"id": legs[1]}, "args": ["leg", "c1"]})
    outcome = await asyncio.wait_for(task, 2)
    assert outcome.answered and outcome.leg_id == legs[1] and outcome.extension == "2102"
    assert outcome.results == {"2102": "answered", "2101": "cancelled"}
    assert ("DELETE", f"/channels/{legs[0]}") in ari.sent  # the other phone gets CANCEL
    assert ari.sent[-1] == ("DELETE", "/channels/c1/ring")


async def test_phones_already_ringing_are_cancelled_when_the_ringback_fails():
    """The caller hangs up as the phones start ringing (the ringback request gets 404): the
    legs that were started are hung up and logged, not left ringing for nobody."""
    import asyncio

    from ivr.call.route import dial
    from ivr.pbx.ari import AriError

    class GoneCallerAri(GatedAri):
        async def request(self, method, path, **kw):
            self.sent.append((method, path))
            if path.endswith("/ring") and method == "POST":
                raise AriError(404, method, path, "Channel not found")

    ari = GoneCallerAri()
    s = dial_session(ari)
    try:
        await asyncio.wait_for(dial(s, branch("ringall", ("2101", "2102"))), 2)
    except AriError as e:
        assert e.status == 404
    else:
        raise AssertionError("the 404 must reach the call (it ends it as a caller hangup)")
    legs = sorted(s.legs)
    assert len(legs) == 2
    assert all(("DELETE", f"/channels/{leg}") in ari.sent for leg in legs)
    assert {s.legs[leg].result for leg in legs} == {"no_answer"}


async def test_prepared_phones_ring_with_one_dial_and_their_dial_answer_is_the_answer():
    """prepare() creates the first phone's channel while the caller hears the announcement (no
    INVITE: /channels/create); dial() then rings it with /dial and the ringback together, and
    the later phones of the hunt are originated as before. A created leg is in the app from the
    start, so its Dial ANSWER is the answer."""
    import asyncio

    from ivr.call.route import dial, prepare

    ari = GatedAri()
    s = dial_session(ari)
    b = branch("hunt", ("2101", "2102"))
    plan = prepare(s, b)
    created = await asyncio.wait_for(plan.created, 2)
    (leg,) = created.values()
    assert created == {"2101": leg} and s.owners[leg] is s and s.spare == {leg: False}
    assert ("POST", "/channels/create") in ari.sent and not any(p.endswith("/dial") for _, p in ari.sent)
    create = ari.params["/channels/create"]
    assert create["endpoint"] == "PJSIP/2101" and create["app"] == "tongdai-3" and create["channelId"] == leg
    # The desk phone shows the caller (tested end to end); by the caller's channel name, which
    # Asterisk finds by hash (its uniqueid only by a scan of every channel).
    assert create["originator"] == "PJSIP/caller-00000001"
    # The leg entered the app during the announcement (the announcement's step hands the event
    # to CallSession.unexpected, which marks it).
    s.unexpected({"type": "StasisStart", "channel": {"id": leg}, "args": ["leg", "c1"]})
    assert s.spare == {leg: True}
    task = asyncio.create_task(dial(s, b, plan))
    await until_sent(ari, ("POST", "/channels/c1/ring"))
    await until_sent(ari, ("POST", f"/channels/{leg}/dial"))
    assert ari.params[f"/channels/{leg}/dial"] == {"caller": "PJSIP/caller-00000001", "timeout": 20}
    assert ("POST", "/channels") not in ari.sent  # nothing originated for the first phone
    assert leg not in s.spare and leg in s.live_legs
    ari.gate.set()
    s.queue.put_nowait({"type": "Dial", "peer": {"id": leg}, "dialstatus": "RINGING"})
    s.queue.put_nowait({"type": "Dial", "peer": {"id": leg}, "dialstatus": "ANSWER"})
    outcome = await asyncio.wait_for(task, 2)
    assert outcome.answered and outcome.leg_id == leg and outcome.extension == "2101"
    assert outcome.results == {"2101": "answered"}


async def test_the_next_phone_of_a_prepared_hunt_is_originated():
    """The prepared phone is busy: the next one is originated (its StasisStart is its answer)."""
    import asyncio

    from ivr.call.route import dial, prepare

    ari = GatedAri()
    ari.gate.set()
    s = dial_session(ari)
    b = branch("hunt", ("2101", "2102"))
    plan = prepare(s, b)
    (leg,) = (await plan.created).values()
    s.unexpected({"type": "StasisStart", "channel": {"id": leg}, "args": ["leg", "c1"]})  # during the announcement
    task = asyncio.create_task(dial(s, b, plan))
    await until_sent(ari, ("POST", f"/channels/{leg}/dial"))
    s.queue.put_nowait({"type": "Dial", "peer": {"id": leg}, "dialstatus": "BUSY"})
    await until_sent(ari, ("POST", "/channels"))
    second = ari.params["/channels"]["channelId"]
    assert ari.params["/channels"]["endpoint"] == "PJSIP/2102" and ari.params["/channels"]["app"] == "tongdai-3"
    s.queue.put_nowait({"type": "StasisStart", "channel": {"id": second}, "args": ["leg", "c1"]})
    outcome = await asyncio.wait_for(task, 2)
    assert outcome.answered and outcome.extension == "2102"
    assert outcome.results == {"2101": "busy", "2102": "answered"}
    assert ("DELETE", f"/channels/{leg}") in ari.sent  # the busy leg is hung up


async def test_a_create_without_an_answer_is_hung_up_by_the_cleanup():
    """A /channels/create that times out (or whose websocket drops) may have created the channel
    all the same: dial() originates that phone instead, and the cleanup hangs up the created id
    too, so no channel is left in the app for good."""
    import asyncio

    from ivr.call.route import dial, prepare
    from ivr.pbx.ari import AriError

    class TimeoutCreateAri(GatedAri):
        async def request(self, method, path, **kw):
            if path == "/channels/create":
                self.sent.append((method, path))
                raise AriError(0, method, path, "timed out")
            return await super().request(method, path, **kw)

    ari = TimeoutCreateAri()
    ari.gate.set()
    s = dial_session(ari)
    b = branch("hunt", ("2101",))
    plan = prepare(s, b)
    assert await asyncio.wait_for(plan.created, 2) == {}
    (maybe,) = s.spare  # kept: it may exist
    task = asyncio.create_task(dial(s, b, plan))
    await until_sent(ari, ("POST", "/channels"))
    second = ari.params["/channels"]["channelId"]
    assert second != maybe and ari.params["/channels"]["endpoint"] == "PJSIP/2101"
    # The channel of the timed-out create shows up after all: swallowed, not an illegal event.
    s.queue.put_nowait({"type": "StasisStart", "channel": {"id": maybe}, "args": ["leg", "c1"]})
    s.queue.put_nowait({"type": "StasisStart", "channel": {"id": second}, "args": ["leg", "c1"]})
    outcome = await asyncio.wait_for(task, 2)
    assert outcome.answered and outcome.leg_id == second
    s.caller_gone = True
    await s.cleanup()
    assert ("DELETE", f"/channels/{maybe}") in ari.sent and s.spare == {}


async def test_a_call_cancelled_while_its_legs_are_being_created_still_hangs_them_up():
    """Shutdown (or the caller's channel vanishing) cancels the call while its first phone's
    channel is being created: the create is not abandoned half-way, and the cleanup hangs up
    the channel it made."""
    import asyncio

    from ivr.call.route import dial, prepare

    class SlowCreateAri(GatedAri):
        async def request(self, method, path, **kw):
            if path == "/channels/create":
                self.sent.append((method, path))
                await self.gate.wait()
                return None
            return await super().request(method, path, **kw)

    ari = SlowCreateAri()
    s = dial_session(ari)
    b = branch("hunt", ("2101",))
    plan = prepare(s, b)
    task = asyncio.create_task(dial(s, b, plan))
    await until_sent(ari, ("POST", "/channels/create"))  # held at the gate; dial() waits for it
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not plan.created.done()  # the create goes on
    ari.gate.set()
    s.caller_gone = True
    await asyncio.wait_for(s.cleanup(), 2)
    (leg,) = plan.created.result().values()
    assert ("DELETE", f"/channels/{leg}") in ari.sent


async def test_a_leg_given_up_on_that_enters_the_app_later_is_hung_up():
    """A phone that answers just as we cancel it (or an originate that got no answer in time)
    enters the app after we are done with it: it is hung up, not left in the app."""
    import asyncio

    from ivr.call.route import dial
    from ivr.pbx.ari import AriError

    class LostOriginateAri(GatedAri):
        async def request(self, method, path, **kw):
            if method == "POST" and path == "/channels":
                self.sent.append((method, path))
                self.params[path] = kw.get("params") or {}
                raise AriError(0, method, path, "websocket closed")
            return await super().request(method, path, **kw)

    ari = LostOriginateAri()
    ari.gate.set()
    s = dial_session(ari)
    outcome = await asyncio.wait_for(dial(s, branch("hunt", ("2101",))), 2)
    leg = ari.params["/channels"]["channelId"]
    assert not outcome.answered and outcome.results == {"2101": "unreachable"}
    assert ("DELETE", f"/channels/{leg}") in ari.sent  # in case the originate went through
    ari.sent.clear()
    s.unexpected({"type": "StasisStart", "channel": {"id": leg}, "args": ["leg", "c1"]})
    await asyncio.gather(*s.in_flight)
    assert ari.sent == [("DELETE", f"/channels/{leg}")]


async def test_ringback_starts_before_waiting_for_a_created_leg_that_is_late():
    """The announcement is over but the created leg has not entered the app yet: the caller
    hears ringback during the wait, not silence; the leg is rung once it is in."""
    import asyncio

    from ivr.call.route import dial, prepare

    ari = GatedAri()
    ari.gate.set()
    s = dial_session(ari)
    b = branch("hunt", ("2101",))
    plan = prepare(s, b)
    (leg,) = (await plan.created).values()
    task = asyncio.create_task(dial(s, b, plan))
    await until_sent(ari, ("POST", "/channels/c1/ring"))
    assert ("POST", f"/channels/{leg}/dial") not in ari.sent
    s.queue.put_nowait({"type": "StasisStart", "channel": {"id": leg}, "args": ["leg", "c1"]})
    await until_sent(ari, ("POST", f"/channels/{leg}/dial"))
    assert ari.sent.count(("POST", "/channels/c1/ring")) == 1
    s.queue.put_nowait({"type": "Dial", "peer": {"id": leg}, "dialstatus": "ANSWER"})
    outcome = await asyncio.wait_for(task, 2)
    assert outcome.answered and outcome.leg_id == leg


async def test_a_prepared_leg_rings_from_the_calls_bridge_and_only_the_caller_joins_on_answer():
    """A created leg joins the call's bridge once it is in the app, during the announcement:
    Asterisk then dials it from there instead of from its shared dial bridge. When it answers,
    only the caller is added. A leg that never entered is added with the caller, as before."""
    import asyncio

    from ivr.call import bridge
    from ivr.call.route import dial

    for enters in (True, False):
        ari = AddsAri()
        s, b, plan, (leg,) = await prepared(ari)
        assert ("POST", f"/bridges/{plan.bridge}") in ari.sent and plan.bridge in s.bridges
        assert ari.adds == []  # not before the leg is in the app (Asterisk would refuse it)
        if enters:
            entered(s, leg)
            assert await asyncio.wait_for(plan.joined[leg], 2) is True
            assert ari.adds == [leg]
        else:
            s.spare[leg] = True  # dial() must not wait for it here; the join has given up
            s._entering.pop(leg).set_result(False)
            assert await asyncio.wait_for(plan.joined[leg], 2) is False
        task = asyncio.create_task(dial(s, b, plan))
        await until_sent(ari, ("POST", f"/channels/{leg}/dial"))
        s.queue.put_nowait({"type": "Dial", "peer": {"id": leg}, "dialstatus": "ANSWER"})
        outcome = await asyncio.wait_for(task, 2)
        assert outcome.answered and outcome.leg_id == leg
        talk = asyncio.create_task(bridge.run(s, leg, "2101", plan))
        s.queue.put_nowait({"type": "ChannelDestroyed", "channel": {"id": leg}})
        assert await asyncio.wait_for(talk, 2) == "agent"
        assert ari.adds == ([leg, "c1"] if enters else [f"c1,{leg}"])
        assert sum(1 for m, p in ari.sent if m == "POST" and p.startswith("/bridges/") and p.count("/") == 2) == 1


class AddsAri(GatedAri):
    """Also records what each addChannel adds, and can hold the bridge's creation back."""

    def __init__(self):
        import asyncio

        super().__init__()
        self.adds: list[str] = []
        self.bridge_gate = asyncio.Event()
        self.bridge_gate.set()

    async def request(self, method, path, **kw):
        if method == "POST" and path.startswith("/bridges/") and path.count("/") == 2:
            await self.bridge_gate.wait()
        if path.endswith("/addChannel"):
            self.adds.append((kw.get("params") or {})["channel"])
        return await super().request(method, path, **kw)


async def test_the_cleanup_does_not_wait_for_a_leg_that_never_enters():
    """The caller leaves during the announcement before the created leg is in the app: the
    cleanup ends the join's wait at once instead of after its timeout."""
    import asyncio

    ari = GatedAri()
    s, _, plan, (leg,) = await prepared(ari)
    await wait_until(lambda: leg in s._entering, 2, "the join to wait for the leg's StasisStart")
    s.caller_gone = True
    await asyncio.wait_for(s.cleanup(), 1)  # well under the join's 5 s
    assert plan.joined[leg].result() is False
    assert ("DELETE", f"/channels/{leg}") in ari.sent and ("DELETE", f"/bridges/{plan.bridge}") in ari.sent


async def test_phones_rung_together_do_not_wait_in_the_calls_bridge():
    """Ringall: the legs ring from Asterisk's dial bridge, not the call's (two desks answering at
    once must not hear each other), and the one that answers joins with the caller."""

    ari = GatedAri()
    s, _, plan, legs = await prepared(ari, "ringall", ("2101", "2102"))
    assert len(legs) == 2 and plan.joined == {}
    for leg in legs:
        entered(s, leg)
    await wait_until(lambda: not s.in_flight, 2, "the call's background requests to end")
    assert not any(p.endswith("/addChannel") for _, p in ari.sent)


async def test_a_bridge_made_after_the_leg_rings_is_not_waited_for():
    """The call's bridge is made only after the announcement, when the leg rings already: the
    join gives up at once (no wait for a StasisStart that came long ago), and on answer the leg
    and the caller are added together. A branch that did not answer gets its bridge destroyed."""
    import asyncio

    from ivr.call import bridge
    from ivr.call.route import dial, release

    ari = AddsAri()
    ari.bridge_gate.clear()
    s, b, plan, (leg,) = await prepared(ari)
    entered(s, leg)
    task = asyncio.create_task(dial(s, b, plan))
    await until_sent(ari, ("POST", f"/channels/{leg}/dial"))
    ari.bridge_gate.set()  # the bridge exists only now
    assert await asyncio.wait_for(plan.joined[leg], 0.5) is False
    s.queue.put_nowait({"type": "Dial", "peer": {"id": leg}, "dialstatus": "ANSWER"})
    outcome = await asyncio.wait_for(task, 2)
    talk = asyncio.create_task(bridge.run(s, leg, "2101", plan))
    s.queue.put_nowait({"type": "ChannelDestroyed", "channel": {"id": leg}})
    assert await asyncio.wait_for(talk, 2) == "agent" and outcome.answered
    assert ari.adds == [f"c1,{leg}"]
    release(s, plan)
    assert plan.bridge not in s.bridges
    await asyncio.wait_for(s.cleanup(), 2)
    assert ("DELETE", f"/bridges/{plan.bridge}") in ari.sent


async def test_a_branch_that_did_not_answer_gives_its_bridge_back():
    """dial() destroys the prepared bridge of a branch nobody answered, not the call's cleanup."""
    import asyncio

    from ivr.call.route import dial

    ari = GatedAri()
    s, b, plan, (leg,) = await prepared(ari)
    entered(s, leg)
    task = asyncio.create_task(dial(s, b, plan))
    await until_sent(ari, ("POST", f"/channels/{leg}/dial"))
    s.queue.put_nowait({"type": "Dial", "peer": {"id": leg}, "dialstatus": "BUSY"})
    outcome = await asyncio.wait_for(task, 2)
    assert not outcome.answered and plan.bridge not in s.bridges
    await asyncio.wait_for(asyncio.gather(*s.in_flight), 2)
    assert ("DELETE", f"/bridges/{plan.bridge}") in ari.sent
