"""The console's aiohttp application: wiring, middlewares, sign-in and sign-out.

``Console(settings, …)`` builds every part once (accounts, auth, audit, pages, live board,
reports, the Zalo webhook) and ``console.app()`` returns the application; :func:`serve` runs it
as `tongdai web`. Middlewares, outermost first: security headers; the signed-in person
(``request[ME_KEY]``, or None); CSRF on every POST. Page handlers then check the role matrix
(:mod:`.access`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.resources
import ipaddress
import logging
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.pbx.asterisk import Layout
from ivr.pbx.speech import Speech
from ivr.records import cases as cm
from ivr.records import db
from ivr.zalo.webhook import PATH as ZALO_WEBHOOK

from . import access, csrf, fmt
from .accounts import Account, Accounts, utcnow
from .audit import ACTION_VI, Audit
from .auth import Auth, Current, SignInRefused
from .config import WebSettings, load_key
from .http import ADDRESS_KEY, ME_KEY, PRE_KEY, Refused
from .live import Live
from .lookup import PATH as LOOKUP_PATH
from .lookup import LookupPage
from .pages import Pages
from .reports import Reports
from .youth import Youth

if TYPE_CHECKING:
    from ivr.zalo.service import ZaloService

log = logging.getLogger("tongdai.web")

SESSION_COOKIE = "tongdai_session"
PRE_COOKIE = "tongdai_pre"
CSRF_EXEMPT = (ZALO_WEBHOOK,)  # signed by Zalo, not posted by a browser
PUBLIC = ("/login", "/static/", ZALO_WEBHOOK, "/healthz", LOOKUP_PATH)

# The pages need nothing from elsewhere: no CDN (the server has no internet), no inline script.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

ME = web.AppKey("console", object)


class RoutingFile:
    """routing.yaml as the web process sees it: read again when the file changes (an operator
    ran `tongdai apply`); an invalid new file keeps the last good one."""

    def __init__(self, path: Path):
        self.path = path
        self._mtime: int | None = None
        self._routing: rt.Routing | None = None

    def __call__(self) -> rt.Routing:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            mtime = None
        if self._routing is None or (mtime is not None and mtime != self._mtime):
            try:
                self._routing = rt.load(self.path)
                self._mtime = mtime
            except rt.RoutingError as e:
                if self._routing is None:
                    raise
                log.error("routing.yaml changed but is invalid (%d errors): the console keeps the last good one",
                          len(e.errors))
                self._mtime = mtime
        return self._routing


class Console:
    def __init__(self, settings: Settings, *, engine: AsyncEngine | None = None,
                 routing: Callable[[], rt.Routing] | None = None, web_settings: WebSettings | None = None,
                 clock: Callable[[], dt.datetime] = utcnow, hasher=None, status=None, live_every: float = 2.0):
        self.settings = settings
        self.web = web_settings or WebSettings.from_env(settings.env)
        self.engine = engine or db.engine(settings)
        self._own_engine = engine is None
        self.routing = routing or RoutingFile(settings.routing_path)
        self.clock = clock
        self.key = load_key(settings.home)
        self.accounts = Accounts(self.engine, self.routing, hasher=hasher, clock=clock)
        self.auth = Auth(self.engine, self.accounts, idle=self.web.idle, max_age=self.web.max_age, clock=clock)
        self.audit = Audit(self.engine, clock=clock)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("ivr.web", "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.globals.update(
            STATUS_VI=cm.STATUS_VI, CATEGORY_VI=cm.CATEGORY_VI, REASON_VI=cm.REASON_VI, ACTION_VI=ACTION_VI,
            may=access.may, may_act=access.may_act, fmt=fmt)
        self.pages = Pages(self)
        self.live = Live(self, status=status, every=live_every)
        self.reports = Reports(self)
        self.youth = Youth(self)
        self.lookup_page = LookupPage(self)  # /tra-cuu: the citizens' public page, no sign-in
        self.zalo: ZaloService | None = None  # the webhook and the Zalo worker, when Zalo is configured
        layout = Layout.for_settings(settings)
        self._speech = Speech(layout.host(layout.ast("data/sounds/vi")))

    def cases(self) -> cm.Cases:
        # An answer written here is synthesised for the phone look-up at once (off any call's path).
        return cm.Cases(self.engine, self.routing(), speak=self._speech.warm)

    # ------------------------------------------------------------------ the application

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._who, self._csrf, self._refusals], client_max_size=2 * 1024 * 1024)
        app[ME] = self
        r = app.router
        r.add_get("/", self._home)
        r.add_get("/healthz", self._health)
        r.add_get("/login", self._login_form)
        r.add_post("/login", self._login)
        r.add_post("/logout", self._logout)
        static = importlib.resources.files("ivr.web") / "static"
        r.add_static("/static/", Path(str(static)), append_version=True)
        self.pages.routes(r)
        self.live.routes(r)
        self.reports.routes(r)
        self.youth.routes(r)
        self.lookup_page.routes(r)
        if self.zalo is not None:
            self.zalo.webhook.routes(app)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, app) -> None:
        await self.live.close()
        if self.zalo is not None:
            await self.zalo.stop()
        if self._own_engine:
            await self.engine.dispose()

    # ------------------------------------------------------------------ helpers for handlers

    def address(self, request: web.Request) -> str:
        """The client's address; behind a trusted proxy (nginx), the last X-Forwarded-For hop."""
        remote = request.remote or "?"
        if remote in self.web.trusted_proxies:
            fwd = request.headers.get("X-Forwarded-For", "")
            last = fwd.split(",")[-1].strip() if fwd else ""
            try:
                return str(ipaddress.ip_address(last))
            except ValueError:
                pass
        return remote

    def csrf_token(self, request: web.Request) -> str:
        me: Current | None = request.get(ME_KEY)
        if me is not None:
            return csrf.token_for(self.key, me.token, "s")
        return csrf.token_for(self.key, request[PRE_KEY], "pre")

    def render(self, request: web.Request, name: str, *, status: int = 200, **ctx) -> web.Response:
        me: Current | None = request.get(ME_KEY)
        text = self.templates.get_template(name).render(
            me=me.account if me else None, csrf=self.csrf_token(request) if (me or request.get(PRE_KEY)) else "",
            path=request.path, tz=self.routing().hotline.timezone, **ctx)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    def refuse(self, request: web.Request, status: int, message: str) -> web.Response:
        return self.render(request, "error.html.j2", status=status, message=message)

    def require(self, request: web.Request, page: str) -> Account:
        """The signed-in person if their role may open ``page``; :class:`Refused` (403) otherwise."""
        me: Current | None = request.get(ME_KEY)
        assert me is not None  # _who redirected anonymous requests already
        if not access.may(me.account, page):
            raise Refused(403, "Bạn không có quyền mở trang này.")
        return me.account

    def _cookie(self, resp: web.StreamResponse, name: str, value: str) -> None:
        resp.set_cookie(name, value, httponly=True, samesite="Lax", secure=self.web.secure_cookies, path="/")

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def _headers(self, request: web.Request, handler):
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            self.secure(request, e)
            raise
        if not resp.prepared:  # a stream (the live board's events) set its headers itself
            self.secure(request, resp)
        return resp

    def secure(self, request: web.Request, resp) -> None:
        """The security headers; a streaming handler calls this before ``prepare()``."""
        h = resp.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Frame-Options", "DENY")
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "same-origin"
        if not request.path.startswith("/static/"):
            # Case pages, recordings, exports: personal data stays out of every cache.
            h["Cache-Control"] = "no-store"
        if self.web.secure_cookies:
            h["Strict-Transport-Security"] = "max-age=31536000"

    @web.middleware
    async def _who(self, request: web.Request, handler):
        request[ADDRESS_KEY] = self.address(request)
        request[ME_KEY] = await self.auth.current(request.cookies.get(SESSION_COOKIE))
        request[PRE_KEY] = None
        if request[ME_KEY] is None:
            if request.path.startswith(PUBLIC) or request.path == "/":
                pre = request.cookies.get(PRE_COOKIE)
                fresh = not pre or len(pre) > 64
                request[PRE_KEY] = secrets.token_urlsafe(24) if fresh else pre
                resp = await handler(request)
                if fresh and request.path == "/login" and isinstance(resp, web.Response):
                    self._cookie(resp, PRE_COOKIE, request[PRE_KEY])
                return resp
            if request.method == "GET":
                raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe="/"))
            raise web.HTTPForbidden(text="Phiên đăng nhập đã hết; hãy đăng nhập lại.")
        return await handler(request)

    @web.middleware
    async def _csrf(self, request: web.Request, handler):
        if request.method == "POST" and not request.path.startswith(CSRF_EXEMPT):
            form = await request.post()
            given = form.get(csrf.FIELD) or request.headers.get(csrf.HEADER)
            given = given if isinstance(given, str) else None
            if request.path == "/login":
                ok = csrf.valid(self.key, request.cookies.get(PRE_COOKIE), "pre", given)
            else:
                me: Current | None = request.get(ME_KEY)
                ok = me is not None and csrf.valid(self.key, me.token, "s", given)
            if not ok:
                log.warning("CSRF refused: POST %s from %s", request.path, request[ADDRESS_KEY])
                return self.refuse(request, 403, "Biểu mẫu không hợp lệ hoặc đã hết hạn (CSRF). "
                                                 "Hãy tải lại trang rồi thử lại.")
        return await handler(request)

    @web.middleware
    async def _refusals(self, request: web.Request, handler):
        try:
            return await handler(request)
        except Refused as e:
            return self.refuse(request, e.status, e.message)

    # ------------------------------------------------------------------ sign-in, sign-out

    async def _home(self, request: web.Request) -> web.Response:
        me: Current | None = request[ME_KEY]
        raise web.HTTPSeeOther(access.home(me.account) if me else "/login")

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _login_form(self, request: web.Request) -> web.Response:
        me: Current | None = request[ME_KEY]
        if me is not None:
            raise web.HTTPSeeOther(access.home(me.account))
        return self.render(request, "login.html.j2", error=None, username="", next=_safe_next(request.query.get("next")))

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        username = str(form.get("username", ""))[:64]
        password = str(form.get("password", ""))
        nxt = _safe_next(str(form.get("next", "")))
        try:
            account, token = await self.auth.sign_in(username, password, request[ADDRESS_KEY])
        except SignInRefused as e:
            return self.render(request, "login.html.j2", status=401, error=str(e), username=username, next=nxt)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            await self.auth.close_session(old)  # whatever session this browser had ends here
        await self.audit.record(account, request[ADDRESS_KEY], "login")
        resp = web.HTTPSeeOther(nxt or access.home(account))
        self._cookie(resp, SESSION_COOKIE, token)
        resp.del_cookie(PRE_COOKIE, path="/")
        raise resp

    async def _logout(self, request: web.Request) -> web.Response:
        me: Current = request[ME_KEY]
        await self.auth.close_session(me.token)
        await self.audit.record(me.account, request[ADDRESS_KEY], "logout")
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(SESSION_COOKIE, path="/")
        raise resp


def _safe_next(nxt: str | None) -> str:
    """Only a path of this site: never //host or a scheme (an open redirect after sign-in)."""
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return ""
    parts = urlsplit(nxt)
    return "" if parts.scheme or parts.netloc else nxt


async def serve(settings: Settings, *, on_ready: Callable[[str], None] | None = None) -> int:
    """`tongdai web`: run until SIGTERM/SIGINT; return the exit code."""
    console = Console(settings)
    if settings.zalo is not None:
        from ivr.zalo.service import ZaloService

        console.zalo = ZaloService(settings, console.engine, console.routing)
    app = console.app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = settings.web_addr
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise RuntimeError(f"the console cannot listen on {host}:{port}: {e.strerror}") from None
    if console.zalo is not None:
        await console.zalo.start(serve_webhook=False)
    bound = runner.addresses[0] if runner.addresses else (host, port)
    url = f"http://{bound[0]}:{bound[1]}/"
    log.info("console ready at %s", url)
    if on_ready:
        on_ready(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    log.info("console stopping")
    await runner.cleanup()
    return 0
