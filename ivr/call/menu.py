"""The 8-branch menu: which branch does the caller want?

"No input" and "wrong input" are counted separately, each with its own prompt; when either
reaches ``menu.max_tries`` the configured fallback applies. Those prompts lead straight back
into the menu and can be interrupted like it: a digit pressed during them counts. ``*`` repeats
the menu (a bounded number of times, so a stuck key cannot hold a line forever). The look-up
digit (``menu.lookup_digit``, 0) is announced after the menu and leads to :mod:`ivr.call.lookup`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.call import prompt
from ivr.call.errors import CallerHangup
from ivr.vocab import MenuAction

if TYPE_CHECKING:
    from ivr.call.session import CallSession

MAX_REPEATS = 10


async def run(session: CallSession, first_digit: str | None = None) -> MenuAction:
    """Return the action: a branch, ``misconduct`` (the misconduct digit), ``lookup`` (the
    look-up digit), or the menu's fallback (``complaint``, ``hangup``, ``branch:N``)."""
    m = session.routing.menu
    no_input = invalid = repeats = 0
    digit = first_digit
    lead: list[str] = []  # what to say before the menu: the no-input or invalid prompt
    while True:
        if digit is None:
            menu = ["menu"] + (["menu_lookup", f"digits:{m.lookup_digit}"] if m.lookup_digit else [])
            r = await prompt.play(session, lead + menu, max_digits=1, first_timeout=m.first_digit_timeout)
            if r.status == "hangup":
                raise CallerHangup()
            digit = r.digits if r.status == "digits" else None
        lead = []
        if digit is None:
            no_input += 1
            session.rec.event("menu_no_input", count=no_input)
            if no_input >= m.max_tries:
                session.rec.event("menu_fallback", reason="no_input", action=m.fallback)
                return MenuAction.parse(m.fallback)
            lead = ["no_input"]
        elif digit == session.routing.complaints.misconduct_digit:
            session.rec.event("menu_choice", digit=digit, misconduct=True)
            return MenuAction("misconduct")
        elif digit == m.lookup_digit:
            session.rec.event("menu_choice", digit=digit, lookup=True)
            return MenuAction("lookup")
        elif digit == "*" and repeats < MAX_REPEATS:
            repeats += 1
            session.rec.event("menu_repeat", count=repeats)
        elif session.routing.branch(digit) is not None:
            session.rec.event("menu_choice", digit=digit)
            return MenuAction("branch", digit)
        else:
            invalid += 1
            session.rec.event("menu_invalid", digit=digit, count=invalid)
            if invalid >= m.max_tries:
                session.rec.event("menu_fallback", reason="invalid", action=m.fallback)
                return MenuAction.parse(m.fallback)
            lead = ["invalid"]
        digit = None
