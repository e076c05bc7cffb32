"""The monthly report and the exports (/reports): filled in by a later commit."""

from __future__ import annotations


class Reports:
    def __init__(self, console):
        self.c = console

    def routes(self, r) -> None:
        pass
