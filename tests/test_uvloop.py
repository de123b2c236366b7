"""The client, the batch and the fake server on uvloop, as many production services run."""

from __future__ import annotations

from decimal import Decimal

import pytest

from freedompay_async import RequestTimeoutError, Timeout
from freedompay_async.testing import FakeFreedomPay, Faults

uvloop = pytest.importorskip("uvloop")


def test_everything_works_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    from freedompay_async import _deadlines

    # The 0.2 s total below goes through the shared-tick deadlines, not a timer of its own.
    monkeypatch.setattr(_deadlines, "COARSE_TIMEOUT", 0.1)
    monkeypatch.setattr(_deadlines, "DEADLINE_TICK", 0.05)

    async def main() -> tuple[Decimal, int, type[Exception]]:
        async with FakeFreedomPay(wallets=200) as fake, fake.client(max_retries=0) as client:
            info = await client.wallets.info("user-7")
            ok = 0
            async with client.wallets.info_many(f"user-{i}" for i in range(200)) as results:
                async for result in results:
                    ok += result.ok
            fake.inject_faults(Faults(stall_rate=1.0))
            try:
                await client.wallets.info("user-1", timeout=Timeout(total=0.2, connect=None))
            except RequestTimeoutError as exc:
                timed_out: type[Exception] = type(exc)
            return info.wallet.balance, ok, timed_out

    balance, ok, timed_out = uvloop.run(main())
    assert balance == Decimal("55433.07")
    assert ok == 200
    assert timed_out is RequestTimeoutError
