"""Access-token refresh against the fake Zalo: the single-use refresh token is never lost, not
even by a crash between Zalo rotating it and our store; one refresh at a time; no token logged."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import stat

import aiohttp
import pytest

from ivr.zalo import tokens as tk
from ivr.zalo.api import TokenError, ZaloApi

from .zalo_fake import APP_ID, APP_SECRET, SEED, Clock


class Crash(BaseException):
    """The process dies here (not an Exception: nothing may catch it)."""


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


def manager(fake, http, path, *, seed=SEED, clock=None) -> tk.TokenManager:
    api = ZaloApi(http, api_url=fake.url, zns_url=fake.url, oauth_url=fake.url, app_id=APP_ID, app_secret=APP_SECRET)
    return tk.TokenManager(api, tk.TokenStore(path), seed=seed, clock=clock or Clock(dt.datetime(2027, 3, 10, 3, tzinfo=dt.timezone.utc)))


async def test_first_use_refreshes_with_the_seed_and_stores_the_new_pair(fake, http, tmp_path):
    path = tmp_path / "zalo-tokens.json"
    m = manager(fake, http, path)
    token = await m.access_token()
    assert token == fake.access and fake.refreshes == 1
    stored = json.loads(path.read_text())
    assert stored["refresh_token"] in fake.valid_refresh and SEED not in fake.valid_refresh  # the seed is now dead
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A restart with the same (dead) seed keeps using the stored pair: no refresh with the seed.
    m2 = manager(fake, http, path)
    assert await m2.access_token() == token and fake.refreshes == 1
    assert ("token", -14014) not in fake.calls


async def test_refreshes_before_expiry(fake, http, tmp_path):
    clock = Clock(dt.datetime(2027, 3, 10, 3, tzinfo=dt.timezone.utc))
    m = manager(fake, http, tmp_path / "t.json", clock=clock)
    first = await m.access_token()
    clock.advance(hours=19)  # 25 h token, refreshed within the last 5 h
    assert await m.access_token() == first and fake.refreshes == 1
    clock.advance(hours=1, minutes=1)
    second = await m.access_token()
    assert second != first and second == fake.access and fake.refreshes == 2


async def test_crash_between_zalo_rotating_and_the_rename_loses_nothing(fake, http, tmp_path, monkeypatch):
    path = tmp_path / "zalo-tokens.json"
    m = manager(fake, http, path)
    await m.access_token()
    before = json.loads(path.read_text())
    fake.expire_access()

    real_replace = os.replace

    def crash_on_replace(src, dst):
        raise Crash()

    monkeypatch.setattr(tk.os, "replace", crash_on_replace)
    with pytest.raises(Crash):
        await m.refresh(rejected=before["access_token"])  # Zalo rotated; we "die" before the rename
    monkeypatch.setattr(tk.os, "replace", real_replace)
    assert json.loads(path.read_text()) == before  # the old file is untouched…
    assert before["refresh_token"] not in fake.valid_refresh  # …and its refresh token is dead at Zalo
    # The next process finds the durable .new file and adopts it: the new pair is not lost.
    m2 = manager(fake, http, path)
    assert await m2.access_token() == fake.access
    assert fake.refreshes == 2 and not path.with_name(path.name + ".new").exists()
    # And the chain goes on: the adopted refresh token is the one Zalo accepts next.
    fake.expire_access()
    await m2.refresh(rejected=json.loads(path.read_text())["access_token"])
    assert fake.refreshes == 3 and ("token", -14014) not in fake.calls


async def test_a_torn_temporary_file_is_ignored(fake, http, tmp_path):
    path = tmp_path / "zalo-tokens.json"
    m = manager(fake, http, path)
    token = await m.access_token()
    path.with_name(path.name + ".new").write_text('{"access_token": "acc')  # died mid-write
    assert await manager(fake, http, path).access_token() == token


async def test_concurrent_refreshes_across_processes_use_the_refresh_token_once(fake, http, tmp_path):
    path = tmp_path / "zalo-tokens.json"
    a, b = manager(fake, http, path), manager(fake, http, path)  # two processes sharing the file
    await a.access_token()
    stale = fake.access
    fake.expire_access()
    results = await asyncio.gather(a.refresh(rejected=stale), b.refresh(rejected=stale), a.refresh(rejected=stale))
    assert fake.refreshes == 2  # the seed refresh plus exactly one more
    assert len({r.access_token for r in results}) == 1 and results[0].access_token == fake.access
    assert ("token", -14014) not in fake.calls


async def test_a_new_seed_replaces_a_dead_chain(fake, http, tmp_path):
    path = tmp_path / "zalo-tokens.json"
    await manager(fake, http, path).access_token()
    fake.valid_refresh = set()  # the grant was revoked: the stored refresh token no longer works
    fake.expire_access()
    with pytest.raises(TokenError) as e:
        await manager(fake, http, path).refresh(rejected=json.loads(path.read_text())["access_token"])
    assert "cấp quyền lại" in str(e.value)
    _, new_seed = fake.issue()  # an OA admin granted the app again; the operator sets the new seed
    fake.expire_access()
    m = manager(fake, http, path, seed=new_seed)
    assert await m.access_token() == fake.access


async def test_no_seed_and_no_file_is_a_clear_error(fake, http, tmp_path):
    with pytest.raises(TokenError) as e:
        await manager(fake, http, tmp_path / "t.json", seed=None).access_token()
    assert "TONGDAI_ZALO_REFRESH_TOKEN" in str(e.value) and fake.refreshes == 0


async def test_tokens_and_secrets_never_reach_the_log(fake, http, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        m = manager(fake, http, tmp_path / "t.json")
        first = await m.access_token()
        fake.expire_access()
        second = (await m.refresh(rejected=first)).access_token
        fake.valid_refresh = set()
        fake.expire_access()
        with pytest.raises(TokenError):
            await m.refresh(rejected=second)
    text = caplog.text + repr(m.current())
    secrets = [SEED, APP_SECRET, *(f"access-{i}" for i in range(1, 4)), *(f"refresh-{i}" for i in range(1, 4))]
    assert caplog.text.count("refreshed") == 2 and fake.refreshes == 2
    assert not [s for s in secrets if s in text]
