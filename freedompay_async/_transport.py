"""The default :class:`~freedompay_async.transport.Transport`: aiohttp, one connection pool.

The only module of the package that imports aiohttp (``testing`` aside). ``send`` returns a
:class:`~freedompay_async.transport.TransportResponse` or raises a typed
:class:`~freedompay_async.errors.TransportError` / ``RequestTimeoutError`` /
``ResponseTooLargeError`` (body over the size cap) / ``ClientClosedError``.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Mapping, Sequence
from typing import Final

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from ._config import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_HOST,
    DEFAULT_MAX_RESPONSE_BYTES,
    DNS_CACHE_TTL,
    KEEPALIVE_TIMEOUT,
    Timeout,
)
from ._deadlines import SUPPORTED as DEADLINES_SUPPORTED
from ._deadlines import Deadlines
from ._validate import check_instance, check_int
from .errors import (
    ClientClosedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
    excerpt,
)
from .transport import TransportResponse


class AiohttpTransport:
    """Sends through one :class:`aiohttp.ClientSession`, its own or the caller's.

    The session and its connector are created on first use, inside the running event loop,
    so a transport may be built anywhere; it is then bound to that loop. A caller-owned
    ``session`` is used as is (pool options do not apply to it) and never closed here.

    Args:
        session: a caller-owned :class:`aiohttp.ClientSession` to send through.
        max_connections: pool size (sockets across all hosts).
        max_connections_per_host: per-host cap; 0 means only ``max_connections`` applies.
        max_response_bytes: replies larger than this once decoded (gzip etc. inflated) are
            refused as soon as the cap is passed, never buffered whole.
        ssl: an :class:`ssl.SSLContext` for TLS (custom CA, client certificates).
            Verification is on by default.
        trace_configs: :class:`aiohttp.TraceConfig` objects, for users who trace requests.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_host: int = DEFAULT_MAX_CONNECTIONS_PER_HOST,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ssl: ssl_module.SSLContext | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
    ) -> None:
        if session is not None:
            check_instance(session, aiohttp.ClientSession, "session", "an aiohttp.ClientSession")
        if ssl is not None:
            check_instance(
                ssl,
                ssl_module.SSLContext,
                "ssl",
                "an ssl.SSLContext (verification is on by default)",
            )
        check_int(max_connections, "max_connections", 1)
        check_int(max_connections_per_host, "max_connections_per_host (0: no per-host cap)", 0)
        check_int(max_response_bytes, "max_response_bytes", 1)
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._max_connections_per_host = max_connections_per_host
        self._max_response_bytes = max_response_bytes
        self._ssl = ssl
        self._trace_configs = list(trace_configs) if trace_configs else None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Long total limits of the requests in flight (created with the loop, 3.11+).
        self._deadlines: Deadlines | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session in use (``None`` until the first request when we own it)."""
        return self._session

    @property
    def pool_size(self) -> int | None:
        """How many requests can be in flight at once (``None``: no cap): the pool's ``limit``
        and ``limit_per_host``, the caller's session's included."""
        if self._owns_session:
            limits = (self._max_connections, self._max_connections_per_host)
        else:
            connector = self._session.connector if self._session is not None else None
            limits = (connector.limit, connector.limit_per_host) if connector else (0, 0)
        positive = [limit for limit in limits if limit > 0]
        return min(positive) if positive else None

    def _open(self) -> aiohttp.ClientSession:
        """The session, checked (open, this loop) or created on first use."""
        if self._closed:
            raise ClientClosedError("the transport is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._deadlines = Deadlines(loop) if DEADLINES_SUPPORTED else None
        elif loop is not self._loop:
            raise RuntimeError(
                "this AiohttpTransport is bound to the event loop it was first used in; "
                "create one per event loop (e.g. per asyncio.run call)"
            )
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections_per_host,
                use_dns_cache=True,
                ttl_dns_cache=DNS_CACHE_TTL,
                keepalive_timeout=KEEPALIVE_TIMEOUT,
                ssl=self._ssl if self._ssl is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trace_configs=self._trace_configs,
                # Per-request timeouts are always given; no session-wide default applies.
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
            )
        return self._session

    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: Timeout
    ) -> TransportResponse:
        """POST ``body`` to ``url``; return the status, headers and whole body of the reply."""
        session = self._open()
        # A long total limit is the shared tick's (see _deadlines), a short one aiohttp's own
        # timer for this request.
        deadlines = self._deadlines
        task = None if deadlines is None else deadlines.enter(timeout.total)
        limits = aiohttp.ClientTimeout(
            total=None if task is not None else timeout.total,
            connect=timeout.connect,
            sock_read=timeout.read,
        )
        expired = False
        try:
            try:
                async with session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=limits,
                    allow_redirects=False,
                ) as response:
                    reply = await self._read(response)
                    return TransportResponse(response.status, response.headers, reply)
            finally:
                if task is not None and deadlines is not None:
                    expired = deadlines.leave(task)
        except asyncio.CancelledError as exc:
            _redact(exc)  # what it interrupted may hold the request's headers
            if not expired:
                raise
            # What asyncio.Timeout raises when it expires: TimeoutError from the cancellation.
            timed_out = TimeoutError()
            timed_out.__cause__ = exc
            raise RequestTimeoutError(f"request timed out ({_timeout_text(timeout)})") from (
                timed_out
            )
        except TimeoutError as exc:
            _redact(exc)
            raise RequestTimeoutError(f"request timed out ({_timeout_text(timeout)})") from exc
        except aiohttp.ClientError as exc:
            _redact(exc)
            if self._closed:
                raise ClientClosedError(
                    "the FreedomPayClient was closed during the request"
                ) from exc
            raise TransportError(f"request failed: {type(exc).__name__}: {exc}") from exc

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, read in pieces, refused as soon as it passes ``max_response_bytes``.

        The cap bounds the *decoded* bytes: aiohttp inflates a compressed body (gzip, deflate,
        br, ...) piece by piece as it is read from ``response.content``, so a compression bomb
        is stopped after about ``max_response_bytes`` inflated, never inflated whole.
        """
        cap = self._max_response_bytes
        length = response.content_length
        if length is not None and length > cap:  # the wire size alone is too much
            raise ResponseTooLargeError(
                f"reply of {length} bytes exceeds max_response_bytes={cap}",
                http_status=response.status,
            )
        chunks: list[bytes] = []
        size = 0
        content = response.content
        while chunk := await content.readany():
            size += len(chunk)
            if size > cap:
                raise ResponseTooLargeError(
                    f"reply exceeds max_response_bytes={cap}"
                    + (" once decoded" if "Content-Encoding" in response.headers else ""),
                    http_status=response.status,
                    body=excerpt(b"".join(chunks)),
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session if we own it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._deadlines is not None:
            self._deadlines.close()
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()


def _redact(exc: BaseException) -> None:
    """Take the request's headers (``X-JWS-Signature``) out of aiohttp's exceptions in the chain.

    ``ClientResponseError`` (a malformed reply, a bad status line, ...) keeps the request's
    ``request_info``, whose headers hold the signature, in its attributes, its ``args`` and
    its ``history``; we chain it as ``__cause__`` of our errors. The signature has no nonce,
    so a leaked one could be replayed: every header of the kept copy is redacted but the
    harmless ones, and the history (redirects, never followed here) is dropped.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        pending += (current.__cause__, current.__context__)
        info = getattr(current, "request_info", None)
        if not isinstance(info, aiohttp.RequestInfo):
            continue
        headers = CIMultiDict(
            (name, value if name.lower() in _HARMLESS_HEADERS else "[redacted]")
            for name, value in info.headers.items()
        )
        clean = aiohttp.RequestInfo(info.url, info.method, CIMultiDictProxy(headers), info.real_url)
        current.request_info = clean  # type: ignore[attr-defined]
        if isinstance(current, aiohttp.ClientResponseError):
            current.history = ()  # earlier responses, each with its own request_info
            current.args = (clean, ())
        else:
            current.args = tuple(
                clean if isinstance(arg, aiohttp.RequestInfo) else arg for arg in current.args
            )


#: Request headers kept as they are in an exception's ``request_info``; others are redacted.
_HARMLESS_HEADERS: Final = frozenset(
    {"content-type", "content-length", "user-agent", "host", "accept", "accept-encoding"}
)


def _timeout_text(timeout: Timeout) -> str:
    return ", ".join(
        f"{name}={value}s"
        for name, value in (
            ("total", timeout.total),
            ("connect", timeout.connect),
            ("read", timeout.read),
        )
        if value is not None
    )
