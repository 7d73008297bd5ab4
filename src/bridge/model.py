"""The few types every module shares: Record, Change, Write, FieldValue, Decision, RecentlySeen."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

KINDS = ("ticket", "account", "contact")
TOPIC_KIND = "topic"  # a recurring topic, whose link in the tracker is its product ticket (bridge.product)
BRIDGE = "bridge"  # the owner name of fields the bridge derives itself
TICKET_STATUSES = ("open", "pending", "on_hold", "resolved", "closed")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")  # lowest first
AGENT_STATUSES = ("active", "away", "offline")
CUSTOMER = "customer"  # the ``last_author`` of a message the customer wrote
# record attribute: the newest message the customer wrote, kept apart from ``message`` (the newest message of
# anyone), which an agent's reply overwrites: ticket.text reads it
CUSTOMER_MESSAGE = "customer_message"
PROPOSED = "proposed_tags"  # the tags the classifier proposed below [classify] min_confidence (not applied)
ACCOUNT_GIVEN = "account_given"  # what a ticket's own system said of its account, apart from the CRM's


class RecentlySeen:
    """Keys noted with the time they were noted, remembered for ``window`` of that clock. Times are noted in
    order, so the oldest come first and are forgotten as the clock moves on: the memory follows the rate of
    notes, not how long the clock has run."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._at: dict[str, datetime] = {}

    def note(self, key: str, at: datetime) -> None:
        """Remember ``key`` as of ``at`` (and forget what is older than the window before ``at``)."""
        seen = self._at
        horizon = at - self.window
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] >= horizon:
                break
            del seen[oldest]
        seen.pop(key, None)
        seen[key] = at

    def get(self, key: str, now: datetime) -> datetime | None:
        """When ``key`` was noted, if that is within the window before ``now`` (older notes are forgotten
        whether or not a later note has pruned them yet)."""
        at = self._at.get(key)
        if at is None or now - at > self.window:
            return None
        return at

    def forget(self, key: str) -> None:
        """Forget ``key`` (its note was undone)."""
        self._at.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)


def utcnow() -> datetime:
    """The current time, aware and in UTC."""
    return datetime.now(UTC)


def parse_time(value: str | datetime) -> datetime:
    """Parse an ISO 8601 time (``Z`` allowed) into an aware UTC datetime."""
    if type(value) is str and len(value) == 20 and value.find("Z") == 19:
        # the common "YYYY-MM-DDTHH:MM:SSZ": 3.11 reads the Z itself, already UTC (no conversion)
        return datetime.fromisoformat(value)
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_time(value: datetime | None) -> str | None:
    """Format an aware time as UTC ISO 8601 with ``Z``."""
    if value is None:
        return None
    if type(value) is datetime and value.tzinfo is UTC:
        return _format_utc(value)
    return _format(value.astimezone(UTC))


# many decisions and records share one instant: UTC times are cached (not times in other zones: two can be
# equal and hash alike while their fold makes them different instants)
@lru_cache(maxsize=4096)
def _format_utc(value: datetime) -> str:
    return _format(value)


def _format(u: datetime) -> str:
    if u.year < 1000:  # strftime does not pad the year to 4 digits
        return u.strftime("%Y-%m-%dT%H:%M:%SZ")
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (u.year, u.month, u.day, u.hour, u.minute, u.second)  # noqa: UP031


@dataclass
class FieldValue:
    """A typed field's value with its provenance: which system said it, and when."""

    value: Any
    system: str
    at: datetime


@dataclass
class Record:
    """The canonical, typed copy of one ticket, account or contact."""

    id: str
    kind: str
    links: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        """The value of field ``name``, or None when unset."""
        fv = self.fields.get(name)
        return None if fv is None else fv.value

    def ref(self) -> str:
        """How people name it: ``SYSTEM:EXTERNAL_ID`` of its first link by system name, else its id."""
        return next((f"{system}:{external}" for system, external in sorted(self.links.items())), self.id)


@dataclass
class Change:
    """What one system says happened to one record.

    ``fields`` holds remote field names as the system spells them; the pipeline maps them to the
    configured fields. ``attrs`` carries built-in attributes (subject, body, status, priority, email ...).
    """

    system: str
    kind: str
    external_id: str
    at: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    tags: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False

    @property
    def customer_wrote(self) -> bool:
        """Whether this change carries a message the customer wrote (see :func:`by_customer`)."""
        return "message" in self.attrs and by_customer(self.attrs)

    @property
    def text(self) -> str:
        """The customer's words this change carries, for classification: subject, body and its message when
        the customer wrote it (an agent's, a bot's or a system's message is not the customer's)."""
        a = self.attrs
        message = a.get("message") if by_customer(a) else None
        parts = (str(a.get("subject") or ""), str(a.get("body") or ""), str(message or ""))
        return " ".join(parts).strip()


def by_customer(attrs: Mapping[str, Any]) -> bool:
    """Whether the message in ``attrs`` (a change's or a record's) is the customer's: its ``last_author`` is
    ``customer`` or not said, as the rules read a message (an agent, a bot or a system is not)."""
    return bool(attrs.get("last_author", CUSTOMER) == CUSTOMER)


@dataclass
class Write:
    """What a system must be told so that it agrees with the owners; queued in the outbox."""

    system: str
    kind: str
    record_id: str
    external_id: str | None
    fields: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        """A stable key: the same write to the same record gives the same key."""
        body = json.dumps([self.system, self.kind, self.record_id, self.fields], sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    @property
    def is_event(self) -> bool:
        """Whether this write is an event to tell once (a follow-up, a note), not a value: a connector need
        not repeat one whose key it has already delivered."""
        return False


@dataclass
class Decision:
    """One decision the pipeline took (tag, set_field, assign, escalate, ...), for replay and audit."""

    at: datetime | None
    record_id: str
    decision: str
    rule: str
    detail: dict[str, Any] = field(default_factory=dict)
    # what the rule saw when it fired (rules.explain.firing), when the Desk traces: kept in the audit log for
    # `bridge explain`, never part of the decision's own shape
    why: dict[str, Any] | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The replay.md JSON shape of this decision."""
        out: dict[str, Any] = {
            "at": format_time(self.at),
            "ticket_id": self.record_id,
            "decision": self.decision,
            "rule": self.rule,
        }
        out.update(self.detail)
        return out

    def audited(self) -> dict[str, Any]:
        """The decision as the audit log keeps it: its JSON shape, and ``why`` when the rule's firing was
        traced."""
        out = self.as_dict()
        if self.why is not None:
            out["why"] = self.why
        return out
