"""Hypothesis against the public surface: any argument and any reply body ends in a result or
one of our typed errors (bad arguments: ValueError / TypeError before anything is sent)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from datetime import timezone
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freedompay_async import FreedomPayError
from freedompay_async.testing import FakeFreedomPay

INFO_PATH = "/v5/partner/wallet/info"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
maybe = lambda strategy: st.none() | strategy | json_values  # noqa: E731
wallets = st.fixed_dictionaries(
    {},
    optional={
        "wallet_id": maybe(st.uuids().map(str)),
        "currency": maybe(st.sampled_from(["KZT", "USD", ""])),
        "balance": maybe(st.decimals(allow_nan=True).map(str)),
        "identifiers": maybe(st.lists(st.fixed_dictionaries({"value": json_values}), max_size=2)),
        "status": maybe(st.text(max_size=10)),
    },
)
envelopes = st.fixed_dictionaries(
    {"status": st.sampled_from(["ok", "error", "", "weird"]) | json_values},
    optional={
        "wallet": wallets | json_values,
        "request_status": maybe(st.sampled_from(["0", "1", "2", 0, 1, 2, "process"])),
        "error_code": maybe(st.sampled_from(["1001", "1004", 1004, "9999"])),
        "error_description": maybe(st.text(max_size=20)),
        "dt": maybe(st.sampled_from(["2019-08-24T14:15:22Z", "2019-08-24T14:15:22", "yesterday"])),
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(msgspec.json.encode)
    | envelopes.map(msgspec.json.encode)
)


class Running:
    """One fake server and one client on a private loop, for all examples of a module.

    ``started`` counts requests the *client* started (an aiohttp trace hook): exact at the
    moment a call returns, whereas the server's own count may still be catching up with a
    request that a timed-out ``wait`` left behind.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.fake = FakeFreedomPay(wallets=3)
        self.loop.run_until_complete(self.fake.start())
        self.started = 0
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._count)
        self.client = self.fake.client(max_retries=0, trace_configs=[trace])

    async def _count(self, *_: object) -> None:
        self.started += 1

    def run(self, call: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(call)

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.fake.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    env = Running()
    try:
        yield env
    finally:
        env.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, status=st.sampled_from([200, 200, 200, 201, 400, 401, 429, 500, 503]))
def test_any_reply_body_gives_a_result_or_a_typed_error(
    running: Running, body: bytes, status: int
) -> None:
    running.fake.respond_with(INFO_PATH, body, status=status)
    try:
        info = running.run(running.client.wallets.info("user-0"))
    except FreedomPayError as error:
        assert error.endpoint == "info"
        assert error.identifier == "user-0"
    else:
        assert 200 <= status < 300
        assert info.status != "error"


arguments = (
    st.text(max_size=300)
    | st.binary(max_size=20)
    | st.integers()
    | st.none()
    | st.floats()
    | st.lists(st.text(max_size=3), max_size=2)
    | st.sampled_from(["user-0", "user-1", " user-0", "user-0\x00", "\ud800", "x" * 256, "x" * 257])
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(identifier=arguments)
def test_any_identifier_gives_a_result_or_a_clear_error(running: Running, identifier: Any) -> None:
    before = running.started
    try:
        running.run(running.client.wallets.info(identifier))
    except (ValueError, TypeError):
        assert running.started == before  # refused before any request
    except FreedomPayError:
        assert running.started == before + 1


junk = (
    st.none()
    | st.integers()
    | st.floats()
    | st.binary(max_size=5)
    | st.text(max_size=12)
    | st.lists(st.integers(), max_size=2)
    | st.datetimes()
    | st.uuids()
)
identifiers = st.sampled_from(["user-0", "user-1", "user-2", "nobody"]) | junk
request_ids = st.uuids() | st.uuids().map(str) | junk
aware = st.datetimes(timezones=st.just(timezone.utc))
codes = st.sampled_from(["KAZ", "KZT", "kaz", "KZ", "USD"]) | junk

calls = st.one_of(
    st.builds(lambda i: ("balance", (i,), {}), identifiers),
    st.builds(
        lambda i, s, e: ("statement", (i,), {"start": s, "end": e}),
        identifiers,
        st.none() | aware | junk,
        st.none() | aware | junk,
    ),
    st.builds(
        lambda c, cur, i, r: (
            "add",
            (),
            {"country": c, "currency": cur, "identifier": i, "request_id": r},
        ),
        codes,
        codes,
        st.none() | identifiers,
        st.none() | request_ids,
    ),
    st.builds(
        lambda name, i, reason, r: (name, (i, reason), {"request_id": r}),
        st.sampled_from(["block", "close"]),
        identifiers,
        st.text(max_size=20) | junk,
        st.none() | request_ids,
    ),
    st.builds(
        lambda i, fields: ("identify_owner", (i,), fields),
        identifiers,
        st.dictionaries(
            st.sampled_from(["first_name", "iin", "birth", "x-y", "1a"]), junk, max_size=3
        ),
    ),
    st.builds(lambda r: ("request_status", (r,), {}), request_ids),
    st.builds(
        lambda r, t: ("wait", (r,), {"timeout": t, "poll_interval": 0.001}),
        request_ids,
        st.sampled_from([0.01, 0.0, -1.0, None]) | junk,
    ),
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(call=calls)
def test_every_public_method_gives_a_result_or_a_clear_error(
    running: Running, call: tuple[str, tuple[Any, ...], dict[str, Any]]
) -> None:
    name, args, kwargs = call
    before = running.started
    try:
        running.run(getattr(running.client.wallets, name)(*args, **kwargs))
    except (ValueError, TypeError):
        assert running.started == before  # refused before any request
    except FreedomPayError:
        pass
