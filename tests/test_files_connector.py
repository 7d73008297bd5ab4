"""The JSONL ``files`` connector: pulls in (updated_at, id) order after a cursor, pages, pushes with keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.connector import ConnectorContext, Cursor
from bridge.connectors.files import FilesConnector, FilesSettings, record_to_change
from bridge.model import Write, parse_time


def connector(tmp_path: Path, **kw: Any) -> FilesConnector:
    settings = FilesSettings(plugin="files", path=str(tmp_path / "in"), **kw)
    return FilesConnector(ConnectorContext("files", settings))


def write_lines(path: Path, rows: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_pull_is_ordered_paged_and_resumes_after_the_cursor(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "in" / "b.jsonl",
        [
            {"id": "T-3", "updated_at": "2026-03-02T10:00:00Z", "subject": "c"},
            {"id": "T-1", "updated_at": "2026-03-02T09:00:00Z", "subject": "a", "tags": ["x"]},
        ],
    )
    write_lines(
        tmp_path / "in" / "a.jsonl",
        [
            {"id": "T-2", "updated_at": "2026-03-02T09:00:00Z", "fields": {"severity": "Sev-2"}},
            {"kind": "account", "id": "A-1", "updated_at": "2026-03-02T08:00:00Z", "domain": "acme.io"},
            "",
        ],
    )
    conn = connector(tmp_path, page_size=2)
    pages = list(conn.pull("ticket", Cursor()))
    assert [[c.external_id for c in p.changes] for p in pages] == [["T-1", "T-2"], ["T-3"]]
    assert pages[0].cursor == Cursor(parse_time("2026-03-02T09:00:00Z"), "T-2")
    rest = list(conn.pull("ticket", pages[0].cursor))
    assert [c.external_id for p in rest for c in p.changes] == ["T-3"]
    [accounts] = list(conn.pull("account", Cursor()))
    assert [(c.kind, c.attrs) for c in accounts.changes] == [("account", {"domain": "acme.io"})]
    assert list(conn.pull("ticket", Cursor(parse_time("2026-03-02T10:00:00Z"), "T-3"))) == []


def test_a_malformed_line_is_named_by_file_and_line_and_the_others_go_on(tmp_path: Path) -> None:
    lines: list[Any] = [{"id": "T-1"}, "{not json", {"subject": "no id"}, {"id": "T-4", "tags": "x"},
                        {"id": "T-5"}]
    write_lines(tmp_path / "in" / "x.jsonl", lines)
    [page] = list(connector(tmp_path).pull("ticket", Cursor()))
    assert [c.external_id for c in page.changes] == ["T-1", "T-5"]
    assert [p.split("x.jsonl:")[1].split(":")[0] for p in page.problems] == ["2", "3", "4"]
    assert "not JSON" in page.problems[0] and "a record needs an id" in page.problems[1]
    write_lines(tmp_path / "in" / "x.jsonl", ["{not json"])  # nothing else: the problem still comes out
    [empty] = list(connector(tmp_path).pull("ticket", Cursor()))
    assert empty.changes == [] and empty.cursor == Cursor() and len(empty.problems) == 1


def test_a_line_of_a_misspelt_kind_is_reported_once_not_lost_in_silence(tmp_path: Path) -> None:
    lines: list[Any] = [{"id": "T-1"}, {"id": "T-2", "kind": "Ticket"}, {"id": "A-1", "kind": "account"},
                        {"id": "T-3", "kind": "tickets"}]
    write_lines(tmp_path / "in" / "x.jsonl", lines)
    conn = connector(tmp_path)
    [tickets] = list(conn.pull("ticket", Cursor()))
    [accounts] = list(conn.pull("account", Cursor()))
    assert [c.external_id for c in tickets.changes] == ["T-1"]
    assert [p.split("x.jsonl:")[1] for p in tickets.problems] == [
        "2: kind must be one of ticket, account, contact, not 'Ticket'; skipped",
        "4: kind must be one of ticket, account, contact, not 'tickets'; skipped",
    ]
    assert [c.external_id for c in accounts.changes] == ["A-1"] and accounts.problems == []


def test_push_appends_one_line_per_write_with_its_idempotency_key(tmp_path: Path) -> None:
    out = tmp_path / "out" / "writes.jsonl"
    conn = connector(tmp_path, out_path=str(out))
    writes = [
        Write("files", "ticket", "r1", "T-1", {"severity": "Sev-1"}),
        Write("files", "ticket", "r2", None, {}),
    ]
    results = conn.push("ticket", writes)
    assert [(r.record_id, r.ok, r.external_id) for r in results] == [("r1", True, "T-1"), ("r2", True, "r2")]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines == [
        {
            "kind": "ticket",
            "id": "T-1",
            "record": "r1",
            "fields": {"severity": "Sev-1"},
            "key": writes[0].idempotency_key,
        },
        {"kind": "ticket", "id": "r2", "record": "r2", "fields": {}, "key": writes[1].idempotency_key},
    ]
    conn.push("ticket", writes[:1])  # a repeat is the same line again: recognisable by its key
    assert json.loads(out.read_text().splitlines()[-1]) == lines[0]
    assert connector(tmp_path).push("ticket", writes)[0].ok  # no out_path: accepted, kept nowhere


def test_record_to_change_and_webhooks(tmp_path: Path) -> None:
    change = record_to_change(
        "files",
        "ticket",
        {"id": 7, "created_at": "2026-03-02T09:00:00+01:00", "deleted": True, "status": "open", "unknown": 1},
    )
    assert change.external_id == "7" and change.at == parse_time("2026-03-02T08:00:00Z")
    assert (
        change.deleted
        and change.attrs == {"status": "open", "created_at": "2026-03-02T09:00:00+01:00"}
        and change.tags is None
    )
    body = json.dumps([{"id": "T-1", "kind": "ticket"}, {"id": "A-1", "kind": "account"}]).encode()
    assert [(c.kind, c.external_id) for c in connector(tmp_path).parse_webhook({}, body)] == [
        ("ticket", "T-1"),
        ("account", "A-1"),
    ]


def test_a_push_that_cannot_write_is_a_fatal_error_naming_the_file(tmp_path: Path) -> None:
    from bridge.errors import FatalConnectorError
    from bridge.testing import make_connector

    (tmp_path / "out.jsonl").mkdir()  # a directory where the file should be
    conn = make_connector(FilesConnector, "inbox", path=str(tmp_path), out_path=str(tmp_path / "out.jsonl"))
    with pytest.raises(FatalConnectorError, match=r"inbox: cannot write .*out\.jsonl: Is a directory"):
        conn.push("ticket", [Write("inbox", "ticket", "r1", "T-1", {"severity": "Sev-1"})])


def test_a_ticket_line_carries_its_message_and_a_bad_status_or_author_is_refused(tmp_path: Path) -> None:
    write_lines(tmp_path / "in" / "x.jsonl", [
        {"id": "T-1", "status": "open", "message": "on it", "last_author": "agent", "acknowledged": True},
        {"id": "T-2", "status": "weird"},
        {"id": "T-3", "last_author": ["agent"]},
        {"id": "T-4", "acknowledged": "yes"},
    ])
    [page] = list(connector(tmp_path).pull("ticket", Cursor()))
    [change] = page.changes
    want = {"status": "open", "message": "on it", "last_author": "agent", "acknowledged": True}
    assert change.attrs == want
    assert [p.split("x.jsonl:")[1] for p in page.problems] == [
        "2: status 'weird' is not one of open, pending, on_hold, resolved, closed; skipped",
        "3: last_author must be a string, not an array; skipped",
        "4: acknowledged must be true or false, not a string; skipped",
    ]


def test_an_event_write_pushed_again_after_a_crash_is_not_appended_twice(tmp_path: Path) -> None:
    from bridge.effects import EffectWrite

    out = tmp_path / "out.jsonl"
    follow_up = EffectWrite("r1", "files", "ticket", "T-1", {"follow_up": "still there?"}, key="k-follow")
    value = Write("r1", "files", "ticket", "T-1", {"priority": "high"})
    connector(tmp_path, out_path=str(out)).push("ticket", [follow_up, value])
    # the process died before the outbox marked them done: a new one pushes both again when the claim lapses
    again = connector(tmp_path, out_path=str(out))
    results = again.push("ticket", [follow_up, value])
    assert [r.ok for r in results] == [True, True]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # the reminder is told once; a value written twice is the same value
    assert [(r["fields"], r["key"], r.get("event")) for r in rows] == [
        ({"follow_up": "still there?"}, "k-follow", True),
        ({"priority": "high"}, value.idempotency_key, None),
        ({"priority": "high"}, value.idempotency_key, None)]
    # another reminder (another decision, another key) is appended
    second = EffectWrite("r1", "files", "ticket", "T-1", {"follow_up": "still there?"}, key="k-follow-2")
    again.push("ticket", [second])
    assert len(out.read_text().splitlines()) == 4


def test_a_value_write_of_a_field_named_like_an_event_is_appended_each_time(tmp_path: Path) -> None:
    # a declared field whose remote name is "escalation" holds values: L1, L2, then L1 again is three writes
    out = tmp_path / "out.jsonl"
    c = connector(tmp_path, out_path=str(out))
    for level in ("L1", "L2", "L1"):
        c.push("ticket", [Write("r1", "files", "ticket", "T-1", {"escalation": level})])
    assert [json.loads(line)["fields"] for line in out.read_text().splitlines()] == [
        {"escalation": "L1"}, {"escalation": "L2"}, {"escalation": "L1"}]


def test_an_event_write_whose_append_failed_is_appended_when_pushed_again(tmp_path: Path) -> None:
    import os

    from bridge.effects import EffectWrite
    from bridge.errors import FatalConnectorError

    out = tmp_path / "out.jsonl"
    c = connector(tmp_path, out_path=str(out))
    follow_up = EffectWrite("r1", "files", "ticket", "T-1", {"follow_up": "still there?"}, key="k-follow")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", full)
        with pytest.raises(FatalConnectorError, match="No space left"):
            c.push("ticket", [follow_up])
    # the push failed, so the outbox pushes the write again once the disk has room: it is appended then (at
    # least once: what the failed push may have left is no proof the write is on disk)
    assert [r.ok for r in c.push("ticket", [follow_up])] == [True]
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines() if line.strip()]
    assert keys.count("k-follow") == 2


def test_a_line_a_crash_cut_short_does_not_swallow_the_next_write(tmp_path: Path) -> None:
    from bridge.effects import EffectWrite

    out = tmp_path / "out.jsonl"
    out.write_text('{"kind": "ticket", "id": "T-1", "fields": {"follow_up": "Are you st')  # the crash
    follow_up = EffectWrite("r1", "files", "ticket", "T-1", {"follow_up": "Are you still there?"}, key="k")
    connector(tmp_path, out_path=str(out)).push("ticket", [follow_up])
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["fields"] == {"follow_up": "Are you still there?"}


def test_two_writers_of_one_out_file_tell_an_event_once(tmp_path: Path) -> None:
    # two processes (replicas, or a daemon and a bridge sync) push to one out file: each reads what the other
    # appended before it appends
    from bridge.effects import EffectWrite

    out = tmp_path / "out.jsonl"
    a, b = connector(tmp_path, out_path=str(out)), connector(tmp_path, out_path=str(out))
    first = EffectWrite("r0", "files", "ticket", "T-0", {"follow_up": "hello"}, key="key-0")
    again = EffectWrite("r1", "files", "ticket", "T-1", {"follow_up": "still there?"}, key="key-1")
    b.push("ticket", [first])  # (b has read the file once)
    a.push("ticket", [again])  # a appends key-1, and dies before the outbox hears of it
    b.push("ticket", [again])  # the outbox pushes it again, through b
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert keys == ["key-0", "key-1"]
