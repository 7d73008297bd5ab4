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


# ---------------------------------------------------------------- policy switches (a second model)

URGENT = {"name": "urgent", "when": {"all": [{"field": "ticket.priority", "eq": "urgent"}]}}


def switch_decisions(
    policies: list[dict[str, Any]], events: list[dict[str, Any]]
) -> list[tuple[str, str, str]]:
    """As :func:`sla_decisions`, with several policies, for a ticket created with priority normal."""
    created = {**CREATED, "ticket": {**CREATED["ticket"], "priority": "normal"}}
    rp = Replay(Config(sla=policies, teams={"tier2": {"members": []}}), until=UNTIL)
    out = [d for d in rp.run([json.dumps(e) for e in [created, *events]]) if not d.get("final")]
    assert rp.problems == []
    return [(d["at"], d["decision"], (d.get("to") or d["metric"]) + (" late" if d.get("late") else ""))
            for d in out if d["decision"] in ("sla_warning", "sla_breach", "escalate")]


def priority(hm: str, value: str, **more: Any) -> dict[str, Any]:
    return {"type": "ticket.updated", "at": t(hm), "ticket_id": "T-1", "changes": {"priority": value, **more}}


@pytest.mark.parametrize("catch_all", [True, False])
def test_a_reply_at_the_deadline_of_a_policy_a_switch_at_it_chose_is_in_time(catch_all: bool) -> None:
    policies = [{**URGENT, "first_response": "30m"}] + ([{"name": "standard", "first_response": "2h"}]
                                                       if catch_all else [])
    assert switch_decisions(policies, [priority("10:30", "urgent"), message("10:30", "agent")]) == []
    # without the reply, the urgent policy's breach is stated at that instant
    assert switch_decisions(policies, [priority("10:30", "urgent")]) == [(t("10:30"), "sla_breach",
                                                                          "first_response")]


def test_a_resolve_at_the_deadline_after_another_event_of_it_leaves_the_used_up_budget_for_a_reopen() -> None:
    events = [message("12:00", "agent"), status("12:00", "resolved"), status("15:00", "open")]
    assert sla_decisions({"resolution": "2h"}, events) == [(t("15:00"), "sla_breach", "resolution late")]


@pytest.mark.parametrize("reopened", ["open", "on_hold"])
@pytest.mark.parametrize("to", ["urgent", "low"])
def test_a_reopen_that_switches_the_policy_states_nothing_of_the_old_one(reopened: str, to: str) -> None:
    policies = [{**URGENT, "resolution": "8h"},
                {"name": "standard", "when": {"all": [{"field": "ticket.priority", "eq": "normal"}]},
                 "resolution": "1h", "escalate": [{"after": "1h", "to": "tier2"}]}]
    events = [status("12:00", "resolved"), priority("15:00", to, status=reopened)]
    # the escalation due as it resolved waited for a reopen, which brings another policy (or none)
    assert switch_decisions(policies, events) == [(t("11:00"), "sla_breach", "resolution")]


def test_what_passed_while_resolved_waits_through_a_reopen_and_resolve_of_one_instant() -> None:
    policies = [{**URGENT, "first_response": "10m"}, {"name": "standard", "first_response": "2h"}]
    events = [status("10:30", "resolved"), priority("11:00", "urgent"),  # urgent's 10m passed while resolved
              status("12:00", "open"), status("12:00", "resolved")]  # reopened and resolved in one instant
    assert switch_decisions(policies, events) == []
    assert switch_decisions(policies, [*events, status("13:00", "open")]) == [
        (t("13:00"), "sla_breach", "first_response late")]
