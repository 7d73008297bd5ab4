"""The `bridge` command end to end, in subprocesses, on a copy of the demo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bridge(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("BRIDGE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path


def test_check_demo_ok(demo: Path) -> None:
    res = bridge("check", cwd=demo)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok" in res.stdout


def test_check_bad_config_exit_1_no_traceback(demo: Path) -> None:
    cfg = demo / "config" / "bridge.toml"
    cfg.write_text(cfg.read_text().replace('type = "number"', 'type = "money"'))
    res = bridge("check", cwd=demo)
    assert res.returncode == 1
    assert "config/bridge.toml:" in res.stdout and "fields.arr.type: unknown field type 'money'" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_bad_usage_exits_2(demo: Path) -> None:
    assert bridge("no-such-command", cwd=demo).returncode == 2


def test_config_schema_is_json_schema(demo: Path) -> None:
    res = bridge("config", "schema", cwd=demo)
    schema = json.loads(res.stdout)
    assert {"connectors", "fields", "rules", "sla"} <= set(schema["properties"])


def test_run_once_ingests_demo_and_prints_summary(demo: Path) -> None:
    res = bridge("run", "--once", cwd=demo)
    out = res.stdout
    assert "records:" in out, out + res.stderr
    assert "unmapped tags:" in out
    assert "feature/dark-mode" in out  # mapped nowhere in the demo config
    # T-1007 carries an unknown severity option: reported with system and record, the rest still ingested
    assert "inbox ticket T-1007" in out and "Sev-9" in out
    writes = [json.loads(line) for line in (demo / "out" / "inbox-writes.jsonl").read_text().splitlines()]
    by_id: dict[str, dict[str, object]] = {}
    for w in writes:
        by_id.setdefault(w["id"], {}).update(w["fields"])
    assert by_id["T-1001"]["assignee"] == "alice@example.com"  # routed by skill: billing
    assert by_id["T-1001"]["product_area"] == ["Billing"]
    assert by_id["T-1003"]["severity"] == "Sev-1"
    # a second pass finds nothing new and writes nothing more
    again = bridge("run", "--once", cwd=demo)
    assert (demo / "out" / "inbox-writes.jsonl").read_text().count("\n") == len(writes), again.stdout


def test_run_once_reports_a_malformed_inbox_line_and_takes_the_others_in(demo: Path) -> None:
    inbox = sorted((demo / "config" / "demo" / "inbox").glob("*.jsonl"))[0]
    lines = inbox.read_text().splitlines()
    inbox.write_text("\n".join([lines[0], '{"kind": "ticket", "id": "T-BAD", "subj', *lines[1:]]) + "\n")
    res = bridge("run", "--once", cwd=demo)
    assert res.returncode == 1
    assert f"{inbox.name}:2: not JSON" in res.stdout, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    ids = {json.loads(line)["id"] for line in (demo / "out" / "inbox-writes.jsonl").read_text().splitlines()}
    assert {"T-1001", "T-1003"} <= ids  # the records before and after the bad line went through


def test_replay_demo_json(demo: Path) -> None:
    res = bridge("replay", "config/demo/events.jsonl", "--json", "--until", "2026-11-06T00:00:00Z", cwd=demo)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    decisions = [r for r in rows if not r.get("final")]
    finals = {r["ticket_id"]: r for r in rows if r.get("final")}
    assert {"T-1", "T-2", "T-3"} == set(finals)
    assert any(
        d["decision"] == "set_field" and d["ticket_id"] == "T-1" and d["field"] == "product_area"
        for d in decisions
    )
    assert finals["T-1"]["fields"]["product_area"] == ["Billing"]
    times = [d["at"] for d in decisions]
    assert times == sorted(times)


def test_replay_reports_bad_lines_and_goes_on(demo: Path) -> None:
    events = demo / "events.jsonl"
    good = (ROOT / "config" / "demo" / "events.jsonl").read_text().splitlines()
    events.write_text(
        "\n".join([good[0], "{not json", '{"type": "bogus", "at": "2026-11-02T10:00:00Z"}', good[1]]) + "\n"
    )
    res = bridge("replay", str(events), "--json", cwd=demo)
    assert res.returncode == 1
    assert ":2: not JSON" in res.stderr and ":3: unknown event type 'bogus'" in res.stderr
    finals = [json.loads(line) for line in res.stdout.splitlines() if '"final": true' in line]
    assert {f["ticket_id"] for f in finals} == {"T-1", "T-2"}


def test_replay_reads_a_file_that_starts_with_a_byte_order_mark(demo: Path) -> None:
    events = demo / "bom.jsonl"
    events.write_bytes(b"\xef\xbb\xbf" + (ROOT / "config" / "demo" / "events.jsonl").read_bytes())
    res = bridge("replay", str(events), "--json", cwd=demo)
    assert res.returncode == 0, res.stderr
    assert {json.loads(line)["ticket_id"] for line in res.stdout.splitlines() if '"final": true' in line} == {
        "T-1", "T-2", "T-3"}


def test_replay_refuses_an_until_out_of_the_clocks_range(demo: Path) -> None:
    res = bridge("replay", "config/demo/events.jsonl", "--until", "9999-12-31T00:00:00Z", cwd=demo)
    assert res.returncode == 2
    assert "--until: '9999-12-31T00:00:00Z' is out of range (years 1900 to 9000)" in res.stderr


def test_run_stops_cleanly_on_sigterm(demo: Path) -> None:
    cfg = demo / "config" / "bridge.toml"
    cfg.write_text(cfg.read_text().replace("[bridge]\n", "[bridge]\nhttp_port = 0\n", 1))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("BRIDGE_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "run"],
        cwd=demo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if "bridge is running" in line:
            break
    else:  # pragma: no cover - a hung daemon
        proc.kill()
        pytest.fail("".join(seen))
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(seen) + out
    assert "stopped cleanly" in out


def test_run_once_json(demo: Path) -> None:
    res = bridge("run", "--once", "--json", cwd=demo)
    summary = json.loads(res.stdout)
    assert summary["records"] == summary["pulled"] == 14
    assert summary["unmapped_tags"]["feature/dark-mode"] == 1
    assert any("T-1007" in p for p in summary["problems"]) and res.returncode == 1


def test_a_commands_log_carries_no_request_url_of_httpx(demo: Path, caplog: pytest.LogCaptureFixture) -> None:
    # httpx logs every request's whole URL at INFO, query included: a search by a customer's email
    import httpx

    from bridge.cli import main

    caplog.set_level("INFO")
    assert main(["--config", str(demo / "config" / "bridge.toml"), "check"]) == 0
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json={})))
    client.get("https://api.example/v1/persons/search", params={"term": "ana@acme.example"})
    assert "persons/search" not in caplog.text and "acme.example" not in caplog.text


def test_a_database_failing_under_a_command_is_one_line_not_a_traceback(
    demo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # (a stale SQLite journal, a disk error, a PostgreSQL server going away mid-run)
    import sqlite3

    import sqlalchemy.exc

    from bridge import cli

    def failing(args: object) -> int:
        cause = sqlite3.OperationalError("disk I/O error")
        raise sqlalchemy.exc.OperationalError("BEGIN IMMEDIATE", {}, cause)

    monkeypatch.setattr(cli, "cmd_check", failing)
    assert cli.main(["--config", str(demo / "config" / "bridge.toml"), "check"]) == 1
    err = capsys.readouterr().err
    assert err == "error: bridge.database: the database failed: disk I/O error\n"

    def corrupt(args: object) -> int:  # a corrupt page: a DatabaseError, with the statement and parameters
        cause = sqlite3.DatabaseError("database disk image is malformed")
        raise sqlalchemy.exc.DatabaseError("SELECT records.id FROM records WHERE id = ?", ("T-1",), cause)

    def gone(args: object) -> int:  # the driver's message runs over several lines: the first is said
        cause = Exception("server closed the connection unexpectedly\n\tThis probably means the server ...")
        raise sqlalchemy.exc.OperationalError("BEGIN", {}, cause)

    for failure, said in ((corrupt, "database disk image is malformed"),
                          (gone, "server closed the connection unexpectedly")):
        monkeypatch.setattr(cli, "cmd_check", failure)
        assert cli.main(["--config", str(demo / "config" / "bridge.toml"), "check"]) == 1
        assert capsys.readouterr().err == f"error: bridge.database: the database failed: {said}\n"
