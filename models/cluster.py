"""What the nodes of a cluster share beyond the call log (docs/cluster.md).

- :class:`ClusterNode`: each node's controller says every few seconds that it is alive and
  connected to its Asterisk; a node silent for long is dead to the others, which close its
  calls left in progress as ``interrupted``.
- :class:`CaseCodeCounter`: one row; case codes are claimed from its counter inside the
  transaction that stores the case, so two nodes never draw the same code. The counter is
  turned into a code by a keyed permutation (ivr/records/cases.py), so codes stay unguessable.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.models import Base, UTCDateTime


class ClusterNode(Base):
    __tablename__ = "cluster_nodes"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # last heartbeat with Asterisk connected
    asterisk_up: Mapped[bool] = mapped_column(Boolean, default=True)


class CaseCodeCounter(Base):
    __tablename__ = "case_code_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    next: Mapped[int] = mapped_column(Integer)  # the next counter value to claim
    key: Mapped[str] = mapped_column(String(64))  # the permutation's key (hex), made by the migration
