"""The ``pylon`` connector: Pylon's issues (tickets), accounts and contacts over Pylon's REST API (httpx).

Config (``[connectors.NAME]``, ``plugin = "pylon"``)::

    [connectors.pylon]
    plugin = "pylon"
    token_env = "PYLON_TOKEN"              # or token_file; an API token made by a Pylon admin
    kinds = ["account", "contact", "ticket"]
    # base_url = "https://api.eu.usepylon.com"   # EU tenants (tokens starting pylon_api_eu_); US by default

Other keys, all optional: ``statuses`` (Pylon state slug -> bridge status, merged over the defaults:
``waiting_on_you`` and ``new`` -> open, ``waiting_on_customer`` -> pending, ``on_hold`` -> on_hold,
``closed`` -> closed; a status is written as the first state mapped to it, so open goes as
``waiting_on_you``; bridge's ``resolved`` has no Pylon state by default), ``effect_fields`` (see Effects),
``priority_field`` (the issue field holding the priority, ``priority``), ``page_size`` (1-1000, 100),
``history_start`` (the date the first pull of issues starts from, 2022-01-01), ``issue_window_days`` (30),
``rate_per_second`` (2), ``timeout``, ``ca_bundle`` and the retry keys every HTTP connector takes. Fields
synced to Pylon name a custom field by its slug (``remote = { pylon = "arr" }``); a select option is written
by its label or its slug, and pulled as its label (declare options by label, or give a slug its label as an
alias).

Authentication: ``Authorization: Bearer <token>`` on every request, never in a URL, a log line or an error
(an error body that echoes it is shown with ``[token]``). ``check_connection`` reads ``GET /me``.

Pull, oldest first, paged to the end, from the cursor minus the lookback:

- ``ticket``: ``POST /issues/search`` filtered on ``updated_at`` (``time_is_after``, and ``time_is_before``
  for a closed window), ``limit`` and ``cursor`` paging. ``GET /issues`` is not used: its time window is on
  ``created_at``. The search's order is not documented, so each time window (``issue_window_days``; the
  last one open-ended) is read to its end and sorted by (updated_at, id); a first pull walks the windows
  from ``history_start``. A change carries the custom fields by slug (select options as their labels), the
  tags, and ``subject`` (title), ``body`` (the HTML as text), ``status`` (the state through ``statuses``; a
  custom status slug not listed there goes by its category from ``GET /issue-statuses``), ``priority``
  (the ``priority`` field: low, medium as normal, high, urgent), ``assignee`` (the user's email: Pylon's,
  else ``GET /users``'), ``requester`` ({email}), ``account`` ({id}: Pylon's account id), ``channel``
  (source) and ``created_at``. A record Pylon gives malformed is reported with its page and skipped.
- ``account``: ``GET /accounts`` (``cursor``/``limit``) to its end, those updated from the cursor minus the
  lookback kept and sorted (accounts search cannot filter on a time). Attributes: ``name``, ``domain``
  (primary domain), ``owner`` (email).
- ``contact``: Pylon's contacts carry no modification time, so ``GET /contacts`` is read whole on every
  pull and each contact is stamped with the pull's time. The first pull of a process gives every contact;
  a pull resuming from the cursor the previous full pull of the same process ended on gives only the
  contacts whose content changed since (a restart gives them all again, which the core takes as no
  change). Attributes: ``name``, ``email``, ``account`` ({id}).

Push, one call per write (``batch_max`` 25; what landed before a call that failed for the system stays
landed, the rest is tried again): ``PATCH /issues/{id}``, ``PATCH /accounts/{id}``, ``PATCH
/contacts/{id}``. Custom fields go as ``custom_fields: [{slug, value}]`` (``values`` for a multiselect;
numbers, booleans and dates as text; a select or multiselect by option slug; a ``user`` field's email as
the user's id; a blank clears the field). Before sending, a slug Pylon does not have, a read-only field or a
select value that is none of the field's options refuses that write naming the field, the record and the
options (the first such write of a push reads ``GET /custom-fields`` again, for a field or option added
since); Pylon itself would silently drop an unknown field. A ticket's ``status`` goes as ``state``,
``assignee`` (an email) as ``assignee_id`` (empty: unassigned), ``subject`` as ``title``, ``tags`` as the
issue's ``tags`` (the whole list), ``priority`` as the custom field ``priority_field`` names (Pylon's API
types carry no priority and ``PATCH /issues/{id}`` takes none: Pylon keeps it as the issue field
``priority``, urgent/high/medium/low; it is sent even when ``GET /custom-fields`` does not list it). An
issue's body cannot be written. An account's ``owner`` (an email) goes as ``owner_id``, its ``domain`` as
``primary_domain`` (it must be one of the account's domains). Issues are never created. An account or
contact without a Pylon id is created only when it can be found first: by its domain (``POST
/accounts/search``, domains contains) or email (``POST /contacts/search``, equals); one match is updated,
several refuse the write naming them, none is created with ``POST /accounts`` / ``POST /contacts`` (which
need a ``name``; a create Pylon answers with ``exists_id``, a duplicate, updates that one). A write that has
nothing to match on is not sent (skipped and audited, not a dead letter): a blind create could duplicate.

Effects the rules tell a helpdesk (escalation, follow_up, review, notify, sla) have no Pylon field:
``effect_fields`` names, per effect, an issue custom field slug that receives its text (as HubSpot's
``effect_properties``), or ``"@note"``: posted as an internal note, ``POST /issues/{id}/note`` with
``body_html`` (never seen by the customer). Defaults, merged under what the admin writes: every effect
``"@note"``, and ``tags = "@tags"`` (Pylon's own issue tags). A note is at least once: a push repeated
after a crash that hid its success posts it again (Pylon has no key to make a note idempotent).

Errors go through bridge's HTTP policy: 429 waits ``Retry-After`` (Pylon's ``X-Rate-Limit-Remaining``,
when it falls to 0, pauses the calls for a minute, Pylon's window; limits are 30, 120 or 300 requests a
minute per endpoint and organisation), 5xx and network errors are retried with backoff, 401/403 stop the
system (a token sent to the wrong region answers 401 ``wrong_region_token``), and another 4xx about one
write (400, 404, 422) refuses that write with Pylon's ``errors``, ``code`` and ``request_id``.

Webhooks (``POST /webhooks/NAME`` on bridge's server): Pylon sends the JSON payload its trigger's "Send
webhook" action is given (template variables), so its shape is the admin's. Write ``{"issue_id": "{{
issue.id }}"}`` (an object, or a list of them): the connector reads the issue with ``GET /issues/{id}``. An
object shaped as the API's issue (with ``id``, ``state`` and ``updated_at``), bare or under ``issue`` or
``data``, is taken as it is. Pylon signs its deliveries its own way; bridge's ``webhook_secret`` check wants
``X-Bridge-Signature``, which a Pylon trigger cannot compute: with a webhook secret set, rely on the
scheduled pull (or a proxy that signs).
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import time as _time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr, field_validator

from bridge.connector import Connector, ConnectorContext, Cursor, PullPage, PushResult, RateLimit, RemoteField
from bridge.effects import EVENT_FIELDS, effect_text, known_effects, known_statuses
from bridge.errors import (
    ConnectorAuthError,
    ConnectorError,
    FatalConnectorError,
    RetriableConnectorError,
    SkippableRecordError,
)
from bridge.helpdesk import People, TicketWrites
from bridge.http import PolicySettings, build_client, call_with_policy, chunks, policy_from
from bridge.model import Change, Write, format_time, parse_time
from bridge.plugins import Register, hookimpl

log = logging.getLogger("bridge.connectors.pylon")

US_BASE_URL = "https://api.usepylon.com"  # EU tenants: https://api.eu.usepylon.com
OBJECTS = {"ticket": "issue", "account": "account", "contact": "contact"}  # kind -> Pylon object type
PATHS = {"ticket": "/issues", "account": "/accounts", "contact": "/contacts"}
# Pylon's issue states as bridge's ticket statuses; a status is written as the first state mapped to it
DEFAULT_STATUSES = {"waiting_on_you": "open", "new": "open", "waiting_on_customer": "pending",
                    "on_hold": "on_hold", "closed": "closed"}
NOTE, TAGS = "@note", "@tags"  # effect_fields targets that are no custom field: a note, the issue's tags
# (every effect the rules tell a helpdesk has a place by default: Pylon has no field for them, and an internal
# note is where an agent reads it)
DEFAULT_EFFECTS = {"tags": TAGS, "notify": NOTE, "escalation": NOTE, "follow_up": NOTE, "review": NOTE,
                   "sla": NOTE}
# Pylon's priorities (urgent, high, medium, low) and bridge's
_PRIORITY_IN = {"low": "low", "medium": "normal", "normal": "normal", "high": "high", "urgent": "urgent"}
_PRIORITY_OUT = {"low": "low", "normal": "medium", "high": "high", "urgent": "urgent"}
# a ticket's attributes as bridge writes them and the issue's keys that hold them (priority: priority_field)
_ISSUE_WRITES = {"status": "state", "assignee": "assignee_id", "subject": "title"}
# the body keys of PATCH /issues/{id}, /accounts/{id}, /contacts/{id} a write may name; the rest are slugs
NATIVE = {
    "ticket": frozenset({"state", "assignee_id", "title", "tags", "team_id", "account_id", "requester_id",
                         "customer_portal_visible"}),
    "account": frozenset({"name", "owner_id", "tags", "primary_domain", "domains", "is_disabled",
                          "account_type", "logo_url"}),
    "contact": frozenset({"name", "email", "account_id", "avatar_url", "phone_numbers",
                          "primary_phone_number", "portal_role"}),
}
_CLEARED_BY_EMPTY = frozenset({"assignee_id", "owner_id", "team_id", "account_id"})  # null would leave it
_SELECTS = ("select", "multiselect")
_NOTE_LABELS = {"escalation": "escalated to", "follow_up": "follow-up", "review": "review",
                "notify": "notify", "sla": "SLA"}
SEARCH_LIMIT = 10  # enough to name the candidates of an ambiguous match


class PylonSettings(PolicySettings):
    """``[connectors.X]`` for ``plugin = "pylon"``: ``token`` (``token_env`` / ``token_file``) and the keys in
    the module's docstring."""

    base_url: str | None = US_BASE_URL
    kinds: list[str] = Field(default_factory=lambda: ["account", "contact", "ticket"])
    token: SecretStr | None = None
    page_size: int = Field(default=100, ge=1, le=1000)
    rate_per_second: float = Field(default=2.0, gt=0)
    statuses: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_STATUSES))
    effect_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_EFFECTS))
    priority_field: str = "priority"
    history_start: date = date(2022, 1, 1)
    issue_window_days: int = Field(default=30, ge=1, le=365)

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, value: dict[str, str]) -> dict[str, str]:
        # (merged over the defaults, as effect_fields is: mapping a custom state keeps Pylon's own)
        return {**DEFAULT_STATUSES, **known_statuses(value, "a Pylon state")}

    @field_validator("base_url")
    @classmethod
    def _region(cls, value: str | None) -> str:
        # (the core hands a table without base_url as base_url = None: that is the US region, the default)
        return value or US_BASE_URL

    @field_validator("effect_fields")
    @classmethod
    def _effects(cls, value: dict[str, str]) -> dict[str, str]:
        merged = {**DEFAULT_EFFECTS, **known_effects(value)}
        for effect, target in merged.items():
            if target == TAGS and effect != "tags":
                raise ValueError(f"{effect!r}: {TAGS} (Pylon's issue tags) is for tags only")
            if target == NOTE and effect not in EVENT_FIELDS:
                raise ValueError(f"{effect!r}: {NOTE} (an internal note) is for the events, not {effect}")
            if target.startswith("@") and target not in (NOTE, TAGS):
                raise ValueError(f"{effect!r}: {target!r}: name a custom field slug, {NOTE} or {TAGS}")
        return merged


class _Refused(Exception):
    """Why one write cannot be sent (refused before any call)."""


class _Unheld(_Refused):
    """A record Pylon does not hold, with nothing to find or make it by: not sent (skipped), not a failure."""


class _Stale(_Refused):
    """Refused for want of a field or option: read the custom fields again before refusing for good."""


class _Duplicate(SkippableRecordError):
    """Pylon refused a create as a duplicate and named the record that exists (``exists_id``)."""

    def __init__(self, message: str, *, system: str, record: str | None, exists_id: str) -> None:
        self.exists_id = exists_id
        super().__init__(message, system=system, record=record)


def _rfc(at: datetime) -> str:
    """RFC3339 in UTC, to the second, as Pylon's filters and time windows take it."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _second(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(microsecond=0)


def pylon_error(text: str) -> str:
    """The human part of Pylon's error body (``errors``, ``code``, ``request_id``), else the text, short."""
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        return text.strip()[:300]
    if not isinstance(body, dict):
        return text.strip()[:300]
    errors = body.get("errors")
    words = "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors else ""
    notes = [str(body[k]) if k == "code" else f"request {body[k]}" for k in ("code", "request_id")
             if body.get(k)]
    if not words:
        words = str(body.get("message") or body.get("error") or "").strip() or "refused"
    return (words + (f" ({'; '.join(notes)})" if notes else ""))[:400]


def _html_text(value: Any) -> str:
    """An issue's HTML body as plain text (what classification and ``ticket.text`` read)."""
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|li|h\d)>", "\n", str(value or ""))
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _text(value: Any) -> str:
    """A value as a Pylon custom field takes it: text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _rfc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # 120000.0 from another system is the number 120000
    if isinstance(value, list | tuple | set):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list | tuple | set) and not value)


class PylonConnector(Connector):
    """Pylon issues, accounts and contacts, with custom fields by slug."""

    name = "pylon"
    kinds = ("account", "contact", "ticket")
    batch_max = 25
    settings_model = PylonSettings
    rate_limit = RateLimit(per_second=2.0, burst=10)
    type_compat: ClassVar[dict[str, tuple[str, ...]]] = {
        "select": ("select", "text"),
        "multi_select": ("multiselect",),
        "text": ("text", "url", "select", "user"),
        "number": ("number", "decimal"),
        "boolean": ("boolean",),
        "date": ("date", "datetime"),
    }

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        s = self.pylon_settings
        self.policy, self.bucket = policy_from(s, context.extra, s.rate_per_second, self.rate_limit.burst)
        self._own_client = context.http is None
        self.http = context.http or build_client(s, system=self.system)
        self._described: dict[str, list[RemoteField]] = {}
        self._labels: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}  # (label, option slug)
        self._read_only: dict[str, set[str]] = {}
        self._unreadable: set[str] = set()  # kinds whose custom fields the token may not read
        self._problems: list[str] = []  # records of the pull under way that could not be read
        self._status_categories: dict[str, str] | None = None
        # contacts: what the last full pull of this process gave (id -> content hash) and where it ended
        self._contacts_seen: dict[str, str] = {}
        self._contacts_end: Cursor | None = None
        self._contacts_pending: dict[str, str] = {}  # (what the pull under way read)
        self.users = People(self._read_users)  # (by email: an issue's assignee, an account's owner)
        fields = {k: v for k, v in s.effect_fields.items() if not v.startswith("@")}
        self.ticket_writes = TicketWrites(
            self.system, {**_ISSUE_WRITES, "priority": s.priority_field}, s.statuses, _PRIORITY_OUT, fields,
            "effect_fields", self.users, log, no_status="no Pylon issue state is status {value!r}",
            no_person="no Pylon user has the email {value!r} (to assign the issue to)",
            no_effect=f"Pylon issues have no field for {{name!r}}: name an issue custom field slug (or "
                      f"{NOTE}) for it")

    @property
    def pylon_settings(self) -> PylonSettings:
        """The settings, typed."""
        settings = self.settings
        assert isinstance(settings, PylonSettings)
        return settings

    def object_type(self, kind: str) -> str:
        """Pylon's object type (``issue``, ``account``, ``contact``) of ``kind``."""
        found = OBJECTS.get(kind)
        if found is None:
            raise FatalConnectorError(f"Pylon carries no {kind!r}: its kinds are {', '.join(OBJECTS)}",
                                      system=self.system)
        return found

    # ------------------------------------------------------------ plumbing

    def request(
        self, method: str, path: str, *, record: str | None = None, params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        """One API call under bridge's policy; the decoded body. Errors carry Pylon's words, not the token."""
        token = self.pylon_settings.token
        if token is None:
            raise ConnectorAuthError("no token configured (token_env or token_file)", system=self.system)
        secret = token.get_secret_value()
        headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json"}

        def run() -> httpx.Response:
            response = self.http.request(method, path, params=params, json=json, headers=headers)
            self._observe(response.headers)
            return _redacted(response, secret) if response.is_error else response

        try:
            response = call_with_policy(
                run, system=self.system, record=record, policy=self.policy, bucket=self.bucket)
        except ConnectorError as exc:
            raise self._reworded(exc, secret) from None
        try:
            body = response.json() if response.content else {}
        except ValueError:
            raise FatalConnectorError(f"{method} {path}: the answer is not JSON", system=self.system,
                                      record=record) from None
        return body if isinstance(body, dict) else {"data": body}

    def _observe(self, headers: httpx.Headers) -> None:
        """Feed the bucket: Retry-After and the usual headers, and Pylon's ``X-Rate-Limit-Remaining``."""
        self.bucket.observe(headers)
        remaining = headers.get("x-rate-limit-remaining")
        if remaining is None:
            return
        window = 60.0  # Pylon counts each endpoint's calls per minute
        reset = headers.get("x-rate-limit-reset")
        try:
            value = float(reset) if reset is not None else None
        except ValueError:
            value = None
        if value is not None and value > 1e12:  # epoch milliseconds
            value = value / 1000 - _time.time()
        elif value is not None and value > 1e9:  # epoch seconds
            value = value - _time.time()
        if value is not None and 0 < value <= 3600:
            window = value
        self.bucket.observe({"x-ratelimit-remaining": remaining, "x-ratelimit-reset": str(window)})

    def _reworded(self, exc: ConnectorError, secret: str) -> ConnectorError:
        """``exc`` as classified by the policy, its words Pylon's error body's (and never the token)."""
        cause = exc.__cause__
        if isinstance(cause, httpx.HTTPStatusError):
            answer = cause.response
            detail = f"HTTP {answer.status_code}: {pylon_error(_body_text(answer))}"
        else:
            where = f"{self.system} record {exc.record}: " if exc.record else f"{self.system}: "
            detail = str(exc).removeprefix(where)
            answer = None
        detail = detail.replace(secret, "[token]") if secret else detail
        where_kw: dict[str, Any] = {"system": exc.system or self.system, "record": exc.record}
        if isinstance(exc, RetriableConnectorError):
            return RetriableConnectorError(detail, retry_after=exc.retry_after, **where_kw)
        if isinstance(exc, SkippableRecordError) and answer is not None:
            exists = _exists_id(answer)
            if exists:
                return _Duplicate(detail, exists_id=exists, **where_kw)
        return type(exc)(detail, **where_kw)

    def _pages(self, method: str, path: str, *, body: dict[str, Any] | None = None) -> Iterator[list[Any]]:
        """Every page of a list (``GET``, cursor in the query) or a search (``POST``, cursor in the body)."""
        size = self.pylon_settings.page_size
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            if method == "GET":
                # (lists take a limit below 1000, searches up to 1000)
                params: dict[str, Any] = {"limit": min(size, 999), **({"cursor": cursor} if cursor else {})}
                answer = self.request("GET", path, params=params)
            else:
                answer = self.request("POST", path, json={**(body or {}), "limit": size,
                                                          **({"cursor": cursor} if cursor else {})})
            data = [row for row in answer.get("data") or [] if isinstance(row, dict)]
            yield data
            pagination = answer.get("pagination") or {}
            cursor = pagination.get("cursor") if isinstance(pagination, dict) else None
            if not data or not pagination.get("has_next_page") or not cursor:
                return
            if cursor in seen:
                log.warning("%s: %s %s gave the same page cursor twice; the list ends there", self.system,
                            method, path)
                return
            seen.add(cursor)

    # ------------------------------------------------------------ custom fields

    def describe(self, kind: str) -> list[RemoteField]:
        """The custom fields of ``kind`` (``GET /custom-fields``): slug, type, label, option slugs (their
        labels through :meth:`option_labels`), restricted for a select."""
        if kind in self._described:
            return self._described[kind]
        answer = self.request("GET", "/custom-fields", params={"object_type": self.object_type(kind)})
        fields: list[RemoteField] = []
        read_only: set[str] = set()
        for f in answer.get("data") or []:
            if not isinstance(f, dict) or not f.get("slug"):
                continue
            slug = str(f["slug"])
            options = ((f.get("select_metadata") or {}).get("options")) or []
            pairs = tuple((str(o.get("label") or o.get("slug")), str(o.get("slug"))) for o in options
                          if isinstance(o, dict) and o.get("slug"))
            self._labels[(kind, slug)] = pairs
            if f.get("is_read_only"):
                read_only.add(slug)
            fields.append(RemoteField(name=slug, type=str(f.get("type", "")), label=str(f.get("label") or ""),
                                      options=tuple(value for _label, value in pairs),
                                      restricted=f.get("type") in _SELECTS, kind=kind))
        self._described[kind] = fields
        self._read_only[kind] = read_only
        return fields

    def option_labels(self, kind: str, name: str) -> tuple[tuple[str, str], ...]:
        """``(label, slug)`` of each option of a select field (after :meth:`describe`)."""
        return self._labels.get((kind, name), ())

    def _fields(self, kind: str) -> dict[str, RemoteField] | None:
        """The custom fields by slug; None when the token may not read them (values go as written)."""
        if kind in self._unreadable:
            return None
        if kind not in self._described:
            try:
                self.describe(kind)
            except (ConnectorAuthError, FatalConnectorError) as exc:
                log.warning("%s: cannot read the %s custom fields (%s); their values go as written",
                            self.system, self.object_type(kind), exc)
                self._unreadable.add(kind)  # (said once: not asked again for every record)
                return None
        return {f.name: f for f in self._described[kind]}

    # ------------------------------------------------------------ pull

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        """Changes modified from the cursor minus the lookback, oldest first, in pages of ``page_size``."""
        self.object_type(kind)
        since = cursor.since(self.lookback)
        self._problems = []
        if kind == "ticket":
            batches: Iterator[list[Change]] = self._issue_windows(since)
        elif kind == "account":
            batches = iter([self._accounts(since)])
        else:
            batches = iter([self._contacts(cursor)])
        last, given = cursor, False
        for batch in batches:
            for page in chunks(batch, self.pylon_settings.page_size):
                if not page:
                    continue
                tail = page[-1]
                if last.at is None or (tail.at, tail.external_id) > (last.at, last.id or ""):
                    last = Cursor(tail.at, tail.external_id)
                given = True
                problems, self._problems = self._problems, []
                yield PullPage(page, last, problems)
        if not given or self._problems:
            problems, self._problems = self._problems, []
            yield PullPage([], last, problems)
        if kind == "contact":
            # (only now: the core asked past the last page, so every page was committed)
            self._contacts_end = last
            self._contacts_seen = self._contacts_pending

    def _issue_windows(self, since: datetime | None) -> Iterator[list[Change]]:
        """Issues updated from ``since``, one sorted list per time window, the last window open-ended."""
        s = self.pylon_settings
        now = self.context.clock()
        start = _second(since) if since is not None else datetime.combine(s.history_start, time(), UTC)
        step = timedelta(days=s.issue_window_days)
        while True:
            end = start + step
            last = end >= now
            # a second before the window: whether Pylon's time_is_after is strict or not, nothing is missed
            after = {"field": "updated_at", "operator": "time_is_after",
                     "value": _rfc(start - timedelta(seconds=1))}
            flt = after if last else {"operator": "and", "subfilters": [
                after, {"field": "updated_at", "operator": "time_is_before", "value": _rfc(end)}]}
            floor = max(start, since) if since is not None else start
            found: dict[str, Change] = {}
            for rows in self._pages("POST", "/issues/search", body={"filter": flt}):
                for row in rows:
                    change = self._read("ticket", row, self._issue_change)
                    if change is not None and change.at >= floor and (last or change.at < end):
                        held = found.get(change.external_id)
                        if held is None or change.at >= held.at:
                            found[change.external_id] = change
            yield sorted(found.values(), key=lambda c: (c.at, c.external_id))
            if last:
                return
            start = end

    def _accounts(self, since: datetime | None) -> list[Change]:
        found = [self._read("account", row, self._account_change)
                 for rows in self._pages("GET", "/accounts") for row in rows]
        kept = [c for c in found if c is not None and (since is None or c.at >= since)]
        return sorted(kept, key=lambda c: (c.at, c.external_id))

    def _contacts(self, cursor: Cursor) -> list[Change]:
        now = self.context.clock()
        resumed = cursor.at is not None and cursor == self._contacts_end
        pending: dict[str, str] = {}
        out = []
        for rows in self._pages("GET", "/contacts"):
            for row in rows:
                if row.get("id") is None:
                    continue
                digest = hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()
                pending[str(row["id"])] = digest
                if resumed and self._contacts_seen.get(str(row["id"])) == digest:
                    continue  # the same as the last full pull gave: no change
                change = self._read("contact", row, lambda r: self._contact_change(r, now))
                if change is not None:
                    out.append(change)
        self._contacts_pending = pending
        return sorted(out, key=lambda c: (c.at, c.external_id))

    def _read(self, kind: str, row: Mapping[str, Any],
              build: Callable[[Mapping[str, Any]], Change]) -> Change | None:
        """``build(row)``, or None with the reason noted for the page (a record Pylon gave malformed)."""
        try:
            return build(row)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            self._problems.append(f"{self.system} {kind} {row.get('id', '(no id)')}: cannot be read "
                                  f"({type(exc).__name__}: {exc}); skipped")
            return None

    def _custom(self, kind: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """A record's custom fields by slug, select options as their labels, a user as their email."""
        raw = row.get("custom_fields")
        if not isinstance(raw, dict) or not raw:
            return {}
        meta = self._fields(kind) or {}
        out: dict[str, Any] = {}
        for slug, cell in raw.items():
            if not isinstance(cell, dict):
                out[str(slug)] = None if cell is None else cell
                continue
            value: Any = cell.get("values") if cell.get("values") is not None else cell.get("value")
            field = meta.get(str(slug))
            if field is not None and field.type in _SELECTS:
                labels = {v: label for label, v in self.option_labels(kind, field.name)}
                value = ([labels.get(str(v), v) for v in value] if isinstance(value, list)
                         else labels.get(str(value), value) if value is not None else None)
            elif field is not None and field.type == "user" and isinstance(value, str) and value:
                value = self.users.email_of(value) or value
            out[str(slug)] = value
        return out

    def _person(self, mini: Any) -> str | None:
        """A Pylon user (``{id, email}``) by email, as bridge names people; else its id."""
        if not isinstance(mini, dict) or not mini.get("id"):
            return None
        return str(mini.get("email") or self.users.email_of(str(mini["id"])) or mini["id"])

    def _issue_change(self, row: Mapping[str, Any]) -> Change:
        fields = self._custom("ticket", row)
        attrs: dict[str, Any] = {}
        if row.get("title"):
            attrs["subject"] = str(row["title"])
        body = _html_text(row.get("body_html"))
        if body:
            attrs["body"] = body
        state = row.get("state")
        if state:
            attrs["status"] = self._status_of(str(state))
        priority = fields.get(self.pylon_settings.priority_field)
        if isinstance(priority, str) and priority:
            attrs["priority"] = _PRIORITY_IN.get(priority.casefold(), priority)
        assignee = self._person(row.get("assignee"))
        if assignee:
            attrs["assignee"] = assignee
        requester = row.get("requester")
        if isinstance(requester, dict) and requester.get("email"):
            attrs["requester"] = {"email": str(requester["email"])}
        account = row.get("account")
        if isinstance(account, dict) and account.get("id"):
            attrs["account"] = {"id": str(account["id"])}
        if row.get("source"):
            attrs["channel"] = str(row["source"])
        if row.get("created_at"):
            attrs["created_at"] = format_time(parse_time(str(row["created_at"])))
        tags = row.get("tags")
        return Change(system=self.system, kind="ticket", external_id=str(row["id"]),
                      at=parse_time(str(row.get("updated_at") or row.get("created_at"))), fields=fields,
                      tags=[str(t) for t in tags] if isinstance(tags, list) else [], attrs=attrs)

    def _account_change(self, row: Mapping[str, Any]) -> Change:
        attrs: dict[str, Any] = {}
        if row.get("name"):
            attrs["name"] = str(row["name"])
        domains = row.get("domains")
        domain = row.get("primary_domain") or row.get("domain") or (
            domains[0] if isinstance(domains, list) and domains else None)
        if domain:
            attrs["domain"] = str(domain)
        owner = self._person(row.get("owner"))
        if owner:
            attrs["owner"] = owner
        tags = row.get("tags")
        return Change(system=self.system, kind="account", external_id=str(row["id"]),
                      at=parse_time(str(row.get("updated_at") or row.get("created_at"))),
                      fields=self._custom("account", row),
                      tags=[str(t) for t in tags] if isinstance(tags, list) else None, attrs=attrs)

    def _contact_change(self, row: Mapping[str, Any], at: datetime) -> Change:
        attrs: dict[str, Any] = {}
        if row.get("name"):
            attrs["name"] = str(row["name"])
        emails = row.get("emails")
        email = row.get("email") or (emails[0] if isinstance(emails, list) and emails else None)
        if email:
            attrs["email"] = str(email)
        account = row.get("account")
        if isinstance(account, dict) and account.get("id"):
            attrs["account"] = {"id": str(account["id"])}
        return Change(system=self.system, kind="contact", external_id=str(row["id"]), at=at,
                      fields=self._custom("contact", row), attrs=attrs)

    def _status_of(self, state: str) -> str:
        """bridge's status of a Pylon state: ``statuses`` by slug, else the custom status's category."""
        table = {k.casefold(): v for k, v in self.pylon_settings.statuses.items()}
        found = table.get(state.casefold())
        if found is not None:
            return found
        if self._status_categories is None:
            self._status_categories = {}
            try:
                answer = self.request("GET", "/issue-statuses")
            except (ConnectorAuthError, FatalConnectorError) as exc:
                log.warning("%s: cannot read the issue statuses (%s): custom states stay as Pylon names them",
                            self.system, exc)
            else:
                self._status_categories = {
                    str(s["slug"]).casefold(): str(s.get("category") or "")
                    for s in answer.get("data") or [] if isinstance(s, dict) and s.get("slug")}
        category = self._status_categories.get(state.casefold(), "")
        return table.get(category.casefold(), state)

    def _read_users(self) -> dict[str, str]:
        """Pylon's active users, id -> email (``GET /users``); a token that may not read them leaves ids."""
        try:
            answer = self.request("GET", "/users")
        except (ConnectorAuthError, FatalConnectorError) as exc:
            log.warning("%s: cannot read the users (%s): people stay Pylon ids", self.system, exc)
            return {}
        return {str(u["id"]): str(u["email"]) for u in answer.get("data") or []
                if isinstance(u, dict) and u.get("id") and u.get("email")}

    # ------------------------------------------------------------ webhooks

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Change]:
        """Issues a Pylon trigger's webhook names: ``{"issue_id": ID}`` (read with ``GET /issues/{id}``) or an
        issue object as the API gives it; an object or a list of them. ValueError for anything else."""
        try:
            data = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"body is not UTF-8: {exc.reason}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        items = data if isinstance(data, list) else [data]
        if not items:
            raise ValueError("empty array: no issues")
        changes = []
        for index, item in enumerate(items):
            where = f"item {index}" if isinstance(data, list) else "body"
            if not isinstance(item, dict):
                raise ValueError(f"{where}: an issue must be a JSON object")
            for wrapper in ("issue", "data"):
                if isinstance(item.get(wrapper), dict):
                    item = item[wrapper]
            if item.get("id") and item.get("state") and item.get("updated_at"):
                try:
                    changes.append(self._issue_change(item))
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{where}: not an issue: {exc}") from None
                continue
            issue = item.get("issue_id") or item.get("id")
            if not isinstance(issue, str | int) or isinstance(issue, bool) or not str(issue).strip():
                raise ValueError(f"{where}: no issue_id (write {{\"issue_id\": \"{{{{ issue.id }}}}\"}} in "
                                 f"the trigger's payload)")
            try:
                answer = self.request("GET", f"/issues/{str(issue).strip()}", record=str(issue))
            except SkippableRecordError as exc:
                # (an issue deleted since the trigger fired: nothing to take; the others of the delivery are)
                log.warning("%s: webhook %s: issue %s not read: %s", self.system, where, issue, exc)
                continue
            found = answer.get("data")
            if not isinstance(found, dict) or not found.get("id"):
                raise ValueError(f"{where}: Pylon gave no issue {issue}")
            changes.append(self._issue_change(found))
        return changes

    # ------------------------------------------------------------ push

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        """One ``PATCH`` per write (a create found first for an account or contact), in order; what cannot
        be sent is refused by name before any call."""
        self.object_type(kind)
        results: list[PushResult] = []
        refreshed = False
        for index, w in enumerate(writes):
            try:
                try:
                    result = self._send(kind, w, *self._plan(kind, w))
                except _Stale:  # (raised before any call of this write)
                    if refreshed:
                        raise
                    refreshed = True  # a field or option added in Pylon since they were read: once a push
                    self._described.pop(kind, None)
                    self._unreadable.discard(kind)
                    result = self._send(kind, w, *self._plan(kind, w))
                results.append(result)
            except _Refused as exc:
                results.append(PushResult(w.record_id, False, w.external_id,
                                          f"{self.system} {kind} {w.record_id}: {exc}", False,
                                          skipped=isinstance(exc, _Unheld)))
            except SkippableRecordError as exc:
                results.append(PushResult(w.record_id, False, w.external_id, str(exc), False))
            except (RetriableConnectorError, FatalConnectorError, ConnectorAuthError) as exc:
                if not results or not any(r.ok for r in results):
                    raise
                # what landed stays landed (not sent again); the rest is tried again later
                wait = exc.retry_after if isinstance(exc, RetriableConnectorError) else None
                results += [PushResult(later.record_id, False, later.external_id, str(exc), True, None, wait)
                            for later in writes[index:]]
                break
        return results

    def _plan(self, kind: str, w: Write) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
        """The fields of ``w`` as Pylon's keys, and the effects to post as notes; _Refused says why not."""
        fields = dict(w.fields)
        notes: list[tuple[str, Any]] = []
        if kind == "ticket":
            s = self.pylon_settings
            for effect, target in s.effect_fields.items():
                if effect in fields and target == NOTE:
                    notes.append((effect, fields.pop(effect)))
            native_tags = s.effect_fields.get("tags") == TAGS and "tags" in fields
            tags = fields.pop("tags", None) if native_tags else None
            mapped, why = self.ticket_writes.translate(fields)
            if why is not None:
                raise _Refused(why)
            fields = mapped
            if native_tags:
                fields["tags"] = tags
        return fields, notes

    def _body(self, kind: str, fields: Mapping[str, Any], create: bool = False) -> dict[str, Any]:
        """A PATCH (or create) body of ``fields``: Pylon's own keys, then custom fields by slug."""
        obj = self.object_type(kind)
        body: dict[str, Any] = {}
        custom: list[dict[str, Any]] = []
        meta = self._fields(kind) if any(k not in NATIVE[kind] for k in fields) else {}
        for name, value in fields.items():
            if kind != "ticket" and name == "owner":
                body["owner_id"] = self._person_id(value, f"to own the {obj}")
            elif kind == "account" and name == "domain":
                if not _blank(value):
                    body["primary_domain"] = str(value).strip().lower()
                    if create:
                        body["domains"] = [body["primary_domain"]]
            elif kind == "contact" and name == "account":
                account = value.get("id") if isinstance(value, dict) else value
                body["account_id"] = "" if _blank(account) else str(account)
            elif name in NATIVE[kind]:
                body[name] = self._native(name, value)
            else:
                custom.append(self._custom_value(kind, obj, name, value, meta))
        if custom:
            body["custom_fields"] = custom
        return {k: v for k, v in body.items() if v is not None}

    @staticmethod
    def _native(name: str, value: Any) -> Any:
        if name == "tags":
            items = value if isinstance(value, list | tuple | set) else [] if _blank(value) else [value]
            return [str(t) for t in items]
        if name in ("domains", "phone_numbers"):
            return [str(v) for v in value] if isinstance(value, list | tuple | set) else [str(value)]
        if _blank(value):
            return "" if name in _CLEARED_BY_EMPTY else None
        if name in ("customer_portal_visible", "is_disabled"):
            return bool(value)
        return value if isinstance(value, str) else _text(value)

    def _person_id(self, value: Any, why: str) -> str:
        if _blank(value):
            return ""
        found = self.users.id_of(str(value))
        if found is None:
            raise _Refused(f"no Pylon user has the email {value!r} ({why})")
        return found

    def _custom_value(self, kind: str, obj: str, slug: str, value: Any,
                      meta: dict[str, RemoteField] | None) -> dict[str, Any]:
        """``{slug, value}`` / ``{slug, values}`` for one custom field, checked against its definition."""
        field = None if meta is None else meta.get(slug)
        if field is None and meta is not None and not (kind == "ticket"
                                                       and slug == self.pylon_settings.priority_field):
            raise _Stale(f"no Pylon {obj} field has the slug {slug!r} (see bridge discover)")
        if field is not None and slug in self._read_only.get(kind, set()):
            raise _Refused(f"the Pylon {obj} field {slug} is read-only (an app or integration keeps it)")
        if _blank(value):
            return {"slug": slug}  # (a field left unset is cleared)
        if field is not None and field.type in _SELECTS:
            pairs = self.option_labels(kind, slug)
            table = {label.casefold(): option for label, option in pairs}
            table.update({option.casefold(): option for _label, option in pairs})
            items = value if isinstance(value, list | tuple | set) else [value]
            bad = [_text(v) for v in items if _text(v).casefold() not in table]
            if bad:
                raise _Stale(f"{', '.join(map(repr, bad))} is not an option of the Pylon {obj} field {slug}; "
                             f"options: {', '.join(label for label, _option in pairs) or 'none'}")
            chosen = [table[_text(v).casefold()] for v in items]
            return {"slug": slug, "values": chosen} if field.type == "multiselect" else {
                "slug": slug, "value": chosen[0]}
        if field is not None and field.type == "user" and "@" in str(value):
            return {"slug": slug, "value": self._person_id(value, f"for the {obj} field {slug}")}
        if isinstance(value, list | tuple | set) and (field is None or field.type == "multiselect"):
            return {"slug": slug, "values": [_text(v) for v in value]}
        return {"slug": slug, "value": _text(value)}

    def _send(self, kind: str, w: Write, fields: dict[str, Any],
              notes: list[tuple[str, Any]]) -> PushResult:
        """The calls of one write; its result."""
        path = PATHS[kind]
        target = w.external_id
        answer: dict[str, Any] = {}
        if target is None:
            if kind == "ticket":
                raise _Unheld("bridge does not create Pylon issues: this ticket has no Pylon id")
            target, answer = self._find_or_create(kind, w, fields)
        else:
            body = self._body(kind, fields)
            if body:
                answer = self.request("PATCH", f"{path}/{target}", record=w.record_id, json=body)
        for effect, value in notes:
            answer = self.request("POST", f"/issues/{target}/note", record=w.record_id,
                                  json={"body_html": _note_html(effect, value)})
        return PushResult(w.record_id, True, str(target), response=_receipt(answer))

    def _find_or_create(self, kind: str, w: Write, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The Pylon record a write without an id is for: the one match by domain or email (updated), or a
        new one; _Refused when it cannot be found safely."""
        obj = self.object_type(kind)
        body = self._body(kind, fields, create=True)
        if kind == "account":
            key, term = "domain", body.get("primary_domain")
            flt: dict[str, Any] = {"field": "domains", "operator": "contains", "value": term}
        else:
            key, term = "email", body.get("email")
            flt = {"field": "email", "operator": "equals", "value": term}
        if not term:
            raise _Unheld(f"no Pylon id and no {key} to find the {obj} by (a create without one could make "
                          f"a duplicate): declare a {key} field synced to {self.system} to have it made")
        answer = self.request("POST", f"{PATHS[kind]}/search", record=w.record_id,
                              json={"filter": flt, "limit": SEARCH_LIMIT})
        ids = list(dict.fromkeys(str(r["id"]) for r in answer.get("data") or []
                                 if isinstance(r, dict) and r.get("id")))
        if len(ids) > 1:
            raise _Refused(f"{len(ids)} Pylon {obj}s have the {key} {term!r} (ids {', '.join(ids)}); merge "
                           f"them or link the record to one")
        if ids:
            return ids[0], self._update(kind, ids[0], w, fields)
        if not body.get("name"):
            raise _Refused(f"no Pylon {obj} has the {key} {term!r}, and Pylon needs a name to create one")
        try:
            made = self.request("POST", PATHS[kind], record=w.record_id, json=body)
        except _Duplicate as exc:
            return exc.exists_id, self._update(kind, exc.exists_id, w, fields)
        data = made.get("data") or {}
        if not isinstance(data, dict) or not data.get("id"):
            raise SkippableRecordError(f"Pylon's answer to the {obj}'s create names no id",
                                       system=self.system, record=w.record_id)
        return str(data["id"]), made

    def _update(self, kind: str, target: str, w: Write, fields: dict[str, Any]) -> dict[str, Any]:
        body = self._body(kind, fields)
        return self.request("PATCH", f"{PATHS[kind]}/{target}", record=w.record_id, json=body) if body else {}

    def check_connection(self) -> None:
        """Read ``GET /me`` (a refused token is a ConnectorAuthError)."""
        self.request("GET", "/me")

    def close(self) -> None:
        """Close the HTTP client if this connector made it."""
        if self._own_client:
            self.http.close()


def _body_text(response: httpx.Response) -> str:
    try:
        return response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return ""


def _redacted(response: httpx.Response, secret: str) -> httpx.Response:
    """An error answer without the token in its body (a gateway or Pylon echoing the request): the policy
    logs and classifies what the body says."""
    response.read()
    token = secret.encode()
    if not token or token not in response.content:
        return response
    kept = [(k, v) for k, v in response.headers.items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx.Response(response.status_code, headers=kept, request=response.request,
                          content=response.content.replace(token, b"[token]"))


def _exists_id(response: httpx.Response) -> str | None:
    """The ``exists_id`` of Pylon's duplicate-object error body, if any."""
    try:
        body = json.loads(_body_text(response) or "null")
    except ValueError:
        return None
    found = body.get("exists_id") if isinstance(body, dict) else None
    return str(found) if found else None


def _note_html(effect: str, value: Any) -> str:
    """An effect as an internal note's HTML: what it is, then its text."""
    label = _NOTE_LABELS.get(effect, effect)
    return f"<p>[bridge {html.escape(label)}] {html.escape(str(effect_text(value)))}</p>"


def _receipt(answer: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the audit log keeps of Pylon's answer: its request id (what Pylon's support asks for)."""
    return {"request_id": answer["request_id"]} if answer.get("request_id") else None


@hookimpl
def register_connectors(register: Register) -> None:
    """Register the Pylon connector."""
    register(PylonConnector)


__all__ = ["PylonConnector", "PylonSettings", "pylon_error"]
