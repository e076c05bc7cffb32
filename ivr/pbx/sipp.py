"""SIPp driver: registrations, desk phones and callers against Asterisk.

Used by the end-to-end tests and by the operator command ``tongdai call``.
Everything runs SIPp (Debian package ``sip-tester``) as an asyncio
subprocess with its own SIP port (-p), control port (-cp) and media port
(-mp) on 127.0.0.1.  What happened on the wire is read back from SIPp's
message trace (-trace_msg), which SIPp writes as it goes.

Scenario templates live in ``sipp_scenarios/``; ``{{NAME}}`` placeholders
are filled in here and the rendered file is written to the run directory.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import socket
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SCENARIO_DIR = Path(__file__).with_name("sipp_scenarios")
SOUND_DIR = Path("/usr/share/sip-tester")
AUDIO_PCAP = SOUND_DIR / "g711a.pcap"
LOCAL_IP = "127.0.0.1"

# Final answers to INVITE the caller scenario ACKs and ends on cleanly.
# Anything else is still ACKed by SIPp's default "abort" behaviour.
FAILURE_CODES = (403, 404, 405, 408, 410, 415, 420, 480, 481, 482, 483, 484,
                 485, 486, 487, 488, 491, 500, 501, 502, 503, 504, 600, 603, 604, 606)

# RFC 4733 event codes.
DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11,
               "A": 12, "B": 13, "C": 14, "D": 15}


class SippError(RuntimeError):
    """SIPp could not be run, or a desk phone failed to register."""


# --------------------------------------------------------------------------
# DTMF pcap
# --------------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    """Internet checksum (RFC 1071), for the IPv4 header."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_frame(payload: bytes, sport: int, dport: int, ip_id: int) -> bytes:
    """Ethernet + IPv4 + UDP frame from 127.0.0.1 to 127.0.0.1."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    addr = socket.inet_aton(LOCAL_IP)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ip_id & 0xFFFF,
                     0, 64, socket.IPPROTO_UDP, 0, addr, addr)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    ether = b"\0" * 12 + b"\x08\x00"
    return ether + ip + udp


def write_dtmf_pcap(digits: str, path, *, start_ms: int = 500, tone_ms: int = 160,
                    gap_ms: int | list[int] = 240, payload_type: int = 101,
                    with_audio: bool = True, speech: bool = False, ssrc: int = 0x74640001) -> Path:
    """Write a pcap that plays ``digits`` as RFC 4733 telephone-events.

    One RTP stream (one SSRC) with 20 ms packetisation: every digit is a
    start packet (marker bit), one update every 20 ms for ``tone_ms``, then
    the end packet (E bit) three times.  Sequence numbers increase by one
    per packet over the whole file; an event's packets share its start
    timestamp (8 kHz clock), so timestamps never go backwards.  The pcap
    timestamps follow the RTP timing, which is what SIPp's
    ``play_pcap_audio`` uses to pace the packets.

    With ``with_audio`` (default) PCMA silence (payload 8) fills the time
    before, between and after the digits, as a real phone would send; it
    stops while an event is on, as RFC 4733 suggests. With ``speech`` the
    filler is the speech of SIPp's ``g711a.pcap`` (looped) instead of
    silence: a caller who talks between key presses, e.g. a complaint
    spoken after the beep and ended with ``#``.

    Digits: 0-9, *, #, A-D (lower-case a-d accepted).  Times are rounded
    up to whole 20 ms packets (tone at least 40 ms, gap at least 20 ms).
    ``gap_ms`` may be a list: the pause after each digit.
    Returns the path.
    """
    digits = digits.upper()
    bad = [d for d in digits if d not in DTMF_EVENTS]
    if bad or not digits:
        raise ValueError(f"cannot play DTMF digits {digits!r}")
    gaps = list(gap_ms) if isinstance(gap_ms, (list, tuple)) else [gap_ms] * len(digits)
    if len(gaps) < len(digits):
        gaps += [gaps[-1] if gaps else 240] * (len(digits) - len(gaps))
    if start_ms < 0 or tone_ms <= 0 or any(g <= 0 for g in gaps):
        raise ValueError("start_ms, tone_ms and gap_ms must be positive")
    start_ms, tone_ms = (-(-int(v) // 20) * 20 for v in (start_ms, tone_ms))
    gaps = [-(-int(g) // 20) * 20 for g in gaps]
    tone_ms = max(tone_ms, 40)

    packets: list[tuple[int, bytes]] = []  # (time in ms, RTP packet)
    seq = 1000
    ts_base = 16000

    def rtp(now_ms: int, pt: int, payload: bytes, *, ts_ms: int, marker=False) -> None:
        nonlocal seq
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt,
                             seq & 0xFFFF, (ts_base + ts_ms * 8) & 0xFFFFFFFF, ssrc)
        packets.append((now_ms, header + payload))
        seq += 1

    voice = _speech_frames() if speech else []

    def silence(start: int, end: int) -> None:
        if with_audio:
            for t in range(start, end, 20):
                frame = voice[(t // 20) % len(voice)] if voice else b"\xd5" * 160
                rtp(t, 8, frame, ts_ms=t)

    now = 0
    silence(now, start_ms)
    now = start_ms
    for i, digit in enumerate(digits):
        event = DTMF_EVENTS[digit]
        for k in range(tone_ms // 20):
            duration = (k + 1) * 160
            rtp(now + k * 20, payload_type, struct.pack("!BBH", event, 10, duration),
                ts_ms=now, marker=(k == 0))
        end = struct.pack("!BBH", event, 0x80 | 10, tone_ms * 8)
        for _ in range(3):
            rtp(now + tone_ms, payload_type, end, ts_ms=now)
        # Audio resumes one packet after the end of the event.
        next_start = now + tone_ms + gaps[i]
        last = i == len(digits) - 1
        silence(now + tone_ms + 20, next_start if not last else now + tone_ms + 200)
        now = next_start

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base_s = 1_700_000_000
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # DLT_EN10MB
    for n, (t_ms, packet) in enumerate(packets):
        frame = _udp_frame(packet, 40000, 40002, n)
        out.append(struct.pack("<IIII", base_s + t_ms // 1000, (t_ms % 1000) * 1000,
                               len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))
    return path


def _speech_frames() -> list[bytes]:
    """SIPp's g711a.pcap speech (7 s) as 20 ms PCMA payloads (the file uses 30 ms packets)."""
    data = AUDIO_PCAP.read_bytes()
    off, audio = 24, bytearray()
    while off + 16 <= len(data):
        incl = struct.unpack("<I", data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(pkt) < 14 + 20 + 8 + 12:
            continue
        ihl = (pkt[14] & 0x0F) * 4  # Ethernet (14) + IPv4 (IHL) + UDP (8) + RTP (12)
        rtp = pkt[14 + ihl + 8:]
        if (rtp[1] & 0x7F) == 8:
            audio += rtp[12:]
    frames = [bytes(audio[i:i + 160]) for i in range(0, len(audio) - 159, 160)]
    return frames or [b"\xd5" * 160]


# --------------------------------------------------------------------------
# Message trace
# --------------------------------------------------------------------------

@dataclass
class SipMessage:
    """One SIP message from SIPp's message trace."""

    direction: str  # "sent" | "received"
    first_line: str
    headers: dict[str, str]  # lower-case name -> first value

    @property
    def status(self) -> int | None:
        """Status code of a response, None for a request."""
        m = re.match(r"SIP/2\.0 (\d{3})", self.first_line)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str:
        """Request method, or for a response the method of its CSeq."""
        if self.status is None:
            return self.first_line.split(" ", 1)[0]
        return self.headers.get("cseq", "").split(" ")[-1]

    @property
    def call_id(self) -> str:
        return self.headers.get("call-id", "")


_TRACE_SPLIT = re.compile(r"^-{20,} \S+ \S+\s*$", re.MULTILINE)
_COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact",
            "l": "content-length", "c": "content-type"}


def parse_message_trace(path) -> list[SipMessage]:
    """Parse a SIPp -trace_msg file (it may still be growing)."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    messages = []
    for block in _TRACE_SPLIT.split(text):
        lines = block.strip("\r\n").splitlines()
        if len(lines) < 3:
            continue
        if " message sent" in lines[0]:
            direction = "sent"
        elif " message received" in lines[0]:
            direction = "received"
        else:
            continue
        body = [line.rstrip("\r") for line in lines[1:]]
        while body and not body[0]:
            body.pop(0)
        if not body:
            continue
        headers: dict[str, str] = {}
        for line in body[1:]:
            if not line:
                break
            name, sep, value = line.partition(":")
            if sep:
                name = name.strip().lower()
                headers.setdefault(_COMPACT.get(name, name), value.strip())
        messages.append(SipMessage(direction, body[0], headers))
    return messages


# --------------------------------------------------------------------------
# Running SIPp
# --------------------------------------------------------------------------

def _sipp_binary() -> str:
    binary = shutil.which("sipp")
    if not binary:
        raise SippError("sipp not found (Debian package sip-tester)")
    return binary


def _render(template: str, dest: Path, **values) -> Path:
    """Fill the {{NAME}} placeholders of a scenario template into dest."""
    text = (SCENARIO_DIR / template).read_text()
    for name, value in values.items():
        text = text.replace("{{%s}}" % name, str(value))
    left = re.findall(r"\{\{\w+\}\}", text)
    if left:
        raise ValueError(f"{template}: unfilled placeholders {left}")
    dest.write_text(text)
    return dest


def _sip_user(value: str, what: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.+*#~-]+", value or ""):
        raise ValueError(f"{what} {value!r} is not a plain SIP user part")
    return value


# Where a SIPp run without a ``trace_dir`` keeps its files (None: the system's temporary
# directory). The test suite points it at pytest's own, which keeps only the last few runs.
TRACE_ROOT: Path | None = None


def _workdir(trace_dir, prefix: str) -> Path:
    if trace_dir is None:
        return Path(tempfile.mkdtemp(prefix=f"tongdai-sipp-{prefix}-", dir=TRACE_ROOT))
    path = Path(trace_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def port_is_free(port: int) -> bool:
    """Whether a local port is free for both UDP (SIP, RTP) and TCP (SIPp's control socket)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _sipp_args(*, scenario: Path, server_host: str, server_port: int, local_port: int,
               media_port: int, control_port: int, workdir: Path, name: str,
               local_ip: str = LOCAL_IP) -> list[str]:
    """Options shared by every SIPp run: ports, no stdin, trace files.

    SIPp binds local_port (SIP), media_port and media_port + 2 (RTP, video
    RTP) and control_port, so these four must differ.
    """
    ports = [local_port, media_port, media_port + 2, control_port]
    if len(set(ports)) != 4:
        raise ValueError(f"SIPp ports collide (SIP {local_port}, RTP {media_port} and "
                         f"{media_port + 2}, control {control_port})")
    return [
        f"{server_host}:{server_port}", "-sf", str(scenario),
        "-i", local_ip, "-mi", local_ip,
        "-p", str(local_port), "-mp", str(media_port), "-cp", str(control_port),
        "-nostdin",
        "-trace_msg", "-message_file", str(workdir / f"{name}.messages.log"),
        "-trace_err", "-error_file", str(workdir / f"{name}.errors.log"),
    ]


async def _start(args: list[str], workdir: Path, name: str) -> asyncio.subprocess.Process:
    # Traces of an earlier run with the same name would be read as this one's.
    for suffix in ("messages.log", "errors.log"):
        (workdir / f"{name}.{suffix}").unlink(missing_ok=True)
    # SIPp's screen output goes to a file: a pipe nobody reads would block it.
    with open(workdir / f"{name}.screen.log", "wb") as out, \
            open(workdir / f"{name}.stderr.log", "wb") as err:
        return await asyncio.create_subprocess_exec(
            _sipp_binary(), *args, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True)


async def _finish(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int, bool]:
    """Wait up to ``timeout`` s for SIPp to exit, then stop it.

    Returns (exit code, whether it had to be stopped).  SIGINT makes SIPp
    quit at once (traces complete); its control-port 'q'/'Q' and SIGUSR1
    wait for running calls (a desk phone's registration call never ends),
    SIGTERM takes ~1.5 s, and SIPp's own -timeout does not cut short UDP
    retransmissions (a dead server keeps it busy ~32 s), so we enforce
    the timeout here.
    """
    try:
        return await asyncio.wait_for(proc.wait(), timeout), False
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        # Our caller gave up (test timeout, Ctrl-C): don't leave SIPp behind.
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        raise
    for sig, grace in ((signal.SIGINT, 2.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            await asyncio.wait_for(proc.wait(), grace)
            break
        except TimeoutError:
            continue
    return (proc.returncode if proc.returncode is not None else -9), True


def _diagnostics(workdir: Path, name: str, limit: int = 2000) -> str:
    """SIPp's stderr and error log, trimmed, for error messages."""
    parts = []
    for suffix in ("stderr.log", "errors.log"):
        path = workdir / f"{name}.{suffix}"
        if path.exists():
            text = path.read_text(errors="replace").strip()
            if text:
                parts.append(f"[{path.name}] {text[-limit:]}")
    return "\n".join(parts)


def _last_final_status(messages: list[SipMessage], method: str) -> int | None:
    codes = [m.status for m in messages if m.direction == "received"
             and m.status and m.status >= 200 and m.method == method]
    return codes[-1] if codes else None


# --------------------------------------------------------------------------
# REGISTER
# --------------------------------------------------------------------------

async def register(*, server_host: str, server_port: int, user: str, password: str,
                   local_port: int, expires: int = 300, timeout: float = 10,
                   media_port: int | None = None, control_port: int | None = None,
                   trace_dir=None, local_ip: str = LOCAL_IP) -> int:
    """REGISTER ``user`` once with digest auth and return the final status.

    200 on success; Asterisk answers a wrong password with another 401.
    ``expires=0`` removes the binding.  Returns 0 if no final answer came
    within ``timeout`` seconds.  Media and control ports default to
    local_port + 1 and + 2 (SIPp binds them even for REGISTER).
    """
    _sip_user(user, "user")
    workdir = _workdir(trace_dir, "register")
    name = f"register-{user}-{local_port}"
    scenario = _render("register.xml", workdir / f"{name}.xml", EXPIRES=int(expires))
    args = _sipp_args(scenario=scenario, server_host=server_host, server_port=server_port,
                      local_port=local_port,
                      media_port=media_port or local_port + 1,
                      control_port=control_port or local_port + 2,
                      workdir=workdir, name=name, local_ip=local_ip)
    args += ["-s", user, "-au", user, "-ap", password, "-m", "1"]
    proc = await _start(args, workdir, name)
    await _finish(proc, timeout)
    status = _last_final_status(parse_message_trace(workdir / f"{name}.messages.log"),
                                "REGISTER")
    return status or 0


# --------------------------------------------------------------------------
# Desk phone (UAS)
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class DeskPhoneStats:
    """What a desk phone saw, counted per call (Call-ID), not per packet."""

    invites_received: int = 0
    answered: int = 0       # 200 OK sent to an INVITE
    busy: int = 0           # 486 sent
    cancelled: int = 0      # CANCEL received
    byes_sent: int = 0
    byes_received: int = 0
    registered: bool = False
    register_status: int | None = None  # last final answer to REGISTER
    qualified: int = 0      # Asterisk's OPTIONS answered 200 (qualify; not calls)


def _deskphone_stats(messages: list[SipMessage]) -> DeskPhoneStats:
    def calls(direction, predicate) -> int:
        return len({m.call_id for m in messages
                    if m.direction == direction and predicate(m)})

    register_status = _last_final_status(messages, "REGISTER")
    return DeskPhoneStats(
        invites_received=calls("received", lambda m: m.first_line.startswith("INVITE ")),
        answered=calls("sent", lambda m: m.status == 200 and m.method == "INVITE"),
        busy=calls("sent", lambda m: m.status == 486),
        cancelled=calls("received", lambda m: m.first_line.startswith("CANCEL ")),
        byes_sent=calls("sent", lambda m: m.first_line.startswith("BYE ")),
        byes_received=calls("received", lambda m: m.first_line.startswith("BYE ")),
        registered=any(m.direction == "received" and m.status == 200
                       and m.method == "REGISTER" for m in messages),
        register_status=register_status,
        qualified=calls("sent", lambda m: m.status == 200 and m.method == "OPTIONS"),
    )


class DeskPhone:
    """A SIPp desk phone: REGISTERs, then handles INVITEs until stopped.

    ``mode``: 'answer' (180, 200 after ``answer_delay_ms`` with PCMA +
    telephone-event, plays g711a audio (7 s, once); hangs up itself
    ``hangup_after_ms`` after the ACK unless the far end's BYE comes first,
    or waits for the BYE when None), 'busy' (486) or 'noanswer' (180 until
    CANCEL, then 200 + 487).  Asterisk's qualify OPTIONS get 200 in every mode (the
    out-of-call scenarios answer them; they are not counted as calls).

        async with DeskPhone(server_host="127.0.0.1", server_port=5060,
                             user="8001", password="...", mode="answer",
                             local_port=50060, media_port=50062,
                             control_port=50066) as phone:
            ...            # registered once the block starts
            phone.stats()  # DeskPhoneStats, read live from the trace

    SIPp registers from ``local_port`` (the same port that receives the
    INVITEs) and re-registers before ``expires`` runs out.  On exit the
    process is stopped and, with ``unregister=True``, the binding removed.
    """

    MODES = ("answer", "busy", "noanswer")

    def __init__(self, *, server_host: str, server_port: int, user: str, password: str,
                 mode: str = "answer", local_port: int, media_port: int, control_port: int,
                 answer_delay_ms: int = 200, hangup_after_ms: int | None = None,
                 expires: int = 300, trace_dir=None, register_timeout: float = 10,
                 unregister: bool = True, extra_args: tuple[str, ...] = ()):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, not {mode!r}")
        self.server_host, self.server_port = server_host, server_port
        self.user, self.password = _sip_user(user, "user"), password
        self.mode = mode
        self.local_port, self.media_port, self.control_port = local_port, media_port, control_port
        self.answer_delay_ms = max(1, int(answer_delay_ms))
        self.hangup_after_ms = hangup_after_ms
        self.expires = expires
        self.register_timeout = register_timeout
        self.unregister = unregister
        self.extra_args = tuple(extra_args)  # e.g. ("-buff_size", "4194304") under load
        self.workdir = _workdir(trace_dir, f"deskphone-{user}")
        self.name = f"deskphone-{user}-{local_port}"
        self.trace_path = self.workdir / f"{self.name}.messages.log"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start SIPp (registration + INVITE handling); does not wait."""
        if self._proc is not None:
            raise SippError("desk phone already started")
        main = _render("deskphone_register.xml", self.workdir / f"{self.name}.xml",
                       EXPIRES=self.expires,
                       REREGISTER_MS=max(1000, int(self.expires * 1000 * 0.8)))
        if self.hangup_after_ms is None:
            bye_wait = ""
        else:
            bye_wait = f'timeout="{max(1, int(self.hangup_after_ms))}" ontimeout="local_bye"'
        ooc = _render(f"deskphone_{self.mode}.xml", self.workdir / f"{self.name}.ooc.xml",
                      ANSWER_DELAY_MS=self.answer_delay_ms, BYE_WAIT_ATTRS=bye_wait,
                      AUDIO_PCAP=AUDIO_PCAP)
        args = _sipp_args(scenario=main, server_host=self.server_host,
                          server_port=self.server_port, local_port=self.local_port,
                          media_port=self.media_port, control_port=self.control_port,
                          workdir=self.workdir, name=self.name)
        # -m 1: the only "own" call is the registration; INVITEs arrive as
        # out-of-call messages and each runs the -oocsf scenario.
        # -aa answers stray OPTIONS/NOTIFY/INFO/UPDATE with 200.
        args += ["-oocsf", str(ooc), "-s", self.user, "-au", self.user,
                 "-ap", self.password, "-m", "1", "-aa", *self.extra_args]
        self._proc = await _start(args, self.workdir, self.name)

    def stats(self) -> DeskPhoneStats:
        """Counts so far (or final ones after stop), parsed from the trace."""
        return _deskphone_stats(parse_message_trace(self.trace_path))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def wait_registered(self, timeout: float | None = None) -> None:
        """Return once Asterisk accepted the REGISTER; raise SippError if not."""
        timeout = self.register_timeout if timeout is None else timeout
        if self._proc is None:
            raise SippError("desk phone not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            stats = self.stats()
            if stats.registered:
                return
            exited = self._proc.returncode is not None
            if exited or loop.time() > deadline:
                reason = (f"SIPp exited with {self._proc.returncode}" if exited
                          else f"no 200 within {timeout} s")
                raise SippError(
                    f"desk phone {self.user} failed to register at "
                    f"{self.server_host}:{self.server_port}: {reason}, last REGISTER "
                    f"answer {stats.register_status}\n"
                    + _diagnostics(self.workdir, self.name))
            await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """Kill SIPp at once (SIGKILL), as when a phone is unplugged: nothing is sent, the
        registration stays in Asterisk. A later :meth:`stop` still unregisters (``unregister``)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def stop(self) -> DeskPhoneStats:
        """Stop SIPp (SIGINT, then harder), unregister, return the stats."""
        proc, self._proc = self._proc, None
        if proc is not None:
            await _finish(proc, 0)  # SIGINT at once
        stats = self.stats()
        if self.unregister and stats.registered:
            await register(server_host=self.server_host, server_port=self.server_port,
                           user=self.user, password=self.password,
                           local_port=self.local_port, media_port=self.media_port,
                           control_port=self.control_port, expires=0, timeout=5,
                           trace_dir=self.workdir)
        return stats

    async def __aenter__(self) -> DeskPhone:
        await self.start()
        try:
            await self.wait_registered()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


class Telco:
    """The telco's SIP gateway for outbound calls (``TONGDAI_TRUNK_OUT``): a SIPp UAS on
    ``local_port`` that takes every INVITE with the desk phone scenarios ('answer': 180, 200,
    audio, hangs up ``hangup_after_ms`` after the ACK; 'noanswer': rings until CANCEL).
    :meth:`invites` lists the Request-URIs it received.

        async with Telco(local_port=..., media_port=..., control_port=...) as telco:
            ...  # TONGDAI_TRUNK_OUT=127.0.0.1:<local_port>
    """

    def __init__(self, *, local_port: int, media_port: int, control_port: int, mode: str = "answer",
                 answer_delay_ms: int = 300, hangup_after_ms: int | None = 3000, trace_dir=None):
        if mode not in ("answer", "noanswer"):
            raise ValueError(f"mode must be answer or noanswer, not {mode!r}")
        self.local_port, self.media_port, self.control_port = local_port, media_port, control_port
        self.mode, self.answer_delay_ms, self.hangup_after_ms = mode, max(1, int(answer_delay_ms)), hangup_after_ms
        self.workdir = _workdir(trace_dir, "telco")
        self.name = f"telco-{local_port}"
        self.trace_path = self.workdir / f"{self.name}.messages.log"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        bye_wait = "" if self.hangup_after_ms is None else \
            f'timeout="{max(1, int(self.hangup_after_ms))}" ontimeout="local_bye"'
        scenario = _render(f"deskphone_{self.mode}.xml", self.workdir / f"{self.name}.xml",
                           ANSWER_DELAY_MS=self.answer_delay_ms, BYE_WAIT_ATTRS=bye_wait, AUDIO_PCAP=AUDIO_PCAP)
        # A UAS: the remote address is a placeholder SIPp needs; every call is an INVITE it receives.
        args = _sipp_args(scenario=scenario, server_host=LOCAL_IP, server_port=self.local_port + 1,
                          local_port=self.local_port, media_port=self.media_port,
                          control_port=self.control_port, workdir=self.workdir, name=self.name)
        self._proc = await _start(args + ["-aa"], self.workdir, self.name)

    def invites(self) -> list[str]:
        """The Request-URI of every INVITE received, in order."""
        return [m.first_line.split()[1] for m in parse_message_trace(self.trace_path)
                if m.direction == "received" and m.first_line.startswith("INVITE ")]

    def answered(self) -> int:
        return sum(1 for m in parse_message_trace(self.trace_path)
                   if m.direction == "sent" and m.status == 200 and m.method == "INVITE")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await _finish(proc, 0)

    async def __aenter__(self) -> Telco:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


# --------------------------------------------------------------------------
# Caller (UAC)
# --------------------------------------------------------------------------

@dataclass
class CallResult:
    """Outcome of :func:`call`."""

    final_status: int | None  # last final answer to INVITE (None: none came)
    answered: bool
    hung_up_by: str | None    # 'caller' | 'callee' | None
    returncode: int           # SIPp's exit code (0: scenario completed)
    trace_path: Path          # SIPp message trace
    error: str = ""           # SIPp stderr/error log when something went wrong
    messages: list[SipMessage] = field(default_factory=list, repr=False)


async def call(*, server_host: str, server_port: int, to: str, from_user: str,
               password: str | None = None, digits: str | None = None,
               digits_at_ms: int = 1500, hold_ms: int = 3000,
               wait_for_bye_ms: int | None = None, local_port: int, media_port: int,
               control_port: int, timeout: float = 60, trace_dir=None, dtmf_speech: bool = True,
               dtmf_tone_ms: int | None = None, dtmf_gap_ms: int | list[int] | None = None) -> CallResult:
    """Place one call with SIPp and report what happened.

    INVITE sip:{to}@server from ``from_user`` (PCMA + telephone-event/101),
    answering one 401/407 challenge when ``password`` is given.  Once
    answered: ACK, play g711a audio and, if ``digits``, the DTMF pcap from
    :func:`write_dtmf_pcap` ``digits_at_ms`` after the answer.  Then hang up
    ``hold_ms`` after the answer, or with ``wait_for_bye_ms`` wait that long
    (from the answer) for the far end's BYE, and hang up if none came.  A
    BYE from the far end is accepted at any point after the answer.  With
    digits, the caller stays at least until the last digit has been sent.
    ``dtmf_tone_ms`` / ``dtmf_gap_ms`` override the tone and pause lengths
    (defaults of :func:`write_dtmf_pcap`: 160 / 240 ms; the gap may be a
    list, one pause per digit). With ``dtmf_speech`` (default) the caller
    talks between key presses instead of sending silence.

    Never hangs: SIPp is stopped after ``timeout`` seconds (the result then
    has the status seen so far and an ``error``).  Trace files go to
    ``trace_dir`` (default: a new temporary directory).
    """
    _sip_user(to, "to")
    _sip_user(from_user, "from_user")
    workdir = _workdir(trace_dir, "call")
    name = f"call-{from_user}-{to}-{local_port}"

    total_ms = wait_for_bye_ms if wait_for_bye_ms is not None else hold_ms
    dtmf = ""
    if digits:
        tone_ms = dtmf_tone_ms if dtmf_tone_ms is not None else 160
        gap_ms = dtmf_gap_ms if dtmf_gap_ms is not None else 240
        gaps = list(gap_ms) if isinstance(gap_ms, (list, tuple)) else [gap_ms] * len(digits)
        # The pcap starts with lead_ms of silence (lets Asterisk settle on the
        # new RTP stream), so start it that much early: first tone at digits_at_ms.
        lead_ms = 100
        play_at = max(1, int(digits_at_ms) - lead_ms)
        pcap = write_dtmf_pcap(digits, workdir / f"{name}.dtmf.pcap", start_ms=lead_ms,
                               tone_ms=tone_ms, gap_ms=gap_ms, speech=dtmf_speech)
        dtmf = (f'  <recv request="BYE" timeout="{play_at}" '
                f'ontimeout="dtmf" next="callee_bye"/>\n'
                f'  <label id="dtmf"/>\n'
                f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n')
        # play_pcap_audio replaces the audio stream: once the digits are out, send speech
        # again so that whoever answers hears the caller (RTP both ways).
        dtmf_ms = lead_ms + len(digits) * tone_ms + sum(gaps[:len(digits)]) + 100
        dtmf += (f'  <recv request="BYE" timeout="{dtmf_ms}" ontimeout="speech" next="callee_bye"/>\n'
                 f'  <label id="speech"/>\n'
                 f'  <nop><action><exec play_pcap_audio="{AUDIO_PCAP}"/></action></nop>\n')
        # Hang up no earlier than the last digit has been played.
        total_ms = max(total_ms - play_at - dtmf_ms, 1)
    failures = "\n".join(f'  <recv response="{code}" optional="true" next="failed"/>'
                         for code in FAILURE_CODES)
    scenario = _render("caller.xml", workdir / f"{name}.xml", TO=to, AUDIO_PCAP=AUDIO_PCAP,
                       FAILURES=failures, DTMF=dtmf, BYE_WAIT_MS=max(1, int(total_ms)))
    args = _sipp_args(scenario=scenario, server_host=server_host, server_port=server_port,
                      local_port=local_port, media_port=media_port,
                      control_port=control_port, workdir=workdir, name=name)
    args += ["-s", from_user, "-m", "1"]
    if password is not None:
        args += ["-au", from_user, "-ap", password]

    proc = await _start(args, workdir, name)
    returncode, timed_out = await _finish(proc, timeout)

    trace = workdir / f"{name}.messages.log"
    messages = parse_message_trace(trace)
    final = _last_final_status(messages, "INVITE")
    hung_up_by = None
    if any(m.direction == "sent" and m.first_line.startswith("BYE ") for m in messages):
        hung_up_by = "caller"
    elif any(m.direction == "received" and m.first_line.startswith("BYE ") for m in messages):
        hung_up_by = "callee"
    error = ""
    if timed_out:
        error = f"SIPp did not finish within {timeout} s and was stopped\n"
    if timed_out or returncode != 0 or final is None:
        error += _diagnostics(workdir, name)
    return CallResult(final_status=final, answered=final is not None and 200 <= final < 300,
                      hung_up_by=hung_up_by, returncode=returncode, trace_path=trace,
                      error=error, messages=messages)
