"""Agents' status changes in the daemon (``POST /agents/status``): kept in the change log, taken by the
rules leader's Desk in change-log order (at once on the leader, by the rules job's catch-up elsewhere), its
decisions queued once, and still known after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_support import stored, writes

from bridge.app import App
from bridge.model import Change, Record, format_time
from bridge.pipeline import Pipeline
from bridge.rules.live import AGENT_KIND, LiveRules
from bridge.scheduler import RulesLeader, record_agent_status, run_rules, run_timers, start_rules
from bridge.server import Server
from bridge.settings import Config, LoadedConfig
from bridge.store.testing import require_postgres, temp_postgres_schema_url

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DESK = {"desk": {"plugin": "files", "path": "in", "kinds": ["ticket"]}}
ALICE, BOB = "alice@x.example", "bob@x.example"
BOTH = {"agents": [{"email": ALICE, "capacity": 5}, {"email": BOB, "capacity": 5}]}
ALONE = {"agents": [{"email": ALICE, "capacity": 5}]}


def make_app(url: str, **config: Any) -> App:
    return App(LoadedConfig(Config(**{"connectors": DESK, **config}), Path("bridge.toml"), {}), database=url)


class Served:
    """A replica's HTTP server on a free port, over real HTTP."""

    def __init__(self, app: App) -> None:
        self.server = Server(app, "127.0.0.1", 0)
        self.server.start()
        host, port = self.server.address
        self.base = f"http://{host}:{port}"

    def status(self, agent: str, status: str, at: datetime) -> dict[str, Any]:
        body = {"agent": agent, "status": status, "at": format_time(at)}
        res = httpx.post(f"{self.base}/agents/status", json=body, timeout=10)
        assert res.status_code == 202, res.text
        answer: dict[str, Any] = res.json()
        return answer

    def stop(self) -> None:
        self.server.stop()


def ingest(app: App, change: Change) -> Record:
    """One change through the pipeline in its own transaction, as a pull or a webhook does."""
    with app.store.session() as tx:
        return Pipeline(app.config, app.host, run="live").process(tx, change, change.at).record


def ticket(external: str, at: datetime, **attrs: Any) -> Change:
    return Change("desk", "ticket", external, at, attrs={"status": "open", "subject": external, **attrs})


def statuses(live: LiveRules) -> dict[str, str]:
    return {a.email: a.status for a in live.desk.router.agents.values()}


def test_an_agent_away_gets_no_new_ticket(store_url: str) -> None:
    app = make_app(store_url, **BOTH)
    start_rules(app)
    served = Served(app)
    try:
        # the agent's email in any letter case names the configured agent
        answer = served.status("Alice@X.example", "away", T0)
        assert answer == {"agent": ALICE, "status": "away", "at": format_time(T0), "taken": True,
                          "writes_queued": 0}
        assert stored_assignee(app, ticket("T-1", T0 + timedelta(minutes=1))) == BOB
        served.status(ALICE, "active", T0 + timedelta(minutes=2))
        assert stored_assignee(app, ticket("T-2", T0 + timedelta(minutes=3))) == ALICE  # (round robin)
    finally:
        served.stop()
        app.close()


def stored_assignee(app: App, change: Change) -> Any:
    ingest(app, change)
    return stored(app, change.external_id).attrs.get("assignee")


def test_a_reopened_ticket_whose_assignee_is_away_is_routed_again(store_url: str) -> None:
    app = make_app(store_url, **BOTH)
    start_rules(app)
    served = Served(app)
    try:
        assert stored_assignee(app, ticket("T-1", T0)) == ALICE
        ingest(app, ticket("T-1", T0 + timedelta(hours=1), status="resolved"))
        served.status(ALICE, "offline", T0 + timedelta(hours=2))
        assert stored_assignee(app, ticket("T-1", T0 + timedelta(hours=3), status="open")) == BOB
        assert writes(app) == [("T-1", {"assignee": ALICE}), ("T-1", {"assignee": BOB})]
    finally:
        served.stop()
        app.close()


def test_a_waiting_ticket_goes_to_the_agent_back_from_away_once(store_url: str) -> None:
    app = make_app(store_url, **ALONE)
    live = start_rules(app)
    served = Served(app)
    try:
        served.status(ALICE, "away", T0)
        ingest(app, ticket("T-1", T0 + timedelta(minutes=1)))
        assert stored(app, "T-1").attrs.get("assignee") is None and writes(app) == []  # nobody: it waits

        answer = served.status(ALICE, "active", T0 + timedelta(minutes=30))
        assert (answer["taken"], answer["writes_queued"]) == (True, 1)
        assert stored(app, "T-1").attrs["assignee"] == ALICE
        assert writes(app) == [("T-1", {"assignee": ALICE})]
        rid = stored(app, "T-1").id
        with app.store.session() as tx:
            decided = [a["response"] for a in tx.audit_for(rid) if a["kind"] == "decision"]
            assert tx.untaken_changes("ticket", 0, own=AGENT_KIND) == []
        assert decided == ["assign"]
        run_timers(app, live, T0 + timedelta(hours=1))  # the rules job has nothing to catch up
    finally:
        served.stop()
        app.close()
    # a restart rebuilds the Desk through both status changes and queues nothing again
    app = make_app(store_url, **ALONE)
    live = start_rules(app)
    run_timers(app, live, T0 + timedelta(hours=2))
    assert writes(app) == [("T-1", {"assignee": ALICE})]
    assert statuses(live) == {ALICE: "active"}
    app.close()


def test_a_restart_keeps_the_agent_away(store_url: str) -> None:
    app = make_app(store_url, **BOTH)
    start_rules(app)
    record_agent_status(app, ALICE, "away", T0)  # (what the endpoint and `bridge agent-status` call)
    app.close()

    app = make_app(store_url, **BOTH)
    live = start_rules(app)
    assert statuses(live) == {ALICE: "away", BOB: "active"}
    assert stored_assignee(app, ticket("T-1", T0 + timedelta(minutes=1))) == BOB
    assert stored_assignee(app, ticket("T-2", T0 + timedelta(minutes=2))) == BOB
    app.close()


def test_a_rolled_back_status_change_is_undone_in_the_desk(store_url: str) -> None:
    app = make_app(store_url, **BOTH)
    live = start_rules(app)
    with pytest.raises(RuntimeError), app.store.session() as tx:
        live.on_agent(tx, ALICE, "away", T0)
        assert statuses(live)[ALICE] == "away"
        raise RuntimeError("the transaction does not commit")
    assert live.stale
    assert stored_assignee(app, ticket("T-1", T0 + timedelta(minutes=1))) == ALICE  # rebuilt: still active
    app.close()


def test_a_status_posted_to_another_replica_reaches_the_leader_by_its_catch_up() -> None:
    require_postgres()
    with temp_postgres_schema_url() as url:
        a, b = make_app(url, **ALONE), make_app(url, **ALONE)
        lead_a, lead_b = RulesLeader(a), RulesLeader(b)
        live_a = lead_a.claim(T0)
        assert live_a is not None and lead_b.claim(T0) is None
        served_b = Served(b)
        try:
            answer = served_b.status(ALICE, "away", T0)
            assert (answer["taken"], answer["writes_queued"]) == (False, 0)  # B runs no rules
            assert statuses(live_a) == {ALICE: "active"}
            assert run_rules(a, lead_a, T0 + timedelta(minutes=1)).writes_queued == 0
            assert statuses(live_a) == {ALICE: "away"}
            ingest(a, ticket("T-1", T0 + timedelta(minutes=2)))
            assert stored(a, "T-1").attrs.get("assignee") is None  # waits: the leader knows she is away

            served_b.status(ALICE, "active", T0 + timedelta(minutes=30))
            assert writes(a) == []
            assert run_rules(a, lead_a, T0 + timedelta(minutes=31)).writes_queued == 1
            assert stored(a, "T-1").attrs["assignee"] == ALICE
            run_rules(a, lead_a, T0 + timedelta(minutes=32))
            assert writes(a) == [("T-1", {"assignee": ALICE})]
            with a.store.session() as tx:
                assert tx.untaken_changes("ticket", 0, own=AGENT_KIND) == []
        finally:
            served_b.stop()
            lead_a.release()
            a.close()
            b.close()
