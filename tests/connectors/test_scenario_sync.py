"""The CRM scenario end to end: real connectors, real client libraries, the real Syncer and Store.

Salesforce owns ``arr`` and ``owner``; HubSpot receives them. Both vendors are small in-test backends (dicts)
served over loopback: Salesforce over TLS (a trustme CA) for simple-salesforce, HubSpot over HTTP for
hubspot-api-client. They answer as the vendors document it and keep state: SOQL on ``SystemModstamp`` with
``nextRecordsUrl`` paging (REST API Developer Guide, "Query" and "Query More Results"), CRM search on
``hs_lastmodifieddate`` with ``GTE`` filters and ``after`` paging ("Search the CRM"), and ``batch/update``
("Companies: batch update"), which HubSpot applies and stamps, so that the next pull brings our own writes
back and the engine must recognise them.

Steps (each asserting on the HTTP requests each server received):

1. first sync: three accounts on each side, matched by domain; HubSpot differs on two records (one ARR, one
   owner never set there): one batch call carries exactly those two values;
2. a sync with no change anywhere sends nothing;
3. a HubSpot user edits ``arr``: reported as a conflict and reverted; Salesforce receives nothing;
4. a Salesforce user edits ``arr`` of two accounts: HubSpot receives both in one batch call;
5. a final sync sends nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bridge.connector import Connector, ConnectorContext
from bridge.pipeline import Conflict
from bridge.plugins import create_host
from bridge.settings import Config
from bridge.store import Store
from bridge.sync import Syncer, SyncReport
from sync_support import open_store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
V = "/services/data/v62.0"
SF_TOKEN = "00D5g000004AbCd!AQ4AQScenarioToken"
HS_TOKEN = "pat-eu1-scenario-token"
SF_PAGE = 2  # records per SOQL answer (Salesforce's is 2,000): small to page with nextRecordsUrl
HS_PAGE = 2  # results per search call (page_size), to page with ``after``
LOOKBACK = timedelta(minutes=2)  # Connector.lookback: each pull asks from the cursor minus this

# three accounts as each CRM holds them before the first sync
ACME, GLOBEX, INITECH = "001D000000IqhSLIAZ", "001D000000IqhSMIAZ", "001D000000IqhSNIAZ"
ALICE, BOB = "005D0000001AbCdIAK", "005D0000001AbCeIAK"
SF_ACCOUNTS = [
    (ACME, "Acme", "https://www.acme.example/", 120000.0, ALICE),
    (GLOBEX, "Globex", "globex.example", 5000.0, BOB),
    (INITECH, "Initech", "http://initech.example", 64000.0, ALICE),
]
HS_COMPANIES = [
    ("101", "Acme", "acme.example", "120000", ALICE),  # same values: nothing to send
    ("102", "Globex", "globex.example", "7000", BOB),  # another ARR: overruled by Salesforce
    ("103", "Initech", "initech.example", "64000", None),  # the owner was never set in HubSpot
]
HUBSPOT_OF = {ACME: "101", GLOBEX: "102", INITECH: "103"}


class Wall:
    """The scenario's one time line: the engine's clock and each vendor's modification stamps."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def stamp(self) -> datetime:
        """A vendor's modification time: now, one millisecond after the previous stamp."""
        self.now += timedelta(milliseconds=1)
        return self.now

    def later(self, minutes: int = 10) -> None:
        self.now += timedelta(minutes=minutes)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")


def millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def hs_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def sf_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"


class SalesforceOrg:
    """Accounts of a Salesforce org, answering the token endpoint and SOQL queries (read-only here)."""

    SOQL = re.compile(
        r"SELECT (?P<fields>[\w, ]+) FROM Account"
        r"(?: WHERE SystemModstamp >= (?P<since>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ))?"
        r" ORDER BY SystemModstamp ASC, Id ASC"
    )

    def __init__(self, wall: Wall, server: HTTPServer) -> None:
        self.wall = wall
        self.accounts: dict[str, dict[str, Any]] = {}
        self.locators: dict[str, list[dict[str, Any]]] = {}
        self.soql: list[str] = []
        self.logins = 0
        server.expect_request("/services/oauth2/token", method="POST").respond_with_handler(self.token)
        queries = re.compile(rf"^{V}/query(All)?/.*$")
        server.expect_request(queries, method="GET").respond_with_handler(self.query)
        self.url = server.url_for("").rstrip("/")

    def add(self, account_id: str, name: str, website: str, arr: float, owner: str) -> None:
        self.accounts[account_id] = {
            "Id": account_id,
            "Name": name,
            "Website": website,
            "AnnualRevenue": arr,
            "OwnerId": owner,
            "IsDeleted": False,
            "SystemModstamp": self.wall.stamp(),
        }

    def edit(self, account_id: str, **values: Any) -> None:
        """A Salesforce user saves the record."""
        self.accounts[account_id].update(values, SystemModstamp=self.wall.stamp())

    def token(self, request: Request) -> Response:
        form = request.form
        if form.get("grant_type") != "client_credentials" or form.get("client_secret") != "sf-secret":
            return json_response({"error": "invalid_client", "error_description": "invalid client"}, 400)
        self.logins += 1
        return json_response(
            {
                "access_token": SF_TOKEN,
                "instance_url": self.url,
                "id": "https://login.salesforce.com/id/00D5g000004AbCdEAK/0055g00000AbCdEAAV",
                "token_type": "Bearer",
                "issued_at": str(millis(self.wall())),
            }
        )

    def query(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {SF_TOKEN}":
            return json_response(
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401
            )
        # QueryAll (deleted records too); its nextRecordsUrl says query, as Salesforce's does
        locator = request.path.removeprefix(f"{V}/queryAll/").removeprefix(f"{V}/query/")
        if locator:
            rows = self.locators.pop(locator)
        else:
            q = request.args["q"]
            self.soql.append(q)
            if q == "SELECT Id, Email FROM User WHERE IsActive = true":
                # the org's users, which the connector reads once to name owners by email
                users = [{"attributes": {"type": "User"}, "Id": ALICE, "Email": "alice@example.com"}]
                return json_response({"totalSize": 1, "done": True, "records": users})
            found = self.SOQL.fullmatch(q)
            if found is None:
                return json_response(
                    [{"message": f"unexpected SOQL: {q}", "errorCode": "MALFORMED_QUERY"}], 400
                )
            names = [n.strip() for n in found["fields"].split(",")]
            since = found["since"]
            floor = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if since else None
            matching = sorted(
                (a for a in self.accounts.values() if floor is None or a["SystemModstamp"] >= floor),
                key=lambda a: (a["SystemModstamp"], a["Id"]),
            )
            rows = [self.row(a, names) for a in matching]
        total = len(rows)
        page, rest = rows[:SF_PAGE], rows[SF_PAGE:]
        body: dict[str, Any] = {"totalSize": total, "done": not rest, "records": page}
        if rest:
            next_locator = f"01gD0000002HU6KIAW-{len(self.locators) + 1}"
            self.locators[next_locator] = rest
            body["nextRecordsUrl"] = f"{V}/query/{next_locator}"
        return json_response(body)

    @staticmethod
    def row(account: dict[str, Any], names: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{account['Id']}"}
        }
        for name in names:
            value = account.get(name)
            out[name] = sf_time(value) if isinstance(value, datetime) else value
        return out


class HubSpotPortal:
    """Companies of a HubSpot portal, answering CRM search and batch update, which it applies and stamps."""

    SEARCH = "/crm/v3/objects/companies/search"
    UPDATE = "/crm/v3/objects/companies/batch/update"
    PROPERTIES = "/crm/v3/properties/companies"

    def __init__(self, wall: Wall, server: HTTPServer) -> None:
        self.wall = wall
        self.companies: dict[str, dict[str, Any]] = {}
        server.expect_request(self.SEARCH, method="POST").respond_with_handler(self.search)
        server.expect_request(self.UPDATE, method="POST").respond_with_handler(self.batch_update)
        server.expect_request(self.PROPERTIES, method="GET").respond_with_json({"results": [
            {"name": name, "label": name, "type": "string", "fieldType": "text", "options": []}
            for name in ("name", "domain", "annualrevenue", "salesforce_owner_id")]})
        self.url = server.url_for("").rstrip("/")

    def add(self, company_id: str, name: str, domain: str, arr: str, owner: str | None) -> None:
        self.companies[company_id] = {
            "name": name,
            "domain": domain,
            "annualrevenue": arr,
            "salesforce_owner_id": owner,
            "hs_object_id": company_id,
            "createdate": hs_time(T0 - timedelta(days=400)),
            "hs_lastmodifieddate": hs_time(self.wall.stamp()),
        }

    def edit(self, company_id: str, **values: Any) -> None:
        """A HubSpot user saves the company."""
        self.companies[company_id].update(values, hs_lastmodifieddate=hs_time(self.wall.stamp()))

    def value(self, company_id: str, name: str) -> Any:
        return self.companies[company_id][name]

    def item(self, company_id: str, names: list[str]) -> dict[str, Any]:
        props = self.companies[company_id]
        return {
            "id": company_id,
            "properties": {n: props.get(n) for n in [*names, "hs_object_id", "createdate"]},
            "createdAt": props["createdate"],
            "updatedAt": props["hs_lastmodifieddate"],
            "archived": False,
        }

    def authorised(self, request: Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {HS_TOKEN}"

    def search(self, request: Request) -> Response:
        if not self.authorised(request):
            return json_response({"status": "error", "category": "INVALID_AUTHENTICATION"}, 401)
        body = json.loads(request.data)
        floor = 0
        for group in body.get("filterGroups") or []:
            for f in group["filters"]:
                if (f["propertyName"], f["operator"]) != ("hs_lastmodifieddate", "GTE"):
                    return json_response({"status": "error", "category": "VALIDATION_ERROR"}, 400)
                floor = int(f["value"])
        if body.get("sorts") != ["hs_lastmodifieddate"]:
            return json_response({"status": "error", "category": "VALIDATION_ERROR"}, 400)
        stamp = {cid: millis(_hs_parse(p["hs_lastmodifieddate"])) for cid, p in self.companies.items()}
        matching = sorted((cid for cid in self.companies if stamp[cid] >= floor), key=lambda c: (stamp[c], c))
        start, limit = int(body.get("after") or 0), int(body["limit"])
        page = matching[start : start + limit]
        answer: dict[str, Any] = {
            "total": len(matching),
            "results": [self.item(cid, body["properties"]) for cid in page],
        }
        if start + limit < len(matching):
            after = str(start + limit)
            answer["paging"] = {"next": {"after": after, "link": f"?after={after}"}}
        return json_response(answer)

    def batch_update(self, request: Request) -> Response:
        if not self.authorised(request):
            return json_response({"status": "error", "category": "INVALID_AUTHENTICATION"}, 401)
        started = hs_time(self.wall())
        results = []
        for entry in json.loads(request.data)["inputs"]:
            company = self.companies[entry["id"]]
            company.update(entry["properties"], hs_lastmodifieddate=hs_time(self.wall.stamp()))
            results.append(self.item(entry["id"], list(entry["properties"])))
        return json_response(
            {
                "status": "COMPLETE",
                "results": results,
                "startedAt": started,
                "completedAt": hs_time(self.wall()),
            }
        )


def _hs_parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def make_config(sf_url: str, hs_url: str, ca_file: str) -> Config:
    """The scenario's config, as ``bridge.toml`` would give it."""
    data: dict[str, Any] = dict(
        connectors={
            "salesforce": {
                "plugin": "salesforce",
                "base_url": sf_url,
                "ca_bundle": ca_file,
                "client_id": "3MVG9-consumer-key",
                "client_secret_env": "SCENARIO_SF_SECRET",
                "kinds": ["account"],
                "fields": {
                    "account": [
                        "Id",
                        "Name",
                        "Website",
                        "AnnualRevenue",
                        "OwnerId",
                        "SystemModstamp",
                        "IsDeleted",
                    ]
                },
            },
            "hubspot": {
                "plugin": "hubspot",
                "base_url": hs_url,
                "token_env": "SCENARIO_HS_TOKEN",
                "kinds": ["account"],
                "page_size": HS_PAGE,
                "properties": {"account": ["name", "domain", "annualrevenue", "salesforce_owner_id"]},
            },
        },
        fields={
            "arr": {
                "type": "number",
                "kind": "account",
                "owner": "salesforce",
                "sync_to": ["hubspot"],
                "remote": {"salesforce": "AnnualRevenue", "hubspot": "annualrevenue"},
            },
            "owner": {
                "type": "text",
                "kind": "account",
                "owner": "salesforce",
                "sync_to": ["hubspot"],
                "remote": {"salesforce": "OwnerId", "hubspot": "salesforce_owner_id"},
            },
        },
        identity={"account": ["domain"]},
    )
    return Config(**data)


def build_connectors(config: Config, extra: dict[str, Any]) -> dict[str, Connector]:
    """Each system's connector as ``App.connector`` builds it (plugin host, plugin's settings model)."""
    classes = create_host(environ={}).connectors()
    out: dict[str, Connector] = {}
    for system, table in config.connectors.items():
        cls = classes[table.plugin]
        data = table.model_dump(by_alias=True, exclude={"missing_secrets"})
        data.update(table.model_extra or {})
        settings = cls.settings_model.model_validate(data)
        out[system] = cls(ConnectorContext(system, settings, extra=extra))  # extra: the fake sleep and clock
    return out


def calls(server: HTTPServer) -> list[tuple[str, str, Any]]:
    """Every request the server received since its log was cleared: method, path, JSON body."""
    out = []
    for request, _response in server.log:
        body = json.loads(request.data) if request.data and request.mimetype == "application/json" else None
        out.append((request.method, request.path, body))
    return out


def hubspot_writes(server: HTTPServer) -> list[list[dict[str, Any]]]:
    """The inputs of each write call HubSpot received (every call but searches and properties reads), sorted
    by company id."""
    out = []
    for method, path, body in calls(server):
        if (method, path) in (("POST", HubSpotPortal.SEARCH), ("GET", HubSpotPortal.PROPERTIES)):
            continue
        assert (method, path) == ("POST", HubSpotPortal.UPDATE), f"unexpected HubSpot call {method} {path}"
        out.append(sorted(body["inputs"], key=lambda i: i["id"]))
    return out


def salesforce_writes(server: HTTPServer) -> list[tuple[str, str]]:
    """Every Salesforce request but the login and SOQL reads (it owns both fields: it is only read)."""
    return [
        (method, path)
        for method, path, _body in calls(server)
        if (method, path) != ("POST", "/services/oauth2/token")
        and not (method == "GET" and path.startswith((f"{V}/query/", f"{V}/queryAll/")))
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, tmp_path) as s:
        yield s


class Scenario:
    """The two vendors, their connectors, a Syncer on the store, and one sync pass with its requests."""

    def __init__(
        self,
        store: Store,
        tls_server: HTTPServer,
        httpserver: HTTPServer,
        ca_file: str,
        extra: dict[str, Any],
    ) -> None:
        self.wall = Wall()
        self.sf_server, self.hs_server = tls_server, httpserver
        self.salesforce = SalesforceOrg(self.wall, tls_server)
        self.hubspot = HubSpotPortal(self.wall, httpserver)
        self.config = make_config(self.salesforce.url, self.hubspot.url, ca_file)
        self.connectors = build_connectors(self.config, extra)
        self.store = store
        self.syncer = Syncer(self.config, store, self.connectors.__getitem__, clock=self.wall)

    def sync(self) -> SyncReport:
        """One pass after ten quiet minutes, with fresh request logs."""
        self.wall.later()
        self.sf_server.clear_log()
        self.hs_server.clear_log()
        report = self.syncer.sync()
        self.sf_server.check_handler_errors()
        self.hs_server.check_handler_errors()
        assert report.problems == [] and report.failed == report.dead == report.deferred == 0
        return report

    def record_of(self, account_id: str) -> str:
        with self.store.session() as tx:
            rid = tx.record_id_for("salesforce", "account", account_id)
        assert rid is not None
        return rid

    def close(self) -> None:
        for conn in self.connectors.values():
            conn.close()


@pytest.fixture
def scenario(
    store: Store,
    tls_server: HTTPServer,
    httpserver: HTTPServer,
    ca_file: str,
    extra: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Scenario]:
    monkeypatch.setenv("SCENARIO_SF_SECRET", "sf-secret")
    monkeypatch.setenv("SCENARIO_HS_TOKEN", HS_TOKEN)
    s = Scenario(store, tls_server, httpserver, ca_file, extra)
    yield s
    s.close()


def arr(value: float, account_id: str) -> dict[str, Any]:
    """The HubSpot batch input that tells the company of ``account_id`` its ARR."""
    return {"id": HUBSPOT_OF[account_id], "properties": {"annualrevenue": str(int(value))}}


def inputs(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batch inputs without their trace ids (which only pair answers with writes)."""
    return [{k: v for k, v in i.items() if k != "objectWriteTraceId"} for i in batch]


def test_salesforce_owns_arr_and_owner_hubspot_follows_through_the_sync_engine(scenario: Scenario) -> None:
    s = scenario
    for account in SF_ACCOUNTS:
        s.salesforce.add(*account)
    for company in HS_COMPANIES:
        s.hubspot.add(*company)
    sf_last = s.salesforce.accounts[INITECH]["SystemModstamp"]
    hs_last = _hs_parse(s.hubspot.value("103", "hs_lastmodifieddate"))  # what the first pull ends on

    # 1. first sync: matched by domain; only what differs goes to HubSpot, in one batch call
    first = s.sync()
    assert first.pulled == 6 and first.records_created == 3
    records = {a: s.record_of(a) for a in HUBSPOT_OF}
    with s.store.session() as tx:
        links = {a: tx.links_of(rid) for a, rid in records.items()}
    assert links == {a: {"salesforce": a, "hubspot": h} for a, h in HUBSPOT_OF.items()}
    (batch,) = hubspot_writes(s.hs_server)
    assert inputs(batch) == [
        arr(5000, GLOBEX),
        {"id": "103", "properties": {"salesforce_owner_id": ALICE}},
    ]
    assert first.push_calls == 1 and first.pushed == 2
    # HubSpot's own values of Salesforce's fields are overruled and reported; a field HubSpot never had a
    # value for (Initech's owner) is its starting state, filled in without a conflict
    assert sorted((c.field, c.system, c.value, c.owner_value, c.reverted) for c in first.conflicts) == [
        ("arr", "hubspot", 7000, 5000, True),
    ]
    assert [(m, p) for m, p, _b in calls(s.sf_server)] == [
        ("POST", "/services/oauth2/token"),
        ("GET", f"{V}/queryAll/"),
        ("GET", f"{V}/query/"),  # the users, once, at the first owner: named by email
        ("GET", f"{V}/query/01gD0000002HU6KIAW-1"),  # nextRecordsUrl: the third account
    ]
    assert s.salesforce.soql[0].endswith("FROM Account ORDER BY SystemModstamp ASC, Id ASC")  # no cursor yet
    assert s.hubspot.value("102", "annualrevenue") == "5000"
    assert s.hubspot.value("103", "salesforce_owner_id") == ALICE
    # 2. nothing changed anywhere (HubSpot's answer to our batch comes back in its search): nothing is sent
    second = s.sync()
    assert second.writes_queued == 0 and second.push_calls == 0 and second.conflicts == []
    assert hubspot_writes(s.hs_server) == [] and salesforce_writes(s.sf_server) == []
    # each pull asked from its stored cursor minus the lookback
    assert s.salesforce.soql[-1] == (
        "SELECT Id, Name, Website, AnnualRevenue, OwnerId, SystemModstamp, IsDeleted FROM Account"
        f" WHERE SystemModstamp >= {(sf_last - LOOKBACK).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        " ORDER BY SystemModstamp ASC, Id ASC"
    )
    searches = [b for m, p, b in calls(s.hs_server) if p == HubSpotPortal.SEARCH]
    assert searches[0]["filterGroups"] == [
        {
            "filters": [
                {
                    "propertyName": "hs_lastmodifieddate",
                    "operator": "GTE",
                    "value": str(millis(hs_last - LOOKBACK)),
                }
            ]
        }
    ]
    # the lookback brings Acme back; our two writes are newer: three results, in two pages
    # (the second page is a new search from the first page's last modification time, not an offset)
    assert [b.get("after") for b in searches] == [None, None]
    floors = [int(b["filterGroups"][0]["filters"][0]["value"]) for b in searches]
    assert floors[1] > floors[0]

    # 3. a HubSpot user edits the ARR Salesforce owns: reported, reverted; Salesforce is not written
    s.hubspot.edit("101", annualrevenue="999999")
    third = s.sync()
    acme = s.record_of(ACME)
    assert third.conflicts == [Conflict(acme, "arr", "hubspot", 999999, 120000, "owner_wins", True)]
    (batch,) = hubspot_writes(s.hs_server)
    assert inputs(batch) == [arr(120000, ACME)]
    assert salesforce_writes(s.sf_server) == []
    assert s.hubspot.value("101", "annualrevenue") == "120000"
    with s.store.session() as tx:
        audit = [a for a in tx.audit_for(acme) if a["kind"] == "conflict"]
    assert [(a["field"], a["origin"], a["before"], a["after"], a["response"]) for a in audit] == [
        ("arr", "hubspot", 120000, 999999, "reverted")
    ]

    # 4. a Salesforce user edits the ARR of two accounts: HubSpot gets both in one batch call
    s.salesforce.edit(GLOBEX, AnnualRevenue=6500.0)
    s.salesforce.edit(INITECH, AnnualRevenue=70250.5)
    fourth = s.sync()
    assert fourth.conflicts == [] and fourth.push_calls == 1 and fourth.pushed == 2
    (batch,) = hubspot_writes(s.hs_server)
    assert inputs(batch) == [
        arr(6500, GLOBEX),
        {"id": "103", "properties": {"annualrevenue": "70250.5"}},
    ]
    assert salesforce_writes(s.sf_server) == []

    # 5. a final sync: every echo recognised, nothing sent, nothing left in the outbox
    fifth = s.sync()
    assert fifth.writes_queued == 0 and fifth.push_calls == 0 and fifth.conflicts == []
    assert hubspot_writes(s.hs_server) == [] and salesforce_writes(s.sf_server) == []
    assert s.store.pending() == [] and s.store.dead_letters() == []
    assert {cid: s.hubspot.value(cid, "annualrevenue") for cid in ("101", "102", "103")} == {
        "101": "120000",
        "102": "6500",
        "103": "70250.5",
    }
    assert s.salesforce.logins == 1  # one OAuth login for the whole scenario
