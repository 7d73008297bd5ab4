"""Shared test support for the sync engine: in-memory vendors, their connector, a clock, crash injection.

A :class:`Vendor` is the far side of a system: records held in dicts, edited by its own users
(:meth:`Vendor.edit`), read by pulls in modification order and written by pushes. Pushes are idempotent
upserts (a create for a bridge record that exists already returns it), and every push is checked as it lands:
the last write to a record landing again is a *repeat* (allowed after a crash, and counted), a write whose
every value is already held by the vendor is an *echo* (a bug), and each value equal to what the field held
is an *echo field* (a bug when nothing crashed).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.connector import Connector, ConnectorContext, Cursor, PullPage, PushResult
from bridge.errors import ConnectorError
from bridge.model import Change, Write
from bridge.settings import Config, ConnectorSettings
from bridge.store import Store
from bridge.store.testing import require_postgres, temp_postgres_schema_url

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Crash(BaseException):
    """An injected crash: the process dies here (a BaseException: no `except Exception` survives death)."""


class Clock:
    """An injected clock that moves only when told."""

    def __init__(self, at: datetime = T0) -> None:
        self.now = at

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class Ticker:
    """Modification times shared by every vendor of a test: strictly increasing across systems."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def __call__(self) -> datetime:
        return T0 + timedelta(seconds=next(self._n))


@dataclass
class Held:
    """One record at a vendor."""

    id: str
    kind: str
    at: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    bridge_id: str | None = None
    deleted: bool = False


@dataclass
class Applied:
    """One write as it landed at a vendor."""

    key: str
    record_id: str
    external_id: str
    fields: dict[str, Any]
    before: dict[str, Any]
    repeat: bool


class Vendor:
    """The far side of one in-memory system."""

    def __init__(self, name: str, ticker: Ticker, page_size: int = 50) -> None:
        self.name = name
        self.ticker = ticker
        self.page_size = page_size
        self.records: dict[str, Held] = {}
        self.ids = itertools.count(1)
        self.applied: list[Applied] = []
        self.keys: set[str] = set()
        self.last_key: dict[str, str] = {}
        self.push_calls = 0
        self.pull_calls = 0
        # failure injection
        self.crash_after_apply = False  # apply the whole batch, then die before answering
        self.raise_next: list[Exception] = []  # raised by the next push calls, one each
        self.refuse: dict[str, str] = {}  # field value -> reason: a write carrying it is refused for good

    # ---- the vendor's own users
    def create(self, kind: str = "account", fields: dict[str, Any] | None = None, **attrs: Any) -> str:
        ext = f"{self.name}-{next(self.ids)}"
        self.records[ext] = Held(ext, kind, self.ticker(), dict(fields or {}), dict(attrs))
        return ext

    def edit(self, ext: str, **fields: Any) -> None:
        rec = self.records[ext]
        rec.fields.update(fields)
        rec.at = self.ticker()

    def delete(self, ext: str) -> None:
        rec = self.records[ext]
        rec.deleted = True
        rec.at = self.ticker()

    def value(self, ext: str, name: str) -> Any:
        return self.records[ext].fields.get(name)

    # ---- what a connector sees
    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        self.pull_calls += 1
        fresh = sorted(
            (r for r in self.records.values() if r.kind == kind and cursor.after(r.at, r.id)),
            key=lambda r: (r.at, r.id),
        )
        for start in range(0, len(fresh), self.page_size):
            chunk = fresh[start : start + self.page_size]
            changes = [
                Change(
                    self.name,
                    kind,
                    r.id,
                    r.at,
                    fields=dict(r.fields),
                    attrs={**r.attrs, **({"bridge_id": r.bridge_id} if r.bridge_id else {})},
                    deleted=r.deleted,
                )
                for r in chunk
            ]
            yield PullPage(changes, Cursor(chunk[-1].at, chunk[-1].id))

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        self.push_calls += 1
        if self.raise_next:
            raise self.raise_next.pop(0)
        results = []
        for w in writes:
            reason = next((self.refuse[str(v)] for v in w.fields.values() if str(v) in self.refuse), None)
            if reason is not None:
                results.append(PushResult(w.record_id, False, w.external_id, reason, retriable=False))
                continue
            results.append(self.apply(kind, w))
        if self.crash_after_apply:
            self.crash_after_apply = False
            raise Crash(f"{self.name}: died after applying {len(writes)} writes")
        return results

    def apply(self, kind: str, w: Write) -> PushResult:
        ext = w.external_id
        if ext is None:  # an upsert by bridge record id: a repeated create finds its first copy
            ext = next((r.id for r in self.records.values() if r.bridge_id == w.record_id), None)
        if ext is None:
            ext = f"{self.name}-{next(self.ids)}"
            self.records[ext] = Held(ext, kind, self.ticker(), bridge_id=w.record_id)
        rec = self.records[ext]
        key = w.idempotency_key
        before = {k: rec.fields.get(k) for k in w.fields}
        # a repeat is the last write to this record landing again (a push that died before its answer);
        # the same key much later is a new write with the same values (a revert), and is checked as one
        repeat = self.last_key.get(ext) == key
        self.applied.append(Applied(key, w.record_id, ext, dict(w.fields), before, repeat))
        self.keys.add(key)
        self.last_key[ext] = key
        rec.fields.update(w.fields)
        rec.at = self.ticker()
        return PushResult(w.record_id, True, ext)

    # ---- checks
    def echo_writes(self) -> list[Applied]:
        """Writes (not repeats) whose every value the vendor held already."""
        return [
            a for a in self.applied if not a.repeat and all(a.before[k] == v for k, v in a.fields.items())
        ]

    def echo_fields(self) -> list[tuple[Applied, str]]:
        """Values (of writes that are not repeats) the vendor held already."""
        return [(a, k) for a in self.applied if not a.repeat for k, v in a.fields.items() if a.before[k] == v]

    def repeats(self) -> int:
        return sum(1 for a in self.applied if a.repeat)


class MemoryConnector(Connector):
    """A connector over a :class:`Vendor` (``context.extra["vendor"]``)."""

    name = "memory"
    kinds = ("ticket", "account", "contact")
    batch_max = 50

    @property
    def vendor(self) -> Vendor:
        vendor = self.context.extra["vendor"]
        assert isinstance(vendor, Vendor)
        return vendor

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        return self.vendor.pull(kind, cursor)

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        assert len(writes) <= self.batch_max, f"{len(writes)} writes in a batch of at most {self.batch_max}"
        return self.vendor.push(kind, writes)


def connector_class(batch_max: int) -> type[MemoryConnector]:
    """A MemoryConnector subclass declaring ``batch_max``."""
    return type(f"MemoryConnector{batch_max}", (MemoryConnector,), {"batch_max": batch_max})


class World:
    """Vendors and their connectors by system name, as ``Syncer(connectors=world.connector)`` wants them."""

    def __init__(self, names: list[str], batch_max: int = 50, page_size: int = 50) -> None:
        self.ticker = Ticker()
        self.vendors = {n: Vendor(n, self.ticker, page_size) for n in names}
        cls = connector_class(batch_max)
        self.connectors: dict[str, Connector] = {
            n: cls(ConnectorContext(n, ConnectorSettings(plugin="memory"), extra={"vendor": v}))
            for n, v in self.vendors.items()
        }

    def connector(self, name: str) -> Connector:
        return self.connectors[name]

    def __getitem__(self, name: str) -> Vendor:
        return self.vendors[name]


def make_config(
    fields: dict[str, dict[str, Any]], systems: list[str], kinds: list[str] | None = None, **extra: Any
) -> Config:
    """A Config with memory systems and the given fields."""
    connectors = {s: {"plugin": "memory", "kinds": kinds or ["account"]} for s in systems}
    return Config(connectors=connectors, fields=fields, **extra)


# ---------------------------------------------------------------- stores

_TEMPLATES: dict[str, Path] = {}


def sqlite_store(tmp: Path) -> Store:
    """A migrated SQLite store in ``tmp``, copied from a template migrated once per process (fast)."""
    template = _TEMPLATES.get("sqlite")
    if template is None or not template.exists():
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="bridge-sync-template-"))
        template = folder / "template.db"
        Store.open(f"sqlite:///{template}").close()
        _TEMPLATES["sqlite"] = template
    tmp.mkdir(parents=True, exist_ok=True)
    target = tmp / "bridge.db"
    shutil.copy(template, target)
    return Store(f"sqlite:///{target}")


@contextmanager
def open_store(dialect: str, tmp: Path) -> Iterator[Store]:
    """A migrated store of ``dialect`` (``sqlite`` or ``postgresql``: a fresh schema), closed afterwards."""
    if dialect == "sqlite":
        s = sqlite_store(tmp)
        try:
            yield s
        finally:
            s.close()
        return
    require_postgres()
    with temp_postgres_schema_url() as url:
        s = Store.open(url)
        try:
            yield s
        finally:
            s.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL bound to a fresh PostgreSQL schema."""
    require_postgres()
    with temp_postgres_schema_url() as url:
        yield url


class CrashingStore(Store):
    """A Store whose transactions can die: ``crash_at = n`` raises Crash at the n-th call on a Tx from now on.

    ``crash_complete`` makes the next ``complete`` die before it commits anything.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.crash_at: int | None = None
        self.calls = 0
        self.crash_complete = False

    def _tick(self) -> None:
        self.calls += 1
        if self.crash_at is not None and self.calls >= self.crash_at:
            self.crash_at = None
            raise Crash(f"store call {self.calls}")

    @contextmanager
    def session(self) -> Iterator[Any]:
        with super().session() as tx:
            yield _CrashingTx(tx, self._tick)

    def complete(self, results: list[tuple[int, str | None, Any]], now: datetime) -> None:
        if self.crash_complete:
            self.crash_complete = False
            raise Crash("died before complete")
        super().complete(results, now)


class _CrashingTx:
    """A Tx proxy that counts calls and may crash at one."""

    def __init__(self, tx: Any, tick: Callable[[], None]) -> None:
        self._tx = tx
        self._tick = tick

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._tx, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self._tick()
            return target(*args, **kwargs)

        return call


def crashing_sqlite_store(tmp: Path) -> CrashingStore:
    """A CrashingStore on a fresh SQLite copy of the migrated template."""
    plain = sqlite_store(tmp)
    url = plain.engine.url.render_as_string(hide_password=False)
    plain.close()
    return CrashingStore(url)


def refuse_error(message: str, system: str) -> ConnectorError:
    """A non-retriable batch-level connector error (the batch is split to find the poison write)."""
    return ConnectorError(message, system=system)
