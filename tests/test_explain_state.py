"""`bridge explain` shows a ticket's routing state first: status, priority, assignee, escalations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.app import App
from bridge.explain import explain_record, format_explain
from bridge.model import Change, Record
from bridge.settings import Config, LoadedConfig


def test_the_state_line_comes_after_the_tags(tmp_path: Path) -> None:
    app = App(LoadedConfig(Config(), tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    try:
        attrs = {"status": "open", "priority": "urgent", "escalations": ["leads", "oncall"], "subject": "x"}
        with app.store.session() as tx:
            tx.save(Record("R-1", "ticket", tags=["bug/sev1"], attrs=attrs))
            tx.save(Record("A-1", "account", attrs={"name": "Acme"}))
        ticket = explain_record(app, "R-1")
        account = explain_record(app, "A-1")
    finally:
        app.close()
    assert ticket is not None and account is not None
    lines = format_explain(ticket).splitlines()
    assert lines[2] == "state: status open, priority urgent, assignee -, escalations leads, oncall"
    assert "state:" not in format_explain(account)


def test_the_sla_deadlines_come_from_the_tickets_own_changes(tmp_path: Path) -> None:
    cfg = Config(sla=[{"name": "std", "first_response": "1h", "resolution": "1d"}])
    app = App(LoadedConfig(cfg, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    try:
        with app.store.session() as tx:
            rid = tx.create_record("ticket", now=at)
            tx.link(rid, "desk", "ticket", "T-1")
            opened = {"subject": "s", "status": "open"}
            tx.add_change(Change("desk", "ticket", "T-1", at, attrs=opened), rid, at)
            record = tx.load(rid)
            assert record is not None
            record.attrs.update({"subject": "s", "status": "open"})
            tx.save(record)
        data = explain_record(app, "desk:T-1")
    finally:
        app.close()
    assert data is not None
    assert data["sla"] == {"first_response_due": "2026-11-02T10:00:00Z", "next_response_due": None,
                           "resolution_due": "2026-11-03T09:00:00Z"}
    line = ("sla: first response due 2026-11-02T10:00:00Z, next response due -, "
            "resolution due 2026-11-03T09:00:00Z")
    assert line in format_explain(data)


def test_history_shows_who_set_an_attribute_and_sla_policies_show_without_rules(tmp_path: Path) -> None:
    fields = {"severity": {"type": "select", "options": ["Sev-1", "Sev-2"], "owner": "bridge"}}
    cfg = Config(fields=fields, sla=[{"name": "urgent", "first_response": "1h",
                                      "when": {"field": "ticket.priority", "eq": "urgent"}}])
    app = App(LoadedConfig(cfg, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    try:
        with app.store.session() as tx:
            tx.save(Record("R-1", "ticket", attrs={"status": "open", "priority": "urgent", "subject": "x"}))
            for field, value, rule in (("priority", "urgent", "angry"), ("severity", "Sev-1", "sev"),
                                       ("status", "pending", "wait")):
                tx.audit(at=at, run="r", record_id="R-1", field=field, before=None,
                         after={"field": field, "value": value}, origin="bridge", rule=rule, kind="decision",
                         response="set_field")
        data = explain_record(app, "R-1")
    finally:
        app.close()
    assert data is not None
    # priority and status are no declared field: their rows are in the history, not lost
    assert [(h["field"], h["rule"]) for h in data["events"]] == [("priority", "angry"), ("status", "wait")]
    assert [h["rule"] for f in data["fields"] for h in f["history"]] == ["sev"]
    text = format_explain(data)
    assert "(angry)" in text and "(wait)" in text
    # no [[rules]]: the SLA policies are still explained
    assert [(e["rule"], e["matched"], e["chosen"]) for e in data["rules"]] == [("urgent", True, True)]
    assert "SLA policies, as the ticket is now:" in text and "✓ urgent [sla] (applies)" in text


def test_the_sla_deadlines_are_those_of_the_policy_the_crm_account_chooses(tmp_path: Path) -> None:
    from bridge.pipeline import Pipeline
    from bridge.scheduler import start_rules

    cfg = Config(
        connectors={"desk": {"plugin": "files", "path": "in", "kinds": ["ticket"]},
                    "crm": {"plugin": "files", "path": "c", "kinds": ["account"]}},
        sla=[{"name": "enterprise", "when": {"field": "account.tier", "eq": "enterprise"},
              "first_response": "1h", "resolution": "1d"},
             {"name": "standard", "first_response": "8h", "resolution": "5d"}],
    )
    app = App(LoadedConfig(cfg, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    try:
        start_rules(app)
        pipeline = Pipeline(app.config, app.host, run="live")
        for change in (
            Change("crm", "account", "A-1", at, attrs={"name": "Acme", "domain": "acme.example",
                                                        "tier": "enterprise"}),
            Change("desk", "ticket", "T-1", at, attrs={"status": "open", "subject": "help",
                                                       "requester": {"email": "ana@acme.example"}}),
        ):
            with app.store.session() as tx:
                pipeline.process(tx, change, at)
        data = explain_record(app, "desk:T-1")
    finally:
        app.close()
    assert data is not None
    assert data["sla"] == {"first_response_due": "2026-11-02T10:00:00Z", "next_response_due": None,
                           "resolution_due": "2026-11-03T09:00:00Z"}


AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LATER = AT + timedelta(minutes=10)


def _downgraded(tmp_path: Path, closed_too: bool = False, **config: Any) -> list[dict[str, Any] | None]:
    """Explain T-1 (and T-2, closed, with ``closed_too``) after the CRM downgraded their account from
    enterprise to starter, after the tickets' last change."""
    from bridge.pipeline import Pipeline
    from bridge.scheduler import start_rules

    cfg = Config(
        connectors={"desk": {"plugin": "files", "path": "in", "kinds": ["ticket"]},
                    "crm": {"plugin": "files", "path": "c", "kinds": ["account"]}},
        **config,
    )
    app = App(LoadedConfig(cfg, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    changes = [
        (Change("crm", "account", "A-1", AT, attrs={"name": "Acme", "domain": "acme.example",
                                                     "tier": "enterprise"}), AT),
        (Change("desk", "ticket", "T-1", AT, attrs={"status": "open", "subject": "help",
                                                    "requester": {"email": "ana@acme.example"}}), AT),
    ]
    if closed_too:
        changes.append((Change("desk", "ticket", "T-2", AT, attrs={
            "status": "open", "subject": "help", "requester": {"email": "bo@acme.example"}}), AT))
    changes.append((Change("crm", "account", "A-1", LATER, attrs={"tier": "starter"}), LATER))
    if closed_too:
        changes.append((Change("desk", "ticket", "T-2", LATER, attrs={"status": "closed"}), LATER))
    try:
        start_rules(app, now=AT)
        pipeline = Pipeline(app.config, app.host, run="live")
        for change, when in changes:
            with app.store.session() as tx:
                pipeline.process(tx, change, when)
        return [explain_record(app, f"desk:{t}") for t in (("T-1", "T-2") if closed_too else ("T-1",))]
    finally:
        app.close()


def test_the_policies_as_the_ticket_is_now_read_the_account_the_deadlines_do(tmp_path: Path) -> None:
    """A CRM downgrade after the ticket's last change: the deadlines (a rebuild, the CRM's account as stored
    now) and the policy explain marks as applying are one policy, not one each; a closed ticket's deadlines
    are null, as in replay's final state."""
    data, closed = _downgraded(
        tmp_path, closed_too=True,
        sla=[{"name": "enterprise", "when": {"field": "account.tier", "eq": "enterprise"},
              "first_response": "1h"},
             {"name": "standard", "first_response": "8h"}],
    )
    assert data is not None and closed is not None
    assert data["sla"]["first_response_due"] == "2026-11-02T17:00:00Z"  # standard: 8h
    applying = [e["rule"] for e in data["rules"] if e["set"] == "sla" and e.get("chosen")]
    assert applying == ["standard"]
    assert closed["sla"] == {"first_response_due": None, "next_response_due": None, "resolution_due": None}


def test_the_rules_as_the_ticket_is_now_read_the_crm_account_as_stored_also_with_no_sla(
    tmp_path: Path,
) -> None:
    """With rules and no [[sla]], explain's rules read the account as the store holds it now, as they do when
    a policy is configured: adding an unrelated policy does not change what a rule is said to see."""
    vip_rule = {"name": "vip", "when": {"field": "account.tier", "eq": "enterprise"},
                "then": [{"add_tags": ["vip/yes"]}]}
    [data] = _downgraded(tmp_path, rules=[vip_rule])
    assert data is not None
    [vip] = [e for e in data["rules"] if e["rule"] == "vip"]
    assert vip["matched"] is False and vip["leaves"][0]["actual"] == "starter"
    assert data["sla"] == {}  # (no policy: no deadlines)


def test_a_disabled_rule_is_named_as_such(tmp_path: Path) -> None:
    rules = [{"name": "on", "when": {"field": "ticket.priority", "eq": "urgent"},
              "then": [{"add_tags": ["x"]}]},
             {"name": "off", "enabled": False, "when": {"field": "ticket.priority", "eq": "urgent"},
              "then": [{"add_tags": ["y"]}]}]
    app = App(LoadedConfig(Config(rules=rules), tmp_path / "bridge.toml", {}),
              database=f"sqlite:///{tmp_path / 'b.db'}")
    try:
        with app.store.session() as tx:
            tx.save(Record("R-1", "ticket", attrs={"status": "open", "priority": "urgent"}))
        data = explain_record(app, "R-1")
    finally:
        app.close()
    assert data is not None and data["disabled_rules"] == ["off"]
    assert [e["rule"] for e in data["rules"]] == ["on"]
    assert "rules disabled (enabled = false), not run: off" in format_explain(data).splitlines()
