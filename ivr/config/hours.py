"""Working days and opening hours in Asia/Ho_Chi_Minh, and the operator's day/night override.

A day is a working day when it is one of ``hours.days`` and not a public holiday (the
``holidays`` package's Vietnamese calendar, Tết included) nor a listed closed day — or when it is
a listed swapped working day (ngày làm bù), which wins over everything else.

The override (``tongdai hours open|closed|auto``), as in FreePBX's day/night control, forces the
hotline open or closed until a time or until set back to ``auto``. It lives in the data directory
so that the controller sees it on the next call. The file is checked when read: one that cannot
be used (damaged, hand-edited without a time zone, a date out of range) counts as ``auto`` and
:func:`state` says so and how to fix it, for ``check``, ``hours`` and the controller's log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import holidays as _holidays

from ivr.config.routing import Hours, Routing

log = logging.getLogger("tongdai.hours")

# The farthest an override may reach: a Tết duty or a closure, not a configuration (for a closure
# without end, no --until). Also keeps every stored time far from datetime's limits.
MAX_AHEAD = dt.timedelta(days=366)
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
_LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc)


class OverrideError(Exception):
    """The override file cannot be used; the message (Vietnamese) says how to fix it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"tệp {path} (lệnh `tongdai hours`) không dùng được: {reason}; tổng đài đang chạy theo lịch.\n"
                         "Chạy `tongdai hours auto` để xoá tệp, rồi đặt lại `tongdai hours open|closed` nếu cần.")


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


def _time(data: dict, key: str) -> dt.datetime:
    v = data.get(key)
    if not isinstance(v, str):
        raise ValueError(f"thiếu '{key}'")
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(f"'{key}' không phải thời điểm ISO 8601") from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"'{key}' không ghi múi giờ (ví dụ +07:00)")
    if not _EARLIEST <= t <= _LATEST:
        raise ValueError(f"'{key}' nằm ngoài khoảng năm 2000–9000")
    return t


def read_override(path: Path) -> Override | None:
    """The stored override, or None (auto); :class:`OverrideError` when the file cannot be used."""
    try:
        raw = path.read_bytes()[:65536]
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OverrideError(path, f"không đọc được ({e.strerror or e})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        raise OverrideError(path, "không phải JSON hợp lệ") from None
    try:
        if not isinstance(data, dict):
            raise ValueError("không phải một đối tượng JSON")
        if data.get("mode") not in ("open", "closed"):
            raise ValueError("'mode' phải là open hoặc closed")
        until = _time(data, "until") if data.get("until") is not None else None
        return Override(data["mode"], until, _time(data, "set_at"))
    except ValueError as e:
        raise OverrideError(path, str(e)) from None


def write_override(path: Path, mode: str, until: dt.datetime | None, now: dt.datetime) -> None:
    """Persist ``mode`` (open, closed or auto) atomically. ``until`` must come from
    :func:`parse_until` (aware, at most :data:`MAX_AHEAD` ahead): nothing else is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "auto":
        path.unlink(missing_ok=True)
        return
    if mode not in ("open", "closed"):
        raise ValueError(f"mode {mode!r}")
    if until is not None and (until.tzinfo is None or not now < until <= now + MAX_AHEAD):
        raise ValueError(f"until {until!r} is not within {MAX_AHEAD.days} days from now")
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
    """``HH:MM`` (the next such time), ``YYYY-MM-DD`` (the start of that day) or ``YYYY-MM-DD HH:MM``,
    in the future and at most :data:`MAX_AHEAD` away. Errors are for the operator (Vietnamese)."""
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
        raise ValueError(f"{text[:40]!r} không phải thời điểm: dùng HH:MM, YYYY-MM-DD hoặc 'YYYY-MM-DD HH:MM'") from None
    d = d if d.tzinfo else d.replace(tzinfo=zone)
    if d <= now:
        raise ValueError(f"'{text}' đã qua")
    if d > now + MAX_AHEAD:
        raise ValueError(f"'{text}' quá xa: --until tối đa {MAX_AHEAD.days} ngày; "
                         "để mở/đóng không thời hạn, bỏ --until rồi chạy `tongdai hours auto` khi cần")
    return d


@dataclass(frozen=True)
class OpenState:
    open: bool
    reason: str  # Vietnamese, for operators
    problem: str | None = None  # the override file could not be used (Vietnamese: what to do)


_reported: set[str] = set()


def _override(path: Path) -> tuple[Override | None, str | None]:
    try:
        return read_override(path), None
    except OverrideError as e:
        if str(e) not in _reported:  # the controller asks on every call: say it once
            _reported.add(str(e))
            log.warning("hours override ignored: %s", str(e).replace("\n", " "))
        return None, str(e)


def state(routing: Routing, override_path: Path, now: dt.datetime | None = None) -> OpenState:
    """Whether the hotline is open now, honouring the operator's override."""
    now = now or dt.datetime.now(dt.timezone.utc)
    tz = routing.hotline.timezone
    ov, problem = _override(override_path)
    if ov and ov.active(now):
        until = f" đến {ov.until.astimezone(zoneinfo.ZoneInfo(tz)):%H:%M %d/%m/%Y}" if ov.until else " cho đến khi đặt lại auto"
        return OpenState(ov.mode == "open", f"{'mở' if ov.mode == 'open' else 'đóng'} theo lệnh của người vận hành{until}")
    local = now.astimezone(zoneinfo.ZoneInfo(tz))
    hol = holiday_name(routing.hours, local.date())
    if is_open_by_schedule(routing.hours, now, tz):
        return OpenState(True, "trong giờ làm việc", problem)
    if local.date() in routing.hours.closed_days:
        return OpenState(False, "ngày nghỉ", problem)
    if hol and local.date() not in routing.hours.working_days:
        return OpenState(False, f"ngày lễ: {hol}", problem)
    return OpenState(False, "ngoài giờ làm việc", problem)
