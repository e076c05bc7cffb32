"""Blocks an address that keeps failing to register (a password-guessing desk-phone scanner).

Asterisk reports every failed SIP authentication as an AMI security event. After
``limits.registration_failures`` failures from one address within
``limits.registration_window`` seconds, the address is denied by a PJSIP ACL
(``pjsip_blocklist.conf``, included by the rendered pjsip.conf) for ``limits.block_seconds``;
``res_pjsip`` is reloaded to apply it, which keeps calls and registrations in progress.
The trunk's addresses are never blocked.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.config.routing import Routing
    from ivr.pbx.presence import Presence

log = logging.getLogger("tongdai.guard")

FAILED_AUTH_EVENTS = ("ChallengeResponseFailed", "InvalidPassword", "InvalidAccountID")
BLOCKLIST = "pjsip_blocklist.conf"


def remote_ip(address: str) -> str | None:
    """``IPV4/UDP/203.0.113.9/5060`` -> ``203.0.113.9``."""
    parts = address.split("/")
    return parts[2] if len(parts) >= 3 and parts[2] else None


class Guard:
    def __init__(self, presence: Presence, routing: Callable[[], Routing], etc: Path,
                 never_block: tuple[str, ...] = ()):
        self.presence = presence
        self.routing = routing
        self.path = etc / BLOCKLIST
        self.never_block = set(never_block)
        self.failures: dict[str, collections.deque[float]] = {}
        self.blocked: dict[str, float] = {}  # address -> monotonic time the block ends
        self._tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()
        for name in FAILED_AUTH_EVENTS:
            presence.manager.register_event(name, self._on_failure)

    async def start(self) -> None:
        """Blocks do not outlive the controller that set them: clear what a previous run left."""
        if self.path.exists() and "deny" in self.path.read_text(encoding="utf-8"):
            await self._apply()

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()

    def _on_failure(self, manager, ev) -> None:
        if ev.get("Service") != "PJSIP":
            return
        ip = remote_ip(ev.get("RemoteAddress", ""))
        if not ip or ip in self.never_block or ip in self.blocked:
            return
        lim = self.routing().limits
        if lim.registration_failures <= 0:
            return
        now = time.monotonic()
        q = self.failures.setdefault(ip, collections.deque())
        while q and q[0] <= now - lim.registration_window:
            q.popleft()
        q.append(now)
        if len(q) >= lim.registration_failures:
            del self.failures[ip]
            self.blocked[ip] = now + lim.block_seconds
            log.warning("blocking %s for %ds after %d failed SIP authentications (last account %r)",
                        ip, lim.block_seconds, lim.registration_failures, ev.get("AccountID"))
            self._spawn(self._block(ip, lim.block_seconds))

    def _spawn(self, coro) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _block(self, ip: str, seconds: float) -> None:
        await self._apply()
        await asyncio.sleep(seconds)
        self.blocked.pop(ip, None)
        log.info("unblocking %s", ip)
        await self._apply()

    async def _apply(self) -> None:
        async with self._lock:
            lines = ["; Written by the controller (ivr/guard.py): addresses that failed to authenticate",
                     "; too often. Do not edit; blocks end by themselves."]
            if self.blocked:
                lines += ["[blocklist]", "type = acl"] + [f"deny = {ip}/255.255.255.255" for ip in sorted(self.blocked)]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
            tmp.chmod(0o644)
            tmp.replace(self.path)
            try:
                resp = await asyncio.wait_for(
                    self.presence.manager.send_action({"Action": "Reload", "Module": "res_pjsip.so"}), 10)
                if str(resp.get("Response", "")).lower() != "success":
                    log.error("res_pjsip reload for the blocklist failed: %s", resp.get("Message"))
            except Exception as e:
                log.error("res_pjsip reload for the blocklist failed: %s", e.__class__.__name__)
