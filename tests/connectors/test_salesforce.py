"""The Salesforce connector through the real simple-salesforce over real TLS (a trustme CA) on 127.0.0.1.

Bodies in tests/data/salesforce/ follow Salesforce's REST API Developer Guide: "Query" and "Query More
Results" (resources_query.htm, nextRecordsUrl), "sObject Collections"
(resources_composite_sobjects_collections.htm; upsert:
resources_composite_sobjects_collections_upsert.htm, HTTP 200 with per-item success/errors),
"sObject Describe" (resources_sobject_describe.htm), "Status Codes and Error Responses" (errorcodes.htm:
INVALID_SESSION_ID, REQUEST_LIMIT_EXCEEDED), the Sforce-Limit-Info header (headers_api_usage.htm) and the
OAuth 2.0 Client Credentials Flow (remoteaccess_oauth_client_credentials_flow.htm).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bridge.connector import ConnectorContext, Cursor
from bridge.connectors.salesforce import SalesforceConnector, SalesforceSettings
from bridge.errors import ConnectorAuthError, FatalConnectorError, RetriableConnectorError
from bridge.helpdesk import People
from bridge.model import Write, parse_time

from .conftest import FakeTime, load

SECRET = "client-secret-do-not-log"
V = "/services/data/v62.0"
SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs" / "salesforce"
FIELDS = ["Id", "Name", "Website", "ARR__c", "OwnerId", "Industry", "SystemModstamp", "IsDeleted"]


def token_body(server: HTTPServer, token: str = "00D5g000004AbCd!AQ4AQFirstTokenValue") -> dict[str, Any]:
    body: dict[str, Any] = load("salesforce", "token")
    body["instance_url"] = server.url_for("").rstrip("/")
    body["access_token"] = token
    return body


def make(
    server: HTTPServer, extra: dict[str, Any], ca_file: str | None, **settings: Any
) -> SalesforceConnector:
    values: dict[str, Any] = {
        "plugin": "salesforce",
        "base_url": server.url_for("").rstrip("/"),
        "client_id": "3MVG9-consumer-key",
        "client_secret": SECRET,
        "ca_bundle": ca_file,
        "fields": {"account": FIELDS},
        "external_id_field": {"account": "Bridge_Id__c"},
    }
    values.update(settings)
    # an owner (OwnerId 005...) is named by email: the org's users are read once
    users = {"q": "SELECT Id, Email FROM User WHERE IsActive = true"}
    server.expect_request(f"{V}/query/", method="GET", query_string=users).respond_with_json(USERS)
    return SalesforceConnector(ConnectorContext("salesforce", SalesforceSettings(**values), extra=extra))


def expect_token(server: HTTPServer, token: str = "00D5g000004AbCd!AQ4AQFirstTokenValue") -> None:
    server.expect_ordered_request("/services/oauth2/token", method="POST").respond_with_json(
        token_body(server, token)
    )


def requests_of(server: HTTPServer) -> list[Request]:
    return [r for r, _ in server.log]


@pytest.fixture(autouse=True)
def _environment_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # the trap of TESTING.md: requests prefers this over a Session's verify; the connector must not
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


def test_pull_pages_with_next_records_url_over_tls(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    expect_token(tls_server)
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        load("salesforce", "query_accounts_page1"), headers={"Sforce-Limit-Info": "api-usage=18/15000"}
    )
    users = {"q": "SELECT Id, Email FROM User WHERE IsActive = true"}
    tls_server.expect_ordered_request(f"{V}/query/", method="GET",
                                      query_string=users).respond_with_json(USERS)
    tls_server.expect_ordered_request(f"{V}/query/01gD0000002HU6KIAW-2000", method="GET").respond_with_json(
        load("salesforce", "query_accounts_page2")
    )
    connector = make(tls_server, extra, ca_file)

    pages = list(connector.pull("account", Cursor(parse_time("2026-03-01T09:00:00Z"), "001")))

    assert [[c.external_id for c in p.changes] for p in pages] == [
        ["001D000000IqhSLIAZ", "001D000000IqhSMIAZ"],
        ["001D000000IqhSNIAZ"],
    ]
    assert pages[-1].cursor == Cursor(parse_time("2026-03-01T11:00:00Z"), "001D000000IqhSNIAZ")
    acme = pages[0].changes[0]
    assert acme.fields["ARR__c"] == 120000.0 and "attributes" not in acme.fields
    assert acme.attrs == {"name": "Acme", "domain": "acme.example", "owner": "005D0000001AbCdIAK"}
    token, query, _users, more = requests_of(tls_server)  # (the users at the first owner: named by email)
    assert parse_qs(token.get_data(as_text=True)) == {
        "grant_type": ["client_credentials"],
        "client_id": ["3MVG9-consumer-key"],
        "client_secret": [SECRET],
    }
    assert query.args["q"] == (
        f"SELECT {', '.join(FIELDS)} FROM Account WHERE SystemModstamp >= 2026-03-01T08:58:00Z"
        " ORDER BY SystemModstamp ASC, Id ASC"
    )
    assert query.headers["Authorization"] == "Bearer 00D5g000004AbCd!AQ4AQFirstTokenValue"
    assert more.path.endswith("01gD0000002HU6KIAW-2000")
    assert connector.bucket.daily_total == 15000


def test_untrusted_certificate_is_fatal_without_the_ca_bundle(
    tls_server: HTTPServer, extra: dict[str, Any]
) -> None:
    connector = make(tls_server, extra, None)

    with pytest.raises(FatalConnectorError, match="TLS verification failed"):
        list(connector.pull("account", Cursor()))


def test_pull_takes_deleted_and_merged_records_through_query_all(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    # dome_queryall.htm: Query filters out records deleted by a delete or a merge; QueryAll returns them
    def row(account_id: str, deleted: bool) -> dict[str, Any]:
        return {"attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{account_id}"},
                "Id": account_id, "Name": "Acme", "Website": None, "ARR__c": None, "OwnerId": None,
                "Industry": None, "SystemModstamp": "2026-03-01T10:00:00.000+0000", "IsDeleted": deleted}

    expect_token(tls_server)
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        {"totalSize": 2, "done": True, "records": [row("001A", False), row("001B", True)]})

    pages = list(make(tls_server, extra, ca_file).pull("account", Cursor()))

    assert [(c.external_id, c.deleted) for p in pages for c in p.changes] == [("001A", False), ("001B", True)]


def test_a_configured_instance_url_wins_over_the_one_the_token_names(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    token = token_body(tls_server) | {"instance_url": "https://acme.my.salesforce.invalid"}
    tls_server.expect_ordered_request("/services/oauth2/token", method="POST").respond_with_json(token)
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        load("salesforce", "query_empty"))
    connector = make(tls_server, extra, ca_file, instance_url=tls_server.url_for("").rstrip("/"))

    pages = list(connector.pull("account", Cursor()))

    assert pages[0].changes == []
    assert [r.path for r in requests_of(tls_server)] == ["/services/oauth2/token", f"{V}/queryAll/"]


def test_empty_pull(tls_server: HTTPServer, extra: dict[str, Any], ca_file: str) -> None:
    expect_token(tls_server)
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        load("salesforce", "query_empty")
    )

    pages = list(make(tls_server, extra, ca_file).pull("account", Cursor()))

    assert len(pages) == 1 and pages[0].changes == [] and pages[0].cursor == Cursor()
    assert "WHERE" not in requests_of(tls_server)[1].args["q"]


def test_expired_session_is_renewed_once(tls_server: HTTPServer, extra: dict[str, Any], ca_file: str) -> None:
    expect_token(tls_server, "first-token")
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        load("salesforce", "invalid_session"), status=401
    )
    expect_token(tls_server, "second-token")
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        load("salesforce", "query_empty")
    )

    list(make(tls_server, extra, ca_file).pull("account", Cursor()))

    sent = requests_of(tls_server)
    assert [r.path for r in sent] == [
        "/services/oauth2/token",
        f"{V}/queryAll/",
        "/services/oauth2/token",
        f"{V}/queryAll/",
    ]
    assert sent[1].headers["Authorization"] == "Bearer first-token"
    assert sent[3].headers["Authorization"] == "Bearer second-token"


def test_fixed_session_that_expired_is_an_auth_error(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    tls_server.expect_request(f"{V}/queryAll/", method="GET").respond_with_json(
        load("salesforce", "invalid_session"), status=401
    )
    connector = make(
        tls_server,
        extra,
        ca_file,
        client_id=None,
        client_secret=None,
        session_id="old-session",
        instance_url=tls_server.url_for("").rstrip("/"),
    )

    with pytest.raises(ConnectorAuthError) as info:
        list(connector.pull("account", Cursor()))
    assert "old-session" not in str(info.value) and len(tls_server.log) == 1


def test_refused_credentials_are_an_auth_error_without_the_secret(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    tls_server.expect_request("/services/oauth2/token", method="POST").respond_with_json(
        load("salesforce", "oauth_invalid_client"), status=400
    )

    with pytest.raises(ConnectorAuthError) as info:
        list(make(tls_server, extra, ca_file).pull("account", Cursor()))
    assert SECRET not in str(info.value) and "invalid_client" in str(info.value)


def test_password_flow_sends_password_plus_security_token(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    expect_token(tls_server)
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        load("salesforce", "query_empty")
    )

    list(
        make(
            tls_server, extra, ca_file, username="ops@example.com", password="pw", security_token="TOKEN123"
        ).pull("account", Cursor())
    )

    form = parse_qs(requests_of(tls_server)[0].get_data(as_text=True))
    assert form["grant_type"] == ["password"] and form["password"] == ["pwTOKEN123"]
    assert form["username"] == ["ops@example.com"]


def test_429_and_5xx_are_retried_with_recorded_sleeps(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str, fake_time: FakeTime
) -> None:
    expect_token(tls_server)
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_response(
        Response("[]", status=429, headers={"Retry-After": "7"}, content_type="application/json")
    )
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        [{"message": "server error", "errorCode": "SERVER_UNAVAILABLE"}], status=503
    )
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        load("salesforce", "query_empty")
    )

    list(make(tls_server, extra, ca_file).pull("account", Cursor()))

    assert len(tls_server.log) == 4
    assert fake_time.sleeps == [7.0, 0.5]  # Retry-After, then the jittered backoff of the second attempt


def test_a_login_answered_503_is_retried_by_one_policy_not_one_inside_another(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str, fake_time: FakeTime
) -> None:
    tls_server.expect_request("/services/oauth2/token", method="POST").respond_with_json(
        {"error": "unavailable", "error_description": "maintenance"}, status=503)

    with pytest.raises(RetriableConnectorError):
        list(make(tls_server, extra, ca_file).pull("account", Cursor()))

    assert len(tls_server.log) == 4  # max_attempts (4) token requests, no query
    assert len(fake_time.sleeps) == 3


def describe_handler(server: HTTPServer) -> None:
    server.expect_request(f"{V}/sobjects/Account/describe", method="GET").respond_with_json(
        load("salesforce", "describe_account")
    )


def test_push_reads_every_item_and_refuses_restricted_picklist_values_before_sending(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    expect_token(tls_server)
    describe_handler(tls_server)
    tls_server.expect_request(
        f"{V}/composite/sobjects/Account/Bridge_Id__c", method="PATCH"
    ).respond_with_json(load("salesforce", "collections_partial"))
    writes = [
        Write("salesforce", "account", "r1", None, {"ARR__c": 10, "Industry": "Energy"}),
        Write("salesforce", "account", "r2", None, {"Industry": "Mining"}),  # inactive: refused
        Write("salesforce", "account", "r3", None, {"Segments__c": ["SMB", "Enterprise"]}),
        Write("salesforce", "account", "r4", None, {"Rating": "Warm"}),  # not restricted: sent
        Write("salesforce", "account", "r5", None, {"Segments__c": ["SMB", "Startup"]}),
    ]

    results = make(tls_server, extra, ca_file).push("account", writes)

    assert [(r.record_id, r.ok, r.retriable) for r in results] == [
        ("r1", True, False),
        ("r2", False, False),
        ("r3", False, False),
        ("r4", False, True),
        ("r5", False, False),
    ]
    assert results[0].external_id == "001D000000IqhSLIAZ"
    assert "restricted picklist Industry" in (results[1].error or "")
    assert "'Startup'" in (results[4].error or "")
    assert "DUPLICATE_VALUE" in (results[2].error or "")
    patch = next(r for r in requests_of(tls_server) if r.method == "PATCH")
    assert json.loads(patch.data) == {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Account"}, "ARR__c": 10, "Industry": "Energy", "Bridge_Id__c": "r1"},
            {"attributes": {"type": "Account"}, "Segments__c": "SMB;Enterprise", "Bridge_Id__c": "r3"},
            {"attributes": {"type": "Account"}, "Rating": "Warm", "Bridge_Id__c": "r4"},
        ],
    }


def test_push_with_salesforce_ids_updates_by_id_in_batches_of_200(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    def answer(request: Request) -> Response:
        records = json.loads(request.data)["records"]
        return Response(
            json.dumps([{"id": r["Id"], "success": True, "errors": []} for r in records]),
            content_type="application/json",
        )

    expect_token(tls_server)
    describe_handler(tls_server)
    tls_server.expect_request(f"{V}/composite/sobjects", method="PATCH").respond_with_handler(answer)
    writes = [Write("salesforce", "account", f"r{i}", f"001{i:015d}", {"ARR__c": i}) for i in range(450)]

    results = make(tls_server, extra, ca_file).push("account", writes)

    assert all(r.ok for r in results)
    patches = [json.loads(r.data) for r in requests_of(tls_server) if r.method == "PATCH"]
    assert [len(p["records"]) for p in patches] == [200, 200, 50]
    assert patches[0]["records"][0] == {
        "attributes": {"type": "Account"},
        "Id": "001000000000000000",
        "ARR__c": 0,
    }


def test_api_budget_reserve_pauses_the_pull(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    expect_token(tls_server)
    tls_server.expect_ordered_request(f"{V}/queryAll/", method="GET").respond_with_json(
        load("salesforce", "query_accounts_page1"), headers={"Sforce-Limit-Info": "api-usage=14260/15000"}
    )
    connector = make(tls_server, extra, ca_file)  # reserve: 5% of 15000 = 750; 740 left
    # (no users to look for: the pull's own pages are what is measured)
    connector.users = People(dict, refresh=float("inf"))

    pull = connector.pull("account", Cursor())
    first = next(pull)
    with pytest.raises(RetriableConnectorError, match="daily API budget") as info:
        next(pull)

    assert len(first.changes) == 2 and info.value.retry_after == 3600.0
    assert len(tls_server.log) == 2  # the next page was not asked for


def test_request_limit_exceeded_pauses_without_retrying(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str, fake_time: FakeTime
) -> None:
    expect_token(tls_server)
    describe_handler(tls_server)
    tls_server.expect_request(
        f"{V}/composite/sobjects/Account/Bridge_Id__c", method="PATCH"
    ).respond_with_json(load("salesforce", "request_limit_exceeded"), status=403)

    with pytest.raises(RetriableConnectorError, match="REQUEST_LIMIT_EXCEEDED"):
        make(tls_server, extra, ca_file).push(
            "account", [Write("salesforce", "account", "r1", None, {"ARR__c": 1})]
        )

    assert sum(1 for r in requests_of(tls_server) if r.method == "PATCH") == 1
    assert fake_time.sleeps == []


def test_describe_types_and_active_picklist_values(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    expect_token(tls_server)
    describe_handler(tls_server)

    fields = {f.name: f for f in make(tls_server, extra, ca_file).describe("account")}

    assert fields["Industry"].options == ("Energy", "Banking") and fields["Industry"].restricted
    assert fields["Segments__c"].type == "multipicklist" and fields["ARR__c"].type == "currency"
    assert not fields["Rating"].restricted


def test_describe_body_fits_the_published_schema() -> None:
    schema_file = SPECS / "plugin-schema-3.3.131" / "sobject-describe.json"
    if not schema_file.exists():
        pytest.skip(f"{schema_file} is absent (../shared/specs)")
    schema = json.loads(schema_file.read_text())["definitions"]
    doc = load("salesforce", "describe_account")

    def check(obj: dict[str, Any], name: str) -> None:
        definition = schema[name]
        assert set(definition["required"]) <= set(obj), name
        assert set(obj) <= set(definition["properties"]), (name, set(obj) - set(definition["properties"]))

    check(doc, "DescribeSObjectResult")
    for f in doc["fields"]:
        check(f, "Field")
        for p in f["picklistValues"]:
            check(p, "PicklistEntry")


def test_a_collection_refused_whole_is_sent_in_halves_and_only_the_refused_write_fails(
    tls_server: HTTPServer, extra: dict[str, Any], ca_file: str
) -> None:
    # errorcodes.htm: a field the object does not have refuses the whole request (HTTP 400, INVALID_FIELD)
    def answer(request: Request) -> Response:
        records = json.loads(request.data)["records"]
        if any("Legacy__c" in r for r in records):
            body = [{"message": "No such column 'Legacy__c' on sobject of type Account",
                     "errorCode": "INVALID_FIELD"}]
            return Response(json.dumps(body), status=400, content_type="application/json")
        return Response(json.dumps([{"id": r["Id"], "success": True, "errors": []} for r in records]),
                        content_type="application/json")

    expect_token(tls_server)
    describe_handler(tls_server)
    tls_server.expect_request(f"{V}/composite/sobjects", method="PATCH").respond_with_handler(answer)
    writes = [
        Write("salesforce", "account", "r1", "001000000000000001", {"ARR__c": 1}),
        Write("salesforce", "account", "r2", "001000000000000002", {"Legacy__c": "x"}),
        Write("salesforce", "account", "r3", "001000000000000003", {"ARR__c": 3}),
    ]

    results = make(tls_server, extra, ca_file).push("account", writes)

    assert [(r.record_id, r.ok, r.retriable) for r in results] == [
        ("r1", True, False), ("r2", False, False), ("r3", True, False)]
    assert "salesforce record r2" in (results[1].error or "") and "INVALID_FIELD" in (results[1].error or "")
    patches = [[r["Id"][-1] for r in json.loads(q.data)["records"]] for q in requests_of(tls_server)
               if q.method == "PATCH"]
    assert patches == [["1", "2", "3"], ["1"], ["2", "3"], ["2"], ["3"]]


# ---------------------------------------------------------------- Salesforce Cases as the helpdesk
# Case (Status New/Working/Escalated/Closed, Priority High/Medium/Low, OwnerId a user 005... or a queue
# 00G...)
# and User (Id, Email, IsActive), as the object reference describes them.

CASE_DESCRIBE = {"name": "Case", "fields": [
    {"name": "Id", "type": "id"}, {"name": "Subject", "type": "string"},
    {"name": "Status", "type": "picklist", "restrictedPicklist": False, "picklistValues": [
        {"value": v, "active": True} for v in ("New", "Working", "Escalated", "Closed")]},
    {"name": "Priority", "type": "picklist", "restrictedPicklist": False, "picklistValues": [
        {"value": v, "active": True} for v in ("High", "Medium", "Low")]},
    {"name": "OwnerId", "type": "reference"}, {"name": "Bridge_Escalation__c", "type": "string"},
    {"name": "SystemModstamp", "type": "datetime"}, {"name": "IsDeleted", "type": "boolean"},
]}
USERS = {"totalSize": 2, "done": True, "records": [
    {"attributes": {"type": "User"}, "Id": "005A", "Email": "alice@example.com"},
    {"attributes": {"type": "User"}, "Id": "005B", "Email": "Bob@Example.com"}]}
CASE_FIELDS = ["Id", "Subject", "Status", "Priority", "OwnerId", "SystemModstamp", "IsDeleted"]


def _desk(server: HTTPServer, extra: dict[str, Any], ca_file: str, **settings: Any) -> SalesforceConnector:
    expect_token(server)
    server.expect_request(f"{V}/sobjects/Case/describe", method="GET").respond_with_json(CASE_DESCRIBE)
    return make(server, extra, ca_file, kinds=["ticket"], fields={"ticket": CASE_FIELDS}, **settings)


def test_a_pulled_case_has_bridges_status_priority_and_assignee(
        tls_server: HTTPServer, extra: dict[str, Any], ca_file: str) -> None:
    def case(case_id: str, status: str, priority: str, owner: str) -> dict[str, Any]:
        return {"attributes": {"type": "Case"}, "Id": case_id, "Subject": "s", "Status": status,
                "Priority": priority, "OwnerId": owner, "SystemModstamp": "2026-03-01T10:00:00.000+0000",
                "IsDeleted": False}

    statuses = {"New": "open", "Waiting on Customer": "pending", "Closed": "closed"}
    connector = _desk(tls_server, extra, ca_file, statuses=statuses)
    rows = [case("500A", "Waiting on Customer", "Medium", "005B"), case("500B", "New", "High", "00GQUEUE")]
    tls_server.expect_request(f"{V}/queryAll/", method="GET").respond_with_json(
        {"totalSize": 2, "done": True, "records": rows})
    (page,) = list(connector.pull("ticket", Cursor()))
    got = {c.external_id: (c.attrs["status"], c.attrs["priority"], c.attrs.get("assignee"))
           for c in page.changes}
    # (a queue owns 500B: it waits for an agent, unassigned)
    assert got == {"500A": ("pending", "normal", "Bob@Example.com"), "500B": ("open", "high", None)}


def test_a_case_write_goes_as_case_fields_and_an_effect_without_a_field_is_refused_by_name(
        tls_server: HTTPServer, extra: dict[str, Any], ca_file: str) -> None:
    def answer(request: Request) -> Response:
        records = json.loads(request.data)["records"]
        return Response(json.dumps([{"id": r["Id"], "success": True, "errors": []} for r in records]),
                        content_type="application/json")

    connector = _desk(tls_server, extra, ca_file, effect_fields={"escalation": "Bridge_Escalation__c"})
    connector.users.refresh = 0.0  # (a user unknown is looked for again at once, not after ten minutes)
    tls_server.expect_request(f"{V}/composite/sobjects", method="PATCH").respond_with_handler(answer)
    results = connector.push("ticket", [
        Write("salesforce", "ticket", "r1", "500A", {"status": "closed", "priority": "urgent",
                                                     "assignee": "bob@example.com"}),
        Write("salesforce", "ticket", "r2", "500B", {"escalation": "leads"}),
        Write("salesforce", "ticket", "r3", "500C", {"review": "low confidence"}),
        Write("salesforce", "ticket", "r4", "500D", {"status": "resolved"}),
        Write("salesforce", "ticket", "r5", "500E", {"assignee": "carol@example.com"}),
    ])
    assert [(r.record_id, r.ok) for r in results] == [
        ("r1", True), ("r2", True), ("r3", False), ("r4", False), ("r5", False)]
    assert [r.error for r in results[2:]] == [
        "salesforce case r3: a Case has no field for 'review': name a Case field for it in "
        "[connectors.salesforce] effect_fields",
        "salesforce case r4: no Case status is status 'resolved': map one in [connectors.salesforce] "
        "statuses",
        "salesforce case r5: no active Salesforce user has the email 'carol@example.com' (to assign the case "
        "to)",
    ]
    (patch,) = [json.loads(r.data) for r in requests_of(tls_server) if r.method == "PATCH"]
    assert patch["records"] == [
        {"attributes": {"type": "Case"}, "Id": "500A", "Status": "Closed", "Priority": "Urgent",
         "OwnerId": "005B"},
        {"attributes": {"type": "Case"}, "Id": "500B", "Bridge_Escalation__c": "leads"},
    ]
    users = [r for r in requests_of(tls_server) if r.path == f"{V}/query/"]
    assert len(users) == 2  # (read once, and once again for carol, whom they lacked)
