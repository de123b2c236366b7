"""The one rule for refused arguments (freedompay_async._validate): the wrong type is an
``ArgumentTypeError`` (a ``TypeError``), the right type with a value that cannot work an
``InvalidArgumentError`` (a ``ValueError``); both are ``FreedomPayError`` and neither is the other.
"""

from __future__ import annotations

import ast
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freedompay_async import (
    ArgumentTypeError,
    FreedomPayError,
    InvalidArgumentError,
    RetryPolicy,
    Timeout,
)
from freedompay_async import _validate as v
from freedompay_async.testing import Faults

PACKAGE = Path(__file__).resolve().parent.parent / "freedompay_async"


def assert_type_error(call: Callable[[], object]) -> ArgumentTypeError:
    with pytest.raises(ArgumentTypeError) as caught:
        call()
    error = caught.value
    assert isinstance(error, TypeError) and isinstance(error, FreedomPayError)
    assert not isinstance(error, ValueError)
    return error


def assert_value_error(call: Callable[[], object]) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as caught:
        call()
    error = caught.value
    assert isinstance(error, ValueError) and isinstance(error, FreedomPayError)
    assert not isinstance(error, TypeError)
    return error


NOT_NUMBERS = st.one_of(
    st.none(), st.booleans(), st.text(max_size=5), st.binary(max_size=5), st.lists(st.integers())
)


@given(NOT_NUMBERS)
def test_seconds_of_the_wrong_type_are_a_type_error(value: object) -> None:
    if value is None:
        assert v.check_optional_seconds(value, "timeout") is None
        return
    error = assert_type_error(lambda: v.check_seconds(value, "timeout"))
    assert str(error).startswith("timeout must be a number of seconds, not ")


@given(st.one_of(st.floats(max_value=0), st.integers(max_value=0), st.just(math.inf)))
def test_seconds_that_cannot_work_are_a_value_error(value: float) -> None:
    if value == 0:
        assert v.check_seconds(value, "grace", allow_zero=True) == 0.0
    assert_value_error(lambda: v.check_seconds(value, "timeout"))


@given(st.floats(min_value=1e-9, max_value=1e9) | st.integers(min_value=1, max_value=10**9))
def test_good_seconds_come_back_as_float(value: float) -> None:
    result = v.check_seconds(value, "timeout")
    assert isinstance(result, float) and result == value


@given(st.integers() | st.booleans() | st.floats(allow_nan=True))
def test_int_bounds(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        assert_type_error(lambda: v.check_int(value, "max_connections", 1, 100))
    elif 1 <= value <= 100:
        assert v.check_int(value, "max_connections", 1, 100) == value
    else:
        error = assert_value_error(lambda: v.check_int(value, "max_connections", 1, 100))
        assert "between 1 and 100" in str(error)


@pytest.mark.parametrize("value", [math.nan, -0.1, 1.5, math.inf])
def test_share_out_of_range(value: float) -> None:
    assert_value_error(lambda: v.check_number(value, "retry_budget", 0, 1, "a share"))


def test_identifier_rules() -> None:
    assert_type_error(lambda: v.check_identifier(42))
    assert_type_error(lambda: v.check_identifier(b"user-1"))
    for bad in ["", "   ", "x" * 1000, "a\nb", "a\x00b"]:
        assert_value_error(lambda bad=bad: v.check_identifier(bad))
    assert v.check_identifier("user-42") == "user-42"


def test_other_checks_follow_the_rule() -> None:
    assert_type_error(lambda: v.check_request_id(12))
    assert_value_error(lambda: v.check_request_id("not-a-uuid"))
    rid = uuid.uuid4()
    assert v.check_request_id(str(rid)) == rid
    assert_type_error(lambda: v.check_country(None))
    assert "did you mean 'KAZ'" in str(assert_value_error(lambda: v.check_country("kaz")))
    assert_type_error(lambda: v.check_reason(1))
    assert_value_error(lambda: v.check_reason("  "))
    assert_type_error(lambda: v.check_aware("2024-01-01", "start"))
    assert_value_error(lambda: v.check_aware(datetime(2024, 1, 1), "start"))
    later = datetime(2024, 2, 1, tzinfo=timezone.utc)
    assert_value_error(lambda: v.check_period(later, datetime(2024, 1, 1, tzinfo=timezone.utc)))
    assert_type_error(lambda: v.check_flag("no", "wait"))
    assert_type_error(lambda: v.check_choice(256, "algorithm", ["HS256"]))
    assert_value_error(lambda: v.check_choice("RS256", "algorithm", ["HS256"]))
    assert_type_error(lambda: v.check_callable(3, "on_progress"))
    assert_type_error(lambda: v.check_items("user-1"))
    assert_type_error(lambda: v.check_items(42))
    assert_value_error(lambda: v.check_exception_types(()))
    assert_type_error(lambda: v.check_exception_types(BaseException))
    assert_type_error(lambda: v.check_owner_fields({"income": 1.5}))
    assert_value_error(lambda: v.check_owner_fields({"name": None}))
    assert v.check_owner_fields({"income": Decimal("1.5")}) == {"income": Decimal("1.5")}


@pytest.mark.parametrize("value", ["s3cr3t-v4lue\n", " s3cr3t-v4lue", "s3cr3t\x00v4lue"])
def test_header_values_are_refused_without_echoing_them(value: str) -> None:
    error = assert_value_error(lambda: v.check_credential("secret_key", value))
    assert "s3cr3t" not in str(error) and "v4lue" not in str(error)
    assert "secret_key" in str(error)
    assert_type_error(lambda: v.check_credential("secret_key", b"secret"))
    assert_value_error(lambda: v.check_credential("secret_key", ""))


def test_public_value_objects_follow_the_rule() -> None:
    assert_type_error(lambda: RetryPolicy(max_attempts="3"))  # type: ignore[arg-type]
    assert_value_error(lambda: RetryPolicy(max_attempts=0))
    assert_type_error(lambda: RetryPolicy(resend_mutations=1))  # type: ignore[arg-type]
    assert_value_error(lambda: RetryPolicy(backoff=-1))
    assert_type_error(lambda: Timeout(total="10"))  # type: ignore[arg-type]
    assert_value_error(lambda: Timeout(connect=0))
    assert_type_error(lambda: Timeout.coerce("10"))  # type: ignore[arg-type]
    assert_value_error(lambda: Timeout.coerce(-5))
    assert_type_error(lambda: Faults(server_error_rate="0.5"))  # type: ignore[arg-type]
    assert_value_error(lambda: Faults(server_error_rate=1.5))


def test_argument_checks_live_in_one_module() -> None:
    """No hand-written ``raise TypeError`` / ``raise ValueError`` for an argument outside
    ``_validate.py``: checks call it, so every refusal follows the one rule. The few raises
    left elsewhere are not argument checks, and are listed here with why."""
    not_argument_checks = {
        # a malformed signature or base64 text found while verifying (the fake server's side)
        ("_jws.py", "ValueError"),
        # the producer's input stream yields a non-str: the run stops (it is not an argument)
        ("distributed/_producer.py", "TypeError"),
        # an internal invariant: a mutation's reply decoded without the request_id it echoes
        ("_protocol.py", "ValueError"),
        # a run id already in use in Redis: a state conflict found at run time
        ("distributed/_sink.py", "ValueError"),
        # the fake's complete(): the request already finished (a state conflict)
        ("testing/_state.py", "ValueError"),
    }
    found = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "_validate.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(raised, ast.Name) and raised.id in ("TypeError", "ValueError"):
                    found.add((relative, raised.id))
    assert found <= not_argument_checks, sorted(found - not_argument_checks)
