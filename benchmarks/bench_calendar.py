"""Speed of business-time arithmetic and SLA clocks; prints figures, asserts nothing.

Run: ``.venv/bin/python benchmarks/bench_calendar.py``
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from bridge.rules.calendar import BusinessCalendar
from bridge.rules.sla import TicketSla
from bridge.settings import CalendarConfig, SlaConfig

SUPPORT = CalendarConfig(
    timezone="Europe/Berlin",
    hours={
        "mon": ["09:00-12:00", "13:00-17:00"],
        "tue": ["09:00-17:00"],
        "wed": ["09:00-17:00"],
        "thu": ["09:00-17:00"],
        "fri": ["09:00-17:00"],
    },
    holidays=["2026-12-25", "2026-12-26", "2027-01-01"],
)
POLICY = SlaConfig(
    name="enterprise",
    calendar="support",
    first_response="1h",
    next_response="4h",
    resolution="2d",
    warn_before="15m",
    escalate=[{"after": "30m", "to": "team-leads"}, {"after": "2h", "to": "managers"}],  # type: ignore[list-item]
)


def timed(label: str, n: int, fn: object) -> None:
    assert callable(fn)
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    print(f"{label:<52} {n:>8} calls  {elapsed:7.3f} s  {elapsed / n * 1e6:8.1f} µs/call")


def main() -> None:
    rng = random.Random(7)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    starts = [base + timedelta(seconds=rng.randrange(0, 2 * 365 * 86400)) for _ in range(100_000)]

    cold = BusinessCalendar.from_config(SUPPORT)
    timed(
        "add 1h (cold cache, 100k random starts)",
        len(starts),
        lambda: [cold.add(s, timedelta(hours=1)) for s in starts],
    )
    timed("add 2d (warm cache)", len(starts), lambda: [cold.add(s, timedelta(days=2)) for s in starts])
    far = starts[:10_000]
    timed(
        "add 90d of business time (3.7 years of weeks)",
        len(far),
        lambda: [cold.add(s, timedelta(days=90)) for s in far],
    )
    timed(
        "elapsed over 60 days",
        len(far),
        lambda: [cold.elapsed(s, s + timedelta(days=60)) for s in far],
    )

    def tickets() -> None:
        for s in starts:
            sla = TicketSla(POLICY, cold, s)
            sla.next_timer()
            sla.on_message("agent", s + timedelta(minutes=50))
            sla.on_message("customer", s + timedelta(hours=3))
            sla.on_status("pending", s + timedelta(hours=5))
            sla.on_status("open", s + timedelta(hours=30))
            sla.fire(s + timedelta(days=3))
            sla.on_status("resolved", s + timedelta(days=4))
            sla.fire(s + timedelta(days=10))
            sla.due()

    timed("TicketSla life cycle (9 calls each, 100k tickets)", len(starts), tickets)


if __name__ == "__main__":
    main()
