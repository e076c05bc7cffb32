"""Before Asterisk starts: nothing stale adopted by mistake, nothing left behind.

An Asterisk left running by a ``tongdai run`` that was killed (SIGKILL: nothing could stop it)
holds SIP, ARI and AMI with the credentials of its time; a second one started beside it cannot
bind those ports and runs deaf. So before a start:

- :func:`leftovers` finds this instance's own Asterisk processes: its command line names this
  instance's ``asterisk.conf`` and, for the sandbox, its root is this sandbox's chroot. Those
  may be stopped (:func:`stop`): they belong to this data directory.
- :func:`holders` says which processes hold a port (``/proc/net`` and the processes' open
  sockets), so that a port taken by anything else is refused with its PID and command line
  and the command that frees it, instead of a timeout 15 s later.

Linux only (``/proc``); reading other users' processes needs root, which the sandbox needs anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.pbx.asterisk import Layout

TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"PID {self.pid} ({self.command})"


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p)


def _root(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None


def leftovers(layout: Layout) -> list[int]:
    """PIDs of Asterisk processes running this instance's configuration."""
    conf = layout.ast("etc") + "/asterisk.conf"
    chroot = str(layout.chroot.resolve()) if layout.chroot is not None else None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        args = command_line(pid).split()
        if not args or "asterisk" not in Path(args[0]).name or conf not in args:
            continue
        if chroot is not None and _root(pid) != chroot:
            continue  # the same path in another sandbox
        found.append(pid)
    return sorted(found)


def _bound(port: int, host: str) -> set[int]:
    """Socket inodes bound to ``port`` on ``host`` (or on every address): TCP listening, UDP bound."""
    want = {_hex_ip(host), "00000000", "00000000000000000000000000000000"}
    if host in ("127.0.0.1", "localhost"):
        want.add("0000000000000000FFFF00000100007F")  # ::ffff:127.0.0.1
    inodes = set()
    for name in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10:
                continue
            ip, _, p = f[1].partition(":")
            if int(p, 16) != port or (name.startswith("tcp") and f[3] != TCP_LISTEN):
                continue
            if ip in want or host in ("0.0.0.0", "::"):
                inodes.add(int(f[9]))
    return inodes - {0}


def _hex_ip(host: str) -> str:
    try:
        a, b, c, d = (int(x) for x in host.split("."))
    except ValueError:
        return ""
    return f"{d:02X}{c:02X}{b:02X}{a:02X}"


def holders(port: int, host: str = "127.0.0.1") -> list[Holder]:
    """The processes holding ``port`` (TCP or UDP) on ``host``."""
    inodes = _bound(port, host)
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(entry / "fd" / fd) in wanted:
                    found.append(Holder(int(entry.name), command_line(int(entry.name)) or "?"))
                    break
            except OSError:
                continue
    return sorted(found, key=lambda h: h.pid)


def stop(pid: int, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; return once it is gone (all its threads)."""
    from ivr.pbx.asterisk import terminate

    terminate(pid, timeout)


def before_start(layout: Layout, *, replace: bool, say) -> None:
    """Make room for this instance's Asterisk, or raise PbxError saying what is in the way.

    ``replace`` (``tongdai run``): every Asterisk of this instance still running is left from
    an earlier run that could not stop it, and is stopped. Otherwise (``tongdai sandbox
    start``) the one in the PID file is kept (start is then a no-op) and only others are stopped.
    """
    from ivr.pbx.asterisk import PbxError

    s = layout.settings
    current = layout.pid()
    ours = leftovers(layout)
    keep = None if replace else current
    for pid in ours:
        if pid == keep:
            continue
        say(f"Asterisk của thư mục dữ liệu này còn chạy từ trước (PID {pid}, {command_line(pid)}): "
            "đã dừng để khởi động lại với cấu hình hiện tại.")
        stop(pid)
    if keep is not None and keep in ours:
        return  # running already, on its own ports
    if replace or current not in ours:
        layout.pid_file.unlink(missing_ok=True)
    busy = []
    for name, port, var in (("SIP", s.sip_port, "TONGDAI_SIP_PORT"), ("ARI/HTTP", s.ari_port, "TONGDAI_ARI_PORT"),
                            ("AMI", s.ami_port, "TONGDAI_AMI_PORT")):
        for h in holders(port, s.bind):
            busy.append(f"cổng {name} {s.bind}:{port} đang bị tiến trình {h} chiếm; "
                        f"dừng nó (kill {h.pid}) hoặc chọn cổng khác ({var}=…)")
    if busy:
        raise PbxError("không khởi động được Asterisk:\n  " + "\n  ".join(busy))
