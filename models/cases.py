"""Complaint cases (phản ánh, kiến nghị): from the phone today, Zalo and the web later.

A case keeps its full history (CaseEvent): who did what, when, from which status to which.
``overdue`` is derived from the deadline and the status, never stored.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivr.models import Base, UTCDateTime
from ivr.vocab import CaseStatus, Category, Channel, CloseReason

CHANNELS = Channel.values()
CATEGORIES = Category.values()
STATUSES = CaseStatus.values()
CLOSE_REASONS = CloseReason.values()


def _in(col: str, values: tuple[str, ...]) -> str:
    return f"{col} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("category", CATEGORIES), name="category"),
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint("closed_reason IS NULL OR " + _in("closed_reason", CLOSE_REASONS), name="closed_reason"),
        # The console's inbox: one agency's cases of one status, newest first (migration 0011).
        Index("ix_cases_agency_status_received", "agency_code", "status", "received_at"),
        Index("ix_cases_agency_received", "agency_code", "received_at"),
        Index("ix_cases_status_received", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    channel: Mapped[str] = mapped_column(String(8))
    caller: Mapped[str | None] = mapped_column(String(64))  # kept even when anonymous: Home Affairs sees it
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    call_id: Mapped[str | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"), index=True)
    branch_digit: Mapped[str | None] = mapped_column(String(1))
    branch_name: Mapped[str | None] = mapped_column(String(200))
    agency_code: Mapped[str | None] = mapped_column(String(32))  # the owning agency at receipt
    agency_name: Mapped[str | None] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(16), default="other")
    summary: Mapped[str | None] = mapped_column(Text)  # text of a written complaint
    recording: Mapped[str | None] = mapped_column(String(500))  # path under $TONGDAI_HOME
    recording_seconds: Mapped[float | None] = mapped_column()
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    deadline_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="received")
    closed_reason: Mapped[str | None] = mapped_column(String(24))
    answer: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    inspection: Mapped[bool] = mapped_column(Boolean, default=False, index=True)  # for Tổ Kiểm tra đột xuất
    inspection_reason: Mapped[str | None] = mapped_column(Text)

    assignments: Mapped[list[CaseAssignment]] = relationship(back_populates="case", lazy="raise", order_by="CaseAssignment.id")
    history: Mapped[list[CaseEvent]] = relationship(back_populates="case", lazy="raise", order_by="CaseEvent.id")


class CaseAssignment(Base):
    """An agency responsible for answering a case (a case may have several)."""

    __tablename__ = "case_assignments"
    __table_args__ = (
        UniqueConstraint("case_id", "agency_code"),
        # An agency's cases without touching the table (the inbox's "assigned to" half).
        Index("ix_case_assignments_agency_case", "agency_code", "case_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    agency_code: Mapped[str] = mapped_column(String(32))
    agency_name: Mapped[str] = mapped_column(String(200))
    assigned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    case: Mapped[Case] = relationship(back_populates="assignments", lazy="raise")


class CaseEvent(Base):
    """One entry of a case's history."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)

    case: Mapped[Case] = relationship(back_populates="history", lazy="raise")
