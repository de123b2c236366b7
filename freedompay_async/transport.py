"""The seam between the client and HTTP: the :class:`Transport` protocol.

The client encodes and signs a request, then hands the bytes to its transport; the transport
POSTs them and hands back the reply. Everything else (retries, the call's deadline, decoding,
typed errors of the API) stays in the client. The default transport is
:class:`~freedompay_async.AiohttpTransport`; any object with these two methods will do::

    class Recording:
        def __init__(self, inner: Transport) -> None:
            self.inner, self.paths = inner, []

        async def send(self, url, headers, body, timeout):
            self.paths.append(url)
            return await self.inner.send(url, headers, body, timeout)

        async def aclose(self):
            await self.inner.aclose()

    client = FreedomPayClient(transport=Recording(AiohttpTransport()))

What a transport must do:

- ``send(url, headers, body, timeout)``: POST ``body`` (already signed: send it byte for
  byte) to ``url`` with exactly ``headers``, follow no redirect, and return a
  :class:`TransportResponse` for *any* HTTP status (an error status is the client's to judge).
  ``timeout`` is a :class:`~freedompay_async.Timeout`: ``total`` is what is left of the
  call's time limit (the client gives a retry only the time left, so the call never runs
  past its deadline), ``connect`` and ``read`` apply per attempt; ``None`` switches one off.
  The transport enforces them.
- Raise only :class:`~freedompay_async.FreedomPayError` subclasses:
  :class:`~freedompay_async.RequestTimeoutError` for a time limit,
  :class:`~freedompay_async.TransportError` when the request did not complete,
  :class:`~freedompay_async.ResponseTooLargeError` for a reply over its size cap,
  :class:`~freedompay_async.ClientClosedError` after ``aclose()``. Keep secrets (the
  ``X-JWS-Signature`` header) out of their messages. A cancellation stays a
  cancellation (``asyncio.CancelledError`` is never swallowed). Should a transport raise
  anything else, the client wraps it (a bare ``TimeoutError`` in ``RequestTimeoutError``, any
  other exception in ``TransportError``, the original as ``__cause__``): nothing but a
  ``FreedomPayError`` leaves a call.
- ``aclose()``: release what it holds; idempotent. The client calls it when it is closed.

Optionally, a ``pool_size`` attribute (``int``, or ``None`` for no cap) says how many requests
it can carry at once; ``info_many`` caps its concurrency at it (read once, when the client is
built). Without it there is no cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol, runtime_checkable

from ._config import Timeout


class TransportResponse(NamedTuple):
    """What a :class:`Transport` hands back: the reply, whatever its status."""

    #: The HTTP status code.
    status: int
    #: The reply's headers (the client reads ``Retry-After`` from an error reply; names are
    #: matched without regard to case).
    headers: Mapping[str, str]
    #: The whole body, decoded from any ``Content-Encoding``.
    body: bytes


@runtime_checkable
class Transport(Protocol):
    """Sends a signed request and returns the reply (see the module docstring for the rules)."""

    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: Timeout
    ) -> TransportResponse:
        """POST ``body`` to ``url`` with ``headers`` within ``timeout``; return the reply."""
        ...

    async def aclose(self) -> None:
        """Release the transport's resources. Idempotent."""
        ...


__all__ = ["Transport", "TransportResponse"]
