"""Sync engine benchmark: write calls for N changed records against the minimum, and a no-change re-sync.

Two in-memory systems: ``crm`` owns two fields that ``desk`` receives (``--batch`` writes per call).
Pass 1 pulls N new crm records and pushes them; pass 2 pulls desk's N records back (every one was changed by
our writes: echoes) and must push nothing; pass 3 has no change anywhere. Prints calls, the minimum
``ceil(N / batch)``, writes per pass and timings. Goals: calls == minimum; 0 writes on the re-syncs.

    .venv/bin/python benchmarks/bench_sync.py [--records 10000] [--batch 100] [--database URL]
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.connector import Connector, ConnectorContext, Cursor, PullPage, PushResult
from bridge.model import Change, Write
from bridge.settings import Config, ConnectorSettings
from bridge.store import Store
from bridge.sync import Syncer

T0 = datetime(2026, 3, 2, tzinfo=UTC)


class Memory(Connector):
    """A system held in a dict: pulls in modification order, pushes as upserts, counts write calls."""

    name = "bench-memory"
    kinds = ("account",)
    batch_max = 100

    def __init__(self, context: ConnectorContext, ticks: Iterator[int]) -> None:
        super().__init__(context)
        self.ticks = ticks
        self.records: dict[str, tuple[datetime, dict[str, object]]] = {}
        self.calls = 0
        self.writes = 0

    def put(self, ext: str, fields: dict[str, object]) -> None:
        self.records[ext] = (T0 + timedelta(microseconds=next(self.ticks)), fields)

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        fresh = sorted((at, ext) for ext, (at, _f) in self.records.items() if cursor.after(at, ext))
        for start in range(0, len(fresh), 500):
            page = fresh[start : start + 500]
            changes = [
                Change(self.system, kind, ext, at, fields=dict(self.records[ext][1])) for at, ext in page
            ]
            yield PullPage(changes, Cursor(page[-1][0], page[-1][1]))

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        assert len(writes) <= self.batch_max
        self.calls += 1
        self.writes += len(writes)
        out = []
        for w in writes:
            ext = w.external_id or f"{self.system}-{w.record_id}"
            fields = dict(self.records.get(ext, (T0, {}))[1])
            fields.update(w.fields)
            self.put(ext, fields)
            out.append(PushResult(w.record_id, True, ext))
        return out


def main() -> None:
    """Run the three passes and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--database", default=None, help="store URL (default: a temporary SQLite file)")
    args = parser.parse_args()

    ticks = itertools.count(1)
    config = Config(
        connectors={
            "crm": {"plugin": "bench-memory", "kinds": ["account"]},
            "desk": {"plugin": "bench-memory", "kinds": ["account"]},
        },
        fields={
            "tier": {
                "type": "select",
                "kind": "account",
                "options": ["gold", "silver", "bronze"],
                "owner": "crm",
                "sync_to": ["desk"],
            },
            "arr": {"type": "number", "kind": "account", "owner": "crm", "sync_to": ["desk"]},
        },
    )
    settings = ConnectorSettings(plugin="bench-memory", kinds=["account"])
    crm = Memory(ConnectorContext("crm", settings), ticks)
    desk_cls = type("DeskMemory", (Memory,), {"batch_max": args.batch})
    desk = desk_cls(ConnectorContext("desk", settings), ticks)
    systems: dict[str, Connector] = {"crm": crm, "desk": desk}
    tiers = ["gold", "silver", "bronze"]
    for i in range(args.records):
        crm.put(f"A{i:06}", {"tier": tiers[i % 3], "arr": i * 10})

    url = args.database or f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-sync-')) / 'bridge.db'}"
    store = Store.open(url)
    clock = [T0]
    syncer = Syncer(config, store, systems.__getitem__, clock=lambda: clock[0], claim_limit=args.records + 1)
    minimum = math.ceil(args.records / args.batch)
    print(f"records: {args.records}, desk batch_max: {args.batch}, store: {store.dialect}")
    for label in ("pass 1: N changed records", "pass 2: re-sync (desk echoes)", "pass 3: re-sync (nothing)"):
        calls, writes = desk.calls, desk.writes
        started = time.perf_counter()
        report = syncer.sync()
        took = time.perf_counter() - started
        clock[0] += timedelta(minutes=1)
        print(
            f"{label}: pulled {report.pulled}, write calls {desk.calls - calls} "
            f"(minimum {minimum if label.startswith('pass 1') else 0}), writes {desk.writes - writes}, "
            f"queued {report.writes_queued}, {took:.1f}s ({report.pulled / took:,.0f} changes/s)"
        )
    store.close()


if __name__ == "__main__":
    main()
