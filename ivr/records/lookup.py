"""A citizen follows their own case: who may see it, and what they are shown.

One rule for the three ways in (phone menu key, Zalo ``TC <code>``, the public web page): a case
is shown only to whoever made it, and anything else (an unknown code, a code that is not
theirs) gives the same ``None``, so no answer tells a guesser that a code exists.

- By phone: a phone case whose caller number is the calling number (an anonymous complaint
  too: the caller proves the number), or a Zalo case whose citizen shared that number with the
  OA. Numbers are compared in one form (``0909…``, ``84909…`` and ``+84909…`` are the same).
- By Zalo: a Zalo case of that Zalo user.
- On the web: the code and the last four digits of the number (as by phone).

The public view holds nothing personal: no caller number, recording, staff name or internal
note; the agencies, the status in four words, the deadline while the case is open and the
answer once there is one. Each look-up that shows a case is recorded in its history.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from ivr.models.cases import Case, CaseEvent
from ivr.models.zalo import ZaloUser
from ivr.vocab import Channel, PublicStatus

CODE = re.compile(r"[1-9][0-9]{5}")  # ivr.records.cases.new_code's codes
PHONE4 = re.compile(r"[0-9]{4}")


@dataclass(frozen=True)
class PublicView:
    """What the citizen is told about their case."""

    code: str
    status: PublicStatus
    agencies: tuple[str, ...]  # who handles it: the assigned agencies, else the branch's
    received_at: dt.datetime
    deadline_at: dt.datetime | None  # while the case is open
    answer: str | None  # once answered (kept after closing)
    answered_at: dt.datetime | None

    @classmethod
    def of(cls, case: Case) -> PublicView:
        status = PublicStatus.of(case.status)
        agencies = tuple(dict.fromkeys(a.agency_name for a in case.assignments)) or \
            ((case.agency_name,) if case.agency_name else ())
        is_open = status in (PublicStatus.RECEIVED, PublicStatus.IN_PROGRESS)
        # An answer under reconsideration (reopened, assigned again) is not told as the result.
        answer = case.answer if case.answer and status in (PublicStatus.ANSWERED, PublicStatus.CLOSED) else None
        return cls(case.code, status, agencies, case.received_at, case.deadline_at if is_open else None,
                   answer, case.answered_at if answer else None)


def canonical_number(raw: str | None) -> str | None:
    """A phone number in one form for comparison: digits, a leading 84 written as 0. None for
    anything that is not a number (``anonymous``, empty)."""
    digits = "".join(c for c in str(raw or "") if c.isdigit())
    if len(digits) < 3:
        return None
    if digits.startswith("84") and len(digits) in (11, 12):
        digits = "0" + digits[2:]
    return digits


def actor(via: str) -> str:
    """Who the history says looked: the citizen, and by which channel."""
    return f"người dân ({Channel.labels()[via]})"


async def find(s: AsyncSession, code: str, *, number: str | None = None, zalo_user: str | None = None,
               phone4: str | None = None) -> Case | None:
    """The case with ``code`` if the one asking made it (exactly one of ``number``,
    ``zalo_user``, ``phone4``), with its assignments; None otherwise."""
    if sum(x is not None for x in (number, zalo_user, phone4)) != 1:
        raise ValueError("one of number, zalo_user, phone4")
    code = (code or "").strip()
    if not CODE.fullmatch(code):
        return None
    case = (await s.execute(select(Case).where(Case.code == code).options(selectinload(Case.assignments)))
            ).scalar_one_or_none()
    if case is None:
        return None
    if zalo_user is not None:
        return case if case.channel == Channel.ZALO and zalo_user and case.caller == zalo_user else None
    if number is not None:
        want = canonical_number(number)
        if want is None:
            return None
        return case if want == await _number_of(s, case) else None
    if not PHONE4.fullmatch(phone4 or ""):
        return None
    have = await _number_of(s, case)
    return case if have is not None and have.endswith(phone4 or "") else None


async def _number_of(s: AsyncSession, case: Case) -> str | None:
    """The phone number that made the case: the caller's, or the one its Zalo citizen shared."""
    if case.channel == Channel.PHONE:
        return canonical_number(case.caller)
    if case.channel == Channel.ZALO and case.caller:
        phone = (await s.execute(select(ZaloUser.phone).where(ZaloUser.user_id == case.caller))).scalar_one_or_none()
        return canonical_number(phone)
    return None


def record_reveal(s: AsyncSession, case: Case, via: str, now: dt.datetime) -> None:
    """The case was shown to its citizen: a line in its history (staff see who follows)."""
    s.add(CaseEvent(case_id=case.id, at=now, actor=actor(via), action="lookup",
                    note=f"người dân tra cứu kết quả qua {Channel.labels()[via]}"))


class Lookup:
    """The look-up on its own database transactions (phone and web; Zalo uses :func:`find`
    inside the event's transaction)."""

    def __init__(self, engine: AsyncEngine):
        self._sm = async_sessionmaker(engine, expire_on_commit=False)

    async def by_number(self, code: str, number: str, *, now: dt.datetime | None = None) -> PublicView | None:
        """For a caller: ``number`` is the calling number."""
        return await self._view(code, Channel.PHONE, now, number=number)

    async def by_phone4(self, code: str, phone4: str, *, now: dt.datetime | None = None) -> PublicView | None:
        """For the public page: the last four digits of the number that made the complaint."""
        return await self._view(code, Channel.WEB, now, phone4=phone4)

    async def by_zalo_user(self, code: str, user_id: str, *, now: dt.datetime | None = None) -> PublicView | None:
        return await self._view(code, Channel.ZALO, now, zalo_user=user_id)

    async def _view(self, code: str, via: str, now: dt.datetime | None, **who: str) -> PublicView | None:
        async with self._sm.begin() as s:
            case = await find(s, code, **who)
            if case is None:
                return None
            record_reveal(s, case, via, now or dt.datetime.now(dt.timezone.utc))
            return PublicView.of(case)

    async def further(self, code: str, number: str, *, note: str, now: dt.datetime | None = None) -> bool:
        """A caller adds to their own case after hearing it (menu key 2): a ``reopen_request``
        in its history for staff to act on (``tongdai cases reopen``), not a new case and no
        change of status. False if the case is not the caller's."""
        async with self._sm.begin() as s:
            case = await find(s, code, number=number)
            if case is None:
                return False
            s.add(CaseEvent(case_id=case.id, at=now or dt.datetime.now(dt.timezone.utc), actor=actor(Channel.PHONE),
                            action="reopen_request", note=note))
            return True
