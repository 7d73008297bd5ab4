"""Pushing through a real loopback HTTP server that answers 429 (Retry-After), 500 and partial failures.

The receiving connector is httpx-based and uses the shared policy of ``bridge.http`` (one client, classified
errors, retries with the vendor's Retry-After, injected sleeps). The server keeps what it was told as upserts
by id and answers each batch item by item. The sync converges, the poison record ends in the dead letter with
the vendor's reason, and a Retry-After longer than the policy waits for in-process holds the outbox instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bridge.connector import Connector, ConnectorContext, PushResult
from bridge.http import PolicySettings, build_client, call_with_policy, policy_from
from bridge.model import Write
from bridge.store import Store
from bridge.sync import Backoff, Syncer
from sync_support import Clock, Vendor, World, make_config, open_store


class Remote:
    """What the loopback vendor holds and how it will answer the next calls."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.keys: list[str] = []
        self.script: list[tuple[int, dict[str, str]]] = []  # (status, headers) for the next calls
        self.calls: list[int] = []
        self.retry_items: set[str] = set()  # tiers answered "try again" once
        self.ids = 0
        self.lock = threading.Lock()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self.lock:
            if self.script:
                status, headers = self.script.pop(0)
                self.calls.append(status)
                return status, headers, {"message": "slow down" if status == 429 else "internal error"}
            self.calls.append(200)
            results = []
            for item in body["inputs"]:
                tier = str(item["fields"].get("tier"))
                if tier.startswith("poison"):
                    results.append(
                        {
                            "status": "error",
                            "category": "VALIDATION_ERROR",
                            "message": f"INVALID_OPTION: {tier!r} is not a tier",
                        }
                    )
                    continue
                if tier in self.retry_items:
                    self.retry_items.discard(tier)
                    results.append({"status": "error", "category": "LOCKED", "message": "record locked"})
                    continue
                rid = item.get("id")
                if rid is None:
                    self.ids += 1
                    rid = f"R{self.ids}"
                self.records.setdefault(rid, {}).update(item["fields"])
                self.keys.append(item["key"])
                results.append({"status": "ok", "id": rid})
            return 200, {}, {"results": results}


def _handler(remote: Remote) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, headers, payload = remote.answer(json.loads(self.rfile.read(length)))
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Remote]]:
    remote = Remote()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(remote))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", remote
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


class LoopbackConnector(Connector):
    """Pushes batches as ``POST /batch`` through the shared HTTP policy; one result per item."""

    name = "loopback"
    kinds = ("account",)
    batch_max = 4
    settings_model = PolicySettings

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        self.policy, self.bucket = policy_from(self.settings, context.extra, rate=100.0, burst=100)
        self.http = build_client(self.settings, system=self.system, bucket=self.bucket)

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        body = {
            "inputs": [
                {"key": w.idempotency_key, "id": w.external_id, "record": w.record_id, "fields": w.fields}
                for w in writes
            ]
        }
        response = call_with_policy(
            lambda: self.http.post("/batch", json=body),
            system=self.system,
            policy=self.policy,
            bucket=self.bucket,
        )
        out = []
        for w, item in zip(writes, response.json()["results"], strict=True):
            if item["status"] == "ok":
                out.append(PushResult(w.record_id, True, item["id"]))
            else:
                message = f"{item['category']}: {item['message']}"
                out.append(
                    PushResult(
                        w.record_id, False, w.external_id, message, retriable=item["category"] == "LOCKED"
                    )
                )
        return out

    def close(self) -> None:
        self.http.close()


class Sleeps:
    def __init__(self) -> None:
        self.slept: list[float] = []
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


FIELDS = {
    "tier": {"type": "text", "kind": "account", "owner": "crm", "sync_to": ["web"]},
    "arr": {"type": "number", "kind": "account", "owner": "crm", "sync_to": ["web"]},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, tmp_path) as s:
        yield s


def _rig(store: Store, url: str, sleeps: Sleeps) -> tuple[Syncer, Vendor, Clock, LoopbackConnector]:
    world = World(["crm"])
    settings = PolicySettings(plugin="loopback", base_url=url, max_attempts=3, backoff_base=0.5, max_wait=60)
    web = LoopbackConnector(
        ConnectorContext(
            "web", settings, extra={"sleep": sleeps.sleep, "monotonic": sleeps.monotonic, "rand": lambda: 0.5}
        )
    )
    connectors: dict[str, Connector] = {"crm": world.connectors["crm"], "web": web}
    config = make_config(FIELDS, ["crm", "web"])
    clock = Clock()
    syncer = Syncer(
        config,
        store,
        connectors.__getitem__,
        clock=clock,
        max_attempts=3,
        backoff=Backoff(base=timedelta(seconds=10)),
    )
    return syncer, world["crm"], clock, web


def test_429_500_and_partial_failures_converge_with_dead_letters_and_reasons(
    store: Store, server: tuple[str, Remote]
) -> None:
    url, remote = server
    sleeps = Sleeps()
    syncer, crm, clock, web = _rig(store, url, sleeps)
    try:
        exts = [crm.create(fields={"tier": f"t{i}", "arr": i}) for i in range(9)]
        crm.edit(exts[4], tier="poison-4")
        remote.retry_items.add("t7")
        remote.script = [(429, {"Retry-After": "2"}), (500, {})]
        first = syncer.sync()
        assert remote.calls[:3] == [429, 500, 200]  # inside one push call: the policy retried twice
        assert sleeps.slept[0] == 2.0  # Retry-After was honoured
        assert first.push_calls == 3 and first.pushed == 7 and first.dead == 1 and first.failed == 1
        [dead] = store.dead_letters("web")
        assert dead.last_error == "VALIDATION_ERROR: INVALID_OPTION: 'poison-4' is not a tier"
        with store.session() as tx:
            audit = [a for a in tx.audit_for(dead.record_id) if a["rule"] == "push to web dead-lettered"]
        assert "INVALID_OPTION" in audit[0]["response"]["error"]

        clock.advance(minutes=5)
        second = syncer.sync()  # the locked record's retry
        assert second.pushed == 1 and second.push_calls == 1
        assert sorted(v["tier"] for v in remote.records.values()) == sorted(
            f"t{i}" for i in range(9) if i != 4
        )

        crm.edit(exts[4], tier="t4")  # the owner fixes the value: it goes out like any change
        clock.advance(minutes=1)
        assert syncer.sync().pushed == 1
        assert len(remote.records) == 9 and len(set(remote.keys)) == len(remote.keys) == 9
        for ext in exts:
            rid = next(r for r, v in remote.records.items() if v["tier"] == crm.value(ext, "tier"))
            assert remote.records[rid]["arr"] == crm.value(ext, "arr")
        calls = len(remote.calls)
        clock.advance(minutes=1)
        assert syncer.sync().push_calls == 0 and len(remote.calls) == calls  # converged: nothing more
    finally:
        web.close()


def test_a_long_retry_after_holds_the_outbox_instead_of_a_worker(
    store: Store, server: tuple[str, Remote]
) -> None:
    url, remote = server
    sleeps = Sleeps()
    syncer, crm, clock, web = _rig(store, url, sleeps)
    try:
        for i in range(6):
            crm.create(fields={"tier": f"t{i}", "arr": i})
        remote.script = [(429, {"Retry-After": "600"})]
        first = syncer.sync()
        assert remote.calls == [429] and sleeps.slept == []  # longer than max_wait: not slept here
        assert first.failed == 4 and first.deferred == 2 and first.pushed == 0
        assert all(i.not_before >= clock() + timedelta(seconds=600) for i in store.pending("web"))
        assert "HTTP 429" in (store.pending("web")[0].last_error or "")
        clock.advance(seconds=300)
        assert syncer.sync().push_calls == 0
        clock.advance(seconds=300)
        late = syncer.sync()
        assert late.pushed == 6 and late.push_calls == 2 and len(remote.records) == 6
    finally:
        web.close()
