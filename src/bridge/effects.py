"""Side effects of rule decisions (assign, escalate, set a field, follow up, close), each queued once.

A decision that is a side effect carries an idempotency key. :func:`queue_effects` claims the key in the
transaction that queues the effect's write, so a crash, a retry or a rebuilt Desk never repeats it. The
writes use the names below; a connector maps them to its vendor (the ``files`` connector writes them as is).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from bridge.connector import Connector
from bridge.model import TICKET_STATUSES, Decision, Record, Write, format_time
from bridge.ownership import ATTR_TYPE, SHADOWED_ATTRS, Shadow, attr_key, attr_value
from bridge.settings import Config
from bridge.state import State

# the ticket attributes the Desk sets (assign, escalate, auto-close ...): a ticket it changed while acting on
# another one (or on a timer) is saved with these as the Desk left them
DESK_ATTRS = ("status", "assignee", "priority", "escalations")
# what a helpdesk is told for a side effect; not declared fields, so ownership does not apply to them
EFFECT_FIELDS = frozenset(
    {"assignee", "escalation", "status", "follow_up", "review", "tags", "priority", "notify", "sla",
     "product_ticket"}
)
PRODUCT_TICKET = "product_ticket"  # a topic's spike, told to the tracker (bridge.product)
# the effects that are events, not values: each is told once as its own write (two notifications are two,
# whatever they say), never merged with another write nor taken for a twin of an equal one
EVENT_FIELDS = frozenset({"escalation", "follow_up", "review", "notify", "sla", "product_ticket"})
SIDE_EFFECTS = ("assign", "escalate", "set_field", "follow_up", "auto_close", "review", "tag", "notify",
                "sla_warning", "sla_breach")


@dataclass
class EffectWrite(Write):
    """The write of one event-type side effect: its key comes from its decision, not from what it says.

    ``key`` is :func:`effect_key` of the decision (the outbox row's key once queued), so two equal
    notifications of two decisions are two writes, and the vendor sees the key of the decision behind each.
    """

    key: str = ""

    @property
    def idempotency_key(self) -> str:
        """The key of the decision behind this write (see :func:`effect_key`)."""
        return self.key

    @property
    def is_event(self) -> bool:
        """Always: an event-type side effect."""
        return True


# what the rules tell a helpdesk that a vendor may have no standard field for: a connector that maps them to
# fields an admin names (HubSpot's effect_properties, Salesforce's effect_fields) takes these keys
VENDOR_EFFECTS = tuple(sorted((EVENT_FIELDS | {"tags"}) - {PRODUCT_TICKET}))


def known_statuses(value: dict[str, str], what: str) -> dict[str, str]:
    """``value`` (a vendor's statuses -> bridge's, a connector's ``statuses``), or ValueError naming a bridge
    status that is none of :data:`TICKET_STATUSES` (``what``: a stage, a Case status)."""
    bad = sorted({v for v in value.values() if v not in TICKET_STATUSES})
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))}: {what} maps to one of {', '.join(TICKET_STATUSES)}")
    return value


def known_effects(value: dict[str, str]) -> dict[str, str]:
    """``value`` (effect -> a vendor field), or ValueError naming a key none of :data:`VENDOR_EFFECTS`."""
    bad = sorted(k for k in value if k not in VENDOR_EFFECTS)
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))}: the effects are {', '.join(VENDOR_EFFECTS)}")
    return value


def effect_text(value: Any) -> Any:
    """An effect's value as a vendor's text field or property takes it (HubSpot's ``effect_properties``,
    Salesforce's ``effect_fields``): a notification as ``to: message``, an SLA notice as ``breach of
    first_response (POLICY)``, tags ``;``-joined; anything else as it is."""
    if isinstance(value, dict) and "state" in value:
        due = f", due {value['due']}" if value.get("due") else ""
        return f"{value.get('state')} of {value.get('metric')} ({value.get('policy')}{due})"
    if isinstance(value, dict):
        to, message = value.get("to"), value.get("message")
        return f"{to}: {message}" if message else str(to or "")
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return value


def effect_key(system: str, kind: str, record_id: str, decision_key: str) -> str:
    """The outbox key of a decision's event write to ``system``: one per decision, system and record."""
    body = json.dumps([system, kind, record_id, "effect", decision_key])
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def is_event(fields: Mapping[str, Any], declared: Collection[str] = ()) -> bool:
    """True when ``fields`` is an event-type side effect (:data:`EVENT_FIELDS`), no declared field's name."""
    return bool(fields) and all(k in EVENT_FIELDS and k not in declared for k in fields)


def _check_in(detail: Mapping[str, Any], ticket: Record) -> dict[str, Any]:
    """A volume spike's check-in task, told to its recipient as a note (it is about the account, not an
    escalation of the ticket it came with); with nobody to tell, nothing: the decision is in the audit log.
    The account is named as people know it (its name, else its domain, from the ticket's CRM context)."""
    to = detail.get("to")
    if not to:
        return {}
    usual = detail.get("usual")
    context = ticket.attrs.get("account")
    known = context if isinstance(context, dict) else {}
    named = known.get("name") or known.get("domain") or detail.get("account")
    message = (f"Check in with account {named}: {detail.get('count')} new tickets in the "
               f"last 7 days, against {usual} a week usually; due {detail.get('due')}")
    return {"notify": {"to": to, "message": message, "reason": "volume", "account": detail.get("account"),
                       "due": detail.get("due")}}


def effect_fields(config: Config, system: str, record: Record, decision: Decision) -> dict[str, Any]:
    """What ``system`` must be told for one decision (remote field names), or {} when nothing."""
    d = decision.detail
    match decision.decision:
        case "assign":
            return {"assignee": d.get("to")}
        case "escalate":
            if d.get("reason") == "volume":
                return _check_in(d, record)
            return {"escalation": d.get("to")}
        case "auto_close":
            return {"status": "closed"}
        case "follow_up":
            return {"follow_up": d.get("message") or (config.follow_up.message if config.follow_up else "")}
        case "review":
            return {"review": d.get("reason") or "review"}
        case "notify":
            # the helpdesk tells the recipient (an internal note, a mention); the message may be blank
            return {"notify": {"to": d.get("to"), "message": d.get("message") or ""}}
        case "tag":
            return {"tags": list(record.tags)}
        case "sla_warning" | "sla_breach":
            # (a warning is for someone to act on before the breach: the helpdesk is told, not only the audit)
            sla = {"state": "warning" if decision.decision == "sla_warning" else "breach",
                   "policy": decision.rule, "metric": d.get("metric")}
            return {"sla": {**sla, **{k: d[k] for k in ("due", "late") if k in d}}}
        case "set_field":
            name = str(d.get("field"))
            fcfg = config.fields.get(name)
            if fcfg is None:
                return {name: d.get("value")}  # a built-in attribute such as priority
            if system not in fcfg.sync_to and system != fcfg.owner:
                return {}  # a system never receives a field it does not read
            return {fcfg.remote_name(system, name): d.get("value")}
    return {}


def writable_systems(config: Config, classes: Mapping[str, type[Connector]]) -> set[str]:
    """The configured systems whose connectors accept writes (a plugin not loaded is given the benefit)."""
    return {
        name
        for name, table in config.connectors.items()
        if table.plugin not in classes or classes[table.plugin].accepts_writes()
    }


def ticket_systems(config: Config, record: Record, writable: Collection[str] | None = None) -> list[str]:
    """The configured systems that hold this ticket and take writes (where its side effects land)."""
    return [
        s
        for s in record.links
        if s in config.connectors
        and "ticket" in config.connectors[s].kinds
        and (writable is None or s in writable)
    ]


def effect_writes(
    config: Config, record: Record, decision: Decision, writable: Collection[str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The writes one decision causes, ``(system, fields)`` per system the ticket's effects land in."""
    if decision.decision not in SIDE_EFFECTS:
        return []
    out = []
    for system in ticket_systems(config, record, writable):
        fields = effect_fields(config, system, record, decision)
        if fields:
            out.append((system, fields))
    return out


def queue_effects(
    state: State,
    config: Config,
    record: Record,
    decisions: Iterable[Decision],
    now: datetime,
    run: str,
    audit: bool = True,
    writable: Collection[str] | None = None,
    on_queued: Callable[[Decision, Write, dict[str, Any]], None] | None = None,
    held: Held | None = None,
) -> list[Write]:
    """Queue each side effect once (auditing every decision unless the caller did); returns the writes.

    ``on_queued`` hears of each write with the decision behind it and the value its system held of each
    field it writes (the pipeline plans them for a dry run): as ``held`` tells, by default ``record`` now.
    """
    queued: list[Write] = []
    if on_queued is not None and held is None:
        held = Held(state, config, record)
    # a warning stated with the breach it warned of (a first rules job over old tickets, a daemon that was
    # down) warns of nothing: the breach is told, the warning only audited
    breached = {(d.rule, d.detail.get("metric")) for d in decisions if d.decision == "sla_breach"}
    for decision in decisions:
        key = decision.detail.get("key")
        if audit:
            detail = {k: v for k, v in decision.detail.items() if k != "key"}
            if decision.why is not None:
                detail["why"] = decision.why
            state.audit(
                at=decision.at or now,
                run=run,
                record_id=record.id,
                field=detail.get("field"),
                before=None,
                after=_jsonable(detail),
                origin="bridge",
                rule=decision.rule,
                kind="decision",
                response=decision.decision,
            )
        if decision.decision not in SIDE_EFFECTS or not key:
            continue
        if decision.decision == "sla_warning" and (decision.rule, decision.detail.get("metric")) in breached:
            continue
        if not state.claim_effect(str(key), record.id, decision.decision, decision.at or now):
            continue  # taken before: a retry or a rebuild does not repeat it
        for system, fields in effect_writes(config, record, decision, writable):
            write = _effect_write(config, system, record, fields, str(key))
            state.enqueue(write, now)
            queued.append(write)
            _attrs_sent(state, config, record, system, fields, now)
            if on_queued is not None and held is not None:
                on_queued(decision, write, held.replaced(system, fields))
    return queued


class Held:
    """What the systems of one ticket hold of the fields its side effects write, as far as bridge knows (a
    dry run's plan shows it as each write's old value).

    That is the ticket's attributes and tags as stored or just pulled (copied: the Desk changes a ticket in
    place), and for a declared field its shadow; a write planned since counts as held.
    """

    def __init__(self, state: State, config: Config, record: Record) -> None:
        """What ``record`` holds now; build it before the Desk acts on the ticket."""
        self.state, self.config = state, config
        self.record_id, self.kind = record.id, record.kind
        self.attrs = dict(record.attrs)
        self.tags = list(record.tags)
        self.planned: dict[tuple[str, str], Any] = {}

    def replaced(self, system: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The value ``system`` holds of each of ``fields`` (its own names) before they are written to it;
        from then on they count as held."""
        declared = self.config.remote_to_field(system, self.kind)
        out = {name: self._held(system, name, declared.get(name)) for name in fields}
        for name, value in fields.items():
            self.planned[system, name] = value
        return out

    def _held(self, system: str, name: str, declared: str | None) -> Any:
        if declared is None and name in EVENT_FIELDS:
            return None  # an event (an escalation, a follow-up ...) replaces nothing
        if (system, name) in self.planned:
            return self.planned[system, name]
        if declared is not None:
            known, value = Shadow.load(self.state.shadow(self.record_id, declared, system)).projected()
            return value if known else None
        return list(self.tags) if name == "tags" else self.attrs.get(name)


def _attrs_sent(
    state: State, config: Config, record: Record, system: str, fields: Mapping[str, Any], now: datetime
) -> None:
    """Remember in their shadows the rule-written attributes queued for ``system`` (an assignee, a status):
    its updates that still show the old value until the write lands are no change of them."""
    declared = config.remote_to_field(system, record.kind)
    for name, value in fields.items():
        if name in SHADOWED_ATTRS and name not in declared:
            attr_shadow(state, record.id, system, name, value, now, "sent")


def attr_shadow(state: State, record_id: str, system: str, name: str, value: Any, now: datetime,
                what: Literal["sent", "landed", "dropped"]) -> None:
    """Note in a rule-written attribute's shadow (see :data:`bridge.ownership.SHADOWED_ATTRS`) that a value
    was queued for ``system`` (``sent``), that it holds it now (``landed``: the push succeeded), or that it
    never will (``dropped``: superseded, dead-lettered)."""
    shadow = Shadow.load(state.shadow(record_id, attr_key(name), system))
    held = attr_value(name, value)
    if what == "sent":
        shadow.send(ATTR_TYPE, held)
    elif what == "landed":
        shadow.confirm(ATTR_TYPE, held)
    else:
        shadow.withdraw(ATTR_TYPE, held)
    state.set_shadow(record_id, attr_key(name), system, shadow.dump(), now)


def _effect_write(config: Config, system: str, record: Record, fields: dict[str, Any], key: str) -> Write:
    external = record.links.get(system)
    if is_event(fields, config.remote_to_field(system, record.kind)):
        return EffectWrite(
            system, record.kind, record.id, external, fields, effect_key(system, record.kind, record.id, key)
        )
    return Write(system, record.kind, record.id, external, fields)  # a value: merges with the record's others


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return format_time(value)
    return value


def decided_attrs(decisions: Iterable[Decision]) -> set[str]:
    """The ticket attributes (of :data:`DESK_ATTRS`) these decisions set."""
    out: set[str] = set()
    for d in decisions:
        kind = d.decision
        if kind == "assign":
            out.add("assignee")
        elif kind == "escalate":
            out.add("escalations")
        elif kind == "auto_close":
            out.add("status")
        elif kind == "set_field" and d.detail.get("field") in DESK_ATTRS:
            out.add(str(d.detail["field"]))
    return out


def copy_decided(stored: Record, seen: Record, decisions: Iterable[Decision]) -> None:
    """Give ``stored`` what ``decisions`` changed on the Desk's copy ``seen`` of the ticket, and nothing else:
    the attributes they set (:func:`decided_attrs`), each tag they added or removed, each declared field
    they set (a rule that fired when the queue assigned the ticket in another ticket's change)."""
    for attr in decided_attrs(decisions):
        if attr in seen.attrs:
            stored.attrs[attr] = seen.attrs[attr]
    for d in decisions:
        if d.decision == "tag":
            tag = str(d.detail.get("tag"))
            if d.detail.get("removed"):
                if tag in stored.tags:
                    stored.tags.remove(tag)
            elif tag not in stored.tags:
                stored.tags.append(tag)
        elif d.decision == "set_field":
            name = str(d.detail.get("field"))
            if name in DESK_ATTRS:
                continue
            if name in seen.fields:
                stored.fields[name] = seen.fields[name]
            elif name in seen.attrs:  # an attribute a rule sets (team)
                stored.attrs[name] = seen.attrs[name]


def apply_touched(
    state: State,
    config: Config,
    touched: Iterable[tuple[Record, list[Decision]]],
    now: datetime,
    run: str,
    current: Record | None = None,
    audit: bool = True,
    writable: Collection[str] | None = None,
    on_queued: Callable[[Decision, Write, dict[str, Any]], None] | None = None,
    held: Held | None = None,
) -> list[Write]:
    """Queue the effects of the Desk's decisions against the tickets they are about; returns the writes.

    ``touched`` pairs each ticket as the Desk left it with its decisions. ``current`` (the ticket being
    processed, which the caller saves) takes its decisions as is; any other ticket is loaded from ``state``,
    given what these decisions set on it (:func:`copy_decided`) and saved. A ticket ``state`` does
    not hold is skipped. ``on_queued`` hears of each write (see :func:`queue_effects`) with what the systems
    held: of ``current``, ``held`` (taken before the Desk changed it); of another ticket, as stored.
    """
    queued: list[Write] = []
    for seen, decisions in touched:
        before = None
        if current is not None and seen.id == current.id:
            target = current
            before = held
        else:
            stored = state.load(seen.id)
            if stored is None:
                continue
            if on_queued is not None:
                before = Held(state, config, stored)  # (before the decisions' attributes are copied in)
            if stored is not seen:
                # only what these decisions changed: the Desk's copy may be older than the store in the rest
                # (a change another replica took in, which the leader's catch-up has not fed yet)
                copy_decided(stored, seen, decisions)
            state.save(stored, now)
            target = stored
        queued += queue_effects(
            state, config, target, decisions, now, run, audit=audit, writable=writable, on_queued=on_queued,
            held=before,
        )
    return queued
