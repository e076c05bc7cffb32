"""Who may see and do what: the role × route matrix, and which cases a person sees.

The matrix is data (``PAGES``, ``CASE_ACTIONS``) so that the README's table and the tests read
the same thing the server enforces. A role outside a page's set gets 403; a case outside the
person's scope is 404, exactly like a code that does not exist (guessing codes tells nothing).

Scope (:func:`case_scope`):

- supervisor: every case;
- officer: cases owned by (the branch's agency at receipt) or assigned to their agency or any
  unit under it in routing.yaml (a district's focal point follows its communes' cases);
- inspector: cases flagged for the inspection team (misconduct reports first);
- operator: none (the live board and the desk phones only);
- youth: none. Their pages are the volunteers' (:func:`youth_desks`): a coordinator with an
  agency sees that desk and the desks under it (a district's coordinator: the district's desk
  and its communes'); without one, every desk (the provincial Youth Union).
"""

from __future__ import annotations

from ivr.config.routing import Routing
from ivr.records import volunteers as vm
from ivr.records.cases import CaseFilter

from .accounts import Account

CASE_ROLES = frozenset({"officer", "supervisor", "inspector"})

# page -> roles that may open it
PAGES: dict[str, frozenset[str]] = {
    "cases": CASE_ROLES,  # the inbox
    "case": CASE_ROLES,  # one case: timeline, recording player, Zalo messages
    "recording": CASE_ROLES,  # the audio itself
    "live": frozenset({"supervisor", "operator"}),
    "phones": frozenset({"supervisor", "operator"}),
    "reports": frozenset({"supervisor"}),  # monthly report, exports (they hold callers' numbers)
    "audit": frozenset({"supervisor"}),
    # the volunteers' roster, check-in/out, assists: no case, no caller, no recording
    "youth": frozenset({"supervisor", "youth"}),
}

# case action (URL form) -> roles that may take it, on a case in their scope
CASE_ACTIONS: dict[str, frozenset[str]] = {
    "classify": frozenset({"supervisor"}),
    "assign": frozenset({"supervisor"}),
    "start": frozenset({"officer"}),
    "answer": frozenset({"officer"}),
    "close": frozenset({"supervisor"}),
    "reopen": frozenset({"supervisor"}),
    "flag-inspection": frozenset({"supervisor"}),
    "note": frozenset({"officer", "supervisor", "inspector"}),
    "reveal": frozenset({"supervisor"}),  # an anonymous caller's number, recorded in the audit trail
}


def may(account: Account, page: str) -> bool:
    return account.role in PAGES[page]


def may_act(account: Account, action: str) -> bool:
    return account.role in CASE_ACTIONS.get(action, frozenset())


def home(account: Account) -> str:
    if account.role == "youth":
        return "/youth"
    return "/cases" if account.role in CASE_ROLES else "/live"


def agency_and_units(routing: Routing, code: str) -> frozenset[str]:
    """``code`` and every agency under it (children, their children, …)."""
    out = {code}
    for a in routing.agencies.values():
        cur, seen = a.parent, set()
        while cur and cur not in seen:
            if cur == code:
                out.add(a.code)
                break
            seen.add(cur)
            cur = routing.agencies[cur].parent if cur in routing.agencies else None
    return frozenset(out)


def case_scope(account: Account, routing: Routing) -> CaseFilter | None:
    """The cases this person may see, as a filter; None: no case at all."""
    if account.role == "supervisor":
        return CaseFilter()
    if account.role == "officer" and account.agency_code:
        return CaseFilter(agencies=agency_and_units(routing, account.agency_code))
    if account.role == "inspector":
        return CaseFilter(inspection=True, misconduct_first=True)
    return None


def youth_desks(account: Account, routing: Routing) -> tuple[str, ...]:
    """The one-stop desks whose volunteers this person may see and log for, routing.yaml's order."""
    every = vm.desks(routing)
    if account.role == "youth" and account.agency_code:
        under = set(vm.desks_under(routing, account.agency_code))
        return tuple(c for c in every if c in under)
    return tuple(every) if may(account, "youth") else ()


def shows_anonymous_number(account: Account) -> bool:
    """Whether the person may reveal an anonymous caller's number (never without a click that
    is recorded)."""
    return may_act(account, "reveal")
