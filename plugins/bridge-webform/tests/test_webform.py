"""bridge-webform: the connector contract, then what is particular to web forms."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import bridge_webform
import pytest
from bridge_webform import WebformConnector, submission_id

from bridge import Connector, Cursor, FatalConnectorError
from bridge.testing import ConnectorContract, connectors_of, make_connector

SAMPLE = Path(__file__).resolve().parent.parent / "sample"
CLAIRE = "2026-11-02-0812-claire-martin.json"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the sample submissions."""
    target = tmp_path / "submissions"
    shutil.copytree(SAMPLE, target)
    return target


def webform(folder: Path, **settings: Any) -> WebformConnector:
    return make_connector(WebformConnector, "forms", path=str(folder), **settings)


class TestWebformContract(ConnectorContract):
    """The conformance suite bridge ships, run against the sample submissions in pages of two."""

    @pytest.fixture
    def connector(self, folder: Path) -> Connector:
        return webform(folder, page_size=2)


def test_registers_its_connector_through_the_hook() -> None:
    assert connectors_of(bridge_webform) == {"webform": WebformConnector}


def test_pull_orders_by_time_then_file_name(folder: Path) -> None:
    pages = list(webform(folder, page_size=3).pull("ticket", Cursor()))
    assert [p.cursor.id for p in pages] == ["2026-11-02-1105-ana-souza.json",
                                            "2026-11-02-1105-lena-vogel.json"]
    emails = [c.attrs["email"] for p in pages for c in p.changes]
    assert emails == ["claire.martin@example.fr", "j.okafor@example.com", "ana.souza@example.com",
                      "lena.vogel@example.de"]
    resumed = list(webform(folder).pull("ticket", pages[0].cursor))
    assert [c.attrs["email"] for p in resumed for c in p.changes] == ["lena.vogel@example.de"]


def test_a_submission_becomes_a_ticket_change(folder: Path) -> None:
    change = next(iter(webform(folder).pull("ticket", Cursor()))).changes[0]
    assert change.system == "forms" and change.kind == "ticket"
    assert change.tags == ["billing/refund"]
    assert change.fields == {"form_id": "contact", "invoice_number": "INV-2291"}
    assert change.attrs["subject"] == "Double prélèvement sur ma facture"
    assert change.attrs["body"].startswith("Bonjour")
    assert change.attrs["language"] == "fr"
    assert change.attrs["channel"] == "webform"
    assert change.at.isoformat() == "2026-11-02T08:12:04+00:00"


@pytest.mark.parametrize(
    ("topic", "tags"),
    [("Billing/Refund", ["billing/refund"]), ("billing/refund, access/sso", ["billing/refund", "access/sso"]),
     (["bug/crash", "bug/crash"], ["bug/crash"]), (None, None)],
)
def test_tags_come_from_the_topic(topic: object, tags: list[str] | None) -> None:
    body = {"submitted_at": "2026-11-02T10:00:00Z", "form_id": "f", "email": "a@example.com", "message": "hi"}
    if topic is not None:
        body["topic"] = topic  # type: ignore[assignment]
    [change] = make_connector(WebformConnector).parse_webhook({}, json.dumps(body).encode())
    assert change.tags == tags


def test_webhook_and_file_give_the_same_ticket(folder: Path) -> None:
    body = (folder / CLAIRE).read_bytes()
    connector = webform(folder)
    [from_hook] = connector.parse_webhook({"Content-Type": "application/json; charset=utf-8"}, body)
    from_file = next(iter(connector.pull("ticket", Cursor()))).changes[0]
    assert from_hook.external_id == from_file.external_id == submission_id(json.loads(body))
    assert from_hook.external_id.startswith("wf-")


def test_an_explicit_id_is_the_external_id() -> None:
    body = {"id": "sub-77", "submitted_at": "2026-11-02T10:00:00Z", "form_id": "f", "email": "a@example.com",
            "subject": "hello"}
    [change] = make_connector(WebformConnector).parse_webhook({}, json.dumps(body).encode())
    assert change.external_id == "sub-77"


GOOD = {"submitted_at": "2026-11-02T10:00:00Z", "form_id": "contact", "email": "a@example.com",
        "message": "hi"}


@pytest.mark.parametrize(
    ("body", "headers", "problem"),
    [
        (b"{not json", {}, "not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b"\xff\xfe{}", {}, "not UTF-8 text"),
        (b"[1, 2]", {}, "a submission is a JSON object, not list"),
        (json.dumps({**GOOD, "email": ""}).encode(), {}, "missing 'email'"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "form_id"}).encode(), {}, "missing 'form_id'"),
        (json.dumps({**GOOD, "submitted_at": "yesterday"}).encode(), {},
         "'submitted_at' is not an ISO 8601 time: 'yesterday'"),
        (json.dumps({**GOOD, "email": "nobody"}).encode(), {}, "'email' is not an address: 'nobody'"),
        (json.dumps({**GOOD, "message": None}).encode(), {}, "needs a 'subject' or a 'message'"),
        (json.dumps({**GOOD, "name": 42}).encode(), {}, "'name' must be a string, not int"),
        (json.dumps({**GOOD, "topic": {"a": 1}}).encode(), {}, "'topic' must be a string or a list"),
        (json.dumps({**GOOD, "fields": [1]}).encode(), {}, "'fields' must be an object"),
        (json.dumps(GOOD).encode(), {"content-type": "text/plain"}, "not content-type 'text/plain'"),
    ],
)
def test_a_malformed_webhook_names_what_is_wrong(body: bytes, headers: dict[str, str], problem: str) -> None:
    connector = make_connector(WebformConnector, "forms")
    with pytest.raises(ValueError, match=r"^forms: webhook: ") as caught:
        connector.parse_webhook(headers, body)
    assert problem in str(caught.value)


def test_a_bad_file_is_skipped_by_name_and_the_others_load(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "2026-11-02-0900-broken.json").write_text('{"form_id": "contact"}', encoding="utf-8")
    (folder / "notes.txt").write_text("not a submission", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bridge_webform"):
        changes = [c for p in webform(folder).pull("ticket", Cursor()) for c in p.changes]
    assert len(changes) == 4
    assert "2026-11-02-0900-broken.json: missing 'submitted_at'" in caplog.text


def test_describe_lists_the_form_answers(folder: Path) -> None:
    fields = {f.name: f.type for f in webform(folder).describe("ticket")}
    assert fields == {"form_id": "text", "company_size": "number", "invoice_number": "text"}


def test_a_missing_folder_is_fatal_and_named(tmp_path: Path) -> None:
    connector = webform(tmp_path / "nowhere")
    with pytest.raises(FatalConnectorError, match=r"forms: submissions folder '.*nowhere' is not a dir"):
        connector.check_connection()
    with pytest.raises(FatalConnectorError):
        list(connector.pull("ticket", Cursor()))


def test_page_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="page_size"):
        make_connector(WebformConnector, page_size=0)
