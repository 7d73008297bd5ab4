"""Recurring topics: a topic's volume spiking files one product ticket in the tracker, then updates it.

A topic is a ticket's ``prefix/topic`` tag (given, classified or added by a rule) whose prefix is one of
``[topics] prefixes`` (else ``[taxonomy] prefixes``; with neither, any prefix), matching the taxonomy's
pattern. A ticket counts once per topic, when the topic first appears on it. Each ``[topics] rules`` entry
``{ window, ratio }`` compares the topic's tickets in the last ``window`` with those in the ``window`` before
it: a spike is at least ``min_count`` tickets now and at least ``ratio`` times as many as before (a topic
new in the previous window spikes once it reaches ``min_count``). A rule is judged only once the watch has
seen both of its windows (``2 × window`` since its first ticket of any topic): before that there is no
previous period to compare with, so a recording does not flag every topic in its first days.

The first spike of a topic files its product ticket (``create``); the topic is then hot until a ticket of it
comes while no rule holds. A later spike, once it calmed, ``update``s the same product ticket: one per topic.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bridge.durations import parse_duration
from bridge.model import Record, format_time, parse_time
from bridge.settings import Config
from bridge.taxonomy import normalise_tag, synonym_table


@dataclass(frozen=True, slots=True)
class TopicRule:
    """A spike rule: ``ratio`` times the previous ``window``'s tickets, at least ``min_count``."""

    window: timedelta
    ratio: float
    label: str  # as configured ("7d")


@dataclass(frozen=True, slots=True)
class TopicSpike:
    """A topic whose volume a rule found spiking at ``at``, and what it does to its product ticket."""

    topic: str
    at: datetime
    action: str  # "create" the product ticket, or "update" it
    count: int  # tickets of the topic in the last window
    previous: int  # in the window before it
    window: str
    ratio: float

    def detail(self, tracker: str | None) -> dict[str, object]:
        """The ``product_ticket`` decision's detail (replay.md)."""
        return {"topic": self.topic, "action": self.action, "tracker": tracker, "count": self.count,
                "previous": self.previous, "window": self.window, "ratio": self.ratio}


@dataclass(slots=True)
class _Topic:
    times: list[datetime] = field(default_factory=list)  # the topic's tickets, oldest first
    tickets: list[str] = field(default_factory=list)  # their ids, as ``times`` (when the caller names them)
    hot: bool = False
    filed: datetime | None = None  # when its product ticket was filed
    spikes: int = 0


class TopicWatch:
    """Tickets per topic over the longest rule's two windows; says when a ticket makes a topic spike."""

    def __init__(self, rules: list[TopicRule], min_count: int = 5, prefixes: list[str] | None = None,
                 pattern: str | None = None, synonyms: Mapping[str, str] | None = None) -> None:
        """``prefixes``: the tag prefixes that are topics (None or empty: any); ``pattern``: the taxonomy's
        tag pattern, which a topic tag must match too (None: any ``prefix/topic``); ``synonyms``: normalised
        synonym -> the tag it means (a ticket tagged with a synonym is counted in that tag's topic)."""
        self.synonyms = dict(synonyms or {})
        self._topic_of: dict[str, str | None] = {}  # tag -> its topic (None: none), as topics_of reads it
        self.rules = rules
        self.min_count = min_count
        self.prefixes = frozenset(prefixes or ())
        self._pattern = re.compile(pattern) if pattern else None
        self._horizon = 2 * max((r.window for r in rules), default=timedelta(0))
        self.topics: dict[str, _Topic] = {}
        self._start: datetime | None = None

    @classmethod
    def from_config(cls, config: Config) -> TopicWatch | None:
        """The watch ``[topics]`` asks for; None when it has no rules (no spikes to find)."""
        topics = config.topics
        if not topics.rules:
            return None
        rules = [TopicRule(parse_duration(r.window), r.ratio, r.window) for r in topics.rules]
        return cls.of_config(config, rules, topics.min_count)

    @classmethod
    def of_config(cls, config: Config, rules: list[TopicRule], min_count: int) -> TopicWatch:
        """A watch with ``rules``, over the config's topic tags (its prefixes, the taxonomy's pattern)."""
        prefixes = config.topics.prefixes or config.taxonomy.prefixes
        return cls(rules, min_count, prefixes, config.taxonomy.pattern, synonym_table(config))

    def topics_of(self, tags: Iterable[str]) -> set[str]:
        """The topics a ticket with ``tags`` is counted in: each tag in lower case, or the tag a declared
        synonym means (``refund`` -> ``billing/refund``), when that names a topic (:meth:`is_topic`)."""
        out: set[str] = set()
        known = self._topic_of
        for tag in tags:
            if tag not in known:
                if len(known) > 100_000:
                    known.clear()  # (bounded: free-form tags must not grow it for ever)
                topic = tag.strip().lower()
                if self.synonyms:
                    meant = self.synonyms.get(normalise_tag(tag))
                    topic = meant.strip().lower() if meant is not None else topic
                known[tag] = topic if self.is_topic(topic) else None
            found = known[tag]
            if found is not None:
                out.add(found)
        return out

    def is_topic(self, tag: str) -> bool:
        """Whether ``tag`` names a topic (``prefix/topic``, of a topic prefix, matching the pattern)."""
        prefix, slash, rest = tag.partition("/")
        if not slash or not prefix or not rest:
            return False
        if self.prefixes and prefix not in self.prefixes:
            return False
        return self._pattern is None or self._pattern.fullmatch(tag) is not None  # (as taxonomy lint)

    def record(self, topic: str, at: datetime, ticket: str = "") -> TopicSpike | None:
        """Count one ticket of ``topic`` at ``at``; a spike when it starts one. ``ticket``: its id, kept
        beside its time while it is in the windows (:meth:`counted`). Calls come in time order in a replay;
        a ticket older than the topic's newest (one the daemon learns of late) is counted at its own time,
        and the topic is judged as of its newest ticket."""
        if self._start is None or at < self._start:
            self._start = at
        t = self.topics.get(topic)
        if t is None:
            t = self.topics[topic] = _Topic()
        if not t.times or at >= t.times[-1]:
            t.times.append(at)
            t.tickets.append(ticket)
        else:
            place = bisect.bisect_right(t.times, at)
            t.times.insert(place, at)
            t.tickets.insert(place, ticket)
            at = t.times[-1]
        oldest = bisect.bisect_right(t.times, at - self._horizon)
        if oldest:
            del t.times[:oldest]
            del t.tickets[:oldest]
        found = self._judge(t.times, at)
        if found is None:
            t.hot = False
            return None
        if t.hot:
            return None
        t.hot = True
        t.spikes += 1
        action = "update" if t.filed is not None else "create"
        if t.filed is None:
            t.filed = at
        rule, count, previous = found
        return TopicSpike(topic, at, action, count, previous, rule.label, rule.ratio)

    @property
    def start(self) -> datetime | None:
        """When the watch counted its first ticket (its rules are judged from ``2 × window`` after it)."""
        return self._start

    @property
    def horizon(self) -> timedelta:
        """How long a ticket stays counted: the longest rule's two windows."""
        return self._horizon

    def counted(self, topic: str) -> list[tuple[datetime, str]]:
        """The tickets of ``topic`` still in its windows, ``(time, id)``, oldest first."""
        t = self.topics.get(topic)
        return [] if t is None else list(zip(t.times, t.tickets, strict=True))

    def forget(self, spike: TopicSpike) -> None:
        """Take back what ``spike`` did to its topic's product ticket (a spike of the past, counted as history
        only): the topic stays hot, its product ticket is as it was before."""
        t = self.topics[spike.topic]
        t.spikes -= 1
        if spike.action == "create":
            t.filed = None

    def state(self, topic: str) -> dict[str, object]:
        """What :meth:`restore` takes back of ``topic``: its tickets in the windows, whether it is hot, when
        its product ticket was filed and how many spikes it had."""
        t = self.topics[topic]
        return {"tickets": [[format_time(at), ticket] for at, ticket in zip(t.times, t.tickets, strict=True)],
                "hot": t.hot, "filed": format_time(t.filed), "spikes": t.spikes}

    def restore(self, start: datetime | None, topics: Mapping[str, Mapping[str, object]]) -> None:
        """Take back a watch's state (``start``, each topic's :meth:`state`), to go on counting from there."""
        self._start = start
        for name, saved in topics.items():
            pairs = saved.get("tickets") or []
            assert isinstance(pairs, list)
            filed = saved.get("filed")
            spikes = saved.get("spikes") or 0
            assert isinstance(spikes, int)
            self.topics[name] = _Topic(
                [parse_time(str(at)) for at, _ in pairs], [str(ticket) for _, ticket in pairs],
                bool(saved.get("hot")), parse_time(str(filed)) if filed else None, spikes)

    def _judge(self, times: list[datetime], at: datetime) -> tuple[TopicRule, int, int] | None:
        assert self._start is not None
        for rule in self.rules:
            if at - self._start < 2 * rule.window:
                continue  # no previous window seen yet
            count, previous = _window_counts(times, at, rule.window)
            if count >= self.min_count and count >= rule.ratio * previous:
                return rule, count, previous
        return None

    def volumes(self, at: datetime) -> list[tuple[str, dict[str, tuple[int, int]]]]:
        """Each topic seen, with, per rule window, its tickets in the window ending at ``at`` and in the one
        before (the latest ``2 × window`` only), busiest first."""
        out: list[tuple[str, dict[str, tuple[int, int]]]] = []
        for name, t in self.topics.items():
            per = {rule.label: _window_counts(t.times, at, rule.window) for rule in self.rules}
            out.append((name, per))
        out.sort(key=lambda item: (-max((c for c, _p in item[1].values()), default=0), item[0]))
        return out


def _window_counts(times: list[datetime], at: datetime, window: timedelta) -> tuple[int, int]:
    """Of sorted ``times``, how many fall in the ``window`` ending at ``at``, and in the one before it."""
    end = bisect.bisect_right(times, at)
    now_start = bisect.bisect_right(times, at - window)
    before_start = bisect.bisect_right(times, at - 2 * window)
    return end - now_start, now_start - before_start


def watch_for(config: Config) -> TopicWatch:
    """The config's watch, or, with no ``[topics] rules``, one that only counts (a 7-day window, no spike)."""
    watch = TopicWatch.from_config(config)
    if watch is not None:
        return watch
    counting = TopicRule(timedelta(days=7), float("inf"), "7d")
    return TopicWatch.of_config(config, [counting], 2**62)  # (no count reaches it: volumes, no spike)


def from_tickets(config: Config, tickets: Iterable[tuple[datetime, Record]]
                 ) -> tuple[TopicWatch, list[dict[str, object]]]:
    """The watch fed with stored tickets (each at its creation, in its topics as stored now), in time order,
    and the spikes they made as ``product_ticket`` decisions (the ticket named ``SYSTEM:EXTERNAL_ID``)."""
    watch = watch_for(config)
    spikes: list[dict[str, object]] = []
    for created, record in sorted(tickets, key=lambda item: (item[0], item[1].id)):
        ref = record.ref()
        for topic in sorted(watch.topics_of(record.tags)):
            spike = watch.record(topic, created)
            if spike is not None:
                spikes.append({"at": format_time(created), "ticket_id": ref, "decision": "product_ticket",
                               "rule": "topics", **spike.detail(config.topics.tracker)})
    return watch, spikes


def topics_report(config: Config, watch: TopicWatch, spikes: list[dict[str, object]],
                  at: datetime | None, issues: Mapping[str, str] | None = None) -> dict[str, object]:
    """What ``bridge topics`` prints: each topic with tickets in its windows at ``at`` or a product ticket,
    its volume per rule window, whether its product ticket was filed (``issues``: topic -> the product ticket
    the daemon filed in the tracker), and the spikes (``product_ticket`` decisions) in time order."""
    topics: list[dict[str, object]] = []
    known = issues or {}
    for name, per in watch.volumes(at) if at is not None else []:
        t = watch.topics[name]
        if t.filed is None and name not in known and not any(c or p for c, p in per.values()):
            continue  # a topic of the past: nothing in its windows, no product ticket
        filed: dict[str, object] | None = None
        if t.filed is not None:
            filed = {"filed": format_time(t.filed), "spikes": t.spikes, "hot": t.hot}
        if issues is not None and (filed is not None or name in known):
            # (the store's view: whether the daemon has filed it in the tracker yet, and as what)
            filed = {**(filed or {}), "issue": known.get(name)}
        topics.append({
            "topic": name,
            "windows": {label: {"count": c, "previous": p} for label, (c, p) in per.items()},
            "product_ticket": filed,
        })
    return {
        "at": format_time(at) if at is not None else None,
        "tracker": config.topics.tracker,
        "min_count": config.topics.min_count,
        "rules": [{"window": r.window, "ratio": r.ratio} for r in config.topics.rules],
        "topics": topics,
        "spikes": spikes,
    }


def format_topics(report: dict[str, object]) -> str:
    """The human form of :func:`topics_report`."""
    rules = report["rules"]
    assert isinstance(rules, list)
    how = ", ".join(f"{r['window']} x{r['ratio']}" for r in rules) or "none: volumes only"
    lines = [f"topics at {report['at'] or '-'} (rules: {how}; min_count {report['min_count']}; "
             f"tracker {report['tracker'] or '-'})"]
    topics = report["topics"]
    assert isinstance(topics, list)
    if not topics:
        lines.append("  no topic seen")
    width = max((len(str(t["topic"])) for t in topics), default=0)
    for t in topics:
        windows = "  ".join(f"{label}: {w['count']} (before {w['previous']})"
                            for label, w in t["windows"].items())
        filed = t["product_ticket"]
        state = ""
        if filed is not None and "filed" in filed:
            count = f"{filed['spikes']} spike{'s' * (filed['spikes'] != 1)}{', hot' if filed['hot'] else ''}"
            if "issue" in filed and filed["issue"] is None:
                state = f"  spiked {filed['filed']}, {count}; not filed in {report['tracker']} yet"
            else:
                state = f"  product ticket filed {filed['filed']}, {count}"
        if filed is not None and filed.get("issue") is not None:
            state += f"{',' if state else '  product ticket'} {report['tracker']} {filed['issue']}"
        lines.append(f"  {str(t['topic']).ljust(width)}  {windows}{state}")
    spikes = report["spikes"]
    assert isinstance(spikes, list)
    if spikes:
        lines.append("spikes:")
        lines.extend(
            f"  {s['at']} {s['topic']} {s['action']} (ticket {s['ticket_id']}: {s['count']} in "
            f"{s['window']}, {s['previous']} before)" for s in spikes
        )
    return "\n".join(lines)
