"""The call log: one Call per hotline call, its timeline (CallEvent) and its desk-phone legs.

Branch and agency names are copied into the row as they were when the call was made, so that
renaming or merging an agency in routing.yaml never rewrites history.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivr.models import Base, UTCDateTime
from ivr.vocab import Disposition

DISPOSITIONS = Disposition.values()


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(
            "disposition IN (" + ", ".join(f"'{d}'" for d in DISPOSITIONS) + ")", name="disposition"
        ),
        CheckConstraint("survey_score IS NULL OR survey_score BETWEEN 1 AND 5", name="survey_score"),
        Index("ix_calls_node_disposition", "node", "disposition"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the caller channel's id
    caller: Mapped[str] = mapped_column(String(64))
    hotline: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # by a desk phone
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    branch_digit: Mapped[str | None] = mapped_column(String(1), index=True)
    branch_name: Mapped[str | None] = mapped_column(String(200))
    agency_code: Mapped[str | None] = mapped_column(String(32), index=True)
    agency_name: Mapped[str | None] = mapped_column(String(200))
    answered_by: Mapped[str | None] = mapped_column(String(16))
    wait_s: Mapped[float | None] = mapped_column(Float)
    talk_s: Mapped[float | None] = mapped_column(Float)
    disposition: Mapped[str] = mapped_column(String(32), default="in_progress", index=True)
    ended_in: Mapped[str | None] = mapped_column(String(32))  # the state the call ended in
    hangup_by: Mapped[str | None] = mapped_column(String(16))  # caller, agent, system
    survey_score: Mapped[int | None] = mapped_column(Integer)  # 1..5 after the staff hung up; None: no answer
    case_code: Mapped[str | None] = mapped_column(String(16), index=True)  # a complaint recorded in this call
    # The conversation's recording (docs/recording.md): its path under $TONGDAI_HOME, empty when the
    # call was not recorded; after retention deletes the file the row keeps the path and says when.
    recording: Mapped[str | None] = mapped_column(String(500))
    recording_s: Mapped[float | None] = mapped_column(Float)
    recording_deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Seconds the dialplan held the caller while no controller took calls (a restart, a crash);
    # None: the controller took the call at once.
    held_s: Mapped[float | None] = mapped_column(Float)
    # The cluster node that took the call (TONGDAI_NODE, docs/cluster.md); None on a single server.
    node: Mapped[str | None] = mapped_column(String(20))
    # An outbound callback (dispositions callback_*): the call whose caller asked for it in the queue.
    callback_of: Mapped[str | None] = mapped_column(String(64), index=True)

    events: Mapped[list[CallEvent]] = relationship(back_populates="call", lazy="raise", order_by="CallEvent.seq")
    legs: Mapped[list[CallLeg]] = relationship(back_populates="call", lazy="raise", order_by="CallLeg.id")


class CallEvent(Base):
    """One step of a call's timeline: menu entered, digit, dial attempt, bridge, hangup…"""

    __tablename__ = "call_events"
    # (call, seq) is unique so that a record replayed from the spool is written once only.
    __table_args__ = (UniqueConstraint("call_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)

    call: Mapped[Call] = relationship(back_populates="events", lazy="raise")


class CallLeg(Base):
    """One desk phone rung for a call, and what it did."""

    __tablename__ = "call_legs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    extension: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(16))  # answered, busy, no_answer, cancelled, failed, unreachable

    call: Mapped[Call] = relationship(back_populates="legs", lazy="raise")
