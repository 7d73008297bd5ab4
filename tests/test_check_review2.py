"""`bridge check` after review 2: where a rule cycle is cited, and calendars whose holidays close every open
day."""

from __future__ import annotations

import re
import textwrap
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
