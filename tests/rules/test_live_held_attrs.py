"""A helpdesk's full-ticket update that still shows what it held before bridge's write of an attribute
landed (the assignee, a status, the tags) is no change of it: shadows of the rule-written attributes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from live_support import T0, ingest, loads, stored, ticket, writes

from bridge.app import App
from bridge.model import utcnow
from bridge.scheduler import start_rules
from bridge.settings import Config, LoadedConfig
from bridge.sync import Syncer

A, B = "a@x.example", "b@x.example"
NOTIFY = {"name": "tell", "set": "triggers", "when": {"field": "ticket.assignee", "changed": True},
          "then": [{"notify": {"to": "leads", "message": "new assignee"}}]}


def make_app(tmp_path: Path, url: str, **config: Any) -> App:
    (tmp_path / "in").mkdir(exist_ok=True)
    desk = {"plugin": "files", "path": str(tmp_path / "in"), "out_path": str(tmp_path / "out.jsonl"),
            "kinds": ["ticket"]}
    cfg = Config(connectors={"desk": desk}, agents=[{"email": A}, {"email": B}],
                 teams={"leads": {"members": [A]}}, routing={"strategy": "round_robin"}, **config)
    return App(LoadedConfig(cfg, tmp_path / "bridge.toml", {}), database=url)


def s(n: int) -> Any:
    return T0 + timedelta(seconds=n)


def test_an_update_sent_before_the_assignment_landed_does_not_reroute(tmp_path: Path, store_url: str) -> None:
    app = make_app(tmp_path, store_url, rules=[NOTIFY])
    try:
        live = start_rules(app, now=T0 - timedelta(hours=1))
        ingest(app, ticket("T1", T0, status="open", subject="s"))
        assert stored(app, "T1").attrs["assignee"] == A
        # the helpdesk's trigger tags the ticket 10 s later: its webhook shows no assignee yet (not landed)
        ingest(app, ticket("T1", s(10), status="open", assignee=None, tags=["how-to/login"]))
        ingest(app, ticket("T1", s(20), status="open", assignee=None, tags=["how-to/login"],
                           message="news?", last_author="customer"))
        assert stored(app, "T1").attrs["assignee"] == A and loads(live) == {A: 1, B: 0}
        told = {"notify": {"to": "leads", "message": "new assignee"}}
        assert writes(app) == [("T1", {"assignee": A}), ("T1", told)]
        assert stored(app, "T1").tags == ["how-to/login"]  # (what the helpdesk did change is taken)
        # the change log keeps the changes as taken (a restart's rebuild reads them so): without the repeat
        with app.store.session() as tx:
            rid = tx.record_id_for("desk", "ticket", "T1")
            assert rid is not None
            logged = [c.change.attrs for c in tx.logged_changes("ticket", {rid})]
        assert [a.get("assignee", "-") for a in logged] == ["-", "-", "-"]
    finally:
        app.close()


def test_once_the_assignment_landed_a_person_clearing_it_is_a_change(tmp_path: Path, store_url: str) -> None:
    app = make_app(tmp_path, store_url)
    try:
        live = start_rules(app, now=T0 - timedelta(hours=1))
        ingest(app, ticket("T1", T0, status="open", subject="s", assignee=None))
        Syncer(app.config, app.store, app.connector, app.host, clock=utcnow).push_all(_report())
        assert not app.store.pending("desk")
        # the helpdesk holds a now (the push landed); a person there hands the ticket back: that is taken, and
        # routing gives it to the next agent
        ingest(app, ticket("T1", s(60), status="open", assignee=None))
        assert stored(app, "T1").attrs["assignee"] == B and loads(live) == {A: 0, B: 1}
    finally:
        app.close()


def test_the_shadow_holds_what_the_helpdesk_said_and_bridge_queued(tmp_path: Path, store_url: str) -> None:
    # the helpdesk's first change gave no assignee: it holds none; the assignment queued for it is expected
    app = make_app(tmp_path, store_url)
    try:
        start_rules(app, now=T0 - timedelta(hours=1))
        ingest(app, ticket("T1", T0, status="open", subject="s"))
        with app.store.session() as tx:
            rid = tx.record_id_for("desk", "ticket", "T1")
            assert rid is not None
            assert tx.shadow(rid, "@assignee", "desk") == (True, {"held": None, "sent": [A]})
    finally:
        app.close()


def test_the_helpdesks_own_tag_edit_keeps_the_tags_bridge_added(tmp_path: Path, store_url: str) -> None:
    # a rule tags the ticket vip/x; before that lands the helpdesk's trigger adds its own tag: both stay
    rule = {"name": "vip", "set": "triggers", "when": {"field": "ticket.subject", "contains": "ceo"},
            "then": [{"add_tags": ["vip/x"]}]}
    app = make_app(tmp_path, store_url, rules=[rule])
    try:
        start_rules(app, now=T0 - timedelta(hours=1))
        ingest(app, ticket("T1", T0, status="open", subject="ceo here", tags=["billing/refund"]))
        assert stored(app, "T1").tags == ["billing/refund", "vip/x"]
        ingest(app, ticket("T1", s(10), tags=["billing/refund", "auto/sla"]))
        assert stored(app, "T1").tags == ["billing/refund", "vip/x", "auto/sla"]
        # and a tag the helpdesk removes is removed
        ingest(app, ticket("T1", s(20), tags=["auto/sla"]))
        assert stored(app, "T1").tags == ["vip/x", "auto/sla"]
    finally:
        app.close()


def _report() -> Any:
    from bridge.sync import SyncReport

    return SyncReport()


def test_a_restart_takes_the_changes_as_they_were_taken_live(tmp_path: Path, store_url: str) -> None:
    # a rule raised the priority, the write landed, then an agent there lowered it again: live that is a
    # change; the rebuilt Desk must read the change log as taken live, not judge the repeat by shadows it
    # cannot see (what landed is not in the log), or the urgent SLA would escalate a normal ticket
    from bridge.scheduler import run_timers
    from bridge.sync import SyncReport

    rule = {"name": "vip-urgent", "set": "triggers", "when": {"field": "ticket.tags", "to": "vip/x"},
            "then": [{"set": {"priority": "urgent"}}]}
    sla = [{"name": "urgent", "when": {"field": "ticket.priority", "eq": "urgent"}, "first_response": "1h",
            "escalate": [{"after": "0m", "to": "leads"}]}, {"name": "normal", "first_response": "8h"}]
    app = make_app(tmp_path, store_url, rules=[rule], sla=sla)
    try:
        start_rules(app, now=T0 - timedelta(hours=1))
        ingest(app, ticket("T1", T0, status="open", priority="normal", subject="s", tags=[]))
        ingest(app, ticket("T1", s(60), status="open", priority="normal", tags=["vip/x"]))
        assert stored(app, "T1").attrs["priority"] == "urgent"
        Syncer(app.config, app.store, app.connector, app.host, clock=utcnow).push_all(SyncReport())
        ingest(app, ticket("T1", s(300), status="open", priority="normal", tags=["vip/x"]))
    finally:
        app.close()
    app = make_app(tmp_path, store_url, rules=[rule], sla=sla)
    try:
        live = start_rules(app, now=s(360))
        rid = stored(app, "T1").id
        assert live.records[rid].attrs["priority"] == "normal"
        run_timers(app, live, T0 + timedelta(hours=2))
        assert [f for _t, f in writes(app) if "escalation" in f] == []
    finally:
        app.close()


def test_a_webhook_delivered_again_is_no_new_message(tmp_path: Path, store_url: str) -> None:
    # the helpdesk redelivers the customer's 09:20 webhook at 09:40, after the agent's 09:30 reply: the
    # message was taken; taken again it would open a new reply clock that breaches and escalates (and on a
    # resolved ticket, stop its auto-close)
    from bridge.scheduler import run_timers

    sla = [{"name": "all", "first_response": "1h", "next_response": "1h",
            "escalate": [{"after": "30m", "to": "leads"}]}]
    app = make_app(tmp_path, store_url, sla=sla, auto_close={"after": "1d"})
    try:
        live = start_rules(app, now=T0 - timedelta(hours=1))
        m = lambda n: T0 + timedelta(minutes=n)  # noqa: E731
        ingest(app, ticket("T1", m(0), status="open", subject="help", message="help", last_author="customer"))
        ingest(app, ticket("T1", m(10), message="on it", last_author="agent"))
        again = ticket("T1", m(20), message="still broken", last_author="customer")
        ingest(app, again)
        ingest(app, ticket("T1", m(30), message="fixed", last_author="agent", status="resolved"))
        out = ingest(app, ticket("T1", m(20), message="still broken", last_author="customer"))
        assert out.repeat and not out.late and "a repeat of one taken before" in out.problems[0]
        run_timers(app, live, T0 + timedelta(days=2))
        fields = [f for _t, f in writes(app)]
        assert {"escalation": "leads"} not in fields and {"status": "closed"} in fields
        # a change of the same instant with another message is a message of its own
        other = ingest(app, ticket("T1", m(20), message="one more thing", last_author="customer"))
        assert not other.repeat
    finally:
        app.close()


def test_a_rule_written_value_a_person_changed_before_the_push_drops(tmp_path: Path, store_url: str) -> None:
    # routing's assignment waits in the outbox (a 429, a slow pusher); an agent takes the ticket by hand in
    # the helpdesk meanwhile: the push must not put the older assignee back over theirs
    import json

    from bridge.sync import SyncReport

    app = make_app(tmp_path, store_url)
    try:
        start_rules(app, now=T0 - timedelta(hours=1))
        ingest(app, ticket("T1", T0, status="open", subject="s"))
        assert writes(app) == [("T1", {"assignee": A})]
        ingest(app, ticket("T1", s(600), assignee=B))  # the person's own choice, pulled
        assert stored(app, "T1").attrs["assignee"] == B
        Syncer(app.config, app.store, app.connector, app.host, clock=utcnow).push_all(SyncReport())
        out = tmp_path / "out.jsonl"
        pushed = [json.loads(line)["fields"] for line in out.read_text().splitlines()] if out.exists() else []
        assert {"assignee": A} not in pushed
        assert not app.store.pending("desk")
        # and the helpdesk showing b later is no change; showing a (which it was never sent) would be one
        ingest(app, ticket("T1", s(700), assignee=B, status="open"))
        assert stored(app, "T1").attrs["assignee"] == B
    finally:
        app.close()
