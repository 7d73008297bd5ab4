"""Durations as admins write them: ``30s``, ``15m``, ``4h``, ``2d``, ``1w``, and sums like ``1h30m``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# No timer or budget is meant to run for longer; far larger ones would overflow the date arithmetic of the
# rules (a date past year 9999), so they are refused where the config is read, never met at run time.
MAX_DURATION = timedelta(days=3650)
MAX_SPELLED = "3650d (10 years)"


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raises ValueError with the accepted forms when it is not one or is over 10 years."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise ValueError(f"{text!r} is not a duration (use e.g. 30s, 15m, 4h, 2d, 1h30m)")
    seconds = sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))
    # compared as seconds: timedelta itself overflows (OverflowError, not a ValueError) on the largest ones
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is too long: a duration is at most {MAX_SPELLED}")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest admin spelling of ``delta`` (``90m`` -> ``1h30m``)."""
    total = int(delta.total_seconds())
    if total == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
