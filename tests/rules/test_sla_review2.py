"""SLA clocks as a differential fuzzer (a minute-by-minute model) found them wanting: every event of an
instant comes before the timers of that instant, so a clock met by a later event of the instant is in time;
a reopen into a paused status states what the time used has passed; what falls due at a close is stated."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.replay import Replay
from bridge.settings import Config

CREATED = {"type": "ticket.created", "at": "2026-06-01T10:00:00Z",
           "ticket": {"id": "T-1", "subject": "help", "body": "it broke", "status": "open", "tags": []}}
UNTIL = datetime(2026, 6, 2, 12, tzinfo=UTC)


def t(hm: str) -> str:
    return f"2026-06-01T{hm}:00Z"


def status(hm: str, what: str) -> dict[str, Any]:
    return {"type": "ticket.status", "at": t(hm), "ticket_id": "T-1", "status": what}


def message(hm: str, author: str) -> dict[str, Any]:
    return {"type": "ticket.message", "at": t(hm), "ticket_id": "T-1", "author": author, "body": "x"}


def sla_decisions(policy: dict[str, Any], events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(at, decision, metric or team) of the SLA decisions of one replay; ``late`` ones end in ``late``."""
    rp = Replay(Config(sla=[{"name": "p", **policy}], teams={"leads": {"members": []}}), until=UNTIL)
    out = [d for d in rp.run([json.dumps(e) for e in [CREATED, *events]]) if not d.get("final")]
    assert rp.problems == []
    return [(d["at"], d["decision"], (d.get("to") or d["metric"]) + (" late" if d.get("late") else ""))
            for d in out if d["decision"] in ("sla_warning", "sla_breach", "escalate")]


@pytest.mark.parametrize("first", ["agent", "status"])
def test_a_resolve_at_the_deadline_after_another_event_of_that_instant_is_in_time(first: str) -> None:
    reply = [message("12:00", "agent")] if first == "agent" else [status("12:00", "pending")]
    assert sla_decisions({"resolution": "2h", "pause_on": []}, [*reply, status("12:00", "resolved")]) == []


def test_a_reply_at_the_deadline_after_the_customers_message_of_that_instant_is_in_time() -> None:
    events = [message("10:30", "customer"), message("10:30", "agent")]
    assert sla_decisions({"first_response": "30m"}, events) == []
    # the customer's message alone leaves the breach to the timer of the instant
    breach = [(t("10:30"), "sla_breach", "first_response")]
    assert sla_decisions({"first_response": "30m"}, events[:1]) == breach


def test_a_resolve_at_an_escalation_instant_leaves_the_level_for_a_reopen() -> None:
    policy = {"first_response": "10m", "escalate": [{"after": "5m", "to": "leads"}]}
    breach = (t("10:10"), "sla_breach", "first_response")
    assert sla_decisions(policy, [status("10:15", "resolved")]) == [breach]
    assert sla_decisions(policy, [status("10:15", "resolved"), status("11:00", "open")]) == [
        breach, (t("11:00"), "escalate", "leads late")]


@pytest.mark.parametrize("reopened", ["pending", "open"])
def test_a_reopen_with_no_time_left_breaches_at_the_reopen_even_into_a_paused_status(reopened: str) -> None:
    events = [status("10:10", "resolved"), status("11:00", reopened), status("12:00", "resolved")]
    assert sla_decisions({"resolution": "10m", "pause_on": ["pending", "on_hold"]}, events) == [
        (t("11:00"), "sla_breach", "resolution late")]


@pytest.mark.parametrize("done", ["resolved", "closed"])
def test_a_breach_due_as_the_ticket_closes_is_stated(done: str) -> None:
    assert sla_decisions({"first_response": "10m"}, [status("10:10", done)]) == [
        (t("10:10"), "sla_breach", "first_response")]
