"""Issue: the rendered config runs a real Asterisk; real SIP phones register and call.

Every test here drives the sandbox (or native) Asterisk over real SIP with SIPp peers.
"""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from ivr.pbx import sipp
from ivr.pbx.ari import Ari, AriError
from ivr.testing import wait_until

from .conftest import basic_auth, rtp_both_ways

pytestmark = pytest.mark.e2e


def test_config_loads_without_errors_and_lists_every_extension(pbx):
    assert pbx.error_lines() == []
    out = pbx.rx("pjsip show endpoints")
    listed = set(re.findall(r"^\s*Endpoint:\s+(\S+?)(?:/\S*)?\s", out, re.M))
    assert set(pbx.routing.extensions) <= listed
    assert "trunk" in listed
    assert len(pbx.routing.extensions) >= 100
    # chan_iax2 is not loaded (it would listen on 0.0.0.0:4569)
    assert "chan_iax2" not in pbx.rx("module show like chan_iax2").split("\n", 1)[-1].split("modules loaded")[0]


async def test_desk_phone_registers_and_wrong_password_is_rejected(pbx):
    ext = "2401"
    good = await sipp.register(**pbx.peer(), user=ext, password=pbx.secrets.sip_password(ext))
    assert good == 200
    contacts = pbx.rx(f"pjsip show aor {ext}")
    assert "Contact:" in contacts and f"{ext}/sip:" in contacts
    bad = await sipp.register(**pbx.peer(), user=ext, password="definitely-not-the-password")
    assert bad in (401, 403)
    # and the right one removes the binding again
    assert await sipp.register(**pbx.peer(), user=ext, password=pbx.secrets.sip_password(ext), expires=0) == 200


async def test_station_calls_station_with_audio_both_ways(pbx):
    caller, callee = "3002", "3005"  # Sở Nội vụ calls Sở Thông tin và Truyền thông
    async with sipp.DeskPhone(**pbx.peer(), user=callee, password=pbx.secrets.sip_password(callee), mode="answer") as phone:
        call = asyncio.create_task(sipp.call(
            **pbx.peer(), to=callee, from_user=caller, password=pbx.secrets.sip_password(caller), hold_ms=4000,
        ))
        # RTP both ways: each leg of the call receives and transmits packets.
        await rtp_both_ways(pbx, {caller, callee}, 4.0)
        result = await call
        await wait_until(lambda: phone.stats().byes_received, 5, "the BYE at the desk phone")
        st = phone.stats()
    assert result.final_status == 200 and result.answered, result
    assert result.hung_up_by == "caller"
    assert st.invites_received == 1 and st.answered == 1 and st.byes_received == 1


async def test_hotline_call_from_trunk_enters_stasis(pbx, no_controller):
    s = pbx.settings
    auth = basic_auth(pbx.secrets.ari_user, pbx.secrets.ari_password)
    base = f"http://127.0.0.1:{s.ari_port}/ari"
    apps = ",".join(s.ari_apps)  # every lane: the dialplan picks one per call
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.ws_connect(f"ws://127.0.0.1:{s.ari_port}/ari/events?app={apps}&subscribeAll=false") as ws:
            call = asyncio.create_task(sipp.call(**pbx.peer(), to=pbx.routing.hotline.number, from_user="0901234567",
                                                 hold_ms=20000, timeout=40))
            start = None
            async with asyncio.timeout(15):
                async for msg in ws:
                    ev = json.loads(msg.data)
                    if ev.get("type") == "StasisStart":
                        start = ev
                        break
            assert start is not None
            ch = start["channel"]
            assert ch["caller"]["number"] == "0901234567"
            assert ch["dialplan"]["exten"] in ("s", pbx.routing.hotline.number)
            assert ch["language"] == "vi"
            async with http.delete(f"{base}/channels/{ch['id']}") as r:
                assert r.status == 204
            result = await call
    assert result.final_status != 200 or result.hung_up_by == "callee"


async def test_a_controller_with_fewer_lanes_still_gets_every_call(pbx, no_controller):
    """The dialplan spreads calls over the lanes it was rendered for; a controller that registers
    only the first (an older one, or fewer TONGDAI_ARI_LANES, before the next render) still gets
    every call instead of some callers hearing the apology."""
    s = pbx.settings
    assert s.ari_lanes > 1
    auth = basic_auth(pbx.secrets.ari_user, pbx.secrets.ari_password)
    base = f"http://127.0.0.1:{s.ari_port}/ari"
    lanes = []
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.ws_connect(f"ws://127.0.0.1:{s.ari_port}/ari/events?app={s.ari_app}&subscribeAll=false") as ws:
            # The lane is random: call until one picked another lane (1 in 4**12 that none does).
            for n in range(12):
                call = asyncio.create_task(sipp.call(**pbx.peer(), to=pbx.routing.hotline.number,
                                                     from_user=f"090100{n:04d}", hold_ms=20000, timeout=40))
                async with asyncio.timeout(15):
                    async for msg in ws:
                        ev = json.loads(msg.data)
                        if ev.get("type") == "StasisStart":
                            break
                cid = ev["channel"]["id"]
                assert ev["application"] == s.ari_app
                async with http.get(f"{base}/channels/{cid}/variable", params={"variable": "LANE"}) as r:
                    lanes.append(int((await r.json())["value"]))
                async with http.delete(f"{base}/channels/{cid}") as r:
                    assert r.status == 204
                await call
                if lanes[-1] > 1:
                    break
    assert lanes[-1] > 1, lanes


async def test_trunk_may_only_call_the_hotline(pbx):
    result = await sipp.call(**pbx.peer(), to="3002", from_user="0901234567", hold_ms=500, timeout=15)
    assert not result.answered and result.final_status in (403, 404), result


async def test_hotline_without_controller_falls_back(pbx, no_controller):
    # No ARI app connected: Stasis fails and the fallback context answers and hangs up.
    result = await sipp.call(**pbx.peer(), to=pbx.routing.hotline.number, from_user="0907654321",
                             hold_ms=15000, wait_for_bye_ms=10000, timeout=30)
    assert result.hung_up_by == "callee" or not result.answered, result


async def test_station_dials_the_hotline_internally(pbx, no_controller):
    # A desk phone (digest auth) dialling 1022 enters the hotline; with no controller yet,
    # the fallback context answers and hangs up.
    ext = "4101"
    result = await sipp.call(**pbx.peer(), to=pbx.routing.hotline.number, from_user=ext,
                             password=pbx.secrets.sip_password(ext), hold_ms=15000, wait_for_bye_ms=10000, timeout=30)
    assert result.answered and result.hung_up_by == "callee", result
    assert "Hotline fallback for 4101" in pbx.layout.log_file.read_text()


@pytest.mark.parametrize("over_websocket", [True, False], ids=["websocket", "http"])
async def test_ari_requests_give_the_same_answers_over_both_transports(pbx, over_websocket):
    """REST over the event websocket (Asterisk 22.4+) and over HTTP: same results, same errors."""
    app = "tongdai-transport-test"
    async with Ari("127.0.0.1", pbx.settings.ari_port, pbx.secrets.ari_user, pbx.secrets.ari_password, app) as ari:
        ari.use_ws_rest = over_websocket
        runner = asyncio.create_task(ari.run(lambda ev: None))
        try:
            await asyncio.wait_for(ari.connected.wait(), 10)
            assert ari.ws_rest is over_websocket
            assert (await ari.request("GET", "/asterisk/ping"))["ping"] == "pong"
            bid = f"transport-{int(over_websocket)}"
            name = "a b/c&d=é"  # query values that need escaping
            made = await ari.request("POST", f"/bridges/{bid}", params={"type": "mixing", "name": name})
            assert (made["id"], made["name"]) == (bid, name)
            assert (await ari.request("GET", f"/bridges/{bid}"))["name"] == name
            filt = await ari.request("PUT", f"/applications/{app}/eventFilter",
                                     body={"disallowed": [{"type": "ChannelVarset"}]})
            assert filt["events_disallowed"] == [{"type": "ChannelVarset"}]
            assert await ari.request("DELETE", f"/bridges/{bid}") is None
            # DELETE answers before Asterisk has finished tearing the bridge down: a request in
            # that window (here on another websocket) gets 409 "Bridge not in Stasis
            # application" (seen once in CI). Wait until it is gone, then check the 404 path.
            async def gone() -> bool:
                return await ari.request("GET", f"/bridges/{bid}", ok_missing=True) is None

            await wait_until(gone, 2, "the bridge to be gone", interval=0.02)
            assert await ari.request("DELETE", f"/bridges/{bid}", ok_missing=True) is None
            with pytest.raises(AriError) as gone:
                await ari.request("DELETE", f"/bridges/{bid}")
            assert (gone.value.status, str(gone.value).endswith("Bridge not found")) == (404, True)
            with pytest.raises(AriError) as bad:
                await ari.request("POST", "/channels/no-such-channel/answer")
            assert bad.value.status == 404 and bad.value.path == "/channels/no-such-channel/answer"
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
