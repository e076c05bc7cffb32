"""End-to-end fixtures: a real Asterisk (sandbox chroot or native) with the rendered config, on
ports of its own, plus port allocation for SIPp peers.

Locally, a machine that cannot run Asterisk or SIPp skips these tests with the reason. In CI
(TONGDAI_REQUIRE_E2E=1, set by .ci/run, or CI=true) that is a failure, never a skip.

The tests pass in any order: the controller is started once for the session (``ivr``), a test
that needs Asterisk without it asks for ``no_controller``, and what must hold for the whole run
(no ERROR from Asterisk, no password in any log) is checked after each test on the lines that
test caused (``logs_stay_clean``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import random
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from ivr.config import credentials as sec_mod
from ivr.config import hours as cal
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.dialplan import render as rd
from ivr.pbx import sipp
from ivr.pbx import sounds as prompts
from ivr.pbx.asterisk import Layout, PbxError
from ivr.records import db
from ivr.records.calllog import load_call
from ivr.server import Service
from ivr.testing import wait_until
from tests.paths import REPO_ROOT

REQUIRED = bool(os.environ.get("TONGDAI_REQUIRE_E2E")) or os.environ.get("CI", "").lower() == "true"


def need(ok: bool, reason: str) -> None:
    if ok:
        return
    if REQUIRED:
        pytest.fail(f"end-to-end prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


class Ports:
    """Hands out blocks of free local ports for SIPp peers (SIP, media, control)."""

    def __init__(self, start: int = 41000, end: int = 59000):
        self.next, self.end = start + (os.getpid() % 200) * 40, end

    def block(self) -> tuple[int, int, int]:
        while self.next < self.end:
            base = self.next
            self.next += 10
            if all(sipp.port_is_free(base + i) for i in range(8)):
                return base, base + 2, base + 6
        raise RuntimeError("no free ports left for SIPp")


@dataclass
class Pbx:
    settings: Settings
    layout: Layout
    routing: rt.Routing
    secrets: sec_mod.Secrets
    ports: Ports
    controller: Ivr | None = None  # the session's controller, once the ivr fixture has started it

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


async def rtp_both_ways(pbx: Pbx, names: set[str], timeout: float, packets: int = 25) -> dict[str, tuple[int, int]]:
    """Wait until each endpoint of ``names`` has received and sent ``packets`` RTP packets on a
    leg of a call (the largest counts `pjsip show channelstats` showed, as legs come and go);
    return those counts. Fails on timeout with the counts seen."""
    best: dict[str, tuple[int, int]] = {}

    async def enough() -> bool:
        for name, (rx, tx) in parse_channelstats(await asyncio.to_thread(pbx.rx, "pjsip show channelstats")).items():
            old = best.get(name, (0, 0))
            best[name] = (max(old[0], rx), max(old[1], tx))
        return all(min(best.get(n, (0, 0))) >= packets for n in names)

    await wait_until(enough, timeout, lambda: f"{packets} RTP packets each way on {sorted(names)}; saw {best}",
                     interval=0.25)
    return best


def _pick(start: int, kind=socket.SOCK_STREAM) -> int:
    for port in range(start, start + 500):
        if sipp.port_is_free(port):
            return port
    raise RuntimeError("no free port")


ENV_PASSED = ("TONGDAI_ASTERISK", "TONGDAI_SANDBOX_DIR", "TONGDAI_ASTERISK_BIN", "TONGDAI_ASTERISK_MODDIR",
              "PATH", "HOME", "TONGDAI_ASTERISK_RUNUSER", "TONGDAI_ASTERISK_DATADIR")


def pbx_settings(home: Path, *, sip: int = 25060, ari: int = 28088, ami: int = 25038,
                 rtp: tuple[int, int] = (31000, 31999), **extra: str) -> Settings:
    """Settings of a private instance: its own data directory and free ports found upwards
    from the given ones."""
    env = {
        "TONGDAI_HOME": str(home),
        "TONGDAI_SIP_PORT": str(_pick(sip)),
        "TONGDAI_ARI_PORT": str(_pick(ari)),
        "TONGDAI_AMI_PORT": str(_pick(ami)),
        "TONGDAI_RTP_START": str(rtp[0]),
        "TONGDAI_RTP_END": str(rtp[1]),
        **extra,
    }
    for k in ENV_PASSED:
        if k in os.environ:
            env[k] = os.environ[k]
    return Settings.from_env(env)


def start_pbx(s: Settings, routing: rt.Routing | None = None) -> Pbx:
    """Provision, render and start a private Asterisk for ``s``; the caller stops it."""
    need(shutil.which("sipp") is not None, "SIPp (Debian package sip-tester) is not installed")
    layout = Layout.for_settings(s)
    if s.asterisk_mode == "sandbox":
        need(os.geteuid() == 0, "the Asterisk sandbox needs root (debootstrap, chroot)")
    try:
        layout.install(log=lambda m: print(m, flush=True))
    except (PbxError, OSError) as e:
        need(False, f"cannot provision Asterisk: {e}")
    routing = routing or rt.load(REPO_ROOT / "routing.yaml")
    sec = sec_mod.load(s.secrets_path, list(routing.extensions))
    layout.prepare()
    rd.write(rd.render(routing, s, sec, layout), layout.etc)
    layout.chown()
    try:
        layout.start()
    except PbxError as e:
        pytest.fail(f"Asterisk did not start with the rendered config: {e}", pytrace=False)
    return Pbx(s, layout, routing, sec, Ports())


@pytest.fixture(scope="session")
def pbx(tmp_path_factory) -> Pbx:
    """A running Asterisk with the project's rendered config and its own data directory."""
    need(shutil.which("sipp") is not None, "SIPp (Debian package sip-tester) is not installed")
    # A short hold: the tests of the apology (no controller connected) need not wait 20 s for it.
    p = start_pbx(pbx_settings(tmp_path_factory.mktemp("tongdai-home"), TONGDAI_HOLD_SECONDS="3"))
    yield p
    p.layout.stop()


def log_files(pbx: Pbx) -> list[Path]:
    """Every log file of the run: the controller's, Asterisk's, the console's."""
    home = pbx.settings.home
    files = [p for p in (home / "log").rglob("*") if p.is_file()]
    files += [p for p in pbx.layout.log_file.parent.rglob("*") if p.is_file()]
    files += [p for p in home.glob("*.log") if p.is_file()]
    return files


def log_ends(pbx: Pbx) -> dict[Path, int]:
    return {p: p.stat().st_size for p in log_files(pbx)}


def logged_since(pbx: Pbx, ends: dict[Path, int]) -> dict[Path, str]:
    """What each log file gained after ``ends`` (all of a file that is new or was cut short)."""
    out = {}
    for p in log_files(pbx):
        with open(p, "rb") as f:
            start = ends.get(p, 0)
            if p.stat().st_size < start:
                start = 0
            f.seek(start)
            out[p] = f.read().decode("utf-8", errors="replace")
    return out


def passwords(pbx: Pbx) -> set[str]:
    """Every password of the run, as the secrets file holds them now (`tongdai apply` adds some)."""
    data = json.loads(pbx.settings.secrets_path.read_text(encoding="utf-8"))
    found = {data["ari"]["password"], data["ami"]["password"], *data["sip"].values()}
    assert all(len(p) >= 12 for p in found)
    return found


def leaks(sources: dict[str, str], secrets: set[str]) -> list[tuple[str, str]]:
    return [(name, s[:3] + "…") for name, text in sources.items() for s in secrets if s in text]


@pytest.fixture(autouse=True)
def logs_stay_clean(request):
    """After each test on Asterisk: the log lines it caused hold no ERROR from Asterisk and no
    password. (Before no_leftovers below, so it looks once the test's channels are gone.)"""
    if "pbx" not in request.fixturenames:
        yield
        return
    pbx = request.getfixturevalue("pbx")
    ends = log_ends(pbx)
    yield
    new = logged_since(pbx, ends)
    errors = [ln for p, text in new.items() if p.parent == pbx.layout.log_file.parent
              for ln in text.splitlines() if " ERROR[" in ln]
    assert errors == [], "Asterisk logged errors"
    assert leaks({str(p): text for p, text in new.items()}, passwords(pbx)) == []


# ----------------------------------------------------------------------------------------------
# The controller, in process, in strict mode, with short prompts and timeouts.

HERE = Path(__file__).parent
TEST_PROMPTS = HERE / "prompts-test.yaml"


def routing_text_for_tests() -> str:
    text = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")
    text = text.replace("first_digit_timeout: 5", "first_digit_timeout: 2", 1)
    text = text.replace("max_tries: 3", "max_tries: 2", 1)
    text = text.replace("ring_timeout: 20", "ring_timeout: 6")
    text = text.replace("fallback: complaint", "fallback: hangup", 1)
    text = text.replace("no_answer: complaint", "no_answer: hangup")
    # Branch 2 (hunt) offers the voice complaint when nobody can take the call.
    text = text.replace("    strategy: hunt\n    ring_timeout: 6\n    no_answer: hangup", "    strategy: hunt\n    ring_timeout: 6\n    no_answer: complaint", 1)
    text = text.replace("  max_seconds: 180", "  max_seconds: 20", 1)
    text = text.replace("  timeout: 5\n", "  timeout: 2\n", 1)
    text = text.replace("  announce_every: 30", "  announce_every: 10", 1)  # the branch queue's position prompts
    return text


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def lines(self) -> list[str]:
        return [f"{r.levelname} {r.name} {r.getMessage()}" for r in self.records]


@dataclass
class Ivr:
    pbx: object
    service: Service
    routing: rt.Routing
    log: Records
    durations: dict[str, float]

    @property
    def settings(self):
        return self.pbx.settings


def build_sounds(pbx: Pbx) -> Path:
    """The test prompts; return the sounds directory."""
    sounds = pbx.layout.host(pbx.layout.ast("data/sounds/vi"))
    prompts.build(sounds, texts_path=TEST_PROMPTS)
    pbx.layout.chown()
    return sounds


@pytest.fixture(scope="session")
async def ivr(pbx):
    s = pbx.settings
    sounds = await asyncio.to_thread(build_sounds, pbx)
    durations = {p.stem: p.stat().st_size / 8000.0 for p in (sounds / "tongdai").glob("*.alaw")}
    durations.update({f"digits/{p.stem}": p.stat().st_size / 8000.0 for p in (sounds / "digits").glob("*.alaw")})
    await asyncio.to_thread(db.upgrade, s)
    cal.write_override(s.hours_override_path, "open", None, dt.datetime.now(dt.timezone.utc))
    routing = rt.loads(routing_text_for_tests())
    records = Records()
    logger = logging.getLogger("tongdai")
    logger.setLevel(logging.DEBUG if os.environ.get("TONGDAI_TEST_DEBUG") else logging.INFO)
    logger.addHandler(records)
    service = Service(s, strict=True, routing=routing)
    await service.start()
    it = Ivr(pbx, service, routing, records, durations)
    pbx.controller = it
    yield it
    pbx.controller = None
    await it.service.stop(5)  # a test may have swapped the service (controller_on)
    logger.removeHandler(records)


async def restart(ivr: Ivr) -> None:
    """Start a controller on the session's settings again as ``ivr.service``."""
    service = Service(ivr.settings, strict=True, routing=ivr.routing)
    await service.start()
    ivr.service = service


@pytest.fixture
async def no_controller(pbx):
    """No controller holds the hotline's ARI apps during the test (it is the ARI app itself, or
    checks what Asterisk does without one): the session's controller, if it runs, is stopped
    for the test and started again after it."""
    it = pbx.controller
    if it is None:
        yield
        return
    await it.service.calllog.flush()
    await it.service.stop(5)
    auth = basic_auth(pbx.secrets.ari_user, pbx.secrets.ari_password)
    async with aiohttp.ClientSession(headers=auth) as http:
        async def apps_gone() -> bool:
            async with http.get(f"http://127.0.0.1:{pbx.settings.ari_port}/ari/applications") as r:
                return not {a["name"] for a in await r.json()} & set(pbx.settings.ari_apps)

        await wait_until(apps_gone, 10, "Asterisk to let the controller's ARI apps go", interval=0.1)
    try:
        yield
    finally:
        await restart(it)


@contextlib.asynccontextmanager
async def controller_on(ivr: Ivr, settings: Settings):
    """Run the controller with other settings (e.g. another database) for the block.

    Only one controller may hold the ARI app at a time: the session's is stopped, one on
    ``settings`` takes its place as ``ivr.service``, and afterwards a fresh one on the session's
    settings is started again. Both share the data directory, so the call log spool must be
    empty when switching; a leftover is set aside so that it never lands in the wrong database.
    """
    spool = ivr.settings.home / "spool" / "calllog.jsonl"
    session_service = ivr.service
    await session_service.calllog.flush()
    await session_service.stop(5)
    assert session_service.calllog.spool.pending() == 0, "the session's call log spool is not empty"
    service = Service(settings, strict=True, routing=ivr.routing)
    await service.start()
    ivr.service = service
    try:
        yield service
    finally:
        await service.stop(5)
        stamp = dt.datetime.now().strftime("%H%M%S")
        if spool.exists() and spool.read_text().strip():
            os.replace(spool, spool.with_suffix(f".leftover-{stamp}"))
        cases = ivr.settings.home / "spool" / "cases"
        if any(cases.glob("*.json")):
            os.replace(cases, cases.with_name(f"cases.leftover-{stamp}"))
        await restart(ivr)


@pytest.fixture(autouse=True)
async def no_leftovers(request):
    """After each test: no channel or bridge left in Asterisk, no illegal event, no crash, no
    password in the controller's log records."""
    if "ivr" not in request.fixturenames:
        yield
        return
    ivr = request.getfixturevalue("ivr")
    start = len(ivr.log.records)
    yield
    s = ivr.settings
    auth = basic_auth(ivr.pbx.secrets.ari_user, ivr.pbx.secrets.ari_password)
    left: dict[str, list] = {}
    async with aiohttp.ClientSession(headers=auth) as http:
        async def nothing_left() -> bool:
            for kind in ("channels", "bridges"):
                async with http.get(f"http://127.0.0.1:{s.ari_port}/ari/{kind}") as r:
                    left[kind] = await r.json()
            return not any(left.values())

        await wait_until(nothing_left, 10, lambda: f"Asterisk to have no channel or bridge left: {left}", interval=0.2)
    await ivr.service.calllog.flush()
    lines = ivr.log.lines()[start:]
    bad = [ln for ln in lines if "illegal event" in ln or "unhandled error" in ln or ln.startswith("ERROR")]
    assert bad == []
    assert leaks({"controller records": "\n".join(lines)}, passwords(ivr.pbx)) == []


def new_caller() -> str:
    return "09" + "".join(random.choice("0123456789") for _ in range(8))


@contextlib.asynccontextmanager
async def phones(ivr: Ivr, modes: dict[str, str], **kw):
    async with contextlib.AsyncExitStack() as stack:
        out = {}
        for ext, mode in modes.items():
            opts = dict(kw)
            if isinstance(mode, tuple):
                mode, extra = mode
                opts.update(extra)
            out[ext] = await stack.enter_async_context(sipp.DeskPhone(
                **ivr.pbx.peer(), user=ext, password=ivr.pbx.secrets.sip_password(ext), mode=mode, **opts))
        yield out


async def place(ivr: Ivr, digits: str | None, *, hold_ms: int = 4000, wait_for_bye_ms: int | None = None,
                digits_at_ms: int = 500, dtmf_gap_ms: int | None = None, timeout: float = 60,
                caller: str | None = None):
    caller = caller or new_caller()
    kw = {}
    if dtmf_gap_ms is not None:
        kw["dtmf_gap_ms"] = dtmf_gap_ms
    result = await sipp.call(**ivr.pbx.peer(), to=ivr.routing.hotline.number, from_user=caller, digits=digits,
                             digits_at_ms=digits_at_ms, hold_ms=hold_ms, wait_for_bye_ms=wait_for_bye_ms,
                             timeout=timeout, **kw)
    row = await wait_row(ivr, caller)
    return result, row


async def wait_row(ivr: Ivr, caller: str):
    """The caller's latest call (a test may call several times from one number), once it has
    ended: (call, events, legs)."""
    from sqlalchemy import select

    from ivr.models import Call

    async def finished():
        await ivr.service.calllog.flush()
        async with ivr.service.engine.connect() as conn:
            cid = (await conn.execute(select(Call.id).where(Call.caller == caller)
                                      .order_by(Call.started_at.desc()).limit(1))).scalar_one_or_none()
        if cid:
            call, events, legs = await load_call(ivr.service.engine, cid)
            if call.disposition != "in_progress":
                return call, events, legs
        return None

    return await wait_until(finished, 15, f"a finished call row for {caller}", interval=0.1)


def talking(controller) -> bool:
    """A call is bridged with a desk phone. BRIDGED is entered before the bridge requests;
    ``answered_by`` is set once they succeeded (a test that acts on BRIDGED alone may act before
    the caller and the desk are connected)."""
    from ivr.call.session import State

    return any(s.state is State.BRIDGED and s.rec.answered_by for s in controller.sessions.values())


def kinds(events) -> list[str]:
    return [e.kind for e in events]
