"""Each node's controller in a cluster: a heartbeat, and the calls of a node that died.

Every ``BEAT`` seconds, while its ARI websocket is connected (its Asterisk is alive), a node's
controller writes ``cluster_nodes.seen_at``. A node not seen for TONGDAI_CLUSTER_DEAD_AFTER
seconds (its Asterisk or its machine died, and did not come back) is dead to the others: the
first survivor to notice closes that node's calls still ``in_progress`` as ``interrupted``,
ended at the node's last heartbeat. Those calls were lost with the node (Asterisk's channels
died with it); this only makes the call log say so. If the node's own controller comes back
later it finalises the same rows again (the same call ids): every call stays one row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.models import Call, ClusterNode
from ivr.vocab import Disposition

log = logging.getLogger("tongdai.cluster")

BEAT = 2.0
DEAD_AFTER = 30


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class NodeWatch:
    def __init__(self, engine: AsyncEngine, node: str, connected: Callable[[], bool], *,
                 dead_after: float = DEAD_AFTER, beat: float = BEAT):
        self.engine = engine
        self.node = node
        self.connected = connected
        self.dead_after = dead_after
        self.beat = beat
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cluster-watch")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except (SQLAlchemyError, OSError) as e:  # the database is down: the call log spools meanwhile
                log.warning("cluster: heartbeat of %s not written: %s", self.node, e.__class__.__name__)
            await asyncio.sleep(self.beat)

    async def tick(self, now: dt.datetime | None = None) -> list[str]:
        """One heartbeat (if connected) and one look for dead nodes; return the call ids closed."""
        now = now or utcnow()
        table = ClusterNode.__table__
        async with self.engine.begin() as conn:
            if self.connected():
                done = await conn.execute(update(table).where(table.c.name == self.node)
                                          .values(seen_at=now, asterisk_up=True))
                if done.rowcount == 0:
                    try:
                        async with conn.begin_nested():
                            await conn.execute(insert(table).values(name=self.node, seen_at=now, asterisk_up=True))
                    except IntegrityError:
                        pass  # written by an earlier run a moment ago
            else:
                await conn.execute(update(table).where(table.c.name == self.node).values(asterisk_up=False))
                return []  # a node cut off from its own Asterisk judges no other
            dead = (await conn.execute(select(table.c.name, table.c.seen_at).where(
                table.c.name != self.node, table.c.seen_at < now - dt.timedelta(seconds=self.dead_after)))).all()
            closed: list[str] = []
            calls = Call.__table__
            for name, seen_at in dead:
                ids = list((await conn.execute(select(calls.c.id).where(
                    calls.c.node == name, calls.c.disposition == Disposition.IN_PROGRESS,
                    calls.c.started_at <= seen_at).with_for_update())).scalars())
                if not ids:
                    continue
                await conn.execute(update(calls).where(calls.c.id.in_(ids), calls.c.disposition == Disposition.IN_PROGRESS)
                                   .values(disposition=Disposition.INTERRUPTED, ended_at=seen_at, hangup_by="system"))
                log.warning("cluster: node %s silent since %s: %d calls in progress closed as interrupted (%s)",
                            name, seen_at.isoformat(timespec="seconds"), len(ids), ", ".join(ids[:10]))
                closed += ids
            return closed
