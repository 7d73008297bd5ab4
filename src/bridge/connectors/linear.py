"""The ``linear`` connector: a topic's product ticket as a Linear issue, over Linear's GraphQL API (httpx).

It carries one kind, ``topic``, and takes one write per call (``batch_max`` 1); it pulls nothing. A write's
``product_ticket`` (:func:`bridge.product.product_ticket`) is filed once and commented on at later spikes:

- A topic without a product ticket (no external id) gets an issue whose id is fixed by the topic:
  :func:`stable_uuid` of ``bridge:<system>:<team_id>:<topic>`` (another bridge or team files its own). The
  issue is first looked up by that id (``issues(filter: {id: {eq: ...}})``, archived ones included): one
  found was made by an earlier try whose link was never stored (a crash after the create), so the write
  becomes a comment on it (none when its description already is this write's text: that try was this very
  write). Else ``issueCreate`` with that id, ``teamId``, ``title``, ``description`` (the text), and
  ``labelIds`` / ``priority`` when configured.
- A topic with a product ticket (the external id is the issue's id) gets a comment whose id is fixed by the
  write's idempotency key: the lookup asks for that comment too, and one already there is not made twice.
  An issue not found (or in Linear's trash) was deleted in Linear: the topic's product ticket is filed
  again, under an id fixed by the one it replaces, and the core moves the topic's link to it.
- A create or comment refused after a retry (its first answer lost on the way) is looked up again: when it
  landed, the write is done.

Linear documents its ids as UUID v4: :func:`stable_uuid` is a name-based UUID (``uuid5``) with the version
bits of a v4, so that an id given by a name still has the documented form.

Errors: Linear answers many failures with HTTP 200 (or 400) and an ``errors`` list. ``RATELIMITED`` (with
HTTP 200, 400 or 429) is retried after ``X-RateLimit-Requests-Reset`` (epoch milliseconds; the complexity
window's reset too when that one is spent), else ``Retry-After``, else the policy's backoff; a wait longer
than ``max_wait`` goes up to the core, which pauses the system. HTTP 401/403 or ``AUTHENTICATION_ERROR`` is
a :class:`ConnectorAuthError`. Any other GraphQL error about a write refuses that write for good with
Linear's message (:class:`SkippableRecordError`); 5xx and network errors are retried by the HTTP policy.

Settings (``[connectors.NAME]``, ``plugin = "linear"``): ``api_key`` (``api_key_env`` / ``api_key_file``),
``team_id`` (required: the team product tickets are filed in), ``label_ids``, ``priority`` (0
none, 1 urgent .. 4 low), ``oauth``, ``base_url`` (``https://api.linear.app``; the endpoint is
``/graphql``). A personal API key goes as ``Authorization: <key>``; an OAuth token (``lin_oauth_...``, or
``oauth = true``) as ``Bearer <token>``. The key is never logged nor put in an error.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import Field, SecretStr

from bridge.connector import Connector, ConnectorContext, PushResult, RateLimit
from bridge.effects import PRODUCT_TICKET
from bridge.errors import (
    ConnectorAuthError,
    ConnectorError,
    FatalConnectorError,
    RetriableConnectorError,
    SkippableRecordError,
)
from bridge.http import PolicySettings, build_client, call_with_policy, parse_retry_after, policy_from
from bridge.model import Write
from bridge.plugins import Register, hookimpl

log = logging.getLogger("bridge.connectors.linear")

GRAPHQL_PATH = "/graphql"
# the namespace of bridge's name-based Linear ids (never change it: issues already filed are found by it)
NAMESPACE = uuid.UUID("c4871c40-9f6a-494d-8564-f9fa98df191a")
MESSAGE_LIMIT = 300
# error codes of Linear's own passing failures (its SDK's error types), answered with HTTP 200 or 400
TRANSIENT = frozenset({"LOCK_TIMEOUT", "INTERNAL_ERROR", "INTERNAL_SERVER_ERROR", "TIMEOUT", "NETWORK_ERROR"})

ISSUE_QUERY = """
query BridgeIssue($id: ID!, $comment: ID!) {
  issues(filter: {id: {eq: $id}}, first: 1, includeArchived: true) {
    nodes {
      id
      identifier
      url
      trashed
      description
      comments(filter: {id: {eq: $comment}}, first: 1, includeArchived: true) { nodes { id } }
    }
  }
}
"""
ISSUE_CREATE = """
mutation BridgeIssueCreate($input: IssueCreateInput!) {
  issueCreate(input: $input) { success issue { id identifier url } }
}
"""
COMMENT_CREATE = """
mutation BridgeCommentCreate($input: CommentCreateInput!) {
  commentCreate(input: $input) { success comment { id url } }
}
"""
TEAM_QUERY = "query BridgeTeam($team: String!) { viewer { id } team(id: $team) { id key } }"


class LinearSettings(PolicySettings):
    """``[connectors.X]`` for ``plugin = "linear"``: ``api_key`` (or ``api_key_env``/``_file``), ``team_id``,
    optional ``label_ids`` and ``priority`` (0-4) of the issues it files, ``oauth`` for a Bearer token."""

    base_url: str | None = "https://api.linear.app"
    kinds: list[str] = Field(default_factory=lambda: ["topic"])
    api_key: SecretStr | None = None
    oauth: bool = False
    team_id: str = Field(min_length=1)  # the team product tickets are filed in
    label_ids: list[str] = Field(default_factory=list)
    priority: int | None = Field(default=None, ge=0, le=4)
    rate_per_second: float = 1.25  # Linear's API key budget: 5,000 requests an hour


def stable_uuid(name: str) -> str:
    """A UUID fixed by ``name``: ``uuid5(NAMESPACE, name)`` with a v4's version bits (Linear's id form)."""
    return str(uuid.UUID(bytes=uuid.uuid5(NAMESPACE, name).bytes, version=4))


@dataclass(frozen=True)
class Issue:
    """What the lookup found of an issue: its ids, whether it is in the trash, and the comment asked for."""

    id: str
    identifier: str
    url: str
    trashed: bool
    description: str
    has_comment: bool

    def answer(self, done: str, comment: str | None = None) -> dict[str, Any]:
        """The vendor answer kept in the audit log."""
        out: dict[str, Any] = {"identifier": self.identifier, "url": self.url, "done": done}
        if comment is not None:
            out["comment"] = comment
        return out


class LinearConnector(Connector):
    """Product tickets in Linear: one issue per topic, a comment at each later spike."""

    name = "linear"
    kinds = ("topic",)
    batch_max = 1
    settings_model = LinearSettings
    rate_limit = RateLimit(per_second=1.25, burst=20)

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        s = self.linear_settings
        self.policy, self.bucket = policy_from(s, context.extra, s.rate_per_second, self.rate_limit.burst)
        self._own_client = context.http is None
        self.http = context.http or build_client(s, system=self.system)

    @property
    def linear_settings(self) -> LinearSettings:
        """The settings, typed."""
        settings = self.settings
        assert isinstance(settings, LinearSettings)
        return settings

    # ------------------------------------------------------------ transport

    def _key(self) -> str:
        key = self.linear_settings.api_key
        if key is None or not key.get_secret_value().strip():
            raise ConnectorAuthError("no api_key configured (api_key_env or api_key_file)",
                                     system=self.system)
        return key.get_secret_value().strip()

    def _authorization(self) -> str:
        key = self._key()
        if key.startswith("Bearer "):
            return key
        if self.linear_settings.oauth or key.startswith("lin_oauth"):
            return f"Bearer {key}"
        return key  # a personal API key goes bare

    def _scrub(self, text: str) -> str:
        """``text`` without the key (a vendor may echo what it was sent)."""
        key = self.linear_settings.api_key
        secret = key.get_secret_value().strip() if key is not None else ""
        return text.replace(secret, "[api key]") if secret else text

    def graphql(
        self, query: str, variables: Mapping[str, Any], *, record: str | None = None
    ) -> dict[str, Any]:
        """One GraphQL call under the HTTP policy; returns its ``data``, or raises the mapped error
        (``record``: the write it is about, refused alone when Linear refuses the call)."""
        headers = {"Authorization": self._authorization(), "Accept": "application/json"}
        body = {"query": query, "variables": dict(variables)}

        def run() -> httpx.Response:
            response = self.http.post(GRAPHQL_PATH, json=body, headers=headers)
            self.bucket.observe(response.headers)
            status = response.status_code
            errors = _errors(response)
            if status == 429 or any(_code(e) == "RATELIMITED" for e in errors):
                raise RetriableConnectorError(
                    self._scrub(f"rate limited: {_message(errors) or f'HTTP {status}'}"),
                    system=self.system, record=record, retry_after=self._reset_wait(response.headers))
            if status >= 500 or status == 408:
                return response  # (the policy retries it)
            if any(_code(e) in TRANSIENT or e.get("extensions", {}).get("userError") is False
                   for e in errors if isinstance(e.get("extensions"), dict)):
                # Linear's own failure (a lock timeout, an internal error), not the write's: try again later
                raise RetriableConnectorError(self._scrub(f"Linear failed: {_message(errors)}"),
                                              system=self.system, record=record)
            if status in (404, 405):  # (the endpoint, not a record: a wrong base_url)
                raise FatalConnectorError(f"HTTP {status} from {GRAPHQL_PATH}: check base_url",
                                          system=self.system)
            if errors or status in (401, 403):
                raise self._refusal(status, errors, record)
            return response

        response = call_with_policy(run, system=self.system, record=record, policy=self.policy,
                                    bucket=self.bucket)
        data = _decoded(response).get("data")
        if not isinstance(data, dict):
            raise self._refusal(response.status_code, [{"message": "an answer without data"}], record)
        return data

    def _refusal(self, status: int, errors: list[dict[str, Any]], record: str | None) -> ConnectorError:
        message = self._scrub(_message(errors) or f"HTTP {status}")
        if status in (401, 403) or any(_code(e) == "AUTHENTICATION_ERROR" for e in errors):
            return ConnectorAuthError(f"Linear refused the api_key: {message}", system=self.system)
        if record is not None:
            return SkippableRecordError(f"Linear refused it: {message}", system=self.system, record=record)
        return FatalConnectorError(f"Linear refused the call: {message}", system=self.system)

    def _reset_wait(self, headers: httpx.Headers) -> float | None:
        """Seconds until Linear's spent window resets (epoch-millisecond headers: the one whose remaining is
        0, else the requests window), else ``Retry-After``."""
        now = self.context.clock().timestamp()
        resets: dict[str, float] = {}
        spent: list[float] = []
        for window in ("requests", "complexity"):
            reset = _number(headers.get(f"x-ratelimit-{window}-reset"))
            if reset is None:
                continue
            seconds = reset / 1000 if reset > 1e11 else reset  # (milliseconds, as documented; seconds too)
            resets[window] = max(0.0, seconds - now)
            remaining = _number(headers.get(f"x-ratelimit-{window}-remaining"))
            if remaining is not None and remaining <= 0:
                spent.append(resets[window])
        if spent:
            return max(spent)
        if "requests" in resets:
            return resets["requests"]
        return parse_retry_after(headers.get("retry-after"))

    # ------------------------------------------------------------ push

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        """File each write's product ticket: create the topic's issue, or comment on it (see the module)."""
        if kind != "topic":
            raise FatalConnectorError(f"Linear carries the kind topic only, not {kind!r}", system=self.system)
        results = []
        for w in writes:
            try:
                results.append(self._push_one(w))
            except SkippableRecordError as exc:
                results.append(PushResult(w.record_id, False, w.external_id, str(exc), False))
        return results

    def _push_one(self, w: Write) -> PushResult:
        payload = self._payload(w)
        text = str(payload.get("text") or "")
        comment_id = stable_uuid(w.idempotency_key)
        topic = payload["topic"]
        if w.external_id:
            found = self._lookup(w.external_id, comment_id, w.record_id)
            if found is not None and not found.trashed:
                return self._comment(w, found, comment_id, text)
            # the product ticket was deleted in Linear: the topic gets a new one, whose id is fixed by the one
            # it replaces (a retry finds it), and the core links the topic to it
            log.warning("%s: issue %s of topic %s is gone from Linear: filing it again", self.system,
                        w.external_id, topic)
            refiled = self._file(w, self.issue_id(topic, after=w.external_id), payload, text, comment_id)
            refiled.refiled = refiled.ok
            return refiled
        return self._file(w, self.issue_id(topic), payload, text, comment_id)

    def issue_id(self, topic: str, after: str | None = None) -> str:
        """The id the product ticket of ``topic`` is filed under: fixed by the system, its team and the topic
        (another bridge, or another team, files its own), and by the issue it replaces (one deleted)."""
        name = f"bridge:{self.system}:{self.linear_settings.team_id}:{topic}"
        return stable_uuid(name if after is None else f"{name}:after:{after}")

    def _file(self, w: Write, issue_id: str, payload: dict[str, Any], text: str, comment_id: str
              ) -> PushResult:
        """Create the issue ``issue_id`` unless an earlier try did (then comment on it, once)."""
        found = self._lookup(issue_id, comment_id, w.record_id)
        if found is None:
            try:
                return self._create(w, issue_id, payload, text)
            except SkippableRecordError:
                # a create that landed while its answer was lost is refused when sent again: look once more
                found = self._lookup(issue_id, comment_id, w.record_id)
                if found is None:
                    raise
        if found.trashed:
            raise SkippableRecordError(
                f"the topic's product ticket, Linear issue {issue_id}, was deleted in Linear (it is in the "
                f"trash, and its id is the one this topic's issue is filed under)",
                system=self.system, record=w.record_id)
        if _same_text(found.description, text):
            # made by this very write (a crash after the create, before the link was stored)
            return PushResult(w.record_id, True, found.id, response=found.answer("found"))
        return self._comment(w, found, comment_id, text)

    def _payload(self, w: Write) -> dict[str, Any]:
        payload = w.fields.get(PRODUCT_TICKET)
        if not isinstance(payload, dict) or not str(payload.get("topic") or "").strip():
            keys = ", ".join(sorted(w.fields)) or "nothing"
            raise SkippableRecordError(
                f"Linear takes a topic's product_ticket (with its topic), and this write carries {keys}",
                system=self.system, record=w.record_id)
        return payload

    def _lookup(self, issue_id: str, comment_id: str, record: str) -> Issue | None:
        data = self.graphql(ISSUE_QUERY, {"id": issue_id, "comment": comment_id}, record=record)
        nodes = (data.get("issues") or {}).get("nodes") or []
        if not nodes:
            return None
        node = nodes[0]
        comments = (node.get("comments") or {}).get("nodes") or []
        return Issue(str(node["id"]), str(node.get("identifier") or ""), str(node.get("url") or ""),
                     bool(node.get("trashed")), str(node.get("description") or ""), bool(comments))

    def _create(self, w: Write, issue_id: str, payload: Mapping[str, Any], text: str) -> PushResult:
        s = self.linear_settings
        title = str(payload.get("title") or f"Recurring support topic: {payload['topic']}")
        issue: dict[str, Any] = {"id": issue_id, "teamId": s.team_id, "title": title, "description": text}
        if s.label_ids:
            issue["labelIds"] = list(s.label_ids)
        if s.priority is not None:
            issue["priority"] = s.priority
        data = self.graphql(ISSUE_CREATE, {"input": issue}, record=w.record_id)
        answer = data.get("issueCreate") or {}
        made = answer.get("issue") or {}
        if not answer.get("success") or not made.get("id"):
            raise SkippableRecordError("Linear did not create the issue (success false)",
                                       system=self.system, record=w.record_id)
        log.info("%s: filed %s for topic %s", self.system, made.get("identifier"), payload["topic"])
        return PushResult(w.record_id, True, str(made["id"]), response={
            "identifier": made.get("identifier"), "url": made.get("url"), "done": "created"})

    def _comment(self, w: Write, issue: Issue, comment_id: str, text: str) -> PushResult:
        if issue.has_comment:
            answer = issue.answer("already commented", comment_id)
            return PushResult(w.record_id, True, issue.id, response=answer)
        comment = {"id": comment_id, "issueId": issue.id, "body": text}
        try:
            data = self.graphql(COMMENT_CREATE, {"input": comment}, record=w.record_id)
        except SkippableRecordError:
            # a comment that landed while its answer was lost is refused when sent again: look once more
            again = self._lookup(issue.id, comment_id, w.record_id)
            if again is None or not again.has_comment:
                raise
            return PushResult(w.record_id, True, issue.id, response=issue.answer("commented", comment_id))
        if not (data.get("commentCreate") or {}).get("success"):
            raise SkippableRecordError(
                f"Linear did not add the comment to {issue.identifier} (success false)",
                system=self.system, record=w.record_id)
        log.info("%s: commented on %s", self.system, issue.identifier)
        return PushResult(w.record_id, True, issue.id, response=issue.answer("commented", comment_id))

    def check_connection(self) -> None:
        """Read the key's user (``viewer``) and the team (``team_id``)."""
        self.graphql(TEAM_QUERY, {"team": self.linear_settings.team_id})

    def close(self) -> None:
        """Close the HTTP client if this connector made it."""
        if self._own_client:
            self.http.close()


def _decoded(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json() if response.content else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    errors = _decoded(response).get("errors")
    if not isinstance(errors, list):
        return []
    return [e if isinstance(e, dict) else {"message": str(e)} for e in errors]


def _code(error: Mapping[str, Any]) -> str:
    extensions = error.get("extensions")
    return str(extensions.get("code") or "") if isinstance(extensions, dict) else ""


def _message(errors: list[dict[str, Any]]) -> str:
    """Linear's words for the first errors: the message a user is meant to read, else the message, and the
    code."""
    parts = []
    for error in errors[:3]:
        found = error.get("extensions")
        extensions: dict[str, Any] = found if isinstance(found, dict) else {}
        text = str(extensions.get("userPresentableMessage") or error.get("message") or "error")
        code = _code(error)
        part = f"{text} ({code})" if code else text
        if part not in parts:
            parts.append(part)
    return "; ".join(parts)[:MESSAGE_LIMIT]


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _same_text(a: str, b: str) -> bool:
    return bool(b.strip()) and " ".join(a.split()) == " ".join(b.split())


@hookimpl
def register_connectors(register: Register) -> None:
    """Register the Linear connector."""
    register(LinearConnector)
