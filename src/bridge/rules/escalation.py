"""Built-in escalation triggers that no single ticket's conditions can express.

- **volume**: an account sending at least ``ratio`` (3x) its usual weekly volume gets a check-in task due
  within 24 hours. The usual volume is the average of the four weeks before the current (trailing seven-day)
  week; it is only judged once the watch has seen five weeks, so a replay does not flag every account in
  its first days. At least ``min_count`` (3) tickets this week are needed, and an account flagged is not
  flagged again for a week.
- **low confidence**: a ticket whose classification confidence is below :data:`LOW_CONFIDENCE` is sent to a
  human for review, once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

LOW_CONFIDENCE = 0.6
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class VolumeSpike:
    """An account's week well above its usual volume."""

    account: str
    count: int
    usual: float
    due: datetime


class VolumeWatch:
    """Tickets per account over the last five weeks; says when a new ticket makes a spike."""

    def __init__(self, ratio: float = 3.0, weeks: int = 4, min_count: int = 3,
                 respond_within: timedelta = timedelta(hours=24)) -> None:
        self.ratio = ratio
        self.weeks = weeks
        self.min_count = min_count
        self.respond_within = respond_within
        self._horizon = WEEK * (weeks + 1)
        self._seen: dict[str, deque[datetime]] = {}
        self._quiet_until: dict[str, datetime] = {}
        self._first: dict[str, datetime] = {}  # a new account has no usual volume to compare with yet
        self._start: datetime | None = None

    def record(self, account: str, at: datetime) -> VolumeSpike | None:
        """Count one new ticket of ``account`` at ``at`` (calls in time order); a spike when it makes one."""
        if self._start is None:
            self._start = at
        first = self._first.setdefault(account, at)
        times = self._seen.get(account)
        if times is None:
            times = self._seen[account] = deque()
        times.append(at)
        oldest = at - self._horizon
        while times and times[0] <= oldest:
            times.popleft()
        if at - self._start < self._horizon or at - first < WEEK * self.weeks:
            return None
        quiet = self._quiet_until.get(account)
        if quiet is not None and at < quiet:
            return None
        week_start = at - WEEK
        count = _count_after(times, week_start)
        if count < self.min_count:
            return None
        usual = (len(times) - count) / self.weeks
        if count < self.ratio * usual:
            return None
        self._quiet_until[account] = at + WEEK
        return VolumeSpike(account, count, usual, at + self.respond_within)


def _count_after(times: deque[datetime], start: datetime) -> int:
    # times are sorted: walk back from the newest until the week starts
    n = 0
    for t in reversed(times):
        if t <= start:
            break
        n += 1
    return n


def low_confidence(confidence: object, threshold: float = LOW_CONFIDENCE) -> bool:
    """Whether a classification confidence is a number below ``threshold`` (``[classify] min_confidence``)."""
    if confidence is None:
        return False  # the Desk asks on every event of every ticket; most carry no confidence
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return False
    return confidence < threshold


__all__ = ["LOW_CONFIDENCE", "VolumeSpike", "VolumeWatch", "low_confidence"]
