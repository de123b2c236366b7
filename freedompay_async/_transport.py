"""The one module that talks HTTP: a lazily created aiohttp session and ``send()``.

``send(path, headers, body, timeout)`` returns ``(http_status, body_bytes, retry_after)`` or raises a typed
:class:`~freedompay_async.errors.TransportError` / ``RequestTimeoutError`` /
``ResponseDecodeError`` (body over the size cap). Everything above it is pure.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Mapping, Sequence
from typing import Final

import aiohttp
from yarl import URL

from ._config import DNS_CACHE_TTL, KEEPALIVE_TIMEOUT, Timeout
from .errors import (
    ClientClosedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
    excerpt,
)

_CHUNK: Final = 64 * 1024


class AiohttpTransport:
    """Owns (or borrows) one :class:`aiohttp.ClientSession` and sends signed POSTs through it.

    The session and its connector are created on first use, inside the running event loop,
    so a transport may be built anywhere. A caller-owned ``session`` is used as is and never
    closed here.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        max_connections: int,
        max_connections_per_host: int,
        user_agent: str,
        max_response_bytes: int,
        ssl: ssl_module.SSLContext | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
    ) -> None:
        self._base_url = URL(base_url)
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._max_connections_per_host = max_connections_per_host
        self._max_response_bytes = max_response_bytes
        self._ssl = ssl
        self._trace_configs = list(trace_configs) if trace_configs else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[Timeout, aiohttp.ClientTimeout] = {}
        # Nearly every request uses the client's one Timeout: skip hashing it each time.
        self._last_timeout: Timeout | None = None
        self._last_client_timeout = aiohttp.ClientTimeout()
        common = {"Content-Type": "application/json", "User-Agent": user_agent}
        # Our own session carries the constant headers; a borrowed one gets them per request.
        self._session_headers = common if self._owns_session else {}
        self._request_headers = {} if self._owns_session else common

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session in use (``None`` until the first request when we own it)."""
        return self._session

    def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
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
                headers=self._session_headers,
                trace_configs=self._trace_configs,
                # Per-request timeouts are always given; no session-wide default applies.
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
            )
        self._loop = loop
        return self._session

    def _check_loop(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("the FreedomPayClient is closed; create a new one")
        session = self._session
        if session is None or self._loop is None:
            return self._open()
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                "this FreedomPayClient is bound to the event loop it was first used in; "
                "create one client per event loop (e.g. per asyncio.run call)"
            )
        return session

    def url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._base_url.join(URL(path))
        return url

    def _client_timeout(self, timeout: Timeout) -> aiohttp.ClientTimeout:
        if timeout is self._last_timeout:
            return self._last_client_timeout
        client_timeout = self._timeouts.get(timeout)
        if client_timeout is None:
            client_timeout = self._timeouts[timeout] = aiohttp.ClientTimeout(
                total=timeout.total, connect=timeout.connect, sock_read=timeout.read
            )
        self._last_timeout, self._last_client_timeout = timeout, client_timeout
        return client_timeout

    async def send(
        self, path: str, headers: Mapping[str, str], body: bytes, timeout: Timeout
    ) -> tuple[int, bytes, str | None]:
        """POST ``body`` to ``path``; return the HTTP status, the whole reply body, and the
        ``Retry-After`` header of an error reply (``None`` on success)."""
        session = self._session
        if session is None or self._closed or asyncio.get_running_loop() is not self._loop:
            session = self._check_loop()
        if self._request_headers:
            headers = {**self._request_headers, **headers}
        try:
            async with session.post(
                self._urls.get(path) or self.url(path),
                data=body,
                headers=headers,
                timeout=self._client_timeout(timeout),
                allow_redirects=False,
            ) as response:
                status = response.status
                if status < 400:
                    length = response.content_length
                    if length is not None and length <= self._max_response_bytes:
                        return status, await response.read(), None  # the common case, inline
                    return status, await self._read(response), None
                return status, await self._read(response), response.headers.get("Retry-After")
        except TimeoutError as exc:
            raise RequestTimeoutError(f"request timed out ({_timeout_text(timeout)})") from exc
        except aiohttp.ClientError as exc:
            if self._closed:
                raise ClientClosedError(
                    "the FreedomPayClient was closed during the request"
                ) from exc
            raise TransportError(f"request failed: {type(exc).__name__}: {exc}") from exc

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        cap = self._max_response_bytes
        length = response.content_length
        if length is not None:
            if length > cap:
                raise ResponseTooLargeError(
                    f"reply of {length} bytes exceeds max_response_bytes={cap}",
                    http_status=response.status,
                )
            return await response.read()
        # No Content-Length (chunked): read in pieces and stop as soon as the cap is passed.
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise ResponseTooLargeError(
                    f"reply exceeds max_response_bytes={cap}",
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
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()


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
