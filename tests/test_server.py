"""The webhook server over real HTTP: good webhooks processed, malformed ones answered 4xx with the reason."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.app import App
from bridge.connector import Cursor
from bridge.connectors.files import FilesConnector
from bridge.model import parse_time
from bridge.server import MAX_BODY, Server, sign
from bridge.settings import Config, LoadedConfig

SECRET = "hook-s3cret-do-not-echo"


def config(tmp_path: Path, **bridge: Any) -> dict[str, Any]:
    return {
        "bridge": bridge,
        "connectors": {
            "desk": {"plugin": "files", "path": str(tmp_path / "in"), "kinds": ["ticket"]},
        },
        "fields": {
            "severity": {
                "type": "select",
                "kind": "ticket",
                "options": ["Sev-1", "Sev-2"],
                "owner": "bridge",
                "sync_to": ["desk"],
            }
        },
        "tags": [{"match": "bug/sev1", "set": {"severity": "Sev-1"}}],
        "agents": [{"email": "alice@example.com"}],
    }


def make_server(tmp_path: Path, **bridge: Any) -> Iterator[tuple[Server, str]]:
    app = App(
        LoadedConfig(Config(**config(tmp_path, **bridge)), Path("bridge.toml"), {}),
        database=f"sqlite:///{tmp_path / 'bridge.db'}",
    )
    server = Server(app, "127.0.0.1", 0)
    server.start()
    host, port = server.address
    try:
        yield server, f"http://{host}:{port}"
    finally:
        server.stop()
        app.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    yield from make_server(tmp_path)


@pytest.fixture
def signed(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    yield from make_server(tmp_path, webhook_secret=SECRET)


def post(base: str, body: bytes, system: str = "desk", **headers: str) -> httpx.Response:
    return httpx.post(f"{base}/webhooks/{system}", content=body, headers=headers, timeout=10)


def raw(
    server: Server, head: str, body: bytes = b"", *, close_write: bool = False
) -> tuple[int, dict[str, Any]]:
    """Send bytes httpx refuses to send (bad Content-Length, short bodies); return status and JSON answer."""
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


def records(server: Server) -> list[Any]:
    with server.app.store.session() as tx:
        return list(tx.records())


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    [value] = [line.split()[1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(value)


def test_a_good_webhook_is_stored_mapped_and_queued_and_counted(served: tuple[Server, str]) -> None:
    server, base = served
    assert metric(base, "bridge_webhook_changes_total") == 0
    assert metric(base, "bridge_outbox_pending") == 0
    body = [{"id": "T-1", "updated_at": "2026-11-02T09:15:00Z", "subject": "API down", "tags": ["bug/sev1"]}]
    res = post(base, json.dumps(body).encode())
    assert res.status_code == 202, res.text
    assert res.json() == {"accepted": 1, "problems": []}
    [record] = records(server)
    assert record.links == {"desk": "T-1"}
    assert record.tags == ["bug/sev1"] and record.attrs["subject"] == "API down"
    assert record.value("severity") == "Sev-1"  # from the tag mapping
    [item] = server.app.store.pending("desk")
    assert (item.external_id, item.fields) == ("T-1", {"severity": "Sev-1"})
    assert metric(base, "bridge_webhook_changes_total") == 1
    assert metric(base, "bridge_outbox_pending") == 1
    assert metric(base, "bridge_outbox_dead") == 0


def test_a_record_of_a_kind_the_system_does_not_carry_is_not_taken(served: tuple[Server, str]) -> None:
    server, base = served  # desk carries tickets only
    body = [{"id": "T-1", "updated_at": "2026-11-02T09:15:00Z"},
            {"kind": "account", "id": "A-9", "updated_at": "2026-11-02T09:15:00Z", "name": "Acme"}]
    res = post(base, json.dumps(body).encode())
    assert res.status_code == 202
    assert res.json() == {"accepted": 1, "problems": [
        "desk account A-9: not taken: desk carries ticket (its kinds), not account"]}
    assert [r.links for r in records(server)] == [{"desk": "T-1"}]


def test_an_undated_record_is_stamped_with_the_receive_time(served: tuple[Server, str]) -> None:
    server, base = served
    before = datetime.now(UTC)
    assert post(base, b'{"id": 5}').status_code == 202
    after = datetime.now(UTC)
    [record] = records(server)
    assert record.links == {"desk": "5"}
    with server.app.store.session() as tx:
        [change] = tx.changes_of(record.id)
    assert before <= change.at <= after


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "item 0: a record must be a JSON object, not a number"),
        (b'[{"id": "T-1"}, {"subject": "no id"}]', "item 1: a record needs an id"),
        (b'"T-1"', "body: a record must be a JSON object, not a string"),
        (b'{"id": ""}', "body: id must be a non-empty string or an integer"),
        (b'{"id": "  "}', "body: id must be a non-empty string or an integer"),
        (b'[{"id": "T-1"}, {"id": null}]', "item 1: id must be a non-empty string or an integer, not null"),
        (b'{"id": true}', "id must be a non-empty string or an integer, not a boolean"),
        (b'{"id": {"x": 1}}', "id must be a non-empty string or an integer, not an object"),
        (b'{"id": "T-1", "kind": "invoice"}', "kind must be one of ticket, account, contact"),
        (b'{"id": "T-1", "updated_at": "yesterday"}', "bad time 'yesterday'"),
        (b'{"id": "T-1", "updated_at": 1700000000}', "updated_at must be an ISO 8601 string"),
        (b'{"id": "T-1", "fields": [1]}', "fields must be an object"),
        (b'{"id": "T-1", "tags": "bug/sev1"}', "tags must be an array of strings"),
        (b"[]", "empty array"),
        (b"{not json", "body is not JSON"),
        (b"", "body is not JSON"),
        (b'{"id": "\xff"}', "body is not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_a_malformed_body_answers_400_with_the_reason(
    served: tuple[Server, str], body: bytes, message: str
) -> None:
    server, base = served
    res = post(base, body)
    assert res.status_code == 400, res.text
    assert res.json()["error"].startswith("desk: malformed webhook: ")
    assert message in res.json()["error"]
    assert records(server) == []  # a refused body stores nothing, not even its good items
    assert metric(base, "bridge_webhook_changes_total") == 0


@pytest.mark.parametrize("length", ["abc", "-1", "1_0", "+5", "5, 5", "0x10", "99999999999999999999999"])
def test_a_bad_content_length_answers_400(served: tuple[Server, str], length: str) -> None:
    server, base = served
    status, answer = raw(server, f"POST /webhooks/desk HTTP/1.1\nHost: x\nContent-Length: {length}\n", b"{}")
    assert status == 400
    assert "bad Content-Length" in answer["error"]
    assert httpx.get(f"{base}/healthz", timeout=10).json() == {"ok": True}  # still serving


def test_a_missing_content_length_answers_411(served: tuple[Server, str]) -> None:
    server, _ = served
    status, answer = raw(
        server, "POST /webhooks/desk HTTP/1.1\nHost: x\nConnection: close\n", close_write=True
    )
    assert (status, answer) == (411, {"error": "Content-Length required"})


def test_a_body_shorter_than_its_content_length_answers_400(served: tuple[Server, str]) -> None:
    server, _ = served
    head = "POST /webhooks/desk HTTP/1.1\nHost: x\nContent-Length: 50\n"
    status, answer = raw(server, head, b'{"id": 1}', close_write=True)
    assert status == 400 and "body ended after 9 of 50 bytes" in answer["error"]
    assert records(server) == []


def test_a_body_over_the_limit_answers_413_without_being_read(served: tuple[Server, str]) -> None:
    server, base = served
    head = f"POST /webhooks/desk HTTP/1.1\nHost: x\nContent-Length: {MAX_BODY + 1}\n"
    status, answer = raw(server, head, b"[")
    assert status == 413 and "body too large" in answer["error"]
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/webhooks/nowhere", "no connector named 'nowhere' is configured"),
        ("/webhooks", "POST /webhooks/SYSTEM or POST /agents/status"),
        ("/webhooks/desk/extra", "POST /webhooks/SYSTEM or POST /agents/status"),
        ("/other/desk", "POST /webhooks/SYSTEM or POST /agents/status"),
        ("/agents", "POST /webhooks/SYSTEM or POST /agents/status"),
        ("/agents/status/alice", "POST /webhooks/SYSTEM or POST /agents/status"),
    ],
)
def test_an_unknown_system_or_path_answers_404(served: tuple[Server, str], path: str, error: str) -> None:
    _, base = served
    res = httpx.post(base + path, content=b'{"id": "T-1"}', timeout=10)
    assert res.status_code == 404 and res.json() == {"error": error}


def test_a_query_string_does_not_change_the_route(served: tuple[Server, str]) -> None:
    server, base = served
    assert (
        httpx.post(f"{base}/webhooks/desk?source=x", content=b'{"id": "T-1"}', timeout=10).status_code == 202
    )
    assert httpx.get(f"{base}/healthz?probe=1", timeout=10).status_code == 200
    assert len(records(server)) == 1


def test_signature_is_required_when_a_secret_is_set(signed: tuple[Server, str]) -> None:
    server, base = served = signed
    body = b'{"id": "T-1", "tags": ["bug/sev1"]}'
    answers = [
        post(base, body),  # missing
        post(base, body, **{"X-Bridge-Signature": sign(b"wrong", body)}),
        post(base, body, **{"X-Bridge-Signature": sign(SECRET.encode(), body + b" ")}),  # signed another body
        post(base, body, **{"X-Bridge-Signature": "sha256="}),
    ]
    for res in answers:
        assert res.status_code == 401 and res.json() == {"error": "bad or missing X-Bridge-Signature"}
        assert SECRET not in res.text
    assert records(server) == []
    # an unknown system is not revealed to an unsigned caller
    assert post(base, body, system="nowhere").status_code == 401
    good = post(base, body, **{"X-Bridge-Signature": sign(SECRET.encode(), body)})
    assert good.status_code == 202 and good.json()["accepted"] == 1
    assert [r.value("severity") for r in records(served[0])] == ["Sev-1"]


def test_an_agent_status_needs_the_signature_too(signed: tuple[Server, str]) -> None:
    server, base = signed
    body = b'{"agent": "alice@example.com", "status": "away"}'
    for headers in ({}, {"X-Bridge-Signature": sign(SECRET.encode(), body + b" ")}):
        res = httpx.post(f"{base}/agents/status", content=body, headers=headers, timeout=10)
        assert res.status_code == 401 and res.json() == {"error": "bad or missing X-Bridge-Signature"}
    assert agent_changes(server) == []
    # a malformed body is not judged for an unsigned caller either
    assert httpx.post(f"{base}/agents/status", content=b"{", timeout=10).status_code == 401
    headers = {"X-Bridge-Signature": sign(SECRET.encode(), body)}
    res = httpx.post(f"{base}/agents/status", content=body, headers=headers, timeout=10)
    assert res.status_code == 202, res.text
    assert agent_changes(server) == [("alice@example.com", {"status": "away"})]


def agent_changes(server: Server) -> list[tuple[str, dict[str, Any]]]:
    with server.app.store.session() as tx:
        return [(c.change.external_id, c.change.attrs) for c in tx.own_changes("agent")]


def test_an_agent_status_is_kept_for_the_rules_at_the_time_given_or_now(served: tuple[Server, str]) -> None:
    server, base = served
    body = {"agent": "Alice@Example.COM", "status": "away", "at": "2026-11-02T09:40:00Z"}
    res = httpx.post(f"{base}/agents/status", json=body, timeout=10)
    assert res.status_code == 202, res.text
    # no rules run in this process (it does not lead): the rules leader's catch-up takes it
    assert res.json() == {"agent": "alice@example.com", "status": "away", "at": "2026-11-02T09:40:00Z",
                          "taken": False, "writes_queued": 0}
    before = datetime.now(UTC).replace(microsecond=0)
    res = httpx.post(f"{base}/agents/status", json={"agent": "alice@example.com", "status": "active"},
                     timeout=10)
    assert res.status_code == 202, res.text
    assert before <= parse_time(res.json()["at"]) <= datetime.now(UTC)
    with server.app.store.session() as tx:
        logged = [(c.record_id, c.change.system, c.change.external_id, c.change.attrs, c.desk_at)
                  for c in tx.own_changes("agent")]
    assert logged == [
        ("", "bridge", "alice@example.com", {"status": "away"}, None),
        ("", "bridge", "alice@example.com", {"status": "active"}, None),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{", "agents/status: malformed JSON: Expecting property name enclosed in double quotes: "
               "line 1 column 2 (char 1)"),
        (b'["alice@example.com", "away"]',
         'agents/status: expected a JSON object: {"agent": EMAIL, "status": STATUS, "at": TIME (optional)}'),
        (b'{"status": "away"}', "agents/status: agent is missing"),
        (b'{"agent": "alice@example.com"}', "agents/status: status is missing"),
        (b'{"agent": "alice@example.com", "status": "lunch"}',
         "agents/status: status 'lunch' is not one of active, away, offline"),
        (b'{"agent": "alice@example.com", "status": null}',
         "agents/status: status null is not one of active, away, offline"),
        (b'{"agent": "bob@example.com", "status": "away"}',
         "agents/status: agent 'bob@example.com' is not in the config's [[agents]] "
         "(configured: alice@example.com)"),
        (b'{"agent": 7, "status": "away"}', "agents/status: agent: expected an agent's email, got 7"),
        (b'{"agent": "alice@example.com", "status": "away", "why": "lunch"}',
         "agents/status: unknown key(s) 'why'; expected agent, status and at"),
        (b'{"agent": "alice@example.com", "status": "away", "at": "yesterday"}',
         "agents/status: at 'yesterday' is not an ISO 8601 time"),
        (b'{"agent": "alice@example.com", "status": "away", "at": 1700000000}',
         "agents/status: at: expected an ISO 8601 time, got 1700000000"),
    ],
)
def test_a_bad_agent_status_answers_400_naming_the_problem(
    served: tuple[Server, str], body: bytes, error: str
) -> None:
    server, base = served
    res = httpx.post(f"{base}/agents/status", content=body, timeout=10)
    assert (res.status_code, res.json()) == (400, {"error": error})
    assert agent_changes(server) == []


def test_an_agent_status_dated_in_the_future_answers_400(served: tuple[Server, str]) -> None:
    server, base = served
    body = {"agent": "alice@example.com", "status": "away", "at": "2999-01-01T00:00:00Z"}
    res = httpx.post(f"{base}/agents/status", json=body, timeout=10)
    assert res.status_code == 400
    error = res.json()["error"]
    assert error.startswith("agents/status: at '2999-01-01T00:00:00Z' is in the future (now is "), error
    assert agent_changes(server) == []


def test_a_non_ascii_signature_answers_401_not_500(signed: tuple[Server, str]) -> None:
    server, _ = signed
    body = b'{"id": "T-1"}'
    head = f"POST /webhooks/desk HTTP/1.1\nHost: x\nContent-Length: {len(body)}\n"
    head += "X-Bridge-Signature: sha256=\xe9\n"
    status, answer = raw(server, head, body)
    assert (status, answer) == (401, {"error": "bad or missing X-Bridge-Signature"})


def test_the_secret_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BRIDGE_HOOK_SECRET", SECRET)
    for _server, base in make_server(tmp_path, webhook_secret_env="TEST_BRIDGE_HOOK_SECRET"):
        body = b'{"id": "T-1"}'
        assert post(base, body).status_code == 401
        assert post(base, body, **{"X-Bridge-Signature": sign(SECRET.encode(), body)}).status_code == 202


def test_the_secret_can_come_from_a_file_and_an_unreadable_one_stops_the_server(tmp_path: Path) -> None:
    from bridge.errors import ConfigError

    secret = tmp_path / "webhook-secret"
    secret.write_text(SECRET + "\n")  # (as a mounted secret file often ends)
    for _server, base in make_server(tmp_path, webhook_secret_file=str(secret)):
        body = b'{"id": "T-1"}'
        assert post(base, body).status_code == 401
        assert post(base, body, **{"X-Bridge-Signature": sign(SECRET.encode(), body)}).status_code == 202
    unreadable = r"cannot read the secret file it names \(No such file or directory\)"
    with pytest.raises(ConfigError, match=unreadable):
        list(make_server(tmp_path, webhook_secret_file=str(tmp_path / "missing")))


def test_a_secret_variable_that_is_not_set_stops_the_server_instead_of_taking_unsigned_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.errors import ConfigError

    monkeypatch.delenv("TEST_BRIDGE_HOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"\$TEST_BRIDGE_HOOK_SECRET is not set: the HTTP server would"):
        list(make_server(tmp_path, webhook_secret_env="TEST_BRIDGE_HOOK_SECRET"))


def test_a_port_already_taken_is_named_with_its_key(tmp_path: Path) -> None:
    from bridge.errors import ConfigError

    for first, _base in make_server(tmp_path):
        _host, port = first.address
        app = App(LoadedConfig(Config(**config(tmp_path)), Path("bridge.toml"), {}),
                  database=f"sqlite:///{tmp_path / 'other.db'}")
        try:
            with pytest.raises(ConfigError, match=rf"bridge.http_port: cannot listen on 127.0.0.1:{port}: "):
                Server(app, "127.0.0.1", port)
        finally:
            app.close()


def test_an_internal_error_answers_500_without_details_and_the_server_keeps_serving(
    signed: tuple[Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, base = signed

    def broken(*_args: object) -> None:
        raise RuntimeError(f"database password is {SECRET}")

    monkeypatch.setattr(server.pipeline, "process", broken)
    body = b'{"id": "T-1"}'
    res = post(base, body, **{"X-Bridge-Signature": sign(SECRET.encode(), body)})
    assert res.status_code == 500
    assert res.json() == {"error": "internal error; see the bridge log"}
    assert SECRET not in res.text
    assert httpx.get(f"{base}/healthz", timeout=10).json() == {"ok": True}


def test_healthz_and_unknown_get_paths(served: tuple[Server, str]) -> None:
    _, base = served
    res = httpx.get(f"{base}/healthz", timeout=10)
    assert (res.status_code, res.json()) == (200, {"ok": True})
    assert httpx.get(f"{base}/nope", timeout=10).status_code == 404
    metrics = httpx.get(f"{base}/metrics", timeout=10)
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE bridge_outbox_pending gauge" in metrics.text


def test_files_pull_stamps_undated_records_with_the_file_mtime(
    served: tuple[Server, str], tmp_path: Path
) -> None:
    """A re-pull of an undated record gives the same time, so it is not a new change."""
    server, _ = served
    inbox = tmp_path / "in" / "a.jsonl"
    inbox.parent.mkdir()
    inbox.write_text(
        '{"id": "T-1", "subject": "undated"}\n{"id": "T-2", "updated_at": "2026-11-02T09:00:00Z"}\n'
    )
    os.utime(inbox, (1_790_000_000, 1_790_000_000))
    conn = server.app.connector("desk")
    assert isinstance(conn, FilesConnector)
    pulls = [
        [(c.external_id, c.at) for p in conn.pull("ticket", Cursor()) for c in p.changes] for _ in range(2)
    ]
    assert pulls[0] == pulls[1]
    assert dict(pulls[0]) == {
        "T-1": datetime.fromtimestamp(1_790_000_000, UTC),
        "T-2": parse_time("2026-11-02T09:00:00Z"),
    }
    last = pulls[0][-1]
    assert list(conn.pull("ticket", Cursor(last[1], last[0]))) == []


def test_files_pull_names_file_and_line_of_a_bad_record(served: tuple[Server, str], tmp_path: Path) -> None:
    server, _ = served
    inbox = tmp_path / "in" / "a.jsonl"
    inbox.parent.mkdir()
    inbox.write_text('{"id": "T-1"}\n{"id": "T-2", "updated_at": "last tuesday"}\n')
    [page] = list(server.app.connector("desk").pull("ticket", Cursor()))
    assert [c.external_id for c in page.changes] == ["T-1"]
    assert len(page.problems) == 1 and "a.jsonl:2: bad time 'last tuesday'" in page.problems[0]


def test_a_burst_of_connections_waits_to_be_accepted_instead_of_being_dropped(tmp_path: Path) -> None:
    # a helpdesk's bulk edit sends webhooks at once: with the standard library's backlog of 5, the
    # connections beyond it were reset. Here nothing accepts (the server is not started): all must queue
    app = App(LoadedConfig(Config(**config(tmp_path)), Path("bridge.toml"), {}),
              database=f"sqlite:///{tmp_path / 'bridge.db'}")
    server = Server(app, "127.0.0.1", 0)
    sockets: list[socket.socket] = []
    try:
        for _ in range(40):
            sock = socket.socket()
            sock.settimeout(0.5)
            try:
                sock.connect(server.address)
            except OSError:
                sock.close()
                break
            sockets.append(sock)
        assert len(sockets) == 40
    finally:
        for sock in sockets:
            sock.close()
        server.httpd.server_close()
        app.close()


def test_a_webhook_whose_named_record_cannot_be_read_now_is_answered_503_to_be_sent_again(
        served: tuple[Server, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.errors import RetriableConnectorError

    server, base = served

    def unreadable(self: FilesConnector, headers: Any, body: bytes) -> list[Any]:
        # (a connector that reads the record a webhook names from its system, which is down)
        raise RetriableConnectorError("HTTP 503: unavailable", system="desk", record="T-9")

    monkeypatch.setattr(FilesConnector, "parse_webhook", unreadable)
    answer = post(base, b'{"issue_id": "T-9"}')
    assert answer.status_code == 503
    assert answer.json() == {"error": "desk: could not read what the webhook names; try again later"}
    assert records(server) == []
