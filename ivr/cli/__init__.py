"""`tongdai`: the operator's command line (also `python -m ivr`).

One module per command group; each lists its commands in ``COMMANDS``. What operators and staff
read is Vietnamese; logs and code stay English. No command ends in a traceback: the main group
turns what a command could not handle into one or two lines (ivr/cli/errors.py).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from ivr.cli import cases, cluster, config, errors, pbx, records, service, users, volunteers, web, zalo


class Terminated(SystemExit):
    """SIGTERM, raised where the program is, so that ``finally`` blocks remove partial files
    exactly as they do for Ctrl-C (the default action would kill the process on the spot)."""


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise Terminated(128 + signal.SIGTERM)


def _thread_error(args: threading.ExceptHookArgs) -> None:
    """An exception in a background thread, without its traceback: the command reports what
    failed itself. aiosqlite's worker thread, answering a loop that a failed command already
    closed, raises "Event loop is closed": nothing to tell."""
    e = args.exc_value
    if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
        return
    message, _ = errors.explain(e) if e is not None else ("?", 1)
    click.echo(f"lỗi (luồng nền): {message}", err=True)


def _quiet_logs(ctx: click.Context) -> None:
    """Library and module warnings (English, for a log file) stay off an operator's terminal;
    each command says in Vietnamese what matters. With -v / TONGDAI_DEBUG they are shown.
    The controller (serve, run) sets up its own logging."""
    root = logging.getLogger()
    if errors.debug_wanted(ctx.params.get("verbose", False)):
        if not root.handlers:
            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    elif ctx.invoked_subcommand not in ("serve", "run") and not root.handlers:
        root.addHandler(logging.NullHandler())


class Main(click.Group):
    def invoke(self, ctx: click.Context):
        # `serve` and `run` install their own handler (graceful stop) once their loop runs.
        # Only the main thread may set handlers (tests invoke commands from others too).
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
        _quiet_logs(ctx)
        if not errors.debug_wanted(ctx.params.get("verbose", False)):
            threading.excepthook = _thread_error
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit,
                SystemExit, KeyboardInterrupt, GeneratorExit):
            raise
        except Exception as e:  # noqa: BLE001 - the point: nothing unexplained reaches the operator
            if errors.debug_wanted(ctx.params.get("verbose", False)):
                raise
            message, code = errors.explain(e)
            click.echo(f"lỗi: {message}", err=True)
            sys.exit(code)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Khi có lỗi, in chi tiết (traceback) cho nhà phát triển; như TONGDAI_DEBUG=1.")
def main(verbose: bool) -> None:
    """Tổng đài hỗ trợ công tác CCHC — công cụ cho người vận hành."""


for _group in (config, pbx, cases, service, records, zalo, volunteers, users, web, cluster):
    for _command in _group.COMMANDS:
        main.add_command(_command)
