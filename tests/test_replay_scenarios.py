"""Issue 5 scenarios through the real replay path: each routing strategy and trigger as configured."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from bridge.replay import Replay
from bridge.settings import Config

A, B, C = "a@example.com", "b@example.com", "c@example.com"
WEEKDAYS = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
DAY = {"timezone": "UTC", "hours": WEEKDAYS}  # Mon 2026-11-02 is the first day of every scenario


def event(kind: str, at: str, **body: Any) -> str:
    return json.dumps({"type": kind, "at": at, **body})


def created(tid: str, at: str, **ticket: Any) -> str:
    base = {"id": tid, "subject": "s", "body": "b", "status": "open", "sentiment": 0}
    return event("ticket.created", at, ticket={**base, **ticket})


def status(tid: str, at: str, value: str) -> str:
    return event("ticket.status", at, ticket_id=tid, status=value)


def agent_status(agent: str, at: str, value: str) -> str:
    return event("agent.status", at, agent=agent, status=value)


def message(tid: str, at: str, author: str, body: str = "hi") -> str:
    return event("ticket.message", at, ticket_id=tid, author=author, body=body)


def at(day: int, hm: str) -> str:
    return f"2026-11-{day:02d}T{hm}:00Z"


def agents(*emails: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"email": e, **extra} for e in emails]


def run(
    config: dict[str, Any], lines: list[str], until: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Decisions and final states (by ticket id) of one replay; a replay problem fails the test."""
    stop = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None
    rp = Replay(Config(**config), until=stop)
    out = list(rp.run(lines))
    assert rp.problems == []
    finals = {d["ticket_id"]: d for d in out if d.get("final")}
    return [d for d in out if not d.get("final")], finals


def brief(decisions: list[dict[str, Any]], *kinds: str) -> list[tuple[str, str, str, str, Any]]:
    """(at, ticket, decision, rule, to or metric) of the decisions of the given kinds."""
    return [
        (d["at"], d["ticket_id"], d["decision"], d["rule"], d.get("to", d.get("metric")))
        for d in decisions
        if d["decision"] in kinds
    ]


# ---------------------------------------------------------------- routing strategies


def test_round_robin_gives_the_least_recently_assigned() -> None:
    config = {"routing": {"strategy": "round_robin"}, "agents": agents(A, B, C)}
    lines = [created(f"T-{n}", at(2, f"09:0{n}")) for n in range(1, 5)]
    decisions, finals = run(config, lines)
    assert brief(decisions, "assign") == [
        (at(2, "09:01"), "T-1", "assign", "routing", A),
        (at(2, "09:02"), "T-2", "assign", "routing", B),
        (at(2, "09:03"), "T-3", "assign", "routing", C),
        (at(2, "09:04"), "T-4", "assign", "routing", A),
    ]
    assert [finals[f"T-{n}"]["assignee"] for n in range(1, 5)] == [A, B, C, A]


def test_least_loaded_gives_the_agent_with_fewest_open_tickets() -> None:
    config = {"routing": {"strategy": "least_loaded"}, "agents": agents(A, B, C)}
    lines = [created(f"T-{n}", at(2, f"09:0{n}")) for n in range(1, 5)]  # a: T-1, T-4; b: T-2; c: T-3
    lines += [status("T-3", at(2, "09:10"), "resolved"), created("T-5", at(2, "09:20"))]
    decisions, finals = run(config, lines)
    # round robin would give b (assigned longest ago); c holds no open ticket now
    assert brief(decisions, "assign")[-1] == (at(2, "09:20"), "T-5", "assign", "routing", C)
    assert [d[4] for d in brief(decisions, "assign")] == [A, B, C, A, C]
    assert finals["T-5"]["assignee"] == C


@pytest.mark.parametrize(
    ("fallback", "second"),
    [
        ("round_robin", [(at(2, "10:00"), "T-2", "assign", "routing", A)]),
        (None, [(at(2, "11:00"), "T-2", "assign", "routing", B)]),  # no fallback: waits for its owner
    ],
)
def test_account_owner_gets_the_ticket_and_an_away_owner_falls_back(
    fallback: str | None, second: list[tuple[str, ...]]
) -> None:
    config = {"routing": {"strategy": "account_owner", "fallback": fallback}, "agents": agents(A, B)}
    account = {"id": "A-1", "tier": "starter", "owner": B}
    lines = [
        created("T-1", at(2, "09:00"), account=account),
        agent_status(B, at(2, "09:30"), "away"),
        created("T-2", at(2, "10:00"), account=account),
        agent_status(B, at(2, "11:00"), "active"),
    ]
    decisions, finals = run(config, lines)
    assert brief(decisions, "assign") == [(at(2, "09:00"), "T-1", "assign", "routing", B), *second]
    assert finals["T-2"]["assignee"] == second[0][4]


@pytest.mark.parametrize(
    ("fallback", "owner", "expected"),
    [
        ("skills", None, B),  # no owner: the fallback decides (B has the billing skill)
        ("skills", "nobody@example.com", B),  # an owner who is no agent: the same
        ("least_loaded", None, B),  # A holds two tickets, B one
        (None, None, A),  # no fallback: round robin (A was assigned least recently)
    ],
)
def test_a_ticket_with_no_owner_to_take_it_goes_to_the_fallback(
    fallback: str | None, owner: str | None, expected: str
) -> None:
    config = {
        "routing": {"strategy": "account_owner", "fallback": fallback},
        "agents": [{"email": A, "skills": ["how-to"]}, {"email": B, "skills": ["billing"]}],
    }
    lines = [
        created("T-1", at(2, "09:00"), account={"id": "A-1", "tier": "starter", "owner": A}),
        created("T-2", at(2, "09:01"), account={"id": "A-1", "tier": "starter", "owner": A}),
        created("T-3", at(2, "09:02"), account={"id": "A-3", "tier": "starter", "owner": B}),
        created("T-4", at(2, "09:05"), tags=["billing/refund"], account={"id": "A-4", "owner": owner}),
    ]
    decisions, finals = run(config, lines)
    assert [d[4] for d in brief(decisions, "assign")] == [A, A, B, expected]
    assert finals["T-4"]["assignee"] == expected


def test_an_assign_skill_rule_picks_an_agent_with_that_skill() -> None:
    config = {
        "agents": [{"email": A, "skills": ["how-to"]}, {"email": B, "skills": ["billing"]}],
        "rules": [
            {
                "name": "billing-to-billing-team",
                "set": "routing",
                "when": {"tag": "billing/*"},
                "then": [{"assign": {"skill": "billing"}}],
            }
        ],
    }
    lines = [created("T-1", at(2, "09:00"), tags=["billing/refund"]), created("T-2", at(2, "09:05"))]
    decisions, finals = run(config, lines)
    assert brief(decisions, "assign") == [
        (at(2, "09:00"), "T-1", "assign", "billing-to-billing-team", B),
        (at(2, "09:05"), "T-2", "assign", "routing", A),
    ]
    assert (finals["T-1"]["assignee"], finals["T-2"]["assignee"]) == (B, A)


def test_skills_strategy_prefers_the_tag_prefix_skill() -> None:
    config = {
        "routing": {"strategy": "skills"},
        "agents": [{"email": A, "skills": ["how-to"]}, {"email": B, "skills": ["billing"]}],
    }
    decisions, _ = run(config, [created("T-1", at(2, "09:00"), tags=["billing/refund"])])
    assert brief(decisions, "assign") == [(at(2, "09:00"), "T-1", "assign", "routing", B)]


def test_an_assign_language_rule_picks_a_speaker() -> None:
    config = {
        "agents": [{"email": A, "languages": ["en"]}, {"email": B, "languages": ["en", "fr"]}],
        "rules": [
            {
                "name": "french",
                "set": "routing",
                "when": {"field": "requester.language", "eq": "fr"},
                "then": [{"assign": {"language": "fr"}}],
            }
        ],
    }
    lines = [
        created("T-1", at(2, "09:00"), requester={"email": "ana@acme.example", "language": "fr"}),
        created("T-2", at(2, "09:05"), requester={"email": "bo@acme.example", "language": "en"}),
    ]
    decisions, finals = run(config, lines)
    assert brief(decisions, "assign") == [
        (at(2, "09:00"), "T-1", "assign", "french", B),
        (at(2, "09:05"), "T-2", "assign", "routing", A),
    ]
    assert (finals["T-1"]["assignee"], finals["T-2"]["assignee"]) == (B, A)


def test_at_capacity_tickets_wait_and_are_assigned_oldest_first() -> None:
    config = {"agents": agents(A, capacity=1)}
    lines = [
        created("T-1", at(2, "09:00")),
        created("T-2", at(2, "09:01")),
        created("T-3", at(2, "09:02")),
        status("T-1", at(2, "10:00"), "resolved"),
        status("T-2", at(2, "11:00"), "closed"),
    ]
    decisions, finals = run(config, lines)
    assert brief(decisions, "assign") == [
        (at(2, "09:00"), "T-1", "assign", "routing", A),
        (at(2, "10:00"), "T-2", "assign", "routing", A),
        (at(2, "11:00"), "T-3", "assign", "routing", A),
    ]
    assert finals["T-3"]["assignee"] == A and finals["T-2"]["status"] == "closed"


def test_tier_order_serves_a_queued_enterprise_ticket_before_an_older_starter_one() -> None:
    config = {"routing": {"tier_order": ["enterprise", "growth", "starter"]}, "agents": agents(A, capacity=1)}
    lines = [
        created("T-1", at(2, "09:00")),
        created("T-2", at(2, "09:01"), account={"id": "S", "tier": "starter"}),
        created("T-3", at(2, "09:02"), account={"id": "E", "tier": "enterprise"}),
        status("T-1", at(2, "10:00"), "resolved"),
    ]
    decisions, finals = run(config, lines)
    assert brief(decisions, "assign") == [
        (at(2, "09:00"), "T-1", "assign", "routing", A),
        (at(2, "10:00"), "T-3", "assign", "routing", A),
    ]
    assert finals["T-2"]["assignee"] is None and finals["T-3"]["assignee"] == A


def test_an_agent_outside_calendar_hours_gets_the_ticket_at_opening() -> None:
    config = {"calendars": {"day": DAY}, "agents": agents(A, calendar="day")}
    decisions, finals = run(config, [created("T-1", at(2, "07:00"))], until=at(2, "12:00"))
    assert brief(decisions, "assign") == [(at(2, "09:00"), "T-1", "assign", "routing", A)]
    assert finals["T-1"]["assignee"] == A


def test_a_reopened_ticket_whose_owner_is_away_is_rerouted() -> None:
    config = {"agents": agents(A, B)}
    lines = [
        created("T-1", at(2, "09:00")),
        status("T-1", at(2, "10:00"), "resolved"),
        agent_status(A, at(2, "11:00"), "away"),
        status("T-1", at(2, "12:00"), "open"),
    ]
    decisions, finals = run(config, lines)
    assert brief(decisions, "assign") == [
        (at(2, "09:00"), "T-1", "assign", "routing", A),
        (at(2, "12:00"), "T-1", "assign", "routing", B),
    ]
    assert finals["T-1"]["assignee"] == B and finals["T-1"]["status"] == "open"


# ---------------------------------------------------------------- escalation triggers


def test_the_same_sentiment_escalates_enterprise_but_not_starter() -> None:
    config = {
        "rules": [
            {
                "name": "enterprise-negative-sentiment",
                "set": "escalation",
                "priority": 10,
                "when": {
                    "all": [
                        {"field": "account.tier", "eq": "enterprise"},
                        {"field": "ticket.sentiment", "lte": -35},
                    ]
                },
                "then": [{"escalate": "team-leads"}, {"set": {"priority": "urgent"}}],
            },
            {
                "name": "starter-negative-sentiment",
                "set": "escalation",
                "priority": 10,
                "when": {
                    "all": [
                        {"field": "account.tier", "eq": "starter"},
                        {"field": "ticket.sentiment", "lte": -70},
                    ]
                },
                "then": [{"escalate": "team-leads"}],
            },
        ]
    }
    lines = [
        created(
            "T-1", at(2, "09:00"), sentiment=-50, priority="normal", account={"id": "E", "tier": "enterprise"}
        ),
        created(
            "T-2", at(2, "09:01"), sentiment=-50, priority="normal", account={"id": "S", "tier": "starter"}
        ),
    ]
    decisions, finals = run(config, lines)
    assert brief(decisions, "escalate", "set_field") == [
        (at(2, "09:00"), "T-1", "escalate", "enterprise-negative-sentiment", "team-leads"),
        (at(2, "09:00"), "T-1", "set_field", "enterprise-negative-sentiment", None),
    ]
    assert decisions[1]["field"] == "priority" and decisions[1]["value"] == "urgent"
    assert (finals["T-1"]["escalations"], finals["T-1"]["priority"]) == (["team-leads"], "urgent")
    assert (finals["T-2"]["escalations"], finals["T-2"]["priority"]) == ([], "normal")


SEV1 = {
    "name": "sev1",
    "set": "escalation",
    "when": {"any": [{"tag": "bug/sev1"}, {"field": "ticket.severity", "eq": "Sev-1"}]},
    "then": [{"escalate": "engineering"}],
}
VALUE = {
    "name": "key-account",
    "set": "escalation",
    "when": {"field": "account.arr", "gte": 100000},
    "then": [{"escalate": "key-accounts"}],
}
PHRASE = {
    "name": "launch-blocker",
    "set": "escalation",
    "when": {"field": "ticket.text", "contains": "blocking our launch"},
    "then": [{"escalate": "launch-desk"}],
}


@pytest.mark.parametrize(
    ("rule", "hit", "miss"),
    [
        (SEV1, {"tags": ["bug/sev1"]}, {"tags": ["bug/sev2"]}),
        (SEV1, {"fields": {"severity": "Sev-1"}}, {"fields": {"severity": "Sev-2"}}),
        (VALUE, {"account": {"id": "A-1", "arr": 100000}}, {"account": {"id": "A-2", "arr": 99999}}),
        (PHRASE, {"body": "This is BLOCKING our launch!"}, {"body": "blocking our release"}),
    ],
    ids=["sev1-tag", "sev1-field", "account-value", "phrase"],
)
def test_escalation_rules_fire_on_their_trigger_only(
    rule: dict[str, Any], hit: dict[str, Any], miss: dict[str, Any]
) -> None:
    config = {
        "fields": {"severity": {"type": "select", "options": ["Sev-1", "Sev-2"], "owner": "bridge"}},
        "rules": [rule],
    }
    to = rule["then"][0]["escalate"]
    lines = [created("T-1", at(2, "09:00"), **hit), created("T-2", at(2, "09:01"), **miss)]
    decisions, finals = run(config, lines)
    assert brief(decisions, "escalate") == [(at(2, "09:00"), "T-1", "escalate", rule["name"], to)]
    assert (finals["T-1"]["escalations"], finals["T-2"]["escalations"]) == ([to], [])


def test_a_sev1_tag_added_later_escalates_then() -> None:
    config = {"rules": [SEV1]}
    lines = [
        created("T-1", at(2, "09:00"), tags=["bug/api"]),
        event("ticket.updated", at(2, "09:30"), ticket_id="T-1", changes={"tags": ["bug/api", "bug/sev1"]}),
    ]
    decisions, finals = run(config, lines)
    assert brief(decisions, "escalate") == [(at(2, "09:30"), "T-1", "escalate", "sev1", "engineering")]
    assert finals["T-1"]["escalations"] == ["engineering"]


def test_an_account_at_three_times_its_usual_weekly_volume_gets_a_check_in() -> None:
    spiky = {"id": "A-1", "name": "Acme", "tier": "growth", "owner": "olga@example.com"}
    steady = {"id": "A-2", "name": "Beta", "tier": "growth", "owner": "pia@example.com"}
    lines = []
    for week in range(5):  # five weeks of history: one ticket a week each (Oct 1, 8, 15, 22, 29)
        day = f"2026-10-{1 + 7 * week:02d}"
        lines.append(created(f"S-{week}", f"{day}T09:00:00Z", account=spiky))
        lines.append(created(f"Q-{week}", f"{day}T09:30:00Z", account=steady))
    lines += [
        created("S-5", at(5, "09:00"), account=spiky),
        created("Q-5", at(5, "09:30"), account=steady),
        created("S-6", at(5, "10:00"), account=spiky),
        created("Q-6", at(5, "10:30"), account=steady),  # two this week: below three tickets
        created("S-7", at(5, "11:00"), account=spiky),  # three this week against one a week: 3x
        created("S-8", at(5, "12:00"), account=spiky),  # flagged already this week
    ]
    decisions, finals = run({}, lines)
    [check_in] = [d for d in decisions if d["decision"] == "escalate"]
    assert check_in == {
        "at": at(5, "11:00"),
        "ticket_id": "S-7",
        "decision": "escalate",
        "rule": "volume",
        "to": "olga@example.com",
        "reason": "volume",
        "account": "A-1",
        "count": 3,
        "usual": 1.0,
        "due": at(6, "11:00"),
    }
    assert finals["S-7"]["escalations"] == []  # a check-in task for the owner, not a ticket escalation


def test_a_low_confidence_classification_goes_to_review() -> None:
    config = {"classify": {"min_confidence": 0.8, "keywords": {"billing/refund": ["refund"]}}}
    lines = [
        created("T-1", at(2, "09:00"), subject="refund please", body=""),
        created("T-2", at(2, "09:01"), subject="refund refund", body=""),
    ]
    decisions, finals = run(config, lines)
    assert [
        (d["at"], d["ticket_id"], d["decision"], d["rule"], d["confidence"], d["proposed"])
        for d in decisions
        if d["decision"] == "review"
    ] == [(at(2, "09:00"), "T-1", "review", "confidence", 0.7, ["billing/refund"])]  # (what to confirm)
    assert "billing/refund" not in finals["T-1"]["tags"] and "billing/refund" in finals["T-2"]["tags"]


def test_a_review_names_what_the_classifier_doubted_also_when_the_event_gave_its_own_tags() -> None:
    config = {"classify": {"min_confidence": 0.8,
                           "keywords": {"billing/refund": ["refund"], "access/sso": ["sso"]}}}
    lines = [created("T-1", at(2, "09:00"), subject="refund", body="and sso", tags=["how-to/misc"])]
    decisions, finals = run(config, lines)
    [review] = [d for d in decisions if d["decision"] == "review"]
    assert (review["confidence"], review["proposed"]) == (0.7, ["billing/refund", "access/sso"])
    assert finals["T-1"]["tags"] == ["how-to/misc"]  # the event's tags are taken as given


# ---------------------------------------------------------------- SLA


def sla(**policy: Any) -> dict[str, Any]:
    return {
        "calendars": {"day": DAY},
        "sla": [{"name": "enterprise", "calendar": "day", "first_response": "1h", **policy}],
    }


def test_first_response_warns_then_breaches_in_business_hours() -> None:
    # 30 minutes used on Monday evening; the rest from Tuesday's opening
    decisions, finals = run(sla(warn_before="15m"), [created("T-1", at(2, "16:30"))], until=at(3, "12:00"))
    assert brief(decisions, "sla_warning", "sla_breach") == [
        (at(3, "09:15"), "T-1", "sla_warning", "enterprise", "first_response"),
        (at(3, "09:30"), "T-1", "sla_breach", "enterprise", "first_response"),
    ]
    assert finals["T-1"]["sla"]["first_response_due"] == at(3, "09:30")


@pytest.mark.parametrize(
    ("reply", "breach"),
    [
        ("2026-11-02T10:00:00Z", []),
        ("2026-11-02T10:00:01Z", [(at(2, "10:00"), "T-1", "sla_breach", "enterprise", "first_response")]),
    ],
    ids=["at-the-deadline", "a-second-late"],
)
def test_a_reply_at_the_deadline_is_in_time(reply: str, breach: list[tuple[str, ...]]) -> None:
    lines = [created("T-1", at(2, "09:00")), message("T-1", reply, "agent")]
    decisions, _ = run(sla(), lines, until=at(2, "12:00"))
    assert brief(decisions, "sla_warning", "sla_breach") == breach


def test_pending_pauses_the_clock() -> None:
    lines = [
        created("T-1", at(2, "09:00")),
        status("T-1", at(2, "09:30"), "pending"),
        status("T-1", at(2, "11:00"), "open"),
    ]
    decisions, finals = run(sla(), lines, until=at(2, "16:00"))
    assert brief(decisions, "sla_breach") == [
        (at(2, "11:30"), "T-1", "sla_breach", "enterprise", "first_response")
    ]
    assert finals["T-1"]["sla"]["first_response_due"] == at(2, "11:30")


def test_an_escalation_level_fires_after_the_breach() -> None:
    config = sla(escalate=[{"after": "30m", "to": "team-leads"}])
    decisions, finals = run(config, [created("T-1", at(2, "09:00"))], until=at(2, "12:00"))
    assert brief(decisions, "sla_breach", "escalate") == [
        (at(2, "10:00"), "T-1", "sla_breach", "enterprise", "first_response"),
        (at(2, "10:30"), "T-1", "escalate", "enterprise", "team-leads"),
    ]
    assert decisions[-1]["reason"] == "sla" and decisions[-1]["metric"] == "first_response"
    assert finals["T-1"]["escalations"] == ["team-leads"]


# ---------------------------------------------------------------- follow-up and auto-close


def test_a_pending_ticket_gets_one_follow_up() -> None:
    lines = [created("T-1", at(2, "09:00")), status("T-1", at(2, "10:00"), "pending")]
    decisions, finals = run({"follow_up": {"after": "48h"}}, lines, until=at(9, "00:00"))
    assert brief(decisions, "follow_up") == [(at(4, "10:00"), "T-1", "follow_up", "follow_up", None)]
    assert finals["T-1"]["status"] == "pending"


def test_one_follow_up_until_the_customer_replies() -> None:
    lines = [
        created("T-1", at(2, "09:00")),
        status("T-1", at(2, "10:00"), "pending"),  # reminder due on the 4th at 10:00
        status("T-1", at(5, "10:00"), "open"),  # an agent's note, no customer reply ...
        status("T-1", at(5, "11:00"), "pending"),
        status("T-1", at(6, "11:00"), "on_hold"),
        status("T-1", at(6, "12:00"), "pending"),  # ... so no second reminder
        message("T-1", at(9, "09:00"), "customer", "here it is"),  # they replied: nothing to remind of
        message("T-1", at(10, "09:00"), "agent", "one more question"),  # the wait starts again
    ]
    decisions, _ = run({"follow_up": {"after": "48h"}}, lines, until=at(20, "00:00"))
    assert [d["at"] for d in decisions if d["decision"] == "follow_up"] == [at(4, "10:00"), at(12, "09:00")]


def test_a_resolved_ticket_auto_closes() -> None:
    lines = [
        created("T-1", at(2, "09:00")),
        status("T-1", at(2, "10:00"), "resolved"),
    ]
    decisions, finals = run({"auto_close": {"after": "7d"}}, lines, until=at(20, "00:00"))
    assert brief(decisions, "auto_close") == [(at(9, "10:00"), "T-1", "auto_close", "auto_close", None)]
    assert finals["T-1"]["status"] == "closed"


def test_a_resolved_ticket_the_customer_answered_does_not_close_on_them() -> None:
    lines = [
        created("T-1", at(2, "09:00")),
        status("T-1", at(2, "10:00"), "resolved"),
        message("T-1", at(4, "10:00"), "customer", "still broken"),  # no closing while this waits
        message("T-1", at(8, "10:00"), "agent", "fixed now, for real"),  # the 7 days count from here
    ]
    decisions, finals = run({"auto_close": {"after": "7d"}}, lines, until=at(20, "00:00"))
    assert brief(decisions, "auto_close") == [(at(15, "10:00"), "T-1", "auto_close", "auto_close", None)]
    decisions, finals = run({"auto_close": {"after": "7d"}}, lines[:3], until=at(30, "00:00"))
    assert brief(decisions, "auto_close") == [] and finals["T-1"]["status"] == "resolved"


def test_a_phrase_in_a_follow_up_customer_message_escalates() -> None:
    lines = [
        created("T-1", at(2, "09:00")),
        message(
            "T-1", at(2, "09:10"), "agent", "we are blocking our launch? no"
        ),  # an agent's words: not read
        message("T-1", at(2, "09:30"), "customer", "This is blocking our launch"),
    ]
    decisions, finals = run({"rules": [PHRASE]}, lines)
    assert brief(decisions, "escalate") == [
        (at(2, "09:30"), "T-1", "escalate", "launch-blocker", "launch-desk")
    ]
    assert finals["T-1"]["escalations"] == ["launch-desk"]


def test_a_brand_new_account_has_no_usual_volume_to_triple() -> None:
    other = {"id": "A-2", "name": "Beta", "tier": "growth", "owner": "pia@example.com"}
    new = {"id": "NEW", "name": "Newco", "tier": "growth", "owner": "o@example.com"}
    lines = [created(f"Q-{w}", f"2026-10-{1 + 7 * w:02d}T09:00:00Z", account=other) for w in range(5)]
    lines += [created(f"N-{n}", at(5, f"1{n}:00"), account=new) for n in range(3)]
    decisions, _ = run({}, lines)
    assert [d for d in decisions if d["decision"] == "escalate"] == []


# ---------------------------------------------------------------- rules on the event itself


def test_changed_from_to_rules_see_the_value_before_the_event() -> None:
    config = {
        "rules": [
            {"name": "raised", "when": {"field": "ticket.priority", "to": "urgent"},
             "then": [{"escalate": "leads"}]},
            {"name": "lowered", "when": {"field": "ticket.priority", "from": "urgent"},
             "then": [{"add_tags": ["calmed"]}]},
            {"name": "moved", "when": {"field": "ticket.status", "changed": True},
             "then": [{"notify": {"to": "ops"}}]},
        ],
        "teams": {"leads": {"members": [A]}},
    }
    lines = [
        created("T-1", at(2, "09:00"), priority="normal"),
        event("ticket.updated", at(2, "09:10"), ticket_id="T-1", changes={"priority": "urgent"}),
        event("ticket.updated", at(2, "09:20"), ticket_id="T-1", changes={"priority": "urgent"}),
        event("ticket.updated", at(2, "09:30"), ticket_id="T-1", changes={"priority": "high"}),
        status("T-1", at(2, "09:40"), "pending"),
    ]
    decisions, finals = run(config, lines)
    assert [(d["at"], d["decision"], d["rule"]) for d in decisions if d["rule"] != "routing"] == [
        (at(2, "09:10"), "escalate", "raised"),  # once: the second update does not change the priority
        (at(2, "09:30"), "tag", "lowered"),
        (at(2, "09:40"), "notify", "moved"),
    ]
    assert finals["T-1"]["tags"] == ["calmed"]


@pytest.mark.parametrize(("reply", "breached"), [("09:30", []), ("09:31", ["acknowledgement"])])
def test_an_agent_reply_at_the_acknowledgement_deadline_is_in_time(reply: str, breached: list[str]) -> None:
    config = sla(first_response="30m", acknowledgement="30m")
    lines = [created("T-1", at(2, "09:00")), message("T-1", at(2, reply), "agent")]
    decisions, _ = run(config, lines, until=at(2, "12:00"))
    first = [] if reply == "09:30" else ["first_response"]
    assert [d["metric"] for d in decisions if d["decision"] == "sla_breach"] == first + breached


@pytest.mark.parametrize("with_rules", [False, True])
def test_an_sla_policy_on_a_change_reads_a_new_ticket_as_the_rules_do(with_rules: bool) -> None:
    # what a ticket arrives with is no change; what routing does in its first event is one, with or without
    # [[rules]] in the config
    unrelated = {"name": "unrelated", "when": {"field": "ticket.channel", "eq": "fax"},
                 "then": [{"review": "x"}]}
    config: dict[str, Any] = {
        "agents": [{"email": A}],
        "sla": [
            {"name": "just-assigned", "when": {"field": "ticket.assignee", "changed": True},
             "first_response": "1h"},
            {"name": "arrived-urgent", "when": {"field": "ticket.priority", "to": "urgent"},
             "first_response": "2h"},
        ],
        "rules": [unrelated] if with_rules else [],
    }
    _, finals = run(config, [created("T-1", at(2, "09:00"), priority="urgent")])
    assert finals["T-1"]["assignee"] == A
    assert finals["T-1"]["sla"]["first_response_due"] == at(2, "10:00")


def test_rules_compare_emails_without_regard_to_case() -> None:
    # routing takes the CRM owner "A@Example.Com" for the agent a@example.com: rules written with either
    # spelling see the same person
    def notify(name: str, when: dict[str, Any]) -> dict[str, Any]:
        then = [{"notify": {"to": C, "message": name}}]
        return {"name": name, "set": "triggers", "when": when, "then": then}

    config = {
        "routing": {"strategy": "account_owner"},
        "agents": agents(A, B),
        "rules": [
            notify("assignee-eq", {"field": "ticket.assignee", "eq": "A@EXAMPLE.com"}),
            notify("assignee-in", {"field": "ticket.assignee", "in": ["x@example.com", "A@Example.com"]}),
            notify("owner-eq", {"field": "account.owner", "eq": "a@example.com"}),
            notify("owner-ne", {"field": "account.owner", "ne": "A@example.com"}),
        ],
    }
    lines = [created("T-1", at(2, "09:00"), account={"id": "A-1", "owner": "A@Example.Com"})]
    decisions, finals = run(config, lines)
    assert finals["T-1"]["assignee"] == A
    assert sorted(d["rule"] for d in decisions if d["decision"] == "notify") == [
        "assignee-eq", "assignee-in", "owner-eq"
    ]


def test_a_tag_a_rule_adds_leaves_a_field_value_the_event_gave_as_the_event_s_own_tag_does() -> None:
    config = {
        "fields": {"severity": {"type": "select", "options": ["Sev-1", "Sev-2", "Sev-3"]}},
        "tags": [{"match": "bug/sev1", "set": {"severity": "Sev-1"}}],
        "rules": [{"name": "crash-is-sev1", "when": {"field": "ticket.text", "contains": "crash"},
                   "then": [{"add_tags": ["bug/sev1"]}]}],
    }
    lines = [
        created("T-1", at(2, "09:00"), subject="app crash", tags=[], fields={"severity": "Sev-3"}),
        created("T-2", at(2, "09:01"), subject="app", tags=["bug/sev1"], fields={"severity": "Sev-3"}),
        created("T-3", at(2, "09:02"), subject="app crash", tags=[]),
    ]
    _decisions, finals = run(config, lines)
    assert finals["T-1"]["tags"] == ["bug/sev1"]
    assert [finals[t]["fields"].get("severity") for t in ("T-1", "T-2", "T-3")] == ["Sev-3", "Sev-3", "Sev-1"]


def test_an_author_in_other_letter_case_is_that_author() -> None:
    """"Agent" is the agent, as "Pending" is the status pending: its reply meets the first response."""
    config = {"sla": [{"name": "all", "first_response": "1h"}]}
    lines = [
        created("T-1", at(2, "09:00")),
        created("T-2", at(2, "09:00")),
        message("T-1", at(2, "09:30"), "Agent"),
        message("T-2", at(2, "09:30"), " CUSTOMER "),
    ]
    decisions, _finals = run(config, lines, until=at(2, "12:00"))
    assert [(d["ticket_id"], d["decision"]) for d in decisions if d["decision"] == "sla_breach"] == [
        ("T-2", "sla_breach")]
