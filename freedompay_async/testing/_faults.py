"""Fault injection for :class:`FakeFreedomPay`: latency, 5xx, 429, resets, stalls, bad bodies.

Every request draws one number in ``[0, 1)`` from a hash of ``(seed, path, body, n)`` where
``n`` counts how often that exact request was seen, so a run is reproducible whatever the order
in which concurrent requests arrive, and a retry of the same request gets a fresh draw. The
number picks at most one fault, by the cumulative rates in the order the fields are declared.

Where each fault strikes:

- before the endpoint runs (nothing changes on the server): ``server_error``, ``rate_limit``,
  ``stall``, ``non_json``, ``wrong_shape``, ``oversize``;
- after the endpoint ran (a mutation *did* happen: "applied, reply lost"): ``reset`` (the
  connection drops mid-reply), ``truncated`` (valid headers, JSON cut short), ``reply_lost``
  (the connection drops before a byte of the reply) and ``reply_stall`` (the reply is held
  back for ``stall_seconds``).

A pre-endpoint ``stall`` runs the endpoint when it ends (a request that arrives late); the
others never run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from typing import Final

from aiohttp import web

from .._validate import check_int, check_number, check_seconds, invalid

#: Fault kinds in the order their rates are stacked.
FAULT_KINDS: Final = (
    "server_error",
    "rate_limit",
    "reset",
    "stall",
    "truncated",
    "non_json",
    "wrong_shape",
    "oversize",
    "reply_lost",
    "reply_stall",
)
#: The kinds that strike after the endpoint ran: a mutation was carried out, its reply lost.
APPLIED_KINDS: Final = frozenset({"reset", "truncated", "reply_lost", "reply_stall"})


@dataclasses.dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often (each ``*_rate`` is a fraction of requests, 0 to 1).

    >>> Faults(server_error_rate=0.05, reset_rate=0.02, stall_rate=0.01, seed=7)  # doctest: +ELLIPSIS
    Faults(latency=0.0, server_error_rate=0.05, ...)
    """

    #: Seconds added before every reply: a fixed delay, or ``(low, high)`` for a uniform draw.
    latency: float | tuple[float, float] = 0.0
    #: Answer with one of ``server_error_statuses`` (drawn in turn).
    server_error_rate: float = 0.0
    server_error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    #: Answer 429 with ``Retry-After: retry_after`` (omitted when ``None``).
    rate_limit_rate: float = 0.0
    retry_after: str | None = "1"
    #: Run the endpoint, send half of its reply, then drop the connection.
    reset_rate: float = 0.0
    #: Send nothing for ``stall_seconds`` (meant to exceed the client's timeout).
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    #: Run the endpoint, then send its reply cut in half (a consistent Content-Length).
    truncated_rate: float = 0.0
    #: Answer 200 with an HTML page.
    non_json_rate: float = 0.0
    #: Answer 200 with JSON of the wrong shape.
    wrong_shape_rate: float = 0.0
    #: Answer 200 with ``oversize_bytes`` of JSON; chunked (no Content-Length) when ``oversize_chunked``.
    oversize_rate: float = 0.0
    oversize_bytes: int = 2 * 1024 * 1024
    oversize_chunked: bool = False
    #: Run the endpoint, then drop the connection before sending any of its reply.
    reply_lost_rate: float = 0.0
    #: Run the endpoint, then hold its reply back for ``stall_seconds``.
    reply_stall_rate: float = 0.0
    #: Seed of the deterministic draws.
    seed: int = 0

    def __post_init__(self) -> None:
        total = 0.0
        for kind in FAULT_KINDS:
            rate = getattr(self, f"{kind}_rate")
            total += check_number(rate, f"{kind}_rate", 0, 1, "a share (0 to 1)")
        if total > 1.0 + 1e-9:
            invalid(f"fault rates add up to {total:.3f}, more than 1")
        low, high = self.latency if isinstance(self.latency, tuple) else (self.latency,) * 2
        check_seconds(low, "latency", allow_zero=True)
        check_seconds(high, "latency", allow_zero=True)
        if low > high:
            invalid("latency must be seconds >= 0, or (low, high) with low <= high")
        check_seconds(self.stall_seconds, "stall_seconds", allow_zero=True)
        check_int(self.oversize_bytes, "oversize_bytes", 1)
        if not self.server_error_statuses or any(
            not 500 <= status <= 599 for status in self.server_error_statuses
        ):
            invalid("server_error_statuses must be 5xx codes")

    def pick(self, draw: float) -> str | None:
        """The fault a draw in ``[0, 1)`` selects, or ``None``."""
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self, f"{kind}_rate")
            if draw < edge:
                return kind
        return None


#: A fault to strike after the endpoint ran: its kind, and the settings it was drawn from.
Late = tuple[str, Faults]


def _draw(*parts: object) -> float:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class FaultInjector:
    """Applies :class:`Faults` to the fake server's requests; counts what it injected."""

    def __init__(self) -> None:
        self.by_path: dict[str, Faults] = {}
        self.default: Faults | None = None
        #: Faults injected so far, by kind (the server shares this dict as ``stats.faults``).
        self.injected: dict[str, int] = {}
        #: Faults still to inject, by path (``None``: the default), for ``inject_faults(times=)``.
        self.left: dict[str | None, int] = {}
        self._seen: dict[tuple[str, bytes], int] = {}
        self._closing = asyncio.Event()

    @property
    def active(self) -> bool:
        return self.default is not None or bool(self.by_path)

    def clear(self) -> None:
        self.by_path.clear()
        self.default = None
        self.left.clear()
        self._seen.clear()

    def _count(self, path: str) -> None:
        """One fault injected into ``path``: stop injecting where its ``times`` are used up."""
        key = path if path in self.by_path else None
        left = self.left.get(key)
        if left is None:
            return
        if left > 1:
            self.left[key] = left - 1
            return
        del self.left[key]
        if key is None:
            self.default = None
        else:
            del self.by_path[key]

    def release_stalls(self) -> None:
        """End every stall now (the server is shutting down)."""
        self._closing.set()

    async def before(self, request: web.Request) -> tuple[web.StreamResponse | None, Late | None]:
        """Delay; answer instead of the endpoint when a pre-endpoint fault is drawn.

        Returns ``(early_reply, late_fault)``: the reply to send without running the endpoint,
        or the fault (one of :data:`APPLIED_KINDS`, with its settings) for :meth:`after` to
        apply to its reply.
        """
        faults = self.by_path.get(request.path, self.default)
        if faults is None:
            return None, None
        body = await request.read()
        key = (request.path, body)
        n = self._seen[key] = self._seen.get(key, 0) + 1
        draw = _draw(faults.seed, request.path, body, n)
        kind = faults.pick(draw)
        await self._delay(faults, _draw(faults.seed, "latency", request.path, body, n))
        if kind is None:
            return None, None
        self.injected[kind] = self.injected.get(kind, 0) + 1
        self._count(request.path)
        if kind == "server_error":
            statuses = faults.server_error_statuses
            status = statuses[int(_draw(faults.seed, "status", body, n) * len(statuses))]
            headers = (
                {"Retry-After": faults.retry_after} if status == 503 and faults.retry_after else {}
            )
            return web.Response(
                status=status, text=f"upstream error {status}", headers=headers
            ), None
        if kind == "rate_limit":
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            reply = web.json_response(
                {"status": "error", "error_description": "too many requests"},
                status=429,
                headers=headers,
            )
            return reply, None
        if kind == "stall":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), faults.stall_seconds)
            return None, None  # answer late, for real; the client has normally given up by now
        if kind == "non_json":
            html = "<html><body>Bad Gateway</body></html>"
            return web.Response(status=200, text=html, content_type="text/html"), None
        if kind == "wrong_shape":
            return web.json_response({"result": [1, 2, 3], "status": {"nested": True}}), None
        if kind == "oversize":
            return await _oversize(request, faults), None
        return None, (kind, faults)  # one of APPLIED_KINDS: strikes after the endpoint ran

    async def after(
        self, request: web.Request, response: web.StreamResponse, late: Late
    ) -> web.StreamResponse:
        """Damage the endpoint's reply with a late fault (see :data:`APPLIED_KINDS`)."""
        if not isinstance(response, web.Response):
            return response
        kind, faults = late
        if kind == "reply_stall":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), faults.stall_seconds)
            return response  # answer late, for real; the client has normally given up by now
        if kind == "reply_lost":
            transport = request.transport
            if transport is not None:
                transport.close()
            return response  # nothing reaches the client: the connection is gone
        body = response.body if isinstance(response.body, bytes) else b""
        if kind == "truncated":
            return web.Response(
                body=body[: len(body) // 2], status=response.status, content_type="application/json"
            )
        # reset: promise the whole body, send half, then drop the connection.
        damaged = web.StreamResponse(status=response.status)
        damaged.content_type = "application/json"
        damaged.content_length = len(body)
        await damaged.prepare(request)
        await damaged.write(body[: len(body) // 2])
        transport = request.transport
        if transport is not None:
            transport.close()
        return damaged

    async def _delay(self, faults: Faults, draw: float) -> None:
        low, high = faults.latency if isinstance(faults.latency, tuple) else (faults.latency,) * 2
        seconds = low + (high - low) * draw
        if seconds > 0:
            await asyncio.sleep(seconds)  # short: the server's shutdown grace period covers it


async def _oversize(request: web.Request, faults: Faults) -> web.StreamResponse:
    filler = b'{"status":"ok","padding":"' + b"x" * faults.oversize_bytes + b'"}'
    if not faults.oversize_chunked:
        return web.Response(body=filler, content_type="application/json")
    response = web.StreamResponse()
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(filler), 64 * 1024):
        try:
            await response.write(filler[start : start + 64 * 1024])
        except (ConnectionError, RuntimeError):
            break  # the client stopped reading, as it should
    return response
