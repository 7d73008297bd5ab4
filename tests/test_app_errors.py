"""A command refuses a config that does not validate with every problem `bridge check` finds."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.app import App
from bridge.errors import ConfigError


def test_a_schema_error_does_not_hide_the_configs_other_problems(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(textwrap.dedent("""\
        [bridge]
        timezone = "Europe/Berlinn"
        [calendars.a]
        timezone = "UTC"
        hours = { mon = "09:00-17:00" }
        [calendars.b]
        timezone = "UTC"
        hours = { mon = ["09:00-17:00"] }
        holidays = ["2026-02-30"]
        """))
    with pytest.raises(ConfigError) as caught:
        App.from_path(path)
    problems = caught.value.problems
    assert any(p.startswith(f"{path}:5: calendars.a.hours.mon:") for p in problems)
    assert any(p.startswith(f"{path}:2: bridge.timezone: unknown time zone") for p in problems)
    assert any(p.startswith(f"{path}:9: calendars.b.holidays.0:") for p in problems)


def test_without_validation_the_load_error_is_raised_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[bridge]\ntimezone = "Europe/Berlinn"\n[calendars.a]\nhours = { mon = "x" }\n')
    with pytest.raises(ConfigError) as caught:
        App.from_path(path, validate=False)
    assert [p.split(": ")[1] for p in caught.value.problems] == ["calendars.a.hours.mon"]
