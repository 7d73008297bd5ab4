"""A dry run's plan shows a rule's write of a ticket attribute (status, priority, assignee ...) over the value
the helpdesk holds as far as bridge knows (as pulled, or as bridge told it since), not over None."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.app import App
from bridge.model import Change, utcnow
from bridge.pipeline import Outcome, Pipeline, plan_effects
from bridge.scheduler import start_rules, sync_once
from bridge.settings import Config, LoadedConfig

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
UP = {"name": "up", "when": {"field": "ticket.priority", "eq": "high"},
      "then": [{"set": {"priority": "urgent"}}]}
DOWN = {"name": "down", "when": {"field": "ticket.priority", "eq": "urgent"},
        "then": [{"set": {"priority": "high"}}]}
ESCALATE = {"name": "esc", "when": {"tag": "bug/sev1"}, "then": [{"escalate": "leads"}]}

Plan = list[tuple[str, Any, Any, str]]


def make_app(tmp_path: Path, **config: Any) -> App:
    (tmp_path / "in").mkdir(exist_ok=True)
    desk = {"desk": {"plugin": "files", "path": str(tmp_path / "in"), "kinds": ["ticket"]}}
    loaded = LoadedConfig(Config(connectors=desk, **config), tmp_path / "bridge.toml", {})
    return App(loaded, database=f"sqlite:///{tmp_path / 'b.db'}")


def ingest(app: App, change: Change) -> Outcome:
    with app.store.session() as tx:
        return Pipeline(app.config, app.host, run="live").process(tx, change, change.at)


def ticket(external: str, at: datetime, **attrs: Any) -> Change:
    tags = attrs.pop("tags", None)
    return Change("desk", "ticket", external, at, tags=tags, attrs=attrs)


def planned(out: Outcome) -> Plan:
    return [(p.field, p.old, p.new, p.rule) for p in out.plan if p.rule.startswith("rule ")]


def test_a_timer_fired_on_a_later_change_plans_over_the_status_the_helpdesk_holds(tmp_path: Path) -> None:
    app = make_app(tmp_path, auto_close={"after": "7d"})
    try:
        start_rules(app, now=T0)
        ingest(app, ticket("T-61", T0, status="resolved", subject="Q"))
        out = ingest(app, ticket("T-61", T0 + timedelta(days=10), message="thanks"))
    finally:
        app.close()
    assert planned(out) == [("status", "resolved", "closed", "rule auto_close")]


def test_a_rule_plans_over_the_priority_just_pulled_and_an_event_over_nothing(tmp_path: Path) -> None:
    app = make_app(tmp_path, rules=[UP, DOWN, ESCALATE], teams={"leads": {"members": []}})
    try:
        start_rules(app, now=T0)
        out = ingest(app, ticket("T-62", T0, status="open", subject="Q", priority="high", tags=["bug/sev1"]))
    finally:
        app.close()
    # each write replaces what the one before it left; an escalation is an event: it replaces nothing
    assert planned(out) == [
        ("escalation", None, "leads", "rule esc"),
        ("priority", "high", "urgent", "rule up"),
        ("priority", "urgent", "high", "rule down"),
    ]


def test_the_timers_a_dry_run_fires_are_planned_over_the_ticket_as_stored(tmp_path: Path) -> None:
    app = make_app(tmp_path, auto_close={"after": "7d"})
    try:
        live = start_rules(app, now=T0)
        ingest(app, ticket("T-63", T0, status="resolved", subject="Q"))
        with app.store.session() as tx:
            _handled, touched = live.tick(tx, T0 + timedelta(days=8))
            plan = plan_effects(tx, app.config, touched, {"desk"})
    finally:
        app.close()
    assert [(p.ref, p.field, p.old, p.new, p.rule) for p in plan] == [
        ("desk:T-63", "status", "resolved", "closed", "rule auto_close")
    ]


def test_sync_dry_run_plans_a_due_auto_close_over_the_status_pulled(tmp_path: Path) -> None:
    at = utcnow() - timedelta(days=8)
    app = make_app(tmp_path, auto_close={"after": "7d"})
    try:
        start_rules(app, now=at)
        ingest(app, ticket("T-64", at, status="resolved", subject="Q"))
    finally:
        app.close()
    app = make_app(tmp_path, auto_close={"after": "7d"})
    try:
        report = sync_once(app, dry_run=True)
    finally:
        app.close()
    plan = [(p.ref, p.field, p.old, p.new) for p in report.plan]
    assert plan == [("desk:T-64", "status", "resolved", "closed")]
