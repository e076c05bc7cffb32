"""What a call may use of the world around it, and nothing more.

The dispatcher builds one :class:`CallContext` and hands it to every session; the steps read
it through ``session.ctx``. They never see the dispatcher, the server or the settings: a step
that needs something new gets a field here, named for what it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ivr.call.callback import Callbacks
    from ivr.call.queue import Queues
    from ivr.call.route import RouteState
    from ivr.call.session import CallSession
    from ivr.config.hours import OpenState


class AriRequests(Protocol):
    """The part of the ARI client a call uses (ivr.pbx.ari.Ari, or ivr.testing's fake)."""

    lost_at: float | None

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      ok_missing: bool = False) -> Any: ...


class CallLogSink(Protocol):
    """Where a call's record goes (ivr.records.calllog.CallLog)."""

    engine: Any

    def opened(self, rec: Any) -> None: ...

    def closed(self, rec: Any) -> None: ...

    async def flush(self) -> None: ...


class SpokenTexts(Protocol):
    """Text spoken on demand, cached (ivr.pbx.speech.Speech): an answer, an agency's name."""

    def ready(self, text: str) -> str | None: ...  # the media URI, once synthesised

    def prepare_soon(self, text: str) -> None: ...  # synthesise in the background, never wait


def _always_open() -> OpenState:
    from ivr.config.hours import OpenState

    return OpenState(True, "test")


def _queues() -> Queues:
    from ivr.call.queue import Queues

    return Queues()


@dataclass
class CallContext:
    ari: AriRequests
    calllog: CallLogSink
    route_state: RouteState
    home: Path  # TONGDAI_HOME: recordings and the case spool live under it
    recording_spool: Path  # where Asterisk writes recordings, as seen from this host
    own: Callable[[str, CallSession], None]  # route a channel's events to the session
    finished: Callable[[CallSession], None]  # the session has ended
    is_open: Callable[[], OpenState] = _always_open
    reachable: Callable[[str], bool | None] = lambda ext: None  # presence: None when unknown
    # Whether a desk phone is in (or ringing for) a call other than this session's: the
    # controller's calls and AMI device state. Such a phone is never rung (no call waiting).
    # ``None``: asked by the callback service, not a call.
    busy: Callable[[str, CallSession | None], bool] = lambda ext, session: False
    queues: Queues = field(default_factory=lambda: _queues())  # the branches' queues, shared by all calls
    strict: bool = False  # an unexpected event raises instead of being logged
    speech: SpokenTexts | None = None  # None: nothing dynamic is spoken (the look-up says so)
    recordings_gid: int | None = None  # a group that may read recordings (TONGDAI_RECORDINGS_GROUP)
    callbacks: Callbacks | None = None  # key 1 in a queue; None: no outbound trunk (TONGDAI_TRUNK_OUT)
