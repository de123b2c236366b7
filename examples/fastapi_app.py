"""A FastAPI service that answers wallet balances through one shared FreedomPayClient.

    pip install fastapi uvicorn
    python examples/fastapi_app.py --fake              # against a built-in fake Freedom Pay
    FREEDOMPAY_AUTH_ID=... FREEDOMPAY_SECRET_KEY=... python examples/fastapi_app.py
    curl -s localhost:8000/wallets/user-42/balance

What it shows:

- **One client per process.** It is created in the app's ``lifespan``, kept on ``app.state``
  and shared by every request (one connection pool, concurrent requests welcome); the
  ``async with`` closes it when the server shuts down, after the last request has finished.
- **Errors mapped to HTTP** by one table (``ERROR_STATUSES``): a missing wallet is 404, a
  time limit 504, any other upstream failure 502, an identifier the SDK refuses 422 (nothing
  is sent for it). Bodies carry ``error_code`` / ``request_status``, never a key.
- **Money as a string:** ``"15230.50"``, never a float.

``create_app(client_factory=...)`` builds the app around any client, e.g. ``fake.client`` in
tests, or ``lambda: FreedomPayClient(timeout=5, max_retries=1)`` to keep the worst case of a
request (every attempt plus backoff) inside your own deadline.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from freedompay_async import (
    ClientClosedError,
    FreedomPayClient,
    FreedomPayError,
    InvalidArgumentError,
    RequestTimeoutError,
    WalletNotFoundError,
)

logger = logging.getLogger("fastapi_app")

#: What each failure means to *our* callers: the first matching class wins. The same table
#: is in examples/aiohttp_app.py on purpose: each example is one file you can copy, and
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


class Balance(BaseModel):
    """The reply of ``GET /wallets/{identifier}/balance``."""

    identifier: str
    wallet_id: UUID
    balance: str  # a decimal string such as "15230.50": exact, never a float
    currency: str
    status: str | None


class ErrorBody(BaseModel):
    """The reply on failure (documented in the OpenAPI schema)."""

    error: str
    message: str
    error_code: int | None = None
    request_status: str | None = None


def get_client(request: Request) -> FreedomPayClient:
    """The process-wide client created by the lifespan (a FastAPI dependency)."""
    client: FreedomPayClient = request.app.state.freedompay
    return client


Client = Annotated[FreedomPayClient, Depends(get_client)]


#: Makes the app's client: ``FreedomPayClient`` itself, ``fake.client``, or anything whose
#: ``async with`` gives a client and closes it (an ``asynccontextmanager`` function).
ClientFactory = Callable[[], AbstractAsyncContextManager[FreedomPayClient]]


def create_app(client_factory: ClientFactory = FreedomPayClient) -> FastAPI:
    """The app, whose lifespan opens one client from ``client_factory`` and closes it.

    The default, ``FreedomPayClient``, reads ``FREEDOMPAY_AUTH_ID`` / ``FREEDOMPAY_SECRET_KEY`` /
    ``FREEDOMPAY_BASE_URL`` when the server starts.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client_factory() as client:  # closed after the last request finished
            app.state.freedompay = client
            yield

    app = FastAPI(title="Wallet balances", lifespan=lifespan)

    @app.exception_handler(FreedomPayError)
    async def freedompay_error(request: Request, error: FreedomPayError) -> JSONResponse:
        status, body = error_reply(error)
        if status >= 500:  # upstream's trouble (or ours): the details go to the logs only
            logger.warning(
                "%s %s -> %d: %s; upstream body: %s",
                request.method,
                request.url.path,
                status,
                error,
                error.body,
            )
        return JSONResponse(body, status_code=status)

    error_responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody} for _, status, _ in ERROR_STATUSES
    }

    @app.get("/wallets/{identifier}/balance", response_model=Balance, responses=error_responses)
    async def wallet_balance(identifier: str, client: Client) -> Balance | JSONResponse:
        """A wallet's balance, by your partner-side identifier."""
        try:
            info = await client.wallets.info(identifier)
        except ValueError as error:  # the SDK checks the identifier before sending anything
            status, body = error_reply(error)
            return JSONResponse(body, status_code=status)
        wallet = info.wallet
        return Balance(
            identifier=identifier,
            wallet_id=wallet.wallet_id,
            balance=str(wallet.balance),
            currency=wallet.currency,
            status=wallet.status,
        )

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
    parser.add_argument("--port", type=int, default=8000)
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
    uvicorn.run(create_app(factory), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
