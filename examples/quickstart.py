"""Quickstart against the bundled fake server: python examples/quickstart.py

Swap ``fake.client()`` for ``FreedomPayClient(auth_id=..., secret_key=...)`` to talk to the
real API (credentials can also come from FREEDOMPAY_AUTH_ID / FREEDOMPAY_SECRET_KEY).
"""

from __future__ import annotations

import asyncio

from freedompay_async import FreedomPayClient, WalletNotFoundError
from freedompay_async.testing import FakeFreedomPay


async def main() -> None:
    async with FakeFreedomPay(wallets=3) as fake:
        fake.add_wallet("user-42", balance="15230.50", currency="KZT")
        async with FreedomPayClient(
            auth_id=fake.auth_id, secret_key=fake.secret_key, base_url=fake.url
        ) as client:
            info = await client.wallets.info("user-42")
            print(info.wallet.balance, info.wallet.currency)  # 15230.50 KZT
            try:
                await client.wallets.info("user-404")
            except WalletNotFoundError as exc:
                print(f"{type(exc).__name__}: error_code={exc.error_code}")


if __name__ == "__main__":
    asyncio.run(main())
