"""``FakeFreedomPay``: an in-memory Freedom Pay E-Money server on 127.0.0.1 (aiohttp.web).

It verifies ``X-JWS-Signature`` exactly as the real service would, holds wallets in memory and
answers in the spec's shapes, so tests, benchmarks, the demo and users' own tests exercise the
real HTTP stack instead of mocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl as ssl_module
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from decimal import Decimal
from types import TracebackType
from typing import Any, Final

import msgspec
from aiohttp import web

from .. import _protocol
from .._client import FreedomPayClient
from .._jws import SignatureError, verify
from ._faults import FaultInjector, Faults

Handler = Callable[["FakeFreedomPay", dict[str, Any]], Awaitable[dict[str, Any]]]

_NAMESPACE: Final = uuid.UUID("5b1c7a3e-2f4d-4c1e-9a59-0f7b7d6c1e42")
_encode: Final = msgspec.json.Encoder(decimal_format="string").encode
_decode_object: Final = msgspec.json.Decoder(dict[str, Any]).decode


@dataclasses.dataclass
class FakeWallet:
    """One wallet held by the fake server; tests may read and change it freely."""

    identifier: str
    currency: str = "KZT"
    balance: Decimal = Decimal("0.00")
    status: str = "active"
    wallet_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    owner_id: str = ""
    account_number: str = ""

    def to_wire(self) -> dict[str, Any]:
        """The ``wallet`` object as Info returns it."""
        return {
            "wallet_id": str(self.wallet_id),
            "identifiers": [{"value": self.identifier}],
            "owner_id": self.owner_id,
            "account_number": self.account_number,
            "currency": self.currency,
            "balance": str(self.balance),
            "status": self.status,
        }


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

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.requests = self.rejected_signatures = self.in_flight = self.max_in_flight = 0
        self.by_path.clear()
        self.faults.clear()


def seeded_wallet(index: int, currency: str = "KZT") -> FakeWallet:
    """The deterministic wallet ``user-<index>`` that ``wallets=N`` creates."""
    identifier = f"user-{index}"
    return FakeWallet(
        identifier=identifier,
        currency=currency,
        balance=Decimal(f"{(index * 7919) % 1_000_000}.{index % 100:02d}"),
        wallet_id=uuid.uuid5(_NAMESPACE, identifier),
        owner_id=f"owner-{index}",
        account_number=f"KZ{index:018d}",
    )


class FakeFreedomPay:
    """A fake Freedom Pay E-Money API on ``127.0.0.1`` with an ephemeral port.

    Args:
        wallets: seed this many wallets ``user-0`` ... ``user-<N-1>`` (deterministic balances).
        auth_id / secret_key: the credentials it accepts (``fake.client()`` uses them).
        latency: seconds added before every reply (to make concurrency observable).
        faults: faults to inject into every endpoint (see :meth:`inject_faults`).
        ssl: a server-side :class:`ssl.SSLContext` to serve HTTPS instead of HTTP.

    Usage::

        async with FakeFreedomPay(wallets=10) as fake:
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
        if wallets < 0:
            raise ValueError("wallets must be >= 0")
        if latency < 0:
            raise ValueError("latency must be >= 0")
        self.auth_id = auth_id
        self._secret_key = secret_key.encode("utf-8")
        self._auth_ids = frozenset({auth_id})
        self.latency = latency
        self.stats = FakeStats()
        self.wallets: dict[str, FakeWallet] = {}
        for index in range(wallets):
            wallet = seeded_wallet(index, currency)
            self.wallets[wallet.identifier] = wallet
        self._host = host
        self._ssl = ssl
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._canned: dict[str, list[_CannedReply]] = {}
        self._faults = FaultInjector()
        self._faults.default = faults
        self._faults.injected = self.stats.faults
        self._routes: dict[str, Handler] = {
            _protocol.INFO.path: FakeFreedomPay._handle_info,
        }

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

    def add_wallet(
        self,
        identifier: str,
        *,
        balance: Decimal | str | int = "0.00",
        currency: str = "KZT",
        status: str = "active",
        **fields: Any,
    ) -> FakeWallet:
        """Seed a wallet (replacing one with the same identifier) and return it."""
        wallet = FakeWallet(
            identifier=identifier,
            currency=currency,
            balance=Decimal(balance),
            status=status,
            **fields,
        )
        self.wallets[identifier] = wallet
        return wallet

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
        if times < 1:
            raise ValueError("times must be >= 1")
        if isinstance(body, dict):
            raw = _encode(body)
        elif isinstance(body, str):
            raw = body.encode("utf-8")
        else:
            raw = body
        reply = _CannedReply(raw, status, content_type, dict(headers or {}))
        self._canned.setdefault(path, []).extend([reply] * times)

    def inject_faults(self, faults: Faults | None, *, path: str | None = None) -> None:
        """Inject ``faults`` into requests to ``path`` (every endpoint when ``None``).

        ``None`` as ``faults`` removes them again for that path (or globally). What was
        injected is counted in ``fake.stats.faults``.
        """
        if faults is not None and not isinstance(faults, Faults):
            raise TypeError("faults must be a freedompay_async.testing.Faults")
        if path is None:
            self._faults.default = faults
        elif faults is None:
            self._faults.by_path.pop(path, None)
        else:
            self._faults.by_path[path] = faults

    def clear_faults(self) -> None:
        """Remove every injected fault (counts in ``stats.faults`` are kept)."""
        self._faults.clear()

    def client(self, **options: Any) -> FreedomPayClient:
        """A :class:`FreedomPayClient` pointed at this server with its credentials."""
        options.setdefault("auth_id", self.auth_id)
        options.setdefault("secret_key", self.secret_key)
        options.setdefault("base_url", self.url)
        return FreedomPayClient(**options)

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
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        port = server.sockets[0].getsockname()[1]
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
                await asyncio.sleep(self.latency)
            faults = self._faults
            if not faults.active:
                return await self._answer(request)
            early = await faults.before(request)
            if early is not None:
                return early
            return await faults.after(request, await self._answer(request))
        finally:
            stats.in_flight -= 1

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
        return _json(await handler(self, payload))

    async def _handle_info(self, payload: dict[str, Any]) -> dict[str, Any]:
        identifier = payload.get("identifier")
        if not isinstance(identifier, str) or not identifier:
            return error_reply("1001", "identifier is required")
        wallet = self.wallets.get(identifier)
        if wallet is None:
            return error_reply("1004", "wallet not found")
        return ok_reply(wallet=wallet.to_wire())


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def ok_reply(request_status: str = "0", **fields: Any) -> dict[str, Any]:
    """A ``status: "ok"`` envelope with extra fields."""
    return {"status": "ok", "request_status": request_status, **fields, "dt": now_rfc3339()}


def error_reply(code: str, description: str, request_status: str = "2") -> dict[str, Any]:
    """A ``status: "error"`` envelope."""
    return {
        "status": "error",
        "request_status": request_status,
        "error_code": code,
        "error_description": description,
        "dt": now_rfc3339(),
    }


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=_encode(payload), status=status, content_type="application/json")
