"""An aiohttp.web service that answers wallet balances through one shared FreedomPayClient.

    python examples/aiohttp_app.py --fake              # against a built-in fake Freedom Pay
    FREEDOMPAY_AUTH_ID=... FREEDOMPAY_SECRET_KEY=... python examples/aiohttp_app.py
    curl -s localhost:8080/wallets/user-42/balance

The same service as examples/fastapi_app.py, the aiohttp way:

- **One client per process,** opened by a ``cleanup_ctx`` generator when the app starts,
  stored under an ``AppKey`` and shared by every request; the same generator closes it on
  cleanup, after the last request has finished.
- **Errors mapped to HTTP** by one table (``ERROR_STATUSES``), applied by a middleware: a
  missing wallet is 404, a time limit 504, any other upstream failure 502, an identifier the
  SDK refuses 422 (nothing is sent for it). Bodies carry ``error_code`` / ``request_status``.
- **Money as a string:** ``"15230.50"``, never a float.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from aiohttp import web

from freedompay_async import (
    ClientClosedError,
    FreedomPayClient,
    FreedomPayError,
    InvalidArgumentError,
    RequestTimeoutError,
    WalletNotFoundError,
)

logger = logging.getLogger("aiohttp_app")

#: What each failure means to *our* callers: the first matching class wins. The same table
#: is in examples/fastapi_app.py on purpose: each example is one file you can copy, and
#: tests/test_examples_web.py checks that both apps answer every error alike.
ERROR_STATUSES: tuple[tuple[type[Exception], int, str], ...] = (
    (InvalidArgumentError, 422, "invalid_identifier"),  # refused by the SDK, nothing was sent
    (WalletNotFoundError, 404, "wallet_not_found"),  # 1004
    (RequestTimeoutError, 504, "upstream_timeout"),  # a time limit, after the SDK's retries
    (ClientClosedError, 503, "unavailable"),  # the server is shutting down
    (FreedomPayError, 502, "upstream_error"),  # any other API / HTTP / transport / decode error
)


def error_reply(error: Exception) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for an error (``ERROR_STATUSES`` decides)."""
    status, kind = next(
        (status, kind) for cls, status, kind in ERROR_STATUSES if isinstance(error, cls)
    )
    body: dict[str, Any] = {"error": kind, "message": str(error)}
    if isinstance(error, FreedomPayError):  # no key or signature is ever in these
        body["error_code"] = error.error_code
        request_status = error.request_status
        body["request_status"] = None if request_status is None else request_status.value
    return status, body


#: The process-wide client, on the application.
CLIENT = web.AppKey("freedompay", FreedomPayClient)

#: Makes the app's client: ``FreedomPayClient`` itself, ``fake.client``, or anything whose
#: ``async with`` gives a client and closes it (an ``asynccontextmanager`` function).
ClientFactory = Callable[[], AbstractAsyncContextManager[FreedomPayClient]]


async def wallet_balance(request: web.Request) -> web.Response:
    """``GET /wallets/{identifier}/balance``: a wallet's balance, by partner-side identifier."""
    identifier = request.match_info["identifier"]
    try:
        info = await request.app[CLIENT].wallets.info(identifier)
    except ValueError as error:  # the SDK checks the identifier before sending anything
        status, body = error_reply(error)
        return web.json_response(body, status=status)
    wallet = info.wallet
    return web.json_response(
        {
            "identifier": identifier,
            "wallet_id": str(wallet.wallet_id),
            "balance": str(wallet.balance),  # a decimal string: exact, never a float
            "currency": wallet.currency,
            "status": wallet.status,
        }
    )


@web.middleware
async def freedompay_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every ``FreedomPayError`` a handler lets through into its JSON reply."""
    try:
        return await handler(request)
    except FreedomPayError as error:
        status, body = error_reply(error)
        if status >= 500:  # upstream's trouble (or ours): the details go to the logs only
            logger.warning(
                "%s %s -> %d: %s; upstream body: %s",
                request.method,
                request.path,
                status,
                error,
                error.body,
            )
        return web.json_response(body, status=status)


def create_app(client_factory: ClientFactory = FreedomPayClient) -> web.Application:
    """The app, whose ``cleanup_ctx`` opens one client from ``client_factory`` and closes it.

    The default, ``FreedomPayClient``, reads ``FREEDOMPAY_AUTH_ID`` / ``FREEDOMPAY_SECRET_KEY`` /
    ``FREEDOMPAY_BASE_URL`` when the server starts.
    """

    async def freedompay_client(app: web.Application) -> AsyncIterator[None]:
        async with client_factory() as client:  # closed after the last request finished
            app[CLIENT] = client
            yield

    app = web.Application(middlewares=[freedompay_errors])
    app.cleanup_ctx.append(freedompay_client)
    app.router.add_get("/wallets/{identifier}/balance", wallet_balance)
    return app


@asynccontextmanager
async def fake_freedompay_client(wallets: int) -> AsyncIterator[FreedomPayClient]:
    """A client of a fake Freedom Pay started for the app's lifetime (``--fake``)."""
    from freedompay_async.testing import FakeFreedomPay

    async with FakeFreedomPay(wallets=wallets) as fake, fake.client() as client:
        print(f"fake Freedom Pay at {fake.url}: wallets user-0 ... user-{wallets - 1}")
        yield client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--fake",
        nargs="?",
        type=int,
        const=100,
        metavar="WALLETS",
        help="serve from a built-in fake Freedom Pay with this many wallets (100)",
    )
    args = parser.parse_args()
    factory: ClientFactory = FreedomPayClient
    if args.fake is not None:
        factory = functools.partial(fake_freedompay_client, args.fake)
    logging.basicConfig(level=logging.INFO)
    web.run_app(create_app(factory), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
