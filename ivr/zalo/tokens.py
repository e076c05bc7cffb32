"""The OA access token: refreshed before it expires, the single-use refresh token never lost.

Zalo's OA access token lives about 25 hours (``expires_in`` "90000"); each refresh returns a new
access token *and* a new refresh token, and the refresh token just used is dead from then on
(https://developers.zalo.me/docs/official-account/bat-dau/xac-thuc-va-uy-quyen-cho-ung-dung-new).
Losing the new pair means an OA admin must grant the app again in a browser, so:

- the new pair is written to ``zalo-tokens.json.new``, fsync'd, renamed over
  ``zalo-tokens.json`` and the directory fsync'd *before* the access token is used;
- a crash after the fsync but before the rename leaves a complete ``.new`` file, which the next
  load adopts (it is newer than the file it would have replaced);
- one refresh at a time: an asyncio lock inside the process and an ``flock`` across processes
  (``tongdai serve`` and ``tongdai surveys send`` may both need a token); after taking the lock
  the file is read again, so a refresh done meanwhile by the other process is reused.

``TONGDAI_ZALO_REFRESH_TOKEN`` seeds the store. The file remembers a hash of the seed it came
from, so setting a *different* seed (after an OA admin granted the app again) replaces the stored
pair, while a restart with the same, long dead, seed keeps using the file. Tokens never reach a
log line.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from ivr.zalo.api import TokenError, ZaloApi

log = logging.getLogger("tongdai.zalo.tokens")

Clock = Callable[[], dt.datetime]
REFRESH_MARGIN = dt.timedelta(hours=5)  # refresh at ~20 h of 25


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _sha(value: str | None) -> str | None:
    return hashlib.sha256(value.encode()).hexdigest()[:16] if value else None


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: dt.datetime
    issued_at: dt.datetime
    seed: str | None = None  # hash of the TONGDAI_ZALO_REFRESH_TOKEN this chain started from

    def __repr__(self) -> str:  # never print a token
        return f"Tokens(expires_at={self.expires_at.isoformat()}, issued_at={self.issued_at.isoformat()})"

    def to_json(self) -> dict:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "expires_at": self.expires_at.isoformat(), "issued_at": self.issued_at.isoformat(), "seed": self.seed}

    @classmethod
    def from_json(cls, d: dict) -> Tokens:
        """ValueError (or KeyError, TypeError) unless every field is there and usable."""
        times = [dt.datetime.fromisoformat(d[k]) for k in ("expires_at", "issued_at")]
        if any(t.tzinfo is None for t in times):
            raise ValueError("a time without time zone")
        if not all(isinstance(d[k], str) and d[k] for k in ("access_token", "refresh_token")):
            raise ValueError("an empty token")
        return cls(d["access_token"], d["refresh_token"], times[0], times[1], d.get("seed"))


class TokenStore:
    """``zalo-tokens.json`` (0600) with crash-safe replacement."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(path.name + ".new")
        self.lock_path = path.with_name(path.name + ".lock")
        self.damaged: str | None = None  # why the stored file could not be used (last load)
        self._warned = False

    @staticmethod
    def _read(path: Path) -> Tokens | None:
        try:
            return Tokens.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, RecursionError):
            return None  # torn or foreign file

    def problem(self) -> str | None:
        """What to tell an operator about a stored file that cannot be used (Vietnamese), or None."""
        if not self.damaged:
            return None
        return (f"tệp {self.path} không dùng được ({self.damaged}).\n"
                "Cấp lại quyền cho ứng dụng trong Zalo for Developers, đặt TONGDAI_ZALO_REFRESH_TOKEN bằng "
                "refresh token mới rồi chạy lại (tệp hỏng sẽ được thay).")

    def load(self) -> Tokens | None:
        current = self._read(self.path)
        self.damaged = None
        if current is None and self.path.exists():
            self.damaged = "hỏng hoặc không đúng định dạng"
            if not self._warned:  # read before every send: say it once
                self._warned = True
                log.warning("zalo tokens: %s cannot be used (damaged or not ours); a new grant is needed", self.path)
        pending = self._read(self.tmp) if self.tmp.exists() else None
        if pending and (current is None or pending.issued_at > current.issued_at):
            # A refresh was stored durably but the rename did not happen (crash): finish it.
            os.replace(self.tmp, self.path)
            self._fsync_dir()
            log.warning("zalo tokens: adopted a refreshed pair left by an interrupted store")
            return pending
        if self.tmp.exists() and pending is None:
            self.tmp.unlink(missing_ok=True)  # torn temp file of a store that never completed
        return current

    def save(self, tokens: Tokens) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(tokens.to_json()).encode()
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp, self.path)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class TokenManager:
    """Hands out a valid access token; refreshes proactively and on Zalo's "invalid token"."""

    def __init__(self, api: ZaloApi, store: TokenStore, *, seed: str | None, clock: Clock = utcnow,
                 margin: dt.timedelta = REFRESH_MARGIN):
        self.api = api
        self.store = store
        self._seed = seed
        self.clock = clock
        self.margin = margin
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def _usable(self, t: Tokens | None) -> TypeGuard[Tokens]:
        return (t is not None and (self._seed is None or t.seed == _sha(self._seed))
                and t.expires_at - self.margin > self.clock())

    def current(self) -> Tokens | None:
        t = self.store.load()
        return t if t is not None and (self._seed is None or t.seed == _sha(self._seed)) else None

    async def access_token(self) -> str:
        t = self.store.load()
        if self._usable(t):
            return t.access_token
        return (await self.refresh()).access_token

    async def refresh(self, *, rejected: str | None = None) -> Tokens:
        """Refresh unless someone else already did. ``rejected``: the access token Zalo just
        refused; a stored token different from it is taken as already refreshed."""
        async with self._lock:
            self.store.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.store.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                current = self.store.load()
                chained = current if current is not None and (self._seed is None or current.seed == _sha(self._seed)) else None
                if chained is not None and rejected is None and self._usable(chained):
                    return chained
                if chained is not None and rejected is not None and chained.access_token != rejected \
                        and chained.expires_at > self.clock():
                    return chained
                if chained is not None:
                    refresh_token, seed = chained.refresh_token, chained.seed
                elif self._seed:
                    refresh_token, seed = self._seed, _sha(self._seed)
                    if current is not None:
                        log.warning("zalo tokens: TONGDAI_ZALO_REFRESH_TOKEN changed; starting from the new one")
                else:
                    raise TokenError("chưa có refresh token của OA: đặt TONGDAI_ZALO_REFRESH_TOKEN", retryable=False)
                pair = await self.api.refresh(refresh_token)
                now = self.clock()
                new = Tokens(pair["access_token"], pair["refresh_token"],
                             now + dt.timedelta(seconds=pair["expires_in"]), max(now, _after(current)), seed)
                self.store.save(new)  # durably, before anyone uses the new access token
                self.refreshes += 1
                log.info("zalo access token refreshed, valid until %s", new.expires_at.isoformat(timespec="minutes"))
                return new
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    async def keep_fresh(self, every: float = 600) -> None:
        """Background task: refresh before expiry; a failure is logged and tried again later."""
        while True:
            try:
                if self.current() is not None or self._seed:
                    await self.access_token()
            except TokenError as e:
                log.error("zalo access token: %s", e)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("zalo access token refresh failed")
            await asyncio.sleep(every)


def _after(t: Tokens | None) -> dt.datetime:
    """A timestamp later than ``t`` was issued, so a stored pair always sorts as newer."""
    if t is None:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return t.issued_at + dt.timedelta(microseconds=1)
