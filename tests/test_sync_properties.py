"""Property tests: three in-memory systems, random edits, pulls, pushes and crashes; the sync must converge.

Fields (kind ``account``):

- ``tier``: owner ``a``, owner_wins, synced to ``b`` and ``c`` (``a`` calls it ``Tier``);
- ``arr``: owner ``b``, owner_wins, synced to ``a`` and ``c``;
- ``note``: last_writer_wins, synced to all three.

Every value a user types is unique and names its system (``"b:17"``), so where a value came from is visible.
Crashes are an exception at a random call inside a transaction (pipeline, cursor, outbox, shadows), a push
that dies after the vendor applied the batch, or a push that dies right before the outbox marks it done.
After the random steps the crashes stop, time passes (leases and backoffs run out) and syncs run until nothing
moves. Then: every receiver holds the owner's value (and all agree on ``note``), no owner received its field,
every value of an owned field came from its owner, no write was an echo, no field went to a system outside its
``sync_to``, no record was created twice.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.sync import Syncer, SyncReport
from sync_support import Clock, Crash, CrashingStore, World, crashing_sqlite_store, make_config

SYSTEMS = ["a", "b", "c"]
FIELDS: dict[str, dict[str, Any]] = {
    "tier": {"type": "text", "kind": "account", "owner": "a", "sync_to": ["b", "c"], "remote": {"a": "Tier"}},
    "arr": {"type": "text", "kind": "account", "owner": "b", "sync_to": ["a", "c"]},
    "note": {
        "type": "text",
        "kind": "account",
        "owner": "a",
        "policy": "last_writer_wins",
        "sync_to": ["a", "b", "c"],
    },
}
OWNED = {"tier": "a", "arr": "b"}


def remote(system: str, name: str) -> str:
    return str(FIELDS[name].get("remote", {}).get(system, name))


RECEIVES = {s: {remote(s, n) for n, f in FIELDS.items() if s in f["sync_to"]} for s in SYSTEMS}

system = st.sampled_from(SYSTEMS)
op = st.one_of(
    st.tuples(st.just("create"), system),
    st.tuples(st.just("edit"), system, st.integers(0, 20), st.sampled_from(sorted(FIELDS))),
    st.tuples(st.just("edit"), system, st.integers(0, 20), st.sampled_from(sorted(FIELDS))),
    st.tuples(st.just("pull"), system),
    st.tuples(st.just("push"), system),
    st.tuples(st.just("sync")),
    st.tuples(st.just("tick"), st.integers(1, 20)),
)
crash = st.one_of(
    st.tuples(st.just("crash_tx"), st.integers(1, 120)),
    st.tuples(st.just("crash_push"), system),
    st.tuples(st.just("crash_complete"), system),
)


class Run:
    """One random history against one store."""

    def __init__(self, store: CrashingStore, batch_max: int, page_size: int) -> None:
        self.store = store
        self.world = World(SYSTEMS, batch_max=batch_max, page_size=page_size)
        self.config = make_config(FIELDS, SYSTEMS)
        self.clock = Clock()
        self.values = itertools.count(1)
        self.crashes = 0
        self.report = SyncReport()  # what every step reported (a crashed step's part is lost)
        self.syncer = self._syncer()

    def _syncer(self) -> Syncer:
        return Syncer(self.config, self.store, self.world.connector, clock=self.clock, max_attempts=50)

    def value(self, sys: str) -> str:
        return f"{sys}:{next(self.values)}"

    def step(self, step: tuple[Any, ...]) -> None:
        name = step[0]
        try:
            match name:
                case "create":
                    sys = step[1]
                    self.world[sys].create(fields={remote(sys, n): self.value(sys) for n in FIELDS})
                case "edit":
                    sys, index, fname = step[1], step[2], step[3]
                    ids = sorted(self.world[sys].records)
                    if ids:
                        self.world[sys].edit(ids[index % len(ids)], **{remote(sys, fname): self.value(sys)})
                case "pull":
                    self.syncer.pull(step[1], self.report)
                case "push":
                    self.syncer.push(step[1], self.report)
                case "sync":
                    self.absorb(self.syncer.sync())
                case "tick":
                    self.clock.advance(minutes=step[1])
                case "crash_tx":
                    self.store.crash_at = self.store.calls + step[1]
                    self.absorb(self.syncer.sync())
                case "crash_push":
                    self.world[step[1]].crash_after_apply = True
                    self.syncer.push(step[1], self.report)
                case "crash_complete":
                    self.store.crash_complete = True
                    self.syncer.push(step[1], self.report)
        except Crash:
            self.crashes += 1
            self.syncer = self._syncer()  # the process restarts: nothing in memory survives
        finally:
            self.store.crash_at = None
            self.store.crash_complete = False
            for vendor in self.world.vendors.values():
                vendor.crash_after_apply = False

    def absorb(self, report: SyncReport) -> None:
        self.report.conflicts.extend(report.conflicts)

    def settle(self) -> None:
        """Time passes, crashes stop, syncs run until nothing moves; then one more must move nothing."""
        for _ in range(10):
            self.clock.advance(hours=2)
            report = self.syncer.sync()
            self.absorb(report)
            if report.push_calls == 0 and report.writes_queued == 0 and not self.store.pending():
                break
        report = self.syncer.sync()
        assert report.push_calls == 0, report
        assert report.writes_queued == 0, report.plan
        assert report.conflicts == []

    def check(self, crashed: bool) -> None:
        world = self.world
        for conflict in self.report.conflicts:  # only a system's own users make conflicts, never our echoes
            assert str(conflict.value).startswith(f"{conflict.system}:"), conflict
            assert conflict.system != OWNED.get(conflict.field), conflict
        with self.store.session() as tx:
            records = list(tx.records("account"))
        linked: dict[tuple[str, str], str] = {}
        for record in records:
            for sys, ext in record.links.items():
                assert (sys, ext) not in linked, f"{sys} {ext} linked to two records"
                linked[(sys, ext)] = record.id
        for sys, vendor in world.vendors.items():
            for ext, held in vendor.records.items():
                assert (sys, ext) in linked, f"{sys} {ext} was never linked"
                if held.bridge_id is not None:
                    assert linked[(sys, ext)] == held.bridge_id
            created = [h.bridge_id for h in vendor.records.values() if h.bridge_id]
            assert len(created) == len(set(created)), f"{sys}: a record was created twice"
        for record in records:
            links = record.links
            for fname, owner in OWNED.items():
                if owner not in links:
                    continue
                truth = world[owner].value(links[owner], remote(owner, fname))
                if truth is None:
                    continue
                for receiver in FIELDS[fname]["sync_to"]:
                    assert receiver in links, f"{record.id}: {fname} never reached {receiver}"
                    got = world[receiver].value(links[receiver], remote(receiver, fname))
                    assert got == truth, (
                        f"{record.id}.{fname}: {receiver} has {got!r}, owner {owner} {truth!r}"
                    )
            notes = {s: world[s].value(links[s], "note") for s in FIELDS["note"]["sync_to"] if s in links}
            if any(v is not None for v in notes.values()):
                assert set(links) >= set(SYSTEMS)
                assert len(set(notes.values())) == 1, f"{record.id}: note disagrees: {notes}"
                assert record.value("note") == next(iter(notes.values()))
        for sys, vendor in world.vendors.items():
            for applied in vendor.applied:
                assert set(applied.fields) <= RECEIVES[sys], f"{sys} received {applied.fields}"
                for fname, owner in OWNED.items():
                    value = applied.fields.get(remote(sys, fname))
                    if value is not None:
                        assert sys != owner, f"owner {owner} received its own {fname}"
                        assert str(value).startswith(f"{owner}:"), (
                            f"{fname}={value} did not come from {owner}"
                        )
            assert vendor.echo_writes() == [], f"{sys}: echo writes {vendor.echo_writes()}"
            if not crashed:
                assert vendor.echo_fields() == [], f"{sys}: echo values {vendor.echo_fields()}"


def _store() -> CrashingStore:
    return crashing_sqlite_store(Path(tempfile.mkdtemp(prefix="bridge-prop-")))


def _run(steps: list[tuple[Any, ...]], batch_max: int, page_size: int) -> Run:
    store = _store()
    run = Run(store, batch_max, page_size)
    try:
        for step in steps:
            run.step(step)
        run.settle()
        run.check(crashed=run.crashes > 0)
    finally:
        store.close()
    return run


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(op, min_size=1, max_size=25),
    batch_max=st.integers(1, 4),
    page_size=st.integers(1, 4),
)
def test_random_histories_converge_without_echoes(
    steps: list[tuple[Any, ...]], batch_max: int, page_size: int
) -> None:
    _run([("create", "a"), *steps], batch_max, page_size)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.one_of(op, crash), min_size=1, max_size=25),
    batch_max=st.integers(1, 4),
    page_size=st.integers(1, 4),
)
def test_random_histories_with_crashes_converge(
    steps: list[tuple[Any, ...]], batch_max: int, page_size: int
) -> None:
    _run([("create", "a"), ("create", "b"), *steps], batch_max, page_size)


def test_a_crash_inside_the_pipeline_repeats_the_page() -> None:
    store = _store()
    try:
        run = Run(store, batch_max=10, page_size=10)
        run.step(("create", "a"))
        run.step(("crash_tx", 3))
        assert run.crashes == 1
        with store.session() as tx:
            assert list(tx.records("account")) == []  # the page rolled back whole
            assert tx.cursor("a", "account") is None
        run.settle()
        run.check(crashed=True)
    finally:
        store.close()


def test_a_push_that_dies_after_the_vendor_applied_it_is_repeated_not_lost() -> None:
    store = _store()
    try:
        run = Run(store, batch_max=10, page_size=10)
        run.step(("create", "a"))
        run.step(("pull", "a"))
        run.step(("crash_push", "b"))
        assert run.crashes == 1
        assert len(run.world["b"].applied) == 1
        run.settle()
        run.check(crashed=True)
        assert run.world["b"].repeats() <= 1
    finally:
        store.close()
