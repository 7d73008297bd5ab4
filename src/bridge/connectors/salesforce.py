"""The ``salesforce`` connector: Account, Contact and Case through ``simple-salesforce``.

Authentication: OAuth client credentials or the username-password flow (password + security token) against
``base_url/services/oauth2/token``, or a fixed ``session_id``. An expired session (401 ``INVALID_SESSION_ID``)
is renewed once, then the call is repeated.

Pull: SOQL on ``SystemModstamp`` (ascending, ``Id`` as tie-break) from the cursor minus the lookback, paged
with ``nextRecordsUrl``. Push: sObject Collections, at most 200 records per call with ``allOrNone=false``:
``PATCH composite/sobjects`` (update by Id) for writes with a Salesforce id, ``PATCH
composite/sobjects/{sObject}/{externalIdField}`` (upsert) for the others; every item's ``success`` is read.
Values outside a restricted picklist are refused before sending. The org's daily API budget
(``Sforce-Limit-Info``) is watched: when what is left falls to ``api_reserve`` of it, calls stop with
:class:`~bridge.errors.RetriableConnectorError` so that the org is never exhausted by the bridge.

TLS: ``ca_bundle`` is pinned on the requests session so that ``REQUESTS_CA_BUNDLE`` cannot override it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, ClassVar, TypeVar

import requests
from pydantic import Field, SecretStr, field_validator
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession

from bridge.connector import (
    Connector,
    ConnectorContext,
    Cursor,
    Group,
    PullPage,
    PushResult,
    RateLimit,
    RemoteField,
    call_about,
    send_apart,
)
from bridge.effects import known_effects, known_statuses
from bridge.errors import ConnectorAuthError, FatalConnectorError, RetriableConnectorError
from bridge.helpdesk import People, TicketWrites
from bridge.http import (
    DAILY_LIMIT_WAIT,
    USER_AGENT,
    PolicySettings,
    call_with_policy,
    chunks,
    policy_from,
    vendor_message,
)
from bridge.model import Change, Write, parse_time
from bridge.plugins import Register, hookimpl

T = TypeVar("T")
DEFAULT_OBJECTS = {"account": "Account", "contact": "Contact", "ticket": "Case"}
log = logging.getLogger("bridge.connectors.salesforce")
ATTRS: dict[str, dict[str, str]] = {
    "Account": {"Name": "name", "Website": "domain", "OwnerId": "owner"},
    "Contact": {"Name": "name", "Email": "email", "OwnerId": "owner"},
    "Case": {
        "Subject": "subject",
        "Description": "body",
        "Status": "status",
        "Priority": "priority",
        "OwnerId": "assignee",
        "Origin": "channel",
    },
}
# a Case's priority: Salesforce's standard values and bridge's; urgent goes as Urgent, a value the org's
# Priority picklist needs (unrestricted, Salesforce keeps it; restricted, the write is refused naming the
# values): High would come back as high, a lowering of bridge's urgent
_PRIORITY_IN = {"low": "low", "medium": "normal", "high": "high", "urgent": "urgent", "critical": "urgent"}
_PRIORITY_OUT = {"low": "Low", "normal": "Medium", "high": "High", "urgent": "Urgent"}
_USER, _QUEUE = "005", "00G"  # the id prefixes of a user and of a queue (a group)
# a Case's standard statuses as bridge's; an org's own are configured in ``statuses``
DEFAULT_STATUSES = {"New": "open", "Working": "open", "Escalated": "open", "On Hold": "on_hold",
                    "Closed": "closed"}
# a ticket's built-in attributes as bridge writes them, and the Case fields that hold them
_CASE_WRITES = {"status": "Status", "priority": "Priority", "assignee": "OwnerId", "subject": "Subject",
                "body": "Description"}
# what the rules tell a helpdesk that no standard Case field holds (see ``effect_fields``)
# field types SOQL cannot select one by one in a plain list
_COMPOUND = {"address", "location"}
_RETRIABLE_CODES = {
    "UNABLE_TO_LOCK_ROW",
    "REQUEST_LIMIT_EXCEEDED",
    "SERVER_UNAVAILABLE",
    "API_CURRENTLY_DISABLED",
}


class _SessionExpired(ConnectorAuthError):
    """The session expired (401 ``INVALID_SESSION_ID``): renewed once, outside the call's retry loop."""


class SalesforceSettings(PolicySettings):
    """``[connectors.X]`` for ``plugin = "salesforce"``.

    Credentials, one of: ``client_id`` + ``client_secret`` (client credentials flow); the same plus
    ``username`` + ``password`` + ``security_token`` (username-password flow); or ``session_id`` with
    ``instance_url``. The API is called at the ``instance_url`` the token answer names, unless one is set here
    (a proxy or a test server in front of the org). ``external_id_field`` names, per kind, the External ID
    field upserts match on (its value is the bridge record id). ``fields`` lists, per kind, what to pull
    (default: every field).
    """

    base_url: str | None = "https://login.salesforce.com"
    kinds: list[str] = Field(default_factory=lambda: ["account", "contact"])
    api_version: str = "62.0"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    session_id: SecretStr | None = None
    instance_url: str | None = None
    external_id_field: dict[str, str] = Field(default_factory=dict)
    fields: dict[str, list[str]] = Field(default_factory=dict)
    api_reserve: float = Field(default=0.05, ge=0.0, lt=1.0)
    rate_per_second: float = 20.0
    statuses: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_STATUSES))
    effect_fields: dict[str, str] = Field(default_factory=dict)

    _statuses = field_validator("statuses")(classmethod(lambda cls, v: known_statuses(v, "a Case status")))
    _effects = field_validator("effect_fields")(classmethod(lambda cls, v: known_effects(v)))


class PinnedSession(requests.Session):
    """A requests session whose ``verify`` and default timeout cannot be overridden by the environment.

    requests lets ``REQUESTS_CA_BUNDLE`` replace a session's ``verify`` (``merge_environment_settings``);
    this keeps the configured CA bundle while still taking proxies from the environment.
    """

    def __init__(self, verify: str | bool, timeout: float) -> None:
        super().__init__()
        self.verify = verify
        self.default_timeout = timeout
        self.headers["User-Agent"] = USER_AGENT

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Send with the default timeout and the session's ``verify`` unless the caller gave them.

        A ``verify`` given per request is not replaced by the environment, unlike the session's own.
        """
        kwargs.setdefault("timeout", self.default_timeout)
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return ";".join(str(_json(v)) for v in value)
    return value


def sf_time(value: Any) -> datetime:
    """A Salesforce datetime (``2024-05-01T10:00:00.000+0000``) as an aware UTC datetime."""
    text = str(value or "1970-01-01T00:00:00Z")
    if text.endswith("+0000"):
        text = text[:-5] + "+00:00"
    return parse_time(text)


def _more(url: str) -> Callable[[Salesforce], Any]:
    return lambda sf: sf.query_more(url, identifier_is_url=True)


def _patch(path: str, body: dict[str, Any]) -> Callable[[Salesforce], Any]:
    return lambda sf: sf.restful(path, method="PATCH", json=body)


def soql_time(at: datetime) -> str:
    """A SOQL datetime literal (UTC, no quotes)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SalesforceConnector(Connector):
    """Salesforce sObjects (Account, Contact, Case) through simple-salesforce."""

    name = "salesforce"
    kinds = ("account", "contact", "ticket")
    batch_max = 200
    settings_model = SalesforceSettings
    rate_limit = RateLimit(per_second=20.0, burst=20)
    type_compat: ClassVar[dict[str, tuple[str, ...]]] = {
        "select": ("picklist", "string", "combobox"),
        "multi_select": ("multipicklist",),
        "text": ("string", "textarea", "email", "url", "phone", "picklist", "combobox", "reference", "id"),
        "number": ("double", "currency", "percent", "int", "long"),
        "boolean": ("boolean",),
        "date": ("date", "datetime"),
    }

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        s = self.sf_settings
        self.policy, self.bucket = policy_from(s, context.extra, s.rate_per_second, self.rate_limit.burst)
        self.session = PinnedSession(s.ca_bundle or True, s.timeout)
        self.session.hooks["response"].append(self._observe)
        self._sf: Salesforce | None = None
        self._described: dict[str, list[RemoteField]] = {}
        self.users = People(self._read_users)  # (by email: account_owner routing, a case's assignee)
        s = self.sf_settings
        self.ticket_writes = TicketWrites(
            self.system, _CASE_WRITES, s.statuses, _PRIORITY_OUT, s.effect_fields, "effect_fields",
            self.users, log, no_status="no Case status is status {value!r}",
            no_person="no active Salesforce user has the email {value!r} (to assign the case to)",
            no_effect="a Case has no field for {name!r}: name a Case field for it")

    @property
    def sf_settings(self) -> SalesforceSettings:
        """The settings, typed."""
        settings = self.settings
        assert isinstance(settings, SalesforceSettings)
        return settings

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.bucket.observe(response.headers)

    # ------------------------------------------------------------ authentication

    def login(self) -> Salesforce:
        """Get a session (OAuth token endpoint or the configured session id) and build the client."""
        s = self.sf_settings
        if s.client_id and s.client_secret:
            form = {"client_id": s.client_id, "client_secret": s.client_secret.get_secret_value()}
            if s.username and s.password:
                token = s.security_token.get_secret_value() if s.security_token else ""
                form |= {
                    "grant_type": "password",
                    "username": s.username,
                    "password": s.password.get_secret_value() + token,
                }
            else:
                form["grant_type"] = "client_credentials"
            url = (s.base_url or "").rstrip("/") + "/services/oauth2/token"

            def post() -> requests.Response:
                response = self.session.post(url, data=form, headers={"Accept": "application/json"})
                if response.status_code in (400, 401, 403):
                    # invalid_grant / invalid_client: the credentials are refused, retrying will not help
                    raise ConnectorAuthError(
                        f"login refused (HTTP {response.status_code}): {vendor_message(response.text)}",
                        system=self.system,
                    )
                response.raise_for_status()
                return response

            response = call_with_policy(post, system=self.system, policy=self.policy, bucket=self.bucket)
            data = response.json()
            # a configured instance_url (a proxy, a test server) wins over the org host the token names
            session_id, instance_url = data["access_token"], s.instance_url or data.get("instance_url")
        elif s.session_id and s.instance_url:
            session_id, instance_url = s.session_id.get_secret_value(), s.instance_url
        else:
            raise ConnectorAuthError(
                "no credentials: set client_id and client_secret (and username, password, security_token "
                "for the password flow) or session_id and instance_url",
                system=self.system,
            )
        self._sf = Salesforce(
            instance_url=instance_url, session_id=session_id, session=self.session, version=s.api_version
        )
        return self._sf

    @property
    def sf(self) -> Salesforce:
        """The logged-in client (logs in on first use)."""
        return self._sf if self._sf is not None else self.login()

    def _can_relogin(self) -> bool:
        s = self.sf_settings
        return bool(s.client_id and s.client_secret)

    def call(self, fn: Callable[[Salesforce], T], *, record: str | None = None, batch: bool = False) -> T:
        """Run ``fn(sf)`` under the HTTP policy, inside the daily budget, renewing an expired session once
        (``record`` / ``batch``: what a 4xx refuses, as :func:`bridge.http.classify` takes them)."""

        # a login runs under its own retry policy, so it happens before the call's, never inside it
        sf = self.sf

        def run() -> T:
            self.check_budget()
            try:
                return fn(sf)
            except SalesforceExpiredSession as exc:
                if self._can_relogin() and "INVALID_SESSION_ID" in str(exc.content):
                    raise _SessionExpired("session expired (HTTP 401)", system=self.system) from None
                raise ConnectorAuthError("session refused (HTTP 401)", system=self.system) from None

        try:
            return call_with_policy(
                run, system=self.system, record=record, batch=batch, policy=self.policy, bucket=self.bucket
            )
        except _SessionExpired:
            sf = self.login()
        try:
            return call_with_policy(
                run, system=self.system, record=record, batch=batch, policy=self.policy, bucket=self.bucket
            )
        except _SessionExpired:
            raise ConnectorAuthError(
                "session refused again after a fresh login (HTTP 401)", system=self.system
            ) from None

    def budget_reserve(self) -> int | None:
        """API calls kept in reserve: ``api_reserve`` of the daily total, once a response gave the total."""
        total = self.bucket.daily_total
        return None if total is None else math.ceil(total * self.sf_settings.api_reserve)

    def check_budget(self) -> None:
        """Raise RetriableConnectorError when the org's daily API calls left are at or below the reserve."""
        remaining, reserve = self.bucket.daily_remaining, self.budget_reserve()
        if remaining is not None and reserve is not None and remaining <= reserve:
            raise RetriableConnectorError(
                f"daily API budget at its reserve ({remaining} of {self.bucket.daily_total} calls left, "
                f"reserve {reserve}): pausing",
                system=self.system,
                retry_after=DAILY_LIMIT_WAIT,
            )

    # ------------------------------------------------------------ pull

    def object_name(self, kind: str) -> str:
        """The sObject that carries ``kind`` (``objects`` in settings, else the default)."""
        found = self.settings.objects.get(kind) or DEFAULT_OBJECTS.get(kind)
        if not found:
            raise FatalConnectorError(
                f"no Salesforce object for kind {kind!r}; set objects.{kind}", system=self.system
            )
        return found

    def _fields(self, kind: str) -> list[str]:
        wanted = self.sf_settings.fields.get(kind)
        names = list(wanted) if wanted else [f.name for f in self.describe(kind) if f.type not in _COMPOUND]
        for extra in ("Id", "SystemModstamp", "IsDeleted", *ATTRS.get(self.object_name(kind), {})):
            if extra not in names and (wanted or extra in {f.name for f in self.describe(kind)}):
                names.append(extra)
        return names

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        """Records whose SystemModstamp is at or after the cursor minus the lookback, oldest first; through
        QueryAll, so that a record deleted or merged away comes as a deleted change (``IsDeleted``)."""
        obj = self.object_name(kind)
        soql = f"SELECT {', '.join(self._fields(kind))} FROM {obj}"
        since = cursor.since(self.lookback)
        if since is not None:
            soql += f" WHERE SystemModstamp >= {soql_time(since)}"
        soql += " ORDER BY SystemModstamp ASC, Id ASC"
        data: dict[str, Any] = self.call(lambda sf: sf.query(soql, include_deleted=True))
        last = cursor
        while True:
            changes = [self._change(kind, obj, r) for r in data.get("records") or []]
            if changes:
                tail = changes[-1]
                if last.at is None or (tail.at, tail.external_id) > (last.at, last.id or ""):
                    last = Cursor(tail.at, tail.external_id)
            yield PullPage(changes, last)
            next_url = data.get("nextRecordsUrl")
            if data.get("done", True) or not next_url:
                return
            data = self.call(_more(next_url))

    def _change(self, kind: str, obj: str, row: Mapping[str, Any]) -> Change:
        fields = {k: v for k, v in row.items() if k != "attributes" and not isinstance(v, dict)}
        attrs = {attr: row[f] for f, attr in ATTRS.get(obj, {}).items() if row.get(f) not in (None, "")}
        owner = row.get("OwnerId")
        attr = ATTRS.get(obj, {}).get("OwnerId")
        if owner and attr and str(owner).startswith(_QUEUE) and obj == "Case":
            attrs.pop(attr, None)  # a Case a queue owns waits for an agent: unassigned
        elif owner and attr and str(owner).startswith(_USER):
            # a user as bridge names people: by email (account_owner routing, an assignee)
            attrs[attr] = self.users.email_of(str(owner)) or str(owner)
        if obj == "Case":
            priority = attrs.get("priority")
            if isinstance(priority, str):
                attrs["priority"] = _PRIORITY_IN.get(priority.casefold(), priority)
            status = attrs.get("status")
            if isinstance(status, str):
                table = {k.casefold(): v for k, v in self.sf_settings.statuses.items()}
                attrs["status"] = table.get(status.casefold(), status)
        return Change(
            system=self.system,
            kind=kind,
            external_id=str(row["Id"]),
            at=sf_time(row.get("SystemModstamp")),
            fields=fields,
            attrs=attrs,
            deleted=bool(row.get("IsDeleted", False)),
        )

    # ------------------------------------------------------------ push

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        """Collections update (by Id) and upsert (by External ID); restricted picklists checked first."""
        obj = self.object_name(kind)
        ext_field = self.sf_settings.external_id_field.get(kind)
        results: dict[int, PushResult] = {}
        updates: list[tuple[int, Write]] = []
        upserts: list[tuple[int, Write]] = []
        if obj == "Case":
            # what bridge writes of a ticket (status, priority, assignee, the rules' effects) as a Case
            # holds it
            writes = list(writes)
            for index, w in enumerate(writes):
                mapped, why = self.ticket_writes.translate(w.fields)
                if why is not None:
                    results[index] = PushResult(w.record_id, False, w.external_id,
                                                f"{self.system} case {w.record_id}: {why}", False)
                else:
                    writes[index] = replace(w, fields=mapped)
        for index, w in enumerate(writes):
            if index in results:
                continue
            problem = self._picklist_problem(kind, w)
            if problem:
                results[index] = PushResult(
                    w.record_id, False, w.external_id, f"{self.system} record {w.record_id}: {problem}", False
                )
            elif w.external_id:
                updates.append((index, w))
            elif ext_field:
                upserts.append((index, w))
            else:
                results[index] = PushResult(
                    w.record_id,
                    False,
                    None,
                    f"{self.system} record {w.record_id}: no Salesforce id and no "
                    f"external_id_field.{kind} to upsert on",
                    False,
                    skipped=True,  # (Salesforce does not hold it, and nothing says how to make it there)
                )

        def update(group: Group) -> dict[int, PushResult]:
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": obj}, "Id": w.external_id, **self._values(w)} for _, w in group
                ],
            }
            return self._map(group, self.call(_patch("composite/sobjects", body), **call_about(group)))

        def upsert(group: Group) -> dict[int, PushResult]:
            assert ext_field is not None
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": obj}, **self._values(w), ext_field: w.record_id} for _, w in group
                ],
            }
            path = f"composite/sobjects/{obj}/{ext_field}"
            return self._map(group, self.call(_patch(path, body), **call_about(group)))

        for group in chunks(updates, self.batch_max):
            results.update(send_apart(group, update))
        for group in chunks(upserts, self.batch_max):
            results.update(send_apart(group, upsert))
        return [results[i] for i in range(len(writes))]

    def _read_users(self) -> dict[str, str]:
        """The org's active users, id -> email; a token that may not read them leaves ids as they are."""
        found: dict[str, str] = {}
        soql = "SELECT Id, Email FROM User WHERE IsActive = true"
        try:
            data: dict[str, Any] = self.call(lambda sf: sf.query_all(soql))
            for row in data.get("records") or []:
                if row.get("Id") and row.get("Email"):
                    found[str(row["Id"])] = str(row["Email"])
        except (ConnectorAuthError, FatalConnectorError) as exc:
            log.warning("%s: cannot read the users (%s): owners stay Salesforce ids", self.system, exc)
        return found

    @staticmethod
    def _values(w: Write) -> dict[str, Any]:
        return {name: _json(value) for name, value in w.fields.items()}

    def _picklist_problem(self, kind: str, w: Write) -> str | None:
        fields = {f.name: f for f in self.describe(kind)}
        for name, value in w.fields.items():
            f = fields.get(name)
            if f is None or not f.restricted or value in (None, "", []):
                continue
            if isinstance(value, list | tuple | set):
                items = list(value)
            else:
                items = str(value).split(";") if f.type == "multipicklist" else [value]
            bad = [str(v) for v in items if str(v) not in f.options]
            if bad:
                return (
                    f"{', '.join(repr(b) for b in bad)} is not a value of the restricted picklist "
                    f"{name}; values: {', '.join(f.options)}"
                )
        return None

    def _map(self, group: list[tuple[int, Write]], answer: Any) -> dict[int, PushResult]:
        out: dict[int, PushResult] = {}
        items = answer if isinstance(answer, list) else []
        for position, (index, w) in enumerate(group):
            item = items[position] if position < len(items) else None
            if item is None:
                out[index] = PushResult(
                    w.record_id,
                    False,
                    w.external_id,
                    f"{self.system} record {w.record_id}: missing from the answer",
                    True,
                )
            elif item.get("success"):
                out[index] = PushResult(w.record_id, True, str(item.get("id") or w.external_id))
            else:
                errors = item.get("errors") or []
                codes = {str(e.get("statusCode")) for e in errors}
                message = vendor_message(json.dumps(errors, default=str)) or "refused"
                out[index] = PushResult(
                    w.record_id,
                    False,
                    w.external_id,
                    f"{self.system} record {w.record_id}: {message}",
                    bool(codes & _RETRIABLE_CODES),
                )
        return out

    # ------------------------------------------------------------ describe

    def describe(self, kind: str) -> list[RemoteField]:
        """The sObject's fields: Salesforce type, active picklist values, restricted flag."""
        if kind in self._described:
            return self._described[kind]
        obj = self.object_name(kind)
        answer: Any = self.call(lambda sf: sf.restful(f"sobjects/{obj}/describe"))
        data: dict[str, Any] = answer or {}
        fields = []
        for f in data.get("fields") or []:
            values = tuple(str(p["value"]) for p in f.get("picklistValues") or [] if p.get("active", True))
            fields.append(
                RemoteField(
                    name=f["name"],
                    type=str(f.get("type", "")),
                    label=f.get("label") or "",
                    options=values,
                    restricted=bool(f.get("restrictedPicklist")),
                    kind=kind,
                )
            )
        self._described[kind] = fields
        return fields

    def check_connection(self) -> None:
        """Log in and read the org's limits (which also reads the daily budget)."""
        self.call(lambda sf: sf.restful("limits"))

    def close(self) -> None:
        """Close the requests session."""
        self.session.close()


@hookimpl
def register_connectors(register: Register) -> None:
    """Register the Salesforce connector."""
    register(SalesforceConnector)
