"""The sync pass on a real store (SQLite, PostgreSQL): batches, splits, retries, dead letters, dry run."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.connector import PushResult
from bridge.errors import ConnectorAuthError, RetriableConnectorError, SkippableRecordError
from bridge.pipeline import Pipeline
from bridge.store import Store, Tx
from bridge.sync import Backoff, Syncer, SyncReport
from sync_support import Clock, World, make_config, open_store, refuse_error


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, tmp_path) as s:
        yield s


FIELDS: dict[str, dict[str, Any]] = {
    "tier": {"type": "text", "kind": "account", "owner": "a", "sync_to": ["b"]},
    "arr": {"type": "number", "kind": "account", "owner": "a", "sync_to": ["b"]},
}


class Rig:
    """Two systems, a → b, on one store."""

    def __init__(self, store: Store, batch_max: int = 10, max_attempts: int = 3, **config: Any) -> None:
        self.store = store
        self.world = World(["a", "b"], batch_max=batch_max, page_size=7)
        self.config = make_config(config.pop("fields", FIELDS), ["a", "b"], **config)
        self.clock = Clock()
        self.syncer = Syncer(
            self.config,
            store,
            self.world.connector,
            clock=self.clock,
            max_attempts=max_attempts,
            backoff=Backoff(base=timedelta(seconds=30)),
        )

    @property
    def a(self) -> Any:
        return self.world["a"]

    @property
    def b(self) -> Any:
        return self.world["b"]

    def records(self, n: int) -> list[str]:
        return [self.a.create(fields={"tier": f"t{i}", "arr": i}) for i in range(n)]

    def later(self, **kw: float) -> None:
        self.clock.advance(**kw)


@pytest.mark.parametrize(("n", "batch_max"), [(25, 10), (10, 10), (1, 10), (7, 1)])
def test_writes_go_out_in_the_fewest_batches_and_a_resync_sends_nothing(
    store: Store, n: int, batch_max: int
) -> None:
    rig = Rig(store, batch_max=batch_max)
    rig.records(n)
    report = rig.syncer.sync()
    assert report.pulled == n and report.writes_queued == n and report.pushed == n
    assert rig.b.push_calls == report.push_calls == math.ceil(n / batch_max)
    assert sorted(h.fields["tier"] for h in rig.b.records.values()) == sorted(f"t{i}" for i in range(n))
    again = rig.syncer.sync()  # b's records changed (our writes): pulled, recognised, nothing sent
    assert again.pulled == n and again.writes_queued == 0 and again.push_calls == 0
    assert rig.b.echo_fields() == [] and store.pending() == []


def test_changes_writes_and_cursor_commit_together(store: Store) -> None:
    rig = Rig(store)
    rig.records(3)

    def broken_set_cursor(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("disk full")

    original = Tx.set_cursor
    Tx.set_cursor = broken_set_cursor  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            rig.syncer.pull("a", SyncReport())
    finally:
        Tx.set_cursor = original  # type: ignore[method-assign]
    with store.session() as tx:
        assert list(tx.records()) == [] and tx.cursor("a", "account") is None
    assert store.items() == []
    report = rig.syncer.sync()  # the page is repeated, not lost
    assert report.pulled == 3 and report.pushed == 3


def test_a_poison_write_is_isolated_by_splitting_and_dead_lettered_with_the_reason(store: Store) -> None:
    rig = Rig(store, batch_max=8, max_attempts=2)
    rig.records(8)
    original = rig.b.push

    def push(kind: str, writes: list[Any]) -> list[Any]:
        if any(w.fields.get("tier") == "t5" for w in writes):
            rig.b.push_calls += 1
            raise refuse_error("400 Bad Request: arr must be positive", "b")
        return original(kind, writes)

    rig.b.push = push
    first = rig.syncer.sync()
    assert first.pushed == 7 and first.failed == 1 and first.dead == 0
    assert first.push_calls == 1 + 2 + 2 + 2  # 8 → 4+4 → 2+2 → 1+1: the poison one alone
    rig.later(hours=1)
    second = rig.syncer.sync()
    assert second.dead == 1 and second.push_calls == 1
    [dead] = store.dead_letters("b")
    assert dead.fields == {"tier": "t5", "arr": 5} and "arr must be positive" in (dead.last_error or "")
    assert dead.attempts == 2
    with store.session() as tx:
        lines = tx.audit_for(dead.record_id)
    assert [line["rule"] for line in lines if line["rule"].startswith("push")] == [
        "push to b failed, try 1",
        "push to b dead-lettered",
    ]
    rig.b.push = original  # the vendor is fixed; the operator retries the dead letter
    assert store.retry_dead(None, rig.clock()) == 1
    third = rig.syncer.sync()
    assert third.pushed == 1 and store.dead_letters() == [] and rig.b.echo_fields() == []


def test_a_write_refused_for_good_is_dead_at_once_and_the_rest_of_the_batch_lands(store: Store) -> None:
    rig = Rig(store)
    rig.records(4)
    rig.b.refuse["t2"] = "INVALID_FIELD: tier t2 is not allowed"
    report = rig.syncer.sync()
    assert report.pushed == 3 and report.dead == 1 and report.push_calls == 1
    [dead] = store.dead_letters()
    assert dead.last_error == "INVALID_FIELD: tier t2 is not allowed"
    with store.session() as tx:  # the dead value is not counted as on its way: the next change re-sends
        assert tx.shadow(dead.record_id, "tier", "b") == (True, {})
    del rig.b.refuse["t2"]
    ext = next(e for e, h in rig.a.records.items() if h.fields["tier"] == "t2")
    rig.a.edit(ext, tier="t2b")
    rig.later(minutes=1)
    assert rig.syncer.sync().pushed == 1
    assert any(h.fields.get("tier") == "t2b" for h in rig.b.records.values())


def test_a_part_of_a_batch_rate_limited_after_the_rest_landed_waits_the_vendors_retry_after(
        store: Store) -> None:
    rig = Rig(store, batch_max=2, max_attempts=5)
    rig.records(6)
    original = rig.b.push

    def push(kind: str, writes: list[Any]) -> list[PushResult]:
        # what send_apart returns when the second half of a refused batch is rate-limited: the first landed
        landed = original(kind, writes[:1])
        late = [PushResult(w.record_id, False, w.external_id, "HTTP 429: slow down", True, retry_after=900)
                for w in writes[1:]]
        return landed + late

    rig.b.push = push
    report = rig.syncer.sync()
    assert report.push_calls == 1 and report.pushed == 1 and report.failed == 1 and report.deferred == 4
    now = rig.clock()
    assert len(store.pending("b")) == 5
    assert all(i.not_before >= now + timedelta(seconds=900) for i in store.pending("b"))
    errors = sorted({str(i.last_error) for i in store.pending("b")})
    assert errors == ["HTTP 429: slow down", "deferred: b: rate limited for 900 s (Retry-After)"]
    rig.b.push = original
    rig.later(seconds=899)
    assert rig.syncer.sync().push_calls == 0  # not before the vendor's Retry-After
    rig.later(seconds=1)
    assert rig.syncer.sync().pushed == 5 and store.pending() == []


def test_retry_after_is_honoured_and_the_rest_waits(store: Store) -> None:
    rig = Rig(store, batch_max=2, max_attempts=5)
    rig.records(6)
    rig.b.raise_next.append(RetriableConnectorError("HTTP 429: slow down", system="b", retry_after=900))
    report = rig.syncer.sync()
    assert report.push_calls == 1 and report.failed == 2 and report.deferred == 4 and report.pushed == 0
    now = rig.clock()
    assert all(i.not_before >= now + timedelta(seconds=900) for i in store.pending("b"))
    rig.later(seconds=899)
    assert rig.syncer.sync().push_calls == 0  # not before Retry-After
    rig.later(seconds=1)
    late = rig.syncer.sync()
    assert late.pushed == 6 and late.push_calls == 3 and store.pending() == []


def test_refused_credentials_stop_the_push_and_lose_nothing(store: Store) -> None:
    rig = Rig(store, batch_max=2)
    rig.records(4)
    rig.b.raise_next.append(ConnectorAuthError("HTTP 401: token expired", system="b"))
    report = rig.syncer.sync()
    assert report.dead == 0 and report.deferred == 4 and report.push_calls == 1
    assert any("token expired" in p for p in report.problems)
    rig.later(hours=2)
    assert rig.syncer.sync().pushed == 4


def test_a_skippable_error_for_a_single_write_dead_letters_it(store: Store) -> None:
    rig = Rig(store)
    rig.records(1)
    rig.b.raise_next.append(SkippableRecordError("HTTP 404: no such company", system="b", record="x"))
    report = rig.syncer.sync()
    assert report.dead == 1 and "no such company" in (store.dead_letters()[0].last_error or "")


def test_a_value_superseded_while_waiting_is_never_sent(store: Store) -> None:
    rig = Rig(store)
    [ext] = rig.records(1)
    rig.b.raise_next.append(RetriableConnectorError("HTTP 503", system="b"))
    rig.syncer.sync()
    rig.a.edit(ext, tier="newer")
    rig.later(hours=2)
    report = rig.syncer.sync()
    assert report.pushed == 1 and report.push_calls == 1
    [applied] = rig.b.applied
    assert applied.fields == {"tier": "newer", "arr": 0}  # merged: one create, the newest value, no stale t0
    assert len(rig.b.records) == 1


def test_a_dry_run_plans_the_same_and_writes_nothing_anywhere(store: Store) -> None:
    rig = Rig(store)
    rig.records(3)
    plan = rig.syncer.sync(dry_run=True)
    assert plan.dry_run and plan.pulled == 3 and plan.writes_queued == 3 and plan.push_calls == 0
    assert rig.b.push_calls == 0 and rig.b.records == {}
    with store.session() as tx:
        assert list(tx.records()) == [] and tx.cursor("a", "account") is None
    assert store.items() == []
    real = rig.syncer.sync()
    key = [(p.system, p.field, p.old, p.new, p.rule) for p in plan.plan]
    assert key == [(p.system, p.field, p.old, p.new, p.rule) for p in real.plan]
    assert ("b", "tier", None, "t0", "owner") in key
    assert sorted({p.ref for p in plan.plan}) == sorted(f"a:{ext}" for ext in rig.a.records)


def test_a_record_missing_from_a_pull_is_not_a_delete_an_explicit_one_is(store: Store) -> None:
    rig = Rig(store, deletes={"account": "flag"})
    [one, two] = rig.records(2)
    rig.syncer.sync()
    rig.a.records.pop(two)  # a partial fetch: it simply is not there
    rig.a.edit(one, tier="x")
    report = rig.syncer.sync()
    assert report.deletes == 0 and report.pushed == 1
    rig.a.records[two] = type(rig.a.records[one])(
        two, "account", rig.a.ticker(), {"tier": "t1"}, deleted=True
    )
    gone = rig.syncer.sync()
    assert gone.deletes == 1 and gone.push_calls == 0
    with store.session() as tx:
        rid = tx.record_id_for("a", "account", two)
        assert rid is not None
        record = tx.load(rid)
        assert record is not None and "a" in record.attrs["deleted_in"]
        assert [line["kind"] for line in tx.audit_for(rid)].count("delete") == 1


def test_every_push_is_audited_with_the_vendor_response(store: Store) -> None:
    rig = Rig(store)
    rig.records(1)
    rig.syncer.sync()
    [applied] = rig.b.applied
    with store.session() as tx:
        lines = tx.audit_for(applied.record_id)
    pushed = [line for line in lines if line["rule"] == "pushed to b"]
    assert len(pushed) == 1
    assert pushed[0]["response"] == {"ok": True, "key": applied.key, "external_id": applied.external_id}
    assert pushed[0]["after"] == {"tier": "t0", "arr": 0}
    queued = [(line["field"], line["rule"]) for line in lines if line["rule"].endswith("queued for b")]
    assert sorted(queued) == [("arr", "owner; queued for b"), ("tier", "owner; queued for b")]
    assert store.items(status="done")[0].response == pushed[0]["response"]


def test_an_ambiguous_change_is_reported_with_candidates_and_the_page_goes_on(store: Store) -> None:
    fields = {"tier": {"type": "text", "kind": "contact", "owner": "a", "sync_to": ["b"]}}
    rig = Rig(store, fields=fields)
    rig.config.connectors["a"].kinds = ["contact"]
    rig.config.connectors["b"].kinds = ["contact"]
    rig.syncer = Syncer(rig.config, store, rig.world.connector, clock=rig.clock)
    rig.a.create("contact", {"tier": "x"}, email="one@acme.io")
    rig.a.create("contact", {"tier": "y"}, email="two@acme.io")
    rig.syncer.sync()
    with store.session() as tx:
        ids = [r.id for r in tx.records("contact")]
        two = next(i for i in ids if tx.keys_of(i) == {"email": "two@acme.io"})
        tx.set_keys(two, "contact", {"email": "one@acme.io"})  # the vendor merged them; keys now clash
    rig.b.create("contact", {"tier": "z"}, email="ONE@acme.io")
    report = rig.syncer.sync()
    [amb] = report.ambiguous
    assert amb.system == "b" and sorted(amb.candidates) == sorted(ids)
    assert all(i in report.problems[0] for i in ids)
    with store.session() as tx:
        assert tx.record_id_for("b", "contact", amb.external_id) is None
        assert tx.cursor("b", "contact") is not None  # the rest of the page committed


def test_a_create_that_died_before_its_link_is_recognised_when_it_comes_back(store: Store) -> None:
    rig = Rig(store)
    rig.records(1)
    rig.syncer.pull("a", SyncReport())
    original = rig.syncer._settle

    def die(*_a: Any, **_k: Any) -> None:
        raise KeyboardInterrupt

    rig.syncer._settle = die  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        rig.syncer.push("b", SyncReport())
    rig.syncer._settle = original  # type: ignore[method-assign]
    assert len(rig.b.records) == 1  # created at b, link never stored
    rig.later(hours=1)
    report = rig.syncer.sync()  # b's new record is pulled: its bridge_id links it, then the push finds it
    assert report.records_created == 0
    assert len(rig.b.records) == 1 and rig.b.echo_writes() == []


def test_a_record_the_pipeline_cannot_process_is_quarantined_and_the_page_goes_on(store: Store) -> None:
    rig = Rig(store)
    ids = rig.records(3)
    original = Pipeline._apply_attrs

    def choke(self: Pipeline, record: Any, change: Any) -> None:
        original(self, record, change)
        if change.external_id == ids[1]:
            raise TypeError("a vendor sent a list where a string belongs")

    Pipeline._apply_attrs = choke  # type: ignore[method-assign]
    try:
        report = rig.syncer.sync()
    finally:
        Pipeline._apply_attrs = original  # type: ignore[method-assign]
    assert report.pulled == 2 and report.pushed == 2
    assert any(ids[1] in p and "TypeError" in p for p in report.problems)
    with store.session() as tx:
        # nothing of the bad record was half-written; its change is kept in the log, and the cursor moved on
        assert tx.record_id_for("a", "account", ids[1]) is None
        assert tx.cursor("a", "account") is not None
        kept = tx.conn.execute(sa.text("select count(*) from changes where external_id = :e"), {"e": ids[1]})
        assert kept.scalar() == 1


def test_writes_queued_for_a_read_only_connector_are_settled_as_skipped(store: Store) -> None:
    from bridge.connector import Connector, ConnectorContext
    from bridge.model import Write
    from bridge.settings import ConnectorSettings

    class ReadOnly(Connector):
        name = "read-only"
        kinds = ("account",)

    rig = Rig(store)
    source = ReadOnly(ConnectorContext("b", ConnectorSettings(plugin="read-only")))
    syncer = Syncer(
        rig.config, store, lambda s: source if s == "b" else rig.world.connector(s), clock=rig.clock
    )
    with store.session() as tx:
        rid = tx.create_record("account")
        tx.enqueue(Write("b", "account", rid, None, {"assignee": "a@x.example"}), rig.clock())
    report = SyncReport()
    syncer.push("b", report)  # no NotImplementedError: nothing is sent, the row is settled
    assert report.skipped == 1 and report.push_calls == 0
    assert store.pending("b") == [] and store.dead_letters("b") == []


def test_a_connector_crashing_in_push_stops_that_system_and_keeps_the_writes(store: Store) -> None:
    rig = Rig(store)
    rig.records(2)
    b = rig.world.connector("b")
    original = type(b).push

    def broken(self: Any, kind: str, writes: list[Any]) -> Any:
        raise OSError(28, "No space left on device")

    type(b).push = broken  # type: ignore[method-assign]
    try:
        report = rig.syncer.sync()
    finally:
        type(b).push = original  # type: ignore[method-assign]
    assert any("No space left on device" in p for p in report.problems)
    assert [i.status for i in store.items("b")] == ["pending", "pending"]  # not stuck as claimed
    assert all("No space left" in (i.last_error or "") for i in store.items("b"))
    rig.later(hours=2)
    again = rig.syncer.sync()
    assert again.pushed == 2 and store.pending("b") == []



def test_a_write_put_back_untried_counts_no_attempt_so_a_short_outage_dead_letters_nothing(
    store: Store,
) -> None:
    # at most 3 tries; four passes in a row, the vendor rate-limits the first call: each pass tries the first
    # write, and the others of the claim wait untried
    rig = Rig(store, batch_max=1, max_attempts=3)
    rig.records(5)
    for _ in range(4):
        rig.b.raise_next.append(RetriableConnectorError("HTTP 429: slow down", system="b", retry_after=1))
        rig.syncer.sync()
        rig.later(hours=2)

    dead = store.dead_letters()
    # the first write was tried 3 times (dead, as documented); the next was tried once, the rest never
    assert [d.attempts for d in dead] == [3]
    assert sorted(i.attempts for i in store.pending("b")) == [0, 0, 0, 1]
    rig.syncer.sync()  # the vendor is back
    assert store.pending("b") == [] and len(store.dead_letters()) == 1


def test_the_tombstone_of_a_record_bridge_never_had_is_left_alone(store: Store) -> None:
    # a system reporting a deleted record bridge never saw (a duplicate made and deleted between pulls, a
    # merge's loser): nothing to delete, and matched by its keys it would take a live record's link
    rig = Rig(store)
    [kept, gone] = rig.records(2)
    rig.a.delete(gone)
    rig.syncer.sync()
    with store.session() as tx:
        assert len(list(tx.records())) == 1 and tx.record_id_for("a", "account", kept) is not None
        assert tx.record_id_for("a", "account", gone) is None


def test_a_write_the_system_cannot_make_the_record_for_is_skipped_not_dead(store: Store) -> None:
    rig = Rig(store)
    rig.records(2)
    original = rig.b.push

    def push(kind: str, writes: list[Any]) -> list[PushResult]:
        # what HubSpot, Salesforce or Pylon answer for a record they do not hold and have no key to make
        why = "no id and no id_property value to upsert on"
        return [PushResult(w.record_id, False, None, f"b record {w.record_id}: {why}", skipped=True)
                for w in writes]

    rig.b.push = push
    report = rig.syncer.sync()
    assert report.skipped == 2 and report.dead == 0 and report.failed == 0
    assert store.dead_letters() == [] and store.pending("b") == []
    assert rig.syncer.sync().push_calls == 0  # nothing left to send
    with store.session() as tx:
        [some] = [r for r in tx.records("account")][:1]
        rules = [line["rule"] for line in tx.audit_for(some.id) if line["rule"].startswith("not sent to b")]
    assert rules == [f"not sent to b: b record {some.id}: no id and no id_property value to upsert on"]
    # the value is not taken for held there: once the system can take it, the next change is sent
    rig.b.push = original
    ext = next(iter(rig.a.records))
    rig.a.edit(ext, tier="t9")
    rig.later(minutes=1)
    assert rig.syncer.sync().pushed == 1


def test_every_value_of_a_skipped_merged_write_is_taken_back_not_only_the_last(store: Store) -> None:
    rig = Rig(store)
    [ext] = rig.records(1)
    original = rig.b.push

    def push(kind: str, writes: list[Any]) -> list[PushResult]:
        return [PushResult(w.record_id, False, None, "no id to upsert on", skipped=True) for w in writes]

    rig.b.push = push
    rig.syncer.sync()
    for tier in ("gold", "silver"):  # two changes pulled before one push: two rows, merged into one write
        rig.a.edit(ext, tier=tier)
        rig.later(minutes=1)
        rig.syncer.pull("a", SyncReport())
    report = SyncReport()
    rig.syncer.push("b", report)
    assert report.skipped == 2 and store.pending("b") == [] and store.dead_letters() == []  # (two rows)
    rig.b.push = original
    rig.a.edit(ext, tier="gold")  # back to the first skipped value: it was never sent, so it is sent now
    rig.later(minutes=1)
    assert rig.syncer.sync().pushed == 1
    assert any(h.fields.get("tier") == "gold" for h in rig.b.records.values())
