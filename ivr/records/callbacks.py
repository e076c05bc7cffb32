"""Callback requests in the database (docs/queue.md, models/callbacks.py).

The controller keeps the pending requests in its branch queues (ivr/call/queue.py) and this
store is their durable copy: a request is added when the caller confirms, *claimed* with one
conditional UPDATE before it is served (``pending`` -> ``serving``; a second controller, or a
second try of the same one, finds the row no longer pending and does nothing: never served
twice), then finished (``done``/``failed``) or put back (``pending`` with a later ``due_at``: the
citizen did not answer, or the desk phone did not). Requests older than :data:`EXPIRE_AFTER`
are expired. At start the controller reloads what is pending.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.models import CallbackRequest
from ivr.records.calllog import utcnow
from ivr.records.volunteers import normalize_phone
from ivr.vocab import CallbackStatus

log = logging.getLogger("tongdai.callbacks")

EXPIRE_AFTER = dt.timedelta(days=1)
T = CallbackRequest.__table__


def callback_number(raw: str | None) -> str | None:
    """The number to call back, in national form (``0912345678``), when it is a Vietnamese
    subscriber number (``0…``, ``84…``, ``+84…``): a mobile (10 digits, 03/05/07/08/09) or a
    landline (11 digits, 02…). None for anything else: anonymous, withheld, foreign, short codes."""
    try:
        d = normalize_phone(raw or "")
    except ValueError:
        return None
    if len(d) == 10 and d[1] in "35789":
        return d
    if len(d) == 11 and d[1] == "2":
        return d
    return None


@dataclass
class Request:
    """A request as the controller holds it (a copy of its row)."""

    id: int
    call_id: str
    number: str
    branch: str
    queued_at: dt.datetime
    due_at: dt.datetime
    attempts: int = 0

    def expired(self, now: dt.datetime) -> bool:
        return now - self.queued_at >= EXPIRE_AFTER


def _request(row) -> Request:
    return Request(row.id, row.call_id, row.number, row.branch_digit, row.queued_at, row.due_at, row.attempts)


class CallbackStore:
    def __init__(self, engine: AsyncEngine, owner: str):
        self.engine = engine
        self.owner = owner  # who claims: this controller (host and pid)

    async def add(self, call_id: str, number: str, branch: str, queued_at: dt.datetime) -> Request:
        now = utcnow()
        async with self.engine.begin() as conn:
            res = await conn.execute(insert(T).values(
                call_id=call_id, number=number, branch_digit=branch, queued_at=queued_at, requested_at=now,
                status=CallbackStatus.PENDING, attempts=0, due_at=queued_at))
            rid = res.inserted_primary_key[0]  # type: ignore[index]
        return Request(int(rid), call_id, number, branch, queued_at, queued_at)

    async def pending(self, now: dt.datetime | None = None) -> list[Request]:
        """Expire what is too old, then every pending request, oldest arrival first."""
        now = now or utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(update(T).where(T.c.status.in_((CallbackStatus.PENDING, CallbackStatus.SERVING)),
                                               T.c.queued_at <= now - EXPIRE_AFTER)
                               .values(status=CallbackStatus.EXPIRED, finished_at=now))
            rows = (await conn.execute(select(T).where(T.c.status == CallbackStatus.PENDING)
                                       .order_by(T.c.queued_at, T.c.id))).all()
        return [_request(r) for r in rows]

    async def claim(self, req: Request) -> bool:
        """Take the request for serving; False when it is no longer pending (served, expired,
        claimed elsewhere). One conditional UPDATE: atomic on SQLite and PostgreSQL alike."""
        now = utcnow()
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(T).where(T.c.id == req.id, T.c.status == CallbackStatus.PENDING)
                .values(status=CallbackStatus.SERVING, claimed_by=self.owner, claimed_at=now))
        return res.rowcount == 1

    async def finish(self, req: Request, status: CallbackStatus) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(T).where(T.c.id == req.id, T.c.status == CallbackStatus.SERVING)
                               .values(status=status, attempts=req.attempts, finished_at=utcnow()))

    async def put_back(self, req: Request, due_at: dt.datetime) -> None:
        """Serve it again from ``due_at`` (its place in the queue is kept: same ``queued_at``)."""
        req.due_at = due_at
        async with self.engine.begin() as conn:
            await conn.execute(update(T).where(T.c.id == req.id, T.c.status == CallbackStatus.SERVING)
                               .values(status=CallbackStatus.PENDING, attempts=req.attempts, due_at=due_at,
                                       claimed_by=None, claimed_at=None))

    async def expire(self, req: Request) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(T).where(T.c.id == req.id, T.c.status == CallbackStatus.PENDING)
                               .values(status=CallbackStatus.EXPIRED, finished_at=utcnow()))
