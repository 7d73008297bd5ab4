"""`bridge check` after review 3: fields the bridge does not own, empty conditions, values a path never
holds, one bad option or alias, list entries from the environment, cycles through tags, skills nobody has,
a boolean priority and a config nested too deeply."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.check import Report, check_file
from bridge.plugins import create_host
from bridge.settings import Config, LoadedConfig
from test_check_review2 import located


def host_factory(cfg: Config):  # type: ignore[no-untyped-def]
    return create_host(cfg.plugins.disabled, cfg.bridge.plugins_dir)


def run(tmp_path: Path, text: str) -> tuple[LoadedConfig | None, Report]:
    path = tmp_path / "bridge.toml"
    path.write_text(textwrap.dedent(text))
    return check_file(path, host_factory)


def check(tmp_path: Path, text: str) -> Report:
    return run(tmp_path, text)[1]


# ---------------------------------------------------------------- #2 fields the bridge does not own

OWNED = """\
[connectors.crm]
plugin = "files"
path = "crm"

[fields.crm_only]
type = "select"
options = ["a", "b"]
owner = "crm"

[fields.shared]
type = "select"
options = ["a", "b"]
owner = "crm"
policy = "last_writer_wins"

[fields.ours]
type = "select"
options = ["a", "b"]

[[tags]]
match = "bug/*"
set = { crm_only = "a", ours = "a" }

[[tags]]
match = "billing/*"
set = { shared = "b" }

[[rules]]
name = "r"
when = { tag = "bug/*" }
then = [{ set = { crm_only = "b" } }, { set = { shared = "b", ours = "b" } }]
"""


def test_tags_and_rules_may_not_set_a_field_another_system_owns(tmp_path: Path) -> None:
    problems = located(check(tmp_path, OWNED).errors)
    assert [(line, key) for line, key, _msg in problems] == [
        (22, "tags.0.set.crm_only"),
        (26, "tags.1.set.shared"),  # tags only ever set fields the bridge owns, whatever the policy
        (31, "rules.0.then.0.set.crm_only"),  # a rule may write where the policy lets others write
    ]
    assert "owned by 'crm': tags only set fields the bridge owns" in problems[0][2]
    assert "owned by 'crm' (policy owner_wins): a sync never overwrites the owner" in problems[2][2]


# ---------------------------------------------------------------- #4 an empty condition


def test_an_empty_when_is_an_error_and_no_when_is_every_ticket(tmp_path: Path) -> None:
    report = check(
        tmp_path,
        """\
        [[rules]]
        name = "empty"
        when = {}
        then = [{ set = { priority = "urgent" } }]

        [[rules]]
        name = "every-ticket"
        then = [{ set = { priority = "high" } }]

        [[sla]]
        name = "s"
        first_response = "1h"
        when = {}
        """,
    )
    keys = [(line, key) for line, key, _msg in located(report.errors)]
    assert keys == [(13, "sla.0.when"), (3, "rules.0.when")]
    assert all("when = {} is an empty condition; leave when out for a" in e for e in report.errors)
    assert check(tmp_path, "[[rules]]\nname = \"r\"\nthen = [{ add_tags = \"a/b\" }]\n").errors == []


# ---------------------------------------------------------------- #5 values a path never holds

VALUES = """\
[fields.severity]
type = "select"
options = ["Sev-1", "Sev-2"]
aliases = { "Sev-1" = ["critical"] }

[fields.area]
type = "multi_select"
options = ["Billing", "API"]

[[rules]]
name = "r"
when = { any = [
  { field = "ticket.status", eq = "done" },
  { field = "ticket.status", in = ["open", "Pending"] },
  { field = "ticket.status", from = "solved" },
  { field = "ticket.status", ne = "closed" },
  { field = "ticket.severity", in = ["Sev-11", "Sev-2"] },
  { field = "ticket.severity", eq = "sev-1" },
  { field = "ticket.severity", to = "critical" },
  { field = "ticket.severity", eq = "Sev-1" },
  { field = "ticket.area", eq = ["API", "Biling"] },
  { field = "ticket.area", contains = "api" },
  { field = "ticket.area", contains = "Nope" },
  { field = "ticket.severity", contains = "Sev" },
] }
then = [{ add_tags = "x/y" }]
"""


def test_a_status_or_an_option_a_path_never_holds_is_an_error(tmp_path: Path) -> None:
    problems = {key: msg for _line, key, msg in located(check(tmp_path, VALUES).errors)}
    statuses = "expected one of open, pending, on_hold, resolved, closed"
    assert problems == {
        "rules.0.when.any.0.eq": f"unknown status 'done'; {statuses}",
        "rules.0.when.any.1.in.1": f"unknown status 'Pending'; {statuses} (write 'pending')",
        "rules.0.when.any.2.from": f"unknown status 'solved'; {statuses} (did you mean 'resolved'?)",
        "rules.0.when.any.4.in.0": (
            "'Sev-11' is not an option of this select (did you mean 'Sev-1'?); options: Sev-1, Sev-2"
        ),
        # the option as the field matches values (case, aliases), but a condition compares it as written
        "rules.0.when.any.5.eq": (
            "'sev-1' never matches: a ticket holds the option 'Sev-1' as declared, and a condition "
            "compares as written (write 'Sev-1')"
        ),
        "rules.0.when.any.6.to": (
            "'critical' never matches: a ticket holds the option 'Sev-1' as declared, and a condition "
            "compares as written (write 'Sev-1')"
        ),
        "rules.0.when.any.8.eq.1": (
            "'Biling' is not an option of this multi_select (did you mean 'Billing'?); options: Billing, API"
        ),
        "rules.0.when.any.10.contains": "'Nope' is not an option of this multi_select; options: Billing, API",
    }


# ---------------------------------------------------------------- #6 one bad option or alias

ALIAS = """\
[bridge]
database = "sqlite:///alias.db"

[fields.product_area]
type = "multi_select"
options = ["Billing", "API", "billing"]
aliases = { "Biling" = ["billing", "payments"], "API" = ["rest"] }

[[tags]]
match = "billing/*"
set = { product_area = "Billing" }

[[tags]]
match = "api/*"
set = { product_area = "rest" }

[[rules]]
name = "api"
when = { field = "ticket.product_area", contains = "API" }
then = [{ set = { product_area = ["API", "Nope"] } }]
"""


def test_a_bad_option_or_alias_is_named_at_its_key_and_the_field_stays_declared(tmp_path: Path) -> None:
    loaded, report = run(tmp_path, ALIAS)
    assert loaded is None  # not runnable, but every problem is listed in one run
    assert located(report.errors) == [
        (6, "fields.product_area.options.2", "options 'Billing' and 'billing' differ only in case or spaces"),
        (7, "fields.product_area.aliases.Biling",
         "alias target 'Biling' is not an option; options: Billing, API"),
        # the field is still declared: no "is not declared", and the rule's own mistake is found in this run
        (20, "rules.0.then.0.set.product_area",
         "'Nope' is not an option of this multi_select in ['API', 'Nope']; options: Billing, API"),
    ]


def test_a_field_of_an_unknown_type_is_still_declared(tmp_path: Path) -> None:
    report = check(tmp_path, ALIAS.replace('"multi_select"', '"multiselect"'))
    assert [key for _line, key, _msg in located(report.errors)] == ["fields.product_area.type"]


# ---------------------------------------------------------------- #7 a list entry from the environment

ENTRIES = """\
[[rules]]
name = "first"
priority = 10
when = { tag = "a/*" }
then = [{ add_tags = "x/a" }]

[[rules]]
name = "second"
priority = 20
when = { tag = "b/*" }
then = [{ add_tags = "x/b" }]

[[sla]]
name = "s"
first_response = "1h"
"""


def test_a_variable_changes_one_entry_of_a_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_RULES__1__PRIORITY", "5")
    monkeypatch.setenv("BRIDGE_SLA__0__PAUSE_ON", '["on_hold"]')
    loaded, report = run(tmp_path, ENTRIES)
    assert report.errors == [] and loaded is not None
    rules = loaded.config.rules
    assert [(r.name, r.priority) for r in rules] == [("first", 10), ("second", 5)]
    assert rules[1].then == [{"add_tags": "x/b"}]  # the rest of the entry is the file's
    assert loaded.config.sla[0].pause_on == ["on_hold"]


def test_a_bad_list_entry_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_RULES__0__PRIORITY", "soon")
    errors = check(tmp_path, ENTRIES).errors
    assert len(errors) == 1 and errors[0].startswith("$BRIDGE_RULES__0__PRIORITY: rules.0.priority: ")
    monkeypatch.delenv("BRIDGE_RULES__0__PRIORITY")
    monkeypatch.setenv("BRIDGE_RULES__2__PRIORITY", "5")
    assert check(tmp_path, ENTRIES).errors == [
        "$BRIDGE_RULES__2__PRIORITY: rules: the file's list has no entry 2 for the variable to change "
        "(entries count from 0)"
    ]


# ---------------------------------------------------------------- #8 cycles through tags

TAG_CYCLE = """\
[[rules]]
name = "a"
when = { field = "ticket.tags", eq = ["bug/x", "bug/y"] }
then = [{ add_tags = "out/a" }]

[[rules]]
name = "b"
when = { field = "ticket.tags", in = ["bug/x"] }
then = [{ add_tags = "out/b" }]
"""


def test_a_tag_another_rule_does_not_look_for_feeds_no_cycle(tmp_path: Path) -> None:
    assert check(tmp_path, TAG_CYCLE).warnings == []
    # b adds a tag a's eq looks for, and a one b's in looks for: a real cycle
    real = TAG_CYCLE.replace('"out/a"', '"bug/x"').replace('"out/b"', '"bug/y"')
    assert [msg for _line, _key, msg in located(check(tmp_path, real).warnings)] == [
        "warning: rule cycle: a -> b -> a (a writes ticket.tags read by b; b writes ticket.tags read by a)"
    ]
    # eq on a list starts to hold when a tag is removed too
    removing = TAG_CYCLE.replace('add_tags = "out/b"', 'remove_tags = "out/z"').replace('"out/a"', '"bug/x"')
    assert len(check(tmp_path, removing).warnings) == 1
    # not_in starts to hold when a tag it names is removed, never when one is added
    absent = """\
        [[rules]]
        name = "a"
        when = { tag = "out/*" }
        then = [{ add_tags = "bug/x" }]

        [[rules]]
        name = "b"
        when = { field = "ticket.tags", not_in = ["bug/x"] }
        then = [{ add_tags = "out/b" }]
        """
    assert check(tmp_path, absent).warnings == []
    assert len(check(tmp_path, absent.replace('add_tags = "bug/x"', 'remove_tags = "bug/x"')).warnings) == 1


# ---------------------------------------------------------------- #9 a skill nobody has


def test_an_assign_to_a_skill_or_language_no_agent_has_is_a_warning(tmp_path: Path) -> None:
    report = check(
        tmp_path,
        """\
        [[agents]]
        email = "a@x.example"
        skills = ["billing"]
        languages = ["en"]

        [[rules]]
        name = "r"
        set = "routing"
        when = { tag = "billing/*" }
        then = [{ assign = { skill = "biling", language = "fr" } }, { assign = { skill = "billing" } }]
        """,
    )
    assert report.errors == []
    assert [(key, msg) for _line, key, msg in located(report.warnings)] == [
        ("rules.0.then.0.assign.skill",
         "warning: no [[agents]] entry has skill 'biling' (did you mean 'billing'?): a ticket it routes "
         "waits in the queue"),
        ("rules.0.then.0.assign.language",
         "warning: no [[agents]] entry has language 'fr': a ticket it routes waits in the queue"),
    ]


# ---------------------------------------------------------------- #10 smaller items


def test_a_boolean_priority_is_an_error(tmp_path: Path) -> None:
    text = '[[rules]]\nname = "r"\npriority = true\nthen = [{ add_tags = "a/b" }]\n'
    assert located(check(tmp_path, text).errors) == [
        (3, "rules.0.priority", "priority takes a whole number, got true")
    ]


def test_a_config_nested_too_deeply_is_a_syntax_error(tmp_path: Path) -> None:
    when = '{ field = "ticket.priority", eq = "high" }'
    for _ in range(400):
        when = "{ all = [" + when + "] }"
    report = check(tmp_path, f'[[rules]]\nname = "r"\nwhen = {when}\nthen = [{{ add_tags = "a/b" }}]\n')
    assert report.errors == [
        f"{tmp_path / 'bridge.toml'}:3: (syntax): arrays or tables nested too deeply to read"
    ]


def test_a_rule_tag_glob_in_capitals_is_a_warning(tmp_path: Path) -> None:
    report = check(tmp_path, """\
        [[rules]]
        name = "r"
        when = { any = [{ tag = "Billing/*" }, { tag = "bug/*" }] }
        then = [{ add_tags = ["seen/x"] }]
        """)
    assert report.errors == []
    assert located(report.warnings) == [
        (3, "rules.0.when.any.0.tag", "warning: tag globs in rules compare letter case as written: "
                                      "'Billing/*' never matches 'billing/*' (write it as the tags are "
                                      "written)")]


# ---------------------------------------------------------------- account options and the queue's tiers

ACCOUNT_OPTIONS = """\
[fields.tier]
type = "select"
kind = "account"
options = ["enterprise", "growth", "starter"]

[routing]
tier_order = ["Enterprise", "growth", "vip"]

[[rules]]
name = "tiers"
when = { any = [
  { field = "account.tier", eq = "Enterprise" },
  { field = "account.tier", in = ["growth", "enterprize"] },
  { field = "account.tier", eq = "starter" },
] }
then = [{ add_tags = "x/y" }]
"""


def test_an_account_option_a_path_never_holds_is_an_error_in_conditions_and_in_tier_order(
    tmp_path: Path,
) -> None:
    """The ticket's account holds its declared options as declared (the pipeline coerces the ticket's own
    account as a sync coerces the CRM's): a condition or the queue's tier order that writes one otherwise
    never matches, which bridge check says rather than replay staying silent."""
    problems = {key: msg for _line, key, msg in located(check(tmp_path, ACCOUNT_OPTIONS).errors)}
    assert problems == {
        "rules.0.when.any.0.eq": (
            "'Enterprise' never matches: an account holds the option 'enterprise' as declared, and a "
            "condition compares as written (write 'enterprise')"
        ),
        "rules.0.when.any.1.in.1": (
            "'enterprize' is not an option of this select (did you mean 'enterprise'?); options: enterprise, "
            "growth, starter"
        ),
        "routing.tier_order.0": (
            "'Enterprise' never matches: an account holds the option 'enterprise' as declared, and the queue "
            "compares as written (write 'enterprise')"
        ),
        "routing.tier_order.2": "'vip' is not an option of this select; options: enterprise, growth, starter",
    }


# ---------------------------------------------------- rules that overrule a person, tags in capitals

def test_a_rule_guarding_on_the_field_its_own_set_writes_is_warned_of(tmp_path: Path) -> None:
    text = """\
[[rules]]
name = "angry-urgent"
when = { all = [{ field = "ticket.sentiment", lte = -35 }, { field = "ticket.priority", ne = "urgent" }] }
then = [{ set = { priority = "urgent" } }]

[[rules]]
name = "angry-high"
when = { field = "ticket.sentiment", lte = -35 }
then = [{ set = { priority = "high" } }]
"""
    report = check(tmp_path, text)
    assert report.errors == []
    (warning,) = [w for w in report.warnings if "its own set writes" in w]
    assert warning.endswith(
        ":3: rules.0.when: warning: reads ticket.priority, which its own set writes: a person who changes it "
        "back makes the condition start to hold again, and the rule sets it again. A rule fires once when "
        "its condition starts to hold, so the guard is not needed to stop it repeating; leave it out")


def test_a_tag_an_action_adds_or_removes_in_capitals_is_warned_of(tmp_path: Path) -> None:
    text = """\
[[rules]]
name = "caps"
when = { field = "ticket.priority", eq = "urgent" }
then = [{ add_tags = "Billing/Refund" }, { remove_tags = ["bug/sev1", "BUG/SEV1"] }]
"""
    report = check(tmp_path, text)
    capitals = [w.split(": warning: ")[1] for w in report.warnings if "letter case" in w]
    assert capitals == [
        "adds 'Billing/Refund' as written: tags compare letter case as written, so it is not "
        "'billing/refund' (rules' globs and other tags miss it; write it in lower case)",
        "removes 'BUG/SEV1' as written: tags compare letter case as written, so it is not 'bug/sev1' "
        "(rules' globs and other tags miss it; write it in lower case)",
    ]


def test_a_taxonomy_prefix_the_pattern_never_matches_is_warned_of(tmp_path: Path) -> None:
    # the spec's own example: "how-to" against ^[a-z]+/...: its tags are never topics
    text = """\
[taxonomy]
pattern = "^[a-z]+/[a-z0-9-]+$"
prefixes = ["billing", "how-to"]

[topics]
prefixes = ["bug", "how-to"]
"""
    report = check(tmp_path, text)
    found = [w.split(f"{tmp_path}/", 1)[1] for w in report.warnings if "never topics" in w]
    assert [w.split(": warning: ")[0] for w in found] == [
        "bridge.toml:3: taxonomy.prefixes.1", "bridge.toml:6: topics.prefixes.1"]
    assert "no tag of prefix 'how-to' matches [taxonomy] pattern '^[a-z]+/[a-z0-9-]+$'" in found[0]
    assert check(tmp_path, text.replace("[a-z]+/", "[a-z-]+/")).warnings == []


def test_a_topics_tracker_must_be_a_system_that_files_product_tickets(tmp_path: Path) -> None:
    text = """\
[connectors.jira]
plugin = "files"
path = "out"

[topics]
tracker = "jira"
rules = [{ window = "7d", ratio = 3.0 }]
"""
    report = check(tmp_path, text)
    # a warning, not an error: bridge replay and bridge topics work with such a config as before
    assert report.errors == []
    assert [w.split("topics.tracker: warning: ", 1)[1] for w in report.warnings if "topics.tracker" in w] == [
        "'jira' (plugin 'files') files no product tickets: bridge run files none (bridge replay and bridge "
        "topics still find the spikes); the tracker is a jira or linear system (or a plugin that carries the "
        "kind topic)"]
    jira = text.replace('plugin = "files"\npath = "out"',
                        'plugin = "jira"\nbase_url = "https://x.example"\nproject = "P"')
    report = check(tmp_path, jira)
    assert report.errors == []
    assert [w for w in report.warnings if "topics" in w] == []
    report = check(tmp_path, jira.replace('base_url = "https://x.example"', 'kinds = ["ticket"]'))
    assert [e.split("topics.tracker: ", 1)[1] for e in report.errors if "topics.tracker" in e] == [
        "'jira' does not carry topics: add \"topic\" to connectors.jira.kinds"]
    report = check(tmp_path, jira.replace('rules = [{ window = "7d", ratio = 3.0 }]', ""))
    assert [w.split(": warning: ")[1] for w in report.warnings if "topics" in w] == [
        "no rules: no spike is found, and no product ticket filed in 'jira'"]


def test_a_hubspot_helpdesk_without_properties_for_the_rules_effects_is_warned_of(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HS_TOKEN", "pat-na1-0000")
    text = """\
[connectors.hubspot]
plugin = "hubspot"
token_env = "HS_TOKEN"
kinds = ["ticket"]
effect_properties = { escalation = "bridge_escalation" }

[teams.leads]
members = []

[[sla]]
name = "all"
first_response = "1h"

[[rules]]
name = "angry"
when = { field = "ticket.sentiment", lte = -35 }
then = [{ escalate = "leads" }, { add_tags = ["x/angry"] }]
"""
    report = check(tmp_path, text)
    assert report.errors == []
    (warning,) = [w.split(": warning: ")[1] for w in report.warnings if "effect_properties" in w]
    assert warning == ("the hubspot tickets have no property for notify, tags, sla, which the "
                       "rules tell the helpdesk: each is refused to the dead letter (tags: left out of their "
                       "write) until effect_properties names a ticket field for it")
    # review comes of a classification not confident enough: only where keywords classify
    classified = check(tmp_path, text + '\n[classify]\nkeywords = { "billing/refund" = ["refund"] }\n')
    (warning,) = [w.split(": warning: ")[1] for w in classified.warnings if "effect_properties" in w]
    assert warning.startswith("the hubspot tickets have no property for review, notify, tags, sla")
    # a helpdesk switched off is told nothing
    off = check(tmp_path, text.replace('kinds = ["ticket"]', 'kinds = ["ticket"]\nenabled = false'))
    assert [w for w in off.warnings if "effect_properties" in w] == []


def test_a_follow_up_without_a_message_is_warned_of(tmp_path: Path) -> None:
    report = check(tmp_path, '[follow_up]\nafter = "48h"\n')
    assert [w.split(": warning: ")[1] for w in report.warnings] == [
        'no message: the reminder bridge tells the helpdesk has no text (set message = "...", the reminder '
        'the customer gets)']
    assert check(tmp_path, '[follow_up]\nafter = "48h"\nmessage = "Any news?"\n').warnings == []


def test_a_status_the_rules_write_that_the_helpdesk_maps_none_of_its_own_to_is_warned_of(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HS_TOKEN", "pat-na1-0000")
    text = """\
[connectors.hubspot]
plugin = "hubspot"
token_env = "HS_TOKEN"
kinds = ["ticket"]
statuses = { "1" = "open", "2" = "pending" }
effect_properties = { review = "r", notify = "n" }

[auto_close]
after = "7d"

[[rules]]
name = "thanks"
when = { field = "ticket.sentiment", gte = 50 }
then = [{ set = { status = "resolved" } }]
"""
    report = check(tmp_path, text)
    assert [w.split(": warning: ")[1] for w in report.warnings if "statuses" in w] == [
        "no hubspot status is mapped to 'closed', 'resolved', which the rules write (a rule's set, "
        "auto-close): each such write is refused to the dead letter"]


def test_a_tracker_plugins_table_needs_no_kinds_and_naming_the_helpdesk_as_tracker_leaves_its_kinds(
        tmp_path: Path) -> None:
    jira = '[connectors.jira]\nplugin = "jira"\nbase_url = "https://x.example"\nproject = "P"\n'
    # a jira system that is not the tracker: no error about a ticket kind nobody wrote, a warning instead
    report = check(tmp_path, jira)
    assert report.errors == []
    assert [w.split("connectors.jira: warning: ")[1] for w in report.warnings if "connectors.jira:" in w] == [
        "'jira' carries topics but is not the [topics] tracker: it files no product ticket (set [topics] "
        "tracker = \"jira\")"]
    # the files helpdesk named as the tracker: one warning, on [topics] tracker, none on the helpdesk's table
    desk = '[connectors.desk]\nplugin = "files"\npath = "."\n\n[topics]\ntracker = "desk"\n' \
           'rules = [{ window = "7d", ratio = 3.0 }]\n'
    report = check(tmp_path, desk)
    assert report.errors == [] and [w.split(": ", 2)[1] for w in report.warnings] == ["topics.tracker"]
    # a tracker whose plugin is not installed: said of its table only
    report = check(tmp_path, desk.replace('plugin = "files"', 'plugin = "jiraa"'))
    assert [e.split(": ", 2)[1] for e in report.errors] == ["connectors.desk.plugin"]


def test_a_plugin_that_carries_no_tickets_gets_its_own_kinds_when_none_are_written(tmp_path: Path) -> None:
    from bridge.app import App

    text = '[connectors.crm]\nplugin = "pipedrive"\napi_token = "x"\n'
    assert check(tmp_path, text).errors == []
    (tmp_path / "bridge.toml").write_text(text)
    app = App.from_path(tmp_path / "bridge.toml", validate=False)
    app.host  # noqa: B018  (the plugins known, the kinds are resolved)
    assert app.config.connectors["crm"].kinds == ["account", "contact"]


def test_a_connector_table_without_base_url_takes_the_plugins_own(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.app import App

    monkeypatch.setenv("PD_TOKEN", "pd-0000")
    monkeypatch.setenv("LIN_KEY", "lin_api_0000")
    (tmp_path / "bridge.toml").write_text(
        '[connectors.crm]\nplugin = "pipedrive"\napi_token_env = "PD_TOKEN"\n\n'
        '[connectors.linear]\nplugin = "linear"\napi_key_env = "LIN_KEY"\nteam_id = "t"\ntimeout = 7\n\n'
        '[connectors.hs]\nplugin = "hubspot"\ntoken_env = "PD_TOKEN"\n')
    app = App.from_path(tmp_path / "bridge.toml", validate=False)
    crm, linear = app.connector("crm"), app.connector("linear")
    assert app.connector("hs").settings.kinds == app.config.connectors["hs"].kinds == ["ticket"]
    assert crm.settings.base_url == "https://api.pipedrive.com"
    assert linear.settings.base_url == "https://api.linear.app" and linear.settings.timeout == 7
    assert crm.settings.kinds == ["account", "contact"] and linear.settings.kinds == ["topic"]
    app.close()


def test_a_crm_without_an_upsert_key_for_a_kind_synced_to_it_is_warned_of(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HS_TOKEN", "pat-na1-0000")
    text = """\
[connectors.hubspot]
plugin = "hubspot"
token_env = "HS_TOKEN"
kinds = ["account", "ticket"]
id_property = { ticket = "bridge_id" }

[connectors.desk]
plugin = "files"
path = "."

[fields.arr]
type = "number"
kind = "account"
owner = "desk"
sync_to = ["hubspot"]
"""
    report = check(tmp_path, text)
    assert [w.split("connectors.hubspot.id_property: warning: ")[1] for w in report.warnings
            if "id_property" in w] == [
        "no id_property for account: a record of it that hubspot does not hold yet gets none of the "
        "fields synced to it (each write is skipped), until id_property names the unique field to find or "
        "make it by"]
    keyed = check(tmp_path, text.replace('{ ticket = "bridge_id" }', '{ account = "domain" }'))
    assert [w for w in keyed.warnings if "id_property" in w] == []
