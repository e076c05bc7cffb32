"""The Youth Union coordinators' pages: the volunteers' roster per desk and ISO week (/youth),
check-in and check-out, and logging an assist from a phone (/youth/assist).

Every change goes through :class:`ivr.records.volunteers.Volunteers`, the service the CLI uses:
its rules (one shift at a time, same-day check-out, no personal number in the assistance log)
are written once. A refused action shows the service's reason and changes nothing. Which desks
a person sees is :func:`ivr.web.access.youth_desks`; a volunteer or shift of another desk is
refused like one that does not exist. Every change is in the audit trail.

The assist page is two taps: pick the volunteer (preselected when opened from the roster, so
one tap then), tap the kind of help; each kind is its own submit button.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web

from ivr.records import volunteers as vm
from ivr.vocab import AssistKind, ShiftState

from . import access
from .accounts import Account
from .http import ADDRESS_KEY, Refused

if TYPE_CHECKING:
    from .app import Console

log = logging.getLogger("tongdai.web.youth")

NOT_HERE = "Không có đoàn viên hoặc ca này trong phạm vi của bạn."
KIND_VI = AssistKind.labels()
STATE_VI = ShiftState.labels()
DONE_VI = {"checkin": "Đã ghi giờ vào ca.", "checkout": "Đã ghi giờ ra ca."}


class Youth:
    def __init__(self, console: Console):
        self.c = console

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/youth", self.roster)
        r.add_post(r"/youth/{action:checkin|checkout}", self.arrival)
        r.add_get("/youth/assist", self.assist_form)
        r.add_post("/youth/assist", self.assist)

    def _service(self) -> vm.Volunteers:
        return vm.Volunteers(self.c.engine, self.c.routing())

    def _scope(self, me: Account) -> tuple[str, ...]:
        return access.youth_desks(me, self.c.routing())

    def _desk(self, me: Account, raw: str | None) -> str | None:
        """The desk filter: empty (every desk of the scope), or one desk of the scope."""
        desk = (raw or "").strip()
        if not desk:
            return None
        if vm.desk_problem(self.c.routing(), desk):
            raise Refused(400, "Bộ lọc 'desk' không hợp lệ.")
        if desk not in self._scope(me):
            raise Refused(403, "Bộ phận một cửa này không thuộc phạm vi của bạn.")
        return desk

    def _today(self) -> dt.date:
        return self.c.clock().astimezone(zoneinfo.ZoneInfo(self.c.routing().hotline.timezone)).date()

    # ------------------------------------------------------------------ the roster

    async def roster(self, request: web.Request, *, error: str | None = None, status: int = 200,
                     form: dict | None = None) -> web.Response:
        me = self.c.require(request, "youth")
        q = form if form is not None else request.query
        desk = self._desk(me, q.get("desk"))
        week_raw = (q.get("week") or "").strip()
        try:
            monday = vm.parse_week(week_raw) if week_raw else self._today() - dt.timedelta(days=self._today().weekday())
        except vm.VolunteerError:
            raise Refused(400, "Bộ lọc 'week' không hợp lệ (dạng YYYY-Www, ví dụ 2026-W50).") from None
        scope = set(self._scope(me))
        shifts = [s for s in await self._service().roster(monday, desk=desk, now=self.c.clock())
                  if s.desk_code in scope]
        routing = self.c.routing()
        groups: dict[str, list] = {}
        for s in shifts:
            groups.setdefault(s.desk_code, []).append(s)
        week = vm.week_label(monday)
        keep = {"desk": desk or ""}

        def link(**changes) -> str:
            return "/youth?" + urlencode({k: v for k, v in {**keep, "week": week, **changes}.items() if v})

        return self.c.render(
            request, "youth.html.j2", status=status, error=error, done=DONE_VI.get(request.query.get("done") or ""),
            groups=groups, desk=desk, week=week, monday=monday, sunday=monday + dt.timedelta(days=6),
            prev=link(week=vm.week_label(monday - dt.timedelta(days=7))),
            next=link(week=vm.week_label(monday + dt.timedelta(days=7))),
            this_week=link(week=""), today=self._today(), desks=[(c, vm.desk_name(routing, c)) for c in scope_order(routing, scope)],
            minutes=sum(s.served_minutes or 0 for s in shifts), fmt_minutes=vm.fmt_minutes, STATE_VI=STATE_VI,
            ON_DUTY=ShiftState.ON_DUTY, NO_CHECKOUT=ShiftState.NO_CHECKOUT)

    async def arrival(self, request: web.Request) -> web.Response:
        me = self.c.require(request, "youth")
        action = request.match_info["action"]
        form = await request.post()
        back = {k: str(form.get(k) or "") for k in ("desk", "week")}
        raw_id = str(form.get("shift") or "")
        if not raw_id.isdigit() or len(raw_id) > 12:
            raise Refused(404, NOT_HERE)
        svc = self._service()
        now = self.c.clock()
        try:
            shift = await svc.get_shift(int(raw_id), now=now)
        except vm.VolunteerError:
            raise Refused(404, NOT_HERE) from None
        if shift.desk_code not in self._scope(me):
            raise Refused(404, NOT_HERE)
        try:
            if action == "checkin":
                done = await svc.check_in(shift.phone, shift_id=shift.id, now=now)
                at = done.checkin_at
            else:
                done = await svc.check_out(shift.phone, shift_id=shift.id, now=now)
                at = done.checkout_at
        except vm.VolunteerError as e:
            return await self.roster(request, error=str(e), status=409, form=back)
        tz = self.c.routing().hotline.timezone
        await self.c.audit.record(me, request[ADDRESS_KEY], f"volunteer_{action}",
                                  detail=f"ca #{shift.id} {shift.desk_code} {shift.phone} "
                                         f"{at.astimezone(zoneinfo.ZoneInfo(tz)):%d/%m/%Y %H:%M}" if at else None)
        query = urlencode({k: v for k, v in {**back, "done": action}.items() if v})
        raise web.HTTPSeeOther(f"/youth?{query}#shift-{shift.id}")

    # ------------------------------------------------------------------ logging an assist

    async def _choices(self, me: Account, desk: str | None, preselected: str | None) -> list[dict]:
        """The volunteers to pick from: with a desk, its whole roster; without, those with a shift
        today at a desk of the scope, the ones on duty first."""
        svc = self._service()
        scope = set(self._scope(me))
        today = self._today()
        now = self.c.clock()
        shifts = [s for s in await svc.roster(today - dt.timedelta(days=today.weekday()), desk=desk, now=now)
                  if s.day == today and s.desk_code in scope]
        on_duty = {s.phone for s in shifts if s.state == ShiftState.ON_DUTY}
        out: dict[str, dict] = {}
        for s in sorted(shifts, key=lambda s: (s.phone not in on_duty, s.starts_at, s.name)):
            out.setdefault(s.phone, {"phone": s.phone, "name": s.name, "desk": s.desk_name, "on_duty": s.phone in on_duty})
        if desk is not None:
            for v in await svc.list_volunteers(desk=desk):
                out.setdefault(v.phone, {"phone": v.phone, "name": v.name, "desk": v.desk_name, "on_duty": False})
        if preselected and preselected not in out:
            v = await self._volunteer(me, preselected)
            out = {v.phone: {"phone": v.phone, "name": v.name, "desk": v.desk_name, "on_duty": False}, **out}
        return list(out.values())

    async def _volunteer(self, me: Account, phone: str) -> vm.VolunteerInfo:
        """The volunteer if their desk, or a desk they have a shift at today, is in the scope."""
        svc = self._service()
        try:
            v = await svc.get(phone)
        except vm.VolunteerError:
            raise Refused(404, NOT_HERE) from None
        scope = set(self._scope(me))
        if v.desk_code in scope:
            return v
        today = self._today()
        week = await svc.roster(today - dt.timedelta(days=today.weekday()), now=self.c.clock())
        if any(s.phone == v.phone and s.day == today and s.desk_code in scope for s in week):
            return v
        raise Refused(404, NOT_HERE)

    async def assist_form(self, request: web.Request, *, error: str | None = None, status: int = 200,
                          form: dict | None = None) -> web.Response:
        me = self.c.require(request, "youth")
        q = form if form is not None else request.query
        desk = self._desk(me, q.get("desk"))
        phone = (q.get("phone") or "").strip()
        if phone:
            try:
                phone = vm.normalize_phone(phone)
            except ValueError:
                raise Refused(404, NOT_HERE) from None
        choices = await self._choices(me, desk, phone or None)
        if not phone and len(choices) == 1:
            phone = choices[0]["phone"]  # the only one: already chosen, one tap left
        last = None
        done = request.query.get("done") if form is None else None
        if done and done.isdigit():
            last = next((a for a in await self._service().assists(day=self._today(), limit=50)
                         if str(a.id) == done and a.desk_code in self._scope(me)), None)
        routing = self.c.routing()
        scope = set(self._scope(me))
        return self.c.render(
            request, "youth_assist.html.j2", status=status, error=error, choices=choices, phone=phone, desk=desk,
            procedure=(q.get("procedure") or "") if form is not None else "", kinds=list(AssistKind), last=last,
            KIND_VI=KIND_VI, desks=[(c, vm.desk_name(routing, c)) for c in scope_order(routing, scope)])

    async def assist(self, request: web.Request) -> web.Response:
        me = self.c.require(request, "youth")
        form = await request.post()
        fields = {k: str(form.get(k) or "").strip() for k in ("phone", "kind", "procedure", "desk")}
        if not fields["phone"]:
            return await self.assist_form(request, error="Chọn đoàn viên trước, rồi chạm vào loại hỗ trợ.",
                                          status=409, form=fields)
        v = await self._volunteer(me, fields["phone"])
        try:
            a = await self._service().assist(v.phone, fields["kind"], procedure=fields["procedure"] or None,
                                             actor=me.login, now=self.c.clock())
        except vm.VolunteerError as e:
            return await self.assist_form(request, error=str(e), status=409, form=fields)
        await self.c.audit.record(me, request[ADDRESS_KEY], "volunteer_assist",
                                  detail=f"#{a.id} {a.desk_code} {a.phone} {a.kind}")
        query = urlencode({k: v for k, v in (("phone", a.phone), ("desk", fields["desk"]), ("done", str(a.id))) if v})
        raise web.HTTPSeeOther(f"/youth/assist?{query}")


def scope_order(routing, scope: set[str]) -> list[str]:
    return [c for c in vm.desks(routing) if c in scope]
