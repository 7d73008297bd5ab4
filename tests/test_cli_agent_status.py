"""`bridge agent-status EMAIL STATUS`: the change kept in the store for the running daemon's rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bridge.store import Store

ROOT = Path(__file__).resolve().parents[1]


def bridge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("BRIDGE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def agent_changes(root: Path) -> list[tuple[str, dict[str, object], str | None]]:
    store = Store.open(f"sqlite:///{root / 'bridge.db'}")
    try:
        with store.session() as tx:
            return [(c.change.external_id, c.change.attrs, c.desk_at and c.change.at.isoformat())
                    for c in tx.own_changes("agent")]
    finally:
        store.close()


def test_agent_status_keeps_the_change_for_the_daemon(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    res = bridge("agent-status", "ALICE@example.com", "away", "--at", "2026-11-02T09:40:00Z", "--json",
                 cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    assert {k: answer[k] for k in ("agent", "status", "at")} == {
        "agent": "alice@example.com", "status": "away", "at": "2026-11-02T09:40:00Z"}
    # no Desk in this process: the change waits, untaken, for the rules leader's catch-up
    assert agent_changes(tmp_path) == [("alice@example.com", {"status": "away"}, None)]


def test_agent_status_refuses_an_unknown_agent_or_status(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    res = bridge("agent-status", "nobody@example.com", "away", cwd=tmp_path)
    assert res.returncode == 2
    assert "agent-status: agent 'nobody@example.com' is not in the config's [[agents]]" in res.stderr
    res = bridge("agent-status", "alice@example.com", "lunch", cwd=tmp_path)
    assert res.returncode == 2 and "invalid choice: 'lunch'" in res.stderr
    res = bridge("agent-status", "alice@example.com", "away", "--at", "soon", cwd=tmp_path)
    assert res.returncode == 2 and "agent-status: at 'soon' is not an ISO 8601 time" in res.stderr
    assert not (tmp_path / "bridge.db").exists() or agent_changes(tmp_path) == []


AWAY_TOML = """
[bridge]
database = "sqlite:///bridge.db"
timezone = "UTC"

[connectors.inbox]
plugin = "files"
path = "inbox"
out_path = "out/inbox-writes.jsonl"
kinds = ["ticket"]

[routing]
strategy = "least_loaded"

[[agents]]
email = "bob@example.com"
capacity = 1
"""


def test_an_agent_set_away_before_a_pass_gets_no_ticket_the_pass_frees_a_seat_for(tmp_path: Path) -> None:
    # the change log's order: bob away (kept by bridge agent-status), then T-A resolved (pulled by the next
    # pass); the pass catches bob's status up first, so the seat T-A frees goes to nobody
    (tmp_path / "bridge.toml").write_text(AWAY_TOML)
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    def line(tid: str, at: str, **attrs: str) -> str:
        return json.dumps({"kind": "ticket", "id": tid, "updated_at": f"2026-11-02T{at}:00Z", **attrs}) + "\n"

    (inbox / "a.jsonl").write_text(line("T-A", "09:00", subject="a", status="open")
                                   + line("T-B", "09:01", subject="b", status="open"))
    assert bridge("--config", "bridge.toml", "sync", cwd=tmp_path).returncode == 0
    res = bridge("--config", "bridge.toml", "agent-status", "bob@example.com", "away", "--at",
                 "2026-11-02T09:10:00Z", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with (inbox / "a.jsonl").open("a") as fh:
        fh.write(line("T-A", "09:20", status="resolved", message="done", last_author="agent"))
    assert bridge("--config", "bridge.toml", "sync", cwd=tmp_path).returncode == 0
    written = [json.loads(x) for x in (tmp_path / "out" / "inbox-writes.jsonl").read_text().splitlines()]
    assert [(w["id"], w["fields"]) for w in written] == [("T-A", {"assignee": "bob@example.com"})]
