"""Fixtures for connector tests: a fake clock whose sleeps are recorded, vendor bodies, a TLS server."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pytest_httpserver import HTTPServer

DATA = Path(__file__).resolve().parent.parent / "data"


class FakeTime:
    """A monotonic clock that only moves when something sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def extra(fake_time: FakeTime) -> dict[str, Any]:
    """What a ConnectorContext's ``extra`` carries in tests: injected sleep, clock and jitter."""
    return {"sleep": fake_time.sleep, "monotonic": fake_time.monotonic, "rand": lambda: 0.5}


def load(vendor: str, name: str) -> Any:
    """A stored vendor response body (tests/data/<vendor>/<name>.json)."""
    return json.loads((DATA / vendor / f"{name}.json").read_text())


@pytest.fixture
def body() -> Callable[[str, str], Any]:
    return load


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def _tls_server(tls_ca: trustme.CA) -> Iterator[HTTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def tls_server(_tls_server: HTTPServer) -> Iterator[HTTPServer]:
    """A real HTTPS server on 127.0.0.1 whose certificate is signed by the test CA (``ca_file``)."""
    _tls_server.clear()
    yield _tls_server
    _tls_server.clear()
