"""The replay hot path's shortcuts give what the plain code gives: times, coercion, tag mapping, snapshots."""

from __future__ import annotations

import gc
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge.errors import FieldValueError
from bridge.fields import FieldType, adds_nothing, coerce
from bridge.model import Change, FieldValue, Record, format_time, parse_time
from bridge.pipeline import MemoryState, Pipeline
from bridge.replay import GC_THRESHOLD, Replay
from bridge.rules.conditions import path_values
from bridge.settings import Config

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["2026-03-02T09:00:00Z", "2026-03-02T09:00:00+00:00", "2026-03-02T11:00:00+02:00", "2026-03-02T09:00:00"],
)
def test_parse_time_reads_every_spelling_of_one_instant(text: str) -> None:
    got = parse_time(text)
    assert got == T
    assert got.tzinfo is UTC


@pytest.mark.parametrize("bad", ["2026-13-02T09:00:00Z", "2026-03-02T09:00:0ZZ", "not a time at all xZ"])
def test_parse_time_refuses_a_bad_time_of_the_short_shape(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_time(bad)


def test_format_time_of_one_instant_in_any_zone_is_the_same_text() -> None:
    plus2 = T.astimezone(timezone(timedelta(hours=2)))
    assert format_time(T) == format_time(plus2) == "2026-03-02T09:00:00Z"
    assert format_time(T + timedelta(seconds=1)) == "2026-03-02T09:00:01Z"  # not the cached neighbour
    assert format_time(None) is None


def test_format_time_stays_right_past_the_cache_size() -> None:
    times = [T + timedelta(seconds=s) for s in range(5000)]
    assert [format_time(t) for t in times] == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times]


def pipeline(**fields: Any) -> Pipeline:
    return Pipeline(Config(fields=fields))


SELECT = {"type": "select", "options": ["Sev-1", "Sev-2"], "aliases": {"Sev-1": ["p1"]}}
MULTI = {"type": "multi_select", "options": ["Billing", "API"]}


@pytest.mark.parametrize(
    ("spec", "raw"),
    [
        (SELECT, "p1"),
        (SELECT, "sev-2"),
        (MULTI, ["api", "Billing"]),
        (MULTI, "API;billing"),
        ({"type": "number"}, 1),
        ({"type": "number"}, "1,000"),
        ({"type": "boolean"}, 1),
        ({"type": "boolean"}, True),
        ({"type": "text"}, True),
        ({"type": "text"}, 1),
        ({"type": "date"}, "2026-03-02"),
    ],
)
def test_pipeline_coerce_is_fields_coerce_every_time(spec: dict[str, Any], raw: Any) -> None:
    p = pipeline(f=spec)
    ft = p.types["f"]
    for _ in range(3):  # the first call fills the memo; the next ones read it
        assert p.coerce("f", ft, raw) == coerce(ft, raw)
        assert type(p.coerce("f", ft, raw)) is type(coerce(ft, raw))


def test_pipeline_coerce_keeps_true_and_one_apart() -> None:
    p = pipeline(f={"type": "text"})
    ft = p.types["f"]
    assert p.coerce("f", ft, 1) == "1"
    assert p.coerce("f", ft, True) == "True"


def test_pipeline_coerce_keeps_list_items_of_other_types_apart() -> None:
    p = pipeline(f={"type": "multi_select", "options": ["1", "True", "2"]})
    ft = p.types["f"]
    assert p.coerce("f", ft, [1]) == ["1"]
    assert p.coerce("f", ft, [True]) == ["True"]  # (1,) == (True,): the items' types are in the key
    with pytest.raises(FieldValueError):
        p.coerce("f", ft, [1.0])


def test_format_time_tells_the_two_instants_of_a_repeated_hour_apart() -> None:
    new_york = ZoneInfo("America/New_York")
    first = datetime(2024, 11, 3, 1, 30, tzinfo=new_york)  # 05:30Z, before clocks go back
    second = datetime(2024, 11, 3, 1, 30, tzinfo=new_york, fold=1)  # 06:30Z, the same wall time an hour later
    assert first == second  # Python compares them as equal: a cache keyed on them would mix them up
    assert (format_time(first), format_time(second)) == ("2024-11-03T05:30:00Z", "2024-11-03T06:30:00Z")


def test_pipeline_coerce_gives_a_fresh_list_each_time() -> None:
    p = pipeline(f=MULTI)
    ft = p.types["f"]
    first = p.coerce("f", ft, ["API"])
    first.append("Billing")
    assert p.coerce("f", ft, ["API"]) == ["API"]


def test_pipeline_coerce_still_refuses_a_bad_value_with_its_message() -> None:
    p = pipeline(f=SELECT)
    ft = p.types["f"]
    for _ in range(2):
        with pytest.raises(FieldValueError, match="not an option"):
            p.coerce("f", ft, "Sev-9")
    multi = pipeline(m=MULTI)
    mt = multi.types["m"]
    with pytest.raises(FieldValueError) as plain:
        coerce(mt, [{"odd": 1}])
    with pytest.raises(FieldValueError) as memo:  # unhashable items: coerced as they are, not remembered
        multi.coerce("m", mt, [{"odd": 1}])
    assert str(memo.value) == str(plain.value)


@pytest.mark.parametrize(
    ("current", "value", "held"),
    [
        (["Billing"], ["Billing"], True),
        (["Billing", "API"], ["API"], True),
        (["API", "Billing"], ["API"], False),  # not in declared order: merge reorders it
        (["Billing"], ["API"], False),
        ("Billing", ["Billing"], False),
        (["Billing", "Billing"], ["Billing"], False),
    ],
)
def test_adds_nothing_multi_select_only_when_merge_would_keep_the_value(
    current: Any, value: list[str], held: bool
) -> None:
    ft = FieldType("multi_select", ("Billing", "API"), name="f")
    assert adds_nothing(ft, current, value) is held


def test_adds_nothing_a_single_value_only_of_the_same_type() -> None:
    ft = FieldType("number", name="n")
    assert adds_nothing(ft, 1, 1)
    assert not adds_nothing(ft, True, 1)
    assert not adds_nothing(ft, 1, 2)


def test_tag_mapping_still_fills_a_field_a_rule_left_out_of_order() -> None:
    p = Pipeline(
        Config(fields={"area": MULTI}, tags=[{"match": "billing/*", "set": {"area": "Billing"}}])
    )
    state = MemoryState()
    first = p.process(state, Change("desk", "ticket", "1", T, tags=["billing/refund"]), T)
    record = first.record
    record.fields["area"] = FieldValue(["API", "Billing"], "bridge", T)  # out of declared order
    p.process(state, Change("desk", "ticket", "1", T, attrs={"status": "open"}), T)
    assert record.fields["area"].value == ["Billing", "API"]


def test_memory_state_without_accounts_gives_a_ticket_no_account_context() -> None:
    p = Pipeline(Config())
    state = MemoryState()
    requester = {"email": "a@acme.example"}
    out = p.process(state, Change("desk", "ticket", "1", T, attrs={"requester": requester}), T)
    assert "account" not in out.record.attrs
    p.process(state, Change("crm", "account", "A", T, attrs={"domain": "acme.example", "tier": "gold"}), T)
    out = p.process(state, Change("desk", "ticket", "1", T, attrs={"subject": "hi"}), T)
    assert out.record.attrs["account"]["tier"] == "gold"


def test_snapshot_paths_and_values() -> None:
    record = Record(
        "t1",
        "ticket",
        fields={"severity": FieldValue("Sev-1", "replay", T)},
        tags=["a"],
        attrs={"status": "open", "requester": {"email": "x"}, "escalations": ["x"], "when": date(2026, 1, 1)},
    )
    got = path_values(record)
    assert got == {
        "ticket.status": "open",
        "ticket.when": date(2026, 1, 1),
        "ticket.severity": "Sev-1",
        "ticket.tags": ["a"],
        "ticket.escalations": ["x"],
        "ticket.text": "",
        "ticket.id": "t1",
        "requester.email": "x",
    }
    got["ticket.tags"].append("b")
    got["ticket.escalations"].append("y")
    assert record.tags == ["a"] and record.attrs["escalations"] == ["x"]


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 3, 2, 9, 5, 7, 123456, tzinfo=UTC),
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(1000, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
)
def test_format_time_matches_strftime(when: datetime) -> None:
    assert format_time(when) == when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_replay_reports_odd_lines_as_before_and_goes_on() -> None:
    lines = [
        "   \n",
        '{"type": ["ticket.created"], "at": "2026-03-02T09:00:00Z"}',
        '{"type": {"a": 1}, "at": "2026-03-02T09:00:00Z"}',
        '{"type": "ticket.created", "at": "2026-03-02T09:00:00Z", "ticket": {"id": "T1", "subject": "hi"}}',
        '{"type": "ticket.status", "at": "2026-03-02T09:01:00Z", "ticket_id": "T9", "status": "open"}',
        '{"type": "ticket.status", "at": "2026-03-02T09:02:00Z", "ticket_id": "T1", "status": "solved"}',
    ]
    rp = Replay(Config())
    out = list(rp.run(lines))
    assert rp.problems == [
        "line 2: unknown event type ['ticket.created']",
        "line 3: unknown event type {'a': 1}",
        "line 5: ticket.status: unknown ticket 'T9'",
        "line 6: ticket.status: status 'solved' is not one of open, pending, on_hold, resolved, closed; "
        "skipped",
    ]
    finals = [o for o in out if o.get("final")]
    assert [(f["ticket_id"], f["status"]) for f in finals] == [("T1", "open")]


def test_interleaved_replays_leave_the_collector_as_they_found_it() -> None:
    before = gc.get_threshold()
    lines = ['{"type": "ticket.created", "at": "2026-11-02T09:00:00Z", "ticket": {"id": "T-1"}}']
    first, second = Replay(Config()).run(lines), Replay(Config()).run(lines)
    next(first)
    next(second)
    assert gc.get_threshold()[0] >= GC_THRESHOLD
    list(first)
    list(second)
    assert gc.get_threshold() == before


def test_only_the_authority_s_given_tags_keep_the_classifier_out() -> None:
    config = Config(classify={"min_confidence": 0.8, "keywords": {"billing/refund": ["refund"]}})
    text = {"subject": "refund refund"}
    # the daemon (no authority): a system's tags do not stop the classifier
    daemon = Pipeline(config).process(MemoryState(), Change("desk", "ticket", "1", T, tags=[], attrs=text), T)
    assert daemon.record.tags == ["billing/refund"]
    # replay: the events' tags are taken as given, and a system other than the authority is classified
    replay = Pipeline(config, authority="replay")
    given = replay.process(MemoryState(), Change("replay", "ticket", "1", T, tags=[], attrs=text), T)
    assert given.record.tags == [] and given.record.attrs["confidence"] == 0.9
    other = replay.process(MemoryState(), Change("desk", "ticket", "1", T, tags=[], attrs=text), T)
    assert other.record.tags == ["billing/refund"]
