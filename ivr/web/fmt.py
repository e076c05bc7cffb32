"""What staff read: times in the hotline's zone, deadlines in working days, masked numbers."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from ivr.config import hours as cal
from ivr.config.routing import Routing
from ivr.records import cases as cm

MAX_DAYS_COUNTED = 3 * 366  # a deadline years away or years past: the count stops here


def local(t: dt.datetime | None, tz: str, fmt: str = "%d/%m/%Y %H:%M") -> str:
    return t.astimezone(zoneinfo.ZoneInfo(tz)).strftime(fmt) if t else "—"


def working_days_between(routing: Routing, first: dt.date, last: dt.date) -> int:
    """Working days d with first < d <= last."""
    n, d = 0, first
    for _ in range(MAX_DAYS_COUNTED):
        d += dt.timedelta(days=1)
        if d > last:
            break
        if cal.is_working_day(routing.hours, d):
            n += 1
    return n


def deadline_text(case, routing: Routing, now: dt.datetime) -> tuple[str, str]:
    """("còn 2 ngày làm việc" | "hạn hôm nay" | "quá hạn 3 ngày" | "", css class)."""
    if case.status not in cm.OPEN_STATUSES:
        return "", ""
    zone = zoneinfo.ZoneInfo(routing.hotline.timezone)
    today = now.astimezone(zone).date()
    due = case.deadline_at.astimezone(zone).date()
    if now <= case.deadline_at:
        n = working_days_between(routing, today, due)
        return ("hạn hôm nay", "due") if n == 0 else (f"còn {n} ngày làm việc", "ok" if n > 2 else "due")
    n = working_days_between(routing, due, today)
    return ("quá hạn hôm nay" if n == 0 else f"quá hạn {n} ngày"), "late"


def mask(number: str | None) -> str:
    """0909123456 -> 0909•••456: enough to tell two callers apart on the live board."""
    if not number:
        return "—"
    if len(number) <= 6:
        return "•" * len(number)
    return number[:4] + "•••" + number[-3:]


def seconds(s: float | None) -> str:
    if s is None:
        return "—"
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}"


def duration(s: float | None) -> str:
    """4500 -> "1 giờ 15 phút"; for longer spans than a call."""
    if not s:
        return "0 phút"
    m = int(round(s / 60))
    if m == 0:
        return f"{int(round(s))} giây"
    return f"{m // 60} giờ {m % 60:02d} phút" if m >= 60 else f"{m} phút"
