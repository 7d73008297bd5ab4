"""Routing as a fresh review found it wanting: a reopened ticket of an away owner goes where its rule asked; a
ticket handed back does not jump the queue; routing reads the account's declared fields as rules do; and the
rules see an assignment made by routing or the queue in the event that made it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from test_routing_fixes import at, created, event

from bridge.replay import Replay
from bridge.settings import Config

ALICE, BOB, CAROL = "alice@x.com", "bob@x.com", "carol@x.com"


def decisions(config: dict[str, Any], lines: list[str]) -> list[tuple[str, str, str, str, str]]:
    """(at, ticket, decision, rule, to or tag) of each decision of one replay; a problem fails the test."""
    rp = Replay(Config(**config))
    out = list(rp.run(lines))
    assert rp.problems == []
    return [(d["at"], d["ticket_id"], d["decision"], d["rule"], d.get("to") or d.get("tag") or "")
            for d in out if "decision" in d]


def assigns(config: dict[str, Any], lines: list[str]) -> list[tuple[str, str, str, str]]:
    return [(when, tid, rule, to)
            for when, tid, kind, rule, to in decisions(config, lines) if kind == "assign"]


BILLING_RULE = {"name": "billing-team", "set": "routing", "when": {"tag": "billing/*"},
                "then": [{"assign": {"skill": "billing"}}]}


def test_a_reopened_ticket_of_an_away_owner_goes_where_its_rule_asked() -> None:
    config = {
        "routing": {"strategy": "least_loaded"},
        "rules": [BILLING_RULE],
        "agents": [{"email": ALICE, "skills": ["billing"]}, {"email": BOB},
                   {"email": CAROL, "skills": ["billing"]}],
    }
    lines = [
        created("T1", at("09:00"), tags=["billing/refund"]),
        created("T2", at("09:01")),
        created("T3", at("09:02"), tags=["billing/invoice"]),
        event("ticket.status", at("10:00"), ticket_id="T1", status="resolved"),
        event("agent.status", at("10:30"), agent=ALICE, status="away"),
        event("ticket.status", at("11:00"), ticket_id="T1", status="open"),
    ]
    # bob has no billing skill: the rule that routed T1 still holds (it cannot fire again), so carol takes it
    assert assigns(config, lines)[-1] == (at("11:00"), "T1", "billing-team", CAROL)


def test_a_reopened_ticket_whose_rule_stopped_holding_is_routed_as_any_ticket() -> None:
    config = {
        "routing": {"strategy": "least_loaded"},
        "rules": [BILLING_RULE],
        "agents": [{"email": ALICE, "skills": ["billing"]}, {"email": BOB}],
    }
    lines = [
        created("T1", at("09:00"), tags=["billing/refund"]),
        event("ticket.status", at("10:00"), ticket_id="T1", status="resolved"),
        event("agent.status", at("10:30"), agent=ALICE, status="away"),
        event("ticket.updated", at("10:45"), ticket_id="T1", changes={"tags": []}),
        event("ticket.status", at("11:00"), ticket_id="T1", status="open"),
    ]
    assert assigns(config, lines)[-1] == (at("11:00"), "T1", "routing", BOB)


def test_a_ticket_handed_back_takes_its_place_in_the_queue_by_age() -> None:
    config = {"agents": [{"email": ALICE, "capacity": 1}]}
    lines = [
        created("T1", at("09:00")),  # to alice
        created("T2", at("09:01")),  # waits
        created("T3", at("09:02"), assignee=ALICE),  # by hand: alice is over capacity
        event("ticket.status", at("09:03"), ticket_id="T1", status="resolved"),  # alice still full with T3
        event("ticket.updated", at("09:04"), ticket_id="T3", changes={"assignee": None}),  # handed back
    ]
    assert assigns(config, lines) == [
        (at("09:00"), "T1", "routing", ALICE), (at("09:04"), "T2", "routing", ALICE)]


def test_an_older_ticket_handed_back_leaves_its_seat_to_the_ticket_that_waited() -> None:
    # alice handed T0 back: the seat goes to T2, which was waiting, not straight back to her with T0
    config = {"agents": [{"email": ALICE, "capacity": 1}]}
    lines = [
        created("T0", at("08:59"), assignee=ALICE),
        created("T2", at("09:01")),  # waits
        event("ticket.updated", at("09:04"), ticket_id="T0", changes={"assignee": None}),
        event("ticket.status", at("09:10"), ticket_id="T2", status="resolved"),
    ]
    # T0 waits, and takes the seat when it frees again
    assert assigns(config, lines) == [
        (at("09:04"), "T2", "routing", ALICE), (at("09:10"), "T0", "routing", ALICE)]


def test_routing_reads_the_accounts_declared_fields_as_rules_do() -> None:
    fields = {
        "tier": {"type": "select", "kind": "account", "options": ["enterprise", "growth", "starter"],
                 "owner": "bridge"},
        "owner": {"type": "text", "kind": "account", "owner": "bridge"},
    }
    owner = {"fields": fields, "routing": {"strategy": "account_owner"},
             "agents": [{"email": ALICE}, {"email": BOB}]}
    lines = [created("T1", at("09:00"), account={"id": "A-1", "fields": {"owner": BOB}})]
    assert assigns(owner, lines) == [(at("09:00"), "T1", "routing", BOB)]

    tiers = {"fields": fields, "agents": [{"email": ALICE, "capacity": 1}],
             "routing": {"strategy": "least_loaded", "tier_order": ["enterprise", "starter"]}}
    lines = [
        created("T1", at("09:00")),  # to alice: the rest wait
        created("T2", at("09:01"), account={"id": "A-2", "tier": "starter"}),
        created("T3", at("09:02"), account={"id": "A-3", "fields": {"tier": "Enterprise"}}),
        event("ticket.status", at("09:03"), ticket_id="T1", status="resolved"),
    ]
    assert assigns(tiers, lines)[-1] == (at("09:03"), "T3", "routing", ALICE)


ASSIGNEE_RULES = [
    {"name": "to-alice", "set": "triggers", "when": {"field": "ticket.assignee", "eq": ALICE},
     "then": [{"add_tags": ["op/alice"]}]},
    {"name": "assignee-changed", "set": "triggers", "when": {"field": "ticket.assignee", "changed": True},
     "then": [{"add_tags": ["op/moved"]}]},
]


def test_rules_see_default_routings_assignment_in_the_same_event() -> None:
    config = {"rules": ASSIGNEE_RULES, "agents": [{"email": ALICE}]}
    out = decisions(config, [created("T1", at("09:00")), event("ticket.message", at("09:30"), ticket_id="T1",
                                                                 author="customer", body="hello?")])
    assert out == [
        (at("09:00"), "T1", "assign", "routing", ALICE),
        (at("09:00"), "T1", "tag", "assignee-changed", "op/moved"),
        (at("09:00"), "T1", "tag", "to-alice", "op/alice"),
    ]


def test_rules_see_the_queues_assignment_when_a_seat_frees() -> None:
    config = {"rules": ASSIGNEE_RULES, "agents": [{"email": ALICE, "capacity": 1}]}
    out = decisions(config, [
        created("T1", at("09:00")),
        created("T2", at("09:01")),  # waits: alice is full
        event("ticket.status", at("09:05"), ticket_id="T1", status="resolved"),
    ])
    assert [d for d in out if d[1] == "T2"] == [
        (at("09:05"), "T2", "assign", "routing", ALICE),
        (at("09:05"), "T2", "tag", "assignee-changed", "op/moved"),
        (at("09:05"), "T2", "tag", "to-alice", "op/alice"),
    ]


def test_rules_see_the_queues_assignment_when_an_agent_comes_back() -> None:
    config = {"rules": ASSIGNEE_RULES, "agents": [{"email": ALICE, "status": "away"}]}
    out = decisions(config, [
        created("T1", at("09:00")),
        event("agent.status", at("09:10"), agent=ALICE, status="active"),
    ])
    assert out == [
        (at("09:10"), "T1", "assign", "routing", ALICE),
        (at("09:10"), "T1", "tag", "assignee-changed", "op/moved"),
        (at("09:10"), "T1", "tag", "to-alice", "op/alice"),
    ]


@pytest.mark.parametrize("queued", [False, True])
def test_a_status_a_rule_sets_on_routings_assignment_is_taken_at_once(queued: bool) -> None:
    # assigned to the bot's seat, the ticket waits on the customer: its follow-up is armed then, not at the
    # ticket's next event (which may never come)
    config = {
        "rules": [{"name": "bot-waits", "set": "triggers", "when": {"field": "ticket.assignee", "eq": ALICE},
                   "then": [{"set": {"status": "pending"}}]}],
        "agents": [{"email": ALICE, "capacity": 1}],
        "follow_up": {"after": "1h"},
    }
    lines = [created("T1", at("09:00"))]
    if queued:  # T2 waits for alice's seat, which T1's resolve frees
        lines += [created("T2", at("09:01")),
                  event("ticket.status", at("09:05"), ticket_id="T1", status="resolved")]
    rp = Replay(Config(**config), until=datetime(2026, 11, 2, 12, tzinfo=UTC))
    out = list(rp.run(lines))
    assert rp.problems == []
    follow = [(d["at"], d["ticket_id"]) for d in out if d.get("decision") == "follow_up"]
    # (T1, resolved at 09:05 when T2 waits for its seat, has no reminder)
    assert follow == ([(at("10:05"), "T2")] if queued else [(at("10:00"), "T1")])


def test_a_changed_rule_fires_once_when_a_ticket_handed_back_gets_its_seat_again_from_the_queue() -> None:
    # T0 waits for a skill nobody has, so the queue is not empty when T1 is handed back and takes its seat
    config = {
        "agents": [{"email": ALICE, "capacity": 1}],
        "rules": [
            {"name": "billing-skill", "set": "routing", "when": {"tag": "billing/*"},
             "then": [{"assign": {"skill": "billing"}}]},
            {"name": "moved", "set": "triggers", "when": {"field": "ticket.assignee", "changed": True},
             "then": [{"notify": {"to": "lead@x.com", "message": "assignee changed"}}]},
        ],
    }
    out = decisions(config, [
        created("T0", at("09:00"), tags=["billing/refund"]),
        created("T1", at("09:01")),
        event("ticket.updated", at("09:05"), ticket_id="T1", changes={"assignee": None}),
    ])
    assert [d for d in out if d[0] == at("09:05")] == [
        (at("09:05"), "T1", "notify", "moved", "lead@x.com"),
        (at("09:05"), "T1", "assign", "routing", ALICE),
    ]
