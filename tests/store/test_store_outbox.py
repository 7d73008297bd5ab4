"""The outbox: enqueue with dedupe, claim with leases, complete, fail and retry, dead letters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bridge.model import Write
from bridge.store import Store

LEASE = timedelta(minutes=5)


def _write(record_id: str = "r1", system: str = "hubspot", kind: str = "ticket", **fields: object) -> Write:
    return Write(system, kind, record_id, f"ext-{record_id}", dict(fields) or {"plan": "Pro"})


def _records(store: Store, *ids: str) -> None:
    with store.session() as tx:
        for rid in ids:
            tx.create_record("ticket", rid)


def _enqueue(store: Store, now: datetime, *writes: Write) -> list[bool]:
    with store.session() as tx:
        return [tx.enqueue(w, now) for w in writes]


def test_enqueue_dedupes_pending_twins(store: Store, now: datetime) -> None:
    assert _enqueue(store, now, _write(), _write(), _write(plan="Free")) == [True, False, True]
    assert _enqueue(store, now + timedelta(seconds=1), _write(plan="Free")) == [False]
    items = store.pending()
    assert [i.fields for i in items] == [{"plan": "Pro"}, {"plan": "Free"}]
    assert items[0].key == _write().idempotency_key
    assert (items[0].status, items[0].attempts, items[0].not_before, items[0].created_at) == (
        "pending",
        0,
        now,
        now,
    )


def test_enqueue_moves_a_superseded_twin_to_the_end(store: Store, now: datetime) -> None:
    # Pro, then Free, then Pro again: the last decision must land last
    assert _enqueue(store, now, _write(plan="Pro"), _write(plan="Free"), _write(plan="Pro")) == [
        True,
        True,
        True,
    ]
    assert [i.fields["plan"] for i in store.pending()] == ["Free", "Pro"]


def test_enqueue_stores_dates_as_iso(store: Store, now: datetime) -> None:
    _enqueue(store, now, _write(due=date(2025, 4, 1)))
    assert store.pending()[0].fields == {"due": "2025-04-01"}


def test_claim_oldest_first_by_system_kind_and_due_time(store: Store, now: datetime) -> None:
    _enqueue(
        store, now, _write("r1"), _write("r2"), _write("r3", kind="contact"), _write("r4", system="jira")
    )
    _enqueue(store, now + timedelta(minutes=1), _write("r5"))
    got = store.claim("hubspot", "ticket", 10, now, LEASE)
    assert [i.record_id for i in got] == ["r1", "r2"]
    assert all(i.status == "claimed" and i.attempts == 1 and i.claimed_until == now + LEASE for i in got)
    assert [i.record_id for i in store.claim("hubspot", None, 10, now, LEASE)] == ["r3"]
    assert store.claim("hubspot", None, 10, now, LEASE) == []
    assert [i.record_id for i in store.claim("hubspot", None, 10, now + timedelta(minutes=1), LEASE)] == [
        "r5"
    ]
    assert [i.record_id for i in store.pending()] == ["r4"]
    assert [i.record_id for i in store.pending("jira")] == ["r4"]
    assert store.pending("hubspot") == []


def test_a_records_later_write_waits_while_its_earlier_one_backs_off_or_is_claimed(
    store: Store, now: datetime
) -> None:
    # a record's writes land in the order decided: an escalation queued after a notification that is
    # backing off (or held by a push that died, till its lease ends) is not claimed before it
    _enqueue(store, now, _write("r1", n=1), _write("r2", n=1))
    first = store.claim("hubspot", None, 10, now, LEASE)
    store.fail(first[0].id, "HTTP 429", now, now + timedelta(minutes=10))  # r1's first write backs off
    _enqueue(store, now + timedelta(seconds=1), _write("r1", n=2), _write("r2", n=2))
    later = now + timedelta(minutes=1)
    # r2's second write is held by r2's first, claimed by a live push; r1's by r1's first, backing off
    assert store.claim("hubspot", None, 10, later, LEASE) == []
    store.complete([(first[1].id, None, None)], later)
    second = store.claim("hubspot", None, 10, later, LEASE)
    assert [(i.record_id, i.fields) for i in second] == [("r2", {"n": 2})]
    store.complete([(second[0].id, None, None)], later)
    again = store.claim("hubspot", None, 10, now + timedelta(minutes=10), LEASE)
    assert [(i.record_id, i.fields) for i in again] == [("r1", {"n": 1}), ("r1", {"n": 2})]


def test_a_write_held_back_for_its_record_does_not_take_another_records_place_in_the_claim(
    store: Store, now: datetime
) -> None:
    _enqueue(store, now, _write("r1", n=1))
    (first,) = store.claim("hubspot", None, 10, now, LEASE)
    store.fail(first.id, "HTTP 429", now, now + timedelta(minutes=10))  # r1's first write backs off
    _enqueue(store, now, _write("r1", n=2), _write("r2"), _write("r3"))
    got = store.claim("hubspot", None, 2, now, LEASE)
    assert [i.record_id for i in got] == ["r2", "r3"]


def test_a_write_put_back_untried_gets_its_attempt_back(store: Store, now: datetime) -> None:
    _enqueue(store, now, _write("r1"))
    (item,) = store.claim("hubspot", None, 10, now, LEASE)
    store.fail(item.id, "deferred: an earlier write failed", now, now, tried=False)
    (again,) = store.claim("hubspot", None, 10, now, LEASE)
    assert again.attempts == 1


def test_claim_respects_limit(store: Store, now: datetime) -> None:
    _enqueue(store, now, *(_write(f"r{i}") for i in range(5)))
    first = store.claim("hubspot", None, 2, now, LEASE)
    second = store.claim("hubspot", None, 2, now, LEASE)
    assert [i.record_id for i in first + second] == ["r0", "r1", "r2", "r3"]


def test_expired_lease_is_claimed_again(store: Store, now: datetime) -> None:
    _enqueue(store, now, _write())
    [item] = store.claim("hubspot", None, 10, now, LEASE)
    assert store.claim("hubspot", None, 10, now + LEASE - timedelta(seconds=1), LEASE) == []
    [again] = store.claim("hubspot", None, 10, now + LEASE, LEASE)
    assert (again.id, again.attempts, again.claimed_until) == (item.id, 2, now + 2 * LEASE)


def test_complete_records_response_and_links_created_ids(store: Store, now: datetime) -> None:
    _records(store, "r1", "r2")
    with store.session() as tx:
        tx.link("r2", "hubspot", "ticket", "already")
        tx.enqueue(Write("hubspot", "ticket", "r1", None, {"plan": "Pro"}), now)
        tx.enqueue(Write("hubspot", "ticket", "r2", "already", {"plan": "Pro"}), now)
    a, b = store.claim("hubspot", None, 10, now, LEASE)
    store.complete(
        [(a.id, "hs-new", {"id": "hs-new", "ok": True}), (b.id, None, None)], now + timedelta(seconds=3)
    )
    done = store.items("hubspot", status="done")
    assert [(i.id, i.external_id, i.response, i.done_at) for i in done] == [
        (a.id, "hs-new", {"id": "hs-new", "ok": True}, now + timedelta(seconds=3)),
        (b.id, "already", None, now + timedelta(seconds=3)),
    ]
    with store.session() as tx:
        assert tx.links_of("r1") == {"hubspot": "hs-new"}
        assert tx.links_of("r2") == {"hubspot": "already"}
    assert store.claim("hubspot", None, 10, now + 2 * LEASE, LEASE) == []
    # a done write may be queued again: the key is unique only while pending
    assert _enqueue(store, now, Write("hubspot", "ticket", "r2", "already", {"plan": "Pro"})) == [True]


def test_complete_unknown_item_rolls_back_the_batch(store: Store, now: datetime) -> None:
    _enqueue(store, now, _write())
    [item] = store.claim("hubspot", None, 1, now, LEASE)
    with pytest.raises(KeyError, match="99999"):
        store.complete([(item.id, None, None), (99999, None, None)], now)
    assert [i.status for i in store.items()] == ["claimed"]


def test_fail_with_retry_waits_then_claims_again(store: Store, now: datetime) -> None:
    _enqueue(store, now, _write())
    [item] = store.claim("hubspot", None, 1, now, LEASE)
    retry_at = now + timedelta(minutes=2)
    store.fail(item.id, "503 from hubspot", now, retry_at)
    [waiting] = store.pending()
    assert (waiting.status, waiting.not_before, waiting.last_error, waiting.attempts) == (
        "pending",
        retry_at,
        "503 from hubspot",
        1,
    )
    assert store.claim("hubspot", None, 1, retry_at - timedelta(seconds=1), LEASE) == []
    [again] = store.claim("hubspot", None, 1, retry_at, LEASE)
    assert (again.id, again.attempts) == (item.id, 2)


def test_retried_write_whose_twin_was_queued_meanwhile_is_dropped(store: Store, now: datetime) -> None:
    _enqueue(store, now, _write())
    [item] = store.claim("hubspot", None, 1, now, LEASE)
    assert _enqueue(store, now, _write()) == [True]  # the first is in flight, not pending
    store.fail(item.id, "timeout", now, now + timedelta(minutes=1))
    [left] = store.items()
    assert left.id != item.id and left.status == "pending"


def test_dead_letters_and_retry_dead(store: Store, now: datetime) -> None:
    _enqueue(store, now, _write("r1"), _write("r2"), _write("r3", system="jira"))
    for item in store.claim("hubspot", None, 10, now, LEASE) + store.claim("jira", None, 10, now, LEASE):
        store.fail(item.id, f"400 bad {item.record_id}", now, None)
    dead = store.dead_letters()
    assert [(i.record_id, i.status, i.last_error, i.done_at) for i in dead] == [
        ("r1", "dead", "400 bad r1", now),
        ("r2", "dead", "400 bad r2", now),
        ("r3", "dead", "400 bad r3", now),
    ]
    assert [i.record_id for i in store.dead_letters("jira")] == ["r3"]
    assert store.claim("hubspot", None, 10, now + LEASE, LEASE) == []

    later = now + timedelta(hours=1)
    assert store.retry_dead([dead[0].id], later) == 1
    [back] = store.pending()
    assert (back.id, back.attempts, back.not_before, back.status, back.done_at) == (
        dead[0].id,
        0,
        later,
        "pending",
        None,
    )
    assert store.retry_dead(None, later, "jira") == 1  # (bridge deadletter retry --system jira)
    assert [i.record_id for i in store.dead_letters()] == ["r2"]
    assert store.retry_dead(None, later) == 1
    assert store.dead_letters() == []
    assert [i.record_id for i in store.claim("hubspot", None, 10, later, LEASE)] == ["r1", "r2"]
    assert store.retry_dead(None, later) == 0


def test_retry_dead_with_a_pending_twin_keeps_one(store: Store, now: datetime) -> None:
    _enqueue(store, now, _write())
    [item] = store.claim("hubspot", None, 1, now, LEASE)
    store.fail(item.id, "400", now, None)
    _enqueue(store, now, _write())
    assert store.retry_dead(None, now) == 1
    assert len(store.items()) == 1
    assert store.pending()[0].id != item.id


def test_late_failure_report_does_not_undo_a_finished_write(store: Store, now: datetime) -> None:
    _enqueue(store, now, _write())
    [item] = store.claim("hubspot", None, 1, now, LEASE)
    # replica A stalls past its lease; B re-claims and finishes; then A reports its failure
    [again] = store.claim("hubspot", None, 1, now + LEASE, LEASE)
    store.complete([(again.id, None, {"ok": True})], now + LEASE)
    store.fail(item.id, "timeout", now + 2 * LEASE, None)
    store.fail(item.id, "timeout", now + 2 * LEASE, now + 3 * LEASE)
    [done] = store.items()
    assert (done.status, done.last_error, done.response) == ("done", None, {"ok": True})


def test_complete_for_a_deleted_record_does_not_link(store: Store, now: datetime) -> None:
    _records(store, "gone")
    _enqueue(store, now, Write("hubspot", "ticket", "gone", None, {"plan": "Pro"}))
    [item] = store.claim("hubspot", None, 1, now, LEASE)
    with store.session() as tx:
        tx.delete_record("gone")
    store.complete([(item.id, "hs-9", None)], now)
    assert store.items()[0].status == "done"
    with store.session() as tx:
        assert tx.record_id_for("hubspot", "ticket", "hs-9") is None


def test_effect_claimed_once_and_rolled_back_with_its_transaction(store: Store) -> None:
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with store.session() as tx:
        tx.create_record("ticket", "r1")
        assert tx.claim_effect("r1|follow_up|48h", "r1", "follow_up", at) is True
        assert tx.claim_effect("r1|follow_up|48h", "r1", "follow_up", at) is False
    with pytest.raises(RuntimeError), store.session() as tx:
        assert tx.claim_effect("r1|auto_close|7d", "r1", "auto_close", at) is True
        raise RuntimeError("crash before commit")
    with store.session() as tx:
        # the crashed transaction's claim is gone: a retry takes the effect once
        assert tx.claim_effect("r1|auto_close|7d", "r1", "auto_close", at) is True
        assert tx.claim_effect("r1|follow_up|48h", "r1", "follow_up", at) is False
