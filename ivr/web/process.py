"""`tongdai web` as a child process of `tongdai run`: started before the controller, its address
read from its ``ready:`` line, stopped after the controller.

A process of its own, not a task on the controller's loop: a report or an export being built
must not delay a call (GUIDE: pages never run on the controller's event loop).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from ivr.config.settings import Settings

READY = "ready:"


class ConsoleProcess:
    def __init__(self, settings: Settings, *, echo: Callable[[str], None] = print):
        self.settings = settings
        self.echo = echo
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30) -> str:
        """Start the console and wait for its ``ready:`` line; returns its URL. RuntimeError
        (with the console's own words) if it exits or stays silent."""
        env = {**os.environ, **self.settings.env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "ivr", "web"], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, text=True, encoding="utf-8", errors="replace")
        self._reader = threading.Thread(target=self._read, name="console-stdout", daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self.url is None:
            code = self.proc.poll()
            self.stop()
            why = f"thoát với mã {code}" if code is not None else f"không sẵn sàng sau {timeout:g} giây"
            raise RuntimeError(f"bảng điều khiển web (`tongdai web`) {why}; xem nhật ký {self.settings.home / 'log' / 'web.log'}")
        return self.url

    def _read(self) -> None:
        # Keep reading to the end: a full pipe would block the console.
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(READY) and self.url is None:
                self.url = line.rsplit(" ", 1)[-1]
                self._ready.set()
            elif line:
                self.echo(line)
        self._ready.set()  # it exited: whoever waits stops waiting

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader:
            self._reader.join(5)
        return self.proc.returncode
