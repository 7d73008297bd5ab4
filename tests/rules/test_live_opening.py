"""A ticket the daemon first sees in a pull opened when its helpdesk says: its SLA clocks run from its
``created_at`` when that is within an hour of the change (created since the last pull, or while the daemon was
down), as a webhook would have started them and as ``bridge replay`` does; an older ticket (a first run, a
backfill) has its clocks from the change, so turning bridge on does not state every old open ticket's breaches
at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from live_support import DESK, T0, Runner, ticket

from bridge.model import format_time

LEADS: dict[str, Any] = {
    "teams": {"leads": {"members": []}},
    "sla": [{"name": "all", "first_response": "1h", "escalate": [{"after": "0m", "to": "leads"}]}],
}


def config(every: str) -> dict[str, Any]:
    return {**LEADS, "connectors": {"desk": {**DESK["desk"], "sync_every": every}}}


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def escalated(r: Runner) -> bool:
    return ("T-1", {"escalation": "leads"}) in r.writes()


@pytest.mark.parametrize("restart", [False, True])
def test_a_ticket_pulled_after_it_was_created_has_its_clocks_from_its_creation(
    store_url: str, restart: bool
) -> None:
    # created at 9:00, tagged at 9:20, pulled at 9:25: its first response is due at 10:00
    r = Runner(store_url, config("30m"))
    r.ingest(ticket("T-1", minute(20), status="open", subject="x", created_at=format_time(T0)))
    if restart:
        r.restart(minute(30))
    r.tick(minute(59))
    assert not escalated(r)
    r.tick(minute(61))
    assert escalated(r)
    r.close()


def test_a_ticket_created_before_the_last_pull_has_its_clocks_from_the_change() -> None:
    # created two days ago and first seen now (bridge was just turned on): its clock starts at the change
    r = Runner("sqlite://", config("5m"), now=minute(20))
    r.ingest(ticket("T-1", minute(20), status="open", subject="x",
                    created_at=format_time(T0 - timedelta(days=2))))
    r.tick(minute(21))
    assert not escalated(r)
    r.tick(minute(79))
    assert not escalated(r)
    r.tick(minute(81))
    assert escalated(r)
    r.close()


def test_the_reach_is_an_hour_whatever_sync_every_says_so_a_restart_under_another_keeps_the_clocks(
    store_url: str,
) -> None:
    # created at 9:00, first seen at 9:50 (the daemon was down): its first response is due at 10:00; a restart
    # with another sync_every recomputes the same clocks, and states the breach once
    r = Runner(store_url, config("5m"))
    r.ingest(ticket("T-1", minute(50), status="open", subject="x", created_at=format_time(T0)))
    r.tick(minute(61))
    assert escalated(r)
    r.config = config("30m")
    r.restart(minute(62))
    r.tick(minute(90))
    assert r.writes().count(("T-1", {"escalation": "leads"})) == 1
    r.close()
    # created 61 minutes before the change that brings it: its clocks start at the change
    r = Runner("sqlite://", config("30m"))
    r.ingest(ticket("T-1", minute(61), status="open", subject="x", created_at=format_time(T0)))
    r.tick(minute(120))
    assert not escalated(r)
    r.tick(minute(122))
    assert escalated(r)
    r.close()


def test_a_created_at_that_is_not_a_time_is_ignored() -> None:
    r = Runner("sqlite://", LEADS)
    r.ingest(ticket("T-1", minute(2), status="open", subject="x", created_at="yesterday"))
    r.tick(minute(61))
    assert not escalated(r)
    r.tick(minute(63))
    assert escalated(r)
    r.close()
