"""Working days and opening hours in Asia/Ho_Chi_Minh, and the operator's day/night override.

A day is a working day when it is one of ``hours.days`` and not a public holiday (the
``holidays`` package's Vietnamese calendar, Tết included) nor a listed closed day — or when it is
a listed swapped working day (ngày làm bù), which wins over everything else.

The override (``tongdai hours open|closed|auto``), as in FreePBX's day/night control, forces the
hotline open or closed until a time or until set back to ``auto``. It lives in the data directory
so that the controller sees it on the next call.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import holidays as _holidays

from ivr.config.routing import Hours, Routing


@lru_cache(maxsize=64)
def _public_holidays(country: str, year: int) -> dict[dt.date, str]:
    return dict(_holidays.country_holidays(country, years=year))


def holiday_name(hours: Hours, day: dt.date) -> str | None:
    """The public holiday on ``day`` (its name), or None."""
    if not hours.public_holidays:
        return None
    return _public_holidays(hours.public_holidays, day.year).get(day)


@lru_cache(maxsize=64)
def _public_holidays_vi(country: str, year: int) -> dict[dt.date, str]:
    try:
        return dict(_holidays.country_holidays(country, years=year, language="vi"))
    except (NotImplementedError, KeyError, ValueError):  # a calendar without Vietnamese names
        return _public_holidays(country, year)


WEEKDAY_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")


def day_off_reason(hours: Hours, day: dt.date) -> str | None:
    """Why ``day`` is not a working day, for staff (Vietnamese); None on a working day."""
    if is_working_day(hours, day):
        return None
    if day in hours.closed_days:
        return "ngày nghỉ theo routing.yaml"
    if hours.public_holidays and day in _public_holidays_vi(hours.public_holidays, day.year):
        return f"ngày lễ: {_public_holidays_vi(hours.public_holidays, day.year)[day]}"
    weekday = WEEKDAY_VI[day.weekday()]
    return f"cuối tuần ({weekday})" if day.weekday() >= 5 else f"ngày không làm việc ({weekday})"


def is_working_day(hours: Hours, day: dt.date) -> bool:
    if day in hours.working_days:
        return True
    if day in hours.closed_days or holiday_name(hours, day):
        return False
    return day.isoweekday() in hours.days


def add_working_days(hours: Hours, start: dt.datetime, days: int, tz: str = "Asia/Ho_Chi_Minh") -> dt.datetime:
    """The end of the ``days``-th working day after ``start`` (local time), as an aware datetime.

    A deadline of N working days from a case received on day D ends at the close of business
    (the end of the last opening interval) of the N-th working day after D.
    """
    zone = zoneinfo.ZoneInfo(tz)
    local = start.astimezone(zone)
    day = local.date()
    counted = 0
    while counted < days:
        day += dt.timedelta(days=1)
        if is_working_day(hours, day):
            counted += 1
    close = hours.open[-1].end if hours.open else dt.time(23, 59)
    return dt.datetime.combine(day, close, tzinfo=zone)


def is_open_by_schedule(hours: Hours, when: dt.datetime, tz: str) -> bool:
    local = when.astimezone(zoneinfo.ZoneInfo(tz))
    if not is_working_day(hours, local.date()):
        return False
    t = local.time()
    return any(i.start <= t < i.end for i in hours.open)


@dataclass(frozen=True)
class Override:
    mode: str  # "open" or "closed"
    until: dt.datetime | None  # aware, UTC; None = until set back to auto
    set_at: dt.datetime

    def active(self, now: dt.datetime) -> bool:
        return self.until is None or now < self.until


def read_override(path: Path) -> Override | None:
    """The stored override, or None (auto). A damaged file counts as auto."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        until = dt.datetime.fromisoformat(data["until"]) if data.get("until") else None
        if data["mode"] not in ("open", "closed"):
            return None
        return Override(data["mode"], until, dt.datetime.fromisoformat(data["set_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_override(path: Path, mode: str, until: dt.datetime | None, now: dt.datetime) -> None:
    """Persist ``mode`` (open, closed or auto) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "auto":
        path.unlink(missing_ok=True)
        return
    data = {
        "mode": mode,
        "until": until.astimezone(dt.timezone.utc).isoformat() if until else None,
        "set_at": now.astimezone(dt.timezone.utc).isoformat(),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hours-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def parse_until(text: str, now: dt.datetime, tz: str) -> dt.datetime:
    """``HH:MM`` (the next such time), ``YYYY-MM-DD`` (the start of that day) or ``YYYY-MM-DD HH:MM``."""
    zone = zoneinfo.ZoneInfo(tz)
    local_now = now.astimezone(zone)
    text = text.strip()
    try:
        t = dt.time.fromisoformat(text)
        if len(text) == 5:
            cand = dt.datetime.combine(local_now.date(), t, tzinfo=zone)
            return cand if cand > local_now else cand + dt.timedelta(days=1)
    except ValueError:
        pass
    try:
        d = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a time: use HH:MM, YYYY-MM-DD or 'YYYY-MM-DD HH:MM'") from None
    d = d if d.tzinfo else d.replace(tzinfo=zone)
    if d <= now:
        raise ValueError(f"'{text}' is already past")
    return d


@dataclass(frozen=True)
class OpenState:
    open: bool
    reason: str  # Vietnamese, for operators


def state(routing: Routing, override_path: Path, now: dt.datetime | None = None) -> OpenState:
    """Whether the hotline is open now, honouring the operator's override."""
    now = now or dt.datetime.now(dt.timezone.utc)
    tz = routing.hotline.timezone
    ov = read_override(override_path)
    if ov and ov.active(now):
        until = f" đến {ov.until.astimezone(zoneinfo.ZoneInfo(tz)):%H:%M %d/%m/%Y}" if ov.until else " cho đến khi đặt lại auto"
        return OpenState(ov.mode == "open", f"{'mở' if ov.mode == 'open' else 'đóng'} theo lệnh của người vận hành{until}")
    local = now.astimezone(zoneinfo.ZoneInfo(tz))
    hol = holiday_name(routing.hours, local.date())
    if is_open_by_schedule(routing.hours, now, tz):
        return OpenState(True, "trong giờ làm việc")
    if local.date() in routing.hours.closed_days:
        return OpenState(False, "ngày nghỉ")
    if hol and local.date() not in routing.hours.working_days:
        return OpenState(False, f"ngày lễ: {hol}")
    return OpenState(False, "ngoài giờ làm việc")
