"""Routing as a third review found it wanting: a waiting ticket whose own change makes a free agent fit it is
routed then (not after newer tickets); `skills` takes an assign naming an agent or a team even when none of
them has the ticket's skills; a ticket handed back, or reopened after waiting, is routed for what its rule
asked while the rule holds; and the seat a hand-back frees goes to the tickets already waiting first."""

from __future__ import annotations

from typing import Any

from test_routing_fixes import assigns, at, created, event

A, B = "a@x.com", "b@x.com"
BILLING = {"name": "billing", "set": "routing", "when": {"tag": "billing/*"},
           "then": [{"assign": {"skill": "billing"}}]}


def two(strategy: str, a: dict[str, Any] | None = None, b: dict[str, Any] | None = None,
        **config: Any) -> dict[str, Any]:
    return {"routing": {"strategy": strategy},
            "agents": [{"email": A, **(a or {})}, {"email": B, **(b or {})}], **config}


def test_a_waiting_ticket_whose_account_owner_changes_to_a_free_agent_goes_to_them_then() -> None:
    lines = [
        created("T1", at("09:00"), account={"id": "A1", "owner": A}),
        created("T2", at("09:01"), account={"id": "A1", "owner": A}),  # waits for a (capacity 1)
        event("ticket.updated", at("09:02"), ticket_id="T2", changes={"account": {"id": "A1", "owner": B}}),
        created("T3", at("09:03"), account={"id": "A1", "owner": "nobody@x.com"}),
    ]
    config = two("account_owner", {"capacity": 1}, {"capacity": 1})
    assert assigns(config, lines) == [(at("09:00"), "T1", "routing", A), (at("09:02"), "T2", "routing", B)]


def test_a_waiting_ticket_retagged_to_a_skill_a_free_agent_has_goes_to_them_then() -> None:
    lines = [
        created("T1", at("09:00"), tags=["bug/x"]),  # nobody has 'bug': it waits (no fallback)
        event("ticket.updated", at("09:05"), ticket_id="T1", changes={"tags": ["billing/x"]}),
        created("T2", at("09:10"), tags=["access/x"]),
    ]
    config = two("skills", {"skills": ["billing"]}, {"skills": ["access"]})
    assert assigns(config, lines) == [(at("09:05"), "T1", "routing", A), (at("09:10"), "T2", "routing", B)]


def test_a_waiting_ticket_whose_rule_stops_holding_is_routed_as_any_ticket() -> None:
    lines = [
        created("T1", at("09:00"), tags=["billing/x"]),
        created("T2", at("09:01"), tags=["billing/x"]),  # waits for the one billing agent
        event("ticket.updated", at("09:02"), ticket_id="T2", changes={"tags": ["how-to/x"]}),
    ]
    config = two("round_robin", {"skills": ["billing"], "capacity": 1}, rules=[BILLING])
    assert assigns(config, lines) == [(at("09:00"), "T1", "billing", A), (at("09:02"), "T2", "routing", B)]


def test_skills_gives_an_assign_naming_an_agent_or_a_team_to_them_without_the_skill() -> None:
    vip = {"name": "vip", "set": "routing", "when": {"field": "account.tier", "eq": "enterprise"}}
    lines = [created("T1", at("09:00"), tags=["billing/x"], account={"id": "A1", "tier": "enterprise"})]
    by_agent = two("skills", {"skills": ["billing"]}, rules=[{**vip, "then": [{"assign": {"agent": B}}]}])
    assert assigns(by_agent, lines) == [(at("09:00"), "T1", "vip", B)]
    by_team = two("skills", {"skills": ["billing"]}, rules=[{**vip, "then": [{"assign": {"team": "t1"}}]}],
                  teams={"t1": {"members": [B]}})
    assert assigns(by_team, lines) == [(at("09:00"), "T1", "vip", B)]


def test_a_ticket_handed_back_is_routed_for_what_its_rule_asked() -> None:
    lines = [
        created("T1", at("09:00"), tags=["billing/x"]),
        event("ticket.updated", at("09:05"), ticket_id="T1", changes={"assignee": None}),
    ]
    config = two("round_robin", {"skills": ["billing"]}, rules=[BILLING])
    # round robin alone would give it to b, who has no billing skill
    assert assigns(config, lines) == [(at("09:00"), "T1", "billing", A), (at("09:05"), "T1", "billing", A)]


def test_a_ticket_reopened_after_waiting_waits_again_for_what_its_rule_asked() -> None:
    lines = [
        created("T1", at("09:00"), tags=["billing/x"]),
        created("T2", at("09:01"), tags=["billing/x"]),  # waits for a
        event("ticket.status", at("09:02"), ticket_id="T2", status="resolved"),
        event("ticket.status", at("09:03"), ticket_id="T2", status="open"),
        event("ticket.status", at("09:04"), ticket_id="T1", status="resolved"),
    ]
    config = two("round_robin", {"skills": ["billing"], "capacity": 1}, rules=[BILLING])
    assert assigns(config, lines) == [(at("09:00"), "T1", "billing", A), (at("09:04"), "T2", "billing", A)]


def test_the_seat_a_hand_back_frees_goes_to_the_ticket_already_waiting() -> None:
    lines = [
        created("T1", at("09:00")),
        created("T2", at("09:01")),
        created("T3", at("09:02")),  # waits: both agents are full
        event("ticket.updated", at("09:05"), ticket_id="T1", changes={"assignee": None}),
    ]
    config = two("round_robin", {"capacity": 1}, {"capacity": 1})
    assert assigns(config, lines) == [
        (at("09:00"), "T1", "routing", A), (at("09:01"), "T2", "routing", B),
        (at("09:05"), "T3", "routing", A)]


def test_a_ticket_an_event_rule_queued_waits_on_for_it_when_the_customer_writes() -> None:
    # T2 (with b) turns urgent: the rule asks for team tier2, whose one agent is full, so T2 waits for it; a
    # customer message changes nothing the rule reads: T2 keeps waiting for tier2 (no assign to b, who has it)
    config = {"routing": {"strategy": "round_robin"}, "teams": {"tier2": {"members": [A]}},
              "agents": [{"email": A, "capacity": 1}, {"email": B}],
              "rules": [{"name": "urgent-to-tier2", "set": "routing",
                         "when": {"field": "ticket.priority", "to": "urgent"},
                         "then": [{"assign": {"team": "tier2"}}]}]}
    lines = [
        created("T1", at("09:00"), priority="urgent"),  # (arrives urgent: no change) round robin: a
        created("T2", at("09:01"), priority="normal"),  # round robin: b
        event("ticket.updated", at("09:02"), ticket_id="T2", changes={"priority": "urgent"}),
        event("ticket.message", at("09:03"), ticket_id="T2", author="customer", body="any news?"),
        event("ticket.status", at("09:10"), ticket_id="T1", status="resolved"),  # a frees a seat
    ]
    assert assigns(config, lines) == [
        (at("09:00"), "T1", "routing", A), (at("09:01"), "T2", "routing", B),
        (at("09:10"), "T2", "urgent-to-tier2", A)]


def test_a_waiting_ticket_whose_rule_stops_holding_stays_with_its_present_assignee_silently() -> None:
    # T2 (with b) is tagged billing: the rule asks for a, who is full, so it waits; retagged, the rule no
    # longer holds: b, who has it and is active, keeps it, with no new assignment
    config = two("round_robin", {"skills": ["billing"], "capacity": 1}, rules=[BILLING])
    lines = [
        created("T1", at("09:00"), tags=["billing/x"]),
        created("T2", at("09:01"), assignee=B),
        event("ticket.updated", at("09:02"), ticket_id="T2", changes={"tags": ["billing/y"]}),
        event("ticket.updated", at("09:03"), ticket_id="T2", changes={"tags": ["how-to/x"]}),
        event("ticket.status", at("09:10"), ticket_id="T1", status="resolved"),
    ]
    assert assigns(config, lines) == [(at("09:00"), "T1", "billing", A)]
