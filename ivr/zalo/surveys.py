"""SIPAS-style satisfaction surveys of people who completed a procedure.

Sở Nội vụ periodically surveys, through the OA, people who did a procedure at the Public
Administration Center or a one-stop desk (Kế hoạch tổng đài CCHC, II.2). The flow:

- ``tongdai surveys import FILE.csv``: columns ``phone,name,procedure,office,completed_at``;
  every row is checked first and nothing is written unless all are valid; a person already
  imported for the same procedure and completion time is skipped, so importing twice is harmless.
- ``tongdai surveys send`` (and ``tongdai serve`` every ``TONGDAI_ZALO_SURVEY_EVERY`` minutes):
  each pending person gets one survey through the outbox (quiet hours apply), as a ZNS template
  message to the phone number when ``TONGDAI_ZALO_ZNS_TEMPLATE_ID`` is set
  (https://developers.zalo.me/docs/zalo-notification-service/gui-tin-zns/gui-zns, ``phone`` in
  the 84… form), otherwise as an OA message when the number belongs to a follower who shared it;
  nobody else can be reached and is marked ``skipped`` with the reason.
- The citizen answers on the OA chat: ``KS <code> a b c d e [comment]``, five ratings 1–5 for
  access to the service, the procedure, the official who handled it, the result and the handling
  of comments and complaints. The code may be left out by someone who got exactly one survey
  as an OA message. One answer per survey; it is stored against the person and the office.
- ``tongdai surveys report --month YYYY-MM``: averages per office, beside the phone survey
  (the 1–5 score after a hotline call) per agency.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets as _random
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ivr.config.settings import ZaloSettings
from ivr.models.calls import Call
from ivr.models.zalo import SurveyAnswer, SurveyRecipient, ZaloUser
from ivr.zalo.outbox import enqueue

COLUMNS = ("phone", "name", "procedure", "office", "completed_at")
MAX_CSV_BYTES = 64 << 20
QUESTIONS = (
    ("q_access", "Tiếp cận dịch vụ"),
    ("q_procedure", "Thủ tục hành chính"),
    ("q_official", "Công chức giải quyết"),
    ("q_result", "Kết quả giải quyết"),
    ("q_complaints", "Tiếp nhận, xử lý góp ý, phản ánh"),
)
SURVEY_TEXT = (
    "Kính gửi {name},\n"
    "Cảm ơn Ông/Bà đã thực hiện thủ tục \"{procedure}\" tại {office} ngày {date}. "
    "Để giúp nâng cao chất lượng phục vụ, xin Ông/Bà chấm điểm từ 1 (rất không hài lòng) đến 5 "
    "(rất hài lòng) cho 5 nội dung: (1) tiếp cận dịch vụ, (2) thủ tục hành chính, (3) công chức trực "
    "tiếp giải quyết, (4) kết quả giải quyết, (5) tiếp nhận và xử lý góp ý, phản ánh.\n"
    "Xin trả lời tin nhắn này theo mẫu: KS {code} 5 5 4 5 5 góp ý (nếu có)."
)
THANKS_TEXT = "Cảm ơn Ông/Bà đã tham gia khảo sát (phiếu {code}). Ý kiến của Ông/Bà đã được ghi nhận."
UNKNOWN_TEXT = ("Không tìm thấy phiếu khảo sát{code} dành cho Ông/Bà. Xin kiểm tra lại mã phiếu trong tin nhắn "
                "khảo sát. Nếu Ông/Bà muốn phản ánh, xin gửi nội dung không bắt đầu bằng KS.")
AMBIGUOUS_TEXT = "Ông/Bà có nhiều phiếu khảo sát, xin ghi kèm mã phiếu: KS <mã phiếu> 5 5 4 5 5 góp ý (nếu có)."
ALREADY_TEXT = "Phiếu khảo sát {code} đã được trả lời trước đó. Cảm ơn Ông/Bà."


class SurveyError(Exception):
    """Bad input from staff; the message is Vietnamese."""


def normalize_phone(raw: str) -> str:
    """A Vietnamese mobile number in the 84… form Zalo's ZNS expects."""
    d = re.sub(r"[\s.\-()]", "", raw or "")
    if d.startswith("+"):
        d = d[1:]
    if not d.isdigit():
        raise ValueError(raw)
    if d.startswith("0"):
        d = "84" + d[1:]
    elif not d.startswith("84"):
        d = "84" + d
    if not 11 <= len(d) <= 12:
        raise ValueError(raw)
    return d


def parse_time(raw: str, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    raw = (raw or "").strip()
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d",
                "%d/%m/%Y %H:%M", "%d/%m/%Y"):
        try:
            local = dt.datetime.strptime(raw, fmt)
        except ValueError:
            continue
        if not 1900 <= local.year <= 9998:  # year 1 or 9999 overflow once moved to UTC
            raise ValueError(raw)
        return local.replace(tzinfo=tz).astimezone(dt.timezone.utc)
    raise ValueError(raw)


@dataclass
class ImportReport:
    added: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


ANSWER = re.compile(r"^\s*KS\b[\s:.\-#]*(?:(\d{6})\b)?[\s:.\-,;]*"
                    r"([1-5])[\s,.;/\-]*([1-5])[\s,.;/\-]*([1-5])[\s,.;/\-]*([1-5])[\s,.;/\-]*([1-5])(?!\d)"
                    r"[\s:.,;\-]*(.*)$", re.IGNORECASE | re.DOTALL)


def parse_answer(text: str) -> tuple[str | None, list[int], str | None] | None:
    """``KS [code] a b c d e [comment]`` → (code, five scores, comment); None if not an answer."""
    m = ANSWER.match(text or "")
    if not m:
        return None
    comment = m.group(7).strip() or None
    return m.group(1), [int(m.group(i)) for i in range(2, 7)], comment


class Surveys:
    def __init__(self, engine: AsyncEngine, z: ZaloSettings | None, tz: str):
        self.engine = engine
        self.z = z
        self.tz = zoneinfo.ZoneInfo(tz)
        self._sm = async_sessionmaker(engine, expire_on_commit=False)

    # ------------------------------------------------------------------ import

    async def import_csv(self, path: Path, now: dt.datetime) -> ImportReport:
        rep = ImportReport()
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_CSV_BYTES + 1)
        except OSError as e:
            raise SurveyError(f"không đọc được {path}: {e.strerror or e}") from None
        if len(data) > MAX_CSV_BYTES:
            raise SurveyError(f"{path}: lớn hơn {MAX_CSV_BYTES >> 20} MiB, không phải danh sách khảo sát")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1
            raise SurveyError(f"{path.name}:{line}: không phải văn bản UTF-8; trong Excel hãy lưu lại dưới dạng "
                              "'CSV UTF-8'") from None
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SurveyError(f"{path.name}: thiếu cột {', '.join(missing)} (cần: {','.join(COLUMNS)})")
        rows: list[dict] = []
        seen: set[tuple] = set()
        for n, row in enumerate(reader, start=2):
            where = f"{path.name}:{n}"
            try:
                phone = normalize_phone(row["phone"])
            except ValueError:
                rep.errors.append(f"{where}: số điện thoại '{row['phone']}' không hợp lệ")
                continue
            try:
                completed = parse_time(row["completed_at"], self.tz)
            except ValueError:
                rep.errors.append(f"{where}: thời điểm hoàn thành '{row['completed_at']}' không hợp lệ "
                                  "(YYYY-MM-DD[ HH:MM] hoặc DD/MM/YYYY[ HH:MM])")
                continue
            blank = [c for c in ("name", "procedure", "office") if not (row.get(c) or "").strip()]
            if blank:
                rep.errors.append(f"{where}: cột {', '.join(blank)} để trống")
                continue
            key = (phone, row["procedure"].strip(), completed)
            if key in seen:
                rep.skipped += 1
                continue
            seen.add(key)
            rows.append({"phone": phone, "name": row["name"].strip(), "procedure": row["procedure"].strip(),
                         "office": row["office"].strip(), "completed_at": completed})
        if rep.errors:
            return rep  # nothing is written unless every row is valid
        async with self._sm.begin() as s:
            for r in rows:
                exists = (await s.execute(select(SurveyRecipient.id).where(
                    SurveyRecipient.phone == r["phone"], SurveyRecipient.procedure == r["procedure"],
                    SurveyRecipient.completed_at == r["completed_at"]))).first()
                if exists:
                    rep.skipped += 1
                    continue
                s.add(SurveyRecipient(code=await self._new_code(s), imported_at=now, status="pending", **r))
                await s.flush()
                rep.added += 1
        return rep

    async def _new_code(self, s: AsyncSession) -> str:
        for _ in range(50):
            code = str(_random.randbelow(900000) + 100000)
            if (await s.execute(select(SurveyRecipient.id).where(SurveyRecipient.code == code))).first() is None:
                return code
        raise SurveyError("không tạo được mã phiếu khảo sát")  # pragma: no cover

    # ------------------------------------------------------------------ send

    async def enqueue_pending(self, now: dt.datetime) -> dict[str, int]:
        """Queue one survey for each pending person; returns counts by channel and skipped."""
        counts = {"zns": 0, "cs": 0, "skipped": 0}
        async with self._sm.begin() as s:
            pending = list((await s.execute(select(SurveyRecipient).where(SurveyRecipient.status == "pending")
                                            .order_by(SurveyRecipient.id))).scalars().all())
            for r in pending:
                date = r.completed_at.astimezone(self.tz).strftime("%d/%m/%Y")
                if self.z and self.z.zns_template_id:
                    data = {"customer_name": r.name, "procedure": r.procedure[:200], "office": r.office[:200],
                            "date": date, "code": r.code}
                    await enqueue(s, dedupe_key=f"survey:{r.id}", kind="survey", channel="zns", now=now,
                                  phone=r.phone, template_id=self.z.zns_template_id, template_data=data, survey_id=r.id)
                    r.status, r.channel = "queued", "zns"
                    counts["zns"] += 1
                    continue
                user = (await s.execute(select(ZaloUser).where(ZaloUser.phone == r.phone, ZaloUser.following.is_(True))
                                        .limit(1))).scalar_one_or_none()
                if user is None:
                    r.status = "skipped"
                    r.reason = ("không gửi được: chưa cấu hình mẫu ZNS (TONGDAI_ZALO_ZNS_TEMPLATE_ID) và số điện thoại "
                                "không thuộc người quan tâm OA nào")
                    counts["skipped"] += 1
                    continue
                text = SURVEY_TEXT.format(name=r.name, procedure=r.procedure, office=r.office, date=date, code=r.code)
                await enqueue(s, dedupe_key=f"survey:{r.id}", kind="survey", channel="cs", now=now,
                              user_id=user.user_id, text=text, survey_id=r.id)
                r.status, r.channel, r.zalo_user_id = "queued", "cs", user.user_id
                counts["cs"] += 1
        return counts

    # ------------------------------------------------------------------ answers

    async def record_answer_in(self, s: AsyncSession, user_id: str, text: str, now: dt.datetime
                               ) -> tuple[str, str] | None:
        """If ``text`` is a survey answer (``KS …``), store it (caller's transaction) and return
        (outcome, reply to send); None when the text is not a survey answer at all."""
        parsed = parse_answer(text)
        if parsed is None:
            return None
        code, scores, comment = parsed
        q = select(SurveyRecipient).where(SurveyRecipient.status.in_(("queued", "sent", "answered")))
        if code:
            q = q.where(SurveyRecipient.code == code)
        else:
            q = q.where(SurveyRecipient.zalo_user_id == user_id)
        found = list((await s.execute(q.limit(2))).scalars().all())
        if not found:
            return ("unknown", UNKNOWN_TEXT.format(code=f" mã {code}" if code else ""))
        if len(found) > 1:
            return ("ambiguous", AMBIGUOUS_TEXT)
        r = found[0]
        if r.status == "answered":
            return ("already", ALREADY_TEXT.format(code=r.code))
        s.add(SurveyAnswer(recipient_id=r.id, office=r.office, answered_at=now, comment=comment, zalo_user_id=user_id,
                           **{name: v for (name, _), v in zip(QUESTIONS, scores)}))
        await s.execute(update(SurveyRecipient).where(SurveyRecipient.id == r.id)
                        .values(status="answered", zalo_user_id=r.zalo_user_id or user_id))
        return ("answered", THANKS_TEXT.format(code=r.code))

    # ------------------------------------------------------------------ report

    async def report(self, month: str) -> dict:
        try:
            start_local = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=self.tz)
        except ValueError:
            raise SurveyError(f"tháng {month[:40]!r} không hợp lệ (YYYY-MM)") from None
        if not 1900 <= start_local.year <= 9998:
            raise SurveyError(f"tháng '{month}': năm phải từ 1900 đến 9998")
        end_local = (start_local + dt.timedelta(days=32)).replace(day=1)
        start, end = start_local.astimezone(dt.timezone.utc), end_local.astimezone(dt.timezone.utc)
        cols = [getattr(SurveyAnswer, name) for name, _ in QUESTIONS]
        async with self._sm() as s:
            zalo = (await s.execute(
                select(SurveyAnswer.office, func.count(SurveyAnswer.id), *[func.avg(c) for c in cols])
                .where(SurveyAnswer.answered_at >= start, SurveyAnswer.answered_at < end)
                .group_by(SurveyAnswer.office).order_by(SurveyAnswer.office))).all()
            sent = (await s.execute(
                select(SurveyRecipient.office, func.count(SurveyRecipient.id))
                .where(SurveyRecipient.sent_at >= start, SurveyRecipient.sent_at < end)
                .group_by(SurveyRecipient.office))).all()
            phone = (await s.execute(
                select(Call.agency_name, func.count(Call.survey_score), func.avg(Call.survey_score))
                .where(Call.started_at >= start, Call.started_at < end, Call.survey_score.is_not(None))
                .group_by(Call.agency_name).order_by(Call.agency_name))).all()
        return {
            "month": month,
            "zalo": [{"office": o, "answers": n, "scores": [None if a is None else float(a) for a in avgs]}
                     for o, n, *avgs in zalo],
            "sent": {o: n for o, n in sent},
            "phone": [{"agency": a or "-", "answers": n, "score": float(avg)} for a, n, avg in phone],
        }
