"""The ``pipedrive`` connector: organizations, persons and deals over Pipedrive's REST API v1 (httpx).

Pull: the first pull lists ``/v1/{object}`` sorted by ``update_time``; later pulls read ``/v1/recents`` from
the cursor minus the lookback. Both page with ``start``/``limit`` until
``additional_data.pagination.more_items_in_collection`` is false. Push: ``PUT /v1/{object}/{id}`` for writes
with an external id, ``POST /v1/{object}`` for the others (Pipedrive v1 has no batch write, so
``batch_max`` is 1). A create is made idempotent by searching first (persons by email, organizations by
name, deals by title, exact match): a create repeated after a crash finds the record it made and updates it
instead of making a duplicate; several matches fail that write naming the candidates.

Custom fields are addressed by a 40-character key. The ``*Fields`` endpoints give each field's key, name,
type and options: a change carries every custom field under both its key and its name (option ids turned into
labels), and a write may name a field by either; option labels become option ids on the way out.

The token goes in the ``x-api-token`` header, never in the URL (URLs end up in logs).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from bridge.connector import Connector, ConnectorContext, Cursor, PullPage, PushResult, RateLimit, RemoteField
from bridge.errors import ConnectorAuthError, FatalConnectorError, SkippableRecordError
from bridge.http import PolicySettings, build_client, call_with_policy, policy_from
from bridge.model import Change, Write, parse_time
from bridge.plugins import Register, hookimpl

DEFAULT_OBJECTS = {"account": "organizations", "contact": "persons", "deal": "deals"}
SINGULAR = {"organizations": "organization", "persons": "person", "deals": "deal"}
ATTRS: dict[str, dict[str, str]] = {
    "organizations": {"name": "name", "owner_id": "owner"},
    "persons": {"name": "name", "owner_id": "owner"},
    "deals": {"title": "subject", "status": "status", "user_id": "owner"},
}
# the field a create is matched on before POSTing, per object (its key in the request body)
MATCH_FIELD = {"organizations": "name", "persons": "email", "deals": "title"}
SEARCH_LIMIT = 10  # enough to name the candidates of an ambiguous match


class PipedriveSettings(PolicySettings):
    """``[connectors.X]`` for ``plugin = "pipedrive"``: ``api_token`` (or ``api_token_env``/``_file``)."""

    base_url: str | None = "https://api.pipedrive.com"
    kinds: list[str] = Field(default_factory=lambda: ["account", "contact"])
    api_token: SecretStr | None = None
    page_size: int = Field(default=100, ge=1, le=500)
    rate_per_second: float = 8.0


def _pd_time(value: Any) -> datetime:
    text = str(value or "1970-01-01 00:00:00")
    return parse_time(text.replace(" ", "T") if "T" not in text else text)


def _since(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class PipedriveConnector(Connector):
    """Pipedrive organizations, persons and deals, with custom fields by key or name."""

    name = "pipedrive"
    kinds = ("account", "contact", "deal")
    batch_max = 1
    settings_model = PipedriveSettings
    rate_limit = RateLimit(per_second=8.0, burst=8)
    type_compat: ClassVar[dict[str, tuple[str, ...]]] = {
        "select": ("enum", "varchar", "status"),
        "multi_select": ("set",),
        "text": ("varchar", "varchar_auto", "text", "enum", "phone", "address"),
        "number": ("double", "monetary", "int"),
        "boolean": ("enum",),
        "date": ("date",),
    }

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        s = self.pd_settings
        self.policy, self.bucket = policy_from(s, context.extra, s.rate_per_second, self.rate_limit.burst)
        self._own_client = context.http is None
        self.http = context.http or build_client(s, system=self.system)
        self._fields: dict[str, list[dict[str, Any]]] = {}

    @property
    def pd_settings(self) -> PipedriveSettings:
        """The settings, typed."""
        settings = self.settings
        assert isinstance(settings, PipedriveSettings)
        return settings

    def object_name(self, kind: str) -> str:
        """The Pipedrive object (``organizations``, ``persons``, ``deals``) that carries ``kind``."""
        found = self.settings.objects.get(kind) or DEFAULT_OBJECTS.get(kind)
        if found not in SINGULAR:
            raise FatalConnectorError(
                f"no Pipedrive object for kind {kind!r}; set objects.{kind} to one of {', '.join(SINGULAR)}",
                system=self.system,
            )
        return found

    def request(
        self,
        method: str,
        path: str,
        *,
        record: str | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """One API call under the policy; returns the decoded JSON body."""
        token = self.pd_settings.api_token
        if token is None:
            raise ConnectorAuthError(
                "no api_token configured (api_token_env or api_token_file)", system=self.system
            )
        headers = {"x-api-token": token.get_secret_value(), "Accept": "application/json"}

        def run() -> httpx.Response:
            response = self.http.request(method, path, params=params, json=json, headers=headers)
            self.bucket.observe(response.headers)
            return response

        response = call_with_policy(
            run, system=self.system, record=record, policy=self.policy, bucket=self.bucket
        )
        body = response.json() if response.content else {}
        if isinstance(body, dict) and body.get("success") is False:
            message = str(body.get("error") or "refused")
            if record is not None:
                raise SkippableRecordError(message, system=self.system, record=record)
            raise FatalConnectorError(message, system=self.system)
        return body

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[tuple[list[Any], dict[str, Any]]]:
        start = 0
        while True:
            body = self.request(
                "GET", path, params={**params, "start": start, "limit": self.pd_settings.page_size}
            )
            extra = body.get("additional_data") or {}
            yield list(body.get("data") or []), extra
            pagination = extra.get("pagination") or {}
            if not pagination.get("more_items_in_collection"):
                return
            start = int(pagination.get("next_start", start + self.pd_settings.page_size))

    # ------------------------------------------------------------ fields

    def fields(self, kind: str) -> list[dict[str, Any]]:
        """The ``*Fields`` definitions of the kind's object (cached for the connector's life)."""
        obj = self.object_name(kind)
        if obj not in self._fields:
            found: list[dict[str, Any]] = []
            for data, _extra in self._pages(f"/v1/{SINGULAR[obj]}Fields", {}):
                found.extend(data)
            self._fields[obj] = found
        return self._fields[obj]

    def field_key(self, kind: str, remote: str) -> dict[str, Any] | None:
        """The field a config names by key or by its human name (case-insensitive)."""
        for f in self.fields(kind):
            if f.get("key") == remote:
                return f
        folded = remote.casefold()
        for f in self.fields(kind):
            if str(f.get("name", "")).casefold() == folded:
                return f
        return None

    def describe(self, kind: str) -> list[RemoteField]:
        """Every field: its key as name, its human name as label, Pipedrive type and option labels."""
        return [
            RemoteField(
                name=str(f["key"]),
                type=str(f.get("field_type", "")),
                label=str(f.get("name", "")),
                options=tuple(str(o.get("label")) for o in f.get("options") or []),
                restricted=f.get("field_type") in ("enum", "set"),
                kind=kind,
            )
            for f in self.fields(kind)
        ]

    # ------------------------------------------------------------ pull

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        """Everything on the first pull, then recent changes from the cursor minus the lookback, oldest first.

        After the first page, each page is a new ``/v1/recents`` from the last update time the previous one
        gave (a keyset), not the next offset: Pipedrive runs the query again on every call, so a record edited
        while the pull pages moves to the end, and an offset would skip the record after the page boundary
        for good. The records of that second come again and are left out; only a page of one second goes on
        by offset.
        """
        obj = self.object_name(kind)
        size = self.pd_settings.page_size
        ask = cursor.since(self.lookback)  # the next request's since_timestamp; None: the whole list
        floor = ask
        start = 0
        edge: set[tuple[str, datetime]] = set()  # what this pull gave from ``ask`` on
        last = cursor
        while True:
            if ask is None:
                params: dict[str, Any] = {"sort": "update_time ASC", "start": start, "limit": size}
                body = self.request("GET", f"/v1/{obj}", params=params)
                rows = list(body.get("data") or [])
            else:
                params = {"since_timestamp": _since(ask), "items": SINGULAR[obj], "start": start,
                          "limit": size}
                body = self.request("GET", "/v1/recents", params=params)
                rows = [item.get("data") for item in body.get("data") or [] if item.get("data")]
            found = sorted((self._change(kind, obj, row) for row in rows),
                           key=lambda c: (c.at, c.external_id))
            changes = [c for c in found if (c.external_id, c.at) not in edge]
            if changes:
                tail = changes[-1]
                if last.at is None or (tail.at, tail.external_id) > (last.at, last.id or ""):
                    last = Cursor(tail.at, tail.external_id)
            yield PullPage(changes, last)
            pagination = (body.get("additional_data") or {}).get("pagination") or {}
            if not pagination.get("more_items_in_collection") or not found:
                return
            top = found[-1].at
            if floor is not None and top <= floor:
                # the whole page is one second: go on through it by offset, from the same query
                edge.update((c.external_id, c.at) for c in found)
                start = int(pagination.get("next_start", start + size))
                continue
            # (a second before: whether since_timestamp is inclusive or not, that second's rest comes)
            floor, ask, start = top, top - timedelta(seconds=1), 0
            edge = {(c.external_id, c.at) for c in found if c.at >= ask}

    def _change(self, kind: str, obj: str, row: dict[str, Any]) -> Change:
        fields: dict[str, Any] = {}
        by_key = {f["key"]: f for f in self.fields(kind)}
        for key, raw in row.items():
            value = raw.get("value", raw.get("id")) if isinstance(raw, dict) else raw
            meta = by_key.get(key)
            if meta is not None:
                value = _labels_of(meta, value)
                fields[key] = value
                if meta.get("name") and len(key) == 40:
                    fields[str(meta["name"])] = value
            elif not isinstance(raw, list):
                fields[key] = value
        attrs = {attr: fields[f] for f, attr in ATTRS[obj].items() if fields.get(f) not in (None, "")}
        emails = row.get("email") if obj == "persons" else None
        if isinstance(emails, list):
            primary = next((e.get("value") for e in emails if e.get("primary")), None)
            if primary:
                attrs["email"] = primary
        return Change(
            system=self.system,
            kind=kind,
            external_id=str(row["id"]),
            at=_pd_time(row.get("update_time")),
            fields=fields,
            attrs=attrs,
            deleted=row.get("active_flag") is False,
        )

    # ------------------------------------------------------------ push

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        """One ``PUT`` (known id) or ``POST`` (new) per write; an unknown field refuses that write only."""
        obj = self.object_name(kind)
        results = []
        for w in writes:
            try:
                body = self._body(kind, w)
                target = w.external_id or self._existing(obj, w.record_id, body)
                if target:
                    answer = self.request("PUT", f"/v1/{obj}/{target}", record=w.record_id, json=body)
                else:
                    answer = self.request("POST", f"/v1/{obj}", record=w.record_id, json=body)
            except SkippableRecordError as exc:
                results.append(PushResult(w.record_id, False, w.external_id, str(exc), False))
                continue
            data = answer.get("data") or {}
            results.append(PushResult(w.record_id, True, str(data.get("id") or target)))
        return results

    def _existing(self, obj: str, record: str, body: dict[str, Any]) -> str | None:
        """The id of the one record a create would duplicate, None when there is none.

        Several matches raise SkippableRecordError naming them: updating one at random could overwrite the
        wrong record, and creating another would add to the duplicates.
        """
        field = MATCH_FIELD[obj]
        term = _match_term(body.get(field))
        if not term:
            return None  # nothing to match on (a person without email): a plain create
        answer = self.request(
            "GET",
            f"/v1/{obj}/search",
            record=record,
            params={"term": term, "fields": field, "exact_match": "true", "limit": SEARCH_LIMIT},
        )
        items = ((answer.get("data") or {}).get("items")) or []
        ids = [str(i["item"]["id"]) for i in items if isinstance(i, dict) and (i.get("item") or {}).get("id")]
        ids = list(dict.fromkeys(ids))
        if len(ids) > 1:
            more = (answer.get("additional_data") or {}).get("pagination") or {}
            tail = " and more" if more.get("more_items_in_collection") else ""
            raise SkippableRecordError(
                f"{len(ids)} Pipedrive {obj} already have {field} {term!r} (ids {', '.join(ids)}{tail}); "
                f"merge them or link the record to one",
                system=self.system,
                record=record,
            )
        return ids[0] if ids else None

    def _body(self, kind: str, w: Write) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for remote, value in w.fields.items():
            meta = self.field_key(kind, remote)
            if meta is None:
                raise SkippableRecordError(
                    f"no Pipedrive field {remote!r}", system=self.system, record=w.record_id
                )
            body[str(meta["key"])] = _ids_of(meta, value, self.system, w.record_id)
        return body

    def check_connection(self) -> None:
        """Read the current user (the token is refused with 401)."""
        self.request("GET", "/v1/users/me")

    def close(self) -> None:
        """Close the HTTP client if this connector made it."""
        if self._own_client:
            self.http.close()


def _match_term(value: Any) -> str | None:
    """The text to search for: a plain value, or the primary (else first) of Pipedrive's email list."""
    if isinstance(value, list | tuple):
        entries = [v for v in value if v not in (None, "")]
        primary = [v for v in entries if isinstance(v, dict) and v.get("primary")]
        value = (primary or entries or [None])[0]
    if isinstance(value, dict):
        value = value.get("value")
    if value is None:
        return None
    return str(value).strip() or None


def _labels_of(meta: dict[str, Any], value: Any) -> Any:
    options = {str(o.get("id")): str(o.get("label")) for o in meta.get("options") or []}
    if not options or value in (None, ""):
        return value
    if meta.get("field_type") == "set":
        return [options.get(part.strip(), part.strip()) for part in str(value).split(",") if part.strip()]
    return options.get(str(value), value)


def _ids_of(meta: dict[str, Any], value: Any, system: str, record: str) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d")
    if isinstance(value, date):
        return value.isoformat()
    options = {str(o.get("label")).casefold(): o.get("id") for o in meta.get("options") or []}
    if not options or value in (None, ""):
        return value
    items = value if isinstance(value, list | tuple | set) else [value]
    ids = []
    for item in items:
        found = options.get(str(item).casefold())
        if found is None and str(item) in {str(v) for v in options.values()}:
            found = item
        if found is None:
            raise SkippableRecordError(
                f"{item!r} is not an option of Pipedrive field {meta.get('name')!r}",
                system=system,
                record=record,
            )
        ids.append(found)
    if meta.get("field_type") == "set":
        return ",".join(str(i) for i in ids)
    return ids[0]


@hookimpl
def register_connectors(register: Register) -> None:
    """Register the Pipedrive connector."""
    register(PipedriveConnector)
