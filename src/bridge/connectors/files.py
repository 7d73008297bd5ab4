"""The ``files`` connector: JSONL in, JSONL out. The offline demo's inbound channel, and backfills.

Inbound: every ``*.jsonl`` file under ``path``, one record per line::

    {"kind": "ticket", "id": "T-1", "updated_at": "2026-11-02T09:15:00Z", "subject": "...", "body": "...",
     "tags": ["billing/refund"], "status": "open", "fields": {"severity": "Sev-2"}}

Records come out oldest first by (``updated_at``, ``id``), after the stored cursor. Outbound writes are
appended to ``out_path`` as JSON lines with their idempotency key (and flushed to disk before the push
returns), so a repeated push is recognisable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bridge.connector import Connector, Cursor, PullPage, PushResult
from bridge.errors import SkippableRecordError
from bridge.model import Change, Write, parse_time
from bridge.plugins import Register, hookimpl
from bridge.settings import ConnectorSettings

_ATTRS = (
    "subject",
    "body",
    "status",
    "priority",
    "channel",
    "assignee",
    "email",
    "name",
    "domain",
    "language",
    "sentiment",
    "requester",
    "account",
    "created_at",
)


class FilesSettings(ConnectorSettings):
    """``[connectors.X]`` for ``plugin = "files"``."""

    path: str = "inbox"
    out_path: str | None = None
    page_size: int = 500


class FilesConnector(Connector):
    """Reads records from JSONL files and appends writes to a JSONL file."""

    name = "files"
    kinds = ("ticket", "account", "contact")
    batch_max = 1000
    settings_model = FilesSettings

    @property
    def files_settings(self) -> FilesSettings:
        """The settings, typed."""
        settings = self.settings
        assert isinstance(settings, FilesSettings)
        return settings

    def _lines(self) -> Iterator[tuple[Path, int, dict[str, Any]]]:
        root = Path(self.files_settings.path)
        files = sorted(root.glob("*.jsonl")) if root.is_dir() else [root]
        for file in files:
            with file.open(encoding="utf-8") as fh:
                for number, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        data = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise SkippableRecordError(
                            f"{file}:{number}: not JSON: {exc.msg}", system=self.system
                        ) from None
                    if not isinstance(data, dict) or "id" not in data:
                        raise SkippableRecordError(
                            f"{file}:{number}: a record needs an id", system=self.system
                        )
                    yield file, number, data

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        """Every record of ``kind`` after ``cursor``, in pages of ``page_size``."""
        rows: list[Change] = []
        for _file, _number, data in self._lines():
            if data.get("kind", "ticket") != kind:
                continue
            rows.append(record_to_change(self.system, kind, data))
        rows.sort(key=lambda c: (c.at, c.external_id))
        fresh = [c for c in rows if cursor.after(c.at, c.external_id)]
        size = max(1, self.files_settings.page_size)
        for start in range(0, len(fresh), size):
            page = fresh[start : start + size]
            yield PullPage(page, Cursor(page[-1].at, page[-1].external_id))

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        """Append each write as one JSON line to ``out_path``."""
        out = self.files_settings.out_path
        if not out:
            return [PushResult(w.record_id, True, w.external_id) for w in writes]
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            for w in writes:
                fh.write(
                    json.dumps(
                        {
                            "kind": kind,
                            "id": w.external_id or w.record_id,
                            "record": w.record_id,
                            "fields": w.fields,
                            "key": w.idempotency_key,
                        },
                        default=str,
                    )
                    + "\n"
                )
            fh.flush()
            os.fsync(fh.fileno())  # a write reported as done must survive a crash of this process or host
        return [PushResult(w.record_id, True, w.external_id or w.record_id) for w in writes]

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Change]:
        """A JSON object or array of records in the inbound format."""
        data = json.loads(body)
        items = data if isinstance(data, list) else [data]
        return [record_to_change(self.system, str(d.get("kind", "ticket")), d) for d in items]


def record_to_change(system: str, kind: str, data: Mapping[str, Any]) -> Change:
    """One inbound JSON record as a Change."""
    at = parse_time(data.get("updated_at") or data.get("created_at") or "1970-01-01T00:00:00Z")
    tags = data.get("tags")
    return Change(
        system=system,
        kind=kind,
        external_id=str(data["id"]),
        at=at,
        fields=dict(data.get("fields") or {}),
        tags=list(tags) if tags is not None else None,
        attrs={k: data[k] for k in _ATTRS if k in data},
        deleted=bool(data.get("deleted", False)),
    )


@hookimpl
def register_connectors(register: Register) -> None:
    """Register the files connector."""
    register(FilesConnector)
