"""The Pylon connector over httpx against a stateful Pylon on 127.0.0.1 (pytest-httpserver).

The loopback Pylon answers with the shapes of Pylon's API (the official SDK ``usepylon``, generated from
Pylon's API definition, summarised in ../shared/specs/pylon/pylon_api_from_official_sdk.json): ``data``,
``request_id`` and ``pagination`` {cursor, has_next_page}; the ``issue``, ``account``, ``contact``,
``custom_field_value`` and ``filter`` types; errors as ``error_api_response_body`` {errors, code,
request_id, exists_id}. Bodies in tests/data/pylon/ follow the SDK's types of the same names (custom field
definitions with ``select_metadata.options`` {label, slug}; users; issue statuses {slug, category}). Every
request the connector sends is checked against the spec file: the endpoint exists for that method and path,
its query keys and body keys are the documented ones, custom fields and filters have the documented keys.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import bridge.connectors.pylon as pylon_module
from bridge.app import App
from bridge.connector import Connector, ConnectorContext, Cursor, PullPage
from bridge.connectors.pylon import PylonConnector, PylonSettings, pylon_error
from bridge.errors import ConnectorAuthError, RetriableConnectorError
from bridge.model import Write, parse_time
from bridge.settings import load_config
from bridge.testing import FROZEN_AT, ConnectorContract, connectors_of, frozen_clock

from .conftest import FakeTime, load

TOKEN = "pylon_api_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SHARED = Path(__file__).resolve().parents[3] / "shared"
SPEC = SHARED / "specs" / "pylon" / "pylon_api_from_official_sdk.json"
CONFIG_SPEC = SHARED / "spec" / "config.md"
NOW = "2026-11-02T12:00:00Z"  # (bridge.testing.FROZEN_AT: the connectors' clock here)

Sent = tuple[str, str, dict[str, str], Any]


# ---------------------------------------------------------------- the spec file


def spec_or_none() -> dict[str, Any] | None:
    return dict(json.loads(SPEC.read_text())) if SPEC.exists() else None


def spec_problems(
    spec: dict[str, Any], method: str, path: str, query: dict[str, str], body: Any
) -> list[str]:
    """What in one request the spec does not document (empty: it all is)."""
    endpoints = [e for e in spec["endpoints"] if e["method"] == method]
    found = next((e for e in endpoints if e["path"] == path), None) or next(
        (e for e in endpoints if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", e["path"]), path)), None)
    if found is None:
        return [f"{method} {path}: no such endpoint"]
    where = f"{method} {found['path']}"
    problems = [f"{where}: query {k!r} is not documented" for k in query if k not in found["query"]]
    if body is None:
        return problems
    if not isinstance(body, dict):
        return [*problems, f"{where}: the body is not an object"]
    problems += [f"{where}: body key {k!r} is not documented" for k in body if k not in found["json_body"]]
    value_keys = set(spec["types"]["custom_field_value"])
    for cell in body.get("custom_fields") or []:
        problems += [f"{where}: custom field key {k!r} is not documented"
                     for k in cell if k not in value_keys]
    if "filter" in body:
        problems += filter_problems(spec, where, body["filter"])
    return problems


def filter_problems(spec: dict[str, Any], where: str, flt: Any) -> list[str]:
    keys = set(spec["types"]["filter"])
    operators = set(re.findall(r"'(\w+)'", spec["types"]["filter_operator"]["__alias__"]))
    if not isinstance(flt, dict):
        return [f"{where}: a filter is not an object"]
    problems = [f"{where}: filter key {k!r} is not documented" for k in flt if k not in keys]
    if flt.get("operator") not in operators:
        problems.append(f"{where}: filter operator {flt.get('operator')!r} is not documented")
    for sub in flt.get("subfilters") or []:
        problems += filter_problems(spec, where, sub)
    return problems


# ---------------------------------------------------------------- a Pylon on loopback


def when(value: str) -> datetime:
    return parse_time(value)


class FakePylon:
    """Pylon's issues, accounts, contacts, users and custom fields, in memory and changed by the calls."""

    def __init__(self, spec: dict[str, Any] | None) -> None:
        self.spec = spec
        self.issues = {i["id"]: i for i in load("pylon", "issues")}
        self.accounts = {a["id"]: a for a in load("pylon", "accounts")}
        self.contacts = {c["id"]: c for c in load("pylon", "contacts")}
        self.users = load("pylon", "users")
        self.fields = {o: load("pylon", f"custom_fields_{o}") for o in ("issue", "account", "contact")}
        self.notes: list[tuple[str, dict[str, Any]]] = []
        self.canned: list[tuple[str, str, Response]] = []
        self.sent: list[Sent] = []
        self.problems: list[str] = []
        self.authorization: list[str] = []
        self.made = 0

    def answer(self, method: str, path: str, response: Response, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method path`` with ``response``."""
        self.canned += [(method, path, response)] * times

    def calls(self, method: str | None = None, path: str | None = None) -> list[Sent]:
        return [s for s in self.sent if (method is None or s[0] == method) and (path is None or s[1] == path)]

    def __call__(self, request: Request) -> Response:
        raw = request.get_data()
        body = json.loads(raw) if raw else None
        query = {k: v for k, v in request.args.items()}
        self.sent.append((request.method, request.path, query, body))
        self.authorization.append(request.headers.get("Authorization", ""))
        if self.spec is not None:
            self.problems += spec_problems(self.spec, request.method, request.path, query, body)
        for n, (method, path, canned) in enumerate(self.canned):
            if method == request.method and path == request.path:
                del self.canned[n]
                return canned
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return error(401, "error_401")
        return self.route(request.method, request.path, query, body or {})

    def route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Response:
        parts = path.strip("/").split("/")
        if (method, path) == ("GET", "/me"):
            return ok(load("pylon", "me")["data"])
        if (method, path) == ("GET", "/custom-fields"):
            return Response(json.dumps(self.fields[query["object_type"]]), content_type="application/json")
        if (method, path) == ("GET", "/users"):
            return Response(json.dumps(self.users), content_type="application/json")
        if (method, path) == ("GET", "/issue-statuses"):
            return Response(json.dumps(load("pylon", "issue_statuses")), content_type="application/json")
        table = {"issues": self.issues, "accounts": self.accounts, "contacts": self.contacts}.get(parts[0])
        if table is None:
            return error(404, None, "not found")
        if method == "GET" and len(parts) == 1:
            return page(list(table.values()), query.get("cursor"), int(query.get("limit") or 100), last=False)
        if method == "POST" and parts[1:] == ["search"]:
            rows = [r for r in table.values() if matches(body.get("filter"), r)]
            rows.sort(key=lambda r: r["id"], reverse=True)  # (not by time: the connector sorts)
            return page(rows, body.get("cursor"), int(body.get("limit") or 100), last=True)
        if method == "POST" and len(parts) == 1:
            return self.create(parts[0], table, body)
        record = table.get(parts[1]) if len(parts) > 1 else None
        if record is None:
            return error(404, None, f"{parts[0][:-1]} not found")
        if method == "GET" and len(parts) == 2:
            return ok(record)
        if method == "PATCH" and len(parts) == 2:
            self.apply(record, body)
            return ok(record)
        if method == "POST" and parts[2:] == ["note"]:
            self.notes.append((parts[1], body))
            return ok({"id": f"msg_{len(self.notes)}", "issue_id": parts[1]})
        return error(404, None, "not found")

    def apply(self, record: dict[str, Any], body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key == "custom_fields":
                for cell in value:
                    record.setdefault("custom_fields", {})[cell["slug"]] = (
                        cell if ("value" in cell or "values" in cell) else None)
            elif key in ("assignee_id", "owner_id"):
                people = {u["id"]: u for u in self.users["data"]}
                person = {"id": value, "email": people[value]["email"]} if value else None
                record["assignee" if key == "assignee_id" else "owner"] = person
            else:
                record[key] = value
        record["updated_at"] = NOW

    def create(self, what: str, table: dict[str, Any], body: dict[str, Any]) -> Response:
        self.made += 1
        new_id = f"{what[:3]}_new{self.made}"
        record = {"id": new_id, "custom_fields": {}, "created_at": NOW}
        self.apply(record, body)
        table[new_id] = record
        return ok(record)


def matches(flt: Any, row: dict[str, Any]) -> bool:
    if not flt:
        return True
    op = flt["operator"]
    if op == "and":
        return all(matches(f, row) for f in flt["subfilters"])
    field, value = flt.get("field"), flt.get("value")
    if op == "time_is_after":
        return when(row[field]) > when(value)
    if op == "time_is_before":
        return when(row[field]) < when(value)
    if op == "contains":
        return value in (row.get(field) or [])
    if op == "equals":
        return bool(row.get(field) == value)
    raise AssertionError(f"the loopback Pylon does not know the operator {op}")


def ok(data: Any) -> Response:
    return Response(json.dumps({"data": data, "request_id": "req_ok"}), content_type="application/json")


def page(rows: list[Any], cursor: str | None, limit: int, last: bool) -> Response:
    start = int(cursor or 0)
    chunk = rows[start:start + limit]
    answer: dict[str, Any] = {"data": chunk, "request_id": "req_page"}
    more = start + limit < len(rows)
    if more or last:  # (Pylon: pagination absent when there are no more results; given here on searches)
        answer["pagination"] = {"cursor": str(start + limit), "has_next_page": more}
    return Response(json.dumps(answer), content_type="application/json")


def error(
    status: int, name: str | None, message: str = "", headers: dict[str, str] | None = None
) -> Response:
    body = load("pylon", name) if name else {"errors": [message], "code": "not_found",
                                             "request_id": "req_404"}
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


@pytest.fixture
def fake(httpserver: HTTPServer) -> Iterator[FakePylon]:
    pylon = FakePylon(spec_or_none())
    httpserver.expect_request(re.compile(".*")).respond_with_handler(pylon)
    yield pylon
    assert pylon.problems == [], "requests the spec does not document"


def make(server: HTTPServer, extra: dict[str, Any], **settings: Any) -> PylonConnector:
    values: dict[str, Any] = {"plugin": "pylon", "base_url": server.url_for("").rstrip("/"), "token": TOKEN}
    values.update(settings)
    return PylonConnector(ConnectorContext("pylon", PylonSettings(**values), clock=frozen_clock(),
                                           extra=extra))


def ids(pages: list[PullPage]) -> list[list[str]]:
    return [[c.external_id for c in p.changes] for p in pages]


# ---------------------------------------------------------------- pull


def test_issues_are_searched_on_updated_at_paged_to_the_end_and_given_oldest_first(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra, page_size=2)
    cursor = Cursor(when("2026-10-20T08:00:00Z"), "iss_0")

    pages = list(connector.pull("ticket", cursor))

    # the search answers newest id first; the connector reads the window to its end and sorts it
    assert ids(pages) == [["iss_1", "iss_2"], ["iss_3", "iss_4"]]
    assert pages[-1].cursor == Cursor(when("2026-11-01T08:00:00Z"), "iss_4")
    searches = fake.calls("POST", "/issues/search")
    since = {"field": "updated_at", "operator": "time_is_after", "value": "2026-10-20T07:57:59Z"}
    # (the cursor minus the two minutes' lookback, a second earlier again: strict or not, nothing is missed)
    assert [b for _m, _p, _q, b in searches] == [{"filter": since, "limit": 2},
                                                {"filter": since, "limit": 2, "cursor": "2"}]
    assert fake.authorization[0] == f"Bearer {TOKEN}"


def test_a_pulled_issue_has_bridges_status_priority_assignee_fields_and_tags(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)

    (page,) = list(connector.pull("ticket", Cursor(when("2026-10-20T08:00:00Z"), "x")))

    by_id = {c.external_id: c for c in page.changes}
    first, second, third = by_id["iss_1"], by_id["iss_2"], by_id["iss_3"]
    assert first.attrs == {
        "subject": "Charged twice", "body": "I was charged twice.\nPlease refund & fix.",
        "status": "pending", "priority": "normal", "assignee": "alice@example.com",
        "requester": {"email": "ana@acme.example"}, "account": {"id": "acc_1"}, "channel": "email",
        "created_at": "2026-10-19T08:00:00Z"}
    # custom fields by slug, options by their labels (as the config names them), a user field by email
    assert first.fields == {"severity": "Sev-2", "product_area": ["Billing", "API"], "priority": "medium",
                            "csm": "alice@example.com"}
    assert first.tags == ["billing/refund"] and first.at == when("2026-10-20T09:00:00Z")
    # no email in the issue's assignee: the user's, from GET /users; state new is open
    assert (second.attrs["assignee"], second.attrs["status"], second.attrs["priority"]) == (
        "Bob@Example.com", "open", "urgent")
    # a custom status slug goes by its category (GET /issue-statuses): triage is waiting_on_you, open
    assert third.attrs["status"] == "open" and third.attrs["body"] == "POST /v1 answers 500\nsince Monday"
    assert by_id["iss_4"].attrs["status"] == "closed"
    assert len(fake.calls("GET", "/users")) == 1 and len(fake.calls("GET", "/issue-statuses")) == 1
    assert [q for _m, _p, q, _b in fake.calls("GET", "/custom-fields")] == [{"object_type": "issue"}]


def test_an_empty_search_gives_one_empty_page_that_keeps_the_cursor(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    fake.answer("POST", "/issues/search", Response(json.dumps({"data": [], "request_id": "req_e"}),
                                                   content_type="application/json"))
    cursor = Cursor(when("2026-11-02T11:00:00Z"), "iss_9")

    pages = list(make(httpserver, extra).pull("ticket", cursor))

    assert len(pages) == 1 and pages[0].changes == [] and pages[0].cursor == cursor
    assert len(fake.sent) == 1


def test_a_first_pull_walks_time_windows_from_history_start_each_issue_once(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra, history_start="2026-09-01", issue_window_days=30)

    pages = list(connector.pull("ticket", Cursor()))

    # iss_6 was updated exactly at the boundary 2026-10-01T00:00:00Z: in the second window only
    assert [c.external_id for p in pages for c in p.changes] == [
        "iss_5", "iss_6", "iss_1", "iss_2", "iss_3", "iss_4"]
    filters = [b["filter"] for _m, _p, _q, b in fake.calls("POST", "/issues/search")]

    def window(start: str, end: str) -> dict[str, Any]:
        return {"operator": "and", "subfilters": [
            {"field": "updated_at", "operator": "time_is_after", "value": start},
            {"field": "updated_at", "operator": "time_is_before", "value": end}]}

    assert filters == [
        window("2026-08-31T23:59:59Z", "2026-10-01T00:00:00Z"),
        window("2026-09-30T23:59:59Z", "2026-10-31T00:00:00Z"),
        {"field": "updated_at", "operator": "time_is_after", "value": "2026-10-30T23:59:59Z"},  # open-ended
    ]


def test_accounts_are_listed_to_the_end_and_those_updated_since_given_oldest_first(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra, page_size=2)

    pages = list(connector.pull("account", Cursor(when("2026-09-10T00:00:00Z"), "acc_0")))

    assert ids(pages) == [["acc_1", "acc_3"]]  # (acc_2 was last updated before the cursor)
    lists = fake.calls("GET", "/accounts")
    assert [q for _m, _p, q, _b in lists] == [{"limit": "2"}, {"limit": "2", "cursor": "2"}]
    acme = pages[0].changes[0]
    assert acme.attrs == {"name": "Acme", "domain": "acme.example", "owner": "alice@example.com"}
    assert acme.fields == {"arr": "120000", "tier": "Enterprise"} and acme.tags == ["vip"]
    everything = list(connector.pull("account", Cursor()))
    globex = everything[0].changes[0]
    assert globex.external_id == "acc_2" and globex.attrs["owner"] == "Bob@Example.com"  # (via GET /users)


def test_contacts_have_no_modification_time_so_a_resumed_pull_gives_only_what_changed(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)

    (first,) = list(connector.pull("contact", Cursor()))
    assert [(c.external_id, c.attrs) for c in first.changes] == [
        ("con_1", {"name": "Ana", "email": "ana@acme.example", "account": {"id": "acc_1"}}),
        ("con_2", {"name": "Sam", "email": "sam@initech.example", "account": {"id": "acc_3"}}),
        ("con_3", {"name": "Li", "email": "li@globex.example"}),
    ]
    assert {c.at for c in first.changes} == {FROZEN_AT} and first.changes[0].fields == {"role": "Finance"}
    assert first.cursor == Cursor(FROZEN_AT, "con_3")

    (again,) = list(connector.pull("contact", first.cursor))
    assert again.changes == [] and again.cursor == first.cursor
    fake.contacts["con_2"]["name"] = "Samantha"
    (changed,) = list(connector.pull("contact", first.cursor))
    assert [(c.external_id, c.attrs["name"]) for c in changed.changes] == [("con_2", "Samantha")]
    # from another cursor (another process's, an older page's) every contact comes again
    (everyone,) = list(connector.pull("contact", Cursor(FROZEN_AT, "con_1")))
    assert len(everyone.changes) == 3


def test_a_malformed_issue_is_reported_with_its_page_and_the_others_go_on(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    broken = {"id": "iss_bad", "title": "?", "state": "new", "updated_at": "yesterday"}
    answer = {"data": [fake.issues["iss_4"], broken], "request_id": "req_s"}
    fake.answer("POST", "/issues/search", Response(json.dumps(answer), content_type="application/json"))

    (page,) = list(make(httpserver, extra).pull("ticket", Cursor(when("2026-11-01T00:00:00Z"), "x")))

    assert [c.external_id for c in page.changes] == ["iss_4"]
    assert page.problems == ["pylon ticket iss_bad: cannot be read (ValueError: Invalid isoformat string: "
                             "'yesterday'); skipped"]


def test_custom_fields_the_token_may_not_read_are_asked_once_and_go_as_written(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    denied = {"errors": ["Permission denied"], "code": "permission_denied", "request_id": "req_403"}
    fake.answer("GET", "/custom-fields", Response(json.dumps(denied), status=403,
                                                  content_type="application/json"))
    connector = make(httpserver, extra)

    (page,) = list(connector.pull("ticket", Cursor(when("2026-10-20T08:00:00Z"), "x")))
    (result,) = connector.push("ticket", [Write("pylon", "ticket", "r1", "iss_1", {"severity": "sev_1"})])

    assert {c.external_id: c.fields.get("severity") for c in page.changes}["iss_1"] == "sev_2"  # (its slug)
    assert result.ok
    assert fake.calls("PATCH")[0][3] == {"custom_fields": [{"slug": "severity", "value": "sev_1"}]}
    assert len(fake.calls("GET", "/custom-fields")) == 1
    assert [r.getMessage() for r in caplog.records if r.name == "bridge.connectors.pylon"] == [
        "pylon: cannot read the issue custom fields (pylon: HTTP 403: Permission denied (permission_denied; "
        "request req_403)); their values go as written"]


# ---------------------------------------------------------------- push


def test_a_ticket_write_goes_as_state_assignee_title_tags_priority_and_custom_fields(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)

    results = connector.push("ticket", [
        Write("pylon", "ticket", "r1", "iss_1", {
            "status": "open", "assignee": "bob@example.com", "priority": "normal",
            "subject": "Charged twice!", "tags": ["billing/refund", "vip"], "severity": "Sev-1",
            "product_area": ["Billing", "api"], "csm": "alice@example.com"}),
        Write("pylon", "ticket", "r2", "iss_2", {"assignee": None, "status": "closed", "severity": None}),
    ])

    assert [(r.record_id, r.ok, r.external_id) for r in results] == [
        ("r1", True, "iss_1"), ("r2", True, "iss_2")]
    assert results[0].response == {"request_id": "req_ok"}
    first, second = [b for _m, _p, _q, b in fake.calls("PATCH")]
    assert [p for _m, p, _q, _b in fake.calls("PATCH")] == ["/issues/iss_1", "/issues/iss_2"]
    # open goes as the first state mapped to it (waiting_on_you), normal as Pylon's medium
    assert first == {
        "state": "waiting_on_you", "assignee_id": "usr_2", "title": "Charged twice!",
        "tags": ["billing/refund", "vip"],
        "custom_fields": [{"slug": "priority", "value": "medium"}, {"slug": "severity", "value": "sev_1"},
                          {"slug": "product_area", "values": ["billing", "api"]},
                          {"slug": "csm", "value": "usr_1"}]}
    # unassigned is an empty assignee_id; a blank custom field is cleared (its slug alone)
    assert second == {"assignee_id": "", "state": "closed", "custom_fields": [{"slug": "severity"}]}
    assert fake.issues["iss_1"]["custom_fields"]["severity"] == {"slug": "severity", "value": "sev_1"}


def test_an_option_pylon_lacks_is_refused_before_sending_naming_field_record_and_options(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)

    results = connector.push("ticket", [
        Write("pylon", "ticket", "r1", "iss_1", {"severity": "Sev-9"}),
        Write("pylon", "ticket", "r2", "iss_2", {"no_such_field": "x"}),
        Write("pylon", "ticket", "r3", "iss_3", {"jira_status": "Done"}),
        Write("pylon", "ticket", "r4", "iss_4", {"severity": "sev_3"}),  # (an option's slug is taken too)
    ])

    assert [r.ok for r in results] == [False, False, False, True]
    assert [r.error for r in results[:3]] == [
        "pylon ticket r1: 'Sev-9' is not an option of the Pylon issue field severity; options: Sev-1, Sev-2, "
        "Sev-3",
        "pylon ticket r2: no Pylon issue field has the slug 'no_such_field' (see bridge discover)",
        "pylon ticket r3: the Pylon issue field jira_status is read-only (an app or integration keeps it)",
    ]
    assert [p for _m, p, _q, _b in fake.calls("PATCH")] == ["/issues/iss_4"]
    # the fields were read again once (an option added in Pylon since), not once per write
    assert len(fake.calls("GET", "/custom-fields")) == 2


def test_an_option_added_in_pylon_after_the_fields_were_read_is_sent(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)
    connector.describe("ticket")
    fake.fields["issue"]["data"][0]["select_metadata"]["options"].append({"label": "Sev-0", "slug": "sev_0"})

    (result,) = connector.push("ticket", [Write("pylon", "ticket", "r1", "iss_1", {"severity": "Sev-0"})])

    assert result.ok
    assert fake.calls("PATCH")[0][3] == {"custom_fields": [{"slug": "severity", "value": "sev_0"}]}


def test_the_rules_effects_go_to_the_fields_effect_fields_names_or_as_internal_notes(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra, effect_fields={"escalation": "escalated_to", "follow_up": "@note"})
    assert connector.pylon_settings.effect_fields == {
        "tags": "@tags", "notify": "@note", "escalation": "escalated_to", "follow_up": "@note",
        "review": "@note", "sla": "@note"}

    results = connector.push("ticket", [
        Write("pylon", "ticket", "r1", "iss_1", {"escalation": "team-leads"}),
        Write("pylon", "ticket", "r2", "iss_2",
              {"notify": {"to": "alice@example.com", "message": "<b>Look</b>"}}),
        Write("pylon", "ticket", "r3", "iss_3", {"follow_up": "Any news?"}),
        Write("pylon", "ticket", "r4", "iss_4", {"review": "low confidence"}),
        Write("pylon", "ticket", "r5", "iss_5", {"status": "resolved"}),
        Write("pylon", "ticket", "r6", "iss_6", {"assignee": "carol@example.com"}),
    ])

    assert [r.ok for r in results] == [True, True, True, True, False, False]
    assert [r.error for r in results[4:]] == [
        "pylon ticket r5: no Pylon issue state is status 'resolved': map one in [connectors.pylon] statuses",
        "pylon ticket r6: no Pylon user has the email 'carol@example.com' (to assign the issue to)",
    ]
    assert [(p, b) for _m, p, _q, b in fake.calls("PATCH")] == [
        ("/issues/iss_1", {"custom_fields": [{"slug": "escalated_to", "value": "team-leads"}]})]
    assert fake.notes == [
        ("iss_2", {"body_html": "<p>[bridge notify] alice@example.com: &lt;b&gt;Look&lt;/b&gt;</p>"}),
        ("iss_3", {"body_html": "<p>[bridge follow-up] Any news?</p>"}),
        ("iss_4", {"body_html": "<p>[bridge review] low confidence</p>"}),
    ]


def test_an_account_write_maps_owner_by_email_and_options_by_label(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)

    (result,) = connector.push("account", [
        Write("pylon", "account", "a1", "acc_1", {"owner": "BOB@example.com", "tier": "Growth",
                                                  "arr": 150000.0, "tags": ["vip", "renewal"]})])

    assert result.ok
    assert fake.calls("PATCH")[0][1:] == ("/accounts/acc_1", {}, {
        "owner_id": "usr_2", "tags": ["vip", "renewal"],
        "custom_fields": [{"slug": "tier", "value": "growth"}, {"slug": "arr", "value": "150000"}]})


def test_an_account_without_a_pylon_id_is_found_by_domain_or_created_never_duplicated(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)
    fake.accounts["acc_2b"] = {**fake.accounts["acc_2"], "id": "acc_2b"}  # (two Globex accounts in Pylon)

    results = connector.push("account", [
        Write("pylon", "account", "a1", None, {"domain": "NewCo.example", "name": "NewCo", "arr": 5000}),
        Write("pylon", "account", "a2", None, {"domain": "acme.example", "arr": 1}),
        Write("pylon", "account", "a3", None, {"arr": 2}),
        Write("pylon", "account", "a4", None, {"domain": "globex.example", "arr": 3}),
        Write("pylon", "account", "a5", None, {"domain": "nobody.example", "arr": 4}),
    ])

    assert [(r.ok, r.external_id) for r in results] == [
        (True, "acc_new1"), (True, "acc_1"), (False, None), (False, None), (False, None)]
    assert [r.skipped for r in results[2:]] == [True, False, False]  # (a3: nothing to find it by)
    assert [r.error for r in results[2:]] == [
        "pylon account a3: no Pylon id and no domain to find the account by (a create without one could make "
        "a duplicate): declare a domain field synced to pylon to have it made",
        "pylon account a4: 2 Pylon accounts have the domain 'globex.example' (ids acc_2b, acc_2); merge them "
        "or link the record to one",
        "pylon account a5: no Pylon account has the domain 'nobody.example', and Pylon needs a name to "
        "create one",
    ]
    writes = [(m, p, b) for m, p, _q, b in fake.sent if m in ("POST", "PATCH")]
    assert writes[:4] == [
        ("POST", "/accounts/search", {"filter": {"field": "domains", "operator": "contains",
                                                 "value": "newco.example"}, "limit": 10}),
        ("POST", "/accounts", {"name": "NewCo", "primary_domain": "newco.example",
                               "domains": ["newco.example"],
                               "custom_fields": [{"slug": "arr", "value": "5000"}]}),
        ("POST", "/accounts/search", {"filter": {"field": "domains", "operator": "contains",
                                                 "value": "acme.example"}, "limit": 10}),
        ("PATCH", "/accounts/acc_1", {"primary_domain": "acme.example",
                                      "custom_fields": [{"slug": "arr", "value": "1"}]}),
    ]


def test_a_create_pylon_answers_as_a_duplicate_updates_the_record_it_names(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    # (made between the search and the create, by someone else)
    duplicate = {"errors": ["A contact with this email already exists"], "code": "duplicate_object",
                 "exists_id": "con_2", "request_id": "req_dup"}
    fake.answer("POST", "/contacts", Response(json.dumps(duplicate), status=400,
                                              content_type="application/json"))
    connector = make(httpserver, extra)

    (result,) = connector.push("contact", [
        Write("pylon", "contact", "c1", None,
              {"email": "sam2@initech.example", "name": "Sam", "role": "CTO"})])

    assert (result.ok, result.external_id) == (True, "con_2")
    assert [(m, p) for m, p, _q, _b in fake.sent if m != "GET"] == [
        ("POST", "/contacts/search"), ("POST", "/contacts"), ("PATCH", "/contacts/con_2")]
    assert fake.contacts["con_2"]["custom_fields"]["role"] == {"slug": "role", "value": "CTO"}


def test_an_issue_without_a_pylon_id_is_skipped_naming_it(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    # (a ticket of another helpdesk whose field is synced to Pylon too: not a failure, nothing to send)
    (result,) = make(httpserver, extra).push("ticket", [
        Write("pylon", "ticket", "t9", None, {"status": "open"})])
    assert not result.ok and result.skipped and result.error == (
        "pylon ticket t9: bridge does not create Pylon issues: this ticket has no Pylon id")
    assert fake.calls("PATCH") == []


# ---------------------------------------------------------------- errors


def test_429_waits_for_retry_after_then_the_write_lands(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    fake.answer("PATCH", "/issues/iss_1", error(429, "error_429", headers={"Retry-After": "7"}))

    (result,) = make(httpserver, extra).push("ticket", [
        Write("pylon", "ticket", "r1", "iss_1", {"tags": []})])

    assert result.ok and len(fake.calls("PATCH")) == 2
    assert 7.0 in fake_time.sleeps


def test_a_5xx_is_retried_with_backoff_then_goes_up_as_retriable(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    fake.answer("POST", "/issues/search", Response("upstream timeout", status=503), times=4)

    with pytest.raises(RetriableConnectorError, match=r"^pylon: HTTP 503: upstream timeout$"):
        list(make(httpserver, extra).pull("ticket", Cursor(when("2026-11-01T00:00:00Z"), "x")))

    assert len(fake.sent) == 4
    assert fake_time.sleeps == [0.25, 0.5, 1.0]  # (full jitter at 0.5 of 0.5 s, 1 s, 2 s)


def test_what_landed_stays_landed_when_a_later_write_fails_for_the_system(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    fake.answer("PATCH", "/issues/iss_2", error(429, "error_429", headers={"Retry-After": "600"}))

    results = make(httpserver, extra).push("ticket", [
        Write("pylon", "ticket", "r1", "iss_1", {"tags": ["a"]}),
        Write("pylon", "ticket", "r2", "iss_2", {"tags": ["b"]}),
        Write("pylon", "ticket", "r3", "iss_3", {"tags": ["c"]}),
    ])

    assert [(r.ok, r.retriable, r.retry_after) for r in results] == [
        (True, False, None), (False, True, 600.0), (False, True, 600.0)]
    assert results[1].error == (
        "pylon record r2: HTTP 429: Rate limit exceeded (rate_limited; request req_429)")
    assert [p for _m, p, _q, _b in fake.calls("PATCH")] == ["/issues/iss_1", "/issues/iss_2"]


def test_401_is_an_authentication_error_not_retried(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra, token="pylon_api_revoked")

    with pytest.raises(ConnectorAuthError) as caught:
        connector.check_connection()

    assert str(caught.value) == "pylon: HTTP 401: Invalid API token (invalid_api_token; request req_401)"
    assert len(fake.sent) == 1
    with pytest.raises(ConnectorAuthError, match=r"no token configured \(token_env or token_file\)"):
        make(httpserver, extra, token=None).pull("account", Cursor()).__next__()


def test_a_400_refuses_that_write_with_pylons_words_and_the_others_land(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    fake.answer("PATCH", "/issues/iss_1", error(400, "error_400"))

    results = make(httpserver, extra).push("ticket", [
        Write("pylon", "ticket", "r1", "iss_1", {"severity": "Sev-1"}),
        Write("pylon", "ticket", "r2", "iss_77", {"severity": "Sev-2"}),  # (deleted in Pylon: 404)
        Write("pylon", "ticket", "r3", "iss_3", {"severity": "Sev-3"}),
    ])

    assert [(r.ok, r.retriable) for r in results] == [(False, False), (False, False), (True, False)]
    assert results[0].error == ("pylon record r1: HTTP 400: Invalid value for custom field severity "
                                "(invalid_request_body; request req_400)")
    assert results[1].error == "pylon record r2: HTTP 404: issue not found (not_found; request req_404)"
    assert len(fake.calls("PATCH")) == 3  # (a refused write is not retried)


def test_the_token_never_shows_in_errors_or_logs(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"errors": [f"bad header Bearer {TOKEN}"], "code": "invalid_request_body", "request_id": "req_e"}
    fake.answer("PATCH", "/issues/iss_1", Response(json.dumps(echo), status=400,
                                                   content_type="application/json"))
    fake.answer("GET", "/me", Response(json.dumps(echo), status=401, content_type="application/json"))
    fake.answer("GET", "/me", Response(f"gateway saw {TOKEN}", status=502), times=2)
    connector = make(httpserver, extra, max_attempts=2)
    texts = [r.error or "" for r in connector.push("ticket", [Write("pylon", "ticket", "r1", "iss_1",
                                                                    {"tags": []})])]
    for _ in range(2):
        with pytest.raises((ConnectorAuthError, RetriableConnectorError)) as caught:
            connector.check_connection()
        texts.append(str(caught.value))

    assert texts == [
        "pylon record r1: HTTP 400: bad header Bearer [token] (invalid_request_body; request req_e)",
        "pylon: HTTP 401: bad header Bearer [token] (invalid_request_body; request req_e)",
        "pylon: HTTP 502: gateway saw [token]",
    ]
    assert caplog.records and TOKEN not in caplog.text
    assert TOKEN not in repr(connector.settings) and fake.authorization[0] == f"Bearer {TOKEN}"


def test_pylons_rate_limit_header_at_zero_pauses_the_next_call(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any], fake_time: FakeTime
) -> None:
    spent = Response(json.dumps(load("pylon", "me")), content_type="application/json",
                     headers={"X-Rate-Limit-Remaining": "0"})
    fake.answer("GET", "/me", spent)
    connector = make(httpserver, extra)

    connector.check_connection()
    assert fake_time.sleeps == []
    connector.check_connection()

    assert fake_time.sleeps == [60.0]  # (Pylon counts per minute)


def test_pylon_error_reads_the_error_body() -> None:
    assert pylon_error(json.dumps(load("pylon", "error_400"))) == (
        "Invalid value for custom field severity (invalid_request_body; request req_400)")
    assert pylon_error('{"request_id": "r"}') == "refused (request r)"
    assert pylon_error("<html>Bad gateway</html>") == "<html>Bad gateway</html>"


# ---------------------------------------------------------------- describe, webhooks, settings


def test_describe_gives_each_kinds_custom_fields_with_option_slugs_and_labels(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)

    issue = {f.name: f for f in connector.describe("ticket")}
    account = {f.name: (f.type, f.options, f.restricted) for f in connector.describe("account")}

    assert (issue["severity"].type, issue["severity"].options, issue["severity"].restricted) == (
        "select", ("sev_1", "sev_2", "sev_3"), True)
    assert issue["product_area"].label == "Product area" and issue["escalated_to"].restricted is False
    assert connector.option_labels("ticket", "product_area") == (
        ("Billing", "billing"), ("Access & Security", "access_security"), ("API", "api"))
    assert account == {"arr": ("decimal", (), False),
                       "tier": ("select", ("enterprise", "growth", "starter"), True)}
    assert [q for _m, _p, q, _b in fake.calls("GET", "/custom-fields")] == [
        {"object_type": "issue"}, {"object_type": "account"}]


def test_a_webhook_naming_an_issue_reads_it_and_an_issue_object_is_taken_as_it_is(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    connector = make(httpserver, extra)

    (named,) = connector.parse_webhook({}, b'{"issue_id": "iss_1"}')
    assert (named.external_id, named.attrs["status"], named.fields["severity"]) == (
        "iss_1", "pending", "Sev-2")
    assert fake.calls("GET", "/issues/iss_1")
    fake.sent.clear()
    given = json.dumps([{"issue": fake.issues["iss_4"]}, {"data": fake.issues["iss_6"]}]).encode()
    assert [c.external_id for c in connector.parse_webhook({}, given)] == ["iss_4", "iss_6"]
    assert fake.sent == []

    for body, why in [(b"[]", "empty array"), (b'{"title": "x"}', "body: no issue_id"), (b"{", "not JSON"),
                      (b"[1]", "item 0: an issue must be a JSON object")]:
        with pytest.raises(ValueError, match=re.escape(why)):
            connector.parse_webhook({}, body)
    # an issue deleted since the trigger fired is left out; the others of the delivery are taken
    both = connector.parse_webhook({}, b'[{"issue_id": "iss_404"}, {"issue_id": "iss_1"}]')
    assert [c.external_id for c in both] == ["iss_1"]


def test_settings_check_statuses_and_effect_fields() -> None:
    with pytest.raises(ValueError, match="'done': a Pylon state maps to one of open, pending"):
        PylonSettings(plugin="pylon", statuses={"closed": "done"})
    with pytest.raises(ValueError, match="'escalate': the effects are"):
        PylonSettings(plugin="pylon", effect_fields={"escalate": "x"})
    with pytest.raises(ValueError, match=r"'tags': @note \(an internal note\) is for the events"):
        PylonSettings(plugin="pylon", effect_fields={"tags": "@note"})
    with pytest.raises(ValueError, match="'review': @tags"):
        PylonSettings(plugin="pylon", effect_fields={"review": "@tags"})
    s = PylonSettings(plugin="pylon", effect_fields={"tags": "bridge_tags"})
    assert s.effect_fields == {"tags": "bridge_tags", "notify": "@note", "escalation": "@note",
                               "follow_up": "@note", "review": "@note", "sla": "@note"}
    # a state mapped by the admin is merged over Pylon's own, as effect_fields is
    custom = PylonSettings(plugin="pylon", statuses={"solved": "resolved"})
    assert custom.statuses == {"waiting_on_you": "open", "new": "open", "waiting_on_customer": "pending",
                               "on_hold": "on_hold", "closed": "closed", "solved": "resolved"}
    assert s.kinds == ["account", "contact", "ticket"] and s.base_url == "https://api.usepylon.com"
    assert s.history_start == date(2022, 1, 1)


def test_the_plugin_registers_the_pylon_connector() -> None:
    assert connectors_of(pylon_module) == {"pylon": PylonConnector}
    assert PylonConnector.accepts_writes() and PylonConnector.kinds == ("account", "contact", "ticket")


def test_the_config_contracts_pylon_table_loads_as_written(
    httpserver: HTTPServer, fake: FakePylon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not CONFIG_SPEC.exists():
        pytest.skip(f"the config contract is not beside the project ({CONFIG_SPEC})")
    found = re.search(r"^\[connectors\.pylon\]\n(?:[^\[\n].*\n)*", CONFIG_SPEC.read_text(), re.MULTILINE)
    assert found is not None, "the config contract has no [connectors.pylon] table"
    table = found.group(0).strip()
    assert table.splitlines() == ['[connectors.pylon]', 'plugin = "pylon"', 'token_env = "PYLON_TOKEN"',
                                  'kinds = ["account", "contact", "ticket"]']
    path = tmp_path / "bridge.toml"
    path.write_text(table + "\n")
    monkeypatch.setenv("PYLON_TOKEN", TOKEN)

    app = App(load_config(path))
    connector = app.connector("pylon")
    assert isinstance(connector, PylonConnector)
    s = connector.pylon_settings
    assert s.token is not None and s.token.get_secret_value() == TOKEN
    assert (s.kinds, s.base_url) == (["account", "contact", "ticket"], "https://api.usepylon.com")
    app.close()

    # the same table, its base_url overridden from the environment (a test server), reaches Pylon
    monkeypatch.setenv("BRIDGE_CONNECTORS__PYLON__BASE_URL", httpserver.url_for("").rstrip("/"))
    app = App(load_config(path))
    app.connector("pylon").check_connection()
    app.close()
    assert fake.calls("GET", "/me") and fake.authorization[-1] == f"Bearer {TOKEN}"


def test_every_request_of_a_full_run_is_one_the_spec_documents(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    if fake.spec is None:
        pytest.skip(f"the Pylon API summary is not beside the project ({SPEC})")
    connector = make(httpserver, extra, history_start="2026-10-01", page_size=2,
                     effect_fields={"escalation": "escalated_to"})
    for kind in PylonConnector.kinds:
        list(connector.pull(kind, Cursor()))
    connector.push("ticket", [Write("pylon", "ticket", "r1", "iss_1", {
        "status": "closed", "assignee": "alice@example.com", "tags": ["x"], "severity": "Sev-1",
        "priority": "high", "escalation": "leads", "notify": {"to": "a", "message": "b"}})])
    connector.push("account", [Write("pylon", "account", "a1", None, {"domain": "new.example", "name": "N"}),
                               Write("pylon", "account", "a2", "acc_1", {"owner": "alice@example.com"})])
    connector.push("contact", [Write("pylon", "contact", "c1", None, {"email": "x@y.example", "name": "X"})])
    connector.parse_webhook({}, b'{"issue_id": "iss_2"}')
    connector.check_connection()

    assert {(m, re.sub(r"/(iss|acc|con)_\w+", "/{id}", p)) for m, p, _q, _b in fake.sent} >= {
        ("POST", "/issues/search"), ("GET", "/accounts"), ("GET", "/contacts"), ("GET", "/custom-fields"),
        ("GET", "/users"), ("PATCH", "/issues/{id}"), ("POST", "/issues/{id}/note"),
        ("POST", "/accounts/search"), ("POST", "/accounts"), ("PATCH", "/accounts/{id}"),
        ("POST", "/contacts/search"), ("POST", "/contacts"), ("GET", "/issues/{id}"), ("GET", "/me")}
    assert fake.problems == []


# ---------------------------------------------------------------- the contract suite


class TestPylonContract(ConnectorContract):
    """The conformance suite against the loopback Pylon: issues in several time windows, accounts and
    contacts over several pages."""

    @pytest.fixture
    def connector(self, httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]) -> Connector:
        return make(httpserver, extra, page_size=2, history_start="2026-08-01")

    def writes(self, connector: Connector, kind: str) -> list[Write]:
        return [Write(connector.system, kind, f"rec-{n}", f"acc_{n}", {"arr": n * 1000}) for n in (1, 2, 3)]


def test_the_contracts_first_pull_is_the_whole_history_in_windows(
    httpserver: HTTPServer, fake: FakePylon, extra: dict[str, Any]
) -> None:
    pages = list(make(httpserver, extra).pull("ticket", Cursor()))
    windows = fake.calls("POST", "/issues/search")
    # 2022-01-01 to 2026-11-02 in windows of 30 days, the last open-ended
    days = (FROZEN_AT.date() - date(2022, 1, 1)).days
    assert len(windows) == days // 30 + 1
    assert sum(len(p.changes) for p in pages) == 6
    assert timedelta(days=30) * (len(windows) - 1) <= FROZEN_AT - parse_time("2022-01-01T00:00:00Z")
