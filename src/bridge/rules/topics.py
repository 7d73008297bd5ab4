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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bridge.durations import parse_duration
from bridge.settings import Config


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


@dataclass(slots=True)
class _Topic:
    times: list[datetime] = field(default_factory=list)  # the topic's tickets, oldest first
    hot: bool = False
    filed: datetime | None = None  # when its product ticket was filed
    spikes: int = 0


class TopicWatch:
    """Tickets per topic over the longest rule's two windows; says when a ticket makes a topic spike."""

    def __init__(self, rules: list[TopicRule], min_count: int = 5, prefixes: list[str] | None = None,
                 pattern: str | None = None) -> None:
        """``prefixes``: the tag prefixes that are topics (None or empty: any); ``pattern``: the taxonomy's
        tag pattern, which a topic tag must match too (None: any ``prefix/topic``)."""
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
        return cls(rules, topics.min_count, topics.prefixes or config.taxonomy.prefixes,
                   config.taxonomy.pattern)

    def is_topic(self, tag: str) -> bool:
        """Whether ``tag`` names a topic (``prefix/topic``, of a topic prefix, matching the pattern)."""
        prefix, slash, rest = tag.partition("/")
        if not slash or not prefix or not rest:
            return False
        if self.prefixes and prefix not in self.prefixes:
            return False
        return self._pattern is None or self._pattern.search(tag) is not None

    def record(self, topic: str, at: datetime) -> TopicSpike | None:
        """Count one ticket of ``topic`` at ``at`` (calls in time order); a spike when it starts one."""
        if self._start is None:
            self._start = at
        t = self.topics.get(topic)
        if t is None:
            t = self.topics[topic] = _Topic()
        t.times.append(at)
        oldest = bisect.bisect_right(t.times, at - self._horizon)
        if oldest:
            del t.times[:oldest]
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

    def _judge(self, times: list[datetime], at: datetime) -> tuple[TopicRule, int, int] | None:
        assert self._start is not None
        for rule in self.rules:
            if at - self._start < 2 * rule.window:
                continue  # no previous window seen yet
            now_start = bisect.bisect_right(times, at - rule.window)
            before_start = bisect.bisect_right(times, at - 2 * rule.window)
            count = len(times) - now_start
            previous = now_start - before_start
            if count >= self.min_count and count >= rule.ratio * previous:
                return rule, count, previous
        return None

    def volumes(self, at: datetime) -> list[tuple[str, dict[str, tuple[int, int]]]]:
        """Each topic seen, with, per rule window, its tickets in the window ending at ``at`` and in the one
        before (the latest ``2 × window`` only), busiest first."""
        out: list[tuple[str, dict[str, tuple[int, int]]]] = []
        for name, t in self.topics.items():
            per: dict[str, tuple[int, int]] = {}
            for rule in self.rules:
                now_start = bisect.bisect_right(t.times, at - rule.window)
                before_start = bisect.bisect_right(t.times, at - 2 * rule.window)
                end = bisect.bisect_right(t.times, at)
                per[rule.label] = (end - now_start, now_start - before_start)
            out.append((name, per))
        out.sort(key=lambda item: (-max((c for c, _p in item[1].values()), default=0), item[0]))
        return out
