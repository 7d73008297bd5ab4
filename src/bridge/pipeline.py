"""One change through identity → classify → map tags → reconcile (source of truth) → rules → outbox.

The pipeline is the one place that calls the stages in order. It works on a :class:`State`: the store's
transaction in the daemon (so a change, its writes and its audit commit together) or :class:`MemoryState` in
replay and dry runs.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bridge import classify, identity
from bridge.errors import FieldValueError, IdentityError
from bridge.fields import coerce, merge, to_json
from bridge.model import BRIDGE, Change, Decision, FieldValue, Record, Write
from bridge.ownership import decide, receivers
from bridge.plugins import PluginHost
from bridge.settings import Config
from bridge.taxonomy import TagMapper


class State(Protocol):
    """What the pipeline needs of its storage (the store's ``Tx`` and :class:`MemoryState` provide it)."""

    def record_id_for(self, system: str, kind: str, external_id: str) -> str | None: ...
    def find_by_key(self, kind: str, key: str, value: str) -> list[str]: ...
    def set_keys(self, record_id: str, kind: str, keys: dict[str, str]) -> None: ...
    def create_record(self, kind: str, record_id: str | None = None) -> str: ...
    def link(self, record_id: str, system: str, kind: str, external_id: str) -> None: ...
    def load(self, record_id: str) -> Record | None: ...
    def save(self, record: Record) -> None: ...
    def add_change(self, change: Change, record_id: str | None) -> int: ...
    def shadow(self, record_id: str, field: str, system: str) -> tuple[bool, Any]: ...
    def set_shadow(self, record_id: str, field: str, system: str, value: Any, at: datetime) -> None: ...
    def enqueue(self, write: Write, now: datetime) -> bool: ...
    def audit(
        self, *, at: datetime, run: str, record_id: str | None, field: str | None, before: Any, after: Any,
        origin: str, rule: str, kind: str = "write", response: Any = None,
    ) -> None: ...


@dataclass
class Conflict:
    """A non-owner's edit of an owned field."""

    record_id: str
    field: str
    system: str
    value: Any
    owner_value: Any
    rule: str
    reverted: bool


@dataclass
class PlannedWrite:
    """One field of one write, with the values and the rule behind it (the dry-run plan)."""

    record_id: str
    system: str
    field: str
    old: Any
    new: Any
    rule: str


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


class Pipeline:
    """Processes changes against a State with one config (build it once, call ``process`` per change)."""

    def __init__(self, config: Config, host: PluginHost | None = None, run: str = "run") -> None:
        self.config = config
        self.host = host
        self.run = run
        self.types = config.field_types()
        self.mapper = TagMapper(config)
        self._remote: dict[tuple[str, str], dict[str, str]] = {}
        self._systems = set(config.connectors)

    def remote_map(self, system: str, kind: str) -> dict[str, str]:
        """Remote field name -> field name for ``system`` and ``kind`` (cached)."""
        key = (system, kind)
        if key not in self._remote:
            self._remote[key] = self.config.remote_to_field(system, kind)
        return self._remote[key]

    # ------------------------------------------------------------------ stages

    def identify(self, state: State, change: Change) -> tuple[str, bool]:
        """The record id for a change: stored link, then identity keys, else a new record."""
        rid = state.record_id_for(change.system, change.kind, change.external_id)
        if rid is not None:
            return rid, False
        keys = identity.keys_of(change.kind, change.attrs, self.config.identity)
        for key, value in keys.items():
            found = state.find_by_key(change.kind, key, value)
            if len(found) > 1:
                raise IdentityError(
                    f"{change.system} {change.kind} {change.external_id}: {key} {value!r} matches several records",
                    found,
                )
            if found:
                state.link(found[0], change.system, change.kind, change.external_id)
                return found[0], False
        rid = state.create_record(change.kind)
        state.link(rid, change.system, change.kind, change.external_id)
        if keys:
            state.set_keys(rid, change.kind, keys)
        return rid, True

    def process(self, state: State, change: Change, now: datetime) -> Outcome:
        """Run one change through every stage; the caller commits (or rolls back) the State."""
        rid, created = self.identify(state, change)
        record = state.load(rid) or Record(rid, change.kind)
        record.links.setdefault(change.system, change.external_id)
        out = Outcome(record, created=created)
        state.add_change(change, rid)
        changed: dict[str, tuple[Any, str, str]] = {}  # field -> (old, source, rule)

        self._apply_attrs(record, change)
        self._apply_fields(state, record, change, out, changed)
        if change.kind == "ticket":
            self._classify(record, change, out)
        self._map_tags(record, change, out, changed)
        self._rules(record, change, now, out)
        self._outbox(state, record, out, changed, now)
        state.save(record)
        return out

    def _apply_attrs(self, record: Record, change: Change) -> None:
        for key, value in change.attrs.items():
            record.attrs[key] = value
        if change.tags is not None:
            record.tags = _unique(t.strip() for t in change.tags if t and t.strip())

    def _apply_fields(
        self, state: State, record: Record, change: Change, out: Outcome, changed: dict[str, tuple[Any, str, str]]
    ) -> None:
        remote = self.remote_map(change.system, change.kind)
        for rname, raw in change.fields.items():
            name = remote.get(rname)
            if name is None:
                continue
            fcfg = self.config.fields[name]
            ft = self.types[name]
            try:
                value = coerce(ft, raw)
            except FieldValueError as exc:
                msg = f"{change.system} {change.kind} {change.external_id}: {exc}"
                out.problems.append(msg)
                state.audit(at=change.at, run=self.run, record_id=record.id, field=name, before=None,
                            after=_json(raw), origin=change.system, rule="rejected", kind="rejected",
                            response=str(exc))
                continue
            current = record.fields.get(name)
            verdict = decide(fcfg, ft, change.system, value, current, state.shadow(record.id, name, change.system),
                             change.at)
            state.set_shadow(record.id, name, change.system, to_json(ft, value), change.at)
            if verdict.action == "accept":
                old = None if current is None else current.value
                record.fields[name] = FieldValue(value, change.system, change.at)
                changed[name] = (old, change.system, verdict.rule)
                state.audit(at=change.at, run=self.run, record_id=record.id, field=name, before=_json(old),
                            after=to_json(ft, value), origin=change.system, rule=verdict.rule)
            elif verdict.action == "conflict":
                owner_value = None if current is None else current.value
                revert = fcfg.on_conflict == "revert" and change.system in fcfg.sync_to and current is not None
                out.conflicts.append(Conflict(record.id, name, change.system, value, owner_value, verdict.rule,
                                              revert))
                state.audit(at=change.at, run=self.run, record_id=record.id, field=name,
                            before=to_json(ft, owner_value), after=to_json(ft, value), origin=change.system,
                            rule=verdict.rule, kind="conflict",
                            response="reverted" if revert else "left")
                if revert:
                    out.plan.append(PlannedWrite(record.id, change.system, name, value, owner_value,
                                                 f"{verdict.rule}: revert"))

    def _classify(self, record: Record, change: Change, out: Outcome) -> None:
        cfg = self.config.classify
        proposals = classify.keyword_tags(change.text, cfg.keywords)
        if self.host is not None:
            for outcome in self.host.call_each("classify", record=record, change=change):
                proposals.extend(outcome.value or [])
        if proposals:
            confidence = min(c for _t, c in proposals)
            record.attrs["confidence"] = confidence
        for tag, conf in proposals:
            if conf >= cfg.min_confidence and tag not in record.tags:
                record.tags.append(tag)
                out.decisions.append(Decision(change.at, record.id, "tag", "classifier",
                                              {"tag": tag, "confidence": round(conf, 2)}))
        if "sentiment" not in change.attrs and change.text and record.attrs.get("sentiment_source") != "system":
            record.attrs["sentiment"] = classify.sentiment(change.text)
        elif "sentiment" in change.attrs:
            record.attrs["sentiment_source"] = "system"

    def _map_tags(
        self, record: Record, change: Change, out: Outcome, changed: dict[str, tuple[Any, str, str]]
    ) -> None:
        for tag, name, value in self.mapper.apply(record.tags):
            fcfg = self.config.fields[name]
            if fcfg.owner != BRIDGE:
                continue  # tags only derive fields the bridge owns; a CRM-owned field is not overwritten
            ft = self.types[name]
            current = record.fields.get(name)
            old = None if current is None else current.value
            new = merge(ft, old, value)
            if new == old:
                continue
            record.fields[name] = FieldValue(new, BRIDGE, change.at)
            if name not in changed:
                changed[name] = (old, BRIDGE, f"tag {tag}")
            out.decisions.append(Decision(change.at, record.id, "set_field", f"tag:{tag}",
                                          {"field": name, "value": to_json(ft, new), "tag": tag}))

    def _rules(self, record: Record, change: Change, now: datetime, out: Outcome) -> None:
        if self.host is None:
            return
        for outcome in self.host.call_each("evaluate_rules", record=record, change=change, now=now):
            out.decisions.extend(outcome.value or [])

    def _outbox(
        self, state: State, record: Record, out: Outcome, changed: dict[str, tuple[Any, str, str]], now: datetime
    ) -> None:
        per_system: dict[str, dict[str, Any]] = defaultdict(dict)
        for name, (_old, source, rule) in changed.items():
            fcfg = self.config.fields[name]
            ft = self.types[name]
            value = to_json(ft, record.value(name))
            for system in receivers(fcfg, source):
                if system not in self._systems:
                    continue
                known, last = state.shadow(record.id, name, system)
                if known and last == value:
                    continue  # that system already has it: sending it again would be an echo
                per_system[system][name] = value
                out.plan.append(PlannedWrite(record.id, system, name, last if known else None, value, rule))
        for conflict in out.conflicts:
            if conflict.reverted:
                ft = self.types[conflict.field]
                per_system[conflict.system][conflict.field] = to_json(ft, conflict.owner_value)
        for system, values in per_system.items():
            remote = {self.config.fields[n].remote_name(system, n): v for n, v in values.items()}
            write = Write(system, record.kind, record.id, record.links.get(system), remote)
            out.writes.append(write)
            state.enqueue(write, now)
            for name, value in values.items():
                state.set_shadow(record.id, name, system, value, now)
            state.audit(at=now, run=self.run, record_id=record.id, field=None, before=None, after=remote,
                        origin=BRIDGE, rule="outbox", kind="write", response=system)


def _unique(items: Iterator[str] | list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _json(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class MemoryState:
    """A State kept in dicts: replay, dry runs and tests. Audit entries are kept in a list."""

    def __init__(self, keep_audit: bool = True) -> None:
        self.records: dict[str, Record] = {}
        self.links: dict[tuple[str, str, str], str] = {}
        self.keys: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self.shadows: dict[tuple[str, str, str], Any] = {}
        self.outbox: list[Write] = []
        self._pending: set[str] = set()
        self.audits: list[dict[str, Any]] = []
        self.keep_audit = keep_audit
        self._ids = itertools.count(1)

    def record_id_for(self, system: str, kind: str, external_id: str) -> str | None:
        """See State."""
        return self.links.get((system, kind, external_id))

    def find_by_key(self, kind: str, key: str, value: str) -> list[str]:
        """See State."""
        return list(self.keys.get((kind, key, value), []))

    def set_keys(self, record_id: str, kind: str, keys: dict[str, str]) -> None:
        """See State."""
        for key, value in keys.items():
            ids = self.keys[(kind, key, value)]
            if record_id not in ids:
                ids.append(record_id)

    def create_record(self, kind: str, record_id: str | None = None) -> str:
        """See State."""
        rid = record_id or f"{kind[0]}{next(self._ids)}"
        self.records[rid] = Record(rid, kind)
        return rid

    def link(self, record_id: str, system: str, kind: str, external_id: str) -> None:
        """See State."""
        self.links[(system, kind, external_id)] = record_id
        rec = self.records.get(record_id)
        if rec is not None:
            rec.links[system] = external_id

    def load(self, record_id: str) -> Record | None:
        """See State (records are live objects here, not copies)."""
        return self.records.get(record_id)

    def save(self, record: Record) -> None:
        """See State."""
        self.records[record.id] = record

    def add_change(self, change: Change, record_id: str | None) -> int:
        """See State (changes are not kept in memory)."""
        return 0

    def shadow(self, record_id: str, field: str, system: str) -> tuple[bool, Any]:
        """See State."""
        key = (record_id, field, system)
        return (key in self.shadows, self.shadows.get(key))

    def set_shadow(self, record_id: str, field: str, system: str, value: Any, at: datetime) -> None:
        """See State."""
        self.shadows[(record_id, field, system)] = value

    def enqueue(self, write: Write, now: datetime) -> bool:
        """See State."""
        key = write.idempotency_key
        if key in self._pending:
            return False
        self._pending.add(key)
        self.outbox.append(write)
        return True

    def audit(
        self, *, at: datetime, run: str, record_id: str | None, field: str | None, before: Any, after: Any,
        origin: str, rule: str, kind: str = "write", response: Any = None,
    ) -> None:
        """See State."""
        if self.keep_audit:
            self.audits.append({"at": at, "run": run, "record_id": record_id, "field": field, "before": before,
                                "after": after, "origin": origin, "rule": rule, "kind": kind,
                                "response": response})
