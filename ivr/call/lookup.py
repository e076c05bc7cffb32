"""Menu key 0: a caller follows their case by its code.

The caller keys the six-digit code and ``#`` (``menu.first_digit_timeout`` for the first key,
``menu.inter_digit_timeout`` between keys; six digits and a pause do too). The case is told only
to the number that made it (:mod:`ivr.records.lookup`): an unknown code and someone else's code
both get the same "not found from your number". Three tries, then back to the menu.

A found case is told as: its status in words, the agencies handling it, the deadline as a date
while it is open (Asterisk says the numbers, in Vietnamese), and once answered the answer itself,
spoken from the speech cache (:mod:`ivr.pbx.speech`). The call never waits on synthesis: a text
not synthesised yet is started in the background and, for the answer, checked again after the
status has been said; if still not ready, the caller is told it is not available yet. Then 1
hears it again, 2 records a further complaint, kept in the case's history as a reopen request
(not a new case).

The call's events say what was keyed and whether a case was found; ``case_code`` is set only
when a case was told.
"""

from __future__ import annotations

import asyncio
import logging
import zoneinfo
from typing import TYPE_CHECKING

from ivr.call import complaint, prompt
from ivr.call.errors import CallerHangup
from ivr.records.lookup import CODE, Lookup, PublicView

if TYPE_CHECKING:
    from ivr.call.session import CallSession

log = logging.getLogger("tongdai.lookup")

TRIES = 3
KEYS = 8  # a little more than a code: a slip is heard as a wrong code, not cut to six digits
MAX_REPEATS = 5
DB_TIMEOUT = 5


async def run(session: CallSession) -> str:
    """``done`` (a case was told, or the look-up cannot be done now: the call ends) or ``menu``
    (no case after three tries)."""
    m = session.routing.menu
    service = Lookup(session.ctx.calllog.engine)
    lead: list[str] = []
    for attempt in range(1, TRIES + 1):
        res = await prompt.play(session, lead + ["lookup_enter_code"], max_digits=KEYS, terminator="#",
                                first_timeout=m.first_digit_timeout, inter_timeout=m.inter_digit_timeout)
        if res.status == "hangup":
            raise CallerHangup()
        keyed = res.digits if res.status == "digits" else ""
        if not CODE.fullmatch(keyed):
            session.rec.event("lookup_keyed", keyed=keyed, found=False, attempt=attempt,
                              why="no_input" if not keyed else "not_a_code")
            lead = ["no_input"] if not keyed else ["lookup_bad_code"]
            continue
        try:
            view = await asyncio.wait_for(service.by_number(keyed, session.rec.caller), DB_TIMEOUT)
        except Exception as e:  # the database is down: say so, never dead air
            log.error("call=%s look-up of %s failed: %s", session.id, keyed, e.__class__.__name__)
            session.rec.event("lookup_failed", keyed=keyed, error=f"{e.__class__.__name__}: {e}"[:200])
            await _say(session, ["lookup_unavailable", "goodbye"])
            return "done"
        session.rec.event("lookup_keyed", keyed=keyed, found=view is not None, attempt=attempt)
        if view is None:
            lead = ["lookup_not_found"]
            continue
        session.rec.case_code = view.code
        log.info("call=%s case %s told to its caller (%s)", session.id, view.code, view.status.value)
        await _tell(session, view, service)
        return "done"
    session.rec.event("lookup_gave_up", tries=TRIES)
    await _say(session, lead)  # what the last try got wrong, then the menu
    return "menu"


async def _tell(session: CallSession, view: PublicView, service: Lookup) -> None:
    first_timeout = session.routing.menu.first_digit_timeout
    if view.answer:
        _spoken(session, view.answer)  # not ready? started now: it may be by the end of the status
    for _ in range(MAX_REPEATS):
        res = await prompt.play(session, _summary(session, view), max_digits=1)
        if res.status == "hangup":
            raise CallerHangup()
        key = res.digits
        if not key:
            # Checked only now: an answer started when the call found it missing may be ready.
            res = await prompt.play(session, _answer(session, view) + ["lookup_options"], max_digits=1,
                                    first_timeout=first_timeout)
            if res.status == "hangup":
                raise CallerHangup()
            key = res.digits
        if key == "1":
            session.rec.event("lookup_repeat", code=view.code)
            continue
        if key == "2":
            await _further(session, view, service)
            return
        break
    await _say(session, ["thanks"])


def _summary(session: CallSession, view: PublicView) -> list[str]:
    """Status, agencies, deadline: fixed prompts, numbers said by Asterisk, agency names from the
    speech cache (skipped, and started, when not synthesised yet)."""
    media = [f"lookup_status_{view.status.value}"]
    names = [n for n in (_spoken(session, a) for a in view.agencies) if n]
    if names:
        media += ["lookup_agency", *names]
    if view.deadline_at is not None:
        d = view.deadline_at.astimezone(zoneinfo.ZoneInfo(session.routing.hotline.timezone))
        media += ["lookup_deadline", f"number:{d.day}", f"sound:digits/mon-{d.month - 1}", "lookup_year",
                  f"number:{d.year}"]
    return media


def _answer(session: CallSession, view: PublicView) -> list[str]:
    if not view.answer:
        return []
    spoken = _spoken(session, view.answer)
    session.rec.event("lookup_answer", code=view.code, ready=spoken is not None)
    return ["lookup_answer_is", spoken] if spoken else ["lookup_answer_not_ready"]


def _spoken(session: CallSession, text: str) -> str | None:
    speech = session.ctx.speech
    if speech is None:
        return None
    media = speech.ready(text)
    if media is None:
        speech.prepare_soon(text)
    return media


async def _further(session: CallSession, view: PublicView, service: Lookup) -> None:
    """Key 2: record what the caller adds and put it in the case's history."""
    r = session.routing
    if (await prompt.play(session, ["lookup_further_offer"])).status == "hangup":
        raise CallerHangup()
    path, seconds, hung_up = await complaint.record(session, r.complaints.max_seconds, r.complaints.silence_seconds)
    stored = False
    if path is not None and seconds > 0.3:
        rel = str(path.relative_to(session.ctx.home))
        note = f"Người dân gửi thêm ý kiến qua điện thoại sau khi tra cứu; ghi âm {seconds:.0f} giây: {rel}"
        try:
            stored = await asyncio.wait_for(service.further(view.code, session.rec.caller, note=note), DB_TIMEOUT)
        except Exception as e:  # the recording stays on disk and in this call's events
            log.error("call=%s further complaint on %s not stored: %s", session.id, view.code, e.__class__.__name__)
        session.rec.event("reopen_request", code=view.code, file=rel, seconds=round(seconds, 2), stored=stored)
    else:
        session.rec.event("recording_empty")
    if hung_up:
        raise CallerHangup()
    if path is not None and seconds > 0.3 and not stored:
        await _say(session, ["sorry"])  # recorded but not filed: the caller must not think it was
        return
    await _say(session, ["lookup_further_done" if stored else "no_recording", "thanks"])


async def _say(session: CallSession, sounds: list[str]) -> None:
    if sounds and (await prompt.play(session, sounds)).status == "hangup":
        raise CallerHangup()
