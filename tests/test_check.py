"""`bridge check`: every mistake reported at once with its file, line and key."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from bridge.check import check_file
from bridge.plugins import create_host
from bridge.settings import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "spec" / "config.md"

GOOD = """\
[bridge]
database = "sqlite:///x.db"

[connectors.inbox]
plugin = "files"
path = "in"

[connectors.crm]
plugin = "files"
path = "crm"
kinds = ["account"]

[fields.product_area]
type = "multi_select"
options = ["Billing", "API"]
owner = "bridge"
sync_to = ["inbox"]

[fields.arr]
type = "number"
kind = "account"
owner = "crm"

[calendars.support]
timezone = "Europe/Berlin"
hours = { mon = ["09:00-17:00"] }

[[tags]]
match = "billing/*"
set = { product_area = "Billing" }

[teams.leads]
members = ["a@x.example"]

[[agents]]
email = "a@x.example"
calendar = "support"

[[rules]]
name = "r1"
set = "escalation"
when = { all = [{ field = "account.arr", gte = 100000 }] }
then = [{ escalate = "leads" }]
"""


def host_factory(cfg: Config):  # type: ignore[no-untyped-def]
    return create_host(cfg.plugins.disabled, cfg.bridge.plugins_dir)


def run_check(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bridge.toml"
    path.write_text(textwrap.dedent(text))
    _loaded, report = check_file(path, host_factory)
    return report.errors


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_good_config_passes(tmp_path: Path) -> None:
    assert run_check(tmp_path, GOOD) == []


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        (
            'database = "sqlite:///x.db"',
            'database = "sqlite:///x.db"\ncolour = "blue"',
            "bridge.colour",
            "unknown key",
        ),
        ('type = "number"', 'type = "currency"', "fields.arr.type", "unknown field type 'currency'"),
        (
            'set = { product_area = "Billing" }',
            'set = { area = "Billing" }',
            "tags.0.set.area",
            "field 'area' is not declared",
        ),
        (
            'set = { product_area = "Billing" }',
            'set = { product_area = "Payroll" }',
            "tags.0.set.product_area",
            "'Payroll' is not an option",
        ),
        (
            'owner = "crm"',
            'owner = "salesforce"',
            "fields.arr.owner",
            "'salesforce' is not a configured connector",
        ),
        (
            'sync_to = ["inbox"]',
            'sync_to = ["hubspot"]',
            "fields.product_area.sync_to.0",
            "'hubspot' is not a configured connector",
        ),
        (
            'field = "account.arr"',
            'field = "account.revenue"',
            "rules.0.when.all.0.field",
            "unknown field 'account.revenue'",
        ),
        (
            'plugin = "files"\npath = "in"',
            'plugin = "zendesk"\npath = "in"',
            "connectors.inbox.plugin",
            "plugin 'zendesk' is not installed",
        ),
        (
            'hours = { mon = ["09:00-17:00"] }',
            'hours = { mon = ["17:00-09:00"] }',
            "calendars.support.hours.mon",
            "",
        ),
        (
            'hours = { mon = ["09:00-17:00"] }',
            'hours = { mon = ["09:00-25:00"] }',
            "calendars.support.hours.mon",
            "",
        ),
        (
            'hours = { mon = ["09:00-17:00"] }',
            'hours = { funday = ["09:00-17:00"] }',
            "calendars.support.hours",
            "",
        ),
        (
            'then = [{ escalate = "leads" }]',
            'then = [{ escalate = "nobody" }]',
            "rules.0.then.0.escalate",
            "team 'nobody' is not defined",
        ),
    ],
)
def test_each_mistake_names_file_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, message: str
) -> None:
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    errors = run_check(tmp_path, text)
    assert errors, "the mistake was not reported"
    hits = [e for e in errors if f": {key}" in e]
    assert hits, errors
    path, line, rest = hits[0].split(":", 2)
    assert path.endswith("bridge.toml")
    # the line named is the line of the offending key (or of the table that holds it)
    candidates = {line_of(text, part) for part in new.split("\n")}
    assert int(line) in candidates, (hits[0], candidates)
    assert message in rest


def test_all_problems_at_once(tmp_path: Path) -> None:
    text = GOOD.replace('type = "number"', 'type = "currency"').replace('owner = "crm"', 'owner = "sap"', 1)
    text = text.replace('sync_to = ["inbox"]', 'sync_to = ["nowhere"]')
    errors = run_check(tmp_path, text)
    keys = {e.split(": ")[1] for e in errors}
    assert {"fields.arr.type", "fields.product_area.sync_to.0"} <= keys


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    text = GOOD.replace('path = "crm"', 'path = "crm')
    errors = run_check(tmp_path, text)
    assert len(errors) == 1
    line = line_of(text, 'path = "crm')
    assert re.match(rf".*bridge\.toml:{line}: \(syntax\): ", errors[0]), errors


def test_a_config_not_in_utf8_names_its_line_and_a_byte_order_mark_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_bytes(b"[bridge]\n# Support team M\xfcnchen\n")  # Latin-1, as some editors save
    _loaded, report = check_file(path, host_factory)
    assert report.errors == [f"{path}:2: (file): not UTF-8 text (byte 0xfc); save the file as UTF-8"]
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(GOOD).encode())
    _loaded, report = check_file(path, host_factory)
    assert report.errors == []


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    _loaded, report = check_file(tmp_path / "nope.toml", host_factory)
    assert report.errors and "cannot read config" in report.errors[0]


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(GOOD)
    monkeypatch.setenv("BRIDGE_BRIDGE__DATABASE", "sqlite:///other.db")
    monkeypatch.setenv("BRIDGE_CONNECTORS__INBOX__PATH", "elsewhere")
    cfg = load_config(path).config
    assert cfg.bridge.database == "sqlite:///other.db"
    assert cfg.connectors["inbox"].model_extra == {"path": "elsewhere"}
    assert cfg.connectors["crm"].kinds == ["account"]


@pytest.mark.parametrize(("var", "text", "takes"), [
    ("BRIDGE_BRIDGE__SERVE", "off", "true or false"),
    ("BRIDGE_BRIDGE__SERVE", "0", "true or false"),
    ("BRIDGE_CONNECTORS__INBOX__ENABLED", "no", "true or false"),
    ("BRIDGE_BRIDGE__HTTP_PORT", "18799.0", "a whole number"),
    ("BRIDGE_RULES__0__ENABLED", "off", "true or false"),
])
def test_a_variable_must_spell_what_its_key_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, text: str, takes: str
) -> None:
    monkeypatch.setenv(var, text)
    errors = run_check(tmp_path, GOOD)
    key = var.removeprefix("BRIDGE_").lower().replace("__", ".")
    assert errors == [f"${var}: {key}: {key.rsplit('.', 1)[1]} takes {takes}, got {text!r}"]


def test_a_variable_spelling_what_its_key_takes_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_BRIDGE__SERVE", "False")
    monkeypatch.setenv("BRIDGE_BRIDGE__HTTP_PORT", "18799")
    assert run_check(tmp_path, GOOD) == []


def test_secrets_from_env_and_file_never_in_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cr3t-from-file\n")
    text = (
        GOOD + f'\n[connectors.other]\nplugin = "files"\npath = "x"\ntoken_env = "MY_TOKEN"\n'
        f'password_file = "{secret_file}"\nbogus = 1\n'
    )
    monkeypatch.setenv("MY_TOKEN", "s3cr3t-from-env")
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    cfg = load_config(path).config
    extra = cfg.connectors["other"].model_extra or {}
    assert extra["token"] == "s3cr3t-from-env"
    assert extra["password"] == "s3cr3t-from-file"
    _loaded, report = check_file(path, host_factory)
    joined = "\n".join(report.errors + report.warnings)
    assert "s3cr3t" not in joined
    assert "connectors.other.bogus" in joined


def test_missing_secret_is_a_warning_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ABSENT_TOKEN", raising=False)
    text = GOOD.replace(
        'plugin = "files"\npath = "in"', 'plugin = "files"\npath = "in"\ntoken_env = "ABSENT_TOKEN"'
    )
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    _loaded, report = check_file(path, host_factory)
    assert any("ABSENT_TOKEN is not set" in w for w in report.warnings)


def test_demo_config_passes() -> None:
    _loaded, report = check_file(
        ROOT / "config" / "bridge.toml", lambda cfg: create_host(cfg.plugins.disabled, cfg.bridge.plugins_dir)
    )
    assert report.errors == []


def test_contract_example_shapes_are_accepted(tmp_path: Path) -> None:
    """The config.md example parses (its plugins for hubspot/pylon/jira may not be installed yet)."""
    if not SPEC.exists():
        pytest.skip(f"{SPEC} is not beside the project")
    text = SPEC.read_text()
    toml = text.split("```toml", 1)[1].split("```", 1)[0]
    path = tmp_path / "bridge.toml"
    path.write_text(toml)
    loaded = load_config(path)
    assert loaded.config.fields["product_area"].type == "multi_select"
    assert loaded.config.rules[0].name == "enterprise-negative-sentiment"
    shutil.rmtree(tmp_path / "certs", ignore_errors=True)
    _loaded, report = check_file(path, host_factory)
    installed = set(host_factory(loaded.config).connectors())
    for line in report.errors:
        # the only problems allowed are connectors whose plugins are not installed yet
        assert "is not installed" in line and not any(f"'{p}'" in line for p in installed), line


def test_an_unknown_kind_is_an_error(tmp_path: Path) -> None:
    errors = run_check(
        tmp_path, GOOD.replace('kind = "account"\nowner = "crm"', 'kind = "acount"\nowner = "crm"')
    )
    assert any(": fields.arr.kind: unknown kind 'acount'" in e for e in errors), errors


def test_options_work_before_the_subcommand(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "bridge.toml"
    path.write_text(GOOD.replace('type = "number"', 'type = "money"'))
    res = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "--config", str(path), "--json", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["ok"] is False and any("fields.arr.type" in e for e in report["errors"])


def test_a_bad_value_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_ROUTING__STRATEGY", "bogus")
    errors = run_check(tmp_path, GOOD)
    assert len(errors) == 1 and errors[0].startswith("$BRIDGE_ROUTING__STRATEGY: routing.strategy: "), errors


def test_brackets_and_hashes_inside_strings_keep_the_line_numbers(tmp_path: Path) -> None:
    text = (
        GOOD
        + '\n[[rules]]\nname = "brackets"\nwhen = { tag = "[unclosed{" }\n'
        + "[[rules]]\nname = 'lit'\nwhen = { tag = '{[#' }\n"
        + '[[rules]]\nname = "ml"\nwhen = { field = "ticket.subject", matches = """\nx]]\n{ "\\"""" }\n'
        + "[[rules]]\nname = 'mll'\nwhen = { field = \"ticket.subject\", matches = '''\n[a\n]''' }\n"
        + '[[rules]]\nname = "late"\nwhen = { field = "account.nosuchfield", eq = 1 }\n'
    )
    errors = run_check(tmp_path, text)
    hits = [e for e in errors if ": rules.5.when.field: " in e]
    assert hits, errors
    assert hits[0].split(":")[1] == str(line_of(text, "account.nosuchfield")), hits


def test_an_item_of_a_multi_line_array_is_named_by_its_own_line(tmp_path: Path) -> None:
    text = GOOD.replace(
        'when = { all = [{ field = "account.arr", gte = 100000 }] }\nthen = [{ escalate = "leads" }]',
        'when = { all = [\n  { field = "account.arr", gte = 100000 },\n'
        '  { field = "ticket.nope", eq = 1 },\n] }\n'
        'then = [\n  { escalate = "leads" },\n  { escalate = "nobody" },\n]',
    )
    errors = run_check(tmp_path, text)
    field = [e for e in errors if ": rules.0.when.all.1.field: " in e]
    team = [e for e in errors if ": rules.0.then.1.escalate: " in e]
    assert field and team, errors
    assert field[0].split(":")[1] == str(line_of(text, "ticket.nope"))
    assert team[0].split(":")[1] == str(line_of(text, '"nobody"'))


def run_report(tmp_path: Path, text: str) -> tuple[list[str], list[str]]:
    path = tmp_path / "bridge.toml"
    path.write_text(textwrap.dedent(text))
    for folder in ("in", "crm"):  # GOOD's files connectors read them (a path that is not there is warned of)
        (tmp_path / folder).mkdir(exist_ok=True)
    with contextlib.chdir(tmp_path):
        _loaded, report = check_file(path, host_factory)
    return report.errors, report.warnings


def hit(lines: list[str], text: str, key: str, needle: str, message: str) -> None:
    """One of ``lines`` names ``key`` at the line holding ``needle``, with ``message``."""
    found = [e for e in lines if f": {key}: " in e]
    assert found, lines
    assert found[0].split(":")[1] == str(line_of(text, needle)), found
    assert message in found[0], found


SLA_AND_RULES = (
    GOOD
    + """
[[sla]]
name = "gold"
first_response = "1h"
pause_on = ["pending", "pendng"]
escalate = [{ after = "30m", to = "leads" }, { after = "1h", to = "ghosts" }]

[[sla]]
name = "gold"
resolution = "1d"

[[agents]]
email = "a@x.example"

[[rules]]
name = "r2"
when = { field = "ticket.subject", contains = "x" }
then = [
  { assign = { skil = "billing", team = "nobody" } },
  { notify = { to = "ops@x.example", mesage = "hi" } },
  { set = { priority = "superurgent", status = "wontfix" } },
  { set = { team = "phantoms" } },
]
"""
)


@pytest.mark.parametrize(
    ("key", "needle", "message"),
    [
        ("sla.0.pause_on.1", '"pendng"', "unknown status 'pendng'"),
        ("sla.0.escalate.1.to", '"ghosts"', "team 'ghosts' is not defined in [teams]"),
        ("sla.1.name", 'name = "gold"#2', "SLA name 'gold' is used twice (also sla.0)"),
        ("agents.1.email", 'email = "a@x.example"#2', "agent 'a@x.example' is listed twice"),
        ("rules.1.then.0.assign.skil", "skil", "unknown key 'skil' in assign"),
        ("rules.1.then.0.assign.team", "skil", "team 'nobody' is not defined"),
        ("rules.1.then.1.notify.mesage", "mesage", "unknown key 'mesage' in notify"),
        ("rules.1.then.2.set.priority", "superurgent", "unknown priority 'superurgent'"),
        ("rules.1.then.2.set.status", "wontfix", "unknown status 'wontfix'"),
        ("rules.1.then.3.set.team", "phantoms", "team 'phantoms' is not defined in [teams]"),
    ],
)
def test_cross_table_mistakes_are_errors(tmp_path: Path, key: str, needle: str, message: str) -> None:
    errors, _warnings = run_report(tmp_path, SLA_AND_RULES)
    needle, _, nth = needle.partition("#")  # "#2": the second line holding it
    found = [e for e in errors if f": {key}: " in e]
    assert found, errors
    lines = [n for n, line in enumerate(SLA_AND_RULES.splitlines(), start=1) if needle in line]
    assert found[0].split(":")[1] == str(lines[int(nth or 1) - 1]), found
    assert message in found[0], found


def test_the_good_parts_of_those_tables_pass(tmp_path: Path) -> None:
    errors, warnings = run_report(
        tmp_path,
        GOOD.replace('email = "a@x.example"\n', 'email = "a@x.example"\nskills = ["b"]\nlanguages = ["de"]\n')
        .replace(
            'then = [{ escalate = "leads" }]',
            'then = [{ notify = { to = "o@x", message = "m" } },'
            ' { notify = "p@x" }, { set = { priority = "urgent", status = "on_hold" } },'
            ' { assign = { skill = "b", language = "de", agent = "a@x.example", team = "leads" } }]',
        )
        + '\n[[sla]]\nname = "s"\nfirst_response = "1h"\nwarn_before = "15m"\npause_on = ["on_hold"]\n'
        'escalate = [{ after = "1h", to = "leads" }]\n',
    )
    assert errors == [] and warnings == []


def test_a_notify_without_recipient_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace('then = [{ escalate = "leads" }]', 'then = [{ notify = { message = "m" } }]')
    errors, _ = run_report(tmp_path, text)
    hit(errors, text, "rules.0.then.0.notify", "notify", "notify needs to")


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ('then = [{ escalate = "leads" }]', "then = []", "rules.0.then", "it does nothing"),
        ('then = [{ escalate = "leads" }]', "then = [{ set = {} }]", "rules.0.then.0.set", "does nothing"),
        ("gte = 100000", 'gte = "abc"', "rules.0.when.all.0.gte", "never holds (it is not a number)"),
        ("gte = 100000", 'gte = "100000"', "rules.0.when.all.0.gte", "write 100000 without quotes"),
        (
            'field = "account.arr", gte = 100000',
            'field = "ticket.sentiment", lt = "low"',
            "rules.0.when.all.0.lt",
            "ticket.sentiment is a number",
        ),
    ],
)
def test_legal_but_surely_unintended_is_a_warning(
    tmp_path: Path, old: str, new: str, key: str, message: str
) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    errors, warnings = run_report(tmp_path, text)
    assert errors == []
    hit(warnings, text, key, new, message)


def test_a_declared_number_field_is_numeric_and_others_are_not(tmp_path: Path) -> None:
    # arr is declared as an account number field; product_area is a ticket multi_select
    text = GOOD.replace('field = "account.arr", gte = 100000', 'field = "account.arr", gte = "big"')
    _errors, warnings = run_report(tmp_path, text)
    assert any(": rules.0.when.all.0.gte: " in w for w in warnings), warnings
    text = GOOD.replace(
        'field = "account.arr", gte = 100000', 'field = "ticket.created_at", gte = "2026-01-01"'
    )
    errors, warnings = run_report(tmp_path, text)
    assert errors == [] and warnings == []


def test_warn_before_not_shorter_than_a_budget_is_a_warning(tmp_path: Path) -> None:
    text = GOOD + '\n[[sla]]\nname = "s"\nfirst_response = "1h"\nresolution = "1d"\nwarn_before = "1h"\n'
    errors, warnings = run_report(tmp_path, text)
    assert errors == []
    hit(warnings, text, "sla.0.warn_before", 'warn_before = "1h"', "first_response (1h)")
    assert "resolution" not in "".join(warnings)


def test_a_leaf_with_two_operators_is_legal(tmp_path: Path) -> None:
    text = GOOD.replace("gte = 100000", "gte = 100000, lt = 500000")
    assert run_report(tmp_path, text) == ([], [])


def test_an_unknown_path_is_reported_once(tmp_path: Path) -> None:
    errors = run_check(tmp_path, GOOD.replace('field = "account.arr"', 'field = "foo.bar"'))
    assert len([e for e in errors if ": rules.0.when.all.0.field: " in e]) == 1, errors


def test_shape_errors_do_not_hide_the_cross_table_ones(tmp_path: Path) -> None:
    text = (
        GOOD.replace('then = [{ escalate = "leads" }]', 'then = [{ escalate = "nobody" }]').replace(
            'calendar = "support"', 'calendar = "nocal"\nstatus = "busy"'
        )
        + '\n[routing]\nstrategy = "least_loadd"\n'
    )
    errors = run_check(tmp_path, text)
    keys = [e.split(": ")[1] for e in errors]
    # the shape errors first, as before, then what the checks of the valid parts found
    assert keys == ["routing.strategy", "agents.0.status", "rules.0.then.0.escalate", "agents.0.calendar"], (
        errors
    )
    assert errors[2].split(":")[1] == str(line_of(text, '"nobody"'))


def test_an_entry_missing_a_required_key_is_set_aside_quietly(tmp_path: Path) -> None:
    # product_area has no type: its own problem is reported, the tag mapping naming it is not blamed for it
    text = GOOD.replace('type = "multi_select"\n', "").replace(
        'then = [{ escalate = "leads" }]', 'then = [{ escalate = "nobody" }]'
    )
    text += '\n[[rules]]\nwhen = { field = "ticket.nope", eq = 1 }\n'
    errors, warnings = run_report(tmp_path, text)
    keys = [e.split(": ")[1] for e in errors]
    assert keys == ["fields.product_area.type", "rules.1.name", "rules.0.then.0.escalate"], errors
    assert warnings == []
    assert "Field required" in errors[0] and "Field required" in errors[1]


def test_a_bad_value_inside_a_list_sets_aside_only_its_key(tmp_path: Path) -> None:
    text = (
        GOOD + '\n[[sla]]\nname = "s"\nfirst_response = "1x"\nescalate = [{ after = "1h", to = "ghosts" }]\n'
    )
    keys = [e.split(": ")[1] for e in run_check(tmp_path, text)]
    assert keys == ["sla.0.first_response", "sla.0.escalate.0.to"]


@pytest.mark.parametrize(
    ("new", "key", "message"),
    [
        ('field = "ticket.priority", gte = "High"', "rules.0.when.all.0.gte",
         "unknown priority 'High'; expected one of low, normal, high, urgent (write 'high')"),
        ('field = "ticket.priority", eq = "Urgent"', "rules.0.when.all.0.eq", "unknown priority 'Urgent'"),
        ('field = "ticket.priority", to = "P1"', "rules.0.when.all.0.to", "unknown priority 'P1'"),
        ('field = "ticket.priority", lt = 3', "rules.0.when.all.0.lt", "unknown priority 3"),
        ('field = "ticket.priority", in = ["high", "critical"]', "rules.0.when.all.0.in.1",
         "unknown priority 'critical'"),
    ],
)
def test_a_priority_outside_the_known_ones_in_a_condition_is_an_error(
    tmp_path: Path, new: str, key: str, message: str
) -> None:
    text = GOOD.replace('field = "account.arr", gte = 100000', new)
    errors, _warnings = run_report(tmp_path, text)
    hit(errors, text, key, new, message)
    assert len(errors) == 1, errors


def test_known_priorities_in_a_condition_pass(tmp_path: Path) -> None:
    leaf = 'field = "ticket.priority", gte = "high", not_in = ["low"], from = "normal", to = "urgent"'
    text = GOOD.replace('field = "account.arr", gte = 100000', leaf)
    assert run_report(tmp_path, text) == ([], [])


def test_a_rule_setting_a_field_of_another_kind_is_an_error(tmp_path: Path) -> None:
    # arr is an account field: a rule's set writes the ticket, so it would write a ticket field named arr
    new = "then = [{ set = { arr = 5 } }]"
    text = GOOD.replace('then = [{ escalate = "leads" }]', new)
    errors, _warnings = run_report(tmp_path, text)
    hit(errors, text, "rules.0.then.0.set.arr", new,
        "field 'arr' is of kind 'account': a rule sets fields of the ticket only")
    assert len(errors) == 1, errors


def test_hours_of_the_wrong_shape_are_one_problem_not_also_no_open_hours(tmp_path: Path) -> None:
    errors = run_check(tmp_path, '[calendars.s]\nhours = { mon = "09:00-17:00" }\n')
    assert [e.split(": ", 1)[1] for e in errors] == [
        'calendars.s.hours.mon: mon takes a list in brackets (write ["09:00-17:00"] for one), got a string'
    ]


def test_a_plugin_key_of_the_wrong_type_is_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HS_TEST_TOKEN", "x")
    text = GOOD + '\n[connectors.hs]\nplugin = "hubspot"\ntoken_env = "HS_TEST_TOKEN"\n'
    text += 'rate_per_second = "fast"\n'
    errors = run_check(tmp_path, text)
    assert [e for e in errors if "rate_per_second" in e] == [
        f"{tmp_path / 'bridge.toml'}:{line_of(text, 'rate_per_second')}: connectors.hs.rate_per_second: "
        "rate_per_second takes a number, got 'fast'"]


def test_bridges_own_note_of_missing_secrets_is_no_key_of_the_file_nor_of_the_schema(tmp_path: Path) -> None:
    text = GOOD.replace('path = "crm"', 'path = "crm"\n_missing_secrets = { token = "x" }', 1)
    errors = run_check(tmp_path, text)
    assert any(e.endswith("connectors.crm._missing_secrets: unknown key") for e in errors), errors
    assert "_missing_secrets" not in json.dumps(Config.model_json_schema())


@pytest.mark.parametrize("key", ["first_response", "next_response", "resolution", "acknowledgement"])
def test_a_budget_of_zero_is_refused_naming_the_key(tmp_path: Path, key: str) -> None:
    # (a zero target reads as "no target" in some helpdesks' forms; here it would escalate every ticket)
    text = f'[[sla]]\nname = "std"\n{key} = "0m"\nescalate = [{{ after = "0m", to = "leads" }}]\n'
    text += '[teams.leads]\nmembers = ["lead@example.com"]\n'
    errors = run_check(tmp_path, text)
    assert errors == [f"{tmp_path / 'bridge.toml'}:3: sla.0.{key}: a budget of 0m breaches every ticket at "
                      "once; leave the key out for no clock"]
    assert run_check(tmp_path, text.replace('"0m"', '"1m"', 1)) == []
