"""The hotline's call capacity, against a dialplan-only IVR on the same machine in the same run.

``python -m bench.capacity [--quick] [--levels 50,100,150,200,300] [--talk 8]`` (``make bench`` runs it)

One private Asterisk (the sandbox or a native one, on free ports, its own data directory) with
the product's rendered configuration plus one extra extension, the baseline
(``bench/baseline.conf.j2``): the same steps in dialplan only. The controller runs as its own
process (``python -m ivr serve``), so its CPU and memory are measured apart from Asterisk's.
Two SIPp desk phones register as branch 2's extensions (hunt: the first answers, talks
``--talk`` seconds and hangs up). For every concurrency level, one SIPp caller places the calls
through the project (the hotline number), then the same load through the baseline:

    INVITE → 200 → greeting → digit 2 (barge-in) → branch announcement + "connecting"
    → INVITE at the desk phone → 200 → talk → the desk hangs up → survey → digit 5 → thanks → BYE

A call succeeded when the caller was answered, the desk phone answered it, the survey score
reached the system (the call log for the project, the dialplan's ``Log()`` line for the
baseline) and the system hung up. Latencies come from SIPp's message traces (absolute times):
answer latency is the caller's INVITE → 200 OK; post-dial delay is the end of the menu digit
(known from the caller's ACK and the digit's offset in the caller's audio) → the INVITE reaching
the desk phone. Both variants play the same prompts, so that includes the announcement (printed
separately); the difference between the variants is what the controller adds.

CPU: utime+stime of the Asterisk and controller processes (/proc) over the level, per call
attempted. Memory: the controller's peak RSS, polled. Results: ``bench/results/<date>.json`` and
a PNG chart beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2

from ivr.config import credentials as sec_mod
from ivr.config import hours as cal
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.dialplan import render as rd
from ivr.pbx import sipp
from ivr.pbx import sounds as prompts
from ivr.pbx.asterisk import Layout, PbxError
from ivr.records import db

REPO_ROOT = Path(__file__).resolve().parents[1]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PROMPTS = REPO_ROOT / "tests" / "e2e" / "prompts-test.yaml"  # short prompts, the same for both
BRANCH = "2"            # hunt: the first desk phone answers, one INVITE per call
MENU_DIGIT_AT_MS = 600  # the caller presses the branch digit this long after its ACK (barge-in)
TONE_MS = 160
ANSWER_DELAY_MS = 100   # desk phone: 180, then 200 after this
SURVEY_MARGIN_MS = 1200  # the survey digit comes this long after the desk phone should hang up,
SURVEY_REPEATS = 4       # and again every SURVEY_EVERY_MS (a caller who is not heard presses again):
SURVEY_EVERY_MS = 1300   # a call running up to ~5 s late still gets its score in
SURVEY_DIGIT = "5"
BASELINE_NUMBER = "1099"
VARIANTS = ("project", "baseline")
TICK = os.sysconf("SC_CLK_TCK")

# Steps fine enough to find the knee on a small server: on the 2-core development machines both
# variants saturated the CPU (media, SIPp's threads) between 200 and 300 calls on one, and the
# baseline lost calls at 400 on a faster one (where 300 still passed for both); a coarser sweep
# (50, 200, 400, 600) left one level to compare the variants' zero-failure capacity at.
FULL_LEVELS = (50, 100, 150, 200, 300, 400)
QUICK_LEVELS = (4,)

# Goals from the issue (printed, never asserted).
TARGET_CAPACITY_RATIO = 0.9
TARGET_PDD_P95_MS = 50
TARGET_CPU_SHARE = 0.25


# ----------------------------------------------------------------------------------------------
# Processes: CPU and memory from /proc


def cpu_seconds(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    want = min(want, 1 << 20)
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ----------------------------------------------------------------------------------------------
# Ports


class Ports:
    """Free local ports, handed out upwards from a per-process start."""

    def __init__(self, start: int):
        self.next = start + (os.getpid() % 50) * 20

    def one(self) -> int:
        while not sipp.port_is_free(self.next):
            self.next += 1
        self.next += 1
        return self.next - 1

    def sipp(self) -> dict:
        """SIP, media (and media + 2) and control ports for one SIPp."""
        while True:
            base = self.next
            self.next += 10
            if all(sipp.port_is_free(base + i) for i in range(8)):
                return {"local_port": base, "media_port": base + 2, "control_port": base + 6}


# ----------------------------------------------------------------------------------------------
# SIPp message traces with their times


@dataclass
class Msg:
    t: float  # seconds since the epoch
    sent: bool
    first: str
    call_id: str
    from_user: str
    cseq_method: str


_SEP = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.M)
_FROM_USER = re.compile(r"sip:([^@;>]+)@")


def parse_trace(path: Path) -> list[Msg]:
    """A SIPp -trace_msg file -> messages with their local timestamps."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    out: list[Msg] = []
    parts = _SEP.split(text)
    # parts: [before, ts1, block1, ts2, block2, ...]
    for i in range(1, len(parts) - 1, 2):
        stamp, block = parts[i], parts[i + 1]
        head, _, rest = block.lstrip("\n").partition("\n")
        sent = " message sent" in head
        if not sent and " message received" not in head:
            continue
        lines = rest.strip("\r\n").split("\n")
        first = lines[0].rstrip("\r") if lines else ""
        call_id = from_user = cseq = ""
        for line in lines[1:]:
            line = line.rstrip("\r")
            if not line:
                break
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name in ("call-id", "i"):
                call_id = value.strip()
            elif name in ("from", "f"):
                m = _FROM_USER.search(value)
                from_user = m.group(1) if m else ""
            elif name == "cseq":
                cseq = value.split()[-1] if value.split() else ""
        t = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append(Msg(t, sent, first, call_id, from_user, cseq))
    return out


# Where the project's post-dial delay goes, step by step (SIPp's traces and the call log's
# timeline, both stamped by this machine's clock): the end of the menu digit → the controller has
# its DTMF event ("digit") → it has asked for the announcement ("reaction") → it has the
# announcement's PlaybackFinished and starts ringing, less the announcement's length
# ("announcement") → Asterisk has answered its /dial ("dial") → the INVITE reaches the desk phone
# ("invite"). The controller's own work is "reaction"; the rest is Asterisk and the way there.
POST_DIAL_STEPS = ("digit", "reaction", "announcement", "dial", "invite")


def _status(m: Msg) -> int | None:
    if m.first.startswith("SIP/2.0 "):
        try:
            return int(m.first.split()[1])
        except (IndexError, ValueError):
            return None
    return None


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    v = sorted(values)

    def q(p: float) -> float:
        k = max(0, min(len(v) - 1, math.ceil(p * len(v)) - 1))
        return round(v[k] * 1000, 1)

    return {"n": len(v), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(v[-1] * 1000, 1)}


# ----------------------------------------------------------------------------------------------
# The run


@dataclass
class Timing:
    """When the caller does what (ms after its ACK), from the prompts' lengths."""

    talk_ms: int
    announce_ms: int  # branch announcement + "connecting"
    survey_ms: int
    thanks_ms: int

    @property
    def digit_end_ms(self) -> int:
        return MENU_DIGIT_AT_MS + TONE_MS

    @property
    def survey_digit_at_ms(self) -> int:
        return self.digit_end_ms + self.announce_ms + ANSWER_DELAY_MS + self.talk_ms + SURVEY_MARGIN_MS

    @property
    def call_ms(self) -> int:
        """How long one call lasts when nothing is late."""
        return self.survey_digit_at_ms + TONE_MS + self.thanks_ms + 200

    @property
    def bye_wait_ms(self) -> int:
        return self.call_ms + 12000


@dataclass
class LevelResult:
    variant: str
    level: int
    rate: float
    calls: int
    attempted: int = 0
    answered: int = 0
    desk_answered: int = 0
    survey_recorded: int = 0
    succeeded: int = 0
    failed: int = 0
    peak_concurrent: int = 0
    answer_latency_ms: dict = field(default_factory=dict)
    post_dial_delay_ms: dict = field(default_factory=dict)
    pdd_over_announcement_ms: dict = field(default_factory=dict)
    post_dial_steps_ms: dict = field(default_factory=dict)  # project only: see POST_DIAL_STEPS
    asterisk_cpu_s_per_call: float = 0.0
    controller_cpu_s_per_call: float = 0.0
    sipp_cpu_s_per_call: float = 0.0
    controller_peak_rss_mb: float = 0.0
    machine_busy_pct: float = 0.0
    loadavg_1m: float = 0.0
    wall_s: float = 0.0
    failures: dict = field(default_factory=dict)


class Bench:
    def __init__(self, *, levels: list[int], talk_s: float, quick: bool, out_dir: Path, keep: bool,
                 profile: bool, variants: tuple[str, ...] = VARIANTS, log=print):
        self.levels = levels
        self.talk_ms = int(talk_s * 1000)
        self.quick = quick
        self.out_dir = out_dir
        self.keep = keep
        self.profile = profile
        self.variants = variants
        self.log = log
        self.home = Path(tempfile.mkdtemp(prefix="tongdai-bench-"))
        self.work = self.home / "sipp"
        self.work.mkdir()
        self.ports = Ports(36000)
        self.controller: subprocess.Popen | None = None
        self.desks: list[sipp.DeskPhone] = []
        self.layout: Layout | None = None
        self.profiles: list[str] = []

    # ------------------------------------------------------------------ setup

    def settings(self) -> Settings:
        env = {
            "TONGDAI_HOME": str(self.home),
            "TONGDAI_ROUTING": str(REPO_ROOT / "routing.yaml"),
            "TONGDAI_SIP_PORT": str(self.ports.one()),
            "TONGDAI_ARI_PORT": str(self.ports.one()),
            "TONGDAI_AMI_PORT": str(self.ports.one()),
            # Two RTP ports (RTP, RTCP) per channel, two channels per call, and room to spare.
            "TONGDAI_RTP_START": "10000",
            "TONGDAI_RTP_END": "19999",
            # The two SIPp desk phones each stand for many officers: every call may ring them
            # while they talk (the product never rings a busy phone otherwise).
            "TONGDAI_CALL_WAITING": "1",
        }
        for k in ("TONGDAI_ASTERISK", "TONGDAI_SANDBOX_DIR", "TONGDAI_ASTERISK_BIN", "TONGDAI_ASTERISK_MODDIR",
                  "PATH", "HOME", "TONGDAI_ASTERISK_RUNUSER", "TONGDAI_ASTERISK_DATADIR", "TONGDAI_DEBIAN_MIRROR",
                  "TONGDAI_ARI_REST", "TONGDAI_ARI_LANES"):
            if k in os.environ:
                env[k] = os.environ[k]
        return Settings.from_env(env)

    def setup(self) -> None:
        self.s = s = self.settings()
        self.routing = routing = rt.load(s.routing_path)
        self.branch = routing.branch(BRANCH)
        self.sec = sec_mod.load(s.secrets_path, list(routing.extensions))
        self.layout = layout = Layout.for_settings(s)
        layout.install(log=self.log)
        layout.prepare()
        files = rd.render(routing, s, self.sec, layout)
        files["extensions.conf"] = self.with_baseline(files["extensions.conf"])
        rd.write(files, layout.etc)
        sounds = layout.host(layout.ast("data/sounds/vi"))
        prompts.build(sounds, texts_path=PROMPTS)
        length = {p.stem: p.stat().st_size / 8 for p in (sounds / "tongdai").glob("*.alaw")}  # ms
        self.timing = Timing(
            talk_ms=self.talk_ms,
            announce_ms=int(length[f"branch_{BRANCH}"] + length["connecting"]),
            survey_ms=int(length["survey"]), thanks_ms=int(max(length["survey_thanks"], length["thanks"])))
        layout.chown()
        db.upgrade(s)
        cal.write_override(s.hours_override_path, "open", None, dt.datetime.now(dt.timezone.utc))
        layout.start()
        self.asterisk_pid = layout.pid()

    def with_baseline(self, extensions_conf: str) -> str:
        """The product's extensions.conf plus the bench's baseline, reachable from the trunk."""
        hotline = self.routing.hotline.number
        line = f"exten => {hotline},1,Goto(hotline,s,1)\n"
        head, sep, tail = extensions_conf.partition("[from-trunk]\n" + line)
        if not sep:
            raise RuntimeError("extensions.conf: no [from-trunk] hotline line to add the baseline after")
        extra = f"exten => {BASELINE_NUMBER},1,Goto(bench-baseline,s,1) ; the bench's baseline\n"
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE)), undefined=jinja2.StrictUndefined,
                                 trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        m = self.routing.menu
        baseline = env.get_template("baseline.conf.j2").render(
            branch=self.branch, language=self.routing.hotline.language, max_tries=m.max_tries,
            first_digit_timeout=int(m.first_digit_timeout), survey_timeout=int(self.routing.survey.timeout))
        return head + sep + extra + tail + "\n" + baseline

    def start_controller(self) -> None:
        env = {**self.s.env, "PYTHONUNBUFFERED": "1"}
        log = open(self.home / "controller.stderr.log", "wb")
        self.controller = subprocess.Popen([sys.executable, "-m", "ivr", "serve", "--grace", "5"], cwd=REPO_ROOT,
                                           env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        path = self.home / "controller.stderr.log"
        while time.monotonic() < deadline:
            if "controller ready" in path.read_text(errors="replace"):
                return
            if self.controller.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("the controller did not start:\n" + path.read_text(errors="replace")[-3000:])

    async def start_desks(self) -> None:
        for ext in self.branch.targets:
            phone = sipp.DeskPhone(server_host="127.0.0.1", server_port=self.s.sip_port, user=ext,
                                   password=self.sec.sip_password(ext), mode="answer",
                                   answer_delay_ms=ANSWER_DELAY_MS, hangup_after_ms=self.talk_ms,
                                   trace_dir=self.work, extra_args=("-buff_size", "4194304"),
                                   **self.ports.sipp())
            await phone.start()
            await phone.wait_registered()
            self.desks.append(phone)

    async def teardown(self) -> None:
        for phone in self.desks:
            with contextlib.suppress(Exception):
                await phone.stop()
        if self.controller and self.controller.poll() is None:
            self.controller.send_signal(signal.SIGTERM)
            try:
                self.controller.wait(15)
            except subprocess.TimeoutExpired:
                self.controller.kill()
                self.controller.wait()
        if self.layout:
            self.layout.stop()
            if not self.keep and self.layout.chroot is not None:
                shutil.rmtree(self.layout.host(self.layout.root), ignore_errors=True)
        if not self.keep:
            shutil.rmtree(self.home, ignore_errors=True)

    # ------------------------------------------------------------------ one level of one variant

    def plan(self, level: int) -> tuple[float, int]:
        """Call rate (per second) and number of calls: the level is reached after one call's
        length and held for about as long again (two calls for the quick level)."""
        call_s = self.timing.call_ms / 1000
        rate = max(1.0, round(level / call_s, 1))
        calls = level if self.quick else level + int(rate * call_s)
        return rate, calls

    def channels(self) -> int | None:
        try:
            out = self.layout.rx("core show channels count", timeout=10)
        except PbxError:
            return None
        m = re.search(r"(\d+) active channels?", out)
        return int(m.group(1)) if m else None

    def idle(self, timeout: float = 20) -> None:
        """Wait until Asterisk has no channel; after ``timeout`` hang up what is left (calls
        stuck in an overloaded level), so that every level starts clean and the run stays short."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.channels() == 0:
                return
            time.sleep(0.5)
        self.log(f"   {self.channels()} channels still up after {timeout:g} s: hanging them up")
        with contextlib.suppress(PbxError):
            self.layout.rx("channel request hangup all", timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.channels() != 0:
            time.sleep(0.5)

    async def run_level(self, variant: str, idx: int, level: int) -> LevelResult:
        rate, calls = self.plan(level)
        prefix = f"09{VARIANTS.index(variant) + 1}{idx}"
        to = self.routing.hotline.number if variant == "project" else BASELINE_NUMBER
        name = f"{variant}-{level}"
        gaps = ([self.timing.survey_digit_at_ms - self.timing.digit_end_ms]
                + [SURVEY_EVERY_MS - TONE_MS] * (SURVEY_REPEATS - 1) + [200])
        pcap = sipp.write_dtmf_pcap(BRANCH + SURVEY_DIGIT * SURVEY_REPEATS, self.work / f"{name}.pcap",
                                    start_ms=MENU_DIGIT_AT_MS, tone_ms=TONE_MS, speech=True, gap_ms=gaps)
        failures = "\n".join(f'  <recv response="{c}" optional="true" next="failed"/>' for c in sipp.FAILURE_CODES)
        scenario = sipp._render("caller.xml", self.work / f"{name}.xml", TO=to, AUDIO_PCAP=pcap, FAILURES=failures,
                                DTMF="", BYE_WAIT_MS=self.timing.bye_wait_ms)
        # One caller number per call: the desk phone's INVITE and the call log are matched by it.
        scenario.write_text(scenario.read_text().replace("sip:[service]@", f"sip:{prefix}[call_number]@"))
        ports = self.ports.sipp()
        args = sipp._sipp_args(scenario=scenario, server_host="127.0.0.1", server_port=self.s.sip_port,
                               workdir=self.work, name=name, **ports)
        rate_per_10s = max(1, round(rate * 10))
        args += ["-s", "bench", "-r", str(rate_per_10s), "-rp", "10000", "-l", str(level), "-m", str(calls),
                 "-buff_size", "4194304"]

        self.idle()
        res = LevelResult(variant=variant, level=level, rate=rate, calls=calls)
        pids = {"asterisk": self.asterisk_pid, "controller": self.controller.pid}
        desk_pids = [p._proc.pid for p in self.desks if p._proc]
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        desk0 = sum(cpu_seconds(p) for p in desk_pids)
        busy0 = machine_busy()
        t0 = time.monotonic()
        profiler = self.start_profiler(name) if self.profile and variant == "project" else None
        proc = await sipp._start(args, self.work, name)
        peak = 0.0
        caller_cpu = 0.0
        deadline = time.monotonic() + calls / rate + self.timing.bye_wait_ms / 1000 + 30
        while proc.returncode is None and time.monotonic() < deadline:
            peak = max(peak, rss_mb(pids["controller"]))
            caller_cpu = cpu_seconds(proc.pid) or caller_cpu
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.5)
        await sipp._finish(proc, 0)
        self.idle()
        res.wall_s = round(time.monotonic() - t0, 1)
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        busy1 = machine_busy()
        if profiler:
            self.stop_profiler(profiler)
        res.controller_peak_rss_mb = round(max(peak, rss_mb(pids["controller"])), 1)
        res.machine_busy_pct = round(100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1)
        res.loadavg_1m = os.getloadavg()[0]
        desk_cpu = sum(cpu_seconds(p) for p in desk_pids) - desk0
        self.analyse(res, prefix, name)
        n = max(1, res.attempted)
        res.asterisk_cpu_s_per_call = round((cpu1["asterisk"] - cpu0["asterisk"]) / n, 5)
        res.controller_cpu_s_per_call = round((cpu1["controller"] - cpu0["controller"]) / n, 5)
        res.sipp_cpu_s_per_call = round((caller_cpu + desk_cpu) / n, 5)
        return res

    def start_profiler(self, name: str):
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists() and not shutil.which("py-spy"):
            self.log("py-spy not installed: no profile")
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"profile-{name}.txt"
        self.profiles.append(str(out))
        with open(self.home / f"py-spy-{name}.log", "wb") as err:
            return subprocess.Popen([spy, "record", "--pid", str(self.controller.pid), "--format", "raw",
                                     "--rate", "100", "--output", str(out), "--nonblocking"],
                                    stdout=err, stderr=err)

    @staticmethod
    def stop_profiler(proc) -> None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

    # ------------------------------------------------------------------ what happened

    def analyse(self, res: LevelResult, prefix: str, name: str) -> None:
        caller = parse_trace(self.work / f"{name}.messages.log")
        calls: dict[str, dict] = {}
        for m in caller:
            c = calls.setdefault(m.call_id, {})
            if m.sent and m.first.startswith("INVITE ") and "invite" not in c:
                c["invite"], c["user"] = m.t, m.from_user
            elif not m.sent and _status(m) == 200 and m.cseq_method == "INVITE" and "ok" not in c:
                c["ok"] = m.t
            elif not m.sent and (st := _status(m)) and st >= 300 and m.cseq_method == "INVITE":
                c["final"] = st
            elif m.sent and m.first.startswith("ACK ") and "ok" in c and "ack" not in c:
                c["ack"] = m.t
            elif not m.sent and m.first.startswith("BYE "):
                c["server_bye"] = m.t
            elif m.sent and m.first.startswith("BYE "):
                c["caller_bye"] = m.t
        desk: dict[str, dict] = {}  # caller number -> first INVITE at a desk phone, answered?
        for phone in self.desks:
            per_dialog: dict[str, dict] = {}
            for m in parse_trace(phone.trace_path):
                if not m.from_user.startswith(prefix) and m.call_id not in per_dialog:
                    continue
                d = per_dialog.setdefault(m.call_id, {"user": m.from_user})
                if not m.sent and m.first.startswith("INVITE "):
                    d.setdefault("invite", m.t)
                elif m.sent and _status(m) == 200 and m.cseq_method == "INVITE":
                    d["answered"] = True
            for d in per_dialog.values():
                if "invite" not in d:
                    continue
                cur = desk.get(d["user"])
                if cur is None or d["invite"] < cur["invite"]:
                    desk[d["user"]] = {"invite": d["invite"], "answered": d.get("answered", False) or (cur or {}).get("answered", False)}
                elif d.get("answered"):
                    cur["answered"] = True
        surveyed = self.surveys(res.variant, prefix)

        timeline = self.timelines(prefix) if res.variant == "project" else {}
        steps: dict[str, list[float]] = {k: [] for k in POST_DIAL_STEPS}
        answer_lat, pdd = [], []
        reasons: dict[str, int] = {}
        spans = []
        for c in calls.values():
            if "invite" not in c:
                continue
            res.attempted += 1
            end = c.get("server_bye") or c.get("caller_bye") or c.get("ok") or c["invite"]
            spans.append((c["invite"], end))
            if "ok" not in c:
                reasons[f"no answer ({c.get('final', 'timeout')})"] = reasons.get(f"no answer ({c.get('final', 'timeout')})", 0) + 1
                continue
            res.answered += 1
            answer_lat.append(c["ok"] - c["invite"])
            d = desk.get(c["user"])
            if d and "ack" in c:
                digit_end = c["ack"] + self.timing.digit_end_ms / 1000
                pdd.append(d["invite"] - digit_end)
                tl = timeline.get(c["user"], {})
                if len(tl) == 4:  # the steps add up to the post-dial delay less the announcement
                    steps["digit"].append(tl["dtmf"] - digit_end)
                    steps["reaction"].append(tl["announcement"] - tl["dtmf"])
                    steps["announcement"].append(tl["route"] - tl["announcement"] - self.timing.announce_ms / 1000)
                    steps["dial"].append(tl["dial"] - tl["route"])
                    steps["invite"].append(d["invite"] - tl["dial"])
            ok = True
            if not d or not d["answered"]:
                reasons["desk phone never answered"] = reasons.get("desk phone never answered", 0) + 1
                ok = False
            else:
                res.desk_answered += 1
            if c["user"] in surveyed:
                res.survey_recorded += 1
            elif ok:
                reasons["survey score not recorded"] = reasons.get("survey score not recorded", 0) + 1
                ok = False
            if "server_bye" not in c and ok:
                reasons["system never hung up"] = reasons.get("system never hung up", 0) + 1
                ok = False
            res.succeeded += ok
        res.failed = res.attempted - res.succeeded
        res.failures = reasons
        res.answer_latency_ms = percentiles(answer_lat)
        res.post_dial_delay_ms = percentiles(pdd)
        res.pdd_over_announcement_ms = percentiles([x - self.timing.announce_ms / 1000 for x in pdd])
        if timeline:
            res.post_dial_steps_ms = {k: percentiles(v) for k, v in steps.items()}
        events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
        cur = 0
        for _, k in events:
            cur += k
            res.peak_concurrent = max(res.peak_concurrent, cur)

    def timelines(self, prefix: str) -> dict[str, dict[str, float]]:
        """Per caller, from the project's call log (read after :meth:`surveys` waited for it):
        when the controller had the first digit, asked for the branch announcement, started
        ringing (``route``: the announcement had finished) and had its first /dial answered."""
        with contextlib.closing(sqlite3.connect(self.home / "tongdai.db", timeout=10)) as con:
            rows = con.execute(
                "SELECT c.caller, e.kind, e.at, e.detail FROM call_events e JOIN calls c ON c.id = e.call_id "
                "WHERE c.caller LIKE ? AND e.kind IN ('dtmf', 'playback', 'route', 'dial') ORDER BY e.call_id, e.seq",
                (prefix + "%",)).fetchall()
        out: dict[str, dict[str, float]] = {}
        for caller, kind, at, detail in rows:
            if kind == "playback":
                sounds = json.loads(detail or "{}").get("sounds") or [""]
                if not str(sounds[0]).startswith(f"branch_{BRANCH}"):
                    continue
                kind = "announcement"
            # Stored naive, in UTC (models.UTCDateTime).
            t = dt.datetime.fromisoformat(at).replace(tzinfo=dt.timezone.utc).timestamp()
            out.setdefault(caller, {}).setdefault(kind, t)
        return out

    def surveys(self, variant: str, prefix: str) -> set[str]:
        """Callers whose survey score reached the system."""
        if variant == "baseline":
            text = self.layout.log_file.read_text(errors="replace") if self.layout.log_file.exists() else ""
            return set(re.findall(rf"bench-survey caller=({prefix}\d+) score={SURVEY_DIGIT}", text))
        db_path = self.home / "tongdai.db"
        deadline = time.monotonic() + 20
        while True:
            with contextlib.closing(sqlite3.connect(db_path, timeout=10)) as con:
                rows = con.execute("SELECT caller, disposition, survey_score FROM calls WHERE caller LIKE ?",
                                   (prefix + "%",)).fetchall()
            # The call log is written off the call's path: give it a moment to catch up.
            if all(r[1] != "in_progress" for r in rows) or time.monotonic() > deadline:
                return {r[0] for r in rows if r[2] == int(SURVEY_DIGIT) and r[1] == "answered"}
            time.sleep(0.5)

    # ------------------------------------------------------------------ all of it

    async def run(self) -> dict:
        started = dt.datetime.now()
        nofile = raise_nofile()
        self.log(f"bench: home {self.home}; levels {self.levels}; talk {self.talk_ms / 1000:g} s")
        await asyncio.to_thread(self.setup)
        self.start_controller()
        await self.start_desks()
        t = self.timing
        self.log(f"bench: Asterisk {self.layout.version() or '?'} PID {self.asterisk_pid}, controller PID "
                 f"{self.controller.pid}; one call ≈ {t.call_ms / 1000:.1f} s (announcement {t.announce_ms} ms, "
                 f"talk {t.talk_ms / 1000:g} s)")
        results: list[LevelResult] = []
        for idx, level in enumerate(self.levels):
            for variant in self.variants:
                rate, calls = self.plan(level)
                self.log(f"bench: {variant:8s} level {level}: {calls} calls at {rate:g}/s …")
                r = await self.run_level(variant, idx, level)
                results.append(r)
                self.log("   " + describe(r))
        return {
            "date": started.isoformat(timespec="seconds"),
            "quick": self.quick,
            "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "asterisk": self.layout.version(), "sipp": sipp_version(), "nofile": nofile,
                        "loadavg_at_start": list(os.getloadavg())},
            "setup": {"branch": BRANCH, "strategy": self.branch.strategy, "talk_s": t.talk_ms / 1000,
                      "announcement_ms": t.announce_ms, "call_s": t.call_ms / 1000,
                      "menu_digit_at_ms": MENU_DIGIT_AT_MS, "prompts": str(PROMPTS.relative_to(REPO_ROOT)),
                      "desk_answer_delay_ms": ANSWER_DELAY_MS},
            "levels": [asdict(r) for r in results],
            "profiles": self.profiles,
        }


def sipp_version() -> str | None:
    try:
        out = subprocess.run(["sipp", "-v"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"SIPp v(\S+)", out)
    return m.group(1) if m else None


# ----------------------------------------------------------------------------------------------
# Report


def describe(r: LevelResult) -> str:
    a, p = r.answer_latency_ms, r.post_dial_delay_ms
    return (f"{r.succeeded}/{r.attempted} ok, {r.failed} failed (peak {r.peak_concurrent} up); "
            f"answer p50/p95/p99 {a.get('p50')}/{a.get('p95')}/{a.get('p99')} ms; "
            f"post-dial p50/p95/p99 {p.get('p50')}/{p.get('p95')}/{p.get('p99')} ms; "
            f"CPU/call Asterisk {r.asterisk_cpu_s_per_call * 1000:.1f} ms, controller "
            f"{r.controller_cpu_s_per_call * 1000:.1f} ms; controller RSS {r.controller_peak_rss_mb:g} MB; "
            f"machine {r.machine_busy_pct:g}% busy" + (f"; failures {r.failures}" if r.failures else "")
            + ("\n      post-dial steps p50/p95 ms: " + "; ".join(
                f"{k} {v.get('p50')}/{v.get('p95')}" for k, v in r.post_dial_steps_ms.items())
               if r.post_dial_steps_ms else ""))


def _ratio(a, b) -> str:
    if a is None or b is None:
        return "n/a"
    if not b:
        return "n/a" if a else "1.00"
    return f"{a / b:.2f}"


def summary(result: dict) -> list[str]:
    by = {(r["variant"], r["level"]): r for r in result["levels"]}
    levels = sorted({r["level"] for r in result["levels"]})
    lines = ["", "level  | ok project/baseline | answer p95 ms (ratio)  | post-dial p95 ms (+ms)   | "
                 "Asterisk CPU/call (ratio) | controller CPU/call : Asterisk's | controller RSS"]
    for lv in levels:
        p, b = by.get(("project", lv)), by.get(("baseline", lv))
        if not p or not b:
            continue
        pa, ba = p["answer_latency_ms"]["p95"], b["answer_latency_ms"]["p95"]
        pp, bp = p["post_dial_delay_ms"]["p95"], b["post_dial_delay_ms"]["p95"]
        added = f"{pp - bp:+.0f}" if pp is not None and bp is not None else "n/a"
        share = (p["controller_cpu_s_per_call"] / p["asterisk_cpu_s_per_call"]) if p["asterisk_cpu_s_per_call"] else None
        lines.append(
            f"{lv:6d} | {p['succeeded']:4d}/{p['attempted']:<4d} {b['succeeded']:4d}/{b['attempted']:<4d} | "
            f"{pa} / {ba} ({_ratio(pa, ba)}) | {pp} / {bp} ({added}) | "
            f"{p['asterisk_cpu_s_per_call'] * 1000:.1f} / {b['asterisk_cpu_s_per_call'] * 1000:.1f} ms "
            f"({_ratio(p['asterisk_cpu_s_per_call'], b['asterisk_cpu_s_per_call'])}) | "
            f"{p['controller_cpu_s_per_call'] * 1000:.1f} ms : {share:.2f} | {p['controller_peak_rss_mb']:g} MB"
            if share is not None else
            f"{lv:6d} | {p['succeeded']}/{p['attempted']} {b['succeeded']}/{b['attempted']} | (no CPU measured)")
    lines += [""] + targets(result)
    return lines


def targets(result: dict) -> list[str]:
    by = {(r["variant"], r["level"]): r for r in result["levels"]}
    levels = sorted({r["level"] for r in result["levels"]})
    out = ["targets (goals, not assertions):"]
    clean = [lv for lv in levels if by.get(("baseline", lv), {}).get("failed") == 0]
    broken = [lv for lv in clean if by.get(("project", lv), {}).get("failed", 1) != 0]
    out.append(f"  no project failure where the baseline has none: {'met' if not broken else 'MISSED at ' + str(broken)}")

    def sustained(variant: str) -> int:
        best = 0
        for lv in levels:
            r = by.get((variant, lv))
            if r and r["failed"] == 0 and r["attempted"] > 0:
                best = lv
            else:
                break
        return best

    sp, sb = sustained("project"), sustained("baseline")
    ok = sb == 0 or sp >= TARGET_CAPACITY_RATIO * sb
    out.append(f"  largest level with zero failures: project {sp}, baseline {sb} "
               f"(goal ≥ {TARGET_CAPACITY_RATIO:g}×): {'met' if ok else 'MISSED'}")
    worst = None
    for lv in clean:  # where the baseline copes: past that both only measure an overload
        p, b = by.get(("project", lv)), by.get(("baseline", lv))
        if p and b and p["post_dial_delay_ms"]["p95"] is not None and b["post_dial_delay_ms"]["p95"] is not None:
            d = p["post_dial_delay_ms"]["p95"] - b["post_dial_delay_ms"]["p95"]
            worst = d if worst is None else max(worst, d)
    out.append(f"  post-dial delay added, p95, worst level the baseline sustains: {worst if worst is None else f'{worst:+.0f}'} ms "
               f"(goal ≤ {TARGET_PDD_P95_MS} ms): {'met' if worst is not None and worst <= TARGET_PDD_P95_MS else 'MISSED'}")
    shares = [by[("project", lv)]["controller_cpu_s_per_call"] / by[("project", lv)]["asterisk_cpu_s_per_call"]
              for lv in levels if ("project", lv) in by and by[("project", lv)]["asterisk_cpu_s_per_call"]]
    worst_share = max(shares) if shares else None
    out.append(f"  controller CPU per call / Asterisk's, worst level: "
               f"{'n/a' if worst_share is None else f'{worst_share:.2f}'} (goal ≤ {TARGET_CPU_SHARE:g}): "
               f"{'met' if worst_share is not None and worst_share <= TARGET_CPU_SHARE else 'MISSED'}")
    return out


def chart(result: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for variant, style in (("project", "o-"), ("baseline", "s--")):
        rows = sorted((r for r in result["levels"] if r["variant"] == variant), key=lambda r: r["level"])
        if not rows:
            continue
        x = [r["level"] for r in rows]
        axes[0].plot(x, [100 * r["succeeded"] / max(1, r["attempted"]) for r in rows], style, label=variant)
        axes[1].plot(x, [r["answer_latency_ms"]["p95"] for r in rows], style, label=f"{variant} p95")
        axes[1].plot(x, [r["answer_latency_ms"]["p50"] for r in rows], style, alpha=0.4, label=f"{variant} p50")
        axes[2].plot(x, [r["post_dial_delay_ms"]["p95"] for r in rows], style, label=f"{variant} p95")
        axes[2].plot(x, [r["post_dial_delay_ms"]["p50"] for r in rows], style, alpha=0.4, label=f"{variant} p50")
    axes[0].set_title("calls succeeded (%)")
    axes[1].set_title("answer latency INVITE→200 (ms)")
    axes[2].set_title("post-dial delay digit→desk INVITE (ms)")
    for ax in axes:
        ax.set_xlabel("concurrent calls")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylim(0, 105)
    fig.suptitle(f"tongdai capacity vs dialplan-only IVR — {result['date']} "
                 f"({result['machine']['cores']} cores, talk {result['setup']['talk_s']:g} s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_results(result: dict, out_dir: Path) -> tuple[Path, Path | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%d")
    path = out_dir / f"{stamp}{'-quick' if result['quick'] else ''}.json"
    n = 1
    while path.exists():
        n += 1
        path = out_dir / f"{stamp}{'-quick' if result['quick'] else ''}-{n}.json"
    png = chart(result, path.with_suffix(".png"))
    result["chart"] = png.name if png else None
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path, png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one small level: a smoke check")
    ap.add_argument("--levels", help="comma-separated concurrency levels (default 50,100,150,200,300,400)")
    ap.add_argument("--talk", type=float, help="seconds of talk per call (default 8, quick 2)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    ap.add_argument("--profile", action="store_true", help="py-spy the controller during the project's levels")
    ap.add_argument("--keep", action="store_true", help="keep the data directory and SIPp traces")
    ap.add_argument("--only", choices=VARIANTS, help="run one variant only (while profiling; no ratios)")
    a = ap.parse_args(argv)
    levels = [int(x) for x in a.levels.split(",")] if a.levels else list(QUICK_LEVELS if a.quick else FULL_LEVELS)
    if len(levels) > 10 or any(lv < 1 for lv in levels):
        ap.error("at most 10 levels, each at least 1")
    talk = a.talk if a.talk is not None else (2.0 if a.quick else 8.0)
    if not shutil.which("sipp"):
        print("bench: SIPp is missing (Debian package sip-tester; `make deps` installs it)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    bench = Bench(levels=levels, talk_s=talk, quick=a.quick, out_dir=a.out, keep=a.keep, profile=a.profile,
                  variants=(a.only,) if a.only else VARIANTS,
                  log=lambda m: print(f"[{time.monotonic() - t0:6.1f}s] {m}", flush=True))

    async def go() -> dict:
        # SIGTERM (kill, a CI timeout) stops the run like Ctrl-C does: the private Asterisk,
        # the controller and SIPp go too. One left behind was seen burning 15% of the CPU
        # through the next run, which skews every number it measures.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        try:
            return await bench.run()
        finally:
            await bench.teardown()

    try:
        result = asyncio.run(go())
    except asyncio.CancelledError:
        print("bench: stopped (SIGTERM); everything it started is stopped", file=sys.stderr)
        return 143
    path, png = write_results(result, a.out)
    for line in summary(result):
        print(line)
    if bench.profiles:
        from bench.profile import report

        for prof in bench.profiles:
            if Path(prof).exists():
                print("\n".join(report(Path(prof))))
    print(f"\nresults: {path}" + (f", chart: {png}" if png else " (no chart: matplotlib is not installed)"))
    if a.keep:
        print(f"kept: {bench.home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
