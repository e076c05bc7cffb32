"""What a one-line text given by an operator may contain (names, actors).

One rule, used by routing.yaml's validation, the agencies CSV import, the renderer's last check
and the cases service, so that they all refuse the same things (docs/config-safety.md):

- no control, format, separator, private-use or unassigned character: every kind of line break
  (LF, CR, VT, FF, NEL, U+2028, U+2029), NUL, ESC, BEL, zero-width and bidi controls;
- in names that reach Asterisk's configuration, none of the characters its syntax gives meaning
  to inside a value (``CONF_SYNTAX``);
- a sane length.

Problems come back as :class:`TextProblem`, told in English (routing errors, logs) or Vietnamese
(staff).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Unicode categories refused: controls (Cc: line feed, CR, NUL, ESC, BEL, NEL, …), format (Cf:
# zero-width and bidi controls), line and paragraph separators, surrogates, private use,
# unassigned.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")

# Characters with a meaning inside a value of an Asterisk .conf file, why (English, Vietnamese).
CONF_SYNTAX = {
    ";": ("starts a comment in Asterisk's config files", "Asterisk coi là bắt đầu ghi chú"),
    "\\": ("is the escape character of Asterisk's config files", "là ký tự thoát trong cấu hình Asterisk"),
    '"': ("ends the quoted caller ID name", "kết thúc tên hiển thị trong dấu ngoặc kép"),
    "<": ("starts the caller ID number", "mở số hiển thị của máy gọi"),
    ">": ("ends the caller ID number", "đóng số hiển thị của máy gọi"),
}

NAME_MAX = 120  # agency, extension and branch names (the longest real one has 51 characters)
KIND_MAX = 40
ACTOR_MAX = 64  # case_events.actor is a String(64)


@dataclass(frozen=True)
class TextProblem:
    kind: str  # "empty", "too_long", "line_break", "control", "syntax"
    char: str = ""
    limit: int = 0

    def _code(self) -> str:
        return f"U+{ord(self.char):04X}"

    def en(self) -> str:
        if self.kind == "empty":
            return "must not be empty"
        if self.kind == "too_long":
            return f"is longer than {self.limit} characters"
        if self.kind == "line_break":
            return f"contains a line break ({self._code()}); a name is one line"
        if self.kind == "control":
            return f"contains an invisible control character ({self._code()})"
        return f"contains '{self.char}', which {CONF_SYNTAX[self.char][0]}"

    def vi(self) -> str:
        if self.kind == "empty":
            return "không được để trống"
        if self.kind == "too_long":
            return f"dài quá {self.limit} ký tự"
        if self.kind == "line_break":
            return f"có ký tự xuống dòng ({self._code()}): chỉ được một dòng"
        if self.kind == "control":
            return f"có ký tự điều khiển không in được ({self._code()})"
        return f"có ký tự '{self.char}' ({CONF_SYNTAX[self.char][1]})"

    def __str__(self) -> str:
        return self.en()


def bad_char(text: str) -> str | None:
    """The first character no one-line text may hold, or None."""
    for ch in text:
        if ch in LINE_BREAKS or unicodedata.category(ch) in REFUSED_CATEGORIES:
            return ch
    return None


def check_line(text: str, *, max_len: int, conf: bool = True) -> TextProblem | None:
    """Why ``text`` (already stripped) cannot be a one-line name, or None.

    ``conf``: the text reaches an Asterisk config file, so its syntax characters are refused too.
    """
    if not text:
        return TextProblem("empty")
    ch = bad_char(text)
    if ch is not None:
        return TextProblem("line_break" if ch in LINE_BREAKS else "control", ch)
    if conf:
        for ch in text:
            if ch in CONF_SYNTAX:
                return TextProblem("syntax", ch)
    if len(text) > max_len:
        return TextProblem("too_long", limit=max_len)
    return None


def check_actor(actor: object) -> tuple[str, str | None]:
    """Who acted (``--by``, a console user): the name trimmed, and why it cannot be one
    (Vietnamese, for staff) or None. One line without control characters, at most ACTOR_MAX
    characters: a line break could forge a line of a record's history."""
    name = actor.strip() if isinstance(actor, str) else ""
    problem = check_line(name, max_len=ACTOR_MAX, conf=False)
    return name, (f"tên người thực hiện (--by) {problem.vi()}" if problem is not None else None)
