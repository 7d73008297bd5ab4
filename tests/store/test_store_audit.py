"""The audit log: append-only, oldest first, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from bridge.store import Store
from bridge.store import tables as t


def test_audit_lines_come_back_oldest_first(store: Store, now: datetime) -> None:
    with store.session() as tx:
        tx.audit(
            at=now,
            run="run-1",
            record_id="r1",
            field="plan",
            before=None,
            after="Pro",
            origin="hubspot",
            rule="owner:hubspot",
        )
        tx.audit(
            at=now, run="run-1", record_id="r2", field="plan", before="a", after="b", origin="x", rule="y"
        )
    with store.session() as tx:
        # same instant: insertion order decides
        tx.audit(
            at=now,
            run="run-2",
            record_id="r1",
            field="due",
            before=date(2025, 1, 1),
            after=date(2025, 2, 1),
            origin="jira",
            rule="conflict: jira does not own due",
            kind="conflict",
            response={"status": 200},
        )
        tx.audit(
            at=now + timedelta(seconds=1),
            run="run-2",
            record_id="r1",
            field=None,
            before=None,
            after=None,
            origin="rules",
            rule="routing.vip",
            kind="decision",
        )
    with store.session() as tx:
        lines = tx.audit_for("r1")
    assert [(a["run"], a["field"], a["kind"]) for a in lines] == [
        ("run-1", "plan", "write"),
        ("run-2", "due", "conflict"),
        ("run-2", None, "decision"),
    ]
    assert lines[0]["id"] < lines[1]["id"] < lines[2]["id"]
    assert (lines[1]["before"], lines[1]["after"], lines[1]["response"]) == (
        "2025-01-01",
        "2025-02-01",
        {"status": 200},
    )
    assert lines[0]["at"] == now
    assert set(lines[0]) == {
        "id",
        "at",
        "run",
        "record_id",
        "field",
        "before",
        "after",
        "origin",
        "rule",
        "kind",
        "response",
    }


def test_audit_kind_is_checked(store: Store, now: datetime) -> None:
    with pytest.raises(ValueError, match="audit kind 'oops'"), store.session() as tx:
        tx.audit(
            at=now,
            run="r",
            record_id=None,
            field=None,
            before=None,
            after=None,
            origin="o",
            rule="r",
            kind="oops",
        )


@pytest.mark.parametrize(
    "statement",
    [t.audit.update().values(rule="rewritten"), t.audit.delete()],
    ids=["update", "delete"],
)
def test_audit_is_append_only_in_the_database(store: Store, now: datetime, statement: sa.Executable) -> None:
    with store.session() as tx:
        tx.audit(at=now, run="r", record_id="r1", field="f", before=1, after=2, origin="o", rule="kept")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.session() as tx:
        tx.conn.execute(statement)
    with store.session() as tx:
        assert [a["rule"] for a in tx.audit_for("r1")] == ["kept"]
