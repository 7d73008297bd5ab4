"""``bridge explain``: a record's fields with owner, policy, provenance and history from the audit log."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.fields import to_json
from bridge.model import BRIDGE, Record, format_time

if TYPE_CHECKING:
    from bridge.app import App
    from bridge.store.tx import LoggedChange


def explain_record(app: App, ident: str) -> dict[str, Any] | None:
    """Everything known about one record: by bridge id, or ``SYSTEM:EXTERNAL_ID`` (any kind)."""
    cfg = app.config
    with app.store.session() as tx:
        rid: str | None = ident
        record = tx.load(ident)
        if record is None and ":" in ident:
            system, _, external = ident.partition(":")
            for kind in ("ticket", "account", "contact", "topic"):  # (a topic: its product ticket's key)
                rid = tx.record_id_for(system, kind, external)
                if rid:
                    record = tx.load(rid)
                    break
        if record is None:
            # a bare external id from any system: a ticket's first (`bridge explain TICKET_ID`), so that an
            # account of the same id in the CRM does not hide it
            for kind in ("ticket", "account", "contact"):
                for system in cfg.connectors:
                    rid = tx.record_id_for(system, kind, ident)
                    if rid:
                        record = tx.load(rid)
                        break
                if record is not None:
                    break
        if record is None:
            return None
        history = [
            {**h, "at": format_time(h["at"]) if hasattr(h.get("at"), "astimezone") else h.get("at")}
            for h in tx.audit_for(record.id)
        ]
        ticket = record.kind == "ticket"
        changes = list(tx.logged_changes("ticket", {record.id})) if ticket else []
        # the CRM accounts as the store holds them: a policy chosen by the account's tier is chosen again
        accounts = ([(r, tx.keys_of(r.id)) for r in tx.records("account")]
                    if ticket and (cfg.sla or cfg.rules) else [])
    types = cfg.field_types()
    declared = {name for name, fcfg in cfg.fields.items() if fcfg.kind == record.kind}
    fields = []
    for name, fcfg in cfg.fields.items():
        if fcfg.kind != record.kind:
            continue
        fv = record.fields.get(name)
        fields.append(
            {
                "field": name,
                "type": fcfg.type,
                "value": to_json(types[name], fv.value) if fv else None,
                "owner": fcfg.owner,
                "policy": fcfg.policy,
                "sync_to": fcfg.sync_to,
                "set_by": fv.system if fv else None,
                "set_at": format_time(fv.at) if fv else None,
                "history": [h for h in history if h.get("field") == name],
            }
        )
    sla: dict[str, Any] = {}
    seen = record
    if ticket and (cfg.sla or cfg.rules):
        due, replayed = _replayed(app, record, changes, accounts)
        sla = due if cfg.sla else {}
        if replayed is not None:
            # the rules and policies "as the ticket is now" read the account the deadlines were computed with
            # (the CRM's as the store holds it now), not the one attached at the ticket's last change
            attrs = {k: v for k, v in record.attrs.items() if k != "account"}
            if replayed.attrs.get("account") is not None:
                attrs["account"] = replayed.attrs["account"]
            seen = dataclasses.replace(record, attrs=attrs)
    rules: list[dict[str, Any]] = []
    if record.kind == "ticket" and (cfg.rules or cfg.sla):
        from bridge.rules.engine import Desk

        rules = _with_firings(Desk(cfg, base_dir=app.base_dir).explain(seen), history)
    return {
        "record": record.id,
        "kind": record.kind,
        "links": record.links,
        "tags": record.tags,
        "attrs": {k: v for k, v in record.attrs.items() if not isinstance(v, dict | list)},
        "state": {k: record.attrs.get(k) for k in STATE} if record.kind == "ticket" else {},
        "sla": sla,
        "fields": fields,
        "rules": rules,
        # (a disabled rule runs nothing: said by name, so that its absence above is not taken for a typo)
        "disabled_rules": [r.name for r in cfg.rules if not r.enabled] if record.kind == "ticket" else [],
        "routing": _routings(history),
        # what no declared field shows: decisions, writes, changes of attributes such as priority or status
        "events": [h for h in history if h.get("field") not in declared],
    }


STATE = ("status", "priority", "assignee", "escalations")  # a ticket's routing state, shown first


def _routings(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Why routing chose each agent the ticket was assigned (the audit log's assign decisions that kept it):
    the strategy, what was asked and each agent's part, with the deciding rule and the time."""
    out = []
    for h in history:
        decided = _decision(h)
        why = h["after"].get("why") if decided is not None and decided[1] == "assign" else None
        if isinstance(why, dict) and isinstance(why.get("routing"), dict):
            at = _when(decided[0]) if decided else None
            out.append({"at": at, "rule": h.get("rule"), **why["routing"]})
    return out


def _with_firings(entries: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules (and SLA policies) as the ticket is now, each with ``fired``, when its decisions for the
    ticket took effect, and ``firings``, what the rule saw each time it fired (each condition's value then,
    and the earlier rules of that event whose actions made it match), as the daemon's audit log kept it."""
    from bridge.rules.explain import leaves_of

    fired: dict[str, list[str]] = {}
    firings: dict[str, list[dict[str, Any]]] = {}
    for h in history:
        decided = _decision(h)
        if decided is None:
            continue
        rule = str(h.get("rule"))
        times = fired.setdefault(rule, [])
        if (when := _when(decided[0])) not in times:
            times.append(when)
        why = h["after"].get("why")
        seen = firings.setdefault(rule, [])
        if isinstance(why, dict) and "tree" in why and all(f.get("at") != why.get("at") for f in seen):
            # (one firing makes several decisions: an escalation and a set, say)
            seen.append({**why, "leaves": leaves_of(why["tree"])})
    for entry in entries:
        entry["fired"] = fired.get(entry["rule"], [])
        if firings.get(entry["rule"]):
            entry["firings"] = firings[entry["rule"]]
    return entries


def _replayed(
    app: App, record: Record, changes: list[LoggedChange], accounts: list[tuple[Record, dict[str, str]]]
) -> tuple[dict[str, Any], Record | None]:
    """The ticket's SLA deadlines: its stored changes run through a private Desk (no other ticket matters),
    each at the time the daemon's rules took it, with the CRM ``accounts`` (and their identity keys) the
    daemon's rebuild reads; and the ticket so replayed (None when it was not: closed, with every deadline
    null as in replay's final state), whose account is the one the deadlines were computed with."""
    from bridge.rules.live import Item, Known, LiveRules, Stored

    live = LiveRules(app.config, app.base_dir)
    live.floor = max((c.id for c in changes), default=0)  # every change is history here, none to catch up
    items: list[Item] = [Known(r, keys) for r, keys in accounts]
    items += [Stored(record.id, dict(record.links), c.change, c.desk_at, c.id) for c in changes]
    live.rebuild(items, None)
    replayed = live.records.get(record.id)
    if replayed is None:
        return live.desk.final(record)["sla"], None
    return live.desk.final(replayed)["sla"], replayed


def _when(value: Any) -> str:
    return format_time(value) or "" if isinstance(value, datetime) else str(value)


def _history_line(h: dict[str, Any]) -> str:
    decided = _decision(h)
    if decided is not None:
        at, kind, what = decided
        return f"{_when(at)} decision {kind} ({h.get('rule')}) {what}"
    tail = f" -> {h.get('response')}" if h.get("response") else ""
    return (
        f"{_when(h.get('at'))} {h.get('kind')}: {h.get('before')!r} -> {h.get('after')!r} "
        f"from {h.get('origin')} ({h.get('rule')}){tail}"
    )


def _decision(h: dict[str, Any]) -> tuple[Any, str, dict[str, Any]] | None:
    """``(when it took effect, kind, what it says)`` of a rules decision's audit row, or None for another row.

    The row's own time is when it was recorded: a timer the Desk fired on a later change is recorded with
    that change, days after it fell due, so the decision's own time is the one shown.
    """
    after = h.get("after")
    if h.get("kind") != "decision" or not isinstance(after, dict):
        return None
    if "decision" in after:  # a change's decisions (Decision.as_dict): the time and kind are in the row
        what = {k: v for k, v in after.items() if k not in _DECISION_KEYS}
        return after.get("at") or h.get("at"), str(after["decision"]), what
    if h.get("origin") == BRIDGE and isinstance(h.get("response"), str):
        # a decision of the rules job (timers) or of an agent's status: dated when due, its kind as response
        return h.get("at"), str(h["response"]), {k: v for k, v in after.items() if k not in ("key", "why")}
    return None  # a value a system sent that was refused, an ambiguous change


_DECISION_KEYS = ("at", "ticket_id", "decision", "rule", "key", "why")  # told by the line itself, or internal


def format_explain(data: dict[str, Any]) -> str:
    """Human output of :func:`explain_record`."""
    from bridge.rules.explain import format_explain as format_rules
    from bridge.rules.explain import format_routing

    links = ", ".join(f"{s}={e}" for s, e in data["links"].items())
    lines = [f"{data['kind']} {data['record']}  links: {links}", f"tags: {', '.join(data['tags']) or '-'}"]
    state = data.get("state") or {}
    if state:
        shown = {k: ", ".join(v) if isinstance(v, list) else v for k, v in state.items()}
        lines.append("state: " + ", ".join(f"{k} {'-' if v in (None, '') else v}" for k, v in shown.items()))
    sla = data.get("sla") or {}
    if sla:
        lines.append("sla: " + ", ".join(f"{k.replace('_', ' ')} {v or '-'}" for k, v in sla.items()))
    for f in data["fields"]:
        lines.append(
            f"  {f['field']} = {f['value']!r}  (owner {f['owner']}, {f['policy']}; "
            f"set by {f['set_by'] or '-'} at {f['set_at'] or '-'}; sync to {', '.join(f['sync_to']) or '-'})"
        )
        lines.extend(f"      {_history_line(h)}" for h in f["history"])
    if data["rules"]:
        if any(e["set"] != "sla" for e in data["rules"]):
            lines.append("rules, as the ticket is now, each with what it saw each time it fired:")
        else:
            lines.append("SLA policies, as the ticket is now:")
        lines.extend(f"  {line}" for line in format_rules(data["rules"]).splitlines())
    if data.get("disabled_rules"):
        lines.append(f"rules disabled (enabled = false), not run: {', '.join(data['disabled_rules'])}")
    if data.get("routing"):
        lines.append("routing, each time it chose an agent:")
        for routing in data["routing"]:
            lines.extend(format_routing(routing, "  "))
    if data["events"]:
        lines.append("history:")
        lines.extend(f"  {_history_line(e)}" for e in data["events"])
    return "\n".join(lines)
