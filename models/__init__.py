"""The database models (SQLAlchemy 2, typed): the call log, cases, desk phones, Zalo and surveys,
the Youth Union volunteers.

Times are stored in UTC (see :class:`UTCDateTime`) and shown in Asia/Ho_Chi_Minh. Relationships
are ``lazy="raise"``: every query says what it loads.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, MetaData
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on every backend (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC times only")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


from ivr.models.callbacks import CallbackRequest  # noqa: E402,F401
from ivr.models.calls import Call, CallEvent, CallLeg  # noqa: E402,F401
from ivr.models.cases import Case, CaseAssignment, CaseEvent  # noqa: E402,F401
from ivr.models.cluster import CaseCodeCounter, ClusterNode  # noqa: E402,F401
from ivr.models.presence import RegistrationEvent  # noqa: E402,F401
from ivr.models.users import AuditEntry, LoginAttempt, User, WebSession  # noqa: E402,F401
from ivr.models.volunteers import Volunteer, VolunteerAssist, VolunteerShift  # noqa: E402,F401
from ivr.models.zalo import OutboxItem, SurveyAnswer, SurveyRecipient, ZaloEvent, ZaloUser  # noqa: E402,F401
