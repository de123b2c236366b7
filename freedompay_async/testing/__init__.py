"""Test helpers: a fake Freedom Pay server speaking real HTTP on loopback.

>>> from freedompay_async.testing import FakeFreedomPay
>>> async with FakeFreedomPay(wallets=100) as fake:  # doctest: +SKIP
...     async with fake.client() as client:
...         info = await client.wallets.info("user-42")

With pytest, the ``fake_freedompay`` and ``freedompay_client`` fixtures of the bundled plugin
(:mod:`freedompay_async.testing.pytest_plugin`, registered by the package) do this per test.
"""

from ._faults import Faults
from ._redis import RedisServer
from ._server import FakeFreedomPay, FakeStats
from ._state import FakeLedger, FakeOperation, FakeRequest, FakeWallet, RequestState

__all__ = [
    "FakeFreedomPay",
    "FakeLedger",
    "FakeOperation",
    "FakeRequest",
    "FakeStats",
    "FakeWallet",
    "Faults",
    "RedisServer",
    "RequestState",
]
