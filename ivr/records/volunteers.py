"""Youth volunteers at the one-stop desks ("Đoàn thanh niên chung tay CCHC", plan part II.3).

The roster (who, which desk, which Youth Union branch), shifts planned per desk and day, arrival
and departure, and the assistance log (one line per person helped, nothing about that person).

Every operation is an async method of :class:`Volunteers` on an ``AsyncEngine`` and returns
plain data (frozen dataclasses, dicts), so the CLI and the staff console's pages share it.
Refusals raise :class:`VolunteerError` with a message for staff (Vietnamese).

Rules:

- A desk is an agency of routing.yaml whose kind runs a one-stop desk (``vocab.DeskKind``: the
  service centre, a district, a commune).
- The roster import checks every row first and writes nothing unless the whole file is valid;
  problems read ``file:line field: reason``. Re-importing updates a volunteer by phone number.
- Two shifts of one volunteer never overlap. A shift planned on a day off of the working calendar
  (weekend, public holiday, closed day; a swapped working day is a working day) is allowed, and
  marked with the reason.
- Check-in and check-out are kept to the minute; hours served run from check-in to check-out.
  A shift without a check-out has no hours: it is shown as such, never guessed from the plan.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from ivr.config import hours as cal
from ivr.config import text as tx
from ivr.config.routing import Routing
from ivr.models import Case, Volunteer, VolunteerAssist, VolunteerShift
from ivr.vocab import AssistKind, DeskKind, ShiftState

COLUMNS = ("name", "phone", "desk", "unit")
DESK_KINDS = DeskKind.values()
PROVINCE = "province"  # the district key of provincial desks (the service centre)
PROVINCE_VI = "Cấp tỉnh"
UNKNOWN_VI = "(không còn trong routing.yaml)"
# A run of 9 or more digits is a phone or an identity-card number: not for the assistance log.
PERSONAL_NUMBER = re.compile(r"\d(?:[\s.\-]?\d){8,}")
MINUTE = dt.timedelta(minutes=1)


class VolunteerError(Exception):
    """A request staff made that makes no sense; the message says why (Vietnamese)."""


class RosterError(VolunteerError):
    """The roster file is invalid; ``problems`` lists every one (``file:line field: reason``)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(v: Any) -> dt.datetime | None:
    """An aware UTC datetime from what a query gives back (SQLite's text or a datetime)."""
    return None if v is None else utc(v)


def utc(v: str | dt.datetime) -> dt.datetime:
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v)
    return v.replace(tzinfo=dt.timezone.utc) if v.tzinfo is None else v.astimezone(dt.timezone.utc)


def to_minute(t: dt.datetime) -> dt.datetime:
    return t.replace(second=0, microsecond=0)


# ------------------------------------------------------------------------------ input parsing


def normalize_phone(raw: str) -> str:
    """A Vietnamese number in its national form (``0909123456``); ValueError when it is not one."""
    d = re.sub(r"[\s.\-()]", "", raw or "")
    if d.startswith("+"):
        d = d[1:]
    if d.startswith("84") and len(d) in (11, 12):
        d = "0" + d[2:]
    if not (d.isdigit() and d.startswith("0") and len(d) in (10, 11)):
        raise ValueError(raw)
    return d


def parse_phone(raw: str) -> str:
    try:
        return normalize_phone(raw)
    except ValueError:
        raise VolunteerError(f"số điện thoại '{raw}' không hợp lệ") from None


def parse_day(text: str, what: str = "--date") -> dt.date:
    """``YYYY-MM-DD`` or ``DD/MM/YYYY``."""
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            pass
    raise VolunteerError(f"{what} '{text}' không phải ngày hợp lệ (YYYY-MM-DD hoặc DD/MM/YYYY)")


def parse_hm(text: str, what: str) -> dt.time:
    try:
        return dt.datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise VolunteerError(f"{what} '{text}' không phải giờ hợp lệ (HH:MM)") from None


def parse_at(text: str, tz: str, what: str = "--at") -> dt.datetime:
    """``YYYY-MM-DD HH:MM`` (or ``DD/MM/YYYY HH:MM``), local time, to UTC."""
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%d/%m/%Y %H:%M"):
        try:
            local = dt.datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return local.replace(tzinfo=zoneinfo.ZoneInfo(tz)).astimezone(dt.timezone.utc)
    raise VolunteerError(f"{what} '{text}' không hợp lệ (dạng \"YYYY-MM-DD HH:MM\", giờ Việt Nam)")


def parse_week(text: str) -> dt.date:
    """``YYYY-Www`` (ISO week, e.g. ``2026-W38``): its Monday."""
    m = re.fullmatch(r"\s*(\d{4})-?W(\d{1,2})\s*", text or "", re.IGNORECASE)
    if m:
        try:
            return dt.date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
        except ValueError:
            pass
    raise VolunteerError(f"--week '{text}' không hợp lệ (dạng YYYY-Www, ví dụ 2026-W38)")


def week_label(monday: dt.date) -> str:
    y, w, _ = monday.isocalendar()
    return f"{y}-W{w:02d}"


def local_span(day: dt.date, start: dt.time, end: dt.time, tz: str) -> tuple[dt.datetime, dt.datetime]:
    zone = zoneinfo.ZoneInfo(tz)
    a = dt.datetime.combine(day, start, zone).astimezone(dt.timezone.utc)
    b = dt.datetime.combine(day, end, zone).astimezone(dt.timezone.utc)
    return a, b


# ------------------------------------------------------------------------------------ desks


def desks(routing: Routing) -> list[str]:
    """The codes of the agencies that run a one-stop desk, in routing.yaml's order."""
    return [c for c, a in routing.agencies.items() if a.kind in DESK_KINDS]


def desk_problem(routing: Routing, code: str) -> str | None:
    """Why ``code`` is not a desk (Vietnamese), or None."""
    a = routing.agencies.get(code)
    if a is None:
        return f"không có cơ quan '{code}' trong routing.yaml"
    if a.kind not in DESK_KINDS:
        return (f"'{code}' ({a.name}, loại {a.kind}) không có bộ phận một cửa "
                f"(chỉ loại: {', '.join(DESK_KINDS)})")
    return None


def check_desk(routing: Routing, code: str) -> str:
    problem = desk_problem(routing, code)
    if problem:
        raise VolunteerError(f"--desk: {problem}")
    return code


def desk_name(routing: Routing, code: str) -> str:
    a = routing.agencies.get(code)
    return a.name if a else f"{code} {UNKNOWN_VI}"


def district_of(routing: Routing, code: str) -> str:
    """The district a desk belongs to: itself, its nearest district ancestor, ``province`` for a
    provincial desk, or the desk's own code when routing.yaml no longer knows it."""
    a = routing.agencies.get(code)
    if a is None:
        return code
    seen: set[str] = set()
    while a is not None and a.code not in seen:
        if a.kind == DeskKind.DISTRICT:
            return a.code
        seen.add(a.code)
        a = routing.agencies.get(a.parent) if a.parent else None
    return PROVINCE


def district_name(routing: Routing, key: str) -> str:
    if key == PROVINCE:
        return PROVINCE_VI
    a = routing.agencies.get(key)
    return a.name if a else f"{key} {UNKNOWN_VI}"


def districts(routing: Routing) -> list[str]:
    """Every district key of the desks of routing.yaml: the province first, then the districts."""
    keys = {district_of(routing, c) for c in desks(routing)}
    return ([PROVINCE] if PROVINCE in keys else []) + [c for c in routing.agencies if c in keys and c != PROVINCE]


def desks_under(routing: Routing, code: str) -> tuple[str, ...]:
    """``code`` and every agency below it (a district and its communes), for export filters."""
    children: dict[str, list[str]] = defaultdict(list)
    for a in routing.agencies.values():
        if a.parent:
            children[a.parent].append(a.code)
    out, todo = [], [code]
    while todo:
        c = todo.pop()
        if c not in out:
            out.append(c)
            todo.extend(children.get(c, ()))
    return tuple(out)


# ------------------------------------------------------------------------------ shift state


def shift_state(starts: dt.datetime, ends: dt.datetime, checkin: dt.datetime | None, checkout: dt.datetime | None,
                now: dt.datetime, tz: str) -> str:
    """A :class:`~ivr.vocab.ShiftState` value, as of ``now``.

    Checked in without a check-out: on duty until the end of the shift's local day, then
    ``no_checkout`` (the hours stay unknown)."""
    if checkin is None or checkin > now:
        return ShiftState.ABSENT if ends <= now else ShiftState.PLANNED
    if checkout is not None and checkout <= now:
        return ShiftState.SERVED
    zone = zoneinfo.ZoneInfo(tz)
    day_end = dt.datetime.combine(checkin.astimezone(zone).date() + dt.timedelta(days=1), dt.time(), zone)
    return ShiftState.ON_DUTY if now < day_end else ShiftState.NO_CHECKOUT


def served_minutes(checkin: dt.datetime | None, checkout: dt.datetime | None) -> int | None:
    """Whole minutes from check-in to check-out; None without both (never guessed)."""
    if checkin is None or checkout is None:
        return None
    return int((checkout - checkin).total_seconds() // 60)


def fmt_minutes(minutes: int | None) -> str:
    """``4 giờ 05 phút``; ``—`` when unknown."""
    if minutes is None:
        return "—"
    h, m = divmod(minutes, 60)
    return f"{h} giờ {m:02d} phút" if h else f"{m} phút"


# ------------------------------------------------------------------------------ plain data


@dataclass(frozen=True)
class VolunteerInfo:
    id: int
    phone: str
    name: str
    desk_code: str
    desk_name: str
    unit: str
    enrolled_at: dt.datetime


@dataclass(frozen=True)
class ShiftInfo:
    id: int
    volunteer_id: int
    phone: str
    name: str
    desk_code: str
    desk_name: str
    day: dt.date  # local
    starts_at: dt.datetime  # UTC, planned
    ends_at: dt.datetime
    checkin_at: dt.datetime | None
    checkout_at: dt.datetime | None
    state: str  # ShiftState
    served_minutes: int | None  # None until checked out
    day_off: str | None  # why the day is not a working day (Vietnamese), None on a working day


@dataclass(frozen=True)
class AssistInfo:
    id: int
    phone: str
    name: str
    desk_code: str
    desk_name: str
    at: dt.datetime
    kind: str
    procedure: str | None
    case_code: str | None
    shift_id: int | None


@dataclass(frozen=True)
class ImportResult:
    added: int
    updated: int
    unchanged: int


@dataclass(frozen=True)
class RosterRow:
    line: int
    name: str
    phone: str
    desk: str
    unit: str


# ----------------------------------------------------------------------------- the roster


def read_roster(path: Path, routing: Routing) -> list[RosterRow]:
    """Parse and check a roster CSV (``name,phone,desk,unit``, UTF-8); every problem at once."""
    where = path.name
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RosterError([f"{where}: không đọc được tệp: {e.strerror or e}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise RosterError([f"{where}:{line}: không phải UTF-8 (hãy lưu tệp dạng \"CSV UTF-8\")"]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 0
    rows: list[RosterRow] = []
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    end = 0  # the physical line the previous record ended on
    try:
        for cells in reader:
            line, end = end + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header, header_line = [c.strip().lower() for c in cells], line
                missing = [c for c in COLUMNS if c not in header]
                if missing:
                    raise RosterError([f"{where}:{line}: thiếu cột {', '.join(missing)} (cần: {','.join(COLUMNS)})"])
                continue
            idx = {h: i for i, h in enumerate(header)}
            val = {c: (cells[idx[c]].strip() if idx[c] < len(cells) else "") for c in COLUMNS}
            bad: list[str] = []
            if not val["name"]:
                bad.append("name: để trống")
            elif len(val["name"]) > 200:
                bad.append("name: dài quá 200 ký tự")
            phone = ""
            try:
                phone = normalize_phone(val["phone"])
            except ValueError:
                bad.append(f"phone: '{val['phone']}' không phải số điện thoại Việt Nam" if val["phone"] else "phone: để trống")
            if phone and phone in first_seen:
                bad.append(f"phone: {phone} trùng với dòng {first_seen[phone]}")
            if not val["desk"]:
                bad.append("desk: để trống")
            else:
                problem = desk_problem(routing, val["desk"])
                if problem:
                    bad.append(f"desk: {problem}")
            if not val["unit"]:
                bad.append("unit: để trống (chi đoàn, đoàn cơ sở)")
            elif len(val["unit"]) > 200:
                bad.append("unit: dài quá 200 ký tự")
            if len(cells) > len(header):
                bad.append(f"dòng có {len(cells)} ô, tiêu đề có {len(header)} cột (thiếu dấu ngoặc kép quanh ô có dấu phẩy?)")
            problems += [f"{where}:{line} {b}" for b in bad]
            if phone and phone not in first_seen:
                first_seen[phone] = line
            if not bad:
                rows.append(RosterRow(line, val["name"], phone, val["desk"], val["unit"]))
    except csv.Error as e:
        problems.append(f"{where}:{reader.line_num}: CSV hỏng: {e}")
    if header is None:
        problems.append(f"{where}:1: tệp trống (cần dòng tiêu đề {','.join(COLUMNS)})")
    elif not rows and not problems:
        problems.append(f"{where}:{header_line}: không có dòng nào sau tiêu đề")
    if problems:
        raise RosterError(problems)
    return rows


# ----------------------------------------------------------------------------- the service



def _actor(actor: str) -> str:
    """Who planned or logged it: one line (ivr.config.text.check_actor), else VolunteerError."""
    name, problem = tx.check_actor(actor)
    if problem is not None:
        raise VolunteerError(problem)
    return name

class Volunteers:
    """Roster, shifts, arrival and assistance on one database."""

    def __init__(self, engine: AsyncEngine, routing: Routing):
        self.engine = engine
        self.routing = routing
        self.tz = routing.hotline.timezone
        self._sm = async_sessionmaker(engine, expire_on_commit=False)

    # ------------------------------------------------------------------ roster

    async def import_roster(self, path: Path, *, now: dt.datetime | None = None) -> ImportResult:
        """Import ``path`` all or nothing (:class:`RosterError` lists every problem)."""
        rows = read_roster(path, self.routing)
        now = now or utcnow()
        added = updated = unchanged = 0
        async with self._sm.begin() as s:
            known: dict[str, Volunteer] = {}
            phones = [r.phone for r in rows]
            for i in range(0, len(phones), 500):  # bounded IN lists, whatever the roster's size
                q = sa.select(Volunteer).where(Volunteer.phone.in_(phones[i:i + 500]))
                found: list[Volunteer] = list((await s.execute(q)).scalars())
                known.update((x.phone, x) for x in found)
            for r in rows:
                v = known.get(r.phone)
                if v is None:
                    s.add(Volunteer(phone=r.phone, name=r.name, desk_code=r.desk, unit=r.unit, enrolled_at=now, updated_at=now))
                    added += 1
                elif (v.name, v.desk_code, v.unit) != (r.name, r.desk, r.unit):
                    v.name, v.desk_code, v.unit, v.updated_at = r.name, r.desk, r.unit, now
                    updated += 1
                else:
                    unchanged += 1
        return ImportResult(added, updated, unchanged)

    def _info(self, v: Volunteer) -> VolunteerInfo:
        return VolunteerInfo(v.id, v.phone, v.name, v.desk_code, desk_name(self.routing, v.desk_code), v.unit, v.enrolled_at)

    async def list_volunteers(self, *, desk: str | None = None) -> list[VolunteerInfo]:
        """The roster, by desk (routing.yaml's order) and name."""
        if desk is not None:
            check_desk(self.routing, desk)
        q = sa.select(Volunteer)
        if desk is not None:
            q = q.where(Volunteer.desk_code == desk)
        async with self._sm() as s:
            found: list[Volunteer] = list((await s.execute(q)).scalars())
        order = {c: i for i, c in enumerate(self.routing.agencies)}
        found.sort(key=lambda v: (order.get(v.desk_code, len(order)), v.desk_code, v.name, v.phone))
        return [self._info(v) for v in found]

    async def get(self, phone: str) -> VolunteerInfo:
        async with self._sm() as s:
            return self._info(await self._volunteer(s, phone))

    async def _volunteer(self, s: AsyncSession, phone: str, *, lock: bool = False) -> Volunteer:
        p = parse_phone(phone)
        q = sa.select(Volunteer).where(Volunteer.phone == p)
        if lock:  # serialises the overlap and check-in checks of one volunteer (PostgreSQL; SQLite has one writer)
            q = q.with_for_update()
        v = (await s.execute(q)).scalar_one_or_none()
        if v is None:
            raise VolunteerError(f"không có đoàn viên số {p} trong danh sách (tongdai volunteers import)")
        return v

    # ------------------------------------------------------------------ shifts

    def _shift(self, sh: VolunteerShift, v: Volunteer, now: dt.datetime) -> ShiftInfo:
        zone = zoneinfo.ZoneInfo(self.tz)
        day = sh.starts_at.astimezone(zone).date()
        return ShiftInfo(
            id=sh.id, volunteer_id=v.id, phone=v.phone, name=v.name, desk_code=sh.desk_code,
            desk_name=desk_name(self.routing, sh.desk_code), day=day, starts_at=sh.starts_at, ends_at=sh.ends_at,
            checkin_at=sh.checkin_at, checkout_at=sh.checkout_at,
            state=shift_state(sh.starts_at, sh.ends_at, sh.checkin_at, sh.checkout_at, now, self.tz),
            served_minutes=served_minutes(sh.checkin_at, sh.checkout_at),
            day_off=cal.day_off_reason(self.routing.hours, day),
        )

    def _span(self, sh: VolunteerShift) -> str:
        zone = zoneinfo.ZoneInfo(self.tz)
        a, b = sh.starts_at.astimezone(zone), sh.ends_at.astimezone(zone)
        return f"ca #{sh.id} {sh.desk_code} {a:%d/%m/%Y %H:%M}–{b:%H:%M}"

    async def add_shift(self, phone: str, day: dt.date, start: dt.time, end: dt.time, *, desk: str | None = None,
                        actor: str = "system", now: dt.datetime | None = None) -> ShiftInfo:
        """Plan a shift; refused when it overlaps another shift of the same volunteer."""
        actor = _actor(actor)
        now = now or utcnow()
        if end <= start:
            raise VolunteerError(f"giờ kết thúc {end:%H:%M} phải sau giờ bắt đầu {start:%H:%M} (ca trong một ngày)")
        if desk is not None:
            check_desk(self.routing, desk)
        starts, ends = local_span(day, start, end, self.tz)
        async with self._sm.begin() as s:
            v = await self._volunteer(s, phone, lock=True)
            clash = (await s.execute(
                sa.select(VolunteerShift).where(VolunteerShift.volunteer_id == v.id, VolunteerShift.starts_at < ends,
                                                VolunteerShift.ends_at > starts)
                .order_by(VolunteerShift.starts_at).limit(1))).scalar_one_or_none()
            if clash is not None:
                raise VolunteerError(f"{v.name} ({v.phone}) đã có {self._span(clash)} trùng giờ: không thêm ca")
            sh = VolunteerShift(volunteer_id=v.id, desk_code=desk or v.desk_code, starts_at=starts, ends_at=ends,
                                created_at=now, created_by=actor)
            s.add(sh)
            await s.flush()
            return self._shift(sh, v, now)

    async def get_shift(self, shift_id: int, *, now: dt.datetime | None = None) -> ShiftInfo:
        async with self._sm() as s:
            row = (await s.execute(sa.select(VolunteerShift, Volunteer).join(Volunteer)
                                   .where(VolunteerShift.id == shift_id))).first()
            if row is None:
                raise VolunteerError(f"không có ca #{shift_id}")
            return self._shift(row[0], row[1], now or utcnow())

    async def cancel_shift(self, shift_id: int, *, now: dt.datetime | None = None) -> ShiftInfo:
        """Remove a planned shift nobody checked in to (a planning mistake)."""
        now = now or utcnow()
        async with self._sm.begin() as s:
            row = (await s.execute(sa.select(VolunteerShift, Volunteer).join(Volunteer)
                                   .where(VolunteerShift.id == shift_id))).first()
            if row is None:
                raise VolunteerError(f"không có ca #{shift_id}")
            sh, v = row[0], row[1]
            if sh.checkin_at is not None:
                raise VolunteerError(f"{self._span(sh)} đã có giờ vào: không huỷ được")
            info = self._shift(sh, v, now)
            await s.delete(sh)
            return info

    async def roster(self, monday: dt.date, *, desk: str | None = None, now: dt.datetime | None = None) -> list[ShiftInfo]:
        """The shifts of the week starting ``monday``, by desk (routing.yaml's order), time, name."""
        now = now or utcnow()
        if desk is not None:
            check_desk(self.routing, desk)
        start, _ = local_span(monday, dt.time(), dt.time(), self.tz)
        end, _ = local_span(monday + dt.timedelta(days=7), dt.time(), dt.time(), self.tz)
        q = (sa.select(VolunteerShift, Volunteer).join(Volunteer)
             .where(VolunteerShift.starts_at >= start, VolunteerShift.starts_at < end))
        if desk is not None:
            q = q.where(VolunteerShift.desk_code == desk)
        async with self._sm() as s:
            pairs: Any = (await s.execute(q)).all()
            found = [self._shift(sh, v, now) for sh, v in pairs]
        order = {c: i for i, c in enumerate(self.routing.agencies)}
        found.sort(key=lambda x: (order.get(x.desk_code, len(order)), x.desk_code, x.starts_at, x.name, x.id))
        return found

    # ------------------------------------------------------------------ arrival

    def _when(self, at: dt.datetime | None, now: dt.datetime, what: str) -> dt.datetime:
        at = to_minute(at or now)
        if at > now:
            local = at.astimezone(zoneinfo.ZoneInfo(self.tz))
            raise VolunteerError(f"{what} {local:%d/%m/%Y %H:%M} chưa tới")
        return at

    async def check_in(self, phone: str, at: dt.datetime | None = None, *, shift_id: int | None = None,
                       now: dt.datetime | None = None) -> ShiftInfo:
        """Record the arrival (to the minute) on the volunteer's shift of that day: ``shift_id``,
        or the earliest of the day's shifts not checked in yet that has not ended by then."""
        now = now or utcnow()
        at = self._when(at, now, "giờ vào")
        zone = zoneinfo.ZoneInfo(self.tz)
        day = at.astimezone(zone).date()
        day_start, _ = local_span(day, dt.time(), dt.time(), self.tz)
        day_end = day_start + dt.timedelta(days=1)
        async with self._sm.begin() as s:
            v = await self._volunteer(s, phone, lock=True)
            q = sa.select(VolunteerShift).where(VolunteerShift.volunteer_id == v.id)
            if shift_id is not None:
                sh = (await s.execute(q.where(VolunteerShift.id == shift_id))).scalar_one_or_none()
                if sh is None:
                    raise VolunteerError(f"{v.name} ({v.phone}) không có ca #{shift_id}")
                if sh.starts_at.astimezone(zone).date() != day:
                    raise VolunteerError(f"giờ vào {at.astimezone(zone):%d/%m/%Y %H:%M} không cùng ngày với {self._span(sh)}")
                if sh.checkin_at is not None:
                    raise VolunteerError(f"{self._span(sh)}: đã vào lúc {sh.checkin_at.astimezone(zone):%H:%M}")
            else:
                today: list[VolunteerShift] = list((await s.execute(
                    q.where(VolunteerShift.starts_at >= day_start, VolunteerShift.starts_at < day_end)
                    .order_by(VolunteerShift.starts_at))).scalars())
                if not today:
                    raise VolunteerError(f"{v.name} ({v.phone}) không có ca nào ngày {day:%d/%m/%Y}: thêm ca trước "
                                         "(tongdai volunteers shift add)")
                open_ = [x for x in today if x.checkin_at is None and x.ends_at > at]
                if not open_:
                    done = ", ".join(self._span(x) + (f" (vào {x.checkin_at.astimezone(zone):%H:%M})" if x.checkin_at
                                                      else " (đã hết giờ)") for x in today)
                    raise VolunteerError(f"{v.name} ({v.phone}) không còn ca nào để vào lúc {at.astimezone(zone):%H:%M}: {done}")
                sh = open_[0]
            if at >= sh.ends_at:
                raise VolunteerError(f"giờ vào {at.astimezone(zone):%H:%M} sau khi {self._span(sh)} đã kết thúc")
            sh.checkin_at = at
            await s.flush()
            return self._shift(sh, v, now)

    async def check_out(self, phone: str, at: dt.datetime | None = None, *, shift_id: int | None = None,
                        now: dt.datetime | None = None) -> ShiftInfo:
        """Record the departure (to the minute) on the volunteer's latest shift checked in and not
        out yet (or ``shift_id``); it must be the same local day as the check-in."""
        now = now or utcnow()
        at = self._when(at, now, "giờ ra")
        zone = zoneinfo.ZoneInfo(self.tz)
        async with self._sm.begin() as s:
            v = await self._volunteer(s, phone, lock=True)
            q = sa.select(VolunteerShift).where(VolunteerShift.volunteer_id == v.id, VolunteerShift.checkin_at.is_not(None),
                                                VolunteerShift.checkout_at.is_(None))
            if shift_id is not None:
                q = q.where(VolunteerShift.id == shift_id)
            else:
                q = q.where(VolunteerShift.checkin_at <= at)
            sh = (await s.execute(q.order_by(VolunteerShift.checkin_at.desc()).limit(1))).scalar_one_or_none()
            if sh is None:
                which = f"ca #{shift_id}" if shift_id is not None else "ca nào"
                raise VolunteerError(f"{v.name} ({v.phone}) không có {which} đã vào mà chưa ra (trước "
                                     f"{at.astimezone(zone):%d/%m/%Y %H:%M})")
            cin = sh.checkin_at.astimezone(zone)
            if at < sh.checkin_at:
                raise VolunteerError(f"giờ ra {at.astimezone(zone):%H:%M} trước giờ vào {cin:%H:%M} của {self._span(sh)}")
            if at.astimezone(zone).date() != cin.date():
                raise VolunteerError(
                    f"{self._span(sh)} vào lúc {cin:%d/%m/%Y %H:%M} chưa có giờ ra; giờ ra phải cùng ngày: "
                    f"ghi --at \"{cin:%Y-%m-%d} HH:MM\" (không biết thì để trống, số giờ sẽ không được tính)")
            sh.checkout_at = at
            await s.flush()
            return self._shift(sh, v, now)

    # ------------------------------------------------------------------ assistance

    async def assist(self, phone: str, kind: str, *, procedure: str | None = None, case_code: str | None = None,
                     at: dt.datetime | None = None, actor: str = "system", now: dt.datetime | None = None) -> AssistInfo:
        """Log one person helped. At the desk of the shift the volunteer is checked in to at that
        time, else at their own desk."""
        actor = _actor(actor)
        now = now or utcnow()
        if kind not in AssistKind.values():
            raise VolunteerError(f"--kind '{kind}' không hợp lệ (chọn: {', '.join(AssistKind.values())})")
        procedure = (procedure or "").strip() or None
        if procedure and len(procedure) > 300:
            raise VolunteerError("--procedure dài quá 300 ký tự")
        if procedure and PERSONAL_NUMBER.search(procedure):
            raise VolunteerError("--procedure có một dãy số như số điện thoại hay số CCCD: không ghi thông tin cá nhân "
                                 "của người dân, chỉ ghi tên thủ tục")
        at = at or now
        if at > now:
            raise VolunteerError(f"--at {at.astimezone(zoneinfo.ZoneInfo(self.tz)):%d/%m/%Y %H:%M} chưa tới")
        case_code = (case_code or "").strip() or None
        async with self._sm.begin() as s:
            v = await self._volunteer(s, phone)
            if case_code is not None:
                if (await s.execute(sa.select(Case.id).where(Case.code == case_code))).first() is None:
                    raise VolunteerError(f"--case: không có phản ánh mã {case_code}")
            sh = await self._shift_at(s, v.id, at)
            a = VolunteerAssist(volunteer_id=v.id, shift_id=sh.id if sh else None, desk_code=sh.desk_code if sh else v.desk_code,
                                at=at, kind=kind, procedure=procedure, case_code=case_code, created_at=now, created_by=actor)
            s.add(a)
            await s.flush()
            return AssistInfo(a.id, v.phone, v.name, a.desk_code, desk_name(self.routing, a.desk_code), a.at, a.kind,
                              a.procedure, a.case_code, a.shift_id)

    async def _shift_at(self, s: AsyncSession, volunteer_id: int, at: dt.datetime) -> VolunteerShift | None:
        zone = zoneinfo.ZoneInfo(self.tz)
        candidates = (await s.execute(
            sa.select(VolunteerShift).where(VolunteerShift.volunteer_id == volunteer_id, VolunteerShift.checkin_at <= at,
                                            sa.or_(VolunteerShift.checkout_at.is_(None), VolunteerShift.checkout_at >= at))
            .order_by(VolunteerShift.checkin_at.desc()).limit(1))).scalar_one_or_none()
        if candidates is None:
            return None
        if candidates.checkout_at is None and candidates.checkin_at.astimezone(zone).date() != at.astimezone(zone).date():
            return None  # an older shift nobody checked out of is not today's
        return candidates

    async def assists(self, *, day: dt.date | None = None, desk: str | None = None, limit: int = 200) -> list[AssistInfo]:
        """The latest assists (of ``day``, local, and ``desk`` when given), newest first."""
        q = sa.select(VolunteerAssist, Volunteer).join(Volunteer)
        if day is not None:
            a, _ = local_span(day, dt.time(), dt.time(), self.tz)
            q = q.where(VolunteerAssist.at >= a, VolunteerAssist.at < a + dt.timedelta(days=1))
        if desk is not None:
            q = q.where(VolunteerAssist.desk_code == check_desk(self.routing, desk))
        q = q.order_by(VolunteerAssist.at.desc(), VolunteerAssist.id.desc()).limit(limit)
        async with self._sm() as s:
            pairs: Any = (await s.execute(q)).all()
            return [AssistInfo(a.id, v.phone, v.name, a.desk_code, desk_name(self.routing, a.desk_code), a.at, a.kind,
                               a.procedure, a.case_code, a.shift_id) for a, v in pairs]

    # ------------------------------------------------------------------ figures

    async def summary(self, start: dt.datetime, end: dt.datetime, *, cutoff: dt.datetime | None = None) -> dict:
        """:func:`month_summary` on this database."""
        async with self.engine.connect() as conn:
            return await month_summary(conn, self.routing, start, end, min(end, cutoff or utcnow()))


async def month_summary(conn: AsyncConnection, routing: Routing, start: dt.datetime, end: dt.datetime,
                        cutoff: dt.datetime) -> dict:
    """The figures of a period (the monthly report's section), as plain data, as of ``cutoff``.

    - ``enrolled``: volunteers on the roster at the cut-off (or with a shift or an assist in the
      period, if the roster was imported later); ``volunteers``: those who served
      (checked in to a shift of the period); ``days``: volunteer-days served;
    - shifts of the period (by planned start, up to the cut-off): ``shifts_planned``, ``shifts``
      served (checked in),
      ``absent`` (ended without a check-in), ``no_checkout`` (served, no check-out: no hours),
      ``shifts_day_off`` (planned on a day off);
    - ``minutes``: check-in to check-out of the shifts served, in whole minutes; ``hours`` the same;
    - ``assists`` in the period, ``by_kind``, ``by_district`` (the desk's district; ``province``
      for the service centre); ``districts``: per district volunteers, shifts, minutes, assists;
    - ``desks_without``: desks of routing.yaml where no volunteer served in the period.
    """
    tz = routing.hotline.timezone
    zone = zoneinfo.ZoneInfo(tz)
    # On the roster at the cut-off; a roster imported after the month for shifts entered late
    # still counts those who had a shift or an assist in it.
    enrolled_ids = set((await conn.execute(sa.select(Volunteer.id).where(Volunteer.enrolled_at < cutoff))).scalars())
    served_by: set[int] = set()
    days: set[tuple[int, dt.date]] = set()
    n: Counter[str] = Counter()
    d_vol: dict[str, set[int]] = defaultdict(set)
    d: Counter = Counter()
    served_desks: set[str] = set()
    stmt = (sa.select(VolunteerShift.volunteer_id, VolunteerShift.desk_code, VolunteerShift.starts_at, VolunteerShift.ends_at,
                      VolunteerShift.checkin_at, VolunteerShift.checkout_at)
            .where(VolunteerShift.starts_at >= start, VolunteerShift.starts_at < end, VolunteerShift.starts_at < cutoff))
    rows: Any = await conn.stream(stmt.execution_options(yield_per=2000))
    async for vid, desk, starts_raw, ends_raw, cin_raw, cout_raw in rows:
        starts, ends, cin, cout = utc(starts_raw), utc(ends_raw), as_utc(cin_raw), as_utc(cout_raw)
        enrolled_ids.add(vid)
        key = district_of(routing, desk)
        n["shifts_planned"] += 1
        if cal.day_off_reason(routing.hours, starts.astimezone(zone).date()):
            n["shifts_day_off"] += 1
        if cin is None or cin > cutoff:
            n["absent"] += ends <= cutoff
            continue
        n["shifts"] += 1
        d[key, "shifts"] += 1
        served_by.add(vid)
        d_vol[key].add(vid)
        served_desks.add(desk)
        days.add((vid, cin.astimezone(zone).date()))
        minutes = served_minutes(cin, cout if cout is not None and cout <= cutoff else None)
        if minutes is None:
            n["no_checkout"] += 1
        else:
            n["minutes"] += minutes
            d[key, "minutes"] += minutes
    by_kind = dict.fromkeys(AssistKind.values(), 0)
    stmt = (sa.select(VolunteerAssist.kind, VolunteerAssist.desk_code, VolunteerAssist.volunteer_id, sa.func.count())
            .where(VolunteerAssist.at >= start, VolunteerAssist.at < end, VolunteerAssist.at < cutoff)
            .group_by(VolunteerAssist.kind, VolunteerAssist.desk_code, VolunteerAssist.volunteer_id))
    grouped: Any = (await conn.execute(stmt)).all()
    for kind, desk, vid, count in grouped:
        enrolled_ids.add(vid)
        by_kind[kind] = by_kind.get(kind, 0) + count
        n["assists"] += count
        d[district_of(routing, desk), "assists"] += count
    keys = districts(routing)
    keys += sorted({k for k, _ in d} - set(keys))
    district_rows = [{"code": k, "name": district_name(routing, k), "volunteers": len(d_vol[k]), "shifts": d[k, "shifts"],
                      "minutes": d[k, "minutes"], "hours": round(d[k, "minutes"] / 60, 2), "assists": d[k, "assists"]}
                     for k in keys]
    return {
        "enrolled": len(enrolled_ids),
        "volunteers": len(served_by),
        "days": len(days),
        "shifts_planned": n["shifts_planned"],
        "shifts": n["shifts"],
        "absent": n["absent"],
        "no_checkout": n["no_checkout"],
        "shifts_day_off": n["shifts_day_off"],
        "minutes": n["minutes"],
        "hours": round(n["minutes"] / 60, 2),
        "assists": n["assists"],
        "by_kind": by_kind,
        "by_district": {r["code"]: r["assists"] for r in district_rows},
        "districts": district_rows,
        "desks": len(desks(routing)),
        "desks_without": [{"code": c, "name": desk_name(routing, c), "district": district_of(routing, c)}
                          for c in desks(routing) if c not in served_desks],
    }


def has_activity(summary: dict) -> bool:
    """Whether the programme has anything to report (else the report says so in one line)."""
    return bool(summary["enrolled"] or summary["shifts_planned"] or summary["assists"])


# ------------------------------------------------------------------------------- exports
# Used by ivr.records.export (the one export path: streaming, BOM, formula neutralising).

ASSIST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("assisted_at", "time"), ("kind", "text"), ("kind_label", "text"), ("procedure", "text"), ("case_code", "text"),
    ("desk_code", "text"), ("desk_name", "text"), ("district_code", "text"), ("district_name", "text"),
    ("volunteer_phone", "text"), ("volunteer_name", "text"), ("unit", "text"), ("shift_id", "num"),
)
SHIFT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("shift_id", "num"), ("date", "text"), ("starts_at", "time"), ("ends_at", "time"), ("desk_code", "text"),
    ("desk_name", "text"), ("district_code", "text"), ("district_name", "text"), ("volunteer_phone", "text"),
    ("volunteer_name", "text"), ("unit", "text"), ("checkin_at", "time"), ("checkout_at", "time"),
    ("served_min", "num"), ("state", "text"), ("day_off", "text"),
)


def _period(stmt: sa.Select, col, start: dt.datetime | None, end: dt.datetime | None) -> sa.Select:
    if start is not None:
        stmt = stmt.where(col >= start)
    if end is not None:
        stmt = stmt.where(col < end)
    return stmt


def assists_select(start: dt.datetime | None, end: dt.datetime | None, desk_codes: Iterable[str] | None,
                   raw=lambda c: c) -> sa.Select:
    a, v = VolunteerAssist, Volunteer
    stmt = (sa.select(raw(a.at), a.kind, a.procedure, a.case_code, a.desk_code, v.phone, v.name, v.unit, a.shift_id)
            .join(v, v.id == a.volunteer_id))
    stmt = _period(stmt, a.at, start, end)
    if desk_codes is not None:
        stmt = stmt.where(a.desk_code.in_(list(desk_codes)))
    return stmt.order_by(a.at, a.id)


def assist_rows(batch: Sequence, routing: Routing) -> list[tuple]:
    labels = AssistKind.labels()
    out = []
    for at, kind, procedure, case_code, desk, phone, name, unit, shift_id in batch:
        district = district_of(routing, desk)
        out.append((at, kind, labels.get(kind, kind), procedure, case_code, desk, desk_name(routing, desk), district,
                    district_name(routing, district), phone, name, unit, shift_id))
    return out


def shifts_select(start: dt.datetime | None, end: dt.datetime | None, desk_codes: Iterable[str] | None,
                  raw=lambda c: c) -> sa.Select:
    sh, v = VolunteerShift, Volunteer
    stmt = (sa.select(sh.id, raw(sh.starts_at), raw(sh.ends_at), sh.desk_code, v.phone, v.name, v.unit,
                      raw(sh.checkin_at), raw(sh.checkout_at))
            .join(v, v.id == sh.volunteer_id))
    stmt = _period(stmt, sh.starts_at, start, end)
    if desk_codes is not None:
        stmt = stmt.where(sh.desk_code.in_(list(desk_codes)))
    return stmt.order_by(sh.starts_at, sh.desk_code, sh.id)


def shift_rows(batch: Sequence, routing: Routing, now: dt.datetime) -> list[tuple]:
    tz = routing.hotline.timezone
    zone = zoneinfo.ZoneInfo(tz)
    out = []
    for sid, starts, ends, desk, phone, name, unit, cin, cout in batch:
        s_, e_, i_, o_ = utc(starts), utc(ends), as_utc(cin), as_utc(cout)
        day = s_.astimezone(zone).date()
        district = district_of(routing, desk)
        out.append((sid, day.isoformat(), starts, ends, desk, desk_name(routing, desk), district,
                    district_name(routing, district), phone, name, unit, cin, cout, served_minutes(i_, o_),
                    str(shift_state(s_, e_, i_, o_, now, tz)), cal.day_off_reason(routing.hours, day)))
    return out
