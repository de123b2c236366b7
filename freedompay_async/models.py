"""Request and response models: ``msgspec.Struct`` types decoded straight from the wire bytes.

Responses are ``frozen`` and ``kw_only`` and ignore unknown fields (forward compatibility).
Money is :class:`decimal.Decimal` (decoded exactly from JSON strings *and* numbers), timestamps
are timezone-aware :class:`datetime.datetime`, Freedom Pay ids are :class:`uuid.UUID`.
Values the docs do not enumerate (wallet status, unknown request states) are kept as sent.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Final
from uuid import UUID

import msgspec

__all__ = [
    "AwareDatetime",
    "Envelope",
    "Identifier",
    "InfoRequest",
    "RequestStatus",
    "Response",
    "Wallet",
    "WalletInfo",
    "WalletStatus",
]

#: A :class:`datetime` that must carry a UTC offset (RFC 3339).
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class RequestStatus(str, enum.Enum):
    """Processing state of a request, whatever spelling the server used.

    The E-Money docs say ``0`` / ``1`` / ``2``, the Card API ``success`` / ``process`` /
    ``error``; both (as strings or numbers) map to the same members. A value neither spelling
    knows becomes :attr:`UNKNOWN`; the raw value stays on the model as ``request_status_raw``.

    >>> RequestStatus.parse("1") is RequestStatus.parse("process") is RequestStatus.PROCESSING
    True
    """

    SUCCESS = "success"
    PROCESSING = "process"
    ERROR = "error"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """True once the request has finished, successfully or not."""
        return self is RequestStatus.SUCCESS or self is RequestStatus.ERROR

    @classmethod
    def parse(cls, raw: str | int | None) -> RequestStatus | None:
        """Map any documented spelling to a member; ``None`` stays ``None``."""
        if raw is None:
            return None
        key = raw.strip().lower() if isinstance(raw, str) else raw
        return _REQUEST_STATUS_SPELLINGS.get(key, cls.UNKNOWN)


_REQUEST_STATUS_SPELLINGS: Final[dict[str | int, RequestStatus]] = {
    "0": RequestStatus.SUCCESS,
    0: RequestStatus.SUCCESS,
    "success": RequestStatus.SUCCESS,
    "ok": RequestStatus.SUCCESS,
    "1": RequestStatus.PROCESSING,
    1: RequestStatus.PROCESSING,
    "process": RequestStatus.PROCESSING,
    "processing": RequestStatus.PROCESSING,
    "2": RequestStatus.ERROR,
    2: RequestStatus.ERROR,
    "error": RequestStatus.ERROR,
}


class WalletStatus(str, enum.Enum):
    """Wallet states we expect; the wire value is kept as a plain ``str`` on :class:`Wallet`,
    so compare with these (``wallet.status == WalletStatus.CLOSED``) and expect others too."""

    ACTIVE = "active"
    BLOCKED = "blocked"
    CLOSED = "closed"


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope every reply shares. ``status`` is ``"ok"`` or ``"error"``."""

    status: str
    request_status_raw: str | int | None = msgspec.field(default=None, name="request_status")
    dt: AwareDatetime | None = None
    error_code_raw: str | int | None = msgspec.field(default=None, name="error_code")
    error_description: str | None = None

    @property
    def request_status(self) -> RequestStatus | None:
        """The processing state, normalised (see :class:`RequestStatus`)."""
        return RequestStatus.parse(self.request_status_raw)

    @property
    def error_code(self) -> str | None:
        """The error code as a string (the docs show numbers, the schema says string)."""
        raw = self.error_code_raw
        return raw if raw is None or isinstance(raw, str) else str(raw)

    @property
    def ok(self) -> bool:
        """True unless the server said ``status: "error"``."""
        return self.status != "error"


#: Just the envelope: what we decode when a reply does not fit its endpoint's model.
Envelope = Response


class Identifier(msgspec.Struct, frozen=True, kw_only=True):
    """One partner-side identifier of a wallet."""

    value: str


class Wallet(msgspec.Struct, frozen=True, kw_only=True):
    """A wallet as Info describes it."""

    wallet_id: UUID
    currency: str
    balance: Decimal
    identifiers: tuple[Identifier, ...] = ()
    owner_id: str | None = None
    account_number: str | None = None
    status: str | None = None


class WalletInfo(Response, frozen=True, kw_only=True):
    """Reply of ``wallets.info``: the envelope plus the wallet."""

    wallet: Wallet


class InfoRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``/v5/partner/wallet/info``."""

    identifier: str
