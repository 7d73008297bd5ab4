"""Rules in the daemon: the Desk fed by every committed ticket change, its timers run by the scheduler.

The Desk keeps its state in memory. At start it is rebuilt from the store's change log (the same changes run
through a private pipeline on a virtual clock, as in replay), so SLA clocks, queues and capacity survive a
restart. Every side effect a decision causes (assign, escalate, set a field, follow up, close) is queued once:
its idempotency key is claimed in the transaction that queues its write, so a crash, a retry or a rebuild never
repeats it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from bridge.model import Change, Decision, Record, Write, format_time
from bridge.pipeline import MemoryState, Pipeline
from bridge.plugins import hookimpl
from bridge.rules.engine import Desk
from bridge.settings import Config

log = logging.getLogger("bridge.rules")
SIDE_EFFECTS = ("assign", "escalate", "set_field", "follow_up", "auto_close", "review", "tag")


class EffectState(Protocol):
    """What queuing effects needs of a transaction (the store's Tx provides it)."""

    def claim_effect(self, key: str, record_id: str, decision: str, at: datetime) -> bool: ...
    def enqueue(self, write: Write, now: datetime) -> bool: ...
    def audit(
        self, *, at: datetime, run: str, record_id: str | None, field: str | None, before: Any, after: Any,
        origin: str, rule: str, kind: str = "write", response: Any = None,
    ) -> None: ...


def effect_fields(config: Config, system: str, record: Record, decision: Decision) -> dict[str, Any]:
    """What ``system`` must be told for one decision (remote field names), or {} when nothing."""
    d = decision.detail
    match decision.decision:
        case "assign":
            return {"assignee": d.get("to")}
        case "escalate":
            return {"escalation": d.get("to")}
        case "auto_close":
            return {"status": "closed"}
        case "follow_up":
            return {"follow_up": d.get("message") or (config.follow_up.message if config.follow_up else "")}
        case "review":
            return {"review": d.get("reason") or "review"}
        case "tag":
            return {"tags": list(record.tags)}
        case "set_field":
            name = str(d.get("field"))
            fcfg = config.fields.get(name)
            if fcfg is None:
                return {name: d.get("value")}  # a built-in attribute such as priority
            if system not in fcfg.sync_to and system != fcfg.owner:
                return {}  # a system never receives a field it does not read
            return {fcfg.remote_name(system, name): d.get("value")}
    return {}


def ticket_systems(config: Config, record: Record) -> list[str]:
    """The configured systems that hold this ticket (where its side effects land)."""
    return [s for s in record.links if s in config.connectors and "ticket" in config.connectors[s].kinds]


def queue_effects(
    state: EffectState, config: Config, record: Record, decisions: Iterable[Decision], now: datetime, run: str
) -> int:
    """Audit every decision and queue each side effect once; returns how many writes were queued."""
    queued = 0
    for decision in decisions:
        key = decision.detail.get("key")
        detail = {k: v for k, v in decision.detail.items() if k != "key"}
        state.audit(at=decision.at or now, run=run, record_id=record.id, field=detail.get("field"),
                    before=None, after=_jsonable(detail), origin="bridge", rule=decision.rule, kind="decision",
                    response=decision.decision)
        if decision.decision not in SIDE_EFFECTS or not key:
            continue
        if not state.claim_effect(str(key), record.id, decision.decision, decision.at or now):
            continue  # taken before: a retry or a rebuild does not repeat it
        for system in ticket_systems(config, record):
            fields = effect_fields(config, system, record, decision)
            if fields:
                state.enqueue(Write(system, record.kind, record.id, record.links.get(system), fields), now)
                queued += 1
    return queued


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return format_time(value)
    return value


def snapshot(record: Record) -> dict[str, Any]:
    """Path -> value of a ticket (for ``changed``, ``from`` and ``to`` conditions on the next event)."""
    out: dict[str, Any] = {f"ticket.{k}": v for k, v in record.attrs.items() if not isinstance(v, dict | list)}
    out.update({f"ticket.{n}": fv.value for n, fv in record.fields.items()})
    out["ticket.tags"] = list(record.tags)
    return out


def change_event(change: Change, created: bool) -> dict[str, Any]:
    """The replay-style event a Change amounts to (the Desk reads its type and author)."""
    if created:
        return {"type": "ticket.created"}
    if "message" in change.attrs:
        return {"type": "ticket.message", "author": change.attrs.get("last_author", "customer")}
    if set(change.attrs) == {"status"} and not change.fields and change.tags is None:
        return {"type": "ticket.status", "status": change.attrs["status"]}
    return {"type": "ticket.updated"}


class LiveRules:
    """The Desk of a running daemon, registered on the plugin host as the ``evaluate_rules`` implementation."""

    def __init__(self, config: Config, base_dir: Path | None = None) -> None:
        self.config = config
        self.desk = Desk(config, base_dir=base_dir)
        self.lock = threading.Lock()  # webhooks and scheduled jobs share one Desk
        self._previous: dict[str, dict[str, Any]] = {}
        self._seen: set[str] = set()
        self.records: dict[str, Record] = {}  # the newest copy of each open ticket the Desk has seen

    @hookimpl
    def evaluate_rules(self, record: Record, change: Change, now: datetime) -> list[Decision]:
        """Run the Desk on a ticket the pipeline just changed (see :meth:`on_change`)."""
        if record.kind != "ticket":
            return []
        return self.on_change(record, change, change.at)

    def on_change(self, record: Record, change: Change, at: datetime) -> list[Decision]:
        """Feed one ticket change to the Desk; returns its decisions (the caller queues their effects)."""
        with self.lock:
            created = record.id not in self._seen
            self._seen.add(record.id)
            record.attrs.setdefault("created_at", at)
            previous = self._previous.get(record.id, {})
            decisions = self.desk.on_ticket(record, previous, change_event(change, created), at)
            if record.attrs.get("status") == "closed":
                self._drop(record.id)
            else:
                self._previous[record.id] = snapshot(record)
                self.records[record.id] = record
            return decisions

    def _drop(self, record_id: str) -> None:
        self._previous.pop(record_id, None)
        self._seen.discard(record_id)
        self.records.pop(record_id, None)
        self.desk.forget(record_id)

    def tick(self, now: datetime) -> list[tuple[Record, list[Decision]]]:
        """Fire every timer due by ``now``; returns each touched ticket (as the Desk left it) with its decisions."""
        with self.lock:
            decisions = self.desk.advance(now)
            touched: dict[str, list[Decision]] = {}
            for d in decisions:
                touched.setdefault(d.record_id, []).append(d)
            out = [(self.records[rid], ds) for rid, ds in touched.items() if rid in self.records]
            for record, _ds in out:
                if record.attrs.get("status") == "closed":
                    self._drop(record.id)
            return out

    def rebuild(self, changes: Iterable[tuple[str, Mapping[str, str], Change]]) -> int:
        """Rebuild the Desk from stored ticket changes ``(record id, links, change)`` in time order.

        The changes run through a private pipeline so each reaches the Desk with the ticket as it was then;
        the decisions are dropped here (their effects were queued when they were first taken, and their keys
        stop a second queuing anyway). Returns how many changes were fed.
        """
        mem = MemoryState(keep_audit=False)
        pipeline = Pipeline(self.config, None, run="rebuild")
        fed = 0
        for record_id, links, change in sorted(changes, key=lambda item: item[2].at):
            if mem.load(record_id) is None:
                mem.create_record("ticket", record_id)
                for system, external in links.items():
                    mem.link(record_id, system, "ticket", external)
            outcome = pipeline.process(mem, change, change.at)
            self.on_change(outcome.record, change, change.at)
            fed += 1
        return fed
