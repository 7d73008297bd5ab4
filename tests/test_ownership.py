"""ownership: three-way detection on shadows, and who wins per policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.model import FieldValue
from bridge.ownership import Shadow, Verdict, blank, decide, detect, receivers
from bridge.settings import FieldConfig

T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EARLIER = T - timedelta(hours=1)


def fc(**kw: Any) -> FieldConfig:
    base: dict[str, Any] = {"type": "text", "kind": "account", "owner": "crm", "sync_to": ["desk", "crm"]}
    base.update(kw)
    return FieldConfig(**base)


def fv(value: Any, system: str = "crm", at: datetime = EARLIER) -> FieldValue:
    return FieldValue(value, system, at)


@pytest.mark.parametrize(
    ("shadow", "incoming", "seen"),
    [
        (Shadow(), "x", "changed"),  # never seen: the system's value is news
        (Shadow(True, "x"), "x", "unchanged"),
        (Shadow(True, "x"), "y", "changed"),
        (Shadow(True, "x", ["y"]), "y", "echo"),  # we sent y: it came back
        (Shadow(True, "x", ["y", "z"]), "y", "echo"),  # an older queued value landing is ours too
        (Shadow(True, "x", ["y"]), "x", "unchanged"),  # our write has not landed yet: x is no edit
        (Shadow(True, "x", ["y"]), "w", "changed"),
        (Shadow(True, None), "", "unchanged"),  # blanks are equal
    ],
)
def test_detect(shadow: Shadow, incoming: Any, seen: str) -> None:
    ft = fc().field_type("f")
    assert detect(ft, incoming, shadow) == seen


def test_shadow_round_trips_and_tracks_queued_values() -> None:
    ft = fc().field_type("f")
    s = Shadow()
    assert s.empty and s.projected() == (False, None)
    s.send(ft, "a")
    s.send(ft, "a")  # queued twice in a row is one value
    s.send(ft, "b")
    assert s.sent == ["a", "b"] and s.projected() == (True, "b") and not s.empty
    assert Shadow.load((True, s.dump())) == s
    s.confirm(ft, "a")  # "a" landed: it is held; "b" is still on its way
    assert (s.known, s.held, s.sent) == (True, "a", ["b"])
    s.withdraw(ft, "b")  # dead-lettered: it will not land
    assert s.projected() == (True, "a")
    assert Shadow.load((True, "plain")) == Shadow(True, "plain")  # a plain stored value is held
    assert Shadow.load((False, None)).empty
    assert Shadow.load((True, {})).empty  # everything withdrawn: as if never synced


@pytest.mark.parametrize(
    ("cfg", "system", "incoming", "current", "expected"),
    [
        # owner_wins (default)
        ({}, "crm", "new", fv("old"), Verdict("accept", "owner")),
        ({}, "desk", "new", fv("old"), Verdict("conflict", "owner_wins", writeback=True)),
        ({"on_conflict": "report"}, "desk", "new", fv("old"), Verdict("conflict", "owner_wins")),
        ({}, "desk", "new", None, Verdict("ignore", "owner_wins: the owner has no value yet")),
        ({}, "desk", "same", fv("same"), Verdict("ignore", "equal")),
        ({}, "crm", None, fv("old"), Verdict("accept", "owner")),  # the owner may clear its field
        # prefer_owner_unless_blank
        (
            {"policy": "prefer_owner_unless_blank"},
            "desk",
            "x",
            fv(None),
            Verdict("accept", "prefer_owner_unless_blank: the owner is blank"),
        ),
        (
            {"policy": "prefer_owner_unless_blank"},
            "desk",
            "x",
            fv("y", "desk"),
            Verdict("accept", "prefer_owner_unless_blank: the owner is blank"),
        ),
        (
            {"policy": "prefer_owner_unless_blank"},
            "desk",
            "x",
            fv("owned"),
            Verdict("conflict", "prefer_owner_unless_blank", writeback=True),
        ),
        (
            {"policy": "prefer_owner_unless_blank"},
            "crm",
            "",
            fv("x", "desk"),
            Verdict("ignore", "prefer_owner_unless_blank: the owner is blank", writeback=True),
        ),
        ({"policy": "prefer_owner_unless_blank"}, "crm", "mine", fv("x", "desk"), Verdict("accept", "owner")),
        # fill_if_empty
        ({"policy": "fill_if_empty"}, "desk", "x", None, Verdict("accept", "fill_if_empty")),
        ({"policy": "fill_if_empty"}, "desk", "x", fv(""), Verdict("accept", "fill_if_empty")),
        (
            {"policy": "fill_if_empty"},
            "desk",
            "x",
            fv("filled"),
            Verdict("ignore", "fill_if_empty: already filled", writeback=True),
        ),
        # last_writer_wins
        (
            {"policy": "last_writer_wins"},
            "desk",
            "x",
            fv("old", at=EARLIER),
            Verdict("accept", "last_writer_wins"),
        ),
        (
            {"policy": "last_writer_wins"},
            "desk",
            "x",
            fv("old", at=T + timedelta(seconds=1)),
            Verdict("ignore", "last_writer_wins: older than the record's value", writeback=True),
        ),
        # the owner's edit too is taken only when newer: which system spoke first decides nothing
        (
            {"policy": "last_writer_wins"},
            "crm",
            "x",
            fv("newer", "desk", at=T + timedelta(seconds=1)),
            Verdict("ignore", "last_writer_wins: older than the record's value", writeback=True),
        ),
        (
            {"policy": "last_writer_wins"},
            "crm",
            "x",
            fv("old", "desk", at=EARLIER),
            Verdict("accept", "owner"),
        ),
        # bridge-owned (derived from tags): a system's edit is a conflict
        (
            {"owner": "bridge"},
            "desk",
            "x",
            fv("tagged", "bridge"),
            Verdict("conflict", "owner_wins", writeback=True),
        ),
    ],
)
def test_decide(
    cfg: dict[str, Any], system: str, incoming: Any, current: FieldValue | None, expected: Verdict
) -> None:
    field = fc(**cfg)
    assert decide(field, field.field_type("f"), system, incoming, current, T) == expected


def test_decide_compares_typed_values() -> None:
    field = fc(type="number")
    assert decide(field, field.field_type("n"), "desk", "5.0", fv(5), T).action == "ignore"
    field = fc(type="multi_select", options=["a", "b"])
    assert decide(field, field.field_type("m"), "desk", "b;a", fv(["a", "b"]), T).action == "ignore"


def test_receivers_and_blank() -> None:
    field = fc(sync_to=["desk", "crm", "gone"])
    assert receivers(field) == ["desk", "crm", "gone"]
    assert receivers(field, frozenset({"desk", "crm"})) == ["desk", "crm"]
    assert [blank(v) for v in (None, "", [], 0, False, "x")] == [True, True, True, False, False, False]
