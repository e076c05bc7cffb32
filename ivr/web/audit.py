"""The audit trail: every case action, recording played, anonymous number revealed, sign-in,
report and export, with the person, the time and the address. Supervisors read it at /audit.

Rows are only appended. The action names are the case lifecycle's own (:data:`ivr.cases.ACTIONS`,
plus ``flag_inspection`` and ``note``) and the console's :data:`EVENTS`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from ivr.models.users import AuditEntry
from ivr.records import cases as cm

from .accounts import Account, utcnow

EVENTS = ("login", "logout", "play_recording", "reveal_number", "report", "export",
          "volunteer_checkin", "volunteer_checkout", "volunteer_assist")
ACTIONS = tuple(cm.ACTIONS) + ("flag_inspection", "note") + EVENTS
ACTION_VI = {
    **{a: v for a, v in cm._ACTION_VI.items()}, "flag_inspection": "chuyển Tổ Kiểm tra", "note": "ghi chú",
    "login": "đăng nhập", "logout": "đăng xuất", "play_recording": "nghe bản ghi âm",
    "reveal_number": "xem số người gọi ẩn danh", "report": "tải báo cáo tháng", "export": "xuất dữ liệu",
    "volunteer_checkin": "đoàn viên vào ca", "volunteer_checkout": "đoàn viên ra ca",
    "volunteer_assist": "ghi lượt hỗ trợ người dân",
}


@dataclass(frozen=True)
class AuditFilter:
    login: str | None = None
    action: str | None = None
    case_code: str | None = None


class Audit:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], dt.datetime] = utcnow):
        self.engine = engine
        self.clock = clock
        self._sm = async_sessionmaker(engine, expire_on_commit=False)

    async def record(self, account: Account, address: str, action: str, *, case_code: str | None = None,
                     detail: str | None = None) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        async with self._sm.begin() as s:
            s.add(AuditEntry(at=self.clock(), login=account.login, role=account.role, address=address[:64],
                             action=action, case_code=case_code, detail=detail))

    async def search(self, f: AuditFilter, *, offset: int = 0, limit: int = 100) -> tuple[list[AuditEntry], int]:
        where = []
        if f.login:
            where.append(AuditEntry.login == f.login.strip().lower())
        if f.action:
            where.append(AuditEntry.action == f.action)
        if f.case_code:
            where.append(AuditEntry.case_code == f.case_code.strip())
        async with self._sm() as s:
            rows = list((await s.execute(select(AuditEntry).where(*where)
                                         .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                                         .offset(offset).limit(limit))).scalars())
            total = (await s.execute(select(func.count()).select_from(AuditEntry).where(*where))).scalar_one()
        return rows, total
