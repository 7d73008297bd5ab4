"""The rules engine and the Desk: rule sets, routing, escalation, SLA clocks, follow-ups and auto-close.

Per ticket event the :class:`Desk` runs, in this order:

1. the rules: the ``triggers`` set, then ``escalation``, then ``routing`` (triggers first so that what they
   set — priority, tags, fields — is what escalation and routing see; routing last because it only assigns).
   Within a set rules run by ``priority`` (lower first), ties by name. A rule fires when its condition starts
   to hold: on the first event where it holds, and again only after an event where it did not (so the bridge
   does not fight a human who lowered the priority a rule raised, nor notify twice for one episode); a rule
   on the event itself (``changed``/``from``/``to``) fires on every event in which it holds. An action's
   change can make other rules match: rules are evaluated again, pass after pass, up to :data:`MAX_PASSES`
   passes; a rule fires at most once per event, so rules feeding each other cannot loop;
2. the built-in triggers: an account's volume spike (a check-in task) and low classification confidence (a
   review);
3. the status bookkeeping: open-ticket loads, the queue, a reopened ticket whose owner is away is rerouted,
   follow-up and auto-close timers;
4. default routing of a ticket nobody holds (the ``[routing]`` strategy), or the queue when nobody fits;
5. the SLA clocks: the first ``[[sla]]`` whose ``when`` matches is the policy (chosen again after each event).

Every change the Desk makes is a :class:`~bridge.model.Decision`; every decision carries ``detail["key"]``, a
stable idempotency key (ticket, kind, rule, instant, object) by which the outbox sends each side effect once.

Rule results are cached per ticket: a rule whose inputs have not changed since it was last evaluated and that
does not look at the event itself (``changed``/``from``/``to``) has the same result, so an event evaluates
again only the rules reading what changed. Of those, a rule whose guard (:func:`rule_guard`: a value it needs,
a tag, a word of the text) is absent cannot match and is not evaluated. Conditions run as generated functions
(:func:`~bridge.rules.conditions.evaluator`), sets of rules as bit masks over the run order. The outcome is
the same as evaluating every rule's condition tree on every event (tests/rules check it on random rules).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from bridge.durations import parse_duration
from bridge.errors import FieldValueError
from bridge.fields import FieldType, coerce, merge, to_json
from bridge.model import BRIDGE, PROPOSED, Decision, FieldValue, Record, format_time, parse_time
from bridge.rules.calendar import BusinessCalendar
from bridge.rules.conditions import (
    EMAIL_PATHS,
    Condition,
    Context,
    compile_condition,
    evaluator,
    getter,
    nested,
    path_values,
    paths_read,
    phrase,
    raw_leaves,
    reader,
    regex_factors,
    uses_event,
    with_synonyms,
)
from bridge.rules.escalation import VolumeWatch, low_confidence
from bridge.rules.routing import ANY, Request, Router
from bridge.rules.sla import TicketSla
from bridge.settings import Config, RuleConfig, SlaConfig
from bridge.taxonomy import TagMapper

MAX_PASSES = 10
_INSTANT = timedelta(microseconds=1)  # what is due strictly before an instant fires before it
log = logging.getLogger("bridge.rules")
SET_ORDER = {"triggers": 0, "escalation": 1, "routing": 2}
DONE = frozenset({"resolved", "closed"})
ATTRS_SET = ("priority", "status", "team")
_UNKNOWN = object()  # a snapshot slot that never equals a value: "evaluate its readers again"


def _same_person(a: Any, b: Any) -> bool:
    """Whether two assignees are one (emails compare without regard to case; a blank is nobody, as None)."""
    a, b = a or None, b or None
    return bool(a == b) or (isinstance(a, str) and isinstance(b, str) and a.casefold() == b.casefold())


def _norm(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _digest(value: Any) -> str:
    """A short digest of a written value, for a decision's key: the key is a database key (PostgreSQL's
    index takes 2,704 bytes at most), and a rule may set a long text."""
    text = value if type(value) is str else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 64 else hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


# ---------------------------------------------------------------- compiled rules


@dataclass(eq=False)
class CompiledRule:
    """A rule ready to run: its condition compiled, its actions parsed, what it reads and writes."""

    name: str
    set: str
    priority: int
    condition: Condition
    actions: tuple[tuple[str, Any], ...]
    reads: frozenset[str]
    writes: frozenset[str]
    uses_event: bool
    then: list[dict[str, Any]] = field(default_factory=list)
    when: dict[str, Any] = field(default_factory=dict)


def _actions(rule: RuleConfig, types: Mapping[str, FieldType]) -> tuple[tuple[str, Any], ...]:
    out: list[tuple[str, Any]] = []
    for action in rule.then:
        for verb, arg in action.items():
            if verb == "assign":
                out.append((verb, Request.from_action(arg)))
            elif verb == "escalate":
                out.append((verb, str(arg)))
            elif verb == "set" and isinstance(arg, Mapping):
                sets = tuple(_setter(k, v, types) for k, v in arg.items() if _settable(k, v, types))
                out.append((verb, sets))
            elif verb in ("add_tags", "remove_tags"):
                out.append((verb, (arg,) if isinstance(arg, str) else tuple(str(t) for t in arg)))
            elif verb == "notify":
                out.append((verb, dict(arg) if isinstance(arg, Mapping) else {"to": str(arg)}))
            elif verb == "review":
                out.append((verb, arg if isinstance(arg, str) else rule.name))
    return tuple(out)


def _settable(name: str, value: Any, types: Mapping[str, FieldType]) -> bool:
    if name in ATTRS_SET or name == "assignee":
        return True
    ft = types.get(name)
    if ft is None:
        return False
    try:
        coerce(ft, value)
    except FieldValueError:
        return False  # bridge check reports it; the rule's other actions still run
    return True


def _setter(name: str, value: Any, types: Mapping[str, FieldType]) -> tuple[str, Any, Any, str]:
    """(name, value, JSON value, kind) where kind is attr | assignee | field."""
    if name == "assignee":
        return name, value, value, "assignee"
    if name in ATTRS_SET:
        return name, value, value, "attr"
    ft = types[name]
    typed = coerce(ft, value)
    return name, typed, to_json(ft, typed), "field"


def _mapped_paths(mapper: TagMapper, config: Config, tag: str) -> set[str]:
    """The PATHs the ``[[tags]]`` mappings of ``tag`` set, matched as the pipeline matches a ticket's tags
    (any letter case, normalised, through synonyms)."""
    return {f"ticket.{k}" for i in mapper.mappings_for(tag) for k in config.tags[i].set}


def rule_writes(rule: RuleConfig, config: Config, mapper: TagMapper | None = None) -> set[str]:
    """The PATHs a rule's actions can change (``mapper``: the config's tag mapper, to build it once)."""
    out: set[str] = set()
    mapper = mapper or TagMapper(config)
    for action in rule.then:
        for verb, arg in action.items():
            if verb == "set" and isinstance(arg, Mapping):
                out.update(f"ticket.{k}" for k in arg)
            elif verb == "add_tags" or verb == "remove_tags":
                out.add("ticket.tags")
                if verb == "add_tags":
                    # a tag mapping applies to an added tag only; a value of another shape (bridge check
                    # reports it) maps nothing
                    for tag in _tags_written(rule, only=action):
                        out |= _mapped_paths(mapper, config, tag)
            elif verb == "assign":
                out.add("ticket.assignee")
            elif verb == "escalate":
                out.add("ticket.escalations")
    return out


def compile_rules(config: Config) -> list[CompiledRule]:
    """The enabled rules in run order: set (triggers, escalation, routing), priority, name."""
    # a rule sets fields of the ticket only (bridge check rejects a set of an account or contact field)
    types = {n: t for n, t in config.field_types().items() if config.fields[n].kind == "ticket"}
    rules = []
    mapper = TagMapper(config)
    synonyms = config.taxonomy.synonyms  # (a tag glob holds for the tags that mean the same, too)
    for i, rule in enumerate(config.rules):
        if not rule.enabled:
            continue
        when = with_synonyms(rule.when, synonyms)
        rules.append(CompiledRule(
            rule.name, rule.set, rule.priority, compile_condition(when, ("rules", i, "when")),
            _actions(rule, types), frozenset(paths_read(when)),
            frozenset(rule_writes(rule, config, mapper)),
            uses_event(when), list(rule.then), dict(when),
        ))
    rules.sort(key=lambda r: (SET_ORDER.get(r.set, 9), r.priority, r.name))
    return rules


def rule_cycles(config: Config) -> list[str]:
    """Warnings for rules whose actions write what another's conditions read, round and round.

    One message per cycle (a strongly connected group of the write -> read graph with two rules or more):
    ``a -> b -> a (a writes ticket.priority read by b; b writes ticket.tags read by a)``. A rule that writes
    what it reads itself is not reported (it fires at most once per event). A write feeds a reader only if it
    can make the reader's condition start to hold: where a rule sets a constant and the reader's leaves on
    that path compare with constants (``eq``, ``ne``, ``in``, ``not_in``, ``to``), the value must be one the
    leaves can match (or, under ``none``, fail to); a tag must be added to match a tag glob (or removed, under
    ``none``). Anything not known so is taken to feed, so a real cycle is never missed.
    """
    rules = [r for r in config.rules if r.enabled]
    types = config.field_types()
    reads = [paths_read(r.when) for r in rules]
    mapper = TagMapper(config)
    writes = [rule_writes(r, config, mapper) for r in rules]
    added = [_tags_written(r) for r in rules]
    removed = [_tags_written(r, "remove_tags") for r in rules]
    every_tag = [_reads_tags_by_field(r.when) for r in rules]
    unknown = object()  # a written value rule_cycles cannot compare: it may match anything

    def constant(path: str, value: Any) -> Any:
        name = path.removeprefix("ticket.")
        if name in ATTRS_SET:
            typed = value
        elif name in types:
            try:
                typed = coerce(types[name], value)  # what the ticket then holds: "sev-1" may become "Sev-1"
            except FieldValueError:
                return unknown
        else:
            return unknown  # an assignee compares by letter case or not; lists and dates by their own rules
        return typed if type(typed) in (str, int, float, bool) else unknown

    def set_values(rule: RuleConfig) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for action in rule.then:
            arg = action.get("set")
            if isinstance(arg, Mapping):
                for name, value in arg.items():
                    out.setdefault(f"ticket.{name}", []).append(constant(f"ticket.{name}", value))
        return out

    sets = [set_values(r) for r in rules]
    leaves = [_signed_leaves(r.when) for r in rules]
    # the paths a rule writes through a [[tags]] mapping (of a tag it adds), whatever it also sets
    mapped = [{p for t in added[i] for p in _mapped_paths(mapper, config, t)} for i in range(len(rules))]

    def feeds_path(i: int, j: int, path: str) -> bool:
        if path == "ticket.tags":
            if every_tag[j]:
                return True
            globs = [(leaf["tag"], neg) for leaf, neg in leaves[j] if isinstance(leaf.get("tag"), str)]
            # an added tag can make a glob match; only a removed one can make it stop matching
            return any(fnmatchcase(t, g) for g, neg in globs for t in (removed[i] if neg else added[i]))
        values = sets[i].get(path)
        # written otherwise too (a tag mapping, an assign, an escalate): its value is not known
        if values is None or unknown in values or path in mapped[i]:
            return True
        on_path = [(leaf, neg) for leaf, neg in leaves[j] if leaf.get("field") == path]
        return not on_path or any(_leaf_holds(leaf, v) is not neg for leaf, neg in on_path for v in values)

    def feeds(i: int, j: int) -> set[str]:
        """The paths through which i's actions can make j's condition start to hold."""
        return {path for path in writes[i] & reads[j] if feeds_path(i, j, path)}

    fed = {(i, j): feeds(i, j) for i in range(len(rules)) for j in range(len(rules)) if i != j}
    edges = {i: [j for j in range(len(rules)) if j != i and fed[i, j]] for i in range(len(rules))}
    out = []
    for group in _components(edges):
        if len(group) < 2:
            continue
        members = set(group)
        start = min(group)
        path = _cycle_through(start, edges, members)
        steps = [f"{rules[a].name} writes {', '.join(sorted(fed[a, b]))} read by {rules[b].name}"
                 for a, b in itertools.pairwise(path)]
        names = " -> ".join(rules[k].name for k in path)
        others = sorted(rules[k].name for k in members - set(path))
        extra = f"; also in the loop: {', '.join(others)}" if others else ""
        out.append(f"{names} ({'; '.join(steps)}{extra})")
    return out


def _tags_written(
    rule: RuleConfig, verb: str = "add_tags", only: Mapping[str, Any] | None = None
) -> set[str]:
    """The tags a rule's ``add_tags`` (or ``remove_tags``) actions name, or those of the one action ``only``;
    a value that is neither a tag nor a list of them names none (bridge check reports it)."""
    out: set[str] = set()
    for action in rule.then if only is None else [only]:
        arg = action.get(verb)
        if isinstance(arg, str):
            out.add(arg)
        elif isinstance(arg, list):
            out.update(str(t) for t in arg)
    return out


def _reads_tags_by_field(cond: Any) -> bool:
    """Whether a condition reads the tags otherwise than through tag globs (a ``ticket.tags`` field leaf)."""
    return any(leaf.get("field") == "ticket.tags" for leaf in raw_leaves(cond))


def _signed_leaves(cond: Any, negated: bool = False) -> list[tuple[Mapping[str, Any], bool]]:
    """Each leaf of a condition and whether it sits under an odd number of ``none`` (there it helps the rule
    hold by failing)."""
    if not isinstance(cond, Mapping):
        return []
    out = [(cond, negated)] if "tag" in cond or "field" in cond else []
    for key in ("all", "any", "none"):
        children = cond.get(key)
        if isinstance(children, list):
            for child in children:
                out.extend(_signed_leaves(child, negated != (key == "none")))
    return out


def _same(value: Any, expected: Any) -> bool | None:
    """Whether a written constant equals a leaf's, or None when only the runtime's coercion can tell."""
    kinds = (type(value), type(expected))
    if kinds[0] is kinds[1] or set(kinds) == {int, float}:
        return bool(value == expected)
    return None  # a number as text, a date...: the runtime has its own rules, so it may match


def _leaf_holds(leaf: Mapping[str, Any], value: Any) -> bool | None:
    """Whether a leaf's operators all hold of ``value`` (True), one surely fails (False), or it cannot be
    told (None)."""
    results: list[bool | None] = []
    for op, expected in leaf.items():
        if op in ("eq", "ne", "to"):
            hit = _same(value, expected)
            results.append(None if hit is None else hit != (op == "ne"))
        elif op in ("in", "not_in") and isinstance(expected, list):
            hits = [_same(value, e) for e in expected]
            hit = True if True in hits else None if None in hits else False
            results.append(None if hit is None else hit != (op == "not_in"))
        elif op != "field":
            results.append(None)
    if False in results:
        return False
    return True if all(results) else None


def _components(edges: Mapping[int, list[int]]) -> list[list[int]]:
    # Tarjan's strongly connected components, iterative (rule lists can be long)
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    out: list[list[int]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, pos = work.pop()
            if pos == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = edges[node]
            if pos < len(succ):
                work.append((node, pos + 1))
                nxt = succ[pos]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            for nxt in succ:
                if nxt in on_stack:
                    low[node] = min(low[node], low[nxt])
            if low[node] == index[node]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == node:
                        break
                out.append(sorted(group))
    return out


def _cycle_through(start: int, edges: Mapping[int, list[int]], members: set[int]) -> list[int]:
    # the shortest cycle from start back to start inside its component (breadth first)
    parent: dict[int, int] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in edges[node]:
                if nxt not in members:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parent:
                    parent[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return [start, start]  # pragma: no cover - a component of two or more always has a cycle


# ---------------------------------------------------------------- guards: which rules can match at all

Atom = tuple[str, str, Any]  # ("eq", PATH, value) | ("tag", "", tag) | ("prefix", "", tag prefix)
_SCALARS = (str, int, float, bool)


def rule_guard(cond: Any) -> list[Atom] | None:
    """Atoms one of which must hold whenever ``cond`` holds (None: no such cheap test, always evaluate).

    An ``eq``/``in``/``to`` leaf on a scalar gives value atoms, a tag leaf its literal tag or the literal
    prefix of its glob; ``all`` takes its most selective child's guard, ``any`` the union of its children's
    when each has one. A rule whose guard has no holding atom cannot match, so it is not evaluated.
    """
    if not isinstance(cond, Mapping) or not cond:
        return None
    options: list[list[Atom]] = []
    children = cond.get("all")
    if isinstance(children, list):
        options.extend(g for g in (rule_guard(c) for c in children) if g)
    children = cond.get("any")
    if isinstance(children, list) and children:
        guards = [rule_guard(c) for c in children]
        if all(guards):
            options.append([a for g in guards if g for a in g])
    tag = cond.get("tag")
    if isinstance(tag, str):
        cut = min((tag.find(c) for c in "*?[" if c in tag), default=-1)
        if cut < 0:
            options.append([("tag", "", tag)])
        elif cut > 0:
            options.append([("prefix", "", tag[:cut])])
    path = cond.get("field")
    if path == "ticket.text":
        options.extend(_text_atoms(cond))
    if isinstance(path, str) and path not in EMAIL_PATHS:  # (an email equals itself in any letter case)
        for op in ("eq", "to"):
            if _exact(cond.get(op)):
                options.append([("eq", path, cond[op])])
        values = cond.get("in")
        if isinstance(values, list) and values and all(_exact(v) for v in values):
            options.append([("eq", path, v) for v in values])
    if not options:
        return None
    return min(options, key=lambda g: (len(g), sum(a[0] == "prefix" for a in g)))


_LOOSE_TEXT = re.compile(r"\s*[-+]?(\d|\.\d)|\d{4}-\d{2}-\d{2}")


def _exact(value: Any) -> bool:
    """Whether only this very value can equal ``value`` (so a guard may look it up): not a number, which
    equals the same number sent as text, nor text that reads as a number or a date, which a number or a date
    in the data equals (conditions._equals)."""
    if type(value) is bool:
        return True
    return type(value) is str and _LOOSE_TEXT.match(value) is None


def _text_atoms(leaf: Mapping[str, Any]) -> list[list[Atom]]:
    # contains: the case-folded needle is in the case-folded text, whatever the text; matches: one of the
    # literals every match contains, lower-cased, is in the case-folded text when that text is ASCII
    out: list[list[Atom]] = []
    needle = leaf.get("contains")
    if isinstance(needle, str) and needle:
        out.append([("text", "", phrase(needle))])
    pattern = leaf.get("matches")
    if isinstance(pattern, str):
        factors = regex_factors(pattern)
        if factors is not None and all(f.isascii() for f in factors[0]):
            out.append([("ascii", "", f.lower()) for f in factors[0]])
    return out


class GuardIndex:
    """Rules by guard atom: the rules that can match a ticket, found with a few dictionary look-ups."""

    def __init__(self, conditions: Sequence[Any]) -> None:
        self.unguarded: set[int] = set()
        self.by_value: dict[str, dict[Any, set[int]]] = {}
        self.by_tag: dict[str, set[int]] = {}
        self.by_prefix: dict[str, set[int]] = {}
        self.path_rules: dict[str, set[int]] = {}
        self.by_text: dict[str, set[int]] = {}
        self.by_ascii: dict[str, set[int]] = {}
        for i, cond in enumerate(conditions):
            guard = rule_guard(cond)
            if guard is None:
                self.unguarded.add(i)
                continue
            for kind, path, value in guard:
                if kind == "eq":
                    self.by_value.setdefault(path, {}).setdefault(value, set()).add(i)
                    self.path_rules.setdefault(path, set()).add(i)
                elif kind == "tag":
                    self.by_tag.setdefault(value, set()).add(i)
                elif kind == "text":
                    self.by_text.setdefault(value, set()).add(i)
                elif kind == "ascii":
                    self.by_ascii.setdefault(value, set()).add(i)
                else:
                    self.by_prefix.setdefault(value, set()).add(i)
        self._bound = False

    def bind(self, slot_of: Mapping[str, int]) -> None:
        """Prepare :meth:`mask` for values read in slot order (every guarded path must have a slot)."""
        def bits(rules: set[int]) -> int:
            return sum(1 << i for i in rules)

        self._m_unguarded = bits(self.unguarded)
        self._m_tables = tuple(
            (slot_of[path], {v: bits(r) for v, r in table.items()}, bits(self.path_rules[path]))
            for path, table in self.by_value.items()
        )
        self._m_tag_slot = slot_of.get("ticket.tags") if (self.by_tag or self.by_prefix) else None
        self._m_by_tag = {t: bits(r) for t, r in self.by_tag.items()}
        self._m_prefixes = tuple((p, bits(r)) for p, r in self.by_prefix.items())
        self._m_texts = tuple((t, bits(r)) for t, r in self.by_text.items())
        self._m_asciis = tuple((t, bits(r)) for t, r in self.by_ascii.items())
        self._m_ascii_all = bits(set().union(*self.by_ascii.values()) if self.by_ascii else set())
        self._slot_paths = tuple(path for path, _n in sorted(slot_of.items(), key=lambda item: item[1]))
        self._bound = True

    def candidates(self, ctx: Context) -> set[int]:
        """Every rule that may match ``ctx`` (a superset of those that do), as rule indexes."""
        if not self._bound:
            paths = sorted({*self.by_value, "ticket.tags"})
            self.bind({path: n for n, path in enumerate(paths)})
        bits = self.mask(reader(self._slot_paths)(ctx), ctx)
        return {i for i in range(bits.bit_length()) if bits >> i & 1}

    def mask(self, values: Sequence[Any], ctx: Context) -> int:
        """:meth:`candidates` as a bit mask, from the values of the bound slots (lists as tuples)."""
        assert self._bound, "bind() first"
        out = self._m_unguarded
        for slot, table, every in self._m_tables:
            value = values[slot]
            if value is None:
                continue
            if type(value) in _SCALARS:
                hit = table.get(value)
                if hit:
                    out |= hit
            elif type(value) is tuple:
                for item in value:
                    hit = table.get(item) if type(item) in _SCALARS else every
                    if hit:
                        out |= hit
            else:
                out |= every  # dates and such compare after conversion: no hashing shortcut
        tag_slot = self._m_tag_slot
        if tag_slot is not None:
            tags = values[tag_slot]
            if tags:
                by_tag = self._m_by_tag
                for tag in tags:
                    hit = by_tag.get(tag)
                    if hit:
                        out |= hit
                for prefix, rules in self._m_prefixes:
                    for tag in tags:
                        if tag.startswith(prefix):
                            out |= rules
                            break
        texts, asciis = self._m_texts, self._m_asciis
        if texts:
            squashed = ctx._squashed or ctx.squashed_text
            for needle, rules in texts:
                if rules & ~out and needle in squashed:
                    out |= rules
        if asciis:
            if not (ctx._text or ctx.text).isascii():
                out |= self._m_ascii_all
            else:
                folded = ctx._folded or ctx.folded_text
                for literal, rules in asciis:
                    if rules & ~out and literal in folded:
                        out |= rules
        return out


# ---------------------------------------------------------------- the desk


@dataclass(slots=True, eq=False)
class _Ticket:
    record: Record
    created: datetime
    status: str = "open"
    sla: TicketSla | None = None
    sla_timer: datetime | None = None
    counted: str | None = None  # the agent whose load includes this ticket
    follow_due: datetime | None = None
    follow_sent: bool = False
    close_due: datetime | None = None
    reviewed: bool = False
    snap: tuple[Any, ...] | None = None
    holding: int = 0  # bit i: rule i's condition held when last evaluated
    events: int = 0  # events taken: tells apart the decisions of two events at one instant (their keys)
    # routing memory, for a rebuilt Desk that must take the ticket as the store holds it (hold_as): what it
    # was last routed for, and whom it had before its last assignment
    asked: tuple[Request, str] | None = None
    moved_from: str | None = None


Timer = tuple[datetime, int, str, str]
_NO_EVENT: Mapping[str, Any] = {}
_BUDGETS = ("first_response", "next_response", "resolution", "acknowledgement", "warn_before")


class Desk:
    """Routing, escalation, SLA clocks, follow-ups and auto-close for tickets, on an injected clock.

    Calls come in time order. :meth:`on_ticket` after the pipeline applied an event to the ticket,
    :meth:`on_agent_status` when an agent's status changes, :meth:`advance` to fire timers up to a time.
    """

    def __init__(self, config: Config, *, base_dir: Path | None = None) -> None:
        self.config = config
        tz = config.bridge.timezone
        self._calendars = {name: BusinessCalendar.from_config(cal, tz, base_dir)
                           for name, cal in config.calendars.items()}
        self._always_open = BusinessCalendar.always()
        self.rules = compile_rules(config)
        self._types = config.field_types()
        # the hot path works on bit masks over the rules in run order, slots of the paths they read, and
        # one generated function per condition (conditions.evaluator)
        slots = sorted({p for r in self.rules for p in r.reads})
        self._slot_of = {p: i for i, p in enumerate(slots)}
        self._getters = tuple(getter(p) for p in slots)
        self._read = reader(slots)
        readers: dict[str, list[int]] = {}
        for i, rule in enumerate(self.rules):
            for p in rule.reads:
                readers.setdefault(p, []).append(i)
        self._slot_readers = tuple(tuple(readers.get(p, ())) for p in slots)
        self._slot_masks = tuple(sum(1 << i for i in readers.get(p, ())) for p in slots)
        self._event_mask = sum(1 << i for i, r in enumerate(self.rules) if r.uses_event)
        self._tests = tuple(evaluator(r.condition, r.name) for r in self.rules)
        self._rule_bit = {r.name: 1 << i for i, r in enumerate(self.rules)}
        # tickets routing assigned outside the rules (default routing, the queue): when a rule reads the
        # assignee, their rules run again at once, as they would on an assignment a rule made (_settle)
        self._assignee_read = "ticket.assignee" in self._slot_of
        self._routed: list[_Ticket] = []
        self._event: tuple[_Ticket, Context] | None = None
        # the rules that fired in the event's own ticket so far: a second run of it in the same event (after
        # routing assigned it) does not fire them again, as a rule fires at most once per event
        self._event_fired = 0
        self._settling = False
        self._guards = GuardIndex([r.when for r in self.rules])
        self._guards.bind(self._slot_of)
        self._policies: list[tuple[SlaConfig, Condition, BusinessCalendar]] = [
            (p, compile_condition(p.when, ("sla", i, "when")),
             self._calendars[p.calendar] if p.calendar else self._always_open)
            for i, p in enumerate(config.sla)
        ]
        # (test, policy, calendar) in policy order: the hot path's view of _policies
        self._policy_tests = tuple((evaluator(cond, p.name), p, cal) for p, cond, cal in self._policies)
        # whether a condition looks at the event itself (changed/from/to): only then does on_ticket need the
        # values from before the event, and callers may pass {} otherwise
        self.reads_previous = any(r.uses_event for r in self.rules) or any(
            uses_event(p.when) for p in config.sla)
        # a tag a rule adds maps as the pipeline maps a ticket's tags (any letter case, synonyms), to the
        # fields the bridge owns
        self._owned = frozenset(
            n for n, f in config.fields.items() if f.owner == BRIDGE and f.kind == "ticket")
        # replay's recording: a field value its events gave stands against a tag a rule adds, as against the
        # event's own tags (the pipeline's authority)
        self.authority: str | None = None
        self._tag_mapper = TagMapper(config)
        self.router = Router(config, self._calendars)
        # the final state's deadlines: the acknowledgement's too when a policy gives it a budget
        self._due_keys = ("first_response_due", "next_response_due", "resolution_due") + (
            ("acknowledgement_due",) if any(p.acknowledgement for p in config.sla) else ())
        self._follow_after = parse_duration(config.follow_up.after) if config.follow_up else None
        self._close_after = parse_duration(config.auto_close.after) if config.auto_close else None
        self._volume = VolumeWatch()
        self._min_confidence = config.classify.min_confidence
        self._first_team = next(iter(config.teams), None)
        self._tickets: dict[str, _Ticket] = {}
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._open_at: datetime | None = None
        self._freed = False
        self._stamp_at: datetime | None = None
        self._stamp: str | None = None
        # tracing, for explanations (off on the hot path): ``why`` gives each decision a rule's firing makes
        # what the rule saw then (the daemon keeps it in the audit log); the tickets of ``watch`` (record ids)
        # keep every event's evaluation of every rule and SLA policy in ``moments`` (replay --against)
        self.why = False
        # a rebuild's routing is what the live Desk assigned: (ticket id, rule, instant) -> the agent it chose
        # then, and nobody at any other instant (the rebuild replays only the open tickets, so round robin or
        # loads alone could choose another agent, or assign a ticket that waited live for a closed one's
        # seat); None: live routing
        self.forced: dict[tuple[str, str, str], str] | None = None
        self._forced_queue: list[tuple[datetime, tuple[str, str, str]]] = []
        self._forced_next = 0
        self._forced_used: set[tuple[str, str, str]] = set()
        self.watch: set[str] = set()
        self.moments: dict[str, list[dict[str, Any]]] = {}
        self._fired_now: dict[int, dict[str, Any]] = {}
        self._waited_now: dict[str, list[dict[str, Any]]] = {}  # watched tickets' routings that found nobody

    # ---------------------------------------------------------------- events

    def on_ticket(
        self, ticket: Record, previous: Mapping[str, Any], event: Mapping[str, Any], at: datetime,
        opened: datetime | None = None,
    ) -> list[Decision]:
        """Run rules, built-in triggers, routing and SLA clocks after an event was applied to ``ticket``.

        ``previous`` maps paths (``ticket.priority``) to their values before the event; ``event`` is the raw
        replay event. ``opened``: when a ticket the Desk did not hold opened, if before ``at`` (its SLA clocks
        run from then, and it waits in the queue from then); else its ``created_at``, else ``at``. Changes the
        ticket in place (assignee, priority, status, escalations, fields, tags).
        """
        out: list[Decision] = []
        st = self._tickets.get(ticket.id)
        new = st is None
        if st is None:
            created = opened or ticket.attrs.get("created_at")
            st = _Ticket(ticket, created if isinstance(created, datetime) else at)
            st.status = "open"
            self._tickets[ticket.id] = st
        else:
            st.record = ticket
            queued = self.router.waiting.get(ticket.id) if self.router.waiting else None
            if queued is not None:
                if not _same_person(ticket.attrs.get("assignee"), queued.assignee):
                    self.router.dequeue(ticket.id)  # assigned by a person (or another system) while it waited
                else:
                    # still waiting: a changed account tier moves it in the queue (it keeps its waiting time)
                    self.router.enqueue(ticket, queued.request, queued.rule, st.created)
        if self._freed and ticket.id not in self.router.waiting:
            # a seat freed since (a ticket deleted) goes to the queue before this new ticket is routed (a
            # waiting ticket's own change is taken first, as it may resolve it: the end's drain serves it)
            self._drain(at, out)
        st.events += 1
        ctx = Context(ticket, previous)
        if not previous and self.reads_previous:
            # a ticket just created has no earlier values: what it arrived with is no change, while what a
            # rule or routing changes in this same event is one (from the value it arrived with), for the
            # rules and the SLA policies alike
            ctx.previous = path_values(ticket)
        self._event = (st, ctx)  # (a drain in this event runs this ticket's rules as a second pass of it)
        self._event_fired = 0
        watched = ticket.id in self.watch if self.watch else False
        if watched:
            self._fired_now = {}
            self._waited_now.pop(ticket.id, None)
        try:
            self._take_event(st, ctx, ticket, new, event, at, out)
        finally:
            self._event = None
        if watched:
            self._moment(ticket, ctx, event, at, out)
        return out

    def _traced(self, ticket_id: str) -> bool:
        """Whether the ticket's decisions keep why (the daemon's, or a watched ticket's in replay)."""
        return self.why or (bool(self.watch) and ticket_id in self.watch)

    def _moment(self, ticket: Record, ctx: Context, event: Mapping[str, Any], at: datetime,
                out: list[Decision]) -> None:
        """Keep a watched ticket's event: every rule as it stood after the event (a rule that fired in it as
        it was when it fired), every SLA policy, and why routing chose the agents it assigned in it."""
        from bridge.rules.explain import explain_rules, leaves_of

        entries = explain_rules(self.rules, ctx, in_event=True)
        for i, fired in self._fired_now.items():
            # all of it as it was when it fired: its leaves too, not the values its actions then made
            entries[i] = {**entries[i], **fired, "leaves": leaves_of(fired["tree"]), "matched": True,
                          "why_not": [], "fired_here": True}
            entries[i].pop("on_event", None)
        entries += self._explain_policies(ctx, in_event=True)
        routing = [{"rule": d.rule, **d.why["routing"]} for d in out
                   if d.record_id == ticket.id and d.decision == "assign" and d.why and "routing" in d.why]
        # and why it waited, when routing found nobody in it (an assignment from the queue comes at another
        # ticket's event: this says why not now)
        routing += self._waited_now.pop(ticket.id, [])
        self.moments.setdefault(ticket.id, []).append(
            {"at": format_time(at), "event": event.get("type"), "entries": entries, "routing": routing})
        self._fired_now = {}

    def _take_event(
        self, st: _Ticket, ctx: Context, ticket: Record, new: bool, event: Mapping[str, Any], at: datetime,
        out: list[Decision],
    ) -> None:
        if self.rules:
            self._run_rules(st, ctx, at, out)
            self._routed.clear()  # (what the rules assigned, they saw)
        if new or event.get("type") == "ticket.created":
            self._check_volume(ticket, at, out)
        if not st.reviewed and low_confidence(ticket.attrs.get("confidence"), self._min_confidence):
            st.reviewed = True
            self._decide(out, at, ticket.id, "review", "confidence",
                         {"reason": "low classification confidence",
                          "confidence": ticket.attrs.get("confidence"),
                          "proposed": list(ticket.attrs.get(PROPOSED) or ())})
        author = event.get("author") if event.get("type") == "ticket.message" else None
        if author == "customer":
            # taken before the event's status change: a ticket resolved (or set pending) on this very message,
            # by a rule ("problem solved") or by the helpdesk, waits for the customer from it
            self._customer_replied(st)
        self._status(st, str(ticket.attrs.get("status") or "open"), at, out)
        if author == "agent":
            self._agent_replied(st, at)
        if st.status not in DONE:
            if ticket.id not in self.router.waiting:
                if not ticket.attrs.get("assignee"):
                    # unassigned (new, handed back, reopened): routed for what the rule that routed it asked
                    # while that rule still holds (it cannot fire again: it never stopped holding)
                    request, rule = self._asked_now(st)
                    if self._freed and self.router.waiting:
                        # the seat this event freed (the ticket handed back by its agent) goes to the tickets
                        # already waiting first, then this one is routed, or waits by its age
                        self._drain(at, out)
                    self._route(st, request, rule, at, out)
            else:
                # a waiting ticket changed: what it waits for may have (a new owner, other tags, its rule no
                # longer holding), and someone free may fit it now (a freed seat: the end's drain serves it)
                self._reroute_waiting(st, at, out)
        if self._routed:
            # routing assigned it in this event: the rules see that as the same event's change
            self._routed.clear()
            n = len(out)
            self._run_rules(st, ctx, at, out, again=True)
            self._routed.clear()
            if len(out) > n:
                self._status(st, str(ticket.attrs.get("status") or "open"), at, out)  # a status they set
        if self._policies:
            self._clocks(st, ctx, event, at)
            if st.status == "closed" and st.sla is not None:
                # final: what falls due at the closing instant is stated now (no later event of it may meet a
                # clock, and the ticket leaves the rules)
                self._fire_sla(st, at, out)
        if self._freed:
            self._drain(at, out)

    def on_agent_status(self, agent: str, status: str, at: datetime) -> list[Decision]:
        """An agent became active, away or offline; an agent back to active takes waiting tickets."""
        out: list[Decision] = []
        if self.router.set_status(agent, status):
            self._drain(at, out)
        return out

    def advance(self, now: datetime) -> list[Decision]:
        """Fire every timer due at or before ``now``, in time order."""
        out: list[Decision] = []
        if self._freed:
            # a seat freed since (a ticket deleted) goes to the queue now, or at the first timer due before
            # now (an agent's hours opening then finds the queue served, as it would have been)
            due = self.next_timer()
            self._drain(due if due is not None and due < now else now, out)
        heap = self._heap
        while heap and heap[0][0] <= now:
            t, _, tid, kind = heapq.heappop(heap)
            if kind == "open":
                if self._open_at == t:
                    self._open_at = None
                    self._drain(t, out)
                continue
            st = self._tickets.get(tid)
            if st is None:
                continue
            if kind == "sla" and st.sla_timer == t:
                st.sla_timer = None
                self._fire_sla(st, t, out)
            elif kind == "follow" and st.follow_due == t:
                st.follow_due = None
                self._follow_up(st, t, out)
            elif kind == "close" and st.close_due == t:
                st.close_due = None
                self._auto_close(st, t, out)
            if self._freed:
                self._drain(t, out)
        return out

    def open_due(self, now: datetime) -> list[Decision]:
        """Let agents whose hours begin by ``now`` take the waiting tickets (oldest first): called before an
        event of that very instant is taken, so a ticket created as the desk opens does not jump the queue."""
        out: list[Decision] = []
        if self._open_at is not None and self._open_at <= now:
            self._open_at = None
            self._drain(now, out)
        return out

    def next_timer(self) -> datetime | None:
        """When the next timer is due (None: nothing scheduled)."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def final(self, ticket: Record) -> dict[str, Any]:
        """The Desk's part of a final state: assignee, priority, status, escalations, SLA deadlines."""
        st = self._tickets.get(ticket.id)
        due = st.sla.due() if st is not None and st.sla is not None else {}
        a = ticket.attrs
        return {
            "assignee": a.get("assignee"),
            "priority": a.get("priority"),
            "status": a.get("status"),
            "escalations": list(a.get("escalations") or []),
            "sla": {k: format_time(due.get(k)) for k in self._due_keys},
        }

    def explain(self, ticket: Record) -> list[dict[str, Any]]:
        """Every rule against the ticket as it is now: name, set, matched, each leaf's value, why not.

        SLA policies follow the rules, with ``set = "sla"`` and ``chosen`` marking the policy that applies.
        """
        from bridge.rules.explain import explain_rules

        ctx = Context(ticket)
        return explain_rules(self.rules, ctx) + self._explain_policies(ctx)

    def _explain_policies(self, ctx: Context, in_event: bool = False) -> list[dict[str, Any]]:
        from bridge.rules.explain import explain_policies

        policies = explain_policies([(p.name, cond) for p, cond, _cal in self._policies], ctx, in_event)
        for entry, (p, _cond, _cal) in zip(policies, self._policies, strict=True):
            entry["budgets"] = {k: v for k in _BUDGETS if (v := getattr(p, k))}
            entry["calendar"] = p.calendar
            entry["pause_on"] = list(p.pause_on)
            entry["escalate"] = [{"after": lvl.after, "to": lvl.to} for lvl in p.escalate]
        return policies

    def holds(self, ticket_id: str, rule: str) -> bool:
        """Whether the rule named ``rule`` holds of the ticket now (as of its last event); never for a rule on
        an event (changed, from, to), which holds of one event only, nor for a name no enabled rule has."""
        st = self._tickets.get(ticket_id)
        i = next((j for j, r in enumerate(self.rules) if r.name == rule), None)
        if st is None or i is None or self.rules[i].uses_event:
            return False
        return bool(st.holding >> i & 1)

    def forget(self, ticket_id: str) -> None:
        """Drop a ticket's state (after its final state was emitted): memory stays flat over long replays."""
        st = self._tickets.pop(ticket_id, None)
        if st is None:
            return
        self.router.dequeue(ticket_id)
        if st.counted is not None:
            self._freed |= self.router.hold(st.counted, -1)

    # ---------------------------------------------------------------- rules

    def _run_rules(
        self, st: _Ticket, ctx: Context, at: datetime, out: list[Decision], again: bool = False
    ) -> None:
        cur = self._read(ctx)
        snap = st.snap
        # a rule on the event itself (changed/from/to) holds of one event, not of a stretch of time: it may
        # fire on every event in which it holds (two changes in a row are two changes), at most once per event
        # (``again``: a second run in the same event, after routing assigned the ticket)
        holding = st.holding if again else st.holding & ~self._event_mask
        if snap is None:
            pending = self._guards.mask(cur, ctx)
            failed = holding & ~pending
            pending |= failed
        else:
            pending = self._event_mask
            if cur != snap:
                masks = self._slot_masks
                for slot, value in enumerate(cur):
                    old = snap[slot]
                    if value is not old and value != old:
                        pending |= masks[slot]
            if not pending:
                return  # nothing a rule reads changed: every result stands, the snapshot too
            possible = self._guards.mask(cur, ctx)
            failed = pending & ~possible & holding
            pending = (pending & possible) | failed
        # a rule whose guard fails cannot hold on the values the event brought: it is not evaluated, and one
        # that held stops holding at its turn, unless an earlier rule changed what it reads (then it is run)
        tests = self._tests
        rules = self.rules
        slot_of = self._slot_of
        slot_masks = self._slot_masks
        fired = self._event_fired if again else 0
        touched = 0
        last_eval: dict[int, int] = {}
        last_change: dict[int, int] = {}
        step = 0
        passes = 0
        # tracing (explanations only): slot -> each (rule, path) whose action changed it in this event
        causes: dict[int, list[tuple[str, str]]] | None = (
            {} if self._traced(st.record.id) else None)
        # (explanations only) the ticket as the event left it, before any rule's action: a rule that held on
        # it already owes its match to no earlier rule's change
        rec = st.record
        before = None if causes is None else Record(
            rec.id, rec.kind, fields=dict(rec.fields), tags=list(rec.tags),
            # (lists copied too: an escalation is added to the ticket's list in place)
            attrs={k: list(v) if isinstance(v, list) else v for k, v in rec.attrs.items()})
        while pending and passes < MAX_PASSES:
            passes += 1
            # a change made by rule i is seen live by the rules after i in this pass (as a full pass would
            # see it) and by the rules before i in the next pass
            nxt = 0
            while pending:
                low = pending & -pending
                pending ^= low
                i = low.bit_length() - 1
                held = False if low & failed and not low & touched else tests[i](ctx)
                if last_change:
                    step += 1
                    last_eval[i] = step
                if not held:
                    holding &= ~low
                    continue
                if holding & low:
                    continue  # it held before this event already: a rule fires when it starts to hold
                holding |= low
                if fired & low:
                    continue  # it fired earlier in this event, stopped holding, holds again: once per event
                fired |= low
                if causes is None:
                    applied = self._apply(rules[i], st, at, out)
                else:
                    applied = self._traced_apply(i, st, ctx, at, out, causes, before)
                for path in applied:
                    where = slot_of.get(path)
                    if where is None:
                        continue
                    if causes is not None and (rules[i].name, path) not in causes.setdefault(where, []):
                        causes[where].append((rules[i].name, path))
                    step += 1
                    last_change[where] = step
                    touched |= slot_masks[where]
                    readers = slot_masks[where] & ~fired
                    later = readers >> (i + 1) << (i + 1)
                    pending |= later
                    nxt |= readers ^ later
            pending = nxt & ~fired
        if pending:
            left = [rules[j].name for j in range(len(rules)) if pending >> j & 1]
            log.warning("ticket %s: rule effects still chaining after %d passes; the rules an effect made "
                        "due are evaluated at its next event: %s",
                        st.record.ref(), MAX_PASSES, ", ".join(left))
        if last_change:
            values = list(cur)
            for slot, changed_at in last_change.items():
                # the snapshot may keep the new value only if every reader saw it; a reader that already fired
                # is evaluated once more (it cannot fire again), one the pass limit left out is evaluated next
                clean = True
                for j in self._slot_readers[slot]:
                    if last_eval.get(j, -1) < changed_at:
                        if fired >> j & 1:
                            step += 1
                            last_eval[j] = step
                            if tests[j](ctx):
                                holding |= 1 << j
                            else:
                                holding &= ~(1 << j)
                        else:
                            clean = False
                values[slot] = _norm(self._getters[slot](ctx)) if clean else _UNKNOWN
            cur = tuple(values)
        st.snap = cur
        st.holding = holding
        if self._event is not None and self._event[0] is st:
            self._event_fired = fired

    def _traced_apply(self, i: int, st: _Ticket, ctx: Context, at: datetime, out: list[Decision],
                      causes: dict[int, list[tuple[str, str]]], before: Record | None = None) -> set[str]:
        """:meth:`_apply` of rule ``i``, with what the rule saw just before its actions ran given to the
        decisions they make (and kept for a watched ticket's moment)."""
        from bridge.rules.explain import firing

        masks = self._slot_masks
        after = [{"rule": by, "path": path} for slot, made in causes.items() if masks[slot] >> i & 1
                 for by, path in made]
        if after and before is not None and self._tests[i](Context(before, ctx.previous)):
            after = []  # it held on what the event brought: no earlier rule's change made it match
        why = firing(self.rules[i], ctx, at, after)
        n = len(out)
        applied = self._apply(self.rules[i], st, at, out)
        for d in out[n:]:
            d.why = {**why, **d.why} if d.why else why  # (an assignment keeps why routing chose its agent)
        if self.watch and st.record.id in self.watch:
            self._fired_now[i] = why
        return applied

    def _apply(self, rule: CompiledRule, st: _Ticket, at: datetime, out: list[Decision]) -> set[str]:
        changed: set[str] = set()
        rec = st.record
        tid = rec.id
        name = rule.name
        n = 0  # the ordinal of an event-like action (notify, review) in the rule: part of its key
        for verb, arg in rule.actions:
            if verb == "set":
                for key, value, json_value, kind in arg:
                    if kind == "field":
                        fv = rec.fields.get(key)
                        if fv is not None and fv.value == value:
                            continue
                        rec.fields[key] = FieldValue(value, BRIDGE, at)
                    elif kind == "assignee":
                        if _same_person(rec.attrs.get("assignee"), value):
                            continue
                        self._assign(st, value, name, at, out)
                        changed.add("ticket.assignee")
                        continue
                    else:
                        if rec.attrs.get(key) == value:
                            continue
                        rec.attrs[key] = value
                    changed.add(f"ticket.{key}")
                    # (the key names the event and the value: two changes of one second, or two sets in one
                    # event, are writes of their own, not one claimed twice)
                    self._decide(out, at, tid, "set_field", name, {"field": key, "value": json_value},
                                 f"{key}={_digest(json_value)}|{st.events}")
            elif verb == "add_tags":
                for tag in arg:
                    if tag not in rec.tags:
                        rec.tags.append(tag)
                        changed.add("ticket.tags")
                        self._decide(out, at, tid, "tag", name, {"tag": tag}, tag)
                        changed |= self._map_tag(rec, tag, at, out, st.events)
            elif verb == "remove_tags":
                for tag in arg:
                    if tag in rec.tags:
                        rec.tags.remove(tag)
                        changed.add("ticket.tags")
                        self._decide(out, at, tid, "tag", name, {"tag": tag, "removed": True}, "-" + tag)
            elif verb == "escalate":
                escalations = rec.attrs.setdefault("escalations", [])
                if arg not in escalations:
                    escalations.append(arg)
                    changed.add("ticket.escalations")
                    self._decide(out, at, tid, "escalate", name, {"to": arg}, arg)
            elif verb == "assign":
                if self._assign_action(st, arg, name, at, out):
                    changed.add("ticket.assignee")
            elif verb == "notify":
                # an event, not a value: each action of each firing is its own (two notes to one person are
                # two), so its key names the event and the action
                n += 1
                self._decide(out, at, tid, "notify", name, dict(arg), f"{arg.get('to')}|{st.events}.{n}")
            elif verb == "review":
                n += 1
                self._decide(out, at, tid, "review", name, {"reason": arg}, f"{st.events}.{n}")
        return changed

    def _map_tag(self, rec: Record, tag: str, at: datetime, out: list[Decision], events: int) -> set[str]:
        changed: set[str] = set()
        for _tag, name, value in self._tag_mapper.apply((tag,)):
            if name not in self._owned:
                continue
            ft = self._types[name]
            current = rec.fields.get(name)
            if current is not None and self.authority is not None and current.system == self.authority:
                continue  # a value the events gave stands
            old = rec.value(name)
            try:
                new = merge(ft, old, value)
            except FieldValueError:
                continue
            if new == old:
                continue
            rec.fields[name] = FieldValue(new, BRIDGE, at)
            changed.add(f"ticket.{name}")
            value_json = to_json(ft, new)
            self._decide(out, at, rec.id, "set_field", f"tag:{tag}",
                         {"field": name, "value": value_json, "tag": tag},
                         f"{name}={_digest(value_json)}|{events}")
        return changed

    # ---------------------------------------------------------------- routing

    def _asked_now(self, st: _Ticket) -> tuple[Request, str]:
        """What the ticket is routed for now: what the rule that last routed it asked, while that rule
        holds (a rule on the event itself, ``changed``/``from``/``to``, held in its event: what it asked
        stands); else anyone (default routing)."""
        request, rule = st.asked or (ANY, "routing")
        bit = self._rule_bit.get(rule, 0)
        if not (st.holding | self._event_mask) & bit:
            return ANY, "routing"
        return request, rule

    def _reroute_waiting(self, st: _Ticket, at: datetime, out: list[Decision]) -> None:
        """Route a waiting ticket that changed for what it is routed for now: to its own assignee, silently,
        when that one is present and fits (it waited for a skill its rule no longer asks); to someone free
        who fits; or it waits on, in its place."""
        request, rule = self._asked_now(st)
        rec = st.record
        router = self.router
        current = rec.attrs.get("assignee")
        agent = router.agent(current) if current else None
        if agent is not None and agent.fits(request) and router.is_present(current):
            # its own agent, present, fits it now: it needs no seat of the queue's, it keeps the one it has
            st.asked = (request, rule)
            router.dequeue(rec.id)
            self._recount(st)
            return
        if self._freed:
            st.asked = (request, rule)
            router.enqueue(rec, request, rule, st.created)  # (the end's drain serves the queue in its order)
            return
        self._route(st, request, rule, at, out)

    def _assign_action(
        self, st: _Ticket, request: Request, rule: str, at: datetime, out: list[Decision]
    ) -> bool:
        rec = st.record
        if str(rec.attrs.get("status") or "open") in DONE:
            return False
        current = rec.attrs.get("assignee")
        if current:
            agent = self.router.agent(current)
            if (agent is not None and agent.fits(request)) or (agent is None and request == ANY):
                return False
        return self._route(st, request, rule, at, out)

    def _route(self, st: _Ticket, request: Request, rule: str, at: datetime, out: list[Decision]) -> bool:
        st.asked = (request, rule)
        if self.forced is None:
            pick = self.router.pick(st.record, request, at)
        else:
            pick = self._forced_pick(st.record.id, rule, at, request)
        if pick is None:
            if self.watch and st.record.id in self.watch and self._event is not None and self._event[0] is st:
                # (its own event's routing: one that found nobody in another ticket's event explains that one)
                self._waited_now.setdefault(st.record.id, []).append(
                    {"rule": rule, **self.router.explain(st.record, request, at, None)})
            self.router.enqueue(st.record, request, rule, st.created)
            self._schedule_opening(at)
            return False
        self.router.dequeue(st.record.id)
        self._assign(st, pick, rule, at, out, request)
        return True

    def _assign(self, st: _Ticket, agent: str, rule: str, at: datetime, out: list[Decision],
                request: Request | None = None) -> None:
        rec = st.record
        routing = None
        if request is not None and self._traced(rec.id):
            routing = self.router.explain(rec, request, at, agent)  # (before the pick changes the loads)
        st.moved_from = rec.attrs.get("assignee")
        rec.attrs["assignee"] = agent
        self.router.dequeue(rec.id)
        self.router.note_assigned(agent)
        self._recount(st)
        if self._assignee_read:
            self._routed.append(st)
        self._decide(out, at, rec.id, "assign", rule, {"to": agent}, agent)
        if routing is not None:
            out[-1].why = {"routing": routing}

    def _recount(self, st: _Ticket) -> None:
        rec = st.record
        assignee = rec.attrs.get("assignee")
        router = self.router
        # a waiting ticket holds no slot of an assignee who was away when it was queued (a reopen while away);
        # one whose active agent does not fit what its rule asked keeps that agent's slot while it waits to be
        # moved: the agent works it until then
        waiting = router.waiting.get(rec.id)
        want = (assignee if st.status not in DONE and router.agent(assignee) is not None
                and (waiting is None or waiting.kept) else None)
        if want != st.counted:
            if st.counted is not None:
                self._freed |= self.router.hold(st.counted, -1)
            if want is not None:
                self.router.hold(want, +1)
            st.counted = want

    def _drain(self, at: datetime, out: list[Decision]) -> None:
        self._freed = False
        router = self.router
        if not router.waiting:
            return
        again = True
        while again:
            again = False
            for waiting in router.queued():
                if self.forced is None:
                    if not router.any_available(at):
                        break
                    pick = router.pick(waiting.record, waiting.request, at)
                else:
                    pick = self._forced_pick(waiting.record.id, waiting.rule, at, waiting.request)
                if pick is None:
                    continue
                st = self._tickets.get(waiting.record.id)
                router.dequeue(waiting.record.id)
                if st is not None:
                    self._assign(st, pick, waiting.rule, at, out, waiting.request)
                    if self._freed:
                        # the ticket moved from an agent whose seat it kept while it waited: that seat goes
                        # to the queue from its head, as any freed seat (each pass assigns one more ticket)
                        self._freed = False
                        again = True
                        break
        self._freed = False
        self._schedule_opening(at)
        if self._routed and not self._settling:
            self._settle(at, out)

    def _settle(self, at: datetime, out: list[Decision]) -> None:
        # the rules of the tickets the queue just assigned run at once, seeing the assignee as changed; what
        # they do may free seats again (a rule reassigning), which the queue serves in turn
        self._settling = True
        try:
            for _ in range(MAX_PASSES):
                routed, self._routed = self._routed, []
                done: set[int] = set()
                for st in routed:
                    rec = st.record
                    if id(st) in done or self._tickets.get(rec.id) is not st:
                        continue
                    done.add(id(st))
                    n = len(out)
                    if self._event is not None and self._event[0] is st:
                        ctx = self._event[1]
                        self._run_rules(st, ctx, at, out, again=True)
                    else:
                        previous: dict[str, Any] = {}
                        if self.reads_previous:
                            previous = path_values(rec)
                            previous.pop("ticket.assignee", None)
                            if st.moved_from:
                                previous["ticket.assignee"] = st.moved_from
                        ctx = Context(rec, previous)
                        self._run_rules(st, ctx, at, out)
                    if len(out) > n:
                        # what they did lands as an event's changes do: a status they set is taken (a seat it
                        # frees is served below), the SLA policy is chosen afresh (a priority they set)
                        self._status(st, str(rec.attrs.get("status") or "open"), at, out)
                        if self._policies:
                            self._clocks(st, ctx, _NO_EVENT, at)
                self._routed.clear()  # (what the rules assigned, they saw)
                if not self._freed:
                    break
                self._drain(at, out)
                if not self._routed:
                    break
        finally:
            self._settling = False
            self._routed.clear()

    def _schedule_opening(self, at: datetime) -> None:
        if not self.router.waiting:
            return
        opening = self.router.next_opening(at)
        if opening is not None and opening > at and (self._open_at is None or opening < self._open_at):
            self._open_at = opening
            self._push(opening, "", "open")

    # ---------------------------------------------------------------- status, follow-ups, auto-close

    def _status(self, st: _Ticket, status: str, at: datetime, out: list[Decision]) -> None:
        old = st.status
        if status != old:
            st.status = status
            rec = st.record
            if status in DONE:
                self.router.dequeue(rec.id)
            elif old in DONE:
                owner = rec.attrs.get("assignee")
                if owner and self.router.agent(owner) is not None and not self.router.is_present(owner):
                    # routed before it counts: if it waits, it must not hold the away owner's slot. It goes
                    # where it was last routed for (a skill, a team) while the rule that asked still holds:
                    # that rule cannot fire again, as it never stopped holding
                    request, rule = self._asked_now(st)
                    self._route(st, request, rule, at, out)
            st.follow_due = None
            # one reminder while the customer has not replied: going pending again (after an agent's note, a
            # hold) does not arm another; after a customer reply, an agent's answer does (_agent_replied)
            if status == "pending" and self._follow_after is not None and not st.follow_sent:
                st.follow_due = at + self._follow_after
                self._push(st.follow_due, rec.id, "follow")
            st.close_due = None
            if status == "resolved" and self._close_after is not None:
                st.close_due = at + self._close_after
                self._push(st.close_due, rec.id, "close")
        self._recount(st)

    def _customer_replied(self, st: _Ticket) -> None:
        # the customer answered: no reminder and no closing while their message waits for the agent (the next
        # agent reply, or the ticket going pending or resolved again, starts the wait afresh)
        st.follow_sent = False
        st.follow_due = None
        st.close_due = None

    def _agent_replied(self, st: _Ticket, at: datetime) -> None:
        # an agent's answer to a ticket that waits on the customer: the wait for their reply starts from it
        tid = st.record.id
        if st.status == "pending" and self._follow_after is not None and not st.follow_sent:
            st.follow_due = at + self._follow_after
            self._push(st.follow_due, tid, "follow")
        elif st.status == "resolved" and self._close_after is not None:
            st.close_due = at + self._close_after
            self._push(st.close_due, tid, "close")

    def _follow_up(self, st: _Ticket, due: datetime, out: list[Decision]) -> None:
        if st.status != "pending" or st.follow_sent or self.config.follow_up is None:
            return
        st.follow_sent = True
        detail: dict[str, Any] = {"after": self.config.follow_up.after}
        if self.config.follow_up.message:
            detail["message"] = self.config.follow_up.message
        self._decide(out, due, st.record.id, "follow_up", "follow_up", detail)

    def _auto_close(self, st: _Ticket, due: datetime, out: list[Decision]) -> None:
        if st.status != "resolved" or self.config.auto_close is None:
            return
        rec = st.record
        rec.attrs["status"] = "closed"
        self._status(st, "closed", due, out)
        if st.sla is not None:
            st.sla.on_status("closed", due)
            self._schedule_sla(st)
        self._decide(out, due, rec.id, "auto_close", "auto_close", {"after": self.config.auto_close.after})
        if self.rules:
            # bridge's own close is a change of the status as a person's is: the rules on it (a survey on
            # ``to = "closed"``) run on it, before the ticket leaves them
            previous = path_values(rec)
            previous["ticket.status"] = "resolved"
            n = len(out)
            self._run_rules(st, Context(rec, previous), due, out)
            if len(out) > n:
                self._status(st, str(rec.attrs.get("status") or "closed"), due, out)  # (a status they set)

    # ---------------------------------------------------------------- escalation triggers

    def _check_volume(self, ticket: Record, at: datetime, out: list[Decision]) -> None:
        account = ticket.attrs.get("account")
        if not isinstance(account, dict):
            return
        account_id = account.get("id") or account.get("name")
        if not account_id:
            return
        spike = self._volume.record(str(account_id), at)
        if spike is None:
            return
        to = nested(ticket.attrs, "account", "owner") or self._first_team
        self._decide(out, at, ticket.id, "escalate", "volume", {
            "to": to, "reason": "volume", "account": spike.account, "count": spike.count,
            "usual": round(spike.usual, 2), "due": format_time(spike.due),
        }, spike.account)

    # ---------------------------------------------------------------- SLA clocks

    def _clocks(self, st: _Ticket, ctx: Context, event: Mapping[str, Any], at: datetime) -> None:
        policy: SlaConfig | None = None
        calendar: BusinessCalendar | None = None
        for test, candidate, cal in self._policy_tests:
            if test(ctx):
                policy, calendar = candidate, cal
                break
        sla = st.sla
        if sla is None:
            # kept from the first event even while no policy applies: a policy that applies later counts
            # from the ticket's opening and sees the replies and pauses before it (sla.py)
            sla = st.sla = TicketSla(policy, calendar, min(st.created, at))
        # the status first: one event that resolves a ticket and switches its policy stops the clocks before
        # the new policy looks at them (what it finds passed waits for a reopen, as after a resolve alone)
        if sla.status != st.status:
            sla.on_status(st.status, at)
        if sla.policy is not policy:
            sla.change_policy(policy, calendar, at)
        kind = event.get("type")
        if kind == "ticket.message":
            sla.on_message(str(event.get("author") or ""), at, acknowledges=True)
        elif kind == "ticket.updated" and (event.get("changes") or {}).get("acknowledged"):
            sla.on_acknowledge(at)
        self._schedule_sla(st)

    def _schedule_sla(self, st: _Ticket) -> None:
        nxt = st.sla.next_timer() if st.sla is not None else None
        if nxt != st.sla_timer:
            st.sla_timer = nxt
            if nxt is not None:
                self._push(nxt, st.record.id, "sla")

    def _fire_sla(self, st: _Ticket, now: datetime, out: list[Decision]) -> None:
        sla = st.sla
        if sla is None:
            return
        tid = st.record.id
        for ev in sla.fire(now):
            if ev.kind == "sla_escalate":
                escalations = st.record.attrs.setdefault("escalations", [])
                if ev.to not in escalations:
                    escalations.append(ev.to)
                detail: dict[str, Any] = {"to": ev.to, "reason": "sla", "metric": ev.metric}
                what = f"{ev.metric}:{ev.to}"
            else:
                detail, what = {"metric": ev.metric}, ev.metric
            if ev.due is not None:
                # passed before its policy applied (or before a reopen): stated late, dated now, never before
                detail["late"] = True
                detail["due"] = format_time(ev.due)
            self._decide(out, ev.at, tid, "escalate" if ev.kind == "sla_escalate" else ev.kind, ev.policy,
                         detail, what)
        nxt = sla.next_timer()
        if nxt is not None and nxt > now:
            st.sla_timer = nxt
            self._push(nxt, tid, "sla")

    # ---------------------------------------------------------------- plumbing

    def _push(self, at: datetime, ticket_id: str, kind: str) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), ticket_id, kind))

    def _live(self, timer: Timer) -> bool:
        t, _, tid, kind = timer
        if kind == "open":
            return self._open_at == t
        st = self._tickets.get(tid)
        if st is None:
            return False
        if kind == "sla":
            return st.sla_timer == t
        if kind == "follow":
            return st.follow_due == t
        return st.close_due == t

    def hold_freed(self) -> bool:
        """Take back the note that a seat freed (the queue is served at the next event); whether there was
        one. A rebuild catching up to an earlier rules job uses it, then :meth:`seats_may_be_free`."""
        freed, self._freed = self._freed, False
        return freed

    def seats_may_be_free(self) -> None:
        """Serve the queue first at the next event (a rebuild: a seat may be free that no event freed)."""
        if self.router.waiting:
            self._freed = True

    def follow_picks(self, picks: Mapping[tuple[str, str, str], str] | None) -> None:
        """Route as the live Desk did (a rebuild): ``(ticket id, rule, instant) -> agent``; None: live."""
        self.forced = dict(picks) if picks is not None else None
        self._forced_used = set()
        # the picks in time order, served as the rebuild's clock passes them (serve_picks)
        self._forced_queue = sorted((parse_time(key[2]), key) for key in self.forced or ())
        self._forced_next = 0

    def _forced_pick(self, ticket_id: str, rule: str, at: datetime, request: Request) -> str | None:
        """In a rebuild, the agent the live Desk assigned the ticket for ``rule`` at this instant (if it is
        still an agent); None when it assigned it nobody then (the ticket waits, as it did), or when that
        agent does not fit ``request``: live did not pick them for it (a rule's second ``assign`` of the
        instant, which found nobody, after its first)."""
        assert self.forced is not None
        key = (ticket_id, rule, format_time(at) or "")
        agent = self.router.agent(self.forced.get(key))
        if agent is None or not agent.fits(request):
            return None
        self._forced_used.add(key)
        return agent.email

    def serve_picks(self, until: datetime, strict: bool = False) -> list[Decision]:
        """In a rebuild, as its clock passes ``until`` (``strict``: up to just before it): give each ticket
        waiting at a pick's instant the agent the live Desk gave it then, at that instant, and run its rules
        then (the seat came from a change the rebuild does not replay: a ticket closed since). A pick whose
        ticket is not waiting then was taken by the routing of that instant, or will never be."""
        out: list[Decision] = []
        queue = self._forced_queue
        while self._forced_next < len(queue):
            when, key = queue[self._forced_next]
            if when > until or (strict and when == until):
                break
            self._forced_next += 1
            out += self.advance(when - _INSTANT)  # (what fell due before that instant comes first)
            waiting = self.router.waiting.get(key[0])
            st = self._tickets.get(key[0])
            agent = self.router.agent(self.forced.get(key) if self.forced else None)
            if key in self._forced_used or waiting is None or waiting.rule != key[1] or agent is None or (
                    st is None):
                continue
            self._forced_used.add(key)
            self.router.dequeue(key[0])
            self._assign(st, agent.email, waiting.rule, when, out, waiting.request)
            if self._routed and not self._settling:
                self._settle(when, out)  # (its rules run at that instant, as they did: a follow-up from then)
        return out

    @staticmethod
    def assigned_agent(key: str) -> str:
        """The agent an ``assign`` decision's key names (see :meth:`_decide`: the key ends with it)."""
        return key.rsplit("|", 1)[-1]

    @staticmethod
    def assign_pick(key: str) -> tuple[tuple[str, str, str], str] | None:
        """``((ticket id, rule, instant), agent)`` of an ``assign`` decision's key (:meth:`_decide`:
        ``TICKET|assign|RULE|INSTANT|AGENT``), as :meth:`follow_picks` takes them; None for another key."""
        ticket, sep, rest = key.partition("|assign|")
        parts = rest.rsplit("|", 2)  # (a rule's name may hold a bar)
        if not sep or len(parts) != 3 or not parts[2]:
            return None
        return (ticket, parts[0], parts[1]), parts[2]

    def _decide(self, out: list[Decision], at: datetime, ticket_id: str, kind: str, rule: str,
                detail: dict[str, Any], what: str = "") -> None:
        if at is not self._stamp_at:
            self._stamp_at, self._stamp = at, format_time(at)  # one event's decisions share their instant
        detail["key"] = f"{ticket_id}|{kind}|{rule}|{self._stamp}|{what}"
        out.append(Decision(at, ticket_id, kind, rule, detail))

    def hold_as(self, ticket_id: str, assignee: str | None, wait: bool) -> bool:
        """Take a ticket as the store holds it, when a rebuilt Desk routed it otherwise (the store is what was
        acted on; a rebuild replays only the open tickets).

        Assigned to ``assignee``: its seat is counted on that agent, even one away (an agent away keeps the
        tickets they have), unless the rebuild moved the ticket away from that very agent (a reopen while they
        were away): then, as live, it waits with the assignee kept. Unassigned: it waits in the queue, for
        what it was routed for, when ``wait``; else its next change routes it. What the rules that read the
        assignee held is taken afresh with the store's assignee, silently (the live rules saw it in the event
        that set it, so a rule that held with it does not fire again). A resolved or closed ticket only takes
        the assignee.
        Returns whether anything changed; call :meth:`serve_queue` after the last one.
        """
        st = self._tickets.get(ticket_id)
        if st is None:
            return False
        rec = st.record
        router = self.router
        queued = ticket_id in router.waiting
        if _same_person(rec.attrs.get("assignee"), assignee) and (
                assignee or wait == queued or st.status in DONE):  # (a resolved ticket waits for nobody)
            return False
        rec.attrs["assignee"] = assignee
        if st.status in DONE:
            return True
        router.dequeue(ticket_id)
        request, rule = st.asked or (ANY, "routing")
        if assignee:
            if (router.agent(assignee) is not None and not router.is_present(assignee)
                    and _same_person(st.moved_from, assignee)):
                router.enqueue(rec, request, rule, st.created)
        elif wait:
            router.enqueue(rec, request, rule, st.created)
        self._recount(st)
        if self._assignee_read:
            # the live rules saw the stored assignee in the event that set it (as routing's own): what they
            # held with it is taken afresh, silently
            self._retake(st)
        return True

    def take_stored(self, ticket_id: str, stored: Record, at: datetime) -> None:
        """Take the tags, declared fields, priority, team, escalations and status of a ticket as the store
        holds them at ``at`` (after :meth:`hold_as` moved it: a rebuild's own routing made its rules decide
        otherwise); what the rules held is taken afresh, silently."""
        st = self._tickets.get(ticket_id)
        if st is None:
            return
        rec = st.record
        status = str(stored.attrs.get("status") or "open")
        if status != st.status and status not in DONE and st.status not in DONE:
            # a status the rebuild's rules set (pending for the agent they chose): the clocks and timers
            # follow the stored one
            rec.attrs["status"] = st.status = status
            if st.sla is not None:
                st.sla.on_status(status, at)
                self._schedule_sla(st)
            if status != "pending":
                st.follow_due = None
        rec.tags[:] = stored.tags
        rec.fields.clear()
        rec.fields.update(stored.fields)
        for attr in ("priority", "team", "escalations"):
            if attr in stored.attrs:
                rec.attrs[attr] = stored.attrs[attr]
            else:
                rec.attrs.pop(attr, None)
        if self.rules:
            self._retake(st)

    def _retake(self, st: _Ticket) -> None:
        # what each rule holds of the ticket at rest, and the values they read, without firing anything
        ctx = Context(st.record, {})
        st.holding = sum(1 << i for i, test in enumerate(self._tests) if test(ctx))
        st.snap = self._read(ctx)

    def hush(self, ticket_id: str) -> None:
        """Let no timer of this ticket fire (SLA, follow-up, auto-close) until its next change sets them
        again: history from before the rules ran, which a rebuilt Desk must not act on."""
        st = self._tickets.get(ticket_id)
        if st is not None:
            st.sla_timer = st.follow_due = st.close_due = None

    def serve_queue(self, at: datetime) -> list[Decision]:
        """Give the seats free at ``at`` to the waiting tickets, oldest first (after :meth:`hold_as`)."""
        out: list[Decision] = []
        self._drain(at, out)
        return out

    def note_created(self, ticket: Record, at: datetime) -> None:
        """Count a ticket created at ``at`` in its account's volume, deciding nothing (a rebuilt Desk's
        history of tickets no longer open); calls come in time order with :meth:`on_ticket`'s."""
        account = ticket.attrs.get("account")
        if isinstance(account, dict):
            account_id = account.get("id") or account.get("name")
            if account_id:
                self._volume.record(str(account_id), at)


__all__ = [
    "MAX_PASSES",
    "CompiledRule",
    "Desk",
    "GuardIndex",
    "compile_rules",
    "rule_cycles",
    "rule_guard",
    "rule_writes",
]
