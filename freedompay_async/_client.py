"""``FreedomPayClient``: configuration, credentials, the one request path, ``client.wallets``."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import os
import ssl as ssl_module
import time
from collections.abc import Awaitable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from yarl import URL

from . import _config, _pacing
from ._config import Timeout
from ._jws import ALGORITHMS, Signer
from ._log import log_done, log_retry
from ._protocol import Endpoint, RequestT, ResponseT, decode_response, encode, http_status_error
from ._retry import RetryPolicy
from ._transport import AiohttpTransport
from ._validate import (
    check_choice,
    check_credential,
    check_header_value,
    check_instance,
    check_int,
    invalid,
    wrong_type,
)
from .errors import (
    APIError,
    ClientClosedError,
    FreedomPayError,
    RequestTimeoutError,
    TransportError,
)
from .resources.wallets import Wallets
from .transport import Transport

if TYPE_CHECKING:  # only to annotate the default transport's options
    import aiohttp


class FreedomPayClient:
    """Async client for the Freedom Pay Partner API, E-Money section.

    Use it as an async context manager; it owns its transport (by default one aiohttp
    connection pool, created lazily in the running loop) and closes it on exit::

        async with FreedomPayClient(auth_id="123456", secret_key="...") as client:
            info = await client.wallets.info("user-42")
            print(info.wallet.balance, info.wallet.currency)

    Args:
        auth_id: partner id issued by Freedom Pay (default: ``$FREEDOMPAY_AUTH_ID``).
        secret_key: signing key issued by Freedom Pay (default: ``$FREEDOMPAY_SECRET_KEY``).
            Never shown in reprs, logs or errors.
        base_url: API origin, e.g. ``https://api.freedompay.kz`` (default:
            ``$FREEDOMPAY_BASE_URL``, else the ``region``'s host).
        region: ``"kz"`` (default), ``"kz-test"``, ``"kg"`` or ``"uz"``; not with ``base_url``.
        timeout: seconds for the whole call (total: retries and the waits between them
            included), or a :class:`Timeout` for connect/read/total.
        retry: a :class:`RetryPolicy` (default: 3 attempts, full-jitter backoff). Reads are
            retried; a mutation whose reply is lost is resent with its own ``request_id`` and
            reconciled through Request status (README, "Mutations").
        max_retries: shorthand for ``retry=RetryPolicy(max_attempts=max_retries + 1)``.
        max_connections: pool size (sockets across all hosts).
        max_connections_per_host: per-host cap; 0 means only ``max_connections`` applies.
        user_agent: ``User-Agent`` header. ``auth_id``, ``secret_key`` and ``user_agent``
            with control characters or surrounding whitespace raise ``ValueError``.
        session: a caller-owned :class:`aiohttp.ClientSession` to send through; it is never
            closed by this client, and pool options do not apply to it.
        algorithm: JWS ``alg``, ``"HS256"`` (default) or ``"HS512"``.
        max_response_bytes: replies larger than this once decoded (gzip etc. inflated) are
            refused as soon as the cap is passed, never buffered whole.
        ssl: an :class:`ssl.SSLContext` for TLS (custom CA, client certificates). Verification
            is on by default.
        trace_configs: :class:`aiohttp.TraceConfig` objects, for users who trace requests.
        transport: what sends the signed requests: any
            :class:`~freedompay_async.transport.Transport` (default: an
            :class:`~freedompay_async.AiohttpTransport` built from the options above). The
            client closes it with itself. The default transport's options (``session``,
            ``max_connections``, ``max_connections_per_host``, ``max_response_bytes``,
            ``ssl``, ``trace_configs``) are then a ``ValueError``: give them to the transport.
    """

    def __init__(
        self,
        auth_id: str | None = None,
        secret_key: str | None = None,
        *,
        base_url: str | None = None,
        region: _config.Region | None = None,
        timeout: float | Timeout | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        max_connections: int = _config.DEFAULT_MAX_CONNECTIONS,
        max_connections_per_host: int = _config.DEFAULT_MAX_CONNECTIONS_PER_HOST,
        user_agent: str | None = None,
        session: aiohttp.ClientSession | None = None,
        algorithm: str = "HS256",
        max_response_bytes: int = _config.DEFAULT_MAX_RESPONSE_BYTES,
        ssl: ssl_module.SSLContext | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
        transport: Transport | None = None,
    ) -> None:
        auth_id = _credential("auth_id", auth_id, _config.ENV_AUTH_ID)
        secret = _credential("secret_key", secret_key, _config.ENV_SECRET_KEY)
        check_choice(algorithm, "algorithm", ALGORITHMS)
        if user_agent is not None:
            check_header_value("user_agent", user_agent)
        if transport is None:
            # It checks its options (pool sizes, session, ssl); it opens nothing yet.
            transport = AiohttpTransport(
                session=session,
                max_connections=max_connections,
                max_connections_per_host=max_connections_per_host,
                max_response_bytes=max_response_bytes,
                ssl=ssl,
                trace_configs=trace_configs,
            )
        else:
            if not isinstance(transport, Transport):
                wrong_type(
                    "transport",
                    "an object with async send() and aclose() methods"
                    " (see freedompay_async.transport.Transport)",
                    transport,
                )
            defaults: dict[str, tuple[object, object]] = {
                "session": (session, None),
                "max_connections": (max_connections, _config.DEFAULT_MAX_CONNECTIONS),
                "max_connections_per_host": (
                    max_connections_per_host,
                    _config.DEFAULT_MAX_CONNECTIONS_PER_HOST,
                ),
                "max_response_bytes": (max_response_bytes, _config.DEFAULT_MAX_RESPONSE_BYTES),
                "ssl": (ssl, None),
                "trace_configs": (trace_configs, None),
            }
            given = [name for name, (value, default) in defaults.items() if value is not default]
            if given:
                invalid(
                    f"{', '.join(given)}: options of the default transport; with transport=,"
                    " give them to the transport (e.g. AiohttpTransport(...)) instead"
                )
        pool_size = getattr(transport, "pool_size", None)
        if pool_size is not None:
            check_int(pool_size, "transport.pool_size (or None)", 1)

        self._auth_id = auth_id
        self._secret = secret.encode("utf-8")
        self._algorithm = algorithm
        self._base_url = _resolve_base_url(base_url, region)
        self._options = _Options(
            timeout=Timeout.coerce(timeout), retry=_retry_policy(retry, max_retries)
        )
        self._transport = transport
        self._pool_size: int | None = pool_size
        self._user_agent = user_agent or _config.DEFAULT_USER_AGENT
        self._lifecycle = _Lifecycle()  # shared with with_options views
        self._signers: dict[str, Signer] = {}
        self._entered = False
        #: Wallet operations: ``await client.wallets.info("user-42")``.
        self.wallets = self._wallets()

    # -- configuration, read-only -------------------------------------------------------------

    @property
    def auth_id(self) -> str:
        return self._auth_id

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def timeout(self) -> Timeout:
        """Time limits applied to each request (see :class:`Timeout`)."""
        return self._options.timeout

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy: reads' retries, and mutations' resends."""
        return self._options.retry

    def with_options(
        self,
        *,
        timeout: float | Timeout | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
    ) -> FreedomPayClient:
        """A view of this client with other per-request options, sharing its connection pool.

        >>> fast = client.with_options(timeout=2, max_retries=0)  # doctest: +SKIP
        >>> await fast.wallets.info("user-42")  # doctest: +SKIP

        Closing either closes the shared pool; keep using the original for lifecycle.
        """
        options = _Options(
            timeout=self._options.timeout if timeout is None else Timeout.coerce(timeout),
            retry=_retry_policy(retry or self._options.retry, max_retries),
        )
        view = copy.copy(self)
        view._options = options
        view._entered = False
        view.wallets = view._wallets()
        return view

    def _wallets(self) -> Wallets:
        """``client.wallets``, bound to this client's (or view's) request path and options."""
        return Wallets(
            self._request,
            retry=self._options.retry,
            timeout=self._options.timeout,
            pool_size=self._pool_size,
        )

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose` (or the end of the ``async with`` block)."""
        return self._lifecycle.closed

    @property
    def transport(self) -> Transport:
        """What sends this client's requests (see :mod:`freedompay_async.transport`)."""
        return self._transport

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The default transport's aiohttp session (``None`` until the first request when the
        client owns it, and with any other transport)."""
        transport = self._transport
        return transport.session if isinstance(transport, AiohttpTransport) else None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<FreedomPayClient auth_id={self._auth_id!r} base_url={self._base_url!r} {state}>"

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> FreedomPayClient:
        if self.closed:
            raise ClientClosedError("this FreedomPayClient is closed; create a new one")
        if self._entered:
            raise RuntimeError("this FreedomPayClient is already in an `async with` block")
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport (the default one leaves a caller's session open). Idempotent."""
        if self._lifecycle.closed:
            return
        self._lifecycle.closed = True
        await self._transport.aclose()

    # -- the one request path -----------------------------------------------------------------

    def _signer(self, path: str) -> Signer:
        signer = self._signers.get(path)
        if signer is None:
            signer = self._signers[path] = Signer(
                uri=path, auth_id=self._auth_id, secret_key=self._secret, alg=self._algorithm
            )
        return signer

    async def _request(
        self,
        endpoint: Endpoint[RequestT, ResponseT],
        payload: RequestT,
        *,
        identifier: str | None = None,
        request_id: UUID | None = None,
        timeout: float | Timeout | None = None,
    ) -> ResponseT:
        """Encode, sign, send and decode one call of ``endpoint``, retrying reads when safe.

        The body is encoded and signed once; a retry resends the very same bytes, with only
        the time left before the call's deadline.
        """
        self._lifecycle.check()
        body = encode(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            "X-JWS-Signature": self._signer(endpoint.path).sign(body),
        }
        url = self._base_url + endpoint.path
        retry = self._options.retry
        limits = self._options.timeout if timeout is None else Timeout.coerce(timeout)
        pacing = _pacing.current.get()  # set inside a batch: its brake, retry budget and limit
        if pacing is not None:
            # The batch's brake holds a call before it starts, like a queue: not its time yet.
            await pacing.ready()
        started = time.perf_counter()
        # The call's deadline: retries and the waits between them never run past it.
        deadline = None if limits.total is None else started + limits.total
        attempt = 0
        while True:
            attempt += 1
            retry_after: str | None = None
            try:
                try:
                    response = await self._transport.send(url, headers, body, limits)
                except FreedomPayError:
                    raise
                except Exception as exc:  # a transport that broke its contract
                    raise _foreign_error(self._transport, exc) from exc
                if not 200 <= response.status < 300:
                    retry_after = _header(response.headers, "Retry-After")
                    raise http_status_error(
                        endpoint,
                        response.status,
                        response.body,
                        identifier=identifier,
                        request_id=request_id,
                        retry_after=retry_after,
                    )
                result = decode_response(
                    endpoint, response.body, identifier=identifier, request_id=request_id
                )
            except FreedomPayError as error:
                error.endpoint = endpoint.name
                error.identifier = identifier
                error.request_id = request_id
                error.attempts = attempt
                if pacing is not None:
                    pacing.failed(error, retry_after, retry.max_retry_after)
                if (
                    isinstance(error, APIError)
                    or not retry.should_retry(error, attempt=attempt, read=endpoint.safe_to_retry)
                    or (pacing is not None and not pacing.allow_retry())
                ):
                    log_done(endpoint, identifier, error.http_status, attempt, started, error)
                    raise
                delay = retry.delay(attempt, retry_after)
                if pacing is not None:  # a resend waits for the batch's brake too
                    delay = max(delay, pacing.brake.remaining())
                if deadline is not None:
                    # What the next attempt would have left, in whole milliseconds.
                    left = round(deadline - time.perf_counter() - delay, 3)
                    if left <= 0:  # the wait alone would reach the deadline: give up now
                        error.message += (
                            f"; not retried: waiting {delay:.2f}s would pass the call's"
                            f" time limit (total={deadline - started:g}s)"
                        )
                        log_done(endpoint, identifier, error.http_status, attempt, started, error)
                        raise
                log_retry(endpoint, identifier, attempt, retry.max_attempts, error, delay)
                await asyncio.sleep(delay)
                if pacing is not None:
                    # The brake may have been put on again meanwhile (another request of the
                    # batch); its wait, like the backoff, never runs past the deadline.
                    with contextlib.suppress(asyncio.TimeoutError):  # 3.10: not TimeoutError
                        await asyncio.wait_for(
                            pacing.ready(),
                            None if deadline is None else deadline - time.perf_counter(),
                        )
                if deadline is not None:
                    left = round(deadline - time.perf_counter(), 3)
                    if left <= 0:
                        error.message += (
                            "; not retried: the call's time limit"
                            f" (total={deadline - started:g}s) passed while it waited"
                        )
                        log_done(endpoint, identifier, error.http_status, attempt, started, error)
                        raise
                    limits = dataclasses.replace(limits, total=left)
                continue
            log_done(endpoint, identifier, response.status, attempt, started, None)
            return result


class Request(Protocol):
    """A client's request path, bound to it: what resources call (``client._request``)."""

    def __call__(
        self,
        endpoint: Endpoint[RequestT, ResponseT],
        payload: RequestT,
        *,
        identifier: str | None = None,
        request_id: UUID | None = None,
        timeout: float | Timeout | None = None,
    ) -> Awaitable[ResponseT]: ...


class _Lifecycle:
    """Whether the client is closed, and the event loop it is bound to: one for a client and
    all its ``with_options`` views."""

    __slots__ = ("closed", "loop")

    def __init__(self) -> None:
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def check(self) -> None:
        """Refuse a request after ``aclose()``, or from another event loop than the first."""
        if self.closed:
            raise ClientClosedError("the FreedomPayClient is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif loop is not self.loop:
            raise RuntimeError(
                "this FreedomPayClient is bound to the event loop it was first used in; "
                "create one client per event loop (e.g. per asyncio.run call)"
            )


@dataclasses.dataclass(frozen=True)
class _Options:
    """Per-request options a :meth:`FreedomPayClient.with_options` view may change."""

    timeout: Timeout
    retry: RetryPolicy


def _retry_policy(retry: RetryPolicy | None, max_retries: int | None) -> RetryPolicy:
    if retry is not None:
        check_instance(retry, RetryPolicy, "retry", "a freedompay_async.RetryPolicy")
    policy = retry or RetryPolicy()
    if max_retries is None:
        return policy
    check_int(max_retries, "max_retries", 0)
    return dataclasses.replace(policy, max_attempts=max_retries + 1)


def _foreign_error(transport: Transport, exc: Exception) -> TransportError:
    """What the caller gets when a transport raises something else than a FreedomPayError."""
    if isinstance(exc, TimeoutError):
        return RequestTimeoutError(f"{type(transport).__name__} timed out ({type(exc).__name__})")
    return TransportError(
        f"{type(transport).__name__} failed with {type(exc).__name__}"
        " (a transport should raise FreedomPayError subclasses only)"
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header of a reply, its name matched without regard to case (in any mapping)."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def _credential(name: str, value: str | None, env: str) -> str:
    """A credential from its argument, else from the environment; never echoed in errors."""
    if value is None:
        value = os.environ.get(env)
        if value is None:
            invalid(f"{name} is required: pass {name}=... or set ${env}")
    return check_credential(name, value)


def _resolve_base_url(base_url: str | None, region: str | None) -> str:
    if base_url is not None and region is not None:
        invalid("pass base_url or region, not both")
    if region is not None:
        return _config.REGIONS[check_choice(region, "region", _config.REGIONS)]
    if base_url is None:
        base_url = os.environ.get(_config.ENV_BASE_URL) or _config.REGIONS[_config.DEFAULT_REGION]
    if not isinstance(base_url, str):
        wrong_type("base_url", "a str", base_url)
    url = URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        invalid(f"base_url must be an http(s) URL, not {base_url!r}")
    if url.path not in ("", "/") or url.query_string or url.fragment:
        invalid(f"base_url must be an origin like https://api.freedompay.kz, not {base_url!r}")
    return str(url.origin())


__all__ = ["FreedomPayClient", "Request"]
