"""Replay in process: time order, final states, given values, bad lines, closed tickets dropped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.replay import Replay, diff
from bridge.settings import Config

CONFIG: dict[str, Any] = {
    "fields": {
        "severity": {"type": "select", "options": ["Sev-1", "Sev-2", "Sev-3"], "owner": "bridge"},
        "area": {"type": "multi_select", "options": ["Billing", "API"], "owner": "bridge"},
    },
    "tags": [
        {"match": "bug/sev1", "set": {"severity": "Sev-1"}},
        {"match": "billing/*", "set": {"area": "Billing"}},
        {"match": "bug/api-*", "set": {"area": "API"}},
    ],
}


def event(kind: str, at: str, **body: Any) -> str:
    return json.dumps({"type": kind, "at": at, **body})


def created(tid: str, at: str, **ticket: Any) -> str:
    return event(
        "ticket.created", at, ticket={"id": tid, "subject": "s", "body": "b", "status": "open", **ticket}
    )


def run(
    lines: list[str], config: dict[str, Any] | None = None, **kw: Any
) -> tuple[list[dict[str, Any]], Replay]:
    rp = Replay(Config(**(config or CONFIG)), **kw)
    return list(rp.run(lines)), rp


def test_tags_map_to_fields_with_decisions_and_a_final_state() -> None:
    out, rp = run([created("T-1", "2026-11-02T09:00:00Z", tags=["billing/refund", "bug/api-orders"])])
    assert rp.problems == []
    decisions = [d for d in out if not d.get("final")]
    assert [(d["decision"], d["field"], d["value"]) for d in decisions] == [
        ("set_field", "area", ["Billing"]),
        ("set_field", "area", ["Billing", "API"]),  # options in the order the field declares them
    ]
    assert all(d["at"] == "2026-11-02T09:00:00Z" and d["ticket_id"] == "T-1" for d in decisions)
    assert "key" not in decisions[0]
    [final] = [d for d in out if d.get("final")]
    assert final["fields"] == {"area": ["Billing", "API"]}
    assert set(final) >= {
        "assignee",
        "priority",
        "status",
        "tags",
        "fields",
        "sentiment",
        "escalations",
        "sla",
    }


def test_what_an_event_gives_is_taken_as_given() -> None:
    lines = [
        created(
            "T-1", "2026-11-02T09:00:00Z", tags=["bug/sev1"], fields={"severity": "Sev-2"}, sentiment=-50
        ),
        event("ticket.updated", "2026-11-02T09:05:00Z", ticket_id="T-1", changes={"severity": "Sev-3"}),
    ]
    out, rp = run(lines)
    assert rp.problems == []
    final = out[-1]
    assert final["fields"]["severity"] == "Sev-3" and final["sentiment"] == -50
    assert not [d for d in out if d.get("decision") == "set_field" and d.get("field") == "severity"]


def test_bad_lines_are_reported_by_number_and_skipped() -> None:
    lines = [
        created("T-1", "2026-11-02T09:00:00Z"),
        "{oops",
        event("ticket.exploded", "2026-11-02T09:01:00Z"),
        event("ticket.status", "2026-11-02T09:02:00Z", ticket_id="T-404", status="pending"),
        json.dumps({"type": "ticket.status", "ticket_id": "T-1", "status": "pending"}),
        created("T-2", "2026-11-02T09:03:00Z"),
    ]
    out, rp = run(lines)
    assert [p.split(":", 1)[0] for p in rp.problems] == ["line 2", "line 3", "line 4", "line 5"]
    assert "unknown ticket 'T-404'" in rp.problems[2]
    assert {d["ticket_id"] for d in out if d.get("final")} == {"T-1", "T-2"}


def test_closed_tickets_are_finalised_early_and_still_reported() -> None:
    lines = [created(f"T-{n}", f"2026-11-02T09:0{n}:00Z") for n in range(3)]
    lines.append(event("ticket.status", "2026-11-02T09:05:00Z", ticket_id="T-1", status="closed"))
    out, rp = run(lines)
    finals = [d for d in out if d.get("final")]
    assert [f["ticket_id"] for f in finals] == ["T-1", "T-0", "T-2"]  # the closed one waited in the spool
    assert finals[0]["status"] == "closed"
    assert len(rp.state.records) == 2  # the closed ticket left memory when it closed


def test_events_for_a_closed_ticket_are_reported_as_such_and_its_id_is_not_created_again() -> None:
    config = {**CONFIG, "auto_close": {"after": "1d"}}
    lines = [
        created("T-1", "2026-11-02T09:00:00Z"),
        created("T-2", "2026-11-02T09:01:00Z"),
        event("ticket.status", "2026-11-02T09:05:00Z", ticket_id="T-1", status="closed"),
        event("ticket.status", "2026-11-02T09:06:00Z", ticket_id="T-2", status="resolved"),
        event("ticket.message", "2026-11-02T10:00:00Z", ticket_id="T-1", author="customer", body="hi"),
        created("T-1", "2026-11-02T11:00:00Z", subject="again"),
        # T-2 auto-closes at 2026-11-03T09:06 (a timer): then it too takes no more events
        event("ticket.status", "2026-11-04T09:00:00Z", ticket_id="T-2", status="open"),
        event("ticket.status", "2026-11-04T09:01:00Z", ticket_id="T-9", status="open"),
    ]
    out, rp = run(lines, config)
    assert rp.problems == [
        "line 5: ticket.message: ticket 'T-1' closed at 2026-11-02T09:05:00Z; a closed ticket takes no more "
        "events (a follow-up is a new ticket); skipped",
        "line 6: ticket.created: ticket 'T-1' closed at 2026-11-02T09:05:00Z; a ticket id is not created "
        "twice; skipped",
        "line 7: ticket.status: ticket 'T-2' closed at 2026-11-03T09:06:00Z; a closed ticket takes no more "
        "events (a follow-up is a new ticket); skipped",
        "line 8: ticket.status: unknown ticket 'T-9'",
    ]
    finals = [d for d in out if d.get("final")]
    assert [(f["ticket_id"], f["status"]) for f in finals] == [("T-1", "closed"), ("T-2", "closed")]


def test_closed_ids_are_remembered_for_a_bounded_time_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge.replay.CLOSED_MEMORY", timedelta(hours=1))
    lines = [
        created("T-1", "2026-11-02T09:00:00Z"),
        event("ticket.status", "2026-11-02T09:05:00Z", ticket_id="T-1", status="closed"),
        created("T-2", "2026-11-02T12:00:00Z"),
        event("ticket.status", "2026-11-02T12:05:00Z", ticket_id="T-2", status="closed"),
        created("T-1", "2026-11-02T13:00:00Z", subject="reused id, long after"),
    ]
    out, rp = run(lines)
    assert rp.problems == []  # T-1 closed more than the window before T-2 did: forgotten, a new ticket
    assert list(rp._closed) == ["T-2"]
    assert [f["ticket_id"] for f in out if f.get("final")] == ["T-1", "T-2", "T-1"]


def test_a_closed_id_is_forgotten_after_the_window_even_when_no_other_ticket_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bridge.replay.CLOSED_MEMORY", timedelta(hours=1))
    lines = [
        created("T-1", "2026-11-02T09:00:00Z"),
        event("ticket.status", "2026-11-02T09:05:00Z", ticket_id="T-1", status="closed"),
        event("ticket.message", "2026-11-02T09:30:00Z", ticket_id="T-1", author="customer", body="hi"),
        created("T-1", "2026-11-02T13:00:00Z", subject="reused id, long after"),
        event("ticket.message", "2026-11-02T13:10:00Z", ticket_id="T-1", author="customer", body="hello?"),
    ]
    out, rp = run(lines)
    assert rp.problems == [
        "line 3: ticket.message: ticket 'T-1' closed at 2026-11-02T09:05:00Z; a closed ticket takes no more "
        "events (a follow-up is a new ticket); skipped",
    ]
    assert [f["ticket_id"] for f in out if f.get("final")] == ["T-1", "T-1"]


def test_until_fires_timers_after_the_last_event() -> None:
    config = {**CONFIG, "follow_up": {"after": "48h"}}
    lines = [
        created("T-1", "2026-11-02T09:00:00Z"),
        event("ticket.status", "2026-11-02T10:00:00Z", ticket_id="T-1", status="pending"),
    ]
    out, _ = run(lines, config)
    assert not [d for d in out if d.get("decision") == "follow_up"]
    out, _ = run(lines, config, until=datetime(2026, 11, 5, tzinfo=UTC))
    [follow] = [d for d in out if d.get("decision") == "follow_up"]
    assert follow["at"] == "2026-11-04T10:00:00Z"


def test_against_shows_only_what_differs() -> None:
    lines = [created("T-1", "2026-11-02T09:00:00Z", tags=["bug/sev1"])]
    old, _ = run(lines)
    changed = {**CONFIG, "tags": [{"match": "bug/sev1", "set": {"severity": "Sev-2"}}]}
    new, _ = run(lines, changed)
    rows = diff(old, new)
    assert {(r["diff"], r.get("value") or r.get("fields", {}).get("severity")) for r in rows} == {
        ("-", "Sev-1"),
        ("+", "Sev-2"),
    }


def test_a_classification_below_min_confidence_goes_to_review() -> None:
    config = {**CONFIG, "classify": {"min_confidence": 0.8, "keywords": {"billing/refund": ["refund"]}}}
    out, _ = run([created("T-1", "2026-11-02T09:00:00Z", subject="refund please", body="")], config)
    [review] = [d for d in out if d.get("decision") == "review"]
    assert review["ticket_id"] == "T-1" and review["confidence"] == 0.7
    assert "billing/refund" not in out[-1]["tags"]  # a proposal below the threshold is not applied
    out, _ = run([created("T-2", "2026-11-02T09:00:00Z", subject="refund refund", body="")], config)
    assert not [d for d in out if d.get("decision") == "review"]  # two hits: 0.9, confident
    assert "billing/refund" in out[-1]["tags"]


STATUS_PROBLEM = "is not one of open, pending, on_hold, resolved, closed; skipped"


@pytest.mark.parametrize(
    "bad",
    [
        event("ticket.status", "2026-11-02T09:05:00Z", ticket_id="T-1", status="weird"),
        event("ticket.status", "2026-11-02T09:05:00Z", ticket_id="T-1"),
        event("ticket.updated", "2026-11-02T09:05:00Z", ticket_id="T-1", changes={"status": "solved"}),
        event(
            "ticket.updated",
            "2026-11-02T09:05:00Z",
            ticket_id="T-1",
            changes={"status": ["closed"], "priority": "urgent"},
        ),
    ],
)
def test_a_status_outside_the_contract_is_reported_and_the_event_skipped(bad: str) -> None:
    out, rp = run([created("T-1", "2026-11-02T09:00:00Z", priority="normal"), bad])
    [problem] = rp.problems
    assert problem.startswith("line 2: ticket.") and STATUS_PROBLEM in problem
    final = out[-1]
    assert (final["status"], final["priority"]) == ("open", "normal")  # nothing of the event was applied


def test_a_ticket_created_with_a_status_outside_the_contract_is_skipped() -> None:
    out, rp = run(
        [created("T-1", "2026-11-02T09:00:00Z", status="new"), created("T-2", "2026-11-02T09:01:00Z")]
    )
    assert [p.split(":", 1)[0] for p in rp.problems] == ["line 1"] and STATUS_PROBLEM in rp.problems[0]
    assert [d["ticket_id"] for d in out if d.get("final")] == ["T-2"]


def test_a_second_ticket_created_for_the_same_id_is_reported_and_does_not_replace_the_ticket() -> None:
    lines = [
        created("T-1", "2026-11-02T09:00:00Z", subject="Refund", tags=["billing/refund"], sentiment=-40),
        created("T-1", "2026-11-02T09:05:00Z", subject="dup"),
    ]
    out, rp = run(lines)
    assert rp.problems == ["line 2: ticket.created: ticket 'T-1' is already in the replay; skipped"]
    [final] = [d for d in out if d.get("final")]
    assert final["tags"] == ["billing/refund"] and final["sentiment"] == -40
    assert final["fields"] == {"area": ["Billing"]}


AGENTS: dict[str, Any] = {**CONFIG, "agents": [{"email": "alice@example.com"}]}


@pytest.mark.parametrize(
    ("agent", "status", "problem"),
    [
        ("alice@example.com", "sleeping", "status 'sleeping' is not one of active, away, offline; skipped"),
        ("bob@example.com", "away", "'bob@example.com' is not in the config's [[agents]]; skipped"),
    ],
)
def test_an_agent_status_outside_the_contract_or_the_config_is_reported_and_skipped(
    agent: str, status: str, problem: str
) -> None:
    lines = [
        event("agent.status", "2026-11-02T08:00:00Z", agent=agent, status=status),
        created("T-1", "2026-11-02T09:00:00Z"),
    ]
    out, rp = run(lines, AGENTS)
    assert rp.problems == [f"line 1: agent.status: {problem}"]
    assert out[-1]["assignee"] == "alice@example.com"  # alice is still active: the status was not applied


@pytest.mark.parametrize("spelling", ["alice@example.com", "Alice@Example.COM"])
def test_a_known_agent_with_a_contract_status_is_no_problem(spelling: str) -> None:
    lines = [
        event("agent.status", "2026-11-02T08:00:00Z", agent=spelling, status="away"),
        created("T-1", "2026-11-02T09:00:00Z"),
    ]
    out, rp = run(lines, AGENTS)
    assert rp.problems == [] and out[-1]["assignee"] is None


def test_a_message_by_neither_customer_nor_agent_is_reported_and_meets_no_clock() -> None:
    config = {
        **CONFIG,
        "sla": [{"name": "all", "when": {"field": "ticket.status", "eq": "open"}, "first_response": "1h"}],
    }
    lines = [
        created("T-1", "2026-11-02T09:00:00Z"),
        event("ticket.message", "2026-11-02T09:10:00Z", ticket_id="T-1", author="bot", body="We got it"),
    ]
    out, rp = run(lines, config, until=datetime(2026, 11, 2, 11, tzinfo=UTC))
    assert rp.problems == [
        "line 2: ticket.message: author 'bot' is neither customer nor agent; the message counts as neither "
        "(it meets and starts no response clock)"
    ]
    assert [d["decision"] for d in out if d.get("decision", "").startswith("sla_")] == ["sla_breach"]


def test_unknown_keys_of_changes_and_undeclared_fields_are_reported_and_ignored() -> None:
    lines = [
        created("T-1", "2026-11-02T09:00:00Z", fields={"severity": "Sev-2", "colour": "red"}),
        event(
            "ticket.updated",
            "2026-11-02T09:05:00Z",
            ticket_id="T-1",
            changes={"priority": "high", "colour": "blue", "fields": {"mood": "sad"}, "severity": "Sev-3"},
        ),
    ]
    out, rp = run(lines)
    assert [p.split(": ", 2)[:2] for p in rp.problems] == [
        ["line 1", "ticket.created"],
        ["line 2", "ticket.updated"],
        ["line 2", "ticket.updated"],
    ]
    assert "ignored fields 'colour': not declared for tickets" in rp.problems[0]
    assert "ignored 'colour': neither a ticket attribute" in rp.problems[1]
    assert "ignored fields 'mood'" in rp.problems[2]
    final = out[-1]
    assert final["priority"] == "high" and final["fields"] == {"severity": "Sev-3"}
    assert "colour" not in rp.state.records[next(iter(rp.state.records))].attrs


def test_acknowledged_and_every_ticket_attribute_in_changes_are_no_problem() -> None:
    lines = [
        created("T-1", "2026-11-02T09:00:00Z"),
        event(
            "ticket.updated",
            "2026-11-02T09:05:00Z",
            ticket_id="T-1",
            changes={"acknowledged": True, "subject": "s2", "language": "fr", "tags": [], "fields": {}},
        ),
    ]
    _, rp = run(lines)
    assert rp.problems == []


def test_until_before_the_last_event_is_reported_and_ignored() -> None:
    lines = [created("T-1", "2026-11-02T09:00:00Z"), created("T-2", "2026-11-02T10:00:00Z")]
    out, rp = run(lines, until=datetime(2026, 11, 2, 9, 30, tzinfo=UTC))
    assert rp.problems == [
        "line 2: --until 2026-11-02T09:30:00Z is before this last event (2026-11-02T10:00:00Z): the clock "
        "cannot go back, so --until is ignored"
    ]
    assert len([d for d in out if d.get("final")]) == 2
    _, rp = run(lines, until=datetime(2026, 11, 2, 10, tzinfo=UTC))
    assert rp.problems == []  # at the last event: nothing to advance, nothing wrong


CLASSIFY: dict[str, Any] = {
    **CONFIG,
    "classify": {"min_confidence": 0.8, "keywords": {"billing/refund": ["refund"], "access/sso": ["okta"]}},
}


@pytest.mark.parametrize("tags", [[], ["feature/x"]])
def test_the_classifier_adds_no_tag_to_tags_an_event_gives(tags: list[str]) -> None:
    lines = [created("T-1", "2026-11-02T09:00:00Z", subject="refund refund", body="okta okta", tags=tags)]
    out, rp = run(lines, CLASSIFY)
    assert rp.problems == []
    assert not [d for d in out if d.get("decision") == "tag"]
    assert out[-1]["tags"] == tags
    assert out[-1]["sentiment"] is not None  # what the event lacks is still computed


def test_the_classifier_tags_a_ticket_whose_event_gives_no_tags() -> None:
    lines = [created("T-1", "2026-11-02T09:00:00Z", subject="refund refund", body="")]
    out, _ = run(lines, CLASSIFY)
    assert [d["tag"] for d in out if d.get("decision") == "tag"] == ["billing/refund"]
    assert out[-1]["tags"] == ["billing/refund"]


def test_tags_that_are_not_a_list_of_strings_are_reported_and_the_event_skipped() -> None:
    lines = [
        created("T-1", "2026-11-02T09:00:00Z", tags="billing/refund"),
        created("T-2", "2026-11-02T09:01:00Z"),
        event("ticket.updated", "2026-11-02T09:02:00Z", ticket_id="T-2", changes={"tags": [1]}),
    ]
    out, rp = run(lines)
    assert [p.split(":", 1)[0] for p in rp.problems] == ["line 1", "line 3"]
    assert all("tags must be a list of strings" in p for p in rp.problems)
    assert [(d["ticket_id"], d["tags"]) for d in out if d.get("final")] == [("T-2", [])]


def test_inline_account_values_are_coerced_as_a_sync_would() -> None:
    config = {
        "fields": {
            "tier": {"type": "select", "kind": "account", "options": ["enterprise", "growth"]},
            "arr": {"type": "number", "kind": "account"},
        },
        "rules": [
            {"name": "big", "when": {"field": "account.arr", "gte": 100000},
             "then": [{"add_tags": ["hit/arr"]}]},
            {"name": "ent", "when": {"field": "account.tier", "eq": "enterprise"},
             "then": [{"add_tags": ["hit/tier"]}]},
        ],
    }
    ticket = {"subject": "s", "body": "b", "status": "open"}
    lines = [
        json.dumps({"type": "ticket.created", "at": "2026-11-02T09:00:00Z", "ticket": {
            **ticket, "id": "T-1", "account": {"id": "A", "tier": "Enterprise", "arr": "120,000"}}}),
        json.dumps({"type": "ticket.created", "at": "2026-11-02T09:01:00Z", "ticket": {
            **ticket, "id": "T-2", "account": {"id": "B", "fields": {"tier": "platinum", "arr": 5}}}}),
    ]
    rp = Replay(Config(**config))
    finals = {d["ticket_id"]: d for d in rp.run(lines) if d.get("final")}
    assert finals["T-1"]["tags"] == ["hit/arr", "hit/tier"]
    assert finals["T-2"]["tags"] == []
    assert len(rp.problems) == 1 and rp.problems[0].startswith("line 2: replay ticket T-2: account ")
    assert "platinum" in rp.problems[0] and "value dropped" in rp.problems[0]


def test_a_timer_due_at_the_last_events_instant_fires_without_until() -> None:
    config = {**CONFIG, "follow_up": {"after": "1h"}}
    lines = [
        created("T-1", "2026-11-02T09:00:00Z"),
        event("ticket.status", "2026-11-02T10:00:00Z", ticket_id="T-1", status="pending"),
        created("T-2", "2026-11-02T11:00:00Z"),  # the last event, at the follow-up's very instant
    ]
    for until in (None, datetime(2026, 11, 2, 11, 0, tzinfo=UTC)):
        out, _ = run(lines, config, until=until)
        assert [(d["at"], d["ticket_id"]) for d in out if d.get("decision") == "follow_up"] == [
            ("2026-11-02T11:00:00Z", "T-1")
        ]


def test_a_ticket_created_as_the_desk_opens_does_not_jump_the_queue() -> None:
    config = {
        "calendars": {"day": {"hours": {"mon": ["09:00-17:00"]}}},
        "agents": [{"email": "a@x.example", "capacity": 1, "calendar": "day"}],
    }
    for at, first in (("2026-11-02T09:00:00Z", "T-old"), ("2026-11-02T09:00:01Z", "T-old")):
        out, rp = run([created("T-old", "2026-11-02T07:00:00Z"), created("T-new", at)], config)
        assigned = [(d["ticket_id"], d["at"]) for d in out if d.get("decision") == "assign"]
        assert assigned == [(first, "2026-11-02T09:00:00Z")], at  # the one seat goes to the oldest
        assert rp.problems == []


def test_an_inline_account_in_an_update_is_coerced_as_at_creation() -> None:
    config = {
        "fields": {
            "tier": {"type": "select", "options": ["enterprise", "starter"], "kind": "account"},
            "arr": {"type": "number", "kind": "account"},
        },
        "rules": [
            {"name": "big", "set": "triggers", "when": {"field": "account.arr", "gte": 100000},
             "then": [{"add_tags": ["vip/arr"]}]},
            {"name": "ent", "set": "triggers", "when": {"field": "account.tier", "eq": "enterprise"},
             "then": [{"add_tags": ["vip/tier"]}]},
        ],
    }
    account = {"id": "A-1", "tier": "Enterprise", "arr": "120,000"}
    lines = [
        created("T-1", "2026-11-02T09:00:00Z", account={"id": "A-1", "tier": "starter", "arr": 10}),
        event("ticket.updated", "2026-11-02T09:05:00Z", ticket_id="T-1", changes={"account": account}),
        event("ticket.updated", "2026-11-02T09:06:00Z", ticket_id="T-1",
              changes={"account": {"id": "A-1", "tier": "platinum"}}),
    ]
    out, rp = run(lines, config)
    [final] = [d for d in out if d.get("final")]
    assert sorted(final["tags"]) == ["vip/arr", "vip/tier"]
    assert rp.problems == [
        "line 3: replay ticket T-1: account field 'tier': 'platinum' is not an option of this select; "
        "options: enterprise, starter; value dropped"
    ]


def test_text_that_is_not_valid_unicode_is_reported_by_line_and_skipped(tmp_path: Any) -> None:
    from bridge.replay import replay_file

    path = tmp_path / "events.jsonl"
    good = created("T-1", "2026-11-02T09:00:00Z").encode()
    latin1 = created("T-2", "2026-11-02T09:01:00Z").encode()
    latin1 = latin1.replace(b'"subject": "s"', b'"subject": "caf\xe9"')
    assert b"\xe9" in latin1
    surrogate = created("T-3", "2026-11-02T09:02:00Z", tags=["bug/x"])
    surrogate = surrogate.replace("bug/x", "bug/\\ud800").encode()
    path.write_bytes(b"\n".join([good, latin1, surrogate, good.replace(b"T-1", b"T-4")]) + b"\n")
    out, problems = replay_file(Config(**CONFIG), path)
    assert [d["ticket_id"] for d in out if d.get("final")] == ["T-1", "T-4"]
    assert problems == [
        "line 2: not UTF-8 text; skipped",
        "line 3: ticket.created: text with a lone surrogate (\\ud800) is not valid Unicode; skipped",
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (event("ticket.updated", "2026-11-02T09:05:00Z", ticket_id="T-1", changes=["priority", "high"]),
         "line 2: ticket.updated: changes must be an object, not ['priority', 'high']; skipped"),
        (event("ticket.updated", "2026-11-02T09:05:00Z", ticket_id="T-1", changes={"fields": "Sev-1"}),
         "line 2: ticket.updated: fields must be an object, not 'Sev-1'; skipped"),
        (event("ticket.updated", "2026-11-02T09:05:00Z", ticket_id="T-1", changes={"acknowledged": "no"}),
         "line 2: ticket.updated: acknowledged must be true or false, not 'no'; skipped"),
        (created("T-2", "2026-11-02T09:05:00Z", fields="Sev-1"),
         "line 2: ticket.created: fields must be an object, not 'Sev-1'; skipped"),
        (created("T-2", "2026-11-02T09:05:00Z", account="Acme"),
         "line 2: ticket.created: account must be an object, not 'Acme'; skipped"),
        (created("T-2", "2026-11-02T09:05:00Z", requester=["a@b.example"]),
         "line 2: ticket.created: requester must be an object, not ['a@b.example']; skipped"),
    ],
)
def test_a_wrong_shaped_value_is_named_and_its_event_skipped(line: str, problem: str) -> None:
    out, rp = run([created("T-1", "2026-11-02T09:00:00Z"), line])
    assert rp.problems == [problem]
    [final] = [d for d in out if d.get("final") and d["ticket_id"] == "T-1"]
    assert final["priority"] != "high"


@pytest.mark.parametrize("when", ["9999-12-31T00:00:00Z", "0001-01-01T00:00:00Z"])
def test_an_event_dated_out_of_the_clocks_range_is_reported_and_skipped(when: str) -> None:
    # a follow-up 48 hours after 9999-12-31 would overflow: the line is refused, the other tickets go on
    lines = [created("T-1", "2026-11-02T09:00:00Z"), created("T-2", when, status="pending"),
             event("ticket.status", "2026-11-02T10:00:00Z", ticket_id="T-1", status="pending")]
    out, rp = run(lines, {**CONFIG, "follow_up": {"after": "48h"}}, until=datetime(2026, 11, 5, tzinfo=UTC))
    assert rp.problems[0] == f"line 2: ticket.created: 'at' '{when}' is out of range (years 1900 to 9000)"
    assert [d["decision"] for d in out if not d.get("final")] == ["follow_up"]
    assert [d["ticket_id"] for d in out if d.get("final")] == ["T-1"]


def test_lines_json_cannot_read_or_python_cannot_nest_are_reported_and_skipped() -> None:
    lines = [
        '{"type": "ticket.created", "at": "2026-11-02T09:00:00Z", "ticket": {"id": "T-1", "sentiment": NaN}}',
        "[" * 100_000 + "]" * 100_000,
        created("T-2", "2026-11-02T09:05:00Z"),
    ]
    out, rp = run(lines)
    assert rp.problems == ["line 1: not JSON: NaN is not a JSON value", "line 2: not JSON: nested too deep"]
    assert [d["ticket_id"] for d in out if d.get("final")] == ["T-2"]  # the run went on
    json.loads(json.dumps(out, allow_nan=False))  # and its output is JSON


@pytest.mark.parametrize("bad", [-5000, 101, "abc", True, [1], "-500", "nan", ""])
def test_a_sentiment_off_the_scale_is_reported_and_computed_instead(bad: Any) -> None:
    when = {"field": "ticket.sentiment", "lte": -50}
    config = {"rules": [{"name": "sad", "set": "escalation", "when": when, "then": [{"escalate": "leads"}]}],
              "teams": {"leads": {"members": []}}}
    lines = [
        created("T-1", "2026-11-02T09:00:00Z", sentiment=bad),
        event("ticket.message", "2026-11-02T09:10:00Z", ticket_id="T-1", author="customer", body="thanks",
              sentiment=bad),
        event("ticket.updated", "2026-11-02T09:20:00Z", ticket_id="T-1", changes={"sentiment": bad}),
    ]
    out, rp = run(lines, config)
    assert [p.split(":")[0] for p in rp.problems] == ["line 1", "line 2", "line 3"]
    assert all(f"sentiment {bad!r} is not a number from -100 to 100; dropped" in p for p in rp.problems)
    [final] = [d for d in out if d.get("final")]
    assert -100 <= final["sentiment"] <= 100 and final["escalations"] == []  # computed from "thanks"


@pytest.mark.parametrize("given", ["-40", " -40.0 ", -40])
def test_a_sentiment_sent_as_text_stands_as_its_number(given: Any) -> None:
    # what a system sends as text ("-40") is that number: it stands, as any supplied sentiment does
    when = {"field": "ticket.sentiment", "lte": -35}
    config = {"rules": [{"name": "sad", "set": "escalation", "when": when, "then": [{"escalate": "leads"}]}],
              "teams": {"leads": {"members": []}}}
    lines = [created("T-1", "2026-11-02T09:00:00Z", subject="Thanks, great help", sentiment=given),
             event("ticket.message", "2026-11-02T09:10:00Z", ticket_id="T-1", author="customer",
                   body="Thanks again, great", sentiment="-41")]
    out, rp = run(lines, config)
    assert rp.problems == []
    [final] = [d for d in out if d.get("final")]
    assert final["sentiment"] == -41 and final["escalations"] == ["leads"]
    assert [d["at"] for d in out if d.get("decision") == "escalate"] == ["2026-11-02T09:00:00Z"]


def test_a_status_in_other_letter_case_is_taken() -> None:
    lines = [created("T-1", "2026-11-02T09:00:00Z", status="Open"),
             event("ticket.status", "2026-11-02T09:10:00Z", ticket_id="T-1", status="Pending"),
             event("ticket.updated", "2026-11-02T09:20:00Z", ticket_id="T-1", changes={"status": "RESOLVED"})]
    out, rp = run(lines)
    assert rp.problems == []
    [final] = [d for d in out if d.get("final")]
    assert final["status"] == "resolved"


def test_a_priority_in_other_letter_case_is_taken_and_an_unknown_one_reported() -> None:
    when = {"field": "ticket.priority", "gte": "high"}
    config = {"rules": [{"name": "hot", "set": "escalation", "when": when, "then": [{"escalate": "leads"}]}],
              "teams": {"leads": {"members": []}}}
    lines = [
        created("T-1", "2026-11-02T09:00:00Z", priority="Urgent"),
        created("T-2", "2026-11-02T09:01:00Z", priority="normal"),
        event("ticket.updated", "2026-11-02T09:02:00Z", ticket_id="T-2", changes={"priority": "HIGH"}),
        created("T-3", "2026-11-02T09:03:00Z", priority="P1"),
    ]
    out, rp = run(lines, config)
    assert rp.problems == [
        "line 4: replay ticket T-3: priority 'P1' is not one of low, normal, high, urgent; kept as given "
        "(no priority rule ranks it)"
    ]
    assert [(d["ticket_id"], d["to"]) for d in out if d.get("decision") == "escalate"] == [
        ("T-1", "leads"), ("T-2", "leads")
    ]
    finals = {d["ticket_id"]: d["priority"] for d in out if d.get("final")}
    assert finals == {"T-1": "urgent", "T-2": "high", "T-3": "P1"}


def test_a_null_sentiment_is_none_given_so_it_is_computed() -> None:
    angry = "This is terrible, awful and unacceptable, I am furious"
    lines = [
        created("T-1", "2026-11-02T09:00:00Z", subject=angry, sentiment=None),
        created("T-2", "2026-11-02T09:01:00Z", subject="thanks", sentiment=30),
        event("ticket.message", "2026-11-02T09:10:00Z", ticket_id="T-2", author="customer", body=angry,
              sentiment=None),
    ]
    out, rp = run(lines, {})
    assert rp.problems == []
    finals = {d["ticket_id"]: d["sentiment"] for d in out if d.get("final")}
    assert finals["T-1"] < -35 and finals["T-2"] < -35


def test_an_update_of_part_of_the_account_or_requester_keeps_the_rest() -> None:
    rules = [
        {"name": "alice-ent", "when": {"all": [{"field": "account.owner", "eq": "alice@x.example"},
                                                {"field": "account.tier", "eq": "enterprise"}]},
         "then": [{"add_tags": ["x/alice-ent"]}]},
        {"name": "owner-changed", "when": {"field": "account.owner", "changed": True},
         "then": [{"add_tags": ["x/owner-changed"]}]},
        {"name": "email-changed", "when": {"field": "requester.email", "changed": True},
         "then": [{"add_tags": ["x/email-changed"]}]},
    ]
    lines = [
        created("T-1", "2026-11-02T09:00:00Z", tags=[],
                requester={"email": "ceo@acme.example", "language": "en"},
                account={"id": "A-1", "tier": "growth", "owner": "alice@x.example",
                         "fields": {"region": "emea"}}),
        event("ticket.updated", "2026-11-02T09:10:00Z", ticket_id="T-1",
              changes={"account": {"tier": "enterprise"}, "requester": {"language": "fr"}}),
        # another account altogether is taken whole
        created("T-2", "2026-11-02T09:20:00Z", tags=[], account={"id": "A-1", "owner": "alice@x.example"}),
        event("ticket.updated", "2026-11-02T09:30:00Z", ticket_id="T-2", changes={"account": {"id": "A-2"}}),
    ]
    out, rp = run(lines, {"rules": rules})
    decisions = [(d["ticket_id"], d["tag"]) for d in out if d.get("decision") == "tag"]
    assert decisions == [("T-1", "x/alice-ent"), ("T-2", "x/owner-changed")]
    assert rp.problems == []


def test_a_rules_tag_glob_holds_for_the_declared_synonyms_of_the_tags_it_matches() -> None:
    rules = [
        {"name": "billing", "when": {"tag": "billing/*"}, "then": [{"add_tags": ["x/billing"]}]},
        {"name": "refund", "when": {"all": [{"tag": "refund"}]}, "then": [{"add_tags": ["x/refund"]}]},
        {"name": "sev1", "when": {"tag": "bug/sev1"}, "then": [{"add_tags": ["x/sev1"]}]},
    ]
    config = {"rules": rules, "taxonomy": {"synonyms": {"billing/refund": ["refund", "billing/refunds"]}}}
    lines = [created("T-1", "2026-11-02T09:00:00Z", tags=["refund"]),
             created("T-2", "2026-11-02T09:01:00Z", tags=["billing/refunds"]),
             created("T-3", "2026-11-02T09:02:00Z", tags=["bug/other"])]
    out, _rp = run(lines, config)
    tagged = sorted((d["ticket_id"], d["tag"]) for d in out if d.get("decision") == "tag")
    assert tagged == [("T-1", "x/billing"), ("T-1", "x/refund"), ("T-2", "x/billing"), ("T-2", "x/refund")]
