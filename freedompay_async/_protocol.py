"""Pure protocol: the endpoint table, request bytes, reply bytes -> model or typed error.

No I/O here. Every endpoint is declared once in the table below (path, request and response
types, whether a resend is safe); paths the spec marks *unverified* carry a comment there, and
replies whose shape the docs do not show are flagged (``shape_verified=False``: decoded
leniently, the whole reply kept in ``raw``), so a correction is a one-line change.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any, Final, Generic, TypeVar
from uuid import UUID

import msgspec

from ._retry import parse_retry_after
from .errors import (
    AuthenticationError,
    HTTPStatusError,
    RateLimitError,
    ResponseDecodeError,
    api_error_class,
    excerpt,
)
from .models import (
    AddRequest,
    BalanceRequest,
    BlockRequest,
    CloseRequest,
    Envelope,
    InfoRequest,
    InvalidAmountError,
    MutationResult,
    OwnerIdentificationRequest,
    RequestStatus,
    RequestStatusRequest,
    RequestStatusResult,
    Response,
    StatementRequest,
    WalletAdded,
    WalletBalance,
    WalletInfo,
    WalletStatement,
)

RequestT = TypeVar("RequestT", bound=msgspec.Struct)
ResponseT = TypeVar("ResponseT", bound=Response)

API_PREFIX: Final = "/v5/partner/wallet"


@dataclasses.dataclass(frozen=True, eq=False)
class Endpoint(Generic[RequestT, ResponseT]):
    """One API operation, as data.

    ``safe_to_retry`` is true for reads only: a mutation is resent only with its own
    ``request_id`` and reconciled through Request status (``_mutations``), never retried here.
    ``shape_verified`` is false where the reply's shape is a guess (its model is then a
    :class:`~freedompay_async.models.ProvisionalResponse` that keeps the whole reply in ``raw``).
    """

    name: str
    path: str
    request_type: type[RequestT]
    response_type: type[ResponseT]
    safe_to_retry: bool
    shape_verified: bool = True
    #: The reply model has a ``request_id`` field: the SDK fills it with the id it sent.
    echoes_request_id: bool = dataclasses.field(init=False, repr=False)
    #: The reply model has a ``raw`` field: the SDK fills it with the whole reply.
    keeps_raw: bool = dataclasses.field(init=False, repr=False)
    #: True for operations that change something (resent only by ``_mutations``).
    mutates: bool = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        fields = self.response_type.__struct_fields__
        object.__setattr__(self, "echoes_request_id", "request_id" in fields)
        object.__setattr__(self, "keeps_raw", "raw" in fields)
        object.__setattr__(self, "mutates", not self.safe_to_retry)


# The endpoint table: one declaration per endpoint. To correct a path or a shape the spec marks
# unverified, change it here (and the model in models.py); the fake server routes by this table.
INFO: Final = Endpoint("info", f"{API_PREFIX}/info", InfoRequest, WalletInfo, safe_to_retry=True)
BALANCE: Final = Endpoint(
    "balance",
    f"{API_PREFIX}/balance",  # unverified path
    BalanceRequest,
    WalletBalance,  # unverified shape
    safe_to_retry=True,
    shape_verified=False,
)
STATEMENT: Final = Endpoint(
    "statement", f"{API_PREFIX}/statement", StatementRequest, WalletStatement, safe_to_retry=True
)
REQUEST_STATUS: Final = Endpoint(
    "request_status",
    f"{API_PREFIX}/request/status",  # unverified path
    RequestStatusRequest,
    RequestStatusResult,  # unverified shape
    safe_to_retry=True,
    shape_verified=False,
)
ADD: Final = Endpoint(
    "add",
    f"{API_PREFIX}/add",
    AddRequest,  # ``identifier`` is unverified
    WalletAdded,  # unverified shape
    safe_to_retry=False,
    shape_verified=False,
)
IDENTIFY_OWNER: Final = Endpoint(
    "identify_owner",
    f"{API_PREFIX}/identify",  # unverified path: the docs do not show this endpoint
    OwnerIdentificationRequest,  # unverified body
    MutationResult,  # unverified shape
    safe_to_retry=False,
    shape_verified=False,
)
BLOCK: Final = Endpoint(
    "block", f"{API_PREFIX}/block", BlockRequest, MutationResult, safe_to_retry=False
)
CLOSE: Final = Endpoint(
    "close",
    f"{API_PREFIX}/close",  # unverified path
    CloseRequest,  # assumed to be shaped like Block
    MutationResult,
    safe_to_retry=False,
)

#: Every endpoint, by name.
ENDPOINTS: Final[dict[str, Endpoint[Any, Any]]] = {
    endpoint.name: endpoint
    for endpoint in (INFO, BALANCE, STATEMENT, REQUEST_STATUS, ADD, IDENTIFY_OWNER, BLOCK, CLOSE)
}

_envelope_decoder: Final = msgspec.json.Decoder(Envelope)
# The whole reply of a provisional endpoint; non-integer numbers stay exact.
_raw_decoder: Final = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)

#: What msgspec raises for a body it cannot decode: not JSON, the wrong shape, an integer out of
#: range, money out of bounds (a ``__post_init__`` check), or nesting too deep for the stack.
_UNDECODABLE: Final = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


def encode(payload: msgspec.Struct) -> bytes:
    """Serialise a request Struct to the exact bytes that are signed and sent."""
    return msgspec.json.encode(payload)


def decode_response(
    endpoint: Endpoint[Any, ResponseT],
    body: bytes,
    *,
    identifier: str | None = None,
    request_id: UUID | None = None,
) -> ResponseT:
    """Decode a 2xx reply into the endpoint's model, or raise the matching typed error.

    ``status: "error"`` raises the :class:`~freedompay_async.errors.APIError` subclass for its
    ``error_code``, even when the rest of the body is placeholder junk (the docs' example error
    reply is); so does a mutation answered ``request_status`` = error. A provisional reply
    (``shape_verified=False``) that does not fit its guessed model still decodes: its envelope
    fields are kept, the model's own fields stay at their defaults, and the whole reply is in
    ``raw``. Anything else that does not fit (a successful reply without ``request_status`` or
    ``dt`` included) raises ``ResponseDecodeError`` (for a mutation,
    saying that it may have been carried out). Models with ``request_id`` / ``raw`` fields get
    the id sent and the whole reply.
    """
    try:
        reply = msgspec.json.decode(body, type=endpoint.response_type)
    except _UNDECODABLE as exc:
        # The model does not fit: look at the envelope alone to tell an API error from junk.
        try:
            envelope: Envelope | None = _envelope_decoder.decode(body)
        except _UNDECODABLE:
            envelope = None
        if envelope is not None and (
            not envelope.ok or (endpoint.mutates and envelope.request_status is RequestStatus.ERROR)
        ):
            raise api_error(
                endpoint, envelope, body, identifier=identifier, request_id=request_id
            ) from None
        bad_money = isinstance(exc.__cause__, InvalidAmountError)
        if (
            envelope is not None
            and not endpoint.shape_verified
            and not bad_money
            and envelope.request_status_raw is not None
            and envelope.dt is not None
        ):
            reply = endpoint.response_type(
                status=envelope.status,
                request_status_raw=envelope.request_status_raw,
                dt=envelope.dt,
                error_code_raw=envelope.error_code_raw,
                error_description=envelope.error_description,
            )
            return _finish(endpoint, reply, body, identifier=identifier, request_id=request_id)
        raise _undecodable(
            endpoint, body, exc, identifier=identifier, request_id=request_id
        ) from exc
    return _finish(endpoint, reply, body, identifier=identifier, request_id=request_id)


def _finish(
    endpoint: Endpoint[Any, ResponseT],
    reply: ResponseT,
    body: bytes,
    *,
    identifier: str | None,
    request_id: UUID | None,
) -> ResponseT:
    if not reply.ok or (endpoint.mutates and reply.request_status is RequestStatus.ERROR):
        raise api_error(endpoint, reply, body, identifier=identifier, request_id=request_id)
    if endpoint.keeps_raw or endpoint.echoes_request_id:
        extra: dict[str, Any] = {}
        if endpoint.keeps_raw:
            try:
                extra["raw"] = _raw_decoder.decode(body)
            except _UNDECODABLE as exc:  # e.g. an integer of 5,000 digits somewhere in it
                raise _undecodable(
                    endpoint, body, exc, identifier=identifier, request_id=request_id
                ) from exc
        if endpoint.echoes_request_id:
            if request_id is None:
                raise ValueError(f"decoding a {endpoint.name} reply needs the request_id sent")
            extra["request_id"] = request_id
        reply = msgspec.structs.replace(reply, **extra)
    return reply


def _undecodable(
    endpoint: Endpoint[Any, Any],
    body: bytes,
    exc: Exception,
    *,
    identifier: str | None,
    request_id: UUID | None,
) -> ResponseDecodeError:
    """The :class:`ResponseDecodeError` for a 2xx body that cannot be decoded (raised ``from
    exc``): every failure to decode a reply ends here, never as a bare msgspec error."""
    what = "empty body" if not body.strip() else f"reply does not match {endpoint.name}: {exc}"
    if endpoint.mutates:
        what += (
            "; the operation may have been carried out: check Request status with"
            " this request_id before sending anything again"
        )
    return ResponseDecodeError(
        what,
        endpoint=endpoint.name,
        identifier=identifier,
        request_id=request_id,
        http_status=200,
        body=excerpt(body),
    )


def api_error(
    endpoint: Endpoint[Any, Any],
    reply: Envelope,
    body: bytes | None,
    *,
    identifier: str | None,
    request_id: UUID | None,
    what: str | None = None,
) -> Exception:
    """The typed exception for a ``status: "error"`` reply (or a failed operation's status)."""
    code = reply.error_code_raw
    cls = api_error_class(code)
    description = reply.error_description or "no description"
    status = reply.request_status
    return cls(
        f"{what or endpoint.name} failed: {description}",
        endpoint=endpoint.name,
        identifier=identifier,
        request_id=request_id,
        http_status=200,
        error_code=code,
        request_status=status if status is not RequestStatus.UNKNOWN else None,
        body=excerpt(body),
    )


def http_status_error(
    endpoint: Endpoint[Any, Any],
    http_status: int,
    body: bytes,
    *,
    identifier: str | None = None,
    request_id: UUID | None = None,
    retry_after: str | None = None,
) -> HTTPStatusError:
    """The typed exception for a non-2xx reply (``retry_after``: its ``Retry-After`` header)."""
    # Some gateways still send the JSON envelope with a non-2xx status: keep what it says.
    try:
        envelope: Envelope | None = _envelope_decoder.decode(body)
    except _UNDECODABLE:
        envelope = None
    context: dict[str, Any] = {
        "endpoint": endpoint.name,
        "identifier": identifier,
        "request_id": request_id,
        "http_status": http_status,
        "error_code": envelope.error_code_raw if envelope else None,
        "request_status": envelope.request_status if envelope else None,
        "body": excerpt(body),
    }
    message = f"{endpoint.name} answered HTTP {http_status}"
    if http_status == 429:
        seconds = None if retry_after is None else parse_retry_after(retry_after)
        return RateLimitError(message, retry_after=seconds, **context)
    cls = AuthenticationError if http_status in (401, 403) else HTTPStatusError
    return cls(message, **context)


def operation_error(reply: RequestStatusResult, request_id: UUID) -> Exception:
    """The typed exception for an operation that Request status reports as failed."""
    return api_error(
        REQUEST_STATUS,
        reply,
        None,
        identifier=None,
        request_id=request_id,
        what=f"operation {request_id}",
    )
