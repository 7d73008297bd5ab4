"""`bridge check` after review 2: where a rule cycle is cited, and calendars whose holidays close every open
day."""

from __future__ import annotations

import re
import textwrap
from datetime import date, timedelta
from pathlib import Path

from bridge.check import Report, check_file
from bridge.plugins import create_host
from bridge.settings import Config

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<key>[^:]+): ")


def host_factory(cfg: Config):  # type: ignore[no-untyped-def]
    return create_host(cfg.plugins.disabled, cfg.bridge.plugins_dir)


def check(tmp_path: Path, text: str) -> Report:
    path = tmp_path / "bridge.toml"
    path.write_text(textwrap.dedent(text))
    _loaded, report = check_file(path, host_factory)
    return report


def located(lines: list[str]) -> list[tuple[int, str, str]]:
    """(line, key, message) of each problem ``FILE:LINE: KEY: message``."""
    out = []
    for problem in lines:
        match = LINE.match(problem)
        assert match, problem
        out.append((int(match["line"]), match["key"], problem[match.end():]))
    return out


CYCLE = """\
    [[rules]]
    name = "ok"
    when = { field = "ticket.priority", eq = "high" }
    then = [{ set = { priority = "urgent" } }]

    [[rules]]
    name = "p1"
    enabled = false
    when = { field = "ticket.priority", eq = "low" }
    then = [{ set = { priority = "normal" } }]

    [[rules]]
    name = "p1"
    when = { field = "ticket.status", eq = "open" }
    then = [{ set = { status = "pending" } }]

    [[rules]]
    name = "p2"
    when = { field = "ticket.status", eq = "pending" }
    then = [{ set = { status = "open" } }]
"""


def test_a_rule_cycle_is_cited_at_the_first_rule_it_names(tmp_path: Path) -> None:
    report = check(tmp_path, CYCLE)
    cycles = [(line, key) for line, key, msg in located(report.warnings) if "rule cycle: p1 -> p2" in msg]
    # the enabled p1 (rules.2, its [[rules]] header on line 12), not the first [[rules]] nor the disabled p1
    assert cycles == [(12, "rules.2")]


EVERY_MONDAY = """\
BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//bridge test//EN\r
BEGIN:VEVENT\r
UID:mondays\r
DTSTART;VALUE=DATE:20200106\r
RRULE:FREQ=YEARLY;BYMONTH=1,2,3,4,5,6,7,8,9,10,11,12;BYDAY=MO\r
END:VEVENT\r
END:VCALENDAR\r
"""

CALENDAR = """\
    [bridge]
    timezone = "Europe/Berlin"

    [calendars.mon]
    hours = HOURS
    ICAL

    [[sla]]
    name = "x"
    calendar = "mon"
    first_response = "1h"
    resolution = "100d"
"""
MON = '{ mon = ["09:00-17:00"] }'


def test_a_calendar_whose_ical_closes_every_open_day_is_an_error_at_its_ical_key(tmp_path: Path) -> None:
    (tmp_path / "h.ics").write_text(EVERY_MONDAY, newline="")
    text = CALENDAR.replace("HOURS", MON).replace("ICAL", f'ical = "{tmp_path / "h.ics"}"')
    report = check(tmp_path, text)
    assert [(line, key) for line, key, _msg in located(report.errors)] == [(6, "calendars.mon.ical")]
    assert "calendar mon has no open hours" in report.errors[0]


def test_a_holidays_list_that_closes_every_open_day_is_an_error_at_its_holidays_key(tmp_path: Path) -> None:
    days = [f'"{d}"' for d in _mondays(2030, 530)]
    text = CALENDAR.replace("HOURS", MON).replace("ICAL", f"holidays = [{', '.join(days)}]")
    report = check(tmp_path, text)
    assert [(line, key) for line, key, _msg in located(report.errors)] == [(6, "calendars.mon.holidays")]


def test_the_reach_of_an_sla_counts_the_open_time_the_holidays_leave(tmp_path: Path) -> None:
    (tmp_path / "h.ics").write_text(EVERY_MONDAY, newline="")
    hours = '{ mon = ["09:00-17:00"], tue = ["09:00-09:01"] }'
    plain = CALENDAR.replace("HOURS", hours).replace("ICAL", "")
    assert check(tmp_path, plain).errors == []  # 100d at 8h01m a week: about 6 years
    closed = CALENDAR.replace("HOURS", hours).replace("ICAL", f'ical = "{tmp_path / "h.ics"}"')
    report = check(tmp_path, closed)
    found = located(report.errors)
    # with every Monday a holiday the calendar is open a minute a week: 100d take thousands of years
    assert [(line, key) for line, key, _msg in found] == [(12, "sla.0.resolution")]
    assert "open 1m a week, holidays included" in found[0][2] and "at most 100 years away" in found[0][2]


def _mondays(year: int, count: int) -> list[str]:
    """``count`` Mondays from the first of ``year``, as YYYY-MM-DD."""
    first = date(year, 1, 1)
    first += timedelta(days=-first.weekday() % 7)
    return [(first + timedelta(weeks=n)).isoformat() for n in range(count)]


def test_an_item_of_the_wrong_type_in_a_calendars_list_hides_no_other_items_problem(tmp_path: Path) -> None:
    report = check(tmp_path, """
        [calendars.a]
        hours = { mon = [5, "9-5", "10:00-12:00"] }
        holidays = [12, "2026-13-01", "2026-12-25"]
    """)
    keys = [line.split(": ")[1] for line in report.errors]
    assert keys == ["calendars.a.hours.mon.0", "calendars.a.holidays.0", "calendars.a.hours.mon.1",
                    "calendars.a.holidays.1"], report.errors
    assert "'9-5' is not a period" in report.errors[2] and "'2026-13-01' is not a date" in report.errors[3]
