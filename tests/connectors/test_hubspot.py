"""The HubSpot connector through the real hubspot-api-client against a local server.

Bodies in tests/data/hubspot/ follow HubSpot's reference pages: "Search the CRM"
(developers.hubspot.com/docs/api-reference/crm/search-the-crm), "Batch upsert/update companies"
(.../crm/objects/companies/batch), "Error handling" (207 multi-status, .../api-reference/error-handling) and
"Properties: read all properties" (.../crm/properties). The client's generated models are the schema.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from bridge.connector import ConnectorContext, Cursor
from bridge.connectors.hubspot import HubSpotConnector, HubSpotSettings
from bridge.errors import ConnectorAuthError, FatalConnectorError, RetriableConnectorError
from bridge.http import USER_AGENT
from bridge.model import Write, parse_time
from bridge.testing import ConnectorContract

from .conftest import FakeTime, load

TOKEN = "pat-na1-secret-token-0000"
SEARCH = "/crm/v3/objects/companies/search"
PROPERTIES = "/crm/v3/properties/companies"


def make(server: HTTPServer, extra: dict[str, Any], **settings: Any) -> HubSpotConnector:
    values: dict[str, Any] = {
        "plugin": "hubspot",
        "base_url": server.url_for("").rstrip("/"),
        "access_token": TOKEN,
        "properties": {"account": ["name", "domain", "arr", "tier"]},
    }
    values.update(settings)
    # a push reads the properties first (option labels to values, options HubSpot lacks)
    server.expect_request(PROPERTIES, method="GET").respond_with_json(load("hubspot", "properties_companies"))
    return HubSpotConnector(ConnectorContext("hubspot", HubSpotSettings(**values), extra=extra))


def sent(server: HTTPServer) -> list[tuple[str, str, Any]]:
    """The requests the server took, but for the properties read a push makes first."""
    return [(r.method, r.path, json.loads(r.data) if r.data else None) for r, _ in server.log
            if r.path != PROPERTIES]


def test_pull_pages_to_the_end_each_page_a_search_from_the_last_time(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_ordered_request(SEARCH, method="POST").respond_with_json(
        load("hubspot", "search_companies_page1")
    )
    # the first page holding records reads the properties (enumeration values to their labels)
    httpserver.expect_ordered_request(PROPERTIES, method="GET").respond_with_json(
        load("hubspot", "properties_companies")
    )
    httpserver.expect_ordered_request(SEARCH, method="POST").respond_with_json(
        load("hubspot", "search_companies_page2")
    )
    connector = make(httpserver, extra)
    cursor = Cursor(parse_time("2026-03-01T09:00:00Z"), "50")

    pages = list(connector.pull("account", cursor))

    assert [[c.external_id for c in p.changes] for p in pages] == [["101", "102"], ["103"]]
    assert pages[-1].cursor == Cursor(parse_time("2026-03-01T11:00:00Z"), "103")
    first = pages[0].changes[0]
    assert first.fields["arr"] == "120000"
    assert first.fields["tier"] == "Gold"  # the option's value (gold) as its label, as the config names it
    assert first.attrs == {"name": "Acme", "domain": "acme.example"}
    requests = sent(httpserver)
    assert [(m, p) for m, p, _ in requests] == [("POST", SEARCH), ("POST", SEARCH)]
    since_ms = str(
        int(parse_time("2026-03-01T08:58:00Z").timestamp() * 1000)
    )  # cursor minus the 2 min lookback
    assert requests[0][2]["filterGroups"] == [
        {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": since_ms}]}
    ]
    assert requests[0][2]["sorts"] == ["hs_lastmodifieddate"]
    assert set(requests[0][2]["properties"]) >= {"name", "domain", "arr", "tier", "hs_lastmodifieddate"}
    # page 2 searches again from page 1's last modification time (10:05), not at an offset
    assert "after" not in requests[0][2] and "after" not in requests[1][2]
    assert requests[1][2]["filterGroups"][0]["filters"][0]["value"] == str(
        int(parse_time("2026-03-01T10:05:00Z").timestamp() * 1000))
    headers = httpserver.log[0][0].headers
    assert headers["Authorization"] == f"Bearer {TOKEN}" and headers["User-Agent"] == USER_AGENT


def test_pull_empty_page_keeps_the_cursor(httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    httpserver.expect_request(SEARCH, method="POST").respond_with_json(load("hubspot", "search_empty"))
    cursor = Cursor(parse_time("2026-03-01T09:00:00Z"), "50")

    pages = list(make(httpserver, extra).pull("account", cursor))

    assert len(pages) == 1 and pages[0].changes == [] and pages[0].cursor == cursor
    assert len(httpserver.log) == 1


def test_first_pull_has_no_filter_and_contacts_use_lastmodifieddate(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request("/crm/v3/objects/contacts/search", method="POST").respond_with_json(
        load("hubspot", "search_empty")
    )
    connector = make(httpserver, extra, properties={"contact": ["email"]})

    list(connector.pull("contact", Cursor()))

    body = sent(httpserver)[0][2]
    assert body["filterGroups"] == [] and body["sorts"] == ["lastmodifieddate"]


def test_429_with_retry_after_is_retried_after_the_recorded_sleep(
    httpserver: HTTPServer, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    httpserver.expect_ordered_request(SEARCH, method="POST").respond_with_response(
        Response(
            json.dumps(load("hubspot", "rate_limited")),
            status=429,
            headers={"Retry-After": "3", "Content-Type": "application/json"},
        )
    )
    httpserver.expect_ordered_request(SEARCH, method="POST").respond_with_json(
        load("hubspot", "search_empty")
    )

    pages = list(make(httpserver, extra).pull("account", Cursor()))

    assert pages[0].changes == []
    assert len(httpserver.log) == 2
    assert 3.0 in fake_time.sleeps


def test_5xx_is_retried_with_backoff_then_gives_up(
    httpserver: HTTPServer, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    httpserver.expect_request(SEARCH, method="POST").respond_with_json(
        {"status": "error", "message": "boom"}, status=502
    )
    connector = make(httpserver, extra, max_attempts=3, backoff_base=1.0)

    with pytest.raises(RetriableConnectorError) as info:
        list(connector.pull("account", Cursor()))

    assert len(httpserver.log) == 3
    assert fake_time.sleeps == [0.5, 1.0]  # full jitter at 0.5 of 1s, then of 2s
    assert "HTTP 502" in str(info.value) and info.value.system == "hubspot"


def test_401_is_an_auth_error_not_retried_and_hides_the_token(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request(SEARCH, method="POST").respond_with_json(
        load("hubspot", "unauthorized"), status=401
    )

    with pytest.raises(ConnectorAuthError) as info:
        list(make(httpserver, extra).pull("account", Cursor()))

    assert len(httpserver.log) == 1
    assert TOKEN not in str(info.value) and "INVALID_AUTHENTICATION" in str(info.value)


def test_push_207_maps_each_write(httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    httpserver.expect_request("/crm/v3/objects/companies/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_207"), status=207
    )
    writes = [
        Write("hubspot", "account", "r1", "101", {"arr": 130000}),
        Write("hubspot", "account", "r2", "999", {"arr": 1}),
    ]

    results = make(httpserver, extra).push("account", writes)

    assert [(r.record_id, r.ok, r.external_id, r.retriable) for r in results] == [
        ("r1", True, "101", False),
        ("r2", False, "999", False),
    ]
    assert results[1].error is not None and "OBJECT_NOT_FOUND" in results[1].error
    body = sent(httpserver)[0][2]
    assert body == {
        "inputs": [
            {"id": "101", "properties": {"arr": "130000"}, "objectWriteTraceId": "0"},
            {"id": "999", "properties": {"arr": "1"}, "objectWriteTraceId": "1"},
        ]
    }


def test_push_upserts_on_id_property_and_refuses_writes_without_key(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request("/crm/v3/objects/companies/batch/upsert", method="POST").respond_with_json(
        load("hubspot", "batch_upsert_200")
    )
    writes = [
        Write("hubspot", "account", "r1", None, {"domain": "new.example", "arr": 10, "active": True}),
        Write("hubspot", "account", "r2", None, {"arr": 5}),
    ]

    results = make(httpserver, extra, id_property={"account": "domain"}).push("account", writes)

    assert (results[0].ok, results[0].external_id) == (True, "201")
    assert not results[1].ok and "domain" in (results[1].error or "")
    assert sent(httpserver)[0][2] == {
        "inputs": [
            {
                "idProperty": "domain",
                "objectWriteTraceId": "0",
                "id": "new.example",
                "properties": {"domain": "new.example", "arr": "10", "active": "true"},
            }
        ]
    }


def test_push_splits_at_batch_max(httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    def answer(request: Any) -> Response:
        inputs = json.loads(request.data)["inputs"]
        results = [
            {
                "id": i["id"],
                "properties": {},
                "createdAt": "2026-03-02T08:00:00Z",
                "updatedAt": "2026-03-02T08:00:00Z",
                "archived": False,
            }
            for i in inputs
        ]
        return Response(
            json.dumps(
                {
                    "status": "COMPLETE",
                    "results": results,
                    "startedAt": "2026-03-02T08:00:00Z",
                    "completedAt": "2026-03-02T08:00:01Z",
                }
            ),
            content_type="application/json",
        )

    httpserver.expect_request("/crm/v3/objects/companies/batch/update", method="POST").respond_with_handler(
        answer
    )
    writes = [Write("hubspot", "account", f"r{i}", str(1000 + i), {"arr": i}) for i in range(150)]

    results = make(httpserver, extra).push("account", writes)

    assert all(r.ok for r in results) and [r.external_id for r in results] == [
        str(1000 + i) for i in range(150)
    ]
    assert [len(b["inputs"]) for _, _, b in sent(httpserver)] == [100, 50]


def test_describe_reads_types_and_visible_options_and_maps_labels_on_push(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request("/crm/v3/properties/companies", method="GET").respond_with_json(
        load("hubspot", "properties_companies")
    )
    httpserver.expect_request("/crm/v3/objects/companies/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200")
    )
    connector = make(httpserver, extra)

    fields = {f.name: f for f in connector.describe("account")}

    assert fields["tier"].type == "enumeration:select" and fields["tier"].options == ("gold", "silver")
    assert fields["arr"].type == "number:number" and fields["tier"].label == "Tier"
    connector.push("account", [Write("hubspot", "account", "r1", "101", {"tier": "Gold"})])
    assert sent(httpserver)[-1][2]["inputs"][0]["properties"] == {"tier": "gold"}


# ---------------------------------------------------------------- OAuth refresh
# HubSpot "OAuth: refresh an access token" (POST /oauth/v1/token, form-encoded; answer access_token,
# refresh_token, expires_in) and "Error handling" (401 with category EXPIRED_AUTHENTICATION).

CLIENT_ID = "5d7a1f2e-client-id"
CLIENT_SECRET = "cs-very-secret-9999"
REFRESH = "rt-original-secret-7777"
TOKEN_URL = "/oauth/v1/token"


class Clock:
    """An aware UTC clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = parse_time("2026-03-02T08:00:00Z")

    def __call__(self) -> Any:
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)


def make_oauth(
    server: HTTPServer, extra: dict[str, Any], clock: Clock | None = None, **settings: Any
) -> HubSpotConnector:
    values: dict[str, Any] = {
        "plugin": "hubspot",
        "base_url": server.url_for("").rstrip("/"),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH,
        "properties": {"account": ["name"]},
    }
    values.update(settings)
    context = ConnectorContext("hubspot", HubSpotSettings(**values), extra=extra)
    if clock is not None:
        context.clock = clock
    return HubSpotConnector(context)


def calls(server: HTTPServer) -> list[tuple[str, str | None, dict[str, str] | None]]:
    """(path, bearer token, token form) for every request the server received, in order."""
    out: list[tuple[str, str | None, dict[str, str] | None]] = []
    for request, _ in server.log:
        auth = request.headers.get("Authorization")
        bearer = auth.removeprefix("Bearer ") if auth else None
        form = dict(request.form) if request.path == TOKEN_URL else None
        out.append((request.path, bearer, form))
    return out


def form(refresh: str = REFRESH) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": refresh,
    }


def test_expired_token_401_refreshes_once_and_retries_with_the_new_bearer(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_ordered_request(SEARCH, method="POST").respond_with_json(
        load("hubspot", "expired_token"), status=401
    )
    httpserver.expect_ordered_request(TOKEN_URL, method="POST").respond_with_json(
        load("hubspot", "oauth_token")
    )
    httpserver.expect_ordered_request(SEARCH, method="POST").respond_with_json(
        load("hubspot", "search_companies_page2")
    )
    httpserver.expect_ordered_request(PROPERTIES, method="GET").respond_with_json(
        load("hubspot", "properties_companies")
    )
    connector = make_oauth(httpserver, extra, access_token="at-stale-0000")

    pages = list(connector.pull("account", Cursor()))

    assert [c.external_id for p in pages for c in p.changes] == ["103"]
    assert calls(httpserver) == [
        (SEARCH, "at-stale-0000", None),
        (TOKEN_URL, None, form()),
        (SEARCH, "at-fresh-1111", None),
        (PROPERTIES, "at-fresh-1111", None),
    ]
    token_request = httpserver.log[1][0]
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_refresh_before_the_first_call_then_proactively_when_expires_in_has_passed(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_ordered_request(TOKEN_URL, method="POST").respond_with_json(
        load("hubspot", "oauth_token")
    )
    for _ in range(2):
        httpserver.expect_ordered_request(SEARCH, method="POST").respond_with_json(
            load("hubspot", "search_empty")
        )
    httpserver.expect_ordered_request(TOKEN_URL, method="POST").respond_with_json(
        load("hubspot", "oauth_token_second")
    )
    httpserver.expect_ordered_request(SEARCH, method="POST").respond_with_json(
        load("hubspot", "search_empty")
    )
    clock = Clock()
    connector = make_oauth(httpserver, extra, clock)

    list(connector.pull("account", Cursor()))
    clock.advance(1800 - 61)  # still valid for longer than the 60 s margin
    list(connector.pull("account", Cursor()))
    clock.advance(2)  # inside the margin: refreshed before the call, not after a 401
    list(connector.pull("account", Cursor()))

    assert calls(httpserver) == [
        (TOKEN_URL, None, form()),
        (SEARCH, "at-fresh-1111", None),
        (SEARCH, "at-fresh-1111", None),
        (TOKEN_URL, None, form("rt-rotated-2222")),  # HubSpot's rotated refresh token is the one used next
        (SEARCH, "at-fresh-3333", None),
    ]


@pytest.mark.parametrize(
    ("status", "answer", "reason"),
    [(400, "oauth_refused", "BAD_REFRESH_TOKEN"), (401, "oauth_bad_client", "BAD_CLIENT_ID")],
)
def test_refused_refresh_is_an_auth_error_without_secrets(
    httpserver: HTTPServer,
    extra: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    status: int,
    answer: str,
    reason: str,
) -> None:
    httpserver.expect_request(TOKEN_URL, method="POST").respond_with_json(
        load("hubspot", answer), status=status
    )
    caplog.set_level("DEBUG")

    with pytest.raises(ConnectorAuthError) as info:
        list(make_oauth(httpserver, extra).pull("account", Cursor()))

    message = str(info.value)
    assert info.value.system == "hubspot" and message.startswith("hubspot: OAuth token refresh refused")
    assert reason in message and f"HTTP {status}" in message
    assert [r.path for r, _ in httpserver.log] == [TOKEN_URL]  # not retried, no API call without a token
    logged = caplog.text + message
    assert caplog.records and all(secret not in logged for secret in (CLIENT_SECRET, REFRESH))


def test_a_401_after_a_fresh_token_is_not_refreshed_again(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request(TOKEN_URL, method="POST").respond_with_json(load("hubspot", "oauth_token"))
    httpserver.expect_request(SEARCH, method="POST").respond_with_json(
        load("hubspot", "expired_token"), status=401
    )

    with pytest.raises(ConnectorAuthError) as info:
        list(make_oauth(httpserver, extra, access_token="at-stale-0000").pull("account", Cursor()))

    assert [r.path for r, _ in httpserver.log] == [SEARCH, TOKEN_URL, SEARCH]
    assert "EXPIRED_AUTHENTICATION" in str(info.value)


def test_refresh_settings_come_from_env_and_files(
    httpserver: HTTPServer, extra: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "refresh"
    secret_file.write_text(REFRESH + "\n")
    monkeypatch.setenv("HS_CLIENT_SECRET", CLIENT_SECRET)
    settings = HubSpotSettings.model_validate(
        {
            "plugin": "hubspot",
            "base_url": httpserver.url_for("").rstrip("/"),
            "client_id": CLIENT_ID,
            "client_secret_env": "HS_CLIENT_SECRET",
            "refresh_token_file": str(secret_file),
        }
    )
    httpserver.expect_request(TOKEN_URL, method="POST").respond_with_json(load("hubspot", "oauth_token"))
    httpserver.expect_request("/crm/v3/properties/companies", method="GET").respond_with_json(
        load("hubspot", "properties_companies")
    )

    HubSpotConnector(ConnectorContext("hubspot", settings, extra=extra)).check_connection()

    assert calls(httpserver) == [
        (TOKEN_URL, None, form()),
        ("/crm/v3/properties/companies", "at-fresh-1111", None),
    ]
    assert CLIENT_SECRET not in repr(settings) and REFRESH not in repr(settings)


# ---------------------------------------------------------------- a batch refused as a whole
# HubSpot "Error handling": a batch whose input holds an invalid value is refused whole, HTTP 400 with
# category VALIDATION_ERROR, naming the property but not the input.

INVALID = {
    "status": "error",
    "category": "VALIDATION_ERROR",
    "correlationId": "8b7e4c1a-0000-4000-8000-00000000c0de",
    "message": 'Property values were not valid: [{"isValid":false,"message":"abc is not a valid number",'
               '"error":"INVALID_FLOAT","name":"arr"}]',
}


def test_a_batch_refused_whole_is_sent_in_halves_and_only_the_refused_write_fails(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    def answer(request: Any) -> Response:
        inputs = json.loads(request.data)["inputs"]
        if any(i["properties"].get("arr") == "abc" for i in inputs):
            return Response(json.dumps(INVALID), status=400, content_type="application/json")
        results = [{"id": i["id"], "properties": {}, "createdAt": "2026-03-02T08:00:00Z",
                    "updatedAt": "2026-03-02T08:00:00Z", "archived": False} for i in inputs]
        body = {"status": "COMPLETE", "results": results, "startedAt": "2026-03-02T08:00:00Z",
                "completedAt": "2026-03-02T08:00:01Z"}
        return Response(json.dumps(body), content_type="application/json")

    update = "/crm/v3/objects/companies/batch/update"
    httpserver.expect_request(update, method="POST").respond_with_handler(answer)
    writes = [
        Write("hubspot", "account", "r1", "101", {"arr": 1}),
        Write("hubspot", "account", "r2", "102", {"arr": "abc"}),
        Write("hubspot", "account", "r3", "103", {"arr": 3}),
    ]

    results = make(httpserver, extra).push("account", writes)

    assert [(r.record_id, r.ok, r.retriable) for r in results] == [
        ("r1", True, False), ("r2", False, False), ("r3", True, False)]
    assert results[1].error is not None
    assert "hubspot record r2" in results[1].error and "INVALID_FLOAT" in results[1].error
    calls = [[i["id"] for i in body["inputs"]] for _, _, body in sent(httpserver)]
    assert calls == [["101", "102", "103"], ["101"], ["102", "103"], ["102"], ["103"]]


def test_a_single_write_refused_is_a_failed_result_not_a_stopped_system(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request("/crm/v3/objects/companies/batch/update", method="POST").respond_with_json(
        INVALID, status=400)

    write = Write("hubspot", "account", "r2", "102", {"arr": "abc"})

    results = make(httpserver, extra).push("account", [write])

    assert [(r.record_id, r.ok, r.retriable) for r in results] == [("r2", False, False)]
    assert "INVALID_FLOAT" in (results[0].error or "")


def test_push_reads_the_options_maps_labels_and_refuses_an_option_hubspot_lacks(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request("/crm/v3/objects/companies/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200"))
    connector = make(httpserver, extra)  # properties configured: no pull or discover has read them

    first = connector.push("account", [
        Write("hubspot", "account", "r1", "101", {"tier": "Gold"}),
        Write("hubspot", "account", "r2", "102", {"tier": "Platinum"}),
    ])
    connector.push("account", [Write("hubspot", "account", "r1", "101", {"tier": "SILVER"})])

    assert [(r.record_id, r.ok, r.retriable) for r in first] == [("r1", True, False), ("r2", False, False)]
    assert first[1].error == ("hubspot record r2: 'Platinum' is not an option of the HubSpot property tier; "
                              "options: gold, silver")
    assert [b["inputs"] for _, _, b in sent(httpserver)] == [
        [{"id": "101", "properties": {"tier": "gold"}, "objectWriteTraceId": "0"}],
        [{"id": "101", "properties": {"tier": "silver"}, "objectWriteTraceId": "0"}],
    ]
    # read at the first push, and once again for the option it did not know; not at the second push
    assert [r.path for r, _ in httpserver.log].count(PROPERTIES) == 2


def test_an_option_added_in_hubspot_after_the_properties_were_read_is_sent(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    properties = load("hubspot", "properties_companies")
    httpserver.expect_request("/crm/v3/objects/companies/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200"))
    connector = make(httpserver, extra)
    connector.push("account", [Write("hubspot", "account", "r1", "101", {"tier": "Gold"})])
    # an admin adds Platinum in HubSpot while the daemon runs
    [tier] = [p for p in properties["results"] if p["name"] == "tier"]
    tier["options"].append({"label": "Platinum", "value": "platinum", "displayOrder": 3, "hidden": False})
    httpserver.clear_all_handlers()
    httpserver.expect_request(PROPERTIES, method="GET").respond_with_json(properties)
    httpserver.expect_request("/crm/v3/objects/companies/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200"))

    [result] = connector.push("account", [Write("hubspot", "account", "r1", "101", {"tier": "Platinum"})])

    assert result.ok
    assert sent(httpserver)[-1][2]["inputs"][0]["properties"] == {"tier": "platinum"}


def test_push_without_the_schema_scope_sends_values_as_written(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request(PROPERTIES, method="GET").respond_with_json(
        {"status": "error", "category": "MISSING_SCOPES",
         "message": "This app hasn't been granted all required scopes to make this call."}, status=403)
    httpserver.expect_request("/crm/v3/objects/companies/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200"))
    values: dict[str, Any] = {"plugin": "hubspot", "base_url": httpserver.url_for("").rstrip("/"),
                              "access_token": TOKEN, "properties": {"account": ["tier"]}}
    connector = HubSpotConnector(ConnectorContext("hubspot", HubSpotSettings(**values), extra=extra))

    results = connector.push("account", [Write("hubspot", "account", "r1", "101", {"tier": "gold"})])

    assert [(r.record_id, r.ok) for r in results] == [("r1", True)]
    assert sent(httpserver)[-1][2]["inputs"][0]["properties"] == {"tier": "gold"}


# ---------------------------------------------------------------- paging while records change
# "Search the CRM": the search runs again on every call (GTE filter, ascending sort, ``after`` an offset into
# the result), so a record edited during a pull moves to the end of the order.


class Portal:
    """Companies answering CRM search as HubSpot does; ``on_call`` runs before each search is answered."""

    def __init__(self, stamps: dict[str, str], page: int = 2) -> None:
        self.stamps = dict(stamps)
        self.page = page
        self.calls = 0
        self.on_call: dict[int, Any] = {}

    def millis(self, cid: str) -> int:
        return int(parse_time(self.stamps[cid]).timestamp() * 1000)

    def __call__(self, request: Any) -> Response:
        self.calls += 1
        if self.calls in self.on_call:
            self.on_call[self.calls]()
        body = json.loads(request.data)
        modified = body["sorts"][0]  # hs_lastmodifieddate (contacts: lastmodifieddate)
        floor = 0
        for group in body.get("filterGroups") or []:
            for f in group["filters"]:
                if (f["propertyName"], f["operator"]) != (modified, "GTE"):
                    refused = {"status": "error", "category": "VALIDATION_ERROR"}
                    return Response(json.dumps(refused), status=400)
                floor = int(f["value"])
        rows = sorted((c for c in self.stamps if self.millis(c) >= floor), key=lambda c: (self.millis(c), c))
        start, limit = int(body.get("after") or 0), min(int(body["limit"]), self.page)
        answer: dict[str, Any] = {"total": len(rows), "results": [
            {"id": c, "properties": {modified: self.stamps[c], "hs_object_id": c},
             "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": self.stamps[c], "archived": False}
            for c in rows[start:start + limit]]}
        if start + limit < len(rows):
            answer["paging"] = {"next": {"after": str(start + limit)}}
        return Response(json.dumps(answer), content_type="application/json")


def pulled(connector: HubSpotConnector, cursor: Cursor) -> tuple[list[str], Cursor]:
    pages = list(connector.pull("account", cursor))
    return [c.external_id for p in pages for c in p.changes], pages[-1].cursor


def test_a_record_edited_during_a_pull_skips_nothing(httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    portal = Portal({"1": "2026-03-02T10:00:00.000Z", "2": "2026-03-02T10:01:00.000Z",
                     "3": "2026-03-02T10:02:00.000Z", "4": "2026-03-02T10:03:00.000Z"})
    # a HubSpot user saves company 1 between our first and second page
    portal.on_call[2] = lambda: portal.stamps.update({"1": "2026-03-02T10:30:00.000Z"})
    httpserver.expect_request(SEARCH, method="POST").respond_with_handler(portal)
    connector = make(httpserver, extra, properties={"account": ["name"]})

    got, cursor = pulled(connector, Cursor())

    assert got == ["1", "2", "3", "4", "1"]
    assert cursor == Cursor(parse_time("2026-03-02T10:30:00Z"), "1")


def test_a_page_of_one_millisecond_goes_on_by_offset_and_repeats_nothing(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    same = "2026-03-02T10:00:00.123Z"
    portal = Portal({"1": same, "2": same, "3": same, "4": same, "5": "2026-03-02T10:00:01.000Z"})
    httpserver.expect_request(SEARCH, method="POST").respond_with_handler(portal)
    connector = make(httpserver, extra, properties={"account": ["name"]})

    got, cursor = pulled(connector, Cursor(parse_time("2026-03-02T09:00:00Z"), "0"))

    assert got == ["1", "2", "3", "4", "5"]
    assert cursor == Cursor(parse_time("2026-03-02T10:00:01Z"), "5")
    bodies = [b for _, _, b in sent(httpserver)]
    # page 2 searches from 10:00:00.123 and finds page 1 again: the rest of that millisecond goes by offset
    assert [b.get("after") for b in bodies] == [None, None, "2", "4"]


class TestHubSpotContract(ConnectorContract):
    """The conformance suite against a portal of companies, two of them saved in the same millisecond."""

    @pytest.fixture
    def connector(self, httpserver: HTTPServer, extra: dict[str, Any]) -> HubSpotConnector:
        portal = Portal({"1": "2026-03-02T10:00:00.000Z", "2": "2026-03-02T10:00:00.500Z",
                         "3": "2026-03-02T10:00:00.500Z", "4": "2026-03-02T10:07:00.000Z",
                         "5": "2026-03-02T10:20:00.000Z"})
        # every kind (companies, contacts, tickets) answers from the same records
        searches = re.compile(r"^/crm/v3/objects/\w+/search$")
        httpserver.expect_request(searches, method="POST").respond_with_handler(portal)
        httpserver.expect_request(re.compile(r"^/crm/v3/properties/\w+$"), method="GET").respond_with_json(
            load("hubspot", "properties_companies"))
        return make(httpserver, extra)


def test_calls_go_through_the_environments_proxy(
    httpserver: HTTPServer, extra: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    # a proxy that wants credentials, given in the URL as HTTP_PROXY usually carries them
    monkeypatch.setenv("HTTP_PROXY", httpserver.url_for("").rstrip("/").replace("://", "://svc:p%40ss@"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    wanted = "Basic " + base64.b64encode(b"svc:p@ss").decode()
    authorised = {"Proxy-Authorization": wanted}
    httpserver.expect_request(SEARCH, method="POST", headers=authorised).respond_with_json(
        load("hubspot", "search_empty"))
    values: dict[str, Any] = {"plugin": "hubspot", "base_url": "http://hubspot.invalid",
                              "access_token": TOKEN, "properties": {"account": ["name"]}}
    connector = HubSpotConnector(ConnectorContext("hubspot", HubSpotSettings(**values), extra=extra))

    pages = list(connector.pull("account", Cursor()))

    assert pages[0].changes == []  # hubspot.invalid resolves nowhere: the proxy took the search
    assert httpserver.log[0][0].headers["Host"] == "hubspot.invalid"


def test_what_a_split_landed_stays_landed_when_a_later_half_is_rate_limited(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    def answer(request: Any) -> Response:
        ids = [i["id"] for i in json.loads(request.data)["inputs"]]
        if len(ids) == 4:
            return Response(json.dumps(INVALID), status=400, content_type="application/json")
        if ids[0] == "103":
            return Response(json.dumps({"status": "error", "category": "RATE_LIMITS"}), status=429,
                            headers={"Retry-After": "42"}, content_type="application/json")
        results = [{"id": i, "properties": {}, "createdAt": "2026-03-02T08:00:00Z",
                    "updatedAt": "2026-03-02T08:00:00Z", "archived": False} for i in ids]
        body = json.dumps({"status": "COMPLETE", "results": results})
        return Response(body, content_type="application/json")

    update = "/crm/v3/objects/companies/batch/update"
    httpserver.expect_request(update, method="POST").respond_with_handler(answer)
    writes = [Write("hubspot", "account", f"r{i}", str(101 + i), {"arr": i}) for i in range(4)]

    results = make(httpserver, extra, max_attempts=1).push("account", writes)

    assert [(r.record_id, r.ok, r.retriable, r.retry_after) for r in results] == [
        ("r0", True, False, None), ("r1", True, False, None), ("r2", False, True, 42.0),
        ("r3", False, True, 42.0)]


def test_a_batch_too_large_for_the_vendor_is_sent_in_halves(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    def answer(request: Any) -> Response:
        inputs = json.loads(request.data)["inputs"]
        if len(inputs) > 2:
            too_large = json.dumps({"status": "error", "message": "Request entity too large"})
            return Response(too_large, status=413, content_type="application/json")
        results = [{"id": i["id"], "properties": {}, "createdAt": "2026-03-02T08:00:00Z",
                    "updatedAt": "2026-03-02T08:00:00Z", "archived": False} for i in inputs]
        body = json.dumps({"status": "COMPLETE", "results": results})
        return Response(body, content_type="application/json")

    update = "/crm/v3/objects/companies/batch/update"
    httpserver.expect_request(update, method="POST").respond_with_handler(answer)
    writes = [Write("hubspot", "account", f"r{i}", str(101 + i), {"arr": i}) for i in range(4)]

    results = make(httpserver, extra).push("account", writes)

    assert all(r.ok for r in results)


@pytest.mark.parametrize("status", [404, 405, 407])
def test_a_batch_refused_for_a_cause_no_write_holds_is_not_split(
    httpserver: HTTPServer, extra: dict[str, Any], status: int
) -> None:
    # a wrong object path, a method not allowed, a proxy wanting credentials: no write is at fault, so no
    # write is dead-lettered and the batch is sent once
    update = "/crm/v3/objects/companies/batch/update"
    httpserver.expect_request(update, method="POST").respond_with_json(
        {"status": "error", "category": "OBJECT_NOT_FOUND", "message": "no"}, status=status)
    writes = [Write("hubspot", "account", f"r{i}", str(101 + i), {"arr": i}) for i in range(4)]

    with pytest.raises((FatalConnectorError, ConnectorAuthError)):
        make(httpserver, extra).push("account", writes)
    assert len(sent(httpserver)) == 1


# ---------------------------------------------------------------- HubSpot as the helpdesk (tickets)
# HubSpot "Tickets" (hs_pipeline_stage: the default support pipeline's stages 1 New, 2 Waiting on contact,
# 3 Waiting on us, 4 Closed; hs_ticket_priority LOW/MEDIUM/HIGH/URGENT) and "Owners" (GET /crm/v3/owners,
# paged by paging.next.after).

TICKET_PROPERTIES = {"results": [
    {"name": "subject", "label": "Ticket name", "type": "string", "fieldType": "text", "options": []},
    {"name": "hs_pipeline_stage", "label": "Ticket status", "type": "enumeration", "fieldType": "select",
     "options": [{"label": "New", "value": "1"}, {"label": "Waiting on contact", "value": "2"},
                 {"label": "Waiting on us", "value": "3"}, {"label": "Closed", "value": "4"}]},
    {"name": "hs_ticket_priority", "label": "Priority", "type": "enumeration", "fieldType": "select",
     "options": [{"label": "Low", "value": "LOW"}, {"label": "Medium", "value": "MEDIUM"},
                 {"label": "High", "value": "HIGH"}, {"label": "Urgent", "value": "URGENT"}]},
    {"name": "hubspot_owner_id", "label": "Ticket owner", "type": "enumeration", "fieldType": "select",
     "options": []},
    {"name": "bridge_escalation", "label": "Escalated to", "type": "string", "fieldType": "text",
     "options": []},
]}
OWNERS = ({"results": [{"id": "77", "email": "alice@example.com", "firstName": "Alice"}],
           "paging": {"next": {"after": "1"}}},
          {"results": [{"id": "78", "email": "Bob@Example.com", "firstName": "Bob"}]})


def _helpdesk(server: HTTPServer, extra: dict[str, Any], **settings: Any) -> HubSpotConnector:
    server.expect_request("/crm/v3/properties/tickets", method="GET").respond_with_json(TICKET_PROPERTIES)
    server.expect_request("/crm/v3/owners/", query_string="limit=100",
                          method="GET").respond_with_json(OWNERS[0])
    server.expect_request("/crm/v3/owners/", query_string="after=1&limit=100",
                          method="GET").respond_with_json(OWNERS[1])
    values: dict[str, Any] = {"plugin": "hubspot", "base_url": server.url_for("").rstrip("/"),
                              "access_token": TOKEN, "kinds": ["ticket"],
                              "properties": {"ticket": ["subject", "hs_pipeline_stage", "hs_ticket_priority",
                                                        "hubspot_owner_id"]}}
    values.update(settings)
    return HubSpotConnector(ConnectorContext("hubspot", HubSpotSettings(**values), extra=extra))


def test_a_pulled_ticket_has_bridges_status_priority_and_assignee(
        httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    found = {"results": [
        {"id": "9001", "properties": {"subject": "Refund", "hs_pipeline_stage": "2",
                                      "hs_ticket_priority": "MEDIUM", "hubspot_owner_id": "78",
                                      "hs_lastmodifieddate": "2026-03-01T10:00:00Z"},
         "updatedAt": "2026-03-01T10:00:00Z", "archived": False},
        {"id": "9002", "properties": {"subject": "Login", "hs_pipeline_stage": "77777",
                                      "hs_ticket_priority": "HIGH", "hubspot_owner_id": "99",
                                      "hs_lastmodifieddate": "2026-03-01T10:01:00Z"},
         "updatedAt": "2026-03-01T10:01:00Z", "archived": False},
    ]}
    httpserver.expect_request("/crm/v3/objects/tickets/search", method="POST").respond_with_json(found)
    connector = _helpdesk(httpserver, extra, statuses={"1": "open", "2": "pending", "77777": "on_hold"})
    (page,) = list(connector.pull("ticket", Cursor(None, None)))
    attrs = {c.external_id: {k: c.attrs.get(k) for k in ("status", "priority", "assignee")}
             for c in page.changes}
    assert attrs == {"9001": {"status": "pending", "priority": "normal", "assignee": "Bob@Example.com"},
                     "9002": {"status": "on_hold", "priority": "high", "assignee": "99"}}  # (no owner 99)


def test_a_ticket_write_goes_as_hubspot_properties_and_an_effect_without_a_property_is_refused_by_name(
        httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    httpserver.expect_request("/crm/v3/objects/tickets/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200"))
    connector = _helpdesk(httpserver, extra, effect_properties={"escalation": "bridge_escalation"})
    results = connector.push("ticket", [
        Write("hubspot", "ticket", "r1", "9001", {"status": "closed", "priority": "urgent",
                                                  "assignee": "bob@example.com"}),
        Write("hubspot", "ticket", "r2", "9002", {"escalation": "leads"}),
        Write("hubspot", "ticket", "r3", "9003", {"follow_up": "Any news?"}),
        Write("hubspot", "ticket", "r4", "9004", {"status": "resolved"}),
        Write("hubspot", "ticket", "r5", "9005", {"assignee": "carol@example.com"}),
    ])
    assert [(r.record_id, r.ok) for r in results] == [
        ("r1", True), ("r2", True), ("r3", False), ("r4", False), ("r5", False)]
    assert [r.error for r in results[2:]] == [
        "hubspot ticket r3: HubSpot tickets have no property for 'follow_up': name a ticket property for it "
        "in [connectors.hubspot] effect_properties",
        "hubspot ticket r4: no HubSpot pipeline stage is status 'resolved': map one in "
        "[connectors.hubspot] statuses",
        "hubspot ticket r5: no HubSpot owner has the email 'carol@example.com' (to assign the ticket to)",
    ]
    (update,) = [b for _m, path, b in sent(httpserver) if path.endswith("/batch/update")]
    assert [(i["id"], i["properties"]) for i in update["inputs"]] == [
        ("9001", {"hs_pipeline_stage": "4", "hs_ticket_priority": "URGENT", "hubspot_owner_id": "78"}),
        ("9002", {"bridge_escalation": "leads"}),
    ]


def test_a_stage_mapped_to_no_ticket_status_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="'done': a stage maps to one of open, pending"):
        HubSpotSettings(plugin="hubspot", statuses={"4": "done"})


def test_an_owner_added_in_hubspot_after_the_owners_were_read_is_found(
        httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    httpserver.expect_request("/crm/v3/objects/tickets/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200"))
    connector = _helpdesk(httpserver, extra)
    (first,) = connector.push("ticket", [
        Write("hubspot", "ticket", "r1", "9001", {"assignee": "bob@example.com"})])
    assert first.ok
    # carol joins as an owner: the owners are read again for the email they did not have (at most every
    # owners.refresh seconds: none here), once for both unknown emails
    connector.owners.refresh = 0.0
    httpserver.clear()
    httpserver.expect_request("/crm/v3/objects/tickets/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200"))
    httpserver.expect_request("/crm/v3/owners/").respond_with_json(
        {"results": [{"id": "78", "email": "bob@example.com"}, {"id": "79", "email": "carol@example.com"}]})
    httpserver.expect_request("/crm/v3/properties/tickets", method="GET").respond_with_json(TICKET_PROPERTIES)
    second = connector.push("ticket", [
        Write("hubspot", "ticket", "r2", "9002", {"assignee": "carol@example.com"}),
        Write("hubspot", "ticket", "r3", "9003", {"assignee": "dan@example.com"}),
    ])
    assert [(r.record_id, r.ok) for r in second] == [("r2", True), ("r3", False)]
    # (carol, then dan: each unknown; a real owners.refresh, ten minutes, spares the second read)
    assert [r.path for r, _ in httpserver.log].count("/crm/v3/owners/") == 2
    (update,) = [b for _m, path, b in sent(httpserver) if path.endswith("/batch/update")]
    assert update["inputs"][0]["properties"] == {"hubspot_owner_id": "79"}


def test_owners_are_not_read_again_within_owners_refresh(
        httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    httpserver.expect_request("/crm/v3/objects/tickets/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200"))
    connector = _helpdesk(httpserver, extra)
    for email in ("nobody@example.com", "noone@example.com", "bob@example.com"):
        connector.push("ticket", [Write("hubspot", "ticket", "r1", "9001", {"assignee": email})])
    assert [r.path for r, _ in httpserver.log].count("/crm/v3/owners/") == 2  # (the two pages, read once)


def test_tags_without_a_property_are_left_out_of_a_write_whose_fields_are_sent(
        httpserver: HTTPServer, extra: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    httpserver.expect_request("/crm/v3/objects/tickets/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200"))
    connector = _helpdesk(httpserver, extra)
    with caplog.at_level("WARNING", logger="bridge.connectors.hubspot"):
        (result,) = connector.push("ticket", [
            Write("hubspot", "ticket", "r1", "9001", {"priority": "high", "tags": ["billing/refund"]})])
    assert result.ok
    (update,) = [b for _m, path, b in sent(httpserver) if path.endswith("/batch/update")]
    assert update["inputs"][0]["properties"] == {"hs_ticket_priority": "HIGH"}
    assert [r.getMessage() for r in caplog.records] == [
        "hubspot: tags are not written: name a ticket field for them in [connectors.hubspot] "
        "effect_properties"]
