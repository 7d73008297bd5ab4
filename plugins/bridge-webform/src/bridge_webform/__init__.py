"""bridge-webform: web-form submissions as tickets.

Inbound only. A submission is one JSON object, read from a ``*.json`` file in the ``path`` folder or POSTed to
bridge's webhook endpoint for the system::

    {"submitted_at": "2026-11-02T08:12:04Z", "form_id": "contact", "email": "claire@example.fr",
     "name": "Claire Martin", "subject": "...", "message": "...", "topic": "billing/refund", "language": "fr",
     "fields": {"order_number": "A-1042"}}

``submitted_at`` (ISO 8601), ``form_id``, ``email`` and a ``subject`` or ``message`` are required.
``topic`` (a string, comma separated, or a list of strings) becomes the ticket's tags; ``fields`` holds the
form's own answers and, with ``form_id``, is what ``describe`` lists. The external id is the submission's
``id`` when it has one, else a digest of the submission, so a submission seen both as a file and as a webhook
is one ticket. Files are pulled by (``submitted_at``, file name), the cursor's time and tie-break; times are
kept to the second, as the stored cursor is.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from bridge import (
    Change,
    Connector,
    ConnectorSettings,
    Cursor,
    FatalConnectorError,
    PullPage,
    RemoteField,
    hookimpl,
)
from bridge.hookspecs import ConnectorRegister
from bridge.model import format_time, parse_time

__version__ = "0.1.0"

log = logging.getLogger("bridge_webform")

KIND = "ticket"
_TEXT_KEYS = ("form_id", "email", "name", "subject", "message", "language", "id")


class WebformSettings(ConnectorSettings):
    """``[connectors.X]`` for ``plugin = "webform"``."""

    path: str = "submissions"
    """The folder holding one ``*.json`` file per submission."""
    page_size: int = Field(default=200, ge=1)
    """Changes per pulled page (the cursor is stored after each page)."""


class WebformConnector(Connector):
    """Web-form submissions, from a folder of JSON files or from webhooks, as tickets."""

    name = "webform"
    kinds = (KIND,)
    batch_max = 1
    settings_model = WebformSettings

    @property
    def webform_settings(self) -> WebformSettings:
        """The settings, typed."""
        settings = self.settings
        assert isinstance(settings, WebformSettings)
        return settings

    def _folder(self) -> Path:
        folder = Path(self.webform_settings.path)
        if not folder.is_dir():
            problem = f"submissions folder {str(folder)!r} is not a directory"
            raise FatalConnectorError(problem, system=self.system)
        return folder

    def _submissions(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Every readable submission file; a bad one is logged by name and skipped, the others still load."""
        for file in sorted(self._folder().glob("*.json")):
            try:
                data = json.loads(file.read_bytes().decode("utf-8"))
                yield file, check_submission(data)
            except (OSError, ValueError) as exc:
                log.warning("%s: skipped submission %s: %s", self.system, file, _reason(exc))

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        """Submissions after ``cursor`` by (``submitted_at``, file name), in pages of ``page_size``."""
        if kind != KIND:
            return
        rows = [(submission_to_change(self.system, data), file.name) for file, data in self._submissions()]
        rows.sort(key=lambda row: (row[0].at, row[1]))
        fresh = [row for row in rows if cursor.after(row[0].at, row[1])]
        size = self.webform_settings.page_size
        for start in range(0, len(fresh), size):
            page = fresh[start : start + size]
            last_change, last_file = page[-1]
            yield PullPage([change for change, _ in page], Cursor(last_change.at, last_file))

    def describe(self, kind: str) -> list[RemoteField]:
        """``form_id`` and every answer name found under ``fields`` in the folder's submissions."""
        if kind != KIND:
            return []
        found: dict[str, str] = {}
        for _file, data in self._submissions():
            for key, value in (data.get("fields") or {}).items():
                found.setdefault(key, _field_type(value))
        described = [RemoteField("form_id", "text", "Form")]
        described += [RemoteField(k, found[k], k.replace("_", " ").capitalize()) for k in sorted(found)]
        return described

    def check_connection(self) -> None:
        """The submissions folder exists."""
        self._folder()

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Change]:
        """One POSTed submission (a JSON object) as a change; ValueError names what is wrong with it."""
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if content_type and "json" not in content_type.lower():
            raise ValueError(f"{self.system}: webhook: expected JSON, not content-type {content_type!r}")
        try:
            data = json.loads(body.decode("utf-8"))
            return [submission_to_change(self.system, check_submission(data))]
        except ValueError as exc:
            raise ValueError(f"{self.system}: webhook: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    return str(exc)


def _field_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "text"


def check_submission(data: object) -> dict[str, Any]:
    """Validate one submission; ValueError names the first problem (key and what is wrong)."""
    if not isinstance(data, dict):
        raise ValueError(f"a submission is a JSON object, not {type(data).__name__}")
    for key in ("submitted_at", "form_id", "email"):
        if not data.get(key):
            raise ValueError(f"missing {key!r}")
    for key in ("submitted_at", *_TEXT_KEYS):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise ValueError(f"{key!r} must be a string, not {type(data[key]).__name__}")
    try:
        parse_time(data["submitted_at"])
    except ValueError:
        raise ValueError(f"'submitted_at' is not an ISO 8601 time: {data['submitted_at']!r}") from None
    if "@" not in data["email"]:
        raise ValueError(f"'email' is not an address: {data['email']!r}")
    if not (data.get("subject") or data.get("message")):
        raise ValueError("a submission needs a 'subject' or a 'message'")
    topic = data.get("topic")
    if topic is not None and not (
        isinstance(topic, str) or (isinstance(topic, list) and all(isinstance(t, str) for t in topic))
    ):
        raise ValueError("'topic' must be a string or a list of strings")
    if not isinstance(data.get("fields", {}), dict):
        raise ValueError("'fields' must be an object")
    return data


def submission_tags(topic: str | list[str] | None) -> list[str] | None:
    """Tags from a submission's ``topic``: trimmed, lowercased, de-duplicated; None when it has no topic."""
    if topic is None:
        return None
    parts = topic.split(",") if isinstance(topic, str) else topic
    tags: list[str] = []
    for part in parts:
        tag = part.strip().lower()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def submission_id(data: Mapping[str, Any]) -> str:
    """The external id: the submission's ``id``, else a digest of who sent what when through which form."""
    if data.get("id"):
        return str(data["id"])
    basis = json.dumps([data["form_id"], data["email"], data["submitted_at"], data.get("subject"),
                        data.get("message")], ensure_ascii=False)
    return "wf-" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]


def submission_to_change(system: str, data: Mapping[str, Any]) -> Change:
    """One validated submission as a ticket change."""
    at: datetime = parse_time(data["submitted_at"]).replace(microsecond=0)
    attrs: dict[str, Any] = {"channel": "webform", "email": data["email"], "requester": data["email"],
                             "created_at": format_time(at)}
    for key, attr in (("subject", "subject"), ("message", "body"), ("name", "name")):
        if data.get(key):
            attrs[attr] = data[key]
    if data.get("language"):
        attrs["language"] = str(data["language"]).strip().lower()
    return Change(
        system=system,
        kind=KIND,
        external_id=submission_id(data),
        at=at,
        fields={"form_id": data["form_id"], **(data.get("fields") or {})},
        tags=submission_tags(data.get("topic")),
        attrs=attrs,
    )


@hookimpl
def register_connectors(register: ConnectorRegister) -> None:
    """Register the webform connector."""
    register(WebformConnector)
