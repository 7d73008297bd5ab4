"""`bridge explain` dates each rules decision when it took effect, in one line format whichever path recorded
it: a timer the Desk fired on a later change (recorded with that change, days after it fell due) and one the
rules job's tick fired (recorded as due)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.app import App
from bridge.explain import explain_record, format_explain
from bridge.model import Change
from bridge.pipeline import Pipeline
from bridge.scheduler import run_timers, start_rules
from bridge.settings import Config, LoadedConfig

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 26, 15, 13, 29, tzinfo=UTC)  # when the sync that took the late change ran
DESK = {"desk": {"plugin": "files", "path": "in", "kinds": ["ticket"]}}


def make_app(tmp_path: Path) -> App:
    config = Config(connectors=DESK, auto_close={"after": "7d"})
    return App(LoadedConfig(config, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")


def ingest(app: App, change: Change, now: datetime) -> None:
    with app.store.session() as tx:
        Pipeline(app.config, app.host, run="live").process(tx, change, now)


def ticket(external: str, at: datetime, **attrs: Any) -> Change:
    return Change("desk", "ticket", external, at, attrs=attrs)


def history(app: App, external: str) -> list[str]:
    data = explain_record(app, f"desk:{external}")
    assert data is not None
    text = format_explain(data).splitlines()
    return [line.strip() for line in text[text.index("history:") + 1 :]]


def test_a_timer_fired_on_a_later_change_is_dated_when_it_fell_due(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        start_rules(app, now=T0)
        ingest(app, ticket("T-51", T0, status="resolved", subject="Q"), T0)
        # the customer's thanks ten days on, taken in two weeks after that: the close fell due on day 7
        ingest(app, ticket("T-51", T0 + timedelta(days=10), message="thanks"), LATER)
        lines = history(app, "T-51")
    finally:
        app.close()
    decisions = [line for line in lines if " decision " in line]
    assert decisions == ["2026-11-09T09:00:00Z decision auto_close (auto_close) {'after': '7d'}"]


def test_a_timer_the_rules_job_fired_reads_as_one_fired_on_a_change(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        live = start_rules(app, now=T0)
        ingest(app, ticket("T-52", T0, status="resolved", subject="Q"), T0)
        run_timers(app, live, T0 + timedelta(days=7, minutes=1))
        lines = history(app, "T-52")
    finally:
        app.close()
    assert lines == ["2026-11-09T09:00:00Z decision auto_close (auto_close) {'after': '7d'}"]


def test_a_refused_value_is_no_decision_line(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        ingest(app, ticket("T-53", T0, status="open", subject="Q"), T0)
        with app.store.session() as tx:
            rid = tx.record_id_for("desk", "ticket", "T-53")
            assert rid is not None
            tx.audit(at=LATER, run="r", record_id=rid, field="x", before=None, after={"v": 1}, origin="desk",
                     rule="rejected: not a valid value", kind="decision", response="not a number")
        lines = history(app, "T-53")
    finally:
        app.close()
    refused = "decision: None -> {'v': 1} from desk (rejected: not a valid value) -> not a number"
    assert lines == [f"2026-11-26T15:13:29Z {refused}"]


def test_explain_shows_what_each_rule_saw_when_it_fired_as_well_as_now(tmp_path: Path) -> None:
    # the rule escalated at sentiment -70 and chained into another; the customer's thanks since put the
    # sentiment at +60: explain shows the rule as not holding now, and, when it fired, each value it read
    # then (the -70 that made it fire) and the rule whose action made the chained one match
    rules = [
        {"name": "angry", "set": "escalation", "when": {"all": [
            {"field": "ticket.sentiment", "lte": -35},
            {"any": [{"field": "ticket.channel", "eq": "phone"}, {"none": [{"tag": "vip/*"}]}]}]},
         "then": [{"escalate": "leads"}, {"set": {"priority": "urgent"}}]},
        {"name": "urgent-flag", "set": "escalation", "priority": 5,
         "when": {"field": "ticket.priority", "eq": "urgent"}, "then": [{"add_tags": ["flag/urgent"]}]},
    ]
    config = Config(connectors=DESK, teams={"leads": {"members": []}}, rules=rules)
    app = App(LoadedConfig(config, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    try:
        start_rules(app, now=T0)
        ingest(app, ticket("T-60", T0, status="open", subject="Refund", sentiment=-70), T0)
        later = T0 + timedelta(hours=2)
        ingest(app, ticket("T-60", later, message="Thanks, all good", last_author="customer", sentiment=60,
                           priority="normal"), later)
        data = explain_record(app, "desk:T-60")
    finally:
        app.close()
    assert data is not None
    angry, flag = (next(e for e in data["rules"] if e["rule"] == name) for name in ("angry", "urgent-flag"))
    assert angry["matched"] is False and angry["fired"] == ["2026-11-02T09:00:00Z"]
    [then] = angry["firings"]
    assert then["at"] == "2026-11-02T09:00:00Z" and then["matched"] is True and then["after"] == []
    assert [(leaf["field"], leaf["actual"], leaf["result"]) for leaf in then["leaves"]] == [
        ("ticket.sentiment", -70, True), ("ticket.channel", None, False), ("ticket.tags", [], False)]
    [chained] = flag["firings"]
    assert chained["after"] == [{"rule": "angry", "path": "ticket.priority"}]
    text = format_explain(data).splitlines()
    block = text[text.index("  ✗ angry [escalation] — fired at 2026-11-02T09:00:00Z"):]
    assert block[1:11] == [
        "      when it fired, at 2026-11-02T09:00:00Z:",
        "        yes ticket.sentiment lte -35: -70",
        "        any: yes",
        "          no  ticket.channel eq 'phone': None",
        "          none: yes",
        "            no  ticket.tags tag 'vip/*': []",
        "      now:",
        "        no  ticket.sentiment lte -35: 60",
        "        any: yes",
        "          no  ticket.channel eq 'phone': None",
    ]
    assert "      when it fired, at 2026-11-02T09:00:00Z, after angry changed ticket.priority:" in text
    # the history lines stay short: what the rule saw is in the rules' part, not repeated there
    assert not any("why" in line for line in text[text.index("history:"):])


def test_explain_says_why_routing_chose_the_agent(tmp_path: Path) -> None:
    agents = [{"email": "a@example.com", "capacity": 5}, {"email": "b@example.com", "capacity": 5,
                                                          "skills": ["billing"]}]
    rules = [{"name": "billing", "set": "routing", "when": {"tag": "billing/*"},
              "then": [{"assign": {"skill": "billing"}}]}]
    config = Config(connectors=DESK, agents=agents, rules=rules, routing={"strategy": "round_robin"})
    app = App(LoadedConfig(config, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    try:
        start_rules(app, now=T0)
        ingest(app, Change("desk", "ticket", "T-70", T0, attrs={"status": "open", "subject": "Refund"},
                           tags=["billing/refund"]), T0)
        data = explain_record(app, "desk:T-70")
    finally:
        app.close()
    assert data is not None
    [routing] = data["routing"]
    assert (routing["at"], routing["rule"], routing["to"], routing["asked"]) == (
        "2026-11-02T09:00:00Z", "billing", "b@example.com", {"skill": "billing"})
    text = format_explain(data).splitlines()
    # the rule that asked for billing reads as it did when it fired: not repeated
    rule = text.index("  ✓ billing [routing] — fired at 2026-11-02T09:00:00Z")
    assert text[rule + 1:rule + 4] == ["      when it fired, at 2026-11-02T09:00:00Z:",
                                       "        yes ticket.tags tag 'billing/*': ['billing/refund']",
                                       "      now: as when it last fired"]
    start = text.index("routing, each time it chose an agent:")
    assert text[start + 1:start + 4] == [
        "  2026-11-02T09:00:00Z to b@example.com (billing: round_robin; asked skill 'billing')",
        "    a@example.com: does not fit: no skill 'billing' (0 open of 5, active)",
        "    b@example.com: chosen: the least recently assigned of those available (never assigned) "
        "(0 open of 5, active)",
    ]


def test_what_a_rule_saw_keeps_only_the_part_of_a_long_text_it_looked_at(tmp_path: Path) -> None:
    # the audit log keeps each firing's explanation: a 20 kB mail is cut to the words around the phrase,
    # not copied whole into every decision's row
    when = {"field": "ticket.text", "contains": "refund me"}
    rules = [{"name": "refund", "set": "escalation", "when": when,
              "then": [{"escalate": "leads"}, {"set": {"priority": "high"}}]}]
    config = Config(connectors=DESK, teams={"leads": {"members": []}}, rules=rules)
    app = App(LoadedConfig(config, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    body = "x" * 10_000 + " please refund\nme now " + "y" * 10_000
    try:
        start_rules(app, now=T0)
        ingest(app, ticket("T-80", T0, status="open", subject="Hello", body=body), T0)
        with app.store.session() as tx:
            rid = tx.record_id_for("desk", "ticket", "T-80")
            assert rid is not None
            rows = [h for h in tx.audit_for(rid) if h["kind"] == "decision"]
        data = explain_record(app, "desk:T-80")
    finally:
        app.close()
    assert len(rows) == 2 and all(len(json.dumps(h["after"])) < 1500 for h in rows)
    assert data is not None
    [refund] = [e for e in data["rules"] if e["rule"] == "refund"]
    [then] = refund["firings"]
    [leaf] = then["leaves"]
    assert leaf["result"] is True and "please refund\nme now" in leaf["actual"]
    assert leaf["actual"].startswith("…") and leaf["actual"].endswith("…") and len(leaf["actual"]) <= 122
