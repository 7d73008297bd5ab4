# Frozen copy of src/bridge/rules/routing.py before the speed work (commit 6583367): the oracle
# that the differential tests compare the optimised module with. Do not optimise this file.
"""Routing: which agent takes a ticket, and the queue of tickets nobody can take yet.

An agent is routable while its status is ``active``, its calendar (its own, else its team's) is open and it
holds fewer open tickets than its ``capacity`` (open = assigned and neither resolved nor closed). Among the
routable agents that fit the request (skill, language, agent, team of an ``assign`` action) the strategy
picks:

- ``round_robin``: the least recently assigned (never assigned first, in config order);
- ``least_loaded``: the fewest open tickets, then the least recently assigned;
- ``account_owner``: the account's owner (``account.owner``); when the owner cannot take it, the fallback
  strategy, or with no fallback the ticket waits for the owner (an owner who is no agent, or who does not fit
  the request, never blocks: round robin decides then);
- ``skills``: the most skills matching the request and the ticket's tag prefixes, then the requester's
  language, then the least loaded. Nobody matching any wanted skill counts as nobody.

``fallback`` is tried when the strategy finds nobody. Waiting tickets leave the queue in ``tier_order``
(account tiers listed first go first, unlisted tiers after), oldest first within a tier.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.model import Record
from bridge.rules.calendar import BusinessCalendar
from bridge.settings import AgentConfig, Config


@dataclass(frozen=True, slots=True)
class Request:
    """What an ``assign`` action asks for; every given part must hold for an agent to fit."""

    skill: str | None = None
    language: str | None = None
    agent: str | None = None
    team: str | None = None

    @classmethod
    def from_action(cls, arg: Any) -> Request:
        """``{ skill = "billing" }`` and friends (a bare string names an agent)."""
        if isinstance(arg, str):
            return cls(agent=arg)
        if not isinstance(arg, dict):
            return cls()
        keys = ("skill", "language", "agent", "team")
        parts = (str(arg[k]) if arg.get(k) is not None else None for k in keys)
        return cls(*parts)


ANY = Request()


@dataclass(slots=True, eq=False)
class Agent:
    """One agent's routing state."""

    email: str
    index: int
    skills: frozenset[str]
    languages: frozenset[str]
    capacity: int
    status: str
    calendar: BusinessCalendar | None
    teams: frozenset[str]
    load: int = 0
    last: int = -1  # sequence number of the last assignment; -1: never

    def fits(self, request: Request) -> bool:
        """Whether this agent satisfies the request (regardless of availability)."""
        return (
            (request.skill is None or request.skill in self.skills)
            and (request.language is None or request.language in self.languages)
            and (request.agent is None or request.agent == self.email)
            and (request.team is None or request.team in self.teams)
        )

    def available(self, at: datetime) -> bool:
        """Active, under capacity and inside calendar hours at ``at``."""
        return (
            self.status == "active"
            and self.load < self.capacity
            and (self.calendar is None or self.calendar.is_open(at))
        )


@dataclass(slots=True)
class Waiting:
    """A queued ticket: its order key, what it asked for, and which rule asked."""

    key: tuple[int, datetime, int]
    record: Record
    request: Request
    rule: str


class Router:
    """Agents, their loads and the waiting queue; picks an agent per the configured strategy."""

    def __init__(self, config: Config, calendars: dict[str, BusinessCalendar]) -> None:
        self.strategy = config.routing.strategy
        self.fallback = config.routing.fallback
        self.tier_rank = {tier: n for n, tier in enumerate(config.routing.tier_order)}
        team_of: dict[str, set[str]] = {}
        team_calendar: dict[str, str] = {}
        for name, team in config.teams.items():
            for member in team.members:
                team_of.setdefault(member, set()).add(name)
                if team.calendar and member not in team_calendar:
                    team_calendar[member] = team.calendar
        self.agents: dict[str, Agent] = {}
        for n, a in enumerate(config.agents):
            cal_name = a.calendar or team_calendar.get(a.email)
            self.agents[a.email] = _agent(a, n, calendars.get(cal_name) if cal_name else None,
                                          frozenset(team_of.get(a.email, ())))
        self._seq = 0
        self._queue: list[tuple[tuple[int, datetime, int], str]] = []
        self.waiting: dict[str, Waiting] = {}
        self._qseq = 0

    # ---------------------------------------------------------------- loads

    def hold(self, email: str | None, delta: int) -> bool:
        """Add ``delta`` open tickets to an agent's load; True when that freed a slot."""
        agent = self.agents.get(email) if email else None
        if agent is None:
            return False
        agent.load += delta
        return delta < 0 and agent.load < agent.capacity

    def note_assigned(self, email: str) -> None:
        """Record an assignment for round robin."""
        agent = self.agents.get(email)
        if agent is not None:
            self._seq += 1
            agent.last = self._seq

    def set_status(self, email: str, status: str) -> bool:
        """Change an agent's status; True when the agent became active."""
        agent = self.agents.get(email)
        if agent is None:
            return False
        was = agent.status
        agent.status = status
        return status == "active" and was != "active"

    def is_present(self, email: str | None) -> bool:
        """Whether ``email`` is a configured agent whose status is active."""
        agent = self.agents.get(email) if email else None
        return agent is not None and agent.status == "active"

    # ---------------------------------------------------------------- picking

    def pick(self, record: Record, request: Request, at: datetime) -> str | None:
        """The agent that takes ``record`` now, or None when nobody fits (the ticket should wait)."""
        candidates = [a for a in self.agents.values() if a.fits(request) and a.available(at)]
        strategy = self.strategy
        if strategy == "account_owner" and self._owner(record, request) is None and self.fallback is not None:
            strategy = self.fallback  # no owner who could ever take it: the fallback decides
        found = self._by(strategy, candidates, record, request)
        if found is None and self.fallback is not None and self.fallback != self.strategy:
            found = self._by(self.fallback, candidates, record, request)
        return found

    def _owner(self, record: Record, request: Request) -> Agent | None:
        account = record.attrs.get("account")
        owner = account.get("owner") if isinstance(account, dict) else None
        agent = self.agents.get(owner) if isinstance(owner, str) else None
        return agent if agent is not None and agent.fits(request) else None

    def _by(self, strategy: str, candidates: list[Agent], record: Record, request: Request) -> str | None:
        if strategy == "account_owner":
            agent = self._owner(record, request)
            if agent is not None:
                # an owner who cannot take it now: the fallback decides, or with none it waits for them
                return agent.email if agent in candidates else None
            strategy = "round_robin"
        if not candidates:
            return None
        if strategy == "least_loaded":
            return min(candidates, key=lambda a: (a.load, a.last, a.index)).email
        if strategy == "skills":
            wanted = _wanted_skills(record, request)
            language = _language(record)
            if not wanted:
                return min(candidates, key=lambda a: (a.load, a.last, a.index)).email
            best = max(candidates, key=lambda a: (len(a.skills & wanted), language in a.languages, -a.load,
                                                  -a.last, -a.index))
            # (an assign naming an agent or a team goes to one of those named, skills or not)
            named = request.agent is not None or request.team is not None
            return best.email if named or best.skills & wanted else None
        return min(candidates, key=lambda a: (a.last, a.index)).email

    def any_available(self, at: datetime) -> bool:
        """Whether at least one agent could take a ticket now."""
        return any(a.available(at) for a in self.agents.values())

    def next_opening(self, at: datetime) -> datetime | None:
        """When the next agent who is active and under capacity but outside calendar hours opens."""
        times = [a.calendar.next_open(at) for a in self.agents.values()
                 if a.calendar is not None and a.status == "active" and a.load < a.capacity
                 and not a.calendar.is_open(at)]
        return min(times, default=None)

    # ---------------------------------------------------------------- the queue

    def enqueue(self, record: Record, request: Request, rule: str, since: datetime) -> None:
        """Put (or keep) a ticket in the queue; its place is kept when it is already waiting."""
        found = self.waiting.get(record.id)
        if found is not None:
            found.request = request
            found.rule = rule
            return
        account = record.attrs.get("account")
        tier = account.get("tier") if isinstance(account, dict) else None
        self._qseq += 1
        rank = self.tier_rank.get(tier, len(self.tier_rank)) if isinstance(tier, str) else len(self.tier_rank)
        key = (rank, since, self._qseq)
        self.waiting[record.id] = Waiting(key, record, request, rule)
        bisect.insort(self._queue, (key, record.id))

    def dequeue(self, record_id: str) -> None:
        """Take a ticket out of the queue (assigned, resolved or forgotten)."""
        found = self.waiting.pop(record_id, None)
        if found is not None:
            i = bisect.bisect_left(self._queue, (found.key, record_id))
            if i < len(self._queue) and self._queue[i][1] == record_id:
                del self._queue[i]

    def queued(self) -> Iterator[Waiting]:
        """Waiting tickets in the order they leave the queue (a snapshot: safe to dequeue while iterating)."""
        for _key, rid in list(self._queue):
            found = self.waiting.get(rid)
            if found is not None:
                yield found


def _agent(cfg: AgentConfig, index: int, calendar: BusinessCalendar | None, teams: frozenset[str]) -> Agent:
    return Agent(cfg.email, index, frozenset(cfg.skills), frozenset(cfg.languages), cfg.capacity, cfg.status,
                 calendar, teams)


def _wanted_skills(record: Record, request: Request) -> frozenset[str]:
    wanted = {t.split("/", 1)[0] for t in record.tags if "/" in t}
    if request.skill:
        wanted.add(request.skill)
    return frozenset(wanted)


def _language(record: Record) -> str | None:
    requester = record.attrs.get("requester")
    lang = requester.get("language") if isinstance(requester, dict) else None
    return lang if isinstance(lang, str) else record.attrs.get("language")


__all__ = ["ANY", "Agent", "Request", "Router", "Waiting"]
