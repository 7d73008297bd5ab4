"""SLA clocks: deadlines, warnings, breaches, escalation levels, pauses, reopen, policy changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import format_time, parse_time
from bridge.rules.calendar import BusinessCalendar
from bridge.rules.sla import SlaEvent, TicketSla
from bridge.settings import CalendarConfig, SlaConfig

WALL = BusinessCalendar.always()
# the [calendars.support] table of spec/config.md (November is CET, UTC+1)
SUPPORT = BusinessCalendar.from_config(
    CalendarConfig(
        timezone="Europe/Berlin",
        hours={
            "mon": ["09:00-12:00", "13:00-17:00"],
            "tue": ["09:00-17:00"],
            "wed": ["09:00-17:00"],
            "thu": ["09:00-17:00"],
            "fri": ["09:00-17:00"],
        },
        holidays=["2026-12-25", "2026-12-26"],
    )
)
T0 = parse_time("2026-11-02T00:00:00Z")  # a Monday


def policy(name: str = "enterprise", **kw: Any) -> SlaConfig:
    return SlaConfig(name=name, **kw)


def t(text: str) -> datetime:
    return parse_time(text)


def h(hours: float) -> datetime:
    """T0 plus some wall-clock hours."""
    return T0 + timedelta(hours=hours)


def brief(events: list[SlaEvent]) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.kind, e.metric, format_time(e.at), e.to) for e in events]


# ---------------------------------------------------------------- first response


def test_first_response_breach_with_one_warning_on_business_hours() -> None:
    # opened Monday 10:15 Berlin; 1h of business time -> 11:15 Berlin = 10:15Z; warning 15m before
    sla = TicketSla(policy(first_response="1h", warn_before="15m"), SUPPORT, t("2026-11-02T09:15:00Z"))
    assert sla.due()["first_response_due"] == t("2026-11-02T10:15:00Z")
    assert sla.next_timer() == t("2026-11-02T10:00:00Z")
    assert sla.fire(t("2026-11-02T09:59:59Z")) == []
    assert brief(sla.fire(t("2026-11-02T10:05:00Z"))) == [
        ("sla_warning", "first_response", "2026-11-02T10:00:00Z", None)
    ]
    assert sla.fire(t("2026-11-02T10:10:00Z")) == []  # the warning fires once
    assert sla.next_timer() == t("2026-11-02T10:15:00Z")
    events = sla.fire(t("2026-11-02T12:00:00Z"))
    assert brief(events) == [("sla_breach", "first_response", "2026-11-02T10:15:00Z", None)]
    assert events[0].policy == "enterprise"
    assert sla.fire(t("2026-11-03T12:00:00Z")) == []
    assert sla.next_timer() is None
    # a breached clock reports its past deadline until it is met
    assert sla.due()["first_response_due"] == t("2026-11-02T10:15:00Z")
    sla.on_message("agent", t("2026-11-02T13:00:00Z"))
    assert sla.due()["first_response_due"] is None


def test_first_response_met_in_time_never_breaches() -> None:
    sla = TicketSla(policy(first_response="1h", warn_before="15m"), SUPPORT, t("2026-11-02T09:15:00Z"))
    sla.on_message("customer", t("2026-11-02T09:20:00Z"))
    sla.on_message("agent", t("2026-11-02T09:50:00Z"))
    assert sla.due() == {
        "first_response_due": None,
        "next_response_due": None,
        "resolution_due": None,
        "acknowledgement_due": None,
    }
    assert sla.next_timer() is None
    assert sla.fire(t("2026-11-09T00:00:00Z")) == []


def test_business_hours_carry_over_lunch_weekend_and_closing_time() -> None:
    # Monday 11:30 Berlin: 30 minutes before lunch, 30 after -> 13:30 Berlin
    lunch = TicketSla(policy(first_response="1h", warn_before="15m"), SUPPORT, t("2026-11-02T10:30:00Z"))
    assert lunch.due()["first_response_due"] == t("2026-11-02T12:30:00Z")
    assert lunch.next_timer() == t("2026-11-02T12:15:00Z")
    # Friday 16:30 Berlin: half an hour on Friday, half an hour on Monday -> Monday 09:30 Berlin
    friday = TicketSla(policy(first_response="1h"), SUPPORT, t("2026-11-06T15:30:00Z"))
    assert friday.due()["first_response_due"] == t("2026-11-09T08:30:00Z")
    # Monday 16:00 Berlin + 1h is the closing instant 17:00, not Tuesday's opening
    closing = TicketSla(policy(first_response="1h"), SUPPORT, t("2026-11-02T15:00:00Z"))
    assert closing.due()["first_response_due"] == t("2026-11-02T16:00:00Z")
    # opened at night: the clock starts at the next opening
    night = TicketSla(policy(first_response="1h"), SUPPORT, t("2026-11-02T22:00:00Z"))
    assert night.due()["first_response_due"] == t("2026-11-03T09:00:00Z")


def test_resolution_two_days_is_forty_eight_business_hours() -> None:
    # Monday 10:15 Berlin: 5h45 Monday, 32h Tue-Fri, 7h next Monday, 3h15 Tuesday -> Tue 10 Nov 12:15 Berlin
    sla = TicketSla(policy(resolution="2d"), SUPPORT, t("2026-11-02T09:15:00Z"))
    assert sla.due()["resolution_due"] == t("2026-11-10T11:15:00Z")


@pytest.mark.parametrize(
    ("reply", "breached"),
    [(h(1), False), (h(1) + timedelta(microseconds=1), True), (h(0.5), False), (h(3), True)],
)
def test_reply_at_the_deadline_instant_is_in_time(reply: datetime, breached: bool) -> None:
    sla = TicketSla(policy(first_response="1h"), WALL, T0)
    sla.on_message("agent", reply)
    assert bool(sla.fire(h(10))) is breached


def test_events_due_before_a_state_change_keep_their_instant() -> None:
    sla = TicketSla(policy(first_response="1h", warn_before="10m"), WALL, T0)
    sla.on_message("agent", h(2))  # nobody called fire() in between
    assert brief(sla.fire(h(2))) == [
        ("sla_warning", "first_response", "2026-11-02T00:50:00Z", None),
        ("sla_breach", "first_response", "2026-11-02T01:00:00Z", None),
    ]


def test_no_warning_when_warn_before_is_not_shorter_than_the_budget() -> None:
    sla = TicketSla(policy(first_response="10m", warn_before="15m"), WALL, T0)
    assert brief(sla.fire(h(1))) == [("sla_breach", "first_response", "2026-11-02T00:10:00Z", None)]


# ---------------------------------------------------------------- pauses, resolve, reopen


def test_pause_on_statuses_do_not_count() -> None:
    sla = TicketSla(policy(first_response="4h"), WALL, T0)
    sla.on_status("pending", h(1))
    assert sla.due()["first_response_due"] is None  # no promise while waiting on the customer
    assert sla.next_timer() is None
    assert sla.fire(h(5)) == []
    sla.on_status("open", h(3))
    assert sla.due()["first_response_due"] == h(6)
    sla.on_status("on_hold", h(4))
    sla.on_status("open", h(5))
    assert sla.due()["first_response_due"] == h(7)
    assert brief(sla.fire(h(8))) == [("sla_breach", "first_response", "2026-11-02T07:00:00Z", None)]


def test_status_outside_pause_on_keeps_counting() -> None:
    sla = TicketSla(policy(first_response="4h", pause_on=["pending"]), WALL, T0)
    sla.on_status("on_hold", h(1))
    assert sla.due()["first_response_due"] == h(4)


def test_pause_in_business_hours_counts_only_open_time() -> None:
    # opened Monday 09:00 Berlin with 4h; pending from 10:00 to Tuesday 10:00 Berlin; 3h left -> Tue 13:00
    sla = TicketSla(policy(first_response="4h"), SUPPORT, t("2026-11-02T08:00:00Z"))
    sla.on_status("pending", t("2026-11-02T09:00:00Z"))
    sla.on_status("open", t("2026-11-03T09:00:00Z"))
    assert sla.due()["first_response_due"] == t("2026-11-03T12:00:00Z")


def test_pause_exactly_at_the_deadline_is_a_breach_at_that_instant() -> None:
    sla = TicketSla(policy(first_response="1h"), WALL, T0)
    sla.on_status("pending", h(1))
    assert brief(sla.fire(h(1))) == [("sla_breach", "first_response", "2026-11-02T01:00:00Z", None)]


@pytest.mark.parametrize("stop", ["resolved", "closed"])
def test_resolve_stops_the_clock_and_reopen_resumes_it(stop: str) -> None:
    sla = TicketSla(policy(resolution="8h", warn_before="1h"), WALL, T0)
    sla.on_status(stop, h(5))
    assert sla.due()["resolution_due"] is None
    assert sla.fire(h(30)) == []  # the original deadline passed while resolved: no breach
    sla.on_status("open", h(30))  # reopened: 3h left
    assert sla.due()["resolution_due"] == h(33)
    assert brief(sla.fire(h(40))) == [
        ("sla_warning", "resolution", "2026-11-03T08:00:00Z", None),
        ("sla_breach", "resolution", "2026-11-03T09:00:00Z", None),
    ]


@pytest.mark.parametrize("stop", ["resolved", "closed"])
@pytest.mark.parametrize(
    ("when", "breached"), [(h(1), False), (h(1) - timedelta(microseconds=1), False), (h(1.5), True)]
)
def test_resolving_at_the_deadline_instant_is_in_time(stop: str, when: datetime, breached: bool) -> None:
    # as an agent reply at the first-response deadline: the resolve comes before the timer of its instant
    sla = TicketSla(policy(resolution="1h", first_response="1h"), WALL, T0)
    sla.on_message("agent", h(0.5))
    sla.on_status(stop, when)
    assert [e.kind for e in sla.fire(h(10))] == (["sla_breach"] if breached else [])


def test_reopening_a_ticket_resolved_at_its_deadline_breaches_at_the_reopen() -> None:
    sla = TicketSla(policy(resolution="1h"), WALL, T0)
    sla.on_status("resolved", h(1))
    assert sla.fire(h(5)) == []
    sla.on_status("open", h(5))  # no resolution time left
    events = sla.fire(h(5))
    assert brief(events) == [("sla_breach", "resolution", "2026-11-02T05:00:00Z", None)]
    assert events[0].due == h(1)


def test_resolving_at_the_first_response_deadline_does_not_meet_it() -> None:
    sla = TicketSla(policy(first_response="1h"), WALL, T0)
    sla.on_status("resolved", h(1))
    assert brief(sla.fire(h(1))) == [("sla_breach", "first_response", "2026-11-02T01:00:00Z", None)]


def test_resolve_also_stops_an_unanswered_first_response() -> None:
    sla = TicketSla(policy(first_response="2h"), WALL, T0)
    sla.on_status("resolved", h(1))
    assert sla.fire(h(10)) == []
    sla.on_status("open", h(10))
    assert sla.due()["first_response_due"] == h(11)


# ---------------------------------------------------------------- next response


def test_next_response_starts_with_a_customer_reply_after_an_agent_reply() -> None:
    sla = TicketSla(policy(next_response="4h"), WALL, T0)
    sla.on_message("customer", h(0.5))  # before any agent reply: the first response's business
    assert sla.due()["next_response_due"] is None
    sla.on_message("agent", h(1))
    assert sla.due()["next_response_due"] is None
    sla.on_message("customer", h(2))
    assert sla.due()["next_response_due"] == h(6)
    sla.on_message("customer", h(3))  # a second customer message does not restart the clock
    assert sla.due()["next_response_due"] == h(6)
    sla.on_message("note", h(3.5))
    sla.on_message("agent", h(5))
    assert sla.due()["next_response_due"] is None
    assert sla.fire(h(7)) == []


def test_each_next_response_cycle_breaches_once() -> None:
    sla = TicketSla(policy(next_response="4h"), WALL, T0)
    sla.on_message("agent", h(1))
    sla.on_message("customer", h(7))
    assert brief(sla.fire(h(12))) == [("sla_breach", "next_response", "2026-11-02T11:00:00Z", None)]
    assert sla.fire(h(12.2)) == []
    sla.on_message("agent", h(12.5))
    sla.on_message("customer", h(13))
    assert brief(sla.fire(h(18))) == [("sla_breach", "next_response", "2026-11-02T17:00:00Z", None)]


def test_customer_reply_while_pending_starts_next_response_on_reopen() -> None:
    sla = TicketSla(policy(next_response="4h"), WALL, T0)
    sla.on_message("agent", h(1))
    sla.on_status("pending", h(1))
    sla.on_message("customer", h(20))
    assert sla.due()["next_response_due"] is None
    sla.on_status("open", h(21))
    assert sla.due()["next_response_due"] == h(25)


# ---------------------------------------------------------------- acknowledgement and escalation


def test_acknowledgement_clock() -> None:
    met = TicketSla(policy(acknowledgement="30m"), WALL, T0)
    assert met.due()["acknowledgement_due"] == h(0.5)
    met.on_acknowledge(h(0.25))
    assert met.due()["acknowledgement_due"] is None
    assert met.fire(h(2)) == []
    missed = TicketSla(policy(acknowledgement="30m"), WALL, T0)
    missed.on_message("agent", h(0.2))  # a reply is not an acknowledgement
    assert brief(missed.fire(h(2))) == [("sla_breach", "acknowledgement", "2026-11-02T00:30:00Z", None)]


ESCALATE = [{"after": "30m", "to": "team-leads"}, {"after": "2h", "to": "managers"}]


def test_escalation_chain_with_two_levels() -> None:
    sla = TicketSla(policy(first_response="1h", escalate=ESCALATE), WALL, T0)
    assert sla.next_timer() == h(1)
    assert brief(sla.fire(h(1.5))) == [
        ("sla_breach", "first_response", "2026-11-02T01:00:00Z", None),
        ("sla_escalate", "first_response", "2026-11-02T01:30:00Z", "team-leads"),
    ]
    assert sla.next_timer() == h(3)
    assert brief(sla.fire(h(4))) == [("sla_escalate", "first_response", "2026-11-02T03:00:00Z", "managers")]
    assert sla.next_timer() is None


def test_escalation_stops_once_the_metric_is_met() -> None:
    sla = TicketSla(policy(first_response="1h", escalate=ESCALATE), WALL, T0)
    sla.on_message("agent", h(2))
    assert [e.to for e in sla.fire(h(10))] == [None, "team-leads"]


def test_escalation_counts_business_time_and_skips_pauses() -> None:
    # breach at Monday 17:00 Berlin; the first level 30 business minutes later is Tuesday 09:30 Berlin
    sla = TicketSla(policy(first_response="1h", escalate=ESCALATE), SUPPORT, t("2026-11-02T15:00:00Z"))
    assert brief(sla.fire(t("2026-11-03T08:30:00Z"))) == [
        ("sla_breach", "first_response", "2026-11-02T16:00:00Z", None),
        ("sla_escalate", "first_response", "2026-11-03T08:30:00Z", "team-leads"),
    ]
    sla.on_status("pending", t("2026-11-03T09:00:00Z"))  # 1h of the 2h after the breach consumed
    sla.on_status("open", t("2026-11-04T09:00:00Z"))
    assert sla.next_timer() == t("2026-11-04T10:00:00Z")


def test_breach_and_immediate_escalation_are_ordered() -> None:
    sla = TicketSla(policy(first_response="1h", escalate=[{"after": "0m", "to": "team-leads"}]), WALL, T0)
    assert [e.kind for e in sla.fire(h(1))] == ["sla_breach", "sla_escalate"]


def test_events_of_several_metrics_come_in_time_order() -> None:
    sla = TicketSla(
        policy(first_response="2h", resolution="3h", acknowledgement="1h", warn_before="30m"), WALL, T0
    )
    events = sla.fire(h(5))
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert [(e.kind, e.metric) for e in events] == [
        ("sla_warning", "acknowledgement"),
        ("sla_breach", "acknowledgement"),
        ("sla_warning", "first_response"),
        ("sla_breach", "first_response"),
        ("sla_warning", "resolution"),
        ("sla_breach", "resolution"),
    ]


# ---------------------------------------------------------------- policy changes


def test_change_policy_keeps_consumed_time() -> None:
    sla = TicketSla(policy("standard", resolution="3d"), WALL, T0)
    sla.on_status("pending", h(4))
    sla.on_status("open", h(6))  # 8h consumed at h(10)
    sla.change_policy(policy("enterprise", resolution="12h"), WALL, h(10))
    assert sla.due()["resolution_due"] == h(14)
    assert [(e.kind, e.policy) for e in sla.fire(h(20))] == [("sla_breach", "enterprise")]


def test_change_to_a_tighter_policy_breaches_at_the_change() -> None:
    sla = TicketSla(policy("standard", first_response="8h", warn_before="1h"), WALL, T0)
    sla.change_policy(policy("enterprise", first_response="1h", warn_before="15m"), WALL, h(2))
    events = sla.fire(h(2))
    assert brief(events) == [
        ("sla_warning", "first_response", "2026-11-02T02:00:00Z", None),
        ("sla_breach", "first_response", "2026-11-02T02:00:00Z", None),
    ]
    # dated at the change, never before it; each says when its threshold was passed under the new policy
    assert [e.due for e in events] == [h(0.75), h(1)]
    assert sla.due()["first_response_due"] == h(1)


def test_change_policy_does_not_repeat_fired_events() -> None:
    sla = TicketSla(policy("enterprise", first_response="1h"), WALL, T0)
    assert len(sla.fire(h(2))) == 1
    sla.change_policy(policy("standard", first_response="4h"), WALL, h(2))
    assert sla.due()["first_response_due"] == h(4)
    assert sla.fire(h(10)) == []


def test_change_policy_to_a_calendar() -> None:
    # 2h of wall time consumed by Monday 02:00Z; 4h on the support calendar leaves 2h: 09:00-11:00 Berlin
    sla = TicketSla(policy("wall", first_response="8h"), WALL, T0)
    sla.change_policy(
        policy("enterprise", calendar="support", first_response="4h", next_response="1h"), SUPPORT, h(2)
    )
    assert sla.due()["first_response_due"] == t("2026-11-02T10:00:00Z")
    assert sla.due()["next_response_due"] is None


def test_change_policy_adds_a_metric_with_time_already_consumed() -> None:
    sla = TicketSla(policy("basic"), WALL, T0)
    assert sla.next_timer() is None
    sla.change_policy(policy("enterprise", acknowledgement="3h"), WALL, h(2))
    assert sla.due()["acknowledgement_due"] == h(3)


# ---------------------------------------------------------------- property


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=600), min_size=0, max_size=12), st.integers(1, 900))
def test_breach_comes_after_budget_plus_paused_time(gaps: list[int], budget: int) -> None:
    """Alternate open/pending at the given minute gaps: the breach is at open time == budget, exactly."""
    sla = TicketSla(policy(first_response=f"{budget}m"), WALL, T0)
    now, open_minutes, statuses = T0, 0, ["pending", "open"]
    expected: datetime | None = None
    for n, gap in enumerate(gaps):
        if n % 2 == 0 and expected is None and open_minutes + gap >= budget:
            expected = now + timedelta(minutes=budget - open_minutes)
        open_minutes += gap if n % 2 == 0 else 0
        now += timedelta(minutes=gap)
        sla.on_status(statuses[n % 2], now)
    if expected is None and len(gaps) % 2 == 0:  # still open at the end
        expected = now + timedelta(minutes=budget - open_minutes)
    events = sla.fire(now + timedelta(days=30))
    assert [e.at for e in events] == ([expected] if expected else [])
    assert all(e.at.tzinfo is UTC for e in events)
