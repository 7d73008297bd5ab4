"""Rules in the daemon: the Desk fed by every ticket change the pipeline processes, its timers run by the
scheduler.

The Desk keeps its state in memory. At start it is rebuilt from the store's change log (the same changes run
through a private pipeline on a virtual clock, as in replay, each at the time the live Desk took it), so SLA
clocks, queues, capacity, the agents' statuses and the volume trigger's history survive a restart. An agent's
status change (``POST /agents/status``) is kept in the change log too (:func:`agent_change`) and reaches the
Desk in change-log order with the ticket changes. Every side effect a decision causes (assign, escalate, set a
field, follow up, close) is queued once: its idempotency key is claimed in the transaction that queues its
write, so a crash, a retry or a rebuild never repeats it.

The Desk never runs ahead of the store: a transaction that used it and did not commit (or a savepoint of it
that rolled back) marks it stale, and it is rebuilt from what the store committed before it is used again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from bridge.effects import queue_effects as queue_effects
from bridge.model import BRIDGE, Change, Decision, RecentlySeen, Record, parse_time, utcnow
from bridge.pipeline import DeskState, MemoryState, Pipeline, Touched
from bridge.rules.conditions import path_values
from bridge.rules.engine import Desk
from bridge.rules.escalation import WEEK, VolumeWatch
from bridge.settings import Config

log = logging.getLogger("bridge.rules")

EPSILON = timedelta(microseconds=1)  # timers strictly before a change fire before it (as in replay)
# how far back a rebuild counts tickets no longer open for the volume trigger: the five weeks it compares,
# and the week an account it flagged stays quiet
VOLUME_WINDOW = WEEK * (VolumeWatch().weeks + 2)
# an agent's status change in the change log: system ``bridge``, this kind, the agent's configured email as
# external id, ``attrs={"status": ...}``, and no record
AGENT_KIND = "agent"
# how far before the change that brings a ticket the daemon never saw its created_at may be, for its clocks to
# run from then: a pull's interval or a short outage, not the age of the old tickets a first run finds
OPENING_REACH = timedelta(hours=1)
CLOSED_MEMORY = timedelta(days=30)  # how long a closed ticket is known as such (its later changes: no rules)


def agent_change(email: str, status: str, at: datetime) -> Change:
    """The change-log entry of agent ``email`` (as configured) becoming ``status`` at ``at``."""
    return Change(BRIDGE, AGENT_KIND, email, at, attrs={"status": status})


def is_agent_change(change: Change) -> bool:
    """Whether ``change`` is an agent's status change (:func:`agent_change`), not a ticket's."""
    return change.system == BRIDGE and change.kind == AGENT_KIND


class Stored(NamedTuple):
    """A stored ticket change (or agent status change: no record, no links) a rebuild feeds, with the time
    the live Desk took it at (None: no Desk took it: history when its id is not above the Desk's floor, else
    the leader's to catch up)."""

    record_id: str
    links: Mapping[str, str]
    change: Change
    desk_at: datetime | None = None
    change_id: int = 0  # its place in the change log (0: unknown)


@dataclass(frozen=True)
class Created:
    """A ticket no longer open, counted in its account's volume where the Desk first took it."""

    ticket: Record  # (only its ``account`` attribute is read)
    at: datetime
    change_id: int = 0


class Known(NamedTuple):
    """An account as the store holds it now, with its identity keys: a rebuilt Desk's tickets find their CRM
    context (tier, ARR, owner) in it as the live pipeline found it in the store."""

    record: Record
    keys: Mapping[str, str]


class Assignee(NamedTuple):
    """An open ticket's assignee as the store holds it now (None: unassigned): what was acted on, which a
    rebuilt Desk's own routing may not reproduce (round robin replayed without the closed tickets)."""

    record_id: str
    assignee: str | None
    stored: Record | None = None  # the ticket as stored: what a rebuild that routed it otherwise takes


class Closed(NamedTuple):
    """A ticket the store holds closed, with the time of its last change: final for the rules (a later
    change reopening it is taken without them), as the live Desk that saw it close knew."""

    record_id: str
    at: datetime


class Rotation(NamedTuple):
    """The agents given a ticket lately, least recently first (from the effects log): round robin's order,
    which a rebuild that replays only the open tickets would not know."""

    agents: tuple[str, ...]


class Taken(NamedTuple):
    """The instant the live Desk took a change that a rebuild does not replay (of a ticket closed since): the
    timers due before it fired then, so the rebuild fires them there too, silently (not again later)."""

    at: datetime
    change_id: int = 0


class Picks(NamedTuple):
    """What the live Desk assigned the open tickets (from the effects log): ``(ticket id, rule, instant) ->
    agent``. A rebuilt Desk routes a ticket to that agent at that instant, and to nobody at any other (it
    waits, as it did), so that its routing, and what the rules on the assignee did after it, follow what
    was acted on."""

    picks: Mapping[tuple[str, str, str], str]


class Acted(NamedTuple):
    """The rules that acted on each open ticket live: ``(ticket id, rule name)`` of every side effect claimed
    (from the effects log). A rebuild under a config with a rule new or changed since finds it matching an
    open ticket it never acted on: that is owed."""

    pairs: frozenset[tuple[str, str]]


Item = Stored | Created | Known | Assignee | Closed | Rotation | Picks | Taken | Acted
History = tuple[Iterable[Item], datetime | None]
Loader = Callable[[DeskState], History]
"""Reads a rebuild's history in a transaction: ``(items in processing order, the last tick committed)``."""


def change_event(change: Change, created: bool) -> dict[str, Any]:
    """The replay-style event a Change amounts to (the Desk reads its type, author and changes)."""
    if created:
        return {"type": "ticket.created"}
    if "message" in change.attrs:
        return {"type": "ticket.message", "author": change.attrs.get("last_author", "customer")}
    if set(change.attrs) == {"status"} and not change.fields and change.tags is None:
        return {"type": "ticket.status", "status": change.attrs["status"]}
    changes: dict[str, Any] = dict(change.attrs)  # (``acknowledged`` meets the SLA's acknowledgement clock)
    if change.tags is not None:
        changes["tags"] = list(change.tags)
    return {"type": "ticket.updated", "changes": changes}


def volume_history(closed: Iterable[tuple[int, datetime, Record]], newest: datetime | None) -> list[Created]:
    """What the volume trigger counted of tickets no longer open, given ``(first change id, Desk time,
    ticket)`` of each: those created within :data:`VOLUME_WINDOW` before ``newest``, and each account's first
    ticket (an account is judged only once the trigger has known it four weeks). In change-log order."""
    if newest is None:
        return []
    since = newest - VOLUME_WINDOW
    first: dict[str, Created] = {}
    out: list[Created] = []
    for change_id, at, ticket in sorted(closed, key=lambda c: c[0]):
        if at > since:
            out.append(Created(ticket, at, change_id))
            continue
        account = ticket.attrs.get("account")
        key = str(account.get("id") or account.get("name") or "") if isinstance(account, dict) else ""
        if key and key not in first:  # (keyed as the Desk's volume trigger keys accounts)
            first[key] = Created(ticket, at, change_id)
    out += first.values()
    out.sort(key=lambda c: c.change_id)
    return out


class LiveRules:
    """The Desk of a running daemon. Registered on the plugin host as ``rules``, where the pipeline finds it:
    it is fed every ticket change (:meth:`before`, :meth:`on_change`) and every agent's status change
    (:meth:`on_agent`), and the rules job runs its timers (:meth:`tick`). Webhooks and scheduled jobs share
    it under one lock; no database write is made under it.
    """

    def __init__(
        self, config: Config, base_dir: Path | None = None, loader: Loader | None = None, dry: bool = False
    ) -> None:
        """``loader`` reads a rebuild's history from the store (:func:`bridge.scheduler.rules_history`);
        ``dry``: a dry run's Desk, dropped afterwards, keeps what it saw when the run rolls back."""
        self.config = config
        self.base_dir = base_dir
        self.loader = loader
        self.dry = dry
        self.lock = threading.RLock()
        # held by the transaction that catches up changes no Desk took, until it ends: two (the rules job's
        # and a sync pass's) would both read the same untaken change and feed it twice
        self.catching = threading.Lock()
        self.stale = False  # work the Desk saw was undone: rebuild it before it is used again
        self.rebuilds = 0  # how many times that happened
        self._inflight: set[object] = set()  # transactions that used the Desk and have not ended
        self._unseen: set[object] = set()  # of those, the ones the last rebuild could not see
        self._fired: dict[object, datetime] = {}  # such a transaction -> the earliest timer it acted on
        # a ticket change no Desk took with an id up to this is history (a rebuild takes it as such); one
        # above it was processed without rules (another replica): the leader catches it up
        self.floor = 0
        # tickets let go when they closed, for CLOSED_MEMORY (the process's memory: rebuilds keep it)
        self._dropped = RecentlySeen(CLOSED_MEMORY)
        # the assignments a rebuilt Desk made of the seats free after it (see :meth:`rebuild`): queued by the
        # next transaction that uses the Desk (their keys keep a retry from repeating them)
        self._owed: list[Decision] = []
        self._reset()

    def _reset(self) -> None:
        self.desk = Desk(self.config, base_dir=self.base_dir)
        self.desk.why = True  # each rule decision keeps what the rule saw (the audit log, for bridge explain)
        self._previous: dict[str, dict[str, Any]] = {}
        self._seen: set[str] = set()
        self.records: dict[str, Record] = {}  # the newest copy of each open ticket the Desk has seen
        self.clock: datetime | None = None  # the Desk's time: calls reach it in time order

    # ---------------------------------------------------------------- calls of the pipeline and the scheduler

    def before(self, state: DeskState, at: datetime) -> tuple[datetime, Touched]:
        """Fire the timers due strictly before a ticket change of ``at`` is taken, as replay does (call it
        before the change is applied). Returns the time the change is taken at (``at``, or the Desk's clock
        for a late one) and each touched ticket (as the Desk left it) with its decisions."""
        with self.lock:
            # watched only when a timer fired: a change that fails before the rules saw it (a bad record of
            # a page, its savepoint undone) must not cost a rebuild when the Desk did nothing for it
            self._use(state, watch=False)
            at = self._when(at)
            fired = self._fire_before(at)
            if fired:
                self._watch(state)
            return at, self._settle(state, fired, None)

    def on_change(
        self,
        state: DeskState,
        record: Record,
        change: Change,
        created: bool | None = None,
        was_closed: bool = False,
    ) -> tuple[datetime, Touched]:
        """Feed one applied ticket change. Returns the time the Desk took it at (its own, or the Desk's clock
        for a late one) and each ticket touched, ``record`` among them, with its decisions.

        ``created``: whether the change created the ticket (None: not known); ``was_closed``: whether the
        ticket was closed before it. A change to a closed ticket, or to one the Desk let go when it closed,
        is taken without rules: a closed ticket is final for the rules, as in replay (its fields still
        sync); a customer writing again opens a new ticket in the helpdesk.
        """
        with self.lock:
            self._use(state)
            at = self._when(change.at)
            if was_closed or (not created and record.id not in self._seen and self._closed(record.id, at)):
                status = record.attrs.get("status")
                if status is not None and status != "closed":
                    # (a helpdesk that reopens a closed ticket when its customer writes again: said aloud, as
                    # nothing routes it, clocks it or escalates it from here on)
                    log.warning("rules: %s %s was closed and is %s again: the rules do not take a closed "
                                "ticket up again (no routing, SLA clocks or escalations for it)",
                                change.system, change.external_id, status)
                else:
                    log.info("rules: %s %s is closed: its change is taken without rules",
                             change.system, change.external_id)
                return at, []
            decisions = self._fire_before(at)  # (none, unless another thread moved the clock since before())
            decisions += self._feed(record, change, at)
            return at, self._settle(state, decisions, record)

    def on_agent(self, state: DeskState, agent: str, status: str, at: datetime) -> tuple[datetime, Touched]:
        """Feed an agent's status change (``agent`` as configured): the timers due before it fire first.
        Returns the time the Desk took it at (``at``, or the Desk's clock for a late one) and each ticket
        touched (the waiting tickets an agent back to active takes) with its decisions."""
        with self.lock:
            self._use(state)
            at = self._when(at)
            fired = self._fire_before(at)
            self._note_fired(state, fired)
            self.clock = at
            # (in state: a ticket a timer closed here is open again should this transaction be undone)
            decisions = fired + self.desk.on_agent_status(agent, status, at)
            return at, self._settle(state, decisions, None, timers=False)

    def tick(self, state: DeskState, now: datetime) -> tuple[datetime, Touched]:
        """Fire every timer due by ``now`` in ``state``'s transaction. Returns the time up to which every
        timer is acted on once that transaction commits (the rules cursor), and each touched ticket, as the
        Desk left it, with its decisions."""
        with self.lock:
            self._use(state)
            now = now if self.clock is None else max(now, self.clock)
            self.clock = now
            touched = self._settle(state, self.desk.advance(now), None)
            # a timer another open transaction acted on is handled only once that one commits
            others = [at - EPSILON for tx, at in self._fired.items() if tx is not state]
            return min([now, *others]), touched

    def settle(self, state: DeskState, floor: int) -> None:
        """Raise the floor to ``floor`` once ``state``'s transaction commits (the leader caught up to it)."""

        def committed(done: bool) -> None:
            if done:
                with self.lock:
                    self.floor = max(self.floor, floor)

        state.on_end(committed)

    def forget(self, state: DeskState, record_id: str) -> None:
        """The ticket ``record_id`` was deleted in ``state``'s transaction: drop its state (timers, queue
        place, the agent's load); a change restoring it later starts it afresh."""
        with self.lock:
            self._use(state)
            self._forget(record_id)

    def _forget(self, record_id: str) -> None:
        self._previous.pop(record_id, None)
        self._seen.discard(record_id)
        self.records.pop(record_id, None)
        self.desk.forget(record_id)

    def invalidate(self) -> None:
        """Work the Desk saw was undone: rebuild it from the store before it is used again (a dry run's Desk,
        dropped afterwards, keeps what it saw)."""
        if not self.dry:
            self.stale = True

    # ---------------------------------------------------------------- rebuild

    def rebuild(self, history: Iterable[Item], handled_until: datetime | None) -> int:
        """Rebuild the Desk from stored ticket changes and agent status changes in processing order
        (:class:`Stored`) and the creations of tickets no longer open
        (:class:`Created`, for the volume trigger).

        The changes run through a private pipeline so each reaches the Desk with the ticket as it was then, at
        the time the live Desk took it, after the timers due before it; a change no Desk took above the
        :attr:`floor` is left to the leader's catch-up. Decisions taken while rebuilding were acted on when
        their changes committed, as were the timers due by ``handled_until`` (the last tick the daemon
        committed); timers due later fire on the next tick, and any effect they repeat is stopped by its key.

        The store's assignees (:class:`Assignee`) are the truth of what was acted on: a rebuild replays only
        the open tickets, so its routing can come out otherwise. A ticket it routed otherwise is taken as the
        store holds it (:meth:`Desk.hold_as`). One the store holds unassigned waits in the queue if a live
        Desk took any of its changes (it waited live, or waited for a seat a transaction since undone had
        taken, on PostgreSQL), and the seats free then are given out at once, oldest first: those decisions
        are new, and the next transaction that uses the Desk queues their writes. A ticket no live Desk took a
        change of (history from before the rules ran) is left for its next change to route. Returns how many
        changes were fed.
        """
        with self.lock:
            try:
                return self._rebuilt(history, handled_until)
            finally:
                # however the rebuild ends, the Desk routes live and explains its decisions from here on
                self.desk.follow_picks(None)
                self.desk.why = True

    def _rebuilt(self, history: Iterable[Item], handled_until: datetime | None) -> int:
        """:meth:`rebuild`'s work, under the lock."""
        self._reset()
        self.desk.why = False  # (what a rebuild decides again was acted on, and explained, before)
        mem = MemoryState(keep_audit=False, keep_outbox=False)
        pipeline = Pipeline(self.config, None, run="rebuild", logged=True)
        fed = 0
        held: dict[str, Assignee] = {}
        taken: set[str] = set()  # tickets a live Desk took a change of (not history)
        rotation: tuple[str, ...] = ()
        made: list[Decision] = []  # what the rebuild decided (taken as acted on, unless no live Desk did)
        acted: frozenset[tuple[str, str]] | None = None

        def settle(decisions: list[Decision], current: Record | None) -> Touched:
            made.extend(decisions)
            return self._settle(None, decisions, current)

        deleted_at: datetime | None = None  # the newest delete replayed (the seat it frees)
        for item in history:
            if isinstance(item, Acted):
                acted = item.pairs
                continue
            if isinstance(item, Assignee):
                held[item.record_id] = item
                continue
            if isinstance(item, Closed):
                self._dropped.note(item.record_id, item.at)
                continue
            if isinstance(item, Rotation):
                rotation = item.agents
                continue
            if isinstance(item, Picks):
                self.desk.follow_picks(item.picks)
                continue
            if isinstance(item, Taken):
                if self.clock is None or item.at > self.clock:
                    settle(self._fire_before(item.at), None)
                # the change (a ticket's closing) may have freed the seat a waiting ticket took then
                settle(self.desk.serve_picks(item.at), None)
                continue
            if isinstance(item, Created):
                self.desk.note_created(item.ticket, item.at)
                continue
            if isinstance(item, Known):
                rec = item.record
                mem.create_record(rec.kind, rec.id)
                mem.set_keys(rec.id, rec.kind, dict(item.keys))
                mem.save(rec)
                continue
            stored = item
            if stored.desk_at is None and stored.change_id > self.floor:
                continue  # processed without rules: the catch-up feeds it, and acts on it
            change = stored.change
            at = stored.desk_at or change.at
            at = at if self.clock is None else max(at, self.clock)
            settle(self.desk.serve_picks(at, strict=True), None)  # (the picks the clock passed)
            settle(self._fire_before(at), None)
            if is_agent_change(change):
                self.clock = at
                try:
                    status = str(change.attrs.get("status"))
                    settle(self.desk.on_agent_status(change.external_id, status, at), None)
                except Exception:  # the live Desk failed on it too, and went on
                    log.exception("rules: rebuilding, the desk failed on change %s", stored.change_id)
                    continue
                fed += 1
                continue
            if stored.record_id not in self._seen and self._closed(stored.record_id, at):
                continue  # closed earlier in the history: final for the rules, as it was live
            first = mem.load(stored.record_id) is None
            if first:
                mem.create_record("ticket", stored.record_id)
                for system, external in stored.links.items():
                    mem.link(stored.record_id, system, "ticket", external)
            outcome = pipeline.process(mem, change, at, first=first)
            if outcome.deleted == "ignore":
                continue  # (taken without the rules, as the live pipeline took it)
            if outcome.deleted is not None:
                deleted_at = at if deleted_at is None else max(deleted_at, at)
                self._forget(stored.record_id)  # as the live pipeline did
                # restored later, it starts afresh, as live (whose store keeps no creation time it reads)
                outcome.record.attrs.pop("created_at", None)
                continue
            fed_change = change
            if outcome.stale:
                # (the rebuild's pipeline has no Desk: the late part of a change taken is fed here, what
                # the pipeline found still counts: nothing of a closed or deleted ticket, nor a repeat)
                part = outcome.part if stored.desk_at is not None else None
                if part is None:
                    continue  # the live pipeline takes such a change to no rule either
                fed_change = part  # its message or acknowledgement, as the live pipeline took it
            try:
                settle(self._feed(outcome.record, fed_change, at), outcome.record)
            except Exception:  # the live Desk failed on it too, and went on
                log.exception("rules: rebuilding, the desk failed on change %s", stored.change_id)
                continue
            if stored.desk_at is not None:
                # (only a change fed here counts: a stale change, or one to a closed ticket, is marked as
                # taken by a replica that ran no rules, and is not fed)
                taken.add(stored.record_id)
            fed += 1
        if handled_until is not None and (self.clock is None or handled_until >= self.clock):
            # (a timer due at the last change's very instant was not acted on, unless a tick covered it:
            # the live Desk fires timers strictly before a change)
            self.clock = handled_until
            settle(self.desk.serve_picks(handled_until), None)  # (in time: what they did, that job saw)
            # a seat a delete after that job freed goes out at the next event, as live: not at the job
            later = deleted_at is not None and deleted_at > handled_until
            freed = self.desk.hold_freed() if later else False
            settle(self.desk.advance(handled_until), None)
            if freed:
                self.desk.seats_may_be_free()
        if self.clock is not None:
            settle(self.desk.serve_picks(self.clock), None)
        self.desk.follow_picks(None)  # (from here on, what the Desk assigns is new)
        changed = False
        for rid in list(self.records):
            as_stored = held.get(rid)
            if as_stored is not None:  # (a test's history without the store's assignees keeps the Desk's)
                moved = self.desk.hold_as(rid, as_stored.assignee, wait=rid in taken)
                if moved and as_stored.stored is not None:
                    # what the rebuild's own routing made its rules do (a tag for the agent it chose) the
                    # store never got: the ticket is taken as stored
                    self.desk.take_stored(rid, pipeline.typed(as_stored.stored), self.clock or utcnow())
                if moved and rid in self._previous:
                    self._previous[rid] = path_values(self.records[rid])  # as the store has it
                changed |= moved
                if rid not in taken:
                    self.desk.hush(rid)  # history: its timers wait for its next change
        for agent in rotation:  # round robin's order as the live Desk left it (least recent first)
            self.desk.router.note_assigned(agent)
        self.desk.why = True
        owed = self._never_acted(made, acted, taken)
        self._owed = owed + (self.desk.serve_queue(self.clock) if changed and self.clock is not None else [])
        if not self._owed:
            # a seat may be free with a ticket waiting that the rebuild never saw freed (a change undone
            # since took it): the next event serves the queue first, as the live Desk's would
            self.desk.seats_may_be_free()
        self.stale = False
        return fed

    # ---------------------------------------------------------------- plumbing (under the lock)

    def _when(self, at: datetime) -> datetime:
        """The time a ticket change of ``at`` is taken at: a change dated before the Desk's clock (a late
        pull, old data) at the clock's time, one dated in the future (a wrong clock, bad data) at the wall
        clock: the Desk's clock never runs ahead of it, or every other ticket's timers would fire early."""
        at = min(at, utcnow())
        return at if self.clock is None else max(at, self.clock)

    def _watch(self, state: DeskState) -> None:
        """Hear whether ``state``'s transaction (or its open savepoint) that changed the Desk is undone."""
        if state not in self._inflight:
            self._inflight.add(state)
            state.on_end(partial(self._ended, state))
        state.on_rollback(self.invalidate)

    def _use(self, state: DeskState, watch: bool = True) -> None:
        """Before the Desk is used in ``state``'s transaction: hear if that work is undone (``watch``), and
        first rebuild the Desk when it may be ahead of the store (or behind it)."""
        if watch:
            self._watch(state)
        if self.stale:
            self._rebuild_in(state)
        if self._owed:
            # queued in this transaction: should it be undone, a rebuild finds them owed again
            self._watch(state)
            log.info("rules: the rebuilt desk gave %d free seats to waiting tickets: queued now",
                     len(self._owed))

    def _rebuild_in(self, state: DeskState) -> None:
        if self.loader is None:
            raise RuntimeError("the rules' Desk must be rebuilt from the store and has no loader to read it")
        # a transaction open elsewhere is not seen by this rebuild: when it commits, rebuild again
        self._unseen = self._inflight - {state}
        history, handled = self.loader(state)
        fed = self.rebuild(history, handled)
        self.rebuilds += 1
        log.info("rules: work the desk saw was undone; rebuilt it from %d stored changes", fed)

    def _ended(self, state: object, committed: bool) -> None:
        with self.lock:
            self._inflight.discard(state)
            self._fired.pop(state, None)
            unseen = state in self._unseen
            self._unseen.discard(state)
            if unseen or not committed:
                self.invalidate()

    def _fire_before(self, at: datetime) -> list[Decision]:
        due = self.desk.next_timer()
        if due is None or due > at:
            return []
        fired = self.desk.advance(at - EPSILON) if due < at else []
        return fired + self.desk.open_due(at)  # (agents opening at this instant take the queue first)

    def _feed(self, record: Record, change: Change, at: datetime) -> list[Decision]:
        self.clock = at
        created = record.id not in self._seen
        self._seen.add(record.id)
        opened = self._opened(record, at) if created else None
        record.attrs.setdefault("created_at", at)
        previous = self._previous.get(record.id, {})
        decisions = self.desk.on_ticket(record, previous, change_event(change, created), at, opened=opened)
        if record.attrs.get("status") != "closed":
            if self.desk.reads_previous:  # kept only when a rule or policy reads changed/from/to
                self._previous[record.id] = path_values(record)
            self.records[record.id] = record
        return decisions

    def _opened(self, record: Record, at: datetime) -> datetime | None:
        """When a ticket the Desk takes for the first time opened, by its helpdesk's ``created_at``, where
        that is earlier than ``at`` and within :data:`OPENING_REACH` of it (created since the last pull, or
        while the daemon was down: a webhook would have brought it then); None for an older one (a first run,
        a backfill), whose clocks start at ``at``, so that turning bridge on does not state every old open
        ticket's breaches at once. It reads nothing of the config, so a rebuild takes it as live did."""
        created = record.attrs.get("created_at")
        if not isinstance(created, str | datetime):
            return None
        try:
            opened = parse_time(created)
        except ValueError:
            return None
        return opened if at - OPENING_REACH <= opened < at else None

    def _never_acted(self, made: list[Decision], acted: frozenset[tuple[str, str]] | None,
                     taken: set[str]) -> list[Decision]:
        """The decisions a rebuild made of rules no live Desk acted with on their open ticket, and that still
        hold of it: a rule added (or changed) since, matching a ticket that was open already. They are owed:
        the next transaction queues them (their keys keep a retry from repeating them). A ticket no live Desk
        took a change of is history, and a rule on an event (changed, from, to) held of that event only."""
        if acted is None:
            return []
        owed = [d for d in made
                if d.record_id in taken and d.record_id in self.records and (d.record_id, d.rule) not in acted
                and self.desk.holds(d.record_id, d.rule)]
        for rid, rule in dict.fromkeys((d.record_id, d.rule) for d in owed):
            log.info("rules: rule %s holds for open ticket %s, which it never acted on (a rule new or "
                     "changed since): acted on now", rule, self.records[rid].ref())
        return owed

    def _settle(
        self, state: object, decisions: list[Decision], current: Record | None, timers: bool = True
    ) -> Touched:
        """Group decisions by the ticket they are about and drop the tickets that closed; note the earliest
        timer ``state``'s transaction acted on (``timers``: the decisions without ``current`` are timers')."""
        if current is None and timers:  # (timers: before() and tick())
            self._note_fired(state, decisions)
        if state is not None and self._owed:
            decisions = self._owed + decisions
            self._owed = []
        by_ticket: dict[str, list[Decision]] = {}
        for d in decisions:
            by_ticket.setdefault(d.record_id, []).append(d)
        out: Touched = []
        for rid, ds in by_ticket.items():
            rec = current if current is not None and rid == current.id else self.records.get(rid)
            if rec is not None:
                out.append((rec, ds))
                if rec is not current and rid in self._previous:
                    # changed outside its own change (the queue gave it a seat, a timer fired): its next
                    # change is compared with it as it is now, or a rule would see this change twice
                    self._previous[rid] = path_values(rec)
        for rec in [r for r, _ds in out] + ([current] if current is not None else []):
            if rec.attrs.get("status") == "closed":
                self._drop(rec.id, state)
        return out

    def _note_fired(self, state: object, timers: list[Decision]) -> None:
        """Note the earliest timer ``state``'s transaction acted on (see :meth:`tick`)."""
        first = min((d.at for d in timers if d.at is not None), default=None)
        if state is None or first is None:
            return
        if state not in self._fired or first < self._fired[state]:
            self._fired[state] = first

    def _closed(self, record_id: str, at: datetime) -> bool:
        """Whether the ticket was let go when it closed, within :data:`CLOSED_MEMORY` before ``at``."""
        return self._dropped.get(record_id, at) is not None

    def _drop(self, record_id: str, state: object = None) -> None:
        if self.clock is not None:
            self._dropped.note(record_id, self.clock)
            if isinstance(state, DeskState):
                # closed in a transaction that may not commit: undone, the ticket is open again for the rules
                # (the rebuild that follows must feed it and re-arm its timers)
                state.on_rollback(partial(self._undo_close, record_id))
        self._forget(record_id)

    def _undo_close(self, record_id: str) -> None:
        with self.lock:
            self._dropped.forget(record_id)
