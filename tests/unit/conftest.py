"""Fixtures shared by the unit tests."""

import pytest

from .zalo_fake import FakeZalo


@pytest.fixture
async def fake():
    """A strict fake of Zalo's OA, OAuth and ZNS APIs on a local port."""
    f = await FakeZalo().start()
    yield f
    await f.stop()
