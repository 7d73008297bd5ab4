"""``bridge report``: support metrics over the tickets of the store, or of a replayed recording.

Each ticket's life is read from what happened to it (created, messages by author, statuses, the rules'
decisions) and its state at the end:

- **FRT** (first response time): from creation to the first agent message (or acknowledgement), wall clock;
- **TTR** (time to resolution): from creation to the first resolve (or close);
- **FCR** (first contact resolution): of the resolved tickets, those resolved after exactly one agent message,
  with no customer message after it and never reopened;
- **escalation rate**: tickets escalated at least once, of all;
- **reopens**: tickets resolved or closed, then opened again, and how many times;
- **backlog**: tickets neither resolved nor closed at the report's time, by status;
- **volume and aging by tag**: tickets per tag, and the open ones by age (under 1 day, 1-3, 3-7, over 7 days);
- **AI acceptance rate**: of the tags the classifier added, those still on the ticket at the end (a person
  removing one rejected it); tickets sent to review for a low confidence.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.model import by_customer, format_time, parse_time
from bridge.settings import Config

DONE = ("resolved", "closed")
AGES = (("<1d", timedelta(days=1)), ("1-3d", timedelta(days=3)), ("3-7d", timedelta(days=7)), (">7d", None))


@dataclass
class TicketLife:
    """What happened to one ticket, as the report needs it."""

    id: str
    created: datetime
    status: str = "open"
    tags: list[str] = field(default_factory=list)
    first_response: datetime | None = None  # the first agent message or acknowledgement
    replied: datetime | None = None  # the first agent message
    resolved: datetime | None = None  # the first resolve or close
    replies_before_resolve: int = 0
    customer_after_reply: bool = False  # the customer wrote after the first agent message (at any time)
    reopens: int = 0
    escalated: bool = False
    proposed: set[str] = field(default_factory=set)  # tags the classifier added
    reviewed: bool = False
    statuses: list[tuple[datetime, str]] = field(default_factory=list)  # each change of status, in order
    last: datetime | None = None  # the newest time anything happened to it

    def __post_init__(self) -> None:
        self.last = self.created

    def seen(self, at: datetime) -> None:
        """Something happened to the ticket at ``at``."""
        if self.last is None or at > self.last:
            self.last = at

    def message(self, at: datetime, author: str | None) -> None:
        """A message by ``author`` (customer, agent, or another) at ``at``."""
        self.seen(at)
        if author == "agent":
            if self.first_response is None:
                self.first_response = at
            if self.replied is None:
                self.replied = at
            if self.resolved is None:
                self.replies_before_resolve += 1
        elif author == "customer" and self.replied is not None:
            self.customer_after_reply = True

    def acknowledged(self, at: datetime) -> None:
        """An agent's acknowledgement: a first response."""
        self.seen(at)
        if self.first_response is None:
            self.first_response = at

    def set_status(self, at: datetime, status: str) -> None:
        """The ticket's status became ``status`` at ``at``."""
        self.seen(at)
        if status == self.status:
            return
        if self.status in DONE and status not in DONE:
            self.reopens += 1
        if status in DONE and self.resolved is None:
            self.resolved = at
        self.status = status
        self.statuses.append((at, status))

    def status_at(self, at: datetime) -> str | None:
        """The ticket's status at ``at`` (None: not created yet)."""
        if at < self.created:
            return None
        now = "open"
        for when, status in self.statuses:
            if when > at:
                break
            now = status
        return now

    def decision(self, d: dict[str, Any]) -> None:
        """A rules decision about the ticket (replay.md's shape)."""
        kind = d.get("decision")
        when = d.get("at")
        at = parse_time(when) if isinstance(when, str) else self.last or self.created
        if kind == "set_field" and d.get("field") == "status" and isinstance(d.get("value"), str):
            self.set_status(at, d["value"])  # a rule resolved it (or reopened it)
        elif kind == "escalate" and d.get("reason") != "volume":
            # (the volume check-in is a task about the account, as the final state's escalations say: no
            # escalation of the ticket it came with)
            self.escalated = True
        elif kind == "tag" and d.get("rule") == "classifier" and isinstance(d.get("tag"), str):
            self.proposed.add(d["tag"])
        elif kind == "review":
            self.reviewed = True
        elif kind == "auto_close":
            self.set_status(at, "closed")


class ReportBuilder:
    """Ticket lives, fed in time order, and the report they make."""

    def __init__(self) -> None:
        self.tickets: dict[str, TicketLife] = {}

    def created(self, tid: str, at: datetime, status: str | None, tags: Iterable[str]) -> None:
        """A ticket created (a second creation of the same id is ignored)."""
        if tid in self.tickets:
            return
        life = self.tickets[tid] = TicketLife(tid, at, tags=list(tags))
        if status:
            life.set_status(at, status)

    def get(self, tid: str) -> TicketLife | None:
        """The life of ticket ``tid``, if it was created."""
        return self.tickets.get(tid)

    def report(self, at: datetime | None) -> dict[str, Any]:
        """The metrics of every ticket; the backlog and the aging as they were at ``at`` (None: the newest
        time seen), of the tickets created by then."""
        lives = list(self.tickets.values())
        if at is None:
            at = max((life.last or life.created for life in lives), default=None)
        frt = [life.first_response - life.created for life in lives if life.first_response is not None]
        ttr = [life.resolved - life.created for life in lives if life.resolved is not None]
        resolved = [life for life in lives if life.resolved is not None]
        fcr = [life for life in resolved if life.replies_before_resolve == 1 and not life.customer_after_reply
               and life.reopens == 0]
        escalated = sum(life.escalated for life in lives)
        reopened = [life for life in lives if life.reopens]
        then = {life.id: life.status_at(at) if at is not None else life.status for life in lives}
        backlog = Counter(st for st in then.values() if st is not None and st not in DONE)
        proposed = sum(len(life.proposed) for life in lives)
        accepted = sum(len(life.proposed & set(life.tags)) for life in lives)
        by_tag: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"volume": 0, "open": 0, "aging": dict.fromkeys([a for a, _ in AGES], 0)}
        )
        for life in lives:
            for tag in dict.fromkeys(life.tags):
                row = by_tag[tag]
                row["volume"] += 1
                if at is not None and then[life.id] is not None and then[life.id] not in DONE:
                    row["open"] += 1
                    row["aging"][_age(at - life.created)] += 1
        tags = sorted(by_tag.items(), key=lambda item: (-item[1]["volume"], item[0]))
        return {
            "at": format_time(at) if at is not None else None,
            "tickets": len(lives),
            "frt": _durations(frt, "minutes"),
            "ttr": _durations(ttr, "hours"),
            "fcr": {"resolved": len(resolved), "first_contact": len(fcr),
                    "rate": _rate(len(fcr), len(resolved))},
            "escalation_rate": {"tickets": len(lives), "escalated": escalated,
                                "rate": _rate(escalated, len(lives))},
            "reopens": {"tickets": len(reopened), "reopens": sum(life.reopens for life in reopened),
                        "rate": _rate(len(reopened), len(resolved))},
            "backlog": {"total": sum(backlog.values()),
                        **{s: backlog.get(s, 0) for s in ("open", "pending", "on_hold")}},
            "by_tag": [{"tag": tag, **row} for tag, row in tags],
            "ai": {"proposed": proposed, "accepted": accepted, "rate": _rate(accepted, proposed),
                   "reviews": sum(life.reviewed for life in lives)},
        }


def _age(age: timedelta) -> str:
    for name, limit in AGES:
        if limit is None or age < limit:
            return name
    return AGES[-1][0]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _durations(values: list[timedelta], unit: str) -> dict[str, Any]:
    """Count, median, 90th percentile and mean of ``values`` in ``unit`` (minutes or hours)."""
    scale = 60.0 if unit == "minutes" else 3600.0
    xs = sorted(v.total_seconds() / scale for v in values)
    if not xs:
        return {"count": 0, "unit": unit, "median": None, "p90": None, "mean": None}

    # p90 by nearest rank: the value at or above 90 % of the sorted list
    p90 = xs[min(len(xs) - 1, max(0, -(-90 * len(xs) // 100) - 1))]
    return {"count": len(xs), "unit": unit, "median": round(statistics.median(xs), 1), "p90": round(p90, 1),
            "mean": round(sum(xs) / len(xs), 1)}


# ---------------------------------------------------------------- sources


def from_replay(config: Config, lines: Iterable[str], until: datetime | None,
                problems: list[str]) -> tuple[ReportBuilder, datetime | None]:
    """Replay ``lines`` through ``config`` (as ``bridge replay``) and read each ticket's life from the events
    the replay took (at the time it took them) and its decisions; the replay's problems are added to
    ``problems``. Returns the builder and the replay's end. An ``until`` before the last event is no problem
    here: the report is then at that time (its backlog and aging)."""
    from bridge.replay import Replay

    builder = ReportBuilder()

    def taken(kind: str, tid: str, event: dict[str, Any], at: datetime) -> None:
        if kind == "ticket.created":
            ticket = event["ticket"]
            tags = ticket.get("tags")
            builder.created(tid, at, ticket.get("status"), tags if isinstance(tags, list) else [])
        else:
            _take(builder, tid, kind, event, at)

    rp = Replay(config, until=until, until_may_precede=True, observer=taken)
    finals: dict[str, dict[str, Any]] = {}
    for out in rp.run(lines):
        tid = str(out.get("ticket_id"))
        if out.get("final"):
            finals[tid] = out
            continue
        life = builder.get(tid)
        if life is not None:
            life.decision(out)
    for tid, final in finals.items():
        life = builder.get(tid)
        if life is not None:
            life.tags = list(final.get("tags") or [])
    problems.extend(rp.problems)
    return builder, rp.clock


def _take(builder: ReportBuilder, tid: str, kind: str, event: dict[str, Any], at: datetime) -> None:
    """One event the replay took into the ticket's life."""
    life = builder.get(tid)
    if life is None:
        return
    if kind == "ticket.message":
        author = event.get("author")
        life.message(at, author if isinstance(author, str) else None)
    elif kind == "ticket.status":
        life.set_status(at, event["status"])
    elif kind == "ticket.updated" and isinstance(event.get("changes"), dict):
        changes = event["changes"]
        if changes.get("acknowledged") is True:
            life.acknowledged(at)
        if isinstance(changes.get("status"), str):
            life.set_status(at, changes["status"])
        life.seen(at)


def from_store(tx: Any) -> ReportBuilder:
    """The ticket lives of the store: its change log and the rules' decisions of its audit log, merged in
    time order; each ticket created at its own ``created_at`` when the helpdesk gave one (else at its first
    change), with its tags and status as the store holds them now."""
    builder = ReportBuilder()
    records = {r.id: r for r in tx.records("ticket")}
    refs = {rid: r.ref() for rid, r in records.items()}
    # (time, 0 for a change / 1 for a decision, sequence, record id, what): a decision at a change's instant
    # comes after it, as the rules took it
    items: list[tuple[datetime, int, int, str, Any]] = []
    for n, logged in enumerate(tx.logged_changes("ticket", records.keys())):
        items.append((logged.change.at, 0, n, logged.record_id, logged.change))
    for n, row in enumerate(tx.decisions()):
        after = row.get("after")
        if row["record_id"] in records and isinstance(after, dict) and isinstance(after.get("at"), str):
            items.append((parse_time(after["at"]), 1, n, row["record_id"], after))
    items.sort(key=lambda item: item[:3])
    for at, is_decision, _n, rid, what in items:
        ref = refs[rid]
        life = builder.get(ref)
        if is_decision:
            if life is not None:
                life.decision(what)
            continue
        attrs = what.attrs
        if life is None:
            builder.created(ref, created_at(records[rid], at), None, what.tags or [])
            life = builder.get(ref)
            assert life is not None
        # a reply and a resolve in one change (the common first contact resolution): the reply first
        if "message" in attrs:
            author = "customer" if by_customer(attrs) else attrs.get("last_author")
            life.message(at, author if isinstance(author, str) else None)
        if attrs.get("acknowledged") is True:
            life.acknowledged(at)
        if isinstance(attrs.get("status"), str):
            life.set_status(at, attrs["status"])
    for rid, record in records.items():
        life = builder.get(refs[rid])
        if life is not None:
            life.tags = list(record.tags)
            status = record.attrs.get("status")
            if isinstance(status, str) and status != life.status:
                life.set_status(life.last or life.created, status)  # (as stored: dated its last change)
    return builder


def created_at(record: Any, first: datetime) -> datetime:
    """When a stored ticket was created: the helpdesk's ``created_at`` when it gave one before ``first`` (its
    first change the bridge took), else ``first``; so a backlog taken in by a first sync is not all new."""
    value = record.attrs.get("created_at")
    given = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            given = parse_time(value)
        except ValueError:
            given = None
    return given if given is not None and given < first else first


def format_report(report: dict[str, Any]) -> str:
    """The human form of :meth:`ReportBuilder.report`."""
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.1f}%"

    def dur(d: dict[str, Any]) -> str:
        if not d["count"]:
            return "none yet"
        return f"median {d['median']} {d['unit']}, p90 {d['p90']}, mean {d['mean']} ({d['count']} tickets)"

    fcr, esc, reo, back, ai = (report[k] for k in ("fcr", "escalation_rate", "reopens", "backlog", "ai"))
    lines = [
        f"report at {report['at'] or '-'}: {report['tickets']} tickets",
        f"  first response time   {dur(report['frt'])}",
        f"  time to resolution    {dur(report['ttr'])}",
        f"  first contact res.    {rate(fcr['rate'])} ({fcr['first_contact']} of {fcr['resolved']} resolved)",
        f"  escalation rate       {rate(esc['rate'])} ({esc['escalated']} of {esc['tickets']})",
        f"  reopens               {reo['reopens']} on {reo['tickets']} tickets "
        f"({rate(reo['rate'])} of resolved)",
        f"  backlog               {back['total']} (open {back['open']}, pending {back['pending']}, "
        f"on_hold {back['on_hold']})",
        f"  AI acceptance rate    {rate(ai['rate'])} ({ai['accepted']} of {ai['proposed']} classifier tags "
        f"kept; {ai['reviews']} sent to review)",
    ]
    width = max([20, *(len(row["tag"]) for row in report["by_tag"])])
    lines.append(f"  {'by tag':<{width + 2}} volume  open  " + "  ".join(f"{a:>4}" for a, _ in AGES))
    for row in report["by_tag"]:
        ages = "  ".join(f"{row['aging'][a]:>4}" for a, _ in AGES)
        lines.append(f"    {row['tag']:<{width}} {row['volume']:>6}  {row['open']:>4}  {ages}")
    return "\n".join(lines)
