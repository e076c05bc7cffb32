"""Issue 25: a desk phone in a call (or ringing for one) is never rung for another hotline call,
whether the controller bridged that call or AMI says the phone is in use (a private call)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ivr.call.dispatcher import Controller
from ivr.call.route import DialOutcome, dial
from ivr.call.session import State
from ivr.config import routing as rt
from ivr.config.routing import Branch
from ivr.config.settings import Settings
from ivr.pbx.presence import Presence
from ivr.records.calllog import LegRecord, utcnow
from ivr.testing import FakeAri, FakeCallLog, make_call, wait_until
from tests.paths import REPO_ROOT

ROUTING = rt.load(REPO_ROOT / "routing.yaml")


def branch(strategy: str, targets=("2101", "2102", "2103")) -> Branch:
    return Branch("1", "x", "SNV", tuple(targets), strategy, 20, "complaint")


class Ari(FakeAri):
    """FakeAri that also keeps which phone each originate was for."""

    def __init__(self) -> None:
        super().__init__()
        self.endpoints: list[str] = []

    async def request(self, method, path, **kw):
        if method == "POST" and path == "/channels":
            self.endpoints.append(kw["params"]["endpoint"])
        return await super().request(method, path, **kw)


def controller(settings_factory, **env) -> Controller:
    settings = Settings.from_env({**settings_factory().env, **env})
    return Controller(settings, ROUTING, Ari(), FakeCallLog())  # type: ignore[arg-type]


def call(ctl: Controller, cid: str):
    c = make_call(ROUTING, ari=ctl.ari, channel_id=cid, state=State.DIALING, busy=ctl._busy,
                  reachable=ctl._reachable)  # type: ignore[arg-type]
    c.session.name = f"PJSIP/caller-{cid}"
    ctl.sessions[cid] = c.session
    return c


def talking(session, ext: str) -> None:
    """The session is bridged with ``ext`` (its answered leg is live)."""
    leg = LegRecord(channel_id=f"{session.id}-leg9", extension=ext, started_at=utcnow(), result="answered")
    session.legs[leg.channel_id] = leg
    session.live_legs.add(leg.channel_id)


def originated(ari) -> list[str]:
    return ari.endpoints


async def test_a_phone_bridged_by_another_call_is_skipped_as_busy(settings_factory):
    ctl = controller(settings_factory)
    first, second = call(ctl, "c1"), call(ctl, "c2")
    talking(first.session, "2101")
    assert ctl._busy("2101", second.session) and not ctl._busy("2101", first.session)
    task = asyncio.create_task(dial(second.session, branch("ringall")))
    await wait_until(lambda: len(originated(ctl.ari)) == 2, 2, "two originates")
    assert sorted(originated(ctl.ari)) == ["PJSIP/2102", "PJSIP/2103"]  # never an INVITE to 2101
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    skipped = [leg for leg in second.session.rec.legs if leg.extension == "2101"]
    assert [(leg.result, (leg.ended_at - leg.started_at).total_seconds() < 0.1) for leg in skipped] == [("busy", True)]
    assert any(e[1] == "dial_result" and e[2] == {"extension": "2101", "result": "busy", "skipped": True}
               for e in second.session.rec.events)


async def test_every_phone_busy_is_a_busy_outcome_without_ringing(settings_factory):
    ctl = controller(settings_factory)
    first, second = call(ctl, "c1"), call(ctl, "c2")
    talking(first.session, "2101")
    presence = SimpleNamespace(in_use=lambda ext: ext == "2102", reachable=lambda ext: ext != "2103")
    ctl.presence = presence  # type: ignore[assignment]
    outcome = await asyncio.wait_for(dial(second.session, branch("hunt")), 2)
    assert not outcome.answered
    assert outcome.results == {"2101": "busy", "2102": "busy", "2103": "unreachable"}
    assert outcome.disposition == "busy"  # the absent phone says nothing about the branch
    assert originated(ctl.ari) == []


async def test_two_calls_dialling_at_once_never_take_the_same_phone(settings_factory):
    """The busy check and the claim are one step: the second call sees the first's phones as
    taken even before their channels exist."""
    ctl = controller(settings_factory)
    ari = ctl.ari
    ari.gate = lambda m, p: m == "POST" and p == "/channels"  # the originates hang: a slow Asterisk
    first, second = call(ctl, "c1"), call(ctl, "c2")
    b = branch("ringall", ("2101", "2102"))
    t1 = asyncio.create_task(dial(first.session, b))
    t2 = asyncio.create_task(dial(second.session, b))
    out2 = await asyncio.wait_for(t2, 2)
    assert out2.results == {"2101": "busy", "2102": "busy"}
    assert sorted(originated(ari)) == ["PJSIP/2101", "PJSIP/2102"]  # the first call's, only
    t1.cancel()
    await asyncio.gather(t1, return_exceptions=True)
    ari.open()


async def test_a_phone_free_again_is_rung(settings_factory):
    ctl = controller(settings_factory)
    first, second = call(ctl, "c1"), call(ctl, "c2")
    talking(first.session, "2101")
    first.session.live_legs.clear()  # the desk hung up
    assert not ctl._busy("2101", second.session)
    del ctl.sessions["c1"]
    assert not ctl._busy("2101", second.session)


async def test_call_waiting_setting_rings_busy_phones(settings_factory):
    ctl = controller(settings_factory, TONGDAI_CALL_WAITING="1")
    first, second = call(ctl, "c1"), call(ctl, "c2")
    talking(first.session, "2101")
    assert not ctl._busy("2101", second.session)


def test_presence_in_use_follows_ami_device_state():
    routing = SimpleNamespace(extensions={"2401": SimpleNamespace(agency="SNV")})
    p = Presence("127.0.0.1", 1, "u", "s", lambda: routing)
    p.connected = True
    for state, busy in (("INUSE", True), ("RINGING", True), ("ONHOLD", True), ("BUSY", True),
                        ("NOT_INUSE", False), ("UNAVAILABLE", False), ("UNKNOWN", False)):
        p._on_device_state(p.manager, {"Event": "DeviceStateChange", "Device": "PJSIP/2401", "State": state})
        assert p.in_use("2401") is busy, state
    p._on_device_state(p.manager, {"Event": "DeviceStateChange", "Device": "PJSIP/2401", "State": "INUSE"})
    p.connected = False  # AMI down: the controller's own calls still count, AMI's word does not
    assert p.in_use("2401") is False
    assert p.in_use("9999") is False


def test_busy_disposition_ignores_absent_phones():
    assert DialOutcome(False, results={"a": "busy", "b": "unreachable"}).disposition == "busy"
    assert DialOutcome(False, results={"a": "unreachable"}).disposition == "no_answer"
    assert DialOutcome(False, results={"a": "busy", "b": "no_answer"}).disposition == "no_answer"
