"""Play prompts to the caller and collect digits, with barge-in.

A digit pressed while a prompt plays stops it and counts. The outcome is typed:
``PromptResult(status, digits)`` with status ``digits``, ``timeout``, ``done`` (nothing to
collect) or ``hangup``. Whether the collected digits are complete is decided by a pluggable
matcher (default: ``max_digits`` reached or ``#`` pressed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.call.errors import VALID_DTMF, CallerHangup

if TYPE_CHECKING:
    from ivr.call.session import CallSession

log = logging.getLogger("tongdai.prompt")


@dataclass(frozen=True)
class PromptResult:
    status: str  # "digits", "timeout", "done", "hangup"
    digits: str = ""


Matcher = Callable[[str], bool]


def length_matcher(max_digits: int, terminator: str | None = "#") -> Matcher:
    return lambda d: len(d) >= max_digits or (terminator is not None and d.endswith(terminator))


def _digit(session: CallSession, ev: dict, during: str) -> str | None:
    """The digit of a DTMF event, logged on the call's timeline; None (and a log line) if malformed."""
    d = str(ev.get("digit", ""))
    if not VALID_DTMF.match(d):
        log.info("call=%s malformed digit %r ignored", session.id, d)
        return None
    session.rec.event("dtmf", digit=d, during=during)
    return d


async def play(session: CallSession, sounds: list[str], *, max_digits: int = 0, first_timeout: float = 0,
               inter_timeout: float = 3, terminator: str | None = None, matcher: Matcher | None = None,
               interrupt: bool = True) -> PromptResult:
    """Play ``sounds`` (prompt names under ``tongdai/``, or media URIs such as ``digits:482913``)
    and, if ``max_digits``, collect up to that many digits.

    ``first_timeout`` is how long to wait for the first digit once the prompts have finished.
    ``terminator`` (e.g. ``#``) ends the input early and is not part of the result; without one,
    every key is a digit (a one-key menu treats ``#`` as a choice like any other).
    """
    matcher = matcher or length_matcher(max_digits, terminator)
    digits = ""
    ev: dict | None  # never None while a playback runs (no timeout), None on a wait's timeout
    try:
        if sounds:
            pb = session.new_id("pb")
            session.playback_id = pb  # chosen by us and recorded before the playback starts
            # A bare name is one of our prompts; "digits:123" and other ARI media URIs pass through.
            media = ",".join(s if ":" in s else f"sound:tongdai/{s}" for s in sounds)
            session.rec.event("playback", sounds=sounds)
            await session.ari.request("POST", f"/channels/{session.id}/play/{pb}",
                                      params={"media": media, "lang": session.routing.hotline.language})
            while True:
                ev = await session.next_event(None)
                t = ev.get("type")
                if t == "PlaybackFinished" and ev["playback"]["id"] == pb:
                    break
                if t == "ChannelDtmfReceived" and ev["channel"]["id"] == session.id and max_digits:
                    d = _digit(session, ev, "prompt")
                    if d is None:
                        continue
                    digits += d
                    if interrupt:
                        session.playback_id = None
                        # Not awaited: the next prompt's POST goes out now. Asterisk queues a
                        # channel's playbacks, so whichever of the two it serves first, the
                        # next prompt starts as soon as this one has stopped.
                        session.request_soon("DELETE", f"/playbacks/{pb}", ok_missing=True)
                        break
                    continue
                session.unexpected(ev)
            session.playback_id = None
        if not max_digits:
            return PromptResult("done")
        loop = asyncio.get_running_loop()
        while not matcher(digits):
            timeout = inter_timeout if digits else first_timeout
            deadline = loop.time() + timeout
            got = False
            while (remaining := deadline - loop.time()) > 0:
                ev = await session.next_event(remaining)
                if ev is None:
                    break
                if ev.get("type") == "ChannelDtmfReceived" and ev["channel"]["id"] == session.id:
                    d = _digit(session, ev, "wait")
                    if d is None:
                        continue
                    digits += d
                    got = True
                    break
                session.unexpected(ev)
            if not got:
                break
        if terminator and digits.endswith(terminator):
            digits = digits[: -len(terminator)]
            return PromptResult("digits", digits)
        return PromptResult("digits", digits) if digits else PromptResult("timeout")
    except CallerHangup:
        return PromptResult("hangup", digits)
