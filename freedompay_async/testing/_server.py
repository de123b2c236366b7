"""``FakeFreedomPay``: an in-memory Freedom Pay E-Money server on 127.0.0.1 (aiohttp.web).

It verifies ``X-JWS-Signature`` exactly as the real service would, holds wallets, their
operations and every request in memory, applies the API's rules (see
:class:`~freedompay_async.testing.FakeLedger`) and answers in the spec's shapes, so tests,
benchmarks, the demo and users' own tests exercise the real HTTP stack instead of mocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ssl as ssl_module
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Final

import aiohttp
import msgspec
from aiohttp import web

from .. import _config, _protocol
from .._client import FreedomPayClient
from .._config import Timeout
from .._jws import SignatureError, verify
from .._retry import RetryPolicy
from .._validate import check_instance, check_int, check_seconds
from ..transport import Transport
from ._faults import FaultInjector, Faults
from ._state import (
    FakeLedger,
    FakeOperation,
    FakeRequest,
    FakeWallet,
    error_reply,
    money,
    now_rfc3339,
    ok_reply,
    operations_from,
    seeded_wallet,
)

__all__ = [
    "FakeFreedomPay",
    "FakeStats",
    "error_reply",
    "now_rfc3339",
    "ok_reply",
    "seeded_wallet",
]

Handler = Callable[[dict[str, Any]], dict[str, Any]]

# Decimals go out as JSON numbers (Statement amounts); wallet balances are already strings.
_encode: Final = msgspec.json.Encoder(decimal_format="number").encode
_decode_object: Final = msgspec.json.Decoder(dict[str, Any]).decode


@dataclasses.dataclass(frozen=True)
class _CannedReply:
    body: bytes
    status: int
    content_type: str
    headers: dict[str, str]


@dataclasses.dataclass
class FakeStats:
    """What the fake server saw: counts per endpoint path, and concurrency."""

    requests: int = 0
    by_path: dict[str, int] = dataclasses.field(default_factory=dict)
    rejected_signatures: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    #: Faults injected so far, by kind (see :class:`Faults`).
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Every body sent to a mutation endpoint, by its ``request_id``, in arrival order: resends
    #: included, and sends a fault dropped before the endpoint ran.
    mutation_sends: dict[uuid.UUID, list[bytes]] = dataclasses.field(default_factory=dict)

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.requests = self.rejected_signatures = self.in_flight = self.max_in_flight = 0
        self.by_path.clear()
        self.faults.clear()
        self.mutation_sends.clear()


class FakeFreedomPay:
    """A fake Freedom Pay E-Money API on ``127.0.0.1`` with an ephemeral port.

    It answers every endpoint of the SDK's table with the real rules (1003 when an identifier
    exists, 1007 on a closed wallet, 1002 for a reused ``request_id``, 1006 for an unknown one,
    ...); the full list is on :class:`~freedompay_async.testing.FakeLedger`. In short: blocked
    wallets stay readable, cannot be blocked again (1008) and can be closed; closing needs a
    zero balance (else 1005); closed wallets stay readable and refuse every mutation (1007).

    Args:
        wallets: seed this many wallets ``user-0`` ... ``user-<N-1>`` (deterministic balances).
        auth_id / secret_key: the credentials it accepts (``fake.client()`` uses them).
        latency: seconds added before every reply (to make concurrency observable).
        faults: faults to inject into every endpoint (see :meth:`inject_faults`).
        ssl: a server-side :class:`ssl.SSLContext` to serve HTTPS instead of HTTP.

    Usage::

        async with FakeFreedomPay(wallets=10) as fake:
            fake.add_wallet("vip", balance="100.00", operations=[...])
            fake.defer("block", polls=2)        # the next block finishes on the 2nd status poll
            async with fake.client() as client:
                info = await client.wallets.info("user-3")
    """

    def __init__(
        self,
        *,
        wallets: int = 0,
        auth_id: str = "123456",
        secret_key: str = "fake-secret-key",
        currency: str = "KZT",
        latency: float = 0.0,
        faults: Faults | None = None,
        ssl: ssl_module.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        check_int(wallets, "wallets", 0)
        check_seconds(latency, "latency", allow_zero=True)
        self.auth_id = auth_id
        self._secret_key = secret_key.encode("utf-8")
        self._auth_ids = frozenset({auth_id})
        self.latency = latency
        self.stats = FakeStats()
        #: The state and rules; ``wallets`` and ``requests`` below are its dicts.
        self.ledger = FakeLedger()
        for index in range(wallets):
            wallet = seeded_wallet(index, currency)
            self.ledger.wallets[wallet.identifier] = wallet
        self._host = host
        self._ssl = ssl
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._canned: dict[str, list[_CannedReply]] = {}
        self._faults = FaultInjector()
        self._faults.default = faults
        self._faults.injected = self.stats.faults
        # Routed by the SDK's endpoint table, so a corrected path moves here too.
        self._routes: dict[str, Handler] = {
            endpoint.path: functools.partial(self.ledger.handle, name)
            for name, endpoint in _protocol.ENDPOINTS.items()
        }
        self._mutation_paths = frozenset(
            endpoint.path for endpoint in _protocol.ENDPOINTS.values() if endpoint.mutates
        )

    def __repr__(self) -> str:
        return f"<FakeFreedomPay url={self._url!r} wallets={len(self.wallets)}>"

    # -- public helpers for tests -------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to give the client, e.g. ``http://127.0.0.1:40123``."""
        if self._url is None:
            raise RuntimeError("FakeFreedomPay is not started; use `async with FakeFreedomPay()`")
        return self._url

    @property
    def secret_key(self) -> str:
        return self._secret_key.decode("utf-8")

    @property
    def wallets(self) -> dict[str, FakeWallet]:
        """Every wallet, by identifier; tests may read and change them freely."""
        return self.ledger.wallets

    @property
    def requests(self) -> dict[uuid.UUID, FakeRequest]:
        """Every mutation accepted so far, by ``request_id``, with its state and outcome."""
        return self.ledger.requests

    def add_wallet(
        self,
        identifier: str,
        *,
        balance: Decimal | str | int = "0.00",
        currency: str = "KZT",
        status: str = "active",
        operations: Iterable[FakeOperation | dict[str, Any]] = (),
        **fields: Any,
    ) -> FakeWallet:
        """Seed a wallet (replacing one with the same identifier) and return it.

        ``operations`` are its statement lines: :class:`FakeOperation` objects or dicts of
        their fields. The balance is not derived from them; set both as the test needs.
        """
        wallet = FakeWallet(
            identifier=identifier,
            currency=currency,
            balance=money(balance, "balance"),
            status=status,
            operations=operations_from(operations),
            **fields,
        )
        self.ledger.wallets[identifier] = wallet
        return wallet

    def add_operation(
        self,
        identifier: str,
        type: str,
        amount: Decimal | str | int,
        at: datetime,
        **fields: Any,
    ) -> FakeOperation:
        """Append a statement line to a seeded wallet (``fields``: see :class:`FakeOperation`)."""
        operation = FakeOperation(type=type, amount=money(amount), datetime=at, **fields)
        self.ledger.wallets[identifier].operations.append(operation)
        return operation

    def defer(
        self,
        operation: str | None = None,
        *,
        request_id: uuid.UUID | str | None = None,
        polls: int | None = 1,
        times: int = 1,
    ) -> None:
        """Make mutations answer "processing" (``request_status`` 1) and finish later.

        Choose them by endpoint name (``"add"``, ``"block"``, ``"close"``,
        ``"identify_owner"``: the next ``times`` such requests) or by ``request_id``. Each is
        carried out, with the usual rules, on its ``polls``-th Request status poll, or, with
        ``polls=None``, only when the test calls :meth:`complete`.
        """
        self.ledger.defer(operation, request_id=request_id, polls=polls, times=times)

    def complete(self, request_id: uuid.UUID | str) -> FakeRequest:
        """Carry out a deferred operation now (its outcome may still be an error)."""
        return self.ledger.complete(request_id)

    @property
    def pending(self) -> list[uuid.UUID]:
        """``request_id`` of every deferred operation still processing."""
        return self.ledger.pending

    def respond_with(
        self,
        path: str,
        body: bytes | str | dict[str, Any],
        *,
        status: int = 200,
        times: int = 1,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests to ``path`` with this reply instead of the real one.

        The signature is still checked first. ``body`` may be raw bytes (to send junk), text,
        or a dict encoded as JSON.
        """
        check_int(times, "times", 1)
        if isinstance(body, dict):
            raw = _encode(body)
        elif isinstance(body, str):
            raw = body.encode("utf-8")
        else:
            raw = body
        reply = _CannedReply(raw, status, content_type, dict(headers or {}))
        self._canned.setdefault(path, []).extend([reply] * times)

    def inject_faults(
        self, faults: Faults | None, *, path: str | None = None, times: int | None = None
    ) -> None:
        """Inject ``faults`` into requests to ``path`` (every endpoint when ``None``).

        ``None`` as ``faults`` removes them again for that path (or globally). With ``times``,
        they are removed by themselves once ``times`` faults were injected there (e.g. "the
        first block's reply is lost": ``Faults(reply_lost_rate=1.0)``, ``times=1``). What was
        injected is counted in ``fake.stats.faults``.
        """
        if faults is not None:
            check_instance(faults, Faults, "faults", "a freedompay_async.testing.Faults")
        if times is not None:
            check_int(times, "times", 1)
        if faults is None or times is None:
            self._faults.left.pop(path, None)
        else:
            self._faults.left[path] = times
        if path is None:
            self._faults.default = faults
        elif faults is None:
            self._faults.by_path.pop(path, None)
        else:
            self._faults.by_path[path] = faults

    def clear_faults(self) -> None:
        """Remove every injected fault (counts in ``stats.faults`` are kept)."""
        self._faults.clear()

    def client(
        self,
        *,
        auth_id: str | None = None,
        secret_key: str | None = None,
        base_url: str | None = None,
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
    ) -> FreedomPayClient:
        """A :class:`FreedomPayClient` pointed at this server with its credentials.

        Takes :class:`FreedomPayClient`'s own keyword arguments (``region`` aside: the URL is
        this server's), so a misspelt option is a type error and a ``TypeError``;
        ``auth_id`` / ``secret_key`` / ``base_url`` default to this server's.
        """
        return FreedomPayClient(
            self.auth_id if auth_id is None else auth_id,
            self.secret_key if secret_key is None else secret_key,
            base_url=self.url if base_url is None else base_url,
            timeout=timeout,
            retry=retry,
            max_retries=max_retries,
            max_connections=max_connections,
            max_connections_per_host=max_connections_per_host,
            user_agent=user_agent,
            session=session,
            algorithm=algorithm,
            max_response_bytes=max_response_bytes,
            ssl=ssl,
            trace_configs=trace_configs,
            transport=transport,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (``async with`` does this)."""
        if self._runner is not None:
            raise RuntimeError("FakeFreedomPay is already started")
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # In-flight handlers (latency, stalls) get a short grace period at shutdown, not 60 s.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, backlog=1024, ssl_context=self._ssl)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        port = int(runner.addresses[0][1])  # the ephemeral port; works on uvloop too
        self._runner = runner
        scheme = "https" if self._ssl is not None else "http"
        self._url = f"{scheme}://{self._host}:{port}"

    async def aclose(self) -> None:
        """Stop listening and drop connections. Idempotent."""
        runner, self._runner = self._runner, None
        self._faults.release_stalls()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeFreedomPay:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- request handling ---------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        stats.by_path[request.path] = stats.by_path.get(request.path, 0) + 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            if self.latency:
                # Read the body first, like a real server that works before it answers: a
                # client that gives up during the wait then resets a finished request, not a
                # half-read one (which aiohttp's server would log as an error).
                await request.read()
                await asyncio.sleep(self.latency)
            if request.path in self._mutation_paths:
                self._count_mutation(await request.read())
            faults = self._faults
            if not faults.active:
                return await self._answer(request)
            early, late = await faults.before(request)
            if early is not None:
                return early
            reply = await self._answer(request)
            return reply if late is None else await faults.after(request, reply, late)
        finally:
            stats.in_flight -= 1

    def _count_mutation(self, body: bytes) -> None:
        try:
            rid = uuid.UUID(str(_decode_object(body).get("request_id")))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            return  # no request_id to file it under (the endpoint answers 1001)
        self.stats.mutation_sends.setdefault(rid, []).append(body)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return _json({"status": "error", "error_description": "method not allowed"}, 405)
        handler = self._routes.get(request.path)
        if handler is None:
            return _json({"status": "error", "error_description": "not found"}, 404)
        body = await request.read()
        try:
            header = verify(
                request.headers.get("X-JWS-Signature", ""),
                body,
                secret_key=self._secret_key,
                auth_ids=self._auth_ids,
            )
            if header.get("uri") != request.path or header.get("method") != "POST":
                raise SignatureError("signed uri or method does not match the request")
        except SignatureError as exc:
            self.stats.rejected_signatures += 1
            return _json({"status": "error", "error_description": f"unauthorized: {exc}"}, 401)
        canned = self._canned.get(request.path)
        if canned:
            reply = canned.pop(0)
            return web.Response(
                body=reply.body,
                status=reply.status,
                content_type=reply.content_type,
                headers=reply.headers,
            )
        try:
            payload = _decode_object(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return _json(error_reply("1001", "request body is not a JSON object"))
        return _json(handler(payload))


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=_encode(payload), status=status, content_type="application/json")
