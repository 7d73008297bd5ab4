"""Typed fields: parse and coerce values from strings and vendor formats, validate, compare.

Types and their canonical values (what :func:`coerce` returns):

=================  ==========================================================================================
``text``           ``str``, as given (numbers and booleans become their text; lists and objects are refused)
``select``         one declared option, spelled as declared; ``None`` when blank
``multi_select``   ``list[str]`` of declared options, in the order the field declares them; ``[]`` when blank
``number``         ``int`` when integral, else a finite ``float``
``boolean``        ``bool``; ``None`` when blank
``date``           ``datetime.date``; ``None`` when blank
=================  ==========================================================================================

``None`` is always blank and stays ``None``. A blank string (empty or whitespace) is blank too, except for
``text`` (where it is the empty text) and ``multi_select`` (where it is the empty selection ``[]``).

Vendor formats read as-is: HubSpot multi-checkboxes ``"a;b"``, ``"true"``/``"false"`` strings, dates as epoch
milliseconds (number or digits) or ``YYYY-MM-DD``, numbers as strings; Salesforce multipicklists ``"a;b"``,
dates ``YYYY-MM-DD``, datetimes ``2026-11-02T09:15:00.000+0000`` (taken as their UTC date), JSON booleans;
comma-separated option names (Pipedrive, forms). Options match case-insensitively, ignoring surrounding and
repeated whitespace, and through the field's aliases.

Every rejection raises :class:`~bridge.errors.FieldValueError` naming the field, the value and why (for
selects, the allowed options and the closest one).
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.errors import FieldValueError

FIELD_TYPES = ("select", "multi_select", "text", "number", "boolean", "date")
_TRUE = frozenset({"true", "t", "yes", "y", "1", "on", "checked"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off", "unchecked"})
# US thousands separators only: "1,5" is refused rather than read as 15
_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
_EPOCH_MS = re.compile(r"^-?\d{9,}$")
_ISO_BASIC = re.compile(r"^\d{8}$")
_FLOAT_MAX = Decimal(sys.float_info.max)  # exact
_SHOWN = 80  # longest value quoted in an error message


def _key(text: str) -> str:
    """The spelling options are matched by: case-folded, whitespace trimmed and collapsed."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class FieldType:
    """What coercion needs to know of a field: its type, its name (for messages) and, for selects, options.

    ``aliases`` maps an option (spelled in any case) to other spellings that mean it. Construction refuses
    options that are blank or collide case-insensitively, aliases of unknown options and aliases that could
    mean two options, and ``;`` inside multi_select options (HubSpot and Salesforce separate values with it).
    """

    type: str
    options: tuple[str, ...] = ()
    aliases: Mapping[str, Sequence[str]] = field(default_factory=dict, hash=False)
    name: str = ""
    _table: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        def bad(why: str) -> FieldValueError:
            return FieldValueError(f"{_where(self)}{why}")

        if self.type not in FIELD_TYPES:
            raise bad(f"unknown field type {self.type!r}; expected one of {', '.join(FIELD_TYPES)}")
        object.__setattr__(self, "options", tuple(self.options))
        object.__setattr__(self, "aliases", {k: tuple(v) for k, v in self.aliases.items()})
        table: dict[str, str] = {}
        for opt in self.options:
            if not opt.strip():
                raise bad("blank option")
            if self.type == "multi_select" and ";" in opt:
                raise bad(f"option {opt!r} contains ';', the multi-select separator")
            if _key(opt) in table:
                raise bad(f"options {table[_key(opt)]!r} and {opt!r} differ only in case or spaces")
            table[_key(opt)] = opt
        canonical = dict(table)
        for target, names in self.aliases.items():
            found = canonical.get(_key(target))
            if found is None:
                raise bad(f"alias target {target!r} is not an option; options: {self._list()}")
            for alias in names:
                if not alias.strip():
                    raise bad(f"blank alias of {found!r}")
                if table.setdefault(_key(alias), found) != found:
                    raise bad(f"alias {alias!r} of {found!r} already means {table[_key(alias)]!r}")
        object.__setattr__(self, "_table", table)

    def lookup(self) -> Mapping[str, str]:
        """Normalised spelling (option or alias, case-folded, whitespace collapsed) -> canonical option."""
        return self._table

    def option(self, raw: Any) -> str | None:
        """The canonical option ``raw`` names (any case, or an alias), or None."""
        return self._table.get(_key(str(raw)))

    def _list(self) -> str:
        return ", ".join(self.options) if self.options else "(none declared)"


def _where(ft: FieldType) -> str:
    return f"field {ft.name!r}: " if ft.name else ""


def _shown(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _reject(ft: FieldType, raw: Any, why: str) -> FieldValueError:
    return FieldValueError(f"{_where(ft)}{_shown(raw)} {why}")


def _blank(raw: Any) -> bool:
    return isinstance(raw, str) and not raw.strip()


def _option(ft: FieldType, raw: Any, whole: Any = None) -> str:
    if isinstance(raw, Mapping | list | tuple | set | frozenset):
        raise _reject(ft, raw, f"is not a single option of this {ft.type}; options: {ft._list()}")
    found = ft.option(raw)
    if found is not None:
        return found
    text = str(raw).strip()
    close = difflib.get_close_matches(_key(text), list(ft.lookup()), n=1, cutoff=0.6)
    hint = f" (did you mean {ft.lookup()[close[0]]!r}?)" if close else ""
    inside = f" in {_shown(whole)}" if whole is not None and whole != raw else ""
    why = f"is not an option of this {ft.type}{inside}{hint}; options: {ft._list()}"
    raise _reject(ft, text, why)


def _multi(ft: FieldType, raw: Any) -> list[str]:
    chosen: set[str] = set()
    if isinstance(raw, str):
        # ';' is the vendors' separator; ',' only splits a part that is not itself an option
        for part in raw.split(";"):
            if not part.strip():
                continue
            if ft.option(part) is None and "," in part:
                chosen.update(_option(ft, p, raw) for p in part.split(",") if p.strip())
            else:
                chosen.add(_option(ft, part, raw))
    elif isinstance(raw, Mapping):
        raise _reject(ft, raw, f"is not a list of options; options: {ft._list()}")
    elif isinstance(raw, Iterable):
        chosen.update(_option(ft, item, raw) for item in raw if item is not None and not _blank(item))
    else:
        chosen.add(_option(ft, raw))
    return [opt for opt in ft.options if opt in chosen]


def _finite(ft: FieldType, raw: Any, value: float) -> int | float:
    if not math.isfinite(value):
        raise _reject(ft, raw, "is not a finite number")
    return int(value) if value.is_integer() else value


def _number(ft: FieldType, raw: Any) -> int | float:
    if isinstance(raw, bool):
        raise _reject(ft, raw, "is a boolean, not a number")
    if isinstance(raw, float):
        return _finite(ft, raw, raw)
    if isinstance(raw, int | Decimal):
        text = str(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if _GROUPED.match(text):
            text = text.replace(",", "")
        elif "," in text:
            raise _reject(ft, raw, "is not a number (decimals take '.'; ',' only between groups of 3 digits)")
    else:
        raise _reject(ft, raw, "is not a number")
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise _reject(ft, raw, "is not a number") from None
    if not dec.is_finite():
        raise _reject(ft, raw, "is not a finite number")
    if abs(dec) > _FLOAT_MAX:
        raise _reject(ft, raw, "is out of range")
    if dec == dec.to_integral_value():
        return int(dec)
    return _finite(ft, raw, float(dec))


def _boolean(ft: FieldType, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = raw.strip().casefold()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _reject(ft, raw, "is not a boolean (true/false, yes/no, 1/0)")


def _epoch_ms(ft: FieldType, raw: Any, ms: float) -> date:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).date()
    except (OverflowError, OSError, ValueError):
        raise _reject(ft, raw, "is out of range for epoch milliseconds") from None


def _date(ft: FieldType, raw: Any) -> date:
    if isinstance(raw, datetime):
        return raw.astimezone(UTC).date() if raw.tzinfo else raw.date()
    if isinstance(raw, date):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        # HubSpot: epoch milliseconds (at UTC midnight for date properties)
        if not math.isfinite(raw):
            raise _reject(ft, raw, "is not a date")
        return _epoch_ms(ft, raw, raw)
    if not isinstance(raw, str):
        raise _reject(ft, raw, "is not a date")
    text = raw.strip()
    if _EPOCH_MS.match(text):
        return _epoch_ms(ft, raw, int(text))
    try:
        if len(text) == 10 or _ISO_BASIC.match(text):
            return date.fromisoformat(text)
        # 3.11 reads "Z", "+00:00" and Salesforce's "+0000"
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise _reject(ft, raw, "is not a date (YYYY-MM-DD, ISO 8601 datetime or epoch ms)") from None
    return dt.astimezone(UTC).date() if dt.tzinfo else dt.date()


def coerce(ft: FieldType, raw: Any) -> Any:
    """Turn ``raw`` (a string, JSON value, Python value or vendor format) into the field's canonical value.

    ``None`` stays ``None``; blank strings are blank (see the module docstring). Canonical values coerce to
    themselves. Raises FieldValueError naming the field, the value and the reason.
    """
    if raw is None:
        return None
    if ft.type == "text":
        if isinstance(raw, Mapping | list | tuple | set | frozenset):
            raise _reject(ft, raw, "is not text")
        return raw if isinstance(raw, str) else str(raw)
    if ft.type == "multi_select":
        return [] if _blank(raw) else _multi(ft, raw)
    if _blank(raw):
        return None
    match ft.type:
        case "select":
            return _option(ft, raw)
        case "number":
            return _number(ft, raw)
        case "boolean":
            return _boolean(ft, raw)
        case _:
            return _date(ft, raw)


def from_json(ft: FieldType, value: Any) -> Any:
    """Read a value stored with :func:`to_json` (or any JSON a vendor sent) back to its canonical form."""
    return coerce(ft, value)


def to_json(ft: FieldType, value: Any) -> Any:
    """The canonical value as JSON: dates as ``YYYY-MM-DD``, multi-selects as lists, the rest as they are."""
    if value is None:
        return None
    if ft.type == "date":
        return value.isoformat() if isinstance(value, date) else str(value)
    if ft.type == "multi_select":
        return list(value)
    return value


def to_text(ft: FieldType, value: Any) -> str:
    """The canonical value as one string that :func:`coerce` reads back to the same value.

    Multi-selects join with ``;`` (the HubSpot/Salesforce form), booleans are ``true``/``false``, dates
    ``YYYY-MM-DD``, floats their shortest exact ``repr``; ``None`` is the empty string.
    """
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


_BLANK: tuple[Any, ...] = (None, "", [])


def equal(ft: FieldType, a: Any, b: Any) -> bool:
    """Whether two raw values mean the same for this field.

    Both are coerced first; blanks (``None``, ``""``, ``[]``) are equal to each other; numbers compare with a
    relative tolerance of 1e-12 (vendors round-trip floats through decimal text); texts compare without
    their surrounding whitespace and with ``\r\n`` as ``\n`` (vendors trim and normalise what they store,
    and bridge's own write must be known when it comes back). A value that does not coerce equals only
    itself (so ``equal`` stays reflexive and symmetric on any input).
    """
    try:
        ca, cb = coerce(ft, a), coerce(ft, b)
    except FieldValueError:
        return a is b or bool(a == b)
    if ft.type == "text":
        ca = _text_norm(ca) if isinstance(ca, str) else ca
        cb = _text_norm(cb) if isinstance(cb, str) else cb
    if ca in _BLANK or cb in _BLANK:
        return ca in _BLANK and cb in _BLANK
    if ft.type == "number":
        return math.isclose(ca, cb, rel_tol=1e-12, abs_tol=1e-9)
    return bool(ca == cb)


def _text_norm(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def adds_nothing(ft: FieldType, current: Any, value: Any) -> bool:
    """Whether :func:`merge` of a canonical ``value`` would leave a canonical ``current`` as it is.

    A fast test without coercion; False when it cannot tell (then merge decides).
    """
    if ft.type != "multi_select":
        return type(current) is type(value) and bool(current == value)
    # current must itself be canonical (declared options, in declared order; compared without hashing, so an
    # odd item is left to merge's own error) and already hold every option
    if type(current) is not list or current != [opt for opt in ft.options if opt in current]:
        return False
    return set(value) <= set(current)


def merge(ft: FieldType, current: Any, new: Any) -> Any:
    """Apply a tag mapping's value: a multi_select adds the new options to the current ones; others replace.

    Both values are coerced; the result is canonical (multi-select options in declared order).
    """
    value = coerce(ft, new)
    if ft.type != "multi_select":
        return value
    have = set(coerce(ft, current) or []) | set(value or [])
    return [opt for opt in ft.options if opt in have]
