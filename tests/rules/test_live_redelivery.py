"""A webhook delivered again (at once, or after newer changes; to the leader or to another replica) is no new
message; a change another replica only marked as taken fired no timer (a rebuild must not fire them there)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from live_support import T0, ingest, make_app, ticket, writes

from bridge.scheduler import RulesLeader, run_rules, run_timers, start_rules
from bridge.store.testing import require_postgres, temp_postgres_schema_url

SLA: dict[str, Any] = {
    "teams": {"leads": {"members": []}},
    "sla": [{"name": "all", "first_response": "1h", "next_response": "1h",
             "escalate": [{"after": "30m", "to": "leads"}]}],
}


def m(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.mark.parametrize("webhooks_to", ["leader", "replica"])
def test_a_late_webhook_delivered_twice_to_any_replica_is_one_message(webhooks_to: str) -> None:
    # the customer's 09:20 webhook arrives after 09:30, and again at 09:45: one message, whichever replica
    # takes the webhooks (the one without rules notes it in the ticket for the next delivery to know)
    require_postgres()
    with temp_postgres_schema_url() as url:
        a, b = make_app(url, **SLA), make_app(url, **SLA)
        lead = RulesLeader(a)
        assert lead.claim(m(-60)) is not None and RulesLeader(b).claim(m(-60)) is None
        hook = a if webhooks_to == "leader" else b
        try:
            opened = {"status": "open", "subject": "help", "message": "help", "last_author": "customer"}
            late = {"message": "still broken", "last_author": "customer"}
            ingest(a, ticket("T1", m(0), **opened))
            ingest(hook, ticket("T1", m(10), message="on it", last_author="agent"))
            ingest(hook, ticket("T1", m(30), message="status?", last_author="agent"))
            assert not ingest(hook, ticket("T1", m(20), **late)).repeat
            run_rules(a, lead, m(35))
            ingest(hook, ticket("T1", m(40), message="fixed", last_author="agent"))
            run_rules(a, lead, m(41))
            again = ingest(hook, ticket("T1", m(20), **late))
            run_rules(a, lead, m(50))
            run_rules(a, lead, m(300))
            assert again.repeat and [f for _t, f in writes(a) if "escalation" in f] == []
        finally:
            lead.release()
            a.close()
            b.close()


def test_a_webhook_delivered_again_at_once_is_no_new_message(tmp_path: Path) -> None:
    # the helpdesk retries the resolve (our answer came late) with the same time: its agent message is not
    # taken again at the rules' clock, which would move the auto-close hours later
    app = make_app(f"sqlite:///{tmp_path / 'b.db'}", auto_close={"after": "1d"})
    try:
        live = start_rules(app, now=m(-60))
        ingest(app, ticket("T1", m(0), status="open", subject="help", message="help", last_author="customer"))
        resolve = {"status": "resolved", "message": "fixed, closing", "last_author": "agent"}
        ingest(app, ticket("T1", m(10), **resolve))
        ingest(app, ticket("T2", m(600), status="open", subject="other"))  # the rules' clock moves on
        ingest(app, ticket("T1", m(10), **resolve))
        run_timers(app, live, T0 + timedelta(days=1, minutes=30))
        assert [t for t, f in writes(app) if f == {"status": "closed"}] == ["T1"]
    finally:
        app.close()


def test_a_change_another_replica_only_marked_fired_no_timer_for_a_rebuild() -> None:
    # replica B takes in a change of a closed ticket at 10:30 (marked as taken, no rules ran); the leader
    # restarts before its next rules job: the breach due at 10:00 must still be escalated by it
    require_postgres()
    cfg = {"teams": {"leads": {"members": []}},
           "sla": [{"name": "all", "first_response": "1h", "escalate": [{"after": "0m", "to": "leads"}]}]}
    with temp_postgres_schema_url() as url:
        a, b = make_app(url, **cfg), make_app(url, **cfg)
        lead = RulesLeader(a)
        assert lead.claim(m(-60)) is not None and RulesLeader(b).claim(m(-60)) is None
        try:
            ingest(a, ticket("T2", m(-30), status="open", subject="old"))
            ingest(a, ticket("T2", m(-20), status="closed", message="done", last_author="agent"))
            ingest(a, ticket("T1", m(0), status="open", subject="help"))  # first response due 10:00
            run_rules(a, lead, m(30))
            ingest(b, ticket("T2", m(90), tags=["billing/refund"]))
            lead.release()
            a.close()
            a = make_app(url, **cfg)
            lead = RulesLeader(a)
            assert lead.claim(m(95)) is not None
            run_rules(a, lead, m(100))
            run_rules(a, lead, m(200))
            assert [(t, f) for t, f in writes(a) if "escalation" in f] == [("T1", {"escalation": "leads"})]
        finally:
            lead.release()
            a.close()
            b.close()
