"""``replay --against`` compares the two runs' outputs as multisets (a repeated decision counts), then says
why: every rule of each config against each ticket that differs, with what fired when."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from bridge.replay import diff, explain_diff
from bridge.rules.explain import format_explain_diff
from bridge.settings import Config

NOTE = {"at": "2026-11-02T09:16:00Z", "ticket_id": "T-1", "decision": "notify", "rule": "vip", "to": "ops"}
TAG = {"at": "2026-11-02T09:15:00Z", "ticket_id": "T-1", "decision": "tag", "rule": "t", "tag": "a/b"}


def test_a_decision_taken_twice_in_one_run_and_once_in_the_other_is_a_difference() -> None:
    old: list[dict[str, Any]] = [TAG, NOTE, dict(NOTE)]
    new: list[dict[str, Any]] = [TAG, NOTE]
    assert diff(old, new) == [{"diff": "-", **NOTE}]
    assert diff(new, old) == [{"diff": "+", **NOTE}]


def test_the_same_multiset_in_another_order_is_no_difference() -> None:
    assert diff([NOTE, TAG, NOTE], [NOTE, NOTE, TAG]) == []
    assert diff([NOTE, NOTE], [NOTE, NOTE, NOTE, TAG]) == [{"diff": "+", **TAG}, {"diff": "+", **NOTE}]


def test_the_old_line_comes_before_the_new_one() -> None:
    final = {"ticket_id": "T-1", "final": True, "sla": {"resolution_due": "2026-11-07T09:00:00Z"}}
    later = {**final, "sla": {"resolution_due": "2026-11-08T09:00:00Z"}}
    assert [d["diff"] for d in diff([final], [later])] == ["-", "+"]


# ---------------------------------------------------------------- why: every rule under each config

SENTIMENT_RULE = {"name": "angry", "set": "escalation", "then": [{"escalate": "leads"}],
                  "when": {"all": [{"field": "ticket.sentiment", "lte": -35}]}}
LINES = [
    json.dumps({"type": "ticket.created", "at": "2026-11-02T09:00:00Z", "ticket": {
        "id": "T-1", "subject": "s", "body": "b", "status": "open", "tags": [], "sentiment": -60}}),
    json.dumps({"type": "ticket.created", "at": "2026-11-02T09:05:00Z", "ticket": {
        "id": "T-2", "subject": "s", "body": "b", "status": "open", "tags": [], "sentiment": 20}}),
]


def configs() -> tuple[Config, Config]:
    teams = {"leads": {"members": []}}
    old = Config(teams=teams, rules=[{**SENTIMENT_RULE, "when": {"all": [
        {"field": "ticket.sentiment", "lte": -80}]}}], sla=[{"name": "all", "resolution": "5d"}])
    new = Config(teams=teams, rules=[SENTIMENT_RULE], sla=[{"name": "all", "resolution": "6d"}])
    return old, new


def test_explain_diff_gives_every_rule_of_both_configs_with_what_fired(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    old, new = configs()
    (why,) = explain_diff(old, new, path, ["T-1"])
    assert why["ticket_id"] == "T-1"
    before = {e["rule"]: e for e in why["explain"]["old"]}
    after = {e["rule"]: e for e in why["explain"]["new"]}
    assert before["angry"]["matched"] is False and before["angry"]["fired"] == []
    assert before["angry"]["why_not"] == ["ticket.sentiment is -60, not lte -80"]
    assert after["angry"]["matched"] is True and after["angry"]["fired"] == ["2026-11-02T09:00:00Z"]
    assert [leaf["actual"] for leaf in after["angry"]["leaves"]] == [-60]
    assert before["all"]["budgets"] == {"resolution": "5d"}
    assert after["all"]["budgets"] == {"resolution": "6d"}


def test_the_text_shows_a_rule_alike_under_both_once_and_a_changed_one_twice() -> None:
    same = {"rule": "r", "set": "routing", "matched": True, "leaves": [], "why_not": [], "fired": []}
    old = [same, {"rule": "angry", "set": "escalation", "matched": False, "leaves": [],
                  "why_not": ["ticket.sentiment is -60, not lte -80"], "fired": []},
           {"rule": "gone", "set": "triggers", "matched": False, "leaves": [], "why_not": [], "fired": []}]
    new = [same, {"rule": "angry", "set": "escalation", "matched": True, "leaves": [], "why_not": [],
                  "fired": ["2026-11-02T09:00:00Z"]}]
    assert format_explain_diff(old, new).splitlines() == [
        "  ✓ r [routing] — holds; no decision of it is recorded (nothing to change, or nobody free, when it "
        "fired; or it has not run since what it reads changed)",
        "- ✗ angry [escalation] — did not fire",
        "-     why not: ticket.sentiment is -60, not lte -80",
        "+ ✓ angry [escalation] — fired at 2026-11-02T09:00:00Z",
        "- ✗ gone [triggers] — did not fire",
    ]


def test_replay_against_prints_the_differences_then_why(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    (tmp_path / "new.toml").write_text(textwrap.dedent("""\
        [teams.leads]
        members = []
        [[rules]]
        name = "angry"
        set = "escalation"
        when = { all = [{ field = "ticket.sentiment", lte = -35 }] }
        then = [{ escalate = "leads" }]
        [[sla]]
        name = "all"
        resolution = "6d"
        """))
    (tmp_path / "old.toml").write_text((tmp_path / "new.toml").read_text().replace("-35", "-80"))
    res = subprocess.run([sys.executable, "-m", "bridge.cli", "replay", str(path), "--config", "new.toml",
                          "--against", "old.toml"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "+ 2026-11-02T09:00:00Z T-1 escalate [angry] to=leads"
    assert lines[1].startswith("- T-1: final ") and "sla[resolution_due=2026-11-08T09:00:00Z]" in lines[1]
    assert lines[2].startswith("+ T-1: final ") and "escalations=leads" in lines[2]
    assert "T-2" not in res.stdout  # alike under both: no difference, no explanation
    # why, as the rules stood in the event where the runs parted (not at the final state)
    start = lines.index("T-1 at 2026-11-02T09:00:00Z (its ticket.created of 2026-11-02T09:00:00Z): the rules "
                        "then, under old.toml (-) and new.toml (+); a rule alike under both is shown once")
    assert lines[start + 1:start + 7] == [
        "- ✗ angry [escalation] — did not fire",
        "-     no  ticket.sentiment lte -80: -60",
        "-     why not: ticket.sentiment is -60, not lte -80",
        "+ ✓ angry [escalation] — fired here",
        "+     yes ticket.sentiment lte -35: -60",
        "  ✓ all [sla] (applies) — stated no threshold",
    ]


def test_replay_against_explains_with_the_values_of_the_moment_the_runs_parted(tmp_path: Path) -> None:
    # the sentiment crosses the new threshold at 09:30 and recovers by 10:30: the explanation reads -45 at
    # 09:30 (the value that separates -35 from -50), not the final 30; and the rule one config fires at 09:30
    # chains into another, which says after what it fired
    path = tmp_path / "events.jsonl"
    moves = (("2026-11-02T09:30:00Z", -45), ("2026-11-02T10:30:00Z", 30))
    updated = [json.dumps({"type": "ticket.updated", "at": at, "ticket_id": "T-1",
                           "changes": {"sentiment": v}}) for at, v in moves]
    path.write_text("\n".join([LINES[0].replace("-60", "10"), *updated]) + "\n")
    (tmp_path / "new.toml").write_text(textwrap.dedent("""\
        [teams.leads]
        members = []
        [[rules]]
        name = "angry"
        set = "escalation"
        when = { all = [{ field = "ticket.sentiment", lte = -35 }, { any = [
            { field = "ticket.channel", eq = "phone" }, { none = [{ tag = "vip/*" }] }] }] }
        then = [{ set = { priority = "urgent" } }]
        [[rules]]
        name = "urgent-tag"
        set = "triggers"
        when = { field = "ticket.priority", to = "urgent" }
        then = [{ add_tags = ["flag/urgent"] }]
        """))
    (tmp_path / "old.toml").write_text((tmp_path / "new.toml").read_text().replace("-35", "-50"))
    res = subprocess.run([sys.executable, "-m", "bridge.cli", "replay", str(path), "--config", "new.toml",
                          "--against", "old.toml"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("T-1 at 2026-11-02T09:30:00Z (its "
                                                                      "ticket.updated of 2026-11-02T09:30"))
    assert lines[start + 1:start + 19] == [
        "- ✗ urgent-tag [triggers] — did not fire",
        "-     no  ticket.priority to 'urgent': None -> None",
        "-     why not: ticket.priority None: to 'urgent' is false",
        "+ ✓ urgent-tag [triggers] — fired here, after angry changed ticket.priority",
        "+     yes ticket.priority to 'urgent': None -> 'urgent'",
        "- ✗ angry [escalation] — did not fire",
        "-     no  ticket.sentiment lte -50: -45",
        "-     any: yes",
        "-       no  ticket.channel eq 'phone': None",
        "-       none: yes",
        "-         no  ticket.tags tag 'vip/*': []",
        "-     why not: ticket.sentiment is -45, not lte -50",
        "+ ✓ angry [escalation] — fired here",
        "+     yes ticket.sentiment lte -35: -45",
        "+     any: yes",
        "+       no  ticket.channel eq 'phone': None",
        "+       none: yes",
        "+         no  ticket.tags tag 'vip/*': []",
    ]
    # with --json, the same moment: each entry with its leaves' values then
    res = subprocess.run([sys.executable, "-m", "bridge.cli", "--json", "replay", str(path), "--config",
                          "new.toml", "--against", "old.toml"], cwd=tmp_path, capture_output=True, text=True,
                         check=False)
    [why] = [json.loads(line) for line in res.stdout.splitlines() if '"moments"' in line]
    [moment] = [m for m in why["moments"] if m["event_at"] == "2026-11-02T09:30:00Z"]
    [angry] = [e for e in moment["old"] if e["rule"] == "angry"]
    assert angry["leaves"][0]["actual"] == -45 and angry["matched"] is False
    [chained] = [e for e in moment["new"] if e["rule"] == "urgent-tag"]
    assert chained["fired_here"] and chained["after"] == [{"rule": "angry", "path": "ticket.priority"}]


def test_a_rule_that_fired_alike_under_both_is_shown_once_as_it_was_when_it_fired(tmp_path: Path) -> None:
    # "bump" fires under both configs and its own action changes what it reads: shown once, with the
    # priority it saw (normal), not the one it set (high)
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"type": "ticket.created", "at": "2026-11-02T09:00:00Z", "ticket": {
        "id": "T-1", "subject": "s", "body": "b", "status": "open", "priority": "normal", "tags": [],
        "sentiment": -60}}) + "\n")
    (tmp_path / "new.toml").write_text(textwrap.dedent("""\
        [teams.leads]
        members = []
        [[rules]]
        name = "angry"
        set = "escalation"
        when = { field = "ticket.sentiment", lte = -35 }
        then = [{ escalate = "leads" }]
        [[rules]]
        name = "bump"
        set = "triggers"
        when = { field = "ticket.priority", lt = "high" }
        then = [{ set = { priority = "high" } }]
        """))
    (tmp_path / "old.toml").write_text((tmp_path / "new.toml").read_text().replace("-35", "-90"))
    args = [sys.executable, "-m", "bridge.cli", "replay", str(path), "--config", "new.toml", "--against",
            "old.toml"]
    res = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    bump = [line for line in res.stdout.splitlines() if "bump [triggers]" in line]
    assert bump == ["  ✓ bump [triggers] — fired here"]
    res = subprocess.run([*args[:3], "--json", *args[3:]], cwd=tmp_path, capture_output=True, text=True,
                         check=False)
    [why] = [json.loads(line) for line in res.stdout.splitlines() if '"moments"' in line]
    for side in ("old", "new"):
        [entry] = [e for m in why["moments"] for e in m[side] if e["rule"] == "bump"]
        assert entry["matched"] and [(leaf["actual"], leaf["result"]) for leaf in entry["leaves"]] == [
            ("normal", True)]


def test_a_deadline_one_config_has_no_clock_for_is_no_difference() -> None:
    old = {"ticket_id": "T-1", "final": True, "sla": {"resolution_due": None}}
    new = {"ticket_id": "T-1", "final": True, "sla": {"resolution_due": None, "acknowledgement_due": None}}
    assert diff([old], [new]) == []
    due = {**new, "sla": {"resolution_due": None, "acknowledgement_due": "2026-11-02T10:00:00Z"}}
    assert [d["diff"] for d in diff([old], [due])] == ["-", "+"]


def test_replay_against_says_why_routing_chose_each_agent(tmp_path: Path) -> None:
    # round robin gives the third ticket to a (least recently assigned), least loaded to c (no open ticket):
    # the explanation names each agent's part under both configs
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"type": "ticket.created", "at": f"2026-11-02T09:0{n}:00Z", "ticket": {
        "id": f"R-{n}", "subject": "s", "body": "b", "status": "open", "tags": []}}) for n in range(3)]
    lines.insert(2, json.dumps({"type": "ticket.status", "at": "2026-11-02T09:01:30Z", "ticket_id": "R-1",
                                "status": "resolved"}))
    path.write_text("\n".join(lines) + "\n")
    base = textwrap.dedent("""\
        [routing]
        strategy = "least_loaded"
        [[agents]]
        email = "a@x.example"
        [[agents]]
        email = "b@x.example"
        """)
    (tmp_path / "new.toml").write_text(base)
    (tmp_path / "old.toml").write_text(base.replace("least_loaded", "round_robin"))
    res = subprocess.run([sys.executable, "-m", "bridge.cli", "replay", str(path), "--config", "new.toml",
                          "--against", "old.toml"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[:2] == ["- 2026-11-02T09:02:00Z R-2 assign [routing] to=a@x.example",
                       "+ 2026-11-02T09:02:00Z R-2 assign [routing] to=b@x.example"]
    start = out.index("- routing: to a@x.example (routing: round_robin; asked anyone)")
    assert out[start:start + 6] == [
        "- routing: to a@x.example (routing: round_robin; asked anyone)",
        "-   a@x.example: chosen: the least recently assigned of those available (last assigned #1) "
        "(1 open of 10, active)",
        "-   b@x.example: available, ranked after the one chosen (last assigned #2) (0 open of 10, active)",
        "+ routing: to b@x.example (routing: least_loaded; asked anyone)",
        "+   a@x.example: available, ranked after the one chosen (last assigned #1) (1 open of 10, active)",
        "+   b@x.example: chosen: the fewest open tickets, then the least recently assigned of those "
        "available (last assigned #2) (0 open of 10, active)",
    ]


def test_config_changes_name_agents_by_email_and_list_rules_switched_on_or_off() -> None:
    from bridge.replay import config_changes
    from bridge.settings import Config

    rule = {"name": "sev1", "when": {"tag": "bug/sev1"}, "then": [{"add_tags": ["x"]}]}
    old = Config(agents=[{"email": "a@x.example"}, {"email": "b@x.example", "capacity": 1}],
                 rules=[rule, {**rule, "name": "gone"}])
    new = Config(agents=[{"email": "a@x.example"}, {"email": "b@x.example", "capacity": 3}],
                 rules=[{**rule, "enabled": False}, {**rule, "name": "added"}])
    assert config_changes(old, new) == [
        {"key": "agents.b@x.example.capacity", "old": 1, "new": 3},
        {"key": "rules.sev1.enabled", "old": True, "new": False},
    ]


def test_against_says_why_a_ticket_waited_under_the_config_that_queued_it(tmp_path: Path) -> None:
    from bridge.replay import explain_diff
    from bridge.rules.explain import format_routing
    from bridge.settings import Config

    path = tmp_path / "events.jsonl"
    lines = [
        {"type": "ticket.created", "at": "2026-11-02T09:00:00Z", "ticket": {"id": "T-1", "subject": "s"}},
        {"type": "ticket.created", "at": "2026-11-02T09:05:00Z", "ticket": {"id": "T-2", "subject": "s"}},
        {"type": "ticket.status", "at": "2026-11-02T10:00:00Z", "ticket_id": "T-1", "status": "resolved"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    old = Config(agents=[{"email": "a@x.example", "capacity": 1}])
    new = Config(agents=[{"email": "a@x.example", "capacity": 2}])
    (row,) = explain_diff(old, new, path, {"T-2": ["2026-11-02T09:05:00Z", "2026-11-02T10:00:00Z"]})
    (moment,) = [m for m in row["moments"] if m["event_at"] == "2026-11-02T09:05:00Z"]
    (waited,) = moment["old_routing"]
    assert format_routing(waited, label="routing: ") == [
        "routing: to nobody: it waits in the queue (routing: round_robin; asked anyone)",
        "  a@x.example: not available: at capacity (1 open of 1, active)",
    ]
    assert [r["to"] for r in moment["new_routing"]] == ["a@x.example"]
