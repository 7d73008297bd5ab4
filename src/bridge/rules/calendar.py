"""Business-hours calendars: open hours per weekday in an IANA zone, holidays, and business-time arithmetic.

A calendar is a set of open intervals on the real time line. Each weekday has zero or more periods written as
local wall-clock times (``"09:00-17:00"``, ``"22:00-24:00"``); each period of each local date is turned into a
UTC interval through the zone, so daylight saving is exact: a ``09:00-17:00`` day is 8 real hours even on a
switch day, and a ``00:00-06:00`` day is 5 (spring) or 7 (autumn) real hours when the switch falls inside it.
A local time that does not exist (spring gap) is read with the offset before the switch, as RFC 5545 (3.3.5),
zoneinfo and zendesk/biz read it; a period that comes out empty that way is dropped. Holidays remove every
period of a whole local date; they come from the ``holidays`` list and from an iCalendar file (see
:func:`read_ical` for what it supports).

Conventions (all inputs must be aware datetimes; every result is UTC):

- intervals are half-open ``[opening, closing)``: the opening instant is open, the closing instant is closed;
- ``add(t, d)`` with ``d > 0`` counts ``d`` of open time from ``t`` (from the next opening when ``t`` is
  closed) and returns the instant it is used up; a deadline that is used up exactly at a closing time is that
  closing instant, it does not roll to the next opening. ``add(t, 0)`` is ``t`` itself, even in closed time;
- ``elapsed(a, b)`` is the open time in ``[a, b)``, zero when ``b <= a``; so ``elapsed(t, add(t, d)) == d``
  and ``add(add(t, a), b) == add(t, a + b)`` for all ``a, b >= 0``;
- durations are plain timedeltas: ``2d`` is 48 hours of open time (config.md: "d is 24 hours of the clock that
  applies").

Arithmetic walks local dates, caching each date's intervals and each week's total, and skips whole weeks at a
time, so adding months of business time costs a few dozen dictionary look-ups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.settings import DAYS, CalendarConfig

ZERO = timedelta(0)
_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
_PERIOD = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# an arithmetic walk that finds no open time for this many days gives up instead of looping for ever
_HORIZON_DAYS = 3660
_CENTURY_DAYS = 36525  # how far closed_stretch walks from the first holiday at most
# how much a calendar without holidays is open a week is measured over the _HORIZON_DAYS from this day: a
# fixed day, so that `bridge check` says the same thing whenever it runs
_REFERENCE_DAY = date(2000, 1, 3)
# the days a calendar's time is measured from are kept within these, so that walking _HORIZON_DAYS from one
# (and converting its local midnights to UTC) stays within datetime's range
_FIRST_REFERENCE_DAY = date(2, 1, 1)
_LAST_REFERENCE_DAY = date(9000, 1, 3)

Problem = tuple[tuple[str, ...], str]


@dataclass(frozen=True)
class YearlyHoliday:
    """A holiday that repeats every ``interval`` years (an iCalendar ``RRULE:FREQ=YEARLY``).

    Dates are the event's own: RFC 5545 expands a rule in the zone of its DTSTART (``zone``; None for an
    all-day or floating event, which is read in the calendar's zone). An all-day occurrence (``at`` None)
    closes ``days`` whole local days from its date; a timed one starts at ``at`` on its date in ``zone``,
    lasts ``length`` (exact time) and closes every day of the calendar's zone it touches (see
    :meth:`local_days`). ``months``, ``monthdays`` and ``weekdays`` are the RRULE's BYMONTH, BYMONTHDAY and
    BYDAY parts (BYDAY as ``(ordinal, weekday)``, ordinal 0 meaning every such weekday of the month, negative
    counting from the month's end), as RFC 5545 combines them: BYMONTHDAY without BYMONTH is in every month;
    BYDAY with BYMONTHDAY keeps the days that satisfy both; without either, the start date's month and day.
    The start date is always the first occurrence, even when the rule does not produce it (RFC 5545
    3.8.5.3), and counts towards COUNT, as ``exdates`` do.
    """

    start: date
    days: int = 1
    interval: int = 1
    count: int | None = None
    until: date | None = None
    months: tuple[int, ...] = ()
    monthdays: tuple[int, ...] = ()
    weekdays: tuple[tuple[int, int], ...] = ()
    exdates: frozenset[date] = frozenset()
    at: time | None = None
    zone: tzinfo | None = None
    length: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        # a rule out of these ranges would fail (or close the wrong days) on every date asked later, so it
        # is refused when the calendar is read, where `bridge check` reports it
        if self.days < 1:
            raise ValueError(f"an occurrence must last at least one day, not {self.days}")
        if self.interval < 1:
            raise ValueError(f"RRULE INTERVAL={self.interval} is not allowed (it must be 1 or more)")
        if self.count is not None and self.count < 1:
            raise ValueError(f"RRULE COUNT={self.count} is not allowed (it must be 1 or more)")
        for month in self.months:
            if not 1 <= month <= 12:
                raise ValueError(f"RRULE BYMONTH={month} is not a month (1 to 12)")
        for day in self.monthdays:
            if not 1 <= abs(day) <= 31:
                raise ValueError(f"RRULE BYMONTHDAY={day} is not a day of the month (1 to 31 or -31 to -1)")
        for ordinal, weekday in self.weekdays:
            if not (abs(ordinal) <= 53 and 0 <= weekday <= 6):
                raise ValueError(
                    f"RRULE BYDAY ({ordinal}, {weekday}) is not a weekday (ordinal 1 to 53 or -53 to -1, "
                    "weekday 0 to 6)"
                )

    def occurrences(self, year: int) -> list[date]:
        """Occurrence dates in ``year`` (COUNT not applied), sorted."""
        if year < self.start.year or (year - self.start.year) % self.interval:
            return []
        out: set[date] = {self.start} if year == self.start.year else set()
        months = self.months or (range(1, 13) if self.monthdays else (self.start.month,))
        for month in months:
            monthdays: set[date] = set()
            for day in self.monthdays or (() if self.weekdays else (self.start.day,)):
                found = _month_day(year, month, day)
                if found is not None:
                    monthdays.add(found)
            if self.weekdays:
                weekdays = set(_month_weekdays(year, month, self.weekdays))
                out.update(weekdays & monthdays if self.monthdays else weekdays)
            else:
                out.update(monthdays)
        return sorted(d for d in out if d >= self.start and (self.until is None or d <= self.until))

    def local_days(self, occurrence: date, tz: tzinfo) -> list[date]:
        """The days of the calendar's zone ``tz`` that the occurrence on ``occurrence`` (an event's date, from
        :meth:`occurrences`) closes."""
        if self.at is None:
            return [occurrence + timedelta(days=n) for n in range(self.days)]
        # RFC 5545 3.3.5: a start that does not exist, or occurs twice, takes the offset before the switch
        start = datetime.combine(occurrence, self.at, tz if self.zone is None else self.zone)
        first, days = _touched(start, start.astimezone(UTC) + self.length, tz)
        return [first + timedelta(days=n) for n in range(days)]


def _month_length(year: int, month: int) -> int:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return (nxt - date(year, month, 1)).days


def _month_day(year: int, month: int, day: int) -> date | None:
    length = _month_length(year, month)
    if day < 0:
        day = length + 1 + day
    return date(year, month, day) if 1 <= day <= length else None


def _month_weekdays(year: int, month: int, weekdays: Iterable[tuple[int, int]]) -> list[date]:
    length = _month_length(year, month)
    out = []
    for ordinal, weekday in weekdays:
        days = (date(year, month, day) for day in range(1, length + 1))
        matches = [d for d in days if d.weekday() == weekday]
        if ordinal == 0:
            out.extend(matches)
        elif -len(matches) <= ordinal <= len(matches):
            out.append(matches[ordinal - 1 if ordinal > 0 else ordinal])
    return out


def _utc(t: datetime) -> datetime:
    if t.tzinfo is UTC:
        return t
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t!r} is a naive datetime; business-time arithmetic needs aware datetimes")
    return t.astimezone(UTC)


def parse_period(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` as minutes since local midnight; raises ValueError saying what is wrong.

    The end may be ``24:00``; it must be after the start (overnight hours are written as two periods,
    ``22:00-24:00`` on one day and ``00:00-06:00`` on the next).
    """
    match = _PERIOD.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a period (use HH:MM-HH:MM, e.g. 09:00-17:00)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if m1 > 59 or m2 > 59 or h1 > 23 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"{text!r} has a time beyond 24:00 (hours 00-23, minutes 00-59, or 24:00 as an end)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise ValueError(
            f"{text!r} ends before it starts; write overnight hours as 22:00-24:00 and 00:00-06:00 on the "
            "next day"
        )
    return start, end


def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {key!r} (use an IANA name such as Europe/Berlin)") from None


def _aware(value: datetime, tz: tzinfo) -> datetime:
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def _as_date(value: Any, tz: tzinfo) -> date:
    if isinstance(value, datetime):
        return (value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)).date()
    if isinstance(value, date):
        return value
    raise ValueError(f"{value!r} is not a date")


@dataclass(frozen=True)
class _Event:
    """A VEVENT's DTSTART and span: ``first`` and ``days`` are the local days (calendar's zone) it closes;
    ``zone`` is the zone its recurrences are expanded in (DTSTART's own; the calendar's for an all-day or
    floating one); ``length`` is the exact time from DTSTART to its end, None for an all-day event."""

    start: date | datetime
    first: date
    days: int
    zone: tzinfo
    length: timedelta | None

    @property
    def at(self) -> time | None:
        """DTSTART's wall-clock time in ``zone``; None for an all-day event."""
        return self.start.time() if isinstance(self.start, datetime) else None


def _event_span(event: Any, tz: tzinfo) -> _Event:
    """A VEVENT's DTSTART, the local days it closes and how long it lasts."""
    start_prop = event.get("DTSTART")
    if start_prop is None:
        raise ValueError("a VEVENT has no DTSTART")
    _known_zone(start_prop, "DTSTART")
    start = start_prop.dt
    zone = start.tzinfo if isinstance(start, datetime) and start.tzinfo is not None else tz
    end_prop, duration = event.get("DTEND"), event.get("DURATION")
    if end_prop is not None:
        _known_zone(end_prop, "DTEND")
        end = end_prop.dt
    elif duration is not None:
        end = start + duration.dt
    else:
        # RFC 5545 3.6.1: a timed event without an end ends as it starts; an all-day one lasts a day
        return _Event(start, _as_date(start, tz), 1, zone, ZERO if isinstance(start, datetime) else None)
    first, days = _span(start, end, tz)
    length = None
    if isinstance(start, datetime) and isinstance(end, datetime):
        # exact time (RFC 5545 3.8.5.3: every recurrence lasts as long), so measured in UTC: Python subtracts
        # two times of one zone on the wall clock
        length = _aware(end, tz).astimezone(UTC) - _aware(start, tz).astimezone(UTC)
    return _Event(start, first, days, zone, length)


MAX_HOLIDAY_DAYS = 366


def _known_zone(prop: Any, name: str) -> None:
    """Raise ValueError when a time names a ``TZID`` neither the file (VTIMEZONE) nor the IANA database
    knows: the library leaves it a floating time, which would silently be read in the calendar's zone."""
    tzid = prop.params.get("TZID") if hasattr(prop, "params") else None
    value = getattr(prop, "dt", None)
    if tzid and isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError(f"{name} names the unknown time zone TZID={tzid}")


def _span(start: Any, end: Any, tz: tzinfo) -> tuple[date, int]:
    """First local date of ``[start, end)`` and how many whole local days it covers (at least one).

    Raises ValueError when ``end`` is before ``start`` (RFC 5545 wants it later): which days that closes is a
    guess, so it is not made.
    """
    first = _as_date(start, tz)
    if isinstance(start, datetime) and isinstance(end, datetime):
        backwards = _aware(end, tz) < _aware(start, tz)
    else:
        backwards = _as_date(end, tz) < first
    if backwards:
        raise ValueError(f"it ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    if isinstance(end, datetime):
        first, days = _touched(start, end, tz)
    else:
        days = max((_as_date(end, tz) - first).days, 1)
    if days > MAX_HOLIDAY_DAYS:
        # closed for longer than a year is a typo (P100000D), and would leave no open hour to count SLAs in
        raise ValueError(f"it closes {days} days in a row (at most {MAX_HOLIDAY_DAYS})")
    return first, days


def _touched(start: date | datetime, end: datetime, tz: tzinfo) -> tuple[date, int]:
    """First local date of ``[start, end)`` and how many local dates it touches (at least one); an end at
    midnight does not touch the next day."""
    first = _as_date(start, tz)
    last = _as_date(end - timedelta(microseconds=1), tz)
    return first, max((last - first).days + 1, 1)


def _plus(start: date | datetime, length: timedelta) -> datetime:
    """``length`` of exact time after ``start`` (a floating time stays floating)."""
    if not isinstance(start, datetime):
        raise ValueError(f"{start!r} is a date, not a date-time")
    if start.tzinfo is None:
        return start + length
    return start.astimezone(UTC) + length


def _recur_ints(rule: Any, key: str) -> list[str]:
    return [str(v).upper() for v in rule.get(key, [])]


def _single(rule: Any, key: str) -> Any:
    """The one value of an RRULE part that takes one (INTERVAL, COUNT, UNTIL), or None when it is absent."""
    values = rule.get(key) or []
    if len(values) > 1:
        raise ValueError(f"RRULE {key}={','.join(str(v) for v in values)} has more than one value")
    return values[0] if values else None


def _yearly(event: Any, span: _Event, tz: tzinfo, exdates: set[date]) -> YearlyHoliday:
    """The event's RRULE, expanded in its DTSTART's zone; ``exdates`` are dates of that zone."""
    rule = event.get("RRULE")
    if isinstance(rule, list):
        raise ValueError("more than one RRULE is not supported")
    freq = _recur_ints(rule, "FREQ")
    if freq != ["YEARLY"]:
        raise ValueError(f"RRULE FREQ={','.join(freq) or '?'} is not supported (only FREQ=YEARLY)")
    supported = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYMONTH", "BYMONTHDAY", "BYDAY", "WKST"}
    extra = sorted(set(rule) - supported)
    if extra:
        raise ValueError(f"RRULE part {', '.join(extra)} is not supported")
    if rule.get("BYDAY") and not rule.get("BYMONTH") and not rule.get("BYMONTHDAY"):
        # a yearly BYDAY alone counts weekdays through the whole year; not needed for holidays
        raise ValueError("RRULE BYDAY needs BYMONTH or BYMONTHDAY (e.g. BYMONTH=11;BYDAY=4TH)")
    weekdays = []
    for text in _recur_ints(rule, "BYDAY"):
        match = _BYDAY.match(text)
        if match is None:
            raise ValueError(f"RRULE BYDAY={text} is not understood")
        ordinal = match.group(1)
        if ordinal is not None and not 1 <= abs(int(ordinal)) <= 53:
            # "0MO" is not RFC 5545; read as 0 it would mean every Monday
            raise ValueError(f"RRULE BYDAY={text}: the ordinal must be 1 to 53 or -53 to -1")
        if ordinal is not None and not rule.get("BYMONTH"):
            # without BYMONTH, RFC 5545 counts the ordinal through the whole year, not within each month
            raise ValueError(f"RRULE BYDAY={text} with an ordinal needs BYMONTH (e.g. BYMONTH=11;BYDAY=4TH)")
        weekdays.append((int(ordinal or 0), _WEEKDAYS.index(match.group(2))))
    months = []
    for text in _recur_ints(rule, "BYMONTH"):
        if text.endswith("L"):
            # RFC 7529 leap months exist only in other calendar scales (RSCALE), not in the Gregorian one
            raise ValueError(f"RRULE BYMONTH={text}: leap months are not supported")
        months.append(text)
    count, until = _single(rule, "COUNT"), _single(rule, "UNTIL")
    if count is not None and until is not None:
        raise ValueError("RRULE has both COUNT and UNTIL (RFC 5545 allows only one of them)")
    interval = _single(rule, "INTERVAL")
    try:
        parsed = (
            int(interval) if interval is not None else 1,
            int(count) if count is not None else None,
            _until(until, span) if until is not None else None,
            tuple(int(m) for m in months),
            tuple(int(d) for d in _recur_ints(rule, "BYMONTHDAY")),
        )
    except ValueError as exc:
        raise ValueError(f"RRULE is not understood: {exc}") from None
    # YearlyHoliday checks the ranges (INTERVAL, COUNT, BYMONTH, BYMONTHDAY, BYDAY), naming the part
    return YearlyHoliday(
        start=_as_date(span.start, span.zone),
        days=span.days,
        interval=parsed[0],
        count=parsed[1],
        until=parsed[2],
        months=parsed[3],
        monthdays=parsed[4],
        weekdays=tuple(weekdays),
        exdates=frozenset(exdates),
        at=span.at if span.length is not None else None,  # a DTEND that is a date: whole days from the date
        zone=span.start.tzinfo if isinstance(span.start, datetime) else None,
        length=span.length or ZERO,
    )


def _until(until: Any, span: _Event) -> date:
    """The last date of the event's zone whose occurrence starts no later than UNTIL (RFC 5545: UNTIL bounds
    the start of an instance, inclusively)."""
    if not isinstance(until, datetime) or span.at is None:
        return _as_date(until, span.zone)
    local = _aware(until, span.zone).astimezone(span.zone)
    return local.date() if span.at <= local.time() else local.date() - _DAY


def _values(event: Any, key: str) -> list[Any]:
    """The values of a date-list property (EXDATE, RDATE), which may appear several times."""
    prop = event.get(key)
    groups = prop if isinstance(prop, list) else ([prop] if prop is not None else [])
    return [d.dt for group in groups for d in group.dts]


def _rdates(event: Any, span: _Event, tz: tzinfo) -> list[tuple[date, date, int]]:
    """RDATE occurrences as (date in the event's zone, first local date, days): a date or date-time lasts as
    long as the event, a period as itself."""
    out = []
    for value in _values(event, "RDATE"):
        if isinstance(value, tuple):
            start, end = value
            end = start + end if isinstance(end, timedelta) else end
            out.append((_as_date(start, span.zone), *_span(start, end, tz)))
        elif isinstance(value, datetime) and span.length is not None:
            out.append((_as_date(value, span.zone), *_touched(value, _plus(value, span.length), tz)))
        else:
            out.append((_as_date(value, span.zone), _as_date(value, tz), span.days))
    return out


def _cancelled(event: Any) -> bool:
    return str(event.get("STATUS", "")).upper() == "CANCELLED"


def read_ical(path: Path, tz: tzinfo) -> tuple[set[date], list[YearlyHoliday]]:
    """Holidays of an iCalendar file: one-off dates, and yearly rules; raises ValueError saying why not.

    Each VEVENT closes the whole local days it touches (all-day or timed, multi-day spans), on its DTSTART
    and on its recurrences: a yearly RRULE (see :class:`YearlyHoliday`) and RDATE dates or periods, minus
    EXDATE. Recurrences are expanded, and EXDATE and RECURRENCE-ID matched, in the zone of DTSTART. An event
    with RECURRENCE-ID moves the occurrence of its UID on that date to its own DTSTART (or, with
    STATUS:CANCELLED, removes it); any other STATUS:CANCELLED event closes nothing. What is not supported
    (another FREQ, BYSETPOS and the like, EXRULE, a RECURRENCE-ID with RANGE) is an error naming the file and
    the event's UID, never ignored.
    """
    import icalendar

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read iCalendar file {path}: {exc.strerror}") from None
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise ValueError(f"{path} is not an iCalendar file: {_unclosed(data) or _plain(str(exc))}") from None
    dates: set[date] = set()
    rules: list[YearlyHoliday] = []
    events = list(calendar.walk("VEVENT"))
    # the occurrences that RECURRENCE-ID events move or cancel: UID -> original starts (read, as the other
    # occurrences are, in the zone of the DTSTART of the event they belong to)
    moved: dict[str, list[Any]] = {}
    bad: list[str] = []  # every bad event is named at once, not one per run of bridge check
    # a line with no colon is skipped by the library, or (after a parameter: ``RDATE;VALUE=DATE 20261231``)
    # read as a parameter with an empty value: either way it would open or close other days than the file
    # says, so every such line is found here, with its number
    scan = _scan_lines(data.decode("utf-8", "replace"))
    for where, number, line in scan.unreadable:
        bad.append(f"{path}: {where}: line {number}: cannot be read: {line!r} (a content line is NAME:VALUE)")
    named = {number for _where, number, _line in scan.unreadable}
    for part in calendar.walk():
        # the library keeps aside a line it cannot read otherwise (a name it cannot parse). (It keeps aside
        # a value it cannot type too, PRIORITY:high: a property read here is checked where it is read, the
        # others close nothing)
        for _name, message in part.errors:
            if str(message).startswith(_UNREADABLE):
                at, said = _bad_line(data, str(message))
                if at is None or at not in named:
                    part_is = f"event {part.get('UID', '?')}" if part.name == "VEVENT" else part.name
                    bad.append(f"{path}: {part_is}: {said}")
    for event in events:
        rid = event.get("RECURRENCE-ID")
        if rid is None:
            continue
        try:
            if "RANGE" in rid.params:
                raise ValueError(f"RECURRENCE-ID;RANGE={rid.params['RANGE']} is not supported")
            moved.setdefault(str(event.get("UID", "")), []).append(rid.dt)
        except (ValueError, TypeError, AttributeError) as exc:
            bad.append(f"{path}: event {event.get('UID', '?')}: {exc}")
    for index, event in enumerate(events):
        try:
            lines = scan.events[index] if index < len(scan.events) else {}
            if any(number in named for found in lines.values() for number, _line in found):
                continue  # a line of it has no colon (named above): what is left of it says nothing more
            broken = _broken(event, lines)
            if broken is not None:
                raise ValueError(broken)
            if event.get("EXRULE") is not None:
                raise ValueError("EXRULE is not supported (use EXDATE)")
            if _cancelled(event):
                continue  # a cancelled event, or (with RECURRENCE-ID) a cancelled occurrence
            span = _event_span(event, tz)
            if event.get("RECURRENCE-ID") is not None:
                # the occurrence, moved here
                dates.update(span.first + timedelta(days=n) for n in range(span.days))
                continue
            # occurrences are told apart by their date in the event's zone, where the rule expands them
            excluded = {_as_date(d, span.zone) for d in _values(event, "EXDATE")}
            excluded |= {_as_date(d, span.zone) for d in moved.get(str(event.get("UID", "")), [])}
            occurrences = _rdates(event, span, tz)
            if event.get("RRULE") is not None:
                rules.append(_yearly(event, span, tz, excluded))
            else:
                occurrences.append((_as_date(span.start, span.zone), span.first, span.days))
            for key, first, days in occurrences:
                if key not in excluded:
                    dates.update(first + timedelta(days=n) for n in range(days))
        except (ValueError, TypeError, AttributeError) as exc:
            problem = f"{path}: event {event.get('UID', '?')}: {exc}"
            if problem not in bad:
                bad.append(problem)
    if bad:
        raise IcalError(bad)
    return dates, rules


_UNREADABLE = "Content line could not be parsed into parts: '"


def _bad_line(data: bytes, message: str) -> tuple[int | None, str]:
    """A line the iCalendar library could not read (``_UNREADABLE``: the line, quoted, then why): its line
    number in the file (the first of its physical lines, when it was folded; None if not found) and what to
    say of it."""
    end = message.rfind("': ")
    text = message[len(_UNREADABLE):end] if end >= len(_UNREADABLE) else message[len(_UNREADABLE):]
    for number, line in _unfolded(data.decode("utf-8", "replace")):
        if line.strip() == text.strip():
            return number, f"line {number}: cannot be read: {text!r} (a content line is NAME:VALUE)"
    return None, f"a line that cannot be read: {text!r} (a content line is NAME:VALUE)"


# the properties read here, and what a value of each must be
_READ = {
    "DTSTART": "a date or date-time",
    "DTEND": "a date or date-time",
    "DURATION": "a duration",
    "RDATE": "dates, date-times or periods",
    "EXDATE": "dates or date-times",
    "RECURRENCE-ID": "a date or date-time",
    "RRULE": "a recurrence rule",
}


@dataclass
class _Scan:
    """What :func:`_scan_lines` found in an iCalendar text."""

    unreadable: list[tuple[str, int, str]]  # (where: "event UID" or a component, line number, the line)
    events: list[dict[str, list[tuple[int, str]]]]  # per VEVENT, in file order: property -> (number, line)


def _value_start(line: str) -> int:
    """Where the value of a content line starts (after its first colon outside a quoted parameter value),
    or -1 when it has no such colon."""
    quoted = False
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            return i + 1
    return -1


def _scan_lines(text: str) -> _Scan:
    """The content lines of an iCalendar text that are not ``NAME[;PARAM=...]:VALUE`` (named by the event or
    component they are in), and each VEVENT's lines by property name."""
    unreadable: list[tuple[str, int, str]] = []
    events: list[dict[str, list[tuple[int, str]]]] = []
    stack: list[str] = []
    block: list[tuple[int, str]] = []  # the colonless lines of the VEVENT being read
    uid = "?"
    for number, line in _unfolded(text.lstrip("\ufeff")):
        if not line.strip():
            continue
        start = _value_start(line)
        name = (line[:start - 1] if start > 0 else line).split(";", 1)[0].strip().upper()
        value = line[start:].strip().upper() if start > 0 else ""
        inside = "VEVENT" in stack
        if start < 0:
            if inside:
                block.append((number, line))
                if stack[-1] == "VEVENT":
                    events[-1].setdefault(re.split(r"[;\s]", line.strip(), maxsplit=1)[0].upper(), []).append(
                        (number, line))
            else:
                unreadable.append((stack[-1] if stack else "VCALENDAR", number, line))
            continue
        if name == "BEGIN":
            stack.append(value)
            if value == "VEVENT" and not inside:
                events.append({})
                block, uid = [], "?"
            continue
        if name == "END":
            if stack and stack[-1] == value:
                stack.pop()
            if value == "VEVENT" and "VEVENT" not in stack:
                unreadable += [(f"event {uid}", n, bad) for n, bad in block]
                block = []
            continue
        if inside and stack[-1] == "VEVENT":
            events[-1].setdefault(name, []).append((number, line))
            if name == "UID":
                uid = line[start:].strip()
    unreadable += [(f"event {uid}", n, bad) for n, bad in block]  # (an event never ended)
    unreadable.sort(key=lambda item: item[1])
    return _Scan(unreadable, events)


def _broken(event: Any, lines: dict[str, list[tuple[int, str]]]) -> str | None:
    """What to say of a property read here whose value the library could not type (``DTSTART;VALUE=DATE:
    20261332``), named by its line in the file; None when there is none."""
    for name, what in _READ.items():
        prop = event.get(name)
        for value in prop if isinstance(prop, list) else [prop]:
            if type(value).__name__ != "vBroken":
                continue
            raw = str(value)
            found = lines.get(name, [])
            # the line whose value the library kept, else the first of that property
            at = next(((n, line) for n, line in found if line[_value_start(line):].strip() == raw.strip()),
                      found[0] if found else None)
            if at is None:
                return f"{name} cannot be read: {raw!r} is not {what}"
            return f"line {at[0]}: cannot be read: {at[1]!r} ({name} must be {what})"
    return None


def _unfolded(text: str) -> Iterator[tuple[int, str]]:
    """The content lines of an iCalendar text, each unfolded (RFC 5545 3.1), with the number of its first
    physical line."""
    start, parts = 0, list[str]()
    for number, line in enumerate(text.splitlines(), 1):
        if line[:1] in (" ", "\t") and parts:
            parts.append(line[1:])
            continue
        if parts:
            yield start, "".join(parts)
        start, parts = number, [line]
    if parts:
        yield start, "".join(parts)


def _unclosed(data: bytes) -> str | None:
    """Where an iCalendar file's components do not nest (a BEGIN never ended, an END of another), if so."""
    stack: list[tuple[str, int]] = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        name, _, value = line.partition(":")
        value = value.strip().upper()
        if name.strip().upper() == "BEGIN":
            stack.append((value, number))
        elif name.strip().upper() == "END":
            if not stack or stack[-1][0] != value:
                return f"line {number}: END:{value} does not end the component open there"
            stack.pop()
    if stack:
        value, number = stack[-1]
        return f"line {number}: BEGIN:{value} is never ended (END:{value} missing)"
    return None


def _plain(message: str) -> str:
    """The library's message without the dump of the file's bytes it may carry."""
    return message.split(": b'", 1)[0].split(" b'", 1)[0]


class IcalError(ValueError):
    """The problems of an iCalendar file's events, each naming the file and the event's UID."""

    def __init__(self, problems: list[str]) -> None:
        """``problems``: one line each."""
        super().__init__("; ".join(problems))
        self.problems = problems


def validate_calendar(
    name: str,
    cfg: CalendarConfig,
    base_dir: Path | None = None,
    set_aside: Iterable[tuple[str, ...]] = (),
    default_tz: str = "UTC",
) -> list[Problem]:
    """Every problem of one ``[calendars.NAME]`` table, as (key path inside the table, message).

    Finds unknown day names, periods that are not ``HH:MM-HH:MM``, end not after start, times beyond 24:00,
    overlapping periods in one day, an unknown IANA zone, holidays that are not ``YYYY-MM-DD``, an iCalendar
    file that cannot be read or parsed (relative paths are read under ``base_dir``), a calendar with no
    open hours, and one whose holidays close every open day for years (see :meth:`BusinessCalendar.
    closed_stretch`). ``set_aside``: key paths inside the table that did not validate and were dropped (their
    problems are already reported); a calendar whose hours lost a day that way is not said to have none.
    ``default_tz`` (``[bridge] timezone``) applies when the table has no ``timezone``.
    """
    problems: list[Problem] = []
    aside = set(set_aside)
    tz = ZoneInfo("UTC")
    try:
        tz = _zone(cfg.timezone or default_tz)
    except ValueError as exc:
        if cfg.timezone is not None:  # a bad [bridge] timezone is reported as such
            problems.append((("timezone",), str(exc)))
    open_minutes = 0
    for day, periods in cfg.hours.items():
        if day not in DAYS:
            problems.append((("hours", day), f"unknown day {day!r} (use {', '.join(DAYS)})"))
            continue
        parsed: list[tuple[int, int, int]] = []
        for index, text in enumerate(periods):
            if ("hours", day, str(index)) in aside:
                continue  # not text: reported already
            try:
                start, end = parse_period(text)
            except ValueError as exc:
                problems.append((("hours", day, str(index)), str(exc)))
                continue
            parsed.append((start, end, index))
        parsed.sort()
        for (_s1, e1, i1), (s2, _e2, i2) in pairwise(parsed):
            if s2 < e1:
                problems.append(
                    (("hours", day, str(i2)), f"{periods[i2]!r} overlaps {periods[i1]!r} on {day}")
                )
        open_minutes += sum(e - s for s, e, _ in parsed)
    for index, text in enumerate(cfg.holidays):
        if ("holidays", str(index)) in aside:
            continue  # not text: reported already
        try:
            date.fromisoformat(text)
        except (TypeError, ValueError):
            problems.append((("holidays", str(index)), f"{text!r} is not a date (use YYYY-MM-DD)"))
    dates: set[date] = set()
    yearly: list[YearlyHoliday] = []
    if cfg.ical is not None:
        try:
            dates, yearly = read_ical(_ical_path(cfg.ical, base_dir), tz)
        except IcalError as exc:
            problems.extend((("ical",), problem) for problem in exc.problems)
        except ValueError as exc:
            problems.append((("ical",), str(exc)))
    dropped = any(path[:1] == ("hours",) for path in aside)
    if open_minutes == 0 and not dropped and not any(p[0][:1] == ("hours",) for p in problems):
        problems.append((("hours",), f"calendar {name} has no open hours"))
    if problems or open_minutes == 0 or dropped or any(path[:1] == ("holidays",) for path in aside):
        return problems
    week = {DAYS.index(day): [parse_period(p) for p in periods] for day, periods in cfg.hours.items()}
    dates |= {date.fromisoformat(h) for h in cfg.holidays}
    closed = BusinessCalendar(tz, week, dates, yearly).closed_stretch()
    if closed is not None:
        # the arithmetic gives up on a deadline there: no open time within _HORIZON_DAYS
        key = ("ical",) if cfg.ical is not None else ("holidays",)
        years = round(_HORIZON_DAYS / 365.25)
        problems.append(
            (key, f"calendar {name} has no open hours: its holidays close every open day of the {years} "
                  f"years from {closed.isoformat()}")
        )
    return problems


def _ical_path(value: str, base_dir: Path | None) -> Path:
    path = Path(value)
    return path if path.is_absolute() or base_dir is None else base_dir / path


class BusinessCalendar:
    """Open hours in one time zone, with holidays; does business-time arithmetic on aware datetimes.

    ``week`` maps a weekday (0 = Monday) to its periods as (start, end) minutes since local midnight, end at
    most 1440; periods of one day must not overlap. Raises ValueError when the week has no open time at all.
    """

    def __init__(
        self,
        timezone: str | ZoneInfo,
        week: Mapping[int, Sequence[tuple[int, int]]],
        holidays: Iterable[date] = (),
        yearly: Iterable[YearlyHoliday] = (),
    ) -> None:
        self.timezone = _zone(timezone) if isinstance(timezone, str) else timezone
        self._week = tuple(tuple(sorted(week.get(day, ()))) for day in range(7))
        self._holidays = frozenset(holidays)
        self._yearly = tuple(yearly)
        self._always = False
        self._days: dict[date, tuple[tuple[datetime, datetime], ...]] = {}
        self._raws: dict[date, list[tuple[datetime, datetime]]] = {}  # (_raw's, read by _day and the next)
        self._weeks: dict[date, timedelta] = {}
        self._holiday_years: dict[int, frozenset[date]] = {}
        if not any(e > s for periods in self._week for s, e in periods):
            raise ValueError("a calendar needs open hours on at least one day")

    @classmethod
    def from_config(
        cls, cfg: CalendarConfig, default_tz: str = "UTC", base_dir: Path | None = None
    ) -> BusinessCalendar:
        """Build a calendar from its config table; raises ValueError listing every problem.

        ``default_tz`` (``[bridge] timezone``) applies when the table has no ``timezone``; a relative ``ical``
        path is read under ``base_dir`` (the config file's folder) when given.
        """
        problems = validate_calendar("", cfg, base_dir, default_tz=default_tz)
        if problems:
            raise ValueError("; ".join(f"{'.'.join(path)}: {message}" for path, message in problems))
        tz = _zone(cfg.timezone or default_tz)
        week = {DAYS.index(day): [parse_period(p) for p in periods] for day, periods in cfg.hours.items()}
        holidays = {date.fromisoformat(h) for h in cfg.holidays}
        yearly: list[YearlyHoliday] = []
        if cfg.ical is not None:
            dates, yearly = read_ical(_ical_path(cfg.ical, base_dir), tz)
            holidays |= dates
        return cls(tz, week, holidays, yearly)

    @classmethod
    def always(cls) -> BusinessCalendar:
        """The 24/7 wall clock: always open (an SLA with no calendar)."""
        cal = cls("UTC", {day: [(0, 1440)] for day in range(7)})
        cal._always = True
        return cal

    # ------------------------------------------------------------------ days and weeks

    def is_holiday(self, day: date) -> bool:
        """Whether the local date ``day`` is closed as a holiday."""
        if day in self._holidays:
            return True
        if not self._yearly:
            return False
        closed = self._holiday_years.get(day.year)
        if closed is None:
            closed = self._holiday_years[day.year] = self._yearly_dates(day.year)
        return day in closed

    def _holidays_span(self) -> tuple[date, date] | None:
        """The first and the last day from which the holidays change: the earliest and the latest one-off
        holiday or start of a yearly rule (kept within the reference bounds); None without holidays."""
        starts = [*self._holidays, *(rule.start for rule in self._yearly)]
        if not starts:
            return None
        low, high = _FIRST_REFERENCE_DAY, _LAST_REFERENCE_DAY
        return min(max(min(starts), low), high), min(max(max(starts), low), high)

    def closed_stretch(self) -> date | None:
        """The first day of ten years (``_HORIZON_DAYS``) in which the holidays close every open day, if any
        such stretch starts between the first holiday and the day the holidays stop changing (the last
        one-off holiday, the start of the last yearly rule: what they close from then on repeats; at most a
        century is walked before that day is looked at alone); else None. The arithmetic gives up on a
        deadline in such a stretch."""
        span = self._holidays_span()
        if span is None:
            return None
        first, last = span
        if (last - first).days > _CENTURY_DAYS:
            century = first + timedelta(days=_CENTURY_DAYS)
            return self._closed_from(first, century) or self._closed_from(last, last)
        return self._closed_from(first, last)

    def _closed_from(self, first: date, last: date) -> date | None:
        """The first day from ``first`` to ``last`` that starts ten years without open time, if any."""
        run_start, run = first, 0
        day = first
        while day <= last or run:
            if self._day(day):
                if day > last:
                    return None
                run, run_start = 0, day + _DAY
            else:
                run += 1
                if run >= _HORIZON_DAYS:
                    return run_start
            day += _DAY
        return None

    def typical_week(self) -> timedelta:
        """The average open time a week, holidays included, over the ten years (``_HORIZON_DAYS``, rounded up
        to whole weeks) from the day the holidays stop changing (see :meth:`closed_stretch`), or from
        2000-01-03 without holidays."""
        if self._always:
            return _WEEK
        span = self._holidays_span()
        first = _REFERENCE_DAY if span is None else span[1]
        weeks = -(-_HORIZON_DAYS // 7)  # whole weeks: each weekday counted as often
        start = _local(first, 0, self.timezone)
        end = _local(first + timedelta(weeks=weeks), 0, self.timezone)
        return self.elapsed(start, end) / weeks

    def _yearly_dates(self, year: int) -> frozenset[date]:
        out: set[date] = set()
        for rule in self._yearly:
            seen = 0
            # an occurrence of the two years before can reach into this one (a span of up to 366 days, a
            # day more in another zone), and one early next year can fall late in this one in the calendar's
            # zone; the years before matter only to count occurrences towards COUNT
            first = rule.start.year if rule.count is not None else max(rule.start.year, year - 2)
            for y in range(first, year + 2):
                for occurrence in rule.occurrences(y):
                    seen += 1
                    if rule.count is not None and seen > rule.count:
                        break
                    if occurrence in rule.exdates or y < year - 2:
                        continue
                    out.update(d for d in rule.local_days(occurrence, self.timezone) if d.year == year)
        return frozenset(out)

    def _raw(self, day: date) -> list[tuple[datetime, datetime]]:
        """A local date's periods as UTC intervals, in real-time order, overlaps merged: a period that
        starts in a spring gap is read after the switch, so it may start later than a period after it, and
        around a fall-back two periods may overlap in real time."""
        found = self._raws.get(day)
        if found is not None:
            return found
        if self.is_holiday(day):
            self._raws[day] = []
            return []
        tz = self.timezone
        out: list[tuple[datetime, datetime]] = []
        for s, e in sorted((_local(day, start, tz), _local(day, end, tz)) for start, end in self._week[
                day.weekday()]):
            if e <= s:
                continue
            if out and s < out[-1][1]:
                if e > out[-1][1]:
                    out[-1] = (out[-1][0], e)
                continue
            out.append((s, e))
        self._raws[day] = out
        return out

    def _day(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """A local date's open intervals (UTC, ordered), none before what the day before reaches: a period
        that ends in a spring gap ending at midnight runs on past it (America/Nuuk), so every query also
        looks at the dates on either side of its own (a fall-back across midnight dates an instant of a
        date's hours the day before: America/St_Johns until 2011)."""
        found = self._days.get(day)
        if found is not None:
            return found
        out = self._raw(day)
        before = self._raw(day - _DAY)
        if before and out and out[0][0] < before[-1][1]:
            floor = before[-1][1]
            out = [(max(s, floor), e) for s, e in out if e > floor]
        result = tuple(out)
        self._days[day] = result
        return result

    def _week_total(self, monday: date) -> timedelta:
        found = self._weeks.get(monday)
        if found is None:
            found = ZERO
            for n in range(7):
                for s, e in self._day(monday + timedelta(days=n)):
                    found += e - s
            self._weeks[monday] = found
        return found

    def _week_reach(self, monday: date) -> datetime | None:
        """Where the open hours of the week from ``monday`` end (None: it has none)."""
        for n in range(6, -1, -1):
            intervals = self._day(monday + timedelta(days=n))
            if intervals:
                return intervals[-1][1]
        return None

    def _local_date(self, t: datetime) -> date:
        return t.astimezone(self.timezone).date()

    # ------------------------------------------------------------------ queries

    def is_open(self, t: datetime) -> bool:
        """Whether ``t`` is inside open hours (an opening instant is open, a closing instant is not)."""
        t = _utc(t)
        if self._always:
            return True
        day = self._local_date(t)
        return any(s <= t < e for d in (day, day - _DAY, day + _DAY) for s, e in self._day(d))

    def next_open(self, t: datetime) -> datetime:
        """``t`` itself when open, else the next opening instant (UTC)."""
        t = _utc(t)
        if self._always:
            return t
        day = self._local_date(t) - _DAY  # (the day before's hours may reach past midnight)
        for _ in range(_HORIZON_DAYS):
            for s, e in self._day(day):
                if e > t:
                    return max(s, t)
            day += _DAY
        raise ValueError(f"no open hours within {_HORIZON_DAYS} days after {t.isoformat()}")

    def add(self, start: datetime, delta: timedelta) -> datetime:
        """The instant ``delta`` of open time after ``start`` (UTC); see the module docstring for the edges.

        Raises ValueError for a negative ``delta``.
        """
        if self._always and start.tzinfo is UTC and delta >= ZERO:
            return start + delta  # the SLA clock without a calendar: on every event of a replay
        start = _utc(start)
        if delta < ZERO:
            raise ValueError(f"cannot add a negative business duration ({delta})")
        if delta == ZERO or self._always:
            return start + delta
        remaining = delta
        first = day = start.astimezone(self.timezone).date()
        cached = self._days.get  # _day's cache read inline: the walk visits a day per loop
        before = self._day(first - _DAY)
        if before and before[-1][1] > start:
            day = first - _DAY  # the day before's hours reach past midnight, and past ``start``
        idle = 0
        after = False  # whether the walk is past ``start``'s own dates (a Monday's local midnight after it)
        while True:
            if day.weekday() == 0 and day > first and idle < _HORIZON_DAYS and (
                    after or (after := day > first + _DAY or _local(day, 0, self.timezone) >= start)):
                # (a week whose local midnight is not before ``start``: all of it is after, whatever a switch
                # did to dates)
                # whole weeks at a time; the target lies inside the first week that is not smaller than it
                week = self._week_total(day)
                if remaining > week:
                    remaining -= week
                    idle = idle + 7 if week == ZERO else 0
                    day += _WEEK
                    continue
            found = False
            intervals = cached(day)
            if intervals is None:
                intervals = self._day(day)
            for s, e in intervals:
                if e <= start:
                    continue
                found = True
                if s < start:
                    s = start
                span = e - s
                if remaining <= span:
                    return s + remaining
                remaining -= span
            idle = 0 if found else idle + 1
            if idle >= _HORIZON_DAYS:
                raise ValueError(f"no open hours within {_HORIZON_DAYS} days after {start.isoformat()}")
            day += _DAY

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Open time in ``[start, end)``; zero when ``end`` is not after ``start``."""
        if self._always and start.tzinfo is UTC and end.tzinfo is UTC:
            return end - start if end > start else ZERO
        start, end = _utc(start), _utc(end)
        if end <= start:
            return ZERO
        if self._always:
            return end - start
        total = ZERO
        tz = self.timezone
        first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
        # the dates on either side too, where their hours reach in: hours may run past a midnight (a period
        # ending in a gap at midnight), and a fall-back across midnight dates an instant a day early
        cached = self._days.get
        day = first
        before = self._day(first - _DAY)
        if before and before[-1][1] > start:
            day = first - _DAY
        beyond = self._day(last + _DAY)
        until = last + _DAY if beyond and beyond[0][0] < end else last
        after = False  # whether the walk is past ``start``'s own dates (a Monday's local midnight after it)
        while day <= until:
            if day > first and day.weekday() == 0 and day + _WEEK <= last and (
                    after or (after := day > first + _DAY or _local(day, 0, tz) >= start)):
                # a whole week inside [start, end): it starts after start, and its hours end by ``end``
                # (surely when ``end`` is a date after the week: hours run past a midnight by under a day)
                reach = None if day + _WEEK < last else self._week_reach(day)
                if reach is None or reach <= end:
                    total += self._week_total(day)
                    day += _WEEK
                    continue
            intervals = cached(day)
            if intervals is None:
                intervals = self._day(day)
            for s, e in intervals:
                if s < start:
                    s = start
                if e > end:
                    e = end
                if e > s:
                    total += e - s
            day += _DAY
        return total

    def periods(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The open intervals between ``start`` and ``end``, clipped to them, adjacent ones merged (UTC)."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            return
        if self._always:
            yield start, end
            return
        pending: tuple[datetime, datetime] | None = None
        day, last = self._local_date(start) - _DAY, self._local_date(end) + _DAY
        while day <= last:
            for s, e in self._day(day):
                s, e = max(s, start), min(e, end)
                if e <= s:
                    continue
                if pending is not None and pending[1] == s:
                    pending = (pending[0], e)
                    continue
                if pending is not None:
                    yield pending
                pending = (s, e)
            day += _DAY
        if pending is not None:
            yield pending


def _local(day: date, minutes: int, tz: tzinfo) -> datetime:
    if minutes >= 1440:
        day, minutes = day + _DAY, minutes - 1440
    return datetime.combine(day, time(minutes // 60, minutes % 60), tz).astimezone(UTC)


__all__ = ["ZERO", "BusinessCalendar", "YearlyHoliday", "parse_period", "read_ical", "validate_calendar"]
