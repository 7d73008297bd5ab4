"""``bridge report``: each metric from a replayed recording whose numbers are worked out by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.report import format_report, from_replay
from bridge.settings import Config


def event(kind: str, at: str, **body: Any) -> str:
    return json.dumps({"type": kind, "at": f"2026-11-{at}:00Z", **body})


def created(tid: str, at: str, **ticket: Any) -> str:
    return event("ticket.created", at, ticket={"id": tid, "subject": "s", "body": "b", "status": "open",
                                               "sentiment": 0, **ticket})


def msg(tid: str, at: str, author: str) -> str:
    return event("ticket.message", at, ticket_id=tid, author=author, body="hello")


def status(tid: str, at: str, value: str) -> str:
    return event("ticket.status", at, ticket_id=tid, status=value)


CONFIG = {
    "classify": {"keywords": {"billing/refund": ["refund"]}},
    "teams": {"leads": {"members": []}},
    "rules": [{"name": "hot", "set": "escalation", "when": {"field": "ticket.priority", "eq": "urgent"},
               "then": [{"escalate": "leads"}]}],
}
LINES = sorted([  # (in time order, as a recording is; stable for one instant)
    # T-1: answered in 30 min, resolved after that one reply: first contact resolution
    created("T-1", "02T09:00", tags=["bug/ui"]),
    msg("T-1", "02T09:30", "agent"),
    status("T-1", "02T11:00", "resolved"),
    # T-2: answered in 90 min; the customer writes again; resolved, reopened, resolved: no FCR, one reopen
    created("T-2", "02T10:00", tags=["bug/ui", "billing/invoice"], priority="urgent"),
    msg("T-2", "02T11:30", "agent"),
    msg("T-2", "02T12:00", "customer"),
    status("T-2", "02T14:00", "resolved"),
    status("T-2", "03T09:00", "open"),
    status("T-2", "03T10:00", "resolved"),
    # T-3: classified (no tags given), never answered, pending: in the backlog; its classifier tag removed
    created("T-3", "03T12:00", subject="refund please", body="refund"),
    status("T-3", "03T13:00", "pending"),
    event("ticket.updated", "03T14:00", ticket_id="T-3", changes={"tags": ["how-to/setup"]}),
    # T-4: classified and kept, open, acknowledged by an update
    created("T-4", "05T08:00", subject="refund", body="a refund"),
    event("ticket.updated", "05T08:20", ticket_id="T-4", changes={"acknowledged": True}),
], key=lambda line: str(json.loads(line)["at"]))


def report(at: datetime | None = None) -> dict[str, Any]:
    problems: list[str] = []
    builder, end = from_replay(Config(**CONFIG), LINES, at, problems)
    assert problems == []
    return builder.report(at or end)


def test_each_metric_as_worked_out_by_hand() -> None:
    r = report(datetime(2026, 11, 10, 0, 0, tzinfo=UTC))
    assert r["at"] == "2026-11-10T00:00:00Z" and r["tickets"] == 4
    # first responses: 30, 90 and 20 minutes (T-4's acknowledgement); T-3 none
    assert r["frt"] == {"count": 3, "unit": "minutes", "median": 30.0, "p90": 90.0, "mean": 46.7}
    # first resolves: T-1 after 2 h, T-2 after 4 h
    assert r["ttr"] == {"count": 2, "unit": "hours", "median": 3.0, "p90": 4.0, "mean": 3.0}
    assert r["fcr"] == {"resolved": 2, "first_contact": 1, "rate": 0.5}
    assert r["escalation_rate"] == {"tickets": 4, "escalated": 1, "rate": 0.25}
    assert r["reopens"] == {"tickets": 1, "reopens": 1, "rate": 0.5}
    assert r["backlog"] == {"total": 2, "open": 1, "pending": 1, "on_hold": 0}
    assert r["ai"] == {"proposed": 2, "accepted": 1, "rate": 0.5, "reviews": 0}
    by_tag = {row["tag"]: row for row in r["by_tag"]}
    assert by_tag["bug/ui"] == {"tag": "bug/ui", "volume": 2, "open": 0,
                                "aging": {"<1d": 0, "1-3d": 0, "3-7d": 0, ">7d": 0}}
    # T-3 opened on the 3rd (6.5 days before the report), T-4 on the 5th (4.7 days)
    assert by_tag["how-to/setup"]["aging"] == {"<1d": 0, "1-3d": 0, "3-7d": 1, ">7d": 0}
    assert by_tag["billing/refund"]["aging"]["3-7d"] == 1
    assert r["by_tag"][0]["tag"] == "bug/ui"  # the busiest first


def test_backlog_ages_at_the_replay_end_by_default() -> None:
    r = report()
    assert r["at"] == "2026-11-05T08:20:00Z"
    by_tag = {row["tag"]: row for row in r["by_tag"]}
    assert by_tag["how-to/setup"]["aging"]["1-3d"] == 1 and by_tag["billing/refund"]["aging"]["<1d"] == 1


@pytest.mark.parametrize("done", ["resolved", "closed"])
def test_a_ticket_created_done_counts_as_resolved_at_once(done: str) -> None:
    problems: list[str] = []
    builder, end = from_replay(Config(), [created("T-1", "02T09:00", status=done)], None, problems)
    r = builder.report(end)
    assert r["ttr"]["median"] == 0.0 and r["backlog"]["total"] == 0


def test_the_text_form_names_every_metric() -> None:
    text = format_report(report(datetime(2026, 11, 10, tzinfo=UTC)))
    for words in ("first response time   median 30.0 minutes, p90 90.0, mean 46.7 (3 tickets)",
                  "first contact res.    50.0% (1 of 2 resolved)", "escalation rate       25.0% (1 of 4)",
                  "reopens               1 on 1 tickets (50.0% of resolved)",
                  "backlog               2 (open 1, pending 1, on_hold 0)",
                  "AI acceptance rate    50.0% (1 of 2 classifier tags kept; 0 sent to review)"):
        assert words in text


def lives(lines: list[str], config: dict[str, Any] | None = None, at: datetime | None = None
          ) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    builder, end = from_replay(Config(**(config or {})), lines, at, problems)
    return builder.report(at or end), problems


def test_a_resolve_by_a_rule_counts_when_the_rule_made_it() -> None:
    rule = {"name": "done", "set": "triggers", "when": {"field": "ticket.text", "contains": "solved"},
            "then": [{"set": {"status": "resolved"}}]}
    r, _ = lives([created("T-1", "02T09:00"), msg("T-1", "02T15:00", "customer").replace("hello", "solved")],
                 {"rules": [rule]})
    assert r["ttr"]["median"] == 6.0 and r["backlog"]["total"] == 0


def test_only_what_the_replay_took_counts_at_the_time_it_took_it() -> None:
    lines = [
        created("T-1", "02T09:00", tags="oops"),  # skipped by the replay: not a list of strings
        msg("T-1", "02T09:30", "agent"),
        created("T-2", "02T10:00"),
        msg("T-2", "02T09:30", "agent"),  # out of order: taken at 10:00
    ]
    r, problems = lives(lines)
    assert r["tickets"] == 1 and r["frt"]["median"] == 0.0 and len(problems) == 3


def test_first_contact_resolution_counts_agent_messages_and_every_customer_message_after_the_reply() -> None:
    ack = event("ticket.updated", "02T09:05", ticket_id="T-1", changes={"acknowledged": True})
    screenshot = [created("T-1", "02T09:00"), ack, msg("T-1", "02T09:10", "customer"),
                  msg("T-1", "02T09:30", "agent"), status("T-1", "02T10:00", "resolved")]
    assert lives(screenshot)[0]["fcr"]["first_contact"] == 1  # the customer wrote before the reply
    still_broken = [created("T-1", "02T09:00"), msg("T-1", "02T09:30", "agent"),
                    status("T-1", "02T10:00", "resolved"), msg("T-1", "02T11:00", "customer")]
    assert lives(still_broken)[0]["fcr"]["first_contact"] == 0  # ... not after it


def test_the_backlog_is_as_it_was_at_the_reports_time() -> None:
    lines = [created("T-1", "02T09:00"), status("T-1", "03T09:00", "pending"), created("T-2", "04T09:00"),
             status("T-1", "05T09:00", "resolved")]
    early, problems = lives(lines, at=datetime(2026, 11, 3, 12, 0, tzinfo=UTC))
    assert problems == []  # an --at before the end is the report's time, no problem
    assert early["at"] == "2026-11-03T12:00:00Z"
    assert early["backlog"] == {"total": 1, "open": 0, "pending": 1, "on_hold": 0}  # T-2 not created yet
    end, _ = lives(lines)
    assert end["backlog"] == {"total": 1, "open": 1, "pending": 0, "on_hold": 0}


def test_the_median_of_an_even_count_is_between_the_middle_two() -> None:
    lines = [created("T-1", "02T09:00"), msg("T-1", "02T09:10", "agent"),
             created("T-2", "02T10:00"), msg("T-2", "02T10:30", "agent")]
    assert lives(lines)[0]["frt"]["median"] == 20.0


def test_the_store_counts_a_reply_and_a_resolve_in_one_change_as_a_first_contact_resolution(
    tmp_path: Path,
) -> None:
    # the helpdesk's usual "reply and solve": one change carries the agent's message and the resolve
    (tmp_path / "bridge.toml").write_text(
        '[bridge]\ndatabase = "sqlite:///bridge.db"\n[connectors.inbox]\nplugin = "files"\npath = "inbox"\n'
        'kinds = ["ticket"]\n')
    (tmp_path / "inbox").mkdir()
    lines = [{"kind": "ticket", "id": "T-1", "updated_at": "2026-11-02T10:00:00Z", "subject": "q",
              "status": "open"},
             {"kind": "ticket", "id": "T-1", "updated_at": "2026-11-02T10:30:00Z", "status": "resolved",
              "message": "here is the answer", "last_author": "agent"}]
    (tmp_path / "inbox" / "a.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = [sys.executable, "-m", "bridge.cli", "--config", "bridge.toml"]
    assert subprocess.run([*run, "sync"], cwd=tmp_path, capture_output=True, check=False).returncode == 0
    res = subprocess.run([*run, "report", "--json", "--at", "2026-11-02T12:00:00Z"], cwd=tmp_path,
                         capture_output=True, text=True, check=False)
    report = json.loads(res.stdout)
    assert report["fcr"] == {"resolved": 1, "first_contact": 1, "rate": 1.0}
    assert report["frt"]["median"] == 30.0 and report["ttr"]["median"] == 0.5


def test_a_volume_check_in_is_no_escalation_of_the_ticket_it_came_with() -> None:
    # the volume trigger's task is about the account: the final state's escalations leave it out, so does
    # the escalation rate; a rule's escalation counts
    from bridge.report import ReportBuilder

    builder = ReportBuilder()
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    for tid in ("T-1", "T-2"):
        builder.created(tid, at, "open", [])
    volume = {"at": "2026-11-02T09:00:00Z", "decision": "escalate", "rule": "volume", "reason": "volume",
              "to": "owner@x.example"}
    life = builder.get("T-1")
    assert life is not None
    life.decision(volume)
    other = builder.get("T-2")
    assert other is not None
    other.decision({**volume, "rule": "hot", "reason": None, "to": "leads"})
    assert builder.report(at)["escalation_rate"] == {"tickets": 2, "escalated": 1, "rate": 0.5}
