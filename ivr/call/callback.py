"""Callbacks asked for in a branch's queue (key 1), served in the caller's place (docs/queue.md).

:class:`Callbacks` (one per controller, when ``TONGDAI_TRUNK_OUT`` is set) keeps the pending
requests in the branch queues (:class:`ivr.call.queue.Pending`) and looks every
:data:`~ivr.call.queue.POLL` seconds for a branch whose head is a due request and which has a
free desk phone. Taking the request out of the line and holding the phone (:meth:`holds`, part
of the controller's busy check) is one synchronous step, as a caller's dial is: nobody can take
that phone meanwhile, and the callers behind move up.

Serving one (:class:`CallbackCall`), agent first: the request is claimed in the database (never
served twice), the desk phone rings; once answered the focal point hears the whisper ("Cuộc gọi
lại cho công dân, số …", the digits) and ringback while the citizen is called through the
outbound trunk (``PJSIP/<number>@trunk-out``); when the citizen answers both are bridged (and
recorded when the branch records). A citizen who does not answer: the desk phone is released at
once and the request goes back to its place, due ``callback.retry_after`` seconds later, until
``callback.attempts`` calls were made. A desk phone that does not answer costs no attempt.
Each call to the citizen is a row of the call log (``callback_*`` dispositions, ``callback_of``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ivr.call import recording
from ivr.call.queue import POLL, Pending, Waiter
from ivr.call.route import cause_result
from ivr.call.session import CallSession
from ivr.pbx.ari import AriError
from ivr.records.callbacks import CallbackStore, Request, callback_number
from ivr.records.calllog import CallRecord, LegRecord, utcnow
from ivr.vocab import CallbackStatus, Disposition

if TYPE_CHECKING:
    from ivr.call.context import CallContext
    from ivr.config.routing import Branch, Routing

log = logging.getLogger("tongdai.callback")

TRUNK = "trunk-out"  # the outbound trunk's endpoint in pjsip.conf (asterisk/templates/pjsip.conf.j2)
CITIZEN_RING = 30  # seconds the citizen's phone rings
AGENT_RETRY = 30  # seconds before a request whose desk phone did not answer is tried again
GONE = ("ChannelDestroyed", "StasisEnd", "ChannelHangupRequest")


class Callbacks:
    def __init__(self, ctx: CallContext, store: CallbackStore, routing: Callable[[], Routing], app: str,
                 disown: Callable[[str], None]):
        self.ctx = ctx
        self.store = store
        self.routing = routing
        self.app = app
        self.disown = disown
        self.queues = ctx.queues
        self.held: dict[int, str] = {}  # request id -> the desk phone serving it
        self.serving: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self.served = 0  # citizens reached (for the bench)

    # ---------------------------------------------------------------- for the queue

    def offered(self, session: CallSession, branch: Branch) -> str | None:
        """The number to call back when key 1 is offered to this caller, else None."""
        return callback_number(session.rec.caller) if branch.queue.callback else None

    async def request(self, session: CallSession, waiter: Waiter, number: str) -> bool:
        """Store the confirmed request and put it in the caller's place; False if not stored."""
        try:
            req = await self.store.add(session.id, number, waiter.branch, waiter.arrived)
        except Exception as e:  # the database is down: the caller keeps waiting, nothing lost
            log.error("call=%s callback request not stored: %s", session.id, e)
            return False
        self.queues.to_callback(waiter, req)
        session.rec.event("callback_requested", number=number, request=req.id)
        log.info("call=%s callback request %d for %s, branch %s", session.id, req.id, number, req.branch)
        return True

    def holds(self, extension: str) -> bool:
        return extension in self.held.values()

    # ---------------------------------------------------------------- the service

    async def load(self) -> int:
        """Put the pending requests (an earlier run's) back in their places; how many."""
        reqs = await self.store.pending()
        known = {p.request.id for p in self.queues.pendings()} | set(self.held)
        for req in reqs:
            if req.id not in known:
                self.queues.add_pending(req)
        return len(reqs)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="callbacks")

    async def stop(self, grace: float) -> None:
        """No new callback; those in progress get ``grace`` seconds, then are cut."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self.serving:
            _, late = await asyncio.wait(set(self.serving), timeout=grace)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a bug here must not stop every later callback
                log.exception("callbacks: tick failed")
            await asyncio.sleep(POLL)

    def tick(self) -> list[asyncio.Task]:
        """Expire old requests; start serving every branch whose head is a due request and
        that has a free phone. The tasks started."""
        now = utcnow()
        for p in self.queues.pendings():
            if p.request.expired(now):
                self.queues.take(p)
                self._spawn(self._expire(p.request))
        started = []
        routing = self.routing()
        for digit in list(self.queues.lines):
            head = self.queues.head(digit)
            if not isinstance(head, Pending):
                continue
            branch = routing.branch(digit)
            if branch is None:
                continue  # the branch was removed: the request waits until it expires
            ext = self.free_phone(branch)
            if ext is None:
                continue
            # One synchronous step: out of the line, the phone held.
            self.queues.take(head)
            self.held[head.request.id] = ext
            started.append(self._spawn(self._serve(head.request, branch, ext)))
        return started

    def free_phone(self, branch: Branch) -> str | None:
        targets = list(branch.targets)
        if branch.strategy == "leastrecent":
            last = self.ctx.route_state.last_answered
            targets.sort(key=lambda t: last.get(t, 0.0))
        for ext in targets:
            if self.ctx.reachable(ext) is not False and not self.ctx.busy(ext, None):
                return ext
        return None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.serving.add(task)
        task.add_done_callback(self.serving.discard)
        return task

    async def _expire(self, req: Request) -> None:
        try:
            await self.store.expire(req)
            log.info("callback request %d for %s expired", req.id, req.number)
        except Exception as e:
            log.warning("callback request %d not expired: %s", req.id, e)

    async def _serve(self, req: Request, branch: Branch, ext: str) -> None:
        try:
            try:
                claimed = await self.store.claim(req)
            except Exception as e:
                log.warning("callback request %d not claimed (database): %s; tried again", req.id, e)
                self._back(req, utcnow() + dt.timedelta(seconds=AGENT_RETRY))
                return
            if not claimed:
                log.info("callback request %d already served or expired", req.id)
                return
            call = CallbackCall(self, req, branch, ext)
            result = "failed"
            try:
                result = await call.run()
            except asyncio.CancelledError:
                result = "cut"  # shutting down: a request whose citizen was not called yet goes back
                raise
            except Exception:
                log.exception("callback request %d: attempt failed", req.id)
            finally:
                await asyncio.shield(self._after(req, call, result))
        finally:
            self.held.pop(req.id, None)

    async def _after(self, req: Request, call: CallbackCall, result: str) -> None:
        """Book-keeping once a callback attempt is over: done, failed, or back in its place."""
        cfg = self.routing().callback
        now = utcnow()
        try:
            if result == "answered" or call.rec.answered_at is not None:
                # (cut mid-conversation by a shutdown: the citizen was reached all the same)
                self.served += 1
                await self.store.finish(req, CallbackStatus.DONE)
            elif result in ("agent_no_answer", "cut") and not call.citizen_called:
                await self.store.put_back(req, now + dt.timedelta(seconds=AGENT_RETRY if result != "cut" else 0))
                self._back(req, req.due_at)
            elif req.attempts >= cfg.attempts:
                await self.store.finish(req, CallbackStatus.FAILED)
                log.info("callback request %d for %s: %d attempts, given up", req.id, req.number, req.attempts)
            else:
                await self.store.put_back(req, now + dt.timedelta(seconds=cfg.retry_after))
                self._back(req, req.due_at)
        except Exception as e:  # left 'serving' in the database: not served again (never twice)
            log.error("callback request %d: result %s not stored: %s", req.id, result, e)

    def _back(self, req: Request, due: dt.datetime) -> None:
        req.due_at = due
        self.queues.add_pending(req)


class CallbackCall:
    """One attempt: the desk phone, the whisper, the citizen, the conversation. Has what
    :mod:`ivr.call.recording` uses of a call session (its id, context, record, event queue)."""

    wait_aside = CallSession.wait_aside
    in_background = CallSession.in_background

    def __init__(self, service: Callbacks, req: Request, branch: Branch, ext: str):
        self.service = service
        self.ctx = service.ctx
        self.ari = service.ctx.ari
        self.req = req
        self.branch = branch
        self.ext = ext
        self.queue: asyncio.Queue[dict] = asyncio.Queue()
        self.in_flight: set[asyncio.Task] = set()
        self.citizen_called = False
        self.logged = False  # the call row is written and not closed yet
        self._seq = 0
        attempt = req.attempts + 1
        self.id = f"cb{req.id}-{attempt}-{int(utcnow().timestamp())}"
        routing = service.routing()
        self.hotline = routing.hotline.number
        self.language = routing.hotline.language
        self.record = routing.records(branch)
        agency = routing.agencies.get(branch.agency)
        self.rec = CallRecord(id=self.id, caller=req.number, hotline=self.hotline, started_at=utcnow(),
                              branch_digit=branch.digit, branch_name=branch.name,
                              agency_code=agency.code if agency else None, agency_name=agency.name if agency else None,
                              callback_of=req.call_id)
        self.channels: list[str] = []

    def new_id(self, kind: str) -> str:
        self._seq += 1
        return f"{self.id}-{kind}{self._seq}"

    def _own(self, channel_id: str) -> None:
        self.channels.append(channel_id)
        self.ctx.own(channel_id, self)  # type: ignore[arg-type]  # the controller only uses .queue

    async def _next(self, deadline: float | None) -> dict | None:
        loop = asyncio.get_running_loop()
        try:
            if deadline is None:
                return await self.queue.get()
            return await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return None

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self.ari.request("DELETE", f"/channels/{channel_id}", ok_missing=True)
        except AriError as e:
            log.warning("callback %s: hangup of %s failed: %s", self.id, channel_id, e)

    async def run(self) -> str:
        """``answered``, ``no_answer``, ``failed`` (the citizen), or ``agent_no_answer``."""
        try:
            return await self._run()
        finally:
            if self.logged:  # cut short (a shutdown, an error): the row still gets its end
                self.rec.talk_ended_at = self.rec.talk_ended_at or (utcnow() if self.rec.answered_at else None)
                self.rec.event("interrupted", why="callback cut short")
                self._end(Disposition.CALLBACK_ANSWERED if self.rec.answered_at else Disposition.CALLBACK_FAILED,
                          "system", "cut")
            for ch in self.channels:
                await self._hangup(ch)
            for ch in self.channels:
                self.service.disown(ch)

    async def _run(self) -> str:
        req, ext, rec = self.req, self.ext, self.rec
        loop = asyncio.get_running_loop()
        agent = self.new_id("agent")
        leg = LegRecord(channel_id=agent, extension=ext, started_at=utcnow())
        rec.legs.append(leg)
        rec.event("callback", request=req.id, attempt=req.attempts + 1, number=req.number, extension=ext)
        self._own(agent)
        try:
            await self.ari.request("POST", "/channels", params={
                "endpoint": f"PJSIP/{ext}", "app": self.service.app, "appArgs": f"callback,{req.id}",
                "channelId": agent, "timeout": self.branch.ring_timeout, "callerId": f"{req.number} <{req.number}>"})
        except AriError as e:
            log.warning("callback %s: desk phone %s not rung: %s", self.id, ext, e)
            leg.result, leg.ended_at = "unreachable", utcnow()
            return "agent_no_answer"
        rec.event("dial", extension=ext, leg=agent)
        # The desk phone: its channel enters the app once answered.
        deadline = loop.time() + self.branch.ring_timeout + 5
        while True:
            ev = await self._next(deadline)
            if ev is None:
                leg.result, leg.ended_at = "no_answer", utcnow()
                return "agent_no_answer"
            cid = (ev.get("channel") or {}).get("id")
            if ev.get("type") == "StasisStart" and cid == agent:
                break
            if ev.get("type") in GONE and cid == agent:
                leg.result, leg.ended_at = cause_result(ev.get("cause")), utcnow()
                rec.event("dial_result", extension=ext, result=leg.result)
                return "agent_no_answer"
        leg.answered_at = utcnow()
        leg.result = "answered"
        rec.answered_by = ext
        self.ctx.route_state.answered(ext)
        rec.event("dial_result", extension=ext, result="answered")
        # The whisper, to the focal point only.
        pb = self.new_id("pb")
        await self.ari.request("POST", f"/channels/{agent}/play/{pb}", params={
            "media": f"sound:tongdai/callback_whisper,digits:{req.number}", "lang": self.language})
        while True:
            ev = await self._next(loop.time() + 60)
            if ev is None:
                break
            cid = (ev.get("channel") or {}).get("id")
            if ev.get("type") == "PlaybackFinished" and (ev.get("playback") or {}).get("id") == pb:
                break
            if ev.get("type") in GONE and cid == agent:
                leg.ended_at = utcnow()
                rec.event("hangup", by="agent", state="whisper")
                return "agent_no_answer"
        # The citizen, through the outbound trunk; the focal point hears ringback.
        self.citizen_called = True
        req.attempts += 1
        citizen = self.new_id("citizen")
        self._own(citizen)
        rec.started_at = utcnow()
        self.ctx.calllog.opened(rec)
        self.logged = True
        try:
            await self.ari.request("POST", f"/channels/{agent}/ring")
            await self.ari.request("POST", "/channels", params={
                "endpoint": f"PJSIP/{req.number}@{TRUNK}", "app": self.service.app, "appArgs": f"callback,{req.id}",
                "channelId": citizen, "timeout": CITIZEN_RING, "callerId": self.hotline})
        except AriError as e:
            log.warning("callback %s: citizen %s not called: %s", self.id, req.number, e)
            rec.event("callback_result", result="failed", error=str(e))
            return self._end(Disposition.CALLBACK_FAILED, "system", "failed")
        rec.event("callback_dial", number=req.number, channel=citizen)
        deadline = loop.time() + CITIZEN_RING + 5
        while True:
            ev = await self._next(deadline)
            if ev is None:
                rec.event("callback_result", result="no_answer")
                return self._end(Disposition.CALLBACK_NO_ANSWER, "system", "no_answer")
            cid = (ev.get("channel") or {}).get("id")
            t = ev.get("type")
            if t == "StasisStart" and cid == citizen:
                break
            if t in GONE and cid == citizen:
                result = cause_result(ev.get("cause"))
                rec.event("callback_result", result=result, cause=ev.get("cause_txt") or ev.get("cause"))
                if result in ("no_answer", "busy"):
                    return self._end(Disposition.CALLBACK_NO_ANSWER, "system", "no_answer")
                return self._end(Disposition.CALLBACK_FAILED, "system", "failed")
            if t in GONE and cid == agent:
                leg.ended_at = utcnow()
                rec.event("hangup", by="agent", state="calling citizen")
                return self._end(Disposition.CALLBACK_FAILED, "agent", "failed")
        # Both there: one conversation.
        rec.answered_at = utcnow()
        rec.event("callback_result", result="answered")
        bridge_id = self.new_id("br")
        await self.ari.request("DELETE", f"/channels/{agent}/ring", ok_missing=True)
        await self.ari.request("POST", f"/bridges/{bridge_id}", params={"type": "mixing", "name": f"callback-{self.id}"})
        try:
            await self.ari.request("POST", f"/bridges/{bridge_id}/addChannel", params={"channel": f"{agent},{citizen}"})
            rec.event("bridged", extension=ext, bridge=bridge_id)
            live = await recording.start(self, bridge_id) if self.record else None  # type: ignore[arg-type]
            by = await self._talk(agent, citizen, live)
            await recording.finish(self, live)  # type: ignore[arg-type]
            while self.in_flight:  # the recording's copy: the row names it
                await asyncio.gather(*self.in_flight, return_exceptions=True)
        finally:
            try:
                await self.ari.request("DELETE", f"/bridges/{bridge_id}", ok_missing=True)
            except AriError as e:
                log.warning("callback %s: bridge not destroyed: %s", self.id, e)
            self.service.disown(bridge_id)
        leg.ended_at = rec.talk_ended_at
        return self._end(Disposition.CALLBACK_ANSWERED, by, "answered")

    async def _talk(self, agent: str, citizen: str, live: recording.Live | None) -> str:
        while True:
            ev = await self._next(None)
            assert ev is not None
            cid = (ev.get("channel") or {}).get("id")
            if ev.get("type") in GONE and cid in (agent, citizen):
                self.rec.talk_ended_at = utcnow()
                by = "agent" if cid == agent else "caller"
                self.rec.event("hangup", by=by)
                return by
            recording.handle(self, live, ev)  # type: ignore[arg-type]

    def _end(self, disposition: Disposition, hangup_by: str, result: str) -> str:
        rec = self.rec
        rec.disposition = disposition
        rec.hangup_by = hangup_by
        rec.ended_in = "callback"
        rec.ended_at = utcnow()
        self.logged = False
        self.ctx.calllog.closed(rec)
        log.info("callback %s for %s by %s: %s", self.id, self.req.number, self.ext, disposition.value)
        return result
