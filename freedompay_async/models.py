"""Request and response models: ``msgspec.Struct`` types decoded straight from the wire bytes.

Responses are ``frozen`` and ``kw_only`` and ignore unknown fields (forward compatibility).
Money is :class:`decimal.Decimal` (decoded exactly from JSON strings *and* numbers), timestamps
are timezone-aware :class:`datetime.datetime`, Freedom Pay ids are :class:`uuid.UUID`.
Values the docs do not enumerate (wallet status, unknown request states) are kept as sent.
"""

from __future__ import annotations

import enum
import functools
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, cast
from uuid import UUID

import msgspec

from ._config import MAX_AMOUNT_FRACTION_DIGITS, MAX_AMOUNT_INTEGER_DIGITS

__all__ = [
    "AddRequest",
    "AwareDatetime",
    "BalanceRequest",
    "BlockRequest",
    "CloseRequest",
    "Correspondent",
    "Envelope",
    "Identifier",
    "InfoRequest",
    "InvalidAmountError",
    "MutationResult",
    "Operation",
    "OperationType",
    "OwnerIdentificationRequest",
    "PartialWallet",
    "ProvisionalResponse",
    "RequestStatus",
    "RequestStatusRequest",
    "RequestStatusResult",
    "Response",
    "StatementRequest",
    "Wallet",
    "WalletAdded",
    "WalletBalance",
    "WalletInfo",
    "WalletStatement",
    "WalletStatus",
    "owner_identification_request",
]


class InvalidAmountError(ValueError):
    """An amount in a reply is not a finite number within the bounds the SDK accepts.

    Decoding turns it into a :class:`~freedompay_async.errors.ResponseDecodeError`.
    """


def check_amount(value: Decimal | None, name: str) -> None:
    """Refuse money that is not finite, or has more than
    :data:`~freedompay_async._config.MAX_AMOUNT_INTEGER_DIGITS` digits before the point or
    :data:`~freedompay_async._config.MAX_AMOUNT_FRACTION_DIGITS` after it. The message never
    repeats the value (it may be half a megabyte of digits)."""
    if value is None:
        return
    if not value.is_finite():
        raise InvalidAmountError(f"{name} is not a finite number")
    exponent = value.as_tuple().exponent
    if (isinstance(exponent, int) and exponent < -MAX_AMOUNT_FRACTION_DIGITS) or (
        value and value.adjusted() >= MAX_AMOUNT_INTEGER_DIGITS
    ):
        raise InvalidAmountError(
            f"{name} is out of bounds (at most {MAX_AMOUNT_INTEGER_DIGITS} digits before the"
            f" decimal point and {MAX_AMOUNT_FRACTION_DIGITS} after it)"
        )


#: Placeholder of ``request_id`` between decoding and the SDK setting the id it sent (never
#: seen by users: every result the SDK returns carries the real id).
NO_REQUEST_ID: Final = UUID(int=0)

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


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope every reply shares, every field but ``status`` optional: what an error
    reply, or a provisional reply that does not fit its model, is read as.
    ``status`` is ``"ok"`` or ``"error"``."""

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
    def error_code(self) -> int | None:
        """The error code as an ``int`` (``None`` when absent or not a number: see
        ``error_code_raw``, kept as sent)."""
        return numeric_error_code(self.error_code_raw)

    @property
    def ok(self) -> bool:
        """True unless the server said ``status: "error"``."""
        return self.status != "error"


class Response(Envelope, frozen=True, kw_only=True):
    """The envelope of a successful reply: ``request_status`` and ``dt`` are always there (the
    spec's common envelope is verified); a reply without them is a ``ResponseDecodeError``."""

    request_status_raw: str | int = msgspec.field(name="request_status")
    dt: AwareDatetime

    @property
    def request_status(self) -> RequestStatus:
        """The processing state, normalised (see :class:`RequestStatus`)."""
        return RequestStatus.parse(self.request_status_raw) or RequestStatus.UNKNOWN


_NUMERIC_CODE: Final = re.compile(r"\s*(-?[0-9]+)\s*")


def numeric_error_code(raw: str | int | None) -> int | None:
    """An error code as an ``int`` when it is a number (``"1004"``, ``" 1004 "``, ``1004``);
    ``None`` when it is missing or not a number (the raw value is kept beside it)."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    match = _NUMERIC_CODE.fullmatch(raw)
    return int(match.group(1)) if match else None


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

    def __post_init__(self) -> None:
        check_amount(self.balance, "balance")


class WalletInfo(Response, frozen=True, kw_only=True):
    """Reply of ``wallets.info``: the envelope plus the wallet."""

    wallet: Wallet


class InfoRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``/v5/partner/wallet/info``."""

    identifier: str


class OperationType(str, enum.Enum):
    """Statement operation types the docs list; ``Operation.type`` stays a plain ``str``, so
    compare with these (``op.type == OperationType.TRANSFER``) and expect others too."""

    SALE = "emoney_sale"
    BUY = "emoney_buy"
    EMISSION = "emoney_emission"
    TRANSFER = "emoney_transfer"
    PAY = "emoney_pay"
    SERVICEPAY = "emoney_servicepay"


class PartialWallet(msgspec.Struct, frozen=True, kw_only=True):
    """A wallet object in a reply whose shape the docs do not pin down (Add, Request status,
    Balance): the fields of :class:`Wallet`, every one optional."""

    wallet_id: UUID | None = None
    currency: str | None = None
    balance: Decimal | None = None
    identifiers: tuple[Identifier, ...] = ()
    owner_id: str | None = None
    account_number: str | None = None
    status: str | None = None

    def __post_init__(self) -> None:
        check_amount(self.balance, "balance")


class ProvisionalResponse(Response, frozen=True, kw_only=True):
    """A reply whose shape is *provisional*: the docs do not show it, so it is decoded leniently.

    ``raw`` holds the whole reply as sent (JSON numbers that are not integers become
    :class:`~decimal.Decimal`, never ``float``), so a field the SDK does not know yet is still
    reachable: ``result.raw["some_field"]``.
    """

    # The wire name keeps a reply field called "raw" from ever landing here; the SDK fills it.
    raw: dict[str, Any] = msgspec.field(default_factory=dict, name="__raw__")


class WalletBalance(ProvisionalResponse, frozen=True, kw_only=True):
    """Reply of ``wallets.balance`` (**provisional shape**).

    ``balance`` and ``currency`` are read from the top level of the reply, or else from a
    ``wallet`` object; either may be ``None`` if the real reply names them differently (look in
    ``raw`` then).
    """

    balance: Decimal | None = None
    currency: str | None = None
    wallet: PartialWallet | None = None

    def __post_init__(self) -> None:
        check_amount(self.balance, "balance")
        wallet = self.wallet
        if wallet is not None:
            if self.balance is None and wallet.balance is not None:
                msgspec.structs.force_setattr(self, "balance", wallet.balance)
            if self.currency is None and wallet.currency is not None:
                msgspec.structs.force_setattr(self, "currency", wallet.currency)


class Correspondent(msgspec.Struct, frozen=True, kw_only=True):
    """The other side of a statement operation."""

    name: str | None = None
    account_number: str | None = None


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a statement.

    ``amount`` and ``commission`` arrive as JSON numbers and are decoded straight to
    :class:`~decimal.Decimal` (never through ``float``). ``type`` is kept as sent; compare it
    with :class:`OperationType`.
    """

    type: str
    amount: Decimal
    datetime: AwareDatetime
    commission: Decimal | None = None
    currency: str | None = None
    rrn: str | None = None
    correspondent: Correspondent | None = None

    def __post_init__(self) -> None:
        check_amount(self.amount, "amount")
        check_amount(self.commission, "commission")


class WalletStatement(Response, frozen=True, kw_only=True):
    """Reply of ``wallets.statement``: the wallet's operations in the requested period."""

    operations: tuple[Operation, ...] = ()


class MutationResult(ProvisionalResponse, frozen=True, kw_only=True):
    """Reply of a mutation (``block``, ``close``, ``identify_owner``).

    ``request_id`` is the id the request was sent with (generated by the SDK when you gave
    none), always set: keep it to ask ``wallets.request_status`` / ``wallets.wait`` later.
    ``request_status`` is :attr:`RequestStatus.PROCESSING` while the operation is not done.
    """

    # Never read from the reply (hence the wire name): the SDK sets the id it sent.
    request_id: UUID = msgspec.field(default=NO_REQUEST_ID, name="__request_id__")


class WalletAdded(MutationResult, frozen=True, kw_only=True):
    """Reply of ``wallets.add`` (**provisional shape**): ``wallet`` when the server sends one."""

    wallet: PartialWallet | None = None


class RequestStatusResult(ProvisionalResponse, frozen=True, kw_only=True):
    """Reply of ``wallets.request_status`` (**provisional shape**).

    ``request_status`` is the state of the *original* operation; ``error_code`` /
    ``error_description`` say why it failed when it did. ``wallet`` is filled when the server
    sends the operation's wallet (e.g. for Add). Everything else is in ``raw``.
    ``request_id`` is the id asked about (set by the SDK).
    """

    request_id: UUID = msgspec.field(default=NO_REQUEST_ID, name="__request_id__")
    wallet: PartialWallet | None = None


# -- request bodies -------------------------------------------------------------------------


class BalanceRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Body of Balance (path unverified)."""

    identifier: str


class StatementRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Body of Statement; the dates go out as RFC 3339 and are omitted when not given."""

    identifier: str
    start_date: AwareDatetime | None = None
    end_date: AwareDatetime | None = None


class RequestStatusRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Body of Request status (path unverified)."""

    request_id: UUID


class AddRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Body of Add. Field order matches the docs' example, so it encodes byte for byte like it;
    ``identifier`` is unverified and omitted when not given."""

    request_id: UUID
    country: str
    currency: str
    identifier: str | None = None


class BlockRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Body of Block; ``description`` is the reason."""

    request_id: UUID
    identifier: str
    description: str


class CloseRequest(BlockRequest, frozen=True, kw_only=True, omit_defaults=True):
    """Body of Close (unverified: assumed to be shaped like Block)."""


class OwnerIdentificationRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Body of owner identification (**provisional**): ``request_id``, ``identifier`` and the
    owner's fields flat beside them. Build one with :func:`owner_identification_request`."""

    request_id: UUID
    identifier: str


_FIELD_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


@functools.lru_cache(maxsize=64)
def _owner_request_type(names: tuple[str, ...]) -> type[OwnerIdentificationRequest]:
    # One Struct subclass per set of owner field names (cached): the body stays flat and is
    # encoded by the same msgspec encoder as every other request.
    subclass = msgspec.defstruct(
        "OwnerIdentificationRequest",
        [(name, Any) for name in names],
        bases=(OwnerIdentificationRequest,),
        kw_only=True,
        frozen=True,
        omit_defaults=True,
        module=__name__,
    )
    return cast("type[OwnerIdentificationRequest]", subclass)


def owner_identification_request(
    request_id: UUID, identifier: str, owner: dict[str, Any]
) -> OwnerIdentificationRequest:
    """The owner identification body: ``request_id``, ``identifier``, then ``owner``'s fields."""
    for name in owner:
        if not _FIELD_NAME.match(name) or name in OwnerIdentificationRequest.__struct_fields__:
            from ._validate import invalid  # _validate imports errors, which imports this

            invalid(f"{name!r} cannot be an owner field name")
    return _owner_request_type(tuple(owner))(request_id=request_id, identifier=identifier, **owner)
