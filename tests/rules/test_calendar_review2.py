"""Calendars after review 2: holidays that close every open day, yearly iCal events in another zone, and
opening hours that begin or end in a spring-forward gap."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from bridge.rules.calendar import BusinessCalendar, validate_calendar
from bridge.settings import CalendarConfig


def _ics(*events: str) -> str:
    """A calendar of VEVENTs, each given as its property lines (joined with CRLF, as RFC 5545 wants)."""
    body = "".join(
        "BEGIN:VEVENT\r\n" + "\r\n".join(lines.split("\n")) + "\r\nEND:VEVENT\r\n" for lines in events
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bridge test//EN\r\n{body}END:VCALENDAR\r\n"


def _write(tmp_path: Path, *events: str) -> str:
    (tmp_path / "h.ics").write_text(_ics(*events), newline="")
    return "h.ics"


EVERY_MONDAY = (
    "UID:mondays\nDTSTART;VALUE=DATE:20200106\nRRULE:FREQ=YEARLY;BYMONTH=1,2,3,4,5,6,7,8,9,10,11,12;BYDAY=MO"
)
MON = {"mon": ["09:00-17:00"]}


# ------------------------------------------------------------------ holidays that close every open day


def test_an_ical_rule_that_closes_every_open_day_is_a_problem_of_the_ical_key(tmp_path: Path) -> None:
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(tmp_path, EVERY_MONDAY))
    problems = validate_calendar("mon", cfg, base_dir=tmp_path)
    assert [key for key, _ in problems] == [("ical",)]
    assert "calendar mon has no open hours" in problems[0][1] and "2020-01-06" in problems[0][1]
    with pytest.raises(ValueError, match="no open hours"):
        BusinessCalendar.from_config(cfg, base_dir=tmp_path)


def test_a_holidays_list_that_closes_ten_years_of_open_days_is_a_problem_of_the_holidays_key() -> None:
    mondays = [(date(2030, 1, 7) + timedelta(weeks=n)).isoformat() for n in range(530)]
    problems = validate_calendar("mon", CalendarConfig(hours=MON, holidays=mondays))
    assert [key for key, _ in problems] == [("holidays",)]
    assert "2030-01-07" in problems[0][1]
    # a few years of them leave Mondays after: the arithmetic finds those
    assert validate_calendar("mon", CalendarConfig(hours=MON, holidays=mondays[:300])) == []


def test_holidays_that_leave_some_open_day_are_no_problem(tmp_path: Path) -> None:
    hours = {"mon": ["09:00-17:00"], "tue": ["09:00-09:01"]}  # Tuesdays stay open
    cfg = CalendarConfig(hours=hours, ical=_write(tmp_path, EVERY_MONDAY))
    assert validate_calendar("c", cfg, base_dir=tmp_path) == []
    # what is left open is what the SLA reach check counts with: a minute a week
    week = BusinessCalendar.from_config(cfg, base_dir=tmp_path).typical_week()
    assert week == timedelta(minutes=1)


def test_a_rule_that_ends_leaves_the_days_after_it_open(tmp_path: Path) -> None:
    until = EVERY_MONDAY.replace("BYDAY=MO", "BYDAY=MO;UNTIL=20211231")
    cfg = CalendarConfig(hours=MON, ical=_write(tmp_path, until))
    assert validate_calendar("c", cfg, base_dir=tmp_path) == []


def test_a_calendar_without_holidays_is_open_its_weekly_hours() -> None:
    c = BusinessCalendar.from_config(CalendarConfig(timezone="Europe/Berlin", hours=MON))
    assert c.closed_stretch() is None
    assert c.typical_week() == timedelta(hours=8)


# ------------------------------------------------------------------ yearly events in another zone


PARTY = (
    "UID:tg-party\nDTSTART;TZID=America/New_York:20261126T200000\nDTEND;TZID=America/New_York:20261126T230000\n"
    "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=4TH"
)
WEEK = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def _berlin(tmp_path: Path, *events: str) -> BusinessCalendar:
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=WEEK, ical=_write(tmp_path, *events))
    assert validate_calendar("berlin", cfg, base_dir=tmp_path) == []
    return BusinessCalendar.from_config(cfg, base_dir=tmp_path)


def test_a_yearly_timed_event_expands_in_its_own_zone(tmp_path: Path) -> None:
    # Thanksgiving evening in New York is the early morning of the next day in Berlin, every year: the rule's
    # fourth Thursday is New York's, not Berlin's
    c = _berlin(tmp_path, PARTY)
    for thursday in (date(2026, 11, 26), date(2027, 11, 25), date(2028, 11, 23), date(2031, 11, 27)):
        assert not c.is_holiday(thursday), thursday
        assert c.is_holiday(thursday + timedelta(days=1)), thursday


def test_an_occurrence_early_next_year_in_its_zone_closes_a_day_of_this_year_in_the_calendars(
    tmp_path: Path,
) -> None:
    # 00:30 on New Year's Day in Tokyo is the morning of 31 December in Berlin
    new_year = (
        "UID:ny\nDTSTART;TZID=Asia/Tokyo:20260101T003000\nDURATION:PT1H\nRRULE:FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1"
    )
    c = _berlin(tmp_path, new_year)
    for year in (2025, 2026, 2027, 2030):
        assert c.is_holiday(date(year, 12, 31)), year
        assert not c.is_holiday(date(year + 1, 1, 1)), year


def test_exdate_and_until_are_read_in_the_events_zone(tmp_path: Path) -> None:
    c = _berlin(tmp_path, PARTY + "\nEXDATE;TZID=America/New_York:20271125T200000")
    assert c.is_holiday(date(2026, 11, 27)) and not c.is_holiday(date(2027, 11, 26))
    assert c.is_holiday(date(2028, 11, 24))
    # UNTIL bounds an occurrence's start: one minute before the 2027 start leaves it out, the start keeps it
    before = _berlin(tmp_path, PARTY + ";UNTIL=20271126T005900Z")
    assert before.is_holiday(date(2026, 11, 27)) and not before.is_holiday(date(2027, 11, 26))
    at = _berlin(tmp_path, PARTY + ";UNTIL=20271126T010000Z")
    assert at.is_holiday(date(2027, 11, 26)) and not at.is_holiday(date(2028, 11, 24))


def test_a_timed_rdate_in_another_zone_closes_the_local_days_it_touches(tmp_path: Path) -> None:
    c = _berlin(tmp_path, PARTY + "\nRDATE;TZID=America/New_York:20270704T200000")
    assert c.is_holiday(date(2027, 7, 5)) and not c.is_holiday(date(2027, 7, 4))


def test_every_bad_event_of_an_ical_file_is_named_at_once(tmp_path: Path) -> None:
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(
        tmp_path,
        "UID:weekly\nDTSTART;VALUE=DATE:20261102\nRRULE:FREQ=WEEKLY",
        "UID:fine\nDTSTART;VALUE=DATE:20261225",
        "UID:exrule\nDTSTART;VALUE=DATE:20261224\nRRULE:FREQ=YEARLY\nEXRULE:FREQ=YEARLY;COUNT=1",
        "UID:backwards\nDTSTART;VALUE=DATE:20261103\nDTEND;VALUE=DATE:20261101",
    ))
    problems = validate_calendar("cal", cfg, base_dir=tmp_path)
    assert [key for key, _ in problems] == [("ical",)] * 3
    assert [message.split(": ")[1] for _, message in problems] == [
        "event weekly", "event exrule", "event backwards"
    ]
    with pytest.raises(ValueError, match=r"event weekly.*event exrule.*event backwards"):
        BusinessCalendar.from_config(cfg, base_dir=tmp_path)


def test_an_unreadable_line_of_an_ical_event_is_named_with_its_line_not_skipped(tmp_path: Path) -> None:
    # the colon lost, the yearly rule and the exception would be dropped: Christmas 2027 open, New Year closed
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(
        tmp_path,
        "UID:xmas\nDTSTART;VALUE=DATE:20261225\nRRULE FREQ=YEARLY",
        "UID:newyear\nDTSTART;VALUE=DATE:20260101\nRRULE:FREQ=YEARLY\nEXDATE 20270101",
    ))
    problems = [message for _, message in validate_calendar("cal", cfg, base_dir=tmp_path)]
    lines = _ics("UID:xmas\nDTSTART;VALUE=DATE:20261225\nRRULE FREQ=YEARLY", "UID:newyear").splitlines()
    xmas_line = lines.index("RRULE FREQ=YEARLY") + 1
    assert len(problems) == 2
    assert problems[0].endswith(
        f"event xmas: line {xmas_line}: cannot be read: 'RRULE FREQ=YEARLY' (a content line is NAME:VALUE)")
    assert "event newyear: line " in problems[1] and "'EXDATE 20270101'" in problems[1]
    with pytest.raises(ValueError, match="RRULE FREQ=YEARLY"):
        BusinessCalendar.from_config(cfg, base_dir=tmp_path)


def test_an_ical_file_cut_short_says_which_component_is_never_ended(tmp_path: Path) -> None:
    path = tmp_path / "cut.ics"
    path.write_text("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\nBEGIN:VEVENT\nUID:a\nDTSTART;VALUE=DATE:20261225\n")
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=str(path))
    (problem,) = [message for _, message in validate_calendar("cal", cfg, base_dir=tmp_path)]
    assert problem.endswith(
        "is not an iCalendar file: line 4: BEGIN:VEVENT is never ended (END:VEVENT missing)")
    assert "b'" not in problem


def test_a_value_of_a_property_not_read_here_that_cannot_be_typed_is_no_error(tmp_path: Path) -> None:
    # PRIORITY:high and GEO:somewhere are NAME:VALUE lines the library cannot type: they close no day
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(
        tmp_path, "UID:xmas\nDTSTART;VALUE=DATE:20261225\nPRIORITY:high\nGEO:somewhere"))
    assert validate_calendar("cal", cfg, base_dir=tmp_path) == []
    assert BusinessCalendar.from_config(cfg, base_dir=tmp_path).is_holiday(date(2026, 12, 25))


def test_an_unreadable_folded_line_is_named_by_its_first_line_and_quoted_whole(tmp_path: Path) -> None:
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(
        tmp_path, "UID:xmas\nDTSTART;VALUE=DATE:20261225\nRRULE FREQ=YEARLY;\n BYMONTH=12",
        "UID:boxing\nDTSTART;VALUE=DATE:20261226\nSUMMARY Boxing Day (St Stephen's)"))
    problems = [message for _, message in validate_calendar("cal", cfg, base_dir=tmp_path)]
    assert problems[0].endswith(
        "event xmas: line 7: cannot be read: 'RRULE FREQ=YEARLY;BYMONTH=12' (a content line is NAME:VALUE)")
    assert problems[1].endswith(
        "event boxing: line 13: cannot be read: \"SUMMARY Boxing Day (St Stephen's)\" "
        "(a content line is NAME:VALUE)")


@pytest.mark.parametrize("line", [
    "RDATE;VALUE=DATE 20261231",  # (the library reads it as a parameter VALUE="DATE 20261231", no date)
    "RDATE;VALUE=PERIOD 20261231T000000Z/P1D",
    "RDATE;TZID=Europe/Berlin 20261231T100000",
])
def test_a_line_whose_colon_is_lost_after_a_parameter_is_named_with_its_line_not_skipped(
        tmp_path: Path, line: str) -> None:
    events = ("UID:eve\nDTSTART;VALUE=DATE:20261224\n" + line,)
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(tmp_path, *events))
    number = _ics(*events).splitlines().index(line) + 1
    problems = [message for _, message in validate_calendar("cal", cfg, base_dir=tmp_path)]
    assert [p.split(".ics: ", 1)[1] for p in problems] == [
        f"event eve: line {number}: cannot be read: {line!r} (a content line is NAME:VALUE)"]
    with pytest.raises(ValueError, match="cannot be read"):
        BusinessCalendar.from_config(cfg, base_dir=tmp_path)


def test_a_colon_inside_a_quoted_parameter_value_is_not_the_one_before_the_value(tmp_path: Path) -> None:
    events = ('UID:eve\nDTSTART;VALUE=DATE:20261224\nRDATE;X-NOTE="see: intranet";VALUE=DATE 20261231',)
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(tmp_path, *events))
    (problem,) = [message for _, message in validate_calendar("cal", cfg, base_dir=tmp_path)]
    assert "cannot be read" in problem and "X-NOTE" in problem
    events = ('UID:eve\nDTSTART;VALUE=DATE:20261224\nRDATE;X-NOTE="see: intranet";VALUE=DATE:20261231',)
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(tmp_path, *events))
    assert validate_calendar("cal", cfg, base_dir=tmp_path) == []
    assert BusinessCalendar.from_config(cfg, base_dir=tmp_path).is_holiday(date(2026, 12, 31))


@pytest.mark.parametrize(("line", "must"), [
    ("DTSTART;VALUE=DATE:20261332", "DTSTART must be a date or date-time"),
    ("EXDATE;VALUE=DATE:2027", "EXDATE must be dates or date-times"),
    ("RDATE;VALUE=DATE:20261231,2027010", "RDATE must be dates, date-times or periods"),
])
def test_a_value_that_cannot_be_typed_is_named_with_its_line_in_plain_words(
        tmp_path: Path, line: str, must: str) -> None:
    start = "" if line.startswith("DTSTART") else "DTSTART;VALUE=DATE:20261224\n"
    events = (f"UID:eve\n{start}RRULE:FREQ=YEARLY\n{line}",)
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(tmp_path, *events))
    number = _ics(*events).splitlines().index(line) + 1
    (problem,) = [message for _, message in validate_calendar("cal", cfg, base_dir=tmp_path)]
    assert problem.endswith(f"event eve: line {number}: cannot be read: {line!r} ({must})")
    assert "broken property" not in problem


def test_a_decade_closed_between_the_first_and_the_last_holiday_is_refused_not_left_to_crash(
        tmp_path: Path) -> None:
    # open on Mondays only; 600 Mondays from 2027-01-04 closed (11.5 years), with one-off holidays on either
    # side: neither the first holiday nor the last starts the closed stretch
    mondays = ("UID:mondays\nDTSTART;VALUE=DATE:20270104\n"
               "RRULE:FREQ=YEARLY;BYMONTH=1,2,3,4,5,6,7,8,9,10,11,12;BYDAY=MO;COUNT=600")
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON, ical=_write(tmp_path, mondays),
                         holidays=["2020-01-01", "2050-01-01"])
    (problem,) = [message for _, message in validate_calendar("cal", cfg, base_dir=tmp_path)]
    # (Monday 2026-12-28 is the last open day: from the day after, nothing opens for ten years)
    assert problem == ("calendar cal has no open hours: its holidays close every open day of the 10 years "
                       "from 2026-12-29")
    with pytest.raises(ValueError, match="no open hours"):
        BusinessCalendar.from_config(cfg, base_dir=tmp_path)
    # with 500 Mondays closed (9.6 years) it opens again in time: no problem
    cfg = CalendarConfig(timezone="Europe/Berlin", hours=MON,
                         ical=_write(tmp_path, mondays.replace("600", "500")),
                         holidays=["2020-01-01", "2050-01-01"])
    assert validate_calendar("cal", cfg, base_dir=tmp_path) == []
