"""Review fixes: iCal rule values out of range are config errors; an SLA clock escalates to a team once."""

from __future__ import annotations

import json
import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.check import check_file, require_valid
from bridge.errors import ConfigError
from bridge.model import parse_time
from bridge.plugins import PluginHost, create_host
from bridge.replay import Replay
from bridge.rules.calendar import BusinessCalendar, YearlyHoliday, validate_calendar
from bridge.rules.sla import SlaEvent, TicketSla
from bridge.settings import CalendarConfig, Config, EscalationLevel, SlaConfig, load_config

NINE_TO_FIVE = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def _ics(props: str, uid: str = "x") -> str:
    """A calendar of one VEVENT with ``props`` (one property a line)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bridge tests//x//EN", "BEGIN:VEVENT", f"UID:{uid}",
             *props.splitlines(), "END:VEVENT", "END:VCALENDAR"]
    return "".join(f"{line}\r\n" for line in lines)


def _cfg(tmp_path: Path, props: str) -> CalendarConfig:
    (tmp_path / "h.ics").write_text(_ics(props), newline="")
    return CalendarConfig(timezone="Europe/Berlin", hours=NINE_TO_FIVE, ical="h.ics")


# ---------------------------------------------------------------- iCal: values out of range


@pytest.mark.parametrize(
    ("props", "problem"),
    [
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;INTERVAL=0", "INTERVAL=0"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;INTERVAL=-1", "INTERVAL=-1"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;COUNT=0", "COUNT=0"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;BYMONTH=13", "BYMONTH=13"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;BYMONTH=0", "BYMONTH=0"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;BYMONTH=5L", "BYMONTH=5L"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=32", "BYMONTHDAY=32"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=0", "BYMONTHDAY=0"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;BYMONTHDAY=-32", "BYMONTHDAY=-32"),
        ("DTSTART;VALUE=DATE:20261130\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=+0MO", "BYDAY=+0MO"),
        ("DTSTART;VALUE=DATE:20261130\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=54MO", "BYDAY=54MO"),
        # without BYMONTH, RFC 5545 counts the ordinal through the year; reading it per month would be wrong
        ("DTSTART;VALUE=DATE:20260112\nRRULE:FREQ=YEARLY;BYDAY=2MO;BYMONTHDAY=8,9,10,11,12,13,14",
         "BYDAY=2MO"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;COUNT=2;UNTIL=20301231", "both COUNT and UNTIL"),
        ("DTSTART;VALUE=DATE:20261225\nRRULE:FREQ=YEARLY;INTERVAL=1,2", "more than one value"),
        ("DTSTART;VALUE=DATE:20261225\nDTEND;VALUE=DATE:20261220", "before it starts"),
        ("DTSTART;VALUE=DATE:20261225\nDURATION:-P1D", "before it starts"),
        ("DTSTART;VALUE=DATE:20261225\nDURATION:P100000D", "it closes 100000 days in a row (at most 366)"),
        ("DTSTART;TZID=Mars/Base:20261225T100000\nDTEND;TZID=Mars/Base:20261225T120000",
         "DTSTART names the unknown time zone TZID=Mars/Base"),
        ("DTSTART:20261225T100000Z\nDTEND;TZID=Mars/Base:20261225T120000",
         "DTEND names the unknown time zone TZID=Mars/Base"),
        ("DTSTART:20261225T100000Z\nDTEND:20261225T090000Z", "before it starts"),
        ("DTSTART;VALUE=DATE:20261201\nRDATE;VALUE=PERIOD:20261210T120000Z/20261209T080000Z",
         "before it starts"),
    ],
)
def test_an_ical_value_out_of_range_is_an_error_naming_file_event_and_value(
    tmp_path: Path, props: str, problem: str
) -> None:
    cfg = _cfg(tmp_path, props)
    problems = validate_calendar("support", cfg, base_dir=tmp_path)
    assert [p for p, _ in problems] == [("ical",)], problems
    message = problems[0][1]
    assert "h.ics" in message and "event x:" in message and problem in message, message
    # the calendar is refused when built: a ValueError, never a ZeroDivisionError on the first date asked
    with pytest.raises(ValueError, match="event x:"):
        BusinessCalendar.from_config(cfg, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("props", "closed"),
    [
        # the bounds RFC 5545 allows stay accepted
        ("DTSTART;VALUE=DATE:20261231\nRRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=-31;COUNT=2",
         ["2026-12-31", "2027-12-01"]),
        ("DTSTART;VALUE=DATE:20261231\nRRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31;INTERVAL=2;UNTIL=20291231",
         ["2026-12-31", "2028-12-31"]),
        ("DTSTART;VALUE=DATE:20261130\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=5MO;COUNT=1", ["2026-11-30"]),
        ("DTSTART;VALUE=DATE:20261130\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=-1MO;UNTIL=20271231",
         ["2026-11-30", "2027-11-29"]),
        # BYDAY without an ordinal and BYMONTHDAY: every month (a Friday the 13th)
        ("DTSTART;VALUE=DATE:20261113\nRRULE:FREQ=YEARLY;BYDAY=FR;BYMONTHDAY=13;UNTIL=20271231",
         ["2026-11-13", "2027-08-13"]),
        # an end equal to the start is still the one day
        ("DTSTART;VALUE=DATE:20261224\nDTEND;VALUE=DATE:20261224", ["2026-12-24"]),
        # a TZID the IANA database knows (10:00-12:00 in New York is 16:00-18:00 in Berlin: that day)
        ("DTSTART;TZID=America/New_York:20261225T100000\nDTEND;TZID=America/New_York:20261225T120000",
         ["2026-12-25"]),
    ],
)
def test_values_within_range_are_still_accepted(tmp_path: Path, props: str, closed: list[str]) -> None:
    cfg = _cfg(tmp_path, props)
    assert validate_calendar("support", cfg, base_dir=tmp_path) == []
    c = BusinessCalendar.from_config(cfg, base_dir=tmp_path)
    days = (date(2026, 1, 1) + timedelta(days=n) for n in range(4 * 366))
    assert [str(d) for d in days if d.year <= 2029 and c.is_holiday(d)] == closed


@pytest.mark.parametrize(
    "kw",
    [{"interval": 0}, {"count": 0}, {"months": (13,)}, {"monthdays": (-32,)}, {"weekdays": ((60, 0),)},
     {"days": 0}],
)
def test_a_yearly_holiday_out_of_range_is_refused_when_made(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        YearlyHoliday(start=date(2026, 12, 25), **kw)


def _host(cfg: Config) -> PluginHost:
    return create_host(cfg.plugins.disabled, cfg.bridge.plugins_dir)


BRIDGE_TOML = """\
[bridge]
timezone = "Europe/Berlin"

[calendars.support]
hours = { mon = ["09:00-17:00"], tue = ["09:00-17:00"] }
ical = "h.ics"
"""


@pytest.mark.parametrize("rule", ["FREQ=YEARLY;INTERVAL=0", "FREQ=YEARLY;BYMONTH=13"])
def test_bridge_check_reports_it_at_the_ical_line_and_the_daemon_refuses_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rule: str
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative ical path is read from the working directory
    event = _ics(f"DTSTART;VALUE=DATE:20261225\nRRULE:{rule}", uid="xmas")
    (tmp_path / "h.ics").write_text(event, newline="")
    (tmp_path / "bridge.toml").write_text(textwrap.dedent(BRIDGE_TOML))
    _loaded, report = check_file(tmp_path / "bridge.toml", _host)
    assert len(report.errors) == 1, report.errors
    error = report.errors[0]
    assert error.startswith("bridge.toml:6: calendars.support.ical: ") or error.startswith(
        f"{tmp_path / 'bridge.toml'}:6: calendars.support.ical: "
    ), error
    assert "h.ics: event xmas: RRULE " in error and rule.split(";")[1] in error
    with pytest.raises(ConfigError):
        require_valid(load_config(tmp_path / "bridge.toml"), None)


# ---------------------------------------------------------------- SLA: one escalation per clock and team

T0 = parse_time("2026-11-02T09:00:00Z")  # a Monday
WALL = BusinessCalendar.always()


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def policy(name: str, levels: list[tuple[str, str]], **kw: Any) -> SlaConfig:
    return SlaConfig(name=name, escalate=[EscalationLevel(after=a, to=to) for a, to in levels], **kw)


def escalations(events: list[SlaEvent]) -> list[tuple[datetime, str, str | None]]:
    return [(e.at, e.metric, e.to) for e in events if e.kind == "sla_escalate"]


def test_two_levels_to_one_team_escalate_once_at_the_first() -> None:
    sla = TicketSla(policy("fast", [("0m", "leads"), ("30m", "leads")], first_response="1h"), WALL, T0)
    assert escalations(sla.fire(h(5))) == [(h(1), "first_response", "leads")]
    # no timer is left for the level that cannot fire
    assert sla.next_timer() is None


def test_the_earliest_level_of_a_team_wins_whatever_the_order_they_are_listed_in() -> None:
    levels = [("1h", "leads"), ("30m", "ops"), ("0m", "leads"), ("2h", "ops"), ("3h", "managers")]
    sla = TicketSla(policy("fast", levels, first_response="1h"), WALL, T0)
    assert escalations(sla.fire(h(10))) == [
        (h(1), "first_response", "leads"),
        (h(1.5), "first_response", "ops"),
        (h(4), "first_response", "managers"),
    ]


def test_each_clock_escalates_to_the_team_once() -> None:
    sla = TicketSla(
        policy("fast", [("0m", "leads"), ("30m", "leads")], first_response="1h", resolution="2h"), WALL, T0
    )
    assert escalations(sla.fire(h(5))) == [(h(1), "first_response", "leads"), (h(2), "resolution", "leads")]


def test_a_new_next_response_cycle_escalates_again_but_once() -> None:
    sla = TicketSla(policy("fast", [("0m", "leads"), ("30m", "leads")], next_response="1h"), WALL, T0)
    sla.on_message("agent", h(0))
    sla.on_message("customer", h(1))
    assert escalations(sla.fire(h(4))) == [(h(2), "next_response", "leads")]
    sla.on_message("agent", h(4))
    sla.on_message("customer", h(5))
    assert escalations(sla.fire(h(9))) == [(h(6), "next_response", "leads")]
    assert sla.next_timer() is None


def test_a_switch_to_a_policy_naming_the_team_twice_does_not_call_it_again() -> None:
    a = policy("a", [("0m", "leads")], first_response="1h")
    b = policy("b", [("0m", "leads"), ("1h", "leads"), ("2h", "ops")], first_response="1h")
    sla = TicketSla(a, WALL, T0)
    assert escalations(sla.fire(h(1.5))) == [(h(1), "first_response", "leads")]
    sla.change_policy(b, WALL, h(1.5))
    assert escalations(sla.fire(h(10))) == [(h(3), "first_response", "ops")]
    # switched to before the breach: b's own two levels to leads call it once
    sla = TicketSla(policy("a", [], first_response="1h"), WALL, T0)
    sla.change_policy(b, WALL, h(0.5))
    assert escalations(sla.fire(h(10))) == [
        (h(1), "first_response", "leads"),
        (h(3), "first_response", "ops"),
    ]


def test_replay_escalates_once_to_the_team_named_by_two_levels() -> None:
    # the review's repro (slaesc/): escalate=[{after="0m",to="leads"},{after="30m",to="leads"}]
    config = Config.model_validate({
        "bridge": {"timezone": "UTC"},
        "teams": {"leads": {"members": ["alice@example.com"]}},
        "agents": [{"email": "alice@example.com"}],
        "sla": [{"name": "fast", "first_response": "1h",
                 "escalate": [{"after": "0m", "to": "leads"}, {"after": "30m", "to": "leads"}]}],
    })
    created = {"type": "ticket.created", "at": "2026-11-02T09:00:00Z",
               "ticket": {"id": "T-1", "subject": "s", "body": "b", "status": "open"}}
    rp = Replay(config, until=parse_time("2026-11-02T12:00:00Z"))
    out = list(rp.run([json.dumps(created)]))
    assert rp.problems == []
    escalated = [(d["at"], d["to"]) for d in out if d.get("decision") == "escalate"]
    assert escalated == [("2026-11-02T10:00:00Z", "leads")]
