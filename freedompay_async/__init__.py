"""asyncio-native SDK for the Freedom Pay Partner API, E-Money section (partner-held wallets).

>>> from freedompay_async import FreedomPayClient
>>> async with FreedomPayClient(auth_id="123456", secret_key="...") as client:  # doctest: +SKIP
...     info = await client.wallets.info("user-42")
"""

from ._client import FreedomPayClient
from ._config import REGIONS, Timeout
from ._retry import RetryPolicy
from ._transport import AiohttpTransport
from ._version import __version__
from .batch import Batch, BatchResult, BatchStats, amap
from .errors import (
    APIError,
    ArgumentTypeError,
    AuthenticationError,
    ClientClosedError,
    DuplicateRequestError,
    FreedomPayError,
    HTTPStatusError,
    InvalidArgumentError,
    InvalidRequestError,
    MutationOutcomeUnknownError,
    RateLimitError,
    RequestNotFoundError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    TransportError,
    WaitTimeoutError,
    WalletBlockError,
    WalletClosedError,
    WalletCloseError,
    WalletExistsError,
    WalletNotFoundError,
)
from .models import (
    Correspondent,
    Identifier,
    MutationResult,
    Operation,
    OperationType,
    PartialWallet,
    ProvisionalResponse,
    RequestStatus,
    RequestStatusResult,
    Response,
    Wallet,
    WalletAdded,
    WalletBalance,
    WalletInfo,
    WalletStatement,
    WalletStatus,
)
from .transport import Transport, TransportResponse

__all__ = [
    "REGIONS",
    "APIError",
    "ArgumentTypeError",
    "AiohttpTransport",
    "AuthenticationError",
    "RateLimitError",
    "Batch",
    "BatchResult",
    "BatchStats",
    "ClientClosedError",
    "Correspondent",
    "DuplicateRequestError",
    "FreedomPayClient",
    "FreedomPayError",
    "HTTPStatusError",
    "Identifier",
    "InvalidArgumentError",
    "InvalidRequestError",
    "MutationOutcomeUnknownError",
    "MutationResult",
    "Operation",
    "OperationType",
    "PartialWallet",
    "ProvisionalResponse",
    "RequestNotFoundError",
    "RequestStatus",
    "RequestStatusResult",
    "RequestTimeoutError",
    "Response",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "Timeout",
    "Transport",
    "TransportError",
    "TransportResponse",
    "WaitTimeoutError",
    "Wallet",
    "WalletAdded",
    "WalletBalance",
    "WalletBlockError",
    "WalletCloseError",
    "WalletClosedError",
    "WalletExistsError",
    "WalletInfo",
    "WalletNotFoundError",
    "WalletStatement",
    "WalletStatus",
    "__version__",
    "amap",
]
