"""Every default of the SDK in one place: hosts, timeouts, pool, limits, environment names."""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from ._version import __version__

Region = Literal["kz", "kz-test", "kg", "uz"]

#: Base URL of each Freedom Pay region (``kz-test`` is assumed from the sibling Card API).
REGIONS: Final[dict[str, str]] = {
    "kz": "https://api.freedompay.kz",
    "kz-test": "https://test-api.freedompay.kz",
    "kg": "https://api.freedompay.kg",
    "uz": "https://api.freedompay.uz",
}
DEFAULT_REGION: Final = "kz"

ENV_AUTH_ID: Final = "FREEDOMPAY_AUTH_ID"
ENV_SECRET_KEY: Final = "FREEDOMPAY_SECRET_KEY"
ENV_BASE_URL: Final = "FREEDOMPAY_BASE_URL"

DEFAULT_USER_AGENT: Final = f"freedompay-async/{__version__}"

#: Connection pool: total sockets, and sockets per host (0 = no per-host cap).
DEFAULT_MAX_CONNECTIONS: Final = 100
DEFAULT_MAX_CONNECTIONS_PER_HOST: Final = 0
#: DNS answers are cached this long (seconds).
DNS_CACHE_TTL: Final = 300
#: Idle keep-alive sockets are closed after this many seconds, below common server cut-offs.
KEEPALIVE_TIMEOUT: Final = 15.0

#: Replies larger than this are refused without being buffered whole.
DEFAULT_MAX_RESPONSE_BYTES: Final = 1024 * 1024
#: How much of an unexpected body an exception carries.
ERROR_BODY_EXCERPT: Final = 512
#: Longest partner-side wallet identifier accepted before any network call.
MAX_IDENTIFIER_LENGTH: Final = 256
#: Longest block / close reason (the ``description`` field) accepted before any network call.
MAX_REASON_LENGTH: Final = 1024
#: Money in a reply must be a finite number with at most this many digits before the decimal
#: point (|amount| < 10**24, far above any real wallet) and this many after it; anything else
#: (NaN, Infinity, 1E+999999999, a 500,000-digit number) is refused as ``ResponseDecodeError``.
MAX_AMOUNT_INTEGER_DIGITS: Final = 24
MAX_AMOUNT_FRACTION_DIGITS: Final = 40

#: ``wallets.wait()``: the overall time budget (seconds), the first pause between Request status
#: polls, and the cap the pause doubles up to.
DEFAULT_WAIT_TIMEOUT: Final = 60.0
DEFAULT_POLL_INTERVAL: Final = 0.5
DEFAULT_MAX_POLL_INTERVAL: Final = 5.0


@dataclasses.dataclass(frozen=True)
class Timeout:
    """Per-request time limits in seconds; ``None`` switches a limit off.

    ``total`` bounds the whole call (connect, send, read, and for reads every retry and every
    wait between attempts: a retry gets only the time left); ``connect`` bounds getting a
    connection from the pool and opening it, and ``read`` each wait for bytes from the server,
    per attempt.
    The default transport checks a ``total`` of 5 seconds or more with one timer shared by
    all requests, ticking every half second (Python 3.11+), so it may fire up to half a second
    late; shorter totals are exact.

    >>> Timeout(total=10, connect=2)
    Timeout(total=10, connect=2, read=None)
    """

    total: float | None = 30.0
    connect: float | None = 10.0
    read: float | None = None

    def __post_init__(self) -> None:
        from ._validate import check_optional_seconds  # _validate imports this module

        for name in ("total", "connect", "read"):
            check_optional_seconds(getattr(self, name), f"Timeout.{name}")

    @classmethod
    def coerce(cls, value: float | Timeout | None) -> Timeout:
        """Turn the user's ``timeout=`` argument into a :class:`Timeout`.

        A plain number is the total per request; the connect limit keeps its default unless
        the total is shorter.
        """
        if value is None:
            return DEFAULT_TIMEOUT
        if isinstance(value, Timeout):
            return value
        from ._validate import check_seconds, wrong_type

        if isinstance(value, bool) or not isinstance(value, (int, float)):
            wrong_type("timeout", "a number of seconds or a freedompay_async.Timeout", value)
        total = check_seconds(value, "timeout")
        default_connect = DEFAULT_TIMEOUT.connect
        connect = total if default_connect is None else min(default_connect, total)
        return cls(total=total, connect=connect)


DEFAULT_TIMEOUT: Final = Timeout()
