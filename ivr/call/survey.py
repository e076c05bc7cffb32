"""The post-call survey: after the staff member hangs up, the caller rates the call 1 to 5.

No input or a key outside 1–5 means no score; the caller is thanked and the call ends —
never a loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.call import prompt
from ivr.call.errors import CallerHangup

if TYPE_CHECKING:
    from ivr.call.session import CallSession


async def run(session: CallSession) -> int | None:
    s = session.routing.survey
    res = await prompt.play(session, ["survey"], max_digits=1, first_timeout=s.timeout)
    if res.status == "hangup":
        raise CallerHangup()
    score = int(res.digits) if res.digits in ("1", "2", "3", "4", "5") else None
    session.rec.survey_score = score
    session.rec.event("survey", score=score, pressed=res.digits or None)
    if (await prompt.play(session, ["survey_thanks" if score else "thanks"])).status == "hangup":
        raise CallerHangup()
    return score
