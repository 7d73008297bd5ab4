"""The generated condition evaluators against the condition tree, on values of every awkward type."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import FieldValue, Record
from bridge.rules.conditions import Context, compile_condition, evaluator, regex_factors

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# values a path may hold in real data: blanks, numbers as text, lists, dates, booleans, odd tables
VALUES = st.one_of(
    st.none(),
    st.sampled_from(["high", "urgent", "low", "normal", "enterprise", "growth", "5", "2026-11-02", "",
                     "Al@X.example", "al@x.example"]),
    st.integers(-3, 120_001),
    st.floats(-5, 5, allow_nan=False),
    st.booleans(),
    st.lists(st.sampled_from(["high", "enterprise", "Billing", "a"]), max_size=3),
    st.just(T0),
    st.just(date(2026, 11, 2)),
    st.just({"odd": 1}),
)
EXPECTED = st.one_of(
    st.sampled_from(["high", "enterprise", "Billing", "5", "2026-11-01", "AL@x.example"]),
    st.integers(-3, 120_000),
    st.floats(-5, 5, allow_nan=False),
    st.booleans(),
)
PATHS = st.sampled_from(
    ["ticket.priority", "ticket.sentiment", "ticket.severity", "account.tier", "account.arr",
     "account.region", "requester.language", "ticket.text", "ticket.tags", "ticket.assignee", "account.owner"]
)
TEXTS = st.sampled_from(
    ["I want to CANCEL now", "lawyer letter", "Kelvin \u212a here", "\u0131t works", "plain", "", "csv"]
)


@st.composite
def leaf(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(PATHS)
    op = draw(st.sampled_from(["eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "contains", "matches",
                               "changed", "from", "to"]))
    if op in ("in", "not_in"):
        value: Any = draw(st.lists(EXPECTED, min_size=1, max_size=3))
    elif op in ("lt", "lte", "gt", "gte"):
        value = draw(st.one_of(st.integers(-3, 120_000), st.sampled_from(["high", "normal", "2026-11-01"])))
    elif op == "contains":
        value = draw(st.sampled_from(["cancel", "K", "it", "Billing", "x"]))
    elif op == "matches":
        value = draw(st.sampled_from([r"(?i)\b(cancel\w*|lawyer)\b", r"(?i)k", r"(?i)it", r"Kel+vin",
                                      r"\d+", r"^$", r"a|b"]))
    elif op == "changed":
        value = draw(st.booleans())
    else:
        value = draw(EXPECTED)
    if draw(st.integers(0, 6)) == 0:
        return {"tag": draw(st.sampled_from(["billing/*", "bug/sev1", "b?g/*", "*"]))}
    return {"field": path, op: value}


@st.composite
def tree(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    if depth >= 2 or draw(st.booleans()):
        return draw(leaf())
    kind = draw(st.sampled_from(["all", "any", "none"]))
    return {kind: draw(st.lists(tree(depth + 1), min_size=1, max_size=3))}


@settings(max_examples=400, deadline=None)
@given(tree(), st.dictionaries(PATHS, VALUES), TEXTS, st.lists(st.sampled_from(["billing/x", "bug/sev1"])),
       st.dictionaries(PATHS, VALUES))
def test_generated_evaluator_agrees_with_the_tree(
    cond: dict[str, Any], values: dict[str, Any], text: str, tags: list[str], previous: dict[str, Any]
) -> None:
    attrs: dict[str, Any] = {"subject": text, "account": {"fields": {}}, "requester": {}}
    fields: dict[str, FieldValue] = {}
    for path, value in values.items():
        root, _, name = path.partition(".")
        if name in ("text", "tags"):
            continue
        if root == "ticket" and name == "severity":
            fields[name] = FieldValue(value, "test", T0)
        elif root == "ticket":
            attrs[name] = value
        elif name == "region":
            attrs[root]["fields"][name] = value
        else:
            attrs[root][name] = value
    record = Record("T-1", "ticket", fields=fields, tags=tags, attrs=attrs)
    compiled = compile_condition(cond)
    try:
        want: Any = compiled.evaluate(Context(record, previous))
    except TypeError as exc:  # an unhashable value in a priority test fails the same way in both
        want = type(exc)
    try:
        got: Any = evaluator(compiled)(Context(record, previous))
    except TypeError as exc:
        got = type(exc)
    assert got == want


def test_regex_factors_are_literals_every_match_contains() -> None:
    assert regex_factors(r"(?i)\b(invoice|lawyer|cancel\w*)\b") == (("cancel", "invoice", "lawyer"), True)
    assert regex_factors(r"charged\s+twice") == (("charged",), False)
    assert regex_factors(r"\d+") is None  # nothing literal: the regex always runs
    assert regex_factors(r"a?b*") is None  # optional parts are never required
    assert regex_factors(r"(?i)\u212a") is None  # a non-ASCII literal under (?i): no substring shortcut
    # case-folded matching of non-ASCII text still reaches the regex (Kelvin sign matches k)
    fn = evaluator(compile_condition({"field": "ticket.text", "matches": "(?i)kelvin"}))
    rec = Record("T", "ticket", attrs={"subject": "\u212aelvin"})
    assert re.search("(?i)kelvin", "\u212aelvin") and fn(Context(rec))


def test_a_condition_nested_deeper_than_python_parses_falls_back_to_the_tree() -> None:
    cond: dict[str, Any] = {"field": "ticket.priority", "eq": "high"}
    for depth in range(400):
        cond = {("all" if depth % 2 else "any"): [cond, {"tag": f"t{depth}"}]}
    compiled = compile_condition(cond)
    every = Record("T", "ticket", tags=[f"t{n}" for n in range(400)], attrs={"priority": "low"})
    fewer = Record("T", "ticket", tags=[f"t{n}" for n in range(399)], attrs={"priority": "low"})
    assert evaluator(compiled)(Context(every)) is compiled.evaluate(Context(every)) is True
    assert evaluator(compiled)(Context(fewer)) is compiled.evaluate(Context(fewer)) is False
