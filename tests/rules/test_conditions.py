from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import FieldValue, Record
from bridge.rules.conditions import (
    ALWAYS,
    Context,
    compile_condition,
    evaluator,
    paths_read,
    uses_event,
    validate_condition,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def make_ticket(**attrs: Any) -> Record:
    fields = attrs.pop("fields", {})
    tags = attrs.pop("tags", [])
    base: dict[str, Any] = {
        "subject": "Refund please",
        "body": "I was charged twice on my INVOICE",
        "status": "open",
        "priority": "normal",
        "sentiment": -40,
        "created_at": T0,
        "account": {
            "id": "A-1",
            "tier": "enterprise",
            "arr": 120000,
            "owner": "alice@example.com",
            "fields": {"region": "emea"},
        },
        "requester": {"email": "ana@acme.example", "language": "fr"},
    }
    base.update(attrs)
    return Record(
        "T-1",
        "ticket",
        fields={k: FieldValue(v, "test", T0) for k, v in fields.items()},
        tags=list(tags),
        attrs=base,
    )


def holds(cond: dict[str, Any], ticket: Record | None = None, previous: dict[str, Any] | None = None) -> bool:
    compiled = compile_condition(cond)
    ctx = Context(ticket or make_ticket(), previous)
    result = compiled.evaluate(ctx)
    # the generated evaluator the engine runs must agree with the tree on every case
    assert evaluator(compiled)(Context(ctx.record, previous)) is result
    return result


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        ({"field": "account.tier", "eq": "enterprise"}, True),
        ({"field": "account.tier", "eq": "Enterprise"}, False),
        ({"field": "account.tier", "ne": "growth"}, True),
        ({"field": "account.tier", "in": ["growth", "enterprise"]}, True),
        ({"field": "account.tier", "not_in": ["growth", "enterprise"]}, False),
        ({"field": "account.arr", "gte": 100000}, True),
        ({"field": "account.arr", "gt": 120000}, False),
        ({"field": "account.arr", "lte": 120000}, True),
        ({"field": "account.arr", "lt": 120000}, False),
        ({"field": "account.region", "eq": "emea"}, True),  # an account field kept under "fields"
        ({"field": "account.missing", "lt": 5}, False),  # a blank never compares
        ({"field": "account.missing", "ne": 5}, True),
        ({"field": "account.missing", "not_in": [5]}, True),
        ({"field": "ticket.sentiment", "lte": -35}, True),
        ({"field": "ticket.sentiment", "gt": -35}, False),
        ({"field": "ticket.priority", "gte": "high"}, False),
        ({"field": "ticket.priority", "lt": "high"}, True),
        ({"field": "ticket.priority", "gte": "low"}, True),
        ({"field": "ticket.text", "contains": "invoice"}, True),
        ({"field": "ticket.text", "contains": "REFUND"}, True),
        ({"field": "ticket.text", "contains": "cancel"}, False),
        ({"field": "ticket.text", "matches": r"charged\s+twice"}, True),
        ({"field": "ticket.text", "matches": r"^charged"}, False),
        ({"field": "ticket.text", "matches": r"(?i)^refund"}, True),
        ({"field": "ticket.subject", "contains": "refund"}, True),
        ({"field": "requester.language", "eq": "fr"}, True),
        ({"field": "requester.email", "matches": r"@acme\.example$"}, True),
        ({"field": "ticket.severity", "eq": "Sev-1"}, True),  # declared field
        ({"field": "ticket.product_area", "eq": "Billing"}, True),  # list value: contains the item
        ({"field": "ticket.product_area", "eq": ["Billing", "API"]}, True),
        ({"field": "ticket.product_area", "in": ["API", "Other"]}, True),
        ({"field": "ticket.product_area", "contains": "billing"}, True),
        ({"field": "ticket.product_area", "contains": "bill"}, False),  # list contains: whole items only
        ({"field": "ticket.tags", "contains": "BILLING/REFUND"}, True),
        ({"field": "ticket.created_at", "lt": "2026-11-03T00:00:00Z"}, True),
        ({"field": "ticket.created_at", "gt": "2026-11-03T00:00:00Z"}, False),
        ({"tag": "billing/*"}, True),
        ({"tag": "billing/refund"}, True),
        ({"tag": "bug/*"}, False),
        ({"tag": "b?lling/re*"}, True),
        ({"field": "account.arr", "gte": 100000, "lt": 200000}, True),  # several operators: all must hold
        ({"field": "account.arr", "gte": 100000, "lt": 110000}, False),
    ],
)
def test_leaf_operators(leaf: dict[str, Any], expected: bool) -> None:
    ticket = make_ticket(
        fields={"severity": "Sev-1", "product_area": ["Billing", "API"]}, tags=["billing/refund"]
    )
    assert holds(leaf, ticket) is expected


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        (
            {
                "all": [
                    {"field": "account.tier", "eq": "enterprise"},
                    {"field": "ticket.sentiment", "lte": -35},
                ]
            },
            True,
        ),
        (
            {
                "all": [
                    {"field": "account.tier", "eq": "enterprise"},
                    {"field": "ticket.sentiment", "lte": -50},
                ]
            },
            False,
        ),
        ({"any": [{"tag": "bug/*"}, {"field": "ticket.text", "contains": "invoice"}]}, True),
        ({"any": [{"tag": "bug/*"}, {"field": "ticket.text", "contains": "crash"}]}, False),
        ({"none": [{"tag": "bug/*"}, {"field": "ticket.text", "contains": "crash"}]}, True),
        ({"none": [{"tag": "billing/*"}]}, False),
        (
            {
                "all": [
                    {"any": [{"tag": "x/*"}, {"none": [{"tag": "y/*"}]}]},
                    {"field": "ticket.status", "eq": "open"},
                ]
            },
            True,
        ),
        ({}, True),
    ],
)
def test_combinators(cond: dict[str, Any], expected: bool) -> None:
    assert holds(cond, make_ticket(tags=["billing/refund"])) is expected


@pytest.mark.parametrize(
    ("leaf", "previous", "expected"),
    [
        ({"field": "ticket.priority", "changed": True}, {"ticket.priority": "low"}, True),
        ({"field": "ticket.priority", "changed": True}, {"ticket.priority": "normal"}, False),
        ({"field": "ticket.priority", "changed": True}, {}, False),
        ({"field": "ticket.priority", "changed": False}, {"ticket.priority": "normal"}, True),
        ({"field": "ticket.priority", "changed": False}, {"ticket.priority": "low"}, False),
        ({"field": "ticket.status", "from": "pending"}, {"ticket.status": "pending"}, True),
        ({"field": "ticket.status", "from": "resolved"}, {"ticket.status": "pending"}, False),
        ({"field": "ticket.status", "to": "open"}, {"ticket.status": "pending"}, True),
        ({"field": "ticket.status", "to": "open"}, {"ticket.status": "open"}, False),  # no change, no "to"
        ({"field": "ticket.status", "from": "resolved", "to": "open"}, {"ticket.status": "resolved"}, True),
        ({"field": "ticket.tags", "changed": True}, {"ticket.tags": ["billing/refund"]}, False),
        ({"field": "ticket.tags", "changed": True}, {"ticket.tags": []}, True),
        # a path the snapshot leaves out was blank: set now, it changed
        ({"field": "ticket.status", "to": "open"}, {"ticket.priority": "normal"}, True),
        ({"field": "ticket.status", "changed": True}, {"ticket.priority": "normal"}, True),
        ({"field": "ticket.language", "changed": True}, {"ticket.priority": "normal"}, False),  # still blank
        ({"field": "ticket.status", "to": "open"}, {}, False),  # no earlier state at all: nothing changed
        # blank to blank ("" to null, as helpdesks clear a value either way) is no change
        ({"field": "ticket.assignee", "changed": True}, {"ticket.assignee": ""}, False),
        ({"field": "ticket.assignee", "to": ""}, {"ticket.assignee": None}, False),
        ({"field": "ticket.assignee", "changed": True}, {"ticket.assignee": "a@x.example"}, True),
    ],
)
def test_changed_from_to(leaf: dict[str, Any], previous: dict[str, Any], expected: bool) -> None:
    assert holds(leaf, make_ticket(tags=["billing/refund"]), previous) is expected


@pytest.mark.parametrize(
    ("cond", "where", "fragment"),
    [
        ({"field": "ticket.priority", "equals": "high"}, ("equals",), "unknown operator 'equals'"),
        ({"field": "ticket.text", "matches": "(unclosed"}, ("matches",), "bad regular expression"),
        ({"eq": "x"}, (), "needs field = PATH"),
        ({"field": "ticket.priority"}, (), "has no operator"),
        ({"field": "customer.name", "eq": "x"}, ("field",), "unknown path 'customer.name'"),
        ({"field": "ticket", "eq": "x"}, ("field",), "unknown path"),
        ({"field": 3, "eq": "x"}, ("field",), "path string"),
        ({"all": {"field": "ticket.priority", "eq": "x"}}, ("all",), "takes a list"),
        ({"any": []}, ("any",), "is empty"),
        ({"all": [{"field": "ticket.priority", "eq": "x"}, {"tag": 5}]}, ("all", 1, "tag"), "glob string"),
        ({"all": [{"any": [{"field": "ticket.x", "in": "a"}]}]}, ("all", 0, "any", 0, "in"), "takes a list"),
        ({"all": [{}]}, ("all", 0), "empty condition"),
        ({"all": ["oops"]}, ("all", 0), "is a table"),
        ({"all": [], "field": "ticket.x"}, (), "not both"),
        ({"tag": "x/*", "eq": 1}, (), "no other keys"),
        ({"field": "ticket.sentiment", "lte": [1]}, ("lte",), "takes a number"),
        ({"field": "ticket.sentiment", "gt": True}, ("gt",), "takes a number"),
        ({"field": "ticket.text", "contains": 5}, ("contains",), "takes a string"),
        ({"field": "ticket.status", "changed": "yes"}, ("changed",), "true or false"),
        ({"field": "ticket.status", "eq": {"a": 1}}, ("eq",), "not a table"),
    ],
)
def test_validate_condition_names_the_problem(cond: Any, where: tuple[Any, ...], fragment: str) -> None:
    problems = validate_condition(cond)
    assert any(path == where and fragment in msg for path, msg in problems), problems
    with pytest.raises(ValueError) as caught:
        compile_condition(cond)
    assert fragment in str(caught.value) or str(caught.value).endswith(problems[0][1])


def test_validate_accepts_the_config_md_examples() -> None:
    examples = [
        {"all": [{"field": "account.tier", "eq": "enterprise"}]},
        {"all": [{"field": "account.tier", "eq": "enterprise"}, {"field": "ticket.sentiment", "lte": -35}]},
        {"any": [{"tag": "billing/*"}, {"field": "ticket.text", "contains": "invoice"}]},
        {},
    ]
    for cond in examples:
        assert validate_condition(cond) == []


def test_compile_error_names_the_place() -> None:
    with pytest.raises(ValueError, match=r"rules\[2\]\.when\.any\[1\]\.matches: bad regular expression"):
        compile_condition(
            {"any": [{"tag": "a/*"}, {"field": "ticket.text", "matches": "("}]}, ("rules", 2, "when")
        )


def test_paths_read_and_uses_event() -> None:
    cond = {
        "all": [
            {"field": "account.tier", "eq": "enterprise"},
            {"any": [{"tag": "billing/*"}, {"field": "ticket.text", "contains": "invoice"}]},
            {"none": [{"field": "ticket.status", "from": "closed"}]},
        ]
    }
    assert paths_read(cond) == {"account.tier", "ticket.tags", "ticket.text", "ticket.status"}
    assert uses_event(cond)
    assert not uses_event({"all": [{"field": "ticket.status", "eq": "open"}]})
    assert paths_read({}) == set()


def test_trace_reports_every_leaf_with_its_value() -> None:
    cond = compile_condition(
        {
            "all": [
                {"field": "account.tier", "eq": "enterprise"},
                {"field": "ticket.sentiment", "lte": -50},
                {"tag": "billing/*"},
            ]
        },
        ("when",),
    )
    ticket = make_ticket(tags=["billing/refund"])
    traces = cond.trace(Context(ticket))
    assert [(t.where, t.field, t.op, t.actual, t.result) for t in traces] == [
        (("when", "all", 0, "eq"), "account.tier", "eq", "enterprise", True),
        (("when", "all", 1, "lte"), "ticket.sentiment", "lte", -40, False),
        (("when", "all", 2, "tag"), "ticket.tags", "tag", ["billing/refund"], True),
    ]
    assert cond.reasons(Context(ticket)) == ["ticket.sentiment is -40, not lte -50"]


def test_reasons_for_any_and_none() -> None:
    ctx = Context(make_ticket(tags=["bug/sev1"]))
    any_cond = compile_condition(
        {"any": [{"tag": "billing/*"}, {"field": "ticket.text", "contains": "crash"}]}
    )
    (reason,) = any_cond.reasons(ctx)
    assert reason.startswith("none of these holds:")
    assert "billing/*" in reason and "crash" in reason
    none_cond = compile_condition({"none": [{"tag": "bug/*"}]})
    assert none_cond.reasons(ctx) == ["excluded by: ticket has a tag matching 'bug/*' (tags ['bug/sev1'])"]
    assert compile_condition({}) is ALWAYS
    assert ALWAYS.reasons(ctx) == []


def test_text_is_subject_and_body() -> None:
    ctx = Context(make_ticket(subject="Login", body=None))
    assert ctx.value("ticket.text") == "Login"
    assert ctx.value("ticket.id") == "T-1"
    assert ctx.value("requester.nothing") is None
    assert Context(make_ticket(account="not a table")).value("account.tier") is None


_LEAVES: list[tuple[dict[str, Any], Any]] = [
    ({"field": "ticket.priority", "eq": "high"}, lambda t: t["priority"] == "high"),
    ({"field": "ticket.sentiment", "lt": 0}, lambda t: t["sentiment"] < 0),
    ({"tag": "billing/*"}, lambda t: any(x.startswith("billing/") for x in t["tags"])),
    ({"field": "ticket.text", "contains": "refund"}, lambda t: "refund" in t["subject"].lower()),
]


@st.composite
def _tree(draw: st.DrawFn, depth: int = 0) -> tuple[dict[str, Any], Any]:
    if depth >= 2 or draw(st.booleans()):
        return _LEAVES[draw(st.integers(0, len(_LEAVES) - 1))]
    kind = draw(st.sampled_from(["all", "any", "none"]))
    kids = draw(st.lists(_tree(depth + 1), min_size=1, max_size=3))
    fns = [f for _c, f in kids]
    ref = {
        "all": lambda t: all(f(t) for f in fns),
        "any": lambda t: any(f(t) for f in fns),
        "none": lambda t: not any(f(t) for f in fns),
    }[kind]
    return {kind: [c for c, _f in kids]}, ref


@settings(max_examples=60, deadline=None)
@given(_tree(), st.sampled_from(["low", "high"]), st.integers(-100, 100), st.booleans(), st.booleans())
def test_nested_conditions_agree_with_a_reference(
    tree: tuple[dict[str, Any], Any], priority: str, sentiment: int, billing: bool, refund: bool
) -> None:
    cond, ref = tree
    attrs = {
        "priority": priority,
        "sentiment": sentiment,
        "subject": "Refund" if refund else "Hello",
        "tags": ["billing/x"] if billing else ["bug/y"],
    }
    ticket = make_ticket(
        priority=priority, sentiment=sentiment, subject=attrs["subject"], body="", tags=attrs["tags"]
    )
    assert compile_condition(cond).evaluate(Context(ticket)) is ref(attrs)
    assert evaluator(compile_condition(cond))(Context(ticket)) is ref(attrs)


def test_path_values_holds_every_path_a_condition_reads_and_copies_lists() -> None:
    from bridge.rules.conditions import path_values

    rec = make_ticket(fields={"severity": "Sev-1", "areas": ["API"]}, tags=["bug/x"], escalations=["leads"])
    values = path_values(rec)
    for path in ("ticket.priority", "ticket.severity", "ticket.areas", "ticket.tags", "ticket.text",
                 "ticket.escalations", "account.tier", "account.arr", "account.region", "requester.language",
                 "requester.email"):
        assert values[path] == Context(rec).value(path), path
    assert "ticket.language" not in values  # blank: left out
    rec.attrs["escalations"].append("ops")
    rec.tags.append("bug/y")
    assert values["ticket.escalations"] == ["leads"] and values["ticket.tags"] == ["bug/x"]


@pytest.mark.parametrize(
    ("leaf", "before", "after", "expected"),
    [
        ({"field": "ticket.tags", "to": "bug/x"}, ["billing/refund"], ["billing/refund", "bug/x"], True),
        # already there before: another tag was added, this one was not
        ({"field": "ticket.tags", "to": "billing/refund"}, ["billing/refund"], ["billing/refund", "bug/x"],
         False),
        ({"field": "ticket.tags", "from": "bug/x"}, ["billing/refund", "bug/x"], ["billing/refund"], True),
        ({"field": "ticket.tags", "from": "bug/x"}, ["bug/x"], ["bug/x", "other/y"], False),
        ({"field": "ticket.tags", "to": "bug/x"}, [], ["bug/x"], True),
        ({"field": "ticket.areas", "to": "API"}, ["Billing"], ["Billing", "API"], True),
        ({"field": "ticket.areas", "to": "API"}, ["Billing", "API"], ["API"], False),  # Billing removed
        ({"field": "ticket.areas", "from": "Billing"}, ["Billing", "API"], ["API"], True),
        ({"field": "ticket.areas", "from": "Billing", "to": "API"}, ["Billing"], ["API"], True),
        ({"field": "ticket.areas", "to": "API"}, None, ["API"], True),  # first set
        ({"field": "ticket.areas", "to": ["Billing", "API"]}, ["Billing"], ["Billing", "API"], True),  # whole
        ({"field": "ticket.areas", "to": ["API"]}, ["Billing"], ["Billing", "API"], False),
    ],
)
def test_to_and_from_on_a_list_mean_added_and_removed(
    leaf: dict[str, Any], before: list[str] | None, after: list[str], expected: bool
) -> None:
    path = leaf["field"]
    ticket = make_ticket(tags=after) if path == "ticket.tags" else make_ticket(fields={"areas": after})
    previous = {"ticket.priority": "normal"} if before is None else {path: before}
    assert holds(leaf, ticket, previous) is expected


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        # a TOML date against an ISO date string in the data, against a time by its UTC day
        ({"field": "account.renewal_date", "lt": date(2027, 1, 1)}, True),
        ({"field": "account.renewal_date", "gte": date(2027, 1, 1)}, False),
        ({"field": "account.renewal_date", "eq": date(2026, 12, 1)}, True),
        ({"field": "account.renewal_date", "ne": date(2026, 12, 1)}, False),
        ({"field": "account.renewal_date", "in": [date(2026, 12, 1), date(2027, 1, 1)]}, True),
        ({"field": "account.renewal_date", "not_in": [date(2026, 12, 1)]}, False),
        ({"field": "ticket.created_at", "lt": date(2027, 1, 1)}, True),
        ({"field": "ticket.created_at", "eq": date(2026, 11, 2)}, True),
        ({"field": "ticket.created_at", "gt": date(2026, 11, 2)}, False),  # same day: not after it
        ({"field": "ticket.created_at", "lte": date(2026, 11, 2)}, True),
        # a TOML date-time without an offset is UTC
        ({"field": "ticket.created_at", "gt": datetime(2026, 1, 1)}, True),
        ({"field": "ticket.created_at", "gt": datetime(2026, 11, 2, 8, 59)}, True),
        ({"field": "ticket.created_at", "gt": datetime(2026, 11, 2, 9, 1)}, False),
        ({"field": "ticket.created_at", "eq": datetime(2026, 11, 2, 9, 0)}, True),
        ({"field": "ticket.updated_at", "gt": datetime(2026, 11, 2, 8, 0, tzinfo=UTC)}, True),  # ISO string
        ({"field": "ticket.updated_at", "lt": date(2026, 11, 3)}, True),
        ({"field": "account.due", "gt": datetime(2026, 11, 30, 23, 0)}, True),  # a date is its midnight
        ({"field": "account.due", "lt": date(2026, 12, 1)}, False),
        ({"field": "ticket.subject", "lt": date(2027, 1, 1)}, False),  # not a date: never compares
        # ISO text in the config against a date or a time in the data: in / not_in read it as eq does
        ({"field": "account.due", "eq": "2026-12-01"}, True),
        ({"field": "account.due", "in": ["2026-12-01", "2027-01-01"]}, True),
        ({"field": "account.due", "in": ["2026-12-02"]}, False),
        ({"field": "account.due", "not_in": ["2026-12-01"]}, False),
        ({"field": "account.due", "not_in": ["2026-12-02"]}, True),
        ({"field": "ticket.created_at", "in": ["2026-11-02T09:00:00Z"]}, True),
        ({"field": "ticket.created_at", "not_in": ["2026-11-02T09:00:00Z"]}, False),
        ({"field": "ticket.missing", "lt": date(2027, 1, 1)}, False),
    ],
)
def test_dates_and_times_compare_with_dates_times_and_iso_strings(
    leaf: dict[str, Any], expected: bool
) -> None:
    ticket = make_ticket(updated_at="2026-11-02T09:30:00Z")
    ticket.attrs["account"].update(renewal_date="2026-12-01", due=date(2026, 12, 1))
    assert holds(leaf, ticket) is expected


@pytest.mark.parametrize(
    ("leaf", "priority", "expected"),
    [
        ({"field": "ticket.priority", "gte": "high"}, ["urgent"], False),  # a list: never compares, no crash
        ({"field": "ticket.priority", "eq": "urgent"}, ["urgent"], True),  # a list contains it
        ({"field": "ticket.priority", "in": ["urgent"]}, ["urgent"], True),
        ({"field": "ticket.priority", "gte": "High"}, "urgent", False),  # no rank: not "urgent" >= "High"
        ({"field": "ticket.priority", "lt": "High"}, "high", False),
        ({"field": "ticket.priority", "gte": "high"}, "Urgent", False),  # not a known priority in the data
    ],
)
def test_priorities_compare_by_rank_only(leaf: dict[str, Any], priority: Any, expected: bool) -> None:
    assert holds(leaf, make_ticket(priority=priority)) is expected


TWO_TAGS = ["billing/refund", "bug/ui"]


@pytest.mark.parametrize(
    ("leaf", "attrs", "expected"),
    [
        ({"field": "ticket.tags", "eq": ["bug/ui", "billing/refund"]}, {"tags": TWO_TAGS}, True),
        ({"field": "ticket.tags", "eq": ["bug/ui"]}, {"tags": TWO_TAGS}, False),
        ({"field": "ticket.tags", "ne": ["bug/ui", "billing/refund"]}, {"tags": TWO_TAGS}, False),
        ({"field": "ticket.area", "eq": ["API", "Billing"]}, {"fields": {"area": ["Billing", "API"]}}, True),
        ({"field": "ticket.sentiment", "eq": -40}, {"sentiment": "-40"}, True),
        ({"field": "ticket.sentiment", "ne": -40}, {"sentiment": "-40"}, False),
        ({"field": "ticket.sentiment", "eq": "-40"}, {"sentiment": -40}, True),
        ({"field": "account.arr", "eq": 120000}, {"account": {"arr": "120000.0"}}, True),
        ({"field": "ticket.sentiment", "eq": -40}, {"sentiment": "minus forty"}, False),
        ({"field": "ticket.sentiment", "in": [-40, 7]}, {"sentiment": "-40"}, True),
        ({"field": "ticket.sentiment", "in": ["-40"]}, {"sentiment": -40}, True),
        ({"field": "ticket.sentiment", "not_in": [-40]}, {"sentiment": "-40"}, False),
        ({"field": "ticket.sentiment", "in": [-41, 7]}, {"sentiment": "-40"}, False),
    ],
)
def test_eq_takes_lists_in_any_order_and_numbers_sent_as_text(
    leaf: dict[str, Any], attrs: dict[str, Any], expected: bool
) -> None:
    assert holds(leaf, make_ticket(**attrs)) is expected


def test_the_same_tags_in_another_order_are_no_change() -> None:
    rec = make_ticket(tags=["b/x", "a/y"])
    assert holds({"field": "ticket.tags", "changed": True}, rec, {"ticket.tags": ["a/y", "b/x"]}) is False
    assert holds({"field": "ticket.tags", "changed": True}, rec, {"ticket.tags": ["a/y"]}) is True


@pytest.mark.parametrize("leaf", [
    {"field": "ticket.assignee", "eq": "A@X.example"},
    {"field": "ticket.assignee", "in": ["b@x.example", "A@X.EXAMPLE"]},
    {"field": "ticket.assignee", "ne": "B@x.example"},
    {"field": "account.owner", "eq": "a@x.example"},
    {"field": "requester.email", "contains": "ANA@"},
    {"field": "ticket.assignee", "to": "A@x.example"},
])
def test_emails_compare_without_regard_to_case(leaf: dict[str, Any]) -> None:
    # routing takes a CRM owner "A@x.Example" for the agent a@x.example: conditions agree with it
    ticket = make_ticket(assignee="a@x.example", requester={"email": "ana@acme.example"},
                         account={"id": "A-1", "owner": "A@x.Example"})
    ctx = Context(ticket, {"ticket.assignee": None})
    compiled = compile_condition(leaf)
    assert compiled.evaluate(ctx) is True
    assert evaluator(compiled)(ctx) is True


def test_an_email_that_changed_only_in_case_did_not_change() -> None:
    ticket = make_ticket(assignee="a@x.example")
    ctx = Context(ticket, {"ticket.assignee": "A@X.example"})
    leaves = (  # (the same agent)
        {"field": "ticket.assignee", "changed": True}, {"field": "ticket.assignee", "to": "a@x.example"})
    for leaf in leaves:
        compiled = compile_condition(leaf)
        assert compiled.evaluate(ctx) is False and evaluator(compiled)(ctx) is False


@pytest.mark.parametrize(("pattern", "holds"), [(r"^\S+@example\.com$", True), (r"example\.com\Z", True),
                                                (r"^[A-Z]", False), (r"(?i)^[A-Z]", True)])
def test_a_regex_on_an_email_is_taken_as_written(pattern: str, holds: bool) -> None:
    ticket = make_ticket(requester={"email": "bob@example.com"})
    compiled = compile_condition({"field": "requester.email", "matches": pattern})
    assert compiled.evaluate(Context(ticket)) is holds and evaluator(compiled)(Context(ticket)) is holds


@pytest.mark.parametrize("body, found", [
    ("this is blocking our\nlaunch", True),          # a mail wrapped at 72 columns
    ("this is blocking our  launch", True),          # two spaces
    ("this is blocking\u00a0our launch", True),      # a non-breaking space
    ("this is Blocking\tOur\r\nLaunch!", True),
    ("this is blocking ourlaunch", False),           # white space is one space, not none
])
def test_contains_takes_any_run_of_white_space_for_one_space(body: str, found: bool) -> None:
    ticket = make_ticket(subject="Help", body=body)
    for needle in ("blocking our launch", "Blocking  our\nlaunch"):
        assert holds({"field": "ticket.text", "contains": needle}, ticket) is found
        assert holds({"field": "ticket.body", "contains": needle}, ticket) is found


def test_a_phrase_rule_wrapped_over_two_lines_fires_through_the_desk() -> None:
    # the Desk's guard (which rules may match) must not rule the phrase out either
    from bridge.rules.engine import Desk
    from bridge.settings import Config

    rule = {"name": "launch", "set": "escalation", "then": [{"escalate": "leads"}],
            "when": {"field": "ticket.text", "contains": "blocking our launch"}}
    desk = Desk(Config(teams={"leads": {"members": []}}, rules=[rule]))
    ticket = make_ticket(subject="Urgent", body="The export bug is blocking our\nlaunch next week")
    out = desk.on_ticket(ticket, {}, {"type": "ticket.created"}, T0)
    assert [(d.decision, d.rule) for d in out] == [("escalate", "launch")]


POP_UP = ("Pop-up blocking", "Our launch page")


@pytest.mark.parametrize(
    ("leaf", "subject", "body", "expected"),
    [
        # subject and body are two texts: a phrase found only across them is in neither
        ({"field": "ticket.text", "contains": "blocking our launch"}, *POP_UP, False),
        ({"field": "ticket.text", "matches": "(?i)blocking our launch"}, *POP_UP, False),
        ({"field": "ticket.text", "matches": "(?i)blocking.our"}, *POP_UP, False),
        # within one text a phrase wrapped over lines is still the phrase
        ({"field": "ticket.text", "contains": "blocking our launch"}, "Help", "This is blocking\nour  launch",
         True),
        ({"field": "ticket.text", "contains": "blocking our launch"}, "Blocking our launch!", "", True),
        ({"field": "ticket.text", "contains": "launch"}, *POP_UP, True),
        # a phrase's edge space (a whole word) meets the seam between two parts, as the space it was before
        ({"field": "ticket.text", "contains": " ai "}, "Question about AI", "Can you help", True),
        ({"field": "ticket.text", "contains": " refund"}, "Hi", "refund please", True),
        ({"field": "ticket.text", "contains": "refund "}, "Refund", "please", True),
    ],
)
def test_a_phrase_does_not_span_the_subject_and_the_body(
    leaf: dict[str, Any], subject: str, body: str, expected: bool
) -> None:
    assert holds(leaf, make_ticket(subject=subject, body=body)) is expected


def test_a_word_written_decomposed_is_the_same_word_for_contains_and_matches() -> None:
    import unicodedata

    nfd = make_ticket(body=unicodedata.normalize("NFD", "Ich möchte eine Rückerstattung"))
    assert nfd.attrs["body"] != "Ich möchte eine Rückerstattung"  # (the test's premise: two spellings)
    assert holds({"field": "ticket.text", "contains": "Rückerstattung"}, nfd)
    assert holds({"field": "ticket.text", "matches": "(?i)rückerstattung"}, nfd)
    assert not holds({"field": "ticket.text", "contains": "Rückzahlung"}, nfd)


def test_keywords_with_a_non_word_edge_match_as_whole_words_and_decomposed_text_matches() -> None:
    import unicodedata

    from bridge.classify import keyword_tags

    words = {"bug/cpp": ["c++"], "bug/dotnet": [".net"], "esc/first": ["#1 priority"], "billing/refund":
             ["rückerstattung"]}
    text = "We use C++ and .NET daily; this is our #1 priority"
    assert [tag for tag, _ in keyword_tags(text, words)] == ["bug/cpp", "bug/dotnet", "esc/first"]
    assert keyword_tags("abc++ and x.netty", words) == []  # (a word character touching an edge: no match)
    nfd = unicodedata.normalize("NFD", "Eine RÜCKERSTATTUNG bitte")
    assert [tag for tag, _ in keyword_tags(nfd, words)] == ["billing/refund"]


@pytest.mark.parametrize("blank", [None, "", []])
def test_an_empty_string_in_a_condition_is_blank_whichever_way_the_system_cleared_it(blank: Any) -> None:
    ticket = make_ticket(assignee=blank, fields={"components": blank},
                         requester={"email": "ana@acme.example", "language": blank})
    assert holds({"field": "ticket.assignee", "eq": ""}, ticket)
    assert not holds({"field": "ticket.assignee", "ne": ""}, ticket)
    assert holds({"field": "requester.language", "in": ["", "en"]}, ticket)
    assert not holds({"field": "requester.language", "not_in": ["", "en"]}, ticket)
    assert holds({"field": "ticket.components", "eq": ""}, ticket)
    assigned = make_ticket(assignee="bo@example.com", requester={"email": "a@b.example", "language": "fr"})
    assert not holds({"field": "ticket.assignee", "eq": ""}, assigned)
    assert holds({"field": "ticket.assignee", "ne": ""}, assigned)
    assert not holds({"field": "requester.language", "in": ["", "en"]}, assigned)
    assert holds({"field": "requester.language", "not_in": ["", "en"]}, assigned)
