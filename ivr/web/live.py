"""The live board (/live) and the desk phones page (/phones): filled in by a later commit."""

from __future__ import annotations


class Live:
    def __init__(self, console, *, status=None):
        self.c = console

    def routes(self, r) -> None:
        pass

    async def close(self) -> None:
        pass
