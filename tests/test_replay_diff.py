"""``replay --against`` compares the two runs' outputs as multisets: a repeated decision counts."""

from __future__ import annotations

from typing import Any

from bridge.replay import diff

NOTE = {"at": "2026-11-02T09:16:00Z", "ticket_id": "T-1", "decision": "notify", "rule": "vip", "to": "ops"}
TAG = {"at": "2026-11-02T09:15:00Z", "ticket_id": "T-1", "decision": "tag", "rule": "t", "tag": "a/b"}


def test_a_decision_taken_twice_in_one_run_and_once_in_the_other_is_a_difference() -> None:
    old: list[dict[str, Any]] = [TAG, NOTE, dict(NOTE)]
    new: list[dict[str, Any]] = [TAG, NOTE]
    assert diff(old, new) == [{"diff": "-", **NOTE}]
    assert diff(new, old) == [{"diff": "+", **NOTE}]


def test_the_same_multiset_in_another_order_is_no_difference() -> None:
    assert diff([NOTE, TAG, NOTE], [NOTE, NOTE, TAG]) == []
    assert diff([NOTE, NOTE], [NOTE, NOTE, NOTE, TAG]) == [{"diff": "+", **TAG}, {"diff": "+", **NOTE}]
