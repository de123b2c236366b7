"""The one module that talks HTTP: a lazily created aiohttp session and ``send()``.

``send(path, headers, body, timeout)`` returns ``(http_status, body_bytes, retry_after)`` or raises a typed
:class:`~freedompay_async.errors.TransportError` / ``RequestTimeoutError`` /
``ResponseDecodeError`` (body over the size cap). Everything above it is pure.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aiohttp
from yarl import URL

from ._config import COARSE_TIMEOUT, DEADLINE_TICK, DNS_CACHE_TTL, KEEPALIVE_TIMEOUT, Timeout
from .errors import (
    ClientClosedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
    excerpt,
)

_CHUNK: Final = 64 * 1024
#: Long total limits are enforced by ``_Deadlines``, which needs ``Task.uncancel()`` (3.11+).
#: Short ones, and all of them on 3.10, are aiohttp's own ``total`` (a precise timer per request).
_COARSE_DEADLINES: Final = sys.version_info >= (3, 11)


class _Deadlines:
    """Total time limits of the requests in flight, checked by one timer for all of them.

    A per-request timer (aiohttp's ``total``, or ``asyncio.timeout``) costs a timer handle, a
    heap push and a cancellation for every request, and ``async with asyncio.Timeout`` two
    coroutines more: together about 3 of the ~65 microseconds of CPU a lookup takes. Limits of
    :data:`COARSE_TIMEOUT` seconds or more (which aiohttp rounds up to whole seconds anyway)
    are instead registered here under the request's task; one shared tick every
    :data:`DEADLINE_TICK` seconds cancels the tasks whose time has come. Entering and leaving
    follow :class:`asyncio.Timeout` (3.11) step for step: the task's ``cancelling()`` count is
    noted on entry; on exit an expired request calls ``uncancel()``, and only when no other
    cancellation is pending and the request ended in ``CancelledError`` does it become a
    timeout, so a cancellation from outside stays a cancellation and none is left behind.
    Shorter limits, and a request nested in another one of the same task (a trace callback
    calling the client), get aiohttp's precise per-request ``total`` instead.
    """

    __slots__ = ("_active", "_expired", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: task -> (its deadline on the loop clock, its ``cancelling()`` count on entry)
        self._active: dict[asyncio.Task[Any], tuple[float, int]] = {}
        #: task -> its ``cancelling()`` count on entry, for tasks the tick has cancelled
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._handle: asyncio.TimerHandle | None = None

    def enter(self, total: float) -> asyncio.Task[Any] | None:
        """Register the current task's request for ``total`` seconds; return the task.

        Call it from a task running on this registry's event loop. ``None`` means "not here":
        the caller then uses aiohttp's precise ``total``. Nothing
        may run between this call and the caller's ``try`` (no ``await``), and the caller
        must call :meth:`leave` when its request ends, however it ends.
        """
        if total < COARSE_TIMEOUT:
            return None
        # The caller (``send``) has checked that this is our loop: naming it spares
        # current_task() a get_running_loop() (a getpid() system call on 3.11).
        task = asyncio.current_task(self._loop)
        if task is None or task in self._active or task in self._expired:
            return None
        loop = self._loop
        untyped: Any = task  # Task.cancelling() and uncancel() are 3.11+, where this is used
        self._active[task] = (loop.time() + total, untyped.cancelling())
        if self._handle is None:
            self._handle = loop.call_later(DEADLINE_TICK, self._tick)
        return task

    def leave(self, task: asyncio.Task[Any]) -> bool:
        """The request of ``task`` has ended. True when its deadline expired and the
        cancellation that ended it was the deadline's alone (``asyncio.Timeout.__aexit__``)."""
        if self._active.pop(task, None) is not None:
            return False
        cancelling = self._expired.pop(task, None)
        if cancelling is None:  # closed meanwhile
            return False
        untyped: Any = task
        pending: int = untyped.uncancel()
        return pending <= cancelling

    def _tick(self) -> None:
        self._handle = None
        now = self._loop.time()
        active = self._active
        expired = [task for task, (when, _) in active.items() if when <= now]
        for task in expired:
            _, cancelling = active.pop(task)
            self._expired[task] = cancelling
            task.cancel()  # asyncio.Timeout._on_timeout
        if active:
            self._handle = self._loop.call_later(DEADLINE_TICK, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._active.clear()
        self._expired.clear()


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
        self._precise_timeouts: dict[Timeout, aiohttp.ClientTimeout] = {}
        self._deadlines: _Deadlines | None = None
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
    def pool_size(self) -> int:
        """Connections the pool opens at most (a borrowed session's own limit; 0: none)."""
        if self._session is not None and not self._owns_session:
            return self._session.connector.limit if self._session.connector is not None else 0
        per_host = self._max_connections_per_host
        return min(self._max_connections, per_host) if per_host else self._max_connections

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
        self._deadlines = _Deadlines(loop) if _COARSE_DEADLINES else None
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

    def _client_timeout(self, timeout: Timeout, *, total: bool) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for ``timeout``: connect and read always, and the total limit
        too when ``total`` is true (that is, when ``_Deadlines`` does not enforce it)."""
        if total:
            precise = self._precise_timeouts.get(timeout)
            if precise is None:
                precise = self._precise_timeouts[timeout] = aiohttp.ClientTimeout(
                    total=timeout.total, connect=timeout.connect, sock_read=timeout.read
                )
            return precise
        client_timeout = self._timeouts.get(timeout)
        if client_timeout is None:
            client_timeout = self._timeouts[timeout] = aiohttp.ClientTimeout(
                total=None, connect=timeout.connect, sock_read=timeout.read
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
        total = timeout.total
        deadlines = self._deadlines
        coarse = None if total is None or deadlines is None else deadlines.enter(total)
        if coarse is not None and timeout is self._last_timeout:
            client_timeout = self._last_client_timeout  # nearly every request: the client's
        else:
            client_timeout = self._client_timeout(timeout, total=coarse is None)
        expired = False
        try:
            try:
                async with session.post(
                    self._urls.get(path) or self.url(path),
                    data=body,
                    headers=headers,
                    timeout=client_timeout,
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    if status < 400:
                        length = response.content_length
                        if length is not None and length <= self._max_response_bytes:
                            return status, await response.read(), None  # the common case
                        return status, await self._read(response), None
                    retry_after = response.headers.get("Retry-After")
                    return status, await self._read(response), retry_after
            finally:
                if coarse is not None and deadlines is not None:
                    expired = deadlines.leave(coarse)
        except asyncio.CancelledError as exc:
            if not expired:
                raise
            # What asyncio.Timeout raises when it expires: TimeoutError from the cancellation.
            timed_out = TimeoutError()
            timed_out.__cause__ = exc
            raise RequestTimeoutError(f"request timed out ({_timeout_text(timeout)})") from (
                timed_out
            )
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
        if self._deadlines is not None:
            self._deadlines.close()
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
