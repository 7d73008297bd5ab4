"""The Jira connector and the daemon's topics job, against an in-test Jira on loopback.

The backend keeps issues and comments as Jira Cloud's REST v3 documents them ("Issues: Create issue",
"Issue search: Search for issues using JQL enhanced search (POST)", "Issue comments: Get comments / Add
comment", "Myself: Get current user"), and checks every request the ``jira`` package sends against the
platform's OpenAPI definition (../shared/specs/jira): the operation exists, its query parameters and the top
level keys of its body are declared.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bridge.connector import ConnectorContext
from bridge.connectors.jira import JiraConnector, JiraSettings, _jql, adf, topic_label
from bridge.effects import EffectWrite
from bridge.errors import ConnectorAuthError, FatalConnectorError, RetriableConnectorError
from bridge.plugins import create_host
from bridge.product import run_topics, topic_record_id
from bridge.settings import Config
from bridge.store import Store
from bridge.sync import Syncer, SyncReport

SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "jira" / "jira-platform-swagger-v3.v3.json"
TOKEN = "ATATT3xFfGF0-jira-test-token"
EMAIL = "bridge@example.com"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _spec() -> dict[str, Any]:
    if not SPEC.exists():
        pytest.skip(f"the Jira OpenAPI definition is not beside the project ({SPEC})")
    return dict(json.loads(SPEC.read_text()))


class FakeJira:
    """Jira Cloud's issues, labels and comments, in dicts; each request checked against the OpenAPI file."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.issues: dict[str, dict[str, Any]] = {}
        self.made = 0
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.fail: list[tuple[int, dict[str, str], Any]] = []  # answers to give before the real ones
        self.problems: list[str] = []

    def add_issue(self, fields: dict[str, Any]) -> str:
        self.made += 1  # (keys are never reused, also after a delete)
        key = f"PROD-{self.made}"
        self.issues[key] = {"id": str(10000 + self.made), "key": key, "fields": fields}
        self.comments[key] = []
        return key

    def _operation(self, method: str, path: str) -> dict[str, Any] | None:
        for template, ops in self.spec["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(pattern, path) and method.lower() in ops:
                return dict(ops[method.lower()])
        return None

    def _schema(self, ref: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in ref:
            name = ref["$ref"].rsplit("/", 1)[1]
            ref = self.spec["components"]["schemas"][name]
        return ref

    def _check(self, request: Request, body: Any) -> None:
        op = self._operation(request.method, request.path)
        if op is None:
            self.problems.append(f"{request.method} {request.path}: no such operation")
            return
        declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
        for name in request.args:
            if name not in declared:
                self.problems.append(f"{request.method} {request.path}: undeclared query {name}")
        if isinstance(body, dict):
            content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            props = self._schema(content.get("schema", {})).get("properties", {})
            for key in body:
                if key not in props:
                    self.problems.append(f"{request.method} {request.path}: undeclared body key {key}")

    def __call__(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"null")
        self.calls.append((request.method, request.path, body))
        self._check(request, body)
        expected = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self._json(401, {"errorMessages": ["You are not authenticated."]})
        if self.fail:
            status, headers, answer = self.fail.pop(0)
            return self._json(status, answer, headers)
        path = request.path.removeprefix("/rest/api/3/")
        if request.method == "POST" and path == "issue":
            fields = body["fields"]
            if not fields.get("summary"):
                refused = {"errorMessages": [], "errors": {"summary": "You must specify a summary."}}
                return self._json(400, refused)
            key = self.add_issue(fields)
            issue = self.issues[key]
            return self._json(201, {"id": issue["id"], "key": key, "self": f"http://x/rest/api/3/issue/{key}"})
        if request.method == "POST" and path == "search/jql":
            label = re.search(r'labels = "([^"]+)"', body["jql"])
            found = [i for i in self.issues.values()
                     if label and label.group(1) in i["fields"].get("labels", [])]
            wanted = body.get("fields") or []
            issues = [{"id": i["id"], "key": i["key"],
                       "fields": {k: v for k, v in i["fields"].items() if k in wanted}} for i in found]
            return self._json(200, {"issues": issues[:1], "isLast": True})
        m = re.fullmatch(r"issue/([^/]+)/comment", path)
        if m:
            key = m.group(1)
            if key not in self.issues:
                gone = "Issue does not exist or you do not have permission to see it."
                return self._json(404, {"errorMessages": [gone], "errors": {}})
            if request.method == "GET":
                newest = list(reversed(self.comments[key]))
                return self._json(200, {"comments": newest, "maxResults": 50, "startAt": 0,
                                        "total": len(newest)})
            comment = {"id": str(20000 + sum(map(len, self.comments.values()))), "body": body["body"]}
            self.comments[key].append(comment)
            return self._json(201, comment)
        if path == "myself":
            return self._json(200, {"accountId": "5b10a2844c20165700ede21g", "emailAddress": EMAIL})
        return self._json(404, {"errorMessages": ["no such resource"]})

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


@pytest.fixture
def jira(httpserver: HTTPServer) -> Iterator[FakeJira]:
    backend = FakeJira(_spec())
    httpserver.expect_request(re.compile(r"/rest/api/3/.*")).respond_with_handler(backend)
    yield backend
    assert backend.problems == []


def connector(url: str, extra: dict[str, Any], **kw: Any) -> JiraConnector:
    settings = JiraSettings(plugin="jira", base_url=url, email=EMAIL, token=TOKEN, project="PROD", **kw)
    return JiraConnector(ConnectorContext("jira", settings, extra=extra))


def spike_write(topic: str = "billing/refund", external: str | None = None, key: str = "k1") -> EffectWrite:
    payload = {"action": "create", "topic": topic, "title": f"Recurring support topic: {topic}",
               "text": "Customers keep raising it: 5 tickets in the last 7d.\n\n"
                       "Recent tickets: desk:T-1, desk:T-2.",
               "count": 5, "previous": 1, "window": "7d", "ratio": 3.0}
    return EffectWrite("jira", "topic", topic_record_id(topic), external, {"product_ticket": payload}, key)


def test_a_spike_files_one_issue_with_its_marker_label_and_a_document_description(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    conn = connector(httpserver.url_for(""), extra, labels=["support"], issue_type="Bug")
    (result,) = conn.push("topic", [spike_write()])
    assert result.ok and result.external_id == "PROD-1"
    posts = [(m, p, b) for m, p, b in jira.calls if m == "POST"]
    assert [p for _m, p, _b in posts] == ["/rest/api/3/search/jql", "/rest/api/3/issue"]
    label = topic_label("billing/refund")
    assert posts[0][2]["jql"] == f'project = "PROD" AND labels = "{label}" ORDER BY created ASC'
    fields = posts[1][2]["fields"]
    assert fields["project"] == {"key": "PROD"} and fields["issuetype"] == {"name": "Bug"}
    assert fields["summary"] == "Recurring support topic: billing/refund"
    assert fields["labels"] == ["support", topic_label("billing/refund")]
    assert fields["description"]["type"] == "doc"
    assert [p["content"][0]["text"] for p in fields["description"]["content"]] == [
        "Customers keep raising it: 5 tickets in the last 7d.", "Recent tickets: desk:T-1, desk:T-2."]


def test_a_topic_label_is_a_jira_label_and_tells_topics_apart() -> None:
    a, b = topic_label("billing/refund"), topic_label("billing-refund")
    assert a.startswith("bridge-topic-billing-refund-") and a != b
    assert " " not in topic_label("how to/Log In") and len(topic_label("x/" + "y" * 300)) < 100


def test_adf_keeps_line_breaks_and_never_makes_an_empty_text_node() -> None:
    doc = adf("one\ntwo\n\n\nthree\n")
    assert doc["content"] == [
        {"type": "paragraph", "content": [{"type": "text", "text": "one"}, {"type": "hardBreak"},
                                          {"type": "text", "text": "two"}]},
        {"type": "paragraph", "content": [{"type": "text", "text": "three"}]}]


def test_an_issue_filed_before_a_crash_is_found_by_its_label_and_commented_not_filed_again(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    made = jira.add_issue({"summary": "Recurring support topic: billing/refund",
                           "labels": [topic_label("billing/refund")]})
    (result,) = connector(httpserver.url_for(""), extra).push("topic", [spike_write()])
    assert result.ok and result.external_id == made
    assert len(jira.issues) == 1 and len(jira.comments[made]) == 1
    assert "(bridge k1)" in json.dumps(jira.comments[made][0]["body"])


class SlowJira(FakeJira):
    """A Jira that makes the issue or comment of the first POST to ``slow_path``, then answers too late."""

    def __init__(self, spec: dict[str, Any], slow_path: str) -> None:
        super().__init__(spec)
        self.slow_path = slow_path

    def __call__(self, request: Request) -> Response:
        answer = super().__call__(request)
        if request.method == "POST" and request.path.endswith(self.slow_path) and self.slow_path:
            self.slow_path = ""
            time.sleep(0.8)  # (made; the client gave up after its 0.5 s timeout)
        return answer


@pytest.fixture
def slow(httpserver: HTTPServer, request: pytest.FixtureRequest) -> Iterator[SlowJira]:
    backend = SlowJira(_spec(), request.param)
    httpserver.expect_request(re.compile(r"/rest/api/3/.*")).respond_with_handler(backend)
    yield backend
    assert backend.problems == []


@pytest.mark.parametrize("slow", ["/issue"], indirect=True)
def test_a_create_whose_answer_is_lost_is_not_sent_again_at_once_and_its_retry_finds_it(
        slow: SlowJira, httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    conn = connector(httpserver.url_for(""), extra, timeout=0.5)
    with pytest.raises(RetriableConnectorError) as lost:
        conn.push("topic", [spike_write()])
    assert str(lost.value) == ("jira record topic:billing/refund: network error (ReadTimeout); not sent "
                               "again at once (it may have landed): the next try looks for it first")
    assert lost.value.retry_after == 120.0 and list(slow.issues) == ["PROD-1"]
    (again,) = conn.push("topic", [spike_write()])  # the outbox's retry, two minutes on
    assert again.ok and again.external_id == "PROD-1"
    assert again.response == {"key": "PROD-1", "action": "found"}
    assert list(slow.issues) == ["PROD-1"] and slow.comments["PROD-1"] == []


@pytest.mark.parametrize("slow", ["/comment"], indirect=True)
def test_a_comment_whose_answer_is_lost_is_not_posted_twice(
        slow: SlowJira, httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    key = slow.add_issue({"summary": "s", "labels": []})
    conn = connector(httpserver.url_for(""), extra, timeout=0.5)
    with pytest.raises(RetriableConnectorError):
        conn.push("topic", [spike_write(external=key, key="spike-7")])
    assert len(slow.comments[key]) == 1
    (again,) = conn.push("topic", [spike_write(external=key, key="spike-7")])
    assert again.ok and len(slow.comments[key]) == 1


def test_an_endpoint_the_site_lacks_stops_the_system_and_refuses_no_product_ticket(
        httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    # a Data Center site left on REST v3 (or a wrong base_url): every call is a 404 about no record
    httpserver.expect_request(re.compile(r"/rest/api/3/.*")).respond_with_json(
        {"errorMessages": ["null for uri: /rest/api/3/search/jql"]}, status=404)
    with pytest.raises(FatalConnectorError) as caught:
        connector(httpserver.url_for(""), extra).push("topic", [spike_write()])
    assert "HTTP 404: null for uri: /rest/api/3/search/jql" in str(caught.value)


def test_labels_and_project_keys_jira_would_refuse_are_config_errors() -> None:
    with pytest.raises(ValueError, match="a Jira label takes no spaces"):
        JiraSettings(plugin="jira", base_url="https://x.example", project="P", labels=["support topic"])
    with pytest.raises(ValueError, match="project"):
        JiraSettings(plugin="jira", base_url="https://x.example", project='P" OR project = "Q')
    assert _jql('a"b\\c') == '"a\\"b\\\\c"'


def test_a_comment_that_landed_before_a_crash_is_not_posted_again(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    made = jira.add_issue({"summary": "s", "labels": []})
    conn = connector(httpserver.url_for(""), extra)
    first = conn.push("topic", [spike_write(external=made, key="spike-2")])
    again = conn.push("topic", [spike_write(external=made, key="spike-2")])
    other = conn.push("topic", [spike_write(external=made, key="spike-3")])
    assert all(r.ok for r in first + again + other)
    assert len(jira.comments[made]) == 2
    assert again[0].response["comment"] == first[0].response["comment"]


def test_a_deleted_issue_is_filed_again_and_its_answer_names_the_one_it_replaces(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    (result,) = connector(httpserver.url_for(""), extra).push("topic", [spike_write(external="PROD-99")])
    assert result.ok and result.external_id == "PROD-1"
    assert result.response == {"key": "PROD-1", "action": "created", "replaces": "PROD-99"}
    assert result.refiled  # (the core moves the topic's link to it)
    assert "issue PROD-99 of topic billing/refund is gone" in caplog.text


def test_429_waits_retry_after_and_a_5xx_is_retried_with_backoff(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], fake_time: Any) -> None:
    jira.fail = [(429, {"Retry-After": "7"}, {"errorMessages": ["Rate limit exceeded."]}),
                 (503, {}, {"errorMessages": ["unavailable"]})]
    (result,) = connector(httpserver.url_for(""), extra).push("topic", [spike_write()])
    assert result.ok and len(jira.issues) == 1
    assert fake_time.sleeps[0] == 7.0 and len(fake_time.sleeps) == 2


def test_a_refused_create_names_the_record_and_jiras_reason(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    jira.fail = [(200, {}, {"issues": []}),
                 (400, {}, {"errorMessages": [], "errors": {"issuetype": "Specify a valid issue type"}})]
    (result,) = connector(httpserver.url_for(""), extra).push("topic", [spike_write()])
    assert not result.ok and not result.retriable and result.error is not None
    assert "topic:billing/refund" in result.error and "HTTP 400" in result.error


def test_wrong_credentials_stop_the_system_and_never_show_the_token(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = JiraSettings(plugin="jira", base_url=httpserver.url_for(""), email=EMAIL,
                            token="wrong-token", project="PROD")
    conn = JiraConnector(ConnectorContext("jira", settings, extra=extra))
    with pytest.raises(ConnectorAuthError) as caught:
        conn.push("topic", [spike_write()])
    assert "HTTP 401" in str(caught.value) and "wrong-token" not in str(caught.value)
    with pytest.raises(ConnectorAuthError):
        conn.check_connection()
    connector(httpserver.url_for(""), extra).check_connection()
    assert TOKEN not in caplog.text and "wrong-token" not in caplog.text


def test_a_jira_system_without_a_project_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    toml = tmp_path / "bridge.toml"
    toml.write_text('[connectors.jira]\nplugin = "jira"\nbase_url = "https://x.example"\n\n'
                    '[topics]\ntracker = "jira"\nrules = [{ window = "7d", ratio = 3.0 }]\n')
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "--config", str(toml), "check"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert "bridge.toml:1: connectors.jira.project: " in out.stdout + out.stderr


# ---------------------------------------------------------------- the daemon's topics job, end to end


class Desk:
    """The helpdesk side: a files inbox whose lines the desk system pulls."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.n = 0

    def tickets(self, at: datetime, tag: str, count: int = 1) -> None:
        with (self.folder / "tickets.jsonl").open("a") as f:
            for _ in range(count):
                self.n += 1
                stamp = (at + timedelta(seconds=self.n)).strftime("%Y-%m-%dT%H:%M:%SZ")
                line = {"kind": "ticket", "id": f"T-{self.n}", "updated_at": stamp, "created_at": stamp,
                        "subject": "help", "tags": [tag]}
                f.write(json.dumps(line) + "\n")


class Daemon:
    """What ``bridge run`` does here: pull the desk, run the topics job, push the tracker's outbox."""

    def __init__(self, tmp: Path, url: str, extra: dict[str, Any]) -> None:
        self.config = Config(
            connectors={"desk": {"plugin": "files", "path": str(tmp / "inbox")},
                        "jira": {"plugin": "jira", "base_url": url, "email": EMAIL, "token": TOKEN,
                                 "project": "PROD"}},
            topics={"tracker": "jira", "min_count": 3, "rules": [{"window": "1d", "ratio": 2.0}]},
        )
        classes = create_host(environ={}).connectors()
        self.connectors = {}
        for system, table in self.config.connectors.items():
            cls = classes[table.plugin]
            data = table.model_dump(by_alias=True, exclude={"missing_secrets"})
            data.update(table.model_extra or {})
            self.connectors[system] = cls(ConnectorContext(system, cls.settings_model.model_validate(data),
                                                           extra=extra))
        self.store = Store.open(f"sqlite:///{tmp / 'bridge.db'}")
        self.now = T0
        self.syncer = Syncer(self.config, self.store, self.connectors.__getitem__, clock=lambda: self.now)

    def run(self, at: datetime) -> tuple[int, SyncReport]:
        self.now = at
        report = SyncReport()
        self.syncer.pull("desk", report)
        self.now = at + timedelta(minutes=2)  # (the job reads changes received over a minute ago)
        done = run_topics(self.store, self.config, self.now)
        self.syncer.push("jira", report)
        return done.queued, report


def spike(desk: Desk, daemon: Daemon) -> None:
    """One billing/refund ticket three days ago, three today: the topic's first spike, filed."""
    desk.tickets(T0 - timedelta(days=3), "billing/refund")
    daemon.run(T0 - timedelta(days=3))
    desk.tickets(T0, "billing/refund", 3)
    daemon.run(T0)


@pytest.mark.parametrize("page", [2000, 1], ids=["one page", "a change a page"])
def test_the_topics_job_files_a_spike_once_then_comments_on_its_next_spike(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path, page: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge.product.CHANGES_PAGE", page)
    desk = Desk(tmp_path / "inbox")
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    desk.tickets(T0 - timedelta(days=3), "billing/refund")  # history: the watch starts here
    desk.tickets(T0 - timedelta(days=3), "bug/login")
    assert daemon.run(T0 - timedelta(days=3))[0] == 0
    desk.tickets(T0 - timedelta(days=1), "billing/refund")
    assert daemon.run(T0 - timedelta(days=1))[0] == 0
    desk.tickets(T0, "billing/refund", 3)  # 3 today, 1 the day before: a spike
    desk.tickets(T0, "bug/login")
    queued, report = daemon.run(T0)
    assert queued == 1 and report.pushed == 1 and report.problems == []
    (key,) = jira.issues
    assert jira.issues[key]["fields"]["labels"] == [topic_label("billing/refund")]
    with daemon.store.session() as tx:
        topic = tx.load(topic_record_id("billing/refund"))
        assert topic is not None and topic.links == {"jira": key}
        assert topic.attrs["hot"] is True and topic.attrs["spikes"] == 1
        assert [t for _at, t in topic.attrs["tickets"]] != []
    # still hot: more tickets of the topic file nothing; a job with nothing new does nothing
    desk.tickets(T0 + timedelta(hours=2), "billing/refund", 2)
    assert daemon.run(T0 + timedelta(hours=2))[0] == 0
    calls = len(jira.calls)
    assert daemon.run(T0 + timedelta(hours=3))[0] == 0 and len(jira.calls) == calls
    # it calms (a ticket while no rule holds), then spikes again: a comment on the same issue
    desk.tickets(T0 + timedelta(days=3), "billing/refund")
    assert daemon.run(T0 + timedelta(days=3))[0] == 0
    desk.tickets(T0 + timedelta(days=4), "billing/refund", 4)
    queued, report = daemon.run(T0 + timedelta(days=4))
    assert queued == 1 and report.pushed == 1
    assert list(jira.issues) == [key] and len(jira.comments[key]) == 1
    text = json.dumps(jira.comments[key][0]["body"])
    assert "billing/refund is spiking again: 3 tickets in the last 1d, 1 in the 1d before" in text
    assert "desk:T-" in text


def test_a_restart_goes_on_from_the_saved_state_and_files_nothing_twice(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    desk = Desk(tmp_path / "inbox")
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    spike(desk, daemon)
    assert len(jira.issues) == 1
    daemon.store.close()
    again = Daemon(tmp_path, httpserver.url_for(""), extra)  # a new process on the same store
    desk.tickets(T0 + timedelta(hours=1), "billing/refund", 3)
    assert again.run(T0 + timedelta(hours=1))[0] == 0  # still hot, as the saved state says
    assert len(jira.issues) == 1 and all(c == [] for c in jira.comments.values())


def test_a_first_run_counts_old_spikes_as_history_and_files_only_a_recent_one(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    desk = Desk(tmp_path / "inbox")
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    desk.tickets(T0 - timedelta(days=10), "bug/login")
    desk.tickets(T0 - timedelta(days=8), "bug/login", 3)  # a spike 8 days ago: the past
    desk.tickets(T0 - timedelta(days=7), "bug/export")
    desk.tickets(T0 - timedelta(hours=3), "bug/export", 3)  # a spike within the last day: news
    # (the store took all of it before the topics job ever ran)
    daemon.now = T0
    daemon.syncer.pull("desk", SyncReport())
    done = run_topics(daemon.store, daemon.config, T0 + timedelta(minutes=2))
    assert [s.topic for s in done.spikes] == ["bug/export"] and done.queued == 1
    with daemon.store.session() as tx:
        login = tx.load(topic_record_id("bug/login"))
        assert login is not None and login.attrs["spikes"] == 0 and login.attrs["filed"] is None


def test_a_tracker_that_refuses_keeps_the_write_for_a_retry_and_files_once_when_it_answers(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    desk = Desk(tmp_path / "inbox")
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    desk.tickets(T0 - timedelta(days=3), "billing/refund")
    daemon.run(T0 - timedelta(days=3))
    desk.tickets(T0, "billing/refund", 3)
    jira.fail = [(503, {}, {"errorMessages": ["down"]})] * 4  # every attempt of this push
    queued, report = daemon.run(T0)
    assert queued == 1 and report.pushed == 0 and jira.issues == {}
    report = SyncReport()
    daemon.now = T0 + timedelta(hours=1)
    daemon.syncer.push("jira", report)
    assert report.pushed == 1 and len(jira.issues) == 1


def test_bridge_topics_names_the_product_ticket_the_daemon_filed(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    desk = Desk(tmp_path / "inbox")
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    spike(desk, daemon)
    toml = tmp_path / "bridge.toml"
    toml.write_text(f"""\
[bridge]
database = "sqlite:///{tmp_path / 'bridge.db'}"
[connectors.desk]
plugin = "files"
path = "{tmp_path / 'inbox'}"
[connectors.jira]
plugin = "jira"
base_url = "{httpserver.url_for('')}"
project = "PROD"
[topics]
tracker = "jira"
min_count = 3
rules = [{{ window = "1d", ratio = 2.0 }}]
""")
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "topics", "--config", str(toml), "--at",
                          "2026-11-02T12:00:00Z", "--json"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    (topic,) = json.loads(out.stdout)["topics"]
    assert topic["topic"] == "billing/refund" and topic["product_ticket"]["issue"] == "PROD-1"
    text = subprocess.run([sys.executable, "-m", "bridge.cli", "topics", "--config", str(toml), "--at",
                           "2026-11-02T12:00:00Z"], capture_output=True, text=True, check=False).stdout
    assert "1 spike, hot, jira PROD-1" in text
    explain = subprocess.run([sys.executable, "-m", "bridge.cli", "explain", "topic:billing/refund",
                              "--config", str(toml)], capture_output=True, text=True, check=False)
    assert explain.returncode == 0, explain.stderr
    assert "topic topic:billing/refund  links: jira=PROD-1" in explain.stdout
    assert "decision product_ticket (topics)" in explain.stdout and "(pushed to jira)" in explain.stdout
    by_key = subprocess.run([sys.executable, "-m", "bridge.cli", "explain", "jira:PROD-1", "--config",
                             str(toml)], capture_output=True, text=True, check=False)
    assert by_key.returncode == 0 and by_key.stdout == explain.stdout


def test_a_product_ticket_deleted_in_jira_is_filed_again_at_the_next_spike_and_the_topic_follows_it(
        jira: FakeJira, httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Path) -> None:
    desk = Desk(tmp_path / "inbox")
    daemon = Daemon(tmp_path, httpserver.url_for(""), extra)
    spike(desk, daemon)
    del jira.issues["PROD-1"]  # someone deleted it in Jira
    desk.tickets(T0 + timedelta(days=3), "billing/refund")
    daemon.run(T0 + timedelta(days=3))
    desk.tickets(T0 + timedelta(days=4), "billing/refund", 3)
    queued, report = daemon.run(T0 + timedelta(days=4))
    assert queued == 1 and report.pushed == 1 and list(jira.issues) == ["PROD-2"]
    with daemon.store.session() as tx:
        topic = tx.load(topic_record_id("billing/refund"))
        assert topic is not None and topic.links == {"jira": "PROD-2"}
