"""The daemon's rules across a restart, as a differential fuzzer found them wanting (restart vs none, one
replica): a restart queues exactly the writes the same changes queue without it (docs/sync.md)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from live_support import T0, Runner, Writes, stored, ticket

Restart = Callable[[datetime], None]


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def both(
    tmp_path: Path, config: dict[str, Any], steps: Callable[[Runner, Restart], Writes]
) -> tuple[Writes, Writes]:
    """The writes ``steps`` queue straight through, and with a restart where they call ``restart``."""
    out = []
    for restarting in (False, True):
        runner = Runner(f"sqlite:///{tmp_path / f'{restarting}.db'}", config)
        out.append(steps(runner, runner.restart if restarting else lambda _now: None))
        runner.close()
    return out[0], out[1]


ROUND_ROBIN: dict[str, Any] = {
    "agents": [{"email": "a@x.example"}, {"email": "b@x.example"}],
    "routing": {"strategy": "round_robin"},
}
MOVED = {"notify": {"to": "#ops", "message": "moved"}}


def test_an_assignee_changed_rule_does_not_fire_again_after_a_restart(tmp_path: Path) -> None:
    # the rebuild, without the closed T-1, routes T-2 to a; the store's b is taken, and T-2's next change must
    # not read as a change of assignee from a to b
    config = {**ROUND_ROBIN, "rules": [{"name": "moved", "set": "triggers", "then": [MOVED],
                                        "when": {"field": "ticket.assignee", "changed": True}}]}

    def steps(r: Runner, restart: Restart) -> Writes:
        r.ingest(ticket("T-1", minute(0), status="open", subject="x"))  # to a
        r.ingest(ticket("T-1", minute(1), status="closed"))
        r.ingest(ticket("T-2", minute(2), status="open", subject="y"))  # to b
        restart(minute(3))
        r.ingest(ticket("T-2", minute(4), subject="y2"))
        return r.writes()

    plain, again = both(tmp_path, config, steps)
    assert plain.count(("T-2", MOVED)) == 1
    assert again == plain


def test_round_robins_order_after_a_restart_keeps_one_instants_assignments_in_order(tmp_path: Path) -> None:
    def steps(r: Runner, restart: Restart) -> Writes:
        r.ingest(ticket("T-1", minute(0), status="open", subject="x"))  # to a
        r.ingest(ticket("T-2", minute(1), status="open", subject="y"))  # to b
        r.ingest(ticket("T-3", minute(1), status="open", subject="z"))  # to a, at the same instant, after b
        restart(minute(2))
        r.ingest(ticket("T-4", minute(3), status="open", subject="w"))  # b's turn
        return r.writes()

    plain, again = both(tmp_path, ROUND_ROBIN, steps)
    assert ("T-4", {"assignee": "b@x.example"}) in plain
    assert again == plain


def billing_b_config(action: dict[str, Any]) -> dict[str, Any]:
    """a and b, one seat each, b the billing agent; a rule takes ``action`` when b has the ticket."""
    return {
        "agents": [{"email": "a@x.example", "capacity": 1},
                   {"email": "b@x.example", "capacity": 1, "skills": ["billing"]}],
        "routing": {"strategy": "round_robin"},
        "rules": [
            {"name": "to-billing", "set": "routing", "when": {"tag": "billing"},
             "then": [{"assign": {"skill": "billing"}}]},
            {"name": "owner-does", "set": "triggers", "then": [action],
             "when": {"field": "ticket.assignee", "eq": "b@x.example"}},
        ],
    }


def test_what_the_rebuilds_own_routing_made_rules_do_is_not_kept(tmp_path: Path) -> None:
    config = billing_b_config({"add_tags": ["owned"]})

    def steps(r: Runner, restart: Restart) -> Writes:
        r.ingest(ticket("T-1", minute(0), status="open", subject="x", tags=[]))  # to a
        r.ingest(ticket("T-1", minute(1), status="closed"))
        r.ingest(ticket("T-2", minute(2), status="open", subject="y", tags=[]))  # to b: owned
        r.ingest(ticket("T-3", minute(3), status="open", subject="z", tags=["billing"]))  # b is full: waits
        # the rebuild, without T-1, routes T-2 to a and T-3 to b, whose rule tags T-3 in memory only
        restart(minute(4))
        r.ingest(ticket("T-2", minute(10), status="resolved"))  # b's seat goes to T-3: owned now
        assert stored(r.app, "T-3").tags == ["billing", "owned"]
        return r.writes()

    plain, again = both(tmp_path, config, steps)
    assert ("T-3", {"tags": ["billing", "owned"]}) in plain
    assert again == plain


def test_a_tag_a_rule_adds_when_the_queue_assigns_a_ticket_is_written_and_stored(tmp_path: Path) -> None:
    config = {
        "agents": [{"email": "a@x.example", "capacity": 1}],
        "rules": [{"name": "owner-tag", "set": "triggers", "then": [{"add_tags": ["owned"]}],
                   "when": {"field": "ticket.assignee", "eq": "a@x.example"}}],
    }
    r = Runner(f"sqlite:///{tmp_path / 'q.db'}", config)
    r.ingest(ticket("T-1", minute(0), status="open", subject="x", tags=["vip"]))  # to a
    r.ingest(ticket("T-2", minute(1), status="open", subject="y", tags=["bug"]))  # waits
    r.ingest(ticket("T-1", minute(2), status="resolved"))  # T-2 to a, in T-1's change
    assert ("T-2", {"tags": ["bug", "owned"]}) in r.writes()
    assert stored(r.app, "T-2").tags == ["bug", "owned"]
    r.close()


def test_a_status_the_rebuilds_own_routing_made_a_rule_set_is_not_kept(tmp_path: Path) -> None:
    config = billing_b_config({"set": {"status": "pending"}})

    def steps(r: Runner, restart: Restart) -> Writes:
        r.ingest(ticket("T-1", minute(0), status="open", subject="x", tags=[]))  # to a
        r.ingest(ticket("T-1", minute(1), status="closed"))
        r.ingest(ticket("T-2", minute(2), status="open", subject="y", tags=[]))  # to b: pending
        r.ingest(ticket("T-3", minute(3), status="open", subject="z", tags=["billing"]))  # waits
        restart(minute(4))  # the rebuild gives T-3 to b, whose rule sets it pending in memory only
        r.ingest(ticket("T-2", minute(10), status="resolved"))  # b's seat goes to T-3: pending now
        assert stored(r.app, "T-3").attrs.get("status") == "pending"
        return r.writes()

    plain, again = both(tmp_path, config, steps)
    assert ("T-3", {"status": "pending"}) in plain
    assert again == plain


def test_a_team_a_rule_sets_when_the_queue_assigns_a_ticket_is_stored(tmp_path: Path) -> None:
    changed = {"notify": {"to": "#ops", "message": "team changed"}}
    config = {
        "agents": [{"email": "a@x.example", "capacity": 1}],
        "teams": {"billing": {"members": ["a@x.example"]}},
        "rules": [{"name": "owner-team", "set": "triggers", "then": [{"set": {"team": "billing"}}],
                   "when": {"field": "ticket.assignee", "eq": "a@x.example"}},
                  {"name": "team-changed", "set": "triggers", "then": [changed],
                   "when": {"field": "ticket.team", "changed": True}}],
    }
    r = Runner(f"sqlite:///{tmp_path / 't.db'}", config)
    r.ingest(ticket("T-1", minute(0), status="open", subject="x"))  # to a: team billing
    r.ingest(ticket("T-2", minute(1), status="open", subject="y"))  # waits
    r.ingest(ticket("T-1", minute(2), status="resolved"))  # T-2 to a, in T-1's change: team billing
    assert stored(r.app, "T-2").attrs.get("team") == "billing"
    r.ingest(ticket("T-2", minute(3), subject="y2"))  # its own next change changes no team
    assert r.writes().count(("T-2", changed)) == 1
    r.close()


def test_a_resolved_tickets_blank_assignee_is_no_change_for_a_rebuild(tmp_path: Path) -> None:
    # the store's blank assignee ("") is nobody, as the rebuild's None: a restart must not take it for a
    # reassignment, or the reopen's changed rule fires before routing instead of after it
    config = {**ROUND_ROBIN, "rules": [{"name": "moved", "set": "triggers", "then": [MOVED],
                                        "when": {"field": "ticket.assignee", "changed": True}}]}

    def steps(r: Runner, restart: Restart) -> Writes:
        r.ingest(ticket("T-1", minute(0), status="resolved"))
        r.ingest(ticket("T-1", minute(1), assignee=""))
        restart(minute(2))
        r.ingest(ticket("T-1", minute(3), status="open"))  # reopened: routed, then the rule sees it
        return r.writes()

    plain, again = both(tmp_path, config, steps)
    assert plain[-2:] == [("T-1", {"assignee": "a@x.example"}), ("T-1", MOVED)]
    assert again == plain


# ---------------------------------------------------------------- a change that came after a newer one

LATE_CONFIG: dict[str, Any] = {
    "agents": [{"email": "a@x.example", "capacity": 5}], "teams": {"leads": {"members": []}},
    "sla": [{"name": "p", "first_response": "30m", "escalate": [{"after": "0m", "to": "leads"}]}],
}


def test_a_late_agent_reply_still_meets_the_first_response_clock(tmp_path: Path) -> None:
    # the helpdesk's 09:12 change arrives before its 09:10 reply (a retried webhook): the reply is not undone
    # by what came later, while the rest of the older change (a status) is not applied over the newer one
    def steps(r: Runner, restart: Restart) -> Writes:
        r.ingest(ticket("T-1", minute(0), status="open", subject="s", priority="normal"))
        r.ingest(ticket("T-1", minute(12), priority="high"))
        out = r.ingest(ticket("T-1", minute(10), message="on it", last_author="agent", status="pending"))
        assert out.stale and "its message or acknowledgement is taken" in out.problems[0]
        assert stored(r.app, "T-1").attrs["status"] == "open"
        restart(minute(20))
        r.tick(minute(60))
        return r.writes()

    plain, again = both(tmp_path, LATE_CONFIG, steps)
    assert plain == [("T-1", {"assignee": "a@x.example"})]  # no breach, no escalation
    assert again == plain


def test_a_late_change_with_no_message_is_applied_to_nothing(tmp_path: Path) -> None:
    r = Runner(f"sqlite:///{tmp_path / 'late.db'}", LATE_CONFIG)
    r.ingest(ticket("T-1", minute(0), status="open", subject="s"))
    r.ingest(ticket("T-1", minute(12), priority="high"))
    out = r.ingest(ticket("T-1", minute(10), priority="low"))
    assert out.stale and out.problems[0].endswith(", not applied")
    assert stored(r.app, "T-1").attrs["priority"] == "high"
    r.tick(minute(60))
    assert ("T-1", {"escalation": "leads"}) in r.writes()  # nobody replied: breached and escalated
    r.close()
