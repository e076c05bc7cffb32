"""`tongdai web`: the staff console, its own process.

Pages, reports and exports run here, never on the controller's event loop: a slow report
cannot delay a call. The process also lowers its own scheduling priority (TONGDAI_WEB_NICE,
default 10) so that the scheduler favours Asterisk and the controller — its session's autogroup
too, without which nice has no effect across sessions (docs/performance.md, "The staff console").
"""

from __future__ import annotations

import logging
import sys

import click

from ivr import supervise
from ivr.config.settings import Settings


@click.command("web")
def web_cmd() -> None:
    """Chạy bảng điều khiển web cho cán bộ (TONGDAI_WEB_ADDR, mặc định 127.0.0.1:8080)."""
    from ivr import server
    from ivr.web import app
    from ivr.web.config import WebSettings

    s = Settings.from_env()
    web_settings = WebSettings.from_env(s.env)
    server.setup_logging(s, name="web")
    logging.getLogger("tongdai.web").info("CPU priority: %s", supervise.yield_cpu(web_settings.nice))

    def ready(url: str) -> None:
        click.echo(f"ready: bảng điều khiển web tại {url}", err=False)
        sys.stdout.flush()

    try:
        code = server.run(app.serve(s, on_ready=ready))
    except RuntimeError as e:
        click.echo(f"lỗi: {e}", err=True)
        sys.exit(1)
    sys.exit(code)


COMMANDS = [web_cmd]
