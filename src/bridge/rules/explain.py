"""``bridge explain``: every rule (and SLA policy) against one ticket, with each leaf's value and why not.

One entry per rule, in run order::

    {"rule": "billing-to-billing-team", "set": "routing", "priority": 20, "matched": false,
     "leaves": [{"where": "rules[1].when.any[0].tag", "field": "ticket.tags", "op": "tag",
                 "expected": "billing/*", "actual": ["bug/sev1"], "result": false}, ...],
     "why_not": ["none of these holds: ticket has no tag matching 'billing/*' ...; ticket.text ..."],
     "then": [{"assign": {"skill": "billing"}}]}

SLA policies follow with ``"set": "sla"`` and ``"chosen"`` (the first matching policy applies).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from bridge.model import format_time
from bridge.rules.conditions import Condition, Context, LeafTrace

if TYPE_CHECKING:
    from bridge.rules.engine import CompiledRule


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def leaf_dict(trace: LeafTrace) -> dict[str, Any]:
    """One leaf trace as JSON-ready data."""
    out = {
        "where": _where(trace.where),
        "field": trace.field,
        "op": trace.op,
        "expected": _jsonable(trace.expected),
        "actual": _jsonable(trace.actual),
        "result": trace.result,
    }
    if trace.op in ("changed", "from", "to"):
        out["previous"] = _jsonable(trace.previous)
    return out


def _entry(cond: Condition, ctx: Context) -> dict[str, Any]:
    matched = cond.evaluate(ctx)
    return {
        "matched": matched,
        "leaves": [leaf_dict(t) for t in cond.trace(ctx)],
        "why_not": [] if matched else cond.reasons(ctx),
    }


def explain_rules(rules: Sequence[CompiledRule], ctx: Context) -> list[dict[str, Any]]:
    """Every rule in run order: name, set, priority, matched, leaves (value and result), why not, actions."""
    out = []
    for rule in rules:
        entry: dict[str, Any] = {"rule": rule.name, "set": rule.set, "priority": rule.priority}
        entry.update(_entry(rule.condition, ctx))
        entry["then"] = rule.then
        out.append(entry)
    return out


def explain_policies(policies: Sequence[tuple[str, Condition]], ctx: Context) -> list[dict[str, Any]]:
    """Every SLA policy in order; ``chosen`` marks the first that matches (the one that applies)."""
    out = []
    chosen = False
    for name, cond in policies:
        entry: dict[str, Any] = {"rule": name, "set": "sla"}
        entry.update(_entry(cond, ctx))
        entry["chosen"] = entry["matched"] and not chosen
        chosen = chosen or entry["matched"]
        out.append(entry)
    return out


def format_explain(entries: Sequence[dict[str, Any]]) -> str:
    """The entries as text, one block per rule: a mark, name and set, then each leaf or the reasons."""
    lines = []
    for e in entries:
        mark = "✓" if e["matched"] else "✗"
        extra = " (applies)" if e.get("chosen") else ""
        lines.append(f"{mark} {e['rule']} [{e['set']}]{extra}")
        for leaf in e["leaves"]:
            ok = "yes" if leaf["result"] else "no "
            lines.append(f"    {ok} {leaf['field']} {leaf['op']} {leaf['expected']!r}: {leaf['actual']!r}")
        lines.extend(f"    why not: {reason}" for reason in e["why_not"])
    return "\n".join(lines)


__all__ = ["explain_policies", "explain_rules", "format_explain", "leaf_dict"]
