"""Test helpers: a fake Freedom Pay server speaking real HTTP on loopback.

>>> from freedompay_async.testing import FakeFreedomPay
>>> async with FakeFreedomPay(wallets=100) as fake:  # doctest: +SKIP
...     async with fake.client() as client:
...         info = await client.wallets.info("user-42")
"""

from ._faults import Faults
from ._server import FakeFreedomPay, FakeStats, FakeWallet

__all__ = ["FakeFreedomPay", "FakeStats", "FakeWallet", "Faults"]
