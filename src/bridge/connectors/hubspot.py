"""The ``hubspot`` connector: companies, contacts and tickets through ``hubspot-api-client``.

Pull: CRM search on the last-modified property (``hs_lastmodifieddate``; ``lastmodifieddate`` for contacts),
ascending, paged with ``after``; a search stops at 10,000 results, so a long pull restarts from the last
modification time seen. Push: ``batch/update`` by record id for writes with an external id, ``batch/upsert``
on a unique property (``id_property``) for the others, at most 100 inputs per call; a 207 answer is mapped
back to each write through ``objectWriteTraceId``. Describe: the properties API.

Authentication: a static private-app/OAuth ``token``, or OAuth with a refresh token: the connector trades
``refresh_token`` (with ``client_id``/``client_secret``) at ``POST /oauth/v1/token`` for an access token
before the first call, again when it is about to expire (the context's clock), and once more when a call is
answered 401 (HubSpot's ``EXPIRED_AUTHENTICATION``), retrying that call with the new token.

The client's own retries are off (``Retry(0)``): :func:`bridge.http.call_with_policy` is the only retry loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import urllib3
from hubspot import HubSpot
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputUpsert,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputUpsert,
)
from pydantic import Field, SecretStr, field_validator
from urllib3.util.retry import Retry

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
from bridge.errors import ConnectorAuthError, ConnectorError, FatalConnectorError, RetriableConnectorError
from bridge.helpdesk import People, TicketWrites
from bridge.http import (
    USER_AGENT,
    PolicySettings,
    build_client,
    call_with_policy,
    chunks,
    env_proxy,
    failure_of,
    policy_from,
    vendor_message,
)
from bridge.model import Change, Write, parse_time
from bridge.plugins import Register, hookimpl

DEFAULT_OBJECTS = {"account": "companies", "contact": "contacts", "ticket": "tickets"}
SEARCH_WINDOW = 10_000  # HubSpot's search answers at most this many results per query
# built-in attributes of the Change, per HubSpot object
ATTRS: dict[str, dict[str, str]] = {
    "companies": {"name": "name", "domain": "domain", "hubspot_owner_id": "owner"},
    "contacts": {"email": "email", "hs_language": "language", "hubspot_owner_id": "owner"},
    "tickets": {
        "subject": "subject",
        "content": "body",
        "hs_pipeline_stage": "status",
        "hs_ticket_priority": "priority",
        "hubspot_owner_id": "assignee",
    },
}
# a ticket's priority: HubSpot's (internal values, or labels in any case) and bridge's
_PRIORITY_IN = {"low": "low", "medium": "normal", "high": "high", "urgent": "urgent"}
_PRIORITY_OUT = {"low": "LOW", "normal": "MEDIUM", "high": "HIGH", "urgent": "URGENT"}
# the stages of HubSpot's default support pipeline (New, Waiting on contact, Waiting on us, Closed) as
# bridge's ticket statuses; another pipeline's stages are configured in ``statuses``
DEFAULT_STATUSES = {"1": "open", "2": "pending", "3": "open", "4": "closed"}
# a ticket's built-in attributes as bridge writes them, and the HubSpot properties that hold them
_TICKET_WRITES = {"status": "hs_pipeline_stage", "priority": "hs_ticket_priority",
                  "assignee": "hubspot_owner_id", "body": "content"}
_RETRIABLE_CATEGORIES = {"RATE_LIMITS", "INTERNAL_ERROR", "TIMEOUT", "SERVICE_UNAVAILABLE"}
TOKEN_PATH = "/oauth/v1/token"

log = logging.getLogger("bridge.connectors.hubspot")


class HubSpotSettings(PolicySettings):
    """``[connectors.X]`` for ``plugin = "hubspot"``.

    ``token`` (or ``token_env``/``token_file``, as in the config contract) is a private app or OAuth token;
    ``access_token`` is accepted as another name for it. For OAuth with refresh, set ``refresh_token``,
    ``client_id`` and ``client_secret`` (each also as ``*_env``/``*_file``); a fresh access token is then
    fetched ``refresh_margin`` seconds before the current one expires.
    ``id_property`` names, per kind, the unique property that upserts match on (``domain``, ``email`` or a
    custom unique property). ``properties`` lists, per kind, what to pull (default: every property).
    """

    base_url: str | None = "https://api.hubapi.com"
    kinds: list[str] = Field(default_factory=lambda: ["account", "contact"])
    token: SecretStr | None = None
    access_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    refresh_margin: float = Field(default=60.0, ge=0)
    id_property: dict[str, str] = Field(default_factory=dict)
    properties: dict[str, list[str]] = Field(default_factory=dict)
    modified_property: dict[str, str] = Field(default_factory=dict)
    page_size: int = Field(default=100, ge=1, le=200)
    rate_per_second: float = 10.0
    statuses: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_STATUSES))
    effect_properties: dict[str, str] = Field(default_factory=dict)

    _statuses = field_validator("statuses")(classmethod(lambda cls, v: known_statuses(v, "a stage")))
    _effects = field_validator("effect_properties")(classmethod(lambda cls, v: known_effects(v)))


def _millis(at: datetime) -> int:
    """``at`` in epoch milliseconds, as HubSpot's search filters take a datetime."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _option_problem(w: Write, options: dict[str, dict[str, str]]) -> str | None:
    """Why ``w`` cannot be sent: a value of an enumeration property that is none of its options."""
    for name, value in w.fields.items():
        table = options.get(name)
        if not table or value in (None, "", []):
            continue
        items = value if isinstance(value, list | tuple | set) else [value]
        bad = [_text(v) for v in items if _text(v).casefold() not in table]
        if bad:
            return (f"{', '.join(repr(b) for b in bad)} is not an option of the HubSpot property {name}; "
                    f"options: {', '.join(sorted(set(table.values())))}")
    return None


def _text(value: Any) -> str:
    """A value as HubSpot properties take it: ``;``-joined multi-selects, ISO dates, blank for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return ";".join(_text(v) for v in value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # 120000.0 from another system is the number 120000
    return str(value)


class HubSpotConnector(Connector):
    """HubSpot CRM objects (companies, contacts, tickets) through the official client library."""

    name = "hubspot"
    kinds = ("account", "contact", "ticket")
    batch_max = 100
    settings_model = HubSpotSettings
    rate_limit = RateLimit(per_second=10.0, burst=10)
    type_compat: ClassVar[dict[str, tuple[str, ...]]] = {
        "select": ("enumeration:select", "enumeration:radio", "enumeration:booleancheckbox", "string:text"),
        "multi_select": ("enumeration:checkbox", "string:textarea", "string:text"),
        "text": (
            "string:text",
            "string:textarea",
            "string:html",
            "string:phonenumber",
            "phone_number:phonenumber",
            "enumeration:select",
            "enumeration:radio",
        ),
        "number": ("number:number", "number:calculation_equation", "number:calculation_rollup"),
        "boolean": ("bool:booleancheckbox", "enumeration:booleancheckbox"),
        "date": ("date:date", "datetime:date"),
    }

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        s = self.hubspot_settings
        self.policy, self.bucket = policy_from(s, context.extra, s.rate_per_second, self.rate_limit.burst)
        # with a refresh token, a configured access token is used until it expires (401), else one is fetched
        secret = s.token or s.access_token
        token = secret.get_secret_value() if secret else None
        self._expires_at: datetime | None = None
        self._refresh: str | None = None  # a rotated refresh token, when HubSpot sent a new one
        self._auth_http: httpx.Client | None = None
        extra: dict[str, Any] = {"host": (s.base_url or "https://api.hubapi.com").rstrip("/")}
        if s.ca_bundle:
            extra["ssl_ca_cert"] = s.ca_bundle
        proxy = env_proxy(extra["host"])  # (urllib3 under the vendor's client reads no environment)
        if proxy:
            # urllib3 takes a proxy's credentials as a header, not in its URL
            parts = urlsplit(proxy)
            if parts.username is not None:
                creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                extra["proxy_headers"] = urllib3.make_headers(proxy_basic_auth=creds)
                proxy = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
            extra["proxy"] = proxy
        self._token = token
        no_retries = Retry(total=0, redirect=0, raise_on_status=False)
        self.client = HubSpot(access_token=token, retry=no_retries, **extra)
        self._apis: dict[str, Any] = {}
        self._described: dict[str, list[RemoteField]] = {}
        self._labels: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self._every_label: dict[tuple[str, str], dict[str, str]] = {}  # hidden options too: value -> label
        self.owners = People(self._read_owners)  # (by email: account_owner routing, a ticket's assignee)
        s = self.hubspot_settings
        self.ticket_writes = TicketWrites(
            self.system, _TICKET_WRITES, s.statuses, _PRIORITY_OUT, s.effect_properties, "effect_properties",
            self.owners, log, no_status="no HubSpot pipeline stage is status {value!r}",
            no_person="no HubSpot owner has the email {value!r} (to assign the ticket to)",
            no_effect="HubSpot tickets have no property for {name!r}: name a ticket property for it")

    @property
    def hubspot_settings(self) -> HubSpotSettings:
        """The settings, typed."""
        settings = self.settings
        assert isinstance(settings, HubSpotSettings)
        return settings

    # ------------------------------------------------------------ plumbing

    def _api(self, name: str) -> Any:
        # the discovery properties build a new ApiClient (and connection pool) on every access: keep one
        if name not in self._apis:
            if name == "properties":
                api = self.client.crm.properties.core_api
            else:
                api = getattr(self.client.crm.objects, name)
            api.api_client.user_agent = USER_AGENT
            self._apis[name] = api
        return self._apis[name]

    def object_type(self, kind: str) -> str:
        """The HubSpot object type that carries ``kind`` (``objects`` in settings, else the default)."""
        found = self.settings.objects.get(kind) or DEFAULT_OBJECTS.get(kind)
        if not found:
            raise FatalConnectorError(
                f"no HubSpot object for kind {kind!r}; set objects.{kind}", system=self.system
            )
        return found

    # ------------------------------------------------------------ authentication

    @property
    def uses_refresh(self) -> bool:
        """Whether access tokens come from a refresh token (OAuth) rather than a static token."""
        return self.hubspot_settings.refresh_token is not None

    def _ensure_token(self) -> None:
        if not self.uses_refresh:
            if not self._token:
                raise ConnectorAuthError(
                    "no token configured (token_env or token_file)", system=self.system
                )
            return
        margin = timedelta(seconds=self.hubspot_settings.refresh_margin)
        if not self._token or (
            self._expires_at is not None and self.context.clock() + margin >= self._expires_at
        ):
            self.refresh_access_token()

    def refresh_access_token(self) -> None:
        """Trade the refresh token for a new access token and give it to every client.

        A refused refresh (bad refresh token, wrong client id or secret) raises ConnectorAuthError; the
        message names the system and HubSpot's reason, never the secrets.
        """
        s = self.hubspot_settings
        if not (s.refresh_token and s.client_id and s.client_secret):
            raise ConnectorAuthError(
                "OAuth refresh needs client_id, client_secret and refresh_token", system=self.system
            )
        secrets = (self._refresh or s.refresh_token.get_secret_value(), s.client_secret.get_secret_value())
        form = {
            "grant_type": "refresh_token",
            "client_id": s.client_id,
            "client_secret": secrets[1],
            "refresh_token": secrets[0],
        }
        if self._auth_http is None:
            self._auth_http = build_client(s, system=self.system)
        http = self._auth_http

        def run() -> httpx.Response:
            return http.post(TOKEN_PATH, data=form, headers={"Accept": "application/json"})

        try:
            response = call_with_policy(run, system=self.system, policy=self.policy, bucket=self.bucket)
            data = response.json()
            token = str(data["access_token"])
            expires_in = float(data.get("expires_in") or 0)
        except RetriableConnectorError:
            raise
        except ConnectorError as exc:
            failure = failure_of(exc.__cause__) if exc.__cause__ is not None else None
            reason = (
                f"HTTP {failure.status}: {_oauth_reason(failure.body)}" if failure else type(exc).__name__
            )
            reason = _scrub(reason, secrets)
            log.warning("%s: OAuth token refresh refused", self.system)
            raise ConnectorAuthError(f"OAuth token refresh refused ({reason})", system=self.system) from None
        except (ValueError, KeyError, TypeError):
            raise ConnectorAuthError(
                "OAuth token refresh answered without an access_token", system=self.system
            ) from None
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != secrets[0]:
            # HubSpot may rotate the refresh token; the new one is the one that stays valid
            self._refresh = rotated
        self._set_token(token)
        self._expires_at = self.context.clock() + timedelta(seconds=expires_in) if expires_in > 0 else None
        log.info("%s: OAuth access token refreshed", self.system)

    def _set_token(self, token: str) -> None:
        self._token = token
        # the library reads the token from each API's configuration on every request
        self.client.access_token = token
        for api in self._apis.values():
            api.api_client.configuration.access_token = token

    def _call(
        self, fn: Callable[..., Any], *args: Any, record: str | None = None, batch: bool = False
    ) -> tuple[int, Any]:
        self._ensure_token()

        def run() -> tuple[int, Any]:
            response = fn(*args, _preload_content=False, _request_timeout=self.settings.timeout)
            self.bucket.observe(response.headers)
            raw = response.data
            return response.status, json.loads(raw) if raw else {}

        try:
            return call_with_policy(
                run, system=self.system, record=record, batch=batch, policy=self.policy, bucket=self.bucket
            )
        except ConnectorAuthError as exc:
            failure = failure_of(exc.__cause__) if exc.__cause__ is not None else None
            if not self.uses_refresh or failure is None or failure.status != 401:
                raise
            # an expired (EXPIRED_AUTHENTICATION) or revoked token: refresh once and try the call again
            log.info("%s: access token refused (%s); refreshing", self.system, exc)
            self.refresh_access_token()
        return call_with_policy(
            run, system=self.system, record=record, batch=batch, policy=self.policy, bucket=self.bucket
        )

    # ------------------------------------------------------------ pull

    def modified_property(self, object_type: str) -> str:
        """The property searched and sorted on for incremental pulls."""
        configured = self.hubspot_settings.modified_property.get(object_type)
        if configured:
            return configured
        return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"

    def _properties(self, kind: str) -> list[str]:
        wanted = self.hubspot_settings.properties.get(kind)
        names = list(wanted) if wanted else [f.name for f in self.describe(kind)]
        modified = self.modified_property(self.object_type(kind))
        for extra in (modified, *ATTRS.get(self.object_type(kind), {})):
            if extra not in names:
                names.append(extra)
        return names

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        """Records modified since the cursor (minus the lookback), oldest first, one page per search call.

        Each page starts a new search from the last modification time the previous one gave (a keyset), not
        at an offset: the search is run again on every call, so a record edited while the pull pages moves
        to the end, and an offset would then skip the record after the page boundary for good. The records
        of that millisecond come again and are left out; only a page of one millisecond goes on by offset.
        """
        object_type = self.object_type(kind)
        modified = self.modified_property(object_type)
        properties = self._properties(kind)
        since = cursor.since(self.lookback)
        last = cursor
        after: str | None = None
        edge: set[tuple[str, datetime]] = set()  # what this pull gave at ``since``'s millisecond
        size = self.hubspot_settings.page_size
        search = self._api("search_api")
        labels: dict[str, dict[str, str]] | None = None  # read with the first page that holds records
        while True:
            floor = None if since is None else _millis(since)
            filters = [] if floor is None else [
                Filter(property_name=modified, operator="GTE", value=str(floor))]
            request = PublicObjectSearchRequest(
                filter_groups=[FilterGroup(filters=filters)] if filters else [],
                sorts=[f"{modified}"],
                properties=properties,
                limit=size,
                after=after,
            )
            _status, data = self._call(search.do_search, object_type, request)
            results = data.get("results") or []
            if results and labels is None:
                labels = self._labels_by_value(kind)
            found = [self._change(kind, object_type, modified, item, labels) for item in results]
            found.sort(key=lambda c: (c.at, c.external_id))
            changes = [c for c in found if (c.external_id, c.at) not in edge]
            if changes:
                tail = changes[-1]
                if last.at is None or (tail.at, tail.external_id) > (last.at, last.id or ""):
                    last = Cursor(tail.at, tail.external_id)
            yield PullPage(changes, last)
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after or not found:
                return
            top = _millis(found[-1].at)
            if floor is not None and top == floor:
                # the whole page is one millisecond: go on through it by offset, from the same search
                edge.update((c.external_id, c.at) for c in found)
                if after.isdigit() and int(after) + size > SEARCH_WINDOW:
                    log.warning("%s: more than %d %s modified in the millisecond %s: the search cannot page "
                                "past them; going on after it", self.system, SEARCH_WINDOW, object_type,
                                found[-1].at.isoformat())
                    since, after, edge = found[-1].at + timedelta(milliseconds=1), None, set()
                continue
            since, after = found[-1].at, None
            edge = {(c.external_id, c.at) for c in found if _millis(c.at) == top}

    def _change(self, kind: str, object_type: str, modified: str, item: dict[str, Any],
                labels: dict[str, dict[str, str]] | None = None) -> Change:
        props: dict[str, Any] = dict(item.get("properties") or {})
        for name, table in (labels or {}).items():
            value = props.get(name)
            if isinstance(value, str) and value:
                # an enumeration's internal value as its label (a checkbox's values are ;-separated)
                props[name] = ";".join(table.get(v, v) for v in value.split(";"))
        stamp = props.get(modified) or item.get("updatedAt") or item.get("createdAt")
        attrs = {attr: props[prop] for prop, attr in ATTRS.get(object_type, {}).items() if props.get(prop)}
        raw = item.get("properties") or {}
        owner = raw.get("hubspot_owner_id")
        if owner:
            # an owner as bridge names people: by email (account_owner routing, a ticket's assignee)
            attr = ATTRS.get(object_type, {}).get("hubspot_owner_id")
            if attr:
                attrs[attr] = self.owners.email_of(str(owner)) or str(owner)
        if object_type == "tickets":
            priority = attrs.get("priority")
            if isinstance(priority, str):
                attrs["priority"] = _PRIORITY_IN.get(priority.casefold(), priority)
            stage = raw.get("hs_pipeline_stage")
            status = self._status_of(str(stage), attrs.get("status")) if stage else None
            if status is not None:
                attrs["status"] = status
        if object_type == "contacts":
            full = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p)
            if full:
                attrs["name"] = full
        return Change(
            system=self.system,
            kind=kind,
            external_id=str(item["id"]),
            at=parse_time(stamp) if stamp else parse_time("1970-01-01T00:00:00Z"),
            fields=props,
            attrs=attrs,
            deleted=bool(item.get("archived", False)),
        )

    # ------------------------------------------------------------ push

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        """Batch update (writes with an external id) and batch upsert on ``id_property`` (the others); an
        enumeration's option written by its label goes as its internal value, one it does not have is refused
        before sending."""
        object_type = self.object_type(kind)
        id_property = self.hubspot_settings.id_property.get(kind)
        results: dict[int, PushResult] = {}
        if object_type == "tickets":
            # what bridge writes of a ticket (status, priority, assignee, the rules' effects) as HubSpot
            # holds it
            writes = list(writes)
            for index, w in enumerate(writes):
                mapped, why = self.ticket_writes.translate(w.fields)
                if why is not None:
                    results[index] = PushResult(w.record_id, False, w.external_id,
                                                f"{self.system} ticket {w.record_id}: {why}", False)
                else:
                    writes[index] = replace(w, fields=mapped)
        options = self._option_values(kind)
        if any(_option_problem(w, options) for i, w in enumerate(writes) if i not in results):
            # an option added in HubSpot since the properties were read: read them again, once per push
            self._described.pop(kind, None)
            options = self._option_values(kind)
        updates: list[tuple[int, Write]] = []
        upserts: list[tuple[int, Write]] = []
        for index, w in enumerate(writes):
            if index in results:
                continue
            problem = _option_problem(w, options)
            if problem:
                results[index] = PushResult(
                    w.record_id, False, w.external_id, f"{self.system} record {w.record_id}: {problem}", False
                )
            elif w.external_id:
                updates.append((index, w))
            elif id_property and w.fields.get(id_property) not in (None, ""):
                upserts.append((index, w))
            else:
                results[index] = PushResult(
                    w.record_id,
                    False,
                    None,
                    f"{self.system} record {w.record_id}: no HubSpot id and no "
                    f"{id_property or 'id_property'} value to upsert on",
                    False,
                    skipped=True,  # (HubSpot does not hold it, and nothing says how to make it there)
                )
        batch = self._api("batch_api")

        def update(group: Group) -> dict[int, PushResult]:
            inputs = [
                SimplePublicObjectBatchInput(
                    id=w.external_id, properties=self._props(w, options), object_write_trace_id=str(i)
                )
                for i, w in group
            ]
            _status, data = self._call(
                batch.update, object_type, BatchInputSimplePublicObjectBatchInput(inputs=inputs),
                **call_about(group),
            )
            return self._map(group, data, key=lambda w: str(w.external_id), prop=None)

        def upsert(group: Group) -> dict[int, PushResult]:
            assert id_property is not None
            inputs = [
                SimplePublicObjectBatchInputUpsert(
                    id=_text(w.fields[id_property]),
                    id_property=id_property,
                    properties=self._props(w, options),
                    object_write_trace_id=str(i),
                )
                for i, w in group
            ]
            _status, data = self._call(
                batch.upsert, object_type, BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs),
                **call_about(group),
            )
            return self._map(group, data, key=lambda w: _text(w.fields[id_property]), prop=id_property)

        for group in chunks(updates, self.batch_max):
            results.update(send_apart(group, update))
        for group in chunks(upserts, self.batch_max):
            results.update(send_apart(group, upsert))
        return [results[i] for i in range(len(writes))]

    def _status_of(self, stage: str, label: Any) -> str | None:
        """The bridge status of a pipeline stage (by its id, else its label, in ``statuses``), if mapped."""
        table = {k.casefold(): v for k, v in self.hubspot_settings.statuses.items()}
        found = table.get(stage.casefold())
        if found is None and isinstance(label, str):
            found = table.get(label.casefold())
        return found

    def _read_owners(self) -> dict[str, str]:
        """HubSpot's owners, id -> email (every page of ``/crm/v3/owners``); without the scope to read them,
        none (ids stay as HubSpot gives them)."""
        api = self.client.crm.owners.owners_api
        api.api_client.user_agent = USER_AGENT
        found: dict[str, str] = {}
        after: str | None = None
        try:
            while True:
                paging = {"after": after} if after else {}
                page = partial(api.get_page, limit=100, **paging)
                _status, data = self._call(page)
                for o in data.get("results") or []:
                    if o.get("id") is not None and o.get("email"):
                        found[str(o["id"])] = str(o["email"])
                after = ((data.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
        except (ConnectorAuthError, FatalConnectorError) as exc:
            # (no scope to read owners, or a sandbox without them: the ids stay, nothing else stops)
            log.warning("%s: cannot read the owners (%s): owners stay HubSpot ids", self.system, exc)
        return found

    def _props(self, w: Write, options: dict[str, dict[str, str]]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in w.fields.items():
            table = options.get(name)
            if table and value is not None:
                # option labels (what the config says) to internal values (what HubSpot stores)
                items = value if isinstance(value, list | tuple | set) else [value]
                mapped = [table.get(_text(v).casefold(), _text(v)) for v in items]
                out[name] = ";".join(mapped)
            else:
                out[name] = _text(value)
        return out

    def _labels_by_value(self, kind: str) -> dict[str, dict[str, str]]:
        """Per enumeration property, its options' values to their labels (what a pull gives: labels, as the
        config names options and as a push takes them)."""
        self._ensure_described(kind)
        return {f.name: self._every_label.get((kind, f.name), {})
                for f in self._described.get(kind, []) if f.type.startswith("enumeration")}

    def _ensure_described(self, kind: str) -> None:
        if kind not in self._described:
            try:
                self.describe(kind)
            except ConnectorAuthError as exc:
                # reading properties needs the schema scope: without it, values go as written (HubSpot then
                # refuses a wrong one per record)
                log.warning("%s: cannot read the %s properties (%s); option labels and values are taken as "
                            "written",
                            self.system, kind, exc)
                self._described[kind] = []

    def _option_values(self, kind: str) -> dict[str, dict[str, str]]:
        """Per enumeration property, its options' values and labels (casefolded) to their values."""
        self._ensure_described(kind)
        out: dict[str, dict[str, str]] = {}
        for f in self._described.get(kind, []):
            if f.options and f.type.startswith("enumeration"):
                table = {opt.casefold(): opt for opt in f.options}
                for label, value in self.option_labels(kind, f.name):
                    table.setdefault(label.casefold(), value)
                out[f.name] = table
        return out

    def _map(
        self, group: list[tuple[int, Write]], data: Any, *, key: Callable[[Write], str], prop: str | None
    ) -> dict[int, PushResult]:
        out: dict[int, PushResult] = {}
        by_trace = {str(i): (i, w) for i, w in group}
        by_key = {key(w): (i, w) for i, w in group}
        for item in data.get("results") or []:
            found = by_trace.get(str(item.get("objectWriteTraceId")))
            if found is None:
                value = str((item.get("properties") or {}).get(prop)) if prop else str(item.get("id"))
                found = by_key.get(value)
            if found is not None:
                out[found[0]] = PushResult(found[1].record_id, True, str(item.get("id")))
        for error in data.get("errors") or []:
            context = error.get("context") or {}
            targets = [by_trace[t] for t in context.get("objectWriteTraceId") or [] if t in by_trace]
            for values in context.values():
                targets += [by_key[v] for v in values or [] if v in by_key]
            if not targets and len(group) == 1:
                targets = list(group)
            message = vendor_message(json.dumps(error))
            retriable = error.get("category") in _RETRIABLE_CATEGORIES or str(error.get("status")) == "429"
            for i, w in targets:
                out.setdefault(
                    i,
                    PushResult(
                        w.record_id,
                        False,
                        w.external_id,
                        f"{self.system} record {w.record_id}: {message}",
                        retriable,
                    ),
                )
        clean = not data.get("errors")
        for i, w in group:
            if i not in out:
                out[i] = (
                    PushResult(w.record_id, True, w.external_id)
                    if clean
                    else PushResult(
                        w.record_id,
                        False,
                        w.external_id,
                        f"{self.system} record {w.record_id}: not confirmed in HubSpot's batch answer",
                        True,
                    )
                )
        return out

    # ------------------------------------------------------------ describe

    def describe(self, kind: str) -> list[RemoteField]:
        """Every property of the kind's object: ``type:fieldType``, option values, and read-only flag."""
        if kind in self._described:
            return self._described[kind]
        _status, data = self._call(self._api("properties").get_all, self.object_type(kind))
        fields = []
        for p in data.get("results") or []:
            every = p.get("options") or []
            opts = [o for o in every if not o.get("hidden")]
            fields.append(
                RemoteField(
                    name=p["name"],
                    type=f"{p.get('type', '')}:{p.get('fieldType', '')}",
                    label=p.get("label") or "",
                    options=tuple(str(o.get("value")) for o in opts),
                    restricted=p.get("type") == "enumeration",
                    kind=kind,
                )
            )
            self._labels[(kind, p["name"])] = tuple((str(o.get("label")), str(o.get("value"))) for o in opts)
            # (a hidden option is retired from forms, not from records: a record may still hold it)
            self._every_label[(kind, p["name"])] = {str(o.get("value")): str(o.get("label")) for o in every}
        self._described[kind] = fields
        return fields

    def option_labels(self, kind: str, name: str) -> tuple[tuple[str, str], ...]:
        """``(label, value)`` pairs of an enumeration property (after :meth:`describe`)."""
        return self._labels.get((kind, name), ())

    def check_connection(self) -> None:
        """Read one page of the first kind's properties."""
        kind = (self.settings.kinds or ["account"])[0]
        self._described.pop(kind, None)
        self.describe(kind)

    def close(self) -> None:
        """Close the HTTP client used for token refreshes."""
        if self._auth_http is not None:
            self._auth_http.close()
            self._auth_http = None


def _oauth_reason(body: str) -> str:
    """HubSpot's OAuth error code (``status``, e.g. ``BAD_REFRESH_TOKEN``) and message."""
    message = vendor_message(body)
    try:
        code = json.loads(body).get("status")
    except (ValueError, AttributeError):
        return message
    if isinstance(code, str) and code and code != "error" and code not in message:
        return f"{code}: {message}"
    return message


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@hookimpl
def register_connectors(register: Register) -> None:
    """Register the HubSpot connector."""
    register(HubSpotConnector)
