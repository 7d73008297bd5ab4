"""Business hours around switches that move a local date: a period ending in a spring gap that ends at
midnight (America/Nuuk every March since 2024), a fall-back across midnight (America/St_Johns until 2011)
and a period starting in a spring gap (any zone). Expected values are counted by hand from the offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.rules.calendar import BusinessCalendar
from bridge.rules.sla import TicketSla
from bridge.settings import SlaConfig


def z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


M = timedelta(minutes=1)


def test_a_saturday_period_ending_in_nuuks_midnight_gap_runs_on_and_every_query_sees_it() -> None:
    # 2026-03-28: Nuuk goes from -02:00 to -01:00 at Saturday 23:00 local, straight to Sunday 00:00.
    # 18:00-23:30 is 20:00Z to 01:30Z (23:30 does not exist: read with the offset before the switch)
    cal = BusinessCalendar("America/Nuuk", {5: [(18 * 60, 23 * 60 + 30)]})
    assert list(cal.periods(z("2026-03-28T00:00Z"), z("2026-03-30T00:00Z"))) == [
        (z("2026-03-28T20:00Z"), z("2026-03-29T01:30Z"))]
    assert cal.is_open(z("2026-03-29T01:15Z")) and not cal.is_open(z("2026-03-29T01:30Z"))
    assert cal.add(z("2026-03-29T01:00Z"), 15 * M) == z("2026-03-29T01:15Z")  # (it said a week later)
    assert cal.add(cal.add(z("2026-03-29T00:59Z"), M), 15 * M) == cal.add(z("2026-03-29T00:59Z"), 16 * M)
    assert cal.elapsed(z("2026-03-29T01:00Z"), z("2026-03-29T01:30Z")) == 30 * M
    assert cal.next_open(z("2026-03-29T01:10Z")) == z("2026-03-29T01:10Z")


def test_the_sla_breach_in_nuuks_spilled_half_hour_falls_at_the_deadline_not_a_week_later() -> None:
    cal = BusinessCalendar("America/Nuuk", {5: [(18 * 60, 23 * 60 + 30)]})
    policy = SlaConfig(name="p", first_response="45m", warn_before="15m")
    sla = TicketSla(policy, cal, z("2026-03-29T00:30Z"))
    assert sla.due()["first_response_due"] == z("2026-03-29T01:15Z")
    fired = [(e.kind, e.at) for e in sla.fire(z("2026-04-10T00:00Z"))]
    assert fired == [("sla_warning", z("2026-03-29T01:00Z")), ("sla_breach", z("2026-03-29T01:15Z"))]


def test_overnight_hours_over_a_fall_back_across_midnight() -> None:
    # 2010-11-07: St John's fell back at 00:01 NDT (-02:30) to 23:01 NST (-03:30) of Saturday, so 02:31Z to
    # 03:30Z are Saturday by the local date yet inside Sunday's 00:00-06:00 (02:30Z to 09:30Z)
    every_day = {d: [(0, 6 * 60), (22 * 60, 24 * 60)] for d in range(7)}
    cal = BusinessCalendar("America/St_Johns", every_day)
    assert cal.is_open(z("2010-11-07T03:00Z"))
    assert cal.elapsed(z("2010-11-07T02:45Z"), z("2010-11-07T03:15Z")) == 30 * M
    end = cal.add(z("2010-11-07T02:00Z"), 60 * M)
    assert end == z("2010-11-07T03:00Z") and cal.elapsed(z("2010-11-07T02:00Z"), end) == 60 * M


def test_a_period_starting_in_a_spring_gap_takes_nothing_from_the_next_one() -> None:
    # 2026-03-08 in New York: 02:30 does not exist and is read as 03:30 EDT (07:30Z), after 03:00 EDT (07:00Z)
    # where the next period starts: the day is open 07:00Z to 09:00Z, the union of both
    cal = BusinessCalendar("America/New_York", {6: [(150, 165), (180, 300)]})
    assert list(cal.periods(z("2026-03-08T00:00Z"), z("2026-03-09T00:00Z"))) == [
        (z("2026-03-08T07:00Z"), z("2026-03-08T09:00Z"))]
    assert cal.is_open(z("2026-03-08T07:10Z"))
    assert cal.elapsed(z("2026-03-08T06:00Z"), z("2026-03-08T10:00Z")) == 120 * M
    assert cal.next_open(z("2026-03-08T06:00Z")) == z("2026-03-08T07:00Z")
