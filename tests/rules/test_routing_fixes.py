"""Routing fixes: team members match agents without regard to case; a tier change moves a waiting ticket."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.check import check_file
from bridge.model import Record
from bridge.plugins import PluginHost, create_host
from bridge.replay import Replay
from bridge.rules.routing import ANY, Router
from bridge.settings import Config

A, BOB = "a@x.com", "bob@example.com"
DAY = {"timezone": "UTC", "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}}


def at(hm: str) -> str:
    return f"2026-11-02T{hm}:00Z"  # a Monday


def event(kind: str, when: str, **body: Any) -> str:
    return json.dumps({"type": kind, "at": when, **body})


def created(tid: str, when: str, **ticket: Any) -> str:
    base = {"id": tid, "subject": "s", "body": "b", "status": "open", "tags": []}
    return event("ticket.created", when, ticket={**base, **ticket})


def assigns(
    config: dict[str, Any], lines: list[str], until: datetime | None = None
) -> list[tuple[str, str, str, str]]:
    """(at, ticket, rule, to) of each assignment of one replay; a replay problem fails the test."""
    rp = Replay(Config(**config), until=until)
    out = list(rp.run(lines))
    assert rp.problems == []
    return [(d["at"], d["ticket_id"], d["rule"], d["to"]) for d in out if d.get("decision") == "assign"]


# ---------------------------------------------------------------- team members, whatever their letter case


def host_factory(cfg: Config) -> PluginHost:
    return create_host(cfg.plugins.disabled, cfg.bridge.plugins_dir)


def test_check_takes_a_member_spelled_in_another_case_as_the_agent(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(textwrap.dedent("""\
        [bridge]
        database = "sqlite:///x.db"

        [teams.billing]
        members = ["Bob@Example.com", "carol@example.com"]

        [[agents]]
        email = "bob@example.com"
        """))
    _loaded, report = check_file(path, host_factory)
    assert report.errors == []
    # Bob is the agent bob@example.com; carol is nobody, and still warned about
    assert [w for w in report.warnings if "members" in w] == [
        f"{path}:5: teams.billing.members.1: warning: 'carol@example.com' is not one of the [[agents]]"
    ]


def test_a_team_assignment_reaches_a_member_spelled_in_another_case() -> None:
    config = {
        "teams": {"billing": {"members": ["Bob@Example.com"]}},
        "rules": [{"name": "to-billing", "set": "routing", "when": {"all": [{"tag": "billing/*"}]},
                   "then": [{"assign": {"team": "billing"}}]}],
        "agents": [{"email": "alice@example.com"}, {"email": BOB}],
    }
    assert assigns(config, [created("T1", at("09:00"), tags=["billing/x"])]) == [
        (at("09:00"), "T1", "to-billing", BOB)
    ]


def test_the_team_calendar_applies_to_a_member_spelled_in_another_case() -> None:
    config = {
        "calendars": {"support": DAY},
        "teams": {"billing": {"members": ["Bob@Example.com"], "calendar": "support"}},
        "agents": [{"email": BOB}],
    }
    # created before the team's hours: Bob takes it when they begin, not at once
    noon = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    assert assigns(config, [created("T1", at("08:00"))], noon) == [(at("09:00"), "T1", "routing", BOB)]


# ---------------------------------------------------------------- a tier change while a ticket waits


def test_a_waiting_ticket_enqueued_again_with_another_tier_moves_and_keeps_its_time() -> None:
    router = Router(Config(routing={"tier_order": ["enterprise"]}, agents=[{"email": A}]), {})
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    tickets = {tid: Record(tid, "ticket", attrs={"account": {"tier": tier}})
               for tid, tier in (("T1", "starter"), ("T2", "starter"), ("T3", "enterprise"))}
    for n, rec in enumerate(tickets.values(), start=1):
        router.enqueue(rec, ANY, "routing", t0 + timedelta(minutes=n))
    assert [w.record.id for w in router.queued()] == ["T3", "T1", "T2"]

    upgraded = Record("T2", "ticket", attrs={"account": {"tier": "enterprise"}})
    router.enqueue(upgraded, ANY, "routing", t0 + timedelta(hours=1))  # a later since does not count
    # enterprise first, and T2 has waited longer than T3
    assert [w.record.id for w in router.queued()] == ["T2", "T3", "T1"]
    assert router.waiting["T2"].record is upgraded

    router.enqueue(upgraded, ANY, "routing", t0)  # the same tier again: its place stands
    assert [w.record.id for w in router.queued()] == ["T2", "T3", "T1"]
    router.dequeue("T2")  # the moved entry is the one taken out
    assert [w.record.id for w in router.queued()] == ["T3", "T1"]


@pytest.mark.parametrize("asked_again", [False, True], ids=["plain routing", "a rule asks again"])
def test_a_tier_upgrade_moves_the_waiting_ticket_ahead(asked_again: bool) -> None:
    # /work/review/a/bug_tier_change_while_waiting: whether or not a rule on the upgrade asks for an agent
    # again, T2 (now enterprise) leaves the queue before T1 (starter), which waited longer
    config: dict[str, Any] = {
        "routing": {"strategy": "round_robin", "tier_order": ["enterprise"]},
        "agents": [{"email": A, "capacity": 1}],
    }
    if asked_again:
        config["rules"] = [{"name": "enterprise", "set": "routing",
                            "when": {"field": "account.tier", "eq": "enterprise"},
                            "then": [{"assign": {"agent": A}}]}]
    lines = [
        created("T0", at("09:00")),
        created("T1", at("09:01"), account={"tier": "starter"}),
        created("T2", at("09:02"), account={"tier": "starter"}),
        event("ticket.updated", at("09:03"), ticket_id="T2", changes={"account": {"tier": "enterprise"}}),
        event("ticket.status", at("09:04"), ticket_id="T0", status="resolved"),
    ]
    assert assigns(config, lines) == [
        (at("09:00"), "T0", "routing", A),
        (at("09:04"), "T2", "enterprise" if asked_again else "routing", A),
    ]


def test_an_assign_action_names_its_agent_in_any_letter_case() -> None:
    config = {
        "agents": [{"email": "Bob@Example.com", "capacity": 2},
                   {"email": "carol@example.com", "capacity": 2}],
        "rules": [{"name": "to-bob", "set": "routing", "when": {"tag": "billing/*"},
                   "then": [{"assign": {"agent": "bob@EXAMPLE.com"}}]}],
    }
    lines = [json.dumps({"type": "ticket.created", "at": "2026-11-02T09:00:00Z",
                         "ticket": {"id": "T1", "subject": "s", "body": "b", "tags": ["billing/x"]}})]
    out = list(Replay(Config(**config)).run(lines))
    assert [(d["decision"], d["to"]) for d in out if d.get("decision") == "assign"] == [
        ("assign", "Bob@Example.com")  # the agent as configured
    ]
