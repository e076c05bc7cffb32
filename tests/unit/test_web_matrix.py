"""The role × route matrix, every cell, at the HTTP level (both backends).

The expected table is written out here by hand, not read from ivr.web.access: the server's
matrix and the README's must both agree with it (see also test_readme_matrix_matches)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from ivr.models import AuditEntry, CaseEvent
from ivr.web import access

from .console_kit import STAFF, close_kit, make_kit

ROLES = ["supervisor", "officer", "inspector", "operator", "youth"]
LOGIN = {"supervisor": "snv", "officer": "stp", "inspector": "ktra", "operator": "vanhanh", "youth": "doan"}

# page -> role -> HTTP status of a GET (200: shown; 403: not for this role)
PAGES = {
    "/cases": {"supervisor": 200, "officer": 200, "inspector": 200, "operator": 403, "youth": 403},
    "/cases/{own}": {"supervisor": 200, "officer": 200, "inspector": 200, "operator": 403, "youth": 403},
    "/cases/{own}/recording": {"supervisor": 200, "officer": 200, "inspector": 200, "operator": 403, "youth": 403},
    "/live": {"supervisor": 200, "officer": 403, "inspector": 403, "operator": 200, "youth": 403},
    "/phones": {"supervisor": 200, "officer": 403, "inspector": 403, "operator": 200, "youth": 403},
    "/reports": {"supervisor": 200, "officer": 403, "inspector": 403, "operator": 403, "youth": 403},
    "/audit": {"supervisor": 200, "officer": 403, "inspector": 403, "operator": 403, "youth": 403},
    "/youth": {"supervisor": 200, "officer": 403, "inspector": 403, "operator": 403, "youth": 200},
}
# case action -> roles that may take it (on a case they can see)
ACTIONS = {
    "classify": {"supervisor"}, "assign": {"supervisor"}, "close": {"supervisor"}, "reopen": {"supervisor"},
    "flag-inspection": {"supervisor"}, "reveal": {"supervisor"},
    "start": {"officer"}, "answer": {"officer"},
    "note": {"supervisor", "officer", "inspector"},
}
FORMS = {
    "classify": {"category": "procedure"}, "assign": {"agency": "STP"}, "close": {"reason": "invalid"},
    "reopen": {"note": "mở lại"}, "flag-inspection": {"reason": "kiểm tra"}, "reveal": {},
    "start": {}, "answer": {"text": "Đã trả lời"}, "note": {"text": "ghi chú"},
}


@pytest.fixture
async def kit(db_settings):
    k = await make_kit(db_settings)

    cases = {}
    # Owned by STP (branch 3), with a recording.
    cases["stp"] = await k.with_recording("stp")
    # Owned by HHDN (branch 2), assigned to STP.
    x = await k.with_recording("hhdn", branch_digit="2", branch_name="Doanh nghiệp", agency_code="HHDN",
                               agency_name="HHDN")
    await k.cases.act(x.code, "classify", actor="snv", category="procedure")
    await k.cases.act(x.code, "assign", actor="snv", agencies=["STP"])
    cases["hhdn_to_stp"] = x
    # A commune's (Phường I, under Thành phố Vị Thanh): assigned to it, owned by VPUBND.
    y = await k.with_recording("commune", branch_digit="4", branch_name="Khác", agency_code="VPUBND",
                               agency_name="VP UBND")
    await k.cases.act(y.code, "classify", actor="snv", category="question")
    await k.cases.act(y.code, "assign", actor="snv", agencies=["DV31318"])
    cases["commune"] = y
    # An anonymous misconduct report (key 9): no agency, flagged for the inspection team.
    cases["misconduct"] = await k.with_recording("misconduct", branch_digit=None, branch_name=None, agency_code=None,
                                                 agency_name=None, category="misconduct", anonymous=True,
                                                 caller="0912000111", inspection_reason="phím 9")
    k.matrix_cases = cases
    yield k
    await close_kit(k)


# login -> the cases it may see
VISIBLE = {
    "snv": {"stp", "hhdn_to_stp", "commune", "misconduct"},
    "stp": {"stp", "hhdn_to_stp"},
    "hhdn": {"hhdn_to_stp"},
    "vithanh": {"commune"},  # a district's focal point follows its communes
    "phuong1": {"commune"},
    "ktra": {"misconduct"},
    "vanhanh": set(),
    "doan": set(),
}
OWN_CASE = {"supervisor": "stp", "officer": "stp", "inspector": "misconduct", "operator": "stp", "youth": "stp"}
NO_CASES = ("operator", "youth")


async def test_every_page_for_every_role(kit):
    for role in ROLES:
        b = await kit.signed_in(LOGIN[role])
        own = kit.matrix_cases[OWN_CASE[role]].code
        for page, expected in PAGES.items():
            r = await b.get(page.format(own=own))
            assert r.status == expected[role], (role, page, r.status)
    anon = await kit.browser()
    for page in PAGES:
        r = await anon.get(page.format(own=kit.matrix_cases["stp"].code))
        assert r.status == 303 and r.headers["Location"].startswith("/login?next="), page


async def test_who_sees_which_case_in_the_list_the_page_and_the_recording(kit):
    all_codes = {k: c.code for k, c in kit.matrix_cases.items()}
    for login, visible in VISIBLE.items():
        b = await kit.signed_in(login)
        r = await b.get("/cases")
        if STAFF[login][0] in NO_CASES:
            assert r.status == 403
        else:
            listed = set(re.findall(r'data-code="(\d+)"', await r.text()))
            assert listed == {all_codes[k] for k in visible}, login
        for key, code in all_codes.items():
            for path in (f"/cases/{code}", f"/cases/{code}/recording"):
                r = await b.get(path)
                if STAFF[login][0] in NO_CASES:
                    assert r.status == 403, (login, path)
                elif key in visible:
                    assert r.status == 200, (login, path)
                else:  # exactly like a code that does not exist
                    assert r.status == 404, (login, path)
                    assert "Không có phản ánh này" in await r.text()


async def test_guessing_codes_tells_nothing(kit):
    b = await kit.signed_in("hhdn")
    other = kit.matrix_cases["stp"].code
    bodies = set()
    for code in (other, "100000", "999999", "12", "abc", "0" * 40, "%27%20OR%201=1"):
        r = await b.get(f"/cases/{code}")
        assert r.status == 404, code
        bodies.add(re.sub(r'value="[^"]+"', "", await r.text()))
        assert (await b.get(f"/cases/{code}/recording")).status == 404
    assert len(bodies) == 1


async def count_changes(kit) -> tuple[int, int]:
    async with kit.console.engine.connect() as conn:
        events = (await conn.execute(select(func.count()).select_from(CaseEvent))).scalar_one()
        audit = (await conn.execute(select(func.count()).select_from(AuditEntry)
                                    .where(AuditEntry.action.not_in(("login", "logout", "play_recording"))))).scalar_one()
    return events, audit


async def test_every_action_for_every_role(kit):
    for action, allowed in ACTIONS.items():
        for role in ROLES:
            b = await kit.signed_in(LOGIN[role])
            code = kit.matrix_cases[OWN_CASE[role]].code
            await b.get({"operator": "/live", "youth": "/youth"}.get(role, "/cases"))  # a page with a CSRF field
            before = await count_changes(kit)
            r = await b.post(f"/cases/{code}/{action}", FORMS[action])
            if role in allowed:
                # Taken (303; 200 for a reveal), or refused by the lifecycle with the reason (409).
                assert r.status in (200, 303, 409), (action, role, r.status, await r.text())
                if r.status == 409:
                    assert 'id="error"' in await r.text()
                    assert await count_changes(kit) == before
            else:
                assert r.status == 403, (action, role, r.status)
                assert await count_changes(kit) == before, (action, role)


async def test_actions_on_a_case_outside_the_scope_are_404_and_change_nothing(kit):
    b = await kit.signed_in("hhdn")
    await b.get("/cases")
    code = kit.matrix_cases["stp"].code
    before = await count_changes(kit)
    for action in ("note", "start", "answer"):
        r = await b.post(f"/cases/{code}/{action}", FORMS[action])
        assert r.status == 404, action
    assert await count_changes(kit) == before
    r = await b.post(f"/cases/{code}/no-such-action", {})
    assert r.status == 404


PAGE_NAMES = {"/cases": "cases", "/cases/{own}": "case", "/cases/{own}/recording": "recording", "/live": "live",
              "/phones": "phones", "/reports": "reports", "/audit": "audit", "/youth": "youth"}


def test_the_servers_matrix_is_the_tests():
    expected = {PAGE_NAMES[p]: {r for r, status in cells.items() if status == 200} for p, cells in PAGES.items()}
    assert {p: set(roles) for p, roles in access.PAGES.items()} == expected
    assert {a: set(roles) for a, roles in access.CASE_ACTIONS.items()} == ACTIONS


def test_readme_matrix_matches():
    """The operator's table in the README says what the server enforces, cell by cell."""
    from tests.paths import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("**The role matrix**"):]
    rows = [ln for ln in table.split("\n\n", 2)[1].splitlines() if ln.startswith("| ") and "---" not in ln]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[1:] == ["officer", "supervisor", "inspector", "operator", "youth"]
    pages = {"`/cases` inbox": "cases", "`/cases/<code>` ": "case", "`/cases/<code>/recording`": "recording",
             "`/live`": "live", "`/phones`": "phones", "`/reports`": "reports", "`/audit`": "audit",
             "`/youth`": "youth"}
    seen_pages: dict[str, set[str]] = {}
    seen_actions: dict[str, set[str]] = {}
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        allowed = {role for role, cell in zip(header[1:], cells[1:]) if cell.startswith("✓")}
        assert all(c.startswith("✓") or c == "—" for c in cells[1:]), row
        page = next((name for key, name in pages.items() if cells[0].startswith(key)), None)
        if page:
            seen_pages[page] = allowed
        elif cells[0].startswith("reveal"):
            seen_actions["reveal"] = allowed
        else:
            for action in re.findall(r"`([a-z-]+)`", cells[0]):
                seen_actions[action] = allowed
    assert seen_pages == {p: set(r) for p, r in access.PAGES.items()}
    assert seen_actions == {a: set(r) for a, r in access.CASE_ACTIONS.items()}
