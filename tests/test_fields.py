"""Typed fields: vendor formats, rejections with their reasons, and round-trip properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import FieldValueError
from bridge.fields import FIELD_TYPES, FieldType, coerce, equal, from_json, merge, to_json, to_text
from bridge.ownership import Shadow, detect

AREA = FieldType(
    "multi_select",
    ("Billing", "Access & Security", "API"),
    {"billing": ["payments", "invoices"], "API": ["developer"]},
    "product_area",
)
SEVERITY = FieldType("select", ("Sev-1", "Sev-2", "Sev-3"), {"Sev-1": ["critical", "p1"]}, "severity")
ARR = FieldType("number", name="arr")
VIP = FieldType("boolean", name="vip")
DUE = FieldType("date", name="due")
NOTE = FieldType("text", name="note")
BY_TYPE = {"select": SEVERITY, "multi_select": AREA, "number": ARR, "boolean": VIP, "date": DUE, "text": NOTE}
NOV2 = date(2026, 11, 2)
NOV2_MS = 1793577600000  # HubSpot: 2026-11-02 at UTC midnight


@pytest.mark.parametrize(
    ("ft", "raw", "expected"),
    [
        # select: case, whitespace, aliases, blanks
        (SEVERITY, "Sev-2", "Sev-2"),
        (SEVERITY, "  sev-2 ", "Sev-2"),
        (SEVERITY, "SEV-3", "Sev-3"),
        (SEVERITY, "Critical", "Sev-1"),
        (SEVERITY, "P1", "Sev-1"),
        (SEVERITY, "", None),
        (SEVERITY, "   ", None),
        (SEVERITY, None, None),
        # multi_select: HubSpot multi-checkbox and Salesforce multipicklist "a;b", names with commas, lists
        (AREA, "Billing;API", ["Billing", "API"]),
        (AREA, "API;Billing", ["Billing", "API"]),
        (AREA, "api ; access & security", ["Access & Security", "API"]),
        (AREA, "API, payments", ["Billing", "API"]),
        (AREA, "developer;invoices;API", ["Billing", "API"]),
        (AREA, ["API", "Billing", "API"], ["Billing", "API"]),
        (AREA, ("access  &  SECURITY",), ["Access & Security"]),
        (AREA, "Billing", ["Billing"]),
        (AREA, ["Billing", "", None], ["Billing"]),
        (AREA, "", []),
        (AREA, ";", []),
        (AREA, [], []),
        (AREA, None, None),
        # text
        (NOTE, "hello", "hello"),
        (NOTE, "", ""),
        (NOTE, 42, "42"),
        # number: HubSpot sends numbers as strings
        (ARR, "1500", 1500),
        (ARR, "1500.00", 1500),
        (ARR, " 1234.5 ", 1234.5),
        (ARR, "1,234,567.25", 1234567.25),
        (ARR, "-3", -3),
        (ARR, "+4", 4),
        (ARR, "1e3", 1000),
        (ARR, "1_000", 1000),
        (ARR, 2.0, 2),
        (ARR, 2.5, 2.5),
        (ARR, Decimal("7.25"), 7.25),
        (ARR, 10**20, 10**20),
        (ARR, "", None),
        # boolean: HubSpot strings, Salesforce JSON booleans
        (VIP, "true", True),
        (VIP, "FALSE", False),
        (VIP, True, True),
        (VIP, False, False),
        (VIP, "yes", True),
        (VIP, "no", False),
        (VIP, 1, True),
        (VIP, 0, False),
        (VIP, "", None),
        # date: HubSpot epoch ms (number or digits) or YYYY-MM-DD; Salesforce dates and datetimes
        (DUE, NOV2_MS, NOV2),
        (DUE, str(NOV2_MS), NOV2),
        (DUE, float(NOV2_MS), NOV2),
        (DUE, -14256000000, date(1969, 7, 20)),
        (DUE, "2026-11-02", NOV2),
        (DUE, "20261102", NOV2),
        (DUE, "2026-11-02T09:15:00.000+0000", NOV2),
        (DUE, "2026-11-02T09:15:00Z", NOV2),
        (DUE, "2026-11-02T23:30:00-05:00", date(2026, 11, 3)),
        (DUE, "2026-11-02T09:15:00", NOV2),
        (DUE, datetime(2026, 11, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5))), date(2026, 11, 3)),
        (DUE, NOV2, NOV2),
        (DUE, "", None),
    ],
)
def test_coerce_reads_strings_and_vendor_formats(ft: FieldType, raw: Any, expected: Any) -> None:
    value = coerce(ft, raw)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("ft", "raw", "fragments"),
    [
        (SEVERITY, "Sev-4", ["field 'severity'", "'Sev-4'", "not an option", "options: Sev-1, Sev-2, Sev-3"]),
        (SEVERITY, "sev 2", ["'sev 2'", "did you mean 'Sev-2'?"]),
        (SEVERITY, ["Sev-1"], ["not a single option", "options: Sev-1, Sev-2, Sev-3"]),
        (AREA, "Billing;Shipping", ["field 'product_area'", "'Shipping'", "in 'Billing;Shipping'",
                                     "options: Billing, Access & Security, API"]),
        (AREA, ["API", "Bill"], ["'Bill'", "did you mean 'Billing'?"]),
        (AREA, {"API": True}, ["is not a list of options"]),
        (NOTE, ["a"], ["field 'note'", "is not text"]),
        (ARR, "abc", ["field 'arr'", "'abc' is not a number"]),
        (ARR, "1,5", ["'1,5'", "decimals take '.'"]),
        (ARR, "12,34", ["'12,34'"]),
        (ARR, True, ["is a boolean, not a number"]),
        (ARR, "NaN", ["not a finite number"]),
        (ARR, "inf", ["not a finite number"]),
        (ARR, float("inf"), ["not a finite number"]),
        (ARR, "1e400", ["out of range"]),
        (ARR, [1], ["is not a number"]),
        (VIP, "maybe", ["field 'vip'", "'maybe' is not a boolean"]),
        (VIP, 2, ["is not a boolean"]),
        (DUE, "11/02/2026", ["field 'due'", "'11/02/2026' is not a date", "YYYY-MM-DD"]),
        (DUE, "2026-13-01", ["is not a date"]),
        (DUE, "2026", ["is not a date"]),
        (DUE, True, ["is not a date"]),
        (DUE, float("nan"), ["is not a date"]),
        (DUE, "9" * 30, ["out of range"]),
    ],
)
def test_coerce_rejects_with_the_reason(ft: FieldType, raw: Any, fragments: list[str]) -> None:
    with pytest.raises(FieldValueError) as info:
        coerce(ft, raw)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_rejection_quotes_long_values_briefly() -> None:
    with pytest.raises(FieldValueError) as info:
        coerce(SEVERITY, "x" * 500)
    assert len(str(info.value)) < 250
    assert "..." in str(info.value)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("color",), "unknown field type 'color'"),
        (("select", ("Red", "red")), "differ only in case"),
        (("select", ("Red", " ")), "blank option"),
        (("multi_select", ("a;b",)), "contains ';'"),
        (("select", ("Red",), {"Blue": ["azure"]}), "alias target 'Blue' is not an option"),
        (("select", ("Red", "Blue"), {"Red": ["blue"]}), "alias 'blue' of 'Red' already means 'Blue'"),
        (("select", ("Red", "Blue"), {"Red": ["x"], "Blue": ["X"]}), "'X' of 'Blue' already means 'Red'"),
    ],
)
def test_field_type_refuses_ambiguous_declarations(args: tuple[Any, ...], fragment: str) -> None:
    with pytest.raises(FieldValueError, match=fragment):
        FieldType(*args, name="colour")  # type: ignore[misc]


def test_field_type_is_hashable_and_compares_by_declaration() -> None:
    a = FieldType("select", ["x", "y"], {"x": ["ex"]}, "f")  # type: ignore[arg-type]
    b = FieldType("select", ("x", "y"), {"x": ("ex",)}, "f")
    assert a == b
    assert {a, b} == {a}
    assert a.options == ("x", "y")


@pytest.mark.parametrize(
    ("ft", "value", "as_json", "as_text"),
    [
        (SEVERITY, "Sev-1", "Sev-1", "Sev-1"),
        (AREA, ["Billing", "API"], ["Billing", "API"], "Billing;API"),
        (AREA, [], [], ""),
        (ARR, 1500, 1500, "1500"),
        (ARR, 0.1, 0.1, "0.1"),
        (VIP, True, True, "true"),
        (VIP, False, False, "false"),
        (DUE, NOV2, "2026-11-02", "2026-11-02"),
        (NOTE, "a;b", "a;b", "a;b"),
        (SEVERITY, None, None, ""),
    ],
)
def test_to_json_and_to_text(ft: FieldType, value: Any, as_json: Any, as_text: str) -> None:
    assert to_json(ft, value) == as_json
    assert to_text(ft, value) == as_text
    assert from_json(ft, as_json) == value


@pytest.mark.parametrize(
    ("ft", "a", "b", "same"),
    [
        (ARR, "1500.00", 1500, True),
        (ARR, "0.30000000000000004", 0.3, True),
        (ARR, 1, 2, False),
        (ARR, None, 0, False),
        (AREA, "API;Billing", ["Billing", "API"], True),
        (AREA, "", None, True),
        (AREA, [], None, True),
        (AREA, "API", "Billing", False),
        (SEVERITY, "critical", "Sev-1", True),
        (SEVERITY, "", None, True),
        (SEVERITY, "Sev-1", None, False),
        (NOTE, "", None, True),
        (NOTE, "a", "A", False),
        (VIP, "true", True, True),
        (VIP, None, False, False),
        (DUE, NOV2_MS, "2026-11-02", True),
        (DUE, "2026-11-02", "2026-11-03", False),
        (SEVERITY, "nonsense", "nonsense", True),
        (SEVERITY, "nonsense", "Sev-1", False),
    ],
)
def test_equal(ft: FieldType, a: Any, b: Any, same: bool) -> None:
    assert equal(ft, a, b) is same
    assert equal(ft, b, a) is same


@pytest.mark.parametrize(
    ("ft", "current", "new", "expected"),
    [
        (AREA, ["API"], "Billing", ["Billing", "API"]),
        (AREA, None, "payments", ["Billing"]),
        (AREA, "API;Billing", ["Billing"], ["Billing", "API"]),
        (AREA, ["API"], None, ["API"]),
        (SEVERITY, "Sev-3", "critical", "Sev-1"),
        (ARR, 5, "7", 7),
    ],
)
def test_merge(ft: FieldType, current: Any, new: Any, expected: Any) -> None:
    assert merge(ft, current, new) == expected


def test_merge_rejects_a_bad_new_value() -> None:
    with pytest.raises(FieldValueError, match="'Shipping' is not an option"):
        merge(AREA, ["API"], "Shipping")


# ---------------------------------------------------------------- properties

def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


_option_text = st.text(min_size=1, max_size=12).filter(lambda s: bool(s.strip()) and ";" not in s)
_options = st.lists(_option_text, min_size=1, max_size=6, unique_by=_norm).map(tuple)
_canonical_number = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: int(f) if f.is_integer() else f),
)


@st.composite
def field_and_value(draw: st.DrawFn) -> tuple[FieldType, Any]:
    """A field of any type with a canonical value from its domain."""
    kind = draw(st.sampled_from(FIELD_TYPES))
    options = draw(_options) if kind in ("select", "multi_select") else ()
    ft = FieldType(kind, options, name="f")
    value: Any
    match kind:
        case "select":
            value = draw(st.sampled_from(options))
        case "multi_select":
            chosen = draw(st.sets(st.sampled_from(options)))
            value = [o for o in options if o in chosen]
        case "number":
            value = draw(_canonical_number)
        case "boolean":
            value = draw(st.booleans())
        case "date":
            value = draw(st.dates())
        case _:
            value = draw(st.text())
    return ft, value


_raw = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.sampled_from(["true", "No", "2026-11-02", "1,234.5", "Sev-1;API", " sev-2 ", str(NOV2_MS), "1e3"]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.datetimes(timezones=st.just(UTC)),
    st.lists(st.sampled_from(["Billing", "api", "payments", "x"]), max_size=4),
)
_fields = st.sampled_from(list(BY_TYPE.values()))


@settings(max_examples=300, deadline=None)
@given(field_and_value())
def test_round_trips_through_text_and_json(pair: tuple[FieldType, Any]) -> None:
    ft, value = pair
    via_text = coerce(ft, to_text(ft, value))
    via_json = coerce(ft, to_json(ft, value))
    assert via_text == value
    assert via_json == value
    assert type(via_text) is type(value)
    assert type(via_json) is type(value)


@settings(max_examples=300, deadline=None)
@given(_fields, _raw)
def test_coerce_is_idempotent_and_only_raises_field_value_error(ft: FieldType, raw: Any) -> None:
    try:
        once = coerce(ft, raw)
    except FieldValueError:
        return
    assert coerce(ft, once) == once
    assert equal(ft, once, raw)


@settings(max_examples=200, deadline=None)
@given(_fields, _raw, _raw)
def test_equal_is_reflexive_and_symmetric(ft: FieldType, a: Any, b: Any) -> None:
    assert equal(ft, a, a)
    assert equal(ft, a, b) == equal(ft, b, a)


@settings(max_examples=200, deadline=None)
@given(_options, st.data())
def test_multi_select_lists_options_in_declared_order(options: tuple[str, ...], data: st.DataObject) -> None:
    ft = FieldType("multi_select", options)
    picked = data.draw(st.lists(st.sampled_from(options), max_size=8))
    shuffled = data.draw(st.permutations(picked))
    expected = [o for o in options if o in set(picked)]
    assert coerce(ft, shuffled) == expected
    shouted = [o.upper() if o.upper().casefold() == o.casefold() else o for o in shuffled]
    assert coerce(ft, ";".join(shouted)) == expected


@settings(max_examples=200, deadline=None)
@given(_options, st.data())
def test_merge_adds_options_for_multi_select(options: tuple[str, ...], data: st.DataObject) -> None:
    ft = FieldType("multi_select", options)
    current = data.draw(st.lists(st.sampled_from(options)))
    new = data.draw(st.lists(st.sampled_from(options)))
    merged = merge(ft, current, new)
    assert set(merged) == set(current) | set(new)
    assert merged == [o for o in options if o in set(merged)]
    assert merge(ft, merged, new) == merged


def test_texts_compare_as_vendors_store_them_so_an_echo_is_known() -> None:
    # most vendors trim what they store and normalise line ends: bridge's own write coming back is no edit
    text = FieldType("text")
    assert equal(text, "Key account ", "Key account")
    assert equal(text, "line one\r\nline two", "line one\nline two")
    assert equal(text, "  ", "") and equal(text, "  ", None) and equal(text, "", None)
    assert not equal(text, "Key account", "Key accounts")
    assert not equal(text, "a b", "a  b")  # inside the text, every character counts
    shadow = Shadow(True, "v1", ["Key account "])
    assert detect(text, "Key account", shadow) == "echo"
