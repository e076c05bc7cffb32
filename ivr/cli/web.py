"""`tongdai web`: the staff console, its own process.

Pages, reports and exports run here, never on the controller's event loop: a slow report
cannot delay a call.
"""

from __future__ import annotations

import sys

import click

from ivr.config.settings import Settings


@click.command("web")
def web_cmd() -> None:
    """Chạy bảng điều khiển web cho cán bộ (TONGDAI_WEB_ADDR, mặc định 127.0.0.1:8080)."""
    from ivr import server
    from ivr.web import app

    s = Settings.from_env()
    server.setup_logging(s, name="web")

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
