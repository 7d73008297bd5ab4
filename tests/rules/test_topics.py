"""Recurring topics: spikes of a topic's volume file one product ticket, then update it (replay.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.replay import Replay
from bridge.rules.topics import TopicRule, TopicWatch
from bridge.settings import Config

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
WEEK = TopicRule(timedelta(days=7), 3.0, "7d")


def day(d: float) -> datetime:
    return T0 + timedelta(days=d)


def feed(watch: TopicWatch, topic: str, days: list[float]) -> list[tuple[float, str, int, int]]:
    """Record one ticket of ``topic`` on each day; (day, action, count, previous) of each spike."""
    out = []
    for d in days:
        spike = watch.record(topic, day(d))
        if spike is not None:
            out.append((d, spike.action, spike.count, spike.previous))
    return out


def test_a_spike_is_min_count_and_ratio_times_the_previous_window() -> None:
    watch = TopicWatch([WEEK], min_count=3)
    # one a week for two weeks, then three in a day: 3 >= 3 x 1 (the day-7 ticket is the previous window's)
    assert feed(watch, "bug/login", [0, 7, 14.1, 14.2]) == []  # two this week: under min_count
    assert feed(watch, "bug/login", [14.3]) == [(14.3, "create", 3, 1)]


def test_no_spike_below_the_ratio() -> None:
    watch = TopicWatch([WEEK], min_count=3)
    # one a day for four weeks: seven in every week, never three times the week before
    assert feed(watch, "bug/login", [float(d) for d in range(28)]) == []
    assert feed(watch, "bug/login", [28 + i / 10 for i in range(14)]) == []  # 21 in the week: 2.6x


def test_rules_wait_until_both_windows_are_seen() -> None:
    watch = TopicWatch([WEEK], min_count=3)
    # a burst in the first days of a recording is no spike: nothing is known of the week before it
    assert feed(watch, "bug/login", [0, 0.02, 0.04, 0.06, 13.9]) == []
    assert feed(watch, "bug/login", [14.0, 14.1]) == [(14.1, "create", 3, 0)]  # a topic new this week


def test_a_topic_files_once_then_updates_after_it_calmed() -> None:
    watch = TopicWatch([WEEK], min_count=3)
    assert feed(watch, "bug/login", [0, 14, 14.1, 14.2, 14.3]) == [(14.2, "create", 3, 0)]  # hot until ...
    assert feed(watch, "bug/login", [30]) == []  # ... a ticket comes while no rule holds
    assert feed(watch, "bug/login", [30.1, 30.2]) == [(30.2, "update", 3, 0)]  # the same product ticket


def test_any_rule_makes_a_spike() -> None:
    month = TopicRule(timedelta(days=30), 1.5, "30d")
    watch = TopicWatch([WEEK, month], min_count=3)
    times = [0, 5, 12, 19, 26]  # the recording starts; four in the 30 days before the last ...
    times += [33, 38, 43, 48, 53, 60.5]  # ... six in those 30: 1.5 x 4, never three in one week
    spikes = [(d, watch.record("bug/ui", day(d))) for d in times]
    hit = [(d, s.window, s.count, s.previous) for d, s in spikes if s is not None]
    assert hit == [(60.5, "30d", 6, 4)]


@pytest.mark.parametrize(
    ("tag", "prefixes", "topic"),
    [
        ("billing/refund", None, True),
        ("billing", None, False),  # no prefix/topic
        ("/refund", None, False),
        ("billing/refund", ["bug"], False),  # not a topic prefix
        ("bug/Login Page", None, False),  # breaks the taxonomy's pattern
    ],
)
def test_which_tags_are_topics(tag: str, prefixes: list[str] | None, topic: bool) -> None:
    watch = TopicWatch([WEEK], prefixes=prefixes, pattern=Config().taxonomy.pattern)
    assert watch.is_topic(tag) is topic


def test_no_rules_no_watch() -> None:
    assert TopicWatch.from_config(Config()) is None
    watch = TopicWatch.from_config(Config(taxonomy={"prefixes": ["bug"]},
                                          topics={"rules": [{"window": "7d", "ratio": 2}]}))
    assert watch is not None and watch.prefixes == {"bug"}  # the taxonomy's prefixes, when topics names none


# ---------------------------------------------------------------- in replay


def created(n: int, at: datetime, tags: list[str] | None, **ticket: Any) -> str:
    body = {"id": f"T-{n}", "subject": "s", "body": "b", **ticket}
    if tags is not None:
        body["tags"] = tags
    return json.dumps({"type": "ticket.created", "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "ticket": body})


def product_tickets(config: dict[str, Any], lines: list[str]) -> list[dict[str, Any]]:
    rp = Replay(Config(**config))
    out = [d for d in rp.run(lines) if d.get("decision") == "product_ticket"]
    assert rp.problems == []
    return out


TOPICS = {"tracker": "jira", "min_count": 3, "rules": [{"window": "7d", "ratio": 3.0}]}
JIRA = {"jira": {"plugin": "files", "path": "out"}}


def test_replay_files_a_product_ticket_once_per_topic_then_updates_it() -> None:
    lines = [created(1, day(0), ["bug/login"]), created(2, day(7), ["bug/login"])]
    both = ["bug/login", "billing/refund"]
    lines += [created(3 + i, day(14) + timedelta(hours=i), both) for i in range(4)]
    lines += [created(10, day(40), ["bug/login"])]
    lines += [created(11 + i, day(41) + timedelta(hours=i), ["bug/login"]) for i in range(3)]
    out = product_tickets({"topics": TOPICS, "connectors": JIRA}, lines)
    assert out == [
        {"at": "2026-01-19T11:00:00Z", "ticket_id": "T-5", "decision": "product_ticket", "rule": "topics",
         "topic": "billing/refund", "action": "create", "tracker": "jira", "count": 3, "previous": 0,
         "window": "7d", "ratio": 3.0},
        {"at": "2026-01-19T11:00:00Z", "ticket_id": "T-5", "decision": "product_ticket", "rule": "topics",
         "topic": "bug/login", "action": "create", "tracker": "jira", "count": 3, "previous": 1,
         "window": "7d", "ratio": 3.0},
        {"at": "2026-02-15T10:00:00Z", "ticket_id": "T-12", "decision": "product_ticket", "rule": "topics",
         "topic": "bug/login", "action": "update", "tracker": "jira", "count": 3, "previous": 0,
         "window": "7d", "ratio": 3.0},
    ]


def test_a_topic_a_rule_or_an_update_adds_counts_once_per_ticket() -> None:
    rule = {"name": "sso", "set": "triggers", "when": {"field": "ticket.text", "contains": "okta"},
            "then": [{"add_tags": ["access/sso"]}]}
    lines = [created(1, day(0), ["access/sso"])]
    lines += [created(2, day(14), [], subject="okta fails")]  # the rule tags it
    lines += [created(3, day(14.1), [])]
    lines += [json.dumps({"type": "ticket.updated", "at": "2026-01-19T12:00:00Z", "ticket_id": "T-3",
                          "changes": {"tags": ["access/sso"]}})]  # tagged by hand later
    lines += [json.dumps({"type": "ticket.updated", "at": "2026-01-19T13:00:00Z", "ticket_id": "T-3",
                          "changes": {"tags": ["access/sso", "bug/ui"]}})]  # counted once, not again
    lines += [created(4, day(14.3), ["access/sso"])]
    out = product_tickets({"topics": TOPICS, "rules": [rule]}, lines)
    assert [(d["ticket_id"], d["topic"], d["count"]) for d in out] == [("T-4", "access/sso", 3)]


def test_no_topics_rules_no_product_tickets() -> None:
    # a burst a [topics] rule would flag (two weeks seen, none the week before): with no rules, nothing
    lines = [created(0, day(0), ["bug/ui"])]
    lines += [created(i, day(14) + timedelta(minutes=i), ["bug/login"]) for i in range(1, 21)]
    assert product_tickets({"topics": {"min_count": 3}}, lines) == []
    assert len(product_tickets({"topics": TOPICS}, lines)) == 1


@pytest.mark.parametrize("bad", [{"min_count": 0}, {"rules": [{"window": "0s", "ratio": 2}]},
                                 {"rules": [{"window": "7d", "ratio": -1}]},
                                 {"rules": [{"window": "7d", "ratio": float("nan")}]}])
def test_topics_that_make_no_sense_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="topics"):
        Config(topics=bad)


def test_a_topic_matches_the_whole_taxonomy_pattern() -> None:
    watch = TopicWatch([WEEK], pattern="[a-z]+/[a-z]+")  # unanchored, as taxonomy lint reads it: whole tag
    assert watch.is_topic("billing/refund") and not watch.is_topic("billing/refund_request")


def test_a_synonym_or_another_letter_case_counts_in_the_topic_it_means() -> None:
    # agents tag both ways: declared synonyms, and a helpdesk that keeps capitals, are one topic
    taxonomy = {"synonyms": {"billing/refund": ["billing/refunds", "refund"]}}
    lines = [created(1, day(0), ["bug/other"]), created(2, day(7), ["bug/other"])]
    tags = [["billing/refund"], ["billing/refunds"], ["refund"], ["Billing/Refund", "billing/refunds"]]
    lines += [created(3 + i, day(14) + timedelta(hours=i), t) for i, t in enumerate(tags)]
    out = product_tickets({"topics": TOPICS, "connectors": JIRA, "taxonomy": taxonomy}, lines)
    assert [(d["ticket_id"], d["topic"], d["action"], d["count"]) for d in out] == [
        ("T-5", "billing/refund", "create", 3)]
