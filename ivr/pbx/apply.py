"""`tongdai apply`: check → render → diff → write → reload Asterisk and the controller.

Nothing is written unless routing.yaml validates, so the running configuration (and the
hotline) stays as it was. Asterisk reloads only the modules whose files changed, over AMI:
module reloads keep calls in progress. The controller swaps its routing atomically: calls in
progress finish on the old one.
"""

from __future__ import annotations

import asyncio
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ivr import control
from ivr.config import credentials as secrets_mod
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.pbx.asterisk import Layout

# Which module to reload when a rendered file changes. None: Asterisk must be restarted.
RELOADS = {
    "pjsip.conf": "res_pjsip.so",
    "extensions.conf": "pbx_config.so",
    "musiconhold.conf": "res_musiconhold.so",
    "rtp.conf": "res_rtp_asterisk.so",
    "manager.conf": "manager",
    "ari.conf": "res_ari.so",
    "http.conf": "http",
    "logger.conf": "logger",
    "indications.conf": "indications",
    "cel.conf": "cel",
    "cel_custom.conf": "cel_custom.so",
    "asterisk.conf": None,
    "modules.conf": None,
}

_SECRET_LINE = re.compile(r"^(\s*(?:password|secret)\s*=\s*).*$", re.I)


def mask(text: str) -> str:
    """The file with its passwords replaced, for showing a diff on screen."""
    return "\n".join(_SECRET_LINE.sub(r"\1********", ln) for ln in text.splitlines())


@dataclass
class Plan:
    files: dict[str, str]
    changed: list[str] = field(default_factory=list)
    diff: str = ""

    @property
    def reloads(self) -> list[str]:
        return sorted({r for n in self.changed if (r := RELOADS.get(n))})

    @property
    def restart_needed(self) -> list[str]:
        return [n for n in self.changed if n in RELOADS and RELOADS[n] is None]


def plan(settings: Settings, routing: rt.Routing) -> Plan:
    """Render and compare with what the running Asterisk reads now."""
    from ivr.dialplan import render as rd

    layout = Layout.for_settings(settings)
    sec = secrets_mod.load(settings.secrets_path, list(routing.extensions))
    files = rd.render(routing, settings, sec, layout)
    p = Plan(files)
    chunks: list[str] = []
    for name, new in files.items():
        cur_path = layout.etc / name
        cur = cur_path.read_text(encoding="utf-8") if cur_path.exists() else ""
        if cur == new:
            continue
        p.changed.append(name)
        chunks.extend(difflib.unified_diff(mask(cur).splitlines(), mask(new).splitlines(),
                                           f"đang chạy/{name}", f"mới/{name}", lineterm="", n=1))
    p.diff = "\n".join(chunks)
    return p


def write(settings: Settings, p: Plan) -> list[str]:
    from ivr.dialplan import render as rd

    layout = Layout.for_settings(settings)
    layout.prepare()
    changed = rd.write(p.files, layout.etc)
    layout.chown()
    return changed


async def reload_asterisk(settings: Settings, routing: rt.Routing, modules: list[str], timeout: float = 10) -> list[str]:
    """Reload ``modules`` over AMI; returns one line per module (raises ConnectionError if AMI is down)."""
    from panoramisk import Manager

    sec = secrets_mod.load(settings.secrets_path, list(routing.extensions))
    m = Manager(host=settings.bind, port=settings.ami_port, username=sec.ami_user, secret=sec.ami_password,
                ping_delay=60, reconnect_timeout=3600)
    try:
        try:
            await asyncio.wait_for(m.connect(), timeout)
        except (TimeoutError, OSError) as e:
            raise ConnectionError(f"AMI {settings.bind}:{settings.ami_port}: {e.__class__.__name__}") from None
        for _ in range(int(timeout * 10)):
            if m.authenticated:
                break
            await asyncio.sleep(0.1)
        else:
            raise ConnectionError("AMI login failed")
        out = []
        for mod in modules:
            resp = await asyncio.wait_for(m.send_action({"Action": "Reload", "Module": mod}), timeout)
            ok = str(resp.get("Response", "")).lower() == "success"
            out.append(f"{mod}: {'đã nạp lại' if ok else 'LỖI ' + str(resp.get('Message', ''))}")
            if not ok:
                raise RuntimeError(f"reload of {mod} failed: {resp.get('Message')}")
        return out
    finally:
        m.reconnect_timeout = 3600
        m.close()


async def reload_controller(settings: Settings, routing_path: Path) -> dict:
    return await control.request(settings.home, "POST", "/reload", {"path": str(routing_path.resolve())})
