"""Escalation triggers, SLA decisions, follow-ups and auto-close through the Desk on a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.model import Decision, FieldValue, Record, format_time
from bridge.rules.engine import Desk
from bridge.settings import Config

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def h(n: float) -> datetime:
    return T0 + timedelta(hours=n)


class Sim:
    """A tiny replay: events in time order, timers fired before each event like bridge replay does."""

    def __init__(self, **config: Any) -> None:
        config.setdefault("agents", [{"email": "a@x", "capacity": 100}])
        config.setdefault("teams", {"team-leads": {"members": ["a@x"]}, "incident": {"members": ["a@x"]}})
        config.setdefault("fields", {"severity": {"type": "select", "options": ["Sev-1", "Sev-2", "Sev-3"]}})
        self.desk = Desk(Config(**config))
        self.tickets: dict[str, Record] = {}
        self.log: list[Decision] = []

    def run_until(self, at: datetime) -> list[Decision]:
        out: list[Decision] = []
        while (due := self.desk.next_timer()) is not None and due <= at:
            out += self.desk.advance(due)
        out += self.desk.advance(at)
        self.log += out
        return out

    def _on(
        self, rec: Record, previous: dict[str, Any], event: dict[str, Any], at: datetime
    ) -> list[Decision]:
        self.run_until(at)
        out = self.desk.on_ticket(rec, previous, event, at)
        self.log += out
        return out

    def create(
        self,
        tid: str,
        at: datetime,
        *,
        tier: str = "growth",
        arr: int = 0,
        owner: str | None = None,
        account: str | None = None,
        fields: dict[str, Any] | None = None,
        **attrs: Any,
    ) -> list[Decision]:
        base: dict[str, Any] = {
            "subject": "Help",
            "body": "",
            "status": "open",
            "priority": "normal",
            "sentiment": 0,
            "created_at": at,
            "requester": {"email": "c@x.example", "language": "en"},
            "account": {"id": account or f"A-{tid}", "tier": tier, "arr": arr, "owner": owner},
        }
        base.update(attrs)
        rec = Record(
            tid,
            "ticket",
            attrs=base,
            fields={k: FieldValue(v, "test", at) for k, v in (fields or {}).items()},
        )
        self.tickets[tid] = rec
        return self._on(rec, {}, {"type": "ticket.created", "ticket": {"id": tid}}, at)

    def status(self, tid: str, status: str, at: datetime) -> list[Decision]:
        rec = self.tickets[tid]
        previous = {"ticket.status": rec.attrs["status"]}
        rec.attrs["status"] = status
        return self._on(rec, previous, {"type": "ticket.status", "ticket_id": tid, "status": status}, at)

    def message(self, tid: str, author: str, at: datetime, **attrs: Any) -> list[Decision]:
        rec = self.tickets[tid]
        previous = {f"ticket.{k}": rec.attrs.get(k) for k in attrs}
        rec.attrs.update(attrs)
        event = {"type": "ticket.message", "ticket_id": tid, "author": author, "body": "..."}
        return self._on(rec, previous, event, at)

    def update(
        self, tid: str, at: datetime, *, fields: dict[str, Any] | None = None, **attrs: Any
    ) -> list[Decision]:
        rec = self.tickets[tid]
        previous = {f"ticket.{k}": rec.attrs.get(k) for k in attrs}
        previous.update({f"ticket.{k}": rec.value(k) for k in fields or {}})
        rec.attrs.update(attrs)
        for k, v in (fields or {}).items():
            rec.fields[k] = FieldValue(v, "test", at)
        changes = {**attrs, **(fields or {})}
        return self._on(rec, previous, {"type": "ticket.updated", "ticket_id": tid, "changes": changes}, at)


def kinds(decisions: list[Decision], *wanted: str) -> list[tuple[str, str, Any]]:
    return [
        (d.decision, d.rule, d.detail.get("to", d.detail.get("metric")))
        for d in decisions
        if d.decision in wanted
    ]


SENTIMENT_RULES = [
    {
        "name": "enterprise-negative",
        "set": "escalation",
        "priority": 10,
        "when": {
            "all": [{"field": "account.tier", "eq": "enterprise"}, {"field": "ticket.sentiment", "lte": -35}]
        },
        "then": [{"escalate": "team-leads"}, {"set": {"priority": "urgent"}}],
    },
    {
        "name": "growth-very-negative",
        "set": "escalation",
        "priority": 20,
        "when": {
            "all": [{"field": "account.tier", "eq": "growth"}, {"field": "ticket.sentiment", "lte": -70}]
        },
        "then": [{"escalate": "team-leads"}],
    },
]


@pytest.mark.parametrize(
    ("tier", "sentiment", "rule"),
    [
        ("enterprise", -40, "enterprise-negative"),
        ("enterprise", -20, None),
        ("growth", -40, None),
        ("growth", -80, "growth-very-negative"),
        ("starter", -100, None),
    ],
)
def test_negative_sentiment_escalates_per_tier(tier: str, sentiment: int, rule: str | None) -> None:
    sim = Sim(rules=SENTIMENT_RULES)
    out = sim.create("T1", h(0), tier=tier, sentiment=sentiment)
    expected = [("escalate", rule, "team-leads")] if rule else []
    assert kinds(out, "escalate") == expected
    assert sim.tickets["T1"].attrs.get("escalations", []) == (["team-leads"] if rule else [])


def test_sentiment_turning_negative_later_escalates_once() -> None:
    sim = Sim(rules=SENTIMENT_RULES)
    sim.create("T1", h(0), tier="enterprise", sentiment=10)
    out = sim.message("T1", "customer", h(1), sentiment=-60)
    assert kinds(out, "escalate", "set_field") == [
        ("escalate", "enterprise-negative", "team-leads"),
        ("set_field", "enterprise-negative", None),
    ]
    assert sim.tickets["T1"].attrs["priority"] == "urgent"
    assert kinds(sim.message("T1", "customer", h(2), sentiment=-70), "escalate", "set_field") == []


@pytest.mark.parametrize(
    ("rule", "ticket", "escalated"),
    [
        ({"field": "ticket.severity", "eq": "Sev-1"}, {"fields": {"severity": "Sev-1"}}, True),
        ({"field": "ticket.severity", "eq": "Sev-1"}, {"fields": {"severity": "Sev-2"}}, False),
        ({"field": "account.arr", "gte": 100000}, {"arr": 250000}, True),
        ({"field": "account.arr", "gte": 100000}, {"arr": 99999}, False),
        (
            {"field": "ticket.text", "contains": "cancel my subscription"},
            {"body": "I want to CANCEL my subscription"},
            True,
        ),
        (
            {"field": "ticket.text", "matches": r"(?i)\b(lawyer|legal action)\b"},
            {"body": "Our Lawyer will call"},
            True,
        ),
        (
            {"field": "ticket.text", "matches": r"(?i)\b(lawyer|legal action)\b"},
            {"body": "lawyers.example"},
            False,
        ),
    ],
)
def test_condition_triggers_escalate(rule: dict[str, Any], ticket: dict[str, Any], escalated: bool) -> None:
    sim = Sim(
        rules=[{"name": "trigger", "set": "escalation", "when": rule, "then": [{"escalate": "incident"}]}]
    )
    out = sim.create("T1", h(0), **ticket)
    assert kinds(out, "escalate") == ([("escalate", "trigger", "incident")] if escalated else [])


def test_sev1_set_by_an_update_escalates_then() -> None:
    sim = Sim(
        rules=[
            {
                "name": "sev1",
                "set": "escalation",
                "when": {"field": "ticket.severity", "eq": "Sev-1"},
                "then": [{"escalate": "incident"}, {"set": {"priority": "urgent"}}],
            }
        ]
    )
    assert kinds(sim.create("T1", h(0), fields={"severity": "Sev-3"}), "escalate") == []
    out = sim.update("T1", h(1), fields={"severity": "Sev-1"})
    assert kinds(out, "escalate") == [("escalate", "sev1", "incident")]
    assert sim.tickets["T1"].attrs["priority"] == "urgent"


def _weekly(sim: Sim, account: str, per_week: int, weeks: int) -> None:
    n = 0
    for week in range(weeks):
        for i in range(per_week):
            sim.create(f"{account}-{n}", h(24 * 7 * week + i), account=account, owner="alice@x")
            n += 1


def test_volume_spike_asks_for_a_check_in_within_a_day() -> None:
    sim = Sim()
    _weekly(sim, "A", 1, 5)  # five quiet weeks: one ticket a week
    start = h(24 * 7 * 5)
    sim.create("X1", start, account="A", owner="alice@x")
    sim.create("X2", start + timedelta(hours=1), account="A", owner="alice@x")
    out = sim.create("X3", start + timedelta(hours=2), account="A", owner="alice@x")
    (spike,) = [d for d in out if d.decision == "escalate"]
    assert spike.rule == "volume"
    assert spike.detail["to"] == "alice@x"
    assert spike.detail["reason"] == "volume"
    assert spike.detail["due"] == format_time(start + timedelta(hours=26))
    # flagged once: the next ticket of the same week does not ask again
    assert kinds(sim.create("X4", start + timedelta(hours=3), account="A", owner="alice@x"), "escalate") == []


def test_volume_within_three_times_usual_is_not_a_spike() -> None:
    sim = Sim()
    _weekly(sim, "B", 2, 5)  # usual: 2 a week; 3 more is < 6
    start = h(24 * 7 * 5)
    for i in range(3):
        assert kinds(sim.create(f"Y{i}", start + timedelta(hours=i), account="B"), "escalate") == []


def test_volume_needs_history_before_judging() -> None:
    sim = Sim()
    for i in range(5):
        assert kinds(sim.create(f"Z{i}", h(i), account="C"), "escalate") == []


def test_volume_check_in_without_owner_goes_to_a_team() -> None:
    sim = Sim()
    _weekly(sim, "D", 1, 5)
    start = h(24 * 7 * 5)
    out = []
    for i in range(3):
        out += sim.create(f"W{i}", start + timedelta(hours=i), account="D", owner=None)
    assert kinds(out, "escalate") == [("escalate", "volume", "team-leads")]


@pytest.mark.parametrize(
    ("confidence", "reviewed"), [(0.4, True), (0.59, True), (0.6, False), (0.9, False), (None, False)]
)
def test_low_confidence_goes_to_review_once(confidence: float | None, reviewed: bool) -> None:
    sim = Sim()
    out = sim.create("T1", h(0), confidence=confidence)
    assert kinds(out, "review") == ([("review", "confidence", None)] if reviewed else [])
    assert kinds(sim.message("T1", "customer", h(1), confidence=confidence), "review") == []


ENTERPRISE_SLA = {
    "name": "enterprise",
    "when": {"field": "account.tier", "eq": "enterprise"},
    "first_response": "1h",
    "resolution": "8h",
    "warn_before": "15m",
    "escalate": [{"after": "30m", "to": "team-leads"}, {"after": "2h", "to": "incident"}],
}
STANDARD_SLA = {"name": "standard", "first_response": "4h", "resolution": "2d"}


def test_sla_warning_breach_and_escalation_levels_fire_in_order() -> None:
    sim = Sim(sla=[ENTERPRISE_SLA, STANDARD_SLA])
    sim.create("T1", h(0), tier="enterprise")
    out = sim.run_until(h(3.5))
    assert [
        (d.at, *k) for d, k in zip(out, kinds(out, "sla_warning", "sla_breach", "escalate"), strict=True)
    ] == [
        (h(0.75), "sla_warning", "enterprise", "first_response"),
        (h(1), "sla_breach", "enterprise", "first_response"),
        (h(1.5), "escalate", "enterprise", "team-leads"),
        (h(3), "escalate", "enterprise", "incident"),
    ]
    assert sim.tickets["T1"].attrs["escalations"] == ["team-leads", "incident"]
    assert all("key" in d.detail for d in out)


def test_agent_reply_in_time_means_no_breach() -> None:
    sim = Sim(sla=[ENTERPRISE_SLA, STANDARD_SLA])
    sim.create("T1", h(0), tier="enterprise")
    sim.message("T1", "agent", h(0.5))
    out = sim.run_until(h(6))
    assert kinds(out, "sla_breach", "sla_warning") == []
    final = sim.desk.final(sim.tickets["T1"])
    assert final["sla"] == {
        "first_response_due": None,
        "next_response_due": None,
        "resolution_due": format_time(h(8)),
    }


def test_policy_is_the_first_matching_and_is_chosen_again_on_change() -> None:
    urgent = {"name": "urgent", "when": {"field": "ticket.priority", "eq": "urgent"}, "first_response": "30m"}
    sim = Sim(sla=[urgent, ENTERPRISE_SLA, STANDARD_SLA])
    sim.create("T1", h(0), tier="growth")
    assert sim.desk.final(sim.tickets["T1"])["sla"]["first_response_due"] == format_time(h(4))
    sim.update("T1", h(0.25), priority="urgent")
    assert sim.desk.final(sim.tickets["T1"])["sla"]["first_response_due"] == format_time(h(0.5))
    out = sim.run_until(h(5))
    assert kinds(out, "sla_breach") == [("sla_breach", "urgent", "first_response")]


def test_sla_pauses_while_pending() -> None:
    sim = Sim(sla=[STANDARD_SLA])
    sim.create("T1", h(0))
    sim.status("T1", "pending", h(1))
    assert kinds(sim.run_until(h(10)), "sla_breach") == []
    sim.status("T1", "open", h(10))
    out = sim.run_until(h(14))
    assert [(d.at, d.detail["metric"]) for d in out if d.decision == "sla_breach"] == [
        (h(13), "first_response")
    ]


FOLLOW = {"follow_up": {"after": "48h"}, "auto_close": {"after": "7d"}}


def test_follow_up_once_for_a_pending_ticket_without_reply() -> None:
    sim = Sim(**FOLLOW)
    sim.create("T1", h(0))
    sim.status("T1", "pending", h(1))
    out = sim.run_until(h(24 * 10))
    assert [(d.decision, d.at) for d in out if d.decision == "follow_up"] == [("follow_up", h(49))]
    assert out[0].detail["key"].startswith("T1|follow_up|")


def test_a_customer_reply_cancels_the_follow_up_and_the_agents_answer_starts_the_wait_again() -> None:
    sim = Sim(**FOLLOW)
    sim.create("T1", h(0))
    sim.status("T1", "pending", h(1))
    sim.message("T1", "customer", h(30))
    assert [d for d in sim.run_until(h(60)) if d.decision == "follow_up"] == []  # they answered: no nagging
    sim.message("T1", "agent", h(60))
    out = sim.run_until(h(200))
    assert [d.at for d in out if d.decision == "follow_up"] == [h(108)]  # 48 h after the agent's answer
    sim.message("T1", "agent", h(200))
    assert [d for d in sim.run_until(h(400)) if d.decision == "follow_up"] == []  # one until they reply
    sim.create("T2", h(400))
    sim.status("T2", "pending", h(401))
    sim.status("T2", "open", h(402))
    assert [d for d in sim.run_until(h(600)) if d.decision == "follow_up"] == []


def test_auto_close_once_and_frees_nothing_twice() -> None:
    sim = Sim(**FOLLOW)
    sim.create("T1", h(0))
    sim.status("T1", "resolved", h(1))
    out = sim.run_until(h(24 * 30))
    closes = [d for d in out if d.decision == "auto_close"]
    assert [(d.at, d.record_id) for d in closes] == [(h(1) + timedelta(days=7), "T1")]
    assert sim.tickets["T1"].attrs["status"] == "closed"
    assert sim.desk.final(sim.tickets["T1"])["status"] == "closed"
    assert sim.desk.next_timer() is None


def test_a_customer_reply_stops_auto_close_until_the_agent_answers_and_a_reopen_cancels_it() -> None:
    sim = Sim(**FOLLOW)
    sim.create("T1", h(0))
    sim.status("T1", "resolved", h(1))
    sim.message("T1", "customer", h(24))  # "still broken": the ticket must not close on them
    assert [d for d in sim.run_until(h(24 * 20)) if d.decision == "auto_close"] == []
    sim.message("T1", "agent", h(24 * 20))
    out = sim.run_until(h(24 * 30))
    assert [d.at for d in out if d.decision == "auto_close"] == [h(24 * 20) + timedelta(days=7)]
    sim.create("T2", h(24 * 30))
    sim.status("T2", "resolved", h(24 * 30 + 1))
    sim.status("T2", "open", h(24 * 30 + 2))
    assert [d for d in sim.run_until(h(24 * 60)) if d.decision == "auto_close"] == []


def test_forgotten_tickets_fire_nothing() -> None:
    sim = Sim(**FOLLOW, sla=[STANDARD_SLA])
    sim.create("T1", h(0))
    sim.desk.forget("T1")
    assert sim.desk.next_timer() is None
    assert sim.run_until(h(24 * 30)) == []


@pytest.mark.parametrize(("status", "timer"), [("resolved", "auto_close"), ("pending", "follow_up")])
def test_a_ticket_a_rule_resolves_or_sets_pending_on_the_customers_own_message_waits_from_it(
        status: str, timer: str) -> None:
    # "problem solved, thanks" resolving the ticket, "I'll get back to you" setting it pending: the message is
    # taken before the status change it caused, so the close (or the reminder) is armed from it
    rule = {"name": "thanked", "when": {"field": "ticket.sentiment", "gte": 50},
            "then": [{"set": {"status": status}}]}
    sim = Sim(**FOLLOW, rules=[rule])
    sim.create("T1", h(0))
    sim.message("T1", "customer", h(1), sentiment=80)
    assert sim.tickets["T1"].attrs["status"] == status
    out = sim.run_until(h(24 * 30))
    after = timedelta(days=7) if timer == "auto_close" else timedelta(hours=48)
    assert [(d.decision, d.at) for d in out if d.decision == timer] == [(timer, h(1) + after)]


def test_a_rule_on_the_status_becoming_closed_fires_on_bridges_own_auto_close_once() -> None:
    survey = {"name": "csat-on-close", "when": {"field": "ticket.status", "to": "closed"},
              "then": [{"add_tags": ["csat/sent"]}]}
    sim = Sim(**FOLLOW, rules=[survey])
    sim.create("T1", h(0))
    sim.status("T1", "resolved", h(1))
    sim.create("T2", h(2))
    sim.status("T2", "closed", h(3))  # (closed by hand: the rule fires, as before)
    out = sim.run_until(h(24 * 30))
    close = h(1) + timedelta(days=7)
    assert [(d.decision, d.record_id, d.at) for d in out] == [
        ("auto_close", "T1", close), ("tag", "T1", close)]
    assert "csat/sent" in sim.tickets["T1"].tags and "csat/sent" in sim.tickets["T2"].tags
    assert sim.tickets["T1"].attrs["status"] == "closed"
