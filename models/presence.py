"""Desk-phone presence: every registration change seen over AMI, so a report can say which desk
phones were unreachable, and for how long.

A phone is unreachable from an ``unregistered`` (or ``unreachable``) event until its next
``registered`` (or ``reachable``) event. Rows are only appended, never updated.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.models import Base, UTCDateTime

PRESENCE_STATUSES = ("registered", "unregistered", "reachable", "unreachable")
# Statuses after which the phone can take calls.
UP_STATUSES = ("registered", "reachable")


class RegistrationEvent(Base):
    """One change of a desk phone's registration or reachability."""

    __tablename__ = "registration_events"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in PRESENCE_STATUSES) + ")", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    extension: Mapped[str] = mapped_column(String(16), index=True)
    # The agency that owned the extension at the time (names change; history must not).
    agency_code: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(128))  # the contact's source address, when known
