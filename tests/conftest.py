"""Shared fixtures. Every test runs with warnings as errors (pyproject) and fails on loop errors
(unclosed sessions reported through the loop's exception handler) or tasks left running."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from freedompay_async import FreedomPayClient, RetryPolicy
from freedompay_async.testing import FakeFreedomPay, RedisServer

pytest_plugins = ["pytester"]  # tests/test_plugin.py runs users' test files in a fresh project


@pytest.fixture(autouse=True)
async def _no_loop_errors_or_stray_tasks() -> AsyncIterator[None]:
    """Fail a test whose event loop reported an error or that left tasks behind."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield
    gc.collect()  # unclosed sessions report themselves from __del__
    await asyncio.sleep(0)
    me = asyncio.current_task()
    stray = [task for task in asyncio.all_tasks() if task is not me and not task.done()]
    loop.set_exception_handler(None)
    assert not errors, f"event loop reported errors: {errors}"
    assert not stray, f"tasks left running: {stray}"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server for the distributed tests: the one .ci/run started, else our own."""
    started = os.environ.get("FREEDOMPAY_TEST_REDIS_URL")  # .ci/run starts one
    if started:
        yield started
        return
    try:
        server = RedisServer()
    except FileNotFoundError:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server must be installed on CI (.ci/run installs it)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with server:
        yield server.url


@pytest.fixture
async def fake() -> AsyncIterator[FakeFreedomPay]:
    async with FakeFreedomPay(wallets=100) as server:
        yield server


@pytest.fixture
async def client(fake: FakeFreedomPay) -> AsyncIterator[FreedomPayClient]:
    # Default attempts, but short waits between them.
    async with fake.client(retry=RetryPolicy(backoff=0.001)) as c:
        yield c
