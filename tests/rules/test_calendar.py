"""Business-hours arithmetic: vectors ported from other libraries' suites, DST, holidays, iCal, properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rules.calendar import BusinessCalendar, parse_period, validate_calendar
from bridge.settings import CalendarConfig, load_partial

DATA = Path(__file__).parent.parent / "data" / "calendars"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
H = timedelta(hours=1)
US = timedelta(microseconds=1)


def cal(
    hours: dict[str, list[str]], tz: str = "UTC", holidays: tuple[str, ...] = (), **kw: str
) -> BusinessCalendar:
    return BusinessCalendar.from_config(
        CalendarConfig(timezone=tz, hours=hours, holidays=list(holidays), **kw)
    )


def at(text: str, tz: str = "UTC") -> datetime:
    """A local wall-clock time in ``tz`` as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


NINE_TO_FIVE = {d: ["09:00-17:00"] for d in WEEKDAYS}
# the default schedule of zendesk/biz's spec helper (spec/schedule_spec.rb, spec/periods/after_spec.rb)
BIZ_HOURS = {
    "mon": ["09:00-17:00"],
    "tue": ["10:00-16:00"],
    "wed": ["09:00-17:00"],
    "thu": ["10:00-16:00"],
    "fri": ["09:00-17:00"],
    "sat": ["11:00-14:30"],
}
SUPPORT = {
    "mon": ["09:00-12:00", "13:00-17:00"],
    "tue": ["09:00-17:00"],
    "wed": ["09:00-17:00"],
    "thu": ["09:00-17:00"],
    "fri": ["09:00-17:00"],
}


# ---------------------------------------------------------------- ported vectors


# bokmann/business_time, test/test_business_hours.rb (the gem's default: 9:00-17:00, Monday to Friday)
MON_FRI_SAT = {"mon": ["09:00-17:00"], "fri": ["09:00-17:00"], "sat": ["10:00-15:00"]}
FULL_MON_FRI = {"mon": ["00:00-24:00"], "fri": ["00:00-24:00"], "sat": ["11:00-15:00"]}
JULY_5_2010 = ("2010-07-05",)


@pytest.mark.parametrize(
    ("hours", "holidays", "start", "delta", "expected"),
    [
        # "move to tomorrow if we add 8 business hours"
        (NINE_TO_FIVE, (), "2010-08-04 09:35", 8 * H, "2010-08-05 09:35"),
        # "take into account a weekend when adding an hour"
        (NINE_TO_FIVE, (), "2010-04-09 16:50", 1 * H, "2010-04-12 09:50"),
        # "take into account a holiday"
        (NINE_TO_FIVE, JULY_5_2010, "2010-07-02 16:50", 1 * H, "2010-07-06 09:50"),
        # "add hours in the middle of the workday"
        (NINE_TO_FIVE, (), "2010-04-12 09:50", 3 * H, "2010-04-12 12:50"),
        # "respect work_hours" / "... when starting before beginning of workday"
        (MON_FRI_SAT, (), "2010-12-24 15:00", 9 * H, "2010-12-27 11:00"),
        (MON_FRI_SAT, (), "2010-12-24 08:00", 15 * H, "2010-12-27 11:00"),
        # "respect work_hours with some 24 hour days" (written "0:00"-"0:00" there, 00:00-24:00 here)
        (FULL_MON_FRI, (), "2010-12-24 15:00", 24 * H, "2010-12-27 11:00"),
        (FULL_MON_FRI, (), "2010-12-25 08:00", 15 * H, "2010-12-27 11:00"),
        # "respect work_hours within same day": the deadline is the closing instant, not Monday's opening
        ({"fri": ["09:00-17:00"]}, (), "2010-12-24 08:00", 8 * H, "2010-12-24 17:00"),
        # zendesk/biz, spec/calculation/for_duration_spec.rb: 19 hours after Monday 11:00
        (BIZ_HOURS, (), "2006-01-02 11:00", 19 * H, "2006-01-04 16:00"),
    ],
)
def test_add_ported_vectors(
    hours: dict[str, list[str]], holidays: tuple[str, ...], start: str, delta: timedelta, expected: str
) -> None:
    assert cal(hours, holidays=holidays).add(at(start), delta) == at(expected)


# bokmann/business_time, test/test_business_hours.rb: "roll forward to 9 am" / "to the next morning"
@pytest.mark.parametrize(
    ("t", "expected"),
    [
        ("2010-04-26 04:30", "2010-04-26 09:00"),
        ("2010-04-26 18:00", "2010-04-27 09:00"),
        ("2010-04-25 12:06:56", "2010-04-26 09:00"),
        ("2010-04-26 10:00", "2010-04-26 10:00"),
    ],
)
def test_next_open_rolls_forward(t: str, expected: str) -> None:
    assert cal(NINE_TO_FIVE).next_open(at(t)) == at(expected)


def test_elapsed_ported_vectors() -> None:
    # zendesk/biz, spec/calculation/duration_within_spec.rb: one week of the default schedule is 39.5 hours;
    # a reversed or empty span is zero
    biz = cal(BIZ_HOURS, holidays=("2006-12-25",))
    assert biz.elapsed(at("2006-01-01 00:00"), at("2006-01-08 00:00")) == timedelta(hours=39.5)
    assert biz.elapsed(at("2006-01-08 00:00"), at("2006-01-01 00:00")) == timedelta(0)
    assert biz.elapsed(at("2006-01-01 00:00"), at("2006-01-01 00:00")) == timedelta(0)
    # bokmann/business_time, test/test_business_time_until_eastern.rb: 15:00 to 16:00 in US Eastern is an hour
    ny = cal(NINE_TO_FIVE, "America/New_York")
    assert (
        ny.elapsed(at("2014-02-17 15:00", "America/New_York"), at("2014-02-17 16:00", "America/New_York"))
        == H
    )


def test_periods_skip_holidays_biz_vector() -> None:
    # zendesk/biz, spec/periods/after_spec.rb: "when multiple periods on holidays are encountered"
    biz = cal(BIZ_HOURS, holidays=("2006-01-16", "2006-01-18"))
    got = list(biz.periods(at("2006-01-14 00:00"), at("2006-01-20 00:00")))
    assert got == [
        (at("2006-01-14 11:00"), at("2006-01-14 14:30")),
        (at("2006-01-17 10:00"), at("2006-01-17 16:00")),
        (at("2006-01-19 10:00"), at("2006-01-19 16:00")),
    ]
    # "when the origin is inside a period": a partial period first
    assert next(biz.periods(at("2006-01-02 12:00"), at("2006-01-03 00:00"))) == (
        at("2006-01-02 12:00"),
        at("2006-01-02 17:00"),
    )


def test_period_inside_spring_gap_is_dropped_biz_vector() -> None:
    # zendesk/biz, spec/periods/after_spec.rb "when an empty interval is generated": 02:30-03:15 on the
    # spring-forward Sunday in Los Angeles does not exist, so the first period is Monday's
    la = "America/Los_Angeles"
    c = cal({"sun": ["02:30-03:15"], "mon": ["09:00-17:00"]}, la)
    assert next(c.periods(at("2006-04-02 00:00", la), at("2006-04-10 00:00", la))) == (
        at("2006-04-03 09:00", la),
        at("2006-04-03 17:00", la),
    )
    # a week later the same period exists (45 minutes)
    assert c.elapsed(at("2006-04-09 00:00", la), at("2006-04-10 00:00", la)) == timedelta(minutes=45)


def test_origin_late_in_period_biz_vector() -> None:
    # zendesk/biz, spec/periods/after_spec.rb "when the origin is near the beginning of the week"
    la = "America/Los_Angeles"
    c = cal({"sat": ["06:00-18:00"]}, la)
    assert next(c.periods(at("2006-01-07 17:00", la), at("2006-01-20 00:00", la))) == (
        at("2006-01-07 17:00", la),
        at("2006-01-07 18:00", la),
    )


# ---------------------------------------------------------------- closing instants, zero, overnight


def test_deadline_at_closing_time_is_the_closing_instant() -> None:
    c = cal(SUPPORT, "Europe/Berlin")
    berlin = "Europe/Berlin"
    deadline = c.add(at("2026-11-02 16:00", berlin), H)  # a Monday: 13:00-17:00
    assert deadline == at("2026-11-02 17:00", berlin)
    assert deadline.tzinfo is UTC
    assert not c.is_open(deadline)
    assert c.is_open(deadline - US)
    # the lunch break closes too: 2h from 10:00 ends at 12:00, not at 13:00
    assert c.add(at("2026-11-02 10:00", berlin), 2 * H) == at("2026-11-02 12:00", berlin)
    # one more microsecond needs the afternoon
    assert c.add(at("2026-11-02 10:00", berlin), 2 * H + US) == at("2026-11-02 13:00", berlin) + US


def test_add_zero_returns_start_even_when_closed() -> None:
    c = cal(NINE_TO_FIVE)
    sunday = at("2026-11-01 12:00")
    assert c.add(sunday, timedelta(0)) == sunday
    assert c.add(sunday, US) == at("2026-11-02 09:00") + US


def test_add_rejects_negative_and_naive() -> None:
    c = cal(NINE_TO_FIVE)
    with pytest.raises(ValueError, match="negative"):
        c.add(at("2026-11-02 10:00"), -H)
    with pytest.raises(ValueError, match="naive"):
        c.is_open(datetime(2026, 11, 2, 10))


def test_overnight_periods_join_across_midnight() -> None:
    ny = "America/New_York"
    c = cal({"mon": ["22:00-24:00"], "tue": ["00:00-06:00"]}, ny)
    assert c.is_open(at("2026-06-09 00:00", ny))  # Tuesday midnight
    assert not c.is_open(at("2026-06-09 06:00", ny))
    assert c.add(at("2026-06-08 22:00", ny), 2 * H) == at("2026-06-09 00:00", ny)
    assert c.add(at("2026-06-08 23:00", ny), 3 * H) == at("2026-06-09 02:00", ny)
    assert list(c.periods(at("2026-06-08 00:00", ny), at("2026-06-10 00:00", ny))) == [
        (at("2026-06-08 22:00", ny), at("2026-06-09 06:00", ny))
    ]
    # eight hours of the night shift take one whole night
    assert c.add(at("2026-06-08 12:00", ny), 8 * H) == at("2026-06-09 06:00", ny)
    assert c.add(at("2026-06-08 12:00", ny), 8 * H + US) == at("2026-06-15 22:00", ny) + US


def test_weekend_and_holidays() -> None:
    berlin = "Europe/Berlin"
    c = cal(SUPPORT, berlin, holidays=("2026-12-25", "2026-12-26"))
    # Thursday 24th 16:00 + 2h: one hour Thursday, Friday 25th is a holiday, then the weekend
    assert c.add(at("2026-12-24 16:00", berlin), 2 * H) == at("2026-12-28 10:00", berlin)
    assert not c.is_open(at("2026-12-25 10:00", berlin))
    assert c.next_open(at("2026-12-24 17:30", berlin)) == at("2026-12-28 09:00", berlin)
    assert c.elapsed(at("2026-12-21 00:00", berlin), at("2026-12-28 00:00", berlin)) == 31 * H


def test_d_is_twenty_four_business_hours() -> None:
    c = cal(NINE_TO_FIVE)
    # 2d = 48 open hours = six 8-hour days: Monday 09:00 + 2d is the next Monday 17:00
    assert c.add(at("2026-11-02 09:00"), timedelta(days=2)) == at("2026-11-09 17:00")


# ---------------------------------------------------------------- daylight saving


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("Europe/Berlin", "2026-03-29", 5),  # last Sunday of March: 02:00 -> 03:00
        ("Europe/Berlin", "2026-10-25", 7),  # last Sunday of October: 03:00 -> 02:00
        ("Europe/Berlin", "2026-04-05", 6),
        ("America/New_York", "2026-03-08", 5),
        ("America/New_York", "2026-11-01", 7),
    ],
)
def test_switch_inside_open_hours_counts_real_time(tz: str, day: str, hours: int) -> None:
    c = cal({"sun": ["00:00-06:00"], "mon": ["09:00-17:00"]}, tz)
    start = at(f"{day} 00:00", tz)
    assert c.elapsed(start, start + timedelta(days=1)) == hours * H
    assert c.add(start, hours * H) == at(f"{day} 06:00", tz)


@pytest.mark.parametrize(
    ("tz", "friday", "monday"),
    [
        ("Europe/Berlin", "2026-03-27", "2026-03-30"),
        ("Europe/Berlin", "2026-10-23", "2026-10-26"),
        ("America/New_York", "2026-03-06", "2026-03-09"),
        ("America/New_York", "2026-10-30", "2026-11-02"),
    ],
)
def test_working_day_stays_eight_hours_across_a_switch_weekend(tz: str, friday: str, monday: str) -> None:
    c = cal(NINE_TO_FIVE, tz)
    assert c.add(at(f"{friday} 16:00", tz), 2 * H) == at(f"{monday} 10:00", tz)
    assert c.elapsed(at(f"{friday} 00:00", tz), at(f"{monday} 23:00", tz)) == 16 * H
    # UTC offset of the opening differs by an hour on both sides of the switch
    before, after = c.next_open(at(f"{friday} 00:00", tz)), c.next_open(at(f"{monday} 00:00", tz))
    assert abs((after - before) - timedelta(days=3)) == H


def test_overnight_shift_over_fall_back_night() -> None:
    ny = "America/New_York"
    c = cal({"sat": ["22:00-24:00"], "sun": ["00:00-06:00"]}, ny)
    sat = at("2026-10-31 22:00", ny)
    assert c.elapsed(sat, at("2026-11-01 12:00", ny)) == 9 * H
    assert c.add(sat, 9 * H) == datetime(2026, 11, 1, 11, 0, tzinfo=UTC)
    assert list(c.periods(sat, at("2026-11-02 00:00", ny))) == [
        (datetime(2026, 11, 1, 2, 0, tzinfo=UTC), datetime(2026, 11, 1, 11, 0, tzinfo=UTC))
    ]


@pytest.mark.parametrize(
    ("tz", "utc_opening"),
    [
        ("Asia/Tokyo", "2026-06-08 00:00"),
        ("Asia/Kolkata", "2026-06-08 03:30"),
        ("America/Los_Angeles", "2026-06-08 16:00"),
        ("Australia/Sydney", "2026-06-07 23:00"),
    ],
)
def test_same_hours_in_several_zones(tz: str, utc_opening: str) -> None:
    c = cal(NINE_TO_FIVE, tz)
    monday_morning = at("2026-06-08 09:00", tz)
    assert c.next_open(at("2026-06-06 12:00", tz)) == at(utc_opening)
    assert c.add(monday_morning, 8 * H) == at("2026-06-08 17:00", tz)
    assert c.add(monday_morning, 8 * H + US) == at("2026-06-09 09:00", tz) + US


# ---------------------------------------------------------------- iCalendar holidays


@pytest.mark.parametrize(
    ("day", "closed"),
    [
        ("2026-12-25", True),
        ("2026-12-26", True),
        ("2031-12-26", True),
        ("2026-12-24", False),  # yearly, 2 days
        ("2026-01-01", True),
        ("2027-01-01", False),  # UNTIL=20261231
        ("2026-11-26", True),
        ("2027-11-25", True),
        ("2027-11-18", False),  # BYMONTH=11;BYDAY=4TH
        ("2026-05-01", True),
        ("2027-05-01", False),
        ("2028-05-01", True),  # EXDATE 2027
        ("2026-03-16", True),
        ("2027-03-16", False),  # COUNT=3 from 2024
        ("2026-08-10", True),
        ("2026-08-14", True),
        ("2026-08-17", False),  # multi-day closure
        ("2026-06-02", True),  # a timed event closes its whole local day
        ("2026-05-15", True),
        ("2026-05-14", False),  # one all-day event
    ],
)
def test_ical_holidays(day: str, closed: bool) -> None:
    c = BusinessCalendar.from_config(
        CalendarConfig(
            timezone="Europe/Berlin",
            hours={d: ["00:00-24:00"] for d in (*WEEKDAYS, "sat", "sun")},
            ical="holidays.ics",
        ),
        base_dir=DATA,
    )
    d = date.fromisoformat(day)
    assert c.is_holiday(d) is closed
    assert c.is_open(at(f"{day} 12:00", "Europe/Berlin")) is not closed


def test_ical_and_list_holidays_together() -> None:
    c = BusinessCalendar.from_config(
        CalendarConfig(hours=NINE_TO_FIVE, holidays=["2026-08-17"], ical=str(DATA / "holidays.ics")),
        default_tz="Europe/Berlin",
    )
    # summer closure Mon 10 - Fri 14 August, then Monday 17th from the list: next opening Tuesday 18th
    assert c.next_open(at("2026-08-07 17:00", "Europe/Berlin")) == at("2026-08-18 09:00", "Europe/Berlin")


ICS = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//bridge tests//rule//EN\r
BEGIN:VEVENT\r
UID:rule@bridge.test\r
DTSTART;VALUE=DATE:20200525\r
RRULE:{rule}\r
END:VEVENT\r
END:VCALENDAR\r
"""


@pytest.mark.parametrize(
    ("rule", "holiday", "problem"),
    [
        ("FREQ=YEARLY;BYMONTH=5;BYDAY=-1MO", "2026-05-25", None),  # US Memorial Day: last Monday of May
        ("FREQ=YEARLY;INTERVAL=2", "2026-05-25", None),
        ("FREQ=YEARLY;INTERVAL=2", "2027-05-25", "not a holiday"),
        ("FREQ=YEARLY;BYDAY=20MO", None, "BYDAY needs BYMONTH"),
        ("FREQ=YEARLY;BYMONTH=5;BYDAY=MO;BYSETPOS=-1", None, "BYSETPOS is not supported"),
        ("FREQ=MONTHLY", None, "FREQ=MONTHLY is not supported"),
    ],
)
def test_ical_yearly_rules(tmp_path: Path, rule: str, holiday: str | None, problem: str | None) -> None:
    (tmp_path / "rule.ics").write_text(ICS.format(rule=rule), newline="")
    cfg = CalendarConfig(hours=NINE_TO_FIVE, ical="rule.ics")
    problems = validate_calendar("support", cfg, base_dir=tmp_path)
    if holiday is None:
        assert [p for p, _ in problems] == [("ical",)]
        assert problem is not None and problem in problems[0][1] and "rule@bridge.test" in problems[0][1]
        return
    assert problems == []
    c = BusinessCalendar.from_config(cfg, base_dir=tmp_path)
    assert c.is_holiday(date.fromisoformat(holiday)) is (problem is None)


def _ics(*events: str) -> str:
    """A calendar of VEVENTs written ``UID|PROPERTIES`` (properties one a line)."""
    body = "".join(
        f"BEGIN:VEVENT\r\nUID:{uid}\r\n{props.replace(chr(10), chr(13) + chr(10))}\r\nEND:VEVENT\r\n"
        for uid, props in (e.split("|", 1) for e in events)
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bridge tests//x//EN\r\n{body}END:VCALENDAR\r\n"


def _closed(tmp_path: Path, *events: str, years: range = range(2024, 2029)) -> list[str]:
    (tmp_path / "h.ics").write_text(_ics(*events), newline="")
    c = BusinessCalendar.from_config(CalendarConfig(hours=NINE_TO_FIVE, ical="h.ics"), base_dir=tmp_path)
    days = (date(y, 1, 1) + timedelta(days=n) for y in years for n in range(366))
    return sorted({str(d) for d in days if d.year in years and c.is_holiday(d)})


@pytest.mark.parametrize(
    ("events", "closed"),
    [
        # US Thanksgiving written as RFC 5545's example: the Thursday among the 22nd-28th (both parts hold)
        (["tg|DTSTART;VALUE=DATE:20241128\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=TH;BYMONTHDAY=22,23,24,25,26,27,28"],
         ["2024-11-28", "2025-11-27", "2026-11-26", "2027-11-25", "2028-11-23"]),
        # a Friday the 13th, in any month
        (["f13|DTSTART;VALUE=DATE:20260213\nRRULE:FREQ=YEARLY;BYDAY=FR;BYMONTHDAY=13;COUNT=3"],
         ["2026-02-13", "2026-03-13", "2026-11-13"]),
        # BYMONTHDAY without BYMONTH: that day of every month
        (["m|DTSTART;VALUE=DATE:20281101\nRRULE:FREQ=YEARLY;BYMONTHDAY=1"], ["2028-11-01", "2028-12-01"]),
        # a DTSTART the rule does not produce is still the first occurrence, and counts towards COUNT
        (["d|DTSTART;VALUE=DATE:20260102\nRRULE:FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1;COUNT=2"],
         ["2026-01-02", "2027-01-01"]),
        # a moved occurrence replaces the original date
        (["mv|DTSTART;VALUE=DATE:20260601\nRRULE:FREQ=YEARLY",
          "mv|RECURRENCE-ID;VALUE=DATE:20270601\nDTSTART;VALUE=DATE:20270602"],
         ["2026-06-01", "2027-06-02", "2028-06-01"]),
        # a cancelled occurrence, and a moved one listed before its series
        (["cx|RECURRENCE-ID;VALUE=DATE:20270704\nDTSTART;VALUE=DATE:20270704\nSTATUS:CANCELLED",
          "cx|DTSTART;VALUE=DATE:20260704\nRRULE:FREQ=YEARLY;UNTIL=20281231"],
         ["2026-07-04", "2028-07-04"]),
        # RDATE adds dates (and periods), EXDATE removes them too
        (["r|DTSTART;VALUE=DATE:20260101\nRDATE;VALUE=DATE:20260601,20260701\nEXDATE;VALUE=DATE:20260701",
          "p|DTSTART;VALUE=DATE:20250301\nRDATE;VALUE=PERIOD:20250310T120000Z/20250312T080000Z"],
         ["2025-03-01", "2025-03-10", "2025-03-11", "2025-03-12", "2026-01-01", "2026-06-01"]),
        # a cancelled event closes nothing
        (["c|DTSTART;VALUE=DATE:20260301\nSTATUS:CANCELLED",
          "cs|DTSTART;VALUE=DATE:20260401\nRRULE:FREQ=YEARLY\nSTATUS:CANCELLED"], []),
    ],
)
def test_ical_recurrence_as_rfc_5545_says(tmp_path: Path, events: list[str], closed: list[str]) -> None:
    assert _closed(tmp_path, *events) == closed


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ("x|DTSTART;VALUE=DATE:20260101\nRRULE:FREQ=WEEKLY", "FREQ=WEEKLY is not supported"),
        ("x|DTSTART;VALUE=DATE:20260101\nRRULE:FREQ=YEARLY\nEXRULE:FREQ=YEARLY;BYMONTH=1", "EXRULE"),
        ("x|RECURRENCE-ID;RANGE=THISANDFUTURE;VALUE=DATE:20270101\nDTSTART;VALUE=DATE:20270102", "RANGE"),
        ("x|DTSTART;VALUE=DATE:20260101\nRRULE:FREQ=YEARLY;BYDAY=MO", "BYDAY needs BYMONTH"),
    ],
)
def test_unsupported_ical_is_an_error_naming_file_and_event(tmp_path: Path, event: str, problem: str) -> None:
    (tmp_path / "h.ics").write_text(_ics(event), newline="")
    problems = validate_calendar("s", CalendarConfig(hours=NINE_TO_FIVE, ical="h.ics"), base_dir=tmp_path)
    assert [p for p, _ in problems] == [("ical",)]
    assert problem in problems[0][1] and "h.ics" in problems[0][1] and "event x:" in problems[0][1]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("cfg", "path", "fragment"),
    [
        (
            CalendarConfig(hours={"monday": ["09:00-17:00"], "tue": ["09:00-17:00"]}),
            ("hours", "monday"),
            "unknown day",
        ),
        (CalendarConfig(hours={"mon": ["9-17"]}), ("hours", "mon", "0"), "HH:MM-HH:MM"),
        (CalendarConfig(hours={"mon": ["17:00-09:00"]}), ("hours", "mon", "0"), "overnight"),
        (CalendarConfig(hours={"mon": ["09:00-09:00"]}), ("hours", "mon", "0"), "ends before"),
        (CalendarConfig(hours={"mon": ["09:00-24:30"]}), ("hours", "mon", "0"), "beyond 24:00"),
        (CalendarConfig(hours={"mon": ["24:00-24:00"]}), ("hours", "mon", "0"), "beyond 24:00"),
        (CalendarConfig(hours={"mon": ["09:00-12:00", "11:00-17:00"]}), ("hours", "mon", "1"), "overlaps"),
        (
            CalendarConfig(hours={"mon": ["09:00-17:00"]}, timezone="Mars/Olympus"),
            ("timezone",),
            "unknown time zone",
        ),
        (
            CalendarConfig(hours={"mon": ["09:00-17:00"]}, holidays=["2026-02-30"]),
            ("holidays", "0"),
            "YYYY-MM-DD",
        ),
        (
            CalendarConfig(hours={"mon": ["09:00-17:00"]}, holidays=["25.12.2026"]),
            ("holidays", "0"),
            "YYYY-MM-DD",
        ),
        (
            CalendarConfig(hours={"mon": ["09:00-17:00"]}, ical=str(DATA / "missing.ics")),
            ("ical",),
            "cannot read",
        ),
        (
            CalendarConfig(hours={"mon": ["09:00-17:00"]}, ical=str(DATA / "broken.ics")),
            ("ical",),
            "not an iCalendar file",
        ),
        (
            CalendarConfig(hours={"mon": ["09:00-17:00"]}, ical=str(DATA / "weekly.ics")),
            ("ical",),
            "FREQ=WEEKLY",
        ),
        (CalendarConfig(hours={}), ("hours",), "no open hours"),
        (CalendarConfig(hours={"sat": [], "sun": []}), ("hours",), "no open hours"),
    ],
)
def test_validate_calendar_problems(cfg: CalendarConfig, path: tuple[str, ...], fragment: str) -> None:
    problems = validate_calendar("support", cfg)
    assert [p for p, _ in problems] == [path]
    assert fragment in problems[0][1]
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        BusinessCalendar.from_config(cfg)


def test_valid_calendars_have_no_problems() -> None:
    assert (
        validate_calendar(
            "support", CalendarConfig(timezone="Europe/Berlin", hours=SUPPORT, holidays=["2026-12-25"])
        )
        == []
    )
    assert (
        validate_calendar(
            "night",
            CalendarConfig(
                hours={"mon": ["22:00-24:00"], "tue": ["00:00-06:00"], "wed": ["09:00-12:00", "12:00-13:00"]}
            ),
        )
        == []
    )
    assert (
        validate_calendar("ics", CalendarConfig(hours=NINE_TO_FIVE, ical="holidays.ics"), base_dir=DATA) == []
    )


def test_a_toml_date_is_a_holiday_like_its_text(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(
        '[bridge]\ndatabase = "sqlite:///:memory:"\n[calendars.s]\nhours = { mon = ["09:00-17:00"] }\n'
        'holidays = [2026-12-25, "2026-12-26", 2026-12-28T10:00:00]\n'
    )
    loaded, problems = load_partial(tmp_path / "bridge.toml")
    assert problems == [] and loaded is not None
    cfg = loaded.config.calendars["s"]
    assert cfg.holidays == ["2026-12-25", "2026-12-26", "2026-12-28T10:00:00"]
    # a date-time is not a whole day: named as not a date, not as "not a valid string"
    assert validate_calendar("s", cfg) == [
        (("holidays", "2"), "'2026-12-28T10:00:00' is not a date (use YYYY-MM-DD)")
    ]
    ok = BusinessCalendar.from_config(CalendarConfig(hours=NINE_TO_FIVE, holidays=cfg.holidays[:2]))
    assert ok.is_holiday(date(2026, 12, 25)) and ok.is_holiday(date(2026, 12, 26))


def test_hours_that_did_not_validate_are_not_also_reported_as_no_open_hours() -> None:
    # `hours = { mon = "09:00-17:00" }` (not a list) is reported by the config loader and set aside
    cfg = CalendarConfig(hours={})
    assert validate_calendar("s", cfg, set_aside=[("hours", "mon")]) == []
    assert [p for p, _ in validate_calendar("s", cfg)] == [("hours",)]
    assert [p for p, _ in validate_calendar("s", cfg, set_aside=[("holidays", "0")])] == [("hours",)]


def test_parse_period() -> None:
    assert parse_period("09:00-17:30") == (540, 1050)
    assert parse_period(" 9:15 - 24:00 ") == (555, 1440)


def test_default_zone_applies_without_one() -> None:
    c = BusinessCalendar.from_config(CalendarConfig(hours=NINE_TO_FIVE), default_tz="Asia/Tokyo")
    assert c.next_open(at("2026-06-06 12:00")) == at("2026-06-08 00:00")


def test_always_is_the_wall_clock() -> None:
    c = BusinessCalendar.always()
    t = at("2026-03-29 01:30", "Europe/Berlin")  # real time, not wall time: this night has 23 hours in Berlin
    assert c.is_open(t)
    assert c.add(t, timedelta(days=2)) == t.astimezone(UTC) + timedelta(days=2)
    assert c.add(t, timedelta(days=2)) == at("2026-03-31 02:30", "Europe/Berlin")
    assert c.elapsed(t, at("2026-03-30 01:30", "Europe/Berlin")) == 23 * H
    u = t.astimezone(UTC)
    assert list(c.periods(u, u + H)) == [(u, u + H)]


def test_add_over_months_matches_day_by_day_walk() -> None:
    c = cal(SUPPORT, "Europe/Berlin", holidays=("2026-12-25", "2026-12-26", "2027-01-01"))
    start = at("2026-09-15 11:20", "Europe/Berlin")
    for days in (10, 45, 130):
        delta = timedelta(days=days, minutes=7)
        end = c.add(start, delta)
        assert sum((e - s for s, e in c.periods(start, end)), timedelta(0)) == delta
        assert c.is_open(end - US)


# ---------------------------------------------------------------- properties

CALENDARS = [
    cal(SUPPORT, "Europe/Berlin", holidays=("2026-12-25", "2026-12-26", "2027-04-02")),
    cal({"sat": ["22:00-24:00"], "sun": ["00:00-06:00"], "wed": ["09:00-17:00"]}, "America/New_York"),
    cal(
        {"mon": ["09:30-13:00", "14:00-18:15"], "thu": ["00:00-24:00"]},
        "Asia/Kolkata",
        holidays=("2026-10-22",),
    ),
    BusinessCalendar.always(),
]
calendars = st.sampled_from(CALENDARS)
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40))
PROPS = settings(max_examples=60, deadline=None)


@PROPS
@given(calendars, instants, durations)
def test_deadline_is_never_in_closed_time(c: BusinessCalendar, t: datetime, d: timedelta) -> None:
    end = c.add(t, d)
    assert c.elapsed(t, end) == d
    if d > timedelta(0):
        # open just before: either open at the deadline too, or the deadline is a closing instant
        assert end > t
        assert c.is_open(end - US)


@PROPS
@given(calendars, instants, durations, durations)
def test_add_is_additive_and_monotonic(c: BusinessCalendar, t: datetime, a: timedelta, b: timedelta) -> None:
    assert c.add(c.add(t, a), b) == c.add(t, a + b)
    assert c.add(t, min(a, b)) <= c.add(t, max(a, b))


@PROPS
@given(calendars, instants, durations, durations)
def test_elapsed_is_additive_over_split_points(
    c: BusinessCalendar, t: datetime, a: timedelta, b: timedelta
) -> None:
    mid, end = t + a, t + a + b
    assert c.elapsed(t, end) == c.elapsed(t, mid) + c.elapsed(mid, end)
    spans = list(c.periods(t, end))
    assert sum((e - s for s, e in spans), timedelta(0)) == c.elapsed(t, end)
    for (_s1, e1), (s2, _e2) in pairwise(spans):
        assert e1 < s2 and not c.is_open(e1)


@PROPS
@given(calendars, instants)
def test_next_open_is_open_and_nothing_is_open_before_it(c: BusinessCalendar, t: datetime) -> None:
    nxt = c.next_open(t)
    assert nxt >= t and c.is_open(nxt)
    assert c.elapsed(t, nxt) == timedelta(0)
