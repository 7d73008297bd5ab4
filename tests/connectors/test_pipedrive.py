"""The Pipedrive connector over httpx (respx), answering with the shapes of Pipedrive's API v1 reference.

developers.pipedrive.com/docs/api/v1: Organizations (GET /v1/organizations, PUT /v1/organizations/{id}),
OrganizationFields (custom fields: 40-character keys, enum/set options), Recents (GET /v1/recents), and
"Pagination" (additional_data.pagination.more_items_in_collection / next_start); rate limits send
x-ratelimit-remaining / x-ratelimit-reset and 429.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from bridge.connector import ConnectorContext, Cursor
from bridge.connectors.pipedrive import PipedriveConnector, PipedriveSettings
from bridge.errors import ConnectorAuthError
from bridge.model import Write, parse_time

from .conftest import FakeTime, load

BASE = "https://acme.pipedrive.com"
TOKEN = "pd-token-0123456789abcdef"
TIER = "5f1a0d7c2b9e4a8f6c3d1e0b7a9c8d6e5f4a3b2c"
ARR = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
REGIONS = "0a9b8c7d6e5f40312a3b4c5d6e7f8091a2b3c4d5"


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("/v1/organizationFields").respond(json=load("pipedrive", "organization_fields"))
        yield router


def make(extra: dict[str, Any], **settings: Any) -> PipedriveConnector:
    values: dict[str, Any] = {"plugin": "pipedrive", "base_url": BASE, "api_token": TOKEN}
    values.update(settings)
    return PipedriveConnector(ConnectorContext("pipedrive", PipedriveSettings(**values), extra=extra))


def test_first_pull_lists_every_page_and_names_custom_fields(
    api: respx.MockRouter, extra: dict[str, Any]
) -> None:
    route = api.get("/v1/organizations").mock(
        side_effect=[
            httpx.Response(200, json=load("pipedrive", "organizations_page1")),
            httpx.Response(200, json=load("pipedrive", "organizations_page2")),
        ]
    )

    pages = list(make(extra, page_size=1).pull("account", Cursor()))

    assert [[c.external_id for c in p.changes] for p in pages] == [["11"], ["12"]]
    assert pages[-1].cursor == Cursor(parse_time("2026-03-01T11:00:00Z"), "12")
    acme = pages[0].changes[0]
    assert acme.fields[TIER] == "Gold" and acme.fields["Tier"] == "Gold"
    assert acme.fields["Regions"] == ["EMEA", "APAC"] and acme.fields["ARR"] == 120000
    assert acme.fields["owner_id"] == 7 and acme.attrs == {"name": "Acme", "owner": 7}
    params = [dict(call.request.url.params) for call in route.calls]
    assert params == [
        {"sort": "update_time ASC", "start": "0", "limit": "1"},
        {"sort": "update_time ASC", "start": "1", "limit": "1"},
    ]
    request = route.calls[0].request
    assert request.headers["x-api-token"] == TOKEN and TOKEN not in str(request.url)


def test_incremental_pull_reads_recents_and_an_empty_page(
    api: respx.MockRouter, extra: dict[str, Any]
) -> None:
    route = api.get("/v1/recents").mock(
        side_effect=[
            httpx.Response(200, json=load("pipedrive", "recents_organizations")),
            httpx.Response(200, json=load("pipedrive", "recents_empty")),
        ]
    )
    connector = make(extra)
    cursor = Cursor(parse_time("2026-03-01T11:00:00Z"), "12")

    first = list(connector.pull("account", cursor))
    second = list(connector.pull("account", first[-1].cursor))

    assert [c.fields["Tier"] for c in first[0].changes] == ["Silver"]
    assert second[0].changes == [] and second[0].cursor == first[-1].cursor
    assert dict(route.calls[0].request.url.params) == {
        "since_timestamp": "2026-03-01 10:58:00",
        "items": "organization",
        "start": "0",
        "limit": "100",
    }


def test_429_waits_for_the_reset_then_5xx_backs_off(
    api: respx.MockRouter, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    api.get("/v1/organizations").mock(
        side_effect=[
            httpx.Response(
                429,
                json=load("pipedrive", "too_many_requests"),
                headers={"Retry-After": "2", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"},
            ),
            httpx.Response(500, json={"success": False, "error": "Internal server error"}),
            httpx.Response(200, json=load("pipedrive", "organizations_page2")),
        ]
    )

    pages = list(make(extra).pull("account", Cursor()))

    assert [c.external_id for c in pages[0].changes] == ["12"]
    assert fake_time.sleeps == [2.0, 0.5]


def test_401_is_an_auth_error(api: respx.MockRouter, extra: dict[str, Any]) -> None:
    route = api.get("/v1/organizations").respond(401, json=load("pipedrive", "unauthorized"))

    with pytest.raises(ConnectorAuthError) as info:
        list(make(extra).pull("account", Cursor()))
    assert route.call_count == 1 and TOKEN not in str(info.value)


def test_push_maps_names_and_labels_to_keys_and_option_ids(
    api: respx.MockRouter, extra: dict[str, Any]
) -> None:
    put = api.put("/v1/organizations/11").respond(json=load("pipedrive", "organization_updated"))
    post = api.post("/v1/organizations").respond(201, json={"success": True, "data": {"id": 99}})
    writes = [
        Write(
            "pipedrive", "account", "r1", "11", {"Tier": "silver", ARR: 130000, "Regions": ["APAC", "AMER"]}
        ),
        Write("pipedrive", "account", "r2", None, {"name": "Newco", "Tier": "Platinum"}),
        Write("pipedrive", "account", "r3", None, {"name": "Newco"}),
        Write("pipedrive", "account", "r4", "11", {"Colour": "red"}),
    ]

    results = make(extra).push("account", writes)

    assert [(r.ok, r.external_id) for r in results] == [
        (True, "11"),
        (False, None),
        (True, "99"),
        (False, "11"),
    ]
    assert "'Platinum' is not an option" in (results[1].error or "")
    assert "no Pipedrive field 'Colour'" in (results[3].error or "")
    assert json.loads(put.calls[0].request.content) == {TIER: 32, ARR: 130000, REGIONS: "42,43"}
    assert json.loads(post.calls[0].request.content) == {"name": "Newco"} and post.call_count == 1


def test_describe_lists_keys_with_names_and_options(api: respx.MockRouter, extra: dict[str, Any]) -> None:
    fields = {f.label: f for f in make(extra).describe("account")}

    assert (
        fields["Tier"].name == TIER
        and fields["Tier"].type == "enum"
        and fields["Tier"].options == ("Gold", "Silver")
    )
    assert fields["Regions"].type == "set" and fields["ARR"].type == "monetary"
