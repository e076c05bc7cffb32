"""Sign-in with lockout, and server-side sessions in the database.

Sessions: the browser holds a random token (cookie); the database holds its SHA-256 with the
user, the sign-in time and the last use. A new token is made at every sign-in (a token planted
before sign-in is never promoted), a session ends after ``idle`` without use or ``max_age`` after
sign-in, and disabling an account or changing its password ends its sessions at once (see
:mod:`.accounts`). Why in the database and not aiohttp-session: docs/console.md.

Lockout: 5 wrong passwords for one login within 15 minutes lock that login for 15 minutes
(the right password is refused meanwhile); an address with 20 refused tries within 15 minutes
is refused for the rest of the window, whatever login it tries. Unknown logins lock exactly as
known ones, and every refusal shows the same message, so neither the message nor the lock tells
whether an account exists. Every try is kept in ``login_attempts``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from ivr.models.users import LoginAttempt, User, WebSession

from .accounts import MAX_PASSWORD, Account, Accounts, normalise_login, utcnow

log = logging.getLogger("tongdai.web.auth")

ACCOUNT_FAILURES = 5
ACCOUNT_WINDOW = dt.timedelta(minutes=15)
LOCK_FOR = dt.timedelta(minutes=15)
ADDRESS_FAILURES = 20
ADDRESS_WINDOW = dt.timedelta(minutes=15)
TOUCH_EVERY = dt.timedelta(seconds=60)  # last_seen_at is written at most this often per session

REFUSED = ("Không đăng nhập được: sai tên đăng nhập hoặc mật khẩu, hoặc tài khoản đang tạm khoá "
           f"{int(LOCK_FOR.total_seconds() // 60)} phút sau {ACCOUNT_FAILURES} lần nhập sai.")
ADDRESS_REFUSED = ("Địa chỉ này đã đăng nhập sai quá nhiều lần; "
                   f"thử lại sau {int(ADDRESS_WINDOW.total_seconds() // 60)} phút.")


class SignInRefused(Exception):
    """The message is for the person at the sign-in form (Vietnamese)."""


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def locked_until(failures: list[dt.datetime], now: dt.datetime) -> dt.datetime | None:
    """When a login's lock ends, given its failed tries (oldest first) since its last success;
    None when it is not locked. Locked: 5 failures within 15 minutes, for 15 minutes from the
    5th of them."""
    until = None
    n = ACCOUNT_FAILURES
    for i in range(n - 1, len(failures)):
        if failures[i] - failures[i - n + 1] <= ACCOUNT_WINDOW:
            end = failures[i] + LOCK_FOR
            if now < end and (until is None or end > until):
                until = end
    return until


@dataclass(frozen=True)
class Current:
    """The signed-in person of a request, and their session."""

    account: Account
    token: str
    created_at: dt.datetime


class Auth:
    def __init__(self, engine: AsyncEngine, accounts: Accounts, *, idle: dt.timedelta, max_age: dt.timedelta,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.engine = engine
        self.accounts = accounts
        self.idle = idle
        self.max_age = max_age
        self.clock = clock
        self._sm = async_sessionmaker(engine, expire_on_commit=False)

    # ------------------------------------------------------------------ sign-in

    async def _record(self, login: str, address: str, result: str) -> None:
        async with self._sm.begin() as s:
            s.add(LoginAttempt(at=self.clock(), login=login[:64], address=address[:64], result=result))

    async def _lock_state(self, login: str, address: str, now: dt.datetime) -> tuple[bool, bool]:
        """(login locked, address limited)."""
        async with self._sm() as s:
            since_ok = (await s.execute(
                select(func.max(LoginAttempt.at)).where(LoginAttempt.login == login, LoginAttempt.result == "ok",
                                                       LoginAttempt.at >= now - ACCOUNT_WINDOW - LOCK_FOR))).scalar()
            start = max(x for x in (since_ok, now - ACCOUNT_WINDOW - LOCK_FOR) if x is not None)
            fails = list((await s.execute(
                select(LoginAttempt.at).where(LoginAttempt.login == login, LoginAttempt.result == "bad_password",
                                              LoginAttempt.at > start).order_by(LoginAttempt.at))).scalars())
            by_address = (await s.execute(
                select(func.count()).select_from(LoginAttempt)
                .where(LoginAttempt.address == address, LoginAttempt.at > now - ADDRESS_WINDOW,
                       LoginAttempt.result.in_(("bad_password", "locked", "disabled"))))).scalar_one()
        return locked_until(fails, now) is not None, by_address >= ADDRESS_FAILURES

    async def sign_in(self, login: str, password: str, address: str) -> tuple[Account, str]:
        """Check the password and open a session; returns the account and the new cookie token.
        Raises :class:`SignInRefused`."""
        login = normalise_login(login)[:64]
        password = password or ""
        if not login or len(password) > MAX_PASSWORD:
            raise SignInRefused(REFUSED)
        now = self.clock()
        locked, limited = await self._lock_state(login, address, now)
        if limited:
            await self._record(login, address, "address_limited")
            log.warning("sign-in refused: address %s over the limit", address)
            raise SignInRefused(ADDRESS_REFUSED)
        if locked:
            await self._record(login, address, "locked")
            log.warning("sign-in refused: login %r is locked (from %s)", login, address)
            raise SignInRefused(REFUSED)
        account = await self.accounts.verify(login, password)
        if account is None:
            await self._record(login, address, "bad_password")
            log.info("sign-in failed: %r from %s", login, address)
            raise SignInRefused(REFUSED)
        if account.disabled:
            await self._record(login, address, "disabled")
            log.info("sign-in refused: %r is disabled (from %s)", login, address)
            raise SignInRefused(REFUSED)
        await self._record(login, address, "ok")
        token = await self.open_session(account, address)
        log.info("signed in: %s (%s) from %s", account.login, account.role, address)
        return account, token

    # ------------------------------------------------------------------ sessions

    async def open_session(self, account: Account, address: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        async with self._sm.begin() as s:
            # Sessions nobody used for the idle time are dead anyway: keep the table small.
            await s.execute(delete(WebSession).where(WebSession.last_seen_at < now - self.idle))
            s.add(WebSession(id=token_id(token), user_id=account.id, created_at=now, last_seen_at=now,
                             address=address[:64]))
        return token

    async def current(self, token: str | None, *, touch: bool = True) -> Current | None:
        """The session's person, or None (no such session, ended, expired, account disabled).
        ``touch``: this is the person's activity (a page), not a stream checking it is still on."""
        if not token or len(token) > 128:
            return None
        sid = token_id(token)
        now = self.clock()
        async with self._sm() as s:
            row = (await s.execute(select(WebSession, User).join(User, User.id == WebSession.user_id)
                                   .where(WebSession.id == sid))).first()
        if row is None:
            return None
        sess, user = row
        if user.disabled or now - sess.last_seen_at > self.idle or now - sess.created_at > self.max_age:
            await self.close_session(token)
            return None
        if touch and now - sess.last_seen_at > TOUCH_EVERY:
            async with self._sm.begin() as s:
                await s.execute(update(WebSession).where(WebSession.id == sid).values(last_seen_at=now))
        return Current(Account.of(user), token, sess.created_at)

    async def close_session(self, token: str) -> None:
        async with self._sm.begin() as s:
            await s.execute(delete(WebSession).where(WebSession.id == token_id(token)))
