"""Rules' side effects that are events (notify, escalate, follow up, review) reach the helpdesk once each, in
order, as writes of their own keyed by their decisions; field writes of the same ticket still merge."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from bridge.app import App
from bridge.connector import Connector, PushResult
from bridge.effects import EffectWrite, effect_key
from bridge.model import Write
from bridge.scheduler import start_rules
from bridge.settings import Config, LoadedConfig
from bridge.sync import Syncer, SyncReport

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# three notifications (two of them saying the same thing) and two escalations, all to ticket T-1
RULES: list[dict[str, Any]] = [
    {
        "name": "page-oncall",
        "set": "escalation",
        "when": {"tag": "bug/sev1"},
        "then": [{"notify": {"to": "#oncall", "message": "Sev-1"}}, {"escalate": "leads"}],
    },
    {
        "name": "page-oncall-again",
        "set": "triggers",
        "when": {"tag": "bug/sev1"},
        "then": [{"notify": {"to": "#oncall", "message": "Sev-1"}}],
    },
    {
        "name": "incident",
        "set": "triggers",
        "when": {"field": "ticket.text", "contains": "outage"},
        "then": [{"notify": {"to": "am@x.example", "message": "outage"}}, {"escalate": "incident"}],
    },
]


def make_app(tmp_path: Path, url: str) -> App:
    (tmp_path / "in").mkdir()
    desk = {
        "plugin": "files",
        "path": str(tmp_path / "in"),
        "out_path": str(tmp_path / "out.jsonl"),
        "kinds": ["ticket"],
    }
    config = Config(connectors={"desk": desk}, rules=RULES)
    return App(LoadedConfig(config, tmp_path / "bridge.toml", {}), database=url)


def inbound(tmp_path: Path, name: str, **row: Any) -> None:
    (tmp_path / "in" / name).write_text(json.dumps({"id": "T-1", **row}) + "\n")


def pushed(tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "out.jsonl"
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


EVENTS = [
    {"notify": {"to": "#oncall", "message": "Sev-1"}},
    {"notify": {"to": "#oncall", "message": "Sev-1"}},
    {"escalation": "leads"},
    {"notify": {"to": "am@x.example", "message": "outage"}},
    {"escalation": "incident"},
]


class Refusing:
    """The files connector, refusing the first write it is given ``times`` times (``final``: for good)."""

    def __init__(self, inner: Connector, times: int, final: bool) -> None:
        self.inner = inner
        self.system = inner.system
        self.batch_max = inner.batch_max
        self.times = times
        self.final = final

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # pulls and the rest as the files connector does

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        out: list[PushResult] = []
        for w in writes:
            if self.times > 0:
                self.times -= 1
                out.append(PushResult(w.record_id, False, error="busy", retriable=not self.final))
            else:
                out += self.inner.push(kind, [w])
        return out


def two_changes(tmp_path: Path) -> None:
    inbound(
        tmp_path, "1.jsonl", tags=["bug/sev1"], status="open", subject="x", updated_at="2026-11-02T09:00:00Z"
    )
    inbound(tmp_path, "2.jsonl", body="big outage", updated_at="2026-11-02T09:01:00Z")


def test_each_event_effect_is_pushed_once_in_order(tmp_path: Path, store_url: str) -> None:
    app = make_app(tmp_path, store_url)
    try:
        start_rules(app, now=T0)
        syncer = Syncer(app.config, app.store, app.connector, app.host, clock=lambda: T0 + timedelta(hours=1))
        two_changes(tmp_path)
        report = syncer.sync()  # both changes pulled in one pass, then one push
        assert not report.problems
        assert [w["fields"] for w in pushed(tmp_path)] == EVENTS
        # each carries the key of its own decision, as queued
        with app.store.engine.connect() as c:
            claimed = sorted(k for (k,) in c.execute(sa.text("select key from effects")))
        rid = pushed(tmp_path)[0]["record"]
        assert sorted(w["key"] for w in pushed(tmp_path)) == sorted(
            effect_key("desk", "ticket", rid, k) for k in claimed
        )
        assert not app.store.pending("desk")
        syncer.sync()  # nothing is pushed twice
        assert len(pushed(tmp_path)) == 5
    finally:
        app.close()


@pytest.mark.parametrize("final", [False, True])
def test_a_failed_event_is_retried_alone_and_later_ones_wait(tmp_path: Path, final: bool) -> None:
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'bridge.db'}")
    try:
        start_rules(app, now=T0)
        now = [T0 + timedelta(hours=1)]
        refusing = Refusing(app.connector("desk"), times=1, final=final)
        syncer = Syncer(
            app.config, app.store, lambda s: cast(Connector, refusing), app.host, clock=lambda: now[0]
        )
        two_changes(tmp_path)
        report = syncer.sync()
        assert pushed(tmp_path) == []  # the first event failed: the others keep behind it
        assert (report.failed, report.dead, report.deferred) == ((0, 1, 4) if final else (1, 0, 4))
        now[0] += timedelta(hours=3)
        syncer.sync()
        assert [w["fields"] for w in pushed(tmp_path)] == (EVENTS[1:] if final else EVENTS)
        dead = app.store.dead_letters("desk")
        assert [i.fields for i in dead] == ([EVENTS[0]] if final else [])
        assert not app.store.pending("desk")
    finally:
        app.close()


def test_field_writes_still_merge_and_equal_events_of_two_decisions_do_not(tmp_path: Path) -> None:
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'bridge.db'}")
    try:
        rid = "r1"
        note = {"notify": {"to": "#oncall", "message": "Sev-1"}}
        with app.store.session() as tx:
            tx.create_record("ticket", rid, T0)
            tx.link(rid, "desk", "ticket", "T-1")
            record = tx.load(rid)
            assert record is not None
            record.attrs["assignee"] = "bob"  # (what the rules left: another assignee's write is superseded)
            tx.save(record, T0)
            assert tx.enqueue(Write("desk", "ticket", rid, "T-1", {"assignee": "ann"}), T0)
            assert tx.enqueue(
                EffectWrite("desk", "ticket", rid, "T-1", note, effect_key("desk", "ticket", rid, "a")), T0
            )
            assert tx.enqueue(Write("desk", "ticket", rid, "T-1", {"assignee": "bob"}), T0)
            assert tx.enqueue(
                EffectWrite("desk", "ticket", rid, "T-1", note, effect_key("desk", "ticket", rid, "b")), T0
            )
            # the same decision's event again is its twin, which keeps its place
            again = EffectWrite("desk", "ticket", rid, "T-1", note, effect_key("desk", "ticket", rid, "a"))
            assert not tx.enqueue(again, T0)
            # a field write's twin behind other writes moves to the end, as before
            assert tx.enqueue(Write("desk", "ticket", rid, "T-1", {"assignee": "bob"}), T0)
        assert len(app.store.pending("desk")) == 4
        syncer = Syncer(app.config, app.store, app.connector, app.host, clock=lambda: T0)
        syncer.push_all(SyncReport())
        got = [w["fields"] for w in pushed(tmp_path)]
        assert got == [{"assignee": "bob"}, note, note]  # the assignee merged, last value wins
    finally:
        app.close()


def test_a_volume_check_in_is_told_as_a_note_never_as_an_escalation_of_the_ticket() -> None:
    from bridge.effects import effect_fields
    from bridge.model import Decision, Record

    detail = {"to": "am@x.example", "reason": "volume", "account": "A-1", "count": 6, "usual": 1.5,
              "due": "2026-11-03T09:00:00Z"}
    ticket = Record("r1", "ticket")
    task = effect_fields(Config(), "desk", ticket, Decision(T0, "r1", "escalate", "volume", detail))
    assert task == {"notify": {
        "to": "am@x.example", "reason": "volume", "account": "A-1", "due": "2026-11-03T09:00:00Z",
        "message": "Check in with account A-1: 6 new tickets in the last 7 days, against 1.5 a week usually; "
                   "due 2026-11-03T09:00:00Z"}}
    # the daemon's account is a record id: the note names it as people know it, from the ticket's context
    acme = {"id": "7f388b", "name": "Acme", "domain": "acme.example"}
    known = Record("r1", "ticket", attrs={"account": acme})
    daemon = {**detail, "account": "7f388b"}
    note = effect_fields(Config(), "desk", known, Decision(T0, "r1", "escalate", "volume", daemon))["notify"]
    assert note["message"].startswith("Check in with account Acme: 6 new tickets")
    assert note["account"] == "7f388b"
    # with nobody to tell (no owner, no team), nothing is pushed: an {"escalation": null} would clear one
    nobody = {**detail, "to": None}
    assert effect_fields(Config(), "desk", ticket, Decision(T0, "r1", "escalate", "volume", nobody)) == {}
    # a rule's escalation is still one
    rule = Decision(T0, "r1", "escalate", "sev1", {"to": "leads"})
    assert effect_fields(Config(), "desk", ticket, rule) == {"escalation": "leads"}


def test_an_sla_warning_and_breach_are_told_to_the_helpdesk_as_events() -> None:
    from bridge.effects import effect_fields, is_event
    from bridge.model import Decision, Record

    ticket = Record("r1", "ticket")
    warning = Decision(T0, "r1", "sla_warning", "enterprise", {"metric": "first_response"})
    late = Decision(T0, "r1", "sla_breach", "enterprise", {"metric": "resolution", "late": True,
                                                            "due": "2026-11-02T10:00:00Z"})
    told = [effect_fields(Config(), "desk", ticket, d) for d in (warning, late)]
    assert told == [
        {"sla": {"state": "warning", "policy": "enterprise", "metric": "first_response"}},
        {"sla": {"state": "breach", "policy": "enterprise", "metric": "resolution",
                 "due": "2026-11-02T10:00:00Z", "late": True}},
    ]
    assert all(is_event(fields, {}) for fields in told)  # (each its own write, never merged with another)


def test_a_warning_stated_with_its_breach_is_audited_not_told(tmp_path: Path) -> None:
    from bridge.effects import queue_effects
    from bridge.model import Decision, Record

    cfg = Config(connectors={"desk": {"plugin": "files", "path": str(tmp_path / "in"), "kinds": ["ticket"]}})
    app = App(LoadedConfig(cfg, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    ticket = Record("r1", "ticket", links={"desk": "T-1"})

    def sla(kind: str, metric: str, minutes: int) -> Decision:
        at = T0 + timedelta(minutes=minutes)
        key = f"r1|{kind}|std|{at.isoformat()}|{metric}"
        return Decision(at, "r1", kind, "std", {"metric": metric, "key": key})

    try:
        with app.store.session() as tx:
            tx.save(ticket)
            queued = queue_effects(tx, cfg, ticket, [
                sla("sla_warning", "first_response", 45), sla("sla_breach", "first_response", 60),
                sla("sla_warning", "resolution", 90),  # (its breach is yet to come: told)
            ], T0 + timedelta(hours=3), "timers")
            audited = tx.conn.execute(sa.text("select count(*) from audit where kind = 'decision'")).scalar()
    finally:
        app.close()
    assert [(w.fields["sla"]["state"], w.fields["sla"]["metric"]) for w in queued] == [
        ("breach", "first_response"), ("warning", "resolution")]
    assert audited == 3
