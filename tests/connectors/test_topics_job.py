"""The daemon's topics job against what `bridge topics` counts: tickets out of creation order, tickets without
``created_at``, a first run that sees no ticket, a backfill over two runs, a create still pending when the
next spike comes, synonyms and letter case (the Daemon and Desk of test_jira, an in-test Jira on loopback).

Rules of the Daemon's config: a 1-day window, ratio 2, at least 3 tickets.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bridge.product import run_topics, topic_record_id
from bridge.report import created_at
from bridge.rules.topics import from_tickets
from bridge.settings import Config
from bridge.store import Store
from bridge.store.testing import require_postgres, temp_postgres_schema_url
from bridge.sync import Syncer, SyncReport

from .test_jira import T0, Daemon, Desk, FakeJira, _spec


@pytest.fixture(name="jira")
def jira_backend(httpserver: HTTPServer) -> Iterator[FakeJira]:
    backend = FakeJira(_spec())
    httpserver.expect_request(re.compile(r"/rest/api/3/.*")).respond_with_handler(backend)
    yield backend
    assert backend.problems == []


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def line(folder: Path, tid: str, updated: datetime, tags: list[str], created: datetime | None = None,
         **more: Any) -> None:
    folder.mkdir(exist_ok=True)
    row: dict[str, Any] = {"kind": "ticket", "id": tid, "updated_at": stamp(updated), "subject": "help",
                           "tags": tags, **more}
    if created is not None:
        row["created_at"] = stamp(created)
    with (folder / "tickets.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


def pull(daemon: Daemon, at: datetime) -> None:
    daemon.now = at
    report = SyncReport()
    daemon.syncer.pull("desk", report)
    assert report.problems == [], report.problems


def store_spikes(daemon: Daemon) -> list[dict[str, object]]:
    """The spikes `bridge topics` finds in the store (cli.cmd_topics)."""
    with daemon.store.session() as tx:
        firsts = tx.first_changes("ticket")
        tickets = [(created_at(r, firsts[r.id].change.at), r) for r in tx.records("ticket") if r.id in firsts]
    return from_tickets(daemon.config, tickets)[1]


def test_tickets_stored_out_of_creation_order_are_counted_at_their_creation(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    # one bug/login ticket a day for a week, never 3 in a day; the older ones were resolved today, after the
    # newest, so the pull (by updated_at) takes them out of creation order
    inbox = tmp_path / "inbox"
    line(inbox, "OLD", T0 - timedelta(days=12), ["other/x"], created=T0 - timedelta(days=12))
    line(inbox, "N", T0 - timedelta(hours=5), ["bug/login"], created=T0 - timedelta(hours=5))
    for d in range(1, 7):
        line(inbox, f"D{d}", T0 - timedelta(hours=4) + timedelta(minutes=d), ["bug/login"],
             created=T0 - timedelta(days=d), status="resolved")
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    pull(daemon, T0)
    done = run_topics(daemon.store, daemon.config, T0 + timedelta(minutes=2))
    assert store_spikes(daemon) == [] and done.spikes == [] and done.queued == 0


def test_a_first_run_that_sees_no_ticket_does_not_make_an_old_spike_news(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    line(inbox, "X0", T0 - timedelta(days=20), ["other/x"], created=T0 - timedelta(days=20))
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    pull(daemon, T0)  # a backfill's first part
    line(inbox, "L0", T0 - timedelta(days=10), ["bug/login"], created=T0 - timedelta(days=10))
    for n in range(3):  # a spike 8 days ago, nothing since
        at = T0 - timedelta(days=8) + timedelta(minutes=n)
        line(inbox, f"L{n + 1}", at, ["bug/login"], created=at)
    pull(daemon, T0 + timedelta(minutes=1, seconds=30))  # the rest, 90 s later
    first = run_topics(daemon.store, daemon.config, T0 + timedelta(minutes=2))  # sees the first part only
    assert first.changes == 1
    second = run_topics(daemon.store, daemon.config, T0 + timedelta(minutes=7))
    assert [s.topic for s in second.spikes] == [] and second.queued == 0
    with daemon.store.session() as tx:
        login = tx.load(topic_record_id("bug/login"))
        assert login is not None and login.attrs["hot"] is True and login.attrs["filed"] is None


def test_a_ticket_without_created_at_is_not_counted_again_when_it_changes_after_leaving_the_windows(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    # tickets as HubSpot and Salesforce give them: no created_at (their first change dates them)
    inbox = tmp_path / "inbox"
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    line(inbox, "S", T0 - timedelta(days=3), ["other/x"])
    pull(daemon, T0 - timedelta(days=3))
    run_topics(daemon.store, daemon.config, T0 - timedelta(days=3) + timedelta(minutes=2))
    for n in range(3):
        line(inbox, f"B{n}", T0 + timedelta(minutes=n), ["bug/login"])
    pull(daemon, T0 + timedelta(minutes=5))
    assert run_topics(daemon.store, daemon.config, T0 + timedelta(minutes=10)).queued == 1
    for d in range(1, 5):  # one a day: calm
        line(inbox, f"C{d}", T0 + timedelta(days=d), ["bug/login"])
        pull(daemon, T0 + timedelta(days=d, minutes=1))
        assert run_topics(daemon.store, daemon.config, T0 + timedelta(days=d, minutes=5)).spikes == []
    for n in range(3):  # day 5: the three day-0 tickets are closed, no new ticket
        line(inbox, f"B{n}", T0 + timedelta(days=5, minutes=n), ["bug/login"], status="closed")
    pull(daemon, T0 + timedelta(days=5, minutes=5))
    assert run_topics(daemon.store, daemon.config, T0 + timedelta(days=5, minutes=10)).spikes == []


def test_a_topic_given_to_tickets_after_their_creation_counts_them_at_their_creation(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    made = [T0 - timedelta(days=3, minutes=-n) for n in range(3)]
    for n in range(3):  # untagged at first, tagged at triage three days later
        line(inbox, f"K{n}", made[n], [], created=made[n])
    pull(daemon, T0 - timedelta(days=3, minutes=-5))
    run_topics(daemon.store, daemon.config, T0 - timedelta(days=3, minutes=-10))
    for n in range(3):
        line(inbox, f"K{n}", T0 + timedelta(minutes=n), ["bug/login"], created=made[n])
    pull(daemon, T0 + timedelta(minutes=5))
    run_topics(daemon.store, daemon.config, T0 + timedelta(minutes=10))
    with daemon.store.session() as tx:
        topic = tx.load(topic_record_id("bug/login"))
    assert topic is not None and [at for at, _t in topic.attrs["tickets"]] == [stamp(at) for at in made]


def test_synonyms_letter_case_and_many_updates_count_a_ticket_once(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    data = daemon.config.model_dump()
    data["taxonomy"]["synonyms"] = {"billing/refund": ["refund", "billing/refunds"]}
    daemon.config = Config(**{k: v for k, v in data.items() if k in ("connectors", "topics", "taxonomy")})
    line(inbox, "S", T0 - timedelta(days=3), ["other/x"], created=T0 - timedelta(days=3))
    pull(daemon, T0 - timedelta(days=3))
    run_topics(daemon.store, daemon.config, T0 - timedelta(days=3, minutes=-2))
    for n in range(6):
        line(inbox, "A", T0 + timedelta(minutes=n), ["Billing/Refund", "refund"], created=T0)
        line(inbox, "B", T0 + timedelta(minutes=n, seconds=1), ["billing/refunds", "REFUND"], created=T0)
    pull(daemon, T0 + timedelta(minutes=20))
    done = run_topics(daemon.store, daemon.config, T0 + timedelta(minutes=30))
    with daemon.store.session() as tx:
        topic = tx.load(topic_record_id("billing/refund"))
    assert topic is not None and len(topic.attrs["tickets"]) == 2 and done.spikes == []


def test_a_create_still_pending_when_the_next_spike_comes_makes_one_issue_under_a_lagging_search(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    made: dict[str, float] = {}
    add = jira.add_issue

    def add_issue(fields: dict[str, Any]) -> str:
        key = add(fields)
        made[key] = time.monotonic()
        return key

    jira.add_issue = add_issue  # type: ignore[method-assign]

    def lagging(request: Request) -> Response:
        if not request.path.endswith("/search/jql"):
            return jira(request)
        # Jira's search index shows an issue seconds (at times minutes) after it was made
        hidden = {k: jira.issues.pop(k) for k, at in made.items() if time.monotonic() - at < 30}
        try:
            return jira(request)
        finally:
            jira.issues.update(hidden)

    httpserver.clear_all_handlers()
    httpserver.expect_request(re.compile(r"/rest/api/3/.*")).respond_with_handler(lagging)
    desk = Desk(tmp_path / "inbox")
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)

    def job(at: datetime) -> int:
        pull(daemon, at)
        return run_topics(daemon.store, daemon.config, at + timedelta(minutes=2)).queued

    desk.tickets(T0 - timedelta(days=3), "billing/refund")
    job(T0 - timedelta(days=3))
    desk.tickets(T0, "billing/refund", 3)
    assert job(T0) == 1  # the create waits (Jira is down)
    desk.tickets(T0 + timedelta(days=3), "billing/refund")
    job(T0 + timedelta(days=3))
    desk.tickets(T0 + timedelta(days=4), "billing/refund", 4)
    assert job(T0 + timedelta(days=4)) == 1  # the update, queued while the topic has no link yet
    daemon.now = T0 + timedelta(days=4, hours=1)
    report = SyncReport()
    daemon.syncer.push("jira", report)  # Jira is back: both go in one pass
    assert report.pushed == 2 and list(jira.issues) == ["PROD-1"] and len(jira.comments["PROD-1"]) == 1
    with daemon.store.session() as tx:
        topic = tx.load(topic_record_id("billing/refund"))
    assert topic is not None and topic.links == {"jira": "PROD-1"}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    require_postgres()
    with temp_postgres_schema_url() as url:
        yield url


def test_the_topics_job_files_once_and_follows_a_refiled_issue_on_postgresql(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path, postgres_url: str
) -> None:
    desk = Desk(tmp_path / "inbox")
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    daemon.store.close()
    daemon.store = Store.open(postgres_url)
    daemon.syncer = Syncer(daemon.config, daemon.store, daemon.connectors.__getitem__,
                           clock=lambda: daemon.now)
    desk.tickets(T0 - timedelta(days=3), "billing/refund")
    assert daemon.run(T0 - timedelta(days=3))[0] == 0
    desk.tickets(T0, "Billing/Refund", 3)  # other letter case: the same topic
    queued, report = daemon.run(T0)
    assert queued == 1 and report.pushed == 1 and report.problems == []
    desk.tickets(T0 + timedelta(hours=2), "billing/refund", 2)
    assert daemon.run(T0 + timedelta(hours=2))[0] == 0  # still hot
    del jira.issues["PROD-1"]
    desk.tickets(T0 + timedelta(days=3), "billing/refund")
    daemon.run(T0 + timedelta(days=3))
    desk.tickets(T0 + timedelta(days=4), "billing/refund", 4)
    queued, report = daemon.run(T0 + timedelta(days=4))
    assert queued == 1 and report.pushed == 1
    with daemon.store.session() as tx:
        topic = tx.load(topic_record_id("billing/refund"))
    assert topic is not None and topic.links == {"jira": "PROD-2"}
    daemon.store.close()




def test_bridge_topics_says_a_spike_the_daemon_has_not_filed_yet_is_not_in_the_tracker() -> None:
    from bridge.model import Record
    from bridge.rules.topics import format_topics, topics_report

    config = Config(connectors={"jira": {"plugin": "jira", "base_url": "https://x.example", "project": "P"}},
                    topics={"tracker": "jira", "min_count": 3, "rules": [{"window": "1d", "ratio": 2.0}]})
    times = [T0 - timedelta(days=3)] + [T0 + timedelta(minutes=n) for n in range(3)]
    tickets = [(at, Record(f"t{n}", "ticket", tags=["bug/login"])) for n, at in enumerate(times)]
    watch, spikes = from_tickets(config, tickets)
    at = T0 + timedelta(hours=1)
    pending = topics_report(config, watch, spikes, at, {})
    [topic] = pending["topics"]  # type: ignore[misc]
    assert topic["product_ticket"]["issue"] is None
    assert "spiked 2026-11-02T09:02:00Z, 1 spike, hot; not filed in jira yet" in format_topics(pending)
    filed = format_topics(topics_report(config, watch, spikes, at, {"bug/login": "PROD-7"}))
    assert "product ticket filed 2026-11-02T09:02:00Z, 1 spike, hot, jira PROD-7" in filed
    replayed = format_topics(topics_report(config, watch, spikes, at))  # (a replay: no tracker to ask)
    assert "product ticket filed 2026-11-02T09:02:00Z, 1 spike, hot" in replayed
