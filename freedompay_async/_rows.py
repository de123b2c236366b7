"""One flat, serialisable line per wallet lookup: what ``poll`` writes, and what a distributed
worker stores for the producer (exceptions do not cross processes; their class name, code,
HTTP status and message do)."""

from __future__ import annotations

from decimal import Decimal
from typing import Final
from uuid import UUID

import msgspec

from .batch import BatchResult
from .errors import FreedomPayError
from .models import WalletInfo

__all__ = ["COLUMNS", "Row", "WalletResult", "to_row"]

WalletResult = BatchResult[str, WalletInfo, FreedomPayError]


class Row(msgspec.Struct, kw_only=True):
    """One output line: a wallet's balance, or why it could not be read."""

    identifier: str
    ok: bool
    balance: Decimal | None = None
    currency: str | None = None
    status: str | None = None
    wallet_id: UUID | None = None
    error: str | None = None
    error_code: str | None = None
    http_status: int | None = None
    message: str | None = None


#: The field names, in output order (the CSV header).
COLUMNS: Final = Row.__struct_fields__


def to_row(result: WalletResult) -> Row:
    """The row of one :class:`~freedompay_async.batch.BatchResult` of ``info_many``."""
    error = result.error
    if error is None:
        wallet = result.value.wallet
        return Row(
            identifier=result.identifier,
            ok=True,
            balance=wallet.balance,
            currency=wallet.currency,
            status=wallet.status,
            wallet_id=wallet.wallet_id,
        )
    return Row(
        identifier=result.identifier,
        ok=False,
        error=type(error).__name__,
        error_code=error.error_code_raw,
        http_status=error.http_status,
        message=error.message,
    )
