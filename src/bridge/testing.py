"""Helpers and a contract suite for connector plugin authors (this module imports pytest: use it in tests).

A plugin's test module subclasses :class:`ConnectorContract` and provides a ``connector`` fixture::

    import pytest
    from bridge.testing import ConnectorContract, make_connector
    from bridge_webform import WebformConnector

    class TestWebformContract(ConnectorContract):
        @pytest.fixture
        def connector(self, tmp_path):
            return make_connector(WebformConnector, path=str(tmp_path))

pytest then runs every ``test_*`` method of the contract against that connector. Override :meth:`writes` to
push meaningful writes, and the class attributes to describe the test data.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

import httpx
import pytest

from bridge.connector import Clock, Connector, ConnectorContext, Cursor, PullPage, PushResult, RemoteField
from bridge.errors import PluginLoadError
from bridge.model import Change, Write
from bridge.plugins import PluginHost
from bridge.settings import ConnectorSettings

C = TypeVar("C", bound=Connector)

FROZEN_AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
"""The instant :func:`frozen_clock` returns by default."""


def frozen_clock(at: datetime = FROZEN_AT) -> Clock:
    """A clock that always returns ``at`` (aware UTC), for a connector's context."""
    if at.tzinfo is None:
        raise ValueError("frozen_clock needs an aware datetime")
    fixed = at.astimezone(UTC)
    return lambda: fixed


def make_connector(
    cls: type[C],
    system: str | None = None,
    *,
    http: httpx.Client | None = None,
    clock: Clock | None = None,
    **settings: Any,
) -> C:
    """Build a connector as the host would: its ``settings_model`` validated from ``settings``.

    :param cls: the connector class.
    :param system: the system name (``[connectors.<system>]``); defaults to the connector's ``name``.
    :param http: the HTTP client the host would hand it (point it at a loopback server or a respx mock).
    :param clock: the injected clock; defaults to :func:`frozen_clock`.
    :param settings: the keys of its ``[connectors.<system>]`` table (``plugin`` is filled in).
    """
    model = cls.settings_model(**{"plugin": cls.name, **settings})
    return cls(ConnectorContext(system or cls.name, model, http, clock or frozen_clock()))


def connectors_of(plugin: object, name: str = "plugin_under_test") -> dict[str, type[Connector]]:
    """The connectors a plugin object (usually its module) registers through a fresh host's hooks.

    Raises :class:`PluginLoadError` with the host's reason when the plugin fails to load.
    """
    host = PluginHost(environ={})
    info = host.register(plugin, name)
    host.check()
    if info.status != "ok":
        raise PluginLoadError(f"plugin {name}: {info.error}")
    return {n: c for n, c in host.connectors().items() if n in info.connectors}


def _key(cursor: Cursor) -> tuple[datetime, str]:
    assert cursor.at is not None, "a page's cursor must have a time"
    return cursor.at, cursor.id or ""


def _seen(changes: Iterator[Change] | list[Change]) -> list[tuple[str, datetime]]:
    return [(c.external_id, c.at) for c in changes]


class ConnectorContract:
    """The behaviour every connector must have; subclass it (as ``Test...``) and override ``connector``.

    The fixture's connector should see some test data (a folder, a loopback server, a respx mock): the pull
    checks need at least one change unless ``requires_changes`` is False.
    """

    requires_changes: ClassVar[bool] = True
    """Whether pulling every kind from the beginning must yield at least one change."""

    malformed_webhook_body: ClassVar[bytes] = b"\xff\xfe this is not a webhook body"
    """A body that ``parse_webhook`` must refuse with ValueError (when the connector takes webhooks)."""

    @pytest.fixture
    def connector(self) -> Connector:
        """The connector under test; a subclass must override this fixture."""
        raise NotImplementedError(f"{type(self).__name__} must define a `connector` fixture")

    def writes(self, connector: Connector, kind: str) -> list[Write]:
        """The writes the push check sends (override for fields the system accepts)."""
        return [Write(connector.system, kind, f"rec-{n}", None, {}) for n in range(1, 4)]

    def pull_all(self, connector: Connector, kind: str, cursor: Cursor) -> list[PullPage]:
        """Every page of one pull, checked to be PullPage objects of ``kind`` from this system."""
        pages = list(connector.pull(kind, cursor))
        for page in pages:
            assert isinstance(page, PullPage), f"pull yielded {page!r}, not a PullPage"
            assert isinstance(page.cursor, Cursor), f"a page's cursor is {page.cursor!r}, not a Cursor"
            for change in page.changes:
                assert isinstance(change, Change), f"a page holds {change!r}, not a Change"
                assert change.system == connector.system, f"change {change.external_id} names another system"
                assert change.kind == kind, f"pulling {kind} yielded a {change.kind} ({change.external_id})"
                assert change.at.tzinfo is not None, f"change {change.external_id} has a naive time"
        return pages

    def test_declares_name_and_kinds(self, connector: Connector) -> None:
        """``name`` is a lowercase identifier and ``kinds`` a non-empty tuple of names."""
        name = type(connector).name
        assert isinstance(name, str) and name, "a connector must declare its name"
        assert name == name.lower() and name.replace("_", "").isalnum(), f"name {name!r} is not an identifier"
        kinds = type(connector).kinds
        assert isinstance(kinds, tuple) and kinds, "a connector must declare the kinds it carries"
        assert all(isinstance(k, str) and k for k in kinds), f"kinds {kinds!r} must be names"

    def test_batch_max_is_positive(self, connector: Connector) -> None:
        """``batch_max`` is an integer of at least 1."""
        batch_max = type(connector).batch_max
        assert isinstance(batch_max, int) and batch_max >= 1, f"batch_max {batch_max!r} must be >= 1"

    def test_settings_model_is_connector_settings(self, connector: Connector) -> None:
        """``settings_model`` subclasses ConnectorSettings and the connector's settings are one."""
        model = type(connector).settings_model
        assert isinstance(model, type) and issubclass(model, ConnectorSettings), (
            f"settings_model {model!r} must subclass bridge.ConnectorSettings")
        assert isinstance(connector.settings, model), "the connector's settings are not its settings_model"

    def test_pull_from_the_beginning_advances_the_cursor(self, connector: Connector) -> None:
        """From an empty cursor, pages come oldest first and each page's cursor is past the previous one."""
        total = 0
        for kind in type(connector).kinds:
            previous: tuple[datetime, str] | None = None
            for page in self.pull_all(connector, kind, Cursor()):
                key = _key(page.cursor)
                assert previous is None or key > previous, f"{kind}: cursor {key} is not past {previous}"
                for change in page.changes:
                    assert change.at <= key[0], f"{kind}: {change.external_id} is after its page cursor"
                previous = key
                total += len(page.changes)
        if self.requires_changes:
            assert total, "pulling every kind from the beginning yielded nothing: give the fixture data"

    def test_pull_resumes_after_its_cursor(self, connector: Connector) -> None:
        """Resuming from a page cursor gives every change after that page, none lost; a change may come again
        only from the connector's ``lookback`` before the cursor (asked again for late-arriving writes: the
        core takes such a repeat as no change), none older."""
        lookback = type(connector).lookback
        for kind in type(connector).kinds:
            pages = self.pull_all(connector, kind, Cursor())
            everything = _seen(c for p in pages for c in p.changes)
            for n, page in enumerate(pages):
                resumed = self.pull_all(connector, kind, page.cursor)
                expected = _seen(c for p in pages[n + 1 :] for c in p.changes)
                got = _seen(c for p in resumed for c in p.changes)
                lost = [c for c in expected if c not in got]
                assert page.cursor.at is not None
                since = page.cursor.at - lookback
                stale = [c for c in got if c not in expected and (c not in everything or c[1] < since)]
                assert not lost and not stale, (
                    f"{kind}: resuming from {page.cursor} gave {got}, expected {expected} (of {everything}; "
                    f"changes from {since.isoformat()} on may come again)")

    def test_push_returns_one_result_per_write_in_order(self, connector: Connector) -> None:
        """``push`` answers each write of a batch with a PushResult, in order (or refuses all writes)."""
        kind = type(connector).kinds[0]
        if type(connector).push is Connector.push:
            with pytest.raises(NotImplementedError):
                connector.push(kind, self.writes(connector, kind))
            return
        writes = self.writes(connector, kind)[: type(connector).batch_max]
        assert writes, "writes() must return at least one write"
        results = connector.push(kind, writes)
        assert isinstance(results, list), f"push returned {type(results).__name__}, not a list"
        assert len(results) == len(writes), f"push returned {len(results)} results for {len(writes)} writes"
        for write, result in zip(writes, results, strict=True):
            assert isinstance(result, PushResult), f"push returned {result!r}, not a PushResult"
            assert result.record_id == write.record_id, (
                f"result for {result.record_id} where {write.record_id} was expected: results out of order")

    def test_describe_returns_remote_fields(self, connector: Connector) -> None:
        """``describe`` returns a list of RemoteField with distinct names for every kind."""
        for kind in type(connector).kinds:
            fields = connector.describe(kind)
            assert isinstance(fields, list), f"describe({kind!r}) returned {type(fields).__name__}"
            assert all(isinstance(f, RemoteField) for f in fields), f"describe({kind!r}): not RemoteField"
            names = [f.name for f in fields]
            assert all(names), f"describe({kind!r}) returned a field without a name"
            assert len(names) == len(set(names)), f"describe({kind!r}) names a field twice: {names}"

    def test_malformed_webhook_raises_value_error(self, connector: Connector) -> None:
        """A connector taking webhooks refuses a malformed body with ValueError (never returns nothing)."""
        if type(connector).parse_webhook is Connector.parse_webhook:
            with pytest.raises(NotImplementedError):
                connector.parse_webhook({}, self.malformed_webhook_body)
            return
        with pytest.raises(ValueError):
            connector.parse_webhook({"content-type": "application/json"}, self.malformed_webhook_body)

    def test_check_connection_passes(self, connector: Connector) -> None:
        """The fixture's connector can reach its (test) system."""
        connector.check_connection()
