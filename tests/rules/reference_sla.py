# Frozen copy of src/bridge/rules/sla.py before the speed work (commit 6583367): the oracle
# that the differential tests compare the optimised module with. Do not optimise this file.
# Behaviour fixes since then are mirrored here, the plain way (marked "fix:"): a policy change applies
# the new pause_on at once, waits for a reopen while resolved/closed, and due() of a used-up clock is
# the instant it was used up under the current policy (from a timeline of calendars); a resolve or
# close at the resolution deadline is in time; escalation levels are remembered by team.
"""SLA clocks of one ticket: deadlines, warnings, breaches and escalation levels, on a business calendar.

A policy (``[[sla]]``) gives each metric a budget of business time: ``first_response`` (met by the first
agent message), ``next_response`` (a new clock for each customer message that follows an agent reply, met by
the next agent message), ``resolution`` (stopped while resolved or closed, resumed on reopen) and
``acknowledgement`` (met by ``on_acknowledge``). Each clock counts consumed business time; it runs only while
the ticket is neither in one of the policy's ``pause_on`` statuses nor resolved/closed, so paused time does
not count.

Each clock fires three kinds of events, each at most once per clock (a next_response clock per reply cycle):

- ``sla_warning`` when ``warn_before`` of its budget is left (only when ``warn_before`` is shorter than the
  budget, so a short budget never warns at the moment it starts);
- ``sla_breach`` when the budget is used up, at the deadline instant (a deadline at a closing time is that
  closing instant);
- ``sla_escalate`` for each level of ``escalate``: ``after`` more business time on the breached clock, ``to``
  naming the team. A breached clock keeps counting, so escalation also skips paused time, and stops once the
  metric is met or the ticket is resolved.

A metric met at or before its deadline never breaches (an agent reply at the deadline instant is in time).
Events due before a state change (message, status, policy) are kept with their own instants, so callers may
call :meth:`TicketSla.fire` as rarely as they like; a caller that has events and timers at the same instant
should apply the events first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bridge.durations import parse_duration
from bridge.rules.calendar import ZERO, BusinessCalendar
from bridge.settings import SlaConfig

METRICS = ("first_response", "next_response", "resolution", "acknowledgement")
STOPPED = frozenset({"resolved", "closed"})
_KIND_ORDER = {"sla_warning": 0, "sla_breach": 1, "sla_escalate": 2}


@dataclass(frozen=True)
class SlaEvent:
    """One SLA timer that went off: a warning, a breach or an escalation level of one metric."""

    at: datetime
    kind: str
    metric: str
    policy: str
    to: str | None = None


@dataclass(frozen=True)
class _Threshold:
    offset: timedelta  # consumed business time at which it fires
    kind: str
    key: str
    level: int = -1
    to: str | None = None


@dataclass
class _Clock:
    metric: str
    start: datetime | None = None  # fix: when the clock started (for due() of a used-up clock)
    consumed: timedelta = ZERO
    since: datetime | None = None  # running since; None while the ticket is paused or stopped
    met: bool = False
    fired: set[str] = field(default_factory=set)
    breached_at: datetime | None = None
    cache: dict[str, datetime] = field(default_factory=dict)  # threshold key -> instant for (since, consumed)


@dataclass(frozen=True)
class _Compiled:
    pause_on: frozenset[str]
    budgets: dict[str, timedelta | None]
    thresholds: dict[str, tuple[_Threshold, ...]]


# policies are few and long-lived; a replay builds one TicketSla per ticket, so parse each policy once.
# The policy object is kept beside its compiled form so that its id cannot be reused while cached.
_COMPILED: dict[int, tuple[SlaConfig, _Compiled]] = {}


def _compile(policy: SlaConfig) -> _Compiled:
    cached = _COMPILED.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached[1]
    warn = parse_duration(policy.warn_before) if policy.warn_before else None
    levels = [(parse_duration(level.after), level.to) for level in policy.escalate]
    budgets: dict[str, timedelta | None] = {}
    thresholds: dict[str, tuple[_Threshold, ...]] = {}
    for metric in METRICS:
        text: str | None = getattr(policy, metric)
        budget = parse_duration(text) if text else None
        budgets[metric] = budget
        marks: list[_Threshold] = []
        if budget is not None:
            if warn is not None and ZERO < warn < budget:
                marks.append(_Threshold(budget - warn, "sla_warning", "warning"))
            marks.append(_Threshold(budget, "sla_breach", "breach"))
            marks.extend(
                _Threshold(budget + after, "sla_escalate", f"escalate:{to}", n, to)  # fix: by team
                for n, (after, to) in enumerate(levels)
            )
        marks.sort(key=lambda m: (m.offset, _KIND_ORDER[m.kind], m.level))
        thresholds[metric] = tuple(marks)
    compiled = _Compiled(frozenset(policy.pause_on), budgets, thresholds)
    if len(_COMPILED) >= 256:
        _COMPILED.clear()
    _COMPILED[id(policy)] = (policy, compiled)
    return compiled


class TicketSla:
    """The SLA clocks of one ticket under one policy and calendar, driven by the ticket's events.

    Time only moves through the ``at`` of the calls; calls must come in time order. ``calendar`` is the
    policy's calendar, or :meth:`BusinessCalendar.always` for a policy without one. The ticket starts
    ``open``.
    """

    def __init__(self, policy: SlaConfig, calendar: BusinessCalendar, opened_at: datetime) -> None:
        self.status = "open"
        self._agent_replied = False
        self._queue: list[tuple[tuple[datetime, int, int, int], SlaEvent]] = []
        # fix: what an event reached at its very instant, for the timer of that instant (after every event)
        self._held: list[tuple[datetime, _Clock, _Threshold, int, bool]] = []
        self._set_policy(policy, calendar)
        started = ("first_response", "resolution", "acknowledgement")
        self._clocks: dict[str, _Clock] = {
            metric: _Clock(metric, start=opened_at, since=opened_at) for metric in started
        }
        # fix: (from, calendar or None while not counting)
        self._timeline: list[tuple[datetime, BusinessCalendar | None]] = [(opened_at, calendar)]

    # ------------------------------------------------------------------ policy

    def _set_policy(self, policy: SlaConfig, calendar: BusinessCalendar) -> None:
        self.policy = policy
        self.calendar = calendar
        compiled = _compile(policy)
        self._pause_on, self._budgets, self._thresholds = (
            compiled.pause_on,
            compiled.budgets,
            compiled.thresholds,
        )

    def change_policy(self, policy: SlaConfig, calendar: BusinessCalendar, at: datetime) -> None:
        """Switch to another policy (and calendar) at ``at``, keeping the business time each clock consumed.

        Deadlines are recomputed from what is left under the new budgets. Events already fired are not fired
        again; thresholds of the new policy that the consumed time has already passed fire at ``at``.
        """
        self._release(at, before=True)
        for _instant, clock, mark, _index, _passed in self._held:
            clock.fired.discard(mark.key)  # fix: taken afresh under the new policy
        self._held = []
        self._advance(at, strict=True)  # fix: what the old policy has due at this very instant does not fire
        self._set_policy(policy, calendar)
        self._timeline.append((at, calendar if self.running else None))
        for index, clock in self._active():
            clock.since = at if self.running else None  # fix: the new pause_on applies at once
            clock.cache.clear()
            if self.status in STOPPED:
                continue  # fix: what the consumed time passed fires on reopen
            for mark in self._thresholds[clock.metric]:
                if mark.key not in clock.fired and mark.offset <= clock.consumed:
                    if mark.offset == clock.consumed and self._used_up(clock, mark.offset) == at:
                        clock.fired.add(mark.key)  # fix: reached at this very instant: held for its timer
                        self._held.append((at, clock, mark, index, False))
                        continue
                    self._emit(clock, mark, at, index)

    # ------------------------------------------------------------------ events of the ticket

    @property
    def running(self) -> bool:
        """Whether clocks count now: the status is neither paused by the policy nor resolved/closed."""
        return self.status not in self._pause_on and self.status not in STOPPED

    def on_status(self, status: str, at: datetime) -> None:
        """The ticket's status changed (open, pending, on_hold, resolved, closed) at ``at``.

        A ``pause_on`` status pauses every clock, resolved/closed stops them, any other status (a reopen)
        resumes them with the business time they had consumed.
        """
        # fix: a resolve or close meets resolution: at the deadline instant it is in time
        stopping = status in STOPPED and self.status not in STOPPED
        self._collect(at, met=["resolution"] if stopping else None, hold=True)
        if stopping:  # fix: in time; what it held waits for a reopen
            for h in self._held:
                if h[1].metric == "resolution" and h[0] == at:
                    h[1].fired.discard(h[2].key)
            self._held = [h for h in self._held if not (h[1].metric == "resolution" and h[0] == at)]
        was = self.running
        reopened = self.status in STOPPED and status not in STOPPED
        self.status = status
        if reopened and not self.running:  # fix: reopened into a pause: its timer states what passed
            for index, clock in self._active():
                for mark in self._thresholds[clock.metric]:
                    if mark.key not in clock.fired and mark.offset <= clock.consumed:
                        clock.fired.add(mark.key)
                        self._held.append((at, clock, mark, index, True))
        if self.running != was:
            for _, clock in self._active():
                if clock.since is not None and at > clock.since:
                    clock.consumed += self.calendar.elapsed(clock.since, at)
                clock.since = at if self.running else None
                clock.cache.clear()
            self._timeline.append((at, self.calendar if self.running else None))

    def on_message(self, author: str, at: datetime) -> None:
        """A message on the ticket: ``agent`` meets first/next response; ``customer`` may start next response.

        A customer message starts a next_response clock only after an agent has replied and when no
        next_response clock is already waiting. Other authors (notes, bots) change nothing.
        """
        if author == "agent":
            waiting = [m for m in ("first_response", "next_response") if self._is_active(m)]
            self._collect(at, met=waiting, hold=True)
            for metric in waiting:
                self._meet(metric)
            self._agent_replied = True
        elif author == "customer":
            self._collect(at, hold=True)
            if self._agent_replied and not self._is_active("next_response"):
                self._clocks["next_response"] = _Clock(
                    "next_response", start=at, since=at if self.running else None
                )
        else:
            self._collect(at, hold=True)

    def on_acknowledge(self, at: datetime) -> None:
        """An agent acknowledged the ticket: the acknowledgement clock is met."""
        waiting = ["acknowledgement"] if self._is_active("acknowledgement") else []
        self._collect(at, met=waiting, hold=True)
        for metric in waiting:
            self._meet(metric)

    # ------------------------------------------------------------------ reading and firing

    def due(self) -> dict[str, datetime | None]:
        """Deadline per metric: ``first_response_due``, ``next_response_due``, ``resolution_due``,
        ``acknowledgement_due``.

        None when the policy has no budget for the metric, its clock is not waiting (met, or no customer
        message waits for a next response), or the clocks are paused or stopped (no instant can be promised
        while the ticket waits on someone else). A breached clock gives its past deadline.
        """
        out: dict[str, datetime | None] = {}
        for metric in METRICS:
            budget = self._budgets[metric]
            clock = self._clocks.get(metric)
            value: datetime | None = None
            if budget is not None and clock is not None and not clock.met and clock.since is not None:
                if clock.consumed < budget:
                    value = self.calendar.add(clock.since, budget - clock.consumed)
                else:
                    value = self._used_up(clock, budget)
            out[f"{metric}_due"] = value
        return out

    def next_timer(self) -> datetime | None:
        """The earliest instant at which :meth:`fire` has something to return, or None."""
        instants = [key[0] for key, _ in self._queue] + [h[0] for h in self._held]
        for _, clock in self._active():
            if clock.since is None:
                continue
            for mark in self._thresholds[clock.metric]:
                if mark.key not in clock.fired:
                    instants.append(self._instant(clock, mark))
                    break
        return min(instants, default=None)

    def fire(self, now: datetime) -> list[SlaEvent]:
        """Every event due at or before ``now`` and not returned before, in time order."""
        self._release(now)
        self._collect(now)
        ready = sorted(item for item in self._queue if item[0][0] <= now)
        self._queue = [item for item in self._queue if item[0][0] > now]
        return [event for _, event in ready]

    # ------------------------------------------------------------------ internals

    def _is_active(self, metric: str) -> bool:
        clock = self._clocks.get(metric)
        return clock is not None and not clock.met

    def _active(self) -> list[tuple[int, _Clock]]:
        clocks = ((n, self._clocks.get(m)) for n, m in enumerate(METRICS))
        return [(n, clock) for n, clock in clocks if clock is not None and not clock.met]

    def _meet(self, metric: str) -> None:
        clock = self._clocks[metric]
        self._held = [h for h in self._held if h[1] is not clock]  # fix: met at the instant: in time
        clock.met = True
        clock.since = None

    def _instant(self, clock: _Clock, mark: _Threshold) -> datetime:
        assert clock.since is not None
        found = clock.cache.get(mark.key)
        if found is None:
            if mark.offset <= clock.consumed:
                found = clock.since
            else:
                found = self.calendar.add(clock.since, mark.offset - clock.consumed)
            clock.cache[mark.key] = found
        return found

    def _used_up(self, clock: _Clock, budget: timedelta) -> datetime:
        """fix: the instant the clock consumed ``budget``, walking the timeline of calendars."""
        assert clock.start is not None
        done = ZERO
        for n, (start, calendar) in enumerate(self._timeline):
            if calendar is None:
                continue
            start = max(start, clock.start)
            end = self._timeline[n + 1][0] if n + 1 < len(self._timeline) else None
            if end is None or (end > start and done + calendar.elapsed(start, end) >= budget):
                return calendar.add(start, budget - done)
            done += calendar.elapsed(start, end) if end > start else ZERO
        raise AssertionError("a used-up clock has consumed its budget somewhere")

    def _emit(self, clock: _Clock, mark: _Threshold, at: datetime, index: int) -> None:
        clock.fired.add(mark.key)
        if mark.kind == "sla_breach":
            clock.breached_at = at
        event = SlaEvent(at, mark.kind, clock.metric, self.policy.name, mark.to)
        self._queue.append(((at, _KIND_ORDER[mark.kind], index, mark.level), event))

    def _release(self, now: datetime, before: bool = False) -> None:
        """fix: state what events held up to ``now``: not of a clock met since; an escalation level of a
        ticket stopped since waits for a reopen; warnings and breaches are stated."""
        keep = []
        for item in self._held:
            instant, clock, mark, index, passed = item
            if instant > now or (before and instant == now):
                keep.append(item)
            elif clock.met:
                continue
            elif self.status in STOPPED and (passed or mark.kind == "sla_escalate"):
                clock.fired.discard(mark.key)
            else:
                self._emit(clock, mark, instant, index)
        self._held = keep

    def _collect(self, until: datetime, met: list[str] | None = None, hold: bool = False) -> None:
        """Queue every event of a running clock due by ``until`` (strictly before it for clocks met then;
        ``hold``: an event's, what falls due at ``until`` itself waits for the timer of that instant)."""
        if hold:
            self._release(until, before=True)
        for index, clock in self._active():
            if clock.since is None:
                continue
            strict = met is not None and clock.metric in met
            for mark in self._thresholds[clock.metric]:
                if mark.key in clock.fired:
                    continue
                instant = self._instant(clock, mark)
                if instant > until or (strict and instant == until):
                    break
                if hold and instant == until:
                    clock.fired.add(mark.key)
                    self._held.append((instant, clock, mark, index, mark.offset <= clock.consumed))
                    continue
                self._emit(clock, mark, instant, index)

    def _advance(self, at: datetime, strict: bool = False) -> None:
        """Bring running clocks up to ``at``: queue what fell due, then add the business time consumed."""
        self._collect(at, list(METRICS) if strict else None)
        for _, clock in self._active():
            if clock.since is not None and at > clock.since:
                clock.consumed += self.calendar.elapsed(clock.since, at)
                clock.since = at
            clock.cache.clear()


__all__ = ["METRICS", "STOPPED", "SlaEvent", "TicketSla"]
