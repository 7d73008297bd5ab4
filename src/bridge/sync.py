"""One sync pass: pull changes from a system into the store, push the outbox to each system.

A pulled page's changes, the writes they cause and the advanced cursor commit in one transaction, so a crash
repeats a page rather than losing it. The pusher claims outbox rows, groups them per (system, kind) into batches
of the connector's ``batch_max``, records a result per record, splits a failing batch to isolate poison records,
retries passing failures with backoff and moves a write that keeps failing to the dead letter with the reason.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.connector import Connector, Cursor, PushResult
from bridge.errors import (
    ConnectorAuthError,
    ConnectorError,
    FatalConnectorError,
    IdentityError,
    RetriableConnectorError,
    SkippableRecordError,
)
from bridge.model import Change, Write, utcnow
from bridge.pipeline import Conflict, Pipeline, PlannedWrite
from bridge.plugins import PluginHost
from bridge.settings import Config
from bridge.store import OutboxItem, Store, Tx

log = logging.getLogger("bridge.sync")


class _RollBack(Exception):
    """Raised inside a dry run's transaction so that it rolls back."""

Clock = Callable[[], datetime]


@dataclass
class SyncReport:
    """What one pass did, for the CLI summary and tests."""

    pulled: int = 0
    records_created: int = 0
    fields_set: int = 0
    writes_queued: int = 0
    pushed: int = 0
    push_calls: int = 0
    failed: int = 0
    dead: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    plan: list[PlannedWrite] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unmapped_tags: dict[str, int] = field(default_factory=dict)


@dataclass
class Backoff:
    """Exponential backoff with full jitter for outbox retries."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> timedelta:
        """The wait before retry number ``attempt`` (1-based); a vendor's Retry-After is a floor."""
        ceiling = min(self.cap.total_seconds(), self.base.total_seconds() * 2 ** (attempt - 1))
        wait = self.rng.uniform(ceiling / 2, ceiling)
        return timedelta(seconds=max(wait, retry_after or 0.0))


class Syncer:
    """Pulls and pushes for configured systems against one store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        connectors: Callable[[str], Connector],
        host: PluginHost | None = None,
        clock: Clock = utcnow,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.connectors = connectors
        self.host = host
        self.clock = clock
        self.max_attempts = max_attempts or config.bridge.outbox_max_attempts
        self.backoff = backoff or Backoff()
        self.run_id = uuid.uuid4().hex[:12]
        self.pipeline = Pipeline(config, host, run=self.run_id)

    # ---------------------------------------------------------------- pull

    def pull(self, system: str, report: SyncReport, dry_run: bool = False) -> None:
        """Pull every configured kind of ``system``; each page commits with its cursor."""
        conn = self.connectors(system)
        kinds = [k for k in self.config.connectors[system].kinds if k in conn.kinds]
        for kind in kinds:
            with self.store.session() as tx:
                cursor = Cursor.loads(tx.cursor(system, kind))
            try:
                for page in conn.pull(kind, cursor):
                    self._page(system, kind, page.changes, page.cursor, report, dry_run)
            except (ConnectorAuthError, FatalConnectorError) as exc:
                report.problems.append(str(exc))
                log.error("%s", exc)
                return
            except RetriableConnectorError as exc:
                report.problems.append(f"{exc} (will retry on the next run)")
                log.warning("%s", exc)
                return
            except SkippableRecordError as exc:
                report.problems.append(str(exc))

    def _page(
        self, system: str, kind: str, changes: list[Change], cursor: Cursor, report: SyncReport, dry_run: bool
    ) -> None:
        try:
            with self.store.session() as tx:
                self._changes(tx, system, changes, report)
                tx.set_cursor(system, kind, cursor.dumps())
                if dry_run:
                    raise _RollBack
        except _RollBack:
            pass

    def _changes(self, tx: Tx, system: str, changes: list[Change], report: SyncReport) -> None:
        mapper = self.pipeline.mapper
        for change in changes:
            now = self.clock()
            try:
                outcome = self.pipeline.process(tx, change, now)
            except IdentityError as exc:
                report.problems.append(str(exc))
                tx.audit(at=now, run=self.run_id, record_id=None, field=None, before=None,
                         after=change.external_id, origin=system, rule="identity", kind="ambiguous",
                         response=str(exc))
                continue
            report.pulled += 1
            report.records_created += int(outcome.created)
            report.fields_set += sum(1 for d in outcome.decisions if d.decision == "set_field")
            report.writes_queued += len(outcome.writes)
            report.conflicts.extend(outcome.conflicts)
            report.plan.extend(outcome.plan)
            report.problems.extend(outcome.problems)
            for tag in outcome.record.tags:
                if not mapper.apply([tag]):
                    report.unmapped_tags[tag] = report.unmapped_tags.get(tag, 0) + 1

    # ---------------------------------------------------------------- push

    def push(self, system: str, report: SyncReport, limit: int = 10_000) -> None:
        """Push pending writes of ``system`` in batches of the connector's ``batch_max``."""
        conn = self.connectors(system)
        now = self.clock()
        items = self.store.claim(system, None, limit, now, timedelta(minutes=5))
        by_kind: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in items:
            by_kind[item.kind].append(item)
        for kind, group in by_kind.items():
            size = max(1, conn.batch_max)
            for start in range(0, len(group), size):
                try:
                    self._push_batch(conn, kind, group[start : start + size], report)
                except (ConnectorAuthError, FatalConnectorError) as exc:
                    report.problems.append(str(exc))
                    rest = [i for chunk in group[start:] for i in [chunk]]
                    for item in rest:
                        self.store.fail(item.id, str(exc), self.clock(), self.clock() + self.backoff.delay(1))
                    return

    def _push_batch(self, conn: Connector, kind: str, batch: list[OutboxItem], report: SyncReport) -> None:
        writes = [Write(i.system, i.kind, i.record_id, i.external_id, i.fields) for i in batch]
        report.push_calls += 1
        try:
            results = conn.push(kind, writes)
        except RetriableConnectorError as exc:
            for item in batch:
                self._retry(item, str(exc), report, exc.retry_after)
            return
        except (SkippableRecordError, ConnectorError, ValueError) as exc:
            if isinstance(exc, ConnectorAuthError | FatalConnectorError):
                raise
            if len(batch) == 1:
                self._retry(batch[0], str(exc), report, None, final=isinstance(exc, SkippableRecordError))
                return
            mid = len(batch) // 2  # split to isolate the poison record
            self._push_batch(conn, kind, batch[:mid], report)
            self._push_batch(conn, kind, batch[mid:], report)
            return
        if len(results) != len(batch):
            raise FatalConnectorError(f"push returned {len(results)} results for {len(batch)} writes",
                                      system=conn.system)
        done: list[tuple[int, str | None, Any]] = []
        for item, result in zip(batch, results, strict=True):
            if result.ok:
                done.append((item.id, result.external_id, None))
            else:
                self._retry(item, result.error or "refused", report, None, final=not result.retriable)
        if done:
            self.store.complete(done, self.clock())
            report.pushed += len(done)
            self._link(conn.system, batch, results)

    def _link(self, system: str, batch: list[OutboxItem], results: list[PushResult]) -> None:
        with self.store.session() as tx:
            for item, result in zip(batch, results, strict=True):
                if result.ok and result.external_id and not item.external_id:
                    tx.link(item.record_id, system, item.kind, result.external_id)

    def _retry(
        self, item: OutboxItem, error: str, report: SyncReport, retry_after: float | None, final: bool = False
    ) -> None:
        attempts = item.attempts + 1
        now = self.clock()
        if final or attempts >= self.max_attempts:
            self.store.fail(item.id, error, now, None)
            report.dead += 1
            log.warning("write %s to %s record %s is dead: %s", item.id, item.system, item.record_id, error)
        else:
            self.store.fail(item.id, error, now, now + self.backoff.delay(attempts, retry_after))
            report.failed += 1

    # ---------------------------------------------------------------- pass

    def sync(self, systems: list[str] | None = None, dry_run: bool = False) -> SyncReport:
        """One pass: pull every system, then push every system's outbox (pushing nothing on a dry run)."""
        report = SyncReport()
        names = systems or [n for n, c in self.config.connectors.items() if c.enabled]
        for name in names:
            self.pull(name, report, dry_run=dry_run)
        if not dry_run:
            for name in self.config.connectors:
                if self.config.connectors[name].enabled:
                    self.push(name, report)
        return report
