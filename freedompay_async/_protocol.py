"""Pure protocol: the endpoint table, request bytes, reply bytes -> model or typed error.

No I/O here. Every endpoint is declared once in the table below (path, request and response
types, whether a resend is safe); paths the spec marks *unverified* are flagged there, so a
correction is a one-line change.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, Generic, TypeVar
from uuid import UUID

import msgspec

from .errors import (
    AuthenticationError,
    HTTPStatusError,
    ResponseDecodeError,
    api_error_class,
    excerpt,
)
from .models import Envelope, InfoRequest, RequestStatus, Response, WalletInfo

RequestT = TypeVar("RequestT", bound=msgspec.Struct)
ResponseT = TypeVar("ResponseT", bound=Response)

API_PREFIX: Final = "/v5/partner/wallet"


@dataclasses.dataclass(frozen=True, eq=False)
class Endpoint(Generic[RequestT, ResponseT]):
    """One API operation, as data.

    ``safe_to_retry`` is true for reads only: a mutation is never resent by the SDK (the
    server rejects a reused ``request_id`` with 1002, see the spec's "Safe retries").
    ``verified`` is false where the spec infers the path instead of reading it in the docs.
    """

    name: str
    path: str
    request_type: type[RequestT]
    response_type: type[ResponseT]
    safe_to_retry: bool
    verified: bool = True
    decoder: msgspec.json.Decoder[ResponseT] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        # One decoder per response type, built once at import.
        object.__setattr__(self, "decoder", msgspec.json.Decoder(self.response_type))


#: Every endpoint, by name. Unverified paths are marked ``verified=False``.
INFO: Final = Endpoint("info", f"{API_PREFIX}/info", InfoRequest, WalletInfo, safe_to_retry=True)

ENDPOINTS: Final[dict[str, Endpoint[Any, Any]]] = {endpoint.name: endpoint for endpoint in (INFO,)}

_encoder: Final = msgspec.json.Encoder()
_envelope_decoder: Final = msgspec.json.Decoder(Envelope)

encode = _encoder.encode
"""Serialise a request Struct to the exact bytes that are signed and sent."""


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
    reply is). Anything else that does not fit raises ``ResponseDecodeError``.
    """
    try:
        reply = endpoint.decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        # The fast path failed: look at the envelope alone to tell an API error from junk.
        try:
            envelope: Response | None = _envelope_decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            envelope = None
        if envelope is not None and not envelope.ok:
            raise api_error(
                endpoint, envelope, body, identifier=identifier, request_id=request_id
            ) from None
        what = "empty body" if not body.strip() else f"reply does not match {endpoint.name}: {exc}"
        raise ResponseDecodeError(
            what,
            endpoint=endpoint.name,
            identifier=identifier,
            request_id=request_id,
            http_status=200,
            body=excerpt(body),
        ) from exc
    if not reply.ok:
        raise api_error(endpoint, reply, body, identifier=identifier, request_id=request_id)
    return reply


def api_error(
    endpoint: Endpoint[Any, Any],
    reply: Response,
    body: bytes,
    *,
    identifier: str | None,
    request_id: UUID | None,
) -> Exception:
    """The typed exception for a ``status: "error"`` reply."""
    code = reply.error_code
    cls = api_error_class(code)
    description = reply.error_description or "no description"
    status = reply.request_status
    return cls(
        f"{endpoint.name} failed: {description}",
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
) -> HTTPStatusError:
    """The typed exception for a non-2xx reply."""
    cls = AuthenticationError if http_status in (401, 403) else HTTPStatusError
    # Some gateways still send the JSON envelope with a non-2xx status: keep what it says.
    try:
        envelope: Response | None = _envelope_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        envelope = None
    return cls(
        f"{endpoint.name} answered HTTP {http_status}",
        endpoint=endpoint.name,
        identifier=identifier,
        request_id=request_id,
        http_status=http_status,
        error_code=envelope.error_code if envelope else None,
        request_status=envelope.request_status if envelope else None,
        body=excerpt(body),
    )
