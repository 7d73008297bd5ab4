"""Rules in the daemon: the Desk fed by every committed ticket change, its timers run by the scheduler.

The Desk keeps its state in memory. At start it is rebuilt from the store's change log (the same changes run
through a private pipeline on a virtual clock, as in replay), so SLA clocks, queues and capacity survive a
restart. Every side effect a decision causes (assign, escalate, set a field, follow up, close) is queued once:
its idempotency key is claimed in the transaction that queues its write, so a crash, a retry or a
rebuild never repeats it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.effects import queue_effects as queue_effects
from bridge.model import Change, Decision, Record
from bridge.pipeline import MemoryState, Pipeline
from bridge.plugins import hookimpl
from bridge.rules.conditions import path_values
from bridge.rules.engine import Desk
from bridge.settings import Config

log = logging.getLogger("bridge.rules")


def snapshot(record: Record) -> dict[str, Any]:
    """Path -> value of a ticket (for ``changed``, ``from`` and ``to`` conditions on the next event).

    A path it leaves out was blank (see :func:`bridge.rules.conditions.path_values`).
    """
    return path_values(record)


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
    """The Desk of a running daemon, registered on the plugin host to implement ``evaluate_rules``."""

    def __init__(self, config: Config, base_dir: Path | None = None) -> None:
        self.config = config
        self.desk = Desk(config, base_dir=base_dir)
        self.lock = threading.Lock()  # webhooks and scheduled jobs share one Desk
        self._previous: dict[str, dict[str, Any]] = {}
        self._seen: set[str] = set()
        self.records: dict[str, Record] = {}  # the newest copy of each open ticket the Desk has seen
        self.clock: datetime | None = None  # the Desk's time: calls reach it in time order

    @hookimpl
    def evaluate_rules(self, record: Record, change: Change, now: datetime) -> list[Decision]:
        """Run the Desk on a ticket the pipeline just changed (see :meth:`on_change`)."""
        if record.kind != "ticket":
            return []
        return self.on_change(record, change, change.at)

    def on_change(self, record: Record, change: Change, at: datetime) -> list[Decision]:
        """Feed one ticket change to the Desk; returns its decisions (the caller queues their effects)."""
        with self.lock:
            # a change dated before the Desk's clock (a late pull, old data) is taken at the clock's time
            at = at if self.clock is None else max(at, self.clock)
            self.clock = at
            created = record.id not in self._seen
            self._seen.add(record.id)
            record.attrs.setdefault("created_at", at)
            previous = self._previous.get(record.id, {})
            decisions = self.desk.on_ticket(record, previous, change_event(change, created), at)
            if record.attrs.get("status") == "closed":
                self._drop(record.id)
            else:
                if self.desk.reads_previous:  # kept only when a rule or policy reads changed/from/to
                    self._previous[record.id] = snapshot(record)
                self.records[record.id] = record
            return decisions

    def _drop(self, record_id: str) -> None:
        self._previous.pop(record_id, None)
        self._seen.discard(record_id)
        self.records.pop(record_id, None)
        self.desk.forget(record_id)

    def tick(self, now: datetime) -> list[tuple[Record, list[Decision]]]:
        """Fire every timer due by ``now``; returns each touched ticket (as the Desk left it), decisions."""
        with self.lock:
            now = now if self.clock is None else max(now, self.clock)
            self.clock = now
            decisions = self.desk.advance(now)
            touched: dict[str, list[Decision]] = {}
            for d in decisions:
                touched.setdefault(d.record_id, []).append(d)
            out = [(self.records[rid], ds) for rid, ds in touched.items() if rid in self.records]
            for record, _ds in out:
                if record.attrs.get("status") == "closed":
                    self._drop(record.id)
            return out

    def rebuild(
        self, changes: Iterable[tuple[str, Mapping[str, str], Change]], handled_until: datetime | None
    ) -> int:
        """Rebuild the Desk from stored ticket changes ``(record id, links, change)`` in processing order.

        The changes run through a private pipeline so each reaches the Desk with the ticket as it was then.
        Every decision taken while rebuilding is dropped, and so is every timer due by ``handled_until`` (the
        last tick the daemon committed): those were acted on before the restart. Timers due later fire on the
        next tick, and any effect they repeat is stopped by its key. Returns how many changes were fed.
        """
        mem = MemoryState(keep_audit=False)
        pipeline = Pipeline(self.config, None, run="rebuild")
        fed = 0
        for record_id, links, change in changes:
            if mem.load(record_id) is None:
                mem.create_record("ticket", record_id)
                for system, external in links.items():
                    mem.link(record_id, system, "ticket", external)
            outcome = pipeline.process(mem, change, change.at)
            self.on_change(outcome.record, change, change.at)
            fed += 1
        if handled_until is not None:
            self.tick(handled_until)
        return fed
