"""Python values to JSON-safe values, the one way the store writes JSON columns.

Dates and times inside JSON become ISO 8601 strings (``date`` as ``YYYY-MM-DD``, an aware ``datetime`` as UTC
``...Z``). The store does not know field types, so it cannot turn them back: a caller that loads a ``date``
field gets the ISO string and re-coerces it with :func:`bridge.fields.coerce` (which accepts it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from bridge.model import format_time


def jsonable(value: Any) -> Any:
    """``value`` with dates as ISO strings, tuples and sets as lists, Decimals as numbers, NUL as U+FFFD.

    Raises TypeError naming the type of a value JSON cannot hold.
    """
    if isinstance(value, str):
        # PostgreSQL cannot store NUL in text or JSON; one spelling on every backend
        return value.replace("\x00", "\ufffd")
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        return format_time(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {jsonable(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")
