"""Rules in the daemon: side effects queued exactly once, across a crash, a retry and a restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.app import App
from bridge.effects import effect_fields, queue_effects
from bridge.model import Change, Record
from bridge.pipeline import DESK_PLUGIN, MemoryState, Pipeline
from bridge.rules.live import LiveRules, Stored, change_event
from bridge.scheduler import rules_history, run_timers
from bridge.settings import Config, LoadedConfig

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

CONFIG = {
    "connectors": {"desk": {"plugin": "files", "path": "in", "kinds": ["ticket"]}},
    "fields": {
        "severity": {"type": "select", "options": ["Sev-1", "Sev-2"], "owner": "bridge", "sync_to": ["desk"]}
    },
    "agents": [{"email": "a@x.example", "capacity": 5}],
    "follow_up": {"after": "48h"},
    "auto_close": {"after": "7d"},
    "rules": [
        {
            "name": "sev1",
            "set": "triggers",
            "when": {"all": [{"tag": "bug/sev1"}]},
            "then": [{"set": {"severity": "Sev-1"}}],
        }
    ],
}


def make_app(url: str) -> App:
    return App(LoadedConfig(Config(**CONFIG), Path("bridge.toml"), {}), database=url)


def desk_of(app: App) -> LiveRules:
    """A Desk registered where the pipeline finds it (what start_rules does, without the rebuild)."""
    live = LiveRules(app.config, loader=rules_history)
    app.host.register(live, DESK_PLUGIN)
    return live


def ingest(app: App, change: Change) -> Record:
    """The pipeline with its rules stage: process, the Desk's effects queued in the same transaction."""
    pipeline = Pipeline(app.config, app.host, run="test")
    with app.store.session() as tx:
        outcome = pipeline.process(tx, change, change.at)
    return outcome.record


def effects_in_outbox(app: App) -> list[dict[str, object]]:
    return [i.fields for i in app.store.items("desk")]


def test_follow_up_and_auto_close_once_across_restart(store_url: str) -> None:
    app = make_app(store_url)
    live = desk_of(app)
    created = Change("desk", "ticket", "T-1", T0, tags=["bug/sev1"], attrs={"status": "open", "subject": "x"})
    ingest(app, created)
    ingest(app, Change("desk", "ticket", "T-1", T0 + timedelta(hours=1), attrs={"status": "pending"}))
    first = effects_in_outbox(app)
    assert {"severity": "Sev-1"} in first and {"assignee": "a@x.example"} in first

    # the follow-up falls due 48 h after the ticket went pending
    run_timers(app, live, T0 + timedelta(hours=50))
    follow = [f for f in effects_in_outbox(app) if "follow_up" in f]
    assert len(follow) == 1

    # a restart: a new Desk rebuilt from the change log fires the same timer again; its key stops a repeat
    with app.store.session() as tx:
        links = {r.id: dict(r.links) for r in tx.records("ticket")}
        feed = [Stored(c.record_id, links[c.record_id], c.change, c.desk_at, c.id)
                for c in tx.logged_changes("ticket", links)]
    again = LiveRules(app.config)
    assert again.rebuild(feed, None) == 2
    run_timers(app, again, T0 + timedelta(hours=50))
    assert len([f for f in effects_in_outbox(app) if "follow_up" in f]) == 1
    app.close()


def test_a_crash_between_claim_and_commit_leaves_the_effect_to_the_retry(store_url: str) -> None:
    app = make_app(store_url)
    live = desk_of(app)
    ingest(app, Change("desk", "ticket", "T-2", T0, attrs={"status": "open"}))
    ingest(app, Change("desk", "ticket", "T-2", T0 + timedelta(minutes=5), attrs={"status": "resolved"}))
    due = T0 + timedelta(minutes=5) + timedelta(days=7)
    _handled, decisions = live.tick(MemoryState(), due)
    assert [d.decision for _r, ds in decisions for d in ds] == ["auto_close"]
    record, ds = decisions[0]
    with pytest.raises(RuntimeError), app.store.session() as tx:
        assert len(queue_effects(tx, app.config, record, ds, due, "crash")) == 1
        raise RuntimeError("killed before commit")
    assert not [f for f in effects_in_outbox(app) if f.get("status") == "closed"]
    for _attempt in range(2):  # the retry, and a second retry
        with app.store.session() as tx:
            queue_effects(tx, app.config, record, ds, due, "retry")
    assert len([f for f in effects_in_outbox(app) if f.get("status") == "closed"]) == 1
    app.close()


def test_effect_fields_respect_sync_to() -> None:
    cfg = Config(
        **{
            **CONFIG,
            "connectors": {
                **CONFIG["connectors"],  # type: ignore[dict-item]
                "crm": {"plugin": "files", "path": "c", "kinds": ["ticket"]},
            },
        }
    )
    rec = Record("r", "ticket", links={"desk": "T", "crm": "C"})
    from bridge.model import Decision

    d = Decision(T0, "r", "set_field", "sev1", {"field": "severity", "value": "Sev-1", "key": "k"})
    assert effect_fields(cfg, "desk", rec, d) == {"severity": "Sev-1"}
    assert effect_fields(cfg, "crm", rec, d) == {}  # crm does not read severity


@pytest.mark.parametrize(
    ("attrs", "created", "kind"),
    [
        ({"status": "open"}, True, "ticket.created"),
        ({"message": "hi", "last_author": "customer"}, False, "ticket.message"),
        ({"status": "pending"}, False, "ticket.status"),
        ({"priority": "high"}, False, "ticket.updated"),
    ],
)
def test_change_event(attrs: dict[str, str], created: bool, kind: str) -> None:
    assert change_event(Change("s", "ticket", "1", T0, attrs=attrs), created)["type"] == kind


def test_a_restart_repeats_no_effect(store_url: str) -> None:
    from bridge.scheduler import start_rules

    def ingest_live(app: App, change: Change) -> None:
        pipeline = Pipeline(app.config, app.host, run="live")  # the Desk answers through the hook
        with app.store.session() as tx:
            pipeline.process(tx, change, change.at)

    app = make_app(store_url)
    live = start_rules(app)
    for n in range(3):
        at = T0 + timedelta(minutes=n)
        ingest_live(app, Change("desk", "ticket", f"T-{n}", at, tags=["bug/sev1"], attrs={"status": "open"}))
    ingest_live(app, Change("desk", "ticket", "T-0", T0 + timedelta(minutes=5), attrs={"status": "pending"}))
    run_timers(app, live, T0 + timedelta(hours=1))
    before = effects_in_outbox(app)
    assert sum(1 for f in before if "assignee" in f) == 3
    app.close()

    # the daemon restarts: a new Desk is rebuilt from the change log, and its timers run again
    again = make_app(store_url)
    live2 = start_rules(again)
    run_timers(again, live2, T0 + timedelta(hours=2))
    after = effects_in_outbox(again)
    assert sum(1 for f in after if "assignee" in f) == 3
    assert sum(1 for f in after if "severity" in f) == sum(1 for f in before if "severity" in f)
    # the follow-up, due 48 h after T-0 went pending, fires once, after the restart
    run_timers(again, live2, T0 + timedelta(hours=49))
    run_timers(again, live2, T0 + timedelta(hours=50))
    assert sum(1 for f in effects_in_outbox(again) if "follow_up" in f) == 1
    again.close()


def test_a_rule_on_the_change_itself_sees_the_value_before_it() -> None:
    when = {"field": "ticket.priority", "to": "urgent"}
    rules = [{"name": "raised", "when": when, "then": [{"escalate": "x"}]}]
    live = LiveRules(Config(**{**CONFIG, "rules": rules}))
    assert live.desk.reads_previous
    rec = Record("R-1", "ticket", attrs={"subject": "s", "priority": "normal", "status": "open"})
    fired = []
    state = MemoryState()
    for n, priority in enumerate(["normal", "urgent", "urgent", "high", "urgent"]):
        rec.attrs["priority"] = priority
        change = Change("desk", "ticket", "1", T0 + timedelta(minutes=n), attrs={"priority": priority})
        _at, touched = live.on_change(state, rec, change)
        fired += [(n, d.decision) for _r, ds in touched for d in ds if d.rule == "raised"]
    assert fired == [(1, "escalate")]  # the escalation is sent once: a later rise finds it already there
    # without such rules nothing is kept per ticket for them
    plain = LiveRules(Config(**CONFIG))
    plain.on_change(state, rec, change)
    assert not plain.desk.reads_previous and plain._previous == {}


def test_a_one_shot_sync_routes_what_it_takes_in_and_run_does_not_repeat_it(tmp_path: Path) -> None:
    from bridge.scheduler import run_timers, start_rules, sync_once

    (tmp_path / "in").mkdir()
    ticket = {"kind": "ticket", "id": "T-1", "updated_at": "2026-11-02T09:15:00Z", "subject": "Refund",
              "body": "charged twice", "tags": ["bug/sev1"], "status": "open"}
    (tmp_path / "in" / "tickets.jsonl").write_text(json.dumps(ticket) + "\n")
    files = {"plugin": "files", "path": str(tmp_path / "in"), "out_path": str(tmp_path / "out.jsonl"),
             "kinds": ["ticket"]}
    cfg = {**CONFIG, "connectors": {"desk": files}}
    def new_app() -> App:
        return App(LoadedConfig(Config(**cfg), tmp_path / "bridge.toml", {}),
                   database=f"sqlite:///{tmp_path / 'bridge.db'}")

    app = new_app()
    try:
        sync_once(app)
        with app.store.session() as tx:
            (record,) = list(tx.records("ticket"))
        assert record.attrs.get("assignee") == "a@x.example"  # routed by the sync itself
        sent = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert any(w.get("fields", {}).get("assignee") == "a@x.example" for w in sent)
        queued = len(app.store.items("desk"))
    finally:
        app.close()
    # the daemon starting afterwards rebuilds its Desk and queues nothing again
    daemon = new_app()
    try:
        run_timers(daemon, start_rules(daemon))
        assert len(daemon.store.items("desk")) == queued
    finally:
        daemon.close()


def test_a_notify_action_reaches_the_helpdesk_once(store_url: str) -> None:
    from bridge.scheduler import start_rules

    rule = {"name": "page-oncall", "set": "escalation", "when": {"tag": "bug/sev1"},
            "then": [{"notify": {"to": "#oncall", "message": "Sev-1 opened"}}]}
    config = {**CONFIG, "rules": [*CONFIG["rules"], rule]}  # type: ignore[list-item]
    app = App(LoadedConfig(Config(**config), Path("bridge.toml"), {}), database=store_url)
    start_rules(app)
    ingest(app, Change("desk", "ticket", "T-1", T0, tags=["bug/sev1"], attrs={"status": "open"}))
    ingest(app, Change("desk", "ticket", "T-1", T0 + timedelta(minutes=1), attrs={"subject": "more"}))
    notes = [f["notify"] for f in effects_in_outbox(app) if "notify" in f]
    assert notes == [{"to": "#oncall", "message": "Sev-1 opened"}]
    app.close()


def test_two_notes_of_one_rule_and_two_firings_at_one_instant_are_each_sent_once(store_url: str) -> None:
    from bridge.scheduler import start_rules

    rules = [
        {"name": "page", "set": "escalation", "when": {"tag": "bug/sev1"},
         "then": [{"notify": {"to": "#oncall", "message": "page"}},
                  {"notify": {"to": "#oncall", "message": "and the status page"}}]},
        {"name": "prio", "set": "triggers", "when": {"field": "ticket.priority", "changed": True},
         "then": [{"notify": {"to": "lead@x.example", "message": "priority changed"}}, {"review": "look"}]},
    ]
    config = {**CONFIG, "rules": rules}
    app = App(LoadedConfig(Config(**config), Path("bridge.toml"), {}), database=store_url)
    start_rules(app)
    ingest(app, Change("desk", "ticket", "T-1", T0, tags=["bug/sev1"], attrs={"status": "open"}))
    # two changes pulled late, both dated before the rules' clock: taken at one instant, still two changes
    ingest(app, Change("desk", "ticket", "T-2", T0 + timedelta(hours=1), attrs={"status": "open"}))
    ingest(app, Change("desk", "ticket", "T-1", T0 + timedelta(minutes=10), attrs={"priority": "high"}))
    ingest(app, Change("desk", "ticket", "T-1", T0 + timedelta(minutes=20), attrs={"priority": "urgent"}))
    notes = [f["notify"]["message"] for f in effects_in_outbox(app) if "notify" in f]
    assert notes == ["page", "and the status page", "priority changed", "priority changed"]
    assert len([f for f in effects_in_outbox(app) if "review" in f]) == 2
    app.close()
    again = App(LoadedConfig(Config(**config), Path("bridge.toml"), {}), database=store_url)
    start_rules(again)  # a restart repeats none of them
    run_timers(again, desk_of(again), T0 + timedelta(hours=2))
    assert [f["notify"]["message"] for f in effects_in_outbox(again) if "notify" in f] == notes
    again.close()


def test_a_closed_ticket_the_helpdesk_reopens_is_said_aloud_not_taken_silently(
        store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(store_url)
    desk_of(app)
    try:
        ingest(app, Change("desk", "ticket", "T-3", T0, attrs={"status": "open"}))
        ingest(app, Change("desk", "ticket", "T-3", T0 + timedelta(minutes=5), attrs={"status": "closed"}))
        with caplog.at_level("INFO", logger="bridge.rules"):
            ingest(app, Change("desk", "ticket", "T-3", T0 + timedelta(minutes=9), attrs={"tags_note": "x"}))
            assert not [r for r in caplog.records if r.levelname == "WARNING"]  # (still closed: quietly)
            ingest(app, Change("desk", "ticket", "T-3", T0 + timedelta(minutes=10), attrs={"status": "open"}))
        (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warning == ("rules: desk T-3 was closed and is open again: the rules do not take a closed "
                           "ticket up again (no routing, SLA clocks or escalations for it)")
    finally:
        app.close()
