"""One sync pass: pull changes from systems into the store, push the outbox to each system.

Pulling: a page's changes, the writes they cause and the advanced cursor commit in one transaction, so a
crash repeats a page rather than losing it (and a repeated page is harmless: its values are unchanged or
echoes by the shadows). A dry run runs the same code in one transaction that is rolled back and pushes
nothing.

Pushing: claimed outbox rows are grouped per (system, kind) and merged per record, then checked against the
store right before the call: a value the record no longer has (a later write carries the newer one) or one
the system is known to hold already is not sent, and the record's link in that system is used even when it
appeared after the write was queued (no duplicate creates). Batches are at most the connector's
``batch_max``; every write gets its own result. A batch that raises is split in halves until the poison
write is alone; a write that keeps failing is retried with backoff (never before the vendor's Retry-After)
and, after ``outbox_max_attempts`` tries or a refusal for good, goes to the dead letter with the vendor's
reason. Every push result goes to the audit log with the vendor's response. Shadows and audit commit before
the outbox row is marked done, so a crash in between makes the next push see the write as already there.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.connector import Connector, Cursor, PullPage, PushResult
from bridge.effects import EFFECT_FIELDS, EffectWrite, attr_shadow, is_event
from bridge.errors import (
    ConnectorAuthError,
    ConnectorError,
    ConnectorStartError,
    FatalConnectorError,
    IdentityError,
    SkippableRecordError,
)
from bridge.errors import RetriableConnectorError as Retriable
from bridge.fields import FieldType, equal
from bridge.model import BRIDGE, Change, Record, Write, utcnow
from bridge.ownership import ATTR_TYPE, SHADOWED_ATTRS, Shadow, attr_value
from bridge.pipeline import Conflict, Outcome, Pipeline, PlannedWrite
from bridge.plugins import PluginHost
from bridge.settings import Config
from bridge.store import OutboxItem, Store, Tx

log = logging.getLogger("bridge.sync")
# errors a malformed record can cause in the pipeline; anything else (the database, a crash) stops the page
BAD_DATA = (ValueError, TypeError, KeyError, AttributeError, LookupError, ArithmeticError)

Clock = Callable[[], datetime]
MAX_ROUNDS = 1000  # claim rounds per push: a guard, far above what one pass needs
# the kinds a ticket reads (its account, its requester): pulled first, so that a ticket of the same pass finds
# them, whatever order the config lists kinds or connectors in
CONTEXT_KINDS = ("account", "contact")


def pull_order(kinds: list[str]) -> list[str]:
    """``kinds`` as a pass pulls them: accounts, then contacts, then the rest in the order given."""
    rank = {kind: i for i, kind in enumerate(CONTEXT_KINDS)}
    return sorted(kinds, key=lambda kind: rank.get(kind, len(CONTEXT_KINDS)))


def systems_order(config: Config, names: list[str]) -> list[str]:
    """``names`` as a pass pulls them: the systems that carry accounts or contacts and no tickets (the CRMs)
    first, then the others, each group in the order given."""
    def helpdesk(name: str) -> bool:
        table = config.connectors.get(name)
        kinds = table.kinds if table is not None else []
        return "ticket" in kinds or not any(k in CONTEXT_KINDS for k in kinds)

    return sorted(names, key=helpdesk)


class _RollBack(Exception):
    """Raised inside a dry run's transaction so that it rolls back."""


@dataclass
class Ambiguity:
    """A change that matched several records (or a record of the same system): nothing was written."""

    system: str
    kind: str
    external_id: str
    candidates: list[str]
    reason: str


@dataclass
class SyncReport:
    """What one pass did, for the CLI summary and tests."""

    run: str = ""
    dry_run: bool = False
    pulled: int = 0
    records_created: int = 0
    fields_set: int = 0
    echoes: int = 0
    deletes: int = 0
    writes_queued: int = 0
    pushed: int = 0
    push_calls: int = 0
    skipped: int = 0
    failed: int = 0
    deferred: int = 0
    dead: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    plan: list[PlannedWrite] = field(default_factory=list)
    ambiguous: list[Ambiguity] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unmapped_tags: dict[str, int] = field(default_factory=dict)


@dataclass
class Backoff:
    """Exponential backoff with jitter for outbox retries; a vendor's Retry-After is a floor."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> timedelta:
        """The wait after failed try number ``attempt`` (1-based)."""
        ceiling = min(self.cap.total_seconds(), self.base.total_seconds() * 2 ** max(0, attempt - 1))
        wait = self.rng.uniform(ceiling / 2, ceiling)
        return timedelta(seconds=max(wait, retry_after or 0.0))


@dataclass
class _Pending:
    """One write about to be pushed: the merged outbox rows of one record."""

    items: list[OutboxItem]
    write: Write
    names: dict[str, str]  # remote name -> field name

    @property
    def attempts(self) -> int:
        return max(i.attempts for i in self.items)


class _Stop(Exception):
    """Stop pushing to this system for now (rate limited, down, credentials refused)."""

    def __init__(self, error: ConnectorError, retry_after: float | None, rest: list[_Pending]) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.rest = rest


class Syncer:
    """Pulls and pushes for configured systems against one store.

    :param connectors: the connector instance of a system name (``App.connector``).
    :param clock: the injected clock (aware UTC).
    :param max_attempts: tries before a write goes to the dead letter (``[bridge] outbox_max_attempts``).
    :param lease: how long a claimed write is reserved; a push that dies is repeated after it.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        connectors: Callable[[str], Connector],
        host: PluginHost | None = None,
        clock: Clock = utcnow,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        lease: timedelta = timedelta(minutes=5),
        claim_limit: int = 10_000,
        run: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.connectors = connectors
        self.host = host
        self.clock = clock
        self.max_attempts = max_attempts or config.bridge.outbox_max_attempts
        self.backoff = backoff or Backoff()
        self.lease = lease
        self.claim_limit = claim_limit
        self.run_id = run or uuid.uuid4().hex[:12]
        self.pipeline = Pipeline(config, host, run=self.run_id)
        self.types = config.field_types()
        self._held: set[str] = set()  # records whose write failed in this push round: later ones wait

    # ---------------------------------------------------------------- pass

    def sync(self, systems: list[str] | None = None, dry_run: bool = False) -> SyncReport:
        """One pass: pull ``systems`` (default: every enabled one), then push every enabled system's outbox.

        A dry run pulls through the same pipeline in one transaction that is rolled back, pushes nothing,
        and returns the plan.
        """
        report = SyncReport(run=self.run_id, dry_run=dry_run)
        enabled = [n for n, c in self.config.connectors.items() if c.enabled]
        names = systems_order(self.config, systems or enabled)
        if dry_run:
            with self._dry() as tx:
                for name in names:
                    self._pull(name, report, tx)
                self._settle_plan(tx, report)
            return report
        for name in names:
            self.pull(name, report)
        with self.store.session() as tx:
            self._settle_plan(tx, report)
        self.push_all(report)
        return report

    def _settle_plan(self, tx: Tx, report: SyncReport) -> None:
        """Leave out of the plan the field writes the push will not send, as it will judge them after the
        pass's pulls: a value the record no longer has (a later write carries the newer one), or one the
        system was seen to hold already (pulled after the write was queued)."""
        kept = []
        loaded: dict[str, Record | None] = {}  # (a record's fields are planned together: loaded once)
        for planned in report.plan:
            ft = self.types.get(planned.field)
            if ft is not None:
                if planned.record_id not in loaded:
                    loaded[planned.record_id] = tx.load(planned.record_id)
                record = loaded[planned.record_id]
                shadow = Shadow.load(tx.shadow(planned.record_id, planned.field, planned.system))
                if record is not None and _moot(ft, record, planned.field, planned.system, shadow,
                                                planned.new) is not None:
                    continue
            kept.append(planned)
        report.plan[:] = kept

    def push_all(self, report: SyncReport) -> None:
        """Push the outbox of every enabled system (a read-only one has its writes settled)."""
        for name, table in self.config.connectors.items():
            if table.enabled:
                self.push(name, report)

    @contextmanager
    def _dry(self) -> Iterator[Tx]:
        try:
            with self.store.session() as tx:
                yield tx
                raise _RollBack
        except _RollBack:
            pass

    # ---------------------------------------------------------------- pull

    def pull(self, system: str, report: SyncReport, dry_run: bool = False) -> None:
        """Pull every configured kind of ``system``; each page commits with its cursor (or, dry, nothing)."""
        if dry_run:
            with self._dry() as tx:
                self._pull(system, report, tx)
        else:
            self._pull(system, report, None)

    def _started(self, system: str, report: SyncReport, what: str) -> Connector | None:
        """The connector of ``system``, or None when it failed to start for a cause of its own: one problem of
        that system, the others go on. A problem of the config (a secret not set) is raised: it stops the
        command."""
        try:
            return self.connectors(system)
        except ConnectorStartError as exc:
            report.problems.append(f"{what} {exc}")
            log.error("%s %s", what, exc)
            log.debug("%s %s: the connector's start", what, system, exc_info=True)  # (-v: where it failed)
            return None

    def _pull(self, system: str, report: SyncReport, tx: Tx | None) -> None:
        conn = self._started(system, report, "pull")
        if conn is None:
            return
        kinds = pull_order([k for k in self.config.connectors[system].kinds if k in conn.kinds])
        for kind in kinds:
            try:
                self._pull_kind(conn, system, kind, report, tx)
            except (ConnectorAuthError, FatalConnectorError) as exc:
                report.problems.append(f"pull {system} {kind}: {exc}")
                log.error("pull %s %s: %s", system, kind, exc)
                return
            except Retriable as exc:
                report.problems.append(f"pull {system} {kind}: {exc} (retried on the next pass)")
                log.warning("pull %s %s: %s", system, kind, exc)
            except ConnectorError as exc:
                report.problems.append(f"pull {system} {kind}: {exc}")
                log.warning("pull %s %s: %s", system, kind, exc)

    def _pull_kind(self, conn: Connector, system: str, kind: str, report: SyncReport, tx: Tx | None) -> None:
        if tx is None:
            with self.store.session() as t:
                stored = t.cursor(system, kind)
        else:
            stored = tx.cursor(system, kind)
        for page in conn.pull(kind, Cursor.loads(stored)):
            if tx is not None:
                self._page(tx, system, kind, page, report)
                continue
            with self.store.session() as t:
                done = self._page(t, system, kind, page, report)
            if self.host is not None:
                for change, outcome in done:
                    self.host.change_processed(outcome.record, change, outcome.decisions)

    def _page(
        self, tx: Tx, system: str, kind: str, page: PullPage, report: SyncReport
    ) -> list[tuple[Change, Outcome]]:
        done: list[tuple[Change, Outcome]] = []
        for problem in page.problems:
            report.problems.append(f"pull {system} {kind}: {problem}")
            log.warning("pull %s %s: %s", system, kind, problem)
        for change in page.changes:
            if change.system != system or change.kind != kind:
                raise FatalConnectorError(
                    f"pull of {kind} returned a change of {change.system} {change.kind} {change.external_id}",
                    system=system,
                )
            now = self.clock()
            if self.pipeline.tombstone(tx, change):
                log.info("pull %s %s: %s was deleted there before bridge had it: left alone", system, kind,
                         change.external_id)
                continue
            try:
                with tx.savepoint():
                    outcome = self.pipeline.process(tx, change, now)
            except BAD_DATA as exc:
                # one bad record must not fail its page: it is kept in the change log, reported and skipped
                self._quarantine(tx, change, exc, report, now)
                continue
            except IdentityError as exc:
                report.problems.append(str(exc))
                report.ambiguous.append(Ambiguity(system, kind, change.external_id, exc.candidates, str(exc)))
                tx.audit(
                    at=now,
                    run=self.run_id,
                    record_id=None,
                    field=None,
                    before=None,
                    after={
                        "system": system,
                        "kind": kind,
                        "external_id": change.external_id,
                        "candidates": exc.candidates,
                    },
                    origin=system,
                    rule="identity: ambiguous, nothing written",
                    kind="decision",
                    response=str(exc),
                )
                continue
            done.append((change, outcome))
            self._count(outcome, report)
        tx.set_cursor(system, kind, page.cursor.dumps())
        return done

    def _quarantine(self, tx: Tx, change: Change, exc: Exception, report: SyncReport, now: datetime) -> None:
        where = f"{change.system} {change.kind} {change.external_id}"
        report.problems.append(f"{where}: not processed: {type(exc).__name__}: {exc}")
        log.error("%s: not processed", where, exc_info=exc)
        tx.add_change(change, None, now)
        tx.audit(
            at=now,
            run=self.run_id,
            record_id=None,
            field=None,
            before=None,
            after={"system": change.system, "kind": change.kind, "external_id": change.external_id},
            origin=change.system,
            rule="quarantined: the change is kept in the change log, unprocessed",
            kind="decision",
            response=f"{type(exc).__name__}: {exc}",
        )

    def _count(self, outcome: Outcome, report: SyncReport) -> None:
        report.pulled += 1
        report.records_created += int(outcome.created)
        report.fields_set += sum(1 for d in outcome.decisions if d.decision == "set_field")
        report.echoes += outcome.echoes
        report.deletes += int(outcome.deleted is not None)
        report.writes_queued += len(outcome.writes)
        report.conflicts.extend(outcome.conflicts)
        report.plan.extend(outcome.plan)
        report.problems.extend(outcome.problems)
        for tag in outcome.record.tags:
            if not self.pipeline.mapper.apply([tag]):
                report.unmapped_tags[tag] = report.unmapped_tags.get(tag, 0) + 1

    # ---------------------------------------------------------------- push

    def push(self, system: str, report: SyncReport, limit: int | None = None) -> None:
        """Push the due writes of ``system`` in batches of the connector's ``batch_max``."""
        conn = self._started(system, report, "push")
        if conn is None:
            return
        size = limit or self.claim_limit
        if not conn.accepts_writes():
            self._settle_read_only(system, report)
            return
        for _ in range(MAX_ROUNDS):
            items = self.store.claim(system, None, size, self.clock(), self.lease)
            if not items:
                return
            if not self._push_claimed(conn, items, report) or len(items) < size:
                return

    def _settle_read_only(self, system: str, report: SyncReport) -> None:
        """A read-only source never receives writes: anything queued for it is settled as skipped."""
        items = self.store.claim(system, None, self.claim_limit, self.clock(), self.lease)
        if items:
            reason = {"skipped": f"{system} takes no writes (its connector is read-only)"}
            self.store.complete([(i.id, None, reason) for i in items], self.clock())
            report.skipped += len(items)

    def _push_claimed(self, conn: Connector, items: list[OutboxItem], report: SyncReport) -> bool:
        by_kind: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in items:
            by_kind[item.kind].append(item)
        prepared = [
            (kind, self._prepare(conn.system, kind, group, report)) for kind, group in by_kind.items()
        ]
        size = max(1, conn.batch_max)
        self._held = set()
        for n, (kind, pendings) in enumerate(prepared):
            batches = [
                b
                for wave in _waves(pendings)
                for b in (wave[i : i + size] for i in range(0, len(wave), size))
            ]
            for b, batch in enumerate(batches):
                batch = self._hold_after_failure(batch, report)
                if not batch:
                    continue
                try:
                    self._send(conn, kind, batch, report)
                except _Stop as stop:
                    rest = stop.rest + [p for later in batches[b + 1 :] for p in later]
                    rest += [p for _k, ps in prepared[n + 1 :] for p in ps]
                    self._defer(rest, stop.error, stop.retry_after, report)
                    return False
        return True

    def _prepare(self, system: str, kind: str, items: list[OutboxItem], report: SyncReport) -> list[_Pending]:
        """Merge rows per record and keep only what the system still needs, as the store says now.

        A record's field writes merge into one write (the last value wins); each event-type side effect
        (:data:`bridge.effects.EVENT_FIELDS`) stays a write of its own with its row's key. A record's writes
        keep the order of their first rows.
        """
        by_record: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in items:
            by_record[item.record_id].append(item)
        remote = self.pipeline.remote_map(system, kind)
        out: list[_Pending] = []
        settled: list[tuple[int, str | None, Any]] = []
        now = self.clock()
        with self.store.session() as tx:
            for rid, group in by_record.items():
                record = tx.load(rid)
                why = "the record is gone" if record is None else self.pipeline.blocked(record, system)
                values = [i for i in group if not is_event(i.fields, remote)]
                pieces = [[i] for i in group if is_event(i.fields, remote)]
                if values:
                    pieces.append(values)
                pieces.sort(key=lambda rows: rows[0].id)
                for rows in pieces:
                    pending = self._keep(tx, system, kind, record, why, rows, remote, now)
                    if isinstance(pending, _Pending):
                        out.append(pending)
                    else:
                        settled.extend((i.id, None, {"skipped": pending}) for i in rows)
        if settled:
            self.store.complete(settled, now)
            report.skipped += len(settled)
        return out

    def _keep(
        self,
        tx: Tx,
        system: str,
        kind: str,
        record: Record | None,
        why: str | None,
        rows: list[OutboxItem],
        remote: dict[str, str],
        now: datetime,
    ) -> _Pending | str:
        """The write ``rows`` of one record still make (merged), or why nothing is sent (audited)."""
        rid = rows[0].record_id
        merged: dict[str, Any] = {}
        for item in rows:
            merged.update(item.fields)
        keep: dict[str, Any] = {}
        names: dict[str, str] = {}
        dropped: dict[str, str] = {}
        for rname, value in merged.items() if why is None else ():
            assert record is not None
            name = remote.get(rname)
            if name is None and rname in EFFECT_FIELDS:
                if rname in SHADOWED_ATTRS:
                    # an attribute the rules set: what the record holds now is what goes (a person changed
                    # it since in the helpdesk: the older value is superseded, never pushed over theirs)
                    held = list(record.tags) if rname == "tags" else record.attrs.get(rname)
                    same = equal(ATTR_TYPE, attr_value(rname, value), attr_value(rname, held))
                    if rname == "tags" and not same:
                        value = held  # (the tags as they are now: the helpdesk's own edits and bridge's)
                        attr_shadow(tx, rid, system, rname, value, now, "sent")
                    elif not same:
                        dropped[rname] = "superseded by the record's newer value"
                        attr_shadow(tx, rid, system, rname, value, now, "dropped")
                        continue
                keep[rname] = value  # a rule's side effect, queued once under its own key
                continue
            if name is None or system not in self.config.fields[name].sync_to:
                dropped[rname] = f"{system} does not receive it"
                continue
            ft = self.types[name]
            shadow = Shadow.load(tx.shadow(rid, name, system))
            moot = _moot(ft, record, name, system, shadow, value)
            if moot is not None:
                dropped[rname] = moot
                if shadow.known and equal(ft, shadow.held, value):
                    shadow.confirm(ft, value)
                    tx.set_shadow(rid, name, system, shadow.dump(), now)
                continue
            keep[rname] = value
            names[rname] = name
        if keep:
            assert record is not None
            external = record.links.get(system) or next((i.external_id for i in rows if i.external_id), None)
            if len(rows) == 1 and is_event(rows[0].fields, remote):
                # the row's key (its decision's) travels with the event to the vendor
                return _Pending(rows, EffectWrite(system, kind, rid, external, keep, rows[0].key), names)
            return _Pending(rows, Write(system, kind, rid, external, keep), names)
        reason = why or "; ".join(f"{k}: {v}" for k, v in dropped.items()) or "nothing to send"
        tx.audit(
            at=now,
            run=self.run_id,
            record_id=rid,
            field=None,
            before=None,
            after=merged,
            origin=BRIDGE,
            rule=f"not sent to {system}: {reason}",
            kind="write",
        )
        return reason

    def _send(self, conn: Connector, kind: str, batch: list[_Pending], report: SyncReport) -> None:
        report.push_calls += 1
        try:
            try:
                results = conn.push(kind, [p.write for p in batch])
            except (ConnectorError, ValueError):
                raise
            except Exception as exc:  # a connector bug or an OS error: stop this system, keep the writes
                raise FatalConnectorError(f"{type(exc).__name__}: {exc}", system=conn.system) from exc
        except Retriable as exc:
            self._failed(batch, str(exc), report, final=False, retry_after=exc.retry_after)
            raise _Stop(exc, exc.retry_after, []) from exc
        except (ConnectorAuthError, FatalConnectorError) as exc:
            report.problems.append(f"push {conn.system} {kind}: {exc}")
            raise _Stop(exc, None, list(batch)) from exc
        except (ConnectorError, ValueError) as exc:
            if len(batch) == 1:
                self._failed(batch, str(exc), report, final=isinstance(exc, SkippableRecordError))
                return
            halves = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]  # isolate the poison write
            for n, half in enumerate(halves):
                try:
                    self._send(conn, kind, half, report)
                except _Stop as stop:
                    stop.rest.extend(p for later in halves[n + 1 :] for p in later)
                    raise
            return
        self._settle(conn.system, batch, results, report)

    def _settle(
        self, system: str, batch: list[_Pending], results: list[PushResult], report: SyncReport
    ) -> None:
        if len(results) == len(batch) and all(
            r.record_id == p.write.record_id for p, r in zip(batch, results, strict=True)
        ):
            paired: list[tuple[_Pending, PushResult | None]] = list(zip(batch, results, strict=True))
        else:
            by_record = {r.record_id: r for r in results}
            paired = [(p, by_record.get(p.write.record_id)) for p in batch]
        done = [(p, r) for p, r in paired if r is not None and r.ok]
        now = self.clock()
        completed: list[tuple[int, str | None, Any]] = []
        with self.store.session() as tx:
            for p, r in done:
                assert r is not None
                w = p.write
                if (
                    r.external_id
                    and w.external_id is None
                    and tx.links_of(w.record_id).get(system) is None
                    and tx.record_id_for(system, w.kind, r.external_id) is None
                ):
                    tx.link(w.record_id, system, w.kind, r.external_id)
                elif (
                    r.refiled
                    and r.external_id
                    and w.external_id
                    and r.external_id != w.external_id
                    and tx.links_of(w.record_id).get(system) == w.external_id
                    and tx.record_id_for(system, w.kind, r.external_id) is None
                ):
                    # a record deleted in the system was made anew there (a tracker's product ticket): the
                    # record follows it
                    tx.relink(w.record_id, system, w.kind, r.external_id)
                for rname, value in w.fields.items():
                    if rname not in p.names:
                        if rname in SHADOWED_ATTRS:  # an attribute the rules wrote: the system holds it now
                            attr_shadow(tx, w.record_id, system, rname, value, now, "landed")
                        continue  # a side effect: no shadow to keep
                    name = p.names[rname]
                    shadow = Shadow.load(tx.shadow(w.record_id, name, system))
                    shadow.confirm(self.types[name], value)
                    tx.set_shadow(w.record_id, name, system, shadow.dump(), now)
                response = _response(r, w)
                tx.audit(
                    at=now,
                    run=self.run_id,
                    record_id=w.record_id,
                    field=None,
                    before=None,
                    after=w.fields,
                    origin=BRIDGE,
                    rule=f"pushed to {system}",
                    kind="write",
                    response=response,
                )
                completed.extend((i.id, r.external_id, response) for i in p.items)
        if completed:
            self.store.complete(completed, now)
            report.pushed += len(done)
        skipped = [(p, r) for p, r in paired if r is not None and not r.ok and r.skipped]
        if skipped:
            self._skipped(skipped, report)
        paused: PushResult | None = None
        for p, got in paired:
            if got is not None and not got.ok and got.skipped:
                continue
            if got is None:
                self._failed(
                    [p], f"{system}: the connector returned no result for this write", report, final=False
                )
            elif not got.ok:
                self._failed(
                    [p], got.error or f"{system}: refused without a reason", report, final=not got.retriable,
                    retry_after=got.retry_after if got.retriable else None,
                )
                if got.retriable and got.retry_after is not None:
                    paused = got
        if paused is not None:
            # a part of the call was rate-limited after the rest landed (a batch sent apart): the vendor's
            # wait holds for the system's next calls too, as when a whole call is
            error = Retriable(f"rate limited for {paused.retry_after:g} s (Retry-After)", system=system,
                              retry_after=paused.retry_after)
            raise _Stop(error, paused.retry_after, [])

    def _failed(
        self,
        batch: list[_Pending],
        error: str,
        report: SyncReport,
        final: bool,
        retry_after: float | None = None,
    ) -> None:
        now = self.clock()
        plan: list[tuple[_Pending, datetime | None]] = []
        with self.store.session() as tx:
            for p in batch:
                dead = final or p.attempts >= self.max_attempts
                retry_at = None if dead else now + self.backoff.delay(p.attempts, retry_after)
                plan.append((p, retry_at))
                w = p.write
                if dead:
                    self._withdraw(tx, p, now)
                tx.audit(
                    at=now,
                    run=self.run_id,
                    record_id=w.record_id,
                    field=None,
                    before=None,
                    after=w.fields,
                    origin=BRIDGE,
                    kind="write",
                    rule=f"push to {w.system} " + ("dead-lettered" if dead else f"failed, try {p.attempts}"),
                    response={
                        "error": error,
                        "key": w.idempotency_key,
                        "retry_at": retry_at.isoformat() if retry_at else None,
                    },
                )
        for p, retry_at in plan:
            self._held.add(p.write.record_id)
            for item in p.items:
                self.store.fail(item.id, error, now, retry_at)
            if retry_at is None:
                report.dead += 1
                log.warning("write to %s record %s is dead: %s", p.write.system, p.write.record_id, error)
            else:
                report.failed += 1

    def _withdraw(self, tx: Tx, p: _Pending, now: datetime) -> None:
        """The values of a write that will not land, each row's (a merged write carries only the last of a
        field's): the next change of the field queues it again, none is taken for held there."""
        w = p.write
        for fields in [item.fields for item in p.items] + [w.fields]:
            for rname, value in fields.items():
                if rname not in w.fields:
                    continue  # (left out of the write when it was made: judged then)
                if rname not in p.names:
                    if rname in SHADOWED_ATTRS:
                        attr_shadow(tx, w.record_id, w.system, rname, value, now, "dropped")
                    continue
                name = p.names[rname]
                shadow = Shadow.load(tx.shadow(w.record_id, name, w.system))
                shadow.withdraw(self.types[name], value)
                tx.set_shadow(w.record_id, name, w.system, shadow.dump(), now)

    def _skipped(self, done: list[tuple[_Pending, PushResult]], report: SyncReport) -> None:
        """Writes a system could not take for a record it does not hold (:attr:`PushResult.skipped`)."""
        now = self.clock()
        completed: list[tuple[int, str | None, Any]] = []
        with self.store.session() as tx:
            for p, r in done:
                w = p.write
                self._withdraw(tx, p, now)
                reason = r.error or f"{w.system} does not hold this record"
                tx.audit(at=now, run=self.run_id, record_id=w.record_id, field=None, before=None,
                         after=w.fields, origin=BRIDGE, rule=f"not sent to {w.system}: {reason}",
                         kind="write")
                completed.extend((i.id, None, {"skipped": reason}) for i in p.items)
        self.store.complete(completed, now)
        report.skipped += sum(len(p.items) for p, _r in done)  # (rows, as the other skips count them)
        for p, r in done:
            log.info("write to %s record %s skipped: %s", p.write.system, p.write.record_id, r.error)

    def _hold_after_failure(self, batch: list[_Pending], report: SyncReport) -> list[_Pending]:
        """Keep back the writes of a record whose earlier write failed in this pass (they stay in order)."""
        held = [p for p in batch if p.write.record_id in self._held]
        if not held:
            return batch
        now = self.clock()
        retry_at = now + self.backoff.delay(1)
        for p in held:
            for item in p.items:
                self.store.fail(item.id, "deferred: an earlier write to the record failed", now, retry_at,
                                tried=False)
        report.deferred += len(held)
        return [p for p in batch if p.write.record_id not in self._held]

    def _defer(
        self, rest: list[_Pending], error: ConnectorError, retry_after: float | None, report: SyncReport
    ) -> None:
        if not rest:
            return
        now = self.clock()
        retry_at = now + self.backoff.delay(1, retry_after)
        for p in rest:
            for item in p.items:
                self.store.fail(item.id, f"deferred: {error}", now, retry_at, tried=False)
        report.deferred += len(rest)


def _moot(ft: FieldType, record: Record, name: str, system: str, shadow: Shadow, value: Any) -> str | None:
    """Why a queued value of field ``name`` will not be sent to ``system`` (the push and the plan judge it
    alike): the record no longer has it, or the system holds it already; None when it is to be sent."""
    fv = record.fields.get(name)
    if fv is None or not equal(ft, fv.value, value):
        return "superseded by the record's newer value"
    if shadow.known and equal(ft, shadow.held, value):
        return f"{system} holds it already"
    return None


def _waves(pendings: list[_Pending]) -> list[list[_Pending]]:
    """Pendings in waves: each record's first write, then each one's second ... (one per record a batch)."""
    waves: list[list[_Pending]] = []
    seen: dict[str, int] = defaultdict(int)
    for p in pendings:
        n = seen[p.write.record_id]
        seen[p.write.record_id] = n + 1
        if n == len(waves):
            waves.append([])
        waves[n].append(p)
    return waves


def _response(result: PushResult, write: Write) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": result.ok, "key": write.idempotency_key}
    if result.external_id:
        out["external_id"] = result.external_id
    if result.error:
        out["error"] = result.error
    vendor = result.response
    if vendor is not None:
        out["vendor"] = vendor
    return out

