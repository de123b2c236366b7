"""Argument checks, run before anything is sent: bad input raises ``TypeError``/``ValueError``.

Pure functions; each returns the value in the form the request body wants (e.g. a ``UUID``).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from ._config import MAX_IDENTIFIER_LENGTH, MAX_REASON_LENGTH

_ALPHA3: Final = re.compile(r"[A-Z]{3}\Z")
#: Nesting allowed in owner identification values (an address object holding a list, ...).
_MAX_OWNER_DEPTH: Final = 4


def check_identifier(identifier: object, name: str = "identifier") -> str:
    """Validate a partner-side wallet identifier before anything is sent."""
    if not isinstance(identifier, str):
        raise TypeError(f"{name} must be a str, not {type(identifier).__name__}")
    if not identifier or identifier.isspace():
        raise ValueError(f"{name} must not be empty")
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(
            f"{name} is {len(identifier)} characters long; at most {MAX_IDENTIFIER_LENGTH} allowed"
        )
    if not identifier.isprintable():
        raise ValueError(f"{name} must not contain control characters")
    return identifier


def check_request_id(request_id: object, name: str = "request_id") -> uuid.UUID:
    """A :class:`uuid.UUID`, or a string holding one, as a ``UUID``."""
    if isinstance(request_id, uuid.UUID):
        return request_id
    if not isinstance(request_id, str):
        raise TypeError(f"{name} must be a UUID or a UUID string, not {type(request_id).__name__}")
    try:
        return uuid.UUID(request_id)
    except ValueError:
        raise ValueError(f"{name} must be a UUID, not {request_id!r}") from None


def request_id_or_new(request_id: object) -> uuid.UUID:
    """The caller's ``request_id`` (checked), or a fresh random UUID4 when it is ``None``."""
    return uuid.uuid4() if request_id is None else check_request_id(request_id)


def _check_alpha3(value: object, name: str, example: str, standard: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not _ALPHA3.match(value):
        hint = f"; did you mean {value.upper()!r}?" if _ALPHA3.match(value.upper()) else ""
        raise ValueError(
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
        raise TypeError(f"reason must be a str, not {type(reason).__name__}")
    if not reason.strip():
        raise ValueError("reason must not be empty: say why (it is stored with the wallet)")
    if len(reason) > MAX_REASON_LENGTH:
        raise ValueError(
            f"reason is {len(reason)} characters long; at most {MAX_REASON_LENGTH} allowed"
        )
    return reason


def check_aware(value: object, name: str) -> datetime | None:
    """``None``, or a timezone-aware :class:`datetime`."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime with a timezone, not {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(
            f"{name} must be timezone-aware (e.g. datetime(..., tzinfo=timezone.utc)),"
            f" not naive {value.isoformat()!r}"
        )
    return value


def check_period(start: object, end: object) -> tuple[datetime | None, datetime | None]:
    """Statement bounds: aware datetimes (or ``None``), ``start`` not after ``end``."""
    start_at = check_aware(start, "start")
    end_at = check_aware(end, "end")
    if start_at is not None and end_at is not None and start_at > end_at:
        raise ValueError(
            f"start ({start_at.isoformat()}) is after end ({end_at.isoformat()});"
            " the period would be empty"
        )
    return start_at, end_at


def check_optional_seconds(value: object, name: str) -> float | None:
    """``None`` (no limit), or a positive, finite number of seconds."""
    return None if value is None else check_seconds(value, name)


def check_seconds(value: object, name: str) -> float:
    """A positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


def check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    """A real ``int`` (not a ``bool``) from ``low`` to ``high`` (no upper bound if ``None``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bounds}, not {value}")
    return value


def check_flag(value: object, name: str) -> bool:
    """A real ``bool`` (so that ``wait="no"`` is not silently true)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")
    return value


def check_owner_fields(fields: Mapping[str, object]) -> dict[str, Any]:
    """Owner identification fields: at least one, each a JSON-friendly, non-float value.

    Allowed values: ``str`` (non-blank), ``int``, ``bool``, finite ``Decimal``, ``date``,
    aware ``datetime``, and mappings / lists / tuples of these (nested a few levels at most).
    Money and numbers with a fraction must be ``Decimal`` or ``str``, never ``float``.
    """
    if not fields:
        raise ValueError("identify_owner needs the owner's fields as keyword arguments")
    return {name: _owner_value(value, name, 0) for name, value in fields.items()}


def _owner_value(value: object, path: str, depth: int) -> Any:
    if depth > _MAX_OWNER_DEPTH:
        raise ValueError(f"{path} is nested too deeply (at most {_MAX_OWNER_DEPTH} levels)")
    if value is None:
        raise ValueError(f"{path} is None: leave the field out instead")
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{path} must not be empty")
        return value
    if isinstance(value, (bool, int, date, uuid.UUID)):
        if isinstance(value, datetime):
            check_aware(value, path)
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{path} must be a finite Decimal, not {value}")
        return value
    if isinstance(value, float):
        raise TypeError(f"{path} is a float; pass a Decimal or a str (floats are not exact)")
    if isinstance(value, Mapping):
        nested: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"{path} keys must be non-empty str, not {key!r}")
            nested[key] = _owner_value(item, f"{path}.{key}", depth + 1)
        return nested
    if isinstance(value, (list, tuple)):
        return [_owner_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise TypeError(f"{path} has an unsupported type {type(value).__name__}")
