"""Small things every call step shares: the call's exceptions and what a valid digit is."""

from __future__ import annotations

import re

VALID_DTMF = re.compile(r"^[0-9*#A-D]$")


class CallerHangup(Exception):
    """The caller's channel is gone."""


class IllegalTransition(RuntimeError):
    """A state change not in the call's transition table."""


class IllegalEvent(RuntimeError):
    """An event the current state cannot handle (raised in strict mode, logged otherwise)."""
