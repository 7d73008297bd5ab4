"""Records, links, identity keys, changes, shadow and cursors, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from bridge import fields
from bridge.errors import IdentityError
from bridge.model import Change, FieldValue, Record, Write
from bridge.store import Store
from bridge.store import tables as t
from bridge.store import tx as tx_module

T0 = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


def _ticket(record_id: str) -> Record:
    return Record(
        id=record_id,
        kind="ticket",
        fields={
            "plan": FieldValue("Enterprise", "hubspot", T0),
            "due": FieldValue(date(2025, 4, 1), "jira", T0 + timedelta(minutes=1)),
            "areas": FieldValue(["billing", "sso"], "bridge", T0 + timedelta(minutes=2)),
            "seats": FieldValue(12.5, "salesforce", T0),
            "vip": FieldValue(True, "salesforce", T0),
            "note": FieldValue(None, "pylon", T0),
        },
        tags=["refund", "billing"],
        attrs={"subject": "Refund please", "opened": datetime(2025, 3, 1, 8, 0, tzinfo=UTC), "n": 3},
    )


def test_record_round_trip_keeps_fields_with_provenance(store: Store) -> None:
    with store.session() as tx:
        rid = tx.create_record("ticket", now=T0)
        tx.link(rid, "hubspot", "ticket", "hs-1")
        tx.save(_ticket(rid), now=T0)
    with store.session() as tx:
        got = tx.load(rid)
    assert got is not None
    assert (got.id, got.kind, got.tags, got.links) == (
        rid,
        "ticket",
        ["refund", "billing"],
        {"hubspot": "hs-1"},
    )
    assert got.fields["plan"] == FieldValue("Enterprise", "hubspot", T0)
    assert got.fields["areas"] == FieldValue(["billing", "sso"], "bridge", T0 + timedelta(minutes=2))
    assert got.fields["seats"].value == 12.5
    assert got.fields["vip"].value is True
    assert got.fields["note"] == FieldValue(None, "pylon", T0)
    # dates inside JSON are ISO text; the caller re-coerces with the field's type
    assert got.fields["due"].value == "2025-04-01"
    assert fields.coerce(fields.FieldType("date"), got.fields["due"].value) == date(2025, 4, 1)
    assert got.fields["due"].at == T0 + timedelta(minutes=1)
    assert got.fields["due"].at.tzinfo is not None
    assert got.attrs == {"subject": "Refund please", "opened": "2025-03-01T08:00:00Z", "n": 3}


def test_save_updates_and_removes_fields(store: Store) -> None:
    with store.session() as tx:
        rid = tx.create_record("ticket")
        tx.save(_ticket(rid))
    later = T0 + timedelta(hours=1)
    with store.session() as tx:
        rec = tx.load(rid)
        assert rec is not None
        del rec.fields["note"]
        rec.fields["plan"] = FieldValue("Pro", "salesforce", later)
        rec.tags = ["billing"]
        tx.save(rec)
    with store.session() as tx:
        got = tx.load(rid)
    assert got is not None
    assert "note" not in got.fields
    assert got.fields["plan"] == FieldValue("Pro", "salesforce", later)
    assert got.tags == ["billing"]
    assert len(got.fields) == 5


def test_times_are_aware_utc_whatever_zone_was_given(store: Store) -> None:
    berlin = timezone(timedelta(hours=1))
    with store.session() as tx:
        rid = tx.create_record("ticket")
        rec = Record(
            id=rid, kind="ticket", fields={"x": FieldValue(1, "a", datetime(2025, 1, 1, 10, tzinfo=berlin))}
        )
        tx.save(rec)
    with store.session() as tx:
        got = tx.load(rid)
    assert got is not None
    at = got.fields["x"].at
    assert at.utcoffset() == timedelta(0)
    assert at == datetime(2025, 1, 1, 9, tzinfo=UTC)


def test_naive_time_is_refused(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), store.session() as tx:
        tx.create_record("ticket", now=datetime(2025, 1, 1))


def test_load_unknown_record_is_none(store: Store) -> None:
    with store.session() as tx:
        assert tx.load("nope") is None


def test_records_by_kind_in_pages(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tx_module, "_PAGE", 2)
    with store.session() as tx:
        for i in range(5):
            tx.create_record("ticket", f"t{i}")
            tx.link(f"t{i}", "pylon", "ticket", f"p{i}")
        tx.create_record("account", "a0")
    with store.session() as tx:
        tickets = list(tx.records("ticket"))
        everything = [r.id for r in tx.records()]
    assert [r.id for r in tickets] == ["t0", "t1", "t2", "t3", "t4"]
    assert [r.links for r in tickets] == [{"pylon": f"p{i}"} for i in range(5)]
    assert everything == ["a0", "t0", "t1", "t2", "t3", "t4"]


def test_link_is_idempotent_and_unique(store: Store) -> None:
    with store.session() as tx:
        a = tx.create_record("contact")
        b = tx.create_record("contact")
        tx.link(a, "hubspot", "contact", "42")
        tx.link(a, "hubspot", "contact", "42")
        tx.link(a, "salesforce", "contact", "003xx")
        assert tx.record_id_for("hubspot", "contact", "42") == a
        assert tx.record_id_for("hubspot", "account", "42") is None
        assert tx.links_of(a) == {"hubspot": "42", "salesforce": "003xx"}
        with pytest.raises(IdentityError) as caught:
            tx.link(b, "hubspot", "contact", "42")
        assert caught.value.candidates == [a, b]


def test_links_unique_constraint_holds_without_the_check(store: Store) -> None:
    with store.session() as tx:
        a = tx.create_record("contact")
        b = tx.create_record("contact")
        tx.link(a, "hubspot", "contact", "42")
    # the race the check cannot see: the database itself refuses the second link
    with pytest.raises(sa.exc.IntegrityError), store.session() as tx:
        tx.conn.execute(
            t.links.insert().values(record_id=b, system="hubspot", kind="contact", external_id="42")
        )
    with store.session() as tx:
        assert tx.record_id_for("hubspot", "contact", "42") == a


def test_ambiguous_key_lookup_returns_every_match(store: Store) -> None:
    with store.session() as tx:
        a = tx.create_record("account", "acc-a")
        b = tx.create_record("account", "acc-b")
        c = tx.create_record("account", "acc-c")
        tx.set_keys(a, "account", {"domain": "acme.com", "name": "acme"})
        tx.set_keys(b, "account", {"domain": "acme.com"})
        tx.set_keys(c, "account", {"domain": "globex.com"})
    with store.session() as tx:
        assert tx.find_by_key("account", "domain", "acme.com") == [a, b]
        assert tx.find_by_key("account", "domain", "globex.com") == [c]
        assert tx.find_by_key("contact", "domain", "acme.com") == []
        assert tx.keys_of(a) == {"domain": "acme.com", "name": "acme"}
        assert tx.keys_of_kind("account") == {  # every account's keys in one query (a rules rebuild)
            a: {"domain": "acme.com", "name": "acme"}, b: {"domain": "acme.com"}, c: {"domain": "globex.com"}
        }
        assert tx.keys_of_kind("contact") == {}


def test_set_keys_replaces_and_clears(store: Store) -> None:
    with store.session() as tx:
        a = tx.create_record("contact")
        tx.set_keys(a, "contact", {"email": "old@x.io", "phone": "+4930"})
        tx.set_keys(a, "contact", {"email": "new@x.io", "phone": ""})
        assert tx.keys_of(a) == {"email": "new@x.io"}
        assert tx.find_by_key("contact", "email", "old@x.io") == []
        assert tx.find_by_key("contact", "email", "new@x.io") == [a]


def test_delete_record_cascades_but_keeps_history(store: Store, now: datetime) -> None:
    with store.session() as tx:
        rid = tx.create_record("ticket")
        tx.link(rid, "pylon", "ticket", "p1")
        tx.set_keys(rid, "ticket", {"ref": "p1"})
        tx.save(_ticket(rid))
        tx.set_shadow(rid, "plan", "pylon", "Pro", now)
        tx.add_change(Change("pylon", "ticket", "p1", now), rid)
        tx.audit(
            at=now,
            run="r",
            record_id=rid,
            field=None,
            before=None,
            after=None,
            origin="pylon",
            rule="deleted",
            kind="delete",
        )
    with store.session() as tx:
        tx.delete_record(rid)
    with store.session() as tx:
        assert tx.load(rid) is None
        assert tx.record_id_for("pylon", "ticket", "p1") is None
        assert tx.find_by_key("ticket", "ref", "p1") == []
        assert tx.shadow(rid, "plan", "pylon") == (False, None)
        assert len(tx.changes_of(rid)) == 1
        assert [a["kind"] for a in tx.audit_for(rid)] == ["delete"]


def test_changes_are_kept_in_order(store: Store, now: datetime) -> None:
    first = Change(
        "hubspot", "ticket", "9", now, fields={"due": date(2025, 5, 1)}, tags=["a"], attrs={"s": 1}
    )
    second = Change("hubspot", "ticket", "9", now + timedelta(seconds=5), deleted=True)
    with store.session() as tx:
        rid = tx.create_record("ticket")
        ids = [tx.add_change(first, rid, received_at=now), tx.add_change(second, rid)]
        tx.add_change(Change("hubspot", "ticket", "10", now), None)
    assert ids[0] < ids[1]
    with store.session() as tx:
        got = tx.changes_of(rid)
    assert [c.at for c in got] == [now, now + timedelta(seconds=5)]
    assert got[0].fields == {"due": "2025-05-01"}
    assert (got[0].tags, got[0].attrs, got[0].deleted) == (["a"], {"s": 1}, False)
    assert (got[1].tags, got[1].deleted) == (None, True)


@pytest.mark.parametrize("value", ["Pro", None, ["a", "b"], 3, False, {"k": "v"}])
def test_shadow_known_and_unknown(store: Store, now: datetime, value: object) -> None:
    with store.session() as tx:
        rid = tx.create_record("ticket")
        assert tx.shadow(rid, "plan", "hubspot") == (False, None)
        tx.set_shadow(rid, "plan", "hubspot", "Starter", now)
        tx.set_shadow(rid, "plan", "hubspot", value, now + timedelta(seconds=1))
        tx.set_shadow(rid, "plan", "jira", "Other", now)
    with store.session() as tx:
        assert tx.shadow(rid, "plan", "hubspot") == (True, value)
        assert tx.shadow(rid, "plan", "jira") == (True, "Other")
        assert tx.shadow(rid, "seats", "hubspot") == (False, None)


def test_shadow_keeps_dates_as_iso(store: Store, now: datetime) -> None:
    with store.session() as tx:
        rid = tx.create_record("ticket")
        tx.set_shadow(rid, "due", "jira", date(2025, 4, 1), now)
        assert tx.shadow(rid, "due", "jira") == (True, "2025-04-01")


def test_cursors(store: Store) -> None:
    with store.session() as tx:
        assert tx.cursor("hubspot", "ticket") is None
        tx.set_cursor("hubspot", "ticket", "2025-03-14T09:30:00Z")
        tx.set_cursor("hubspot", "contact", "page-7")
    with store.session() as tx:
        tx.set_cursor("hubspot", "ticket", "2025-03-14T10:00:00Z")
    with store.session() as tx:
        assert tx.cursor("hubspot", "ticket") == "2025-03-14T10:00:00Z"
        assert tx.cursor("hubspot", "contact") == "page-7"
        assert tx.cursor("jira", "ticket") is None


def test_rollback_on_exception_leaves_nothing(store: Store, now: datetime) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.session() as tx:
        rid = tx.create_record("ticket", "r1")
        tx.link(rid, "hubspot", "ticket", "1")
        tx.set_keys(rid, "ticket", {"ref": "1"})
        tx.save(_ticket(rid))
        tx.set_shadow(rid, "plan", "hubspot", "Pro", now)
        tx.set_cursor("hubspot", "ticket", "c1")
        tx.add_change(Change("hubspot", "ticket", "1", now), rid)
        assert tx.enqueue(Write("hubspot", "ticket", rid, "1", {"plan": "Pro"}), now)
        tx.audit(
            at=now, run="r", record_id=rid, field="plan", before=None, after="Pro", origin="bridge", rule="x"
        )
        raise RuntimeError("boom")
    with store.session() as tx:
        assert tx.load("r1") is None
        assert tx.record_id_for("hubspot", "ticket", "1") is None
        assert tx.cursor("hubspot", "ticket") is None
        assert tx.audit_for("r1") == []
        assert tx.changes_of("r1") == []
    assert store.pending() == []
