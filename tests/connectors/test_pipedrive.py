"""The Pipedrive connector over httpx (respx), answering with the shapes of Pipedrive's API v1 reference.

developers.pipedrive.com/docs/api/v1: Organizations (GET /v1/organizations, PUT /v1/organizations/{id}),
OrganizationFields (custom fields: 40-character keys, enum/set options), Recents (GET /v1/recents), and
"Pagination" (additional_data.pagination.more_items_in_collection / next_start); rate limits send
x-ratelimit-remaining / x-ratelimit-reset and 429. Search: GET /v1/persons/search, /v1/organizations/search,
/v1/deals/search (term, fields, exact_match; answer data.items[].item with result_score).
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
        router.get("/v1/personFields").respond(json=load("pipedrive", "person_fields"))
        router.get("/v1/dealFields").respond(json=load("pipedrive", "deal_fields"))
        yield router


def make(extra: dict[str, Any], **settings: Any) -> PipedriveConnector:
    values: dict[str, Any] = {"plugin": "pipedrive", "base_url": BASE, "api_token": TOKEN}
    values.update(settings)
    return PipedriveConnector(ConnectorContext("pipedrive", PipedriveSettings(**values), extra=extra))


def test_first_pull_lists_the_first_page_then_recents_from_its_last_time_and_names_custom_fields(
    api: respx.MockRouter, extra: dict[str, Any]
) -> None:
    route = api.get("/v1/organizations").mock(
        return_value=httpx.Response(200, json=load("pipedrive", "organizations_page1")))
    org12 = load("pipedrive", "organizations_page2")["data"][0]
    recents = api.get("/v1/recents").mock(return_value=httpx.Response(200, json={
        "success": True, "data": [{"item": "organization", "id": 12, "data": org12}],
        "additional_data": {"since_timestamp": "2026-03-01 09:59:59",
                            "last_timestamp_on_page": "2026-03-01 11:00:00",
                            "pagination": {"start": 0, "limit": 1, "more_items_in_collection": False}}}))

    pages = list(make(extra, page_size=1).pull("account", Cursor()))

    assert [[c.external_id for c in p.changes] for p in pages] == [["11"], ["12"]]
    assert pages[-1].cursor == Cursor(parse_time("2026-03-01T11:00:00Z"), "12")
    acme = pages[0].changes[0]
    assert acme.fields[TIER] == "Gold" and acme.fields["Tier"] == "Gold"
    assert acme.fields["Regions"] == ["EMEA", "APAC"] and acme.fields["ARR"] == 120000
    assert acme.fields["owner_id"] == 7 and acme.attrs == {"name": "Acme", "owner": 7}
    assert [dict(call.request.url.params) for call in route.calls] == [
        {"sort": "update_time ASC", "start": "0", "limit": "1"}]
    # page 2 asks what changed since page 1's last update time (10:00:00), a second before it
    assert [dict(call.request.url.params) for call in recents.calls] == [
        {"since_timestamp": "2026-03-01 09:59:59", "items": "organization", "start": "0", "limit": "1"}]
    request = route.calls[0].request
    assert request.headers["x-api-token"] == TOKEN and TOKEN not in str(request.url)


def test_a_record_edited_during_a_pull_skips_nothing(api: respx.MockRouter, extra: dict[str, Any]) -> None:
    people = {i: f"2026-03-02 10:0{i}:00" for i in range(1, 5)}
    calls = {"n": 0}

    def rows(since: str | None) -> list[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 2:  # a Pipedrive user saves person 1 between our first and second page
            people[1] = "2026-03-02 10:30:00"
        found = sorted((t, i) for i, t in people.items() if since is None or t > since)
        return [{"id": i, "name": f"P{i}", "update_time": t, "active_flag": True} for t, i in found]

    def page(request: httpx.Request, items: list[Any]) -> httpx.Response:
        start, limit = int(request.url.params["start"]), int(request.url.params["limit"])
        more = start + limit < len(items)
        pagination = {"start": start, "limit": limit, "more_items_in_collection": more,
                      **({"next_start": start + limit} if more else {})}
        return httpx.Response(200, json={"success": True, "data": items[start:start + limit],
                                         "additional_data": {"pagination": pagination}})

    api.get("/v1/personFields").respond(json={"success": True, "data": [], "additional_data": {}})
    api.get("/v1/persons").mock(side_effect=lambda request: page(request, rows(None)))
    api.get("/v1/recents").mock(side_effect=lambda request: page(request, [  # after the timestamp, strictly
        {"item": "person", "id": r["id"], "data": r} for r in rows(request.url.params["since_timestamp"])]))

    pages = list(make(extra, page_size=2).pull("contact", Cursor()))

    assert [c.external_id for p in pages for c in p.changes] == ["1", "2", "3", "4", "1"]
    assert pages[-1].cursor == Cursor(parse_time("2026-03-02T10:30:00Z"), "1")


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
    search = api.get("/v1/organizations/search").respond(json=load("pipedrive", "search_empty"))
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
    assert search.call_count == 1  # only the create that reached the wire was searched for first


def test_describe_lists_keys_with_names_and_options(api: respx.MockRouter, extra: dict[str, Any]) -> None:
    fields = {f.label: f for f in make(extra).describe("account")}

    assert (
        fields["Tier"].name == TIER
        and fields["Tier"].type == "enum"
        and fields["Tier"].options == ("Gold", "Silver")
    )
    assert fields["Regions"].type == "set" and fields["ARR"].type == "monetary"


# ---------------------------------------------------------------- idempotent creates


def methods(api: respx.MockRouter) -> list[tuple[str, str]]:
    """(method, path) of every call but the ``*Fields`` reads, in order."""
    return [
        (c.request.method, c.request.url.path) for c in api.calls if not c.request.url.path.endswith("Fields")
    ]


def test_a_create_repeated_after_a_crash_updates_the_person_it_made(
    api: respx.MockRouter, extra: dict[str, Any]
) -> None:
    people: list[dict[str, Any]] = []  # Pipedrive's persons: the first POST lands, whatever happens next

    def search(request: httpx.Request) -> httpx.Response:
        term = request.url.params["term"].casefold()
        found = [p for p in people if term in (e.casefold() for e in p["emails"])]
        answer = load("pipedrive", "search_empty")
        answer["data"]["items"] = [{"result_score": 1.0, "item": {**p, "type": "person"}} for p in found]
        return httpx.Response(200, json=answer)

    def create(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        people.append({"id": 31 + len(people), "name": body["name"], "emails": [body["email"]]})
        return httpx.Response(201, json={"success": True, "data": {"id": people[-1]["id"]}})

    api.get("/v1/persons/search").mock(side_effect=search)
    post = api.post("/v1/persons").mock(side_effect=create)
    put = api.put("/v1/persons/31").respond(json={"success": True, "data": {"id": 31, "name": "Ann Lee"}})
    write = Write("pipedrive", "contact", "r1", None, {"name": "Ann Lee", "Email": "Ann@Acme.example"})
    connector = make(extra, kinds=["contact"])

    first = connector.push("contact", [write])
    again = connector.push("contact", [write])  # the outbox was not marked done: the same create again

    assert [(r.ok, r.external_id) for r in first + again] == [(True, "31"), (True, "31")]
    assert methods(api) == [
        ("GET", "/v1/persons/search"),
        ("POST", "/v1/persons"),
        ("GET", "/v1/persons/search"),
        ("PUT", "/v1/persons/31"),
    ]
    assert post.call_count == 1 and len(people) == 1
    assert json.loads(put.calls[0].request.content) == {"name": "Ann Lee", "email": "Ann@Acme.example"}
    searches = [c.request for c in api.calls if c.request.url.path == "/v1/persons/search"]
    assert dict(searches[0].url.params) == {
        "term": "Ann@Acme.example",
        "fields": "email",
        "exact_match": "true",
        "limit": "10",
    }
    assert searches[0].headers["x-api-token"] == TOKEN


@pytest.mark.parametrize(
    ("kind", "fields", "path", "answer", "search_params", "found"),
    [
        (
            "account",
            {"Name": "Acme", "Tier": "Gold"},
            "/v1/organizations",
            "organizations_search_one",
            {"term": "Acme", "fields": "name"},
            "11",
        ),
        (
            "contact",
            {"name": "Ann Lee", "email": [{"value": "ann@acme.example", "primary": True, "label": "work"}]},
            "/v1/persons",
            "persons_search_one",
            {"term": "ann@acme.example", "fields": "email"},
            "31",
        ),
        (
            "deal",
            {"title": "Acme renewal 2026", "value": 120000},
            "/v1/deals",
            "deals_search_one",
            {"term": "Acme renewal 2026", "fields": "title"},
            "501",
        ),
    ],
)
def test_one_exact_match_is_updated_instead_of_created(
    api: respx.MockRouter,
    extra: dict[str, Any],
    kind: str,
    fields: dict[str, Any],
    path: str,
    answer: str,
    search_params: dict[str, str],
    found: str,
) -> None:
    search = api.get(f"{path}/search").respond(json=load("pipedrive", answer))
    api.put(f"{path}/{found}").respond(json={"success": True, "data": {"id": int(found)}})
    api.post(path).respond(201, json={"success": True, "data": {"id": 999}})

    results = make(extra, kinds=[kind]).push(kind, [Write("pipedrive", kind, "r1", None, fields)])

    assert [(r.ok, r.external_id) for r in results] == [(True, found)]
    assert methods(api) == [("GET", f"{path}/search"), ("PUT", f"{path}/{found}")]
    assert dict(search.calls[0].request.url.params) == {**search_params, "exact_match": "true", "limit": "10"}


@pytest.mark.parametrize(
    ("kind", "fields", "path", "searched"),
    [
        ("account", {"name": "Newco"}, "/v1/organizations", True),
        ("contact", {"name": "Bo Chen", "email": "bo@newco.example"}, "/v1/persons", True),
        ("contact", {"name": "No Email"}, "/v1/persons", False),  # nothing to match on: a plain create
        ("deal", {"title": "Newco pilot"}, "/v1/deals", True),
    ],
)
def test_no_match_posts_a_create(
    api: respx.MockRouter,
    extra: dict[str, Any],
    kind: str,
    fields: dict[str, Any],
    path: str,
    searched: bool,
) -> None:
    api.get(f"{path}/search").respond(json=load("pipedrive", "search_empty"))
    post = api.post(path).respond(201, json={"success": True, "data": {"id": 77}})

    results = make(extra, kinds=[kind]).push(kind, [Write("pipedrive", kind, "r1", None, fields)])

    assert [(r.ok, r.external_id) for r in results] == [(True, "77")]
    search = [("GET", f"{path}/search")] if searched else []
    assert methods(api) == [*search, ("POST", path)]
    assert json.loads(post.calls[0].request.content) == fields


def test_several_matches_fail_that_write_naming_the_candidates(
    api: respx.MockRouter, extra: dict[str, Any]
) -> None:
    api.get("/v1/organizations/search").mock(
        side_effect=[
            httpx.Response(200, json=load("pipedrive", "organizations_search_two")),
            httpx.Response(200, json=load("pipedrive", "search_empty")),
        ]
    )
    post = api.post("/v1/organizations").respond(201, json={"success": True, "data": {"id": 99}})
    put = api.put(url__regex=r"/v1/organizations/\d+").respond(json={"success": True, "data": {"id": 11}})
    writes = [
        Write("pipedrive", "account", "r1", None, {"name": "Acme"}),
        Write("pipedrive", "account", "r2", None, {"name": "Newco"}),
    ]

    results = make(extra).push("account", writes)

    failed, created = results
    assert (failed.ok, failed.external_id, failed.retriable) == (False, None, False)
    assert failed.error == (
        "pipedrive record r1: 2 Pipedrive organizations already have name 'Acme' (ids 11, 14); "
        "merge them or link the record to one"
    )
    assert (created.ok, created.external_id) == (True, "99")
    assert put.call_count == 0 and post.call_count == 1
    assert json.loads(post.calls[0].request.content) == {"name": "Newco"}
