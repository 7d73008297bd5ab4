"""Why routing chose an agent: Router.explain, kept with the assign decision when the Desk traces."""

from __future__ import annotations

from datetime import UTC, datetime

from test_routing import SUPPORT, Sim, agents, m

from bridge.rules.explain import format_routing


def routed(sim: Sim, tid: str) -> dict[str, object]:
    [d] = [d for d in sim.log if d.decision == "assign" and d.record_id == tid]
    assert d.why is not None
    routing: dict[str, object] = d.why["routing"]
    return routing


def parts(routing: dict[str, object]) -> dict[str, str]:
    return {a["agent"]: a["why"] for a in routing["agents"]}  # type: ignore[attr-defined]


def test_each_agents_part_in_a_pick_is_said() -> None:
    sim = Sim(
        calendars={"support": SUPPORT},
        agents=agents({"email": "a@x", "skills": ["billing"]}, {"email": "b@x", "skills": ["billing"]},
                      {"email": "c@x", "skills": ["billing"], "capacity": 1},
                      {"email": "d@x", "skills": ["access"]},
                      {"email": "e@x", "skills": ["billing"], "calendar": "support"},
                      {"email": "f@x", "skills": ["billing"]}),
        routing={"strategy": "least_loaded"},
        rules=[{"name": "billing", "set": "routing", "when": {"tag": "billing/*"},
                "then": [{"assign": {"skill": "billing"}}]}],
    )
    sim.desk.why = True
    sim.create("T0", m(0), tags=("billing/refund",))  # a@x takes it (first in order)
    sim.desk.router.hold("c@x", +1)  # c@x is full
    sim.agent("f@x", "away", m(1))
    saturday = datetime(2026, 11, 7, 12, 0, tzinfo=UTC)  # e@x's calendar is closed
    sim.create("T1", saturday, tags=("billing/refund",))
    routing = routed(sim, "T1")
    assert (routing["strategy"], routing["asked"], routing["to"]) == (
        "least_loaded", {"skill": "billing"}, "b@x")
    assert parts(routing) == {
        "a@x": "available, ranked after the one chosen (last assigned #1)",
        "b@x": "chosen: the fewest open tickets, then the least recently assigned of those available "
               "(never assigned)",
        "c@x": "not available: at capacity",
        "d@x": "does not fit: no skill 'billing'",
        "e@x": "not available: outside working hours",
        "f@x": "not available: away",
    }
    lines = format_routing({"at": "2026-11-07T12:00:00Z", "rule": "billing", **routing}, "  ")
    assert lines[0] == ("  2026-11-07T12:00:00Z to b@x (billing: least_loaded; asked skill 'billing')")
    assert lines[1] == ("    a@x: available, ranked after the one chosen (last assigned #1) "
                        "(1 open of 5, active)")
    assert "    e@x: not available: outside working hours (0 open of 5, active, outside hours)" in lines
    # the rule that asked keeps what it saw as well: one why for the decision
    [d] = [d for d in sim.log if d.decision == "assign" and d.record_id == "T1"]
    assert d.why is not None and d.why["matched"] is True and d.why["tree"]["op"] == "tag"


def test_the_account_owner_and_the_fallback_are_named() -> None:
    sim = Sim(agents=agents({"email": "a@x"}, {"email": "b@x"}),
              routing={"strategy": "account_owner", "fallback": "least_loaded"})
    sim.desk.why = True
    sim.create("T1", m(0), owner="B@x")
    assert parts(routed(sim, "T1"))["b@x"] == "chosen: the account's owner"
    sim.agent("b@x", "away", m(1))
    sim.create("T2", m(2), owner="b@x")
    routing = routed(sim, "T2")
    assert routing["owner"] == "b@x"
    assert parts(routing) == {
        "a@x": "chosen by the fallback (least_loaded): the fewest open tickets, then the least recently "
               "assigned of those available (never assigned)",
        "b@x": "the account's owner; not available: away",
    }


def test_no_routing_why_unless_the_desk_traces() -> None:
    # the hot path (replay) keeps nothing
    sim = Sim(agents=agents({"email": "a@x"}), routing={"strategy": "round_robin"})
    sim.create("T1", m(0))
    [d] = [d for d in sim.log if d.decision == "assign"]
    assert d.why is None


def test_a_later_sla_policy_that_matches_too_says_which_one_applies() -> None:
    from bridge.model import Record
    from bridge.rules.engine import Desk
    from bridge.rules.explain import format_explain
    from bridge.settings import Config

    desk = Desk(Config(sla=[
        {"name": "enterprise", "when": {"field": "account.tier", "eq": "enterprise"}, "first_response": "1h"},
        {"name": "standard", "first_response": "8h"}]))
    ticket = Record("T-1", "ticket", attrs={"status": "open", "account": {"tier": "enterprise"}})
    entries = desk.explain(ticket)
    assert [(e["rule"], e["chosen"], e.get("behind")) for e in entries] == [
        ("enterprise", True, None), ("standard", False, "enterprise")]
    lines = format_explain(entries).splitlines()
    assert "✓ enterprise [sla] (applies)" in lines
    assert "✓ standard [sla] (matches, but enterprise comes first and applies)" in lines


def test_a_large_desk_names_the_agents_that_fit_and_counts_the_others() -> None:
    many = [{"email": f"n{i}@x", "skills": ["access"]} for i in range(25)]
    sim = Sim(agents=agents({"email": "a@x", "skills": ["billing"]}, *many),
              routing={"strategy": "round_robin"},
              rules=[{"name": "billing", "set": "routing", "when": {"tag": "billing/*"},
                      "then": [{"assign": {"skill": "billing"}}]}])
    sim.desk.why = True
    sim.create("T1", m(0), tags=("billing/refund",))
    routing = routed(sim, "T1")
    assert list(parts(routing)) == ["a@x"] and routing["not_fitting"] == 25
    assert format_routing(routing)[-1] == "  and 25 more agents who do not fit what was asked"


def test_skills_says_when_the_agent_the_rule_named_has_none_of_the_skills_wanted() -> None:
    from bridge.model import Record
    from bridge.rules.routing import Request, Router
    from bridge.settings import Config

    config = Config(routing={"strategy": "skills"}, agents=[
        {"email": "a@x.com", "skills": ["billing"]}, {"email": "b@x.com", "skills": ["access"]}])
    router = Router(config, {})
    ticket = Record(id="T1", kind="ticket", tags=["billing/refund"])
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    cases = ((Request(agent="b@x.com"), "the agent"), (Request(team="t"), "a member of team 't'"))
    for request, named in cases:
        if request.team:
            router = Router(Config(**{**config.model_dump(), "teams": {"t": {"members": ["b@x.com"]}}}), {})
        chosen = router.pick(ticket, request, at)
        assert chosen == "b@x.com"
        why = {a["agent"]: a["why"] for a in router.explain(ticket, request, at, chosen)["agents"]}
        assert why["b@x.com"] == (f"chosen: {named} the rule named, though with none of the skills wanted "
                                  "(billing) (never assigned)")
