"""``discover``: remote fields per kind, and findings where the config does not fit (HubSpot properties)."""

from __future__ import annotations

import json
from typing import Any

from pytest_httpserver import HTTPServer

from bridge.connector import ConnectorContext
from bridge.connectors.hubspot import HubSpotConnector, HubSpotSettings
from bridge.discover import MISSING, OPTION_MISSING, TYPE_MISMATCH, discover, format_report
from bridge.settings import Config

from .conftest import load


def test_discover_reports_missing_fields_type_mismatches_and_missing_options(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    httpserver.expect_request("/crm/v3/properties/companies", method="GET").respond_with_json(
        load("hubspot", "properties_companies")
    )
    table = {
        "plugin": "hubspot",
        "kinds": ["account"],
        "access_token": "t",
        "base_url": httpserver.url_for("").rstrip("/"),
    }
    config = Config(
        connectors={"hubspot": table},
        fields={
            "tier": {
                "type": "select",
                "kind": "account",
                "options": ["Gold", "Silver", "Legacy"],
                "owner": "salesforce",
                "sync_to": ["hubspot"],
            },
            "arr": {"type": "number", "kind": "account", "owner": "salesforce", "sync_to": ["hubspot"]},
            "owner": {
                "type": "text",
                "kind": "account",
                "owner": "salesforce",
                "sync_to": ["hubspot"],
                "remote": {"hubspot": "sf_owner"},
            },
            "company_name": {
                "type": "text",
                "kind": "account",
                "owner": "hubspot",
                "remote": {"hubspot": "Company name"},
            },
            "health": {
                "type": "select",
                "kind": "account",
                "options": ["ok"],
                "sync_to": ["hubspot"],
                "remote": {"hubspot": "health_score"},
            },
            "renewal": {"type": "date", "kind": "account", "owner": "hubspot", "remote": {"hubspot": "arr"}},
            "severity": {"type": "select", "kind": "ticket", "options": ["Sev-1"], "sync_to": ["hubspot"]},
            "elsewhere": {"type": "text", "kind": "account", "owner": "salesforce"},
        },
    )
    connector = HubSpotConnector(ConnectorContext("hubspot", HubSpotSettings(**table), extra=extra))

    report = discover(config, "hubspot", connector)

    assert {(f.field, f.problem) for f in report.findings} == {
        ("tier", OPTION_MISSING),
        ("health", MISSING),
        ("renewal", TYPE_MISMATCH),
    }
    option = next(f for f in report.findings if f.problem == OPTION_MISSING)
    assert "'Legacy'" in option.detail  # hidden options do not count
    assert [f.name for f in report.kinds["account"]][:3] == ["name", "domain", "arr"]
    text = format_report(report)
    assert "tier 'Tier': enumeration:select (restricted) [gold, silver]" in text
    assert "account.health -> health_score: missing_remote_field" in text
    data = json.loads(report.to_json())
    assert data["system"] == "hubspot" and len(data["findings"]) == 3
    assert data["kinds"]["account"][0]["name"] == "name"


def test_discover_without_findings_says_so(httpserver: HTTPServer, extra: dict[str, Any]) -> None:
    httpserver.expect_request("/crm/v3/properties/companies", method="GET").respond_with_json(
        load("hubspot", "properties_companies")
    )
    table = {
        "plugin": "hubspot",
        "kinds": ["account"],
        "access_token": "t",
        "base_url": httpserver.url_for("").rstrip("/"),
    }
    config = Config(
        connectors={"hubspot": table},
        fields={"arr": {"type": "number", "kind": "account", "sync_to": ["hubspot"]}},
    )
    connector = HubSpotConnector(ConnectorContext("hubspot", HubSpotSettings(**table), extra=extra))

    report = discover(config, "hubspot", connector)

    assert report.findings == [] and "findings: none" in format_report(report)


def test_an_option_named_by_hubspots_internal_value_is_a_finding_unless_its_label_is_an_alias(
    httpserver: HTTPServer, extra: dict[str, Any]
) -> None:
    # a pull gives an enumeration's label: an option named by its internal value would never match it
    properties = load("hubspot", "properties_companies")
    [tier] = [p for p in properties["results"] if p["name"] == "tier"]
    tier["options"] = [{"label": "Enterprise (T1)", "value": "gold", "hidden": False},
                       {"label": "Growth (T2)", "value": "silver", "hidden": False}]
    httpserver.expect_request("/crm/v3/properties/companies", method="GET").respond_with_json(properties)
    table = {"plugin": "hubspot", "kinds": ["account"], "access_token": "t",
             "base_url": httpserver.url_for("").rstrip("/")}
    config = Config(connectors={"hubspot": table}, fields={"tier": {
        "type": "select", "kind": "account", "options": ["gold", "silver"], "owner": "hubspot",
        "aliases": {"silver": ["Growth (T2)"]}}})
    connector = HubSpotConnector(ConnectorContext("hubspot", HubSpotSettings(**table), extra=extra))

    report = discover(config, "hubspot", connector)

    assert [(f.field, f.problem, f.detail) for f in report.findings] == [(
        "tier", OPTION_MISSING, "option 'gold' is hubspot's internal value of the option labelled "
        "'Enterprise (T1)', and a pull gives the label: name the option 'Enterprise (T1)', or give it the "
        "alias 'Enterprise (T1)'")]
