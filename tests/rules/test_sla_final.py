"""The final state's SLA deadlines name the acknowledgement's too, when a policy gives it a budget."""

from __future__ import annotations

import json
from typing import Any

from bridge.replay import Replay
from bridge.settings import Config

CREATED = json.dumps({"type": "ticket.created", "at": "2026-11-02T10:30:00Z", "ticket": {
    "id": "T-1", "subject": "x", "body": "y", "status": "open", "tags": []}})


def final_sla(policy: dict[str, Any]) -> dict[str, Any]:
    rp = Replay(Config(sla=[{"name": "all", **policy}]))
    finals = [d for d in rp.run([CREATED]) if d.get("final")]
    assert rp.problems == []
    return dict(finals[0]["sla"])


def test_an_acknowledgement_budget_shows_its_deadline() -> None:
    assert final_sla({"first_response": "1h", "acknowledgement": "30m"}) == {
        "first_response_due": "2026-11-02T11:30:00Z",
        "next_response_due": None,
        "resolution_due": None,
        "acknowledgement_due": "2026-11-02T11:00:00Z",
    }


def test_an_acknowledged_ticket_has_no_acknowledgement_deadline() -> None:
    rp = Replay(Config(sla=[{"name": "all", "acknowledgement": "30m"}]))
    ack = json.dumps({"type": "ticket.updated", "at": "2026-11-02T10:40:00Z", "ticket_id": "T-1",
                      "changes": {"acknowledged": True}})
    finals = [d for d in rp.run([CREATED, ack]) if d.get("final")]
    assert finals[0]["sla"]["acknowledgement_due"] is None


def test_without_an_acknowledgement_budget_the_deadlines_are_the_three_of_the_spec() -> None:
    assert list(final_sla({"first_response": "1h"})) == ["first_response_due", "next_response_due",
                                                           "resolution_due"]
