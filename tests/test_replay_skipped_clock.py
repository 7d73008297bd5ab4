"""A line replay skips whole (a ticket created twice, an event for an unknown or closed ticket) moves no
clock: the events after it are taken at their own times, and no timer fires for the time it named."""

from __future__ import annotations

import json

import pytest

from bridge.replay import Replay
from bridge.settings import Config

CONFIG = Config.model_validate({
    "sla": [{"name": "std", "first_response": "8h", "resolution": "5d"}],
})


def lines(*events: dict[str, object]) -> list[str]:
    return [json.dumps(e) for e in events]


CREATED = {"type": "ticket.created", "at": "2026-11-23T09:00:00Z",
           "ticket": {"id": "K-1", "subject": "Export fails", "tags": []}}
REPLY = {"type": "ticket.message", "at": "2026-11-23T09:30:00Z", "ticket_id": "K-1", "author": "agent",
         "body": "Looking into it"}
RESOLVED = {"type": "ticket.status", "at": "2026-11-23T10:00:00Z", "ticket_id": "K-1", "status": "resolved"}


@pytest.mark.parametrize("skipped", [
    {"type": "ticket.created", "at": "2026-12-23T09:00:00Z", "ticket": {"id": "K-1", "subject": "again"}},
    {"type": "ticket.message", "at": "2026-12-23T09:00:00Z", "ticket_id": "K-404", "author": "customer",
     "body": "hello?"},
])
def test_a_line_skipped_whole_moves_no_clock(skipped: dict[str, object]) -> None:
    clean = Replay(CONFIG)
    expected = list(clean.run(lines(CREATED, REPLY, RESOLVED)))
    rp = Replay(CONFIG)

    got = list(rp.run(lines(CREATED, skipped, REPLY, RESOLVED)))

    assert got == expected
    assert not any(d.get("decision") == "sla_breach" for d in got)
    assert len(rp.problems) == 1 and rp.problems[0].startswith("line 2: ") and "before the previous" not in (
        rp.problems[0])
