"""`tongdai agencies import --province NAME|CODE`: a province's communes and wards as they are today.

Since 1 July 2025 Vietnam has 34 provinces and two levels of local government (province →
commune, ward or special zone). The units come from the ``vietnam-provinces`` package (the
statistics office's names and codes; versioned by date), not from a list kept by hand here. Each
unit becomes an agency ``DV<5-digit code>`` of kind ``commune`` (xã), ``ward`` (phường) or
``special_zone`` (đặc khu) under ``root``, the province's own agency.

The merge is :func:`ivr.config.agencies.import_rows` (numbering under the plan, validation, atomic
write). Without ``replace`` the units are added (a unit already in the file under its code is
updated in place and keeps its station); with ``replace`` they replace the local units now in the
file (districts, communes, wards), while departments, associations and centres stay. A unit that
would go but still has desk phones or open cases is kept and flagged on its line instead: see
:class:`InUse`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.config import agencies as ag
from ivr.config import routing as rt

if TYPE_CHECKING:
    from ivr.config.settings import Settings

KIND_BY_DIVISION = {"xã": "commune", "phường": "ward", "đặc khu": "special_zone"}


@dataclass(frozen=True)
class Unit:
    code: int
    name: str
    kind: str

    @property
    def agency_code(self) -> str:
        # The statistics office writes commune codes with 5 digits (Hoàn Kiếm is 00070).
        return f"DV{self.code:05d}"


@dataclass(frozen=True)
class Province:
    code: int
    name: str  # as the package has it: "Cao Bằng", "Thành phố Cần Thơ"
    units: tuple[Unit, ...]


@dataclass(frozen=True)
class Catalogue:
    """One release of the unit list: where every import takes its provinces from."""

    source: str  # "vietnam-provinces 2025.10.1 (data of 2025-10-18)"
    provinces: tuple[Province, ...]


class CatalogueError(Exception):
    """The installed package does not look like the one this code was written for."""


def clean(name: str) -> str:
    """One spelling per name: NFC (the package mixed decomposed forms in before 2025.10.1) and
    single spaces (it still has "Xã  Phú Hữu")."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def _kind(division_type: str, name: str) -> str | None:
    kind = KIND_BY_DIVISION.get(str(division_type).strip().lower())
    if kind is None:  # an unknown or empty type: the name says it ("Phường Ninh Kiều")
        low = name.lower()
        kind = next((k for prefix, k in KIND_BY_DIVISION.items() if low.startswith(prefix + " ")), None)
    return kind


def load_catalogue() -> Catalogue:
    """The unit list of the installed ``vietnam-provinces``, through its documented Python API."""
    try:
        import vietnam_provinces as vp
        from vietnam_provinces import Province as VpProvince
        from vietnam_provinces import Ward as VpWard
    except ImportError as e:
        raise CatalogueError(f"the vietnam-provinces package is not installed ({e}); pip install -e . installs it") from None
    provinces = []
    problems = []
    for p in VpProvince.iter_all():
        units = []
        for w in VpWard.iter_by_province(p.code):
            name = clean(w.name)
            dtype = getattr(w.division_type, "value", w.division_type)
            kind = _kind(dtype, name)
            if kind is None:
                problems.append(f"{name} ({int(w.code)}): unknown kind of unit '{dtype}'")
                continue
            units.append(Unit(int(w.code), name, kind))
        provinces.append(Province(int(p.code), clean(p.name), tuple(sorted(units, key=lambda u: u.code))))
    if problems or not provinces:
        raise CatalogueError("vietnam-provinces carries data this import does not understand: " + "; ".join(problems or ["no provinces"]))
    data = getattr(vp, "__data_version__", None)
    source = f"vietnam-provinces {vp.__version__}" + (f" (data of {data})" if data else "")
    return Catalogue(source, tuple(sorted(provinces, key=lambda p: p.code)))


# -------------------------------------------------------------------------------- finding one

_PREFIX = re.compile(r"^(tinh|thanh pho|tp)\b\.?\s*")


def fold(name: str) -> str:
    """A name without diacritics, case, punctuation or "Tỉnh"/"Thành phố": "TP. Cần Thơ" → "can tho"."""
    s = unicodedata.normalize("NFD", name.strip().lower()).replace("đ", "d")
    s = "".join(c for c in s if unicodedata.category(c) != "Mn")
    s = re.sub(r"[^a-z0-9]+", " ", s).strip()
    return _PREFIX.sub("", s).strip()


class UnknownProvince(Exception):
    def __init__(self, query: str, suggestions: list[str]):
        self.query = query
        self.suggestions = suggestions
        super().__init__(f"unknown province '{query}'")


def find(catalogue: Catalogue, query: str) -> Province:
    """The province named (with or without diacritics, "Tỉnh", "Thành phố") or numbered ``query``."""
    q = query.strip()
    if q.isdigit():
        for p in catalogue.provinces:
            if p.code == int(q):
                return p
    else:
        f = fold(q)
        for p in catalogue.provinces:
            if f and fold(p.name) == f:
                return p
    if q.isdigit():
        close = sorted(catalogue.provinces, key=lambda p: abs(p.code - int(q)))[:3]
    else:
        by_fold = {fold(p.name): p for p in catalogue.provinces}
        f = fold(q)
        ranked = sorted(by_fold, key=lambda k: difflib.SequenceMatcher(None, f, k).ratio(), reverse=True)
        close = [by_fold[k] for k in difflib.get_close_matches(f, list(by_fold), n=3, cutoff=0.6) or ranked[:3]]
    raise UnknownProvince(query, [f"{p.name} ({p.code:02d})" for p in close])


# -------------------------------------------------------------------------- units still in use


Usage = Callable[[set[str]], dict[str, list[str]]]  # agency codes -> why each is still in use


class InUse:
    """Why a local unit that the package no longer lists must stay: it has focal-point phones,
    owns a branch, has open cases, or a desk phone has registered on its station. ``usage``
    answers the last two from the database (see :func:`database_usage`); it is passed in so that
    the import runs without one. (Agencies under it that stay keep it too: import_rows sees to
    that.)"""

    def __init__(self, usage: Usage | None = None):
        self.usage = usage

    def __call__(self, going: list[rt.Agency], current: dict) -> dict[str, str]:
        reasons: dict[str, list[str]] = {a.code: [] for a in going}
        for e in current.get("extensions") or []:
            if isinstance(e, dict) and str(e.get("agency")) in reasons:
                reasons[str(e["agency"])].append(f"focal-point phone {e.get('number')}")
        for b in current.get("branches") or []:
            if isinstance(b, dict) and str(b.get("agency")) in reasons:
                reasons[str(b["agency"])].append(f"owns branch {b.get('digit')}")
        if self.usage is not None:
            for code, why in self.usage(set(reasons)).items():
                if code in reasons:
                    reasons[code].extend(why)
        return {c: "; ".join(r) for c, r in reasons.items() if r}


def database_usage(settings: Settings) -> Usage:
    """Open cases and registered desk phones of agencies, from the configured database.

    No database yet (no SQLite file) or one without the tables: nothing is in use there. A
    database that cannot be read: every unit is reported in use, so that nothing goes unseen.
    Cases waiting in the spool (recorded while the database was down) count as open.
    """
    from ivr.records import cases as cases_mod
    from ivr.records import db as db_mod

    def usage(codes: set[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for f in sorted(cases_mod.spool_dir(settings.home).glob("*.json")):
            try:
                code = json.loads(f.read_text(encoding="utf-8")).get("agency_code")
            except (OSError, ValueError):
                continue
            if code in codes:
                out.setdefault(code, []).append(f"spooled case {f.stem}")
        path = db_mod.sqlite_path(settings.database_url)
        if path is not None and not Path(path).exists():
            return out
        try:
            found = asyncio.run(_query(db_mod.engine(settings), codes))
        except Exception as e:  # noqa: BLE001 - any failure to read means: cannot tell, so keep
            unknown = f"database not readable ({type(e).__name__}): open cases unknown"
            return {c: out.get(c, []) + [unknown] for c in codes}
        for code, reasons in found.items():
            out.setdefault(code, []).extend(reasons)
        return out

    return usage


async def _query(engine, codes: set[str]) -> dict[str, list[str]]:
    from sqlalchemy import inspect, select

    from ivr.models.cases import Case, CaseAssignment
    from ivr.models.presence import UP_STATUSES, RegistrationEvent
    from ivr.vocab import CaseStatus

    cases: dict[str, set[str]] = {}
    phones: dict[str, set[str]] = {}
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            # An answered case can still be reopened: only a closed one is done with its unit.
            if "cases" in tables:
                q = select(Case.agency_code, Case.code).where(Case.agency_code.in_(codes), Case.status != CaseStatus.CLOSED)
                for agency, code in await conn.execute(q):
                    cases.setdefault(agency, set()).add(code)
            if "cases" in tables and "case_assignments" in tables:
                q = (select(CaseAssignment.agency_code, Case.code).join(Case, Case.id == CaseAssignment.case_id)
                     .where(CaseAssignment.agency_code.in_(codes), Case.status != CaseStatus.CLOSED))
                for agency, code in await conn.execute(q):
                    cases.setdefault(agency, set()).add(code)
            if "registration_events" in tables:
                q = (select(RegistrationEvent.agency_code, RegistrationEvent.extension).distinct()
                     .where(RegistrationEvent.agency_code.in_(codes), RegistrationEvent.status.in_(UP_STATUSES)))
                for agency, ext in await conn.execute(q):
                    phones.setdefault(agency, set()).add(ext)
    finally:
        await engine.dispose()
    out: dict[str, list[str]] = {}
    for agency, codes_ in cases.items():
        shown = sorted(codes_)
        more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
        out.setdefault(agency, []).append(f"{len(shown)} open case(s): {', '.join(shown[:5])}{more}")
    for agency, exts in phones.items():
        out.setdefault(agency, []).append(f"desk phone registered on {', '.join(sorted(exts))}")
    return out


# ------------------------------------------------------------------------------------ the import


@dataclass(frozen=True)
class Result:
    province: Province
    source: str
    outcome: ag.Outcome
    stale: tuple[rt.Agency, ...]  # without replace: local units of the file the package does not list (kept as they are)


def default_root(current: dict) -> str | None:
    """The file's own province agency, when it has exactly one (``kind: province``)."""
    roots = [str(a["code"]) for a in current.get("agencies") or [] if isinstance(a, dict) and a.get("kind") == "province" and "code" in a]
    return roots[0] if len(roots) == 1 else None


def import_province(routing_path: Path, query: str, *, replace: bool = False, root: str | None = None,
                    catalogue: Catalogue | None = None, usage: Usage | None = None, today: dt.date | None = None) -> Result:
    """Load the province's units into routing.yaml. Raises :class:`UnknownProvince`,
    :class:`CatalogueError` or :class:`ivr.config.agencies.ImportError_` (nothing written then)."""
    catalogue = catalogue or load_catalogue()
    province = find(catalogue, query)
    listed = {u.agency_code for u in province.units}

    def rows(current: dict) -> list[ag.Row]:
        parent = root or default_root(current)
        return [ag.Row(u.agency_code, u.name, u.kind, parent, None) for u in province.units]

    note = (f"{province.name} ({province.code:02d}): {len(province.units)} units from {catalogue.source},"
            f" imported on {(today or dt.date.today()).isoformat()} by `tongdai agencies import --province`")
    local = lambda a: a.kind in ag.LOCAL_UNIT_KINDS  # noqa: E731
    outcome = ag.import_rows(routing_path, rows, note=note, replaces=local if replace else None, keep=InUse(usage))
    stale = tuple(a for a in outcome.routing.agencies.values() if local(a) and a.code not in listed and a.code not in outcome.kept)
    return Result(province, catalogue.source, outcome, stale)


def report(r: Result) -> str:
    """What the import did, for the operator (Vietnamese)."""
    o = r.outcome
    renamed = o.renamed
    moved = [n for old, n in o.updated if old != n and old.name == n.name]  # kind or parent only
    lines = [
        f"{r.province.name} ({r.province.code:02d}), {r.source}: {len(r.province.units)} xã, phường, đặc khu.",
        f"Thêm {len(o.added)}, đổi tên {len(renamed)}, bỏ {len(o.removed)}, giữ lại {len(o.kept)}"
        + (f" (đổi loại hoặc cấp trên: {len(moved)})" if moved else "")
        + f"; nay có {len(o.routing.agencies)} cơ quan, {len(o.routing.extensions)} máy lẻ.",
    ]
    for old, new in renamed:
        lines.append(f"  đổi tên {new.code}: {old.name} → {new.name}")
    for a in o.removed:
        lines.append(f"  bỏ {a.code} {a.name}" + (f" (máy {a.station})" if a.station else ""))
    for code, why in o.kept.items():
        name = o.routing.agencies[code].name
        lines.append(f"  giữ lại {code} {name}: không còn trong danh sách nhưng {why} (đã đánh dấu trong routing.yaml)")
    if r.stale:
        lines.append(f"  {len(r.stale)} đơn vị cấp huyện, xã trong routing.yaml không có trong danh sách; giữ nguyên"
                     " (dùng --replace để thay)")
    return "\n".join(lines)
