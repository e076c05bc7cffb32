"""A durable local spool: records that could not reach the database wait here.

Append-only JSON lines, fsync'd on every append, so a record survives a crash right after it
was spooled. :meth:`Spool.drain` hands the records, oldest first, to a writer and removes
those written; the writers are idempotent (upserts keyed by call id or case code), so a
record replayed twice after a crash mid-drain is still stored exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("tongdai.spool")


def _default(o: Any):
    if isinstance(o, dt.datetime):
        return {"$dt": o.isoformat()}
    raise TypeError(f"cannot spool {type(o).__name__}")


def _hook(d: dict):
    if set(d) == {"$dt"}:
        return dt.datetime.fromisoformat(d["$dt"])
    return d


class Spool:
    def __init__(self, path: Path):
        self.path = path
        # One drain at a time: two drains (the periodic replayer and a flush at shutdown) would
        # each trim "the first N lines" and the second would cut records appended meanwhile.
        self._draining = asyncio.Lock()

    def pending(self) -> int:
        try:
            with open(self.path, "rb") as f:
                return sum(1 for line in f if line.strip())
        except FileNotFoundError:
            return 0

    def append(self, record: dict) -> None:
        self.extend([record])

    def extend(self, records: list[dict]) -> None:
        """Append records in order with one write and one fsync."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(r, default=_default, ensure_ascii=False) + "\n" for r in records)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read(self) -> list[str]:
        try:
            with open(self.path, encoding="utf-8") as f:
                return [ln for ln in f.read().splitlines() if ln.strip()]
        except FileNotFoundError:
            return []

    async def drain(self, write: Callable[[dict], Awaitable[None]]) -> int:
        """Write spooled records in order until one fails; remove the written ones. Returns how
        many were written. A line that is not valid JSON (a torn write) is set aside, not lost."""
        async with self._draining:
            return await self._drain(write)

    async def _drain(self, write: Callable[[dict], Awaitable[None]]) -> int:
        lines = self._read()
        done = 0
        for ln in lines:
            try:
                record = json.loads(ln, object_hook=_hook)
            except ValueError:
                with open(self.path.with_suffix(".bad"), "a", encoding="utf-8") as bad:
                    bad.write(ln + "\n")
                log.error("spool %s: unreadable line set aside", self.path.name)
                done += 1
                continue
            try:
                await write(record)
            except Exception as e:
                log.warning("spool %s: still cannot write (%s); %d left", self.path.name, e.__class__.__name__, len(lines) - done)
                break
            done += 1
        if done:
            # Records appended while we were writing stay; only those written go.
            rest = self._read()[done:]
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("".join(ln + "\n" for ln in rest))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            log.info("spool %s: %d records written to the database, %d left", self.path.name, done, len(rest))
        return done
