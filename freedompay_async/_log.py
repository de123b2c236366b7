"""The SDK's log lines for requests, under the ``freedompay_async`` logger: one DEBUG line per
request (endpoint, identifier, status, attempts, milliseconds) and one WARNING per retry, each
with ``extra`` fields for structured logging. Never a key or a signature; nothing at INFO."""

from __future__ import annotations

import logging
import time
from typing import Any

from ._protocol import Endpoint
from .errors import FreedomPayError

logger = logging.getLogger("freedompay_async")
logger.addHandler(logging.NullHandler())


def log_retry(
    endpoint: Endpoint[Any, Any],
    identifier: str | None,
    attempt: int,
    max_attempts: int,
    error: FreedomPayError,
    delay: float,
) -> None:
    if logger.isEnabledFor(logging.WARNING):
        logger.warning(
            "%s %r: attempt %d of %d failed (%s: %s); retrying in %.2fs",
            endpoint.name,
            identifier,
            attempt,
            max_attempts,
            type(error).__name__,
            error.message,
            delay,
            extra={
                "endpoint": endpoint.name,
                "identifier": identifier,
                "attempt": attempt,
                "http_status": error.http_status,
                "delay": delay,
            },
        )


def log_done(
    endpoint: Endpoint[Any, Any],
    identifier: str | None,
    http_status: int | None,
    attempts: int,
    started: float,
    error: FreedomPayError | None,
) -> None:
    """One DEBUG line per request: endpoint, identifier, status, attempts, milliseconds."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    elapsed_ms = (time.perf_counter() - started) * 1000
    outcome = "ok" if error is None else type(error).__name__
    logger.debug(
        "%s %r -> %s %s in %.1f ms (attempts=%d)",
        endpoint.name,
        identifier,
        http_status,
        outcome,
        elapsed_ms,
        attempts,
        extra={
            "endpoint": endpoint.name,
            "identifier": identifier,
            "http_status": http_status,
            "outcome": outcome,
            "attempts": attempts,
            "elapsed_ms": elapsed_ms,
        },
    )
