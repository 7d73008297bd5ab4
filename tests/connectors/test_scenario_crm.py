"""Scenario at the connector level: Salesforce owns ``arr`` and ``owner``; HubSpot receives them.

The engine's part (mapping remote names to config fields, deciding that an unchanged value is not written)
is not here: this checks what each connector contributes. A Salesforce pull yields the changes; the writes
that follow for HubSpot go out in one batch call.
"""

from __future__ import annotations

import json
from typing import Any

from pytest_httpserver import HTTPServer

from bridge.connector import ConnectorContext, Cursor
from bridge.connectors.hubspot import HubSpotConnector, HubSpotSettings
from bridge.connectors.salesforce import SalesforceConnector, SalesforceSettings
from bridge.model import Write

from .conftest import load

SF_TO_HUBSPOT = {"ARR__c": "arr", "OwnerId": "sf_owner"}  # what the config's remote names say
LINKS = {"001D000000IqhSLIAZ": "101", "001D000000IqhSMIAZ": "102", "001D000000IqhSNIAZ": "103"}


def test_salesforce_owned_fields_reach_hubspot_in_one_batch(
    tls_server: HTTPServer, httpserver: HTTPServer, ca_file: str, extra: dict[str, Any]
) -> None:
    token = load("salesforce", "token") | {"instance_url": tls_server.url_for("").rstrip("/")}
    tls_server.expect_ordered_request("/services/oauth2/token", method="POST").respond_with_json(token)
    tls_server.expect_ordered_request("/services/data/v62.0/queryAll/").respond_with_json(
        load("salesforce", "query_accounts_page1")
    )
    # the org's users, read at the first owner: an owner is named by email
    tls_server.expect_ordered_request("/services/data/v62.0/query/").respond_with_json(
        {"totalSize": 0, "done": True, "records": []})
    tls_server.expect_ordered_request("/services/data/v62.0/query/01gD0000002HU6KIAW-2000").respond_with_json(
        load("salesforce", "query_accounts_page2")
    )
    httpserver.expect_request("/crm/v3/objects/companies/batch/update", method="POST").respond_with_json(
        load("hubspot", "batch_update_200")
    )
    httpserver.expect_request("/crm/v3/properties/companies", method="GET").respond_with_json(
        load("hubspot", "properties_companies")
    )
    salesforce = SalesforceConnector(
        ConnectorContext(
            "salesforce",
            SalesforceSettings(
                plugin="salesforce",
                base_url=tls_server.url_for("").rstrip("/"),
                client_id="id",
                client_secret="s",
                ca_bundle=ca_file,
                fields={"account": ["Id", "ARR__c", "OwnerId", "SystemModstamp"]},
            ),
            extra=extra,
        )
    )
    hubspot = HubSpotConnector(
        ConnectorContext(
            "hubspot",
            HubSpotSettings(plugin="hubspot", base_url=httpserver.url_for("").rstrip("/"), access_token="t"),
            extra=extra,
        )
    )

    changes = [c for page in salesforce.pull("account", Cursor()) for c in page.changes]
    writes = [
        Write(
            "hubspot",
            "account",
            f"rec-{c.external_id}",
            LINKS[c.external_id],
            {SF_TO_HUBSPOT[k]: v for k, v in c.fields.items() if k in SF_TO_HUBSPOT},
        )
        for c in changes
    ]
    results = hubspot.push("account", writes)

    assert [c.fields["ARR__c"] for c in changes] == [120000.0, 5000.0, None]
    assert all(r.ok for r in results)
    calls = [json.loads(r.data) for r, _ in httpserver.log if r.method == "POST"]
    assert len(calls) == 1
    assert calls[0]["inputs"] == [
        {
            "id": "101",
            "properties": {"arr": "120000", "sf_owner": "005D0000001AbCdIAK"},
            "objectWriteTraceId": "0",
        },
        {
            "id": "102",
            "properties": {"arr": "5000", "sf_owner": "005D0000001AbCeIAK"},
            "objectWriteTraceId": "1",
        },
        {"id": "103", "properties": {"arr": "", "sf_owner": "005D0000001AbCdIAK"}, "objectWriteTraceId": "2"},
    ]
