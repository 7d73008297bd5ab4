"""SLA clocks of one ticket: deadlines, warnings, breaches and escalation levels, on a business calendar.

A policy (``[[sla]]``) gives each metric a budget of business time: ``first_response`` (met by the first
agent message), ``next_response`` (a new clock for each customer message that follows an agent reply, met by
the next agent message), ``resolution`` (met by resolving or closing the ticket; it stops while resolved or
closed and resumes on reopen) and ``acknowledgement`` (met by ``on_acknowledge``, or by an agent message that
acknowledges). Each clock counts consumed business time; it runs only while the ticket is neither in one of
the policy's ``pause_on`` statuses nor resolved/closed, so paused time does not count.

Each clock fires three kinds of events, each at most once per clock (a next_response clock per reply cycle),
whatever policy applies when it fires:

- ``sla_warning`` when ``warn_before`` of its budget is left (only when ``warn_before`` is shorter than the
  budget, so a short budget never warns at the moment it starts);
- ``sla_breach`` when the budget is used up, at the deadline instant (a deadline at a closing time is that
  closing instant);
- ``sla_escalate`` for each level of ``escalate``: ``after`` more business time on the breached clock, ``to``
  naming the team (once per clock and team: a later level naming a team already called is skipped, a policy
  change does not escalate to a team twice, and does escalate to a team the previous policy did not name).
  A breached clock keeps counting, so escalation also skips paused time, and stops once the metric is met or
  the ticket is resolved.

A metric met at or before its deadline never breaches: an agent reply, an acknowledgement, a resolve or a
close at the deadline instant is in time (a state change at an instant comes before the timers of that
instant, so what an event reaches at its very instant is held for the timer of the instant, and a later event
of the instant may still meet it). A threshold reached as the clocks pause or stop is stated (warnings and
breaches) or waits for a reopen (escalation levels: they run until the ticket is resolved).

The policy may change, or stop and start applying, at any time (:meth:`TicketSla.change_policy`); the clocks
are the ticket's, not the policy's. What was met stays met, and the time a clock consumed is kept. While no
policy applies nothing counts or fires, but the ticket's statuses are remembered: when a policy applies again,
its calendar and ``pause_on`` are applied over that gap as if it had applied all along (so a policy that first
applies mid-ticket counts from the ticket's opening, minus its pauses). Thresholds that the consumed time has
already passed when a policy starts to apply fire at that moment, never before: such an event carries ``due``,
the earlier instant at which the threshold was passed. While the ticket is resolved or closed they wait for a
reopen (a resolved ticket does not breach).

Events due before a state change (message, status, policy) are kept with their own instants, so callers may
call :meth:`TicketSla.fire` as rarely as they like; a caller that has events and timers at the same instant
should apply the events first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.durations import parse_duration
from bridge.rules.calendar import ZERO, BusinessCalendar
from bridge.settings import SlaConfig

METRICS = ("first_response", "next_response", "resolution", "acknowledgement")
STOPPED = frozenset({"resolved", "closed"})
_KIND_ORDER = {"sla_warning": 0, "sla_breach": 1, "sla_escalate": 2}
_DUE_KEYS = tuple(f"{metric}_due" for metric in METRICS)
# clocks by their index in METRICS: what an agent's reply meets, and the acknowledgement
_REPLY = frozenset({0, 1})
_ACK = frozenset({3})
_REPLY_AND_ACK = _REPLY | _ACK


@dataclass(frozen=True)
class SlaEvent:
    """One SLA timer that went off: a warning, a breach or an escalation level of one metric.

    ``due`` is set when the event comes later than the instant its threshold was passed (a policy started to
    apply, or a ticket was reopened, after it): that earlier instant.
    """

    at: datetime
    kind: str
    metric: str
    policy: str
    to: str | None = None
    due: datetime | None = None


@dataclass(frozen=True)
class _Threshold:
    offset: timedelta  # consumed business time at which it fires
    kind: str
    key: str  # what the clock remembers as fired: the kind, and the team for an escalation level
    level: int = -1
    to: str | None = None


class _Clock:
    """One metric's clock. ``marks[pos:]`` are its thresholds not fired yet, in firing order."""

    __slots__ = ("consumed", "fired", "index", "marks", "met", "metric", "next_at", "pos", "since", "start")

    def __init__(
        self, metric: str, index: int, start: datetime, since: datetime | None, marks: tuple[_Threshold, ...]
    ) -> None:
        self.metric = metric
        self.index = index  # position in METRICS: orders events of one instant
        self.start = start  # when it started: the ticket's opening, or the customer message of its cycle
        self.consumed = ZERO  # business time counted up to `since` (or up to the pause)
        self.since = since  # running since; None while the ticket is paused or stopped, or no policy applies
        self.met = False
        self.fired: set[str] | None = None  # keys fired; None: none yet (most clocks never fire)
        self.marks = marks  # shared with the compiled policy while nothing fired out of order
        self.pos = 0
        self.next_at: datetime | None = None  # instant of marks[pos] for (since, consumed); None: not known


@dataclass(frozen=True)
class _Compiled:
    pause_on: frozenset[str]
    budgets: dict[str, timedelta | None]
    thresholds: dict[str, tuple[_Threshold, ...]]


# no policy: nothing to count, nothing to fire
_NONE = _Compiled(frozenset(), dict.fromkeys(METRICS), dict.fromkeys(METRICS, ()))
# the calendar attribute while no policy applies (no clock runs then, so it is never asked anything)
_NO_CALENDAR = BusinessCalendar.always()

# policies are few and long-lived; a replay builds one TicketSla per ticket, so parse each policy once.
# The policy object is kept beside its compiled form so that its id cannot be reused while cached.
_COMPILED: dict[int, tuple[SlaConfig, _Compiled]] = {}


def _compile(policy: SlaConfig) -> _Compiled:
    cached = _COMPILED.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached[1]
    warn = parse_duration(policy.warn_before) if policy.warn_before else None
    # a clock escalates to a team once: of several levels naming one team only the earliest can fire (the
    # first listed on a tie), so the later ones are dropped here rather than left as timers that fire nothing
    earliest: dict[str, tuple[timedelta, int]] = {}
    for n, level in enumerate(policy.escalate):
        after = parse_duration(level.after)
        if level.to not in earliest or after < earliest[level.to][0]:
            earliest[level.to] = (after, n)
    levels = sorted((n, after, to) for to, (after, n) in earliest.items())
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
            # remembered by team, not by position: another policy's first level may name another team
            marks.extend(
                _Threshold(budget + after, "sla_escalate", f"escalate:{to}", n, to) for n, after, to in levels
            )
        marks.sort(key=lambda m: (m.offset, _KIND_ORDER[m.kind], m.level))
        thresholds[metric] = tuple(marks)
    compiled = _Compiled(frozenset(policy.pause_on), budgets, thresholds)
    if len(_COMPILED) >= 256:
        _COMPILED.clear()
    _COMPILED[id(policy)] = (policy, compiled)
    return compiled


def _rewind(clock: _Clock, mark: _Threshold) -> None:
    """Make ``mark`` of ``clock`` pending again (held for an instant's timer, it has to wait instead)."""
    clock.pos = min(clock.pos, clock.marks.index(mark))
    clock.next_at = None


class TicketSla:
    """The SLA clocks of one ticket under its current policy and calendar, driven by the ticket's events.

    Time only moves through the ``at`` of the calls; calls must come in time order. ``calendar`` is the
    policy's calendar, or :meth:`BusinessCalendar.always` for a policy without one; ``policy`` None: no policy
    applies yet (the ticket's statuses are remembered until one does). The ticket starts ``open``.
    """

    # a replay holds one per open ticket and calls it on every event: few objects, no per-call lists
    __slots__ = ("_agent_replied", "_budgets", "_gap", "_held", "_live", "_next", "_next_known", "_pause_on",
                 "_queue", "_running", "_thresholds", "_timeline", "calendar", "policy", "status")

    def __init__(
        self, policy: SlaConfig | None, calendar: BusinessCalendar | None, opened_at: datetime
    ) -> None:
        self.status = "open"
        self._agent_replied = False
        self._queue: list[tuple[tuple[datetime, int, int, int], SlaEvent]] | None = None  # None: empty
        # thresholds an event reached at its very instant: a timer of that instant, which fires after every
        # event of the instant (one of them may still meet the clock, in time); None: none
        self._held: list[tuple[datetime, _Clock, _Threshold, bool]] | None = None
        # (from, calendar): from that instant on the clocks count on that calendar (None: they do not)
        self._timeline: list[tuple[datetime, BusinessCalendar | None]] = []
        # while no policy applies: the statuses since it stopped, as (from, status); None while one applies
        self._gap: list[tuple[datetime, str]] | None = None
        self._set_policy(policy, calendar)
        marks = self._thresholds
        since = opened_at if self._running else None
        # the clocks not met, in METRICS order (met clocks are dropped: nothing reads them again)
        self._live: list[_Clock] = [
            _Clock("first_response", 0, opened_at, since, marks["first_response"]),
            _Clock("resolution", 2, opened_at, since, marks["resolution"]),
            _Clock("acknowledgement", 3, opened_at, since, marks["acknowledgement"]),
        ]
        if policy is None:
            self._gap = [(opened_at, self.status)]
        else:
            self._mark(opened_at)
        self._next: datetime | None = None
        self._next_known = False  # whether _next is next_timer()'s answer for the current state

    # ------------------------------------------------------------------ policy

    def _set_policy(self, policy: SlaConfig | None, calendar: BusinessCalendar | None) -> None:
        self.policy = policy
        self.calendar = calendar or _NO_CALENDAR
        compiled = _NONE if policy is None else _compile(policy)
        self._pause_on, self._budgets, self._thresholds = (
            compiled.pause_on,
            compiled.budgets,
            compiled.thresholds,
        )
        self._running = (policy is not None and self.status not in self._pause_on
                         and self.status not in STOPPED)

    def change_policy(
        self, policy: SlaConfig | None, calendar: BusinessCalendar | None, at: datetime
    ) -> None:
        """Switch to another policy (and calendar) at ``at``, keeping what was met and the time consumed.

        Deadlines are recomputed from what is left under the new budgets, and the new ``pause_on`` pauses or
        resumes the clocks at ``at``. Events already fired are not fired again; thresholds of the new policy
        that the consumed time has already passed fire at ``at`` (on reopen while resolved or closed).
        ``policy`` None: no policy applies from ``at``; when one applies again, the time in between is counted
        under its calendar and ``pause_on`` (see the module docstring).
        """
        # what the old policy has due at this very instant does not fire: the event that switched it comes
        # first (as a timer due at the instant of an event fires after it); what an earlier event of this
        # instant reached is taken afresh under the new policy, its clocks' marks being rebuilt
        if self._held:
            self._release(at, before=True)
            self._held = None
        self._advance(at, strict=True)
        gap = self._gap
        self._set_policy(policy, calendar)
        self._next_known = False
        live = self._live
        if policy is None:
            if gap is None:
                self._gap = [(at, self.status)]
                self._mark(at)
            for clock in live:
                clock.since = clock.next_at = None
                clock.marks, clock.pos = (), 0
            return
        if gap is not None:
            self._gap = None
            self._count_gap(gap, at)
        since = at if self._running else None
        self._mark(at)
        stopped = self.status in STOPPED
        for clock in live:
            clock.since = since
            marks = self._thresholds[clock.metric]
            held = 0
            if not stopped:
                for mark in marks:
                    if (clock.fired is None or mark.key not in clock.fired) and mark.offset <= clock.consumed:
                        if mark.offset == clock.consumed and self._crossing(clock, mark.offset) == at:
                            # reached at this very instant: its timer, after every event of the instant,
                            # states it (a reply of the instant is in time)
                            self._hold(at, clock, mark, False)
                            held += 1
                        else:
                            self._emit(clock, mark, at, passed=True)
            fired = clock.fired
            clock.marks = marks if fired is None else tuple(m for m in marks if m.key not in fired)
            clock.pos = held  # (what it holds comes first: the other passed marks are fired)
            clock.next_at = None

    def _count_gap(self, gap: list[tuple[datetime, str]], until: datetime) -> None:
        """Count the time since the last policy stopped under the new one: its calendar, its pauses."""
        calendar, pause_on = self.calendar, self._pause_on
        counted: list[tuple[datetime, datetime]] = []
        for n, (start, status) in enumerate(gap):
            end = gap[n + 1][0] if n + 1 < len(gap) else until
            counts = status not in pause_on and status not in STOPPED
            self._mark(start, counts)
            if counts and end > start:
                counted.append((start, end))
        for clock in self._live:
            for start, end in counted:
                start = max(start, clock.start)
                if end > start:
                    clock.consumed += calendar.elapsed(start, end)

    def _mark(self, at: datetime, counts: bool | None = None) -> None:
        """Note in the timeline that from ``at`` the clocks count (on the current calendar) or do not."""
        calendar = self.calendar if (self._running if counts is None else counts) else None
        timeline = self._timeline
        if timeline and timeline[-1][0] == at:
            timeline.pop()  # superseded at the same instant
        if not timeline or timeline[-1][1] is not calendar:
            timeline.append((at, calendar))

    # ------------------------------------------------------------------ events of the ticket

    @property
    def running(self) -> bool:
        """Whether clocks count now: a policy applies, and the status is neither paused by it nor
        resolved/closed."""
        return self._running

    def on_status(self, status: str, at: datetime) -> None:
        """The ticket's status changed (open, pending, on_hold, resolved, closed) at ``at``.

        A ``pause_on`` status pauses every clock, resolved/closed stops them (and meets resolution: a resolve
        at the deadline instant is in time), any other status (a reopen) resumes them with the business time
        they had consumed.
        """
        gap = self._gap
        if gap is not None:
            if gap[-1][0] == at:
                gap.pop()
            gap.append((at, status))
            self.status = status
            return
        if status in STOPPED and self.status not in STOPPED:
            self._collect(at, [c for c in self._live if c.index == 2], hold=True)  # resolution: met at `at`
            if self._held:  # (in time also for what an earlier event of this instant reached: it waits, as
                # what a resolve at the deadline leaves, for a reopen that finds the budget used up)
                keep = []
                for item in self._held:
                    clock, mark = item[1], item[2]
                    if clock.index == 2 and item[0] == at:
                        _rewind(clock, mark)
                    else:
                        keep.append(item)
                self._held = keep or None
        else:
            self._collect(at, hold=True)
        was = self._running
        reopened = self.status in STOPPED and status not in STOPPED
        self.status = status
        running = self._running = status not in self._pause_on and status not in STOPPED
        if reopened and not running:
            # a reopen into a paused status: what the time used has passed is stated by the timer of this
            # instant, as after a reopen into a counting status (a paused clock has no timer that would)
            for clock in self._live:
                marks = clock.marks
                while clock.pos < len(marks) and marks[clock.pos].offset <= clock.consumed:
                    self._hold(at, clock, marks[clock.pos], True)
                    clock.pos += 1
                    clock.next_at = None
        if running != was:
            self._next_known = False
            for clock in self._live:
                since = clock.since
                if since is not None and at > since:
                    clock.consumed += self.calendar.elapsed(since, at)
                clock.since = at if running else None
                clock.next_at = None
            self._mark(at)

    def on_message(self, author: str, at: datetime, *, acknowledges: bool = False) -> None:
        """A message on the ticket: ``agent`` meets first/next response; ``customer`` may start next response.

        ``acknowledges``: the agent's message also acknowledges the ticket (one call, so that a reply at the
        acknowledgement deadline is in time for both). A customer message starts a next_response clock only
        after an agent has replied and when no next_response clock is already waiting. Other authors (notes,
        bots) change nothing.
        """
        if author == "agent":
            met = _REPLY_AND_ACK if acknowledges else _REPLY
            self._met_at(at, [c for c in self._live if c.index in met])
            self._agent_replied = True
        elif author == "customer":
            self._collect(at, hold=True)
            live = self._live
            if self._agent_replied and not any(c.index == 1 for c in live):
                clock = _Clock("next_response", 1, at, at if self._running else None,
                               self._thresholds["next_response"])
                n = 1 if live and live[0].index == 0 else 0
                live.insert(n, clock)
                self._next_known = False
        else:
            self._collect(at, hold=True)

    def on_acknowledge(self, at: datetime) -> None:
        """An agent acknowledged the ticket: the acknowledgement clock is met."""
        self._met_at(at, [c for c in self._live if c.index in _ACK])

    # ------------------------------------------------------------------ reading and firing

    def due(self) -> dict[str, datetime | None]:
        """Deadline per metric: ``first_response_due``, ``next_response_due``, ``resolution_due``,
        ``acknowledgement_due``.

        None when the policy has no budget for the metric, its clock is not waiting (met, or no customer
        message waits for a next response), or the clocks are paused or stopped (no instant can be promised
        while the ticket waits on someone else), or no policy applies. A clock whose budget is used up gives
        the past instant at which it was, under the current policy's calendar and pauses (even when that
        policy started to apply later, or the breach was stated under another policy).
        """
        out: dict[str, datetime | None] = dict.fromkeys(_DUE_KEYS)
        for clock in self._live:
            budget = self._budgets[clock.metric]
            if budget is not None and clock.since is not None:
                if clock.consumed < budget:
                    value = self.calendar.add(clock.since, budget - clock.consumed)
                else:
                    value = self._crossing(clock, budget) or clock.since
                out[_DUE_KEYS[clock.index]] = value
        return out

    def next_timer(self) -> datetime | None:
        """The earliest instant at which :meth:`fire` has something to return, or None."""
        if self._next_known:
            return self._next
        found: datetime | None = None
        if self._queue:
            found = min(key[0] for key, _ in self._queue)
        if self._held:
            held = min(h[0] for h in self._held)
            found = held if found is None or held < found else found
        for clock in self._live:
            if clock.since is not None and clock.pos < len(clock.marks):
                instant = clock.next_at
                if instant is None:
                    instant = self._first_instant(clock)
                if found is None or instant < found:
                    found = instant
        self._next = found
        self._next_known = True
        return found

    def fire(self, now: datetime) -> list[SlaEvent]:
        """Every event due at or before ``now`` and not returned before, in time order."""
        if self._held:
            self._release(now)
        self._collect(now)
        queue = self._queue
        if not queue:
            return []
        # by key only (a stable sort: equal keys keep the order they were queued in; events do not compare)
        ready = sorted((item for item in queue if item[0][0] <= now), key=lambda item: item[0])
        if ready:
            self._queue = [item for item in queue if item[0][0] > now] or None
            self._next_known = False
        return [event for _, event in ready]

    # ------------------------------------------------------------------ internals

    def _met_at(self, at: datetime, clocks: list[_Clock]) -> None:
        """``clocks`` are met at ``at``: what falls due by then is queued (strictly before it for them)."""
        if clocks:
            self._collect(at, clocks, hold=True)
            self._meet(clocks)
        else:
            self._collect(at, hold=True)

    def _meet(self, clocks: list[_Clock]) -> None:
        if self._held:  # met at the instant an earlier event of it reached: in time
            self._held = [h for h in self._held if h[1] not in clocks] or None
        for clock in clocks:
            clock.met = True
            clock.since = None
            clock.next_at = None
        self._live = [c for c in self._live if not c.met]
        self._next_known = False

    def _first_instant(self, clock: _Clock) -> datetime:
        """When the first pending threshold of a running clock is reached (cached until the clock changes)."""
        since = clock.since
        assert since is not None
        offset = clock.marks[clock.pos].offset
        found = since if offset <= clock.consumed else self.calendar.add(since, offset - clock.consumed)
        clock.next_at = found
        return found

    def _crossing(self, clock: _Clock, offset: timedelta) -> datetime | None:
        """The instant ``clock`` consumed ``offset``, from the timeline; None when it has not yet."""
        timeline = self._timeline
        done = ZERO
        for n, (start, calendar) in enumerate(timeline):
            if calendar is None:
                continue
            start = max(start, clock.start)
            if n + 1 == len(timeline):
                return calendar.add(start, offset - done)
            end = timeline[n + 1][0]
            if end <= start:
                continue
            span = calendar.elapsed(start, end)
            if done + span >= offset:
                return calendar.add(start, offset - done)
            done += span
        return None

    def _emit(self, clock: _Clock, mark: _Threshold, at: datetime, passed: bool = False) -> None:
        """Queue ``mark`` of ``clock`` at ``at``; ``passed``: the consumed time had reached it already."""
        if clock.fired is None:
            clock.fired = {mark.key}
        elif mark.key in clock.fired:
            # once per clock and key (an escalation: once per team), whatever the policy; _compile already
            # drops such levels, this guards the invariant. The caller moved past the mark all the same.
            self._next_known = False
            return
        else:
            clock.fired.add(mark.key)
        due = self._crossing(clock, mark.offset) if passed else None
        policy = self.policy
        assert policy is not None  # no threshold is left to fire while no policy applies
        event = SlaEvent(at, mark.kind, clock.metric, policy.name, mark.to,
                         due if due is not None and due < at else None)
        item = ((at, _KIND_ORDER[mark.kind], clock.index, mark.level), event)
        if self._queue is None:
            self._queue = [item]
        else:
            self._queue.append(item)
        self._next_known = False

    def _collect(self, until: datetime, met: list[_Clock] | None = None, hold: bool = False) -> None:
        """Queue every event of a running clock due by ``until`` (strictly before it for ``met`` clocks: they
        are met, or for resolution stopped, at ``until``). ``hold``: an event at ``until`` calls; what falls
        due at that very instant is held for the timer of the instant (:meth:`_release`), as a later event of
        it may meet the clock in time."""
        if hold and self._held:
            self._release(until, before=True)
        if self._next_known and (self._next is None or until < self._next):
            return  # the next timer is no later than any running clock's next threshold: nothing is due
        for clock in self._live:
            marks = clock.marks
            if clock.since is None or clock.pos >= len(marks):
                continue
            instant = clock.next_at
            if instant is None:
                instant = self._first_instant(clock)
            if instant > until:
                continue  # the common case: nothing due yet
            strict = met is not None and clock in met
            while not (instant > until or (strict and instant == until)):
                mark = marks[clock.pos]
                clock.pos += 1
                clock.next_at = None
                if hold and instant == until:
                    self._hold(instant, clock, mark, mark.offset <= clock.consumed)
                else:
                    self._emit(clock, mark, instant, mark.offset <= clock.consumed)
                if clock.pos >= len(marks):
                    break
                if mark.offset > clock.consumed:
                    # walk on from this threshold's instant rather than from `since` again: exact, as
                    # add(add(t, a), b) == add(t, a + b) (offsets are sorted, so the step is not negative)
                    step = marks[clock.pos].offset - mark.offset
                    instant = clock.next_at = self.calendar.add(instant, step)
                else:
                    instant = self._first_instant(clock)

    def _hold(self, instant: datetime, clock: _Clock, mark: _Threshold, passed: bool) -> None:
        """Keep ``mark`` of ``clock``, reached at ``instant`` by an event of that instant, for its timer."""
        if self._held is None:
            self._held = []
        self._held.append((instant, clock, mark, passed))
        self._next_known = False

    def _release(self, now: datetime, before: bool = False) -> None:
        """State what events held for the instants up to ``now`` (``before``: strictly before it): a clock
        met since is in time; of a ticket resolved or closed since, an escalation level (levels run until the
        ticket is resolved) and what was passed before the instant wait for a reopen, as what passes while it
        is resolved does; a warning or a breach reached at the instant is stated, that much of the budget
        being used."""
        held = self._held
        assert held is not None
        keep = []
        for item in held:
            instant, clock, mark, passed = item
            if instant > now or (before and instant == now):
                keep.append(item)
            elif clock.met:
                continue
            elif self.status in STOPPED and (passed or mark.kind == "sla_escalate"):
                _rewind(clock, mark)
            else:
                self._emit(clock, mark, instant, passed)
        self._held = keep or None
        self._next_known = False

    def _advance(self, at: datetime, strict: bool = False) -> None:
        """Bring running clocks up to ``at``: queue what fell due (``strict``: strictly before ``at``), then
        add the business time consumed."""
        self._collect(at, self._live if strict else None)
        for clock in self._live:
            since = clock.since
            if since is not None and at > since:
                clock.consumed += self.calendar.elapsed(since, at)
                clock.since = at
            clock.next_at = None
        self._next_known = False


__all__ = ["METRICS", "STOPPED", "SlaEvent", "TicketSla"]
