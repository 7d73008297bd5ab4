"""Replay in process: time order, final states, given values, bad lines, closed tickets dropped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

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
