"""`bridge check` after review b: wrong-typed values, line numbers, environment overrides, long durations,
rule cycles that cannot loop, wrong-shaped actions and agent emails in any letter case."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.check import Report, check_file
from bridge.durations import parse_duration
from bridge.plugins import create_host
from bridge.rules.engine import rule_cycles
from bridge.settings import Config, key_lines

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<key>[^:]+): ")


def host_factory(cfg: Config):  # type: ignore[no-untyped-def]
    return create_host(cfg.plugins.disabled, cfg.bridge.plugins_dir)


def check(tmp_path: Path, text: str) -> tuple[Path, Report]:
    path = tmp_path / "bridge.toml"
    path.write_text(textwrap.dedent(text))
    _loaded, report = check_file(path, host_factory)
    return path, report


def at(report_lines: list[str], key: str) -> list[tuple[int, str]]:
    """(line, message) of each problem about exactly ``key``; every problem is ``FILE:LINE: KEY: message``."""
    out = []
    for problem in report_lines:
        match = LINE.match(problem)
        assert match, problem
        if match["key"] == key:
            out.append((int(match["line"]), problem[match.end():]))
    return out


def line_of(text: str, needle: str, after: int = 0) -> int:
    for number, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if number > after and needle in line:
            return number
    raise AssertionError(needle)


RULE = """\
    [teams.leads]
    members = []
    [[agents]]
    email = "a@x.example"
    [[rules]]
    name = "r"
    when = { field = "ticket.priority", eq = "urgent" }
    then = [ACTION]
"""

# ------------------------------------------------------------------ 3: no traceback on wrong-typed values


@pytest.mark.parametrize(
    ("action", "key", "needle"),
    [
        ('{ escalate = ["leads"] }', "rules.0.then.0.escalate", "takes a team name"),
        ('{ assign = { agent = ["a@x.example"] } }', "rules.0.then.0.assign.agent", "takes a string"),
        ('{ assign = { team = { name = "leads" } } }', "rules.0.then.0.assign.team", "takes a string"),
        ('{ set = { team = ["leads"] } }', "rules.0.then.0.set.team", "takes a team name"),
        ("{ add_tags = 5 }", "rules.0.then.0.add_tags", "a tag or a list of tags"),
    ],
)
def test_a_wrong_typed_action_value_is_a_problem_not_a_crash(
    tmp_path: Path, action: str, key: str, needle: str
) -> None:
    _path, report = check(tmp_path, RULE.replace("ACTION", action))
    found = at(report.errors, key)
    assert len(found) == 1 and needle in found[0][1], report.errors
    assert found[0][0] == 8


@pytest.mark.parametrize("table", ["rules", "sla"])
def test_a_condition_field_that_is_a_list_is_a_problem_not_a_crash(tmp_path: Path, table: str) -> None:
    text = f"""\
        [[{table}]]
        name = "x"
        when = {{ field = ["ticket.priority"], eq = "urgent" }}
        {'then = [{ review = "look" }]' if table == "rules" else 'first_response = "1h"'}
    """
    _path, report = check(tmp_path, text)
    assert [line for line, _ in at(report.errors, f"{table}.0.when.field")] == [3], report.errors


@pytest.mark.parametrize("after", ["9999999999d", "1000000w", "9" * 400 + "s"])
def test_a_huge_duration_is_a_problem_not_a_crash(tmp_path: Path, after: str) -> None:
    _path, report = check(tmp_path, f'[follow_up]\nafter = "{after}"\n')
    found = at(report.errors, "follow_up.after")
    assert len(found) == 1 and "at most 3650d (10 years)" in found[0][1], report.errors
    assert found[0][0] == 2


# ------------------------------------------------------------------ 8: an upper bound on durations


def test_durations_are_bounded_at_ten_years() -> None:
    assert parse_duration("3650d") == timedelta(days=3650)
    assert parse_duration("520w") == timedelta(weeks=520)
    for text in ("3651d", "1000000w", "9999999999d", "9" * 400 + "s"):
        with pytest.raises(ValueError, match="at most 3650d"):
            parse_duration(text)


SLA_ON = """\
    [teams.leads]
    members = []
    [calendars.c]
    timezone = "UTC"
    hours = HOURS
    [[sla]]
    name = "s"
    calendar = "c"
    first_response = "1h"
    resolution = "3650d"
    escalate = [{ after = "3650d", to = "leads" }]
"""


def test_an_sla_whose_calendar_makes_its_deadline_unreachable_is_an_error(tmp_path: Path) -> None:
    _path, report = check(tmp_path, SLA_ON.replace("HOURS", '{ mon = ["09:00-09:01"] }'))
    found = at(report.errors, "sla.0.resolution")
    assert len(found) == 1 and "at most 100 years away" in found[0][1], report.errors
    assert found[0][0] == 10


def test_long_budgets_on_a_working_week_calendar_pass(tmp_path: Path) -> None:
    week = ", ".join(f'{d} = ["09:00-17:00"]' for d in ("mon", "tue", "wed", "thu", "fri"))
    _path, report = check(tmp_path, SLA_ON.replace("HOURS", "{ " + week + " }"))
    assert report.errors == [], report.errors


# ------------------------------------------------------------------ 6: line numbers


def test_nested_arrays_of_tables_are_named_by_their_own_lines(tmp_path: Path) -> None:
    text = """\
        [teams.leads]
        members = []

        [[rules]]
        name = "a"
        [rules.when]
        all = [{ field = "ticket.priority", eq = "urgent" }]
        [[rules.then]]
        escalate = "leads"
        [[rules.then]]
        escalate = "nobody-a"

        [[rules]]
        name = "b"
        [rules.when]
        any = [{ field = "ticket.prio", eq = "urgent" }]
        [[rules.then]]
        escalate = "nobody-b"
        [[rules.then]]
        set = { priority = "URGENT" }
    """
    _path, report = check(tmp_path, text)
    assert [n for n, _ in at(report.errors, "rules.0.then.1.escalate")] == [line_of(text, "nobody-a")]
    assert [n for n, _ in at(report.errors, "rules.1.when.any.0.field")] == [line_of(text, '"ticket.prio"')]
    assert [n for n, _ in at(report.errors, "rules.1.then.0.escalate")] == [line_of(text, "nobody-b")]
    assert [n for n, _ in at(report.errors, "rules.1.then.1.set.priority")] == [line_of(text, "URGENT")]


def test_escalation_levels_as_tables_are_named_by_their_own_lines(tmp_path: Path) -> None:
    text = """\
        [teams.leads]
        members = []

        [[sla]]
        name = "a"
        first_response = "1h"
        [[sla.escalate]]
        after = "30m"
        to = "leads"
        [[sla.escalate]]
        after = "1hour"
        to = "nobody"

        [[sla]]
        name = "b"
        first_response = "1h"
        [[sla.escalate]]
        after = "2h"
        to = "nobody-b"
    """
    _path, report = check(tmp_path, text)
    assert [n for n, _ in at(report.errors, "sla.0.escalate.1.after")] == [line_of(text, "1hour")]
    assert [n for n, _ in at(report.errors, "sla.0.escalate.1.to")] == [line_of(text, '"nobody"')]
    assert [n for n, _ in at(report.errors, "sla.1.escalate.0.to")] == [line_of(text, "nobody-b")]


def test_key_lines_count_nested_array_items_per_parent() -> None:
    text = "[[a]]\n[[a.b]]\nx = 1\n[[a]]\n[[a.b]]\nx = 2\n[[a.b]]\nx = 3\n[a.c]\ny = 4\n"
    lines = key_lines(text)
    assert lines[("a", "0", "b", "0", "x")] == 3
    assert lines[("a", "1", "b", "0", "x")] == 6
    assert lines[("a", "1", "b", "1", "x")] == 8
    assert lines[("a", "1", "c", "y")] == 10


def test_an_unknown_table_written_only_in_a_dotted_header_is_named_by_that_header(tmp_path: Path) -> None:
    text = """\
        [[rule]]
        name = "a"
        [routing]
        strategy = "skills"
        [calendar.support]
        hours = {}
        [team.leads]
        members = []
        [bridge]
        tz.name = "UTC"
    """
    _path, report = check(tmp_path, text)
    assert [n for n, _ in at(report.errors, "calendar")] == [line_of(text, "[calendar.support]")]
    assert [n for n, _ in at(report.errors, "team")] == [line_of(text, "[team.leads]")]
    assert [n for n, _ in at(report.errors, "bridge.tz")] == [line_of(text, "tz.name")]


# ------------------------------------------------------------------ 7: values from the environment


ENV_BASE = """\
    [bridge]
    timezone = "Europe/Berlin"

    [teams.leads]
    members = ["alice@example.com"]

    [[agents]]
    email = "alice@example.com"
    calendar = "support"

    [calendars.support]
    timezone = "Europe/Berlin"
    hours = { mon = ["09:00-17:00"] }
"""


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("BRIDGE_CALENDARS__SUPPORT__TIMEZONE", "Europe/Berlinn", "calendars.support.timezone"),
        ("BRIDGE_BRIDGE__TIMEZONE", "Berlin", "bridge.timezone"),
        ("BRIDGE_RULES", '[{"name":"r","when":{},"then":[{"escalate":"leeds"}]}]', "rules.0.then.0.escalate"),
        ("BRIDGE_TEAMS__LEADS__CALENDAR", "suport", "teams.leads.calendar"),
    ],
)
def test_a_problem_of_a_value_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, key: str
) -> None:
    monkeypatch.setenv(var, value)
    _path, report = check(tmp_path, ENV_BASE)
    assert [e for e in report.errors if e.startswith(f"${var}: {key}: ")], report.errors
    assert not [e for e in report.errors if f": {key}: " in e and not e.startswith("$")], report.errors


def test_a_problem_of_the_file_beside_an_override_keeps_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_CALENDARS__SUPPORT__TIMEZONE", "Europe/Paris")
    path, report = check(tmp_path, ENV_BASE.replace('calendar = "support"', 'calendar = "suport"'))
    assert report.errors == [f"{path}:9: agents.0.calendar: calendar 'suport' is not defined in [calendars]"]


# ------------------------------------------------------------------ 9: rule cycles that cannot loop

FIELDS = {"severity": {"type": "select", "options": ["Sev-1", "Sev-2", "Sev-3"]},
          "area": {"type": "multi_select", "options": ["Billing", "API"]}}
TAGS = [{"match": "billing/*", "set": {"area": "Billing"}}]


def cycles(*rules: tuple[str, dict[str, Any], list[dict[str, Any]]]) -> list[str]:
    config = Config(
        rules=[{"name": n, "when": w, "then": t} for n, w, t in rules], fields=FIELDS, tags=TAGS,
        teams={"leads": {"members": []}},
    )
    return rule_cycles(config)


HIGH = {"field": "ticket.priority", "eq": "high"}


@pytest.mark.parametrize(
    "rules",
    [
        # sets Sev-2, the other waits for Sev-1
        [("a", HIGH, [{"set": {"severity": "Sev-2"}}]),
         ("b", {"field": "ticket.severity", "eq": "Sev-1"}, [{"set": {"priority": "high"}}])],
        # neither sets what the other waits for
        [("a", {"field": "ticket.priority", "eq": "low"}, [{"set": {"severity": "Sev-3"}}]),
         ("b", {"field": "ticket.severity", "in": ["Sev-1", "Sev-2"]}, [{"set": {"priority": "urgent"}}])],
        # a removed tag cannot make a tag glob match
        [("a", {"tag": "billing/*"}, [{"set": {"priority": "high"}}]),
         ("b", HIGH, [{"remove_tags": ["billing/x"]}])],
        # the value that "sev-1" becomes (Sev-1) is not what the other's ne lets through
        [("a", HIGH, [{"set": {"severity": "sev-1"}}]),
         ("b", {"field": "ticket.severity", "ne": "Sev-1"}, [{"set": {"priority": "high"}}])],
        # under none, setting the value named makes the condition fail
        [("a", HIGH, [{"set": {"severity": "Sev-1"}}]),
         ("b", {"none": [{"field": "ticket.severity", "eq": "Sev-1"}]}, [{"set": {"priority": "high"}}])],
    ],
)
def test_a_chain_that_cannot_start_the_other_rule_is_no_cycle(
    rules: list[tuple[str, dict[str, Any], list[dict[str, Any]]]],
) -> None:
    assert cycles(*rules) == []


@pytest.mark.parametrize(
    ("rules", "step"),
    [
        ([("a", HIGH, [{"set": {"severity": "Sev-1"}}]),
          ("b", {"field": "ticket.severity", "eq": "Sev-1"}, [{"set": {"priority": "high"}}])],
         "a writes ticket.severity read by b"),
        ([("a", HIGH, [{"set": {"severity": "Sev-2"}}]),
          ("b", {"field": "ticket.severity", "not_in": ["Sev-1"]}, [{"set": {"priority": "high"}}])],
         "a writes ticket.severity read by b"),
        # under none, another value or a removed tag does make the condition hold
        ([("a", HIGH, [{"set": {"severity": "Sev-2"}}]),
          ("b", {"none": [{"field": "ticket.severity", "eq": "Sev-1"}]}, [{"set": {"priority": "high"}}])],
         "a writes ticket.severity read by b"),
        ([("a", {"none": [{"tag": "billing/*"}]}, [{"set": {"priority": "high"}}]),
          ("b", HIGH, [{"remove_tags": "billing/x"}])],
         "b writes ticket.tags read by a"),
        # an added tag matching the glob, and a value written through a [[tags]] mapping (not known)
        ([("a", {"tag": "billing/*"}, [{"set": {"priority": "high"}}]),
          ("b", HIGH, [{"add_tags": ["billing/x"]}])],
         "b writes ticket.tags read by a"),
        ([("a", {"field": "ticket.area", "eq": ["API"]}, [{"set": {"priority": "high"}}]),
          ("b", HIGH, [{"add_tags": ["billing/x"]}])],
         "b writes ticket.area read by a"),
    ],
)
def test_real_cycles_are_still_warned(
    rules: list[tuple[str, dict[str, Any], list[dict[str, Any]]]], step: str
) -> None:
    (warning,) = cycles(*rules)
    assert step in warning, warning


def test_a_one_way_chain_gives_no_cycle_warning_in_check(tmp_path: Path) -> None:
    text = """\
        [fields.severity]
        type = "select"
        options = ["Sev-1", "Sev-2"]
        [[rules]]
        name = "high-is-sev2"
        when = { field = "ticket.priority", eq = "high" }
        then = [{ set = { severity = "Sev-2" } }]
        [[rules]]
        name = "sev1-is-high"
        when = { field = "ticket.severity", eq = "Sev-1" }
        then = [{ set = { priority = "high" } }]
    """
    _path, report = check(tmp_path, text)
    assert report.errors == [] and report.warnings == []


# ------------------------------------------------------------------ 11: wrong-shaped action values


@pytest.mark.parametrize(
    ("action", "key", "needle"),
    [
        ('{ review = { reason = "x", extra = 1 } }', "rules.0.then.0.review", "review takes a reason"),
        ("{ review = 3 }", "rules.0.then.0.review", "review takes a reason"),
        ("{ add_tags = { a = 1 } }", "rules.0.then.0.add_tags", "a tag or a list of tags"),
        ("{ add_tags = [1, 2] }", "rules.0.then.0.add_tags.0", "a tag is a string"),
        ('{ remove_tags = ["a/b", true] }', "rules.0.then.0.remove_tags.1", "a tag is a string"),
        ('{ notify = { to = ["a@x", "b@x"] } }', "rules.0.then.0.notify.to", "one recipient"),
        ('{ notify = { to = "a@x", message = 5 } }', "rules.0.then.0.notify.message", "takes a string"),
        ("{ set = { assignee = 5 } }", "rules.0.then.0.set.assignee", "takes an email"),
        ('{ assign = { skill = ["billing"] } }', "rules.0.then.0.assign.skill", "takes a string"),
    ],
)
def test_a_wrong_shaped_action_value_is_reported(tmp_path: Path, action: str, key: str, needle: str) -> None:
    _path, report = check(tmp_path, RULE.replace("ACTION", action))
    found = at(report.errors, key)
    assert len(found) == 1 and needle in found[0][1], report.errors


@pytest.mark.parametrize(
    "action",
    [
        '{ review = "look" }',
        "{ review = true }",
        '{ add_tags = "a/b" }',
        '{ remove_tags = ["a/b"] }',
        '{ notify = "ops@x" }',
        '{ notify = { to = "ops@x", message = "m" } }',
        '{ set = { assignee = "a@x" } }',
    ],
)
def test_the_documented_action_shapes_pass(tmp_path: Path, action: str) -> None:
    _path, report = check(tmp_path, RULE.replace("ACTION", action))
    assert report.errors == [], report.errors


# ------------------------------------------------------------------ 12: agent emails without regard to case


def test_two_agents_differing_only_in_case_are_listed_twice(tmp_path: Path) -> None:
    text = """\
        [teams.leads]
        members = ["ALICE@example.com"]

        [[agents]]
        email = "alice@example.com"

        [[agents]]
        email = "Alice@Example.com"
    """
    _path, report = check(tmp_path, text)
    found = at(report.errors, "agents.1.email")
    assert len(found) == 1 and "listed twice (also agents.0)" in found[0][1], report.errors
    assert found[0][0] == 8
    assert report.warnings == []


def test_assign_to_an_agent_spelled_in_another_case_passes(tmp_path: Path) -> None:
    text = RULE.replace('"a@x.example"', '"bob@example.com"').replace(
        "ACTION", '{ assign = { agent = "Bob@Example.com" } }'
    )
    _path, report = check(tmp_path, text)
    assert report.errors == [], report.errors


def test_a_webhook_secret_variable_not_set_is_a_warning_and_a_port_out_of_range_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_HOOK_SECRET", raising=False)
    text = '[bridge]\nwebhook_secret_env = "NO_SUCH_HOOK_SECRET"\nhttp_port = 99999\n'
    _path, report = check(tmp_path, text)
    lines = "\n".join(report.errors + report.warnings)
    assert "bridge.toml:2: bridge.webhook_secret_env: warning: $NO_SUCH_HOOK_SECRET is not set here" in lines
    assert "bridge.toml:3: bridge.http_port:" in lines and "65535" in lines
