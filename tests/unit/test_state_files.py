"""State files (hours override, secrets.json, Zalo tokens) are checked when read: a file that
cannot be used is reported with how to fix it, never left to crash the next command or the
controller; and no command writes one that cannot be read back."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import credentials as sec_mod
from ivr.config import hours as cal
from ivr.config import routing as rt
from ivr.zalo.tokens import TokenStore
from tests.paths import REPO_ROOT

ROUTING = rt.load(REPO_ROOT / "routing.yaml")


def _env(tmp_path, **more):
    return {"TONGDAI_HOME": str(tmp_path / "home"), "TONGDAI_ASTERISK": "sandbox", **more}


def run(tmp_path, *args, **env):
    return CliRunner().invoke(main, list(args), env=_env(tmp_path, **env))


# ------------------------------------------------------------------------------ hours override


@pytest.mark.parametrize("until", ["9999-12-31T23:59+00:00", "9999-12-31 23:59", "9999-12-31", "2999-01-01"])
def test_an_override_beyond_a_year_is_refused_and_nothing_is_written(tmp_path, until):
    res = run(tmp_path, "hours", "closed", "--until", until)
    assert res.exit_code == 2 and "quá xa" in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "home" / "hours-override.json").exists()
    assert run(tmp_path, "check").exit_code == 0


@pytest.mark.parametrize("content,reason", [
    ({"mode": "closed", "until": "2026-12-01T10:00", "set_at": "2026-11-28T03:00:00+00:00"}, "không ghi múi giờ"),
    ({"mode": "closed", "until": "9999-12-31T23:59:00+00:00", "set_at": "2026-11-28T03:00:00+00:00"}, "ngoài khoảng"),
    ({"mode": "shut", "until": None, "set_at": "2026-11-28T03:00:00+00:00"}, "'mode' phải là open hoặc closed"),
    ({"mode": "open", "until": None}, "thiếu 'set_at'"),
    ([1, 2], "không phải một đối tượng JSON"),
    ("{not json", "không phải JSON hợp lệ"),
    ("[" * 100000, "không phải JSON hợp lệ"),
])
def test_a_hand_edited_override_is_reported_and_the_schedule_applies(tmp_path, content, reason):
    path = tmp_path / "home" / "hours-override.json"
    path.parent.mkdir(parents=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    # What the controller asks on every call: the schedule, and the problem, no exception.
    monday_9am = dt.datetime(2026, 11, 30, 2, tzinfo=dt.timezone.utc)
    st = cal.state(ROUTING, path, monday_9am)
    assert st.open and st.reason == "trong giờ làm việc" and reason in st.problem and "tongdai hours auto" in st.problem
    res = run(tmp_path, "check")
    assert res.exit_code == 0 and "Traceback" not in res.output
    assert f"cảnh báo: tệp {path}" in res.stderr and reason in res.stderr and "`tongdai hours auto`" in res.stderr
    res = run(tmp_path, "hours", "auto")
    assert res.exit_code == 0 and not path.exists() and "cảnh báo" not in res.output
    assert "cảnh báo" not in run(tmp_path, "check").stderr


def test_write_override_refuses_what_it_could_not_read_back(tmp_path):
    now = dt.datetime(2026, 11, 28, 3, tzinfo=dt.timezone.utc)
    path = tmp_path / "o.json"
    for until in (dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone.utc), dt.datetime(2026, 12, 1, 10),
                  now - dt.timedelta(hours=1)):
        with pytest.raises(ValueError):
            cal.write_override(path, "closed", until, now)
    assert not path.exists()
    cal.write_override(path, "closed", now + dt.timedelta(days=366), now)
    assert cal.read_override(path).until == now + dt.timedelta(days=366)


# --------------------------------------------------------------------------------- secrets.json


@pytest.mark.parametrize("content,reason", [
    ("{garbage", "không phải JSON hợp lệ"),
    ("\xff\xfe", "không phải JSON hợp lệ"),
    ("[]", "không phải một đối tượng JSON"),
    (json.dumps({"ari": {"user": "tongdai", "password": "x" * 24 + "\n[evil]"}}), "'ari.password'"),
    (json.dumps({"ami": {"user": "tong dai", "password": "x" * 24}}), "'ami.user'"),
    (json.dumps({"sip": {"2401": "pw;pwpwpwpwpwpwpw"}}), "máy lẻ 2401"),
    (json.dumps({"sip": {"../x": "x" * 24}}), "không phải số máy lẻ"),
    (json.dumps({"sip": ["x"]}), "'sip'"),
])
def test_a_corrupt_secrets_file_is_reported_and_kept(tmp_path, content, reason):
    path = tmp_path / "home" / "secrets.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content.encode("latin-1") if content.startswith("\xff") else content.encode())
    path.chmod(0o600)
    before = path.read_bytes()
    with pytest.raises(sec_mod.SecretsError, match=reason):
        sec_mod.load(path, ["2401"])
    for args in (["render", "--out", str(tmp_path / "etc")], ["extensions", "credentials", "2401"], ["apply", "--dry-run"]):
        res = run(tmp_path, *args)
        assert res.exit_code == 1 and "Traceback" not in res.output, (args, res.output)
        assert res.stderr.startswith(f"lỗi: tệp mật khẩu {path} không dùng được") and reason in res.stderr
        assert "Khôi phục tệp từ bản sao lưu" in res.stderr and len(res.stderr.splitlines()) == 2
    assert path.read_bytes() == before  # never "repaired" with new passwords


def test_a_valid_secrets_file_still_loads_and_grows(tmp_path):
    path = tmp_path / "secrets.json"
    first = sec_mod.load(path, ["2401"])
    again = sec_mod.load(path, ["2401", "2402"])
    assert again.sip_password("2401") == first.sip_password("2401") and again.sip_password("2402")


# ---------------------------------------------------------------------------------- Zalo tokens


@pytest.mark.parametrize("content", [
    "{torn",
    json.dumps({"access_token": "a", "refresh_token": "r", "expires_at": "2026-12-01T10:00", "issued_at": "2026-11-30T10:00"}),
    json.dumps(["a"]),
])
def test_a_damaged_token_file_is_reported_by_zalo_status(tmp_path, content):
    home = tmp_path / "home"
    home.mkdir()
    (home / "zalo-tokens.json").write_text(content, encoding="utf-8")
    store = TokenStore(home / "zalo-tokens.json")
    assert store.load() is None and "Zalo for Developers" in store.problem()
    from ivr.config.settings import Settings
    from ivr.records import db

    env = _env(tmp_path, TONGDAI_ZALO_APP_ID="1", TONGDAI_ZALO_APP_SECRET="s", TONGDAI_ZALO_OA_SECRET_KEY="k")
    db.upgrade(Settings.from_env({**env, "PATH": "/usr/bin"}))
    res = CliRunner().invoke(main, ["zalo", "status"], env=env)
    assert res.exit_code == 0 and "Access token: chưa có" in res.stdout, res.output
    assert "cảnh báo: tệp" in res.stderr and "TONGDAI_ZALO_REFRESH_TOKEN" in res.stderr
