"""What `tongdai web` runs for Zalo: the webhook and the background tasks (the Zalo worker).

``ZaloService(settings, engine, routing)`` → ``await start()`` … ``await stop()``. Started only
when TONGDAI_ZALO_APP_ID is set. Tasks: the spool processor (events → cases), the outbox sender,
the access-token refresher and the survey schedule. The console mounts the webhook on its own
application (``webhook.routes(app)``, then ``start(serve_webhook=False)``); ``start()`` alone
serves it on TONGDAI_WEB_ADDR by itself (tests, a Zalo-only process). Why it lives beside the
console and not in the controller: docs/console.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.config.routing import Routing
from ivr.config.settings import Settings
from ivr.records.spool import Spool
from ivr.zalo.api import ZaloApi
from ivr.zalo.intake import Intake
from ivr.zalo.outbox import Outbox, QuietHours
from ivr.zalo.surveys import Surveys
from ivr.zalo.tokens import TokenManager, TokenStore, utcnow
from ivr.zalo.webhook import PATH, Webhook

log = logging.getLogger("tongdai.zalo")


def build(settings: Settings, engine: AsyncEngine, session: aiohttp.ClientSession, tz: str, *,
          clock: Callable[[], dt.datetime] = utcnow) -> tuple[ZaloApi, TokenManager, Outbox]:
    """The API client, token manager and outbox (shared by the service and the CLI)."""
    z = settings.zalo
    assert z is not None
    api = ZaloApi.from_settings(session, z)
    tokens = TokenManager(api, TokenStore(z.token_path), seed=z.initial_refresh_token, clock=clock)
    outbox = Outbox(engine, api, tokens, QuietHours.parse(z.quiet_start, z.quiet_end, tz), clock=clock)
    return api, tokens, outbox


class ZaloService:
    def __init__(self, settings: Settings, engine: AsyncEngine, routing: Callable[[], Routing], *,
                 clock: Callable[[], dt.datetime] = utcnow, poll: float = 5.0):
        assert settings.zalo is not None
        self.settings = settings
        self.z = settings.zalo
        self.engine = engine
        self.routing = routing
        self.clock = clock
        self.poll = poll
        self.spool = Spool(self.z.spool_path)
        self._wake = asyncio.Event()
        self.webhook = Webhook(self.z, self.spool, clock=clock, on_event=self._wake.set)
        self.intake = Intake(engine, self.z, routing, clock=clock)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self.outbox: Outbox | None = None
        self.tokens: TokenManager | None = None
        self.port: int | None = None

    async def start(self, *, serve_webhook: bool = True) -> None:
        """Start the worker; ``serve_webhook``: also listen on TONGDAI_WEB_ADDR for the webhook
        (False when another application, the console's, carries ``webhook.routes``)."""
        tz = self.routing().hotline.timezone
        self._session = aiohttp.ClientSession()
        _, self.tokens, self.outbox = build(self.settings, self.engine, self._session, tz, clock=self.clock)
        host, port = self.settings.web_addr
        if serve_webhook:
            app = web.Application(client_max_size=2 * 1024 * 1024)
            self.webhook.routes(app)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, host, port)
            await site.start()
            self.port = self._runner.addresses[0][1] if self._runner.addresses else port
        else:
            self.port = port
        self._tasks = [
            asyncio.create_task(self._process_loop(), name="zalo-intake"),
            asyncio.create_task(self._outbox_loop(), name="zalo-outbox"),
            asyncio.create_task(self.tokens.keep_fresh(), name="zalo-tokens"),
        ]
        if self.z.survey_every_min > 0:
            self._tasks.append(asyncio.create_task(self._survey_loop(tz), name="zalo-surveys"))
        log.info("zalo: webhook at http://%s:%d%s (app %s)", host, self.port, PATH, self.z.app_id)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()  # no new events first
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self.spool.drain(self.intake.write)  # what is left stays in the spool anyway
        except Exception:
            log.exception("zalo: final spool drain failed; events stay spooled")
        if self._session:
            await self._session.close()
        log.info("zalo stopped")

    def wake(self) -> None:
        self._wake.set()

    async def _process_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if await self.spool.drain(self.intake.write):
                    await self._send_pass()  # an automatic reply is waiting
            except Exception:
                log.exception("zalo: processing spooled events failed")

    async def _send_pass(self) -> None:
        assert self.outbox is not None
        while await self.outbox.run_once():
            pass

    async def _outbox_loop(self) -> None:
        while True:
            try:
                await self._send_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("zalo: outbox pass failed")
            await asyncio.sleep(self.poll)

    async def _survey_loop(self, tz: str) -> None:
        surveys = Surveys(self.engine, self.z, tz)
        while True:
            try:
                counts = await surveys.enqueue_pending(self.clock())
                if any(counts.values()):
                    log.info("zalo surveys queued: %s", counts)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("zalo: survey run failed")
            await asyncio.sleep(self.z.survey_every_min * 60)
