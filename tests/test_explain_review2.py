"""`bridge explain` dates each rules decision when it took effect, in one line format whichever path recorded
it: a timer the Desk fired on a later change (recorded with that change, days after it fell due) and one the
rules job's tick fired (recorded as due)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.app import App
from bridge.explain import explain_record, format_explain
from bridge.model import Change
from bridge.pipeline import Pipeline
from bridge.scheduler import run_timers, start_rules
from bridge.settings import Config, LoadedConfig

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 26, 15, 13, 29, tzinfo=UTC)  # when the sync that took the late change ran
DESK = {"desk": {"plugin": "files", "path": "in", "kinds": ["ticket"]}}


def make_app(tmp_path: Path) -> App:
    config = Config(connectors=DESK, auto_close={"after": "7d"})
    return App(LoadedConfig(config, tmp_path / "bridge.toml", {}), database=f"sqlite:///{tmp_path / 'b.db'}")


def ingest(app: App, change: Change, now: datetime) -> None:
    with app.store.session() as tx:
        Pipeline(app.config, app.host, run="live").process(tx, change, now)


def ticket(external: str, at: datetime, **attrs: Any) -> Change:
    return Change("desk", "ticket", external, at, attrs=attrs)


def history(app: App, external: str) -> list[str]:
    data = explain_record(app, f"desk:{external}")
    assert data is not None
    text = format_explain(data).splitlines()
    return [line.strip() for line in text[text.index("history:") + 1 :]]


def test_a_timer_fired_on_a_later_change_is_dated_when_it_fell_due(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        start_rules(app, now=T0)
        ingest(app, ticket("T-51", T0, status="resolved", subject="Q"), T0)
        # the customer's thanks ten days on, taken in two weeks after that: the close fell due on day 7
        ingest(app, ticket("T-51", T0 + timedelta(days=10), message="thanks"), LATER)
        lines = history(app, "T-51")
    finally:
        app.close()
    decisions = [line for line in lines if " decision " in line]
    assert decisions == ["2026-11-09T09:00:00Z decision auto_close (auto_close) {'after': '7d'}"]


def test_a_timer_the_rules_job_fired_reads_as_one_fired_on_a_change(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        live = start_rules(app, now=T0)
        ingest(app, ticket("T-52", T0, status="resolved", subject="Q"), T0)
        run_timers(app, live, T0 + timedelta(days=7, minutes=1))
        lines = history(app, "T-52")
    finally:
        app.close()
    assert lines == ["2026-11-09T09:00:00Z decision auto_close (auto_close) {'after': '7d'}"]


def test_a_refused_value_is_no_decision_line(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        ingest(app, ticket("T-53", T0, status="open", subject="Q"), T0)
        with app.store.session() as tx:
            rid = tx.record_id_for("desk", "ticket", "T-53")
            assert rid is not None
            tx.audit(at=LATER, run="r", record_id=rid, field="x", before=None, after={"v": 1}, origin="desk",
                     rule="rejected: not a valid value", kind="decision", response="not a number")
        lines = history(app, "T-53")
    finally:
        app.close()
    refused = "decision: None -> {'v': 1} from desk (rejected: not a valid value) -> not a number"
    assert lines == [f"2026-11-26T15:13:29Z {refused}"]
