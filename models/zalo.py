"""The Zalo Official Account: received events, known users, the outbox, satisfaction surveys.

``zalo_events`` keeps every accepted webhook event once (unique ``event_key``: the message id,
or a hash of the body for events that have none), so an event Zalo delivers twice is processed
once. ``zalo_outbox`` holds every message to send (auto replies, staff answers, surveys) until
Zalo accepts it or refuses it for good, with the reason.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivr.models import Base, UTCDateTime


def _in(col: str, values: tuple[str, ...]) -> str:
    return f"{col} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


EVENT_STATUSES = ("processed", "ignored", "error")
OUTBOX_KINDS = ("auto_reply", "answer", "survey")
OUTBOX_CHANNELS = ("cs", "zns")  # OA customer-service message by user id / ZNS template by phone
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")
SURVEY_STATUSES = ("pending", "queued", "sent", "failed", "skipped", "answered")


class ZaloEvent(Base):
    """One webhook event as received (raw body kept for audit), and what was done with it."""

    __tablename__ = "zalo_events"
    __table_args__ = (CheckConstraint(_in("status", EVENT_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_key: Mapped[str] = mapped_column(String(80), unique=True)
    event_name: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    msg_id: Mapped[str | None] = mapped_column(String(80))
    event_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # Zalo's timestamp
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)  # spooled at
    processed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    case_code: Mapped[str | None] = mapped_column(String(16), index=True)
    note: Mapped[str | None] = mapped_column(Text)


class ZaloUser(Base):
    """A citizen known to the OA: follow state and last interaction (Zalo's 7-day window)."""

    __tablename__ = "zalo_users"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    following: Mapped[bool] = mapped_column(Boolean, default=False)
    followed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    unfollowed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_interaction_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # 84…, when the citizen shared it
    name: Mapped[str | None] = mapped_column(String(200))


class OutboxItem(Base):
    """One message to send through Zalo, retried with backoff until sent or refused for good."""

    __tablename__ = "zalo_outbox"
    __table_args__ = (
        CheckConstraint(_in("kind", OUTBOX_KINDS), name="kind"),
        CheckConstraint(_in("channel", OUTBOX_CHANNELS), name="channel"),
        CheckConstraint(_in("status", OUTBOX_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)  # enqueueing twice is a no-op
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8))
    case_code: Mapped[str | None] = mapped_column(String(16), index=True)
    survey_id: Mapped[int | None] = mapped_column(ForeignKey("survey_recipients.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(20))
    text: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[str | None] = mapped_column(String(64))
    template_data: Mapped[dict | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # a sender is on it
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    zalo_error: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)  # why it waits or failed, in Vietnamese for staff
    zalo_msg_id: Mapped[str | None] = mapped_column(String(80))


class SurveyRecipient(Base):
    """A person who completed a procedure (imported), to be surveyed once (SIPAS-style)."""

    __tablename__ = "survey_recipients"
    __table_args__ = (
        UniqueConstraint("phone", "procedure", "completed_at"),
        CheckConstraint(_in("status", SURVEY_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)  # quoted in the answer: "KS <code> 5 4 5 5 4"
    phone: Mapped[str] = mapped_column(String(20), index=True)  # 84…
    name: Mapped[str] = mapped_column(String(200))
    procedure: Mapped[str] = mapped_column(String(300))
    office: Mapped[str] = mapped_column(String(200), index=True)
    completed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    imported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    channel: Mapped[str | None] = mapped_column(String(8))  # cs or zns, once queued
    zalo_user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)

    answer: Mapped[SurveyAnswer | None] = relationship(back_populates="recipient", lazy="raise")


def _score(name: str) -> CheckConstraint:
    return CheckConstraint(f"{name} IS NULL OR {name} BETWEEN 1 AND 5", name=name)


class SurveyAnswer(Base):
    """The five SIPAS ratings (1–5) and a free comment, against the person and the office."""

    __tablename__ = "survey_answers"
    __table_args__ = tuple(_score(n) for n in ("q_access", "q_procedure", "q_official", "q_result", "q_complaints"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("survey_recipients.id", ondelete="CASCADE"), unique=True)
    office: Mapped[str] = mapped_column(String(200), index=True)  # copied: reports group by it
    answered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    # The SIPAS questions, in the order citizens answer them.
    q_access: Mapped[int | None] = mapped_column(Integer)  # tiếp cận dịch vụ
    q_procedure: Mapped[int | None] = mapped_column(Integer)  # thủ tục hành chính
    q_official: Mapped[int | None] = mapped_column(Integer)  # công chức trực tiếp giải quyết
    q_result: Mapped[int | None] = mapped_column(Integer)  # kết quả giải quyết
    q_complaints: Mapped[int | None] = mapped_column(Integer)  # tiếp nhận, xử lý góp ý, phản ánh
    comment: Mapped[str | None] = mapped_column(Text)
    zalo_user_id: Mapped[str | None] = mapped_column(String(64))

    recipient: Mapped[SurveyRecipient] = relationship(back_populates="answer", lazy="raise")
