"""Youth Union volunteers at the one-stop desks ("Đoàn thanh niên chung tay CCHC").

A volunteer is known by their phone number (national form, ``0…``) and serves a desk: an agency
of routing.yaml that runs a one-stop desk (``vocab.DeskKind``). A shift is planned for one desk
and one local day; check-in and check-out are what happened, and hours served are computed from
them, never from the plan. An assist is one person helped, with no personal data of that person.
Desk codes are stored as text, like the cases' agency codes: routing.yaml may rename or merge an
agency later and the record keeps what was true then.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.models import Base, UTCDateTime
from ivr.vocab import AssistKind

ASSIST_KINDS = AssistKind.values()


def _in(col: str, values: tuple[str, ...]) -> str:
    return f"{col} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class Volunteer(Base):
    """One Youth Union member on the roster; re-importing the roster updates by phone."""

    __tablename__ = "volunteers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    desk_code: Mapped[str] = mapped_column(String(32), index=True)  # the desk they usually serve
    unit: Mapped[str] = mapped_column(String(200))  # their Youth Union branch (chi đoàn, đoàn cơ sở)
    enrolled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class VolunteerShift(Base):
    """A planned shift at a desk, and when the volunteer actually arrived and left."""

    __tablename__ = "volunteer_shifts"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="planned"),
        CheckConstraint("checkout_at IS NULL OR (checkin_at IS NOT NULL AND checkout_at >= checkin_at)", name="checkout"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id", ondelete="CASCADE"), index=True)
    desk_code: Mapped[str] = mapped_column(String(32), index=True)
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)  # the plan
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    checkin_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # what happened, to the minute
    checkout_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))


class VolunteerAssist(Base):
    """One person helped at a desk: what with, and the procedure; never who."""

    __tablename__ = "volunteer_assists"
    __table_args__ = (CheckConstraint(_in("kind", ASSIST_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id", ondelete="CASCADE"), index=True)
    # The shift the volunteer had checked in to at that time, if any.
    shift_id: Mapped[int | None] = mapped_column(ForeignKey("volunteer_shifts.id", ondelete="SET NULL"), index=True)
    desk_code: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(24))
    procedure: Mapped[str | None] = mapped_column(String(300))
    case_code: Mapped[str | None] = mapped_column(String(16), index=True)  # when the help led to a complaint
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
