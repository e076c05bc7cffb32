"""The monthly report and the exports, as downloads (/reports), for supervisors.

The figures and files are those of `tongdai report monthly` and `tongdai export` (ivr.records.report
and ivr.records.export): the console only runs them in its own process and streams the result.
The monthly report is built on the console's loop (database reads) and turned into a PDF in a
worker thread (WeasyPrint is CPU work); an export runs in a worker thread that hands its output
to the response chunk by chunk through a small bounded queue, so memory stays flat and a client
that goes away stops the export. Anonymous callers' numbers stay hidden in exports (a reveal is
one case at a time, recorded). Every download is in the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import os
import queue
import tempfile
import threading
import zoneinfo
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from aiohttp import web

from ivr.records import export as ex
from ivr.records import report as rp

from .http import ADDRESS_KEY

if TYPE_CHECKING:
    from .app import Console

log = logging.getLogger("tongdai.web.reports")

REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}
TABLE_VI = {"calls": "Nhật ký cuộc gọi", "cases": "Phản ánh, kiến nghị", "surveys": "Khảo sát hài lòng"}
CHUNKS_AHEAD = 8


class Reports:
    def __init__(self, console: Console):
        self.c = console

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/reports", self.page)
        r.add_get(r"/reports/monthly.{kind:html|pdf}", self.monthly)
        r.add_get(r"/reports/export.{fmt:csv|xlsx}", self.export)

    async def page(self, request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
        self.c.require(request, "reports")
        routing = self.c.routing()
        local = self.c.clock().astimezone(zoneinfo.ZoneInfo(routing.hotline.timezone)).date()
        last = (local.replace(day=1) - dt.timedelta(days=1))
        return self.c.render(request, "reports.html.j2", status=status, error=error, routing=routing,
                             default_month=f"{last:%Y-%m}", this_month=f"{local:%Y-%m}",
                             tables=TABLE_VI, first_day=f"{local.replace(day=1):%Y-%m-%d}", today=f"{local:%Y-%m-%d}")

    # ------------------------------------------------------------------ the monthly report

    async def monthly(self, request: web.Request) -> web.StreamResponse:
        me = self.c.require(request, "reports")
        routing = self.c.routing()
        kind = request.match_info["kind"]
        try:
            month = rp.Month.parse(request.query.get("month", ""), routing.hotline.timezone)
            report = await rp.build(self.c.engine, routing, month, now=self.c.clock())
        except rp.ReportError as e:
            return await self.page(request, error=str(e), status=400)
        text = rp.render_html(report, routing)
        await self.c.audit.record(me, request[ADDRESS_KEY], "report", detail=f"tháng {month.label}, {kind}")
        name = f"bao-cao-thang-{month.year}-{month.month:02d}"
        if kind == "html":
            resp = web.Response(text=text, content_type="text/html", charset="utf-8",
                                headers={"Content-Security-Policy": REPORT_CSP,
                                         "Content-Disposition": f'inline; filename="{name}.html"'})
            return resp
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".pdf", dir=self.c.settings.home)
        os.close(fd)
        try:
            await asyncio.to_thread(rp.write_pdf, text, Path(tmp))
            return await self._send_file(request, Path(tmp), "pdf", f"{name}.pdf")
        finally:
            Path(tmp).unlink(missing_ok=True)

    async def _send_file(self, request: web.Request, path: Path, kind: str, filename: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[kind],
                                           "Content-Disposition": f'attachment; filename="{filename}"'})
        resp.content_length = path.stat().st_size
        self.c.secure(request, resp)
        await resp.prepare(request)
        with open(path, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, 1 << 16):
                await resp.write(chunk)
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ exports

    async def export(self, request: web.Request) -> web.StreamResponse:
        me = self.c.require(request, "reports")
        routing = self.c.routing()
        fmt = request.match_info["fmt"]
        q = request.query
        table = q.get("table", "")
        args = {k: (q.get(k) or "").strip() or None for k in ("from", "to", "branch", "agency")}
        try:
            query = ex.make_query(table, routing, date_from=args["from"], date_to=args["to"], branch=args["branch"],
                                  agency=args["agency"])
        except ex.ExportError as e:
            return await self.page(request, error=str(e), status=400)
        detail = f"{table} {fmt}" + "".join(f" {k}={v}" for k, v in args.items() if v)
        await self.c.audit.record(me, request[ADDRESS_KEY], "export", detail=detail)
        filename = f"tongdai-{table}-{args['from'] or 'dau'}-{args['to'] or 'nay'}.{fmt}"
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[fmt],
                                           "Content-Disposition": f'attachment; filename="{filename}"'})
        self.c.secure(request, resp)
        await resp.prepare(request)
        pipe = _Pipe()
        now = self.c.clock()
        worker = threading.Thread(target=pipe.run, name="console-export", daemon=True,
                                  args=(lambda: ex.export(self.c.settings, routing, query, fmt, None, stdout=cast(IO[bytes], pipe),
                                                          now=now),))
        worker.start()
        try:
            while (chunk := await asyncio.to_thread(pipe.get)) is not None:
                await resp.write(chunk)
            if pipe.error is not None:
                log.error("export %s for %s failed: %s", detail, me.login, pipe.error)
                raise ConnectionAbortedError  # cut the download: the file must not look complete
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pipe.stop.set()
            raise
        finally:
            pipe.stop.set()
            await asyncio.to_thread(worker.join, 30)
        return resp


class _Pipe(io.RawIOBase):
    """A binary stream the export thread writes to; the handler reads chunks off it."""

    def __init__(self):
        super().__init__()
        self.q: queue.Queue = queue.Queue(maxsize=CHUNKS_AHEAD)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        data = bytes(b)
        while True:
            if self.stop.is_set():
                raise BrokenPipeError("the client went away")
            try:
                self.q.put(data, timeout=0.5)
                return len(data)
            except queue.Full:
                continue

    def run(self, fn) -> None:
        try:
            fn()
        except BrokenPipeError:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the handler, which cuts the download
            self.error = e
        finally:
            while not self.stop.is_set():
                try:
                    self.q.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def get(self) -> bytes | None:
        while not self.stop.is_set():
            with contextlib.suppress(queue.Empty):
                return self.q.get(timeout=0.5)
        return None
