"""asyncio-native SDK for the Freedom Pay Partner API, E-Money section (partner-held wallets).

>>> from freedompay_async import FreedomPayClient
>>> async with FreedomPayClient(auth_id="123456", secret_key="...") as client:  # doctest: +SKIP
...     info = await client.wallets.info("user-42")
"""

from ._client import FreedomPayClient
from ._config import REGIONS, Timeout
from ._retry import RetryPolicy
from ._version import __version__
from .errors import (
    APIError,
    AuthenticationError,
    ClientClosedError,
    DuplicateRequestError,
    FreedomPayError,
    HTTPStatusError,
    InvalidRequestError,
    RequestNotFoundError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    TransportError,
    WalletBlockError,
    WalletClosedError,
    WalletCloseError,
    WalletExistsError,
    WalletNotFoundError,
)
from .models import (
    Identifier,
    RequestStatus,
    Response,
    Wallet,
    WalletInfo,
    WalletStatus,
)

__all__ = [
    "REGIONS",
    "APIError",
    "AuthenticationError",
    "ClientClosedError",
    "DuplicateRequestError",
    "FreedomPayClient",
    "FreedomPayError",
    "HTTPStatusError",
    "Identifier",
    "InvalidRequestError",
    "RequestNotFoundError",
    "RequestStatus",
    "RequestTimeoutError",
    "Response",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "Timeout",
    "TransportError",
    "Wallet",
    "WalletBlockError",
    "WalletCloseError",
    "WalletClosedError",
    "WalletExistsError",
    "WalletInfo",
    "WalletNotFoundError",
    "WalletStatus",
    "__version__",
]
