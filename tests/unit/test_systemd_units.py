"""The systemd units shipped for production run real `tongdai` commands, agree with the
environment file on where Asterisk's PID file is, and restart what dies."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess

import click

from ivr.cli import main
from ivr.config.settings import Settings
from ivr.pbx.asterisk import Layout
from tests.paths import REPO_ROOT

UNITS = REPO_ROOT / "scripts" / "systemd"
BIN = "/opt/tongdai/.venv/bin/tongdai"


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(UNITS / name, encoding="utf-8")
    return cp


def env_file() -> dict[str, str]:
    out = {}
    for line in (UNITS / "tongdai.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def command_exists(args: list[str]) -> bool:
    group: click.Command = main
    for a in args:
        if a.startswith("-"):
            break
        if not isinstance(group, click.Group) or a not in group.commands:
            return False
        group = group.commands[a]
    return True


def test_units_run_real_commands_and_restart_what_dies():
    for name in ("tongdai-asterisk.service", "tongdai-controller.service", "tongdai-web.service"):
        svc = unit(name)["Service"]
        assert svc["Restart"] == "always", name
        assert unit(name)["Unit"]["StartLimitIntervalSec"] == "0", name
        for key in ("ExecStartPre", "ExecStart", "ExecStop"):
            if key not in svc:
                continue
            argv = shlex.split(svc[key])
            assert argv[0] == BIN, (name, key)
            if argv[1:] != ["web"]:  # `tongdai web`: the web console, its own branch of the project
                assert command_exists(argv[1:]), (name, svc[key])
    assert unit("tongdai-controller.service")["Service"]["ExecStart"] == f"{BIN} serve --grace 30"


def test_the_pid_file_is_where_tongdai_writes_it():
    env = env_file()
    s = Settings.from_env({**env, "PATH": "/usr/bin:/bin", "HOME": "/root"})
    assert unit("tongdai-asterisk.service")["Service"]["PIDFile"] == str(Layout.for_settings(s).pid_file)
    assert unit("tongdai-asterisk.service")["Service"]["Type"] == "forking"


def test_systemd_reads_the_units_without_errors(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # not a systemd machine: the checks above are all there is
        return
    for f in UNITS.glob("*.service"):
        text = f.read_text(encoding="utf-8").replace(BIN, shutil.which("true") or "/bin/true")
        text = text.replace("EnvironmentFile=/etc/tongdai/", "EnvironmentFile=-/etc/tongdai/")
        (tmp_path / f.name).write_text(text, encoding="utf-8")
    p = subprocess.run([analyze, "verify", *map(str, sorted(tmp_path.glob("*.service")))],
                       capture_output=True, text=True)
    # RestartSteps/RestartMaxDelaySec are systemd 254+: older versions only warn about them.
    problems = [ln for ln in (p.stdout + p.stderr).splitlines()
                if ln.strip() and "RestartSteps" not in ln and "RestartMaxDelaySec" not in ln]
    assert problems == []
