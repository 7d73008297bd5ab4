"""One change through identity → reconcile (source of truth) → classify → map tags → rules → outbox.

The pipeline is the one place that calls the stages in order. It works on a :class:`State`: the store's
transaction in the daemon (so a change, its writes, its shadows and its audit commit together, or not at
all) or :class:`MemoryState` in replay. Dry runs use the store's transaction and roll it back.

Per field and system it keeps a shadow (:class:`bridge.ownership.Shadow`): what the system holds and what
was queued for it. A pulled value equal to the held one is no change; one equal to a queued one is the
echo of our own write; anything else is the system's edit, and :func:`bridge.ownership.decide` says who
wins. A write is queued for a system in the field's ``sync_to`` only when what it will hold differs from
the record's value: when the value changed, when the sender must be reverted, or when the system has never
been told this field.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from bridge import classify, identity
from bridge.effects import Held, apply_touched, effect_writes, writable_systems
from bridge.errors import FieldValueError, IdentityError
from bridge.fields import FieldType, adds_nothing, coerce, equal, merge, to_json
from bridge.model import (
    ACCOUNT_GIVEN,
    BRIDGE,
    CUSTOMER_MESSAGE,
    PROPOSED,
    TICKET_PRIORITIES,
    TICKET_STATUSES,
    Change,
    Decision,
    FieldValue,
    Record,
    Write,
    format_time,
    parse_time,
)
from bridge.ownership import (
    ATTR_TYPE,
    SHADOWED_ATTRS,
    Shadow,
    Verdict,
    attr_key,
    attr_value,
    blank,
    decide,
    detect,
)
from bridge.plugins import PluginHost
from bridge.settings import Config
from bridge.state import State
from bridge.taxonomy import TagMapper

log = logging.getLogger("bridge.pipeline")
DESK_PLUGIN = "rules"  # the name the daemon's Desk is registered under on the plugin host (bridge.rules.live)
DELETE_POLICIES = ("ignore", "flag", "archive")
DEFAULT_DELETE = "ignore"
SEEN = "seen_at"  # record attribute: system -> time of the newest change applied from it
SEEN_DIGEST = "seen_digest"  # record attribute: system -> digest of that change (a repeat of it is no change)
BRIDGE_ID = "bridge_id"  # a change attribute: the bridge record a system's record was created for


Touched = list[tuple[Record, list[Decision]]]
"""Each ticket a Desk call changed, as the Desk left it, with the decisions about it."""


@runtime_checkable
class DeskState(State, Protocol):
    """A State the daemon's Desk can run on (the store's Tx, MemoryState).

    The Desk keeps its state in memory beside the store: it hears when work it saw is undone, so it never runs
    ahead of what was committed, and the change log keeps the time it took each change at.
    """

    def on_rollback(self, callback: Callable[[], None]) -> None: ...
    def on_end(self, callback: Callable[[bool], None]) -> None: ...
    def set_desk_time(self, change_id: int, at: datetime, by_desk: bool = True) -> None: ...


@runtime_checkable
class LiveDesk(Protocol):
    """The daemon's Desk as the pipeline drives it (:class:`bridge.rules.live.LiveRules`)."""

    def before(self, state: DeskState, at: datetime) -> tuple[datetime, Touched]:
        """Fire the timers due strictly before a ticket change of ``at`` is taken (before it is applied);
        returns the time the change would be taken at, and what the timers decided."""
        ...

    def on_change(
        self,
        state: DeskState,
        record: Record,
        change: Change,
        created: bool | None = None,
        was_closed: bool = False,
    ) -> tuple[datetime, Touched]:
        """Feed the applied change (``created``: whether it created the ticket, None when unknown;
        ``was_closed``: whether the ticket was closed before it); returns the time the Desk took it at, and
        what it decided."""
        ...

    def invalidate(self) -> None:
        """Rebuild from the store before the next use (work it saw was undone, or it failed midway)."""
        ...

    def forget(self, state: DeskState, record_id: str) -> None:
        """The ticket was deleted: drop its state (timers, queue place, load)."""
        ...


@dataclass
class Conflict:
    """A non-owner's edit of an owned field: reported, and reverted or left."""

    record_id: str
    field: str
    system: str
    value: Any
    owner_value: Any
    rule: str
    reverted: bool


@dataclass
class PlannedWrite:
    """One field of one queued write: the values and the rule behind it (the dry-run plan)."""

    record_id: str
    system: str
    field: str
    old: Any
    new: Any
    rule: str
    ref: str = ""  # SYSTEM:EXTERNAL_ID of the change behind it (a dry run's record ids are not kept)


@dataclass
class Outcome:
    """What processing one change did."""

    record: Record
    decisions: list[Decision] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    plan: list[PlannedWrite] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    created: bool = False
    echoes: int = 0
    deleted: str | None = None  # the delete policy applied, for a delete
    stale: bool = False  # older than what the system said before: not applied
    late: bool = False  # stale, with a message or an acknowledgement the rules take all the same
    owed: bool = False  # stale, with a message or acknowledgement left to the rules leader (no Desk here)
    desk_at: datetime | None = None  # when the daemon's Desk took it (None: no Desk took it)
    was_closed: bool = False  # the record was a closed ticket before this change
    change_id: int = 0  # the change's row in the change log
    repeat: bool = False  # stale, and its message or acknowledgement was taken before: nothing for the rules
    part: Change | None = None  # stale: the message or acknowledgement of it that still counts (late_part)


@dataclass
class _Why:
    """Why a field is considered for the receivers: its value changed, or the sender must be told back."""

    rule: str
    source: str
    writeback: str | None = None  # the system to tell the record's value again


def _sentiment_number(value: Any) -> int | float | None:
    """A sentiment as a number from -100 to 100: a number, or one a system sent as text (``"-40"``); None
    when it is neither (a word, a bool, NaN, off the scale)."""
    if type(value) is str:
        try:
            value = float(value.strip())
        except ValueError:
            return None
        if value.is_integer():
            value = int(value)
    if type(value) not in (int, float) or not -100 <= value <= 100:  # (NaN is never in range)
        return None
    number: int | float = value
    return number


class Pipeline:
    """Processes changes against a State with one config (build it once, call ``process`` per change)."""

    def __init__(
        self, config: Config, host: PluginHost | None = None, run: str = "run", authority: str | None = None,
        logged: bool = False,
    ) -> None:
        """``authority`` names a system whose values are taken as given for every field (replay's events).
        ``logged``: the changes come from the change log, as they were taken (a rebuild): what a helpdesk
        repeated of the rule-written attributes was left out of them already, by shadows it cannot see."""
        self.config = config
        self.authority = authority
        self.logged = logged
        self.host = host
        self.run = run
        self.types = config.field_types()
        self.mapper = TagMapper(config)
        self.systems = frozenset(config.connectors)
        self._remote: dict[tuple[str, str], dict[str, str]] = {}
        self._writable: set[str] | None = None
        self._by_kind: dict[str, list[str]] = defaultdict(list)
        for name, fcfg in config.fields.items():
            self._by_kind[fcfg.kind].append(name)
        # field name -> (type of raw, raw) -> canonical value (a multi-select's as a tuple): coercion is pure,
        # and the same few option spellings come with every change
        self._coerced: dict[str, dict[tuple[type, Any], Any]] = defaultdict(dict)
        self._account_types = {n: ft for n, ft in self.types.items() if config.fields[n].kind == "account"}

    @property
    def writable(self) -> set[str]:
        """The configured systems whose connectors accept writes (all of them when no host says otherwise)."""
        if self._writable is None:
            self._writable = writable_systems(self.config, self.host.connectors() if self.host else {})
        return self._writable

    def remote_map(self, system: str, kind: str) -> dict[str, str]:
        """Remote field name -> field name for ``system`` and ``kind`` (cached)."""
        key = (system, kind)
        if key not in self._remote:
            self._remote[key] = self.config.remote_to_field(system, kind)
        return self._remote[key]

    def fields_of(self, kind: str) -> list[str]:
        """The configured fields of records of ``kind``, in config order."""
        return self._by_kind.get(kind, [])

    def coerce(self, name: str, ft: FieldType, raw: Any) -> Any:
        """:func:`bridge.fields.coerce` for field ``name``, remembered for hashable raw values."""
        kind = type(raw)
        if kind is str or kind is int or kind is bool or kind is list:
            # (no floats: 0.0 and -0.0 are one key but differ as text; types are in the key, items' too, as
            # 1 == True == 1.0)
            try:
                key = (kind, tuple((type(i), i) for i in raw) if kind is list else raw)
                memo = self._coerced[name]
                found = memo.get(key, _MISSING)
            except TypeError:  # a list of unhashable items
                return coerce(ft, raw)
            if found is _MISSING:
                found = coerce(ft, raw)  # raises FieldValueError, remembering nothing
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo[key] = tuple(found) if type(found) is list else found
                return found
            return list(found) if type(found) is tuple else found
        return coerce(ft, raw)

    # ------------------------------------------------------------------ identity

    def identify(self, state: State, change: Change, now: datetime) -> tuple[str, bool]:
        """The record id for a change, and whether it was created: stored link, then identity keys, else new.

        A record bridge created in a system by a push may come back before its link is stored (the push
        died after the vendor created it): a connector that keeps the bridge record id on the vendor's
        record reports it as the ``bridge_id`` attribute, and that links it.

        Raises IdentityError, having written nothing, when a key matches several records or when the
        matched record is already linked to another record of the same system. Find-or-create runs under
        identity locks (the external id and every key), so two replicas seeing the same new record create it
        once.
        """
        system, kind, ext = change.system, change.kind, change.external_id
        keys = identity.keys_of(kind, change.attrs, self.config.identity)
        rid = state.record_id_for(system, kind, ext)
        if rid is None:
            locks = sorted([(f"link:{system}", ext), *keys.items()])
            for key, value in locks:
                state.lock_identity(kind, key, value)
            # another transaction may have linked it while this one waited for the lock
            rid = state.record_id_for(system, kind, ext)
        if rid is not None:
            self._add_keys(state, rid, kind, keys)
            return rid, False
        mine = change.attrs.get(BRIDGE_ID)
        if isinstance(mine, str) and mine:
            made = state.load(mine)
            if made is not None and made.kind == kind:
                other = made.links.get(system)
                if other is not None and other != ext:
                    raise IdentityError(
                        f"{system} {kind} {ext}: says it is bridge record {mine}, which is linked to "
                        f"{system} {other}",
                        [mine],
                    )
                state.link(mine, system, kind, ext)
                self._add_keys(state, mine, kind, keys)
                return mine, False
        tried: list[str] = []
        for key, value in keys.items():
            found = state.find_by_key(kind, key, value)
            if tried and found:
                # a stronger key both sides carry and that differs vetoes a match by a weaker one
                found = [r for r in found if all(state.keys_of(r).get(k, keys[k]) == keys[k] for k in tried)]
            tried.append(key)
            if len(found) > 1:
                raise IdentityError(f"{system} {kind} {ext}: {key} {value!r} matches several records", found)
            if found:
                other = state.links_of(found[0]).get(system)
                if other is not None and other != ext:
                    raise IdentityError(
                        f"{system} {kind} {ext}: {key} {value!r} matches a record already linked to "
                        f"{system} {other}",
                        found,
                    )
                state.link(found[0], system, kind, ext)
                self._add_keys(state, found[0], kind, keys)
                return found[0], False
        rid = state.create_record(kind, now=now)
        state.link(rid, system, kind, ext)
        if keys:
            state.set_keys(rid, kind, keys)
        return rid, True

    @staticmethod
    def _add_keys(state: State, rid: str, kind: str, keys: dict[str, str]) -> None:
        # keys a record already has stay: a second system's spelling must not move the record
        if not keys:
            return
        have = state.keys_of(rid)
        missing = {k: v for k, v in keys.items() if k not in have}
        if missing:
            state.set_keys(rid, kind, missing)

    @staticmethod
    def tombstone(state: State, change: Change) -> bool:
        """Whether ``change`` is the delete of a record bridge never had from that system (a duplicate made
        and deleted between pulls, a merge's loser): nothing to delete, and matched by its keys it would take
        a live record's link, so a pull or a webhook leaves it alone."""
        return change.deleted and state.record_id_for(change.system, change.kind, change.external_id) is None

    # ------------------------------------------------------------------ process

    def process(self, state: State, change: Change, now: datetime, first: bool = False) -> Outcome:
        """Run one change through every stage; the caller commits (or rolls back) the State.

        ``first``: the change is its record's first, though the record exists (a rebuild makes it beforehand,
        with the store's id): it is taken as creating it (classified as a new ticket is).
        Raises IdentityError before writing anything when the change's record is ambiguous, and ValueError
        when a ticket's status is none of :data:`TICKET_STATUSES` (the caller reports and keeps it).
        """
        status = change.attrs.get("status") if change.kind == "ticket" else None
        if isinstance(status, str) and status not in TICKET_STATUSES and status.lower() in TICKET_STATUSES:
            status = change.attrs["status"] = status.lower()  # ("Pending": a priority is taken so too)
        if status is not None and status not in TICKET_STATUSES:
            # (what a connector let through: routed or escalated, it would be taken for an open ticket)
            raise ValueError(f"status {status!r} is not one of {', '.join(TICKET_STATUSES)}")
        rid, created = self.identify(state, change, now)
        created = created or first
        change_id = state.add_change(change, rid, now)
        desk = self.desk(change.kind)
        early: list[Decision] = []
        plan: list[PlannedWrite] = []
        writes: list[Write] = []
        desk_at = None
        problems: list[str] = []
        if desk is not None:
            # timers due before the change fire first, as in replay: a change that closes a ticket does not
            # swallow the breach or follow-up that fell due just before it
            try:
                desk_at, touched = desk.before(self._desk_state(state), change.at)
            except Exception as exc:
                desk = self._desk_failed(desk, change, exc, problems)
                touched = []
            if touched:
                writes = self._apply(state, touched, now, None, plan)
                early = [d for _r, ds in touched for d in ds]
        record = self._load(state, rid, change.kind)
        record.links[change.system] = change.external_id
        out = Outcome(record, created=created, decisions=early, writes=writes, plan=plan, desk_at=desk_at,
                      was_closed=record.attrs.get("status") == "closed")
        out.problems += problems
        out.change_id = change_id
        self._stages(state, record, change, now, out, desk)
        if out.desk_at is not None:  # the Desk took it (the leader catches up the changes no Desk took)
            self._desk_state(state).set_desk_time(change_id, out.desk_at)
        elif ((out.stale and not (out.late or out.owed)) or out.was_closed) and isinstance(state, DeskState):
            # an out-of-date change is not applied, and a closed ticket is final for the rules: nothing in it
            # for them, so it is marked as taken and the leader's catch-up does not feed it to its Desk either
            # (a leader restarted since the ticket closed would no longer know it was closed). A stale change
            # is dated as taken after the newer one it came behind: a rebuild, taking changes in that order,
            # finds it stale again instead of taking it for the ticket's first
            seen = record.attrs.get(SEEN, {}).get(change.system) if out.stale else None
            state.set_desk_time(change_id, max(change.at, parse_time(seen)) if seen else change.at, False)
        for d in out.decisions if state.keep_audit else ():
            state.audit(
                at=now,
                run=self.run,
                record_id=d.record_id,
                field=d.detail.get("field"),
                before=None,
                after=d.audited(),
                origin=BRIDGE,
                rule=d.rule,
                kind="decision",
            )
        if not out.stale or out.late or out.owed:
            state.save(record, now)  # (owed: the message it noted, so that a repeat of it is known as one)
        return out

    def _stages(
        self,
        state: State,
        record: Record,
        change: Change,
        now: datetime,
        out: Outcome,
        desk: LiveDesk | None,
    ) -> None:
        seen = record.attrs.setdefault(SEEN, {})
        last = seen.get(change.system)
        digest = _digest(change) if change.system != self.authority else None
        if (last is not None and digest is not None and change.at == parse_time(last)
                and record.attrs.get(SEEN_DIGEST, {}).get(change.system) == digest):
            # the very change taken last (a webhook delivered again, a page pulled again in the lookback):
            # taken again, it would read as an edit of what bridge wrote to that system since
            out.stale = out.repeat = True
            return
        if last is not None and change.at < parse_time(last):
            # an older change arriving late (a retried webhook, a slow queue) must not undo a newer one
            out.stale = True
            # (the rules leader's Desk takes its message; on another replica, the leader's catch-up does)
            part = (late_part(change) if change.kind == "ticket" and not out.was_closed
                    and "deleted_in" not in record.attrs else None)
            taken = ", not applied"
            if part is not None and not _note_message(record, part):
                # the very message taken before (the helpdesk delivered the webhook again): not a new one
                part = None
                out.repeat = True
                taken = ", a repeat of one taken before: not taken again"
            out.part = part
            if part is not None:
                taken = "; its message or acknowledgement is taken, not the rest"
                if desk is None:
                    taken = "; its message or acknowledgement is left to the rules, not the rest"
            out.problems.append(
                f"{change.system} {change.kind} {change.external_id}: a change of "
                f"{format_time(change.at)} came after one of {last}; kept in the change log{taken}"
            )
            if part is not None and desk is None:
                out.owed = True  # (the rules leader's catch-up takes it)
            elif part is not None:
                # what happened cannot be undone by what happened later: an agent's reply still meets the
                # SLA clock, taken at the rules' clock, while the ticket keeps the newer change's state
                out.late = True
                self._rules(state, record, part, now, out, desk)
            return
        seen[change.system] = format_time(change.at) if change.at.microsecond == 0 else change.at.isoformat()
        if digest is not None:
            record.attrs.setdefault(SEEN_DIGEST, {})[change.system] = digest
        # (replay's events are taken as given: nothing noted, no hashing on its hot path)
        part = late_part(change) if change.kind == "ticket" and change.system != self.authority else None
        if part is not None and not _note_message(record, part):
            # the very message of a change taken before, at the same instant (a webhook retried at once, a
            # page pulled twice): the rest is taken again, harmlessly; the message is no new one
            change = replace(change, attrs={k: v for k, v in change.attrs.items() if k not in MESSAGE_KEYS})
            if not self.logged:
                state.set_change(out.change_id, change)
        if change.deleted:
            self._delete(state, record, change, out, now)
            if desk is not None and out.deleted != "ignore":
                # no timers nor load for a deleted ticket (ignored, it stays in the rules as in the store)
                desk.forget(self._desk_state(state), record.id)
            return
        if "deleted_in" in record.attrs:
            self._restore(state, record, change, now)
        if change.kind == "ticket":
            self._ticket_values(change, out)
            self._account_values(change, out)
            if change.system != self.authority and not self.logged:
                held = self._held_attrs(state, record, change, now, first=last is None)
                if held is not change:
                    change = held
                    state.set_change(out.change_id, change)  # (the log keeps what was taken, for a rebuild)
        self._apply_attrs(record, change)
        why: dict[str, _Why] = {}
        if change.fields:
            self._reconcile(state, record, change, out, why, now)
        if change.kind == "ticket":
            self._classify(record, change, out)
        if record.tags:
            self._map_tags(state, record, change, out, why, now)
        if change.kind == "ticket":
            self._account_context(state, record, change)
        self._rules(state, record, change, now, out, desk)
        self._outbox(state, record, out, why, now)
        for planned in out.plan:
            if not planned.ref:
                planned.ref = f"{change.system}:{change.external_id}"

    def catch_up(
        self, state: State, record_id: str, change: Change, change_id: int, now: datetime, late: bool = False
    ) -> Outcome:
        """Feed the daemon's Desk a committed ticket change no Desk took (another replica processed it
        without rules): the timers due before it fire, then the Desk acts on the ticket as stored now; the
        effects are queued in ``state`` and the change is marked as taken. Returns what was decided.

        ``late``: the change came after a newer one of its ticket from its system, so its state was not
        applied: only its message or acknowledgement is fed, as the leader's own pipeline feeds one."""
        desk = self.desk("ticket")
        if desk is None:
            return Outcome(self._load(state, record_id, "ticket"))
        dstate = self._desk_state(state)
        desk_at, touched = desk.before(dstate, change.at)
        plan: list[PlannedWrite] = []
        writes = self._apply(state, touched, now, None, plan)
        found = state.load(record_id)
        gone = found is None
        record = self.typed(found) if found is not None else Record(record_id, "ticket")  # as timers left it
        out = Outcome(record, [d for _r, ds in touched for d in ds], writes, plan, desk_at=desk_at)
        if change.deleted:
            desk.forget(dstate, record_id)  # as the other replica's pipeline did: it leaves the rules
        elif gone or record.attrs.get("deleted_in"):
            pass  # deleted since (a later change the leader took): the rules do not take it up again
        elif late and (part := late_part(change)) is not None:
            held = Held(state, self.config, record) if self.writable else None
            try:
                out.desk_at, touched = desk.on_change(dstate, record, part)
            except Exception as exc:  # taken all the same: a change the rules fail on is not retried forever
                self._desk_failed(desk, change, exc, out.problems)
                touched = []
            out.writes += self._apply(state, touched, now, record, out.plan, held)
            out.decisions += [d for _r, ds in touched for d in ds]
            state.save(record, now)
        elif late:
            pass  # nothing in it for the rules
        else:
            # the ticket as stored now; but a close that a later change (caught up, or marked as taken)
            # reopened is still a close for the rules, final as when the leader takes both changes itself
            seen = record
            held = Held(state, self.config, record) if self.writable else None  # (before the Desk acts)
            status = change.attrs.get("status")
            if status == "closed" and record.attrs.get("status") != "closed":
                # (tags and fields shared: what the rules set lands on the record; attributes copied back)
                seen = Record(record.id, record.kind, links=record.links, fields=record.fields,
                              tags=record.tags, attrs={**record.attrs, "status": status})
            try:
                out.desk_at, touched = desk.on_change(dstate, seen, change)
            except Exception as exc:  # taken all the same: a change the rules fail on is not retried forever
                self._desk_failed(desk, change, exc, out.problems)
                touched = []
            if seen is not record:
                record.attrs.update((k, v) for k, v in seen.attrs.items() if k != "status")
                touched = [(record if r is seen else r, ds) for r, ds in touched]
            out.writes += self._apply(state, touched, now, record, out.plan, held)
            out.decisions += [d for _r, ds in touched for d in ds]
            state.save(record, now)
        dstate.set_desk_time(change_id, out.desk_at or desk_at)
        for d in out.decisions if state.keep_audit else ():
            state.audit(at=now, run=self.run, record_id=d.record_id, field=d.detail.get("field"), before=None,
                        after=d.audited(), origin=BRIDGE, rule=d.rule, kind="decision")
        return out

    def _load(self, state: State, rid: str, kind: str) -> Record:
        found = state.load(rid)
        return self.typed(found) if found is not None else Record(rid, kind)

    def typed(self, record: Record) -> Record:
        """``record`` with its declared fields' values coerced (the store keeps JSON)."""
        for name, fv in record.fields.items():
            ft = self.types.get(name)
            if ft is not None:
                try:  # noqa: SIM105 - suppress() costs a context manager per field per change
                    fv.value = self.coerce(name, ft, fv.value)  # the store keeps JSON: dates come as text
                except FieldValueError:
                    pass
        return record

    @staticmethod
    def _ticket_values(change: Change, out: Outcome) -> None:
        """A ticket's priority and sentiment as the rules can read them: a priority in other letter case
        ("Urgent") in lower case, an unknown one kept and reported; a sentiment that is no number from -100
        to 100 dropped (computed from the text instead) and reported; a null one is none given."""
        attrs = change.attrs
        where = f"{change.system} ticket {change.external_id}"
        value = attrs.get("priority")
        if value is not None and value not in TICKET_PRIORITIES:
            low = value.lower() if isinstance(value, str) else None
            if low in TICKET_PRIORITIES:
                attrs["priority"] = low
            else:
                known = ", ".join(TICKET_PRIORITIES)
                out.problems.append(f"{where}: priority {value!r} is not one of {known}; kept as given (no "
                                    "priority rule ranks it)")
        if "sentiment" not in attrs:
            return
        value = attrs["sentiment"]
        if value is None:
            del attrs["sentiment"]  # none given: computed, as when it is absent
        else:
            number = _sentiment_number(value)
            if number is None:
                out.problems.append(f"{where}: sentiment {value!r} is not a number from -100 to 100; dropped "
                                    "(computed from the text instead)")
                del attrs["sentiment"]
            else:
                attrs["sentiment"] = number

    def _account_values(self, change: Change, out: Outcome) -> None:
        """The ticket's own account (what its system says of it) with the declared account fields' values
        coerced as a sync of the CRM coerces them ("Enterprise" is the option "enterprise", "120,000" the
        number 120000), at its top level and under ``fields``; a value that does not fit is reported and
        dropped."""
        account = change.attrs.get("account")
        if not self._account_types or not isinstance(account, dict):
            return
        coerced = dict(account)
        tables = [coerced]
        if isinstance(coerced.get("fields"), dict):
            coerced["fields"] = dict(coerced["fields"])
            tables.append(coerced["fields"])
        for table in tables:
            for name, ft in self._account_types.items():
                raw = table.get(name)
                if raw is None:
                    continue
                try:
                    table[name] = to_json(ft, coerce(ft, raw))
                except FieldValueError as exc:
                    out.problems.append(f"{change.system} ticket {change.external_id}: account {exc}; value "
                                        "dropped")
                    del table[name]
        change.attrs["account"] = coerced

    @staticmethod
    def _held_attrs(state: State, record: Record, change: Change, now: datetime, first: bool) -> Change:
        """``change`` without the rule-written attributes (assignee, status, priority, team, tags) that its
        system still holds as it did, or that echo a value bridge sent it, while the ticket holds another
        value now: a helpdesk's full-ticket update sent before bridge's assignment landed there is no
        assignee cleared (shadows as for declared fields, see :mod:`bridge.ownership`). ``first``: the
        system's first change of the ticket, which holds none of those it does not give."""
        attrs: dict[str, Any] | None = None
        tags: list[str] | None = change.tags
        for name in SHADOWED_ATTRS:
            if name == "tags":
                given = change.tags is not None
                incoming: Any = change.tags
                current: Any = record.tags
            else:
                given = name in change.attrs
                incoming, current = change.attrs.get(name), record.attrs.get(name)
            if not given and not first:
                continue
            value = attr_value(name, incoming)
            shadow = Shadow.load(state.shadow(record.id, attr_key(name), change.system))
            if not given:
                if not shadow.known:
                    shadow.confirm(ATTR_TYPE, None)
                    state.set_shadow(record.id, attr_key(name), change.system, shadow.dump(), now)
                continue
            seen = detect(ATTR_TYPE, value, shadow)
            was_known, held = shadow.known, shadow.held
            shadow.confirm(ATTR_TYPE, value)
            state.set_shadow(record.id, attr_key(name), change.system, shadow.dump(), now)
            if name == "tags" and seen == "changed" and was_known and isinstance(incoming, list):
                # the system's own edit of the tags (its trigger added one), laid over the ticket's tags,
                # which may hold tags bridge added that have not landed there yet
                had = set(held or ())
                new = [t for t in incoming if t not in had]
                gone = had.difference(incoming)
                tags = [t for t in current if t not in gone] + [t for t in new if t not in current]
                continue
            if seen == "changed" or equal(ATTR_TYPE, value, attr_value(name, current)):
                continue
            if name == "tags":
                tags = None
            else:
                attrs = dict(change.attrs) if attrs is None else attrs
                del attrs[name]
        if attrs is None and tags is change.tags:
            return change
        return replace(change, attrs=change.attrs if attrs is None else attrs, tags=tags)

    def _apply_attrs(self, record: Record, change: Change) -> None:
        if BRIDGE_ID in change.attrs:
            for key, value in change.attrs.items():
                if key != BRIDGE_ID:
                    record.attrs[key] = value
        else:
            record.attrs.update(change.attrs)
        if change.customer_wrote:
            # ``message`` is anyone's newest message (an agent's reply overwrites it): the customer's is kept
            # apart, for ticket.text
            record.attrs[CUSTOMER_MESSAGE] = change.attrs["message"]
        if change.tags is not None:
            record.tags = _unique(t.strip() for t in change.tags if t and t.strip())

    # ------------------------------------------------------------------ deletes

    def _delete(self, state: State, record: Record, change: Change, out: Outcome, now: datetime) -> None:
        # only an explicit delete from a system gets here: a record missing from a fetch is never one
        policy = self.config.deletes.get(change.kind, DEFAULT_DELETE)
        at = format_time(change.at)
        if policy in ("flag", "archive"):
            record.attrs.setdefault("deleted_in", {})[change.system] = at
        if policy == "archive":
            record.attrs["archived"] = {"by": change.system, "at": at}
        out.deleted = policy
        state.audit(
            at=now,
            run=self.run,
            record_id=record.id,
            field=None,
            before=None,
            after={"system": change.system, "external_id": change.external_id},
            origin=change.system,
            rule=f"deletes.{change.kind} = {policy}",
            kind="delete",
        )

    def _restore(self, state: State, record: Record, change: Change, now: datetime) -> None:
        deleted = record.attrs.get("deleted_in")
        if not isinstance(deleted, dict) or change.system not in deleted:
            return
        del deleted[change.system]
        if not deleted:
            record.attrs.pop("deleted_in")
        archived = record.attrs.get("archived")
        if isinstance(archived, dict) and archived.get("by") == change.system:
            record.attrs.pop("archived")
        state.audit(
            at=now,
            run=self.run,
            record_id=record.id,
            field=None,
            before=None,
            after={"system": change.system, "external_id": change.external_id},
            origin=change.system,
            rule="restored: the system sent the record again",
            kind="delete",
        )

    # ------------------------------------------------------------------ reconcile

    def _reconcile(
        self, state: State, record: Record, change: Change, out: Outcome, why: dict[str, _Why], now: datetime
    ) -> None:
        remote = self.remote_map(change.system, change.kind)
        for rname, raw in change.fields.items():
            name = remote.get(rname)
            if name is None:
                continue
            fcfg = self.config.fields[name]
            ft = self.types[name]
            try:
                value = self.coerce(name, ft, raw)
            except FieldValueError as exc:
                out.problems.append(f"{change.system} {change.kind} {change.external_id}: {exc}")
                state.audit(
                    at=now,
                    run=self.run,
                    record_id=record.id,
                    field=name,
                    before=None,
                    after=_json(raw),
                    origin=change.system,
                    rule="rejected: not a valid value",
                    kind="decision",
                    response=str(exc),
                )
                continue
            shadow = Shadow.load(state.shadow(record.id, name, change.system))
            first_sight = not shadow.known
            seen = detect(ft, value, shadow)
            if seen == "unchanged":
                continue
            shadow.confirm(ft, to_json(ft, value))
            state.set_shadow(record.id, name, change.system, shadow.dump(), now)
            if seen == "echo":
                out.echoes += 1
                continue
            current = record.fields.get(name)
            if change.system == self.authority:
                verdict = Verdict("accept", "given")
            else:
                verdict = decide(fcfg, ft, change.system, value, current, change.at)
            old = None if current is None else current.value
            if verdict.accepted:
                record.fields[name] = FieldValue(value, change.system, change.at)
                why[name] = _Why(verdict.rule, change.system)
                self._audit_value(state, record, name, ft, old, value, change.system, verdict.rule, now)
                continue
            reverted = verdict.writeback and change.system in fcfg.sync_to and change.system in self.systems
            if verdict.writeback:
                why[name] = _Why(verdict.rule, BRIDGE, writeback=change.system)
            if verdict.action == "conflict" and not (first_sight and blank(value)):
                # (a blank seen the first time is the system's starting state, not an edit: it is filled in)
                out.conflicts.append(
                    Conflict(record.id, name, change.system, value, old, verdict.rule, reverted)
                )
                self._audit_value(
                    state,
                    record,
                    name,
                    ft,
                    old,
                    value,
                    change.system,
                    verdict.rule,
                    now,
                    kind="conflict",
                    response="reverted" if reverted else "left",
                )

    # ------------------------------------------------------------------ classify, tags, rules

    def _audit_value(
        self,
        state: State,
        record: Record,
        name: str,
        ft: FieldType,
        old: Any,
        new: Any,
        origin: str,
        rule: str,
        now: datetime,
        kind: str = "write",
        response: Any = None,
    ) -> None:
        """One field value's before → after in the audit log."""
        if not state.keep_audit:
            return  # (building the rows is wasted)
        state.audit(
            at=now,
            run=self.run,
            record_id=record.id,
            field=name,
            before=to_json(ft, old),
            after=to_json(ft, new),
            origin=origin,
            rule=rule,
            kind=kind,
            response=response,
        )

    def _classify(self, record: Record, change: Change, out: Outcome) -> None:
        """Tags from the classifiers and the computed sentiment, from the customer's words only: the ticket as
        created (subject, body) and each customer message. An agent's, a bot's or a system's message and an
        edit (a renamed subject, a new priority) leave what was computed; a sentiment a change gives
        stands until a customer's newer words come without one."""
        given = "sentiment" in change.attrs  # (a null one was dropped: _ticket_values)
        if given:
            record.attrs["sentiment_source"] = "system"  # given (whoever wrote it): not computed over
        if not (out.created or change.customer_wrote):
            return
        cfg = self.config.classify
        text = change.text
        proposals = classify.keyword_tags(text, cfg.keywords) if cfg.keywords else []
        if self.host is not None:
            proposals.extend(self.host.classify(record, change))
        if proposals:
            record.attrs["confidence"] = min(c for _t, c in proposals)
        # what the classifier was not sure enough of is not applied: the review it goes to names it (also when
        # the event gave its own tags, which is no reason to hide from the reviewer what the doubt was about)
        unsure = [tag for tag, conf in proposals if conf < cfg.min_confidence and tag not in record.tags]
        if unsure:
            record.attrs[PROPOSED] = unsure
        elif proposals:
            record.attrs.pop(PROPOSED, None)
        if change.tags is not None and change.system == self.authority:
            proposals = []  # tags the authority's event gives (even none) are taken as given (replay.md)
        for tag, conf in proposals:
            if conf >= cfg.min_confidence and tag not in record.tags:
                record.tags.append(tag)
                out.decisions.append(
                    Decision(
                        change.at, record.id, "tag", "classifier", {"tag": tag, "confidence": round(conf, 2)}
                    )
                )
        if text and not given:
            # the customer's newest words, which the system gave no sentiment for: a sentiment given at the
            # ticket's creation does not silence every later complaint
            record.attrs["sentiment"] = classify.sentiment(text)
            record.attrs.pop("sentiment_source", None)

    def _map_tags(
        self, state: State, record: Record, change: Change, out: Outcome, why: dict[str, _Why], now: datetime
    ) -> None:
        for tag, name, value in self.mapper.apply(record.tags):
            fcfg = self.config.fields[name]
            if fcfg.owner != BRIDGE or fcfg.kind != record.kind:
                continue  # tags only derive fields the bridge owns; a CRM-owned field is never overwritten
            ft = self.types[name]
            current = record.fields.get(name)
            if current is not None and self.authority is not None and current.system == self.authority:
                continue  # a value the events gave stands
            old = None if current is None else current.value
            if current is not None and adds_nothing(ft, old, value):
                continue
            new = merge(ft, old, value)
            if current is not None and equal(ft, new, old):
                continue
            record.fields[name] = FieldValue(new, BRIDGE, change.at)
            why[name] = _Why(f"tag {tag}", BRIDGE)
            self._audit_value(state, record, name, ft, old, new, BRIDGE, f"tag {tag}", now)
            out.decisions.append(
                Decision(
                    change.at,
                    record.id,
                    "set_field",
                    f"tag:{tag}",
                    {"field": name, "value": to_json(ft, new), "tag": tag},
                )
            )

    def _account_context(self, state: State, record: Record, change: Change) -> None:
        """Give a ticket its account's CRM context (tier, ARR, owner ...) by the requester's domain, as the
        store holds the account now: a CRM change reaches the ticket's rules at its next change.

        What the ticket's own system says of its account stands (kept apart, so that the CRM's older values
        never pass for it); the CRM's record fills the rest.
        """
        if "account" in change.attrs:
            said = change.attrs["account"]
            if isinstance(said, dict):
                record.attrs[ACCOUNT_GIVEN] = {k: v for k, v in said.items() if v is not None}
            else:
                record.attrs.pop(ACCOUNT_GIVEN, None)
        given = record.attrs.get(ACCOUNT_GIVEN)
        requester = record.attrs.get("requester")
        email = (requester.get("email") if isinstance(requester, dict) else None) or record.attrs.get("email")
        if not isinstance(email, str) or "@" not in email:
            return
        domain = identity.normalise("domain", email.rpartition("@")[2])
        ids = state.find_by_key("account", "domain", domain) if domain else []
        if len(ids) != 1:
            return  # none, or ambiguous: no guessing
        account = state.load(ids[0])
        if account is None:
            return
        context: dict[str, Any] = {k: v for k, v in account.attrs.items() if not isinstance(v, dict | list)}
        context.update({n: fv.value for n, fv in account.fields.items()})
        context["id"] = account.id
        if isinstance(given, dict):
            context.update(given)
        record.attrs["account"] = context

    def desk(self, kind: str) -> LiveDesk | None:
        """The daemon's Desk when one is registered on the host and ``kind`` is what it acts on (tickets)."""
        if kind != "ticket" or self.host is None:
            return None
        plugin = self.host.pm.get_plugin(DESK_PLUGIN)
        return plugin if plugin is not None and isinstance(plugin, LiveDesk) else None

    @staticmethod
    def _desk_failed(desk: LiveDesk, change: Change, exc: Exception, problems: list[str]) -> None:
        """The Desk failed on a change: it is rebuilt before its next use, and the change goes on without it
        (as a failing rules plugin decides nothing)."""
        where = f"{change.system} {change.kind} {change.external_id}"
        log.error("rules failed on %s; taken in without them", where, exc_info=exc)
        problems.append(f"{where}: rules failed: {type(exc).__name__}: {exc}; taken in without them")
        desk.invalidate()

    @staticmethod
    def _desk_state(state: State) -> DeskState:
        if not isinstance(state, DeskState):
            raise TypeError(f"{type(state).__name__} cannot run the Desk: it has no on_rollback/on_end")
        return state

    def _rules(
        self,
        state: State,
        record: Record,
        change: Change,
        now: datetime,
        out: Outcome,
        desk: LiveDesk | None,
    ) -> None:
        if self.host is None:
            return
        touched: Touched = []
        held = Held(state, self.config, record) if self.writable else None  # (the Desk changes it in place)
        if desk is not None:
            try:
                out.desk_at, touched = desk.on_change(self._desk_state(state), record, change, out.created,
                                                      out.was_closed)
            except Exception as exc:  # not taken: the leader's catch-up tries once more
                self._desk_failed(desk, change, exc, out.problems)
                out.desk_at = None
        decisions = self.host.evaluate_rules(record, change, now)
        if decisions:  # a plugin's decisions, each about the ticket it names
            mine = next((ds for r, ds in touched if r.id == record.id), None)
            if mine is None:
                mine = []
                touched.append((record, mine))
            for d in decisions:
                if d.record_id == record.id:
                    mine.append(d)
                else:
                    other = state.load(d.record_id)
                    if other is not None:
                        touched.append((other, [d]))
        if touched:
            out.writes += self._apply(state, touched, now, record, out.plan, held)
            out.decisions.extend(d for _r, ds in touched for d in ds)

    def _apply(
        self,
        state: State,
        touched: Touched,
        now: datetime,
        current: Record | None,
        plan: list[PlannedWrite],
        held: Held | None = None,
    ) -> list[Write]:
        """Queue the effects of rule decisions, each against the ticket it is about (see apply_touched);
        ``held``: what ``current``'s systems held before the Desk changed it."""

        def planned(decision: Decision, write: Write, old: dict[str, Any]) -> None:
            rule = f"rule {decision.rule}"
            ref = ""
            if current is None or write.record_id != current.id:  # (the change's own ref is set later)
                ref = f"{write.system}:{write.external_id}" if write.external_id else write.record_id
            plan.extend(PlannedWrite(write.record_id, write.system, name, old.get(name), value, rule, ref)
                        for name, value in write.fields.items())

        # side effects are queued in this transaction, each once (their keys are claimed with them)
        return apply_touched(
            state, self.config, touched, now, self.run, current=current, audit=False,
            writable=self.writable, on_queued=planned, held=held,
        )

    # ------------------------------------------------------------------ outbox

    def blocked(self, record: Record, system: str) -> str | None:
        """Why ``system`` must receive nothing for ``record`` (archived, deleted there), or None."""
        if record.attrs.get("archived"):
            return "the record is archived"
        deleted = record.attrs.get("deleted_in")
        if isinstance(deleted, dict) and system in deleted:
            return f"the record was deleted in {system}"
        return None

    def _outbox(
        self, state: State, record: Record, out: Outcome, why: dict[str, _Why], now: datetime
    ) -> None:
        if not self.writable:
            return  # no system takes writes (replay, a read-only setup): nothing is queued or planned
        per_system: dict[str, dict[str, Any]] = defaultdict(dict)
        shadows: list[tuple[str, str, Shadow, Any, FieldType]] = []
        for name in self.fields_of(record.kind):
            fv = record.fields.get(name)
            if fv is None:
                continue  # never set: nothing to tell anyone, and a system's own value is left alone
            fcfg = self.config.fields[name]
            ft = self.types[name]
            value = to_json(ft, fv.value)
            reason = why.get(name)
            for system in fcfg.sync_to:
                if (
                    system not in self.writable
                    or record.kind not in self.config.connectors[system].kinds
                    or self.blocked(record, system)
                ):
                    continue
                shadow = Shadow.load(state.shadow(record.id, name, system))
                rule = self._write_rule(reason, system, shadow)
                if rule is None:
                    continue
                known, will_hold = shadow.projected()
                if known and equal(ft, will_hold, value):
                    continue  # it has it, or it is on its way: sending it again would be an echo
                if not known and blank(value):
                    continue
                per_system[system][name] = value
                shadow.send(ft, value)
                shadows.append((system, name, shadow, value, ft))
                source = reason.source if reason is not None else fv.system
                out.plan.append(
                    PlannedWrite(record.id, system, name, will_hold if known else None, value, rule)
                )
                state.audit(
                    at=now,
                    run=self.run,
                    record_id=record.id,
                    field=name,
                    before=will_hold if known else None,
                    after=value,
                    origin=source,
                    rule=f"{rule}; queued for {system}",
                    response=None,
                )
        for system, name, shadow, _value, _ft in shadows:
            state.set_shadow(record.id, name, system, shadow.dump(), now)
        for system, values in per_system.items():
            write = self.write_for(record, system, values)
            out.writes.append(write)
            state.enqueue(write, now)

    @staticmethod
    def _write_rule(reason: _Why | None, system: str, shadow: Shadow) -> str | None:
        if reason is not None and reason.writeback is None:
            return reason.rule
        if reason is not None and reason.writeback == system:
            return f"{reason.rule}: revert"
        if shadow.empty:
            return "initial sync"
        return None

    def write_for(self, record: Record, system: str, values: dict[str, Any]) -> Write:
        """The write telling ``system`` these field values (by field name) of ``record``, in its names."""
        remote = {self.config.fields[n].remote_name(system, n): v for n, v in values.items()}
        return Write(system, record.kind, record.id, record.links.get(system), remote)


_MISSING = object()
_MEMO_MAX = 4096


def plan_effects(
    state: State, config: Config, touched: Touched, writable: Collection[str] | None = None
) -> list[PlannedWrite]:
    """What the decisions in ``touched`` would write (a dry run's timers: nothing is queued), each field with
    the value its system holds as far as ``state`` knows (the ticket as stored, a declared field's shadow)."""
    out: list[PlannedWrite] = []
    for record, decisions in touched:
        stored = state.load(record.id)
        held = Held(state, config, stored if stored is not None else record)
        for d in decisions:
            for system, fields in effect_writes(config, record, d, writable):
                external = record.links.get(system)
                ref = f"{system}:{external}" if external else ""
                old = held.replaced(system, fields)
                out.extend(PlannedWrite(record.id, system, name, old[name], value, f"rule {d.rule}", ref)
                           for name, value in fields.items())
    return out


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _json(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


MESSAGE_KEYS = ("message", "last_author", "acknowledged")  # what of a change is a message (late_part)
MESSAGES_TAKEN = "messages_taken"  # record attribute: system -> the stamps of its messages taken, newest last
MESSAGES_KEPT = 50  # per system: a helpdesk redelivers a webhook within hours, not 50 messages later


def _digest(change: Change) -> str:
    """What a change says (fields, tags, attributes, deleted), digested: the same change delivered again has
    the same digest."""
    said = json.dumps([change.fields, change.tags, change.attrs, change.deleted], sort_keys=True, default=str)
    return hashlib.blake2b(said.encode(), digest_size=12).hexdigest()


def _note_message(record: Record, part: Change) -> bool:
    """Note that ``part`` (a change's message or acknowledgement, :func:`late_part`) is taken; False when
    the same one from the same system was taken before (the helpdesk delivered it again)."""
    said = [part.attrs.get(k) for k in MESSAGE_KEYS]
    text = json.dumps(said, default=str)
    stamp = f"{part.at.isoformat()}|{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    kept = record.attrs.setdefault(MESSAGES_TAKEN, {})
    stamps = kept.setdefault(part.system, [])
    if stamp in stamps:
        return False
    stamps.append(stamp)
    del stamps[:-MESSAGES_KEPT]
    return True


def late_part(change: Change) -> Change | None:
    """What of a ticket change that came after a newer one still counts: its message (with its author) or
    its acknowledgement, events no later state undoes; None when it has neither."""
    attrs = change.attrs
    kept: dict[str, Any] = {}
    if "message" in attrs:
        kept.update((k, attrs[k]) for k in ("message", "last_author") if k in attrs)
    if attrs.get("acknowledged") is True:
        kept["acknowledged"] = True
    if not kept:
        return None
    return Change(change.system, change.kind, change.external_id, change.at, attrs=kept)


class MemoryState:
    """A State kept in dicts, for replay and tests. Records are live objects (not copies); no rollback."""

    def __init__(self, keep_audit: bool = True, keep_outbox: bool = True) -> None:
        """``keep_audit`` and ``keep_outbox`` off: nothing accumulates but the records (long replays)."""
        self.keep_outbox = keep_outbox
        self._effects: set[str] = set()
        self.records: dict[str, Record] = {}
        self.links: dict[tuple[str, str, str], str] = {}
        self.keys: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self.record_keys: dict[str, dict[str, str]] = defaultdict(dict)
        self.shadows: dict[str, dict[tuple[str, str], Any]] = defaultdict(dict)  # record -> (field, system)
        self.outbox: list[Write] = []
        self.changes: int = 0
        self._pending: set[str] = set()
        self.audits: list[dict[str, Any]] = []
        self.keep_audit = keep_audit
        self._ids = itertools.count(1)

    def record_id_for(self, system: str, kind: str, external_id: str) -> str | None:
        """See State."""
        return self.links.get((system, kind, external_id))

    def links_of(self, record_id: str) -> dict[str, str]:
        """See State."""
        rec = self.records.get(record_id)
        return dict(rec.links) if rec is not None else {}

    def find_by_key(self, kind: str, key: str, value: str) -> list[str]:
        """See State."""
        return sorted(self.keys.get((kind, key, value), []))

    def keys_of(self, record_id: str) -> dict[str, str]:
        """See State."""
        return dict(self.record_keys.get(record_id, {}))

    def set_keys(self, record_id: str, kind: str, keys: dict[str, str]) -> None:
        """See State (an empty value removes the key)."""
        have = self.record_keys[record_id]
        for key, value in keys.items():
            old = have.pop(key, None)
            if old is not None:
                self.keys[(kind, key, old)].remove(record_id)
            if value:
                have[key] = value
                self.keys[(kind, key, value)].append(record_id)

    def lock_identity(self, kind: str, key: str, value: str) -> None:
        """See State (one process, one thread: nothing to lock)."""

    def create_record(self, kind: str, record_id: str | None = None, now: datetime | None = None) -> str:
        """See State."""
        rid = record_id or f"{kind[0]}{next(self._ids)}"
        self.records[rid] = Record(rid, kind)
        return rid

    def link(self, record_id: str, system: str, kind: str, external_id: str) -> None:
        """See State."""
        have = self.links.get((system, kind, external_id))
        if have is not None and have != record_id:
            raise IdentityError(
                f"{system} {kind} {external_id} is already linked to record {have}", [have, record_id]
            )
        self.links[(system, kind, external_id)] = record_id
        rec = self.records.get(record_id)
        if rec is not None:
            rec.links[system] = external_id

    def load(self, record_id: str) -> Record | None:
        """See State (the live record)."""
        return self.records.get(record_id)

    def save(self, record: Record, now: datetime | None = None) -> None:
        """See State."""
        self.records[record.id] = record

    def add_change(self, change: Change, record_id: str | None, received_at: datetime | None = None) -> int:
        """See State (only counted here)."""
        self.changes += 1
        return self.changes

    def set_change(self, change_id: int, change: Change) -> None:
        """See State (changes are not kept here)."""

    def shadow(self, record_id: str, field: str, system: str) -> tuple[bool, Any]:
        """See State."""
        held = self.shadows.get(record_id)
        if held is None or (field, system) not in held:
            return (False, None)
        return (True, held[(field, system)])

    def set_shadow(self, record_id: str, field: str, system: str, value: Any, at: datetime) -> None:
        """See State."""
        self.shadows[record_id][(field, system)] = value

    def forget(self, record_id: str) -> None:
        """Drop everything held for a record (replay calls it for closed tickets: memory stays flat)."""
        record = self.records.pop(record_id, None)
        if record is not None:
            for system, external in record.links.items():
                self.links.pop((system, record.kind, external), None)
        for key, value in self.record_keys.pop(record_id, {}).items():
            kind = record.kind if record is not None else ""
            ids = self.keys.get((kind, key, value))
            if ids is not None and record_id in ids:
                ids.remove(record_id)
                if not ids:
                    del self.keys[(kind, key, value)]
        self.shadows.pop(record_id, None)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """See Tx (nothing here is ever rolled back)."""

    def on_end(self, callback: Callable[[bool], None]) -> None:
        """See Tx (a MemoryState never ends: nothing to call)."""

    def set_desk_time(self, change_id: int, at: datetime, by_desk: bool = True) -> None:
        """See Tx (changes are only counted here)."""

    def claim_effect(self, key: str, record_id: str, decision: str, at: datetime) -> bool:
        """See State."""
        if key in self._effects:
            return False
        self._effects.add(key)
        return True

    def enqueue(self, write: Write, now: datetime) -> bool:
        """See State."""
        if not self.keep_outbox:
            return True
        key = write.idempotency_key
        if key in self._pending:
            return False
        self._pending.add(key)
        self.outbox.append(write)
        return True

    def audit(
        self,
        *,
        at: datetime,
        run: str,
        record_id: str | None,
        field: str | None,
        before: Any,
        after: Any,
        origin: str,
        rule: str,
        kind: str = "write",
        response: Any = None,
    ) -> None:
        """See State."""
        if self.keep_audit:
            self.audits.append(
                {
                    "at": at,
                    "run": run,
                    "record_id": record_id,
                    "field": field,
                    "before": before,
                    "after": after,
                    "origin": origin,
                    "rule": rule,
                    "kind": kind,
                    "response": response,
                }
            )
