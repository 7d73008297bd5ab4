"""Push 1,000 changed records through each CRM connector against a local server; print write calls and time.

Run: ``.venv/bin/python benchmarks/bench_connectors.py [N]``. HubSpot and Pipedrive talk to a plain HTTP
server on 127.0.0.1, Salesforce to an HTTPS one (certificate from a throwaway trustme CA).
The figure that matters: write calls made against the minimum ``ceil(N / batch_max)``.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trustme
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bridge.connector import Connector, ConnectorContext
from bridge.connectors.hubspot import HubSpotConnector, HubSpotSettings
from bridge.connectors.pipedrive import PipedriveConnector, PipedriveSettings
from bridge.connectors.salesforce import SalesforceConnector, SalesforceSettings
from bridge.http import min_calls
from bridge.model import Write

WRITE_METHODS = {"POST", "PATCH", "PUT"}
NO_SLEEP: dict[str, Any] = {"sleep": lambda s: None}


def hubspot_answer(request: Request) -> Response:
    inputs = json.loads(request.data)["inputs"]
    results = [
        {
            "id": i["id"],
            "properties": i["properties"],
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


def salesforce_answer(request: Request) -> Response:
    records = json.loads(request.data)["records"]
    return Response(
        json.dumps([{"id": r["Id"], "success": True, "errors": []} for r in records]),
        content_type="application/json",
    )


def pipedrive_answer(request: Request) -> Response:
    return Response(
        json.dumps({"success": True, "data": {"id": int(request.path.rsplit("/", 1)[-1])}}),
        content_type="application/json",
    )


def measure(name: str, connector: Connector, server: HTTPServer, writes: list[Write]) -> None:
    before = len(server.log)
    start = time.perf_counter()
    for offset in range(0, len(writes), connector.batch_max):
        results = connector.push("account", writes[offset : offset + connector.batch_max])
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    elapsed = time.perf_counter() - start
    calls = sum(1 for r, _ in server.log[before:] if r.method in WRITE_METHODS and "oauth2" not in r.path)
    best = min_calls(len(writes), connector.batch_max)
    print(
        f"{name:<11} batch_max={connector.batch_max:<4} write calls={calls:<5} minimum={best:<5} "
        f"{'OK' if calls == best else 'OVER'}  {elapsed:6.2f} s  {len(writes) / elapsed:8.0f} writes/s"
    )


def main(n: int = 1000) -> None:
    writes_hs = [
        Write("hubspot", "account", f"r{i}", str(10_000 + i), {"arr": i, "tier": "gold"}) for i in range(n)
    ]
    writes_sf = [Write("salesforce", "account", f"r{i}", f"001{i:015d}", {"ARR__c": i}) for i in range(n)]
    writes_pd = [
        Write("pipedrive", "account", f"r{i}", str(10_000 + i), {"name": f"Org {i}"}) for i in range(n)
    ]

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    plain = HTTPServer(host="127.0.0.1", port=0)
    plain.start()
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    secure = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    secure.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ca_file = str(Path(tmp) / "ca.pem")
            ca.cert_pem.write_to_path(ca_file)
            base = plain.url_for("").rstrip("/")
            plain.expect_request("/crm/v3/objects/companies/batch/update").respond_with_handler(
                hubspot_answer
            )
            plain.expect_request("/v1/organizationFields").respond_with_json(
                {"success": True, "data": [{"key": "name", "name": "Name", "field_type": "varchar"}]}
            )
            plain.expect_request(re.compile(r"^/v1/organizations/\d+$"), method="PUT").respond_with_handler(
                pipedrive_answer
            )
            sbase = secure.url_for("").rstrip("/")
            secure.expect_request("/services/oauth2/token").respond_with_json(
                {"access_token": "bench", "instance_url": sbase, "token_type": "Bearer"}
            )
            secure.expect_request("/services/data/v62.0/sobjects/Account/describe").respond_with_json(
                {
                    "name": "Account",
                    "fields": [
                        {
                            "name": "ARR__c",
                            "type": "currency",
                            "picklistValues": [],
                            "restrictedPicklist": False,
                        }
                    ],
                }
            )
            secure.expect_request(
                "/services/data/v62.0/composite/sobjects", method="PATCH"
            ).respond_with_handler(salesforce_answer)

            hubspot = HubSpotConnector(
                ConnectorContext(
                    "hubspot",
                    HubSpotSettings(
                        plugin="hubspot", base_url=base, access_token="bench", rate_per_second=1e6
                    ),
                    extra=NO_SLEEP,
                )
            )
            salesforce = SalesforceConnector(
                ConnectorContext(
                    "salesforce",
                    SalesforceSettings(
                        plugin="salesforce",
                        base_url=sbase,
                        client_id="id",
                        client_secret="s",
                        ca_bundle=ca_file,
                        rate_per_second=1e6,
                    ),
                    extra=NO_SLEEP,
                )
            )
            pipedrive = PipedriveConnector(
                ConnectorContext(
                    "pipedrive",
                    PipedriveSettings(
                        plugin="pipedrive", base_url=base, api_token="bench", rate_per_second=1e6
                    ),
                    extra=NO_SLEEP,
                )
            )
            print(f"pushing {n} changed records per connector")
            measure("hubspot", hubspot, plain, writes_hs)
            measure("salesforce", salesforce, secure, writes_sf)
            measure("pipedrive", pipedrive, plain, writes_pd)
            salesforce.close()
            pipedrive.close()
    finally:
        plain.stop()
        secure.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
