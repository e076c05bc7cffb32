"""The case pages: the inbox (/cases), one case (/cases/<code>), its actions and recording,
and the audit trail (/audit).

Every action goes through :class:`ivr.cases.Cases`, the service the CLI uses: the lifecycle's
rules are written once. A refused action shows the service's reason and changes nothing. A case
outside the person's scope is answered exactly like a code that does not exist (404).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.models import OutboxItem
from ivr.models.cases import CATEGORIES, CHANNELS, CLOSE_REASONS, STATUSES
from ivr.models.users import User
from ivr.records import cases as cm
from ivr.vocab import Channel

from . import access
from .accounts import Account
from .audit import ACTIONS as AUDIT_ACTIONS
from .audit import AuditFilter
from .http import ADDRESS_KEY, ME_KEY, NOT_FOUND, Refused

if TYPE_CHECKING:
    from .app import Console

log = logging.getLogger("tongdai.web.pages")

PER_PAGE = 50
AUDIT_PER_PAGE = 100
CHANNEL_VI = Channel.labels()
# Timeline entries that are not staff actions (those are in ACTION_VI).
EVENT_VI = {
    "receive": "tiếp nhận", "zalo_message": "tin nhắn Zalo", "lookup": "người dân tra cứu",
    "reopen_request": "người dân đề nghị xem xét lại", "zalo_queued": "chờ gửi Zalo", "zalo_sent": "đã gửi Zalo",
    "zalo_failed": "gửi Zalo không được", "recording_pruned": "xoá bản ghi âm hết hạn lưu",
}
_RAW_CHANNEL = re.compile(r"^kênh (" + "|".join(Channel.values()) + r")\b")


def event_note(action: str, note: str | None) -> str | None:
    """A timeline note as staff read it: receipts written before the channel's label was used
    there say "kênh phone"; show "kênh điện thoại"."""
    if note and action == "receive":
        return _RAW_CHANNEL.sub(lambda m: "kênh " + CHANNEL_VI[m.group(1)], note, count=1)
    return note


DONE_VI = {
    "classify": "Đã phân loại.", "assign": "Đã giao xử lý.", "start": "Đã bắt đầu xử lý.", "answer": "Đã trả lời.",
    "close": "Đã đóng phản ánh.", "reopen": "Đã mở lại.", "flag-inspection": "Đã chuyển Tổ Kiểm tra đột xuất.",
    "note": "Đã thêm ghi chú.",
}


class BadFilter(Exception):
    pass


def _page(raw: str | None) -> int:
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise BadFilter("trang")
    return int(raw)


class Pages:
    def __init__(self, console: Console):
        self.c = console

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/cases", self.inbox)
        r.add_get("/cases/{code}", self.case)
        r.add_get("/cases/{code}/recording", self.recording)
        r.add_post("/cases/{code}/{action}", self.act)
        r.add_get("/audit", self.audit)

    # ------------------------------------------------------------------ the inbox

    def _filters(self, me: Account, query) -> tuple[cm.CaseFilter, dict]:
        routing = self.c.routing()
        scope = access.case_scope(me, routing)
        assert scope is not None  # the role matrix let only case roles in
        chosen = {k: (query.get(k) or "").strip() for k in ("status", "channel", "category", "agency", "q", "overdue")}
        for key, allowed in (("status", STATUSES), ("channel", CHANNELS), ("category", CATEGORIES)):
            if chosen[key] and chosen[key] not in allowed:
                raise BadFilter(key)
        if chosen["overdue"] not in ("", "1"):
            raise BadFilter("overdue")
        agencies = scope.agencies
        if chosen["agency"]:
            if chosen["agency"] not in routing.agencies:
                raise BadFilter("agency")
            wanted = frozenset([chosen["agency"]])
            agencies = wanted if agencies is None else agencies & wanted
        f = replace(scope, status=chosen["status"] or None, channel=chosen["channel"] or None,
                    category=chosen["category"] or None, overdue=chosen["overdue"] == "1", text=chosen["q"][:200] or None,
                    agencies=agencies)
        return f, chosen

    async def inbox(self, request: web.Request) -> web.Response:
        me = self.c.require(request, "cases")
        try:
            f, chosen = self._filters(me, request.query)
            page = _page(request.query.get("page"))
        except BadFilter as e:
            return self.c.refuse(request, 400, f"Bộ lọc '{e}' không hợp lệ.")
        cases = self.c.cases()
        now = self.c.clock()
        rows, total = await cases.search(f, now=now, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
        counts = await cases.count_by_status(f, now=now)
        routing = self.c.routing()
        scope = access.case_scope(me, routing)
        assert scope is not None  # the role matrix let only case roles in
        choosable = sorted(scope.agencies) if scope.agencies is not None else sorted(routing.agencies)
        keep = {k: v for k, v in chosen.items() if v}

        def link(**changes) -> str:
            q = {**keep, **changes}
            return "/cases?" + urlencode({k: v for k, v in q.items() if v})

        return self.c.render(
            request, "cases.html.j2", rows=rows, total=total, counts=counts, page=page, per_page=PER_PAGE,
            pages=max(1, -(-total // PER_PAGE)), chosen=chosen, link=link, now=now, routing=routing,
            statuses=STATUSES, channels=CHANNELS, categories=CATEGORIES, CHANNEL_VI=CHANNEL_VI,
            agencies=[(a, routing.agencies[a].name) for a in choosable if a in routing.agencies])

    # ------------------------------------------------------------------ one case

    async def _visible(self, request: web.Request, me: Account) -> cm.Case:
        scope = access.case_scope(me, self.c.routing())
        case = await self.c.cases().find(request.match_info["code"], scope) if scope is not None else None
        if case is None:
            raise Refused(404, NOT_FOUND)
        return case

    async def case(self, request: web.Request, *, error: str | None = None, revealed: bool = False,
                   status: int = 200) -> web.Response:
        me = self.c.require(request, "case")
        case = await self._visible(request, me)
        routing = self.c.routing()
        async with AsyncSession(self.c.engine) as s:
            actors = {e.actor for e in case.history}
            names: dict[str, str | None] = dict(
                (await s.execute(select(User.login, User.name).where(User.login.in_(actors)))).all()) if actors else {}
            outbox = list((await s.execute(select(OutboxItem).where(OutboxItem.case_code == case.code)
                                           .order_by(OutboxItem.created_at, OutboxItem.id))).scalars()) \
                if case.channel == "zalo" else []
        done = request.query.get("done")
        return self.c.render(
            request, "case.html.j2", status=status, case=case, routing=routing, now=self.c.clock(), names=names,
            outbox=outbox, error=error, revealed=revealed, done=DONE_VI.get(done or ""), CHANNEL_VI=CHANNEL_VI,
            EVENT_VI=EVENT_VI, event_note=event_note,
            categories=CATEGORIES, reasons=CLOSE_REASONS, agencies=sorted(routing.agencies.values(), key=lambda a: a.name),
            zalo_messages=[e for e in case.history if e.action == "zalo_message"])

    async def act(self, request: web.Request) -> web.Response:
        me_current = request[ME_KEY]
        me: Account = me_current.account
        self.c.require(request, "case")
        action = request.match_info["action"]
        if action not in access.CASE_ACTIONS:
            raise Refused(404, "Không có thao tác này.")
        if not access.may_act(me, action):
            raise Refused(403, "Vai trò của bạn không được thực hiện thao tác này.")
        case = await self._visible(request, me)
        address = request[ADDRESS_KEY]
        if action == "reveal":
            if not case.anonymous:
                return await self.case(request, error="Người phản ánh không ẩn danh.", status=409)
            # Recorded before it is shown: no audit entry, no number.
            await self.c.audit.record(me, address, "reveal_number", case_code=case.code)
            log.info("anonymous number of case %s revealed to %s from %s", case.code, me.login, address)
            return await self.case(request, revealed=True)
        form = await request.post()
        svc = self.c.cases()
        text = lambda name: (str(form.get(name) or "").strip() or None)  # noqa: E731
        try:
            if action == "note":
                await svc.note(case.code, actor=me.login, text=text("text") or "")
                detail = text("text")
            elif action == "flag-inspection":
                await svc.flag_inspection(case.code, actor=me.login, reason=text("reason") or "")
                detail = text("reason")
            else:
                kw: dict = {"note": text("note")}
                if action == "classify":
                    kw["category"] = text("category")
                elif action == "assign":
                    kw["agencies"] = [str(a).strip() for a in form.getall("agency", []) if str(a).strip()]
                elif action == "answer":
                    kw["text"] = text("text")
                elif action == "close":
                    kw["reason"] = text("reason")
                await svc.act(case.code, action, actor=me.login, **kw)
                detail = "; ".join(f"{k}={v if not isinstance(v, list) else ','.join(v)}" for k, v in kw.items() if v)
        except cm.CaseError as e:
            return await self.case(request, error=str(e), status=409)
        await self.c.audit.record(me, address, action.replace("-", "_"), case_code=case.code, detail=detail)
        raise web.HTTPSeeOther(f"/cases/{case.code}?done={action}")

    async def recording(self, request: web.Request) -> web.StreamResponse:
        me = self.c.require(request, "recording")
        case = await self._visible(request, me)
        if not case.recording:
            raise Refused(404, "Phản ánh này không có bản ghi âm.")
        # The path comes from the case's row, never from the URL; and it must lie under the
        # recordings folder even so (a row edited by hand cannot point at /etc/…).
        root = (self.c.settings.home / "recordings").resolve()
        path = (self.c.settings.home / case.recording).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            log.error("case %s: recording %r is missing or outside %s", case.code, case.recording, root)
            raise Refused(404, "Không tìm thấy tệp ghi âm.")
        rng = request.headers.get("Range", "").replace(" ", "")
        if not rng or rng.startswith("bytes=0-"):
            # A play starts at byte 0 (the player asks for the rest as it goes, or when seeking):
            # one audit entry per play, not one per chunk. The page's player loads nothing
            # before "play" (preload="none"), so opening the page is not a play.
            await self.c.audit.record(me, request[ADDRESS_KEY], "play_recording", case_code=case.code)
        return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Content-Disposition": "inline"})

    # ------------------------------------------------------------------ the audit trail

    async def audit(self, request: web.Request) -> web.Response:
        self.c.require(request, "audit")
        q = request.query
        action = (q.get("action") or "").strip()
        if action and action not in AUDIT_ACTIONS:
            return self.c.refuse(request, 400, "Bộ lọc 'action' không hợp lệ.")
        try:
            page = _page(q.get("page"))
        except BadFilter:
            return self.c.refuse(request, 400, "Bộ lọc 'trang' không hợp lệ.")
        f = AuditFilter(login=(q.get("login") or "").strip() or None, action=action or None,
                        case_code=(q.get("case") or "").strip() or None)
        rows, total = await self.c.audit.search(f, offset=(page - 1) * AUDIT_PER_PAGE, limit=AUDIT_PER_PAGE)
        keep = {k: v for k, v in (("login", f.login), ("action", f.action), ("case", f.case_code)) if v}
        return self.c.render(request, "audit.html.j2", rows=rows, total=total, page=page,
                             pages=max(1, -(-total // AUDIT_PER_PAGE)), f=f, actions=AUDIT_ACTIONS,
                             link=lambda **ch: "/audit?" + urlencode({**keep, **ch}))
