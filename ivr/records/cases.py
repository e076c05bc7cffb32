"""Complaint cases: creation with a short code, the lifecycle, deadlines in working days.

Lifecycle: ``received → classified → assigned → in_progress → answered → closed``, and
``reopened`` from answered or closed. A case may be closed early for a reason that makes sense
before an answer (transferred, duplicate, invalid, no further action); ``resolved`` needs an
answer first. Every change is a CaseEvent (who, when, from, to, note). Refusals raise
:class:`CaseError` with a message for staff, in Vietnamese. Who acted (``actor``: ``--by``, the
console's user) is one line of at most 64 characters without control characters, checked here
for every caller: a line break in it could forge a line of the history.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets as _random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from sqlalchemy import and_, func, or_, select, union_all, update
from sqlalchemy import case as sql_case
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from ivr.config import hours as cal
from ivr.config import text as tx
from ivr.config.routing import Routing
from ivr.models.cases import CATEGORIES, CHANNELS, CLOSE_REASONS, Case, CaseAssignment, CaseEvent
from ivr.models.cluster import CaseCodeCounter
from ivr.records.lookup import PublicView
from ivr.vocab import OPEN_STATUSES, CaseStatus, Category, Channel, CloseReason

log = logging.getLogger("tongdai.cases")

CODE_DIGITS = 6
STATUS_VI = CaseStatus.labels()
CATEGORY_VI = Category.labels()
REASON_VI = CloseReason.labels()
# action -> (statuses it may start from, status it leads to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "classify": (("received", "classified", "reopened"), "classified"),
    "assign": (("classified", "assigned", "reopened"), "assigned"),
    "start": (("assigned",), "in_progress"),
    "answer": (("in_progress",), "answered"),
    "close": (("received", "classified", "assigned", "in_progress", "answered", "reopened"), "closed"),
    "reopen": (("answered", "closed"), "reopened"),
}


Speak = Callable[[list[str]], Awaitable[object]]


class CaseError(Exception):
    """A request staff made that makes no sense; the message says why (Vietnamese)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def deadline(routing: Routing, received_at: dt.datetime, category: str) -> dt.datetime:
    days = routing.complaints.deadlines[category]
    return cal.add_working_days(routing.hours, received_at, days, routing.hotline.timezone)


def check_actor(actor: str) -> str:
    """The actor's name, trimmed; CaseError unless it is one line without control characters."""
    name, problem = tx.check_actor(actor)
    if problem is not None:
        raise CaseError(problem)
    return name


def new_code() -> str:
    """A random case code: CODE_DIGITS digits, never starting with 0 (read back digit by digit).
    Only for a complaint taken while the database is down (spooled, told to the caller): a case
    stored online gets its code from the shared counter (:func:`claim_code`)."""
    return str(_random.randbelow(CODE_SPACE) + CODE_BASE)


CODE_BASE = 10 ** (CODE_DIGITS - 1)
CODE_SPACE = 9 * CODE_BASE
_HALF_BITS = ((CODE_SPACE - 1).bit_length() + 1) // 2


def code_for(n: int, key: str) -> str:
    """The ``n``-th case code: a keyed permutation of the code space (a Feistel network with
    cycle-walking), so consecutive cases get unrelated codes (a code cannot be guessed from
    another: look-ups by phone read a case to whoever knows its code) and two different ``n``
    never give the same code."""
    if not 0 <= n < CODE_SPACE:
        raise CaseError("đã dùng hết mã phản ánh: cần thêm chữ số cho mã (CODE_DIGITS)")
    k = bytes.fromhex(key)
    mask = (1 << _HALF_BITS) - 1
    x = n
    while True:
        left, right = x >> _HALF_BITS, x & mask
        for rnd in range(4):
            f = int.from_bytes(hmac.new(k, bytes([rnd]) + right.to_bytes(4, "big"), hashlib.sha256).digest()[:4], "big")
            left, right = right, left ^ (f & mask)
        x = (left << _HALF_BITS) | right
        if x < CODE_SPACE:  # outside the space: permute again (stays a bijection on the space)
            return str(x + CODE_BASE)


async def claim_code(s: AsyncSession) -> str:
    """The next code from the counter every node shares. The UPDATE locks the counter's row
    until the caller's transaction ends, so claims on two nodes are serialised by the database;
    a claim rolled back with its transaction is claimed again by the next case."""
    row = (await s.execute(
        update(CaseCodeCounter).where(CaseCodeCounter.id == 1).values(next=CaseCodeCounter.next + 1)
        .returning(CaseCodeCounter.next, CaseCodeCounter.key))).first()
    if row is None:  # a database made from the models (tests), not by the migration
        key = _random.token_hex(32)
        s.add(CaseCodeCounter(id=1, next=1, key=key))
        await s.flush()
        return code_for(0, key)
    return code_for(row[0] - 1, row[1])


async def free_code(s: AsyncSession) -> str:
    """A claimed code no case has (codes drawn at random while the database was down may sit
    where the counter arrives)."""
    for _ in range(50):
        code = await claim_code(s)
        if (await s.execute(select(Case.id).where(Case.code == code))).first() is None:
            return code
    raise CaseError("không tạo được mã phản ánh mới")  # pragma: no cover


def is_overdue(case: Case, now: dt.datetime | None = None) -> bool:
    """Derived, never stored: past the deadline and not answered or closed."""
    return case.status in OPEN_STATUSES and (now or utcnow()) > case.deadline_at


@dataclass(frozen=True)
class NewCase:
    channel: str
    caller: str | None
    anonymous: bool = False
    call_id: str | None = None
    branch_digit: str | None = None
    branch_name: str | None = None
    agency_code: str | None = None
    agency_name: str | None = None
    category: str = "other"
    summary: str | None = None
    recording: str | None = None
    recording_seconds: float | None = None
    inspection_reason: str | None = None


class Cases:
    """Case operations on one database."""

    def __init__(self, engine: AsyncEngine, routing: Routing, *, speak: Speak | None = None):
        """``speak``: synthesises what a citizen's look-up will say of a case (its agencies'
        names, the answer) after every change, so no call waits for it (ivr.pbx.speech.Speech.warm,
        wired by whoever changes cases: the CLI, the console)."""
        self.engine = engine
        self.routing = routing
        self.speak = speak
        self._sm = async_sessionmaker(engine, expire_on_commit=False)

    async def create(self, new: NewCase, *, actor: str = "system", received_at: dt.datetime | None = None,
                     code: str | None = None, note: str | None = None) -> Case:
        """Store a new case with a fresh code, unique across every node (:func:`free_code`).

        ``code``: keep this code (a case replayed from the spool was already told to the caller).
        ``note``: added to the history's first entry.
        """
        self._check(new)
        actor = check_actor(actor)
        received = received_at or utcnow()
        try:
            async with self._sm.begin() as s:
                return await self._add(s, new, code or await free_code(s), actor, received, note)
        except IntegrityError as e:
            if code and _code_taken(e):
                raise CaseError(f"mã phản ánh {code} đã tồn tại") from None
            raise  # e.g. the call it points at is not there (PostgreSQL enforces foreign keys)

    @staticmethod
    def _check(new: NewCase) -> None:
        if new.channel not in CHANNELS:
            raise CaseError(f"kênh '{new.channel}' không hợp lệ")
        if new.category not in CATEGORIES:
            raise CaseError(f"loại '{new.category}' không hợp lệ")

    async def _add(self, s: AsyncSession, new: NewCase, code: str, actor: str, received: dt.datetime,
                   note: str | None = None) -> Case:
        case = Case(
            code=code, channel=new.channel, caller=new.caller, anonymous=new.anonymous, call_id=new.call_id,
            branch_digit=new.branch_digit, branch_name=new.branch_name, agency_code=new.agency_code,
            agency_name=new.agency_name, category=new.category, summary=new.summary,
            recording=new.recording, recording_seconds=new.recording_seconds, received_at=received,
            deadline_at=deadline(self.routing, received, new.category), status="received",
            inspection=new.inspection_reason is not None, inspection_reason=new.inspection_reason,
        )
        s.add(case)
        await s.flush()
        s.add(CaseEvent(case_id=case.id, at=received, actor=actor, action="receive", to_status="received",
                        note=f"kênh {Channel.labels()[new.channel]}" + (", ẩn danh" if new.anonymous else "")
                        + (f"; {note}" if note else "")))
        if new.inspection_reason:
            s.add(CaseEvent(case_id=case.id, at=received, actor=actor, action="flag_inspection",
                            note=new.inspection_reason))
        return case

    async def create_in(self, s: AsyncSession, new: NewCase, *, actor: str = "system",
                        received_at: dt.datetime | None = None) -> Case:
        """Add a new case inside the caller's transaction, so it commits (or not) with whatever
        else the caller writes. The code is claimed from the shared counter (:func:`free_code`)."""
        self._check(new)
        actor = check_actor(actor)
        return await self._add(s, new, await free_code(s), actor, received_at or utcnow())

    async def get(self, code: str) -> Case:
        async with self._sm() as s:
            case = await self._load(s, code)
            return case

    async def _load(self, s: AsyncSession, code: str) -> Case:
        code = code.strip()
        row = (await s.execute(
            select(Case).where(Case.code == code)
            .options(selectinload(Case.assignments), selectinload(Case.history))
        )).scalar_one_or_none()
        if row is None:
            raise CaseError(f"không có phản ánh mã '{code}'")
        return row

    async def act(self, code: str, action: str, *, actor: str, note: str | None = None, category: str | None = None,
                  agencies: list[str] | None = None, reason: str | None = None, text: str | None = None,
                  now: dt.datetime | None = None) -> Case:
        """Apply one lifecycle action; refuse it with a clear message if it makes no sense."""
        if action not in ACTIONS:
            raise CaseError(f"thao tác '{action}' không tồn tại")
        actor = check_actor(actor)
        now = now or utcnow()
        sources, target = ACTIONS[action]
        async with self._sm.begin() as s:
            case = await self._load(s, code)
            if case.status not in sources:
                allowed = ", ".join(STATUS_VI[x] for x in sources)
                raise CaseError(
                    f"phản ánh {case.code} đang ở trạng thái '{STATUS_VI[case.status]}': không thể {_ACTION_VI[action]}"
                    f" (chỉ được khi: {allowed})")
            if action == "classify":
                if category is None or category not in CATEGORIES:
                    raise CaseError(f"loại phản ánh phải là một trong: {', '.join(CATEGORIES)}")
                if category != case.category:
                    note = f"{CATEGORY_VI[case.category]} → {CATEGORY_VI[category]}" + (f"; {note}" if note else "")
                case.category = category
                case.deadline_at = deadline(self.routing, case.received_at, category)
            elif action == "assign":
                if not agencies:
                    raise CaseError("cần ít nhất một cơ quan (--agency)")
                unknown = [a for a in agencies if a not in self.routing.agencies]
                if unknown:
                    raise CaseError(f"không có cơ quan mã: {', '.join(unknown)}")
                have = {a.agency_code for a in case.assignments}
                added = [a for a in dict.fromkeys(agencies) if a not in have]
                if not added:
                    raise CaseError(f"phản ánh {case.code} đã được giao cho {', '.join(sorted(have))}")
                for a in added:
                    s.add(CaseAssignment(case_id=case.id, agency_code=a, agency_name=self.routing.agencies[a].name, assigned_at=now))
                note = "giao: " + ", ".join(f"{a} ({self.routing.agencies[a].name})" for a in added) + (f"; {note}" if note else "")
            elif action == "answer":
                if not text or not text.strip():
                    raise CaseError("nội dung trả lời (--text) không được để trống")
                case.answer = text.strip()
                case.answered_at = now
                note = case.answer
            elif action == "close":
                if reason is None or reason not in CLOSE_REASONS:
                    raise CaseError(f"lý do đóng phải là một trong: {', '.join(CLOSE_REASONS)}")
                if reason == "resolved" and case.status != "answered":
                    raise CaseError(f"phản ánh {case.code} chưa được trả lời: không thể đóng với lý do 'đã giải quyết'")
                case.closed_reason = reason
                note = REASON_VI[reason] + (f"; {note}" if note else "")
            elif action == "reopen":
                if not note:
                    raise CaseError("cần ghi lý do mở lại (--note)")
                case.closed_reason = None
            s.add(CaseEvent(case_id=case.id, at=now, actor=actor, action=action, from_status=case.status,
                            to_status=target, note=note))
            case.status = target
            if action == "answer" and case.channel == "zalo":
                # The citizen wrote on Zalo: the answer goes back there, queued in the same
                # transaction so an answer is never recorded without being queued.
                from ivr.zalo.outbox import enqueue_answer

                await s.flush()
                await enqueue_answer(s, case, now)
        case = await self.get(code)
        await self._prepare_speech(case)
        return case

    async def _prepare_speech(self, case: Case) -> None:
        if self.speak is None:
            return
        view = PublicView.of(case)
        try:
            await self.speak([*view.agencies, *([view.answer] if view.answer else [])])
        except Exception as e:  # noqa: BLE001 - the change is stored; a look-up synthesises later
            log.warning("case %s: speech for the look-up not prepared: %s", case.code, e)

    async def flag_inspection(self, code: str, *, actor: str, reason: str, now: dt.datetime | None = None) -> Case:
        """Send a case to the inspection team (Tổ Kiểm tra đột xuất)."""
        if not reason or not reason.strip():
            raise CaseError("cần ghi lý do chuyển Tổ Kiểm tra (--reason)")
        actor = check_actor(actor)
        async with self._sm.begin() as s:
            case = await self._load(s, code)
            if case.inspection:
                raise CaseError(f"phản ánh {case.code} đã được chuyển Tổ Kiểm tra đột xuất")
            case.inspection = True
            case.inspection_reason = reason.strip()
            s.add(CaseEvent(case_id=case.id, at=now or utcnow(), actor=actor, action="flag_inspection", note=reason.strip()))
        return await self.get(code)

    async def note(self, code: str, *, actor: str, text: str, now: dt.datetime | None = None) -> Case:
        """Add a note to the history; the status does not change."""
        if not text or not text.strip():
            raise CaseError("nội dung ghi chú (--text) không được để trống")
        async with self._sm.begin() as s:
            case = await self._load(s, code)
            s.add(CaseEvent(case_id=case.id, at=now or utcnow(), actor=actor, action="note", note=text.strip()))
        return await self.get(code)

    async def search(self, f: CaseFilter, *, now: dt.datetime | None = None, offset: int = 0,
                     limit: int | None = 50, newest_first: bool = True) -> tuple[list[Case], int]:
        """One page of the cases ``f`` selects, and how many it selects in all; filtered,
        counted and paginated in the database (the indexes are in migration 0011).

        An agency's cases are two disjoint sets, those it owns and those assigned to it that it
        does not own (:meth:`CaseFilter.parts`): each is read in index order up to the page's
        end, and the page is cut from the two. One ``owned OR assigned`` condition made the
        database sort or scan a big agency's every case for each page (60-200 ms at 100,000
        cases, SQLite); this stays under 10 ms (bench/console.py, docs/performance.md)."""
        now = now or utcnow()
        order = [Case.received_at.desc(), Case.id.desc()] if newest_first else [Case.received_at, Case.id]
        if f.misconduct_first:
            order.insert(0, sql_case((Case.category == "misconduct", 0), else_=1))
        parts = f.parts(now)
        if len(parts) == 1 or limit is None:
            q = select(Case).where(*f.where(now))
        else:
            ends = [select(Case.id).where(*p).order_by(*order).limit(offset + limit).subquery() for p in parts]
            q = select(Case).where(Case.id.in_(union_all(*(select(e.c.id) for e in ends))))
        q = q.options(selectinload(Case.assignments)).order_by(*order)
        if limit is not None:
            q = q.offset(max(0, offset)).limit(limit)
        async with self._sm() as s:
            rows = list((await s.execute(q)).scalars().all())
            if limit is None:
                total = len(rows)
            elif offset == 0 and len(rows) < limit:
                total = len(rows)  # the whole selection is on this page: no second query
            else:
                total = 0
                for p in parts:
                    total += (await s.execute(select(func.count()).select_from(Case).where(*p))).scalar_one()
        return rows, total

    async def count_by_status(self, f: CaseFilter, *, now: dt.datetime | None = None) -> dict[str, int]:
        """How many cases ``f`` selects per status (``f.status`` is ignored: the inbox's tabs)."""
        counts: dict[str, int] = {}
        async with self._sm() as s:
            for p in replace(f, status=None).parts(now or utcnow()):
                q = select(Case.status, func.count()).where(*p).group_by(Case.status)
                for status, n in (await s.execute(q)).all():
                    counts[status] = counts.get(status, 0) + n
        return counts

    async def find(self, code: str, f: CaseFilter) -> Case | None:
        """The case with this code if ``f`` selects it (an officer's scope, …), with its
        assignments and history; None otherwise: one rule for the list and the case page."""
        code = (code or "").strip()
        if not code.isdigit() or len(code) > 16:
            return None
        async with self._sm() as s:
            return (await s.execute(
                select(Case).where(Case.code == code, *f.where(utcnow()))
                .options(selectinload(Case.assignments), selectinload(Case.history))
            )).scalar_one_or_none()

    async def list(self, *, status: str | None = None, agency: str | None = None, overdue: bool = False,
                   inspection: bool = False, now: dt.datetime | None = None) -> list[Case]:
        f = CaseFilter(status=status, agencies=frozenset([agency]) if agency else None, overdue=overdue,
                       inspection=inspection)
        rows, _ = await self.search(f, now=now, limit=None, newest_first=False)
        return rows


def _like(text: str) -> str:
    """A LIKE pattern that finds ``text`` anywhere, its own %, _ and \\ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True)
class CaseFilter:
    """Which cases: every field narrows the selection; the console adds the person's scope
    (``agencies``, ``inspection``) to the filters they chose. Built into SQL by :meth:`where`.

    ``agencies``: cases owned by (branch's agency at receipt) or assigned to any of these.
    ``text``: found in the code, summary, answer, branch or agency name, and in the caller's
    number when ``search_callers`` (never an anonymous caller's: a search is no way round a
    recorded reveal).
    """

    status: str | None = None
    agencies: frozenset[str] | None = None
    overdue: bool = False
    inspection: bool = False
    channel: str | None = None
    category: str | None = None
    text: str | None = None
    search_callers: bool = True
    misconduct_first: bool = False

    def where(self, now: dt.datetime) -> list:
        """The conditions, as one list (the agencies as ``owned OR assigned``)."""
        w = self._common(now)
        if self.agencies is not None:
            codes = sorted(self.agencies)
            w.append(or_(Case.agency_code.in_(codes), Case.id.in_(self._assigned(codes))))
        return w

    def parts(self, now: dt.datetime) -> list[list]:
        """The same selection as disjoint condition lists, each served by an index: for an
        agency scope, the cases it owns, and those assigned to it that it does not own."""
        w = self._common(now)
        if self.agencies is None:
            return [w]
        codes = sorted(self.agencies)
        return [w + [Case.agency_code.in_(codes)],
                w + [Case.id.in_(self._assigned(codes)),
                     or_(Case.agency_code.is_(None), Case.agency_code.not_in(codes))]]

    @staticmethod
    def _assigned(codes: list[str]):
        return select(CaseAssignment.case_id).where(CaseAssignment.agency_code.in_(codes))

    def _common(self, now: dt.datetime) -> list:
        w: list = []
        if self.status:
            w.append(Case.status == self.status)
        if self.overdue:
            w.append(and_(Case.status.in_(OPEN_STATUSES), Case.deadline_at < now))
        if self.inspection:
            w.append(Case.inspection.is_(True))
        if self.channel:
            w.append(Case.channel == self.channel)
        if self.category:
            w.append(Case.category == self.category)
        text = (self.text or "").strip()[:200]
        if text:
            pattern = _like(text)
            fields = [Case.summary, Case.answer, Case.branch_name, Case.agency_name]
            found = [Case.code == text] + [col.ilike(pattern, escape="\\") for col in fields]
            if self.search_callers:
                found.append(and_(Case.caller.ilike(pattern, escape="\\"), Case.anonymous.is_(False)))
            w.append(or_(*found))
        return w


def _code_taken(e: IntegrityError) -> bool:
    """The unique case code was taken (PostgreSQL names the constraint, SQLite the column)."""
    msg = str(e.orig)
    return "uq_cases_code" in msg or "cases.code" in msg


# ------------------------------------------------------------------------------ the case spool
#
# A complaint recorded while the database is down is kept as spool/cases/<code>.json (written
# atomically and fsync'd by :func:`spool_case`); the caller has already heard the code. The call
# log's replayer calls :func:`replay_spooled` once its own spool is empty (a case points at its
# call, so the call's row must be there first), and every spooled case is stored exactly once,
# with the code the caller heard.


def spool_dir(home: Path) -> Path:
    return home / "spool" / "cases"


def spool_case(home: Path, code: str, new: NewCase, received_at: dt.datetime) -> Path:
    """Keep a case the database could not take, durably, under its code."""
    d = spool_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    data = {"code": code, "received_at": received_at.isoformat(), **asdict(new)}
    tmp = d / f".{code}.json"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    path = d / f"{code}.json"
    os.replace(tmp, path)
    _fsync_dir(d)
    return path


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def replay_spooled(engine: AsyncEngine, routing: Routing, home: Path, *, timeout: float = 5) -> int:
    """Store the spooled cases, oldest first; return how many were stored.

    Exactly once: a case whose code is already in the database with the same call and time was
    stored by an earlier attempt that died before removing the file, and is not stored again. A
    code taken meanwhile by another case (two random codes met) gets a fresh code; the history
    keeps the one the caller heard. Stops at the first database failure (still down); a file
    that cannot be read is set aside as ``.bad``, never deleted.
    """
    d = spool_dir(home)
    if not d.is_dir():
        return 0
    service = Cases(engine, routing)
    stored = 0
    for path in sorted(d.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            code = data.pop("code")
            received = dt.datetime.fromisoformat(data.pop("received_at"))
            new = NewCase(**data)
        except (ValueError, KeyError, TypeError) as e:
            os.replace(path, path.with_suffix(".bad"))
            log.error("case spool: %s unreadable (%s), set aside", path.name, e)
            continue
        try:
            await asyncio.wait_for(_store_spooled(service, new, code, received), timeout)
        except CaseError as e:
            log.error("case spool: %s not stored: %s", path.name, e)
            continue
        except IntegrityError as e:
            # Not a code collision (those are handled): most likely the call row is not there yet.
            log.warning("case spool: %s waits: %s", path.name, e.orig)
            continue
        except Exception as e:  # database still down (or hung): try again later
            log.warning("case spool: still cannot write (%s); %d cases wait", e.__class__.__name__,
                        sum(1 for _ in d.glob("*.json")))
            break
        path.unlink()
        _fsync_dir(d)
        stored += 1
    if stored:
        log.info("case spool: %d cases written to the database", stored)
    return stored


async def _store_spooled(service: Cases, new: NewCase, code: str, received: dt.datetime) -> None:
    async with service._sm() as s:
        same = (select(Case.code).where(Case.received_at == received)
                .where(Case.call_id == new.call_id if new.call_id else Case.code == code))
        stored_as = (await s.execute(same)).scalars().first()
        taken = (await s.execute(select(Case.id).where(Case.code == code))).first() is not None
    if stored_as is not None:
        # An earlier attempt got through (a replay that died before removing the file, or a
        # write that timed out on our side after the server had committed it).
        if stored_as != code:
            log.warning("case spool: case %s was already stored as %s", code, stored_as)
        return
    if not taken:
        await service.create(new, received_at=received, code=code, note="ghi lại từ hàng đợi khi CSDL gián đoạn")
        return
    case = await service.create(new, received_at=received,
                                note=f"mã {code} đã đọc cho người gọi trùng với phản ánh khác; cấp mã mới")
    log.warning("case spool: code %s was taken meanwhile; stored as %s", code, case.code)


_ACTION_VI = {
    "classify": "phân loại", "assign": "giao xử lý", "start": "bắt đầu xử lý", "answer": "trả lời",
    "close": "đóng", "reopen": "mở lại",
}
