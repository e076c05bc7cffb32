"""The console's security list, item by item, at the HTTP level (aiohttp server, both backends):
sign-in and sign-out, CSRF, lockout, session fixation, idle timeout, cookies, headers."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from ivr.models import AuditEntry, CaseEvent, LoginAttempt, WebSession
from ivr.web import auth
from ivr.web.app import PRE_COOKIE, SESSION_COOKIE
from ivr.web.config import WebSettings

from .console_kit import PASSWORD, close_kit, make_kit

STAFF = {"snv": ("supervisor", "SNV"), "stp": ("officer", "STP")}


@pytest.fixture
async def kit(db_settings):
    k = await make_kit(db_settings, staff=STAFF)
    yield k
    await close_kit(k)


async def count(kit, model, *where) -> int:
    async with kit.console.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def column(kit, stmt) -> list:
    async with kit.console.engine.connect() as conn:
        return list((await conn.execute(stmt)).scalars())


# ---------------------------------------------------------------- sign-in, sign-out


async def test_sign_in_and_out(kit):
    b = await kit.browser()
    r = await b.get("/cases")
    assert r.status == 303 and r.headers["Location"] == "/login?next=/cases"
    r = await b.login("STP", PASSWORD, )
    assert r.status == 303 and r.headers["Location"] == "/cases"
    r = await b.get("/cases")
    assert r.status == 200 and "Cán bộ stp" in await r.text()
    r = await b.post("/logout")
    assert r.status == 303 and r.headers["Location"] == "/login"
    assert (await b.get("/cases")).status == 303
    assert await count(kit, WebSession) == 0
    assert await column(kit, select(AuditEntry.action).order_by(AuditEntry.id)) == ["login", "logout"]


async def test_next_is_followed_only_within_the_site(kit):
    for nxt, where in (("/cases?status=assigned", "/cases?status=assigned"), ("//evil.example/x", "/cases"),
                       ("https://evil.example/", "/cases"), ("/\\evil.example", "/cases")):
        b = await kit.browser()
        await b.get("/login")
        r = await b.post("/login", {"username": "stp", "password": PASSWORD, "next": nxt})
        assert r.status == 303 and r.headers["Location"] == where, nxt


# ---------------------------------------------------------------- CSRF


async def test_every_post_without_a_valid_csrf_is_refused_and_changes_nothing(kit):
    case = await kit.new_case()
    sup = await kit.signed_in("snv")
    await sup.get(f"/cases/{case.code}")
    good = sup.csrf
    other = await kit.signed_in("stp")
    await other.get("/cases")
    forms = [
        ("/cases/{c}/classify", {"category": "procedure"}), ("/cases/{c}/assign", {"agency": "STP"}),
        ("/cases/{c}/close", {"reason": "invalid"}), ("/cases/{c}/flag-inspection", {"reason": "x"}),
        ("/cases/{c}/note", {"text": "x"}), ("/cases/{c}/reveal", {}), ("/logout", {}),
    ]
    for path, data in forms:
        path = path.format(c=case.code)
        for bad in (False, "", "not-a-token", other.csrf, good[:-1] + ("A" if good[-1] != "A" else "B")):
            r = await sup.post(path, data, csrf=bad)
            assert r.status == 403, (path, bad, r.status)
            assert "CSRF" in await r.text()
    # Nothing happened: the case is as created, the session is still open, nothing audited.
    fresh = await kit.cases.get(case.code)
    assert fresh.status == "received" and not fresh.inspection and fresh.category == "other"
    assert [e.action for e in fresh.history] == ["receive"]
    assert await count(kit, AuditEntry, AuditEntry.action != "login") == 0
    assert (await sup.get("/cases")).status == 200
    # The same form with the right token goes through.
    assert (await sup.post(f"/cases/{case.code}/note", {"text": "ok"}, csrf=good)).status == 303
    assert await count(kit, CaseEvent, CaseEvent.action == "note") == 1


async def test_login_needs_the_pre_session_token_too(kit):
    b = await kit.browser()
    await b.get("/login")
    r = await b.post("/login", {"username": "stp", "password": PASSWORD}, csrf=False)
    assert r.status == 403 and b.cookie(SESSION_COOKIE) is None
    r = await b.post("/login", {"username": "stp", "password": PASSWORD}, csrf="x" * 43)
    assert r.status == 403 and b.cookie(SESSION_COOKIE) is None
    # A token from another browser's pre-session does not fit this browser's cookie.
    c = await kit.browser()
    await c.get("/login")
    r = await b.post("/login", {"username": "stp", "password": PASSWORD}, csrf=c.csrf)
    assert r.status == 403
    assert await count(kit, LoginAttempt) == 0  # refused before the password was even looked at


# ---------------------------------------------------------------- lockout


async def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(kit):
    b = await kit.browser()
    for i in range(5):
        r = await b.login("stp", f"wrong password {i}")
        assert r.status == 401 and auth.REFUSED in await r.text()
    r = await b.login("stp", PASSWORD)  # the right one, refused while locked
    assert r.status == 401 and auth.REFUSED in await r.text() and b.cookie(SESSION_COOKIE) is None
    kit.clock.advance(minutes=14, seconds=50)
    assert (await b.login("stp", PASSWORD)).status == 401
    other = await kit.browser()  # another account is not affected
    assert (await other.login("snv", PASSWORD)).status == 303
    kit.clock.advance(seconds=15)  # 15 minutes after the fifth failure
    assert (await b.login("stp", PASSWORD)).status == 303
    results = await column(kit, select(LoginAttempt.result).where(LoginAttempt.login == "stp").order_by(LoginAttempt.id))
    assert results == ["bad_password"] * 5 + ["locked", "locked", "ok"]


async def test_failures_spread_over_more_than_fifteen_minutes_do_not_lock(kit):
    b = await kit.browser()
    for _ in range(4):
        assert (await b.login("stp", "wrong password")).status == 401
    kit.clock.advance(minutes=16)
    assert (await b.login("stp", "wrong password")).status == 401
    assert (await b.login("stp", PASSWORD)).status == 303


async def test_an_unknown_account_gets_the_same_answers_as_a_known_one(kit):
    async def answers(login):
        b = await kit.browser()
        out = []
        for _ in range(6):
            r = await b.login(login, "wrong password")
            out.append((r.status, re.search(r'class="error"[^>]*>([^<]*)<', await r.text()).group(1)))
        return out

    assert await answers("nobody") == await answers("stp")


async def test_an_address_with_too_many_failures_is_refused_whatever_the_login(kit):
    b = await kit.browser()
    for i in range(auth.ADDRESS_FAILURES):
        assert (await b.login(f"guess{i}", "wrong password")).status == 401
    r = await b.login("snv", PASSWORD)
    assert r.status == 401 and auth.ADDRESS_REFUSED in await r.text()
    kit.clock.advance(minutes=16)
    assert (await b.login("snv", PASSWORD)).status == 303


async def test_a_disabled_account_cannot_sign_in_and_its_session_ends(kit):
    b = await kit.signed_in("stp")
    assert (await b.get("/cases")).status == 200
    await kit.console.accounts.disable("stp")
    assert (await b.get("/cases")).status == 303
    r = await b.login("stp", PASSWORD)
    assert r.status == 401 and auth.REFUSED in await r.text()


# ---------------------------------------------------------------- sessions


async def test_a_new_session_id_at_sign_in_and_a_planted_one_is_never_promoted(kit):
    b = await kit.browser()
    await b.get("/login")
    planted = "attacker-chosen-session-token-0123456789abcdef"
    b.client.session.cookie_jar.update_cookies({SESSION_COOKIE: planted}, b.client.make_url("/"))
    pre = b.cookie(PRE_COOKIE)
    assert (await b.post("/login", {"username": "stp", "password": PASSWORD})).status == 303
    token = b.cookie(SESSION_COOKIE)
    assert token and token != planted and token != pre
    assert b.cookie(PRE_COOKIE) in (None, "")
    # The planted value does not open anything.
    attacker = await kit.browser()
    attacker.client.session.cookie_jar.update_cookies({SESSION_COOKIE: planted}, attacker.client.make_url("/"))
    assert (await attacker.get("/cases")).status == 303
    # Signing in again from the same browser replaces the session; the old token is dead.
    await b.get("/cases")
    assert (await b.post("/logout")).status == 303
    assert (await b.login("stp", PASSWORD)).status == 303
    second = b.cookie(SESSION_COOKIE)
    assert second != token
    replay = await kit.browser()
    replay.client.session.cookie_jar.update_cookies({SESSION_COOKIE: token}, replay.client.make_url("/"))
    assert (await replay.get("/cases")).status == 303
    # Only a hash of the token is stored.
    async with kit.console.engine.connect() as conn:
        ids = (await conn.execute(select(WebSession.id))).scalars().all()
    assert ids == [auth.token_id(second)] and second not in ids


async def test_idle_timeout_and_maximum_age(kit):
    b = await kit.signed_in("stp")
    for _ in range(3):
        kit.clock.advance(minutes=29)
        assert (await b.get("/cases")).status == 200  # used within the idle time: still open
    kit.clock.advance(minutes=31)
    r = await b.get("/cases")
    assert r.status == 303 and r.headers["Location"].startswith("/login")
    assert await count(kit, WebSession) == 0
    b = await kit.signed_in("stp")
    for _ in range(25):  # 12 h 30 min of steady use
        kit.clock.advance(minutes=30)
        r = await b.get("/cases")
    assert r.status == 303


async def test_cookie_flags(db_settings):
    for secure in (False, True):
        k = await make_kit(db_settings, staff=STAFF if not secure else {}, web=WebSettings(secure_cookies=secure))
        try:
            b = await k.browser()
            r = await b.get("/login")
            pre = r.headers["Set-Cookie"]
            # A Secure cookie is not sent back over plain HTTP (this test client): send it by hand,
            # as a browser would over HTTPS.
            value = re.match(PRE_COOKIE + r"=([^;]+)", pre).group(1)
            r = await b.post("/login", {"username": "stp", "password": PASSWORD},
                             headers={"Cookie": f"{PRE_COOKIE}={value}"} if secure else None)
            session = [h for h in r.headers.getall("Set-Cookie") if h.startswith(SESSION_COOKIE + "=")][0]
            for header in (pre, session):
                assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
                assert ("Secure" in header) is secure, header
            assert ("Strict-Transport-Security" in r.headers) is secure
        finally:
            await close_kit(k)


async def test_security_headers_on_every_page(kit):
    case = await kit.with_recording()
    b = await kit.signed_in("snv")
    for path in ("/login", "/cases", f"/cases/{case.code}", f"/cases/{case.code}/recording", "/cases/999999",
                 "/audit"):
        r = await b.get(path)
        h = r.headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"] and "default-src 'self'" in h["Content-Security-Policy"]
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
        assert h["Cache-Control"] == "no-store", path
    r = await b.get("/static/console.css")
    assert r.status == 200 and "no-store" not in r.headers.get("Cache-Control", "")


async def test_no_page_needs_anything_from_another_site(kit):
    case = await kit.with_recording()
    b = await kit.signed_in("snv")
    for path in ("/login", "/cases", f"/cases/{case.code}", "/audit"):
        text = await (await b.get(path)).text()
        assert not re.search(r'(src|href)="(https?:)?//', text), path
        assert "<script>" not in text and " style=" not in text  # nothing the CSP would block
