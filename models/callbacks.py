"""Callback requests: a caller waiting in a branch's queue pressed 1 (docs/queue.md).

A request keeps the caller's place: ``queued_at`` is when they joined the queue, and requests
are served in that order among the callers still waiting. ``status`` moves pending -> serving
(claimed by one controller with a conditional UPDATE, so never served twice) -> done / failed,
or back to pending with ``due_at`` later when the citizen did not answer; expired after a day.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.models import Base, UTCDateTime
from ivr.vocab import CallbackStatus


class CallbackRequest(Base):
    __tablename__ = "callback_requests"
    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in CallbackStatus.values()) + ")", name="status"),
        Index("ix_callback_requests_status_queued", "status", "queued_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)  # the call that asked (calls.id)
    number: Mapped[str] = mapped_column(String(32))  # national form, 0xxxxxxxxx
    branch_digit: Mapped[str] = mapped_column(String(1))
    queued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # joined the queue: the place kept
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=CallbackStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # calls placed to the citizen
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # not served before (a retry's wait)
    claimed_by: Mapped[str | None] = mapped_column(String(64))  # the controller serving it
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
