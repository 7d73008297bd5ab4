"""`bridge sync`, `explain`, `deadletter`, `replay --against`, `taxonomy lint`, `plugins`: in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.store import Store

ROOT = Path(__file__).resolve().parents[1]
INBOX_WRITES = Path("out") / "inbox-writes.jsonl"


def bridge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``bridge ARGS`` in ``cwd`` (without $BRIDGE_CONFIG, so config/bridge.toml is the default)."""
    env = dict(os.environ)
    env.pop("BRIDGE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo after one `bridge sync` (read, never changed, by the tests that use it)."""
    root = tmp_path_factory.mktemp("synced")
    shutil.copytree(ROOT / "config", root / "config")
    res = bridge("sync", cwd=root)
    # 9 tickets get fields, and the rules route T-1006 (accounts go nowhere); T-1003, waiting for an agent, is
    # routed at 12:00, before the next ticket is taken (as in replay), so its route joins its fields' write;
    # T-1003's escalation is an event, pushed as a write of its own; and so is each SLA warning and breach the
    # first rules job states of the demo's tickets, weeks old (their clocks ran out long ago): 22 of them, a
    # warning stated with its breach not told
    assert "pushed 33 " in res.stdout, res.stdout + res.stderr
    return root


def stored(root: Path) -> tuple[int, int]:
    """(records, outbox items) in the demo's store."""
    db = root / "bridge.db"
    if not db.exists():
        return 0, 0
    store = Store.open(f"sqlite:///{db}")
    try:
        with store.session() as tx:
            records = len(list(tx.records()))
        return records, len(store.items())
    finally:
        store.close()


def test_sync_dry_run_prints_the_plan_and_writes_nothing_then_sync_writes_it(demo: Path) -> None:
    dry = bridge("sync", "--dry-run", cwd=demo)
    # T-1007 carries an option the select does not have: a failed record, so exit 1, the rest still planned
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "inbox ticket T-1007" in dry.stderr + dry.stdout and "Sev-9" in dry.stderr + dry.stdout
    assert "Traceback" not in dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "plan (nothing was written):"
    assert "  inbox:T-1003 severity -> inbox: None -> 'Sev-1' (tag bug/sev1)" in lines
    assert "  inbox:T-1001 product_area -> inbox: None -> ['Billing'] (tag billing/refund)" in lines
    assert not [line for line in lines if " arr -> " in line]  # no other system carries accounts
    assert not (demo / "out").exists()
    assert not (demo / "bridge.db").exists()  # (a fresh config: planned against an empty store in memory)

    real = bridge("sync", cwd=demo)
    assert real.returncode == 1, real.stdout + real.stderr  # the same failed record
    assert "plan (nothing was written)" not in real.stdout
    writes = [json.loads(line) for line in (demo / INBOX_WRITES).read_text().splitlines()]
    written = {(w["id"], f) for w in writes if w["id"].startswith("T-") for f in w["fields"]}
    planned = {
        (line.split()[0].removeprefix("inbox:"), line.split()[1])
        for line in lines
        if line.startswith("  inbox:")
    }
    assert written == planned  # the dry run showed exactly what the sync then wrote to the helpdesk
    records, outbox = stored(demo)
    # every outbox item was pushed; a push sends one line per record (the rules' writes join the sync's)
    assert records == 14 and outbox >= len(writes) >= len({w["record"] for w in writes})


def test_explain_shows_fields_with_owner_and_history(synced: Path) -> None:
    res = bridge("explain", "inbox:T-1001", cwd=synced)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "links: inbox=T-1001" in out and "tags: billing/refund" in out
    assert "product_area = ['Billing']  (owner bridge" in out
    assert "severity = None  (owner bridge" in out
    assert "write: None -> ['Billing'] from bridge (tag billing/refund" in out
    assert "billing-to-billing-team [routing]" in out
    # a rule that holds and recorded no decision (its assign found the agent already there) is not said to
    # have not fired
    assert ("  ✓ french-speakers [routing] — holds; no decision of it is recorded (nothing to change, or "
            "nobody free, when it fired; or it has not run since what it reads changed)") in out
    assert "history:" in out and "pushed to inbox" in out

    data = json.loads(bridge("explain", "inbox:T-1001", "--json", cwd=synced).stdout)
    assert data["links"] == {"inbox": "T-1001"} and data["kind"] == "ticket"
    fields = {f["field"]: f for f in data["fields"]}
    assert fields["product_area"]["value"] == ["Billing"]
    assert fields["product_area"]["owner"] == "bridge" and fields["product_area"]["set_by"] == "bridge"
    assert any(h["rule"] == "tag billing/refund" for h in fields["product_area"]["history"])
    assert fields["severity"]["value"] is None


def test_explain_an_unknown_ticket_exits_1(synced: Path) -> None:
    res = bridge("explain", "inbox:T-9999", cwd=synced)
    assert res.returncode == 1
    assert "inbox:T-9999" in res.stdout + res.stderr and "Traceback" not in res.stderr


def test_deadletter_list_when_there_are_none(synced: Path) -> None:
    res = bridge("deadletter", "list", cwd=synced)
    assert (res.returncode, res.stdout.strip().lower()) == (0, "no dead letters"), res.stderr
    # options before the subcommand work too (spec/cli.md: every subcommand takes --config and --json)
    res = bridge("--config", "config/bridge.toml", "--json", "deadletter", "list", cwd=synced)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []


def test_replay_against_prints_only_the_differing_decisions_then_why(demo: Path) -> None:
    cfg = demo / "config" / "bridge.toml"
    text = cfg.read_text()
    assert 'field = "ticket.sentiment", lte = -35' in text
    (demo / "old.toml").write_text(text.replace("lte = -35", "lte = -10"))  # the old, touchier threshold
    events = "config/demo/events.jsonl"

    res = bridge("replay", events, "--against", "old.toml", cwd=demo)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[:5] == [
        "- 2026-11-02T09:15:00Z T-1 escalate [enterprise-negative-sentiment] to=team-leads",
        "- 2026-11-02T09:15:00Z T-1 set_field [enterprise-negative-sentiment] field=priority value=urgent",
        "+ 2026-11-02T10:30:00Z T-1 escalate [enterprise-negative-sentiment] to=team-leads",
        "+ 2026-11-02T10:30:00Z T-1 set_field [enterprise-negative-sentiment] field=priority value=urgent",
        "",
    ]
    # why, at each moment the runs parted: the rules as they stood in the ticket's event then, the rule that
    # differs old then new, each with the value it read then; one alike under both, once
    first = lines.index("T-1 at 2026-11-02T09:15:00Z (its ticket.created of 2026-11-02T09:15:00Z): the rules "
                        "then, under old.toml (-) and the config (+); a rule alike under both is shown once")
    second = lines.index("T-1 at 2026-11-02T10:30:00Z (its ticket.message of 2026-11-02T10:30:00Z): the "
                         "rules then, under old.toml (-) and the config (+); a rule alike under both is "
                         "shown once")
    assert first == 5 and second > first
    at_first, at_second = lines[first:second], lines[second:]
    assert at_first.index("- ✓ enterprise-negative-sentiment [escalation] — fired here") < at_first.index(
        "-     yes ticket.sentiment lte -10: -33") < at_first.index(
        "+ ✗ enterprise-negative-sentiment [escalation] — fired at 2026-11-02T10:30:00Z") < at_first.index(
        "+     no  ticket.sentiment lte -35: -33")
    assert "  ✓ billing-to-billing-team [routing] — fired here" in at_first
    assert "+ ✓ enterprise-negative-sentiment [escalation] — fired here" in at_second
    assert "+     yes ticket.sentiment lte -35: -60" in at_second
    assert "  ✓ billing-to-billing-team [routing] — fired at 2026-11-02T09:15:00Z" in at_second
    # french-speakers fired at 09:15 too, its assign to alice (whom billing had just assigned) changing
    # nothing: it made no decision, and fired all the same
    assert "  ✓ french-speakers [routing] — fired here" in at_first
    assert ("  ✓ french-speakers [routing] — fired at 2026-11-02T09:15:00Z (no decision: nothing to change, "
            "or nobody free)") in at_second

    res = bridge("replay", events, "--against", "old.toml", "--json", cwd=demo)
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    diff = [r for r in rows if "diff" in r]
    (why,) = [r for r in rows if "explain" in r]
    assert why["ticket_id"] == "T-1" and {"old", "new"} == set(why["explain"])
    assert [(d["diff"], d["at"], d["decision"]) for d in diff] == [
        ("-", "2026-11-02T09:15:00Z", "escalate"),
        ("-", "2026-11-02T09:15:00Z", "set_field"),
        ("+", "2026-11-02T10:30:00Z", "escalate"),
        ("+", "2026-11-02T10:30:00Z", "set_field"),
    ]
    # "+" are the current config's own decisions, "-" the old one's; what both take is left out
    full = [json.loads(line) for line in bridge("replay", events, "--json", cwd=demo).stdout.splitlines()]
    decisions = [d for d in full if not d.get("final")]
    for d in diff:
        assert ({k: v for k, v in d.items() if k != "diff"} in decisions) == (d["diff"] == "+")
    assert any(d["ticket_id"] == "T-1" and d["decision"] == "assign" for d in decisions)

    same = bridge("replay", events, "--against", "config/bridge.toml", cwd=demo)
    assert (same.returncode, same.stdout) == (0, "")


@pytest.mark.parametrize("against", [False, True])
def test_replay_refuses_a_config_that_check_rejects(demo: Path, against: bool) -> None:
    cfg = demo / "config" / "bridge.toml"
    text = cfg.read_text()
    assert 'field = "ticket.sentiment", lte = -35' in text
    (demo / "bad.toml").write_text(text.replace('field = "ticket.sentiment"', 'field = "ticket.mood"'))
    events = "config/demo/events.jsonl"
    args = ("--against", "bad.toml") if against else ("--config", "bad.toml")
    res = bridge("replay", events, "--json", *args, cwd=demo)
    assert res.returncode == 1  # docs/cli.md: an invalid config exits 1, as `bridge run` and `bridge check`
    assert res.stdout == ""  # nothing was replayed
    assert "bad.toml:" in res.stderr and "ticket.mood" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("until", ["garbage", "2026-13-01T00:00:00Z", ""])
def test_replay_with_a_bad_until_is_bad_usage(demo: Path, until: str) -> None:
    res = bridge("replay", "config/demo/events.jsonl", "--until", until, cwd=demo)
    assert res.returncode == 2
    assert "--until" in res.stderr and "Traceback" not in res.stderr


def test_replay_of_a_directory_is_bad_usage(demo: Path) -> None:
    res = bridge("replay", "config", cwd=demo)
    assert res.returncode == 2
    assert "config: is a directory" in res.stderr and "Traceback" not in res.stderr


def test_taxonomy_lint_reports_unreadable_lines_and_a_missing_file_as_such(demo: Path) -> None:
    (demo / "odd.jsonl").write_bytes(b'{"tags": ["billing/refund"]}\n{"tags": ["\xff"]}\nnot json\n')
    res = bridge("taxonomy", "lint", "odd.jsonl", "--no-store", cwd=demo)
    assert "odd.jsonl:2: not UTF-8 text; skipped" in res.stderr and "odd.jsonl:3: not JSON" in res.stderr
    assert "Traceback" not in res.stderr and res.returncode in (0, 1)
    res = bridge("taxonomy", "lint", "nope.jsonl", "--no-store", cwd=demo)
    assert res.returncode == 2 and "nope.jsonl: no such file" in res.stderr and "Traceback" not in res.stderr


def test_taxonomy_lint_finds_the_near_duplicate_refund_tags(demo: Path) -> None:
    res = bridge("taxonomy", "lint", "config/demo/inbox", "--no-store", cwd=demo)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "billing/refund: 3 spellings of one topic" in res.stdout
    assert not (demo / "bridge.db").exists()  # --no-store: the store is not even opened

    findings = json.loads(
        bridge("taxonomy", "lint", "config/demo/inbox", "--no-store", "--json", cwd=demo).stdout
    )
    [dup] = [f for f in findings if f["kind"] == "near_duplicate"]
    assert dup["tag"] == "billing/refund"
    assert sorted(dup["related"]) == ["Billing_Refund", "billing/refund", "billing/refund_request"]
    assert {f["tag"] for f in findings if f["kind"] == "pattern"} == {
        "Billing_Refund",
        "billing/refund_request",
    }


def test_plugins_json_lists_the_built_in_connectors_and_webform(demo: Path) -> None:
    res = bridge("plugins", "--json", cwd=demo)
    assert res.returncode == 0, res.stderr
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    assert {"files", "hubspot", "salesforce", "pipedrive", "webform"} <= set(plugins)
    assert all(p["status"] == "ok" and p["error"] is None for p in plugins.values())
    assert plugins["files"]["origin"] == "builtin" and plugins["files"]["connectors"] == ["files"]
    assert plugins["webform"]["origin"] == "entry_point"
    assert plugins["webform"]["distribution"] == "bridge-webform"


def test_replay_against_names_what_else_in_the_config_differs(demo: Path) -> None:
    # what no rule or SLA policy explains (a follow-up delay, the routing strategy) is listed by key
    cfg = demo / "config" / "bridge.toml"
    text = cfg.read_text()
    (demo / "old.toml").write_text(text.replace('[auto_close]\nafter = "7d"', '[auto_close]\nafter = "1d"'))
    events = "config/demo/events.jsonl"
    until = ("--until", "2026-12-01T00:00:00Z")
    res = bridge("replay", events, "--against", "old.toml", *until, cwd=demo)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    at = lines.index("the config besides its rules and SLA policies (but the rules switched on or off), "
                     "under old.toml (-) and the config (+):")
    assert lines[at + 1:at + 3] == ["  auto_close.after: '1d' -> '7d'", ""]
    assert any(line.startswith(("- ", "+ ")) and "auto_close" in line for line in lines[:at])
    res = bridge("replay", events, "--against", "old.toml", *until, "--json", cwd=demo)
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert {"config_changes": [{"key": "auto_close.after", "old": "1d", "new": "7d"}]} in rows
    same = bridge("replay", events, "--against", "config/bridge.toml", cwd=demo)
    assert same.stdout == ""  # nothing differs: nothing to explain


def test_replay_against_names_bad_lines_as_plain_replay_does(demo: Path) -> None:
    events = demo / "bad.jsonl"
    good = (demo / "config/demo/events.jsonl").read_text().splitlines()[0]
    events.write_text(good + "\n{oops\n")
    plain = bridge("replay", "bad.jsonl", cwd=demo)
    against = bridge("replay", "bad.jsonl", "--against", "config/bridge.toml", cwd=demo)
    assert plain.returncode == against.returncode == 1
    assert plain.stderr.splitlines() == against.stderr.splitlines() == [
        "bad.jsonl:2: not JSON: Expecting property name enclosed in double quotes (column 2)"
    ]


TOPICS_TOML = """
[topics]
min_count = 3
rules = [{ window = "7d", ratio = 3.0 }]
"""


def test_topics_from_a_replay_lists_volumes_spikes_and_product_tickets(demo: Path) -> None:
    config = demo / "config" / "bridge.toml"
    config.write_text(config.read_text() + TOPICS_TOML)
    at = ["2026-10-01T00:00:00Z", "2026-10-07T00:00:00Z"] + [f"2026-10-15T0{h}:00:00Z" for h in range(1, 5)]
    lines = [{"type": "ticket.created", "at": t, "ticket": {"id": f"T-{n}", "subject": "s", "body": "b",
                                                            "tags": ["bug/login"]}} for n, t in enumerate(at)]
    (demo / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    res = bridge("topics", "--events", "events.jsonl", "--json", cwd=demo)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["at"] == "2026-10-15T04:00:00Z"  # the replay's end
    filed = {"filed": "2026-10-15T03:00:00Z", "spikes": 1, "hot": True}
    assert report["topics"] == [
        {"topic": "bug/login", "windows": {"7d": {"count": 4, "previous": 1}}, "product_ticket": filed}
    ]
    assert [(s["ticket_id"], s["action"], s["count"]) for s in report["spikes"]] == [("T-4", "create", 3)]
    text = bridge("topics", "--events", "events.jsonl", "--at", "2026-10-20T00:00:00Z", cwd=demo).stdout
    assert "bug/login  7d: 4 (before 1)  product ticket filed 2026-10-15T03:00:00Z, 1 spike, hot" in text
    assert "2026-10-15T03:00:00Z bug/login create (ticket T-4: 3 in 7d, 1 before)" in text


def test_topics_from_the_store_counts_each_ticket_in_its_topics(synced: Path) -> None:
    res = bridge("topics", "--at", "2026-11-04T00:00:00Z", "--json", cwd=synced)
    assert res.returncode == 0, res.stderr
    counts = {t["topic"]: t["windows"]["7d"]["count"] for t in json.loads(res.stdout)["topics"]}
    assert counts["billing/refund"] == 3 and counts["access/sso"] == 2
    assert "Billing_Refund" not in counts  # not a prefix/topic tag of the taxonomy's pattern
    later = json.loads(bridge("topics", "--at", "2026-12-24T00:00:00Z", "--json", cwd=synced).stdout)
    assert later["topics"] == []  # nothing in the last two weeks, no product ticket


@pytest.mark.parametrize("args", [("--at", "soon"), ("--events", "missing.jsonl"), ("--events", "config")])
def test_topics_bad_usage(demo: Path, args: tuple[str, str]) -> None:
    res = bridge("topics", *args, cwd=demo)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_explain_of_a_bare_id_shows_the_ticket_before_an_account_of_the_same_id(demo: Path) -> None:
    inbox = demo / "config" / "demo" / "inbox" / "tickets.jsonl"
    line = {"kind": "ticket", "id": "001A", "updated_at": "2026-11-02T09:15:00Z", "subject": "Help",
            "body": "x", "tags": [], "status": "open", "priority": "normal",
            "requester": {"email": "z@z.example"}}
    inbox.write_text(inbox.read_text() + json.dumps(line) + "\n")
    assert bridge("sync", cwd=demo).returncode in (0, 1)
    shown = json.loads(bridge("explain", "001A", "--json", cwd=demo).stdout)
    assert shown["kind"] == "ticket" and shown["links"] == {"inbox": "001A"}
    account = json.loads(bridge("explain", "crm:001A", "--json", cwd=demo).stdout)
    assert account["kind"] == "account"


def test_report_from_the_store_and_from_a_replay(synced: Path) -> None:
    res = bridge("report", "--at", "2026-11-05T00:00:00Z", "--json", cwd=synced)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["tickets"] == 11 and report["backlog"]["total"] == 11  # the demo's inbox, all open
    assert report["escalation_rate"]["escalated"] >= 1  # T-1003 was escalated by the rules
    assert {row["tag"]: row["volume"] for row in report["by_tag"]}["billing/refund"] == 3
    text = bridge("report", "--events", "config/demo/events.jsonl", cwd=synced)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("report at 2026-11-03T10:00:00Z: 3 tickets")
    assert "first response time   median 35.0 minutes" in text.stdout


@pytest.mark.parametrize("args", [("--at", "soon"), ("--events", "missing.jsonl")])
def test_report_bad_usage(demo: Path, args: tuple[str, str]) -> None:
    res = bridge("report", *args, cwd=demo)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_report_and_topics_at_a_time_before_the_replays_end(demo: Path) -> None:
    for command in ("report", "topics"):
        at = ("--at", "2026-11-02T09:20:00Z")
        res = bridge(command, "--events", "config/demo/events.jsonl", *at, "--json", cwd=demo)
        assert res.returncode == 0 and res.stderr == "", (command, res.stderr)
        assert json.loads(res.stdout)["at"] == "2026-11-02T09:20:00Z"


def test_report_and_topics_date_a_stored_ticket_at_the_helpdesks_created_at(demo: Path) -> None:
    inbox = demo / "config" / "demo" / "inbox" / "tickets.jsonl"
    old = {"kind": "ticket", "id": "T-OLD", "created_at": "2026-10-01T09:00:00Z",
           "updated_at": "2026-11-02T09:00:00Z", "subject": "Old", "body": "x", "tags": ["bug/legacy"],
           "status": "open", "priority": "normal", "requester": {"email": "old@z.example"}}
    inbox.write_text(inbox.read_text() + json.dumps(old) + "\n")
    assert bridge("sync", cwd=demo).returncode in (0, 1)
    at = ("--at", "2026-11-02T10:00:00Z", "--json")
    report = json.loads(bridge("report", *at, cwd=demo).stdout)
    [row] = [r for r in report["by_tag"] if r["tag"] == "bug/legacy"]
    assert row["aging"][">7d"] == 1  # a month old when the first sync took it in, not new
    topics = json.loads(bridge("topics", "--at", "2026-10-02T00:00:00Z", "--json", cwd=demo).stdout)
    assert [t["topic"] for t in topics["topics"]] == ["bug/legacy"]


def test_read_only_commands_on_a_fresh_config_create_no_store(demo: Path) -> None:
    # looking into the store of a config that never ran reads an empty store: it does not create bridge.db
    res = bridge("explain", "T-1001", cwd=demo)
    assert res.returncode == 1 and "holds nothing yet" in res.stderr, res.stderr
    res = bridge("--json", "report", cwd=demo)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["backlog"]["open"] == 0
    for args in (("topics",), ("deadletter", "list"), ("taxonomy", "lint", "config/demo/inbox")):
        res = bridge(*args, cwd=demo)
        assert "Traceback" not in res.stderr and res.returncode in (0, 1), (args, res.stderr)
    assert not (demo / "bridge.db").exists()
    # and once a sync has made it, the same commands read it
    assert "pushed 33 " in bridge("sync", cwd=demo).stdout  # (exit 1: the demo's deliberate bad option)
    assert bridge("explain", "T-1001", cwd=demo).returncode == 0
