"""Shared fixtures: an isolated data directory and settings per test session."""

from __future__ import annotations

import os
import socket

import pytest

from ivr.settings import Settings


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings_factory(tmp_path):
    """Settings for a fresh data directory (nothing shared with `make run`)."""

    def make(**env: str) -> Settings:
        base = {
            "TONGDAI_HOME": str(tmp_path / "home"),
            "TONGDAI_ASTERISK": "sandbox",
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/root"),
        }
        base.update(env)
        return Settings.from_env(base)

    return make
