"""A pass pulls what tickets read (accounts, contacts) before the tickets, whatever order the config lists the
kinds or the connectors in: a ticket is judged by the rules with its CRM account from its first change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.app import App
from bridge.scheduler import build_jobs, sync_once
from bridge.settings import Config, LoadedConfig
from bridge.sync import Syncer, pull_order, systems_order

ACCOUNT = {"kind": "account", "id": "A-1", "updated_at": "2026-11-02T08:00:00Z", "name": "Acme",
           "domain": "acme.example", "fields": {"tier": "enterprise"}}
TICKET = {"kind": "ticket", "id": "T-1", "updated_at": "2026-11-02T09:00:00Z", "subject": "Invoice wrong",
          "body": "This is terrible and unacceptable, I am furious", "tags": [], "status": "open",
          "priority": "normal",
          "requester": {"email": "r@acme.example"}}
RULE = {"name": "ent-angry", "set": "escalation",
        "when": {"all": [{"field": "account.tier", "eq": "enterprise"},
                         {"field": "ticket.sentiment", "lte": -35}]},
        "then": [{"set": {"priority": "urgent"}}]}


def _write(folder: Path, *lines: dict[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def _priority(tmp_path: Path, connectors: dict[str, dict[str, object]]) -> object:
    owner = next(name for name, table in connectors.items() if "account" in table["kinds"])  # type: ignore[operator]
    tier = {"type": "select", "kind": "account", "options": ["enterprise", "growth"], "owner": owner}
    cfg = Config(connectors=connectors, rules=[RULE], agents=[{"email": "a@x.example"}],
                 fields={"tier": tier})
    app = App(LoadedConfig(cfg, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")
    try:
        sync_once(app)
        with app.store.session() as tx:
            rid = tx.record_id_for("desk", "ticket", "T-1")
            assert rid is not None
            record = tx.load(rid)
    finally:
        app.close()
    assert record is not None
    return record.attrs.get("priority")


def test_one_connector_listing_tickets_first_pulls_its_accounts_first(tmp_path: Path) -> None:
    _write(tmp_path / "in", TICKET, ACCOUNT)
    desk = {"plugin": "files", "path": str(tmp_path / "in"), "out_path": str(tmp_path / "out.jsonl"),
            "kinds": ["ticket", "account"]}
    assert _priority(tmp_path, {"desk": desk}) == "urgent"


def test_a_crm_listed_after_the_helpdesk_is_pulled_first(tmp_path: Path) -> None:
    _write(tmp_path / "in", TICKET)
    _write(tmp_path / "crm", ACCOUNT)
    connectors: dict[str, dict[str, object]] = {
        "desk": {"plugin": "files", "path": str(tmp_path / "in"), "out_path": str(tmp_path / "out.jsonl"),
                 "kinds": ["ticket"]},
        "crm": {"plugin": "files", "path": str(tmp_path / "crm"), "kinds": ["account"]},
    }
    assert _priority(tmp_path, connectors) == "urgent"
    cfg = Config(connectors=connectors)
    assert systems_order(cfg, ["desk", "crm"]) == ["crm", "desk"]
    app = App(LoadedConfig(cfg, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'c.db'}")
    try:
        jobs = build_jobs(app, Syncer(app.config, app.store, app.connector, app.host))
    finally:
        app.close()
    assert [job.name for job in jobs][:2] == ["sync:crm", "sync:desk"]


@pytest.mark.parametrize(("kinds", "pulled"), [
    (["ticket", "account"], ["account", "ticket"]),
    (["ticket", "contact", "account", "deal"], ["account", "contact", "ticket", "deal"]),
    (["account", "ticket"], ["account", "ticket"]),
])
def test_pull_order_puts_accounts_then_contacts_first_and_keeps_the_rest_in_order(
        kinds: list[str], pulled: list[str]) -> None:
    assert pull_order(kinds) == pulled
