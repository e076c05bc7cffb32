"""A restarted controller takes over the calls its predecessor left in Asterisk: a bridged call
goes on and is logged when it ends; a call in the menu gets the apology; a leg without its
caller is hung up."""

from __future__ import annotations

import datetime as dt

from ivr.call import adopt
from ivr.call.dispatcher import Controller
from ivr.call.session import State
from ivr.config import routing as rt
from ivr.testing import FakeAri, FakeCallLog, wait_until
from tests.paths import REPO_ROOT


def channel(cid: str, app: str = "tongdai", args: str = "", state: str = "Up", name: str = "PJSIP/trunk-00000001") -> dict:
    return {"id": cid, "name": name, "state": state, "caller": {"number": "0909123456", "name": ""},
            "creationtime": (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
            "dialplan": {"context": "hotline", "exten": "s", "priority": 7, "app_name": "Stasis",
                         "app_data": app + (f",{args}" if args else "")}}


def asterisk_with_orphans() -> FakeAri:
    ari = FakeAri()
    ari.responses[("GET", "/channels")] = [
        channel("c1", "tongdai-2"),  # bridged with its desk phone
        channel("c1-leg1", "tongdai-2", "leg,c1", name="PJSIP/2401-0000002a"),
        channel("c2", "tongdai", "held,1796700000.000"),  # in the menu, one desk phone ringing
        channel("c2-leg1", "tongdai", "leg,c2", state="Ringing", name="PJSIP/2402-0000002b"),
        channel("c3-leg2", "tongdai-3", "leg,c3", name="PJSIP/2403-0000002c"),  # its caller is gone
        channel("x9", "someone-else"),  # not ours
        channel("cb4-1-1796700000-agent1", "tongdai", "callback,4", name="PJSIP/2404-0000002d"),  # a callback's
        channel("c5", "tongdai"),  # a call this controller has already
    ]
    ari.responses[("GET", "/bridges")] = [
        {"id": "c1-br2", "name": "call-c1", "channels": ["c1", "c1-leg1"], "creationtime": "2026-12-08T01:00:05.000+0000"},
        {"id": "c2-br2", "name": "call-c2", "channels": ["c2-leg1"]},
    ]
    return ari


async def test_find_sorts_what_asterisk_has():
    found = await adopt.find(asterisk_with_orphans(), ["tongdai", "tongdai-2", "tongdai-3"], {"c5"})
    calls = {o.channel["id"]: o for o in found.calls}
    assert set(calls) == {"c1", "c2"}
    assert calls["c1"].talking["id"] == "c1-leg1" and calls["c1"].app == "tongdai-2"
    assert calls["c2"].talking is None and [leg["id"] for leg in calls["c2"].legs] == ["c2-leg1"]
    assert [b["id"] for b in calls["c2"].bridges] == ["c2-br2"]
    assert found.stray_legs == ["cb4-1-1796700000-agent1", "c3-leg2"]  # a callback is no caller to adopt


async def test_nothing_to_find_costs_one_request():
    ari = FakeAri()
    ari.responses[("GET", "/channels")] = [channel("c5")]
    found = await adopt.find(ari, ["tongdai"], {"c5"})
    assert found.calls == [] and found.stray_legs == [] and ari.sent == [("GET", "/channels")]


async def test_the_controller_takes_over_and_ends_them_cleanly(settings_factory):
    ari = asterisk_with_orphans()
    log = FakeCallLog()
    ctl = Controller(settings_factory(), rt.load(REPO_ROOT / "routing.yaml"), ari, log, strict=True)
    ctl.owners["c5"] = object()  # type: ignore[assignment]
    assert await ctl.adopt_orphans() == 2
    talk, menu = ctl.sessions["c1"], ctl.sessions["c2"]
    assert talk.state is State.BRIDGED and talk.rec.answered_by == "2401" and talk.app == "tongdai-2"
    assert ctl.owners["c1-leg1"] is talk and ctl.owners["c2-leg1"] is menu
    await wait_until(lambda: ("DELETE", "/channels/c3-leg2") in ari.sent, 2, "the stray leg hung up")
    # The call in the menu: its desk phone and bridge go, then the apology, then the hang-up.
    await wait_until(lambda: menu.playback_id, 2, "the apology")
    assert ("DELETE", "/channels/c2-leg1") in ari.sent and ("DELETE", "/bridges/c2-br2") in ari.sent
    assert "sound:tongdai/sorry" in str(ari.params[ari.requests("POST", "/channels/c2/play")[-1]])
    menu.queue.put_nowait({"type": "PlaybackFinished", "playback": {"id": menu.playback_id}})
    # The bridged call goes on until the caller hangs up.
    talk.queue.put_nowait({"type": "StasisEnd", "channel": {"id": "c1"}})
    await wait_until(lambda: len(log.closed_records) == 2, 5, "both calls to end")
    recs = {r.id: r for r in log.closed_records}
    assert recs["c1"].disposition == "answered" and recs["c1"].hangup_by == "caller"
    assert 29 < recs["c1"].talk_s < 40  # from the leg's creation: the database had no row
    assert [e[1] for e in recs["c1"].events][:2] == ["adopted", "answer_time_estimated"]
    assert recs["c2"].disposition == "interrupted" and recs["c2"].hangup_by == "system"
    assert ("DELETE", "/channels/c2") in ari.sent
    assert ctl.sessions == {}
