"""Recordings on disk: where they live, how a file gets there, and how staff find a call's one.

Conversation recordings (docs/recording.md) live in
``$TONGDAI_HOME/recordings/calls/YYYY/MM/<call id>.wav``, voice complaints in
``$TONGDAI_HOME/recordings/YYYY/MM/<call id>.wav`` (the month of the call's start, UTC). Both are
personal data: files are 0600 and folders 0700, or 0640 / 0750 for the group the operator names
in ``TONGDAI_RECORDINGS_GROUP``; paths never go to the logs.

A file is never *renamed* out of Asterisk's spool: it would keep the owner and the mode Asterisk
gave it (its user, its umask, usually world-readable). :func:`store` copies it into a file this
process creates with the right mode, then removes the spool's copy.

:func:`call_recording` is the one look-up of a call's conversation recording, for a player (the
staff console) that applies its own permissions: it returns what those need (the call's agency,
the cases that cite the call) and a path only when the file exists under the recordings folder.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.models import Call, Case, CaseAssignment

ROOT = PurePosixPath("recordings")
CALLS = ROOT / "calls"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def modes(gid: int | None) -> tuple[int, int]:
    """(file mode, folder mode): private, or readable by the recordings group."""
    return (0o640, 0o750) if gid is not None else (0o600, 0o700)


def conversation_path(call_id: str, started_at: dt.datetime) -> str:
    """A conversation recording's path relative to TONGDAI_HOME."""
    return _month_file(CALLS, call_id, started_at)


def complaint_path(call_id: str, started_at: dt.datetime) -> str:
    """A voice complaint's path relative to TONGDAI_HOME."""
    return _month_file(ROOT, call_id, started_at)


def _month_file(folder: PurePosixPath, call_id: str, started_at: dt.datetime) -> str:
    when = started_at.astimezone(dt.timezone.utc)
    name = _UNSAFE.sub("_", call_id).lstrip(".") or "call"
    return str(folder / f"{when:%Y}" / f"{when:%m}" / f"{name}.wav")


def private_dirs(home: Path, rel_dir: str, gid: int | None) -> Path:
    """Create ``home/rel_dir`` and every folder between, each with the recordings' folder mode
    (existing ones are tightened when they are ours)."""
    _, dmode = modes(gid)
    home.mkdir(parents=True, exist_ok=True)
    d = home
    for part in PurePosixPath(rel_dir).parts:
        d = d / part
        try:
            d.mkdir(mode=dmode)
        except FileExistsError:
            pass
        st = d.stat()
        if st.st_uid == os.geteuid():
            if st.st_mode & 0o777 != dmode:
                os.chmod(d, dmode)  # mkdir's mode goes through the umask; an old folder may be wider
            if gid is not None and st.st_gid != gid:
                os.chown(d, -1, gid)
    return d


def store(src: Path, home: Path, rel: str, gid: int | None) -> float:
    """Copy the spool's ``src`` to ``home/rel`` as a new file with the recordings' mode, remove
    ``src``, return the length in seconds. Raises OSError and leaves ``src`` where it was if the
    copy cannot be made."""
    fmode, _ = modes(gid)
    dest = home / rel
    private_dirs(home, str(PurePosixPath(rel).parent), gid)
    tmp = dest.with_name(f".{dest.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, fmode)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), fmode)  # not the umask's idea of it
            if gid is not None:
                os.fchown(out.fileno(), -1, gid)
            with open(src, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    src.unlink(missing_ok=True)
    return wav_seconds(dest)


def wav_seconds(path: Path) -> float:
    """A WAV file's length from its header (0.0 when it is not a readable WAV)."""
    try:
        with wave.open(str(path)) as w:
            return w.getnframes() / float(w.getframerate() or 8000)
    except (OSError, wave.Error, EOFError):
        return 0.0


def resolve(home: Path, relative: str | None) -> Path | None:
    """The file a stored relative path names, if it exists and lies under the recordings
    folder (a row edited by hand cannot point at /etc/…)."""
    if not relative:
        return None
    root = (home / ROOT).resolve()
    path = (home / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


# --------------------------------------------------------------------------------- look-up


@dataclass(frozen=True)
class LinkedCase:
    """A case that cites the call: what a player needs to decide who may listen."""

    code: str
    status: str
    inspection: bool
    agency_code: str | None  # the owning agency at receipt
    assigned: tuple[str, ...]  # agencies the case is assigned to


@dataclass(frozen=True)
class CallRecording:
    call_id: str
    started_at: dt.datetime
    agency_code: str | None  # the branch's agency when the call was made
    answered_by: str | None
    relative: str  # as stored, relative to TONGDAI_HOME
    seconds: float | None
    deleted_at: dt.datetime | None  # retention deleted the file
    path: Path | None  # the file to serve: None when deleted or missing
    cases: tuple[LinkedCase, ...]

    @property
    def state(self) -> str:
        """``available``, ``deleted`` (by retention) or ``missing`` (gone some other way)."""
        if self.path is not None:
            return "available"
        return "deleted" if self.deleted_at is not None else "missing"


async def call_recording(engine: AsyncEngine, home: Path, call_id: str) -> CallRecording | None:
    """The conversation recording of ``call_id``; None when there is no such call or it was not
    recorded. No permission is checked here: the caller decides who may listen (and records
    each play) from ``agency_code`` and ``cases``."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(
            Call.id, Call.started_at, Call.agency_code, Call.answered_by, Call.recording, Call.recording_s,
            Call.recording_deleted_at).where(Call.id == call_id))).first()
        if row is None or not row.recording:
            return None
        cases = (await conn.execute(sa.select(Case.id, Case.code, Case.status, Case.inspection, Case.agency_code)
                                    .where(Case.call_id == call_id).order_by(Case.id))).all()
        assigned: dict[int, list[str]] = {}
        if cases:
            for case_id, code in await conn.execute(
                    sa.select(CaseAssignment.case_id, CaseAssignment.agency_code)
                    .where(CaseAssignment.case_id.in_([c.id for c in cases])).order_by(CaseAssignment.id)):
                assigned.setdefault(case_id, []).append(code)
    path = None if row.recording_deleted_at is not None else resolve(home, row.recording)
    return CallRecording(
        call_id=row.id, started_at=row.started_at, agency_code=row.agency_code, answered_by=row.answered_by,
        relative=row.recording, seconds=row.recording_s, deleted_at=row.recording_deleted_at, path=path,
        cases=tuple(LinkedCase(c.code, c.status, bool(c.inspection), c.agency_code, tuple(assigned.get(c.id, ())))
                    for c in cases),
    )
