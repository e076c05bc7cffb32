"""Working days (Vietnamese holidays, closed and swapped days) and the day/night override."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from ivr.config import hours as cal
from ivr.config import routing as rt
from tests.paths import REPO_ROOT

VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
TEXT = (REPO_ROOT / "routing.yaml").read_text(encoding="utf-8")


def routing(closed="[]", working="[]"):
    return rt.loads(TEXT.replace("closed_days: []", f"closed_days: {closed}", 1).replace("working_days: []", f"working_days: {working}", 1))


def at(y, m, d, h=9, mi=0):
    return dt.datetime(y, m, d, h, mi, tzinfo=VN)


def test_tet_2027_and_reunification_day_are_closed():
    r = routing()
    # Tết Nguyên Đán 2027: 6 February 2027 is the first day of the lunar year.
    assert cal.holiday_name(r.hours, dt.date(2027, 2, 8))
    assert not cal.is_working_day(r.hours, dt.date(2027, 2, 8))
    assert not cal.is_working_day(r.hours, dt.date(2027, 4, 30))
    assert not cal.is_working_day(r.hours, dt.date(2027, 5, 1))
    assert cal.is_working_day(r.hours, dt.date(2027, 2, 15))  # an ordinary Monday
    assert not cal.is_working_day(r.hours, dt.date(2026, 11, 28))  # a Saturday


def test_closed_and_swapped_days():
    r = routing(closed="[2026-12-31]", working="[2026-11-28]")
    assert not cal.is_working_day(r.hours, dt.date(2026, 12, 31))
    assert cal.is_working_day(r.hours, dt.date(2026, 11, 28))  # a Saturday worked in exchange


def test_open_hours():
    r = routing()
    p = REPO_ROOT / "does-not-exist.json"
    assert cal.state(r, p, at(2026, 11, 27, 9)).open  # Friday morning
    assert not cal.state(r, p, at(2026, 11, 27, 12)).open  # lunch break
    assert not cal.state(r, p, at(2026, 11, 27, 17, 0)).open  # closing time
    assert not cal.state(r, p, at(2027, 2, 8, 9)).open
    assert "ngày lễ" in cal.state(r, p, at(2027, 2, 8, 9)).reason


def test_override_until_and_auto(tmp_path):
    r = routing()
    p = tmp_path / "hours-override.json"
    now = at(2026, 11, 28, 10).astimezone(dt.timezone.utc)  # Saturday: closed by schedule
    until = cal.parse_until("18:00", now, "Asia/Ho_Chi_Minh")
    assert until == at(2026, 11, 28, 18)
    cal.write_override(p, "open", until, now)
    assert cal.state(r, p, now).open
    assert not cal.state(r, p, at(2026, 11, 28, 18, 1)).open  # expired
    cal.write_override(p, "closed", None, now)
    assert not cal.state(r, p, at(2026, 11, 30, 9)).open  # Monday, still forced closed
    cal.write_override(p, "auto", None, now)
    assert cal.state(r, p, at(2026, 11, 30, 9)).open
    p.write_text("garbage")
    assert cal.state(r, p, at(2026, 11, 30, 9)).open  # a damaged file counts as auto


def test_parse_until_rejects_nonsense():
    now = at(2026, 11, 28, 10)
    with pytest.raises(ValueError):
        cal.parse_until("25:99", now, "Asia/Ho_Chi_Minh")
    with pytest.raises(ValueError):
        cal.parse_until("2020-01-01", now, "Asia/Ho_Chi_Minh")
    assert cal.parse_until("08:00", now, "Asia/Ho_Chi_Minh") == at(2026, 11, 29, 8)


def test_working_day_deadline_skips_tet():
    r = routing()
    # Received on Friday 5 Feb 2027, the last working day before Tết: 3 working days later is
    # after the whole holiday.
    due = cal.add_working_days(r.hours, at(2027, 2, 5, 10), 3)
    d = due.date()
    days = [dt.date(2027, 2, 5) + dt.timedelta(days=i) for i in range(1, (d - dt.date(2027, 2, 5)).days + 1)]
    assert sum(cal.is_working_day(r.hours, x) for x in days) == 3
    assert cal.is_working_day(r.hours, d) and d > dt.date(2027, 2, 10)
