"""JSON values: what the store turns Python values into, and that JSON round-trips on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.store import Store, jsonable


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2025, 4, 1), "2025-04-01"),
        (datetime(2025, 4, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))), "2025-04-01T10:00:00Z"),
        ((1, "a"), [1, "a"]),
        ({"b", "a"}, ["a", "b"]),
        (Decimal("3"), 3),
        (Decimal("2.5"), 2.5),
        ({1: date(2025, 1, 2)}, {"1": "2025-01-02"}),
        ("a\x00b", "a\ufffdb"),
        ([None, True, 1.5], [None, True, 1.5]),
    ],
)
def test_jsonable(value: Any, expected: Any) -> None:
    assert jsonable(value) == expected


def test_jsonable_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match="cannot store a object"):
        jsonable(object())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _round_trip(store: Store, value: Any) -> Any:
    with store.session() as tx:
        if tx.load("r") is None:
            tx.create_record("ticket", "r")
        tx.set_shadow("r", "f", "s", value, datetime(2025, 1, 1, tzinfo=UTC))
        known, got = tx.shadow("r", "f", "s")
    assert known
    return got


# numbers a JSON column can mangle: SQLite NUMERIC affinity (1.0 -> 1), JSONB normalising (1e16 -> int)
@pytest.mark.parametrize(
    "value", [1.0, -0.0, 1e16, 3.114359931421257e16, 2**70, 1e-300, "1.0", [1.0, {"a": 2.0}]]
)
def test_numbers_keep_their_type(store: Store, value: Any) -> None:
    assert repr(_round_trip(store, value)) == repr(value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON)
def test_json_values_round_trip(store: Store, value: Any) -> None:
    # repr: equal is not enough, 1 == 1.0 would hide a float coming back an int
    assert repr(_round_trip(store, value)) == repr(jsonable(value))
