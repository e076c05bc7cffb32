"""Retention of recordings (``tongdai recordings prune``, run by cron).

Voice complaints live in ``$TONGDAI_HOME/recordings/YYYY/MM/<call id>.wav``: a file older than
``--days`` (by its modification time) is deleted, and the case says so (``recording`` emptied, a
``recording_pruned`` history entry).

Conversation recordings live in ``recordings/calls/YYYY/MM/<call id>.wav``: one whose call started
more than routing.yaml's ``recording.retention_days`` ago is deleted, and the call's row keeps the
path and says when (``recording_deleted_at``), as wazo-call-logd keeps a purged recording's row.

Either kind is kept while it belongs to a case that is not closed, or that is flagged for the
inspection team: the evidence of an open complaint or an inspection is never removed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.config.settings import Settings
from ivr.models import Call, Case, CaseEvent
from ivr.records.recordings import CALLS

DEFAULT_KEEP_DAYS = 365
MAX_KEEP_DAYS = 36_500  # a century: more is a typo (and beyond what dates can count back to)
ENV_KEEP_DAYS = "TONGDAI_RECORDINGS_KEEP_DAYS"


class RetentionError(Exception):
    """Bad settings; the message is for staff (Vietnamese)."""


@dataclass
class PruneResult:
    deleted: list[Path] = field(default_factory=list)  # voice complaints
    kept_open: list[Path] = field(default_factory=list)
    calls_deleted: list[Path] = field(default_factory=list)  # conversations
    calls_kept: list[Path] = field(default_factory=list)  # of open or flagged cases
    failed: list[tuple[Path, str]] = field(default_factory=list)  # could not be deleted: why
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
    if days > MAX_KEEP_DAYS:
        raise RetentionError(f"số ngày lưu giữ tối đa {MAX_KEEP_DAYS} (100 năm), nhận {days}")
    return days


def prune(settings: Settings, engine: AsyncEngine, days: int, *, call_days: int | None = None, dry_run: bool = False,
          now: dt.datetime | None = None) -> PruneResult:
    """Delete complaint recordings older than ``days`` days and conversation recordings of calls
    older than ``call_days`` (None: leave them), except those of cases not closed or flagged for
    inspection. ``now``: the moment ages are counted from (default: now)."""
    return asyncio.run(_prune(settings, engine, days, call_days, dry_run, now or dt.datetime.now(dt.timezone.utc)))


def _keep(status: str, inspection: bool) -> bool:
    return status != "closed" or bool(inspection)


async def _prune(settings: Settings, engine: AsyncEngine, days: int, call_days: int | None, dry_run: bool,
                 now: dt.datetime) -> PruneResult:
    res = PruneResult()
    at = dt.datetime.now(dt.timezone.utc)  # when it happened (``now`` may be a date in the future)
    root = settings.home / "recordings"
    calls_root = settings.home / CALLS
    limit = (now - dt.timedelta(days=days)).timestamp()
    old = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(calls_root)
                 and p.stat().st_mtime < limit) if root.is_dir() else []
    try:
        async with engine.begin() as conn:
            for p in old:
                rel = str(p.relative_to(settings.home))
                case = (await conn.execute(sa.select(Case.id, Case.status, Case.inspection)
                                           .where(Case.recording == rel))).first()
                if case is not None and _keep(case.status, case.inspection):
                    res.kept_open.append(p)
                    continue
                res.deleted.append(p)
                if dry_run:
                    continue
                res.freed += p.stat().st_size
                if case is not None:
                    await conn.execute(sa.update(Case).where(Case.id == case.id).values(recording=None))
                    await conn.execute(sa.insert(CaseEvent).values(
                        case_id=case.id, at=at, actor="retention", action="recording_pruned",
                        note=f"đã xoá bản ghi âm {rel} (quá thời hạn lưu giữ {days} ngày)"))
                p.unlink()
            if call_days is not None:
                await _prune_calls(conn, settings.home, now - dt.timedelta(days=call_days), at, dry_run, res)
    finally:
        await engine.dispose()
    if not dry_run and root.is_dir():
        for d in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
            try:
                d.rmdir()  # only empty month/year directories go
            except OSError:
                pass
    return res


async def _prune_calls(conn, home: Path, before: dt.datetime, at: dt.datetime, dry_run: bool, res: PruneResult) -> None:
    """Conversation recordings of calls started before ``before``: the file goes, the row stays
    and says when. A missing file is marked deleted too (there is nothing left to keep)."""
    due = (sa.select(Call.id).where(Call.recording.is_not(None), Call.recording_deleted_at.is_(None),
                                    Call.started_at < before))
    keep = {cid for cid, status, inspection in await conn.execute(
        sa.select(Case.call_id, Case.status, Case.inspection).where(Case.call_id.in_(due))) if _keep(status, inspection)}
    rows = (await conn.execute(sa.select(Call.id, Call.recording).where(Call.id.in_(due)).order_by(Call.started_at))).all()
    calls_root = (home / CALLS).resolve()
    for cid, rel in rows:
        p = (home / rel).resolve()
        if cid in keep:
            res.calls_kept.append(p)
            continue
        if not p.is_relative_to(calls_root):  # a row edited by hand: never delete outside
            res.failed.append((p, "nằm ngoài thư mục recordings/calls"))
            continue
        res.calls_deleted.append(p)
        if dry_run:
            continue
        try:
            size = p.stat().st_size if p.exists() else 0
            p.unlink(missing_ok=True)
        except OSError as e:
            res.calls_deleted.pop()
            res.failed.append((p, e.strerror or str(e)))
            continue
        res.freed += size
        await conn.execute(sa.update(Call).where(Call.id == cid).values(recording_deleted_at=at))
