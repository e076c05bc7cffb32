"""`tongdai render`: complete, deterministic Asterisk config with stable generated secrets."""

from __future__ import annotations

import re
import stat

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import credentials as sec_mod
from ivr.config import routing as rt
from ivr.dialplan import render as rd
from ivr.pbx.asterisk import Layout
from tests.paths import REPO_ROOT

ROUTING = rt.load(REPO_ROOT / "routing.yaml")


def _render(settings):
    sec = sec_mod.load(settings.secrets_path, list(ROUTING.extensions))
    return rd.render(ROUTING, settings, sec, Layout.for_settings(settings)), sec


def test_render_is_deterministic_and_secrets_are_kept(settings_factory):
    s = settings_factory()
    first, sec1 = _render(s)
    second, sec2 = _render(s)
    assert first == second
    assert sec1.data == sec2.data
    assert stat.S_IMODE(s.secrets_path.stat().st_mode) == 0o600
    pw = [sec1.sip_password(e) for e in ROUTING.extensions] + [sec1.ari_password, sec1.ami_password]
    assert all(len(p) >= 20 for p in pw) and len(set(pw)) == len(pw)
    for name in ("asterisk.conf", "modules.conf", "pjsip.conf", "extensions.conf", "rtp.conf", "http.conf",
                 "ari.conf", "manager.conf", "logger.conf", "musiconhold.conf"):
        assert name in first


def test_pjsip_has_every_extension_and_a_trunk(settings_factory):
    files, sec = _render(settings_factory(TONGDAI_SIP_PORT="5999"))
    pj = files["pjsip.conf"]
    assert "bind = 127.0.0.1:5999" in pj
    assert "endpoint_identifier_order = username,ip,anonymous" in pj
    endpoints = re.findall(r"^\[(\d+)\]\(phone-endpoint\)$", pj, re.M)
    assert endpoints == list(ROUTING.extensions)
    for ext in ROUTING.extensions:
        assert f"username = {ext}\npassword = {sec.sip_password(ext)}\n" in pj
        assert f"[{ext}](phone-aor)" in pj
    assert "[trunk-identify]" in pj and "match = 127.0.0.1" in pj
    # Desk phones are qualified, so one unplugged without unregistering is seen unreachable.
    aor = pj.split("[phone-aor](!)")[1].split("\n[")[0]
    assert re.search(r"^qualify_frequency = (\d+)$", aor, re.M)
    assert 0 < int(re.search(r"^qualify_frequency = (\d+)$", aor, re.M).group(1)) <= 60


def test_dialplan_hands_hotline_to_stasis_and_has_a_fallback(settings_factory):
    files, _ = _render(settings_factory())
    ex = files["extensions.conf"]
    trunk = ex.split("[from-trunk]")[1].split("\n[")[0]
    assert "exten => 1022,1,Goto(hotline,s,1)" in trunk
    assert "Hangup(1)" in trunk  # anything else from the trunk is refused
    assert "[hotline-fallback]" in ex
    # Calls are spread over the controller's ARI applications (one Asterisk thread each).
    hotline = ex.split("[hotline]")[1].split("\n[")[0]
    assert "Set(LANE=${RAND(1,4)})" in hotline and "Stasis(tongdai${IF($[${LANE} > 1]?-${LANE})})" in hotline
    assert settings_factory().ari_apps == ["tongdai", "tongdai-2", "tongdai-3", "tongdai-4"]
    for ext in ROUTING.extensions:
        assert f"exten => {ext},1,Gosub(dial-station,s,1({ext}))" in ex
    one, _ = _render(settings_factory(TONGDAI_ARI_LANES="1"))
    assert "Stasis(tongdai)" in one["extensions.conf"] and "LANE" not in one["extensions.conf"]
    with pytest.raises(SystemExit, match="TONGDAI_ARI_LANES"):
        settings_factory(TONGDAI_ARI_LANES="0")


def test_services_listen_on_loopback_only(settings_factory):
    files, sec = _render(settings_factory())
    assert "bindaddr = 127.0.0.1" in files["http.conf"]
    assert "bindaddr = 127.0.0.1" in files["manager.conf"]
    assert "permit = 127.0.0.1/255.255.255.255" in files["manager.conf"]
    assert f"password = {sec.ari_password}" in files["ari.conf"]
    noload = set(re.findall(r"^noload => (\S+)$", files["modules.conf"], re.M))
    for m in ("chan_iax2.so", "res_pjsip_stir_shaken.so", "res_stir_shaken.so", "chan_sip.so", "pbx_dundi.so"):
        assert m in noload


def test_render_cli_writes_files_and_reports_changes(settings_factory, tmp_path):
    s = settings_factory()
    env = {"TONGDAI_HOME": str(s.home), "TONGDAI_ASTERISK": "sandbox"}
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["render", "--out", str(out)], env=env)
    assert res.exit_code == 0, res.output
    assert (out / "pjsip.conf").exists() and stat.S_IMODE((out / "pjsip.conf").stat().st_mode) == 0o640
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = CliRunner().invoke(main, ["render", "--out", str(out)], env=env)
    assert "0 tệp thay đổi" in res.output
    assert before == {p.name: p.read_bytes() for p in out.iterdir()}


def test_credentials_and_sheet(settings_factory):
    s = settings_factory()
    env = {"TONGDAI_HOME": str(s.home), "TONGDAI_ASTERISK": "sandbox", "TONGDAI_SIP_PORT": "5071"}
    res = CliRunner().invoke(main, ["extensions", "credentials", "2401", "--json"], env=env)
    assert res.exit_code == 0, res.output
    import json

    c = json.loads(res.output)
    assert c["username"] == "2401" and c["sip_port"] == 5071 and len(c["password"]) >= 20
    sheet = CliRunner().invoke(main, ["extensions", "sheet", "--format", "csv"], env=env)
    lines = sheet.output.strip().splitlines()
    assert lines[0].startswith("extension,name,agency_code")
    assert len(lines) == 1 + len(ROUTING.extensions)
    assert any(ln.startswith("2401,") and c["password"] in ln for ln in lines)
    bad = CliRunner().invoke(main, ["extensions", "credentials", "9999"], env=env)
    assert bad.exit_code == 2 and "9999" in bad.output


async def test_ami_event_filter_lets_through_exactly_what_presence_and_guard_listen_to(settings_factory, tmp_path):
    from ivr.pbx.guard import Guard
    from ivr.pbx.presence import Presence

    files, _ = _render(settings_factory())
    [line] = [ln for ln in files["manager.conf"].splitlines() if ln.startswith("eventfilter")]
    # Asterisk matches the POSIX regex against the whole event text, "Event: <name>\r\n...".
    pattern = re.compile(line.split("=", 1)[1].strip().replace("[[:space:]]", r"\s"))
    presence = Presence("127.0.0.1", 1, "u", "p", lambda: ROUTING)
    Guard(presence, lambda: ROUTING, tmp_path)
    listened = set(presence.manager.callbacks) - {"*"}
    assert listened >= {"ContactStatus", "DeviceStateChange", "InvalidPassword"}
    for name in listened:
        assert pattern.match(f"Event: {name}\r\nPrivilege: system,all\r\n"), name
    for name in ("Newchannel", "VarSet", "Newexten", "Hangup", "ContactStatusDetail", "DeviceStateChangeX"):
        assert not pattern.match(f"Event: {name}\r\nPrivilege: call,all\r\n"), name


def test_an_outbound_trunk_only_with_tongdai_trunk_out(settings_factory):
    files, _ = _render(settings_factory())
    assert "[trunk-out]" not in files["pjsip.conf"]
    files, _ = _render(settings_factory(TONGDAI_TRUNK_OUT="127.0.0.1:5070"))
    pj = files["pjsip.conf"]
    endpoint = pj.split("[trunk-out]\ntype = endpoint")[1].split("\n[")[0]
    assert "aors = trunk-out" in endpoint and "context = from-trunk" in endpoint
    assert "[trunk-out]\ntype = aor\ncontact = sip:127.0.0.1:5070\n" in pj


@pytest.mark.parametrize("raw", ["5070", "host:port", "a b:5060", "host:0", "x;y=z:5060"])
def test_a_bad_tongdai_trunk_out_is_refused(settings_factory, raw):
    with pytest.raises(SystemExit, match="TONGDAI_TRUNK_OUT"):
        settings_factory(TONGDAI_TRUNK_OUT=raw)
