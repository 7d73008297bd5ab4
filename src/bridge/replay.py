"""``bridge replay``: recorded events through the configured pipeline on a virtual clock.

Nothing is written to any system. Decisions stream out in time order as they are taken; final states follow,
one per ticket. Tickets that close are finalised at once and dropped from memory (their final state waits in a
spool file), so memory stays flat however long the recording.
"""

from __future__ import annotations

import gc
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.errors import BridgeError
from bridge.fields import to_json
from bridge.model import (
    AGENT_STATUSES,
    TICKET_STATUSES,
    Change,
    Decision,
    RecentlySeen,
    Record,
    format_time,
    parse_time,
)
from bridge.pipeline import MemoryState, Pipeline
from bridge.plugins import PluginHost
from bridge.rules.conditions import path_values
from bridge.rules.engine import Desk
from bridge.rules.topics import TopicWatch
from bridge.settings import Config

SYSTEM = "replay"
_ENCODER = json.JSONEncoder(default=str)  # json.dumps(..., default=str) without building an encoder per call
EPSILON = timedelta(microseconds=1)
GC_THRESHOLD = 50_000  # young-generation allocations between collections during a replay (CPython: 700)
# how long a closed (finalised, dropped) ticket's id is remembered, to name it in later events' problems:
# bounded by time, not count, so memory follows the ticket rate, not the length of the recording
CLOSED_MEMORY = timedelta(days=30)
# the years an event may be dated in: timers run up to ten years past an event and SLA deadlines up to a
# hundred, so a time near the calendar's ends (a typo, 9999-12-31) would overflow the clock's arithmetic
YEARS = (1900, 9000)
EVENT_TYPES = ("ticket.created", "ticket.message", "ticket.status", "ticket.updated", "agent.status")
_EVENT_TYPES = frozenset(EVENT_TYPES)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)  # NaN and Infinity are not JSON
# (tuples, not sets: an event's value may be a list or a dict, which would not hash)
AUTHORS = ("customer", "agent")
_STATUS_LIST = ", ".join(TICKET_STATUSES)
_TICKET_ATTRS = (
    "subject",
    "body",
    "priority",
    "status",
    "channel",
    "requester",
    "account",
    "assignee",
    "sentiment",
    "language",
)
# the objects a ticket.updated may change a part of, each with the key that tells another one: a change
# without that key, or with the same value, changes the keys it gives and keeps the others
_NESTED_KEYS = (("account", "id"), ("requester", "email"))
# what a ticket.updated's changes may name besides ticket attributes and declared fields
_CHANGE_KEYS = frozenset((*_TICKET_ATTRS, "tags", "fields", "acknowledged"))


@dataclass
class Replay:
    """One replay run: feed it lines, read decisions and final states from :meth:`run`."""

    config: Config
    base_dir: Path | None = None
    host: PluginHost | None = None
    until: datetime | None = None
    problems: list[str] = field(default_factory=list)
    evict_closed: bool = True
    # ticket ids whose rules are explained at their final state (``--against``): see :attr:`explained`
    explain: frozenset[str] = frozenset()
    # of those, the times at which each one's rules are explained as they stood in its event then (the
    # ticket's event at that time, else its last one before it): see :attr:`moments`
    explain_at: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # an ``until`` before the last event is a time to report at, not a problem (bridge report, topics)
    until_may_precede: bool = False
    # told of each ticket event the replay took: (type, ticket id, event, the time it was taken at), before
    # the event's decisions come out (bridge report reads the tickets' lives from it)
    observer: Callable[[str, str, dict[str, Any], datetime], None] | None = None

    def __post_init__(self) -> None:
        self.state = MemoryState(keep_audit=False, keep_outbox=False)
        # what an event gives is taken as given (replay.md): the recording is the authority for every field
        self.pipeline = Pipeline(self.config, self.host, run="replay", authority=SYSTEM)
        self.desk = Desk(self.config, base_dir=self.base_dir)
        self.desk.authority = SYSTEM
        self.clock: datetime | None = None
        self.explained: dict[str, list[dict[str, Any]]] = {}  # ticket id -> Desk.explain at its final state
        self.moments: dict[str, list[dict[str, Any]]] = {}  # ticket id -> its events' Desk.moments
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed in run()
        self._types = self.config.field_types()
        self._agents = {a.email.casefold(): a.email for a in self.config.agents}  # emails match without case
        self._ticket_fields = frozenset(self.pipeline.remote_map(SYSTEM, "ticket"))  # declared ticket fields
        self._closed = RecentlySeen(CLOSED_MEMORY)  # external ids of closed tickets -> when they closed
        self.topics = TopicWatch.from_config(self.config)  # None: no [topics] rules, no product tickets
        self._counted: dict[str, frozenset[str]] = {}  # record id -> the topics it was counted in

    def run(self, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Yield decision dicts in time order, then one final state per ticket."""
        desk = self.desk
        # a replay allocates millions of short-lived containers and makes almost no cycles: the young
        # generation is collected less often while it runs (the threshold is put back when it ends)
        thresholds = gc.get_threshold()
        ours = (max(thresholds[0], GC_THRESHOLD), *thresholds[1:])
        gc.set_threshold(*ours)
        last = 0  # the line number of the last event taken
        try:
            for number, line in enumerate(lines, start=1):
                if not line or line.isspace():  # (not line.strip(), without copying the line)
                    continue
                if not line.isascii() and not _utf8(line):
                    self.problems.append(f"line {number}: not UTF-8 text; skipped")
                    continue
                event = self._parse(number, line)
                if event is None:
                    continue
                if event["type"] != "agent.status" and self._refused(number, event):
                    continue  # (before its time is taken: a line skipped whole moves no clock)
                at = event["_at"]
                if self.clock is not None and at < self.clock:
                    self.problems.append(
                        f"line {number}: event at {format_time(at)} is before the previous "
                        f"event ({format_time(self.clock)}); taken at the previous time"
                    )
                    at = self.clock
                # timers strictly before the event: a reply at the very deadline is in time (sla.py)
                before = at - EPSILON
                due = desk.next_timer()
                if due is not None and due <= at:
                    if due <= before:
                        yield from self._advance(before)
                    # agents whose hours begin at this instant take the queue before the event (oldest first)
                    opened = desk.open_due(at)
                    if opened:
                        out0: list[dict[str, Any]] = []
                        self._emit_to(out0, opened)
                        yield from out0
                self.clock = at
                last = number
                # the event's output is gathered in a list (cheaper than nested generators); what came out
                # before a failure is still given, in order, as it would have been streamed
                out: list[dict[str, Any]] = []
                try:
                    self._event(number, event, at, out)
                except (BridgeError, ValueError, KeyError, TypeError, OverflowError) as exc:
                    yield from out
                    self.problems.append(f"line {number}: {event['type']}: {exc}")
                    continue
                except Exception:
                    yield from out
                    raise
                yield from out
            # timers due at the last event's very instant fire after it (and by --until, those due by then)
            end = self.clock if self.until is None or (self.clock is not None and self.until < self.clock) \
                else self.until
            if end is not None:
                yield from self._advance(end)
            if (self.until is not None and self.clock is not None and self.until < self.clock
                    and not self.until_may_precede):
                self.problems.append(
                    f"line {last}: --until {format_time(self.until)} is before this last event "
                    f"({format_time(self.clock)}): the clock cannot go back, so --until is ignored"
                )
            yield from self._finals()
        finally:
            if gc.get_threshold() == ours:  # (runs may interleave: the last to end leaves what was there)
                gc.set_threshold(*thresholds)
            self._spool.close()

    # ---------------------------------------------------------------- events

    def _parse(self, number: int, line: str) -> dict[str, Any] | None:
        try:
            event = _DECODER.decode(line)
        except json.JSONDecodeError as exc:
            self.problems.append(f"line {number}: not JSON: {exc.msg} (column {exc.colno})")
            return None
        except (ValueError, RecursionError) as exc:  # NaN or Infinity; nested deeper than Python recurses
            why = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
            self.problems.append(f"line {number}: not JSON: {why}")
            return None
        if not isinstance(event, dict):
            self.problems.append(f"line {number}: an event is a JSON object")
            return None
        kind = event.get("type")
        if type(kind) is not str or kind not in _EVENT_TYPES:  # (a list or dict would not hash)
            self.problems.append(f"line {number}: unknown event type {kind!r}")
            return None
        try:
            event["_at"] = at = parse_time(event["at"])
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError):
            self.problems.append(f"line {number}: {kind}: 'at' must be an ISO 8601 time")
            return None
        if not YEARS[0] <= at.year <= YEARS[1]:
            low, high = YEARS
            self.problems.append(
                f"line {number}: {kind}: 'at' {event['at']!r} is out of range (years {low} to {high})")
            return None
        text = json.dumps(event, ensure_ascii=False, default=str) if "\\ud" in line or "\\uD" in line else ""
        if text and not _utf8(text):
            bad = next(c for c in text if "\ud800" <= c <= "\udfff")
            self.problems.append(
                f"line {number}: {kind}: text with a lone surrogate ({ascii(bad)[1:-1]}) is not valid "
                "Unicode; skipped"
            )
            return None
        if kind == "ticket.created":
            ticket = event.get("ticket")
            if not isinstance(ticket, dict) or not ticket.get("id"):
                self.problems.append(f"line {number}: ticket.created needs a ticket object with an id")
                return None
            if not self._objects_ok(number, kind, ticket, ("fields", "account", "requester")):
                return None
            if "status" in ticket and not self._status_ok(number, kind, ticket):
                return None
            if not self._tags_ok(number, kind, ticket.get("tags")):
                return None
            if isinstance(ticket.get("fields"), dict):
                ticket["fields"] = self._declared(number, kind, ticket["fields"])
            return event
        if kind == "agent.status":
            agent, status = event.get("agent"), event.get("status")
            if not agent or not status:
                self.problems.append(f"line {number}: agent.status needs agent and status")
                return None
            if status not in AGENT_STATUSES:
                self.problems.append(
                    f"line {number}: agent.status: status {status!r} is not one of "
                    f"{', '.join(AGENT_STATUSES)}; skipped"
                )
                return None
            known = self._agents.get(agent.casefold()) if type(agent) is str else None
            if known is None:
                self.problems.append(
                    f"line {number}: agent.status: {agent!r} is not in the config's [[agents]]; skipped"
                )
                return None
            event["agent"] = known
            return event
        if not event.get("ticket_id"):
            self.problems.append(f"line {number}: {kind} needs ticket_id")
            return None
        if kind == "ticket.status":
            if not self._status_ok(number, kind, event):
                return None
        elif kind == "ticket.message":
            author = event.get("author")
            if isinstance(author, str) and author.strip().lower() in AUTHORS:
                event["author"] = author = author.strip().lower()  # in any letter case, as a status
            if author not in AUTHORS:
                self.problems.append(
                    f"line {number}: ticket.message: author {author!r} is neither customer nor agent; the "
                    f"message counts as neither (it meets and starts no response clock)"
                )
        else:
            changes = event.get("changes")
            if changes is not None and not isinstance(changes, dict):
                self.problems.append(
                    f"line {number}: {kind}: changes must be an object, not {changes!r}; skipped"
                )
                return None
            if isinstance(changes, dict):
                if not self._objects_ok(number, kind, changes, ("fields", "account", "requester")):
                    return None
                ack = changes.get("acknowledged")
                if ack is not None and type(ack) is not bool:
                    self.problems.append(
                        f"line {number}: {kind}: acknowledged must be true or false, not {ack!r}; skipped"
                    )
                    return None
                if "status" in changes and not self._status_ok(number, kind, changes):
                    return None
                if not self._tags_ok(number, kind, changes.get("tags")):
                    return None
                self._known_changes(number, changes)
        return event

    def _objects_ok(self, number: int, kind: str, table: dict[str, Any], keys: tuple[str, ...]) -> bool:
        """Whether each of ``keys`` in ``table`` is absent, null or an object; else the problem is reported
        (the event is skipped)."""
        for key in keys:
            value = table.get(key)
            if value is not None and not isinstance(value, dict):
                self.problems.append(
                    f"line {number}: {kind}: {key} must be an object, not {value!r}; skipped"
                )
                return False
        return True

    def _status_ok(self, number: int, kind: str, holder: dict[str, Any]) -> bool:
        """Whether ``holder``'s status is a ticket status, in any letter case (made lower case there, as a
        priority is); else the problem is reported (the event is skipped)."""
        status = holder.get("status")
        if status in TICKET_STATUSES:
            return True
        if isinstance(status, str) and status.lower() in TICKET_STATUSES:
            holder["status"] = status.lower()
            return True
        self.problems.append(
            f"line {number}: {kind}: status {status!r} is not one of {_STATUS_LIST}; skipped"
        )
        return False

    def _tags_ok(self, number: int, kind: str, tags: Any) -> bool:
        """Whether ``tags`` is absent or a list of strings; else the problem is reported (event skipped)."""
        if tags is None or (type(tags) is list and all(type(t) is str for t in tags)):
            return True
        self.problems.append(f"line {number}: {kind}: tags must be a list of strings, not {tags!r}; skipped")
        return False

    def _known_changes(self, number: int, changes: dict[str, Any]) -> None:
        """Drop (and report) what a ticket.updated's changes name that the replay does not know."""
        unknown = [k for k in changes if k not in _CHANGE_KEYS and k not in self._ticket_fields]
        for key in unknown:
            del changes[key]
        if unknown:
            self.problems.append(
                f"line {number}: ticket.updated: ignored {', '.join(map(repr, unknown))}: neither a "
                f"ticket attribute ({', '.join(_TICKET_ATTRS)}), a declared ticket field, tags, fields "
                "nor acknowledged"
            )
        fields = changes.get("fields")
        if isinstance(fields, dict):
            changes["fields"] = self._declared(number, "ticket.updated", fields)

    def _declared(self, number: int, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` without (and reporting) the names that are not declared ticket fields."""
        unknown = [n for n in fields if n not in self._ticket_fields]
        if not unknown:
            return fields
        self.problems.append(
            f"line {number}: {kind}: ignored fields {', '.join(map(repr, unknown))}: not declared for tickets"
        )
        return {n: v for n, v in fields.items() if n in self._ticket_fields}

    def _refused(self, number: int, event: dict[str, Any]) -> bool:
        """Whether a ticket event is malformed for its ticket (created twice, or about a ticket never
        created), reported: checked before its time is taken, so that such a line moves no clock. An event
        for a ticket that closed is a real one (a customer writing after the close): its time is taken, and
        :meth:`_event` skips it."""
        kind = event["type"]
        at = event["_at"] if self.clock is None or event["_at"] >= self.clock else self.clock
        if kind == "ticket.created":
            tid = str(event["ticket"]["id"])
            if self.state.record_id_for(SYSTEM, "ticket", tid) is not None:
                self.problems.append(
                    f"line {number}: ticket.created: ticket {tid!r} is already in the replay; skipped")
                return True
            closed = self._closed.get(tid, at)
            if closed is not None:
                self._closed_problem(number, kind, tid, closed)
                return True
            return False
        tid = event["ticket_id"] = str(event["ticket_id"])
        if self.state.record_id_for(SYSTEM, "ticket", tid) is None and self._closed.get(tid, at) is None:
            self.problems.append(f"line {number}: {kind}: unknown ticket {tid!r}")
            return True
        return False

    def _closed_problem(self, number: int, kind: str, tid: str, closed: datetime) -> None:
        if kind == "ticket.created":
            self.problems.append(
                f"line {number}: ticket.created: ticket {tid!r} closed at {format_time(closed)}; a "
                "ticket id is not created twice; skipped"
            )
        else:
            self.problems.append(
                f"line {number}: {kind}: ticket {tid!r} closed at {format_time(closed)}; a closed ticket "
                "takes no more events (a follow-up is a new ticket); skipped"
            )

    def _event(self, number: int, event: dict[str, Any], at: datetime, out: list[dict[str, Any]]) -> None:
        """Run one event, appending its output to ``out``."""
        kind = event["type"]
        if kind == "agent.status":
            self._emit_to(out, self.desk.on_agent_status(event["agent"], event["status"], at))
            return
        state = self.state
        before: Record | None
        if kind == "ticket.created":
            rid = None
            change = self._created(event, at)
        else:
            tid = event["ticket_id"]
            rid = state.record_id_for(SYSTEM, "ticket", tid)
            if rid is None:  # a timer due before this event closed it
                closed = self._closed.get(tid, at)
                if closed is not None:
                    self._closed_problem(number, kind, tid, closed)
                else:
                    self.problems.append(f"line {number}: {kind}: unknown ticket {tid!r}")
                return
            before = state.load(rid)
            change = self._change(kind, tid, event, at, before)
        if rid is None:
            before = None
        previous = path_values(before) if before is not None and self.desk.reads_previous else {}
        outcome = self.pipeline.process(state, change, at)
        for problem in outcome.problems:
            self.problems.append(f"line {number}: {problem}")
        record = outcome.record
        record.attrs.setdefault("created_at", at)
        self._emit_to(out, outcome.decisions)
        wanted = self.explain_at.get(change.external_id) if self.explain_at else None
        if wanted:
            self.desk.watch.add(record.id)  # (its events kept, for its explanation)
        self._emit_to(out, self.desk.on_ticket(record, previous, event, at))
        if wanted:
            kept = self.desk.moments[record.id]
            if len(kept) > 1 and not any(kept[-2]["at"] <= t < kept[-1]["at"] for t in wanted):
                del kept[-2]  # (a moment is kept only as the last event at or before a time wanted)
        if self.observer is not None:
            self.observer(kind, change.external_id, event, at)
        if self.topics is not None and record.tags:
            self._emit_to(out, self._topics(record, at))
        if self.evict_closed and record.attrs.get("status") == "closed":
            self._finalise(record, at)

    def _topics(self, record: Record, at: datetime) -> list[Decision]:
        """Count ``record`` in the topics newly on it (as the event and the rules left it); a product ticket
        decision for each topic it makes spike."""
        watch = self.topics
        assert watch is not None
        counted = self._counted.get(record.id, frozenset())
        new = sorted(watch.topics_of(record.tags) - counted)
        if not new:
            return []
        self._counted[record.id] = counted.union(new)
        tracker = self.config.topics.tracker
        out: list[Decision] = []
        for topic in new:
            spike = watch.record(topic, at)
            if spike is not None:
                out.append(Decision(at, record.id, "product_ticket", "topics", spike.detail(tracker)))
        return out

    @staticmethod
    def _created(event: dict[str, Any], at: datetime) -> Change:
        t = event["ticket"]
        attrs = {k: t[k] for k in _TICKET_ATTRS if k in t}
        attrs.setdefault("status", "open")
        if "sentiment" in event:
            attrs["sentiment"] = event["sentiment"]
        return Change(
            SYSTEM,
            "ticket",
            str(t["id"]),
            at,
            fields=dict(t.get("fields") or {}),
            # given tags (even none) are taken as given; without them the classifier computes them
            tags=None if t.get("tags") is None else list(t["tags"]),
            attrs=attrs,
        )


    def _change(
        self, kind: str, tid: str, event: dict[str, Any], at: datetime, before: Record | None
    ) -> Change:
        if kind == "ticket.message":
            message: dict[str, Any] = {"message": event.get("body", ""), "last_author": event.get("author")}
            if "sentiment" in event:
                message["sentiment"] = event["sentiment"]
            return Change(SYSTEM, "ticket", tid, at, attrs=message)
        if kind == "ticket.status":
            return Change(SYSTEM, "ticket", tid, at, attrs={"status": event["status"]})
        changes = dict(event.get("changes") or {})
        tags = changes.pop("tags", None)
        fields = dict(changes.pop("fields", None) or {})
        for name in list(changes):
            if name in self._ticket_fields:
                fields[name] = changes.pop(name)
        for name, key in _NESTED_KEYS:
            given, held = changes.get(name), before.attrs.get(name) if before is not None else None
            # changes are changes: a new tier keeps the account's owner and id, a new language the requester's
            # email; another account (or requester) altogether is taken whole
            same = isinstance(held, dict) and given.get(key, held.get(key)) == held.get(key) if isinstance(
                given, dict) else False
            if same and isinstance(given, dict) and isinstance(held, dict):
                merged = {**held, **given}
                if isinstance(given.get("fields"), dict) and isinstance(held.get("fields"), dict):
                    merged["fields"] = {**held["fields"], **given["fields"]}
                changes[name] = merged
        return Change(SYSTEM, "ticket", tid, at, fields=fields, tags=tags, attrs=changes)

    # ---------------------------------------------------------------- time and output

    def _advance(self, now: datetime) -> Iterator[dict[str, Any]]:
        while True:
            due = self.desk.next_timer()
            if due is None or due > now:
                break
            decisions = self.desk.advance(due)
            yield from self._emit(decisions)
            for d in decisions:
                rec = self.state.load(d.record_id) if d.decision == "auto_close" else None
                if rec is not None and self.evict_closed:
                    self._finalise(rec, d.at or due)
            if not decisions and self.desk.next_timer() == due:
                break  # nothing fired at a due timer: stop rather than spin
        self.desk.advance(now)

    def _emit(self, decisions: list[Decision]) -> Iterator[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self._emit_to(out, decisions)
        return iter(out)

    def _emit_to(self, out: list[dict[str, Any]], decisions: list[Decision]) -> None:
        records = self.state.records
        for d in decisions:
            item = d.as_dict()
            item.pop("key", None)  # the outbox's idempotency key: internal, not part of the replay contract
            rid = d.record_id
            rec = records.get(rid)
            item["ticket_id"] = rec.links.get(SYSTEM, rid) if rec is not None else rid
            out.append(item)

    def final(self, record: Record) -> dict[str, Any]:
        """The final state of one ticket (replay.md)."""
        if self.explain and record.links.get(SYSTEM, record.id) in self.explain:
            self.explained[record.links.get(SYSTEM, record.id)] = self.desk.explain(record)
            self.moments[record.links.get(SYSTEM, record.id)] = self.desk.moments.pop(record.id, [])
        desk = self.desk.final(record)
        fields = {
            n: to_json(self._types[n], fv.value)
            for n, fv in sorted(record.fields.items())
            if n in self._types
        }
        return {
            "ticket_id": record.links.get(SYSTEM, record.id),
            "final": True,
            "assignee": desk.get("assignee"),
            "priority": desk.get("priority", record.attrs.get("priority")),
            "status": desk.get("status", record.attrs.get("status")),
            "tags": list(record.tags),
            "fields": fields,
            "sentiment": record.attrs.get("sentiment"),
            "escalations": desk.get("escalations", []),
            "sla": desk.get("sla", {}),
        }

    def _finalise(self, record: Record, at: datetime) -> None:
        self._spool.write(_ENCODER.encode(self.final(record)) + "\n")
        self._closed.note(record.links.get(SYSTEM, record.id), at)
        self.state.forget(record.id)
        self._counted.pop(record.id, None)
        forget = getattr(self.desk, "forget", None)
        if forget is not None:
            forget(record.id)

    def _finals(self) -> Iterator[dict[str, Any]]:
        self._spool.seek(0)
        for line in self._spool:
            yield json.loads(line)
        for record in list(self.state.records.values()):
            if record.kind == "ticket":
                yield self.final(record)


def replay_file(
    config: Config,
    path: Path,
    *,
    until: datetime | None = None,
    base_dir: Path | None = None,
    host: PluginHost | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Replay a JSONL file into a list (for ``--against`` and tests); returns (output, problems)."""
    out, rp = _replay_file(config, path, until=until, base_dir=base_dir, host=host)
    return out, rp.problems


def read_events(path: Path) -> Iterator[str]:
    """The lines of an events file, as replay reads them (no BOM; a line that is not UTF-8 is reported, not
    fatal)."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as fh:
        yield from fh


def _replay_file(
    config: Config,
    path: Path,
    *,
    until: datetime | None = None,
    base_dir: Path | None = None,
    host: PluginHost | None = None,
    explain: frozenset[str] = frozenset(),
    explain_at: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[dict[str, Any]], Replay]:
    rp = Replay(config, base_dir=base_dir, host=host, until=until, explain=explain,
                explain_at=explain_at or {})
    return list(rp.run(read_events(path))), rp


def explain_diff(
    old: Config,
    new: Config,
    path: Path,
    tickets: Iterable[str] | Mapping[str, Iterable[str]],
    *,
    until: datetime | None = None,
    base_dir: Path | None = None,
    host: PluginHost | None = None,
) -> list[dict[str, Any]]:
    """Why ``tickets`` (ids whose decisions or final states differ) came out as they did under each config.

    One row per ticket, ``{"ticket_id", "explain": {"old": [...], "new": [...]}, "moments": [...]}``:
    ``explain`` has every rule and SLA policy of each config against the ticket at its final state
    (:meth:`Desk.explain`: each condition's value, whether it holds, why not), each with ``fired``, the
    times its decisions for the ticket were taken in that run (empty: it did not fire). ``moments`` has, for
    the times the two runs decided otherwise (``tickets`` maps each id to those times), the rules and
    policies of both configs as they stood at the ticket's event of that time (or its last event before
    it, for a timer's decision), one per event: ``{"at", "times", "event_at", "event", "old": [...],
    "new": [...]}``, each entry
    with each condition's value in that event and ``fired_here`` for a rule that fired in it, as it was
    when it fired. The file is replayed again under both configs, keeping only these tickets'
    explanations, so memory stays that of a replay.
    """
    times = {t: sorted(set(tickets[t])) for t in tickets} if isinstance(tickets, Mapping) else {
        t: [] for t in tickets}
    wanted = frozenset(times)
    sides: dict[str, dict[str, list[dict[str, Any]]]] = {}
    events: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for side, config in (("old", old), ("new", new)):
        out, rp = _replay_file(config, path, until=until, base_dir=base_dir, host=host, explain=wanted,
                               explain_at=times)
        fired: dict[tuple[str, str], list[str]] = {}
        for d in out:
            if "decision" in d and d.get("ticket_id") in wanted:
                at_times = fired.setdefault((d["ticket_id"], d.get("rule", "")), [])
                if str(d["at"]) not in at_times:
                    at_times.append(str(d["at"]))
        for tid, kept in rp.moments.items():
            # a rule that fired and decided nothing (an assign to the agent it has, or one that found nobody
            # free and queued the ticket) fired all the same, and says so wherever the ticket is explained
            for moment in kept:
                for e in moment["entries"]:
                    at_times = fired.setdefault((tid, e["rule"]), [])
                    if e.get("fired_here") and moment["at"] not in at_times:
                        at_times.append(f"{moment['at']} (no decision: nothing to change, or nobody free)")
                        at_times.sort()
        for tid, entries in rp.explained.items():
            sides.setdefault(tid, {})[side] = [
                {**e, "fired": fired.get((tid, e["rule"]), [])} for e in entries]
        for tid, kept in rp.moments.items():
            for moment in kept:
                for e in moment["entries"]:
                    e["fired"] = fired.get((tid, e["rule"]), [])
            events.setdefault(tid, {})[side] = kept
    rows = []
    for tid, diff_times in times.items():
        # the times one event explains are told together: (old moment, new moment) -> the times
        grouped: dict[tuple[int, int], tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]] = {}
        for at in diff_times:
            old_m = _moment_at(events.get(tid, {}).get("old", []), at)
            new_m = _moment_at(events.get(tid, {}).get("new", []), at)
            if old_m is not None or new_m is not None:
                grouped.setdefault((id(old_m), id(new_m)), (old_m, new_m, []))[2].append(at)
        moments = []
        for old_m, new_m, at_times in grouped.values():
            shown = new_m or old_m
            assert shown is not None
            here = shown["at"] in at_times  # (else only timers fell due then: nothing fired "here")
            moments.append({"at": at_times[0], "times": at_times, "event_at": shown["at"],
                            "event": shown["event"],
                            "old": _at_moment(old_m["entries"], here) if old_m else [],
                            "new": _at_moment(new_m["entries"], here) if new_m else [],
                            "old_routing": old_m["routing"] if old_m and here else [],
                            "new_routing": new_m["routing"] if new_m and here else []})
        rows.append({"ticket_id": tid, "explain": {"old": sides.get(tid, {}).get("old", []),
                                                   "new": sides.get(tid, {}).get("new", [])},
                     "moments": moments})
    return rows


def _at_moment(entries: list[dict[str, Any]], here: bool) -> list[dict[str, Any]]:
    """A moment's entries as shown for the times they explain: a rule that fired in the event is said to
    have fired "here" only when the event is at one of those times."""
    return entries if here else [{k: v for k, v in e.items() if k != "fired_here"} for e in entries]


def _moment_at(moments: list[dict[str, Any]], at: str) -> dict[str, Any] | None:
    """The ticket's event at ``at`` (its last one then), else its last event before it; None before any."""
    found = None
    for moment in moments:  # (in time order; times are ISO 8601 UTC text, which sorts as time does)
        if moment["at"] > at:
            break
        found = moment
    return found


def _utf8(text: str) -> bool:
    """Whether ``text`` is valid Unicode: no bytes a UTF-8 read could not decode (kept as surrogate escapes),
    no lone surrogate a JSON escape made."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def diff(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decisions and final states that differ between two replays (``--against``), marked ``-`` and ``+``."""

    from collections import Counter

    def key(d: dict[str, Any]) -> str:
        sla = d.get("sla")
        if isinstance(sla, dict) and None in sla.values():
            # a deadline one config has no clock for (acknowledgement_due) reads as one that is not due
            d = {**d, "sla": {k: v for k, v in sla.items() if v is not None}}
        return json.dumps(d, sort_keys=True, default=str)

    def beyond(items: list[dict[str, Any]], others: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # as multisets: a decision taken twice in one run and once in the other is a difference
        left = Counter(key(d) for d in others)
        out = []
        for d in items:
            k = key(d)
            if left[k]:
                left[k] -= 1
            else:
                out.append(d)
        return out

    out = [{"diff": "-", **d} for d in beyond(old, new)]
    out += [{"diff": "+", **d} for d in beyond(new, old)]
    out.sort(key=lambda d: (str(d.get("at") or "~"), str(d.get("ticket_id")), d["diff"] != "-"))
    return out


# the parts of a config that decide nothing in a replay (or hold addresses and secrets' names), and those
# explained rule by rule already: left out of config_changes
_UNCOMPARED = frozenset({"bridge", "plugins", "connectors", "identity", "deletes", "rules", "sla"})


def config_changes(old: Config, new: Config) -> list[dict[str, Any]]:
    """What differs between two configs besides their rules and SLA policies (which ``--against`` explains
    rule by rule), and the rules switched on or off (``rules.NAME.enabled``): each changed key as a dotted
    path (``routing.strategy``, ``agents.bo@example.com.capacity``: an agent by its email) with its old and
    new value, None where one config lacks it."""
    def flat(value: Any, prefix: str, out: dict[str, Any]) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                flat(v, f"{prefix}.{k}" if prefix else str(k), out)
        elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
            for i, v in enumerate(value):
                flat(v, f"{prefix}.{i}", out)
        else:
            out[prefix] = value

    def compared(config: Config) -> dict[str, Any]:
        dump = {k: v for k, v in config.model_dump(mode="json").items() if k not in _UNCOMPARED}
        # an agent is named by its email (agents.bo@example.com.capacity), not by its place in the list
        dump["agents"] = {str(a.get("email")): {k: v for k, v in a.items() if k != "email"}
                          for a in dump.get("agents") or []}
        # a rule switched off is left out of the rules explained: said here (rules.NAME.enabled)
        dump["rules"] = {r.name: {"enabled": r.enabled} for r in config.rules}
        return dump

    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    flat(compared(old), "", a)
    flat(compared(new), "", b)
    return [{"key": k, "old": a.get(k), "new": b.get(k)} for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k) and not (k.startswith("rules.") and None in (a.get(k), b.get(k)))]
