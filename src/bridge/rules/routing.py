"""Routing: which agent takes a ticket, and the queue of tickets nobody can take yet.

An agent is routable while its status is ``active``, its calendar (its own, else its team's) is open and it
holds fewer open tickets than its ``capacity`` (open = assigned and neither resolved nor closed). Among the
routable agents that fit the request (skill, language, agent, team of an ``assign`` action) the strategy
picks:

- ``round_robin``: the least recently assigned (never assigned first, in config order);
- ``least_loaded``: the fewest open tickets, then the least recently assigned;
- ``account_owner``: the account's owner (``account.owner``); when the owner cannot take it, the fallback
  strategy, or with no fallback the ticket waits for the owner (no owner, an owner who is no agent, or one who
  does not fit the request, never blocks: the fallback decides then, round robin when there is none);
- ``skills``: the most skills matching the request and the ticket's tag prefixes, then the requester's
  language, then the least loaded. Nobody matching any wanted skill counts as nobody, unless the request
  names an agent or a team (those it names are ranked, and the first takes it).

``fallback`` is tried when the strategy finds nobody. Waiting tickets leave the queue in ``tier_order``
(account tiers listed first go first, unlisted tiers after), oldest first within a tier. A waiting ticket
counts on nobody's load (a reopened ticket whose owner is away waits without holding the owner's slot), and
leaves the queue when someone assigns it by hand or by a rule. Emails are compared without regard to case.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from bridge.model import Record
from bridge.rules.calendar import BusinessCalendar
from bridge.rules.conditions import nested
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
            return cls(agent=arg.casefold())
        if not isinstance(arg, dict):
            return cls()
        skill, language, agent, team = (str(arg[k]) if arg.get(k) is not None else None for k in ASSIGN_KEYS)
        # an agent's email matches without regard to case (Agent.folded), and a skill too: it meets the tag
        # prefixes of a helpdesk that keeps capitals (``Billing/refund``) and the agents' skills as written
        return cls(skill.casefold() if skill is not None else None, language,
                   agent.casefold() if agent is not None else None, team)


ANY = Request()
EXPLAIN_ALL = 20  # up to this many agents, a routing explanation names each one
ASSIGN_KEYS = ("skill", "language", "agent", "team")  # the keys of an assign action, in Request order
# sort keys of the strategies (attrgetter: no Python call per agent)
_LEAST_LOADED = attrgetter("load", "last", "index")
_ROUND_ROBIN = attrgetter("last", "index")


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
    folded: str = ""  # the email case-folded, as an assign action's agent is compared

    def __post_init__(self) -> None:
        self.folded = self.email.casefold()

    def fits(self, request: Request) -> bool:
        """Whether this agent satisfies the request (regardless of availability)."""
        return (
            (request.skill is None or request.skill in self.skills)
            and (request.language is None or request.language in self.languages)
            and (request.agent is None or request.agent == self.folded)
            and (request.team is None or request.team in self.teams)
        )



@dataclass(slots=True)
class Waiting:
    """A queued ticket: its order key, what it asked for, and which rule asked."""

    key: tuple[int, datetime, int]
    record: Record
    request: Request
    rule: str
    assignee: Any = None  # the ticket's assignee when it was queued: another one means someone assigned it
    # whether that assignee was present (active) then: an agent working a ticket that waits to be moved (to a
    # skill they lack) keeps its seat until it is; a ticket reopened while its owner was away holds none
    kept: bool = False


class Router:
    """Agents, their loads and the waiting queue; picks an agent per the configured strategy.

    For speed the Router caches which agents fit each request and keeps each agent's rank under the strategy
    (least loaded or round robin), so a pick is one C-level ``min`` over the fitting agents. An agent's
    skills, languages, teams and calendar are fixed, and its ``load``, ``last`` and ``status`` change only
    through :meth:`hold`, :meth:`note_assigned` and :meth:`set_status`.
    """

    def __init__(self, config: Config, calendars: dict[str, BusinessCalendar]) -> None:
        self.strategy = config.routing.strategy
        self.fallback = config.routing.fallback
        self.tier_rank = {tier: n for n, tier in enumerate(config.routing.tier_order)}
        # keyed by the folded email: a member spelled Bob@Example.com is the agent bob@example.com
        team_of: dict[str, set[str]] = {}
        team_calendar: dict[str, str] = {}
        for name, team in config.teams.items():
            for member in team.members:
                folded = member.casefold()
                team_of.setdefault(folded, set()).add(name)
                if team.calendar and folded not in team_calendar:
                    team_calendar[folded] = team.calendar
        self.agents: dict[str, Agent] = {}
        for n, a in enumerate(config.agents):
            folded = a.email.casefold()
            cal_name = a.calendar or team_calendar.get(folded)
            self.agents[a.email] = _agent(a, n, calendars.get(cal_name) if cal_name else None,
                                          frozenset(team_of.get(folded, ())))
        # emails are case-insensitive: a CRM owner or a helpdesk assignee may spell one differently
        self._folded = {email.casefold(): agent for email, agent in self.agents.items()}
        # least loaded and round robin pick the least ranked fitting agent: the rank is the strategy's sort
        # key behind a busy flag (inactive or full), kept up to date by hold, note_assigned and set_status
        self._by_load = self.strategy == "least_loaded"
        self._rank: dict[Agent, tuple[bool | int, ...]] = {}
        for agent in self.agents.values():
            self._rerank(agent)
        self._rank_of = self._rank.__getitem__
        # id(request) -> (request, the agents that fit it in config order)
        self._fitting: dict[int, tuple[Request, tuple[Agent, ...]]] = {}
        self._calendared = any(a.calendar is not None for a in self.agents.values())
        self._open_at: datetime | None = None
        self._open: dict[int, bool] = {}  # id(calendar) -> open at _open_at
        self._seq = 0
        self._queue: list[tuple[tuple[int, datetime, int], str]] = []
        self.waiting: dict[str, Waiting] = {}
        self._qseq = 0

    def agent(self, email: object) -> Agent | None:
        """The configured agent ``email`` names, whatever its letter case; None for anyone else."""
        if not isinstance(email, str):
            return None
        found = self.agents.get(email)
        return found if found is not None else self._folded.get(email.casefold())

    # ---------------------------------------------------------------- loads

    def hold(self, email: str | None, delta: int) -> bool:
        """Add ``delta`` open tickets to an agent's load; True when that freed a slot."""
        agent = self.agent(email)
        if agent is None:
            return False
        agent.load += delta
        self._rerank(agent)
        return delta < 0 and agent.load < agent.capacity

    def note_assigned(self, email: str) -> None:
        """Record an assignment for round robin."""
        agent = self.agent(email)
        if agent is not None:
            self._seq += 1
            agent.last = self._seq
            self._rerank(agent)

    def set_status(self, email: str, status: str) -> bool:
        """Change an agent's status; True when the agent became active."""
        agent = self.agent(email)
        if agent is None:
            return False
        was = agent.status
        agent.status = status
        self._rerank(agent)
        return status == "active" and was != "active"

    def is_present(self, email: str | None) -> bool:
        """Whether ``email`` is a configured agent whose status is active."""
        agent = self.agent(email)
        return agent is not None and agent.status == "active"

    # ---------------------------------------------------------------- picking

    def pick(self, record: Record, request: Request, at: datetime) -> str | None:
        """The agent that takes ``record`` now, or None when nobody fits (the ticket should wait)."""
        strategy = self.strategy
        if strategy == "least_loaded" or strategy == "round_robin":
            # the first candidate in the strategy's order; none at all means no fallback can find one either
            first = self._first(request, at)
            return first.email if first is not None else None
        if strategy == "account_owner":
            owner = nested(record.attrs, "account", "owner")
            agent = self.agent(owner)
            if agent is not None and agent.fits(request):
                # an owner who cannot take it now: the fallback decides, or with none it waits for them
                if self._available(agent, at):
                    return agent.email
            elif self.fallback is None or self.fallback == strategy:
                first = self._first(request, at)
                return first.email if first is not None else None
            found = None
        else:
            candidates = self._candidates(request, at)
            found = self._by(strategy, candidates, record, request)
            if found is not None:
                return found
        if self.fallback is not None and self.fallback != strategy:
            found = self._by(self.fallback, self._candidates(request, at), record, request)
        return found

    def _fits(self, request: Request) -> tuple[Agent, ...]:
        """The agents that fit ``request`` (whatever their availability), in config order."""
        # keyed by identity: requests are few long-lived objects (ANY, one per assign action), and hashing
        # the frozen dataclass costs a Python call
        found = self._fitting.get(id(request))
        if found is None or found[0] is not request:
            if len(self._fitting) >= 4096:
                self._fitting.clear()  # a caller making a new Request per pick: keep the cache bounded
            found = (request, tuple(a for a in self.agents.values() if a.fits(request)))
            self._fitting[id(request)] = found
        return found[1]

    def _rerank(self, a: Agent) -> None:
        busy = a.status != "active" or a.load >= a.capacity
        self._rank[a] = (busy, a.load, a.last, a.index) if self._by_load else (busy, a.last, a.index)

    def _first(self, request: Request, at: datetime) -> Agent | None:
        """The available agent fitting ``request`` that comes first by the strategy's key, if any."""
        if self._calendared:
            candidates = self._candidates(request, at)
            return min(candidates, key=self._rank_of) if candidates else None
        fitting = self._fits(request)
        if not fitting:
            return None
        best = min(fitting, key=self._rank_of)
        return None if self._rank[best][0] else best

    def _available(self, a: Agent, at: datetime) -> bool:
        """Active, under capacity and inside calendar hours at ``at``."""
        return (a.status == "active" and a.load < a.capacity
                and (a.calendar is None or self._is_open(a.calendar, at)))

    def _candidates(self, request: Request, at: datetime) -> list[Agent]:
        """The agents that fit ``request`` and are available at ``at``, in config order."""
        available = self._available
        return [a for a in self._fits(request) if available(a, at)]

    def _is_open(self, calendar: BusinessCalendar, at: datetime) -> bool:
        # a drain asks about the same calendars at the same instant once per waiting ticket
        if at != self._open_at:
            self._open_at = at
            self._open.clear()
        found = self._open.get(id(calendar))
        if found is None:
            found = self._open[id(calendar)] = calendar.is_open(at)
        return found

    def _by(self, strategy: str, candidates: list[Agent], record: Record, request: Request) -> str | None:
        if strategy == "account_owner":
            owner = nested(record.attrs, "account", "owner")
            agent = self.agent(owner)
            if agent is not None and agent.fits(request):
                # an owner who cannot take it now: the fallback decides, or with none it waits for them
                return agent.email if agent in candidates else None
            strategy = "round_robin"
        if not candidates:
            return None
        if strategy == "least_loaded":
            return min(candidates, key=_LEAST_LOADED).email
        if strategy == "skills":
            wanted = _wanted_skills(record, request)
            language = _language(record)
            if not wanted:
                return min(candidates, key=_LEAST_LOADED).email
            best = max(candidates, key=lambda a: (len(a.skills & wanted), language in a.languages, -a.load,
                                                  -a.last, -a.index))
            # nobody with a wanted skill is nobody, unless the rule named who (an agent, a team): the skills
            # then only rank the ones it named
            named = request.agent is not None or request.team is not None
            return best.email if named or best.skills & wanted else None
        return min(candidates, key=_ROUND_ROBIN).email

    def explain(self, record: Record, request: Request, at: datetime, chosen: str | None) -> dict[str, Any]:
        """Why :meth:`pick` chose ``chosen`` (None: nobody, the ticket waits): the strategy and fallback, what
        was asked, and each agent with its state then and why it was or was not the one. For explanations
        only (never on the hot path); call it before the assignment changes the agents' loads."""
        owner = nested(record.attrs, "account", "owner") if "account_owner" in (self.strategy,
                                                                              self.fallback) else None
        asked = {k: v for k, v in zip(ASSIGN_KEYS, (request.skill, request.language, request.agent,
                                                    request.team), strict=True) if v is not None}
        by_skills = "skills" in (self.strategy, self.fallback)
        wanted = _wanted_skills(record, request) if by_skills else frozenset()
        agents = []
        # (a large desk lists the agents that fit what was asked, and counts the others: every assignment
        # keeps this in the audit log)
        every = len(self.agents) <= EXPLAIN_ALL
        unfit = 0
        for a in self.agents.values():
            if not every and not a.fits(request) and a.email != chosen:
                unfit += 1
                continue
            entry: dict[str, Any] = {"agent": a.email, "status": a.status, "load": a.load,
                                     "capacity": a.capacity}
            if a.calendar is not None:
                entry["in_hours"] = self._is_open(a.calendar, at)
            entry["why"] = self._why(a, request, at, chosen, owner, wanted)
            agents.append(entry)
        out: dict[str, Any] = {"strategy": self.strategy, "fallback": self.fallback, "asked": asked,
                               "to": chosen, "agents": agents}
        if unfit:
            out["not_fitting"] = unfit
        if owner is not None:
            out["owner"] = owner
        return out

    def _why(self, a: Agent, request: Request, at: datetime, chosen: str | None, owner: Any,
             wanted: frozenset[str] = frozenset()) -> str:
        """One agent's part in a pick, in words."""
        is_owner = isinstance(owner, str) and a.folded == owner.casefold()
        turn = f"last assigned #{a.last}" if a.last >= 0 else "never assigned"
        if a.email == chosen:
            if is_owner:
                return "chosen: the account's owner"
            if wanted and not a.skills & wanted and (request.agent is not None or request.team is not None):
                named = "the agent" if request.agent is not None else f"a member of team {request.team!r}"
                return (f"chosen: {named} the rule named, though with none of the skills wanted "
                        f"({', '.join(sorted(wanted))}) ({turn})")
            how = {"least_loaded": "the fewest open tickets, then the least recently assigned",
                   "round_robin": "the least recently assigned", "skills": "the most of the skills wanted"}
            strategy = self.strategy
            if strategy == "account_owner":
                strategy = self.fallback if self.fallback not in (None, strategy) else "round_robin"
                return f"chosen by the fallback ({strategy}): {how[strategy]} of those available ({turn})"
            return f"chosen: {how[strategy]} of those available ({turn})"
        owned = "the account's owner; " if is_owner else ""
        missing = [f"{k} {v!r}" for k, v, have in (
            ("skill", request.skill, a.skills), ("language", request.language, a.languages),
            ("team", request.team, a.teams)) if v is not None and v not in have]
        if request.agent is not None and request.agent != a.folded:
            missing.append(f"agent {request.agent!r}")
        if missing:
            return owned + "does not fit: no " + ", no ".join(missing)
        if a.status != "active":
            return f"{owned}not available: {a.status}"
        if a.load >= a.capacity:
            return f"{owned}not available: at capacity"
        if a.calendar is not None and not self._is_open(a.calendar, at):
            return f"{owned}not available: outside working hours"
        if chosen is None:
            return f"{owned}available, but the strategy chose nobody"
        return f"{owned}available, ranked after the one chosen ({turn})"

    def any_available(self, at: datetime) -> bool:
        """Whether at least one agent could take a ticket now."""
        available = self._available
        return any(available(a, at) for a in self.agents.values())

    def next_opening(self, at: datetime) -> datetime | None:
        """When the next agent who is active and under capacity but outside calendar hours opens."""
        times = [a.calendar.next_open(at) for a in self.agents.values()
                 if a.calendar is not None and a.status == "active" and a.load < a.capacity
                 and not a.calendar.is_open(at)]
        return min(times, default=None)

    # ---------------------------------------------------------------- the queue

    def enqueue(self, record: Record, request: Request, rule: str, since: datetime) -> None:
        """Put a ticket in the queue, or update it while it waits.

        A waiting ticket keeps the time it waits since (``since`` is read only the first time); when its
        account tier changed, it moves to that tier's place, still ordered by that time within the tier.
        """
        tier = nested(record.attrs, "account", "tier")
        rank = self.tier_rank.get(tier, len(self.tier_rank)) if isinstance(tier, str) else len(self.tier_rank)
        found = self.waiting.get(record.id)
        if found is not None:
            found.record = record  # the pick after a drain reads the ticket as it is now (tier, owner, tags)
            found.request = request
            found.rule = rule
            assignee = record.attrs.get("assignee")
            if assignee != found.assignee:
                found.assignee, found.kept = assignee, self.is_present(assignee)
            old = found.key
            if old[0] != rank:
                # same (since, seq): only the tier moves it, and bisect finds the old entry by its unique key
                queue = self._queue
                i = bisect.bisect_left(queue, (old, record.id))
                if i < len(queue) and queue[i][1] == record.id:
                    del queue[i]
                found.key = (rank, old[1], old[2])
                bisect.insort(queue, (found.key, record.id))
            return
        self._qseq += 1
        key = (rank, since, self._qseq)
        assignee = record.attrs.get("assignee")
        self.waiting[record.id] = Waiting(key, record, request, rule, assignee, self.is_present(assignee))
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
    return Agent(cfg.email, index, frozenset(s.casefold() for s in cfg.skills), frozenset(cfg.languages),
                 cfg.capacity, cfg.status, calendar, teams)


def _wanted_skills(record: Record, request: Request) -> frozenset[str]:
    wanted = {t.split("/", 1)[0].casefold() for t in record.tags if "/" in t}
    if request.skill:
        wanted.add(request.skill)
    return frozenset(wanted)


def _language(record: Record) -> str | None:
    requester = record.attrs.get("requester")
    lang = requester.get("language") if isinstance(requester, dict) else None
    return lang if isinstance(lang, str) else record.attrs.get("language")


__all__ = ["ANY", "Agent", "Request", "Router", "Waiting"]
