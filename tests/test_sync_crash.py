"""A push killed mid-batch (a real subprocess, SIGKILL) and restarted: no write lost, none duplicated.

The receiving system is the JSONL ``files`` connector: each write is a line carrying its idempotency key. The
child process pauses in the middle of its second batch, after some lines reached the file, and the test kills
it there with SIGKILL. The restarted child (with its clock past the outbox lease) pushes what is left. Every
record's write is in the file; a write that landed twice is the same line twice (same key, same values): the
repeat a crash allows, recognisable, never a second different write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

N = 35
BATCH = 10

CHILD = textwrap.dedent(
    """
    import json, sys
    from datetime import timedelta
    from pathlib import Path

    from bridge.connector import ConnectorContext
    from bridge.connectors.files import FilesConnector, FilesSettings
    from bridge.model import utcnow
    from bridge.settings import Config
    from bridge.store import Store
    from bridge.sync import Syncer

    root, mode, offset = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    class Receiver(FilesConnector):
        batch_max = __BATCH_MAX__
        calls = 0

        def push(self, kind, writes):
            Receiver.calls += 1
            results = []
            for n, write in enumerate(writes):
                results += super().push(kind, [write])  # one line each, flushed
                if mode == "pause" and Receiver.calls == 2 and n == len(writes) // 2:
                    print("MID-BATCH", flush=True)
                    sys.stdin.read()  # wait here to be killed
            return results

    config = Config(
        connectors={
            "src": {"plugin": "files", "kinds": ["account"]},
            "dst": {"plugin": "files", "kinds": ["account"]},
        },
        fields={"tier": {"type": "text", "kind": "account", "owner": "src", "sync_to": ["dst"]},
                "arr": {"type": "number", "kind": "account", "owner": "src", "sync_to": ["dst"]}},
    )
    conns = {
        "src": FilesConnector(ConnectorContext("src", FilesSettings(plugin="files",
                                                                    path=str(root / "inbox")))),
        "dst": Receiver(ConnectorContext("dst", FilesSettings(plugin="files", path=str(root / "dst-inbox"),
                                                              out_path=str(root / "out.jsonl")))),
    }
    store = Store.open(f"sqlite:///{root / 'bridge.db'}")
    syncer = Syncer(config, store, conns.__getitem__, clock=lambda: utcnow() + timedelta(minutes=offset))
    report = syncer.sync()
    print(json.dumps({"pushed": report.pushed, "calls": report.push_calls, "pulled": report.pulled,
                      "pending": len(store.pending()), "dead": len(store.dead_letters())}), flush=True)
    """
).replace("__BATCH_MAX__", str(BATCH))


def _run(root: Path, mode: str, offset: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(root / "child.py"), str(root), mode, str(offset)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_push_killed_mid_batch_loses_nothing_and_repeats_recognisably(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "dst-inbox").mkdir()
    (tmp_path / "child.py").write_text(CHILD)
    with (tmp_path / "inbox" / "accounts.jsonl").open("w") as fh:
        for i in range(N):
            fh.write(
                json.dumps(
                    {
                        "kind": "account",
                        "id": f"A-{i:03}",
                        "updated_at": f"2026-03-02T09:{i:02}:00Z",
                        "fields": {"tier": f"tier-{i}", "arr": i * 100},
                    }
                )
                + "\n"
            )

    child = _run(tmp_path, "pause", 0)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "MID-BATCH", line
    finally:
        os.kill(child.pid, signal.SIGKILL)  # in the middle of the batch (or, failing, so nothing hangs)
        child.communicate(timeout=30)  # reaps it and closes the pipes
    assert child.returncode == -signal.SIGKILL
    landed = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert BATCH < len(landed) < 2 * BATCH  # the first batch and part of the second

    again = _run(tmp_path, "run", 10)  # ten minutes later: the dead push's lease has run out
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["pending"] == 0 and summary["dead"] == 0

    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    by_key: dict[str, list[dict[str, object]]] = {}
    for entry in lines:
        by_key.setdefault(str(entry["key"]), []).append(entry)
    assert len(by_key) == N  # one distinct write per record: none lost, none different twice
    assert {str(e[0]["record"]) for e in by_key.values()} == {str(e["record"]) for e in lines}
    assert len({str(e["record"]) for e in lines}) == N
    for entries in by_key.values():
        assert all(e == entries[0] for e in entries)  # a repeat is the very same write
    repeats = len(lines) - N
    assert 1 <= repeats <= len(landed) - BATCH  # only the killed batch's landed part came again
    values = sorted((e[0]["fields"]["tier"], e[0]["fields"]["arr"]) for e in by_key.values())  # type: ignore[index]
    assert values == sorted((f"tier-{i}", i * 100) for i in range(N))

    third = _run(tmp_path, "run", 20)
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["calls"] == 0  # nothing left, nothing resent
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == len(lines)
