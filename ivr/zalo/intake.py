"""Spooled webhook events → cases, follow records, survey answers, automatic replies.

Each spooled event is processed in one database transaction together with its ``zalo_events``
row (unique key: the message id), so replaying the spool after a crash, or Zalo delivering an
event twice, changes nothing the second time. A database that is down leaves the event in the
spool for the next pass; an event that cannot be processed for any other reason is recorded with
status ``error`` and the reason, and does not block the events behind it.

Events handled (payloads: https://developers.zalo.me/docs/official-account/webhook/tong-quan):

- ``user_send_text``, ``user_send_image``, ``user_send_file`` and the other ``user_send_*``
  messages carrying content (``sender.id`` is the citizen, ``recipient.id`` the OA,
  ``message.text``, ``message.attachments[].payload.url``): appended to the citizen's open Zalo
  case, or a new case (channel ``zalo``, a code from the same 6-digit space as phone cases) with
  an automatic reply giving the code; a text ``KS …`` is a survey answer instead, and a text
  ``TC <code>`` (``tra cứu <code>``) a look-up: the case's status and answer, to its own citizen
  only (:mod:`ivr.records.lookup`). A sticker or a gif only joins an open case, it never opens one.
- ``follow`` / ``unfollow`` (``follower.id``): recorded on the citizen.
- ``user_submit_info`` (``info.phone``, ``info.name``): kept, so surveys can find followers.
- anything else: logged and recorded as ignored.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import unicodedata
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ivr.config.routing import Routing
from ivr.config.settings import ZaloSettings
from ivr.models.cases import Case, CaseEvent
from ivr.models.zalo import ZaloEvent, ZaloUser
from ivr.records import cases as cases_mod
from ivr.records import lookup as lookup_mod
from ivr.zalo.api import TEXT_LIMIT
from ivr.zalo.outbox import enqueue, split_text
from ivr.zalo.surveys import Surveys, normalize_phone
from ivr.zalo.tokens import utcnow
from ivr.zalo.webhook import event_time

log = logging.getLogger("tongdai.zalo.intake")

# "TC 123456", "tra cứu 123456" (read without diacritics and case): a look-up, never a complaint.
LOOKUP_TEXT = re.compile(r"(?:tc|tra\s*cuu)(?:\s*ma(?:\s*so)?)?\s*[:#.\-]?\s*([0-9]{1,12})", re.IGNORECASE)
LOOKUP_NOT_FOUND = ("Không tìm thấy phản ánh mã {code} do Ông/Bà gửi qua Zalo. Xin kiểm tra lại mã số "
                    "(6 chữ số) trong tin nhắn tiếp nhận phản ánh.")

CONTENT_EVENTS = {"user_send_text", "user_send_image", "user_send_file", "user_send_link", "user_send_audio",
                  "user_send_video", "user_send_location", "user_send_business_card"}
JOIN_ONLY_EVENTS = {"user_send_sticker", "user_send_gif"}
ACTOR = "người dân (Zalo)"
ATTACHMENT_VI = {"image": "ảnh", "file": "tệp", "audio": "ghi âm", "video": "video", "link": "liên kết",
                 "location": "vị trí", "sticker": "nhãn dán", "gif": "ảnh động"}
AUTO_REPLY = (
    "Tổng đài hỗ trợ công tác CCHC tỉnh Hậu Giang đã tiếp nhận phản ánh của Ông/Bà. "
    "Mã phản ánh: {code}. Hạn trả lời: {deadline}. Ông/Bà có thể dùng mã này khi gọi đường dây "
    "nóng {hotline} để hỏi kết quả xử lý. Nội dung gửi thêm trong tin nhắn này sẽ được bổ sung vào phản ánh."
)


def content(event_name: str, message: dict) -> str:
    """What the citizen sent, as case text: the text, then one line per attachment."""
    parts = []
    if isinstance(message.get("text"), str) and message["text"].strip():
        parts.append(message["text"].strip())
    for a in message.get("attachments") or []:
        if not isinstance(a, dict):
            continue
        kind = str(a.get("type") or event_name.removeprefix("user_send_"))
        payload = got if isinstance(got := a.get("payload"), dict) else {}
        where = payload.get("url") or payload.get("thumbnail") or ""
        if kind == "location" and isinstance(payload.get("coordinates"), dict):
            c = payload["coordinates"]
            where = f"{c.get('latitude')},{c.get('longitude')}"
        name = f" {payload['name']}" if payload.get("name") else ""
        parts.append(f"[{ATTACHMENT_VI.get(kind, kind)}{name}] {where}".rstrip())
    return "\n".join(parts) or f"[{event_name}]"


class Intake:
    def __init__(self, engine: AsyncEngine, z: ZaloSettings, routing: Callable[[], Routing], *,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.engine = engine
        self.z = z
        self.routing = routing
        self.clock = clock
        self._sm = async_sessionmaker(engine, expire_on_commit=False)
        self.processed = 0

    async def write(self, record: dict) -> None:
        """Spool writer: process one spooled event exactly once. Raises only when the database
        is unavailable (the record then stays in the spool)."""
        key = record["key"]
        received_at = record.get("received_at") or self.clock()
        try:
            body = json.loads(record["body"])
        except (KeyError, ValueError):
            body = None
        for attempt in range(3):
            try:
                async with self._sm.begin() as s:
                    if (await s.execute(select(ZaloEvent.id).where(ZaloEvent.event_key == key))).first():
                        log.info("zalo event %s already processed", key)
                        return
                    status, code, note = await self._apply(s, body)
                    s.add(self._row(key, body, record, received_at, status, code, note))
                self.processed += 1
                return
            except IntegrityError:
                # Another writer took the same key or the same fresh case code: look again.
                if attempt == 2:
                    raise
            except DBAPIError:
                raise  # the database is unavailable: keep the event in the spool
            except Exception as e:
                log.exception("zalo event %s could not be processed", key)
                async with self._sm.begin() as s:
                    if not (await s.execute(select(ZaloEvent.id).where(ZaloEvent.event_key == key))).first():
                        s.add(self._row(key, body, record, received_at, "error", None, f"{e.__class__.__name__}: {e}"))
                return

    def _row(self, key: str, body: dict | None, record: dict, received_at: dt.datetime, status: str,
             code: str | None, note: str | None) -> ZaloEvent:
        body = body if isinstance(body, dict) else {}
        user = _user_of(body)
        msg = got if isinstance(got := body.get("message"), dict) else {}
        return ZaloEvent(event_key=key, event_name=str(body.get("event_name") or "?")[:64], user_id=user,
                         msg_id=(str(msg["msg_id"])[:80] if msg.get("msg_id") else None),
                         event_at=event_time(body) or received_at, received_at=received_at, processed_at=self.clock(),
                         body=record.get("body", ""), status=status, case_code=code, note=note)

    async def _apply(self, s: AsyncSession, body: dict | None) -> tuple[str, str | None, str | None]:
        if not isinstance(body, dict):
            raise ValueError("spooled body is not a JSON object")
        name = str(body.get("event_name"))
        when = event_time(body) or self.clock()
        if self.z.oa_id and _oa_of(body) not in (None, self.z.oa_id):
            log.warning("zalo event %s for OA %s ignored (this OA is %s)", name, _oa_of(body), self.z.oa_id)
            return "ignored", None, f"sự kiện của OA khác ({_oa_of(body)})"
        user_id = _user_of(body)
        if name in ("follow", "unfollow") and user_id:
            u = await self._user(s, user_id)
            u.following = name == "follow"
            if u.following:
                u.followed_at = when
            else:
                u.unfollowed_at = when
            u.last_interaction_at = _later(u.last_interaction_at, when) if u.following else u.last_interaction_at
            log.info("zalo %s by a citizen", name)
            return "processed", None, None
        if name == "user_submit_info" and user_id and isinstance(body.get("info"), dict):
            u = await self._user(s, user_id)
            info = body["info"]
            try:
                u.phone = normalize_phone(str(info.get("phone") or ""))
            except ValueError:
                pass
            u.name = (str(info.get("name"))[:200] if info.get("name") else u.name)
            u.last_interaction_at = _later(u.last_interaction_at, when)
            return "processed", None, "thông tin người dân chia sẻ"
        if name in CONTENT_EVENTS | JOIN_ONLY_EVENTS and user_id:
            return await self._message(s, name, body, user_id, when)
        log.info("zalo event %s acknowledged, not handled", name[:64])
        return "ignored", None, "loại sự kiện không xử lý"

    async def _message(self, s: AsyncSession, name: str, body: dict, user_id: str, when: dt.datetime):
        u = await self._user(s, user_id)
        u.last_interaction_at = _later(u.last_interaction_at, when)
        message = got if isinstance(got := body.get("message"), dict) else {}
        text = content(name, message)
        routing = self.routing()
        now = self.clock()
        if name == "user_send_text" and (code := lookup_code(str(message.get("text") or ""))) is not None:
            return await self._lookup(s, body, user_id, code, routing, now)
        if name == "user_send_text":
            answered = await Surveys(self.engine, self.z, routing.hotline.timezone).record_answer_in(
                s, user_id, str(message.get("text") or ""), when)
            if answered:
                outcome, reply = answered
                await enqueue(s, dedupe_key=f"auto:{_key(body)}", kind="auto_reply", channel="cs", now=now,
                              user_id=user_id, text=reply)
                return "processed", None, f"khảo sát: {outcome}"
        open_case = (await s.execute(
            select(Case).where(Case.channel == "zalo", Case.caller == user_id,
                               Case.status.in_(cases_mod.OPEN_STATUSES))
            .order_by(Case.received_at.desc(), Case.id.desc()).limit(1))).scalar_one_or_none()
        if open_case is not None:
            s.add(CaseEvent(case_id=open_case.id, at=when, actor=ACTOR, action="zalo_message", note=text))
            return "processed", open_case.code, "bổ sung vào phản ánh đang mở"
        if name in JOIN_ONLY_EVENTS:
            return "ignored", None, "nhãn dán/ảnh động không mở phản ánh mới"
        c = cases_mod.Cases(self.engine, routing)
        case = await c.create_in(s, cases_mod.NewCase(channel="zalo", caller=user_id, summary=text), actor=ACTOR,
                                 received_at=when)
        deadline = case.deadline_at.astimezone(_tz(routing)).strftime("%d/%m/%Y")
        await enqueue(s, dedupe_key=f"auto:{_key(body)}", kind="auto_reply", channel="cs", now=now, user_id=user_id,
                      case_code=case.code, text=AUTO_REPLY.format(code=case.code, deadline=deadline,
                                                                 hotline=routing.hotline.number))
        log.info("zalo message opened case %s", case.code)
        return "processed", case.code, "phản ánh mới"

    async def _lookup(self, s: AsyncSession, body: dict, user_id: str, code: str, routing: Routing,
                      now: dt.datetime) -> tuple[str, str | None, str]:
        """``TC <code>``: the case's status and answer, only to its own citizen; anyone else,
        and an unknown code, get the same reply. Opens no case and joins none."""
        case = await lookup_mod.find(s, code, zalo_user=user_id)
        if case is None:
            text = LOOKUP_NOT_FOUND.format(code=code[:12])
        else:
            lookup_mod.record_reveal(s, case, "zalo", now)
            text = lookup_reply(lookup_mod.PublicView.of(case), _tz(routing))
        for i, part in enumerate(split_text(text, TEXT_LIMIT - 12), 1):
            await enqueue(s, dedupe_key=f"lookup:{_key(body)}:{i}", kind="auto_reply", channel="cs", now=now,
                          user_id=user_id, case_code=case.code if case else None, text=part)
        log.info("zalo look-up of a case: %s", "found" if case else "not found")
        return "processed", case.code if case else None, "tra cứu: " + ("tìm thấy" if case else "không tìm thấy")

    async def _user(self, s: AsyncSession, user_id: str) -> ZaloUser:
        u = await s.get(ZaloUser, user_id)
        if u is None:
            u = ZaloUser(user_id=user_id, following=False)
            s.add(u)
        return u


def lookup_code(text: str) -> str | None:
    """The code of a look-up message (``TC 123456``, ``tra cứu 123456``, any case, with or
    without diacritics), else None."""
    plain = unicodedata.normalize("NFD", text).replace("đ", "d").replace("Đ", "D")
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    m = LOOKUP_TEXT.fullmatch(plain.strip())
    return m.group(1) if m else None


def lookup_reply(view: lookup_mod.PublicView, tz) -> str:
    lines = [f"Phản ánh mã {view.code}: {view.status.label}."]
    if view.agencies:
        lines.append("Cơ quan giải quyết: " + ", ".join(view.agencies) + ".")
    if view.deadline_at is not None:
        lines.append(f"Hạn trả lời: {view.deadline_at.astimezone(tz):%d/%m/%Y}.")
    if view.answer:
        lines.append("Nội dung trả lời: " + view.answer)
    return "\n".join(lines)


def _tz(routing: Routing):
    import zoneinfo

    return zoneinfo.ZoneInfo(routing.hotline.timezone)


def _user_of(body: dict) -> str | None:
    for k in ("sender", "follower", "user"):
        v = body.get(k)
        if isinstance(v, dict) and v.get("id"):
            return str(v["id"])[:64]
    return None


def _oa_of(body: dict) -> str | None:
    if body.get("oa_id"):
        return str(body["oa_id"])
    r = body.get("recipient")
    return str(r["id"]) if isinstance(r, dict) and r.get("id") else None


def _key(body: dict) -> str:
    msg = got if isinstance(got := body.get("message"), dict) else {}
    return str(msg.get("msg_id") or body.get("timestamp"))


def _later(a: dt.datetime | None, b: dt.datetime) -> dt.datetime:
    return b if a is None or b > a else a
