"""Every argument check of the SDK, run before anything is sent. One rule:

- the wrong **type** raises :class:`~freedompay_async.errors.ArgumentTypeError` (a ``TypeError``);
- the right type with a **value** that can never work raises
  :class:`~freedompay_async.errors.InvalidArgumentError` (a ``ValueError``).

Both are ``FreedomPayError``: a batch reports a refused item on that item. ``bool`` is never
taken for a number. Pure functions; each returns the value in the form the caller wants (e.g. a
``UUID`` for a ``request_id`` string, a ``float`` for seconds)::

    >>> check_seconds(2, "timeout")
    2.0
    >>> check_seconds(0, "timeout")
    Traceback (most recent call last):
    ...
    freedompay_async.errors.InvalidArgumentError: timeout must be positive and finite, not 0
    >>> check_int(True, "max_connections", 1)
    Traceback (most recent call last):
    ...
    freedompay_async.errors.ArgumentTypeError: max_connections must be an int, not bool
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import AsyncIterable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, NoReturn, TypeVar

from ._config import MAX_IDENTIFIER_LENGTH, MAX_REASON_LENGTH
from .errors import ArgumentTypeError, InvalidArgumentError

_ALPHA3: Final = re.compile(r"[A-Z]{3}\Z")
#: Nesting allowed in owner identification values (an address object holding a list, ...).
_MAX_OWNER_DEPTH: Final = 4

T = TypeVar("T")


def wrong_type(name: str, expected: str, value: object) -> NoReturn:
    """Raise the :class:`ArgumentTypeError` for ``name``: ``expected``, not ``value``'s type."""
    raise ArgumentTypeError(f"{name} must be {expected}, not {type(value).__name__}")


def invalid(message: str) -> NoReturn:
    """Raise an :class:`InvalidArgumentError` (the right type, a value that cannot work)."""
    raise InvalidArgumentError(message)


def check_identifier(identifier: object, name: str = "identifier") -> str:
    """Validate a partner-side wallet identifier before anything is sent."""
    if not isinstance(identifier, str):
        wrong_type(name, "a str", identifier)
    if not identifier or identifier.isspace():
        raise InvalidArgumentError(f"{name} must not be empty")
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise InvalidArgumentError(
            f"{name} is {len(identifier)} characters long; at most {MAX_IDENTIFIER_LENGTH} allowed"
        )
    if not identifier.isprintable():
        raise InvalidArgumentError(f"{name} must not contain control characters")
    return identifier


def check_request_id(request_id: object, name: str = "request_id") -> uuid.UUID:
    """A :class:`uuid.UUID`, or a string holding one, as a ``UUID``."""
    if isinstance(request_id, uuid.UUID):
        return request_id
    if not isinstance(request_id, str):
        wrong_type(name, "a UUID or a UUID string", request_id)
    try:
        return uuid.UUID(request_id)
    except ValueError:
        invalid(f"{name} must be a UUID, not {request_id!r}")


def request_id_or_new(request_id: object) -> uuid.UUID:
    """The caller's ``request_id`` (checked), or a fresh random UUID4 when it is ``None``."""
    return uuid.uuid4() if request_id is None else check_request_id(request_id)


def _check_alpha3(value: object, name: str, example: str, standard: str) -> str:
    if not isinstance(value, str):
        wrong_type(name, "a str", value)
    if not _ALPHA3.match(value):
        hint = f"; did you mean {value.upper()!r}?" if _ALPHA3.match(value.upper()) else ""
        raise InvalidArgumentError(
            f"{name} must be an {standard} code of 3 uppercase letters like {example!r},"
            f" not {value!r}{hint}"
        )
    return value


def check_country(country: object) -> str:
    """An ISO 3166-1 alpha-3 country code (``"KAZ"``); only the form is checked."""
    return _check_alpha3(country, "country", "KAZ", "ISO 3166-1 alpha-3")


def check_currency(currency: object) -> str:
    """An ISO 4217 alphabetic currency code (``"KZT"``); only the form is checked."""
    return _check_alpha3(currency, "currency", "KZT", "ISO 4217")


def check_reason(reason: object) -> str:
    """A block / close reason: a non-blank str of at most ``MAX_REASON_LENGTH`` characters."""
    if not isinstance(reason, str):
        wrong_type("reason", "a str", reason)
    if not reason.strip():
        invalid("reason must not be empty: say why (it is stored with the wallet)")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidArgumentError(
            f"reason is {len(reason)} characters long; at most {MAX_REASON_LENGTH} allowed"
        )
    return reason


def check_aware(value: object, name: str) -> datetime | None:
    """``None``, or a timezone-aware :class:`datetime`."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        wrong_type(name, "a datetime with a timezone", value)
    if value.utcoffset() is None:
        raise InvalidArgumentError(
            f"{name} must be timezone-aware (e.g. datetime(..., tzinfo=timezone.utc)),"
            f" not naive {value.isoformat()!r}"
        )
    return value


def check_period(start: object, end: object) -> tuple[datetime | None, datetime | None]:
    """Statement bounds: aware datetimes (or ``None``), ``start`` not after ``end``."""
    start_at = check_aware(start, "start")
    end_at = check_aware(end, "end")
    if start_at is not None and end_at is not None and start_at > end_at:
        raise InvalidArgumentError(
            f"start ({start_at.isoformat()}) is after end ({end_at.isoformat()});"
            " the period would be empty"
        )
    return start_at, end_at


def check_optional_seconds(value: object, name: str) -> float | None:
    """``None`` (no limit), or a positive, finite number of seconds."""
    return None if value is None else check_seconds(value, name)


def check_seconds(value: object, name: str, *, allow_zero: bool = False) -> float:
    """A positive (with ``allow_zero``, non-negative), finite number of seconds."""
    return check_positive_number(value, name, "a number of seconds", allow_zero=allow_zero)


def check_number(
    value: object, name: str, low: float, high: float, what: str = "a number"
) -> float:
    """A real number (``int`` or ``float``, not ``bool``) from ``low`` to ``high`` inclusive, as
    a ``float``; ``what`` names the expected type in the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        wrong_type(name, what, value)
    if not low <= value <= high:  # NaN fails this too
        invalid(f"{name} must be between {low:g} and {high:g}, not {value}")
    return float(value)


def check_positive_number(
    value: object, name: str, what: str = "a number", *, allow_zero: bool = False
) -> float:
    """A positive (with ``allow_zero``, non-negative), finite number (``int`` or ``float``, not
    ``bool``), as a ``float``; ``what`` names the expected type in the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        wrong_type(name, what, value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        invalid(f"{name} must be {'>= 0' if allow_zero else 'positive'} and finite, not {value!r}")
    return float(value)


def check_int(
    value: object, name: str, low: int, high: int | None = None, *, expected: str = "an int"
) -> int:
    """A real ``int`` (not a ``bool``) from ``low`` to ``high`` (no upper bound if ``None``);
    ``expected`` names what is accepted in the type error (e.g. ``'an int or "auto"'``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        wrong_type(name, expected, value)
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidArgumentError(f"{name} must be {bounds}, not {value}")
    return value


def check_flag(value: object, name: str) -> bool:
    """A real ``bool`` (so that ``wait="no"`` is not silently true)."""
    if not isinstance(value, bool):
        wrong_type(name, "True or False", value)
    return value


def check_owner_fields(fields: Mapping[str, object]) -> dict[str, Any]:
    """Owner identification fields: at least one, each a JSON-friendly, non-float value.

    Allowed values: ``str`` (non-blank), ``int``, ``bool``, finite ``Decimal``, ``date``,
    aware ``datetime``, and mappings / lists / tuples of these (nested a few levels at most).
    Money and numbers with a fraction must be ``Decimal`` or ``str``, never ``float``.
    """
    if not fields:
        raise InvalidArgumentError("identify_owner needs the owner's fields as keyword arguments")
    return {name: _owner_value(value, name, 0) for name, value in fields.items()}


def _owner_value(value: object, path: str, depth: int) -> Any:
    if depth > _MAX_OWNER_DEPTH:
        raise InvalidArgumentError(
            f"{path} is nested too deeply (at most {_MAX_OWNER_DEPTH} levels)"
        )
    if value is None:
        raise InvalidArgumentError(f"{path} is None: leave the field out instead")
    if isinstance(value, str):
        if not value.strip():
            raise InvalidArgumentError(f"{path} must not be empty")
        return value
    if isinstance(value, (bool, int, date, uuid.UUID)):
        if isinstance(value, datetime):
            check_aware(value, path)
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidArgumentError(f"{path} must be a finite Decimal, not {value}")
        return value
    if isinstance(value, float):
        raise ArgumentTypeError(
            f"{path} is a float; pass a Decimal or a str (floats are not exact)"
        )
    if isinstance(value, Mapping):
        nested: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ArgumentTypeError(f"{path} keys must be non-empty str, not {key!r}")
            nested[key] = _owner_value(item, f"{path}.{key}", depth + 1)
        return nested
    if isinstance(value, (list, tuple)):
        return [_owner_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise ArgumentTypeError(f"{path} has an unsupported type {type(value).__name__}")


def check_instance(value: object, cls: type[T], name: str, expected: str) -> T:
    """``value`` if it is an instance of ``cls``; else :class:`ArgumentTypeError` naming
    ``expected`` (e.g. ``"an ssl.SSLContext"``)."""
    if not isinstance(value, cls):
        wrong_type(name, expected, value)
    return value


def check_callable(value: object, name: str) -> None:
    """Something to call (a function, a bound method, ...)."""
    if not callable(value):
        wrong_type(name, "callable", value)


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    """One of ``choices`` (a str; the message lists them)."""
    allowed = sorted(choices)
    if not isinstance(value, str):
        wrong_type(name, f"one of {allowed}", value)
    if value not in allowed:
        invalid(f"{name} must be one of {allowed}, not {value!r}")
    return value


def check_header_value(name: str, value: object) -> str:
    """A str that can go in a header or a signature: no surrounding whitespace, no control
    characters (CR, LF, NUL, ...). The message names the option, never the value (it may be a
    secret)."""
    if not isinstance(value, str):
        wrong_type(name, "a str", value)
    if value != value.strip():
        invalid(f"{name} must not start or end with whitespace")
    if not value.isprintable():
        invalid(f"{name} must not contain control characters (CR, LF, NUL, ...)")
    return value


def check_credential(name: str, value: object) -> str:
    """``auth_id`` / ``secret_key``: a non-empty header-safe str (never echoed)."""
    if not isinstance(value, str):
        wrong_type(name, "a str", value)
    if not value.strip():
        invalid(f"{name} must not be empty")
    return check_header_value(name, value)


def check_items(items: object, name: str = "items") -> Iterable[Any] | AsyncIterable[Any]:
    """An iterable or async iterable of items (a single ``str`` / ``bytes`` is refused: it is
    almost always a mistake for a list of one)."""
    if isinstance(items, (str, bytes, bytearray)):
        raise ArgumentTypeError(
            f"{name} must be an iterable of items, not a single {type(items).__name__}"
        )
    if not isinstance(items, (Iterable, AsyncIterable)):
        wrong_type(name, "an iterable or async iterable", items)
    return items


def check_exception_types(catch: object, name: str = "catch") -> tuple[type[Exception], ...]:
    """An :class:`Exception` subclass, or a non-empty tuple of them, as a tuple
    (``BaseException`` such as cancellation is never caught)."""
    types = catch if isinstance(catch, tuple) else (catch,)
    if not types:
        invalid(f"{name} must name at least one exception class")
    for cls in types:
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise ArgumentTypeError(
                f"{name} must be an Exception subclass or a tuple of them "
                f"(BaseException such as cancellation is never caught), not {cls!r}"
            )
    return types
