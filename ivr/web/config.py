"""The console's settings, read from the environment (beside :class:`ivr.settings.Settings`).

| variable | default | meaning |
|---|---|---|
| TONGDAI_WEB_ADDR | ``127.0.0.1:8080`` | where `tongdai web` listens (Settings.web_addr) |
| TONGDAI_WEB_SECURE_COOKIES | ``0`` | ``1`` behind HTTPS: the session cookie gets ``Secure`` (and HSTS is sent) |
| TONGDAI_WEB_IDLE_MINUTES | 30 | a session unused this long ends |
| TONGDAI_WEB_MAX_HOURS | 12 | a session ends this long after sign-in, used or not |
| TONGDAI_WEB_TRUSTED_PROXIES | unset | comma-separated addresses (nginx: ``127.0.0.1``) whose ``X-Forwarded-For`` is believed |
| TONGDAI_WEB_NICE | 10 | how much `tongdai web` lowers its CPU priority (0-19): calls come first |
| TONGDAI_LOOKUP_PER_MINUTE | 10 | look-ups one address may make on the public page /tra-cuu in a minute (1-1000); more get 429 |
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


def _int(env: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise SystemExit(f"{name}={raw!r}: expected a whole number from {lo} to {hi}")
    return int(raw)


@dataclass(frozen=True)
class WebSettings:
    secure_cookies: bool = False
    idle: dt.timedelta = dt.timedelta(minutes=30)
    max_age: dt.timedelta = dt.timedelta(hours=12)
    trusted_proxies: tuple[str, ...] = ()
    nice: int = 10
    lookup_per_minute: int = 10

    @classmethod
    def from_env(cls, env: dict[str, str]) -> WebSettings:
        secure = (env.get("TONGDAI_WEB_SECURE_COOKIES") or "0").strip().lower()
        if secure not in ("0", "1", "true", "false", "yes", "no"):
            raise SystemExit(f"TONGDAI_WEB_SECURE_COOKIES={secure!r}: expected 1 or 0")
        proxies = []
        for p in (env.get("TONGDAI_WEB_TRUSTED_PROXIES") or "").split(","):
            p = p.strip()
            if not p:
                continue
            try:
                proxies.append(str(ipaddress.ip_address(p)))
            except ValueError:
                raise SystemExit(f"TONGDAI_WEB_TRUSTED_PROXIES: '{p}' is not an IP address") from None
        return cls(
            secure_cookies=secure in ("1", "true", "yes"),
            idle=dt.timedelta(minutes=_int(env, "TONGDAI_WEB_IDLE_MINUTES", 30, 1, 24 * 60)),
            max_age=dt.timedelta(hours=_int(env, "TONGDAI_WEB_MAX_HOURS", 12, 1, 24 * 30)),
            trusted_proxies=tuple(proxies),
            nice=_int(env, "TONGDAI_WEB_NICE", 10, 0, 19),
            lookup_per_minute=_int(env, "TONGDAI_LOOKUP_PER_MINUTE", 10, 1, 1000),
        )


def load_key(home: Path) -> bytes:
    """The console's secret key (CSRF tokens are derived from it): ``$TONGDAI_HOME/web-key``,
    32 random bytes made on first use, mode 0600. Replacing the file invalidates every open
    form, nothing else (sessions live in the database)."""
    path = home / "web-key"
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".web-key.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # first writer wins if two processes start at once
    except FileExistsError:
        key = path.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    return key
