"""The optimised Router, TicketSla and BusinessCalendar against frozen copies of the code they replaced.

Random operation sequences drive both implementations side by side; every answer (picks, queue order,
timers, fired events, deadlines, calendar arithmetic) must be identical. The reference modules
(``reference_*.py`` beside this file) are the pre-optimisation sources, kept as oracles.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import reference_calendar as ref_calendar
import reference_routing as ref_routing
import reference_sla as ref_sla
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import Record
from bridge.rules import calendar as new_calendar
from bridge.rules import routing, sla
from bridge.rules.calendar import BusinessCalendar
from bridge.settings import CalendarConfig, Config, SlaConfig

T0 = datetime(2026, 3, 27, 6, 0, tzinfo=UTC)  # a Friday, two days before the Berlin spring switch
SKILLS = ("billing", "access", "bug", "feature")
LANGS = ("en", "fr", "de")
STRATEGIES = ("round_robin", "least_loaded", "account_owner", "skills")
CALENDAR_TABLES = {
    "support": CalendarConfig(
        timezone="Europe/Berlin",
        hours={d: ["09:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        holidays=["2026-03-30"],
    ),
    "night": CalendarConfig(
        timezone="America/New_York",
        hours={"fri": ["22:00-24:00"], "sat": ["00:00-06:00", "20:00-24:00"], "sun": ["00:00-02:00"]},
    ),
}
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPS = settings(max_examples=80, deadline=None)


def _calendars(module: Any) -> dict[str, Any]:
    return {name: module.BusinessCalendar.from_config(cfg) for name, cfg in CALENDAR_TABLES.items()}


# ---------------------------------------------------------------- routing


def _router_config(rng: random.Random, strategy: str, fallback: str | None) -> Config:
    n = rng.randrange(1, 9) if rng.random() < 0.5 else rng.randrange(9, 31)
    most = rng.choice([3, 3, 12])
    agents = [
        {
            "email": f"a{i}@x.example",
            "skills": rng.sample(SKILLS, rng.randrange(0, 3)),
            "languages": rng.sample(LANGS, rng.randrange(1, 3)),
            "capacity": rng.randrange(1, most + 1),
            "status": rng.choice(["active", "active", "active", "away", "offline"]),
            "calendar": rng.choice([None, None, None, "support", "night"]),
        }
        for i in range(n)
    ]
    members = [a["email"] for a in agents]
    teams = {
        name: {"members": rng.sample(members, rng.randrange(0, n + 1)), "calendar": rng.choice([None, cal])}
        for name, cal in (("red", "night"), ("blue", "support"))
    }
    return Config(
        calendars=CALENDAR_TABLES,
        agents=agents,
        teams=teams,
        routing={"strategy": strategy, "fallback": fallback, "tier_order": ["enterprise", "growth"]},
    )


def _record(rng: random.Random, n: int, emails: list[str]) -> Record:
    tags = rng.sample(["billing/refund", "bug/api", "access/sso", "plain", "feature/x", "bug/ui"],
                      rng.randrange(3))
    account: Any = {
        "tier": rng.choice(["enterprise", "growth", "starter", None, 3]),
        "owner": rng.choice([*emails, "nobody@x.example", None, 7]),
    }
    if rng.random() < 0.1:
        account = "not a dict"
    attrs: dict[str, Any] = {"account": account}
    if rng.random() < 0.8:
        attrs["requester"] = {"language": rng.choice([*LANGS, None])}
    if rng.random() < 0.3:
        attrs["language"] = rng.choice(LANGS)
    return Record(f"T-{n}", "ticket", tags=tags, attrs=attrs)


def _request(rng: random.Random, emails: list[str], mod: Any) -> Any:
    return mod.Request(
        skill=rng.choice([None, None, *SKILLS, "unknown"]),
        language=rng.choice([None, None, None, *LANGS]),
        agent=rng.choice([None] * 6 + [*emails, "ghost@x.example"]),
        team=rng.choice([None, None, None, "red", "blue", "green"]),
    )


def _run_router(seed: int, strategy: str, fallback: str | None) -> None:
    rng = random.Random(seed)
    config = _router_config(rng, strategy, fallback)
    new = routing.Router(config, _calendars(new_calendar))
    old = ref_routing.Router(config, _calendars(ref_calendar))
    emails = list(old.agents)
    records: list[Record] = []
    at = T0
    for step in range(250):
        if rng.random() < 0.6:
            at += timedelta(minutes=rng.choice([1, 7, 30, 95, 400, 1500]))
        op = rng.random()
        if op < 0.4:
            rec = _record(rng, step, emails)
            records.append(rec)
            req_args = _request(rng, emails, ref_routing)
            kw = {"skill": req_args.skill, "language": req_args.language, "agent": req_args.agent,
                  "team": req_args.team}
            if rng.random() < 0.3:
                kw = {}
            got = new.pick(rec, routing.Request(**kw), at)
            want = old.pick(rec, ref_routing.Request(**kw), at)
            assert got == want, (step, kw)
            if got is not None and rng.random() < 0.9:
                for r in (new, old):
                    r.note_assigned(got)
                    r.hold(got, +1)
            elif got is None and rng.random() < 0.7:
                since = at - timedelta(minutes=rng.randrange(0, 600))
                new.enqueue(rec, routing.Request(**kw), f"rule-{step}", since)
                old.enqueue(rec, ref_routing.Request(**kw), f"rule-{step}", since)
        elif op < 0.55:
            email = rng.choice([*emails, None, "ghost@x.example"])
            delta = rng.choice([-1, -1, +1])
            if email in old.agents and old.agents[email].load + delta < 0:
                continue
            assert new.hold(email, delta) == old.hold(email, delta)
        elif op < 0.65:
            email = rng.choice([*emails, "ghost@x.example"])
            status = rng.choice(["active", "away", "offline"])
            assert new.set_status(email, status) == old.set_status(email, status)
        elif op < 0.7:
            email = rng.choice([*emails, "ghost@x.example"])
            new.note_assigned(email)
            old.note_assigned(email)
        elif op < 0.8:
            assert new.any_available(at) == old.any_available(at)
            assert new.next_opening(at) == old.next_opening(at)
            email = rng.choice([*emails, None, "ghost@x.example"])
            assert new.is_present(email) == old.is_present(email)
        elif op < 0.9 and records:
            rid = rng.choice(records).id
            new.dequeue(rid)
            old.dequeue(rid)
        else:
            # drain the queue the way the Desk does
            for w_old, w_new in zip(list(old.queued()), list(new.queued()), strict=True):
                assert (w_old.key, w_old.record.id, w_old.rule) == (w_new.key, w_new.record.id, w_new.rule)
                assert new.any_available(at) == old.any_available(at)
                if not old.any_available(at):
                    break
                got = new.pick(w_new.record, w_new.request, at)
                assert got == old.pick(w_old.record, w_old.request, at)
                if got is None:
                    continue
                for r in (new, old):
                    r.dequeue(w_old.record.id)
                    r.note_assigned(got)
                    r.hold(got, +1)
        for email in emails:
            a, b = new.agents[email], old.agents[email]
            assert (a.load, a.last, a.status) == (b.load, b.last, b.status)
    assert [w.record.id for w in new.queued()] == [w.record.id for w in old.queued()]


@PROPS
@given(SEEDS, st.sampled_from(STRATEGIES), st.sampled_from([None, *STRATEGIES]))
def test_router_picks_exactly_as_before(seed: int, strategy: str, fallback: str | None) -> None:
    _run_router(seed, strategy, fallback)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("fallback", [None, *STRATEGIES])
def test_router_picks_exactly_as_before_fixed_seeds(strategy: str, fallback: str | None) -> None:
    for seed in range(3):
        _run_router(seed, strategy, fallback)


# ---------------------------------------------------------------- SLA


def _policy(rng: random.Random, name: str) -> SlaConfig:
    def budget() -> str | None:
        return rng.choice([None, "30m", "1h", "4h", "1d", "2d"])

    levels = [{"after": rng.choice(["0m", "15m", "1h", "3h"]), "to": f"team-{n}"}
              for n in range(rng.randrange(3))]
    return SlaConfig(
        name=name,
        first_response=budget(),
        next_response=budget(),
        resolution=budget(),
        acknowledgement=budget(),
        warn_before=rng.choice([None, "10m", "45m", "2h"]),
        pause_on=rng.choice([["pending", "on_hold"], ["pending"], []]),
        escalate=levels,
    )


def _brief(events: list[Any]) -> list[tuple[Any, ...]]:
    return [(e.at, e.kind, e.metric, e.policy, e.to) for e in events]


def _run_sla(seed: int) -> None:
    rng = random.Random(seed)
    new_cals = [*_calendars(new_calendar).values(), BusinessCalendar.always()]
    old_cals = [*_calendars(ref_calendar).values(), ref_calendar.BusinessCalendar.always()]
    policies = [_policy(rng, f"p{n}") for n in range(3)]
    at = T0 + timedelta(minutes=rng.randrange(0, 3000))
    c = rng.randrange(len(new_cals))
    new = sla.TicketSla(policies[0], new_cals[c], at)
    old = ref_sla.TicketSla(policies[0], old_cals[c], at)
    for step in range(120):
        if rng.random() < 0.7:
            at += timedelta(minutes=rng.choice([0, 1, 10, 45, 60, 180, 700, 2000]))
        op = rng.random()
        if op < 0.2:
            status = rng.choice(["open", "pending", "on_hold", "resolved", "closed", "new"])
            new.on_status(status, at)
            old.on_status(status, at)
        elif op < 0.45:
            author = rng.choice(["agent", "customer", "customer", "bot"])
            new.on_message(author, at)
            old.on_message(author, at)
        elif op < 0.52:
            new.on_acknowledge(at)
            old.on_acknowledge(at)
        elif op < 0.6:
            p = rng.randrange(len(policies))
            c = rng.randrange(len(new_cals))
            new.change_policy(policies[p], new_cals[c], at)
            old.change_policy(policies[p], old_cals[c], at)
        elif op < 0.8:
            # fire at the timer, as the Desk does, or at some later instant
            nxt = old.next_timer()
            now = nxt if nxt is not None and rng.random() < 0.7 else at
            if nxt is not None and now < at:
                now = at
            at = max(at, now)
            assert _brief(new.fire(at)) == _brief(old.fire(at)), step
        assert new.next_timer() == old.next_timer(), step
        assert new.due() == old.due(), step
        assert new.running == old.running and new.status == old.status
    end = at + timedelta(days=30)
    assert _brief(new.fire(end)) == _brief(old.fire(end))
    assert new.next_timer() == old.next_timer()


@PROPS
@given(SEEDS)
def test_ticket_sla_behaves_exactly_as_before(seed: int) -> None:
    _run_sla(seed)


def test_ticket_sla_behaves_exactly_as_before_fixed_seeds() -> None:
    for seed in range(40):
        _run_sla(seed)


# ---------------------------------------------------------------- calendar


@PROPS
@given(SEEDS)
def test_calendar_arithmetic_is_exactly_as_before(seed: int) -> None:
    rng = random.Random(seed)
    name = rng.choice([*sorted(CALENDAR_TABLES), "always"])
    if name == "always":
        new, old = BusinessCalendar.always(), ref_calendar.BusinessCalendar.always()
    else:
        new = BusinessCalendar.from_config(CALENDAR_TABLES[name])
        old = ref_calendar.BusinessCalendar.from_config(CALENDAR_TABLES[name])
    # instants in UTC and in other fixed offsets (the always-open fast path only takes UTC ones)
    zone = rng.choice([UTC, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
    t = (T0 + timedelta(seconds=rng.randrange(0, 400 * 86400))).astimezone(zone)
    for _ in range(30):
        d = timedelta(seconds=rng.choice([0, 1, 60, 3600, 86400, 10 * 86400, rng.randrange(0, 90 * 86400)]))
        got, want = new.add(t, d), old.add(t, d)
        assert got == want and got.tzinfo is want.tzinfo
        u = t + timedelta(seconds=rng.randrange(-86400, 30 * 86400))
        assert new.elapsed(t, u) == old.elapsed(t, u)
        assert new.is_open(u) == old.is_open(u)
        assert new.next_open(u) == old.next_open(u)
        t = u
    with pytest.raises(ValueError, match="negative"):
        new.add(t, -timedelta(seconds=1))
    naive = t.replace(tzinfo=None)
    with pytest.raises(ValueError, match="naive"):
        new.add(naive, timedelta(hours=1))
    with pytest.raises(ValueError, match="naive"):
        new.elapsed(naive, t)
