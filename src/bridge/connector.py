"""The connector contract: the base class every connector plugin subclasses.

A connector knows its vendor and nothing of rules. The core owns incremental state: it hands ``pull`` the
last committed cursor and stores the cursor of each page only after that page's changes are committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx

from bridge.errors import (
    BatchRefusedError,
    ConnectorAuthError,
    FatalConnectorError,
    RetriableConnectorError,
    SkippableRecordError,
)
from bridge.model import Change, Write, parse_time, utcnow
from bridge.settings import ConnectorSettings

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Cursor:
    """Where the last committed pull stopped: a modification time with a record-id tie-break."""

    at: datetime | None = None
    id: str | None = None

    def dumps(self) -> str:
        """Serialise for the store."""
        # microseconds kept: a cursor rounded to the second would repeat changes of the same second
        return json.dumps({"at": self.at.isoformat() if self.at else None, "id": self.id})

    @classmethod
    def loads(cls, text: str | None) -> Cursor:
        """Read a stored cursor (None or empty text is the beginning)."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(parse_time(data["at"]) if data.get("at") else None, data.get("id"))

    def since(self, lookback: timedelta) -> datetime | None:
        """The time to ask the vendor for: the cursor minus the lookback window (late-arriving writes)."""
        return None if self.at is None else self.at - lookback

    def after(self, at: datetime, record_id: str) -> bool:
        """Whether a record modified at ``at`` with id ``record_id`` comes after this cursor."""
        if self.at is None:
            return True
        return (at, record_id) > (self.at, self.id or "")


@dataclass
class PullPage:
    """One page of a pull: the changes and the cursor to store once they are committed."""

    changes: list[Change]
    cursor: Cursor
    # records the source holds that could not be read (a malformed line): reported, the others go on
    problems: list[str] = field(default_factory=list)


@dataclass
class PushResult:
    """The outcome of one write in a pushed batch."""

    record_id: str
    ok: bool
    external_id: str | None = None
    error: str | None = None
    retriable: bool = False
    response: Any = None  # the vendor's answer for this record, kept in the audit log
    retry_after: float | None = None  # a retriable failure: the vendor's wait (Retry-After), if it named one
    # not sent, and no failure: the system does not hold this record and the write gives it nothing to find or
    # make it by (no id, no upsert key): audited as skipped, not dead-lettered (a later write that carries
    # one is sent)
    skipped: bool = False
    # the record was gone from the system (deleted there) and the push made it anew: the core moves the
    # record's link to ``external_id``
    refiled: bool = False


Group = list[tuple[int, Write]]  # one call's writes, each with its place in the pushed batch


def call_about(group: Group) -> dict[str, Any]:
    """The ``record`` / ``batch`` keywords of :func:`bridge.http.call_with_policy` for a call carrying
    ``group``: a 4xx about one write refuses that record, about several the batch."""
    if len(group) == 1:
        return {"record": group[0][1].record_id}
    return {"batch": True}


def send_apart(group: Group, send: Callable[[Group], dict[int, PushResult]]) -> dict[int, PushResult]:
    """``send(group)``'s results; when the vendor refuses a call of several writes as a whole
    (:class:`BatchRefusedError`), its halves are sent on their own, down to each write it refuses alone, which
    fails for good with the vendor's reason (``send`` raised :class:`SkippableRecordError` for it): the others
    land, and none is sent twice."""
    try:
        return send(group)
    except BatchRefusedError:
        if len(group) < 2:
            raise
        middle = len(group) // 2
        halves = [group[:middle], group[middle:]]
        landed: dict[int, PushResult] = {}
        for n, half in enumerate(halves):
            try:
                landed.update(send_apart(half, send))
            except (RetriableConnectorError, FatalConnectorError, ConnectorAuthError) as exc:
                if not landed:
                    raise
                # what landed stays landed (not sent again); the rest is tried again later
                rest = [iw for later in halves[n:] for iw in later]
                wait = exc.retry_after if isinstance(exc, RetriableConnectorError) else None
                for i, w in rest:
                    landed[i] = PushResult(w.record_id, False, w.external_id, str(exc), True, None, wait)
                break
        return landed
    except SkippableRecordError as exc:
        if len(group) != 1:
            raise
        ((index, w),) = group
        return {index: PushResult(w.record_id, False, w.external_id, str(exc), False)}


@dataclass(frozen=True)
class RemoteField:
    """A field as the remote system describes it."""

    name: str
    type: str
    label: str = ""
    options: tuple[str, ...] = ()
    restricted: bool = False
    kind: str = ""


@dataclass(frozen=True)
class RateLimit:
    """A connector's declared request budget: a token bucket refilled at ``per_second``."""

    per_second: float = 10.0
    burst: int = 10


@dataclass
class ConnectorContext:
    """What the host hands a connector: its system name, settings, HTTP client and clock."""

    system: str
    settings: ConnectorSettings
    http: httpx.Client | None = None
    clock: Clock = utcnow
    extra: Mapping[str, Any] = field(default_factory=dict)


class Connector:
    """Base class of connectors. Override the methods your system supports.

    Class attributes declare what the core needs to know: ``name`` (the plugin name in config), ``kinds``
    it can carry, ``batch_max`` writes per push call, ``settings_model`` for its config table, and
    ``rate_limit``.
    """

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ("ticket",)
    batch_max: ClassVar[int] = 100
    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    rate_limit: ClassVar[RateLimit] = RateLimit()
    lookback: ClassVar[timedelta] = timedelta(minutes=2)

    def __init__(self, context: ConnectorContext) -> None:
        self.context = context
        self.system = context.system
        self.settings = context.settings

    @classmethod
    def accepts_writes(cls) -> bool:
        """Whether the connector implements ``push`` (a read-only source never receives writes)."""
        return cls.push is not Connector.push

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        """Yield pages of changes to records of ``kind`` modified after ``cursor``, oldest first."""
        return iter(())

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        """Send a batch (at most ``batch_max``) of writes; return one result per write, in order."""
        raise NotImplementedError(f"{self.system}: this connector does not accept writes")

    def describe(self, kind: str) -> list[RemoteField]:
        """The remote fields of ``kind`` with their types and options."""
        return []

    def check_connection(self) -> None:
        """Raise ConnectorAuthError or RetriableConnectorError when the system cannot be used."""

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Change]:
        """Turn a webhook request into changes; raise ValueError for a malformed or unsigned one."""
        raise NotImplementedError(f"{self.system}: this connector takes no webhooks")

    def close(self) -> None:
        """Release what the connector holds (the host closes the shared HTTP client itself)."""
