"""`tongdai agencies import`: load a province's list of agencies into routing.yaml.

The CSV has the columns ``code,name,kind,parent[,station]`` (lines starting with ``#`` are
comments), in UTF-8. Names and kinds follow the same rule as in routing.yaml (ivr.config.text):
a name with a line break, a control character or a character of Asterisk's config syntax is
refused with its CSV line, like any other bad cell. A list in the statistics office's form, ``gso_code,name,kind,parent_gso_code``, is
accepted as it is: codes become ``DV<gso_code>``.

Agencies without a station get one under the numbering plan documented in routing.yaml:
``3nnn`` provincial departments and other bodies, ``4D00`` a district-level unit, ``4Dnn`` the
communes under it, ``5nnn`` communes and wards directly under the province (two-level local
government since 1 July 2025). The agencies block of routing.yaml is rewritten in place (other
sections and their comments are kept); nothing is written unless the whole resulting file
validates.

:func:`import_rows` is the one merge path: the CSV import here and the province import
(:mod:`ivr.config.provinces`) only differ in where their rows come from and in which existing agencies
they replace.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from yaml.nodes import MappingNode

from ivr.config import routing as rt
from ivr.config import text as tx

MAX_BYTES = 16 << 20  # the province's list is about 10 KB

# libyaml's loader when PyYAML has it: ten times faster on a province's ~200 agencies, same marks.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Kinds of local government units (below the province). Since 1 July 2025 there are no districts;
# the communes (xã), wards (phường) and special zones (đặc khu) sit directly under the province.
DISTRICT = "district"
COMMUNE_KINDS = ("commune", "ward", "special_zone")
LOCAL_UNIT_KINDS = (DISTRICT, *COMMUNE_KINDS)


class ImportError_(Exception):
    """The CSV or the resulting routing file is invalid; ``problems`` lists why."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Row:
    code: str
    name: str
    kind: str
    parent: str | None
    station: str | None
    line: int = 0  # where the row came from, for messages (0: not from a file)


def read_csv(path: Path) -> list[Row]:
    """Parse an agencies CSV; raise :class:`ImportError_` with every bad line."""
    raw = _read_utf8(path)
    # The csv module finds the records: a quoted cell may hold a line break (refused below, with
    # its line), and only CR and LF end a record. str.splitlines() would also split at VT, FF,
    # NEL, U+2028…, inside a cell, and turn the rest of a name into a row of its own.
    reader = csv.reader(io.StringIO(raw, newline=""))
    lines: list[tuple[int, list[str]]] = []  # (line the record starts on, cells)
    start = 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells) and not cells[0].lstrip().startswith("#"):
                lines.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as e:
        raise ImportError_([f"{path}:{start}: not CSV: {e}"]) from None
    if not lines:
        raise ImportError_([f"{path}: no header line"])
    rows_raw = [cells for _, cells in lines]
    header = [h.strip() for h in rows_raw[0]]
    gso = "gso_code" in header
    want = ["gso_code", "name", "kind", "parent_gso_code"] if gso else ["code", "name", "kind", "parent"]
    missing = [w for w in want if w not in header]
    if missing:
        raise ImportError_([f"{path}:{lines[0][0]}: missing column(s): {', '.join(missing)} (expected {','.join(want)}[,station])"])
    idx = {h: i for i, h in enumerate(header)}
    problems: list[str] = []
    out: list[Row] = []
    seen: dict[str, int] = {}
    for (lineno, _), cells in zip(lines[1:], rows_raw[1:]):
        def cell(col: str, cells: list[str] = cells) -> str:
            i = idx.get(col)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        code = cell(want[0])
        parent = cell(want[3]) or None
        if gso:
            if code and not code.isdigit():
                problems.append(f"{path}:{lineno}: gso_code '{code}' is not a number")
                continue
            code = f"DV{code}" if code else ""
            parent = f"DV{parent}" if parent else None
        name, kind, station = cell("name"), cell("kind"), cell("station") or None
        if not code or not name or not kind:
            problems.append(f"{path}:{lineno}: code, name and kind are required")
            continue
        if not rt.AGENCY_CODE_RE.fullmatch(code):
            problems.append(f"{path}:{lineno}: {rt.quote(code)} is not a valid agency code")
            continue
        bad = [(col, value, p) for col, value, limit in (("name", name, tx.NAME_MAX), ("kind", kind, tx.KIND_MAX))
               if (p := tx.check_line(value, max_len=limit)) is not None]
        if bad:
            problems.extend(f"{path}:{lineno} {col}: {rt.quote(value)} {p.en()}" for col, value, p in bad)
            continue
        if parent is not None and not rt.AGENCY_CODE_RE.fullmatch(parent):
            problems.append(f"{path}:{lineno}: parent {rt.quote(parent)} is not a valid agency code")
            continue
        if code in seen:
            problems.append(f"{path}:{lineno}: duplicate code '{code}' (first on line {seen[code]})")
            continue
        if station and not rt.EXTENSION_RE.fullmatch(station):
            problems.append(f"{path}:{lineno}: station {rt.quote(station)} is not an extension number")
            continue
        seen[code] = lineno
        out.append(Row(code, name, kind, parent, station, lineno))
    if problems:
        raise ImportError_(problems)
    return out


def _read_utf8(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ImportError_([f"{path}: cannot read: {e.strerror or e}"]) from None
    if len(data) > MAX_BYTES:
        raise ImportError_([f"{path}: larger than {MAX_BYTES >> 20} MiB: not a list of agencies"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ImportError_([
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); a CSV saved by Excel in a Windows "
            "code page (Vietnamese: 1258) must be saved again as 'CSV UTF-8'",
        ]) from None


def _current(routing_path: Path) -> tuple[str, dict]:
    """The routing file's text and data. The file need not be valid yet (an empty one is a
    start), but must be readable YAML with sections at the top (not a list, not nested for ever:
    checked by the pure-Python composer before libyaml's loader sees it)."""
    try:
        text = rt.read_text(routing_path)
        root = rt.compose(text, str(routing_path))
    except rt.RoutingError as e:
        raise ImportError_([str(p) for p in e.errors]) from None
    if root is not None and not isinstance(root, MappingNode):
        raise ImportError_([f"{routing_path}: not a routing file (expected sections such as hotline:, branches:, agencies:)"])
    return text, (yaml.load(text, Loader=_Loader) or {}) if root is not None else {}


def _assign_stations(agencies: list[rt.Agency], taken: set[str]) -> list[rt.Agency]:
    """Give every agency without a station one under the numbering plan."""
    by_code = {a.code: a for a in agencies}
    result: list[rt.Agency] = []
    used = set(taken)

    def next_free(candidates) -> str:
        for n in candidates:
            s = str(n)
            if s not in used:
                used.add(s)
                return s
        raise ImportError_(["the numbering plan has no free extension left for this kind of agency"])

    for a in agencies:
        if a.station:
            result.append(a)
            continue
        parent = by_code.get(a.parent or "")
        pst = parent.station if parent else None
        if parent is not None and pst is None:
            # The parent gets its number first so that its children follow it.
            pst = next((r.station for r in result if r.code == parent.code), None)
        if a.kind == DISTRICT:
            st = next_free(4000 + d * 100 for d in range(1, 10))
        elif pst and re.fullmatch(r"4[1-9]00", pst):
            base = int(pst)
            st = next_free(range(base + 1, base + 100))
        elif a.kind in COMMUNE_KINDS:
            # Directly under the province: the largest province (Hồ Chí Minh City, 168 units)
            # fits in 5001-5999 many times over.
            st = next_free(range(5001, 6000))
        else:
            st = next_free(range(3001, 4000))
        result.append(replace(a, station=st))
    return result


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def render_block(agencies: list[rt.Agency], note: str, flags: dict[str, str] | None = None) -> str:
    """The YAML text of the agencies section, one agency per line; ``flags`` (code -> text)
    become a comment at the end of the agency's line."""
    flags = flags or {}
    out = ["agencies:", f"  # {note}"]
    for a in agencies:
        fields = [f"code: {a.code}", f"name: {_q(a.name)}", f"kind: {a.kind}"]
        if a.parent:
            fields.append(f"parent: {a.parent}")
        if a.station:
            fields.append(f"station: {_q(a.station)}")
        line = "  - {" + ", ".join(fields) + "}"
        if a.code in flags:
            line += "  # " + " ".join(flags[a.code].split())
        out.append(line)
    return "\n".join(out) + "\n"


def splice(text: str, key: str, block: str) -> str:
    """Replace a top-level section of a YAML document, keeping everything else byte for byte."""
    root = yaml.compose(text, Loader=_Loader)
    lines = text.splitlines(keepends=True)
    for knode, vnode in root.value if isinstance(root, MappingNode) else ():  # empty file: None
        if knode.value == key:
            start = knode.start_mark.line
            end = vnode.end_mark.line if vnode.end_mark.column == 0 else vnode.end_mark.line + 1
            end = min(end, len(lines))
            # Comments and blank lines just before the next section belong to it.
            while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
                end -= 1
            return "".join(lines[:start]) + block + "".join(lines[end:])
    sep = "" if text.endswith("\n") or not text else "\n"
    return text + sep + block


@dataclass(frozen=True)
class Outcome:
    """What an import did (or, when it raised, would have done)."""

    routing: rt.Routing
    added: tuple[rt.Agency, ...]
    updated: tuple[tuple[rt.Agency, rt.Agency], ...]  # (before, after) of every row whose code existed
    removed: tuple[rt.Agency, ...]
    kept: dict[str, str] = field(default_factory=dict)  # code -> why an agency due to go stays (flagged)

    @property
    def renamed(self) -> list[tuple[rt.Agency, rt.Agency]]:
        return [(old, new) for old, new in self.updated if old.name != new.name]


def _listed(current: dict, key: str) -> list:
    """A section of a parsed routing file that should be a list, or [] (it may not be valid yet)."""
    v = current.get(key)
    return v if isinstance(v, list) else []


def existing_agencies(current: dict) -> list[rt.Agency]:
    """The agencies of a parsed routing file that are well-formed enough to merge into."""
    return [
        rt.Agency(str(a["code"]), str(a["name"]), str(a["kind"]), a.get("parent"),
                  str(a["station"]) if a.get("station") is not None else None)
        for a in _listed(current, "agencies")
        if isinstance(a, dict) and "code" in a and "name" in a and "kind" in a
    ]


# Given the agencies an import would remove and the parsed routing file, the ones to keep, with why.
Keeper = Callable[[list[rt.Agency], dict], dict[str, str]]


def import_rows(routing_path: Path, rows: list[Row] | Callable[[dict], list[Row]], *, note: str,
                replaces: Callable[[rt.Agency], bool] | None = None, keep: Keeper | None = None,
                root: str | None = None) -> Outcome:
    """Merge ``rows`` into the agencies of routing.yaml, by code (``rows`` may be a function of
    the parsed file, to read the file once).

    An existing agency for which ``replaces`` is true and that no row carries is removed, unless
    ``keep`` says why it must stay, or (with ``keep``) an agency that stays has it as parent: then
    it stays, flagged by a comment on its line. A row
    updates the agency with its code in place (its station stays); empty cells do not erase: a
    row without a parent or station keeps the agency's current one (unless that parent is being
    removed), and a new agency without a parent gets ``root``. New agencies come last, in row
    order, numbered under the plan.

    Writes atomically, and only if the resulting file validates; otherwise raises
    :class:`ImportError_` and the file is left as it was, byte for byte.
    """
    text, current = _current(routing_path)
    if callable(rows):
        rows = rows(current)
    existing = existing_agencies(current)
    incoming = {r.code for r in rows}
    going = [a for a in existing if replaces is not None and replaces(a) and a.code not in incoming]
    why: dict[str, list[str]] = {c: [r] for c, r in (keep(going, current) if (keep is not None and going) else {}).items()}
    if keep is not None:
        # An agency that stays keeps its parent (rows excepted: they move to ``root``).
        while True:
            gone = {a.code for a in going if a.code not in why}
            orphans = [(a.parent, a.code) for a in existing
                       if a.parent is not None and a.parent in gone and a.code not in gone and a.code not in incoming]
            if not orphans:
                break
            for above, child in orphans:
                why.setdefault(above, []).append(f"parent of {child}")
    kept = {c: "; ".join(r) for c, r in why.items()}
    removed = [a for a in going if a.code not in kept]
    gone = {a.code for a in removed}
    merged: dict[str, rt.Agency] = {a.code: a for a in existing if a.code not in gone}
    before = {a.code: a for a in existing}
    added: list[rt.Agency] = []
    updated: list[tuple[rt.Agency, rt.Agency]] = []
    for r in rows:
        old = before.get(r.code)
        station = r.station or (old.station if old else None)
        old_parent = old.parent if old and old.parent not in gone else None
        parent = r.parent or old_parent or (root if root != r.code else None)
        new = rt.Agency(r.code, r.name, r.kind, parent, station)
        if old is not None:
            updated.append((old, new))
        else:
            added.append(new)
        merged[r.code] = new
    # Stations already used by focal-point extensions must not be handed out again.
    taken = {str(e.get("number")) for e in _listed(current, "extensions") if isinstance(e, dict)}
    taken |= {a.station for a in merged.values() if a.station}
    agencies = _assign_stations(list(merged.values()), taken)
    numbered = {a.code: a for a in agencies}
    added = [numbered[a.code] for a in added]
    updated = [(old, numbered[new.code]) for old, new in updated]
    flags = {c: f"kept, not in the imported list: {r}" for c, r in kept.items()}
    new_text = splice(text, "agencies", render_block(agencies, note, flags))
    try:
        result = rt.loads(new_text, name=routing_path.name)
    except rt.RoutingError as e:
        raise ImportError_(["the import would make routing.yaml invalid; nothing was written:"] + [f"  {p}" for p in e.errors]) from None
    _write_atomically(routing_path, new_text)
    return Outcome(result, tuple(added), tuple(updated), tuple(removed), kept)


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".routing-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def import_agencies(routing_path: Path, csv_path: Path, *, replace_all: bool = False, root: str | None = None,
                    today: dt.date | None = None) -> tuple[rt.Routing, int, int]:
    """Merge (or with ``replace_all`` replace) the agencies of ``csv_path`` into routing.yaml.

    Returns the new routing, the number of agencies added and updated (see :func:`import_rows`).
    """
    rows = read_csv(csv_path)
    note = f"imported from {csv_path.name} on {(today or dt.date.today()).isoformat()} by `tongdai agencies import`"
    out = import_rows(routing_path, rows, note=note, replaces=(lambda a: True) if replace_all else None, root=root)
    return out.routing, len(out.added), len(out.updated)
