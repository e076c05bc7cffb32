"""CSRF: every POST carries ``_csrf``, an HMAC of the browser's cookie token under the
console's key (synchroniser token without server state).

Signed in, the token is derived from the session cookie, so it changes at every sign-in and
dies with the session. At the sign-in form there is no session yet: a random pre-session cookie
(``tongdai_pre``) plays that part, so a third-party page cannot sign a browser into an account
of its choosing either. A POST whose ``_csrf`` does not match gets 403 before any handler runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

FIELD = "_csrf"
HEADER = "X-CSRF-Token"  # the live board's script, if it ever posts


def token_for(key: bytes, cookie_token: str, purpose: str) -> str:
    mac = hmac.new(key, f"{purpose}:{cookie_token}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def valid(key: bytes, cookie_token: str | None, purpose: str, given: str | None) -> bool:
    if not cookie_token or not given:
        return False
    return hmac.compare_digest(token_for(key, cookie_token, purpose).encode(), given.encode())
