"""The daemon's Desk against the store: decisions land on the ticket they are about, the Desk never runs ahead
of what was committed (rollbacks, failed timer runs), and a restart rebuilds it exactly (late changes, the
volume trigger's history); timers due before a change fire before it, as in replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from live_support import Writes, sla_writes, stored, writes

from bridge.app import App
from bridge.model import Change
from bridge.pipeline import Outcome, Pipeline
from bridge.rules.live import LiveRules
from bridge.scheduler import run_timers, start_rules
from bridge.settings import Config, LoadedConfig
from bridge.store import Store
from bridge.store.testing import require_postgres, temp_postgres_schema_url

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DESK = {"desk": {"plugin": "files", "path": "in", "kinds": ["ticket"]}}
ESCALATE_SEV1 = {
    "name": "esc",
    "set": "escalation",
    "when": {"all": [{"tag": "bug/sev1"}]},
    "then": [{"escalate": "leads"}],
}


class Boom(Exception):
    """A failure after the Desk saw the change (a database error, a later change of the page failing)."""


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bridge.db'}"


def make_app(url: str, **config: Any) -> App:
    return App(LoadedConfig(Config(**{"connectors": DESK, **config}), Path("bridge.toml"), {}), database=url)


def ingest(app: App, change: Change, fail: bool = False) -> Outcome:
    """One change through the pipeline in its own transaction, as a pull or a webhook does."""
    pipeline = Pipeline(app.config, app.host, run="live")
    with app.store.session() as tx:
        outcome = pipeline.process(tx, change, change.at)
        if fail:
            raise Boom("the transaction does not commit")
    return outcome


def attempt(app: App, change: Change) -> None:
    with pytest.raises(Boom):
        ingest(app, change, fail=True)


def loads(live: LiveRules) -> dict[str, int]:
    return {a.email: a.load for a in live.desk.router.agents.values()}


def ticket(external: str, at: datetime, **attrs: Any) -> Change:
    tags = attrs.pop("tags", None)
    return Change("desk", "ticket", external, at, tags=tags, attrs=attrs)


# ------------------------------------------------------------------ decisions about another ticket


def test_a_waiting_ticket_assigned_while_another_is_processed_is_saved_and_written_as_itself(
    store_url: str,
) -> None:
    app = make_app(store_url, agents=[{"email": "a@x.example", "capacity": 1}])
    start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))
    ingest(app, ticket("T-2", T0 + timedelta(minutes=1), status="open", subject="y"))
    assert stored(app, "T-2").attrs.get("assignee") is None  # the agent is full: T-2 waits

    # T-1 resolving frees the agent, and the Desk gives T-2 to them while processing T-1's change
    out = ingest(app, ticket("T-1", T0 + timedelta(hours=1), status="resolved"))
    t2 = stored(app, "T-2")
    assert [(d.record_id, d.decision) for d in out.decisions] == [(t2.id, "assign")]
    assert t2.attrs["assignee"] == "a@x.example"
    assert writes(app) == [("T-1", {"assignee": "a@x.example"}), ("T-2", {"assignee": "a@x.example"})]
    with app.store.session() as tx:
        audited = [a["record_id"] for a in tx.audit_for(t2.id) if a["kind"] == "decision"]
    assert audited == [t2.id]
    # T-2's next change finds it assigned: nothing is decided again
    out = ingest(app, ticket("T-2", T0 + timedelta(hours=2), priority="high"))
    assert [d.decision for d in out.decisions if d.decision == "assign"] == []
    app.close()


# ------------------------------------------------------------------ the Desk never runs ahead of the store


def test_a_rolled_back_new_ticket_leaves_no_phantom_in_the_desk(store_url: str) -> None:
    app = make_app(
        store_url,
        agents=[{"email": "a@x.example", "capacity": 1}, {"email": "b@x.example", "capacity": 1}],
        rules=[ESCALATE_SEV1],
        teams={"leads": {"members": ["a@x.example"]}},
    )
    live = start_rules(app)
    created = ticket("T-1", T0, status="open", subject="x", tags=["bug/sev1"])
    attempt(app, created)
    assert live.stale and writes(app) == []

    out = ingest(app, created)  # the retry is the ticket's first committed sight: escalated and routed once
    assert [(d.decision, d.detail.get("to")) for d in out.decisions] == [
        ("escalate", "leads"),
        ("assign", "a@x.example"),
    ]
    assert list(live.records) == [stored(app, "T-1").id]
    assert loads(live) == {"a@x.example": 1, "b@x.example": 0}
    out = ingest(app, ticket("T-2", T0 + timedelta(minutes=1), status="open", subject="y"))
    assert [(d.decision, d.detail.get("to")) for d in out.decisions] == [("assign", "b@x.example")]
    assert writes(app) == [
        ("T-1", {"escalation": "leads"}),
        ("T-1", {"assignee": "a@x.example"}),
        ("T-2", {"assignee": "b@x.example"}),
    ]
    app.close()


def test_a_rolled_back_update_is_decided_again_on_retry(store_url: str) -> None:
    app = make_app(
        store_url,
        agents=[{"email": "a@x.example", "capacity": 5}],
        rules=[ESCALATE_SEV1],
        teams={"leads": {"members": ["a@x.example"]}},
    )
    live = start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x", tags=[]))
    update = ticket("T-1", T0 + timedelta(minutes=5), tags=["bug/sev1"])
    attempt(app, update)
    out = ingest(app, update)
    assert [(d.decision, d.detail.get("to")) for d in out.decisions] == [("escalate", "leads")]
    assert ("T-1", {"escalation": "leads"}) in writes(app)
    assert live.rebuilds == 1
    app.close()


def test_a_savepoint_rolled_back_after_the_desk_saw_its_change_is_undone_in_the_desk(sqlite_url: str) -> None:
    # a pull processes each change of a page in a savepoint: a failing one is undone, the page commits
    app = make_app(sqlite_url, agents=[{"email": "a@x.example", "capacity": 1}])
    live = start_rules(app)
    pipeline = Pipeline(app.config, app.host, run="pull")
    with app.store.session() as tx:
        with pytest.raises(Boom), tx.savepoint():
            pipeline.process(tx, ticket("T-1", T0, status="open"), T0)
            raise Boom("bad data found after the rules ran")
        assert live.stale
        second = pipeline.process(tx, ticket("T-2", T0 + timedelta(minutes=1), status="open"), T0)
    # the agent's one seat went to T-2: T-1 was never committed
    t2 = second.record.id
    assert [(d.record_id, d.detail.get("to")) for d in second.decisions] == [(t2, "a@x.example")]
    assert loads(live) == {"a@x.example": 1} and list(live.records) == [second.record.id]
    app.close()


@pytest.mark.parametrize(
    ("timer", "after", "status", "fails_at", "written", "stays"),
    [
        ("follow_up", "48h", "pending", timedelta(hours=50), {"follow_up": ""}, "pending"),
        # a ticket closed in the undone transaction is not taken as closed: its close fires again
        ("auto_close", "2h", "resolved", timedelta(hours=4), {"status": "closed"}, "closed"),
    ],
)
def test_a_timer_fired_in_a_failed_transaction_fires_again(
    store_url: str, monkeypatch: pytest.MonkeyPatch, timer: str, after: str, status: str,
    fails_at: timedelta, written: dict[str, str], stays: str,
) -> None:
    import bridge.scheduler as scheduler

    app = make_app(store_url, agents=[{"email": "a@x.example", "capacity": 5}], **{timer: {"after": after}})
    live = start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))
    ingest(app, ticket("T-1", T0 + timedelta(hours=1), status=status))

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise Boom("database is locked")

    with monkeypatch.context() as patched:
        patched.setattr(scheduler, "apply_touched", locked)
        with pytest.raises(Boom):
            run_timers(app, live, T0 + fails_at)
    key = next(iter(written))
    for later in (timedelta(minutes=1), timedelta(hours=2)):  # the next runs of the rules job, same process
        run_timers(app, live, T0 + fails_at + later)
        assert [f for _e, f in writes(app) if key in f] == [written]
    assert stored(app, "T-1").attrs["status"] == stays
    app.close()


def test_an_auto_close_fired_before_an_agent_status_change_that_fails_fires_again(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bridge.scheduler as scheduler
    from bridge.scheduler import record_agent_status

    app = make_app(store_url, agents=[{"email": "a@x.example", "capacity": 5}], auto_close={"after": "2h"})
    live = start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))
    ingest(app, ticket("T-1", T0 + timedelta(hours=1), status="resolved"))

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise Boom("database is locked")

    at = T0 + timedelta(hours=3, minutes=5)  # the auto-close (due at 12:00) fires before the status change
    with monkeypatch.context() as patched:
        patched.setattr(scheduler, "apply_touched", locked)
        with pytest.raises(Boom):
            record_agent_status(app, "a@x.example", "away", at, now=at)
    run_timers(app, live, T0 + timedelta(hours=4))
    assert [f for _e, f in writes(app) if "status" in f] == [{"status": "closed"}]
    app.close()


def test_a_transaction_committing_after_a_rebuild_it_was_hidden_from_is_fed_again() -> None:
    # PostgreSQL: transactions run side by side; a rebuild inside one cannot see another still open
    require_postgres()
    with temp_postgres_schema_url() as url:
        app = make_app(url, agents=[{"email": "a@x.example", "capacity": 5}])
        live = start_rules(app)
        other = Store(url)  # a second connection pool: a second thread's transactions
        pipeline = Pipeline(app.config, app.host, run="live")
        with app.store.session() as slow:
            first = pipeline.process(slow, ticket("T-1", T0, status="open"), T0)
            with pytest.raises(Boom), other.session() as tx:  # rolls back: the Desk is stale
                pipeline.process(tx, ticket("T-2", T0 + timedelta(minutes=1), status="open"), T0)
                raise Boom
            with other.session() as tx:  # rebuilds without T-1, still uncommitted
                pipeline.process(tx, ticket("T-3", T0 + timedelta(minutes=2), status="open"), T0)
            assert first.record.id not in live.records
        with other.session() as tx:  # T-1 committed after that rebuild: the Desk is rebuilt again
            pipeline.process(tx, ticket("T-4", T0 + timedelta(minutes=3), status="open"), T0)
        assert sorted(r.links["desk"] for r in live.records.values()) == ["T-1", "T-3", "T-4"]
        assert loads(live) == {"a@x.example": 3}
        other.close()
        app.close()


def test_a_ticket_that_waited_for_a_seat_an_undone_change_took_is_assigned_after_the_rebuild() -> None:
    # PostgreSQL: T-2 commits while T-1, which took the agent's one seat, is still open; T-1 then rolls back.
    # The rebuilt Desk gives the seat to T-2: that assignment is owed, and the next transaction queues it
    require_postgres()
    with temp_postgres_schema_url() as url:
        app = make_app(url, agents=[{"email": "a@x.example", "capacity": 1}])
        live = start_rules(app)
        other = Store(url)
        pipeline = Pipeline(app.config, app.host, run="live")
        with pytest.raises(Boom), app.store.session() as slow:
            first = pipeline.process(slow, ticket("T-1", T0, status="open"), T0)
            assert [d.detail.get("to") for d in first.decisions] == ["a@x.example"]
            with other.session() as tx:
                waiting = pipeline.process(tx, ticket("T-2", T0 + timedelta(minutes=1), status="open"), T0)
                assert waiting.decisions == []  # the agent is full: T-2 waits
            raise Boom("T-1 does not commit")
        assert stored(app, "T-2").attrs.get("assignee") is None
        out = ingest(app, ticket("T-3", T0 + timedelta(minutes=2), status="open"))
        assert live.rebuilds == 1
        assert [(d.record_id, d.detail.get("to")) for d in out.decisions] == [
            (stored(app, "T-2").id, "a@x.example")
        ]
        assert stored(app, "T-2").attrs.get("assignee") == "a@x.example"
        assert writes(app) == [("T-2", {"assignee": "a@x.example"})]
        assert loads(live) == {"a@x.example": 1}  # T-3 waits for the seat T-2 holds
        ingest(app, ticket("T-3", T0 + timedelta(minutes=3), subject="again"))
        app.close()
        again = make_app(url, agents=[{"email": "a@x.example", "capacity": 1}])  # a restart owes nothing more
        start_rules(again)
        ingest(again, ticket("T-3", T0 + timedelta(minutes=4), subject="and again"))
        assert writes(again) == [("T-2", {"assignee": "a@x.example"})]
        again.close()
        other.close()


def test_a_restart_reassigns_no_ticket_whose_routing_the_rebuild_decides_otherwise(store_url: str) -> None:
    # a rebuild replays only the open tickets, so round robin's order can come out otherwise than it did live
    # (T-1, closed, is not replayed): the rebuilt Desk's other choice for T-2 is no reason to reassign it
    agents = [{"email": "a@x.example"}, {"email": "b@x.example"}]
    app = make_app(store_url, agents=agents, routing={"strategy": "round_robin"})
    start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))
    ingest(app, ticket("T-2", T0 + timedelta(minutes=1), status="open", subject="y"))
    ingest(app, ticket("T-1", T0 + timedelta(minutes=2), status="closed"))
    before = writes(app)
    assert before == [("T-1", {"assignee": "a@x.example"}), ("T-2", {"assignee": "b@x.example"})]
    app.close()
    again = make_app(store_url, agents=agents, routing={"strategy": "round_robin"})
    live = start_rules(again)
    assert loads(live) == {"a@x.example": 0, "b@x.example": 1}  # the seat counted where the store has it
    ingest(again, ticket("T-2", T0 + timedelta(minutes=3), subject="again"))
    assert writes(again) == before
    assert stored(again, "T-2").attrs["assignee"] == "b@x.example"
    again.close()


def test_a_rebuilt_desk_classifies_its_tickets_as_the_live_one_did(store_url: str) -> None:
    # the rebuild makes each ticket before feeding its first change: that change still creates it for the
    # classifier, so a rule on a classifier tag does not fire again, and a policy chosen by it stands
    from bridge.explain import explain_record

    conf: dict[str, Any] = {
        "classify": {"keywords": {"billing/refund": ["refund"]}},
        "rules": [{"name": "refunds", "set": "triggers", "when": {"tag": "billing/refund"},
                   "then": [{"notify": {"to": "#billing", "message": "a refund"}}]}],
        "sla": [{"name": "refunds", "when": {"tag": "billing/*"}, "first_response": "1h"},
                {"name": "standard", "first_response": "8h"}],
    }
    app = make_app(store_url, **conf)
    start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="refund please", body="charged"))
    notes = [f["notify"] for _t, f in writes(app) if "notify" in f]
    assert notes == [{"to": "#billing", "message": "a refund"}]
    app.close()
    again = make_app(store_url, **conf)
    live = start_rules(again)
    [rebuilt] = live.records.values()
    assert rebuilt.tags == ["billing/refund"] and live.desk.final(rebuilt)["sla"]["first_response_due"] == (
        "2026-11-02T10:00:00Z")
    shown = explain_record(again, "desk:T-1")
    assert shown is not None and shown["sla"]["first_response_due"] == "2026-11-02T10:00:00Z"
    ingest(again, ticket("T-1", T0 + timedelta(minutes=5), status="pending"))
    assert len([f for _t, f in writes(again) if "notify" in f]) == 1
    again.close()


def test_a_restart_gives_no_ticket_to_an_agent_who_is_away(store_url: str) -> None:
    # T-2 waited; the agent went away before T-1 (which held the seat) closed. The rebuild, without the closed
    # T-1, finds the seat free: T-2 still waits, as the store has it
    from bridge.scheduler import record_agent_status

    agents = [{"email": "a@x.example", "capacity": 1}]
    app = make_app(store_url, agents=agents)
    start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))
    ingest(app, ticket("T-2", T0 + timedelta(minutes=1), status="open", subject="y"))
    record_agent_status(app, "a@x.example", "away", T0 + timedelta(minutes=2), now=T0 + timedelta(minutes=2))
    ingest(app, ticket("T-1", T0 + timedelta(minutes=3), status="closed"))
    before = writes(app)
    app.close()
    again = make_app(store_url, agents=agents)
    live = start_rules(again)
    assert list(live.desk.router.waiting) == [stored(again, "T-2").id]
    ingest(again, ticket("T-3", T0 + timedelta(minutes=5), status="open", subject="z"))
    assert writes(again) == before and stored(again, "T-2").attrs.get("assignee") is None
    back = T0 + timedelta(minutes=6)
    record_agent_status(again, "a@x.example", "active", back, now=back)
    assert writes(again)[len(before):] == [("T-2", {"assignee": "a@x.example"})]  # the oldest first
    again.close()


@pytest.mark.parametrize("history", ["closed and reopened", "stale"])
def test_turning_the_rules_on_acts_on_no_ticket_of_the_history(store_url: str, history: str) -> None:
    plain = make_app(store_url)  # the bridge only syncs: no rules yet
    if history == "stale":
        ingest(plain, ticket("T-1", T0 + timedelta(minutes=5), status="open", subject="x"))
        ingest(plain, ticket("T-1", T0 + timedelta(minutes=4), subject="a late webhook"))  # not applied
    else:
        ingest(plain, ticket("T-1", T0, status="open", subject="x"))
        ingest(plain, ticket("T-1", T0 + timedelta(minutes=1), status="closed"))
        ingest(plain, ticket("T-1", T0 + timedelta(minutes=2), status="open"))  # reopened in the helpdesk
    ingest(plain, ticket("T-2", T0 + timedelta(minutes=6), status="open", subject="old, unassigned"))
    plain.close()
    app = make_app(store_url, agents=[{"email": "a@x.example", "capacity": 1}])  # routing is turned on
    live = start_rules(app)
    run_timers(app, live, T0 + timedelta(days=1))
    assert writes(app) == [] and loads(live) == {"a@x.example": 0}  # no phantom seat either
    ingest(app, ticket("T-3", T0 + timedelta(days=1, minutes=1), status="open", subject="new"))
    assert writes(app) == [("T-3", {"assignee": "a@x.example"})]
    app.close()


def test_a_restart_fires_no_rule_on_the_assignee_again(store_url: str) -> None:
    conf: dict[str, Any] = {
        "agents": [{"email": "a@x.example"}, {"email": "b@x.example"}],
        "routing": {"strategy": "round_robin"},
        "rules": [{"name": "b-notice", "set": "triggers",
                   "when": {"field": "ticket.assignee", "eq": "b@x.example"},
                   "then": [{"notify": {"to": "#leads", "message": "b has one"}}]}],
    }
    app = make_app(store_url, **conf)
    start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))  # -> a
    ingest(app, ticket("T-2", T0 + timedelta(minutes=1), status="open", subject="y"))  # -> b
    ingest(app, ticket("T-2", T0 + timedelta(minutes=2), subject="y2"))  # the rule sees b: one note
    ingest(app, ticket("T-1", T0 + timedelta(minutes=3), status="closed"))
    app.close()
    again = make_app(store_url, **conf)
    start_rules(again)  # the rebuild routes T-2 to a (T-1 is not replayed); it is taken as the store has it
    ingest(again, ticket("T-2", T0 + timedelta(minutes=4), subject="y3"))
    assert len([f for _t, f in writes(again) if "notify" in f]) == 1
    again.close()


def test_a_reopened_ticket_of_an_away_owner_still_waits_after_a_restart(store_url: str) -> None:
    from bridge.scheduler import record_agent_status

    def status(app: App, who: str, what: str, minutes: int) -> None:
        at = T0 + timedelta(minutes=minutes)
        record_agent_status(app, who, what, at, now=at)

    agents = [{"email": "x@x.example", "capacity": 1}, {"email": "y@x.example", "capacity": 1}]
    app = make_app(store_url, agents=agents)
    start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="a"))  # -> x
    ingest(app, ticket("T-2", T0 + timedelta(minutes=1), status="open", subject="b"))  # -> y
    ingest(app, ticket("T-1", T0 + timedelta(minutes=2), status="resolved"))
    status(app, "x@x.example", "away", 3)
    ingest(app, ticket("T-1", T0 + timedelta(minutes=4), status="open"))  # reopened: x away, y full: waits
    status(app, "y@x.example", "away", 5)
    ingest(app, ticket("T-2", T0 + timedelta(minutes=6), status="closed"))
    app.close()
    again = make_app(store_url, agents=agents)
    live = start_rules(again)
    assert list(live.desk.router.waiting) == [stored(again, "T-1").id]
    assert loads(live) == {"x@x.example": 0, "y@x.example": 0}
    status(again, "y@x.example", "active", 10)
    assert writes(again)[-1] == ("T-1", {"assignee": "y@x.example"})
    again.close()


def test_a_change_the_rules_fail_on_is_taken_in_and_caught_up_by_the_rules_job(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(sqlite_url, agents=[{"email": "a@x.example", "capacity": 5}])
    live = start_rules(app)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug in the rules")

    monkeypatch.setattr(live.desk, "on_ticket", broken)  # (a rebuilt Desk is a new one, without the bug)
    out = ingest(app, ticket("T-1", T0, status="open", subject="x"))
    assert out.desk_at is None and out.problems == [
        "desk ticket T-1: rules failed: KeyError: 'a bug in the rules'; taken in without them"
    ]
    assert stored(app, "T-1").attrs.get("assignee") is None and live.stale
    run_timers(app, live, T0 + timedelta(minutes=1))  # the rules job catches the change up
    assert stored(app, "T-1").attrs["assignee"] == "a@x.example"
    assert writes(app) == [("T-1", {"assignee": "a@x.example"})]
    run_timers(app, live, T0 + timedelta(minutes=2))
    assert writes(app) == [("T-1", {"assignee": "a@x.example"})]
    app.close()


# ------------------------------------------------------------------ a restart rebuilds the Desk exactly


def test_a_late_change_keeps_its_follow_up_across_a_restart(store_url: str) -> None:
    config = {"agents": [{"email": "a@x.example", "capacity": 5}], "follow_up": {"after": "48h"}}
    app = make_app(store_url, **config)
    live = start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))
    run_timers(app, live, T0 + timedelta(hours=1, minutes=5))  # the rules job at 10:05
    # the helpdesk set it pending at 10:00; the sync brings that at 10:06: the Desk takes it at 10:05
    late = ingest(app, ticket("T-1", T0 + timedelta(hours=1), status="pending"))
    with app.store.session() as tx:
        logged = list(tx.logged_changes("ticket", {late.record.id}))
    assert [c.desk_at for c in logged] == [T0, T0 + timedelta(hours=1, minutes=5)]
    run_timers(app, live, T0 + timedelta(hours=49, minutes=3))  # the last tick before a crash: not yet due
    assert not [f for _e, f in writes(app) if "follow_up" in f]
    app.close()

    app = make_app(store_url, **config)
    live = start_rules(app)
    for minute in (4, 5, 6, 30):
        run_timers(app, live, T0 + timedelta(hours=49, minutes=minute))
    assert len([f for _e, f in writes(app) if "follow_up" in f]) == 1
    app.close()


def test_the_volume_trigger_keeps_its_history_across_a_restart(sqlite_url: str) -> None:
    # an account writes four tickets a week, each closed the same day; a restart must not forget them
    start = datetime(2026, 9, 7, 9, 0, tzinfo=UTC)
    config = {"agents": [{"email": "a@x.example", "capacity": 500}]}
    account = {"id": "A1", "owner": "o@x.example"}
    app = make_app(sqlite_url, **config)
    start_rules(app)
    ingest(app, ticket("OLD", start - timedelta(weeks=1), status="open", account=account))
    n = 0
    for week in range(5):
        for k in range(4):
            n += 1
            at = start + timedelta(weeks=week, hours=k)
            ingest(app, ticket(f"T{n}", at, status="open", account=account))
            ingest(app, ticket(f"T{n}", at + timedelta(minutes=30), status="closed"))
    app.close()

    app = make_app(sqlite_url, **config)
    start_rules(app)
    spikes = []
    for k in range(12):  # the usual four tickets, then three times as many
        n += 1
        at = start + timedelta(weeks=5, days=1, hours=k)
        out = ingest(app, ticket(f"T{n}", at, status="open", account=account))
        spikes += [(k + 1, d.detail["count"], d.detail["usual"]) for d in out.decisions if d.rule == "volume"]
    assert spikes == [(12, 12, 4.0)]
    app.close()


# ------------------------------------------------------------------ what the live Desk reads of a change


def test_an_acknowledged_change_meets_the_acknowledgement_clock(sqlite_url: str) -> None:
    app = make_app(sqlite_url, sla=[{"name": "p", "acknowledgement": "1h", "first_response": "8h"}])
    live = start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="s"))
    ingest(app, ticket("T-2", T0, status="open", subject="s"))
    ingest(app, ticket("T-1", T0 + timedelta(minutes=10), acknowledged=True))
    run_timers(app, live, T0 + timedelta(hours=2))
    breached = []
    for external in ("T-1", "T-2"):
        rid = stored(app, external).id
        with app.store.session() as tx:
            rows = tx.audit_for(rid)
        breached += [(external, r["after"].get("metric")) for r in rows if r["response"] == "sla_breach"]
    assert breached == [("T-2", "acknowledgement")]  # T-1 was acknowledged in time
    app.close()


def test_a_change_that_closes_a_ticket_comes_after_the_timers_due_before_it(store_url: str) -> None:
    app = make_app(
        store_url,
        teams={"leads": {"members": []}},
        sla=[{"name": "p", "first_response": "1h", "escalate": [{"after": "0m", "to": "leads"}]}],
    )
    live = start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="s"))
    run_timers(app, live, T0 + timedelta(minutes=59))
    # closed at 10:00:30, before the rules job ran again: the breach at 10:00 still escalates
    out = ingest(app, ticket("T-1", T0 + timedelta(hours=1, seconds=30), status="closed"))
    assert [(d.decision, d.at) for d in out.decisions] == [
        ("sla_breach", T0 + timedelta(hours=1)),
        ("escalate", T0 + timedelta(hours=1)),
    ]
    assert writes(app) == [("T-1", {"escalation": "leads"})]
    assert stored(app, "T-1").attrs["escalations"] == ["leads"]
    run_timers(app, live, T0 + timedelta(hours=2))
    assert writes(app) == [("T-1", {"escalation": "leads"})]
    app.close()


# ------------------------------------------------------------------ the store's rollback callbacks


def test_rollback_callbacks_hear_what_is_undone(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    heard: list[str] = []
    with store.session() as tx:
        tx.on_end(lambda committed: heard.append(f"end {committed}"))
        with pytest.raises(Boom), tx.savepoint():
            tx.on_rollback(lambda: heard.append("inner undone"))
            raise Boom
        with tx.savepoint():
            tx.on_rollback(lambda: heard.append("kept, then committed"))
    assert heard == ["inner undone", "end True"]
    heard.clear()
    with pytest.raises(Boom), store.session() as tx:
        tx.on_end(lambda committed: heard.append(f"end {committed}"))
        with tx.savepoint():
            tx.on_rollback(lambda: heard.append("undone with the transaction"))
        raise Boom
    assert heard == ["undone with the transaction", "end False"]
    store.close()


# ------------------------------------------------------------------ replicas: one leader runs the rules


def test_one_replica_leads_and_catches_up_what_the_others_take_in() -> None:
    from bridge.scheduler import RulesLeader, run_rules

    require_postgres()
    config: dict[str, Any] = {
        "teams": {"leads": {"members": []}},
        "sla": [{"name": "p", "first_response": "1h", "escalate": [{"after": "0m", "to": "leads"}]}],
    }
    with temp_postgres_schema_url() as url:
        a, b = make_app(url, **config), make_app(url, **config)
        lead_a, lead_b = RulesLeader(a), RulesLeader(b)
        assert lead_a.claim(T0) is not None and lead_b.claim(T0) is None
        ingest(a, ticket("T-1", T0, status="open", subject="s"))  # replica A's sync
        # replica B's webhooks: an agent answers T-1 in time; T-2 is created and never answered
        ingest(b, Change("desk", "ticket", "T-1", T0 + timedelta(minutes=10),
                         attrs={"message": "on it", "last_author": "agent"}))
        ingest(b, ticket("T-2", T0 + timedelta(minutes=20), status="open", subject="s"))
        assert run_rules(b, lead_b, T0 + timedelta(hours=2)).writes_queued == 0  # B runs no rules
        # A caught B's changes up: T-2's breach, told to the helpdesk, and its escalation
        assert run_rules(a, lead_a, T0 + timedelta(hours=2)).writes_queued == 2
        assert writes(a) == [("T-2", {"escalation": "leads"})]
        breach = {"state": "breach", "policy": "p", "metric": "first_response"}
        assert sla_writes(a) == [("T-2", {"sla": breach})]
        with a.store.session() as tx:
            assert tx.untaken_changes("ticket", 0) == []
        run_rules(a, lead_a, T0 + timedelta(hours=3))
        assert writes(a) == [("T-2", {"escalation": "leads"})]
        assert sla_writes(a) == [("T-2", {"sla": breach})]  # (told once)

        # A stops; B, taking changes in meanwhile, takes the lead on its next rules job
        lead_a.release()
        a.close()
        ingest(b, ticket("T-3", T0 + timedelta(hours=3), status="open", subject="s"))
        live_b = lead_b.claim(T0 + timedelta(hours=3, minutes=1))
        assert live_b is not None
        run_rules(b, lead_b, T0 + timedelta(hours=5))
        assert writes(b) == [("T-2", {"escalation": "leads"}), ("T-3", {"escalation": "leads"})]
        lead_b.release()
        b.close()


# ------------------------------------------------------------------ the CRM context after a restart


def test_a_rebuilt_desk_reads_the_crm_account_as_the_live_one_did(store_url: str) -> None:
    # the SLA policy is chosen by the account's tier, which only the CRM's record knows (by the domain)
    config: dict[str, Any] = {
        "connectors": {**DESK, "crm": {"plugin": "files", "path": "c", "kinds": ["account"]}},
        "sla": [
            {"name": "enterprise", "when": {"field": "account.tier", "eq": "enterprise"},
             "first_response": "1h", "escalate": [{"after": "1h", "to": "leads"}]},
            {"name": "standard", "first_response": "8h"},
        ],
        "teams": {"leads": {"members": []}},
    }
    app = make_app(store_url, **config)
    start_rules(app)
    ingest(app, Change("crm", "account", "A-1", T0, attrs={"name": "Acme", "domain": "acme.example",
                                                            "tier": "enterprise"}))
    ingest(app, ticket("T-1", T0, status="open", subject="help", requester={"email": "ana@acme.example"}))
    app.close()

    again = make_app(store_url, **config)  # a restart before the deadline: the Desk is rebuilt
    live = start_rules(again)
    run_timers(again, live, T0 + timedelta(hours=3))
    assert ("T-1", {"escalation": "leads"}) in writes(again)  # the enterprise clock, 1 h, breached
    again.close()


def test_a_change_to_a_ticket_closed_before_is_taken_without_rules(store_url: str) -> None:
    app = make_app(store_url, agents=[{"email": "a@x.example"}], rules=[ESCALATE_SEV1],
                   teams={"leads": {"members": []}})
    live = start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))
    ingest(app, ticket("T-1", T0 + timedelta(minutes=5), status="closed"))
    before = writes(app)
    # the helpdesk tags and reopens it later: its fields sync, but the rules do not take it up afresh
    # (no second routing, no escalation, no second count for the volume trigger)
    out = ingest(app, ticket("T-1", T0 + timedelta(hours=1), status="open", tags=["bug/sev1"]))
    assert out.decisions == [] and writes(app) == before
    assert stored(app, "T-1").id not in live.records
    # a new ticket is routed as ever
    ingest(app, ticket("T-2", T0 + timedelta(hours=2), status="open", tags=["bug/sev1"]))
    assert ("T-2", {"escalation": "leads"}) in writes(app)
    app.close()


def test_a_change_another_replica_takes_in_for_a_ticket_closed_before_the_leaders_restart_takes_no_rules(
) -> None:
    # the restarted leader no longer remembers that T-1 closed: the replica that took the change in knew it
    from bridge.scheduler import RulesLeader, run_rules

    require_postgres()
    cfg: dict[str, Any] = {"agents": [{"email": "a@x.example"}], "rules": [ESCALATE_SEV1],
                           "teams": {"leads": {"members": []}}}
    with temp_postgres_schema_url() as url:
        a = make_app(url, **cfg)
        lead = RulesLeader(a)
        assert lead.claim(T0) is not None
        ingest(a, ticket("T-1", T0, status="open", subject="x"))
        ingest(a, ticket("T-1", T0 + timedelta(minutes=5), status="closed"))
        assert writes(a) == [("T-1", {"assignee": "a@x.example"})]
        lead.release()
        a.close()
        again = make_app(url, **cfg)
        lead = RulesLeader(again)
        assert lead.claim(T0 + timedelta(minutes=10)) is not None
        b = make_app(url, **cfg)  # another replica, no rules: the helpdesk reopens and tags T-1
        ingest(b, ticket("T-1", T0 + timedelta(hours=1), status="open", tags=["bug/sev1"]))
        run_rules(again, lead, T0 + timedelta(hours=2))
        assert writes(again) == [("T-1", {"assignee": "a@x.example"})]  # no second routing, no escalation
        # a new ticket another replica takes in is caught up as ever
        ingest(b, ticket("T-2", T0 + timedelta(hours=3), status="open", tags=["bug/sev1"]))
        run_rules(again, lead, T0 + timedelta(hours=4))
        assert writes(again)[1:] == [("T-2", {"escalation": "leads"}), ("T-2", {"assignee": "a@x.example"})]
        lead.release()
        again.close()
        b.close()


@pytest.mark.parametrize("replica_takes_them", [False, True])
def test_a_close_and_a_reopen_another_replica_takes_in_are_a_close_for_the_leader(
    replica_takes_them: bool,
) -> None:
    # the catch-up feeds the close with the ticket as stored now (reopened): the Desk must still see it close
    from bridge.scheduler import RulesLeader, run_rules

    require_postgres()
    sla = [{"name": "p", "first_response": "1h", "escalate": [{"after": "0m", "to": "leads"}]}]
    cfg: dict[str, Any] = {"teams": {"leads": {"members": []}}, "sla": sla}
    with temp_postgres_schema_url() as url:
        a, b = make_app(url, **cfg), make_app(url, **cfg)
        lead = RulesLeader(a)
        assert lead.claim(T0) is not None
        ingest(a, ticket("T-1", T0, status="open", subject="s"))
        other = b if replica_takes_them else a
        ingest(other, ticket("T-1", T0 + timedelta(minutes=10), status="closed"))
        ingest(other, ticket("T-1", T0 + timedelta(minutes=20), status="open"))  # reopened in the helpdesk
        run_rules(a, lead, T0 + timedelta(hours=2))
        assert writes(a) == []  # closed before its first response was due: final, no escalation
        lead.release()
        a.close()
        b.close()


@pytest.mark.parametrize("replica_takes_it", [False, True])
def test_a_deleted_tickets_seat_goes_to_the_oldest_waiting_ticket(replica_takes_it: bool) -> None:
    from bridge.scheduler import RulesLeader, run_rules

    require_postgres()
    cfg: dict[str, Any] = {"agents": [{"email": "a@x.example", "capacity": 1}], "deletes": {"ticket": "flag"}}
    with temp_postgres_schema_url() as url:
        a, b = make_app(url, **cfg), make_app(url, **cfg)
        lead = RulesLeader(a)
        live = lead.claim(T0)
        assert live is not None
        ingest(a, ticket("T-1", T0, status="open", subject="s"))  # the agent's one seat
        ingest(a, ticket("T-2", T0 + timedelta(minutes=1), status="open", subject="s"))  # waits
        ingest(b if replica_takes_it else a, Change("desk", "ticket", "T-1", T0 + timedelta(minutes=10),
                                                    deleted=True))
        run_rules(a, lead, T0 + timedelta(minutes=20))
        ingest(a, ticket("T-3", T0 + timedelta(minutes=30), status="open", subject="s"))  # waits in turn
        assert writes(a) == [("T-1", {"assignee": "a@x.example"}), ("T-2", {"assignee": "a@x.example"})]
        assert loads(live) == {"a@x.example": 1}
        lead.release()
        a.close()
        b.close()


def test_a_bad_record_the_rules_never_saw_costs_no_rebuild(store_url: str) -> None:
    app = make_app(store_url, agents=[{"email": "a@x.example"}])
    live = start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))
    pipeline = Pipeline(app.config, app.host, run="live")
    with app.store.session() as tx:
        for n in range(3):  # a page: each change in a savepoint; a tag that is no text fails in a stage
            at = T0 + timedelta(minutes=n)
            bad = Change("desk", "ticket", f"B-{n}", at, tags=[1], attrs={"status": "open"})
            with pytest.raises(AttributeError), tx.savepoint():
                pipeline.process(tx, bad, bad.at)
        pipeline.process(tx, ticket("T-2", T0 + timedelta(minutes=5), status="open"), T0)
    assert live.rebuilds == 0 and not live.stale
    assert ("T-2", {"assignee": "a@x.example"}) in writes(app)
    app.close()


def test_a_change_dated_in_the_future_does_not_fire_every_timer(store_url: str) -> None:
    app = make_app(store_url, agents=[{"email": "a@x.example"}], follow_up={"after": "48h"})
    start_rules(app)
    now = datetime.now(UTC)
    ingest(app, ticket("T-1", now - timedelta(hours=48, minutes=-2), status="pending"))  # reminder in 2 min
    out = ingest(app, ticket("T-2", datetime(2100, 1, 1, tzinfo=UTC), status="open"))  # a wrong clock
    assert out.desk_at is not None and out.desk_at <= datetime.now(UTC)  # taken at the wall clock
    ingest(app, ticket("T-3", datetime.now(UTC) + timedelta(minutes=4), status="open"))  # minutes ahead
    assert not [f for _t, f in writes(app) if "follow_up" in f]  # T-1's 48 h have not passed: no reminder
    app.close()


def test_a_closed_ticket_stays_final_for_the_rules_across_restarts(store_url: str) -> None:
    config: dict[str, Any] = {"agents": [{"email": "a@x.example"}], "rules": [ESCALATE_SEV1],
                              "teams": {"leads": {"members": []}}}
    app = make_app(store_url, **config)
    start_rules(app)
    ingest(app, ticket("T-1", T0, status="open", subject="x"))
    ingest(app, ticket("T-1", T0 + timedelta(minutes=5), status="closed"))
    app.close()

    app = make_app(store_url, **config)  # a restart: the closed ticket is not in the rebuilt Desk
    start_rules(app)
    before = writes(app)
    assert ingest(app, ticket("T-1", T0 + timedelta(hours=1), status="open")).decisions == []  # a reopen
    app.close()

    app = make_app(store_url, **config)  # another restart: T-1 is open in the store now, its history replayed
    live = start_rules(app)
    assert stored(app, "T-1").id not in live.records
    assert ingest(app, ticket("T-1", T0 + timedelta(hours=2), tags=["bug/sev1"])).decisions == []
    assert writes(app) == before  # no routing, no escalation of the closed ticket
    app.close()


@pytest.mark.parametrize("policy", ["flag", "archive"])
def test_a_deleted_ticket_leaves_the_desk(store_url: str, policy: str) -> None:
    app = make_app(store_url, agents=[{"email": "a@x.example", "capacity": 1}], deletes={"ticket": policy},
                   follow_up={"after": "1h"})
    live = start_rules(app)
    ingest(app, ticket("T-1", T0, status="pending", subject="x"))
    ingest(app, Change("desk", "ticket", "T-1", T0 + timedelta(minutes=10), deleted=True))
    assert live.desk.router.agents["a@x.example"].load == 0  # its seat is free
    run_timers(app, live, T0 + timedelta(hours=3))
    assert not [f for _t, f in writes(app) if "follow_up" in f]  # no reminder for a deleted ticket
    app.close()
    again = make_app(store_url, agents=[{"email": "a@x.example", "capacity": 1}], deletes={"ticket": policy},
                     follow_up={"after": "1h"})
    assert start_rules(again).desk.router.agents["a@x.example"].load == 0  # nor after a rebuild
    again.close()


def test_a_rebuild_takes_changes_in_the_order_the_live_desk_took_them() -> None:
    # a change another replica processed has a lower id than one the leader took meanwhile, but the leader's
    # catch-up took it later: a rebuild in id order would move the leader's follow-up (a new key: sent twice)
    from bridge.scheduler import RulesLeader, run_rules

    require_postgres()
    cfg: dict[str, Any] = {"agents": [{"email": "a@x.example", "capacity": 5}], "follow_up": {"after": "48h"}}
    with temp_postgres_schema_url() as url:
        a, b = make_app(url, **cfg), make_app(url, **cfg)
        leader = RulesLeader(a)
        assert leader.claim(T0)
        with b.store.session() as txb:  # the other replica's page stays open while the leader works
            Pipeline(b.config, b.host, run="b").process(txb, ticket("T-1", T0, status="open"), T0)
            ingest(a, ticket("T-2", T0 + timedelta(seconds=20), status="open"))
            ingest(a, ticket("T-2", T0 + timedelta(seconds=30), status="pending"))
            run_rules(a, leader, T0 + timedelta(minutes=1))
        run_rules(a, leader, T0 + timedelta(minutes=2))  # the catch-up takes T-1
        fired = T0 + timedelta(hours=48, seconds=45)
        run_rules(a, leader, fired)
        sent = a.store.claim("desk", None, 100, fired, timedelta(minutes=5))
        a.store.complete([(i.id, None, {}) for i in sent], fired)
        leader.release()
        a.close()
        again = make_app(url, **cfg)  # a restart just after the follow-up went out
        second = RulesLeader(again)
        second.claim(fired + timedelta(seconds=5))
        run_rules(again, second, T0 + timedelta(hours=48, minutes=5))
        assert len([f for _t, f in writes(again) if "follow_up" in f]) == 1
        second.release()
        again.close()
        b.close()


def _late_message(
    like: str, tmp_path: Path, to_leader: bool, author: str, newer: str = "pending", restart: bool = False
) -> Writes:
    """T-1 opens at 09:00 and goes ``newer`` (a status, or a priority) at 09:40; a message of 09:30 by
    ``author`` reaches the leader, or a replica without rules, after both (a retried webhook). Returns the
    writes queued by 51 h later (in a store of its own, on the database ``like`` is on); ``restart``: the
    leader restarts 3 h in, after its catch-up."""
    if like.startswith("sqlite"):
        name = f"{to_leader}-{author}-{newer}-{restart}.db"
        return _late_message_in(f"sqlite:///{tmp_path / name}", to_leader, author, newer, restart)
    with temp_postgres_schema_url() as url:
        return _late_message_in(url, to_leader, author, newer, restart)


def _late_message_in(store_url: str, to_leader: bool, author: str, newer: str, restart: bool) -> Writes:
    cfg: dict[str, Any] = {"agents": [{"email": "a@x.example", "capacity": 5}], "follow_up": {"after": "48h"},
                           "teams": {"leads": {"members": []}},
                           "sla": [{"name": "p", "first_response": "1h",
                                    "escalate": [{"after": "0m", "to": "leads"}]}]}
    app = make_app(store_url, **cfg)
    try:
        live = start_rules(app, now=T0)
        ingest(app, ticket("T-1", T0, status="open", subject="x"))
        change = {"status": newer} if newer == "pending" else {"priority": newer}
        ingest(app, ticket("T-1", T0 + timedelta(minutes=40), **change))
        old = ticket("T-1", T0 + timedelta(minutes=30), message="old", last_author=author, status="open")
        receiver = app if to_leader else make_app(store_url, **cfg)
        out = ingest(receiver, old)
        if receiver is not app:
            receiver.close()
        status = "pending" if newer == "pending" else "open"
        assert out.stale and stored(app, "T-1").attrs["status"] == status  # its state is not applied
        run_timers(app, live, T0 + timedelta(hours=3))
        if restart:
            app.close()
            app = make_app(store_url, **cfg)
            live = start_rules(app, now=T0 + timedelta(hours=3, minutes=1))
        for hours in (50, 51):
            run_timers(app, live, T0 + timedelta(hours=hours))
        return writes(app)
    finally:
        app.close()


def test_a_late_agent_reply_another_replica_kept_meets_the_first_response_clock(
    store_url: str, tmp_path: Path
) -> None:
    # the replica without rules keeps it untaken: the leader's catch-up takes its message, not its state
    kept = _late_message(store_url, tmp_path, to_leader=False, author="agent", newer="high")
    assert kept == [("T-1", {"assignee": "a@x.example"})]  # replied before 10:00: no breach, no escalation


def test_a_late_change_another_replica_kept_is_taken_as_by_the_leader_itself(
    store_url: str, tmp_path: Path
) -> None:
    for author in ("agent", "customer"):
        for newer in ("pending", "high"):
            other = _late_message(store_url, tmp_path, False, author, newer)
            assert other == _late_message(store_url, tmp_path, True, author, newer), (author, newer)
            assert other == _late_message(store_url, tmp_path, False, author, newer, restart=True)


def test_a_leader_whose_lock_connection_dropped_gives_up_the_rules() -> None:
    import sqlalchemy as sa

    from bridge.pipeline import DESK_PLUGIN
    from bridge.scheduler import RulesLeader
    from bridge.store.tx import lock_key

    require_postgres()
    with temp_postgres_schema_url() as url:
        crew: dict[str, Any] = {"agents": [{"email": "a@x.example"}]}
        a, b = make_app(url, **crew), make_app(url, **crew)
        try:  # (closed whatever happens: a connection left open fails a later test when it is collected)
            first, second = RulesLeader(a), RulesLeader(b)
            assert first.claim(T0) is not None and second.claim(T0) is None
            with b.store.engine.connect() as admin:  # the leader's lock connection is cut
                holders = sa.text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                  "AND objid = (:k & 4294967295)::oid")
                key = lock_key(f"{admin.scalar(sa.text('SELECT current_schema()'))}\0lock\0rules-leader")
                for pid in admin.execute(holders, {"k": key}).scalars().all():
                    # (waiting until the backend is gone: its lock is released only then, later on a busy
                    # machine than the claim below would look)
                    admin.execute(sa.text("SELECT pg_terminate_backend(:p, 10000)"), {"p": pid})
                admin.commit()
            assert second.claim(T0) is not None  # another replica takes the lead ...
            assert first.claim(T0) is None  # ... and the first sees it lost it, and stops its rules
            assert a.host.pm.get_plugin(DESK_PLUGIN) is None
            out = ingest(a, ticket("T-1", T0, status="open"))
            assert out.desk_at is None  # taken without rules: the new leader catches it up
            second.release()
        finally:
            a.close()
            b.close()


def test_two_catch_ups_at_once_feed_a_change_once() -> None:
    # the rules job's catch-up is still open when a sync pass starts its own (the scheduler runs jobs on
    # threads): the second waits for the first to end, then finds the change taken
    import threading

    from bridge.scheduler import catch_up, catch_up_first

    require_postgres()
    config: dict[str, Any] = {"agents": [{"email": "a@x.example"}, {"email": "b@x.example"}],
                              "routing": {"strategy": "round_robin"}}
    with temp_postgres_schema_url() as url:
        leader, other = make_app(url, **config), make_app(url, **config)
        try:
            live = start_rules(leader, now=T0)
            ingest(other, ticket("T-1", T0, status="open", subject="x"))  # a replica without rules
            now = T0 + timedelta(minutes=1)
            with leader.store.session() as tx:
                catch_up(leader, live, tx, now)
                second = threading.Thread(target=catch_up_first, args=(leader, live, now))
                second.start()
                second.join(timeout=1)
                assert second.is_alive()  # waiting for the first to end
            second.join(timeout=30)
            assert writes(leader) == [("T-1", {"assignee": "a@x.example"})]
        finally:
            leader.close()
            other.close()
