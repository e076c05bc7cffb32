"""The outbox: every message to a citizen on Zalo waits here until Zalo accepts or refuses it.

Three kinds: the automatic reply that gives the case code (``auto_reply``), a staff answer to a
case (``answer``) and a satisfaction survey (``survey``). A sender pass takes the items that are
due, claims each (a compare-and-set on the row, so ``tongdai serve`` and a ``tongdai surveys
send`` never both send one item), sends it, and records the outcome:

- accepted: ``sent``, with Zalo's message id; the case history or the survey records it;
- a passing failure (network, HTTP error, rate limit -32, ZNS -100/-144): tried again after
  ``base_delay * 2**(attempts-1)`` (at most ``max_delay``), ``failed`` after ``max_attempts``;
- an invalid or expired access token (-216, -220, ZNS -124): the token is refreshed and the
  message sent again at once;
- refused for the hour (-234, ZNS -133): tried again when the quiet hours end;
- refused for good (e.g. -230: the citizen has not interacted with the OA for 7 days, so the
  customer-service window is closed): ``failed`` with the reason in Vietnamese; for an answer a
  case event tells staff to call the citizen instead.

Quiet hours (default 22:00–06:00, hotline time zone): no answer and no survey is sent then; they
wait for the end of the range. The automatic reply is exempt: it answers a message the citizen
has just sent, and Zalo allows customer-service messages around the clock
(https://developers.zalo.me/docs/official-account/tin-nhan/tin-tu-van/dieu-kien-gui-tin-tu-van).

A crash between Zalo's acceptance and the row update sends that message again on restart (after
the claim expires): at-least-once, never lost.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ivr.models.cases import Case, CaseEvent
from ivr.models.zalo import OutboxItem, SurveyRecipient
from ivr.zalo.api import TEXT_LIMIT, Result, TokenError, ZaloApi
from ivr.zalo.tokens import TokenManager, utcnow

log = logging.getLogger("tongdai.zalo.outbox")

Clock = Callable[[], dt.datetime]
CLAIM = dt.timedelta(minutes=2)


@dataclass(frozen=True)
class QuietHours:
    start: dt.time
    end: dt.time
    tz: zoneinfo.ZoneInfo

    @classmethod
    def parse(cls, start: str, end: str, tz: str) -> QuietHours:
        return cls(dt.time.fromisoformat(start), dt.time.fromisoformat(end), zoneinfo.ZoneInfo(tz))

    def contains(self, t: dt.datetime) -> bool:
        local = t.astimezone(self.tz).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight

    def end_after(self, t: dt.datetime) -> dt.datetime:
        """The first end of the quiet hours after ``t`` (UTC)."""
        local = t.astimezone(self.tz)
        end = dt.datetime.combine(local.date(), self.end, tzinfo=self.tz)
        if end <= local:
            end += dt.timedelta(days=1)
        return end.astimezone(dt.timezone.utc)

    def label(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Zalo takes at most 2000 characters a text message: split at a line or word break."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit)
        if cut < limit // 2:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    parts.append(text)
    return parts


async def enqueue(s: AsyncSession, *, dedupe_key: str, kind: str, channel: str, now: dt.datetime,
                  user_id: str | None = None, phone: str | None = None, text: str | None = None,
                  template_id: str | None = None, template_data: dict | None = None,
                  case_code: str | None = None, survey_id: int | None = None) -> bool:
    """Queue a message inside the caller's transaction; a second call with the same key is a
    no-op (returns False)."""
    if (await s.execute(select(OutboxItem.id).where(OutboxItem.dedupe_key == dedupe_key))).first():
        return False
    s.add(OutboxItem(dedupe_key=dedupe_key, kind=kind, channel=channel, user_id=user_id, phone=phone, text=text,
                     template_id=template_id, template_data=template_data, case_code=case_code,
                     survey_id=survey_id, status="pending", attempts=0, created_at=now, next_attempt_at=now))
    return True


async def enqueue_answer(s: AsyncSession, case: Case, now: dt.datetime) -> int:
    """Queue a staff answer to a Zalo case (called by the case lifecycle, same transaction)."""
    if not case.caller:
        return 0
    n = 0
    header = f"Trả lời phản ánh mã {case.code}:\n"
    parts = split_text(header + (case.answer or ""), TEXT_LIMIT - 12)  # room for " (i/n)"
    stamp = now.strftime("%Y%m%dT%H%M%S%f")
    for i, part in enumerate(parts, 1):
        label = f" ({i}/{len(parts)})" if len(parts) > 1 else ""
        n += await enqueue(s, dedupe_key=f"answer:{case.code}:{stamp}:{i}", kind="answer", channel="cs", now=now,
                           user_id=case.caller, text=part + label, case_code=case.code)
    s.add(CaseEvent(case_id=case.id, at=now, actor="system", action="zalo_queued",
                    note="câu trả lời được xếp hàng gửi qua Zalo"))
    return n


class Outbox:
    def __init__(self, engine: AsyncEngine, api: ZaloApi, tokens: TokenManager, quiet: QuietHours, *,
                 clock: Clock = utcnow, max_attempts: int = 8, base_delay: float = 30, max_delay: float = 3600,
                 batch: int = 20):
        self.engine = engine
        self.api = api
        self.tokens = tokens
        self.quiet = quiet
        self.clock = clock
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.batch = batch
        self._sm = async_sessionmaker(engine, expire_on_commit=False)

    def backoff(self, attempts: int) -> dt.timedelta:
        return dt.timedelta(seconds=min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1)))

    async def run_once(self, kinds: tuple[str, ...] | None = None) -> int:
        """One pass over the due items; returns how many were attempted."""
        now = self.clock()
        due = or_(and_(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now),
                  and_(OutboxItem.status == "sending", OutboxItem.claimed_until < now))
        q = select(OutboxItem).where(due).order_by(OutboxItem.next_attempt_at, OutboxItem.id).limit(self.batch)
        if kinds:
            q = q.where(OutboxItem.kind.in_(kinds))
        async with self._sm() as s:
            items = list((await s.execute(q)).scalars().all())
        done = 0
        for item in items:
            if item.kind != "auto_reply" and self.quiet.contains(now):
                await self._hold(item, now)
                continue
            if not await self._claim(item, now):
                continue
            done += 1
            result = await self._send(item)
            await self._record(item, result, self.clock())
        return done

    async def _hold(self, item: OutboxItem, now: dt.datetime) -> None:
        until = self.quiet.end_after(now)
        async with self._sm.begin() as s:
            await s.execute(update(OutboxItem).where(OutboxItem.id == item.id, OutboxItem.status == "pending")
                            .values(next_attempt_at=until,
                                    reason=f"giờ yên lặng {self.quiet.label()}: chờ gửi lúc {until.astimezone(self.quiet.tz):%H:%M %d/%m}"))

    async def _claim(self, item: OutboxItem, now: dt.datetime) -> bool:
        async with self._sm.begin() as s:
            r = await s.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item.id,
                       or_(OutboxItem.status == "pending",
                           and_(OutboxItem.status == "sending", OutboxItem.claimed_until < now)))
                .values(status="sending", claimed_until=now + CLAIM))
            return cast(CursorResult, r).rowcount == 1  # an UPDATE's result is a CursorResult, typed as Result

    async def _send(self, item: OutboxItem) -> Result:
        try:
            token = await self.tokens.access_token()
        except TokenError as e:
            return Result(error=0, transport=str(e))
        result = await self._call(item, token)
        if result.kind == "token":
            log.warning("zalo outbox #%d: access token refused (%d), refreshing", item.id, result.error)
            try:
                token = (await self.tokens.refresh(rejected=token)).access_token
            except TokenError as e:
                return Result(error=0, transport=str(e))
            result = await self._call(item, token)
        return result

    async def _call(self, item: OutboxItem, token: str) -> Result:
        if item.channel == "zns":
            return await self.api.send_zns(token, item.phone or "", item.template_id or "", item.template_data or {},
                                           tracking_id=item.dedupe_key)
        return await self.api.send_text(token, item.user_id or "", item.text or "")

    async def _record(self, item: OutboxItem, r: Result, now: dt.datetime) -> None:
        attempts = item.attempts + 1
        values: dict = {"attempts": attempts, "claimed_until": None}
        side: tuple[str, str] | None = None
        if r.ok:
            values.update(status="sent", sent_at=now, reason=None, zalo_error=None,
                          zalo_msg_id=str(r.data.get("message_id") or r.data.get("msg_id") or "") or None)
            side = ("sent", "")
            log.info("zalo outbox #%d (%s) sent", item.id, item.kind)
        elif r.kind == "night":
            until = self.quiet.end_after(now) if self.quiet.contains(now) else now + self.backoff(attempts)
            values.update(status="pending", next_attempt_at=until, zalo_error=r.error, reason=r.reason)
            log.info("zalo outbox #%d refused for the hour (%d): again at %s", item.id, r.error, until.isoformat())
        elif r.kind in ("retry", "token") and attempts < self.max_attempts:
            values.update(status="pending", next_attempt_at=now + self.backoff(attempts),
                          zalo_error=r.error or None, reason=r.reason)
            log.warning("zalo outbox #%d (%s) attempt %d failed: %s", item.id, item.kind, attempts, r.reason)
        else:
            why = r.reason if r.kind == "final" else f"đã thử {attempts} lần, lần cuối: {r.reason}"
            values.update(status="failed", failed_at=now, zalo_error=r.error or None, reason=why)
            side = ("failed", why)
            log.error("zalo outbox #%d (%s) failed: %s", item.id, item.kind, why)
        async with self._sm.begin() as s:
            await s.execute(update(OutboxItem).where(OutboxItem.id == item.id).values(**values))
            if side:
                await self._side_effects(s, item, side[0], side[1], now)

    async def _side_effects(self, s: AsyncSession, item: OutboxItem, outcome: str, why: str, now: dt.datetime) -> None:
        if item.kind == "answer" and item.case_code:
            case_id = (await s.execute(select(Case.id).where(Case.code == item.case_code))).scalar_one_or_none()
            if case_id is not None:
                if outcome == "sent":
                    s.add(CaseEvent(case_id=case_id, at=now, actor="system", action="zalo_sent",
                                    note="câu trả lời đã được gửi tới người dân qua Zalo"))
                else:
                    s.add(CaseEvent(case_id=case_id, at=now, actor="system", action="zalo_failed",
                                    note=f"không gửi được câu trả lời qua Zalo: {why}. "
                                         "Đề nghị liên hệ người dân bằng điện thoại hoặc cách khác."))
        elif item.kind == "survey" and item.survey_id:
            values = {"status": "sent", "sent_at": now, "reason": None} if outcome == "sent" else \
                {"status": "failed", "reason": why}
            await s.execute(update(SurveyRecipient).where(SurveyRecipient.id == item.survey_id,
                                                          SurveyRecipient.status == "queued").values(**values))

    async def list(self, *, status: str | None = None, limit: int = 100) -> list[OutboxItem]:
        q = select(OutboxItem).order_by(OutboxItem.id.desc()).limit(limit)
        if status:
            q = q.where(OutboxItem.status == status)
        async with self._sm() as s:
            return list((await s.execute(q)).scalars().all())
