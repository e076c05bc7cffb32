"""End-to-end fixtures: a real Asterisk (sandbox chroot or native) with the rendered config, on
ports of its own, plus port allocation for SIPp peers.

Locally, a machine that cannot run Asterisk or SIPp skips these tests with the reason. In CI
(TONGDAI_REQUIRE_E2E=1, set by .ci/run, or CI=true) that is a failure, never a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from dialplan import render as rd
from ivr import routing as rt
from ivr import secrets as sec_mod
from ivr.pbx import Layout, PbxError
from ivr.settings import REPO_ROOT, Settings

REQUIRED = bool(os.environ.get("TONGDAI_REQUIRE_E2E")) or os.environ.get("CI", "").lower() == "true"


def need(ok: bool, reason: str) -> None:
    if ok:
        return
    if REQUIRED:
        pytest.fail(f"end-to-end prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class Ports:
    """Hands out blocks of free local ports for SIPp peers (SIP, media, control)."""

    def __init__(self, start: int = 41000, end: int = 59000):
        self.next, self.end = start + (os.getpid() % 200) * 40, end

    def block(self) -> tuple[int, int, int]:
        while self.next < self.end:
            base = self.next
            self.next += 10
            if all(_free(base + i) for i in range(8)):
                return base, base + 2, base + 6
        raise RuntimeError("no free ports left for SIPp")


@dataclass
class Pbx:
    settings: Settings
    layout: Layout
    routing: rt.Routing
    secrets: sec_mod.Secrets
    ports: Ports

    def rx(self, command: str) -> str:
        return self.layout.rx(command)

    def error_lines(self) -> list[str]:
        text = self.layout.log_file.read_text(errors="replace") if self.layout.log_file.exists() else ""
        return [ln for ln in text.splitlines() if " ERROR[" in ln]

    def sip(self) -> dict:
        return {"server_host": "127.0.0.1", "server_port": self.settings.sip_port}

    def peer(self) -> dict:
        sip, media, control = self.ports.block()
        return {**self.sip(), "local_port": sip, "media_port": media, "control_port": control}


def basic_auth(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


STATS_ROW = re.compile(
    r"^\s*(?:\S+\s+)?(?P<name>[\w.+-]+?)-[0-9a-f]{8}\s+\d\d:\d\d:\d\d\s+\S+\s+"
    r"(?P<rx>\d+)\s+\d+\s+\d+\s+[\d.]+\s+(?P<tx>\d+)\s", re.M)


def parse_channelstats(text: str) -> dict[str, tuple[int, int]]:
    """`pjsip show channelstats` -> endpoint name -> (RTP packets received, transmitted)."""
    return {m["name"]: (int(m["rx"]), int(m["tx"])) for m in STATS_ROW.finditer(text)}


async def sample_channelstats(pbx: "Pbx", names: set[str], seconds: float) -> dict[str, tuple[int, int]]:
    """Poll channelstats for ``seconds``; return the last sample that showed every name."""
    import asyncio

    best: dict[str, tuple[int, int]] = {}
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        stats = parse_channelstats(await asyncio.to_thread(pbx.rx, "pjsip show channelstats"))
        if names <= stats.keys():
            best = stats
        await asyncio.sleep(0.3)
    return best


def _pick(start: int, kind=socket.SOCK_STREAM) -> int:
    for port in range(start, start + 500):
        if _free(port):
            return port
    raise RuntimeError("no free port")


@pytest.fixture(scope="session")
def pbx(tmp_path_factory) -> Pbx:
    """A running Asterisk with the project's rendered config and its own data directory."""
    need(shutil.which("sipp") is not None, "SIPp (Debian package sip-tester) is not installed")
    home = tmp_path_factory.mktemp("tongdai-home")
    env = {
        "TONGDAI_HOME": str(home),
        "TONGDAI_SIP_PORT": str(_pick(25060)),
        "TONGDAI_ARI_PORT": str(_pick(28088)),
        "TONGDAI_AMI_PORT": str(_pick(25038)),
        "TONGDAI_RTP_START": "31000",
        "TONGDAI_RTP_END": "31999",
    }
    for k in ("TONGDAI_ASTERISK", "TONGDAI_SANDBOX_DIR", "TONGDAI_ASTERISK_BIN", "TONGDAI_ASTERISK_MODDIR",
              "PATH", "HOME", "TONGDAI_ASTERISK_RUNUSER", "TONGDAI_ASTERISK_DATADIR"):
        if k in os.environ:
            env[k] = os.environ[k]
    s = Settings.from_env(env)
    layout = Layout.for_settings(s)
    if s.asterisk_mode == "sandbox":
        need(os.geteuid() == 0, "the Asterisk sandbox needs root (debootstrap, chroot)")
    try:
        layout.install(log=lambda m: print(m, flush=True))
    except (PbxError, OSError) as e:
        need(False, f"cannot provision Asterisk: {e}")
    routing = rt.load(REPO_ROOT / "routing.yaml")
    sec = sec_mod.load(s.secrets_path, list(routing.extensions))
    layout.prepare()
    rd.write(rd.render(routing, s, sec, layout), layout.etc)
    layout.chown()
    try:
        layout.start()
    except PbxError as e:
        pytest.fail(f"Asterisk did not start with the rendered config: {e}", pytrace=False)
    yield Pbx(s, layout, routing, sec, Ports())
    layout.stop()
