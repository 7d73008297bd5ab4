"""``bridge run``: APScheduler jobs (one sync job per connector, the outbox pusher, the rules, the topics job
that files product tickets) until SIGTERM or SIGINT.

With PostgreSQL several replicas may run: each job takes an advisory lock named after it, so one replica at a
time runs it; the others skip that round. Rules run on one replica only, the leader (:class:`RulesLeader`).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler

from bridge.effects import apply_touched, writable_systems
from bridge.model import AGENT_STATUSES, Change, Record, Write, format_time, parse_time, utcnow
from bridge.pipeline import DESK_PLUGIN, SEEN, DeskState, Pipeline, PlannedWrite, plan_effects
from bridge.product import TOPICS_EVERY, files_product_tickets, run_topics
from bridge.rules.engine import Desk
from bridge.rules.live import (
    AGENT_KIND,
    CLOSED_MEMORY,
    Acted,
    Assignee,
    Closed,
    Created,
    History,
    Item,
    Known,
    LiveRules,
    Picks,
    Rotation,
    Stored,
    Taken,
    agent_change,
    is_agent_change,
    volume_history,
)
from bridge.settings import Config
from bridge.store import Store, Tx
from bridge.sync import Syncer, SyncReport, systems_order

if TYPE_CHECKING:
    from bridge.app import App

log = logging.getLogger("bridge.scheduler")
PUSH_EVERY = timedelta(seconds=30)
RULES_EVERY = timedelta(minutes=1)
RULES_CURSOR = ("bridge", "rules")  # the last tick committed: a rebuilt Desk does not act before it again
LEADER_LOCK = "rules-leader"  # held by the one replica that runs the rules, for as long as it runs
# a transaction open longer than this is taken as gone: a change received this long ago and not yet seen by
# the rules leader will not appear (the leader's catch-up looks no further back)
SETTLE = timedelta(minutes=15)
AGENT_STATUS_KEYS = ("agent", "status", "at")
# how far ahead of this host's clock an agent status change may be dated (clock skew): a later one would move
# the rules' clock, and fire their timers, early
FUTURE_SLACK = timedelta(minutes=5)


@dataclass
class Job:
    """A named, lock-protected unit of scheduled work."""

    name: str
    every: timedelta
    run: Callable[[], SyncReport]


@dataclass
class Totals:
    """Figures summed over job runs, for the summary line."""

    reports: list[SyncReport] = field(default_factory=list)

    def as_dict(self, records: int) -> dict[str, object]:
        """The summary's figures as JSON-ready data (``bridge run --once --json``)."""
        unmapped: dict[str, int] = {}
        for r in self.reports:
            for tag, n in r.unmapped_tags.items():
                unmapped[tag] = unmapped.get(tag, 0) + n
        return {
            "records": records,
            "pulled": sum(r.pulled for r in self.reports),
            "fields_set": sum(r.fields_set for r in self.reports),
            "writes_queued": sum(r.writes_queued for r in self.reports),
            "pushed": sum(r.pushed for r in self.reports),
            "conflicts": sum(len(r.conflicts) for r in self.reports),
            "unmapped_tags": dict(sorted(unmapped.items())),
            "problems": [p for r in self.reports for p in r.problems],
        }

    def summary(self, records: int) -> str:
        """One short paragraph: records, fields set, writes, unmapped tags, problems."""
        d = self.as_dict(records)
        unmapped = d["unmapped_tags"]
        assert isinstance(unmapped, dict)
        problems = d["problems"]
        assert isinstance(problems, list)
        lines = [
            f"records: {records} in store, {d['pulled']} changes pulled",
            f"fields set from tags: {d['fields_set']}; writes queued: {d['writes_queued']}, "
            f"pushed: {d['pushed']}; conflicts: {d['conflicts']}",
            "unmapped tags: " + (", ".join(f"{t} ({n})" for t, n in unmapped.items()) or "none"),
        ]
        lines += [f"problem: {p}" for p in problems]
        return "\n".join(lines)


def build_jobs(app: App, syncer: Syncer, leader: RulesLeader | None = None) -> list[Job]:
    """One sync job per enabled connector (``sync_every``), the outbox pusher, and the rules job (the
    leader's catch-up and timers; on another replica, an attempt to become the leader)."""
    jobs = []
    # (the first pass runs the jobs in this order: a CRM's accounts are in before the tickets that read them)
    for name in systems_order(app.config, list(app.config.connectors)):
        table = app.config.connectors[name]
        if not table.enabled:
            continue
        every = table.pull_every

        def sync_one(system: str = name) -> SyncReport:
            report = SyncReport()
            if leader is not None and leader.live is not None:
                report.writes_queued += catch_up_first(app, leader.live)
            syncer.pull(system, report)
            if app.accepts_writes(system):
                syncer.push(system, report)
            return report

        jobs.append(Job(f"sync:{name}", every, sync_one))

    def push_all() -> SyncReport:
        report = SyncReport()
        for system, table in app.config.connectors.items():
            if table.enabled and app.accepts_writes(system):
                syncer.push(system, report)
        return report

    if leader is not None:  # before the pusher, so that a pass pushes what the timers decided
        jobs.append(Job("rules", RULES_EVERY, lambda: run_rules(app, leader)))
    if files_product_tickets(app.config, app.host.connectors()):
        jobs.append(Job("topics", TOPICS_EVERY, lambda: run_topics_job(app)))
    jobs.append(Job("outbox", PUSH_EVERY, push_all))
    return jobs


class RulesLeader:
    """Rules run on one replica: the one holding the store's :data:`LEADER_LOCK`, kept for the life of the
    process. It has the Desk: its pipelines feed it what they process, and its rules job catches up what the
    other replicas took in (they process changes without rules). A replica that is not the leader tries
    again on each run of its rules job, so one takes over when the leader stops."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.live: LiveRules | None = None
        self._held: ExitStack | None = None

    def claim(self, now: datetime | None = None) -> LiveRules | None:
        """The Desk when this replica leads (taking the lead if it is free), else None."""
        if self.live is not None:
            if self.app.store.still_holds(LEADER_LOCK):
                return self.live
            # the lock went with a dropped database connection: another replica may lead now
            log.error("rules: this replica lost the lead (its database connection dropped): its rules stop; "
                      "it tries to take the lead again on the next run")
            self.app.host.pm.unregister(name=DESK_PLUGIN)  # its pipelines take changes without rules
            self.live = None
            self.release()
            return None
        hold = ExitStack()
        try:
            if not hold.enter_context(self.app.store.advisory_lock(LEADER_LOCK)):
                hold.close()
                return None
            self.live = start_rules(self.app, now=now)
        except BaseException:
            hold.close()
            raise
        self._held = hold
        log.info("rules: this replica leads: it runs the rules and catches up what the others take in")
        return self.live

    def release(self) -> None:
        """Give the lead up (at shutdown: the Desk stays registered, but no job runs it any more)."""
        if self._held is not None:
            self._held.close()
            self._held = None


def run_rules(app: App, leader: RulesLeader, now: datetime | None = None) -> SyncReport:
    """The rules job: on the leader, catch up and fire due timers (:func:`run_timers`); elsewhere, try to
    take the lead (a replica that is not the leader processes changes without rules)."""
    live = leader.claim(now)
    if live is None:
        log.info("rules: another replica leads; this one takes changes in without rules")
        return SyncReport()
    return run_timers(app, live, now)


def wants_rules(app: App) -> bool:
    """Whether the config has anything for the Desk to do (rules, SLAs, agents, follow-ups, auto-close)."""
    cfg = app.config
    return bool(cfg.rules or cfg.sla or cfg.agents or cfg.follow_up or cfg.auto_close)


def rules_history(state: DeskState) -> History:
    """What a rebuilt Desk is fed, read in ``state`` (a store transaction): every change of the tickets still
    open and every agent status change, in the order they were processed, each with the time the live Desk
    took it at; the creations the volume trigger still counts of the other tickets; each open ticket's
    assignee as stored; and the last tick committed."""
    if not isinstance(state, Tx):
        raise TypeError(f"the rules' history is read from the store, not from {type(state).__name__}")
    tx = state
    open_links: dict[str, dict[str, str]] = {}
    closed: dict[str, Record] = {}
    assignees: list[Item] = []
    ended: list[Closed] = []
    for r in tx.records("ticket"):
        if r.attrs.get("status") != "closed":
            open_links[r.id] = dict(r.links)
            assignees.append(Assignee(r.id, r.attrs.get("assignee") or None, r))
            continue
        seen = [parse_time(v) for v in (r.attrs.get(SEEN) or {}).values() if isinstance(v, str)]
        if seen:
            ended.append(Closed(r.id, max(seen)))
        if isinstance(r.attrs.get("account"), dict):
            closed[r.id] = Record(r.id, "ticket", attrs={"account": r.attrs["account"]})
    feed = [
        Stored(c.record_id, open_links[c.record_id], c.change, c.desk_at, c.id)
        for c in tx.logged_changes("ticket", open_links)
    ]
    firsts = tx.first_changes("ticket") if closed else {}
    created = [(c.id, c.desk_at or c.change.at, closed[rid]) for rid, c in firsts.items() if rid in closed]
    times = [at for _id, at, _t in created] + [s.desk_at or s.change.at for s in feed]
    agents = [Stored("", {}, c.change, c.desk_at, c.id) for c in tx.own_changes(AGENT_KIND)]
    volume = volume_history(created, max(times, default=None))
    items: list[Stored | Created | Taken] = [*feed, *agents, *volume]
    handled = tx.cursor(RULES_CURSOR[0], RULES_CURSOR[1])
    # the changes since the last rules job of tickets closed now, which the rebuild does not replay: the live
    # Desk fired the timers due before each of them then
    fed = {s.change_id for s in feed}
    after = parse_time(handled) if handled else None
    items += [Taken(at, cid) for at, cid in tx.taken_times("ticket", after) if cid not in fed]
    # in the order the live Desk took them: by the time it took each at (a change another replica processed
    # is taken by the leader's catch-up after changes with higher ids), then by place in the change log
    items.sort(key=_taken_order)
    # accounts first, as they are now (the CRM context a ticket's SLA policy or routing may read)
    keys = tx.keys_of_kind("account")
    history: list[Item] = [Known(r, keys.get(r.id, {})) for r in tx.records("account")]
    # what the live Desk assigned the open tickets, and when: the rebuild's routing follows it
    newest = max(times, default=None)
    since = None if newest is None else newest - CLOSED_MEMORY
    assigned = tx.effect_keys("assign", since)  # (the last 30 days: the rebuild's picks, round robin's order)
    picks: dict[tuple[str, str, str], str] = {}
    for key, _at in assigned:
        pick = Desk.assign_pick(key)
        if pick is not None and pick[0][0] in open_links:
            picks[pick[0]] = pick[1]  # (the last of one instant: what it ended with)
    history.append(Picks(picks))
    history.append(Acted(frozenset(tx.effect_rules(open_links))))  # (the rules that acted on each, live)
    # the tickets closed lately, oldest first: final for the rules even when a change reopens them later
    ended.sort(key=lambda c: c.at)
    history += [c for c in ended if newest is None or c.at > newest - CLOSED_MEMORY]
    history += items
    history += assignees  # last: what the store holds now
    # round robin's order: each agent's last assignment kept, least recent first (with no change of an open
    # ticket to date the window by, every assignment kept counts)
    last: dict[str, int] = {}  # agent -> place of their last assignment, in the order they took effect
    for n, (key, _at) in enumerate(assigned):
        agent = Desk.assigned_agent(key).casefold()
        if agent:
            last[agent] = n
    history.append(Rotation(tuple(sorted(last, key=last.__getitem__))))
    return history, parse_time(handled) if handled else None


def _taken_order(item: Stored | Created | Taken) -> tuple[datetime, int]:
    if isinstance(item, Created | Taken):
        return item.at, item.change_id
    return item.desk_at or item.change.at, item.change_id


def start_rules(app: App, dry: bool = False, now: datetime | None = None) -> LiveRules:
    """Build the daemon's Desk, rebuild it from the store's change log and register it on the plugin host
    (where the pipeline finds it). ``dry``: for a dry run, whose rolled-back work the Desk keeps.

    Ticket changes no Desk took are history up to the last one received :data:`SETTLE` before ``now``; the
    later ones (another replica took them in while no leader ran rules) are caught up by the rules job.
    """
    live = LiveRules(app.config, app.base_dir, loader=rules_history, dry=dry)
    with app.store.session() as tx:
        live.floor = tx.last_change_id(received_before=(now or utcnow()) - SETTLE)
        history, handled = rules_history(tx)
        fed = live.rebuild(history, handled)
    # timers that fell due while the daemon was down fire in the first run of the rules job
    app.host.register(live, DESK_PLUGIN)
    log.info("rules: desk rebuilt from %d stored changes", fed)
    return live


def catch_up_first(app: App, live: LiveRules, now: datetime | None = None) -> int:
    """Before a pass takes changes in on the leader, catch up in a transaction of its own what came before
    them without rules (an agent's status from ``bridge agent-status``, another replica's changes), so that
    the Desk takes them in change-log order: an agent set away before the pass gets none of its tickets.
    Returns how many writes were queued."""
    with app.store.session() as tx:
        return catch_up(app, live, tx, now or utcnow())


def catch_up(app: App, live: LiveRules, tx: Tx, now: datetime) -> int:
    """Feed the Desk, in id order, the committed ticket changes and agent status changes no Desk took (other
    replicas processed them without rules), queueing their effects in ``tx``; returns how many writes were
    queued. The floor rises past what was received :data:`SETTLE` before ``now`` once ``tx`` commits."""
    live.catching.acquire()  # (released when ``tx`` ends: what it takes is marked taken by then)
    tx.on_end(lambda _committed: live.catching.release())
    pipeline = Pipeline(app.config, app.host, run="rules")
    queued = 0
    for c in tx.untaken_changes("ticket", live.floor, own=AGENT_KIND):
        if is_agent_change(c.change):
            queued += len(take_agent_status(app, live, tx, c.change, c.id, now, "rules", retry=False) or [])
            continue
        queued += len(pipeline.catch_up(tx, c.record_id, c.change, c.id, now, late=c.came_late).writes)
    live.settle(tx, tx.last_change_id(received_before=now - SETTLE, after=live.floor))
    return queued


def take_agent_status(
    app: App, live: LiveRules, tx: Tx, change: Change, change_id: int, now: datetime, run: str, retry: bool
) -> list[Write] | None:
    """Feed the Desk an agent status change kept in ``tx``'s change log as ``change_id``, queue the effects
    of what it decides (the waiting tickets an agent back to active takes, each on its ticket, once) and mark
    the change taken; returns the writes queued. Should the Desk fail on it, it is rebuilt before its next
    use, and the change is left to the rules job's catch-up (``retry``; returns None) or taken all the same
    (a change the rules fail on is not retried forever)."""
    status = str(change.attrs.get("status"))
    try:
        desk_at, touched = live.on_agent(tx, change.external_id, status, change.at)
    except Exception:
        log.exception("rules failed on agent %s becoming %s", change.external_id, status)
        live.invalidate()
        if retry:
            return None
        tx.set_desk_time(change_id, change.at)
        return []
    writable = writable_systems(app.config, app.host.connectors())
    writes = apply_touched(tx, app.config, touched, now, run, writable=writable)
    tx.set_desk_time(change_id, desk_at)
    return writes


@dataclass
class AgentStatusTaken:
    """What recording an agent's status change did."""

    change_id: int
    taken: bool  # this process's rules took it (else the rules leader's catch-up takes it)
    writes: list[Write] = field(default_factory=list)


def configured_agent(config: Config, name: object) -> str:
    """The email of the ``[[agents]]`` entry ``name`` names, as configured (any letter case); ValueError
    naming the problem otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"agent: expected an agent's email, got {name!r}")
    folded = name.strip().casefold()
    for agent in config.agents:
        if agent.email.casefold() == folded:
            return agent.email
    known = ", ".join(a.email for a in config.agents) or "none"
    raise ValueError(f"agent {name!r} is not in the config's [[agents]] (configured: {known})")


def agent_status_request(config: Config, payload: Any, now: datetime) -> tuple[str, str, datetime]:
    """``(agent as configured, status, at)`` of a ``POST /agents/status`` body (parsed JSON); ValueError
    naming the problem for a malformed one, an unknown status or agent, or a time later than ``now``."""
    if not isinstance(payload, dict):
        raise ValueError('expected a JSON object: {"agent": EMAIL, "status": STATUS, "at": TIME (optional)}')
    unknown = [k for k in payload if k not in AGENT_STATUS_KEYS]
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}; expected agent, status and at")
    for key in ("agent", "status"):
        if key not in payload:
            raise ValueError(f"{key} is missing")
    email = configured_agent(config, payload["agent"])
    status = payload["status"]
    if not isinstance(status, str) or status not in AGENT_STATUSES:
        # (null, true or 7 as the JSON said them, not as Python spells them)
        shown = repr(status) if isinstance(status, str) else json.dumps(status)
        raise ValueError(f"status {shown} is not one of {', '.join(AGENT_STATUSES)}")
    raw = payload.get("at")
    if raw is None:
        return email, status, now
    if not isinstance(raw, str):
        raise ValueError(f"at: expected an ISO 8601 time, got {raw!r}")
    try:
        at = parse_time(raw)
    except ValueError:
        raise ValueError(f"at {raw!r} is not an ISO 8601 time") from None
    if at > now + FUTURE_SLACK:
        raise ValueError(f"at {raw!r} is in the future (now is {format_time(now)})")
    return email, status, at


def record_agent_status(
    app: App, agent: str, status: str, at: datetime, now: datetime | None = None, run: str = "agent-status"
) -> AgentStatusTaken:
    """Keep agent ``agent`` (as configured) becoming ``status`` at ``at`` in the change log, in one
    transaction with what this process's rules do about it: when this process leads (its Desk is
    registered), the Desk takes it now and the effects are queued; otherwise the leader's rules job catches
    it up, as it does ticket changes other replicas take in."""
    now = now or utcnow()
    change = agent_change(agent, status, at)
    plugin = app.host.pm.get_plugin(DESK_PLUGIN)
    live = plugin if isinstance(plugin, LiveRules) and not plugin.dry else None
    with app.store.session() as tx:
        change_id = tx.add_change(change, None, now)
        writes = take_agent_status(app, live, tx, change, change_id, now, run, retry=True) if live else None
    return AgentStatusTaken(change_id, writes is not None, writes or [])


def run_timers(app: App, live: LiveRules, now: datetime | None = None) -> SyncReport:
    """Catch up the ticket changes other replicas took in, then fire due SLA, follow-up and auto-close
    timers; queue their effects once and save the tickets, in one transaction with the rules cursor (should
    it not commit, the Desk is rebuilt and all of it runs again)."""
    report = SyncReport()
    now = now or utcnow()
    writable = writable_systems(app.config, app.host.connectors())
    with app.store.session() as tx:
        report.writes_queued += catch_up(app, live, tx, now)
        handled, touched = live.tick(tx, now)
        # the rebuild after a restart skips what was handled up to here
        tx.set_cursor(RULES_CURSOR[0], RULES_CURSOR[1], format_time(handled) or "")
        queued = apply_touched(tx, app.config, touched, now, "timers", writable=writable)
        report.writes_queued += len(queued)
    return report


def sync_once(app: App, systems: list[str] | None = None, dry_run: bool = False) -> SyncReport:
    """``bridge sync``: one pass now. With rules configured the Desk acts on what the pass brings, as in
    ``bridge run``, and due timers fire: a ticket a one-shot sync takes in is routed and escalated too (the
    next ``bridge run`` rebuilds its Desk and does not act on it again). A dry run plans the rules' effects
    with the rest, and fires no timer.
    """
    # (a pass pushes every system's outbox: it needs them all; a dry run pushes nothing)
    app.start_connectors(systems or () if dry_run else ())
    leader = RulesLeader(app) if wants_rules(app) and not dry_run else None
    live = start_rules(app, dry=True) if wants_rules(app) and dry_run else None
    if leader is not None:
        live = leader.claim()  # (None while a daemon leads: its rules job catches this pass up)
    try:
        syncer = Syncer(app.config, app.store, app.connector, app.host)
        caught = catch_up_first(app, live) if live is not None and not dry_run else 0
        report = syncer.sync(systems, dry_run=dry_run)
        report.writes_queued += caught
        if live is not None and dry_run:
            report.plan.extend(_timers_planned(app, live))
        elif live is not None:
            timers = run_timers(app, live)
            report.writes_queued += timers.writes_queued
            syncer.push_all(report)  # what the timers queued
    finally:
        if leader is not None:
            leader.release()
    return report


class _RollBack(Exception):
    """Ends a dry transaction: everything in it is undone."""


@contextmanager
def _rolled_back(store: Store) -> Iterator[Tx]:
    try:
        with store.session() as tx:
            yield tx
            raise _RollBack
    except _RollBack:
        pass


def _timers_planned(app: App, live: LiveRules) -> list[PlannedWrite]:
    """What the timers due now would write (a dry run: the Desk is this process's own and is dropped)."""
    writable = writable_systems(app.config, app.host.connectors())
    with _rolled_back(app.store) as tx:
        _handled, touched = live.tick(tx, utcnow())
        return plan_effects(tx, app.config, touched, writable)


def run_topics_job(app: App, now: datetime | None = None) -> SyncReport:
    """The topics job: count the tickets taken since its last run in their topics, queue each spike's
    product ticket write for the tracker once (:mod:`bridge.product`)."""
    done = run_topics(app.store, app.config, now)
    return SyncReport(writes_queued=done.queued)


def run_job(app: App, job: Job, totals: Totals) -> None:
    """Run one job under its advisory lock; a failing job is logged and does not stop the daemon."""
    with app.store.advisory_lock(job.name) as got:
        if not got:
            log.info("job %s is running on another replica; skipped", job.name)
            return
        try:
            totals.reports.append(job.run())
        except Exception as exc:
            log.exception("job %s failed", job.name)
            totals.reports.append(
                SyncReport(problems=[f"job {job.name} failed: {type(exc).__name__}: {exc}"])
            )


def record_count(app: App) -> int:
    """How many records the store holds."""
    with app.store.session() as tx:
        return sum(1 for _ in tx.records())


def run_daemon(
    app: App, once: bool = False, stop: threading.Event | None = None, as_json: bool = False
) -> int:
    """Run every job once (``once``) or on its schedule until SIGTERM/SIGINT or ``stop`` is set."""
    from bridge.check import require_valid

    require_valid(app.loaded, app.host)
    app.start_connectors()
    leader = RulesLeader(app) if wants_rules(app) else None
    if leader is not None:
        leader.claim()
    syncer = Syncer(app.config, app.store, app.connector, app.host)
    jobs = build_jobs(app, syncer, leader)
    totals = Totals()
    app.host.call_each("startup", app=app)
    try:
        if once:
            for job in jobs:
                run_job(app, job, totals)
            if as_json:
                print(json.dumps(totals.as_dict(record_count(app)), indent=2, default=str))
            else:
                print(totals.summary(record_count(app)))
            return 1 if any(r.problems for r in totals.reports) else 0
        stop = stop or threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        server = None
        if app.config.bridge.serve:
            from bridge.server import Server

            server = Server(app)
            server.start()
        scheduler = BackgroundScheduler(timezone="UTC")
        for job in jobs:
            scheduler.add_job(
                run_job,
                "interval",
                args=(app, job, totals),
                seconds=job.every.total_seconds(),
                id=job.name,
                max_instances=1,
                coalesce=True,
                next_run_time=None,
            )
        scheduler.start()
        # a first pass at once, so an admin sees data without waiting a whole interval
        for job in jobs:
            if stop.is_set():
                break
            run_job(app, job, totals)
        if app.config.bridge.summary:
            print(totals.summary(record_count(app)), flush=True)
        for job in jobs:
            scheduler.modify_job(job.name, next_run_time=utcnow() + job.every)
        log.info("bridge is running: %d jobs; SIGTERM or Ctrl-C stops it", len(jobs))
        stop.wait()
        scheduler.shutdown(wait=True)
        if server is not None:
            server.stop()
        log.info("bridge stopped cleanly")
        return 0
    finally:
        app.host.call_each("shutdown", app=app)
        if leader is not None:
            leader.release()
