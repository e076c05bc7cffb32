"""The public look-up page, ``/tra-cuu``: a citizen follows their case without signing in.

A thin handler over :class:`ivr.records.lookup.Lookup` (the rule is written there once: a case
is shown only for its code and the last four digits of the number that made it). A wrong pair
and an unknown code render the same template with the same values apart from the echoed code,
so the page is no oracle for guessing codes. Only :class:`PublicView`'s fields reach the page:
no caller number, recording, staff name or internal note.

Guessing is also slowed: one address may make ``TONGDAI_LOOKUP_PER_MINUTE`` look-ups (default
10) in any sixty seconds, then gets 429. The address is the console's (:meth:`Console.address`,
the peer or the last ``X-Forwarded-For`` hop from a trusted proxy), as for the sign-in limit.
The count is kept in this process's memory: the console is one process, and a restart forgetting
a minute of counts is harmless.
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ivr.records.lookup import Lookup

from . import fmt
from .http import ADDRESS_KEY

if TYPE_CHECKING:
    from .app import Console

log = logging.getLogger("tongdai.web.lookup")

PATH = "/tra-cuu"
WINDOW = 60.0  # seconds
CODE_FORM = re.compile(r"[0-9]{6}")
PHONE4_FORM = re.compile(r"[0-9]{4}")
BAD_CODE = "Mã số phản ánh gồm đúng 6 chữ số (ví dụ 123456)."
BAD_PHONE4 = "Hãy nhập đúng 4 chữ số cuối của số điện thoại đã dùng để phản ánh."
TOO_MANY = ("Quý vị đã tra cứu quá {n} lần trong một phút. Xin vui lòng chờ một phút rồi thử lại.")


class PerMinute:
    """At most ``limit`` events per key in any ``WINDOW`` seconds (a sliding window).

    Memory stays bounded by the traffic of the last minute: a key's old times are dropped when
    it is seen again, and every key is swept when the table grows."""

    SWEEP_AT = 10_000

    def __init__(self, limit: int, clock: Callable[[], float]):
        self.limit = limit
        self.clock = clock
        self._seen: dict[str, collections.deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Count one event for ``key``; False (and not counted) when over the limit."""
        now = self.clock()
        if len(self._seen) >= self.SWEEP_AT:
            self._seen = {k: q for k, q in self._seen.items() if q and q[-1] > now - WINDOW}
        q = self._seen.setdefault(key, collections.deque())
        while q and q[0] <= now - WINDOW:
            q.popleft()
        if len(q) >= self.limit:
            return False
        q.append(now)
        return True

    def retry_after(self, key: str) -> int:
        q = self._seen.get(key)
        if not q:
            return 0
        return max(1, int(q[0] + WINDOW - self.clock() + 0.999))


def _clean(raw: str | None) -> str:
    """What was typed, without the spaces and dots people put in numbers ("123 456")."""
    return re.sub(r"[\s.\-]", "", raw or "")[:32]


class LookupPage:
    def __init__(self, console: Console):
        self.c = console
        self.lookup = Lookup(console.engine)
        self.limit = PerMinute(console.web.lookup_per_minute, lambda: console.clock().timestamp())

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_get(PATH, self.page)

    async def page(self, request: web.Request) -> web.Response:
        q = request.query
        if "code" not in q and "phone4" not in q:
            return self._render(request, code="")
        address = request[ADDRESS_KEY]
        if not self.limit.allow(address):
            log.warning("public look-up: %s over %d a minute", address, self.limit.limit)
            resp = self._render(request, status=429, code="",
                                error=TOO_MANY.format(n=self.limit.limit))
            resp.headers["Retry-After"] = str(self.limit.retry_after(address))
            return resp
        code, phone4 = _clean(q.get("code")), _clean(q.get("phone4"))
        errors = [m for ok, m in ((CODE_FORM.fullmatch(code), BAD_CODE), (PHONE4_FORM.fullmatch(phone4), BAD_PHONE4))
                  if not ok]
        if errors:
            return self._render(request, status=400, code=code, errors=errors)
        view = await self.lookup.by_phone4(code, phone4, now=self.c.clock())
        if view is None:
            # The same answer for a code that does not exist and for someone else's code.
            return self._render(request, status=404, code=code, not_found=True)
        log.info("public look-up: case %s shown to %s", code, address)
        return self._render(request, code=code, view=view)

    def _render(self, request: web.Request, *, status: int = 200, code: str, view=None, not_found: bool = False,
                errors: list[str] | None = None, error: str | None = None) -> web.Response:
        return self.c.render(request, "lookup.html.j2", status=status, code=code, view=view, not_found=not_found,
                             errors=errors or ([error] if error else []), date=self._date)

    def _date(self, t) -> str:
        return fmt.local(t, self.c.routing().hotline.timezone, "%d/%m/%Y")
