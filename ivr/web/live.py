"""The live board (/live, updated by server-sent events) and the desk phones page (/phones).

Live data comes from the controller's control socket (``GET /status``, the same document
`tongdai status` reads; the console never posts to it) and from the database (today's figures).
One poller serves every open board: it runs only while somebody watches, asks the controller
every ``every`` seconds and the database every ``db_every``, and hands each snapshot to every
stream. Callers' numbers are masked before they leave the poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import zoneinfo
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import case, func, select

from ivr import control
from ivr.models import Call, Case
from ivr.models.presence import UP_STATUSES
from ivr.records import report as rp
from ivr.records.calllog import last_presence
from ivr.status import STATE_VI

from . import fmt
from .http import ME_KEY

if TYPE_CHECKING:
    from .app import Console

log = logging.getLogger("tongdai.web.live")

StatusSource = Callable[[], Awaitable[dict | None]]
# The board's desk-phone list starts open when at most this many agencies miss a phone (on a
# phone screen 120 rows bury the rest; with the controller down every agency misses all).
OPEN_SHORT_UP_TO = 10
SESSION_CHECK_EVERY = 60.0  # an open stream re-checks its session this often (sign-out, idle, disabled)


def controller_status(home) -> StatusSource:
    async def get() -> dict | None:
        try:
            return await control.request(home, "GET", "/status", timeout=2)
        except (TimeoutError, ConnectionError, OSError, ValueError):
            return None

    return get


class Feed:
    """Snapshots for every open board, made while at least one is open."""

    def __init__(self, make: Callable[[], Awaitable[dict]], every: float):
        self.make = make
        self.every = every
        self.latest: dict | None = None
        self._subscribers: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=2)
        self._subscribers.add(q)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="live-feed")
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subscribers.discard(q)

    async def _run(self) -> None:
        while self._subscribers:
            try:
                self.latest = await self.make()
            except Exception:
                log.exception("live: snapshot failed")
                await asyncio.sleep(self.every)
                continue
            for q in list(self._subscribers):
                if q.full():  # a slow reader gets the newest snapshot, not a backlog
                    with contextlib.suppress(asyncio.QueueEmpty):
                        q.get_nowait()
                q.put_nowait(self.latest)
            await asyncio.sleep(self.every)

    async def close(self) -> None:
        self._subscribers.clear()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Live:
    def __init__(self, console: Console, *, status: StatusSource | None = None, every: float = 2.0,
                 db_every: float = 10.0):
        self.c = console
        self.status = status or controller_status(console.settings.home)
        self.db_every = db_every
        self._today: tuple[float, dict] | None = None
        self.feed = Feed(self.snapshot, every)
        self.session_check_every = SESSION_CHECK_EVERY

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/live", self.page)
        r.add_get("/live/events", self.events)
        r.add_get("/phones", self.phones)

    async def close(self) -> None:
        await self.feed.close()

    # ------------------------------------------------------------------ the snapshot

    async def snapshot(self) -> dict:
        routing = self.c.routing()
        st = await self.status()
        now = self.c.clock()
        calls = []
        for c in (st or {}).get("calls", []):
            calls.append({"caller": fmt.mask(c.get("caller")), "branch": c.get("branch") or "",
                          "branch_name": c.get("branch_name") or "", "state": STATE_VI.get(c.get("state"), c.get("state")),
                          "duration": fmt.seconds(c.get("duration_s"))})
        phones = (st or {}).get("phones") or {}
        agencies: dict[str, dict] = {}
        for ext in routing.extensions.values():
            a = agencies.setdefault(ext.agency, {"code": ext.agency, "up": 0, "total": 0,
                                                 "name": routing.agencies[ext.agency].name
                                                 if ext.agency in routing.agencies else ext.agency})
            a["total"] += 1
            a["up"] += (phones.get(ext.number) or {}).get("status") in UP_STATUSES
        loop = asyncio.get_running_loop()
        if self._today is None or loop.time() - self._today[0] > self.db_every:
            self._today = (loop.time(), await self.today(now))
        ctl = (st or {}).get("controller") or {}
        return {
            "at": fmt.local(now, routing.hotline.timezone, "%H:%M:%S"),
            "controller": {"running": st is not None, "accepting": bool(ctl.get("accepting")),
                           "asterisk": ((st or {}).get("asterisk") or {}).get("version")},
            "calls": calls,
            "phones": sorted(agencies.values(), key=lambda a: (a["up"] == a["total"], a["name"])),
            "today": self._today[1],
        }

    async def today(self, now: dt.datetime) -> dict:
        """Today's calls, answered, abandoned and complaints per branch (local day)."""
        routing = self.c.routing()
        zone = zoneinfo.ZoneInfo(routing.hotline.timezone)
        midnight = dt.datetime.combine(now.astimezone(zone).date(), dt.time(), zone).astimezone(dt.timezone.utc)
        async with self.c.engine.connect() as conn:
            calls = (await conn.execute(
                select(Call.branch_digit, func.count(),
                       func.sum(case((Call.disposition == "answered", 1), else_=0)),
                       func.sum(case((Call.disposition == "abandoned", 1), else_=0)))
                .where(Call.started_at >= midnight).group_by(Call.branch_digit))).all()
            cases: dict[str | None, int] = dict((await conn.execute(
                select(Case.branch_digit, func.count()).where(Case.received_at >= midnight, Case.channel == "phone")
                .group_by(Case.branch_digit))).all())
        per: dict[str | None, dict[str, Any]] = {b.digit: {"digit": b.digit, "name": b.name, "calls": 0, "answered": 0, "abandoned": 0,
                         "complaints": cases.get(b.digit, 0)} for b in routing.branches}
        other: dict[str, Any] = {"digit": "", "name": "chưa chọn nhánh, phím 9, ngoài giờ", "calls": 0, "answered": 0,
                 "abandoned": 0, "complaints": cases.get(None, 0)}
        for digit, n, answered, abandoned in calls:
            row = per.get(digit, other)
            row["calls"] += n
            row["answered"] += int(answered or 0)
            row["abandoned"] += int(abandoned or 0)
        rows = list(per.values()) + [other]
        total = {k: sum(r[k] for r in rows) for k in ("calls", "answered", "abandoned", "complaints")}
        return {"branches": rows, "total": total}

    # ------------------------------------------------------------------ pages

    async def page(self, request: web.Request) -> web.Response:
        self.c.require(request, "live")
        snap = self.feed.latest or await self.snapshot()
        short = [a for a in snap["phones"] if a["up"] < a["total"]]
        return self.c.render(request, "live.html.j2", snap=snap, short=short,
                             full=[a for a in snap["phones"] if a["up"] >= a["total"]],
                             up=sum(a["up"] for a in snap["phones"]), total=sum(a["total"] for a in snap["phones"]),
                             open_short=len(short) <= OPEN_SHORT_UP_TO)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``data:`` line of JSON per snapshot; ``event: ended`` when the
        session is over (the page then reloads, and lands on the sign-in form)."""
        self.c.require(request, "live")
        token = request[ME_KEY].token
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "X-Accel-Buffering": "no"})  # nginx: pass each event on at once
        self.c.secure(request, resp)
        await resp.prepare(request)
        q = self.feed.subscribe()
        loop = asyncio.get_running_loop()
        checked = loop.time()
        try:
            if self.feed.latest is not None:
                await resp.write(_event(self.feed.latest))
            while True:
                try:
                    snap = await asyncio.wait_for(q.get(), min(15.0, self.session_check_every))
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    snap = None
                if loop.time() - checked > self.session_check_every:
                    checked = loop.time()
                    # A board on screen is being watched: its stream counts as use, so a wall
                    # display is not signed out after the idle time; the session still ends at
                    # its maximum age. live.js closes the stream while the tab is hidden, so a
                    # forgotten background tab does not keep the session open (docs/console.md).
                    if await self.c.auth.current(token, touch=True) is None:
                        await resp.write(b"event: ended\ndata: {}\n\n")
                        break
                if snap is not None:
                    await resp.write(_event(snap))
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.feed.unsubscribe(q)
        return resp

    async def phones(self, request: web.Request) -> web.Response:
        self.c.require(request, "phones")
        routing = self.c.routing()
        now = self.c.clock()
        st = await self.status()
        live = (st or {}).get("phones") or {}
        history: dict = {}
        if not live:
            try:
                history = await last_presence(self.c.engine)
            except Exception as e:  # noqa: BLE001 - the page still lists every phone
                log.warning("phones: no registration history (%s)", e.__class__.__name__)
        month = rp.Month(*_year_month(now, routing.hotline.timezone), routing.hotline.timezone)
        async with self.c.engine.connect() as conn:
            down_s, down_n, _ = await rp.unreachable(conn, routing, month, now)
        rows = []
        for ext in sorted(routing.extensions.values(), key=lambda e: (e.agency, e.number)):
            p = live.get(ext.number)
            if p:
                status, since = p.get("status"), _parse(p.get("since"))
                last_seen = _parse(p.get("last_seen"))
            elif ext.number in history:
                status, since, _ever = history[ext.number]
                last_seen = None
            else:
                status, since, last_seen = None, None, None
            rows.append({"ext": ext, "agency": routing.agencies.get(ext.agency), "status": status,
                         "up": status in UP_STATUSES, "since": since, "last_seen": last_seen,
                         "down_n": down_n.get(ext.number, 0), "down_s": down_s.get(ext.number, 0.0)})
        unreachable = [r for r in rows if r["down_n"] or r["down_s"]]
        return self.c.render(request, "phones.html.j2", rows=rows, unreachable=unreachable, month=month,
                             live=st is not None, up=sum(r["up"] for r in rows))


def _event(snap: dict) -> bytes:
    return b"data: " + json.dumps(snap, ensure_ascii=False).encode() + b"\n\n"


def _parse(iso: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(iso) if iso else None


def _year_month(now: dt.datetime, tz: str) -> tuple[int, int]:
    local = now.astimezone(zoneinfo.ZoneInfo(tz))
    return local.year, local.month
