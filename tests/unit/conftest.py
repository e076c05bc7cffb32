"""Fixtures shared by the unit tests."""

import dataclasses

import pytest

from ivr.config import routing as rt
from tests.paths import REPO_ROOT

from .zalo_fake import FakeZalo


@pytest.fixture
async def fake():
    """A strict fake of Zalo's OA, OAuth and ZNS APIs on a local port."""
    f = await FakeZalo().start()
    yield f
    await f.stop()


@pytest.fixture(scope="session")
def routing() -> rt.Routing:
    """The repository's routing.yaml."""
    return rt.load(REPO_ROOT / "routing.yaml")


def hasty(routing: rt.Routing, **menu) -> rt.Routing:
    """``routing`` with its waits for a key cut to 50 ms, so that a caller who presses nothing
    costs a test milliseconds; ``menu``: other menu settings to change."""
    return dataclasses.replace(
        routing, menu=dataclasses.replace(routing.menu, first_digit_timeout=0.05, **menu),
        survey=dataclasses.replace(routing.survey, timeout=0.05))
