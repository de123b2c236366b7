"""The exceptions this SDK raises. Every failure is one of these::

    FreedomPayError
    ├── APIError                    the server answered ``status: "error"``
    │   ├── InvalidRequestError         1001  bad or malformed parameters
    │   ├── DuplicateRequestError       1002  request_id already used
    │   ├── WalletExistsError           1003  a wallet with this identifier exists
    │   ├── WalletNotFoundError         1004  no wallet with this identifier
    │   ├── WalletCloseError            1005  wallet could not be closed
    │   ├── RequestNotFoundError        1006  no request with this request_id
    │   ├── WalletClosedError           1007  wallet already closed
    │   └── WalletBlockError            1008  wallet could not be blocked
    ├── HTTPStatusError             a non-2xx reply (status and a truncated body)
    │   ├── AuthenticationError         401 / 403: signature or credentials refused
    │   └── RateLimitError              429: too many requests (``retry_after`` seconds)
    ├── TransportError              the request did not complete (connection refused, reset, ...)
    │   └── RequestTimeoutError         a time limit was hit (also a builtin ``TimeoutError``)
    ├── ResponseDecodeError         the body is not what the spec says (truncated body attached)
    │   └── ResponseTooLargeError       the body is over ``max_response_bytes``
    ├── WaitTimeoutError            ``wallets.wait`` gave up; the operation may still finish
    │                                   (also a builtin ``TimeoutError``)
    ├── MutationOutcomeUnknownError whether a mutation happened cannot be known yet
    │                                   (``request_id`` and the last ``cause`` attached)
    ├── ClientClosedError           the client was closed (also a ``RuntimeError``)
    ├── InvalidArgumentError        an argument's value refused, nothing sent (also a ``ValueError``)
    └── ArgumentTypeError           an argument of the wrong type, nothing sent (also a ``TypeError``)

Invalid arguments are not sent at all: they raise before any network call, by one rule
(:mod:`freedompay_async._validate`): the wrong type is an :class:`ArgumentTypeError` (a
``TypeError``), the right type with a value that can never work an :class:`InvalidArgumentError`
(a ``ValueError``). Both are ``FreedomPayError``, so a batch reports a refused item on that item
(``result.error``), never as the server's ``InvalidRequestError`` (1001).
No exception ever carries the secret key or a signature.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final
from uuid import UUID

from ._config import ERROR_BODY_EXCERPT
from .models import RequestStatus, numeric_error_code

__all__ = [
    "APIError",
    "ArgumentTypeError",
    "AuthenticationError",
    "ClientClosedError",
    "DuplicateRequestError",
    "FreedomPayError",
    "HTTPStatusError",
    "InvalidArgumentError",
    "InvalidRequestError",
    "MutationOutcomeUnknownError",
    "RateLimitError",
    "RequestNotFoundError",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "TransportError",
    "WaitTimeoutError",
    "WalletBlockError",
    "WalletCloseError",
    "WalletClosedError",
    "WalletExistsError",
    "WalletNotFoundError",
    "api_error_class",
    "excerpt",
]


def excerpt(body: bytes | None, limit: int = ERROR_BODY_EXCERPT) -> str | None:
    """The first ``limit`` bytes of a body as text, marked when cut; ``None`` stays ``None``."""
    if body is None:
        return None
    text = body[:limit].decode("utf-8", "replace")
    return text if len(body) <= limit else f"{text}... [{len(body) - limit} more bytes]"


class FreedomPayError(Exception):
    """Base of every error this SDK raises.

    Attributes give the context a log line or a retry decision needs; any may be ``None``:
    ``endpoint`` (e.g. ``"info"``), ``identifier`` (the wallet asked about), ``request_id``
    (for mutations: ask Request status with it), ``http_status``, ``error_code`` (an ``int``:
    ``exc.error_code == 1004``; ``None`` when the reply had none or it is not a number),
    ``error_code_raw`` (the code as the server sent it, as text), ``request_status``, ``body``
    (a truncated excerpt of the reply), ``attempts`` (how many times the request was sent).
    """

    endpoint: str | None
    identifier: str | None
    request_id: UUID | None
    http_status: int | None
    error_code: int | None
    error_code_raw: str | None
    request_status: RequestStatus | None
    body: str | None
    attempts: int

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        identifier: str | None = None,
        request_id: UUID | None = None,
        http_status: int | None = None,
        error_code: int | str | None = None,
        request_status: RequestStatus | None = None,
        body: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.identifier = identifier
        self.request_id = request_id
        self.http_status = http_status
        self.error_code = numeric_error_code(error_code)
        self.error_code_raw = None if error_code is None else str(error_code)
        self.request_status = request_status
        self.body = body
        self.attempts = attempts

    def __str__(self) -> str:
        parts = [self.message]
        context = [
            f"{name}={value}"
            for name, value in (
                ("endpoint", self.endpoint),
                ("identifier", self.identifier and repr(self.identifier)),
                ("request_id", self.request_id),
                ("http_status", self.http_status),
                ("error_code", self.error_code_raw),
                ("attempts", self.attempts if self.attempts > 1 else None),
            )
            if value is not None
        ]
        if context:
            parts.append(f"({', '.join(context)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only context survives pickling (multiprocessing, task queues).
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[FreedomPayError], message: str, state: dict[str, object]) -> FreedomPayError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class APIError(FreedomPayError):
    """The server answered ``status: "error"``; ``error_code`` says why."""

    #: The documented code this class stands for (``None`` on the base class).
    code: ClassVar[int | None] = None


class InvalidRequestError(APIError):
    """1001: the parameters were invalid or badly formed."""

    code = 1001


class DuplicateRequestError(APIError):
    """1002: this ``request_id`` was used before; the request was not executed again.

    Ask Request status with the same ``request_id`` to learn the first attempt's outcome.
    """

    code = 1002


class WalletExistsError(APIError):
    """1003: a wallet with this identifier already exists."""

    code = 1003


class WalletNotFoundError(APIError):
    """1004: no wallet has this identifier."""

    code = 1004


class WalletCloseError(APIError):
    """1005: the wallet could not be closed."""

    code = 1005


class RequestNotFoundError(APIError):
    """1006: no request has this ``request_id``."""

    code = 1006


class WalletClosedError(APIError):
    """1007: the wallet is already closed."""

    code = 1007


class WalletBlockError(APIError):
    """1008: the wallet could not be blocked."""

    code = 1008


_API_ERRORS: Final[dict[int, type[APIError]]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        DuplicateRequestError,
        WalletExistsError,
        WalletNotFoundError,
        WalletCloseError,
        RequestNotFoundError,
        WalletClosedError,
        WalletBlockError,
    )
    if cls.code is not None
}


def api_error_class(error_code: int | str | None) -> type[APIError]:
    """The most specific :class:`APIError` subclass for a code (the base class when unknown)."""
    code = numeric_error_code(error_code)
    return APIError if code is None else _API_ERRORS.get(code, APIError)


class HTTPStatusError(FreedomPayError):
    """The server answered with a non-2xx HTTP status; ``http_status`` and ``body`` tell more."""


class AuthenticationError(HTTPStatusError):
    """HTTP 401/403: the signature, ``auth_id`` or ``secret_key`` was refused."""


class RateLimitError(HTTPStatusError):
    """HTTP 429: the server asks for fewer requests. Reads are retried after the wait it asks
    for (``Retry-After``) when that wait fits in the call's time limit, and raise at once when
    it does not. ``retry_after`` is that wait in seconds (``None`` when the server gave none
    or an unreadable one)."""

    retry_after: float | None

    def __init__(self, message: str, *, retry_after: float | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class TransportError(FreedomPayError):
    """The request did not complete: connection refused or reset, DNS, TLS, a protocol error.

    A mutation never raises it bare: the SDK resends and reconciles, and when it still cannot
    tell what happened raises :class:`MutationOutcomeUnknownError` with this as its ``cause``.
    """


class RequestTimeoutError(TransportError, TimeoutError):
    """A time limit (connect, read or total) was hit. Also an instance of :class:`TimeoutError`."""


class ResponseDecodeError(FreedomPayError):
    """The reply is not what the spec says: empty, not JSON, wrong shape, or too large."""


class ResponseTooLargeError(ResponseDecodeError):
    """The reply is larger than ``max_response_bytes``; it was not read whole."""


class WaitTimeoutError(FreedomPayError, TimeoutError):
    """``wallets.wait`` ran out of time while the operation was still not finished.

    Nothing failed: the operation may still complete. ``request_id`` says which one and
    ``request_status`` the last state seen; call ``wallets.wait`` (or ``request_status``) again
    later. Never resend the mutation itself. Also an instance of :class:`TimeoutError`.
    """


class MutationOutcomeUnknownError(FreedomPayError):
    """A mutation's outcome could not be learned: it may or may not have been carried out.

    The SDK resent the same request (same bytes, same ``request_id``) as often as the retry
    policy and the call's time limit allowed and asked Request status, and still has no answer.
    ``request_id`` says which request; ``cause`` is the last failure (also ``__cause__``).
    To recover, send the same mutation again later **with the same** ``request_id``: it is
    carried out if it never was, or the SDK reconciles it through Request status if it was.
    Never send it with a new ``request_id``.
    """

    #: The last failure seen (a transport error, a timeout, a 5xx, an undecodable reply, ...).
    cause: FreedomPayError | None

    def __init__(
        self, message: str, *, cause: FreedomPayError | None = None, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.cause = cause


class ClientClosedError(FreedomPayError, RuntimeError):
    """The client was closed with ``aclose()`` (or its ``async with`` block ended)."""


class InvalidArgumentError(FreedomPayError, ValueError):
    """An argument's value can never work (empty, too long, out of range, ...): refused before
    anything was sent. Also a :class:`ValueError`."""


class ArgumentTypeError(FreedomPayError, TypeError):
    """An argument of the wrong type: refused before anything was sent. Also a
    :class:`TypeError`."""
