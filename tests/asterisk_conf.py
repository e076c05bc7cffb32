"""A strict reader of Asterisk's .conf format, for tests: what Asterisk would see, or an error.

It follows main/config.c (config_text_file_load, process_text_line) where Asterisk is lenient
and refuses what a rendered file should never contain:

- lines are what ``fgets`` gives: split at LF only, at most 8190 bytes (a longer line would be
  cut in two by Asterisk's 8 KiB buffer: refused);
- no control character but the tab, and no other line breaks (CR, VT, FF, NEL, U+2028, U+2029)
  anywhere: Asterisk would keep them in a value, other tools would start a line there;
- comments as Asterisk strips them: ``;`` to the end of the line, ``\\;`` a literal semicolon,
  ``;--`` … ``--;`` a block comment (nesting counted; an unbalanced end is refused, where
  Asterisk would go on treating every later line as a comment);
- ``[name]``, ``[name](options)``; ``key = value`` or ``key => value`` inside a section only,
  keys made of letters, digits, ``_``, ``.`` and ``-``; ``#include``, ``#tryinclude``, ``#exec``
  directives. Anything else is an error, as is a block comment left open at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LINE_BYTES = 8190
MAX_NESTED_COMMENTS = 128
_SPACE = " \t\n\v\f\r"  # C isspace(), what ast_strip strips
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_SECTION = re.compile(r"\[([^\[\]]+)\](?:\(([^()]*)\))?")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_DIRECTIVE = re.compile(r"#(include|tryinclude|exec)[ \t]+(\S.*)")


class ConfError(ValueError):
    pass


@dataclass
class Section:
    name: str
    options: str | None
    line: int
    items: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> list[str]:
        return [v for k, v in self.items if k == key]


@dataclass
class Conf:
    sections: list[Section]
    directives: list[tuple[str, str]]

    def shape(self) -> tuple:
        """The structure: directives, then each section's name, options and keys, in order."""
        return (tuple(d for d, _ in self.directives),
                tuple((s.name, s.options, tuple(k for k, _ in s.items)) for s in self.sections))

    def section(self, name: str, options: str | None = None) -> Section:
        found = [s for s in self.sections if s.name == name and (options is None or s.options == options)]
        assert len(found) == 1, f"[{name}]({options}): {len(found)} sections"
        return found[0]


def _strip_comments(line: str, depth: int, lineno: int) -> tuple[str | None, int]:
    """config.c's comment loop on one line: the text left to process (None: all comment)."""
    buf = list(line) + ["\0"] * 4  # C strings: reading past the end finds NULs
    new = 0
    process: int | None = None if depth else 0
    while True:
        end = buf.index("\0", new)
        try:
            p = buf.index(";", new, end)
        except ValueError:
            break
        if p > new and buf[p - 1] == "\\":  # escaped: a literal ';'
            del buf[p - 1]
            new = p
        elif buf[p + 1] == "-" and buf[p + 2] == "-" and buf[p + 3] != "-":  # ";--" opens
            if depth >= MAX_NESTED_COMMENTS:
                raise ConfError(f"line {lineno}: block comments nested too deep")
            buf[p] = "\0"
            new = p + 3
            depth += 1
        elif p >= new + 2 and buf[p - 1] == "-" and buf[p - 2] == "-":  # "--;" closes
            depth -= 1
            if depth < 0:
                raise ConfError(f"line {lineno}: '--;' closes no block comment")
            new = p + 1
            if depth == 0:
                if process is not None:
                    old = buf.index("\0", process)
                    rest_end = buf.index("\0", new)
                    buf[old:rest_end + 1] = buf[new:rest_end + 1]
                    new = old
                else:
                    process = new
        elif depth == 0:  # a line comment: the rest of the line goes
            buf[p] = "\0"
            new = p
        else:
            new = p + 1
    if process is None:
        return None, depth
    return "".join(buf[process:buf.index("\0", process)]).strip(_SPACE), depth


def parse(text: str) -> Conf:
    sections: list[Section] = []
    directives: list[tuple[str, str]] = []
    depth = 0
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, raw in enumerate(lines, 1):
        if len(raw.encode("utf-8")) > MAX_LINE_BYTES:
            raise ConfError(f"line {lineno}: {len(raw.encode())} bytes, Asterisk would split it")
        bad = _FORBIDDEN.search(raw)
        if bad:
            raise ConfError(f"line {lineno}: character U+{ord(bad.group()):04X}")
        body, depth = _strip_comments(raw, depth, lineno)
        if not body:
            continue
        if body.startswith("["):
            m = _SECTION.fullmatch(body)
            if not m:
                raise ConfError(f"line {lineno}: bad section header {body!r}")
            sections.append(Section(m.group(1), m.group(2), lineno))
        elif body.startswith("#"):
            m = _DIRECTIVE.fullmatch(body)
            if not m:
                raise ConfError(f"line {lineno}: unknown directive {body!r}")
            directives.append((m.group(1), m.group(2)))
        else:
            if "=" not in body:
                raise ConfError(f"line {lineno}: no '=' in {body!r}")
            if not sections:
                raise ConfError(f"line {lineno}: a setting before any section")
            key, _, value = body.partition("=")
            key = key.strip(_SPACE)
            if value.startswith(">"):
                value = value[1:]
            if not _KEY.fullmatch(key):
                raise ConfError(f"line {lineno}: bad key {key!r}")
            sections[-1].items.append((key, value.strip(_SPACE)))
    if depth:
        raise ConfError(f"a block comment is never closed (depth {depth} at the end)")
    return Conf(sections, directives)
