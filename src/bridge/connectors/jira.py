"""The ``jira`` connector: product tickets in Jira (Cloud REST v3, or v2 on Data Center), by ``jira``.

It carries one kind, ``topic``: a recurring support topic whose product ticket is a Jira issue (bridge's
topics job, :mod:`bridge.product`, queues a ``product_ticket`` write at each spike). Push:

- a write without an external id files the topic's issue: ``POST /rest/api/3/issue`` in ``project`` with
  ``issue_type``, the write's title as summary, its text as description (Atlassian Document Format on v3) and
  the labels ``labels`` plus the topic's own marker label (``bridge-topic-billing-refund-1a2b3c``). Before
  creating, a JQL search for that label finds an issue bridge filed before and did not get to link (a crash
  between the two): the write becomes a comment on it, so a topic has one issue;
- a write with an external id (the issue key) is a comment on that issue. A comment carries the write's
  short key in its last line; the newest comments are read first and a comment already there is not posted
  again (a retry after a crash). An issue gone from Jira (404: deleted, or out of the account's reach) is
  filed again, and its result names the new key, to which the core moves the topic's link.

The package's own retries are off (``max_retries=0``): bridge's policy retries 429 (honouring
``Retry-After``), 5xx and network errors; 401/403 stop the system; another 4xx refuses that write, with
Jira's message. Authentication: ``email`` with ``token`` (Cloud: an API token, basic auth), or ``token``
alone (a Data Center personal access token, bearer). A ``ca_bundle`` wins over ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import requests
from jira import JIRA
from pydantic import Field, SecretStr, field_validator

from bridge.connector import Connector, ConnectorContext, PushResult, RateLimit
from bridge.effects import PRODUCT_TICKET
from bridge.errors import (
    ConnectorAuthError,
    ConnectorError,
    FatalConnectorError,
    RetriableConnectorError,
    SkippableRecordError,
)
from bridge.http import USER_AGENT, PolicySettings, call_with_policy, failure_of, policy_from
from bridge.model import Write
from bridge.plugins import Register, hookimpl

log = logging.getLogger("bridge.connectors.jira")
T = TypeVar("T")
MARKER_PREFIX = "bridge-topic-"
RECENT_COMMENTS = 50  # the comments read for a retried one: a spike's comment is among the newest
# how long a create or comment whose answer was lost waits before its next try, which looks for it first:
# long enough for Jira's search index to show an issue just made (seconds, at times minutes)
LOST_ANSWER_WAIT = 120.0


class JiraSettings(PolicySettings):
    """``[connectors.X]`` for ``plugin = "jira"``: the site, the project and issue type product tickets are
    filed as, and the credentials (``email`` or ``email_env``, ``token_env`` or ``token_file``)."""

    base_url: str | None = None
    kinds: list[str] = Field(default_factory=lambda: ["topic"])
    email: str | None = None
    token: SecretStr | None = None
    # the key (or id) of the project product tickets are filed in
    project: str = Field(pattern=r"^([A-Za-z][A-Za-z0-9_]*|[0-9]+)$")
    issue_type: str = "Task"
    labels: list[str] = Field(default_factory=list)
    rest_api_version: str = Field(default="3", pattern="^[23]$")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        bad = [label for label in value if not re.fullmatch(r"\S{1,255}", label)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: a Jira label takes no spaces (and 1 to 255 "
                             "characters)")
        return value
    rate_per_second: float = 5.0


def topic_label(topic: str) -> str:
    """The label that marks the issue bridge files for ``topic`` (Jira labels take no spaces): readable, and
    unique by a short hash, as ``billing/refund`` and ``billing-refund`` would read alike."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", topic.lower()).strip("-")[:60]
    return f"{MARKER_PREFIX}{slug}-{hashlib.sha256(topic.encode()).hexdigest()[:6]}"


def adf(text: str) -> dict[str, Any]:
    """``text`` as an Atlassian Document Format document: a paragraph per blank-line-separated part, its
    lines joined by hard breaks (ADF allows no empty text node)."""
    content: list[dict[str, Any]] = []
    for part in re.split(r"\n\s*\n", text.strip()):
        nodes: list[dict[str, Any]] = []
        for line in part.splitlines():
            if nodes:
                nodes.append({"type": "hardBreak"})
            if line:
                nodes.append({"type": "text", "text": line})
        if nodes:
            content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


class JiraConnector(Connector):
    """Jira issues as the product tickets of recurring topics."""

    name = "jira"
    kinds = ("topic",)
    batch_max = 1
    settings_model = JiraSettings
    rate_limit = RateLimit(per_second=5.0, burst=5)

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        s = self.jira_settings
        self.policy, self.bucket = policy_from(s, context.extra, s.rate_per_second, self.rate_limit.burst)
        self._client: JIRA | None = None
        self._filed: dict[str, str] = {}  # topic -> the issue this process filed for it

    @property
    def jira_settings(self) -> JiraSettings:
        """The settings, typed."""
        settings = self.settings
        assert isinstance(settings, JiraSettings)
        return settings

    def client(self) -> JIRA:
        """The ``jira`` client (built once): no start-up call, no retries of its own, the CA bundle pinned."""
        if self._client is not None:
            return self._client
        s = self.jira_settings
        if not s.base_url:
            raise FatalConnectorError("no base_url (the Jira site, https://example.atlassian.net)",
                                      system=self.system)
        if s.token is None:
            raise ConnectorAuthError("no token configured (token_env or token_file)",
                                     system=self.system)
        token = s.token.get_secret_value()
        options: dict[str, Any] = {"rest_api_version": s.rest_api_version,
                                   "headers": {"User-Agent": USER_AGENT}}
        auth: dict[str, Any] = {"basic_auth": (s.email, token)} if s.email else {"token_auth": token}
        client = JIRA(server=s.base_url, options=options, get_server_info=False, max_retries=0,
                      timeout=s.timeout, **auth)
        session = client._session
        plain = session.request
        verify: str | bool = s.ca_bundle or True

        def pinned(method: str, url: str | bytes, **kwargs: Any) -> requests.Response:
            # requests lets REQUESTS_CA_BUNDLE replace a session's verify; one given per request stays
            kwargs.setdefault("verify", verify)
            return plain(method, url, **kwargs)

        session.request = pinned  # type: ignore[method-assign,assignment]
        self._client = client
        return client

    def _call(self, fn: Callable[[], T], record: str | None, once: bool = False) -> T:
        def run() -> T:
            try:
                return fn()
            except requests.RequestException as exc:
                if exc.response is not None:
                    self.bucket.observe(exc.response.headers)
                raise
        policy = replace(self.policy, max_attempts=1) if once else self.policy
        return call_with_policy(run, system=self.system, record=record, policy=policy, bucket=self.bucket)

    def _post_once(self, path: str, record: str, body: Any) -> Any:
        """A POST that makes something (an issue, a comment): never sent again blindly. A failure whose
        request may have landed (a timeout, a 5xx: its answer lost) is retried later by the outbox, whose
        next try looks for what it made first; a 429 made nothing and waits its Retry-After."""
        try:
            return self._json("POST", path, record, body, once=True)
        except RetriableConnectorError as exc:
            failure = failure_of(exc.__cause__) if exc.__cause__ is not None else None
            if failure is not None and failure.status == 429:
                raise
            raise RetriableConnectorError(
                f"{_bare(exc)}; not sent again at once (it may have landed): the next try looks for it first",
                system=self.system, record=record, retry_after=LOST_ANSWER_WAIT) from exc

    def _json(self, method: str, path: str, record: str | None, body: Any = None,
              params: dict[str, Any] | None = None, once: bool = False) -> Any:
        client = self.client()
        url = client._get_url(path)
        data = None if body is None else json.dumps(body)

        def send() -> Any:
            response = client._session.request(method, url, data=data, params=params)
            self.bucket.observe(response.headers)
            return response.json() if response.content else {}

        return self._call(send, record, once)

    def check_connection(self) -> None:
        """Read the caller's own user (``/myself``): wrong credentials raise ConnectorAuthError."""
        self._json("GET", "myself", None)

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        """File or comment on each topic's issue (see the module's docstring)."""
        if kind != "topic":
            raise FatalConnectorError(f"jira carries only topics (product tickets), not {kind!r}",
                                      system=self.system)
        return [self._push_one(w) for w in writes]

    def _push_one(self, write: Write) -> PushResult:
        payload = write.fields.get(PRODUCT_TICKET)
        if not isinstance(payload, dict) or not payload.get("topic"):
            return PushResult(write.record_id, False, write.external_id,
                              f"{self.system}: {write.record_id}: only product tickets are written to Jira "
                              f"(fields {', '.join(sorted(write.fields))})")
        try:
            key = write.external_id or self._filed.get(str(payload["topic"]))
            if key is None:
                key, description = self._find(str(payload["topic"]), write.record_id)
                if key is not None and _plain(description) == _plain(payload.get("text")):
                    # filed by this very write, whose answer was lost (or the process died before the link)
                    return PushResult(write.record_id, True, key, response={"key": key, "action": "found"})
            if key is not None:
                try:
                    comment = self._comment(key, payload, write)
                    return PushResult(write.record_id, True, key,
                                      response={"key": key, "action": "commented", "comment": comment})
                except SkippableRecordError as exc:
                    if not write.external_id or "HTTP 404" not in str(exc):
                        raise
                    # the product ticket is gone from Jira (deleted, or moved out of this account's reach):
                    # the topic gets a new one, and the core links the topic to it
                    log.warning("%s: issue %s of topic %s is gone (%s): filing it again", self.system, key,
                                payload["topic"], exc)
                    key, _description = self._find(str(payload["topic"]), write.record_id)
                    if key is not None and key != write.external_id:
                        comment = self._comment(key, payload, write)
                        return PushResult(write.record_id, True, key, response={
                            "key": key, "action": "commented", "comment": comment,
                            "replaces": write.external_id}, refiled=True)
            key = self._create(payload, write.record_id)
            # (a spike's write prepared before this one landed finds it here, not by a search Jira's index
            # may not show it to for a while)
            self._filed[str(payload["topic"])] = key
            answer = {"key": key, "action": "created"}
            if write.external_id:
                answer["replaces"] = write.external_id
            return PushResult(write.record_id, True, key, response=answer, refiled=bool(write.external_id))
        except SkippableRecordError as exc:
            return PushResult(write.record_id, False, write.external_id, str(exc))

    def _find(self, topic: str, record: str) -> tuple[str | None, Any]:
        """The key and description of the issue bridge filed for ``topic`` before (by its marker label), or
        None."""
        s = self.jira_settings
        jql = f'project = {_jql(s.project)} AND labels = {_jql(topic_label(topic))} ORDER BY created ASC'
        # (about no record: a search the site refuses, a wrong base_url or API version, stops the system with
        # its writes kept, instead of refusing each product ticket for good)
        if s.rest_api_version == "3":
            query: dict[str, Any] = {"jql": jql, "maxResults": 1, "fields": ["summary", "description"]}
            found = self._json("POST", "search/jql", None, query)
        else:  # (Data Center: v2 has no search/jql)
            params = {"jql": jql, "maxResults": 1, "fields": "summary,description"}
            found = self._json("GET", "search", None, params=params)
        issues = found.get("issues") or []
        if not issues:
            return None, None
        return str(issues[0]["key"]), (issues[0].get("fields") or {}).get("description")

    def _text(self, text: str) -> Any:
        return adf(text) if self.jira_settings.rest_api_version == "3" else text

    def _create(self, payload: dict[str, Any], record: str) -> str:
        s = self.jira_settings
        fields = {
            "project": {"key": s.project},
            "issuetype": {"name": s.issue_type},
            "summary": str(payload.get("title") or f"Recurring support topic: {payload['topic']}")[:255],
            "description": self._text(str(payload.get("text") or "")),
            "labels": [*s.labels, topic_label(str(payload["topic"]))],
        }
        try:
            made = self._post_once("issue", record, {"fields": fields})
        except SkippableRecordError as exc:
            if "HTTP 404" in str(exc) or "HTTP 405" in str(exc):  # (the endpoint, not this record's input)
                raise FatalConnectorError(_bare(exc), system=self.system) from exc
            raise
        key = made.get("key") if isinstance(made, dict) else None
        if not key:
            raise SkippableRecordError(f"Jira answered a create without an issue key: {made!r}"[:300],
                                       system=self.system, record=record)
        return str(key)

    def _comment(self, key: str, payload: dict[str, Any], write: Write) -> str:
        """Post the spike's comment on issue ``key`` unless a retry finds it there; returns its id."""
        mark = f"(bridge {write.idempotency_key[:12]})"
        recent = self._json("GET", f"issue/{key}/comment", write.record_id,
                            params={"orderBy": "-created", "maxResults": RECENT_COMMENTS})
        for comment in recent.get("comments") or []:
            if mark in json.dumps(comment.get("body"), ensure_ascii=False):
                return str(comment.get("id"))
        body = self._text(f"{payload.get('text') or ''}\n\n{mark}")
        made = self._post_once(f"issue/{key}/comment", write.record_id, {"body": body})
        return str(made.get("id", "")) if isinstance(made, dict) else ""


def _bare(exc: ConnectorError) -> str:
    """An error's message without the system and record it names (a new error names them again)."""
    where = exc.system + (f" record {exc.record}" if exc.record else "")
    return str(exc).removeprefix(f"{where}: ")


def _plain(text: Any) -> str:
    """The words of a description, whether plain text or an ADF document, with whitespace folded."""
    if isinstance(text, dict):
        words: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("type") == "text":
                    words.append(str(node.get("text", "")))
                for child in node.get("content") or []:
                    walk(child)

        walk(text)
        return " ".join(" ".join(words).split())
    return " ".join(str(text or "").split())


def _jql(value: str) -> str:
    """``value`` as a JQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@hookimpl
def register_connectors(register: Register) -> None:
    """Register the Jira connector."""
    register(JiraConnector)
