"""bridge.testing: the contract passes a good connector and catches each kind of broken one."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from bridge import Change, Connector, Cursor, PullPage, PushResult, RemoteField, Write
from bridge.connector import ConnectorContext
from bridge.connectors import files
from bridge.connectors.files import FilesConnector, FilesSettings
from bridge.errors import PluginLoadError
from bridge.plugins import hookimpl
from bridge.testing import FROZEN_AT, ConnectorContract, connectors_of, frozen_clock, make_connector

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def write_inbox(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"kind": kind, "id": f"{kind[0].upper()}-{n}", "updated_at": f"2026-11-02T09:0{n}:00Z"}
            for kind in ("ticket", "account", "contact") for n in range(1, 4)]
    (folder / "records.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return folder


class TestFilesContract(ConnectorContract):
    """The built-in files connector passes the contract, in pages of two (so resuming is exercised)."""

    @pytest.fixture
    def connector(self, tmp_path: Path) -> Connector:
        inbox = write_inbox(tmp_path / "inbox")
        return make_connector(FilesConnector, "inbox", path=str(inbox), out_path=str(tmp_path / "out.jsonl"),
                              page_size=2)


class Good(Connector):
    """A small in-memory connector that keeps the contract; the broken ones below each break one clause."""

    name = "good"
    batch_max = 10

    def changes(self) -> list[Change]:
        return [Change(self.system, "ticket", f"T-{n}", T0 + timedelta(minutes=n)) for n in range(1, 5)]

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        fresh = [c for c in self.changes() if cursor.after(c.at, c.external_id)]
        for start in range(0, len(fresh), 2):
            page = fresh[start : start + 2]
            yield PullPage(page, Cursor(page[-1].at, page[-1].external_id))

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        return [PushResult(w.record_id, True, f"X-{w.record_id}") for w in writes]

    def describe(self, kind: str) -> list[RemoteField]:
        return [RemoteField("severity", "select", options=("Sev-1", "Sev-2"))]

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Change]:
        data = json.loads(body)
        return [Change(self.system, "ticket", str(data["id"]), T0)]


class Nameless(Good):
    name = ""


class NoKinds(Good):
    kinds = ()


class ZeroBatch(Good):
    batch_max = 0


class PlainModel(BaseModel):
    plugin: str


class WrongSettings(Good):
    settings_model = PlainModel  # type: ignore[assignment]


class CursorGoesBack(Good):
    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        pages = list(super().pull(kind, cursor))
        yield from reversed(pages)


class IgnoresCursor(Good):
    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        return super().pull(kind, Cursor())


class YieldsLists(Good):
    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        yield [c for p in super().pull(kind, cursor) for c in p.changes]  # type: ignore[misc]


class Empty(Good):
    def changes(self) -> list[Change]:
        return []


class PushReversed(Good):
    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        return list(reversed(super().push(kind, writes)))


class PushDropsOne(Good):
    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        return super().push(kind, writes)[1:]


class DescribesDicts(Good):
    def describe(self, kind: str) -> list[RemoteField]:
        return [{"name": "severity"}]  # type: ignore[list-item]


class DescribesTwice(Good):
    def describe(self, kind: str) -> list[RemoteField]:
        return [RemoteField("severity", "text"), RemoteField("severity", "select")]


class SwallowsBadWebhooks(Good):
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Change]:
        return []


def build(cls: type[Connector]) -> Connector:
    settings = cls.settings_model(plugin=cls.name or "x")
    return cls(ConnectorContext("sys", settings, None, frozen_clock()))


CHECKS = [name for name in dir(ConnectorContract) if name.startswith("test_")]


@pytest.mark.parametrize("check", CHECKS)
def test_a_good_connector_passes_every_check(check: str) -> None:
    getattr(ConnectorContract(), check)(build(Good))


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (Nameless, "test_declares_name_and_kinds", "must declare its name"),
        (NoKinds, "test_declares_name_and_kinds", "must declare the kinds"),
        (ZeroBatch, "test_batch_max_is_positive", "batch_max 0 must be >= 1"),
        (WrongSettings, "test_settings_model_is_connector_settings", "must subclass bridge.ConnectorSett"),
        (CursorGoesBack, "test_pull_from_the_beginning_advances_the_cursor", "is not past"),
        (IgnoresCursor, "test_pull_resumes_after_its_cursor", "resuming from"),
        (YieldsLists, "test_pull_from_the_beginning_advances_the_cursor", "not a PullPage"),
        (Empty, "test_pull_from_the_beginning_advances_the_cursor", "give the fixture data"),
        (PushReversed, "test_push_returns_one_result_per_write_in_order", "results out of order"),
        (PushDropsOne, "test_push_returns_one_result_per_write_in_order", "2 results for 3 writes"),
        (DescribesDicts, "test_describe_returns_remote_fields", "not RemoteField"),
        (DescribesTwice, "test_describe_returns_remote_fields", "names a field twice"),
    ],
)
def test_the_contract_catches_a_broken_connector(cls: type[Connector], check: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        getattr(ConnectorContract(), check)(build(cls))


def test_a_webhook_that_swallows_garbage_breaks_the_contract() -> None:
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        ConnectorContract().test_malformed_webhook_raises_value_error(build(SwallowsBadWebhooks))


def test_an_empty_connector_may_opt_out_of_data() -> None:
    class EmptyAllowed(ConnectorContract):
        requires_changes = False

    EmptyAllowed().test_pull_from_the_beginning_advances_the_cursor(build(Empty))


def test_a_read_only_connector_must_refuse_writes() -> None:
    class ReadOnly(Connector):
        name = "readonly"

    ConnectorContract().test_push_returns_one_result_per_write_in_order(build(ReadOnly))
    ConnectorContract().test_malformed_webhook_raises_value_error(build(ReadOnly))


def test_make_connector_validates_settings_with_the_connectors_model(tmp_path: Path) -> None:
    connector = make_connector(FilesConnector, path=str(tmp_path), page_size=7)
    assert isinstance(connector.settings, FilesSettings)
    assert (connector.system, connector.settings.plugin) == ("files", "files")
    assert connector.settings.page_size == 7
    assert connector.context.clock() == FROZEN_AT
    with pytest.raises(ValueError, match="no_such_key"):
        make_connector(FilesConnector, no_such_key=1)


def test_frozen_clock_is_aware_utc() -> None:
    at = datetime(2026, 3, 29, 3, 30, tzinfo=UTC)
    assert frozen_clock(at)() == at
    with pytest.raises(ValueError, match="aware"):
        frozen_clock(datetime(2026, 3, 29, 3, 30))


def test_connectors_of_registers_a_plugin_through_a_fresh_host() -> None:
    assert connectors_of(files) == {"files": FilesConnector}

    class Misspelt:
        @hookimpl
        def register_conector(self, register: object) -> None:
            raise AssertionError("never called")

    with pytest.raises(PluginLoadError, match="plugin plugin_under_test: unknown hook 'register_conector'"):
        connectors_of(Misspelt())

