"""What the console's handlers share: the request's storage keys and how a handler refuses."""

from __future__ import annotations

from aiohttp import web

NOT_FOUND = "Không có phản ánh này, hoặc bạn không có quyền xem."


def _request_key(name: str):
    """aiohttp >= 3.12 wants typed keys for the request's storage; older ones take strings."""
    return web.RequestKey(name, object) if hasattr(web, "RequestKey") else name


ME_KEY = _request_key("me")  # Current | None: the signed-in person
ADDRESS_KEY = _request_key("address")  # the client's address (see Console.address)
PRE_KEY = _request_key("pre")  # the pre-session token of the sign-in form


class Refused(Exception):
    """Stop the request with an error page (403, 404, …) rendered for the person."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

