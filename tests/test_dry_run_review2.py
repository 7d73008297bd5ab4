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


def test_the_plan_leaves_out_a_write_the_push_will_not_send(tmp_path: Path) -> None:
    # a first sync: a (the owner) says v1, and b, pulled after, holds v1 already: no write is planned, as
    # none is sent; with both sides edited under last_writer_wins, only the write to a is planned
    import json

    from bridge.sync import Syncer

    for s in ("a", "b"):
        (tmp_path / s).mkdir()
    connectors = {s: {"plugin": "files", "path": str(tmp_path / s), "out_path": str(tmp_path / f"{s}.out"),
                      "kinds": ["account"]} for s in ("a", "b")}
    fields = {"stage": {"type": "text", "kind": "account", "owner": "a", "policy": "last_writer_wins",
                        "sync_to": ["a", "b"]}}
    app = App(LoadedConfig(Config(connectors=connectors, fields=fields), tmp_path / "bridge.toml", {}),
              database=f"sqlite:///{tmp_path / 'b.db'}")

    def put(system: str, at: str, stage: str) -> None:
        with (tmp_path / system / "x.jsonl").open("a") as fh:
            fh.write(json.dumps({"kind": "account", "id": f"{system.upper()}1", "updated_at": at,
                                 "domain": "acme.com", "fields": {"stage": stage}}) + "\n")

    def plan(report: Any) -> Plan:
        return [(p.system, p.old, p.new, p.rule) for p in report.plan]

    try:
        syncer = Syncer(app.config, app.store, app.connector)
        put("a", "2026-11-02T09:00:00Z", "v1")
        put("b", "2026-11-02T09:00:01Z", "v1")
        assert plan(syncer.sync(dry_run=True)) == []
        real = syncer.sync()
        assert plan(real) == [] and real.pushed == 0
        put("a", "2026-11-02T09:10:00Z", "from-a")
        put("b", "2026-11-02T09:20:00Z", "from-b")
        dry = syncer.sync(dry_run=True)
        assert plan(dry) == [("a", "from-a", "from-b", "last_writer_wins")]
        real = syncer.sync()
        assert plan(real) == plan(dry) and real.pushed == 1
    finally:
        app.close()
