"""Staff accounts: create, list, disable, change a password; the one place that hashes them.

Used by ``tongdai users …`` and by the console's sign-in. Passwords are hashed with Argon2id
(argon2-cffi's default profile, RFC 9106 "low memory": t=3, 64 MiB, p=4); hashing runs in a
worker thread so a sign-in never stalls the web process's loop. Refusals raise
:class:`AccountError` with a message for staff (Vietnamese).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from ivr.config.routing import Routing
from ivr.models.users import ROLES, User, WebSession
from ivr.records.volunteers import desk_problem
from ivr.vocab import Role

LOGIN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256  # Argon2 takes any length; a megabyte "password" is an attack, not a password


class AccountError(Exception):
    """A request about accounts that cannot be done; the message says why (Vietnamese)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Account:
    """What the console knows of a signed-in person (no hash)."""

    id: int
    login: str
    name: str | None
    role: str
    agency_code: str | None
    disabled: bool
    created_at: dt.datetime

    @classmethod
    def of(cls, u: User) -> Account:
        return cls(u.id, u.login, u.name, u.role, u.agency_code, u.disabled, u.created_at)

    @property
    def shown(self) -> str:
        return self.name or self.login


def normalise_login(login: str) -> str:
    return (login or "").strip().lower()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"mật khẩu phải có ít nhất {MIN_PASSWORD} ký tự")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"mật khẩu dài quá {MAX_PASSWORD} ký tự")
    if password.strip() != password:
        raise AccountError("mật khẩu không được bắt đầu hoặc kết thúc bằng khoảng trắng")


class Accounts:
    def __init__(self, engine: AsyncEngine, routing: Callable[[], Routing], *,
                 hasher: PasswordHasher | None = None, clock: Callable[[], dt.datetime] = utcnow):
        self.engine = engine
        self.routing = routing
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        self._sm = async_sessionmaker(engine, expire_on_commit=False)
        self._dummy: str | None = None

    # ------------------------------------------------------------------ management (CLI)

    def _check_role_agency(self, role: str, agency: str | None) -> str | None:
        if role not in ROLES:
            raise AccountError(f"vai trò '{role}' không tồn tại; chọn một trong: "
                               + ", ".join(f"{r} ({r.label})" for r in Role))
        agency = (agency or "").strip() or None
        if role == "officer" and not agency:
            raise AccountError("cán bộ đầu mối (officer) cần --agency: mã cơ quan của mình")
        if agency and agency not in self.routing().agencies:
            raise AccountError(f"không có cơ quan mã '{agency}' trong routing.yaml")
        if role == "youth" and agency and (problem := desk_problem(self.routing(), agency)):
            # A coordinator's --agency limits the roster to that desk and the desks under it.
            raise AccountError(f"--agency của tài khoản youth phải là một bộ phận một cửa: {problem}")
        return agency

    async def hash(self, password: str) -> str:
        check_password(password)
        return await asyncio.to_thread(self.hasher.hash, password)

    async def add(self, login: str, role: str, password: str, *, agency: str | None = None,
                  name: str | None = None) -> Account:
        login = normalise_login(login)
        if not LOGIN_RE.match(login):
            raise AccountError(f"tên đăng nhập '{login}' không hợp lệ: 2–64 ký tự a-z, 0-9, '.', '_', '-'")
        agency = self._check_role_agency(role, agency)
        digest = await self.hash(password)
        now = self.clock()
        user = User(login=login, name=(name or "").strip() or None, role=role, agency_code=agency,
                    password_hash=digest, disabled=False, created_at=now, password_changed_at=now)
        try:
            async with self._sm.begin() as s:
                s.add(user)
        except IntegrityError:
            raise AccountError(f"tài khoản '{login}' đã tồn tại") from None
        return Account.of(user)

    async def list(self) -> list[Account]:
        async with self._sm() as s:
            rows = (await s.execute(select(User).order_by(User.role, User.agency_code, User.login))).scalars()
            return [Account.of(u) for u in rows]

    async def _user(self, s, login: str) -> User:
        login = normalise_login(login)
        u = (await s.execute(select(User).where(User.login == login))).scalar_one_or_none()
        if u is None:
            raise AccountError(f"không có tài khoản '{login}'")
        return u

    async def disable(self, login: str) -> Account:
        """Disable the account and end its sessions at once (a browser left open is signed out)."""
        async with self._sm.begin() as s:
            u = await self._user(s, login)
            if u.disabled:
                raise AccountError(f"tài khoản '{u.login}' đã bị khoá từ trước")
            u.disabled = True
            await s.execute(delete(WebSession).where(WebSession.user_id == u.id))
            return Account.of(u)

    async def enable(self, login: str) -> Account:
        async with self._sm.begin() as s:
            u = await self._user(s, login)
            if not u.disabled:
                raise AccountError(f"tài khoản '{u.login}' đang hoạt động")
            u.disabled = False
            return Account.of(u)

    async def set_password(self, login: str, password: str) -> Account:
        """A new password; every session of the account ends (whoever knew the old one is out)."""
        digest = await self.hash(password)
        async with self._sm.begin() as s:
            u = await self._user(s, login)
            u.password_hash = digest
            u.password_changed_at = self.clock()
            await s.execute(delete(WebSession).where(WebSession.user_id == u.id))
            return Account.of(u)

    # ------------------------------------------------------------------ sign-in

    async def get(self, user_id: int) -> Account | None:
        async with self._sm() as s:
            u = await s.get(User, user_id)
            return Account.of(u) if u else None

    async def verify(self, login: str, password: str) -> Account | None:
        """The account if the password is right (disabled accounts included: the caller
        decides); None otherwise. An unknown login costs one hash too, so the time taken does
        not tell whether the account exists."""
        login = normalise_login(login)
        async with self._sm() as s:
            u = (await s.execute(select(User).where(User.login == login))).scalar_one_or_none()
        if u is None:
            if self._dummy is None:
                self._dummy = await asyncio.to_thread(self.hasher.hash, "not a password of anybody")
            await asyncio.to_thread(_verify, self.hasher, self._dummy, password[:MAX_PASSWORD] or "-")
            return None
        if not password or len(password) > MAX_PASSWORD:
            return None
        ok = await asyncio.to_thread(_verify, self.hasher, u.password_hash, password)
        if not ok:
            return None
        if self.hasher.check_needs_rehash(u.password_hash):
            digest = await asyncio.to_thread(self.hasher.hash, password)
            async with self._sm.begin() as s:
                row = await s.get(User, u.id)
                if row is not None:
                    row.password_hash = digest
        return Account.of(u)


def _verify(hasher: PasswordHasher, digest: str, password: str) -> bool:
    try:
        return hasher.verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
