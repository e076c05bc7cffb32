"""Kamailio, the cluster's SIP edge: dispatcher over the nodes, registrar for the desk phones.

Its files live in ``$TONGDAI_HOME/cluster/kamailio/``: ``kamailio.cfg`` (rendered here),
``dispatcher.list`` (the nodes) and ``kamailio.ctl``, the binrpc socket ``kamcmd`` talks to
(``kamcmd -s unix:<path> dispatcher.list``). The desk phones' passwords (secrets.json: the ones
`tongdai extensions credentials` prints) are loaded into its ``creds`` hash table over that socket
(:meth:`Kamailio.load_credentials`, on kamcmd's standard input: never on a command line), at
start and at every `tongdai cluster apply`, without a restart that would lose the registrations.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr.config import credentials as secrets_mod
from ivr.config.routing import Routing
from ivr.config.settings import Settings
from ivr.pbx.asterisk import terminate

MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules",
               "/usr/lib/kamailio/modules", "/usr/lib64/kamailio/modules")
DISPATCH_SET = 1
# OPTIONS to every node each second; one unanswered marks it inactive, one answer brings it
# back: a dead node stops getting calls within ~2 s (fr_timer + ping interval), a restarted one
# gets them again as soon as it answers, without touching Kamailio.
PING_INTERVAL = 1
# How long Kamailio waits for a node's first answer to an INVITE before it tries the next node.
NODE_TIMEOUT_MS = 1500


class KamailioError(Exception):
    """Kamailio is missing, its configuration is refused, or it did not start."""


@dataclass(frozen=True)
class Target:
    """One node as the dispatcher sees it."""

    name: str
    uri: str
    flags: str  # kamcmd's: A active, I inactive, D disabled, P probing

    @property
    def healthy(self) -> bool:
        return "A" in self.flags and "I" not in self.flags and "D" not in self.flags


class Kamailio:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = settings.home / "cluster" / "kamailio"

    # ------------------------------------------------------------------ files

    @property
    def cfg(self) -> Path:
        return self.dir / "kamailio.cfg"

    @property
    def ctl(self) -> Path:
        return self.dir / "kamailio.ctl"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kamailio.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "kamailio.log"

    def render(self, routing: Routing, nodes: Sequence[tuple[str, str, int]]) -> None:
        """Write kamailio.cfg and dispatcher.list (``nodes``: name, address, SIP port)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)  # its control socket can read the desk phones' passwords
        s = self.settings
        _write(self.cfg, render_cfg(s, self.dir, module_dir()))
        _write(self.dir / "dispatcher.list", "".join(
            f"{DISPATCH_SET} sip:{addr}:{port} 0 0 duid={name}\n" for name, addr, port in nodes))

    def load_credentials(self, routing: Routing) -> None:
        """Replace the ``creds`` table with the extensions' passwords (one kamcmd session)."""
        sec = secrets_mod.load(self.settings.secrets_path, list(routing.extensions))
        # "s:" makes kamcmd pass a string even where the value looks like a number.
        lines = ["htable.flush creds"] + [f"htable.sets creds s:{ext} s:{sec.sip_password(ext)}"
                                          for ext in sorted(routing.extensions)]
        self.rpc_batch(lines)

    # ------------------------------------------------------------------ process

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"kamailio" in cmdline and str(self.cfg).encode() in cmdline else None

    def check(self) -> None:
        """Kamailio's own check of the rendered configuration (``kamailio -c``)."""
        p = subprocess.run([binary(), "-c", "-f", str(self.cfg)], capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise KamailioError("kamailio refused its configuration:\n" + (p.stdout + p.stderr)[-3000:])

    def start(self, timeout: float = 15) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.check()
        self.ctl.unlink(missing_ok=True)
        log = open(self.log_file, "ab")
        # -DD: stay in the foreground (we own the process), -E: log to stderr (our log file).
        proc = subprocess.Popen([binary(), "-DD", "-E", "-f", str(self.cfg), "-m", "64", "-M", "8"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise KamailioError(f"kamailio exited at start-up (code {proc.returncode}):\n{self.log_tail()}")
            if self.ctl.exists():
                try:
                    self.rpc("core.version")
                    return proc.pid
                except KamailioError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise KamailioError(f"kamailio did not start in {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        terminate(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------------ RPC

    def rpc(self, *command: str, timeout: float = 5) -> str:
        kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        try:
            p = subprocess.run([kamcmd, "-s", f"unix:{self.ctl}", *command], capture_output=True, text=True,
                               timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise KamailioError(f"kamcmd {' '.join(command)}: {e}") from None
        if p.returncode != 0:
            raise KamailioError(f"kamcmd {' '.join(command)}: {(p.stderr or p.stdout).strip()}")
        return p.stdout

    def rpc_batch(self, lines: list[str], timeout: float = 10) -> None:
        """Several commands on kamcmd's standard input (values never appear in a process list)."""
        kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        try:
            p = subprocess.run([kamcmd, "-s", f"unix:{self.ctl}"], input="\n".join(lines) + "\n",
                               capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise KamailioError(f"kamcmd: {e}") from None
        # kamcmd echoes its input (passwords): look only for its error lines ("error: 500 - …").
        if p.returncode != 0 or re.search(r"error: \d{3}", p.stdout + p.stderr):
            raise KamailioError("kamcmd refused the credentials (its output is not shown: it may hold passwords)")

    def targets(self) -> list[Target]:
        """The dispatcher's nodes and their state (``dispatcher.list``)."""
        return parse_dispatcher_list(self.rpc("dispatcher.list"))

    def registered(self) -> list[str]:
        """The desk phones registered now (``ul.dump``'s AORs)."""
        return sorted(set(re.findall(r"^\s*AoR:\s*(\S+)\s*$", self.rpc("ul.dump"), re.M | re.I)))


def parse_dispatcher_list(text: str) -> list[Target]:
    """kamcmd's dispatcher.list: each DEST block has ``URI:``, ``FLAGS:`` and ``ATTRS: … DUID:``."""
    out = []
    for block in re.split(r"^\s*DEST:\s*\{\s*$", text, flags=re.M)[1:]:
        uri = re.search(r"^\s*URI:\s*(\S+)", block, re.M)
        flags = re.search(r"^\s*FLAGS:\s*(\S+)", block, re.M)
        duid = re.search(r"^\s*DUID:\s*(\S+)", block, re.M)
        if uri and flags:
            out.append(Target(duid.group(1) if duid else uri.group(1), uri.group(1), flags.group(1)))
    return out


def binary() -> str:
    found = shutil.which("kamailio") or ("/usr/sbin/kamailio" if os.path.exists("/usr/sbin/kamailio") else None)
    if not found:
        raise KamailioError("Kamailio is not installed (Debian: apt-get install kamailio; "
                            "scripts/install-system-deps.sh does it)")
    return found


def module_dir() -> str:
    for d in MODULE_DIRS:
        if os.path.exists(os.path.join(d, "dispatcher.so")):
            return d
    raise KamailioError("Kamailio's modules (dispatcher.so) were not found in " + ", ".join(MODULE_DIRS))


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _subnets(matches: Sequence[str]) -> list[str]:
    out = []
    for m in matches:
        try:
            out.append(str(ipaddress.ip_network(m, strict=False)))
        except ValueError:
            raise KamailioError(f"TONGDAI_TRUNK_MATCH: {m!r} is not an address or a network") from None
    return out


def render_cfg(s: Settings, directory: Path, modules: str) -> str:
    trunk = " || ".join(f'is_in_subnet("$si", "{n}")' for n in _subnets(s.trunk_match))
    return CFG.format(
        bind=s.bind, port=s.sip_port, mpath=modules, dir=directory, trunk=trunk, set=DISPATCH_SET,
        ping=PING_INTERVAL, node_timeout=NODE_TIMEOUT_MS,
    )


# Kept as a Python format string (doubled braces are Kamailio's own).
CFG = """#!KAMAILIO
# Rendered by `tongdai cluster up` (ivr/cluster/kamailio.py) — do not edit: docs/cluster.md.
debug=1
log_stderror=yes
children=2
dns=no
rev_dns=no
auto_aliases=no
disable_tcp=yes
listen=udp:{bind}:{port}
server_header="Server: tongdai-edge"
user_agent_header="User-Agent: tongdai-edge"

mpath="{mpath}"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "ctl.so"
loadmodule "ipops.so"
loadmodule "htable.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "dispatcher.so"

modparam("ctl", "binrpc", "unix:{dir}/kamailio.ctl")
modparam("tm", "fr_timer", {node_timeout})
modparam("tm", "fr_inv_timer", 120000)
modparam("rr", "append_fromtag", 1)
# Registrations are kept in memory: a restarted Kamailio asks the phones to register again
# (they do, within their expiry); nothing to lose at the edge.
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_contacts", 1)
modparam("registrar", "max_expires", 3600)
# extension -> SIP password, loaded by `tongdai cluster up` / `cluster apply` over the ctl socket.
modparam("htable", "htable", "creds=>size=8;")
modparam("dispatcher", "list_file", "{dir}/dispatcher.list")
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "ds_ping_interval", {ping})
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_from", "sip:edge@tongdai")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        # In a dialog: follow the route set this proxy recorded.
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) t_relay();
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    t_check_trans();
    if (is_method("REGISTER")) {{
        route(REGISTRAR);
        exit;
    }}
    if (ds_is_from_list("{set}")) {{
        route(TO_PHONE);
        exit;
    }}
    if (is_method("OPTIONS") && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (is_method("INVITE") && ({trunk})) {{
        route(TO_NODES);
        exit;
    }}
    sl_send_reply("403", "Forbidden");
}}

# A desk phone registers with the password `tongdai extensions credentials` prints.
route[REGISTRAR] {{
    if (!pv_auth_check("tongdai", "$sht(creds=>$tU)", "0", "1")) {{
        auth_challenge("tongdai", "0");
        exit;
    }}
    consume_credentials();
    if (!save("location")) sl_reply_error();
}}

# A node rings (or qualifies) a desk phone: wherever it registered.
route[TO_PHONE] {{
    if (!lookup("location")) {{
        # Silence to a qualify: the node marks the phone unreachable and does not ring it.
        if (is_method("OPTIONS")) exit;
        sl_send_reply("404", "Not registered");
        exit;
    }}
    record_route();
    t_relay();
}}

# A hotline call from the trunk: to the next healthy node, another one if it does not answer.
route[TO_NODES] {{
    if (!ds_select_dst("{set}", "4")) {{
        sl_send_reply("503", "No node available");
        exit;
    }}
    record_route();
    t_on_failure("NODE_FAILED");
    t_relay();
}}

failure_route[NODE_FAILED] {{
    if (t_is_canceled()) exit;
    if (t_check_status("408|500|503") || t_branch_timeout()) {{
        ds_mark_dst("ip");
        if (ds_next_dst()) {{
            t_on_failure("NODE_FAILED");
            t_relay();
            exit;
        }}
    }}
}}
"""
