"""``client.wallets``: each method validates its arguments, then is one call into the table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _protocol
from .._config import MAX_IDENTIFIER_LENGTH, Timeout
from ..models import InfoRequest, WalletInfo

if TYPE_CHECKING:
    from .._client import FreedomPayClient


def check_identifier(identifier: object, name: str = "identifier") -> str:
    """Validate a partner-side wallet identifier before anything is sent."""
    if not isinstance(identifier, str):
        raise TypeError(f"{name} must be a str, not {type(identifier).__name__}")
    if not identifier or identifier.isspace():
        raise ValueError(f"{name} must not be empty")
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(
            f"{name} is {len(identifier)} characters long; at most {MAX_IDENTIFIER_LENGTH} allowed"
        )
    if not identifier.isprintable():
        raise ValueError(f"{name} must not contain control characters")
    return identifier


class Wallets:
    """Wallet operations of the E-Money API."""

    __slots__ = ("_client",)

    def __init__(self, client: FreedomPayClient) -> None:
        self._client = client

    async def info(self, identifier: str, *, timeout: float | Timeout | None = None) -> WalletInfo:
        """Look a wallet up by its partner-side identifier.

        >>> info = await client.wallets.info("user-42")  # doctest: +SKIP
        >>> info.wallet.balance, info.wallet.currency  # doctest: +SKIP
        (Decimal('15230.50'), 'KZT')

        Raises:
            WalletNotFoundError: no wallet has this identifier (1004).
            ValueError / TypeError: ``identifier`` is empty, not a str or too long (not sent).
        """
        check_identifier(identifier)
        return await self._client._request(
            _protocol.INFO,
            InfoRequest(identifier=identifier),
            identifier=identifier,
            timeout=timeout,
        )
