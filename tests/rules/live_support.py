"""Shared test support for the live rules: what the store holds of a desk ticket and what it was told, and a
daemon that can be restarted on the same store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.app import App
from bridge.model import Change, Record
from bridge.pipeline import Outcome, Pipeline
from bridge.rules.live import LiveRules
from bridge.scheduler import record_agent_status, run_timers, start_rules
from bridge.settings import Config, LoadedConfig

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DESK = {"desk": {"plugin": "files", "path": "in", "kinds": ["ticket"]}}

Writes = list[tuple[str | None, dict[str, Any]]]


def stored(app: App, external: str) -> Record:
    """The stored record of the ``desk`` ticket ``external``."""
    with app.store.session() as tx:
        rid = tx.record_id_for("desk", "ticket", external)
        assert rid is not None
        record = tx.load(rid)
    assert record is not None
    return record


def writes(app: App) -> Writes:
    """Every write queued for the ``desk`` system but the SLA notices (:func:`sla_writes`): (ticket id there,
    fields)."""
    return [(i.external_id, i.fields) for i in app.store.items("desk") if "sla" not in i.fields]


def sla_writes(app: App) -> Writes:
    """The SLA warnings and breaches queued for the ``desk`` system: (ticket id there, fields)."""
    return [(i.external_id, i.fields) for i in app.store.items("desk") if "sla" in i.fields]


def make_app(url: str, **config: Any) -> App:
    """An app on the store at ``url`` with a ``desk`` helpdesk and ``config`` (agents, rules, timers ...)."""
    return App(LoadedConfig(Config(**{"connectors": DESK, **config}), Path("bridge.toml"), {}), database=url)


def ingest(app: App, change: Change) -> Outcome:
    """One change through the pipeline in its own transaction, as a pull or a webhook does."""
    pipeline = Pipeline(app.config, app.host, run="live")
    with app.store.session() as tx:
        return pipeline.process(tx, change, change.at)


def ticket(external: str, at: datetime, **attrs: Any) -> Change:
    """A change of the ``desk`` ticket ``external`` at ``at``; ``tags`` is taken apart from the fields."""
    tags = attrs.pop("tags", None)
    return Change("desk", "ticket", external, at, tags=tags, attrs=attrs)


def loads(live: LiveRules) -> dict[str, int]:
    """How many tickets the Desk counts on each agent."""
    return {a.email: a.load for a in live.desk.router.agents.values()}


def status(app: App, agent: str, what: str, at: datetime) -> None:
    """Agent ``agent`` becomes ``what`` (away, available ...) at ``at``, taken at that instant."""
    record_agent_status(app, agent, what, at, now=at)


class Runner:
    """The daemon of one replica that runs the rules, on one store; ``restart`` closes it and starts it anew
    (its Desk rebuilt from the store)."""

    def __init__(self, url: str, config: dict[str, Any], now: datetime = T0) -> None:
        self.url, self.config = url, config
        self.app = make_app(url, **config)
        self.live = start_rules(self.app, now=now)

    def restart(self, now: datetime) -> None:
        self.app.close()
        self.app = make_app(self.url, **self.config)
        self.live = start_rules(self.app, now=now)

    def ingest(self, change: Change) -> Outcome:
        return ingest(self.app, change)

    def status(self, agent: str, what: str, at: datetime) -> None:
        status(self.app, agent, what, at)

    def tick(self, now: datetime) -> None:
        """One run of the rules job: catch-up of other replicas' changes, then the due timers."""
        run_timers(self.app, self.live, now)

    def writes(self) -> Writes:
        return writes(self.app)

    def close(self) -> None:
        self.app.close()
