"""`bridge explain` shows a ticket's routing state first: status, priority, assignee, escalations."""

from __future__ import annotations

from pathlib import Path

from bridge.app import App
from bridge.explain import explain_record, format_explain
from bridge.model import Record
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
