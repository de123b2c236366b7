"""The pytest plugin: ``fake_freedompay`` and ``freedompay_client`` fixtures for your tests.

Installed with the package (the ``pytest11`` entry point ``freedompay``), so there is nothing to
import or register::

    import pytest
    from freedompay_async import FreedomPayClient, WalletNotFoundError
    from freedompay_async.testing import FakeFreedomPay

    @pytest.mark.freedompay(wallets=10)
    async def test_balance(fake_freedompay: FakeFreedomPay, freedompay_client: FreedomPayClient):
        fake_freedompay.add_wallet("vip", balance="100.00")
        info = await freedompay_client.wallets.info("vip")
        assert info.wallet.balance == Decimal("100.00")

- ``fake_freedompay``: a running :class:`~freedompay_async.testing.FakeFreedomPay`, one per
  test, stopped after it. Its arguments come from the ``freedompay_fake_options`` fixture
  (override it in a ``conftest.py`` for a whole directory) updated by the
  ``@pytest.mark.freedompay(...)`` marker of the test (``wallets=``, ``faults=``,
  ``latency=``, ...: :class:`FakeFreedomPay`'s keyword arguments).
- ``freedompay_client``: a :class:`~freedompay_async.FreedomPayClient` bound to it (opened
  for the test, closed after it), built with the ``freedompay_client_options`` fixture's
  keyword arguments (``FakeFreedomPay.client``'s).

Both work whatever runs your async tests: pytest-asyncio in ``strict`` or ``auto`` mode, or
anyio's pytest plugin (``@pytest.mark.anyio``; the ``asyncio`` backend: the fake server is
aiohttp). Each fixture runs on the event loop of the test that uses it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .._client import FreedomPayClient
from ._server import FakeFreedomPay

try:  # pytest-asyncio is optional: anyio's plugin is enough
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    HAVE_PYTEST_ASYNCIO = False
else:
    HAVE_PYTEST_ASYNCIO = True

__all__ = [
    "fake_freedompay",
    "freedompay_client",
    "freedompay_client_options",
    "freedompay_fake_options",
]

MARKER = "freedompay"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the fake_freedompay fixture's FakeFreedomPay"
        " (wallets=, faults=, latency=, auth_id=, secret_key=, currency=, ...)",
    )


@pytest.fixture
def freedompay_fake_options() -> dict[str, Any]:
    """Keyword arguments of the ``fake_freedompay`` server (override it to change them);
    a test's ``@pytest.mark.freedompay(...)`` marker updates them."""
    return {}


@pytest.fixture
def freedompay_client_options() -> dict[str, Any]:
    """Keyword arguments of ``fake_freedompay.client(...)`` for ``freedompay_client``
    (override it, e.g. ``{"max_retries": 0}``)."""
    return {}


def _runner(request: pytest.FixtureRequest) -> str:
    """Which plugin runs this test's coroutines: anyio's (the test asked for a backend) or
    pytest-asyncio's."""
    if "anyio_backend" in request.fixturenames:
        backend = request.getfixturevalue("anyio_backend")
        name = backend[0] if isinstance(backend, tuple) else backend
        if name != "asyncio":
            pytest.skip(f"FakeFreedomPay runs on asyncio (aiohttp), not on {name}")
        return "anyio"
    if not HAVE_PYTEST_ASYNCIO:
        raise pytest.UsageError(
            "the freedompay fixtures need pytest-asyncio or anyio's pytest plugin"
            " (@pytest.mark.anyio) to run async fixtures"
        )
    return "asyncio"


@pytest.fixture
def fake_freedompay(request: pytest.FixtureRequest) -> FakeFreedomPay:
    """A running :class:`FakeFreedomPay` on 127.0.0.1 (an ephemeral port), for one test."""
    fake: FakeFreedomPay = request.getfixturevalue(f"_freedompay_fake_{_runner(request)}")
    return fake


@pytest.fixture
def freedompay_client(request: pytest.FixtureRequest) -> FreedomPayClient:
    """A :class:`FreedomPayClient` bound to ``fake_freedompay``, open for one test."""
    client: FreedomPayClient = request.getfixturevalue(f"_freedompay_client_{_runner(request)}")
    return client


# The async halves. One plain pair for anyio's plugin (it runs any async fixture of a test
# that has an anyio backend) and one pair declared with pytest_asyncio.fixture (which strict
# mode needs); the public fixtures above pick the pair of the plugin running the test.


def _fake_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = dict(request.getfixturevalue("freedompay_fake_options"))
    for marker in reversed(list(request.node.iter_markers(MARKER))):  # closest last: it wins
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keyword arguments only, e.g. wallets=10"
            )
        options.update(marker.kwargs)
    return options


@pytest.fixture
async def _freedompay_fake_anyio(request: pytest.FixtureRequest) -> AsyncIterator[FakeFreedomPay]:
    async with FakeFreedomPay(**_fake_options(request)) as fake:
        yield fake


@pytest.fixture
async def _freedompay_client_anyio(
    _freedompay_fake_anyio: FakeFreedomPay, freedompay_client_options: dict[str, Any]
) -> AsyncIterator[FreedomPayClient]:
    async with _freedompay_fake_anyio.client(**freedompay_client_options) as client:
        yield client


if HAVE_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def _freedompay_fake_asyncio(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[FakeFreedomPay]:
        async with FakeFreedomPay(**_fake_options(request)) as fake:
            yield fake

    @pytest_asyncio.fixture
    async def _freedompay_client_asyncio(
        _freedompay_fake_asyncio: FakeFreedomPay, freedompay_client_options: dict[str, Any]
    ) -> AsyncIterator[FreedomPayClient]:
        async with _freedompay_fake_asyncio.client(**freedompay_client_options) as client:
            yield client
