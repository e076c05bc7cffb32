"""Retention of voice-complaint recordings (``tongdai recordings prune``, run by cron).

Recordings live in ``$TONGDAI_HOME/recordings/YYYY/MM/<call id>.wav``. A file older than the
retention period (by its modification time) is deleted, unless it belongs to a case that is not
closed yet: the evidence of an open complaint is never removed. When a case's recording is
deleted the case says so (``recording`` emptied, a ``recording_pruned`` history entry).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.config.settings import Settings
from ivr.models import Case, CaseEvent

DEFAULT_KEEP_DAYS = 365
ENV_KEEP_DAYS = "TONGDAI_RECORDINGS_KEEP_DAYS"


class RetentionError(Exception):
    """Bad settings; the message is for staff (Vietnamese)."""


@dataclass
class PruneResult:
    deleted: list[Path] = field(default_factory=list)
    kept_open: list[Path] = field(default_factory=list)
    freed: int = 0


def keep_days(days: int | None, env: dict[str, str]) -> int:
    """The retention period: ``--days``, else $TONGDAI_RECORDINGS_KEEP_DAYS, else 365."""
    if days is None:
        raw = env.get(ENV_KEEP_DAYS, "").strip()
        if not raw:
            return DEFAULT_KEEP_DAYS
        try:
            days = int(raw)
        except ValueError:
            raise RetentionError(f"{ENV_KEEP_DAYS}={raw!r}: cần một số ngày nguyên") from None
    if days < 1:
        raise RetentionError(f"số ngày lưu giữ phải lớn hơn 0 (nhận {days})")
    return days


def prune(settings: Settings, engine: AsyncEngine, days: int, *, dry_run: bool = False,
          now: dt.datetime | None = None) -> PruneResult:
    """Delete recordings older than ``days`` days, except those of cases not closed yet."""
    return asyncio.run(_prune(settings, engine, days, dry_run, now or dt.datetime.now(dt.timezone.utc)))


async def _prune(settings: Settings, engine: AsyncEngine, days: int, dry_run: bool, now: dt.datetime) -> PruneResult:
    res = PruneResult()
    root = settings.home / "recordings"
    limit = (now - dt.timedelta(days=days)).timestamp()
    old = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_mtime < limit) if root.is_dir() else []
    try:
        async with engine.begin() as conn:
            for p in old:
                rel = str(p.relative_to(settings.home))
                case = (await conn.execute(sa.select(Case.id, Case.status).where(Case.recording == rel))).first()
                if case is not None and case.status != "closed":
                    res.kept_open.append(p)
                    continue
                res.deleted.append(p)
                if dry_run:
                    continue
                res.freed += p.stat().st_size
                if case is not None:
                    await conn.execute(sa.update(Case).where(Case.id == case.id).values(recording=None))
                    await conn.execute(sa.insert(CaseEvent).values(
                        case_id=case.id, at=now, actor="retention", action="recording_pruned",
                        note=f"đã xoá bản ghi âm {rel} (quá thời hạn lưu giữ {days} ngày)"))
                p.unlink()
    finally:
        await engine.dispose()
    if not dry_run and root.is_dir():
        for d in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
            try:
                d.rmdir()  # only empty month/year directories go
            except OSError:
                pass
    return res



