"""Pydantic v2 mirrors of ``freedompay_async.models.WalletInfo`` (same fields, same types), for
the httpx contender and the decode micro-benchmark."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict


class IdentifierModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: str


class WalletModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    wallet_id: UUID
    currency: str
    balance: Decimal
    identifiers: tuple[IdentifierModel, ...] = ()
    owner_id: str | None = None
    account_number: str | None = None
    status: str | None = None


class WalletInfoModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str
    request_status: str | int | None = None
    dt: AwareDatetime | None = None
    error_code: str | int | None = None
    error_description: str | None = None
    wallet: WalletModel
