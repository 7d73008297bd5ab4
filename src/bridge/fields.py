"""Typed fields: parse and coerce values from strings and vendor formats, validate, compare.

Types: ``select``, ``multi_select``, ``text``, ``number``, ``boolean``, ``date``. Every rejection raises
:class:`~bridge.errors.FieldValueError` saying why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.errors import FieldValueError

FIELD_TYPES = ("select", "multi_select", "text", "number", "boolean", "date")
_TRUE = {"true", "t", "yes", "y", "1", "on", "checked"}
_FALSE = {"false", "f", "no", "n", "0", "off", "unchecked", ""}
_MULTI_SPLIT = re.compile(r"\s*[;,]\s*")


@dataclass(frozen=True)
class FieldType:
    """What coercion needs to know of a field: its type and, for selects, options and aliases."""

    type: str
    options: tuple[str, ...] = ()
    aliases: Mapping[str, Sequence[str]] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise FieldValueError(f"unknown field type {self.type!r}; expected one of {', '.join(FIELD_TYPES)}")

    def lookup(self) -> dict[str, str]:
        """Case-insensitive spelling (option or alias) -> canonical option."""
        table = {opt.casefold(): opt for opt in self.options}
        for opt, names in self.aliases.items():
            for alias in names:
                table.setdefault(alias.casefold(), opt)
        return table


def _where(ft: FieldType) -> str:
    return f"field {ft.name!r}: " if ft.name else ""


def _option(ft: FieldType, raw: Any) -> str:
    text = str(raw).strip()
    found = ft.lookup().get(text.casefold())
    if found is None:
        raise FieldValueError(
            f"{_where(ft)}{text!r} is not an option of this {ft.type}; options: {', '.join(ft.options)}"
        )
    return found


def _number(ft: FieldType, raw: Any) -> int | float:
    if isinstance(raw, bool):
        raise FieldValueError(f"{_where(ft)}a boolean is not a number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise FieldValueError(f"{_where(ft)}{raw!r} is not a finite number")
        return int(raw) if raw.is_integer() and abs(raw) < 2**53 else raw
    text = str(raw).strip().replace("_", "").replace(",", "")
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise FieldValueError(f"{_where(ft)}{raw!r} is not a number") from None
    if not dec.is_finite():
        raise FieldValueError(f"{_where(ft)}{raw!r} is not a finite number")
    if dec == dec.to_integral_value():
        return int(dec)
    return float(dec)


def _boolean(ft: FieldType, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    text = str(raw).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise FieldValueError(f"{_where(ft)}{raw!r} is not a boolean (true/false, yes/no, 1/0)")


def _date(ft: FieldType, raw: Any) -> date:
    if isinstance(raw, datetime):
        return raw.astimezone(UTC).date() if raw.tzinfo else raw.date()
    if isinstance(raw, date):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        # HubSpot sends dates as epoch milliseconds at UTC midnight
        return datetime.fromtimestamp(raw / 1000, UTC).date()
    text = str(raw).strip()
    if text.isdigit() and len(text) >= 11:
        return datetime.fromtimestamp(int(text) / 1000, UTC).date()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FieldValueError(f"{_where(ft)}{raw!r} is not a date (YYYY-MM-DD)") from None
    return dt.astimezone(UTC).date() if dt.tzinfo else dt.date()


def _multi(ft: FieldType, raw: Any) -> list[str]:
    items: Iterable[Any]
    if isinstance(raw, str):
        items = [p for p in _MULTI_SPLIT.split(raw.strip()) if p]
    elif isinstance(raw, Iterable):
        items = raw
    else:
        items = [raw]
    chosen = {_option(ft, item) for item in items}
    return [opt for opt in ft.options if opt in chosen]


def coerce(ft: FieldType, raw: Any) -> Any:
    """Turn ``raw`` (a string, JSON value or vendor format) into the field's canonical value.

    ``None`` stays ``None`` (the field is blank). Raises FieldValueError naming the reason.
    """
    if raw is None:
        return None
    match ft.type:
        case "text":
            return raw if isinstance(raw, str) else str(raw)
        case "select":
            return _option(ft, raw)
        case "multi_select":
            return _multi(ft, raw)
        case "number":
            return _number(ft, raw)
        case "boolean":
            return _boolean(ft, raw)
        case "date":
            return _date(ft, raw)
    raise FieldValueError(f"{_where(ft)}unknown type {ft.type!r}")  # pragma: no cover - checked at init


def to_json(ft: FieldType, value: Any) -> Any:
    """The canonical value as JSON (dates as ISO strings, multi-selects as lists)."""
    if value is None:
        return None
    if ft.type == "date":
        return value.isoformat() if isinstance(value, date) else str(value)
    if ft.type == "multi_select":
        return list(value)
    return value


def to_text(ft: FieldType, value: Any) -> str:
    """The canonical value as a string that :func:`coerce` reads back to the same value."""
    if value is None:
        return ""
    if ft.type == "multi_select":
        return ";".join(value)
    if ft.type == "boolean":
        return "true" if value else "false"
    if ft.type == "date":
        return str(value.isoformat())
    if ft.type == "number" and isinstance(value, float):
        return repr(value)
    return str(value)


def equal(ft: FieldType, a: Any, b: Any) -> bool:
    """Whether two raw values mean the same thing for this field (blank text equals None)."""
    try:
        ca, cb = coerce(ft, a), coerce(ft, b)
    except FieldValueError:
        return False
    blank: tuple[Any, ...] = (None, "", [])
    if ca in blank and cb in blank:
        return True
    if ft.type == "number" and ca is not None and cb is not None:
        return bool(math.isclose(ca, cb, rel_tol=1e-12, abs_tol=1e-9))
    return bool(ca == cb)


def merge(ft: FieldType, current: Any, new: Any) -> Any:
    """Apply a tag mapping's value: a multi_select adds options; other types replace."""
    value = coerce(ft, new)
    if ft.type != "multi_select":
        return value
    have = set(coerce(ft, current) or []) | set(value or [])
    return [opt for opt in ft.options if opt in have]
