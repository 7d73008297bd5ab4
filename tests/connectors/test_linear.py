"""The Linear connector against a loopback stand-in of Linear's GraphQL API that runs every document it is
sent on Linear's own schema (graphql-core), so a query or mutation Linear would refuse fails here too.

References: linear.app/developers: "Authentication" (a personal API key as ``Authorization: <key>``, OAuth
tokens as ``Bearer``), "Rate limiting" (``RATELIMITED`` errors, ``X-RateLimit-Requests-Reset`` in epoch
milliseconds), "Filtering" (``filter: {id: {eq: ...}}``), "Errors" (HTTP 200/400 with ``errors[].extensions``
``code`` and ``userPresentableMessage``); the schema's ``IssueCreateInput.id`` / ``CommentCreateInput.id``
("The identifier in UUID v4 format").
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bridge.connector import Connector, ConnectorContext, Cursor, PushResult
from bridge.connectors import linear as linear_module
from bridge.connectors.linear import LinearConnector, LinearSettings, stable_uuid
from bridge.effects import EffectWrite
from bridge.errors import ConnectorAuthError, FatalConnectorError, RetriableConnectorError
from bridge.model import Write
from bridge.product import product_ticket
from bridge.rules.topics import TopicSpike
from bridge.testing import FROZEN_AT, ConnectorContract, connectors_of, frozen_clock

from .conftest import FakeTime

graphql = pytest.importorskip("graphql", reason="graphql-core validates the documents sent to Linear")

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "shared" / "specs" / "linear" / "schema.graphql"
KEY = "lin_api_0123456789abcdefSECRETKEYzz"
TEAM = "2b5f6a1e-8c1d-4e2a-9b7f-0a1b2c3d4e5f"
TOPIC = "billing/refund"
RID = f"topic:{TOPIC}"


@lru_cache(maxsize=1)
def schema() -> Any:
    return graphql.build_schema(SCHEMA_FILE.read_text())


def refusal(message: str, code: str, user: str | None = None) -> Any:
    extensions: dict[str, Any] = {"code": code, "type": code.lower().replace("_", " ")}
    if user:
        extensions["userPresentableMessage"] = user
    return graphql.GraphQLError(message, extensions=extensions)


def errors_body(message: str, code: str, user: str | None = None) -> str:
    return json.dumps({"data": None, "errors": [refusal(message, code, user).formatted]})


class FakeLinear:
    """Linear's GraphQL endpoint on loopback: documents validated against the schema and executed on it, over
    issues and comments held here. ``canned`` answers an operation (by name) instead, once; with ``landed``
    the operation is executed first and its answer lost (the canned one goes instead)."""

    def __init__(self) -> None:
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}
        self.teams = {TEAM: "ENG"}
        self.sent: list[tuple[str, dict[str, Any]]] = []  # (operation, variables)
        self.authorization: list[str | None] = []
        self.invalid: list[str] = []
        self.canned: list[tuple[str, Response, bool]] = []

    # ------------------------------------------------------------ the server side

    def __call__(self, request: Request) -> Response:
        self.authorization.append(request.headers.get("Authorization"))
        body = json.loads(request.data)
        variables = body.get("variables") or {}
        try:
            document = graphql.parse(body["query"])
        except graphql.GraphQLError as exc:
            return self._invalid(f"syntax: {exc.message}")
        problems = [e.message for e in graphql.validate(schema(), document)]
        operation = graphql.utilities.get_operation_ast(document, body.get("operationName"))
        name = operation.name.value if operation is not None and operation.name else "?"
        self.sent.append((name, variables))
        if operation is not None and not problems:
            coerced = graphql.execution.values.get_variable_values(
                schema(), operation.variable_definitions or (), variables)
            if isinstance(coerced, list):
                problems = [e.message for e in coerced]
        if problems:
            return self._invalid("; ".join(problems))
        for n, (op, canned, landed) in enumerate(self.canned):
            if op == name:
                del self.canned[n]
                if landed:
                    self._execute(document, variables)
                return canned
        return Response(json.dumps(self._execute(document, variables)), 200, content_type="application/json")

    def _invalid(self, problem: str) -> Response:
        self.invalid.append(problem)
        body = errors_body(problem, "GRAPHQL_VALIDATION_FAILED")
        return Response(body, 400, content_type="application/json")

    def _execute(self, document: Any, variables: dict[str, Any]) -> dict[str, Any]:
        result = graphql.execute_sync(schema(), document, root_value=self.root(), variable_values=variables)
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        return out

    def root(self) -> dict[str, Any]:
        return {"viewer": {"id": "user-1"}, "team": self._team, "issues": self._issues,
                "issueCreate": self._issue_create, "commentCreate": self._comment_create}

    def _team(self, _info: Any, id: str) -> dict[str, Any]:
        if id not in self.teams:
            raise refusal("Entity not found: Team", "INVALID_INPUT", "Could not find referenced Team.")
        return {"id": id, "key": self.teams[id]}

    def _node(self, issue: dict[str, Any]) -> dict[str, Any]:
        def comments(_info: Any, filter: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
            wanted = ((filter or {}).get("id") or {}).get("eq")
            found = [{"id": cid, "url": f"{issue['url']}#comment-{cid[:8]}"}
                     for cid, c in self.comments.items()
                     if c["issueId"] == issue["id"] and wanted in (None, cid)]
            return {"nodes": found}

        return {**issue, "comments": comments}

    def _issues(self, _info: Any, filter: dict[str, Any] | None = None, first: int = 50,
                includeArchived: bool = False, **_: Any) -> dict[str, Any]:
        wanted = ((filter or {}).get("id") or {}).get("eq")
        found = [self._node(i) for i in self.issues.values()
                 if wanted in (None, i["id"]) and (includeArchived or not i["trashed"])]
        return {"nodes": found[:first]}

    def _issue_create(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:
        issue_id = input.get("id") or str(uuid.uuid4())
        if uuid.UUID(issue_id).version != 4:
            raise refusal("Argument Validation Error", "INVALID_INPUT", "id must be a UUID v4")
        if issue_id in self.issues:
            raise refusal("Argument Validation Error", "INVALID_INPUT", "An issue with this id exists.")
        if input["teamId"] not in self.teams:
            raise refusal("Entity not found: Team", "INVALID_INPUT", "Could not find referenced Team.")
        number = len(self.issues) + 1
        identifier = f"{self.teams[input['teamId']]}-{number}"
        self.issues[issue_id] = {
            "id": issue_id, "identifier": identifier, "url": f"https://linear.app/acme/issue/{identifier}",
            "trashed": False, "description": input.get("description"), "title": input.get("title"),
            "input": input}
        issue = self.issues[issue_id]
        return {"success": True, "lastSyncId": 1.0,
                "issue": {k: issue[k] for k in ("id", "identifier", "url")}}

    def _comment_create(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:
        cid = input.get("id") or str(uuid.uuid4())
        if uuid.UUID(cid).version != 4:
            raise refusal("Argument Validation Error", "INVALID_INPUT", "id must be a UUID v4")
        if cid in self.comments:
            raise refusal("Argument Validation Error", "INVALID_INPUT", "A comment with this id exists.")
        issue = self.issues.get(input.get("issueId") or "")
        if issue is None or issue["trashed"]:
            raise refusal("Entity not found: Issue", "INVALID_INPUT", "Could not find referenced Issue.")
        self.comments[cid] = dict(input)
        return {"success": True, "lastSyncId": 2.0,
                "comment": {"id": cid, "url": f"{issue['url']}#comment-{cid[:8]}"}}

    # ------------------------------------------------------------ for the tests

    def ops(self) -> list[str]:
        return [name for name, _ in self.sent]

    def variables(self, op: str) -> list[dict[str, Any]]:
        return [v for name, v in self.sent if name == op]

    def answer(self, op: str, response: Response, *, landed: bool = False) -> None:
        self.canned.append((op, response, landed))

    def existing(self, issue_id: str, description: str = "made by hand", *, trashed: bool = False) -> None:
        self.issues[issue_id] = {"id": issue_id, "identifier": "ENG-7",
                                 "url": "https://linear.app/acme/issue/ENG-7", "trashed": trashed,
                                 "description": description, "title": "x", "input": {}}


@pytest.fixture
def fake(httpserver: HTTPServer) -> Iterator[FakeLinear]:
    if not SCHEMA_FILE.exists():
        pytest.skip(f"Linear's schema is not at {SCHEMA_FILE}: the documents cannot be checked")
    server = FakeLinear()
    httpserver.expect_request("/graphql", method="POST").respond_with_handler(server)
    yield server
    assert server.invalid == [], f"documents Linear's schema refuses: {server.invalid}"


def make(server: HTTPServer, extra: dict[str, Any], **settings: Any) -> LinearConnector:
    values: dict[str, Any] = {"plugin": "linear", "base_url": server.url_for("").rstrip("/"), "api_key": KEY,
                              "team_id": TEAM, "max_attempts": 3}
    values.update(settings)
    return LinearConnector(ConnectorContext("linear", LinearSettings(**values), clock=frozen_clock(),
                                            extra=extra))


def spike_write(external_id: str | None = None, *, action: str = "create", count: int = 6,
                key: str = "spike-1", topic: str = TOPIC) -> EffectWrite:
    spike = TopicSpike(topic, datetime(2026, 11, 2, 11, 0, tzinfo=UTC), action, count, 1, "1d", 3.0)
    payload = product_ticket(spike, "zendesk#1041", ["zendesk#1041", "zendesk#1040"], 5)
    return EffectWrite("linear", "topic", f"topic:{topic}", external_id, {"product_ticket": payload}, key)


def text_of(w: Write) -> str:
    return str(w.fields["product_ticket"]["text"])


# ---------------------------------------------------------------- create and comment


def test_a_topic_without_a_product_ticket_gets_an_issue_under_its_deterministic_id(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    w = spike_write()

    (result,) = make(httpserver, extra, label_ids=["lbl-product"], priority=2).push("topic", [w])

    issue_id = stable_uuid(f"bridge:linear:{TEAM}:{TOPIC}")
    assert issue_id == stable_uuid(f"bridge:linear:{TEAM}:{TOPIC}") and uuid.UUID(issue_id).version == 4
    assert result == PushResult(RID, True, issue_id, response={
        "identifier": "ENG-1", "url": "https://linear.app/acme/issue/ENG-1", "done": "created"})
    assert fake.ops() == ["BridgeIssue", "BridgeIssueCreate"]
    assert fake.variables("BridgeIssue")[0]["id"] == issue_id
    assert fake.variables("BridgeIssueCreate") == [{"input": {
        "id": issue_id, "teamId": TEAM, "title": f"Recurring support topic: {TOPIC}",
        "description": text_of(w), "labelIds": ["lbl-product"], "priority": 2}}]
    assert text_of(w).startswith(f"Customers keep raising {TOPIC}: 6 tickets in the last 1d")
    assert fake.authorization == [KEY, KEY]  # a personal API key goes bare, no Bearer


def test_another_system_team_or_topic_files_under_another_id(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    other_team = "9c2d4f3e-1a2b-4c3d-8e4f-5a6b7c8d9e0f"
    fake.teams[other_team] = "OPS"
    connector = make(httpserver, extra)
    connector.push("topic", [spike_write(topic="bug/login")])
    context = ConnectorContext("linear_eu", connector.settings, clock=frozen_clock(), extra=extra)
    other = LinearConnector(context)
    other.push("topic", [spike_write(topic="bug/login")])
    # another bridge (or team) in the same workspace files its own, rather than commenting on this one's
    make(httpserver, extra, team_id=other_team).push("topic", [spike_write(topic="bug/login")])

    assert set(fake.issues) == {
        stable_uuid(f"bridge:linear:{TEAM}:bug/login"), stable_uuid(f"bridge:linear_eu:{TEAM}:bug/login"),
        stable_uuid(f"bridge:linear:{other_team}:bug/login")}
    assert fake.comments == {}
    assert "labelIds" not in fake.variables("BridgeIssueCreate")[0]["input"]  # none configured: none sent


def test_an_issue_made_before_a_crash_is_found_and_not_made_again(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)
    w = spike_write()
    (first,) = connector.push("topic", [w])
    # the process died before the link was stored: the outbox sends the same write again, without the link

    (again,) = connector.push("topic", [w])

    assert again.ok and again.external_id == first.external_id
    assert again.response["done"] == "found" and again.response["identifier"] == "ENG-1"
    assert len(fake.issues) == 1 and fake.comments == {}  # its description already says what this one says
    assert fake.ops() == ["BridgeIssue", "BridgeIssueCreate", "BridgeIssue"]


def test_a_later_spike_that_finds_the_issue_unlinked_comments_on_it(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)
    connector.push("topic", [spike_write()])
    # a second spike queued before the first one's link was stored
    later = spike_write(action="update", count=9, key="spike-2")

    (result,) = connector.push("topic", [later])

    issue_id = stable_uuid(f"bridge:linear:{TEAM}:{TOPIC}")
    comment_id = stable_uuid("spike-2")
    assert result.ok and result.external_id == issue_id and result.response["done"] == "commented"
    assert len(fake.issues) == 1 and len(fake.variables("BridgeIssueCreate")) == 1
    assert fake.variables("BridgeCommentCreate") == [
        {"input": {"id": comment_id, "issueId": issue_id, "body": text_of(later)}}]
    assert text_of(later).startswith(f"{TOPIC} is spiking again: 9 tickets")


def test_a_linked_topic_gets_a_comment_under_its_spikes_deterministic_id(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    issue_id = str(uuid.uuid4())
    fake.existing(issue_id)
    w = spike_write(issue_id, action="update", key="outbox-key-7")

    (result,) = make(httpserver, extra).push("topic", [w])

    comment_id = stable_uuid("outbox-key-7")
    assert w.idempotency_key == "outbox-key-7" and uuid.UUID(comment_id).version == 4
    assert result == PushResult(RID, True, issue_id, response={
        "identifier": "ENG-7", "url": "https://linear.app/acme/issue/ENG-7", "done": "commented",
        "comment": comment_id})
    assert fake.ops() == ["BridgeIssue", "BridgeCommentCreate"]
    assert fake.variables("BridgeIssue") == [{"id": issue_id, "comment": comment_id}]
    assert fake.comments == {comment_id: {"id": comment_id, "issueId": issue_id, "body": text_of(w)}}


def test_a_create_action_on_a_linked_topic_is_a_comment_too(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    issue_id = str(uuid.uuid4())
    fake.existing(issue_id)

    (result,) = make(httpserver, extra).push("topic", [spike_write(issue_id, action="create")])

    assert result.ok and result.response["done"] == "commented"
    assert "BridgeIssueCreate" not in fake.ops() and len(fake.comments) == 1


def test_a_comment_sent_again_is_not_made_twice(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    issue_id = str(uuid.uuid4())
    fake.existing(issue_id)
    connector = make(httpserver, extra)
    w = spike_write(issue_id, action="update")

    first = connector.push("topic", [w])
    again = connector.push("topic", [w])

    assert first[0].ok and again[0].ok and again[0].response["done"] == "already commented"
    assert len(fake.comments) == 1
    assert fake.ops() == ["BridgeIssue", "BridgeCommentCreate", "BridgeIssue"]


def test_a_create_whose_answer_was_lost_is_retried_and_found(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    # the issue is made, then the answer is a 502: the policy sends it again, and Linear refuses the same id
    fake.answer("BridgeIssueCreate", Response("bad gateway", 502), landed=True)

    (result,) = make(httpserver, extra).push("topic", [spike_write()])

    assert result.ok and result.external_id == stable_uuid(f"bridge:linear:{TEAM}:{TOPIC}")
    assert result.response["done"] == "found"
    assert len(fake.issues) == 1 and fake.comments == {}
    assert fake.ops() == ["BridgeIssue", "BridgeIssueCreate", "BridgeIssueCreate", "BridgeIssue"]
    assert len(fake_time.sleeps) == 1  # one backoff (injected: nothing really slept)


def test_a_comment_whose_answer_was_lost_is_retried_and_found(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    issue_id = str(uuid.uuid4())
    fake.existing(issue_id)
    fake.answer("BridgeCommentCreate", Response("unavailable", 503), landed=True)

    (result,) = make(httpserver, extra).push("topic", [spike_write(issue_id, action="update")])

    assert result.ok and result.response["done"] == "commented" and len(fake.comments) == 1
    assert fake.ops() == ["BridgeIssue", "BridgeCommentCreate", "BridgeCommentCreate", "BridgeIssue"]


@pytest.mark.parametrize("trashed", [False, True], ids=["deleted", "in the trash"])
def test_a_deleted_product_ticket_is_filed_again_under_an_id_fixed_by_the_one_it_replaces(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], trashed: bool
) -> None:
    issue_id = str(uuid.uuid4())
    if trashed:
        fake.existing(issue_id, trashed=True)
    conn = make(httpserver, extra)

    (result,) = conn.push("topic", [spike_write(issue_id, action="update")])

    again = stable_uuid(f"bridge:linear:{TEAM}:{TOPIC}:after:{issue_id}")
    assert result.ok and result.external_id == again and result.response["done"] == "created"
    assert result.refiled  # (the core moves the topic's link to it)
    assert fake.ops() == ["BridgeIssue", "BridgeIssue", "BridgeIssueCreate"]
    assert fake.issues[again]["title"] == f"Recurring support topic: {TOPIC}"
    # the same write retried (its answer lost): the new issue is found, not filed twice
    (retried,) = conn.push("topic", [spike_write(issue_id, action="update")])
    assert retried.ok and retried.external_id == again
    assert sum(1 for op in fake.ops() if op == "BridgeIssueCreate") == 1


def test_an_unlinked_topic_whose_issue_is_in_the_trash_is_refused_naming_it(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    issue_id = stable_uuid(f"bridge:linear:{TEAM}:{TOPIC}")
    fake.existing(issue_id, trashed=True)

    (result,) = make(httpserver, extra).push("topic", [spike_write()])

    assert not result.ok and not result.retriable
    assert f"Linear issue {issue_id}, was deleted in Linear" in (result.error or "")
    assert fake.ops() == ["BridgeIssue"]


def test_a_write_without_a_product_ticket_is_refused_naming_what_it_carries(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    w = Write("linear", "topic", RID, None, {"priority": "high"})

    (result,) = make(httpserver, extra).push("topic", [w])

    assert not result.ok and not result.retriable
    assert result.error == (f"linear record {RID}: Linear takes a topic's product_ticket (with its topic), "
                            "and this write carries priority")
    assert fake.sent == []


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("status", [200, 400, 429])
def test_ratelimited_is_retried_after_linears_reset_time(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], fake_time: FakeTime, status: int
) -> None:
    reset_ms = int((FROZEN_AT.timestamp() + 0.25) * 1000)
    headers = {"X-RateLimit-Requests-Limit": "5000", "X-RateLimit-Requests-Remaining": "0",
               "X-RateLimit-Requests-Reset": str(reset_ms)}
    if status == 429:
        headers["Retry-After"] = "30"
    fake.answer("BridgeIssue", Response(errors_body("Rate limit exceeded", "RATELIMITED"), status,
                                        headers=headers, content_type="application/json"))

    (result,) = make(httpserver, extra).push("topic", [spike_write()])

    assert result.ok and result.response["done"] == "created"
    assert fake.ops() == ["BridgeIssue", "BridgeIssue", "BridgeIssueCreate"]
    if status == 429:
        # until the reset Linear named, not Retry-After's 30 s; then the bucket, emptied by the Retry-After,
        # paces the next calls at the configured rate (1.25 a second)
        assert fake_time.sleeps == [0.25, 0.55, 0.8]
    else:
        assert fake_time.sleeps == [0.25]


def test_ratelimited_without_a_reset_waits_retry_after_and_a_spent_complexity_window_counts(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    fake.answer("BridgeIssue", Response(errors_body("Rate limit exceeded", "RATELIMITED"), 400,
                                        headers={"Retry-After": "2"}, content_type="application/json"))
    complexity = {"X-RateLimit-Requests-Remaining": "4000",
                  "X-RateLimit-Requests-Reset": str(int((FROZEN_AT.timestamp() + 1) * 1000)),
                  "X-RateLimit-Complexity-Remaining": "0",
                  "X-RateLimit-Complexity-Reset": str(int((FROZEN_AT.timestamp() + 5) * 1000))}
    fake.answer("BridgeIssueCreate", Response(errors_body("Rate limit exceeded", "RATELIMITED"), 400,
                                              headers=complexity, content_type="application/json"))

    (result,) = make(httpserver, extra).push("topic", [spike_write()])

    assert result.ok and fake_time.sleeps == [2.0, 5.0]


def test_a_reset_beyond_max_wait_goes_up_for_the_core_to_pause_the_system(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    reset_ms = int((FROZEN_AT + timedelta(minutes=40)).timestamp() * 1000)
    fake.answer("BridgeIssue", Response(errors_body("Rate limit exceeded", "RATELIMITED"), 400,
                                        headers={"X-RateLimit-Requests-Reset": str(reset_ms)},
                                        content_type="application/json"))

    with pytest.raises(RetriableConnectorError) as caught:
        make(httpserver, extra).push("topic", [spike_write()])

    assert caught.value.retry_after == 2400.0 and fake_time.sleeps == []
    assert "rate limited: Rate limit exceeded (RATELIMITED)" in str(caught.value)


@pytest.mark.parametrize("status, code", [(401, "AUTHENTICATION_ERROR"), (200, "AUTHENTICATION_ERROR"),
                                          (401, None)])
def test_a_refused_key_is_an_authentication_error(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], status: int, code: str | None
) -> None:
    body = (errors_body("Authentication required, not authenticated", code) if code else "")
    fake.answer("BridgeIssue", Response(body, status, content_type="application/json"))

    with pytest.raises(ConnectorAuthError) as caught:
        make(httpserver, extra).push("topic", [spike_write()])

    assert str(caught.value).startswith("linear: Linear refused the api_key")
    assert fake.ops() == ["BridgeIssue"]  # not retried


@pytest.mark.parametrize("status, answer, said", [
    (400, errors_body('Cannot query field "trashed" on type "Issue".', "GRAPHQL_VALIDATION_FAILED"),
     'Cannot query field "trashed" on type "Issue". (GRAPHQL_VALIDATION_FAILED)'),
    (200, errors_body("Argument Validation Error", "INVALID_INPUT",
                      "title must be shorter than or equal to 255 characters"),
     "title must be shorter than or equal to 255 characters (INVALID_INPUT)"),
])
def test_a_graphql_error_about_the_write_refuses_that_write_naming_the_record(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], status: int, answer: str, said: str
) -> None:
    fake.answer("BridgeIssueCreate", Response(answer, status, content_type="application/json"))

    (result,) = make(httpserver, extra).push("topic", [spike_write()])

    assert not result.ok and not result.retriable and result.external_id is None
    assert result.error == f"linear record {RID}: Linear refused it: {said}"
    assert fake.issues == {}
    # the refusal is checked against what landed (a create refused after a lost answer), then reported
    assert fake.ops() == ["BridgeIssue", "BridgeIssueCreate", "BridgeIssue"]


def test_a_wrong_team_refuses_the_write_with_linears_words(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    (result,) = make(httpserver, extra, team_id="no-such-team").push("topic", [spike_write()])

    assert not result.ok
    assert result.error == (
        f"linear record {RID}: Linear refused it: Could not find referenced Team. (INVALID_INPUT)")


def test_team_id_is_required() -> None:
    with pytest.raises(ValueError, match="team_id"):
        LinearSettings(plugin="linear", api_key="k")


def test_the_key_never_shows_in_errors_or_logs(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    connector = make(httpserver, extra, max_attempts=2)
    # a vendor message that echoes the key, a rate limit to exhaustion, a 5xx, a refused key
    fake.answer("BridgeIssueCreate", Response(errors_body(f"bad header {KEY}", "INVALID_INPUT"), 400,
                                              content_type="application/json"))
    texts += [r.error or "" for r in connector.push("topic", [spike_write()])]
    answers = [Response(errors_body(f"limit for {KEY}", "RATELIMITED"), 429, content_type="application/json"),
               Response("oops", 500),
               Response(errors_body("nope", "AUTHENTICATION_ERROR"), 401, content_type="application/json")]
    for answer in answers:
        fake.answer("BridgeIssue", answer)
        fake.answer("BridgeIssue", answer)
        with pytest.raises((RetriableConnectorError, ConnectorAuthError)) as caught:
            connector.push("topic", [spike_write()])
        texts.append(str(caught.value))
        fake.canned.clear()

    assert texts[0] == f"linear record {RID}: Linear refused it: bad header [api key] (INVALID_INPUT)"
    assert "limit for [api key]" in texts[1]
    assert all(KEY not in t for t in texts)
    assert caplog.records and KEY not in caplog.text
    assert repr(connector.settings).count(KEY) == 0 and KEY in fake.authorization


@pytest.mark.parametrize("key, oauth, header", [
    ("lin_api_abc123", False, "lin_api_abc123"),
    ("lin_oauth_abc123", False, "Bearer lin_oauth_abc123"),
    ("abc123", True, "Bearer abc123"),
])
def test_personal_keys_go_bare_and_oauth_tokens_as_bearer(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], key: str, oauth: bool, header: str
) -> None:
    make(httpserver, extra, api_key=key, oauth=oauth).check_connection()

    assert fake.authorization == [header]


def test_the_key_comes_from_api_key_env_or_file_and_none_is_an_authentication_error(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINEAR_API_KEY", KEY)
    from_env = LinearSettings.model_validate({"plugin": "linear", "api_key_env": "LINEAR_API_KEY",
                                               "team_id": TEAM})
    secret = tmp_path / "linear.key"
    secret.write_text(KEY + "\n")
    from_file = LinearSettings.model_validate({"plugin": "linear", "api_key_file": str(secret),
                                               "team_id": TEAM})
    assert from_env.api_key is not None and from_env.api_key.get_secret_value() == KEY
    assert from_file.api_key is not None and from_file.api_key.get_secret_value() == KEY
    assert from_env.base_url == "https://api.linear.app" and from_env.kinds == ["topic"]

    with pytest.raises(ConnectorAuthError, match=r"no api_key configured \(api_key_env or api_key_file\)"):
        make(httpserver, extra, api_key=None).push("topic", [spike_write()])
    assert fake.sent == []


@pytest.mark.parametrize("priority", [-1, 5])
def test_priority_is_linears_0_to_4(priority: int) -> None:
    with pytest.raises(ValueError, match="priority"):
        LinearSettings(plugin="linear", team_id=TEAM, priority=priority)


def test_check_connection_reads_the_viewer_and_the_team(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]
) -> None:
    make(httpserver, extra).check_connection()
    assert fake.sent == [("BridgeTeam", {"team": TEAM})]

    with pytest.raises(FatalConnectorError, match="Could not find referenced Team"):
        make(httpserver, extra, team_id="no-such-team").check_connection()


def test_the_plugin_registers_the_linear_connector() -> None:
    assert connectors_of(linear_module) == {"linear": LinearConnector}
    assert LinearConnector.accepts_writes() and LinearConnector.batch_max == 1
    settings = LinearSettings(plugin="linear", team_id=TEAM)
    assert list(LinearConnector(ConnectorContext("linear", settings)).pull("topic", Cursor())) == []


class TestLinearContract(ConnectorContract):
    """The conformance suite: a tracker that pulls nothing and files the writes it is given."""

    requires_changes = False

    @pytest.fixture
    def connector(self, httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any]) -> Connector:
        return make(httpserver, extra)

    def writes(self, connector: Connector, kind: str) -> list[Write]:
        return [spike_write()]


def test_a_spent_complexity_window_waits_for_its_own_reset_not_the_request_windows(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    now_ms = FROZEN_AT.timestamp() * 1000
    headers = {"X-RateLimit-Requests-Remaining": "4990",
               "X-RateLimit-Requests-Reset": str(int(now_ms + 3_500_000)),
               "X-RateLimit-Complexity-Remaining": "0",
               "X-RateLimit-Complexity-Reset": str(int(now_ms + 5_000))}
    body = json.dumps({"data": None, "errors": [{"message": "Rate limit exceeded",
                                                 "extensions": {"code": "RATELIMITED"}}]})
    fake.answer("BridgeIssue", Response(body, 400, headers=headers, content_type="application/json"))

    (result,) = make(httpserver, extra).push("topic", [spike_write()])

    assert result.ok and fake_time.sleeps[0] == pytest.approx(5.0)


def test_linears_own_passing_failure_answered_with_http_200_is_retried_not_refused(
    httpserver: HTTPServer, fake: FakeLinear, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    body = json.dumps({"data": None, "errors": [{
        "message": "Lock timeout", "extensions": {"code": "LOCK_TIMEOUT", "userError": False}}]})
    fake.answer("BridgeIssueCreate", Response(body, 200, content_type="application/json"))

    (result,) = make(httpserver, extra).push("topic", [spike_write()])

    assert result.ok and len(fake.issues) == 1 and len(fake_time.sleeps) == 1


def test_a_wrong_base_url_stops_the_system_instead_of_refusing_each_product_ticket(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request("/graphql").respond_with_data("Not Found", status=404)
    with pytest.raises(FatalConnectorError, match="HTTP 404 from /graphql: check base_url"):
        make(httpserver, extra).push("topic", [spike_write()])
