"""The daemon's topics job (bridge.product.run_topics): how long a run takes over a store of N tickets.

Fills a SQLite store with N tickets over DAYS days (one change each, tags drawn from TOPICS topics, a few
busy), then times the first run (every change in the store, counted as history), an incremental run after
a burst of new tickets of one topic (which spikes and queues its product ticket), and a run with nothing new.
Also prints the largest topic record's saved state, which the windows bound.

    .venv/bin/python benchmarks/bench_topics.py
    .venv/bin/python benchmarks/bench_topics.py --tickets 100000 --topics 200
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.model import TOPIC_KIND, Change, Record
from bridge.product import run_topics
from bridge.settings import Config
from bridge.store import Store

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def fill(store: Store, tickets: int, topics: int, days: int, rng: random.Random, first: int = 0,
         start: datetime | None = None, span: timedelta | None = None, only: str | None = None) -> None:
    """Add ``tickets`` tickets, evenly over ``span`` from ``start`` (default: the ``days`` before NOW)."""
    start = start or NOW - timedelta(days=days)
    span = span or timedelta(days=days)
    names = [f"area{n % 7}/topic-{n}" for n in range(topics)]
    weights = [1.0 / (1 + n) for n in range(topics)]  # a few busy topics, a long tail
    with store.session() as tx:
        for n in range(tickets):
            at = start + span * (n / max(1, tickets))
            tag = only or rng.choices(names, weights)[0]
            rid = f"t{first + n}"
            tx.create_record("ticket", rid, at)
            stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            tx.save(Record(rid, "ticket", tags=[tag], attrs={"created_at": stamp}), at)
            tx.add_change(Change("desk", "ticket", rid, at, tags=[tag]), rid, received_at=at)


def timed(store: Store, config: Config, now: datetime) -> tuple[float, int, int]:
    began = time.perf_counter()
    run = run_topics(store, config, now)
    return time.perf_counter() - began, run.changes, run.queued


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=20_000)
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    rng = random.Random(7)
    config = Config(connectors={"jira": {"plugin": "jira", "base_url": "https://x.example", "project": "P"}},
                    topics={"tracker": "jira", "rules": [{"window": "7d", "ratio": 3.0},
                                                         {"window": "30d", "ratio": 1.5}]})
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        began = time.perf_counter()
        fill(store, args.tickets, args.topics, args.days, rng)
        print(f"store: {args.tickets:,} tickets over {args.days} days in {args.topics} topics "
              f"(filled in {time.perf_counter() - began:.1f} s)")
        took, changes, queued = timed(store, config, NOW + timedelta(minutes=2))
        print(f"first run (all of it as history): {took:.2f} s for {changes:,} changes, {queued} filed")
        burst = 300
        fill(store, burst, args.topics, args.days, rng, first=args.tickets, start=NOW,
             span=timedelta(hours=1), only="area0/topic-burst")
        took, changes, queued = timed(store, config, NOW + timedelta(hours=1, minutes=2))
        print(f"run after a burst of {burst} tickets of a new topic: {took:.3f} s, {queued} product ticket "
              f"queued")
        took, changes, queued = timed(store, config, NOW + timedelta(hours=1, minutes=7))
        print(f"run with nothing new: {took:.4f} s")
        with store.session() as tx:
            sizes = [len(json.dumps(r.attrs)) for r in tx.records(TOPIC_KIND)]
        print(f"topic records: {len(sizes)}, largest saved state {max(sizes, default=0) / 1024:.1f} KiB")
        store.close()


if __name__ == "__main__":
    main()
