"""routing.yaml: load, validate strictly, normalise.

The operator's single source of truth for the hotline. Validation walks PyYAML's node tree (not
the loaded Python objects) so that every error can name the file, the line and the YAML path, e.g.
``routing.yaml:57 branches[3].targets[1]: unknown extension '1999'``. All errors are collected
and reported at once. Paths use 0-based list indices.

The result is an immutable :class:`Routing`; the controller swaps whole objects on reload, so a
call in progress keeps the routing it started with.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ivr.config import text as tx
from ivr.vocab import Category

# Asterisk's language of the hotline's channels (prompts, SayDigits rules): only languages the
# hotline has prompts in (ivr/pbx/data/prompts-<code>.yaml). The value is written into
# asterisk.conf, pjsip.conf and the dialplan, so it is a closed list, never free text.
LANGUAGES = ("vi",)
MAX_BYTES = 4 << 20  # a routing file of a whole province is about 50 KB
STRATEGIES = ("ringall", "hunt", "roundrobin", "leastrecent")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EXTENSION_RE = re.compile(r"^[0-9]{2,6}$")
AGENCY_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class RoutingError(Exception):
    """routing.yaml is invalid; ``errors`` holds every problem found."""

    def __init__(self, errors: list[Problem]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


# ---------------------------------------------------------------------------------------------
# The normalised model


@dataclass(frozen=True)
class Interval:
    start: dt.time
    end: dt.time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class Hours:
    days: tuple[int, ...]  # ISO weekday numbers, Monday = 1
    open: tuple[Interval, ...]
    public_holidays: str | None  # a country code for the `holidays` package, or None
    closed_days: tuple[dt.date, ...]
    working_days: tuple[dt.date, ...]


@dataclass(frozen=True)
class Hotline:
    number: str
    language: str
    timezone: str


@dataclass(frozen=True)
class Menu:
    first_digit_timeout: float
    inter_digit_timeout: float
    max_tries: int
    fallback: str  # "complaint", "hangup" or "branch:N"
    lookup_digit: str | None = "0"  # menu digit to follow a case by its code (None: off)


CATEGORIES = Category.values()
DEFAULT_DEADLINES = {"procedure": 10, "regulation": 15, "misconduct": 5, "question": 5, "other": 10}


@dataclass(frozen=True)
class Complaints:
    misconduct_digit: str | None  # menu digit straight to a misconduct report (None: off)
    max_seconds: int  # longest voice complaint
    silence_seconds: int  # this much silence ends the recording
    deadlines: dict[str, int]  # working days to answer, per category


@dataclass(frozen=True)
class Survey:
    enabled: bool
    timeout: float  # seconds to wait for the score


@dataclass(frozen=True)
class Recording:
    """Conversation recording (docs/recording.md): answered calls, both parties, from the desk
    phone's answer until a hang-up; ``announce``: the notice after the greeting."""

    enabled: bool = False
    announce: bool = True
    retention_days: int = 365  # `tongdai recordings prune` deletes older conversation recordings


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    kind: str
    parent: str | None
    station: str | None


@dataclass(frozen=True)
class Extension:
    number: str
    agency: str
    name: str
    role: str  # "station" (the agency's desk) or "focal" (a branch focal point)


@dataclass(frozen=True)
class Limits:
    """Protection of the branches: a caller calling more than ``caller_calls_per_minute`` times
    in a minute hears "please try later" (0: no limit)."""

    caller_calls_per_minute: int = 5
    # An address failing SIP authentication this many times within the window is blocked.
    registration_failures: int = 5
    registration_window: int = 60
    block_seconds: int = 600


@dataclass(frozen=True)
class Queue:
    """A branch's queue when every reachable desk phone is busy (docs/queue.md): the caller waits
    up to ``max_wait`` seconds (0: no queue, straight to ``no_answer``), hears their position every
    ``announce_every`` seconds; ``callback``: whether key 1 offers a callback (when a trunk is set)."""

    max_wait: int = 300
    announce_every: int = 30
    callback: bool = True


@dataclass(frozen=True)
class Callback:
    """Callbacks asked for in a queue (docs/queue.md): a citizen who does not answer is called
    again ``retry_after`` seconds later, at most ``attempts`` times in all."""

    attempts: int = 3
    retry_after: int = 120


@dataclass(frozen=True)
class Branch:
    digit: str
    name: str
    agency: str
    targets: tuple[str, ...]
    strategy: str
    ring_timeout: int
    no_answer: str  # "complaint", "hangup" or "branch:N"
    recording: bool = True  # False: this branch's calls are never recorded (``recording: false``)
    queue: Queue = Queue()


@dataclass(frozen=True)
class Routing:
    """A validated routing.yaml."""

    hotline: Hotline
    hours: Hours
    menu: Menu
    branches: tuple[Branch, ...]
    agencies: dict[str, Agency]
    extensions: dict[str, Extension]  # every dialable extension: stations and focal points
    complaints: Complaints = Complaints("9", 180, 6, dict(DEFAULT_DEADLINES))
    survey: Survey = Survey(True, 5.0)
    limits: Limits = Limits()
    recording: Recording = Recording()
    callback: Callback = Callback()
    source: str = ""
    warnings: tuple[Problem, ...] = ()  # valid but odd (``check`` and ``apply`` show them)

    def branch(self, digit: str) -> Branch | None:
        for b in self.branches:
            if b.digit == digit:
                return b
        return None

    def records(self, branch: Branch) -> bool:
        """Whether a call answered on ``branch`` is recorded."""
        return self.recording.enabled and branch.recording

    def agency_path(self, code: str) -> list[Agency]:
        """The agency and its ancestors, nearest first (any depth)."""
        out: list[Agency] = []
        seen: set[str] = set()
        cur: str | None = code
        while cur and cur in self.agencies and cur not in seen:
            seen.add(cur)
            out.append(self.agencies[cur])
            cur = self.agencies[cur].parent
        return out

    def to_json(self) -> dict[str, Any]:
        """The normalised config as plain JSON-able data (for ``tongdai check --json``)."""
        return {
            "hotline": asdict(self.hotline),
            "hours": {
                "days": [DAY_NAMES[d - 1] for d in self.hours.days],
                "open": [str(i) for i in self.hours.open],
                "public_holidays": self.hours.public_holidays,
                "closed_days": [d.isoformat() for d in self.hours.closed_days],
                "working_days": [d.isoformat() for d in self.hours.working_days],
            },
            "menu": asdict(self.menu),
            "complaints": asdict(self.complaints),
            "survey": asdict(self.survey),
            "limits": asdict(self.limits),
            "recording": asdict(self.recording),
            "callback": asdict(self.callback),
            "branches": [
                {**asdict(b), "targets": list(b.targets), "agency_name": self.agencies[b.agency].name}
                for b in self.branches
            ],
            "agencies": [asdict(a) for a in self.agencies.values()],
            "extensions": [asdict(e) for e in self.extensions.values()],
        }


# ---------------------------------------------------------------------------------------------
# Node helpers


class _Checker:
    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def err(self, node: Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.problems.append(Problem(self.file, line, path, message))

    def warn(self, node: Node | None, path: str, message: str) -> None:
        """Valid, but most likely not what the operator meant: ``check`` and ``apply`` say so."""
        line = node.start_mark.line + 1 if node is not None else 0
        self.warnings.append(Problem(self.file, line, path, message))

    def mapping(
        self, node: Node, path: str, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
    ) -> dict[str, tuple[Node, Node]]:
        """Keys of a mapping -> (key node, value node); reports unknown, duplicate, missing keys."""
        if not isinstance(node, MappingNode):
            self.err(node, path, f"expected a mapping, got {_kind(node)}")
            return {}
        out: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, ScalarNode) else None
            kpath = f"{path}.{key}" if path else str(key)
            if key is None:
                self.err(knode, path, "keys must be plain names")
            elif key in out:
                self.err(knode, kpath, "duplicate key")
            elif key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.err(knode, kpath, f"unknown key {quote(key)} (allowed here: {hint})")
            else:
                out[key] = (knode, vnode)
        for key in sorted(required - out.keys()):
            self.err(node, path or "(top)", f"missing required key {quote(key)}")
        return out

    def sequence(self, node: Node, path: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.err(node, path, f"expected a list, got {_kind(node)}")
            return []
        return list(node.value)

    def scalar(self, node: Node, path: str) -> str | None:
        if not isinstance(node, ScalarNode):
            self.err(node, path, f"expected a single value, got {_kind(node)}")
            return None
        if node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~", "null", "Null", "NULL"):
            return None
        return node.value

    def text(self, node: Node, path: str, *, nonempty: bool = True) -> str | None:
        v = self.scalar(node, path)
        if v is None:
            if nonempty:
                self.err(node, path, "must not be empty")
            return None
        v = v.strip()
        if nonempty and not v:
            self.err(node, path, "must not be empty")
            return None
        return v

    def number(self, node: Node, path: str, lo: float, hi: float, *, integer: bool = True) -> Any:
        v = self.scalar(node, path)
        try:
            n = int(v) if integer else float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.err(node, path, f"expected a {'whole ' if integer else ''}number, got {v!r}")
            return None
        if not lo <= n <= hi:
            self.err(node, path, f"{n} is out of range ({lo:g}–{hi:g})")
            return None
        return n

    def choice(self, node: Node, path: str, choices: tuple[str, ...]) -> str | None:
        v = self.text(node, path)
        if v is not None and v not in choices:
            self.err(node, path, f"{quote(v)} is not one of: {', '.join(choices)}")
            return None
        return v

    def name(self, node: Node, path: str, max_len: int = tx.NAME_MAX) -> str | None:
        """A one-line name: the rule of ivr.config.text (no control characters, none of the
        characters Asterisk's config syntax gives meaning to, at most ``max_len`` characters)."""
        v = self.text(node, path)
        if v is None:
            return None
        problem = tx.check_line(v, max_len=max_len)
        if problem is not None:
            self.err(node, path, f"{quote(v)} {problem.en()}")
            return None
        return v

    def date(self, node: Node, path: str) -> dt.date | None:
        v = self.text(node, path)
        if v is None:
            return None
        try:
            return dt.date.fromisoformat(v)
        except ValueError:
            self.err(node, path, f"bad date {v!r} (expected YYYY-MM-DD)")
            return None


def quote(value: Any, limit: int = 60) -> str:
    """A value from the file, quoted for an error line: cut short, invisible characters escaped,
    so that a hostile value cannot add lines to the report."""
    s = str(value)
    s = s if len(s) <= limit else s[:limit] + "…"
    return repr(s) if tx.bad_char(s) else f"'{s}'"


def _kind(node: Node) -> str:
    return "a mapping" if isinstance(node, MappingNode) else "a list" if isinstance(node, SequenceNode) else "a single value"


def _parse_time(s: str) -> dt.time | None:
    m = TIME_RE.match(s)
    return dt.time(int(m.group(1)), int(m.group(2))) if m else None


# ---------------------------------------------------------------------------------------------
# Sections


def _hotline(c: _Checker, node: Node) -> Hotline | None:
    m = c.mapping(node, "hotline", {"number", "language", "timezone"}, {"number"})
    number = c.text(m["number"][1], "hotline.number") if "number" in m else None
    if number is not None and not EXTENSION_RE.match(number):
        c.err(m["number"][1], "hotline.number", f"{quote(number)} is not a dialable number (2–6 digits)")
        number = None
    lang = c.text(m["language"][1], "hotline.language") if "language" in m else "vi"
    if lang is not None and lang not in LANGUAGES:
        c.err(m["language"][1], "hotline.language",
              f"{quote(lang)} is not one of: {', '.join(LANGUAGES)} (the languages the hotline has prompts in)")
        lang = None
    tz = c.text(m["timezone"][1], "hotline.timezone") if "timezone" in m else "Asia/Ho_Chi_Minh"
    if tz:
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(tz)
        except Exception:
            c.err(m["timezone"][1], "hotline.timezone", f"unknown time zone {quote(tz)}")
            tz = None
    if number and lang and tz:
        return Hotline(number=number, language=lang, timezone=tz)
    return None


def _hours(c: _Checker, node: Node | None) -> Hours | None:
    default_open = (Interval(dt.time(7, 0), dt.time(11, 30)), Interval(dt.time(13, 0), dt.time(17, 0)))
    if node is None:
        return Hours((1, 2, 3, 4, 5), default_open, "VN", (), ())
    m = c.mapping(node, "hours", {"days", "open", "public_holidays", "closed_days", "working_days"})
    ok = True
    days: tuple[int, ...] = (1, 2, 3, 4, 5)
    if "days" in m:
        found = []
        for i, dn in enumerate(c.sequence(m["days"][1], "hours.days")):
            d = c.choice(dn, f"hours.days[{i}]", DAY_NAMES)
            if d is None:
                ok = False
            elif DAY_NAMES.index(d) + 1 in found:
                c.err(dn, f"hours.days[{i}]", f"{quote(d)} is listed twice")
                ok = False
            else:
                found.append(DAY_NAMES.index(d) + 1)
        days = tuple(sorted(found))
    intervals: tuple[Interval, ...] = default_open
    if "open" in m:
        ivs: list[Interval] = []
        for i, n in enumerate(c.sequence(m["open"][1], "hours.open")):
            p = f"hours.open[{i}]"
            v = c.text(n, p)
            if v is None:
                ok = False
                continue
            parts = [s.strip() for s in v.split("-")]
            times = [_parse_time(s) for s in parts] if len(parts) == 2 else [None]
            if None in times:
                c.err(n, p, f"bad time range {quote(v)} (expected HH:MM-HH:MM, 24-hour clock)")
                ok = False
                continue
            start, end = times
            assert start is not None and end is not None  # refused just above
            if start >= end:
                c.err(n, p, f"{quote(v)}: the end must be after the start")
                ok = False
                continue
            if ivs and start < ivs[-1].end:
                c.err(n, p, f"{quote(v)} overlaps or precedes the previous range")
                ok = False
                continue
            ivs.append(Interval(start, end))
        intervals = tuple(ivs)
    holidays_cc: str | None = "VN"
    if "public_holidays" in m:
        v = c.text(m["public_holidays"][1], "hours.public_holidays")
        if v is not None and v.lower() == "none":
            holidays_cc = None
        elif v is not None:
            import holidays as _holidays

            if v.upper() not in _holidays.list_supported_countries():
                c.err(m["public_holidays"][1], "hours.public_holidays", f"unknown country code {quote(v)}")
                ok = False
            holidays_cc = v.upper()

    def dates(key: str) -> tuple[dt.date, ...]:
        nonlocal ok
        out: list[dt.date] = []
        if key in m:
            for i, n in enumerate(c.sequence(m[key][1], f"hours.{key}")):
                d = c.date(n, f"hours.{key}[{i}]")
                if d is None:
                    ok = False
                elif d in out:
                    c.err(n, f"hours.{key}[{i}]", f"{d} is listed twice")
                    ok = False
                else:
                    out.append(d)
        return tuple(sorted(out))

    closed = dates("closed_days")
    working = dates("working_days")
    for day in set(closed) & set(working):
        c.err(m["working_days"][1], "hours.working_days", f"{day} is both a closed day and a working day")
        ok = False
    # Hours that never open are refused, not warned about: the hotline would play "closed" to
    # every caller for ever. Closing it on purpose is `tongdai hours closed` (until `auto`).
    never = "the hotline would never open; to close it on purpose use `tongdai hours closed`"
    if ok and not intervals:
        c.err(m["open"][1], "hours.open", f"no opening hours: {never}")
        ok = False
    elif ok and not days and not working:
        c.err(m["days"][1], "hours.days", f"no working day (and no working_days): {never}")
        ok = False
    elif ok and not days:
        c.warn(m["days"][1], "hours.days", f"no regular working day: open only on the {len(working)} "
               f"working_days listed, the last on {working[-1]}")
    return Hours(days, intervals, holidays_cc, closed, working) if ok else None


def _target_ref(c: _Checker, node: Node, path: str, digits: set[str]) -> str | None:
    """A no-answer / fallback action: complaint, hangup or branch:N."""
    v = c.text(node, path)
    if v is None:
        return None
    if v in ("complaint", "hangup"):
        return v
    mm = re.fullmatch(r"branch:([0-9])", v)
    if not mm:
        c.err(node, path, f"{quote(v)} is not one of: complaint, hangup, branch:<digit>")
        return None
    if mm.group(1) not in digits:
        c.err(node, path, f"{quote(v)} names no configured branch")
        return None
    return v


def _menu(c: _Checker, node: Node | None, digits: set[str]) -> Menu | None:
    if node is None:
        return Menu(5.0, 3.0, 3, "complaint")
    m = c.mapping(node, "menu", {"first_digit_timeout", "inter_digit_timeout", "max_tries", "fallback", "lookup_digit"})
    t1 = c.number(m["first_digit_timeout"][1], "menu.first_digit_timeout", 1, 60, integer=False) if "first_digit_timeout" in m else 5.0
    t2 = c.number(m["inter_digit_timeout"][1], "menu.inter_digit_timeout", 1, 30, integer=False) if "inter_digit_timeout" in m else 3.0
    tries = c.number(m["max_tries"][1], "menu.max_tries", 1, 10) if "max_tries" in m else 3
    fb = _target_ref(c, m["fallback"][1], "menu.fallback", digits) if "fallback" in m else "complaint"
    lookup, ok = _lookup_digit(c, m.get("lookup_digit"), digits)
    if None in (t1, t2, tries) or fb is None or not ok:
        return None
    return Menu(float(t1), float(t2), int(tries), fb, lookup)


def _value_of(entry: tuple[Node, Node] | None, key: str) -> Node | None:
    """The value node of ``key`` in a section's mapping (for pointing at a line), if written."""
    if entry is None or not isinstance(entry[1], MappingNode):
        return None
    return next((v for k, v in entry[1].value if isinstance(k, ScalarNode) and k.value == key), None)


def _lookup_digit(c: _Checker, entry: tuple[Node, Node] | None, digits: set[str]) -> tuple[str | None, bool]:
    """menu.lookup_digit: one digit 0-9 that no branch uses, or none (off); default 0 unless a
    branch has it. The misconduct digit is compared once both are known (see loads)."""
    if entry is None:
        return (None if "0" in digits else "0"), True
    v = c.text(entry[1], "menu.lookup_digit", nonempty=False)
    if v is None or v.lower() == "none":
        return None, True
    if not re.fullmatch(r"[0-9]", v):
        c.err(entry[1], "menu.lookup_digit", f"'{v}' is not a single digit 0–9 (or none)")
        return None, False
    if v in digits:
        c.err(entry[1], "menu.lookup_digit", f"digit {v} is already a branch")
        return None, False
    return v, True


def _complaints(c: _Checker, node: Node | None, digit_paths: dict[str, str]) -> Complaints | None:
    if node is None:
        return Complaints("9" if "9" not in digit_paths else None, 180, 6, dict(DEFAULT_DEADLINES))
    m = c.mapping(node, "complaints", {"misconduct_digit", "max_seconds", "silence_seconds", "deadlines"})
    ok = True
    digit: str | None = "9"
    if "misconduct_digit" in m:
        digit = c.text(m["misconduct_digit"][1], "complaints.misconduct_digit", nonempty=False)
        if digit is not None and digit.lower() == "none":
            digit = None
        elif digit is not None and not re.fullmatch(r"[0-9]", digit):
            c.err(m["misconduct_digit"][1], "complaints.misconduct_digit", f"{quote(digit)} is not a single digit 0–9")
            ok = False
        elif digit is not None and digit in digit_paths:
            c.err(m["misconduct_digit"][1], "complaints.misconduct_digit", f"digit {digit} is already a branch ({digit_paths[digit]})")
            ok = False
    max_s = c.number(m["max_seconds"][1], "complaints.max_seconds", 10, 900) if "max_seconds" in m else 180
    sil = c.number(m["silence_seconds"][1], "complaints.silence_seconds", 1, 60) if "silence_seconds" in m else 6
    deadlines = dict(DEFAULT_DEADLINES)
    if "deadlines" in m:
        dm = c.mapping(m["deadlines"][1], "complaints.deadlines", set(CATEGORIES))
        for cat, (_, vnode) in dm.items():
            n = c.number(vnode, f"complaints.deadlines.{cat}", 1, 365)
            if n is None:
                ok = False
            else:
                deadlines[cat] = int(n)
    if not ok or max_s is None or sil is None:
        return None
    return Complaints(digit, int(max_s), int(sil), deadlines)


def _limits(c: _Checker, node: Node | None) -> Limits | None:
    if node is None:
        return Limits()
    keys = {"caller_calls_per_minute": (0, 1000), "registration_failures": (0, 1000),
            "registration_window": (1, 86400), "block_seconds": (1, 86400 * 7)}
    m = c.mapping(node, "limits", set(keys))
    values = {}
    for key, (lo, hi) in keys.items():
        if key in m:
            n = c.number(m[key][1], f"limits.{key}", lo, hi)
            if n is None:
                return None
            values[key] = int(n)
    return Limits(**values)


def _queue(c: _Checker, node: Node, path: str, base: Queue) -> Queue | None:
    """``queue: {max_wait, announce_every, callback}``; keys left out keep ``base``'s value."""
    m = c.mapping(node, path, {"max_wait", "announce_every", "callback"})
    values: dict[str, Any] = {}
    if "max_wait" in m:
        values["max_wait"] = c.number(m["max_wait"][1], f"{path}.max_wait", 0, 3600)
    if "announce_every" in m:
        values["announce_every"] = c.number(m["announce_every"][1], f"{path}.announce_every", 10, 600)
    if "callback" in m:
        v = c.choice(m["callback"][1], f"{path}.callback", ("true", "false", "yes", "no"))
        values["callback"] = None if v is None else v in ("true", "yes")
    if any(v is None for v in values.values()):
        return None
    return Queue(int(values.get("max_wait", base.max_wait)), int(values.get("announce_every", base.announce_every)),
                 bool(values.get("callback", base.callback)))


def _callback(c: _Checker, node: Node) -> Callback | None:
    """``callback: {attempts, retry_after}``."""
    m = c.mapping(node, "callback", {"attempts", "retry_after"})
    values: dict[str, Any] = {}
    if "attempts" in m:
        values["attempts"] = c.number(m["attempts"][1], "callback.attempts", 1, 10)
    if "retry_after" in m:
        values["retry_after"] = c.number(m["retry_after"][1], "callback.retry_after", 30, 3600)
    if any(v is None for v in values.values()):
        return None
    return Callback(**{k: int(v) for k, v in values.items()})


def _survey(c: _Checker, node: Node | None) -> Survey | None:
    if node is None:
        return Survey(True, 5.0)
    m = c.mapping(node, "survey", {"enabled", "timeout"})
    enabled = True
    if "enabled" in m:
        v = c.choice(m["enabled"][1], "survey.enabled", ("true", "false", "yes", "no"))
        if v is None:
            return None
        enabled = v in ("true", "yes")
    t = c.number(m["timeout"][1], "survey.timeout", 1, 30, integer=False) if "timeout" in m else 5.0
    return Survey(enabled, float(t)) if t is not None else None


def _flag(c: _Checker, node: Node, path: str) -> bool | None:
    v = c.choice(node, path, ("true", "false", "yes", "no"))
    return None if v is None else v in ("true", "yes")


def _recording(c: _Checker, node: Node | None) -> Recording | None:
    if node is None:
        return Recording()
    m = c.mapping(node, "recording", {"enabled", "announce", "retention_days"})
    enabled = _flag(c, m["enabled"][1], "recording.enabled") if "enabled" in m else False
    announce = _flag(c, m["announce"][1], "recording.announce") if "announce" in m else True
    days = c.number(m["retention_days"][1], "recording.retention_days", 1, 3650) if "retention_days" in m else 365
    if enabled is None or announce is None or days is None:
        return None
    return Recording(enabled, announce, int(days))


def _no_answer_loops(c: _Checker, branches: list[Branch], no_answer_at: dict[str, tuple[Node, str]]) -> None:
    """Refuse branches whose ``no_answer`` send callers round in a circle (1 → 2 → 1): nobody
    answers anywhere, and the caller never reaches the complaint recording. The menu's fallback
    can only enter such a circle, so refusing the circle covers it too."""
    by_digit = {b.digit: b for b in branches}
    reported: set[frozenset[str]] = set()
    for b in branches:
        chain = [b.digit]
        cur = b
        while cur.no_answer.startswith("branch:"):
            nxt = cur.no_answer.split(":", 1)[1]
            if nxt in chain:
                circle = chain[chain.index(nxt):] + [nxt]
                if frozenset(circle) not in reported and b.digit == nxt:
                    reported.add(frozenset(circle))
                    node, path = no_answer_at[b.digit]
                    c.err(node, path, f"callers nobody answers would go round in a circle: {' → '.join(circle)}"
                          " (end the chain with complaint or hangup)")
                break
            if nxt not in by_digit:
                break
            chain.append(nxt)
            cur = by_digit[nxt]


def load(path: str | Path) -> Routing:
    """Load and validate a routing file; raise :class:`RoutingError` listing every problem."""
    path = Path(path)
    return loads(read_text(path), name=path.name)


def read_text(path: Path) -> str:
    """The routing file's text; RoutingError when it cannot be read, is not UTF-8 or is far too
    large for a routing file (``/dev/zero`` must not fill the memory)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise RoutingError([Problem(str(path), 0, "", f"cannot read: {e.strerror or e}")]) from None
    if len(data) > MAX_BYTES:
        raise RoutingError([Problem(str(path), 0, "", f"larger than {MAX_BYTES >> 20} MiB: not a routing file")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RoutingError([Problem(str(path), line, "", f"not UTF-8 text (byte 0x{data[e.start]:02x}): save the file as UTF-8")]) from None


def compose(text: str, name: str) -> Node | None:
    """PyYAML's node tree of ``text``; RoutingError (with the line) when it is not YAML."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, ESC, …)
        line = text[: e.position].count("\n") + 1
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise RoutingError([Problem(name, line, "", f"not valid YAML: character U+{char:04X} is not allowed")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        raise RoutingError([Problem(name, line, "", f"not valid YAML: {getattr(e, 'problem', e)}")]) from None
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise RoutingError([Problem(name, 0, "", "nested too deeply: not a routing file")]) from None


def loads(text: str, name: str = "routing.yaml") -> Routing:
    """Validate routing YAML given as text. ``name`` is used in error messages."""
    c = _Checker(name)
    root = compose(text, name)
    if root is None:
        raise RoutingError([Problem(name, 0, "", "the file is empty")])
    top = c.mapping(
        root,
        "",
        {"version", "hotline", "hours", "menu", "branches", "agencies", "extensions", "complaints", "survey", "limits",
         "recording", "queue", "callback"},
        {"version", "hotline", "branches", "agencies"},
    )
    if "version" in top:
        c.number(top["version"][1], "version", 1, 1)
    hotline = _hotline(c, top["hotline"][1]) if "hotline" in top else None
    hours = _hours(c, top["hours"][1] if "hours" in top else None)

    # Agencies first: branches and extensions refer to them.
    agencies: dict[str, Agency] = {}
    agency_nodes: dict[str, tuple[Node, str]] = {}
    stations: dict[str, Extension] = {}
    ext_nodes: dict[str, str] = {}  # number -> path of its first definition
    parents: list[tuple[str, str, Node, str]] = []
    if "agencies" in top:
        for i, an in enumerate(c.sequence(top["agencies"][1], "agencies")):
            p = f"agencies[{i}]"
            am = c.mapping(an, p, {"code", "name", "kind", "parent", "station"}, {"code", "name", "kind"})
            code = c.text(am["code"][1], f"{p}.code") if "code" in am else None
            if code is not None and not AGENCY_CODE_RE.match(code):
                c.err(am["code"][1], f"{p}.code", f"{quote(code)} is not a valid code (a letter, then letters, digits, '-' or '_')")
                code = None
            if code is not None and code in agencies:
                c.err(am["code"][1], f"{p}.code", f"duplicate agency code {quote(code)} (first at {agency_nodes[code][1]})")
                code = None
            aname = c.name(am["name"][1], f"{p}.name") if "name" in am else None
            kind = c.name(am["kind"][1], f"{p}.kind", tx.KIND_MAX) if "kind" in am else None
            parent = c.text(am["parent"][1], f"{p}.parent", nonempty=False) if "parent" in am else None
            station = None
            if "station" in am:
                station = c.text(am["station"][1], f"{p}.station")
                if station is not None and not EXTENSION_RE.match(station):
                    c.err(am["station"][1], f"{p}.station", f"{quote(station)} is not an extension number (2–6 digits)")
                    station = None
                elif station is not None and station in ext_nodes:
                    c.err(am["station"][1], f"{p}.station", f"duplicate extension number {quote(station)} (first at {ext_nodes[station]})")
                    station = None
            if code:
                # Kept even when its name or kind was refused (an error is already reported and
                # no Routing is returned): branches and extensions naming it add no noise.
                agencies[code] = Agency(code, aname or "", kind or "", parent or None, station)
                agency_nodes[code] = (an, p)
                if parent:
                    parents.append((code, parent, am["parent"][1], f"{p}.parent"))
                if station:
                    stations[station] = Extension(station, code, aname or "", "station")
                    ext_nodes[station] = f"{p}.station"
    for code, parent, pnode, ppath in parents:
        if parent not in agencies:
            c.err(pnode, ppath, f"unknown agency {quote(parent)}")
            continue
        seen = {code}
        cur: str | None = parent
        while cur:
            if cur in seen:
                c.err(pnode, ppath, f"agency {quote(code)} is its own ancestor (a cycle through {quote(parent)})")
                break
            seen.add(cur)
            cur = agencies[cur].parent if cur in agencies else None

    extensions: dict[str, Extension] = dict(stations)
    if "extensions" in top:
        for i, en in enumerate(c.sequence(top["extensions"][1], "extensions")):
            p = f"extensions[{i}]"
            em = c.mapping(en, p, {"number", "agency", "name"}, {"number", "agency"})
            number = c.text(em["number"][1], f"{p}.number") if "number" in em else None
            if number is not None and not EXTENSION_RE.match(number):
                c.err(em["number"][1], f"{p}.number", f"{quote(number)} is not an extension number (2–6 digits)")
                number = None
            if number is not None and number in ext_nodes:
                c.err(em["number"][1], f"{p}.number", f"duplicate extension number {quote(number)} (first at {ext_nodes[number]})")
                number = None
            agency = c.text(em["agency"][1], f"{p}.agency") if "agency" in em else None
            if agency is not None and agency not in agencies:
                c.err(em["agency"][1], f"{p}.agency", f"unknown agency {quote(agency)}")
                agency = None
            ename = c.name(em["name"][1], f"{p}.name") if "name" in em else None
            if number:
                ext_nodes[number] = f"{p}.number"
            if number and agency:
                extensions[number] = Extension(number, agency, ename or agencies[agency].name, "focal")
    if hotline and hotline.number in ext_nodes:
        c.err(top["hotline"][1], "hotline.number",
              f"the hotline number {hotline.number} is also an extension ({ext_nodes[hotline.number]})")

    # Branches.
    branches: list[Branch] = []
    digit_paths: dict[str, str] = {}
    branch_nodes: list[tuple[Node, str, dict]] = []
    if "branches" in top:
        seq = c.sequence(top["branches"][1], "branches")
        if isinstance(top["branches"][1], SequenceNode) and not seq:
            c.err(top["branches"][1], "branches", "at least one branch is needed")
        for i, bn in enumerate(seq):
            p = f"branches[{i}]"
            bm = c.mapping(
                bn, p,
                {"digit", "name", "agency", "targets", "strategy", "ring_timeout", "no_answer", "recording", "queue"},
                {"digit", "name", "agency", "targets"},
            )
            branch_nodes.append((bn, p, bm))
            if "digit" in bm:
                d = c.text(bm["digit"][1], f"{p}.digit")
                if d is not None and not re.fullmatch(r"[0-9]", d):
                    c.err(bm["digit"][1], f"{p}.digit", f"{quote(d)} is not a single digit 0–9")
                elif d is not None and d in digit_paths:
                    c.err(bm["digit"][1], f"{p}.digit", f"duplicate digit {d} (first at {digit_paths[d]})")
                elif d is not None:
                    digit_paths[d] = f"{p}.digit"
    digits = set(digit_paths)
    default_queue = _queue(c, top["queue"][1], "queue", Queue()) if "queue" in top else Queue()
    no_answer_at: dict[str, tuple[Node, str]] = {}
    for _bn, p, bm in branch_nodes:
        digit = c.text(bm["digit"][1], f"{p}.digit") if "digit" in bm else None
        bname = c.name(bm["name"][1], f"{p}.name") if "name" in bm else None
        agency = c.text(bm["agency"][1], f"{p}.agency") if "agency" in bm else None
        if agency is not None and agency not in agencies:
            c.err(bm["agency"][1], f"{p}.agency", f"unknown agency {quote(agency)}")
            agency = None
        targets: list[str] = []
        ok_targets = True
        if "targets" in bm:
            tnodes = c.sequence(bm["targets"][1], f"{p}.targets")
            if isinstance(bm["targets"][1], SequenceNode) and not tnodes:
                c.err(bm["targets"][1], f"{p}.targets", "at least one extension is needed")
                ok_targets = False
            for j, tn in enumerate(tnodes):
                t = c.text(tn, f"{p}.targets[{j}]")
                if t is None:
                    ok_targets = False
                elif t not in extensions:
                    c.err(tn, f"{p}.targets[{j}]", f"unknown extension {quote(t)}")
                    ok_targets = False
                elif t in targets:
                    c.err(tn, f"{p}.targets[{j}]", f"extension {quote(t)} is listed twice")
                    ok_targets = False
                else:
                    targets.append(t)
        strategy = c.choice(bm["strategy"][1], f"{p}.strategy", STRATEGIES) if "strategy" in bm else "ringall"
        ring = c.number(bm["ring_timeout"][1], f"{p}.ring_timeout", 5, 300) if "ring_timeout" in bm else 20
        no_answer = _target_ref(c, bm["no_answer"][1], f"{p}.no_answer", digits) if "no_answer" in bm else "complaint"
        if digit and no_answer == f"branch:{digit}":
            c.err(bm["no_answer"][1], f"{p}.no_answer", "a branch cannot fall back to itself")
            no_answer = None
        record = _flag(c, bm["recording"][1], f"{p}.recording") if "recording" in bm else True
        # Checked against the built-in defaults when the top-level queue is wrong: every problem is listed.
        queue = _queue(c, bm["queue"][1], f"{p}.queue", default_queue or Queue()) if "queue" in bm else default_queue
        if (digit and bname and agency and ok_targets and targets and strategy and ring and no_answer
                and record is not None and queue):
            branches.append(Branch(digit, bname, agency, tuple(targets), strategy, int(ring), no_answer, record, queue))
            if "no_answer" in bm:
                no_answer_at[digit] = (bm["no_answer"][1], f"{p}.no_answer")
    _no_answer_loops(c, branches, no_answer_at)
    menu = _menu(c, top["menu"][1] if "menu" in top else None, digits)
    complaints = _complaints(c, top["complaints"][1] if "complaints" in top else None, digit_paths)
    survey = _survey(c, top["survey"][1] if "survey" in top else None)
    limits = _limits(c, top["limits"][1] if "limits" in top else None)
    callback = _callback(c, top["callback"][1]) if "callback" in top else Callback()
    if menu and complaints and menu.lookup_digit and menu.lookup_digit == complaints.misconduct_digit:
        node = _value_of(top.get("menu"), "lookup_digit")
        if node is None:  # the default gives way, as the misconduct digit's does to a branch
            menu = replace(menu, lookup_digit=None)
        else:
            c.err(node, "menu.lookup_digit", f"digit {menu.lookup_digit} is already complaints.misconduct_digit")
    recording = _recording(c, top["recording"][1] if "recording" in top else None)

    if (c.problems or hotline is None or hours is None or menu is None or complaints is None or survey is None
            or limits is None or recording is None or callback is None):
        if not c.problems:  # pragma: no cover - every None above reports a problem
            c.err(None, "", "invalid configuration")
        raise RoutingError(sorted(c.problems, key=lambda p: p.line))
    return Routing(
        hotline=hotline,
        hours=hours,
        menu=menu,
        branches=tuple(sorted(branches, key=lambda b: b.digit)),
        agencies=agencies,
        extensions=dict(sorted(extensions.items())),
        complaints=complaints,
        survey=survey,
        limits=limits,
        recording=recording,
        callback=callback,
        source=name,
        warnings=tuple(c.warnings),
    )


def unsafe_texts(r: Routing) -> list[str]:
    """Every text of a Routing that breaks the rules :func:`loads` enforces on the way in.

    Empty for anything :func:`loads` returned; the renderer asks again before writing (defence
    in depth: a Routing can also be built or altered in code, which skips the file's checks).
    """
    out: list[str] = []

    def want(ok: bool, where: str, value: Any, why: str) -> None:
        if not ok:
            out.append(f"{where}: {quote(value)} {why}")

    def name(where: str, value: Any, max_len: int = tx.NAME_MAX) -> None:
        p = tx.check_line(value, max_len=max_len) if isinstance(value, str) else "is not text"
        if p is not None:
            out.append(f"{where}: {quote(value)} {p}")

    def fits(regex: re.Pattern, value: Any) -> bool:
        return isinstance(value, str) and regex.fullmatch(value) is not None

    want(fits(EXTENSION_RE, r.hotline.number), "hotline.number", r.hotline.number, "is not a dialable number")
    want(r.hotline.language in LANGUAGES, "hotline.language", r.hotline.language, f"is not one of: {', '.join(LANGUAGES)}")
    for key, a in r.agencies.items():
        where = f"agencies[{quote(key)}]"
        want(fits(AGENCY_CODE_RE, a.code) and a.code == key, f"{where}.code", a.code, "is not a valid agency code")
        name(f"{where}.name", a.name)
        name(f"{where}.kind", a.kind, tx.KIND_MAX)
        want(a.parent is None or fits(AGENCY_CODE_RE, a.parent), f"{where}.parent", a.parent, "is not a valid agency code")
        want(a.station is None or fits(EXTENSION_RE, a.station), f"{where}.station", a.station, "is not an extension number")
    for key, e in r.extensions.items():
        where = f"extensions[{quote(key)}]"
        want(fits(EXTENSION_RE, e.number) and e.number == key, f"{where}.number", e.number, "is not an extension number")
        want(fits(AGENCY_CODE_RE, e.agency), f"{where}.agency", e.agency, "is not a valid agency code")
        want(e.role in ("station", "focal"), f"{where}.role", e.role, "is not station or focal")
        name(f"{where}.name", e.name)
    for i, b in enumerate(r.branches):
        where = f"branches[{i}]"
        want(isinstance(b.digit, str) and re.fullmatch(r"[0-9]", b.digit) is not None, f"{where}.digit", b.digit, "is not a digit")
        name(f"{where}.name", b.name)
        for t in b.targets:
            want(fits(EXTENSION_RE, t), f"{where}.targets", t, "is not an extension number")
    return out


def summary(r: Routing) -> str:
    """A one-screen, Vietnamese summary for operators."""
    kinds: dict[str, int] = {}
    for a in r.agencies.values():
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    stations = sum(1 for e in r.extensions.values() if e.role == "station")
    lines = [
        f"Số tổng đài: {r.hotline.number}  (ngôn ngữ {r.hotline.language}, múi giờ {r.hotline.timezone})",
        "Giờ làm việc: "
        + ", ".join(DAY_NAMES[d - 1] for d in r.hours.days)
        + " "
        + ", ".join(str(i) for i in r.hours.open)
        + (f"; nghỉ lễ theo lịch {r.hours.public_holidays}" if r.hours.public_holidays else "")
        + f"; {len(r.hours.closed_days)} ngày nghỉ thêm, {len(r.hours.working_days)} ngày làm bù",
        f"Menu: chờ phím {r.menu.first_digit_timeout:g} giây, tối đa {r.menu.max_tries} lần, sau đó: {r.menu.fallback}"
        + (f"; phím {r.menu.lookup_digit} tra cứu kết quả phản ánh" if r.menu.lookup_digit else ""),
        f"Phản ánh: ghi âm tối đa {r.complaints.max_seconds} giây"
        + (f", phím {r.complaints.misconduct_digit} báo hành vi sách nhiễu" if r.complaints.misconduct_digit else "")
        + "; hạn trả lời (ngày làm việc): " + ", ".join(f"{k} {v}" for k, v in r.complaints.deadlines.items())
        + ("; khảo sát sau cuộc gọi: có" if r.survey.enabled else "; khảo sát sau cuộc gọi: không"),
        _recording_vi(r),
        "Các nhánh:",
    ]
    for b in r.branches:
        lines.append(
            f"  {b.digit}  {b.name} — {r.agencies[b.agency].name}: {', '.join(b.targets)}"
            f" ({b.strategy}, đổ chuông {b.ring_timeout} giây, không ai nghe: {b.no_answer}"
            + (", không ghi âm" if r.recording.enabled and not b.recording else "") + ")"
        )
    lines.append(
        f"Cơ quan, đơn vị: {len(r.agencies)} ("
        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        + f"); máy lẻ: {len(r.extensions)} ({stations} máy trạm, {len(r.extensions) - stations} đầu mối nhánh)"
    )
    return "\n".join(lines)


def _recording_vi(r: Routing) -> str:
    rec = r.recording
    if not rec.enabled:
        return "Ghi âm cuộc gọi: không"
    return (f"Ghi âm cuộc gọi: có ({'có' if rec.announce else 'KHÔNG'} thông báo cho người gọi; "
            f"lưu {rec.retention_days} ngày)")
