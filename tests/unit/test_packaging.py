"""A plain (not editable) install works outside the checkout: runtime files are package data."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from tests.paths import REPO_ROOT


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert p.returncode == 0, f"{cmd}: {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def test_installed_wheel_checks_migrates_and_renders_from_another_folder(tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO_ROOT)])
    wheel, = wheels.glob("tongdai-*.whl")
    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(fresh)
    py = fresh / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    # The dependencies come from the test environment's site-packages (a path, not its .pth
    # files: the editable install's finder stays out), so nothing is downloaded.
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    routing = tmp_path / "etc" / "routing.yaml"
    routing.parent.mkdir()
    routing.write_text((REPO_ROOT / "routing.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TONGDAI_HOME": str(tmp_path / "home"),
           "TONGDAI_ROUTING": str(routing), "TONGDAI_ASTERISK": "native", "TONGDAI_ASTERISK_BIN": "/bin/false"}
    tongdai = str(fresh / "bin" / "tongdai")

    where = _run([str(py), "-c", "import ivr, ivr.models, ivr.dialplan; print(ivr.__file__)"], cwd=elsewhere, env=env)
    assert str(fresh) in where.stdout and str(REPO_ROOT) not in where.stdout

    _run([tongdai, "check", str(routing)], cwd=elsewhere, env=env)
    _run([tongdai, "db", "upgrade"], cwd=elsewhere, env=env)
    assert list((tmp_path / "home").glob("*.db")), "no database created under TONGDAI_HOME"
    out = tmp_path / "rendered"
    _run([tongdai, "render", "--out", str(out)], cwd=elsewhere, env=env)
    assert "Stasis(" in (out / "extensions.conf").read_text()
    assert "[2101]" in (out / "pjsip.conf").read_text()
