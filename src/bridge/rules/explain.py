"""``bridge explain``: every rule (and SLA policy) against one ticket, with each leaf's value and why not.

One entry per rule, in run order::

    {"rule": "billing-to-billing-team", "set": "routing", "priority": 20, "matched": false,
     "leaves": [{"where": "rules[1].when.any[0].tag", "field": "ticket.tags", "op": "tag",
                 "expected": "billing/*", "actual": ["bug/sev1"], "result": false}, ...],
     "why_not": ["none of these holds: ticket has no tag matching 'billing/*' ...; ticket.text ..."],
     "then": [{"assign": {"skill": "billing"}}]}

SLA policies follow with ``"set": "sla"`` and ``"chosen"`` (the first matching policy applies).

The ticket is explained at rest, between events: a ``changed``/``from``/``to`` leaf is about an event, so it
has no result (``"result": null, "event": true``). A condition those leaves decide has ``"matched": null`` and
``"on_event"`` lists them: it holds only in an event that makes them true.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from bridge.model import format_time
from bridge.rules.conditions import Condition, Context, LeafTrace, phrase

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


def leaf_dict(trace: LeafTrace, in_event: bool = False) -> dict[str, Any]:
    """One leaf trace as JSON-ready data. At rest (between events) a leaf about an event has no result;
    ``in_event``: evaluated in an event, it has one, and ``previous``, the value before the event."""
    event = trace.op in EVENT_OPS
    out = {
        "where": _where(trace.where),
        "field": trace.field,
        "op": trace.op,
        "expected": _jsonable(trace.expected),
        "actual": _jsonable(trace.actual),
        "result": None if event and not in_event else trace.result,
    }
    if event:
        out["event"] = True
        if in_event:
            out["previous"] = _jsonable(trace.previous)
    return out


EVENT_OPS = ("changed", "from", "to")


def _about_event(cond: Condition) -> bool:
    return cond.kind == "leaf" and getattr(cond, "op", None) in EVENT_OPS


def _children(cond: Condition) -> tuple[Condition, ...]:
    children: tuple[Condition, ...] = getattr(cond, "children", ())
    return children


def settle(cond: Condition, ctx: Context) -> bool | None:
    """Whether ``cond`` holds for the ticket at rest; None when that depends on an event (changed/from/to).

    Three-valued: ``all`` fails when one part fails whatever the event, ``any`` holds when one part holds.
    """
    if _about_event(cond):
        return None
    if cond.kind not in ("all", "any", "none"):
        return cond.evaluate(ctx)
    results = [settle(c, ctx) for c in _children(cond)]
    if cond.kind == "all":
        return False if False in results else (None if None in results else True)
    held = True if True in results else (None if None in results else False)
    if cond.kind == "any":
        return held
    return None if held is None else not held


def _why_not(cond: Condition, ctx: Context) -> list[str]:
    # the reasons of the parts that fail whatever the event (settle is False)
    kind = cond.kind
    if kind not in ("all", "any", "none"):
        return cond.reasons(ctx)
    children = _children(cond)
    if kind == "all":
        return [r for c in children if settle(c, ctx) is False for r in _why_not(c, ctx)]
    if kind == "any":
        inner = [r for c in children for r in _why_not(c, ctx)]
        return ["none of these holds: " + "; ".join(inner)] if len(inner) > 1 else inner
    out = []
    for child in children:
        if settle(child, ctx):
            leaves = [t.describe() for t in child.trace(ctx) if t.result and t.op not in EVENT_OPS]
            out.append("excluded by: " + "; ".join(leaves))
    return out


def _event_leaves(cond: Condition, negated: bool = False) -> list[str]:
    if _about_event(cond):
        leaf: Any = cond
        text = f"{leaf.field} {leaf.op} {_jsonable(leaf.expected)!r}"
        return [f"not ({text})" if negated else text]
    # under `none` a part must not hold: its leaves read the other way round
    inner = negated != (cond.kind == "none")
    return [text for c in _children(cond) for text in _event_leaves(c, inner)]


def tree(cond: Condition, ctx: Context, in_event: bool = False) -> dict[str, Any]:
    """The condition as written, each group (``all``/``any``/``none``) with its result and its parts, each
    leaf as :func:`leaf_dict` gives it: what the flat leaf list cannot show, which group decided."""
    kind = cond.kind
    if kind in ("all", "any", "none"):
        result = cond.evaluate(ctx) if in_event else settle(cond, ctx)
        return {"group": kind, "result": result, "parts": [tree(c, ctx, in_event) for c in _children(cond)]}
    traces = cond.trace(ctx)
    if len(traces) != 1:  # (a condition that always holds: no leaf at all)
        return {"group": "all", "result": True, "parts": [leaf_dict(t, in_event) for t in traces]}
    return leaf_dict(traces[0], in_event)


def _entry(cond: Condition, ctx: Context, in_event: bool = False) -> dict[str, Any]:
    matched = cond.evaluate(ctx) if in_event else settle(cond, ctx)
    out: dict[str, Any] = {
        "matched": matched,
        "leaves": [leaf_dict(t, in_event) for t in cond.trace(ctx)],
        "tree": tree(cond, ctx, in_event),
        "why_not": (cond.reasons(ctx) if in_event else _why_not(cond, ctx)) if matched is False else [],
    }
    if matched is None:
        out["on_event"] = _event_leaves(cond)
    return out


def explain_rules(
    rules: Sequence[CompiledRule], ctx: Context, in_event: bool = False
) -> list[dict[str, Any]]:
    """Every rule in run order: name, set, priority, matched, leaves (value and result), the condition's
    tree, why not, actions. ``in_event``: ``ctx`` is an event's (a ``changed`` leaf has a result)."""
    out = []
    for rule in rules:
        entry: dict[str, Any] = {"rule": rule.name, "set": rule.set, "priority": rule.priority}
        entry.update(_entry(rule.condition, ctx, in_event))
        entry["then"] = rule.then
        out.append(entry)
    return out


def firing(
    rule: CompiledRule, ctx: Context, at: datetime | None, after: list[dict[str, str]]
) -> dict[str, Any]:
    """What a rule saw when it fired, taken just before its actions ran: its time, each condition's value
    and result in that event, and ``after``, the earlier rules of the same event whose actions changed what
    it reads (``{"rule", "path"}``: how a chain made it match)."""
    entry: dict[str, Any] = {"at": format_time(at)}
    entry.update(_entry(rule.condition, ctx, in_event=True))
    # kept with every decision the firing makes (the daemon's audit log): the tree alone (the leaves are in
    # it), each long text cut to the part the leaf looked at, so customer text is not copied whole
    del entry["leaves"]
    entry["tree"] = _compact_tree(entry["tree"])
    entry["after"] = after
    return entry


SNIPPET = 120  # characters of a long text value kept in a firing's explanation


def leaves_of(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """The leaves of a condition tree (:func:`tree`), in written order."""
    if "group" not in tree:
        return [tree]
    return [leaf for part in tree["parts"] for leaf in leaves_of(part)]


def _compact_tree(node: dict[str, Any]) -> dict[str, Any]:
    if "group" in node:
        return {**node, "parts": [_compact_tree(p) for p in node["parts"]]}
    out = dict(node)
    for key in ("actual", "previous"):
        if key in out:
            out[key] = _snippet(out[key], node)
    return out


def _snippet(value: Any, leaf: dict[str, Any]) -> Any:
    """A long text cut around what the leaf looked for (a phrase, a regex's match), else its start."""
    if isinstance(value, list):
        return [_snippet(v, leaf) for v in value]
    if not isinstance(value, str) or len(value) <= SNIPPET:
        return value
    start = 0
    expected = leaf.get("expected")
    if leaf.get("op") == "contains" and isinstance(expected, str):
        found = phrase(value).find(phrase(expected))
        start = max(0, found - SNIPPET // 3) if found >= 0 else 0
    elif leaf.get("op") == "matches" and isinstance(expected, str):
        try:
            match = re.search(expected, value)
        except re.error:
            match = None
        start = max(0, match.start() - SNIPPET // 3) if match else 0
    # (phrase() squashes white space, so a phrase's place is near, not exactly at, the same index)
    cut = value[start:start + SNIPPET]
    return ("…" if start else "") + cut + ("…" if start + SNIPPET < len(value) else "")


def explain_policies(
    policies: Sequence[tuple[str, Condition]], ctx: Context, in_event: bool = False
) -> list[dict[str, Any]]:
    """Every SLA policy in order; ``chosen`` marks the first that matches (the one that applies), and
    ``behind`` names it in a later one that matches too."""
    out = []
    chosen: str | None = None
    for name, cond in policies:
        entry: dict[str, Any] = {"rule": name, "set": "sla"}
        entry.update(_entry(cond, ctx, in_event))
        entry["chosen"] = entry["matched"] is True and chosen is None
        if entry["matched"] is True and chosen is not None:
            entry["behind"] = chosen
        chosen = name if entry["chosen"] else chosen
        out.append(entry)
    return out


def format_explain(entries: Sequence[dict[str, Any]]) -> str:
    """The entries as text, one block per rule: a mark, name and set, then each leaf or the reasons."""
    return "\n".join(line for e in entries for line in _entry_lines(e))


_YES = {True: "yes", False: "no ", None: "?  "}


def _leaf_line(leaf: dict[str, Any]) -> str:
    said = f"{leaf['field']} {leaf['op']} {leaf['expected']!r}"
    if leaf.get("event") and leaf["result"] is None:
        return f"n/a {said}: about an event, not the ticket at rest (now {leaf['actual']!r})"
    if leaf.get("event"):
        return f"{_YES[leaf['result']]} {said}: {leaf.get('previous')!r} -> {leaf['actual']!r}"
    return f"{_YES[leaf['result']]} {said}: {leaf['actual']!r}"


def _tree_lines(node: dict[str, Any], indent: str, top: bool = True) -> list[str]:
    """A condition tree as lines: a group's parts indented under ``any: yes``; the rule's own top-level
    ``all`` (its mark says whether it holds) without a heading of its own."""
    if "group" not in node:
        return [indent + _leaf_line(node)]
    if top and node["group"] == "all":
        return [line for part in node["parts"] for line in _tree_lines(part, indent, False)]
    head = f"{indent}{node['group']}: {_YES[node['result']].rstrip()}"
    return [head] + [line for part in node["parts"] for line in _tree_lines(part, indent + "  ", False)]


def _condition_lines(e: dict[str, Any], indent: str) -> list[str]:
    if "tree" in e:
        lines = _tree_lines(e["tree"], indent)
    else:
        lines = [indent + _leaf_line(leaf) for leaf in e["leaves"]]
    lines.extend(f"{indent}why not: {reason}" for reason in e.get("why_not") or ())
    if e.get("on_event"):
        lines.append(f"{indent}holds only in an event where: {'; '.join(e['on_event'])}")
    return lines


def _firing_lines(f: dict[str, Any], indent: str) -> list[str]:
    after = "".join(f", after {a['rule']} changed {a['path']}" for a in f.get("after") or ())
    return [f"{indent}when it fired, at {f['at']}{after}:", *_condition_lines(f, indent + "  ")]


def _entry_lines(e: dict[str, Any]) -> list[str]:
    mark = {True: "✓", False: "✗", None: "?"}[e["matched"]]
    extra = " (applies)" if e.get("chosen") else (
        f" (matches, but {e['behind']} comes first and applies)" if e.get("behind") else "")
    if e.get("fired_here"):
        chain = ", ".join(f"{a['rule']} changed {a['path']}" for a in e.get("after") or ())
        extra += f" — fired here{', after ' + chain if chain else ''}"
    elif "fired" in e:
        extra += f" — fired at {', '.join(e['fired'])}" if e["fired"] else (
            " — stated no threshold" if e["set"] == "sla" else
            # (a rule fires as it starts to hold: one that holds with nothing recorded changed nothing)
            " — holds; no decision of it is recorded (nothing to change, or nobody free, when it fired; or "
            "it has not run since what it reads changed)" if e["matched"] else " — did not fire")
    lines = [f"{mark} {e['rule']} [{e['set']}]{extra}"]
    if e.get("budgets") or e["set"] == "sla":
        budgets = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (e.get("budgets") or {}).items())
        clock = f"calendar {e['calendar']}" if e.get("calendar") else "wall clock"
        line = f"    {budgets or 'no budget'}; {clock}"
        if "pause_on" in e:
            line += f"; pauses on {', '.join(e['pause_on']) or 'nothing'}"
        if e.get("escalate"):
            line += "; escalates " + ", ".join(f"after {x['after']} to {x['to']}" for x in e["escalate"])
        lines.append(line)
    firings = e.get("firings") or []
    for f in firings:
        lines += _firing_lines(f, "    ")
    if firings and "tree" in e and _compact_tree(e["tree"]) == firings[-1].get("tree"):
        lines.append("    now: as when it last fired")  # (each value the same: not repeated)
        return lines
    if firings:
        lines.append("    now:")
    lines += _condition_lines(e, "      " if firings else "    ")
    return lines


def format_routing(routing: dict[str, Any], indent: str = "", label: str = "") -> list[str]:
    """Why routing chose an agent (:meth:`Router.explain`, with the deciding ``rule`` and ``at`` when
    known): a heading, then each agent with its open tickets and its part in the pick."""
    asked = ", ".join(f"{k} {v!r}" for k, v in routing.get("asked", {}).items()) or "anyone"
    fallback = f", fallback {routing['fallback']}" if routing.get("fallback") else ""
    when = f"{routing['at']} " if routing.get("at") else ""
    head = (f"{indent}{label}{when}to {routing.get('to') or 'nobody: it waits in the queue'} ("
            f"{routing.get('rule', 'routing')}: "
            f"{routing['strategy']}{fallback}; asked {asked})")
    lines = [head]
    for a in routing.get("agents", ()):
        hours = "" if a.get("in_hours") in (None, True) else ", outside hours"
        lines.append(f"{indent}  {a['agent']}: {a['why']} ({a['load']} open of {a['capacity']}, "
                     f"{a['status']}{hours})")
    if routing.get("not_fitting"):
        lines.append(f"{indent}  and {routing['not_fitting']} more agents who do not fit what was asked")
    return lines


def _placeless(value: Any) -> Any:
    """An entry without its places in the file (``where``): what it says, wherever it is written."""
    if isinstance(value, dict):
        return {k: _placeless(v) for k, v in value.items() if k != "where"}
    if isinstance(value, list):
        return [_placeless(v) for v in value]
    return value


def format_explain_diff(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> str:
    """Two configs' entries for one ticket as text: a rule alike under both once (indented), else its
    old block marked ``-`` and its new one ``+``; in the new config's order, then those only the old has."""
    olds = {(e["set"] == "sla", e["rule"]): e for e in old}
    news = {(e["set"] == "sla", e["rule"]) for e in new}
    lines: list[str] = []
    for e in new:
        before = olds.get((e["set"] == "sla", e["rule"]))
        if before is not None and _placeless(before) == _placeless(e):
            # (a rule or policy that only moved in the file is the same but for its places)
            lines += [f"  {line}" for line in _entry_lines(e)]
            continue
        if before is not None:
            lines += [f"- {line}" for line in _entry_lines(before)]
        lines += [f"+ {line}" for line in _entry_lines(e)]
    for e in old:
        if (e["set"] == "sla", e["rule"]) not in news:
            lines += [f"- {line}" for line in _entry_lines(e)]
    return "\n".join(lines)


__all__ = [
    "EVENT_OPS",
    "explain_policies",
    "explain_rules",
    "firing",
    "format_explain",
    "format_explain_diff",
    "format_routing",
    "leaf_dict",
    "leaves_of",
    "settle",
    "tree",
]
