"""Product tickets in the tracker: the daemon's topics job files a topic's spike once, then updates it.

Every ``TOPICS_EVERY`` the job reads the ticket changes the store took since its cursor (those received at
least a minute ago, so that a transaction still open on another replica is not passed over) and counts each
ticket as ``bridge topics`` does: at its creation (the helpdesk's ``created_at``, else its first change), in
its topics as stored when the job reads it (:class:`bridge.rules.topics.TopicWatch`, with ``bridge replay``'s
spike rules). A ticket counts once per topic; one created before every window (older than the longest
rule's two windows before the newest ticket counted) is not counted again when it changes; one that comes
late is counted at its creation, and its topic judged as of the topic's newest ticket. Each spike is filed:

- the topic is a record of kind ``topic`` (id ``topic:billing/refund``) whose link in the tracker is its
  product ticket; its attributes keep the watch's state of it (its tickets in the windows, hot, spikes), so a
  restart goes on where the job stopped;
- a spike is a ``product_ticket`` event write to the ``[topics] tracker``, under a key claimed in the same
  transaction (a crash or another replica never files it twice); the tracker's connector creates the product
  ticket when the topic has none (finding one it made before, after a crash) and comments on it otherwise.

A spike older than the shortest rule window when the job finds it (a first run over what the store held, a
backfill) is the past: it sets the topic's state (hot) and files nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.connector import Connector
from bridge.durations import parse_duration
from bridge.effects import PRODUCT_TICKET, EffectWrite, effect_key
from bridge.model import TOPIC_KIND, Record, format_time, parse_time, utcnow
from bridge.report import created_at
from bridge.rules.topics import TopicSpike, TopicWatch
from bridge.settings import Config
from bridge.store import Store
from bridge.store.tx import Tx

log = logging.getLogger("bridge.topics")

TOPICS_EVERY = timedelta(minutes=5)
TOPICS_CURSOR = ("bridge", "topics")
SETTLE = timedelta(minutes=1)  # a change received this recently may belong to a transaction still open
RECENT_TICKETS = 20  # the tickets a product ticket's text names, newest first
CHANGES_PAGE = 2000  # changes read (with their tickets) at a time: a first run over a large store stays small


def topic_record_id(topic: str) -> str:
    """The store id of ``topic``'s record (its product ticket is that record's link in the tracker)."""
    return f"{TOPIC_KIND}:{topic}"


@dataclass
class TopicsRun:
    """What one run of the topics job did."""

    changes: int = 0
    spikes: list[TopicSpike] = field(default_factory=list)
    queued: int = 0


def files_product_tickets(config: Config, classes: Mapping[str, type[Connector]]) -> bool:
    """Whether the daemon runs the topics job: ``[topics]`` has rules and names an enabled tracker whose
    plugin (of ``classes``) carries topics and takes writes."""
    table = config.connectors.get(config.topics.tracker or "")
    cls = classes.get(table.plugin) if table is not None else None
    return bool(config.topics.rules and table is not None and table.enabled and cls is not None
                and "topic" in cls.kinds and cls.accepts_writes())


def run_topics(store: Store, config: Config, now: datetime | None = None, run: str = "topics") -> TopicsRun:
    """One run of the topics job: count the ticket changes taken since the last run, file each spike once."""
    now = now or utcnow()
    out = TopicsRun()
    watch = TopicWatch.from_config(config)
    tracker = config.topics.tracker
    if watch is None or not tracker:
        return out
    with store.session() as tx:
        saved = json.loads(tx.cursor(*TOPICS_CURSOR) or "{}")
        after = int(saved.get("change", 0))
        until = tx.last_change_id(received_before=now - SETTLE, after=after)
        if until == after:
            return out
        topics = {r.attrs.get("topic"): r for r in tx.records(TOPIC_KIND)}
        watch.restore(parse_time(saved["start"]) if saved.get("start") else None,
                      {str(name): r.attrs for name, r in topics.items() if name})
        newest = parse_time(saved["newest"]) if saved.get("newest") else None
        # (an old spike, found in a first run over the store or in tickets the helpdesk gave late, is the
        # past, not news for the product team: it sets the topic's state and files nothing)
        fresh = now - min(parse_duration(r.window) for r in config.topics.rules)
        touched: set[str] = set()
        seen: dict[str, set[str]] = {}  # topic -> the tickets counted in it, while in its windows
        page = after
        while changes := tx.changes_between("ticket", page, until, CHANGES_PAGE):
            page = changes[-1][0]
            records = tx.records_of({rid for _cid, rid, _first in changes})
            for _cid, rid, first in changes:
                record = records.get(rid)
                if record is None:
                    continue  # (deleted since)
                out.changes += 1
                when = created_at(record, first)  # (as bridge topics counts it: at its creation)
                if newest is not None and when < newest - watch.horizon:
                    continue  # older than every window: counted when it was new (or never: the past)
                for topic in sorted(watch.topics_of(record.tags)):
                    counted = seen.get(topic)
                    if counted is None:
                        counted = seen[topic] = {ticket for _at, ticket in watch.counted(topic)}
                    if rid in counted:
                        continue  # counted once per topic, the first time the job sees the topic on it
                    counted.add(rid)
                    touched.add(topic)
                    newest = when if newest is None else max(newest, when)
                    spike = watch.record(topic, when, rid)
                    if spike is None:
                        continue
                    if spike.at < fresh:
                        watch.forget(spike)
                        continue
                    out.spikes.append(spike)
                    topic_record = topics.get(topic) or _topic_record(tx, topic, now)
                    topics[topic] = topic_record
                    if _file(tx, config, tracker, topic_record, spike, record, watch, records, now, run):
                        out.queued += 1
        for topic in touched:
            record = topics.get(topic) or _topic_record(tx, topic, now)
            record.attrs = {"topic": topic, **watch.state(topic)}
            tx.save(record, now)
        state = {"change": until, "start": format_time(watch.start), "newest": format_time(newest)}
        tx.set_cursor(*TOPICS_CURSOR, json.dumps(state))
    for spike in out.spikes:
        log.info("topic %s spiked (%d tickets in %s, %d before): product ticket %s queued for %s",
                 spike.topic, spike.count, spike.window, spike.previous, spike.action, tracker)
    return out


def _topic_record(tx: Tx, topic: str, now: datetime) -> Record:
    rid = topic_record_id(topic)
    found = tx.load(rid)
    if found is not None:
        return found
    tx.create_record(TOPIC_KIND, rid, now)
    return Record(rid, TOPIC_KIND, attrs={"topic": topic})


def _file(tx: Tx, config: Config, tracker: str, topic: Record, spike: TopicSpike, ticket: Record,
          watch: TopicWatch, records: dict[str, Record], now: datetime, run: str) -> bool:
    """Queue the product ticket write of ``spike`` once (its key claimed here); audited on the topic."""
    at = format_time(spike.at)
    key = f"{PRODUCT_TICKET}|{tracker}|{spike.topic}|{at}"
    detail = {**spike.detail(tracker), "ticket": ticket.ref()}
    tx.audit(at=spike.at, run=run, record_id=topic.id, field=None, before=None, after=detail,
             origin="bridge", rule="topics", kind="decision", response=PRODUCT_TICKET)
    if not tx.claim_effect(key, topic.id, PRODUCT_TICKET, spike.at):
        return False
    recent = [tid for _at, tid in reversed(watch.counted(spike.topic))][:RECENT_TICKETS]
    refs = [(records[tid].ref() if tid in records else _ref(tx, tid)) for tid in recent]
    payload = product_ticket(spike, ticket.ref(), refs, config.topics.min_count)
    write = EffectWrite(tracker, TOPIC_KIND, topic.id, topic.links.get(tracker), {PRODUCT_TICKET: payload},
                        effect_key(tracker, TOPIC_KIND, topic.id, key))
    return tx.enqueue(write, now)


def _ref(tx: Tx, record_id: str) -> str:
    found = tx.load(record_id)
    return record_id if found is None else found.ref()


def product_ticket(spike: TopicSpike, ticket: str, tickets: list[str], min_count: int) -> dict[str, Any]:
    """The ``product_ticket`` write's value: the spike's figures, the title and text a tracker files (the
    title stays the topic's; the text says what spiked), and the tickets behind it, newest first."""
    ratio = f"{spike.ratio:g}"
    figures = (f"{spike.count} tickets in the last {spike.window}, {spike.previous} in the {spike.window} "
               f"before (the rule: at least {min_count}, and {ratio} times as many as before)")
    if spike.action == "create":
        text = f"Customers keep raising {spike.topic}: {figures}."
    else:
        text = f"{spike.topic} is spiking again: {figures}."
    text += f"\n\nThe ticket that made the spike: {ticket}.\nRecent tickets: {', '.join(tickets)}."
    return {"action": spike.action, "topic": spike.topic, "at": format_time(spike.at), "count": spike.count,
            "previous": spike.previous, "window": spike.window, "ratio": spike.ratio, "ticket": ticket,
            "tickets": tickets, "title": f"Recurring support topic: {spike.topic}", "text": text}
