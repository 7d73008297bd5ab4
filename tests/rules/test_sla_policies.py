"""SLA clocks across policy changes: a policy applying mid-ticket, gaps with no policy, pause_on switches."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from bridge.model import format_time, parse_time
from bridge.replay import Replay
from bridge.rules.calendar import BusinessCalendar
from bridge.rules.sla import SlaEvent, TicketSla
from bridge.settings import Config, SlaConfig

WALL = BusinessCalendar.always()
T0 = parse_time("2026-11-02T00:00:00Z")  # a Monday


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def policy(name: str, **kw: Any) -> SlaConfig:
    return SlaConfig(name=name, **kw)


def brief(events: list[SlaEvent]) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.kind, e.metric, format_time(e.at), format_time(e.due)) for e in events]


URGENT = policy("urgent", first_response="30m", resolution="4h", warn_before="10m")


# ---------------------------------------------------------------- a policy that applies mid-ticket


def test_a_policy_that_applies_later_keeps_a_reply_already_given() -> None:
    sla = TicketSla(None, None, T0)  # no policy matches at first
    sla.on_message("agent", h(0.1))
    sla.change_policy(URGENT, WALL, h(1))
    assert sla.due()["first_response_due"] is None  # met before the policy applied: nothing to breach
    # resolution counts from the opening: 1h consumed, 3h left
    assert sla.due()["resolution_due"] == h(4)
    assert brief(sla.fire(h(10))) == [
        ("sla_warning", "resolution", "2026-11-02T03:50:00Z", None),
        ("sla_breach", "resolution", "2026-11-02T04:00:00Z", None),
    ]


def test_a_deadline_passed_before_the_policy_applied_breaches_when_it_applies() -> None:
    sla = TicketSla(None, None, T0)
    assert sla.next_timer() is None and sla.fire(h(5)) == []
    sla.change_policy(URGENT, WALL, h(2))
    events = sla.fire(h(2))
    # dated when the policy applies (never before), with the instant each threshold was passed
    assert brief(events) == [
        ("sla_warning", "first_response", "2026-11-02T02:00:00Z", "2026-11-02T00:20:00Z"),
        ("sla_breach", "first_response", "2026-11-02T02:00:00Z", "2026-11-02T00:30:00Z"),
    ]
    assert sla.due()["first_response_due"] == h(0.5)


def test_time_paused_before_the_policy_applied_does_not_count() -> None:
    sla = TicketSla(None, None, T0)
    sla.on_status("pending", h(0.25))
    sla.on_status("open", h(2))
    sla.change_policy(URGENT, WALL, h(2))  # 15 minutes consumed, not 2 hours
    assert sla.fire(h(2)) == []
    assert sla.due()["first_response_due"] == h(2.25)
    # the same gap under a policy that does not pause on pending counts it all
    counts_pending = TicketSla(None, None, T0)
    counts_pending.on_status("pending", h(0.25))
    counts_pending.on_status("open", h(2))
    counts_pending.change_policy(policy("p", first_response="30m", pause_on=[]), WALL, h(2))
    assert [e.kind for e in counts_pending.fire(h(2))] == ["sla_breach"]


def test_a_gap_with_no_policy_neither_resets_nor_forgets_the_clocks() -> None:
    sla = TicketSla(URGENT, WALL, T0)
    sla.on_message("agent", h(0.1))  # first response met under the policy
    sla.change_policy(None, None, h(0.5))  # the policy stops applying
    assert sla.due() == dict.fromkeys(sla.due())  # no promises while no policy applies
    assert sla.next_timer() is None
    sla.on_status("on_hold", h(0.75))
    sla.on_status("open", h(1.75))
    sla.change_policy(URGENT, WALL, h(2))  # applies again: 0.5h + 0.25h + 0.25h consumed, 3h left
    assert sla.due()["first_response_due"] is None
    assert sla.due()["resolution_due"] == h(5)
    assert [e.metric for e in sla.fire(h(10))] == ["resolution", "resolution"]


def test_events_due_before_a_policy_stops_still_fire_but_not_those_of_its_very_instant() -> None:
    sla = TicketSla(URGENT, WALL, T0)
    sla.change_policy(None, None, h(0.5))  # the first-response deadline is this very instant
    # the change that ended the policy comes before a timer of its instant: no breach is stated
    assert brief(sla.fire(h(0.5))) == [
        ("sla_warning", "first_response", "2026-11-02T00:20:00Z", None),
    ]
    assert sla.fire(h(10)) == []


def test_a_customer_message_in_a_gap_starts_next_response_from_that_message() -> None:
    sla = TicketSla(None, None, T0)
    sla.on_message("agent", h(0.1))
    sla.on_message("customer", h(1))
    sla.change_policy(policy("p", next_response="2h"), WALL, h(2))
    assert sla.due()["next_response_due"] == h(3)


def test_a_policy_that_applies_while_resolved_waits_for_a_reopen() -> None:
    sla = TicketSla(None, None, T0)
    sla.on_status("resolved", h(1))
    sla.change_policy(URGENT, WALL, h(5))
    assert sla.fire(h(6)) == []  # a resolved ticket does not breach
    sla.on_status("open", h(8))
    assert brief(sla.fire(h(8))) == [
        ("sla_warning", "first_response", "2026-11-02T08:00:00Z", "2026-11-02T00:20:00Z"),
        ("sla_breach", "first_response", "2026-11-02T08:00:00Z", "2026-11-02T00:30:00Z"),
    ]


# ---------------------------------------------------------------- pause_on of the new policy


def test_switching_to_a_policy_that_does_not_pause_resumes_the_clocks() -> None:
    pauses = policy("enterprise", first_response="1h")  # default pause_on: pending, on_hold
    never = policy("urgent", first_response="30m", pause_on=[])
    sla = TicketSla(pauses, WALL, T0)
    sla.on_status("pending", h(1 / 6))  # 10 minutes consumed
    sla.change_policy(never, WALL, h(1 / 3))
    assert sla.running
    assert sla.due()["first_response_due"] == h(1 / 3) + timedelta(minutes=20)
    assert brief(sla.fire(h(2))) == [("sla_breach", "first_response", "2026-11-02T00:40:00Z", None)]


def test_switching_to_a_policy_that_pauses_stops_the_clocks() -> None:
    pauses = policy("enterprise", first_response="1h")
    never = policy("urgent", first_response="30m", pause_on=[])
    sla = TicketSla(never, WALL, T0)
    sla.on_status("pending", h(1 / 12))
    sla.change_policy(pauses, WALL, h(1 / 6))  # 10 minutes consumed, then paused
    assert not sla.running
    assert sla.due()["first_response_due"] is None
    assert sla.fire(h(10)) == []
    sla.on_status("open", h(10))
    assert sla.due()["first_response_due"] == h(10) + timedelta(minutes=50)


# ---------------------------------------------------------------- what is remembered across a switch


def test_an_escalation_to_another_team_fires_after_a_switch_and_to_the_same_team_does_not() -> None:
    a = policy("a", first_response="1h", escalate=[{"after": "0m", "to": "l1"}])
    b = policy("b", first_response="1h", escalate=[{"after": "0m", "to": "l3"}, {"after": "1h", "to": "l1"}])
    sla = TicketSla(a, WALL, T0)
    assert [(e.kind, e.to) for e in sla.fire(h(1.5))] == [("sla_breach", None), ("sla_escalate", "l1")]
    sla.change_policy(b, WALL, h(1.5))
    # b's first level (another team) fires at the switch, its breach was already stated, and l1 is not
    # called a second time when b's second level comes
    events = sla.fire(h(5))
    assert [(e.kind, e.to, e.at) for e in events] == [("sla_escalate", "l3", h(1.5))]
    assert events[0].due == h(1)


def test_due_after_a_switch_is_the_current_policys_deadline() -> None:
    tight, loose = policy("tight", first_response="1h"), policy("loose", first_response="2h")
    sla = TicketSla(tight, WALL, T0)
    assert [e.at for e in sla.fire(h(1.5))] == [h(1)]
    sla.change_policy(loose, WALL, h(1.5))
    assert sla.due()["first_response_due"] == h(2)
    assert sla.fire(h(3)) == []  # one breach per clock
    assert sla.due()["first_response_due"] == h(2)  # not the tight policy's h(1) once h(2) has passed
    # used up under both when the switch comes: the loose policy's deadline, not the tight one's breach
    late = TicketSla(tight, WALL, T0)
    late.fire(h(3))
    late.change_policy(loose, WALL, h(3))
    assert late.due()["first_response_due"] == h(2)


# ---------------------------------------------------------------- through the replay


BERLIN = {
    "timezone": "Europe/Berlin",
    "hours": {"mon": ["09:00-12:00", "13:00-17:00"],
              **{d: ["09:00-17:00"] for d in ("tue", "wed", "thu", "fri")}},
}
LEVELS = [{"after": "15m", "to": "l1"}, {"after": "1h", "to": "l2"}]


def _config(urgent_pause_on: list[str] | None = None) -> Config:
    urgent: dict[str, Any] = {
        "name": "urgent", "calendar": "support", "when": {"field": "ticket.priority", "eq": "urgent"},
        "first_response": "30m", "next_response": "1h", "resolution": "4h", "warn_before": "10m",
        "escalate": LEVELS,
    }
    if urgent_pause_on is not None:
        urgent["pause_on"] = urgent_pause_on
    return Config(
        bridge={"timezone": "Europe/Berlin"},
        fields={"tier": {"type": "select", "kind": "account", "options": ["enterprise", "growth"],
                         "owner": "bridge"}},
        calendars={"support": BERLIN},
        teams={"l1": {"members": []}, "l2": {"members": []}},
        sla=[urgent, {
            "name": "enterprise", "calendar": "support",
            "when": {"field": "account.tier", "eq": "enterprise"},
            "first_response": "1h", "next_response": "4h", "resolution": "2d", "warn_before": "15m",
            "escalate": [{"after": "30m", "to": "l1"}, {"after": "2h", "to": "l2"}],
        }],
    )


def _ticket(tid: str, at: str, priority: str, tier: str) -> str:
    return json.dumps({"type": "ticket.created", "at": at, "ticket": {
        "id": tid, "subject": "s", "body": "x", "tags": [], "priority": priority, "status": "open",
        "account": {"id": f"A-{tid}", "tier": tier}}})


def _event(kind: str, at: str, tid: str, **body: Any) -> str:
    return json.dumps({"type": kind, "at": at, "ticket_id": tid, **body})


def _replay(config: Config, lines: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rp = Replay(config, until=parse_time("2026-11-02T16:00:00Z"))
    out = list(rp.run(lines))
    assert rp.problems == []
    decisions = [d for d in out if not d.get("final")]
    assert [d["at"] for d in decisions] == sorted(d["at"] for d in decisions)  # the stream is in time order
    return decisions, {d["ticket_id"]: d for d in out if d.get("final")}


def _brief(decisions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(d["at"][11:16], d["decision"], d["metric"], d.get("to"), d.get("due", "")[11:16])
            for d in decisions]


def test_replay_a_policy_gap_keeps_the_reply_and_dates_nothing_in_the_past() -> None:
    # Monday 09:00 Berlin = 08:00Z; urgent, replied at once, normal for half an hour, urgent again
    decisions, finals = _replay(_config(), [
        _ticket("T-1", "2026-11-02T08:00:00Z", "urgent", "growth"),
        _event("ticket.message", "2026-11-02T08:10:00Z", "T-1", author="agent", body="x"),
        _event("ticket.updated", "2026-11-02T08:30:00Z", "T-1", changes={"priority": "normal"}),
        _event("ticket.updated", "2026-11-02T09:00:00Z", "T-1", changes={"priority": "urgent"}),
    ])
    # no first-response event: the reply at 08:10Z met it; resolution counted the gap (1h by 09:00Z)
    assert _brief(decisions) == [
        ("12:50", "sla_warning", "resolution", None, ""),
        ("13:00", "sla_breach", "resolution", None, ""),
        ("13:15", "escalate", "resolution", "l1", ""),
        ("14:00", "escalate", "resolution", "l2", ""),
    ]
    assert finals["T-1"]["sla"]["first_response_due"] is None


def test_replay_a_policy_that_applies_after_its_deadline_breaches_then_and_says_so() -> None:
    decisions, finals = _replay(_config(), [
        _ticket("T-1", "2026-11-02T08:00:00Z", "normal", "growth"),
        _event("ticket.updated", "2026-11-02T09:00:00Z", "T-1", changes={"priority": "urgent"}),
    ])
    first = [d for d in decisions if d["metric"] == "first_response"]
    assert _brief(first) == [
        ("09:00", "sla_warning", "first_response", None, "08:20"),
        ("09:00", "sla_breach", "first_response", None, "08:30"),
        ("09:00", "escalate", "first_response", "l1", "08:45"),
        ("09:30", "escalate", "first_response", "l2", ""),
    ]
    assert all(d["late"] is True for d in first if "due" in d)
    assert finals["T-1"]["sla"]["first_response_due"] == "2026-11-02T08:30:00Z"


def test_replay_a_switch_to_a_policy_without_pauses_runs_while_pending() -> None:
    decisions, _ = _replay(_config(urgent_pause_on=[]), [
        _ticket("T-1", "2026-11-02T08:00:00Z", "normal", "enterprise"),
        _event("ticket.status", "2026-11-02T08:10:00Z", "T-1", status="pending"),
        _event("ticket.updated", "2026-11-02T08:20:00Z", "T-1", changes={"priority": "urgent"}),
    ])
    first = [d for d in decisions if d["metric"] == "first_response"]
    assert _brief(first)[:2] == [
        ("08:30", "sla_warning", "first_response", None, ""),
        ("08:40", "sla_breach", "first_response", None, ""),
    ]


def test_replay_a_switch_to_a_policy_that_pauses_stops_while_pending() -> None:
    decisions, finals = _replay(_config(urgent_pause_on=[]), [
        _ticket("T-1", "2026-11-02T08:00:00Z", "urgent", "enterprise"),
        _event("ticket.status", "2026-11-02T08:05:00Z", "T-1", status="pending"),
        _event("ticket.updated", "2026-11-02T08:10:00Z", "T-1", changes={"priority": "normal"}),
    ])
    assert decisions == []
    assert finals["T-1"]["sla"] == {"first_response_due": None, "next_response_due": None,
                                    "resolution_due": None}


def test_replay_resolving_at_the_resolution_deadline_is_in_time() -> None:
    config = Config(sla=[{"name": "p", "resolution": "1h", "first_response": "1h"}])
    decisions, _ = _replay(config, [
        json.dumps({"type": "ticket.created", "at": "2026-11-02T09:00:00Z", "ticket": {
            "id": "T-1", "subject": "s", "body": "x", "tags": [], "status": "open"}}),
        _event("ticket.message", "2026-11-02T09:30:00Z", "T-1", author="agent", body="x"),
        _event("ticket.status", "2026-11-02T10:00:00Z", "T-1", status="resolved"),
    ])
    assert decisions == []


def test_a_switch_on_an_old_levels_instant_calls_the_new_policys_passed_level_only() -> None:
    # the switch at 13:00 lands on "normal"'s own escalation instant (12:00 breach + 1 h) while "high"'s
    # passed level at the same position names another team: the switch comes first, so l1 is not called;
    # l2 is, late (this once crashed the replay comparing two events of one sort key)
    config = Config(
        teams={"l1": {"members": ["a@x.com"]}, "l2": {"members": ["a@x.com"]}},
        agents=[{"email": "a@x.com"}],
        sla=[
            {"name": "normal", "when": {"field": "ticket.priority", "eq": "normal"}, "first_response": "3h",
             "escalate": [{"after": "1h", "to": "l1"}]},
            {"name": "high", "when": {"field": "ticket.priority", "eq": "high"}, "first_response": "2h",
             "escalate": [{"after": "30m", "to": "l2"}]},
        ],
    )
    decisions, finals = _replay(config, [
        _ticket("T-1", "2026-11-02T09:00:00Z", "normal", "growth"),
        _event("ticket.updated", "2026-11-02T13:00:00Z", "T-1", changes={"priority": "high"}),
    ])
    [escalated] = [d for d in decisions if d["decision"] == "escalate"]
    assert (escalated["to"], escalated["at"], escalated.get("late")) == ("l2", "2026-11-02T13:00:00Z", True)
    assert finals["T-1"]["priority"] == "high"


def test_a_switch_at_the_old_policys_deadline_comes_before_its_breach() -> None:
    # a timer due at the very instant of an event fires after it: the switch at 10:00 is first
    config = Config(sla=[
        {"name": "normal", "when": {"field": "ticket.priority", "eq": "normal"}, "first_response": "1h"},
        {"name": "urgent", "when": {"field": "ticket.priority", "eq": "urgent"}, "first_response": "3h"},
    ])
    decisions, finals = _replay(config, [
        _ticket("T-1", "2026-11-02T09:00:00Z", "normal", "growth"),
        _ticket("T-2", "2026-11-02T09:00:00Z", "normal", "growth"),
        _event("ticket.updated", "2026-11-02T10:00:00Z", "T-1", changes={"priority": "urgent"}),
        _event("ticket.updated", "2026-11-02T10:00:00Z", "T-2", changes={"priority": "low"}),  # no policy
        _event("ticket.message", "2026-11-02T10:30:00Z", "T-1", author="agent", body="x"),
    ])
    assert [d for d in decisions if d["decision"].startswith("sla")] == []
    assert finals["T-1"]["sla"]["first_response_due"] is None  # met at 10:30, within urgent's 3 h


def test_one_event_that_resolves_and_switches_policy_stops_the_clocks_first() -> None:
    config = Config(
        teams={"l1": {"members": ["a@x.com"]}}, agents=[{"email": "a@x.com"}],
        sla=[{"name": "urgent", "when": {"field": "ticket.priority", "eq": "urgent"}, "first_response": "1h",
              "resolution": "2h", "escalate": [{"after": "30m", "to": "l1"}]}],
    )
    decisions, _ = _replay(config, [
        _ticket("T-1", "2026-11-02T09:00:00Z", "low", "growth"),
        _ticket("T-2", "2026-11-02T09:00:00Z", "low", "growth"),
        _event("ticket.updated", "2026-11-02T13:00:00Z", "T-1", changes={"priority": "urgent",
                                                                          "status": "resolved"}),
        _event("ticket.status", "2026-11-02T13:00:00Z", "T-2", status="resolved"),  # open 4 h
        _event("ticket.updated", "2026-11-02T15:00:00Z", "T-2", changes={"priority": "urgent",
                                                                          "status": "open"}),
    ])
    sla = [(d["ticket_id"], d["at"][11:16], d["decision"], d.get("late")) for d in decisions
           if d["decision"] != "assign"]
    # T-1 was resolved by the very event that made it urgent: nothing is stated against it
    assert [s for s in sla if s[0] == "T-1"] == []
    # T-2 reopens urgent: what its 4 h open already passed is stated at the reopen, late
    assert [s for s in sla if s[0] == "T-2"] and all(s[1] == "15:00" and s[3] for s in sla if s[0] == "T-2")
