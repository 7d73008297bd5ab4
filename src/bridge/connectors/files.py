"""The ``files`` connector: JSONL in, JSONL out. The offline demo's inbound channel, and backfills.

Inbound: every ``*.jsonl`` file under ``path``, one record per line::

    {"kind": "ticket", "id": "T-1", "updated_at": "2026-11-02T09:15:00Z", "subject": "...", "body": "...",
     "tags": ["billing/refund"], "status": "open", "fields": {"severity": "Sev-2"}}

Records come out oldest first by (``updated_at``, ``id``), after the stored cursor. Outbound writes are
appended to ``out_path`` as JSON lines with their idempotency key (and flushed to disk before the push
returns), so a repeated push is recognisable; an event write (a follow-up, an escalation, a note: marked
``"event": true``) whose key is in the file already is not appended again (pushed again after a crash kept the
outbox from hearing of it).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.connector import Connector, ConnectorContext, Cursor, PullPage, PushResult
from bridge.errors import FatalConnectorError
from bridge.model import TICKET_STATUSES, Change, Write, parse_time, utcnow
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
    # a ticket's newest message (``last_author``: customer, agent or another author) and whether an agent
    # acknowledged it: what meets the SLA's response and acknowledgement clocks. A line carrying a message is
    # that message's event: give it only on the line of the change that brings the message
    "message",
    "last_author",
    "acknowledged",
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

    def __init__(self, context: ConnectorContext) -> None:
        """A connector of the ``files`` plugin for one configured system."""
        super().__init__(context)
        # out file -> its event writes' keys, and how far it was read (what another process appended since
        # is read before each append)
        self._events_written: dict[Path, tuple[set[str], int]] = {}

    @property
    def files_settings(self) -> FilesSettings:
        """The settings, typed."""
        settings = self.settings
        assert isinstance(settings, FilesSettings)
        return settings

    def _lines(self, problems: list[str]) -> Iterator[tuple[Path, int, dict[str, Any]]]:
        """Each record line of the inbox; a line that is not one is added to ``problems`` and skipped."""
        root = Path(self.files_settings.path)
        if not root.exists():
            raise FatalConnectorError(f"path: {missing_path(root)}", system=self.system)
        files = sorted(root.glob("*.jsonl")) if root.is_dir() else [root]
        for file in files:
            try:
                fh = file.open(encoding="utf-8", errors="replace")  # (bad bytes fail that line's JSON)
            except OSError as exc:  # unreadable, or gone since the folder was listed
                raise FatalConnectorError(f"cannot read {file}: {exc.strerror}", system=self.system) from None
            with fh:
                for number, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        data = json.loads(line)
                    except json.JSONDecodeError as exc:
                        problems.append(f"{file}:{number}: not JSON: {exc.msg}; skipped")
                        continue
                    if not isinstance(data, dict) or "id" not in data:
                        problems.append(f"{file}:{number}: a record needs an id; skipped")
                        continue
                    yield file, number, data

    def pull(self, kind: str, cursor: Cursor) -> Iterator[PullPage]:
        """Every record of ``kind`` after ``cursor``, in pages of ``page_size``. A line that is not a valid
        record is reported with the first page (file and line) and skipped: the others go on."""
        rows: list[Change] = []
        mtimes: dict[Path, datetime] = {}
        problems: list[str] = []
        carried = self.settings.kinds or list(FilesConnector.kinds)
        for file, number, data in self._lines(problems):
            other = data.get("kind", "ticket")
            if other != kind:
                if kind == carried[0] and other not in FilesConnector.kinds:
                    # (reported once, by the pull of the first kind: a misspelt kind is no silent loss)
                    known = ", ".join(FilesConnector.kinds)
                    problems.append(f"{file}:{number}: kind must be one of {known}, not {other!r}; skipped")
                continue
            if file not in mtimes:
                # an undated record takes its file's mtime: a re-pull of an unchanged file is no new change,
                # but a write to the file brings its undated records again (docs/config.md says to date them)
                mtimes[file] = datetime.fromtimestamp(file.stat().st_mtime, UTC)
            try:
                _validate_item(data)
                rows.append(record_to_change(self.system, kind, data, default_at=mtimes[file]))
            except ValueError as exc:
                problems.append(f"{file}:{number}: {exc}; skipped")
        rows.sort(key=lambda c: (c.at, c.external_id))
        fresh = [c for c in rows if cursor.after(c.at, c.external_id)]
        size = max(1, self.files_settings.page_size)
        if not fresh and problems:
            yield PullPage([], cursor, problems)
        for start in range(0, len(fresh), size):
            page = fresh[start : start + size]
            yield PullPage(page, Cursor(page[-1].at, page[-1].external_id), problems if start == 0 else [])

    def push(self, kind: str, writes: list[Write]) -> list[PushResult]:
        """Append each write as one JSON line to ``out_path``."""
        out = self.files_settings.out_path
        if not out:
            return [PushResult(w.record_id, True, w.external_id) for w in writes]
        path = Path(out)
        try:
            return self._append(path, kind, writes)
        except OSError as exc:  # a full disk, a directory in the way: stop this system's push, lose nothing
            raise FatalConnectorError(f"cannot write {path}: {exc.strerror}", system=self.system) from None

    def _events_in(self, path: Path, fh: Any) -> set[str]:
        """The keys of the event writes (a follow-up, a note ...) in the out file open as ``fh`` (locked):
        what was read before, and the whole lines appended since, by this process or another."""
        found, offset = self._events_written.get(path, (set(), 0))
        fh.seek(offset)
        for line in fh:
            if not line.endswith(b"\n"):
                break  # (a line being cut short by a crash: its write was never reported done)
            offset += len(line)
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(row, dict) and row.get("event") is True:
                found.add(str(row.get("key")))
        self._events_written[path] = (found, offset)
        return found

    def _append(self, path: Path, kind: str, writes: list[Write]) -> list[PushResult]:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh: list[str] = []
        with path.open("a+b") as fh:
            # one writer at a time (two daemons, or a daemon and a bridge sync): each reads the keys the other
            # appended before it appends, so an event is told once
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            written = self._events_in(path, fh)
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")  # a line a crash cut short stays apart from the next: it is repeated
            try:
                self._write_rows(fh, kind, writes, written, fresh)
            except OSError:
                # what a failed append left is no proof the writes are on disk: they are pushed again, and
                # appended then (its lines are not read as written)
                self._events_written[path] = (written, os.fstat(fh.fileno()).st_size)
                raise
            written.update(fresh)
            self._events_written[path] = (written, fh.tell())  # (what this append wrote is read already)
        return [PushResult(w.record_id, True, w.external_id or w.record_id) for w in writes]

    @staticmethod
    def _write_rows(fh: Any, kind: str, writes: list[Write], written: set[str], fresh: list[str]) -> None:
        for w in writes:
            row: dict[str, Any] = {
                "kind": kind,
                "id": w.external_id or w.record_id,
                "record": w.record_id,
                "fields": w.fields,
                "key": w.idempotency_key,
            }
            if w.is_event:
                # a crash between this append and the outbox hearing of it pushes the write again (with its
                # key) once its claim lapses: an event is told once, a value may be written twice
                if w.idempotency_key in written or w.idempotency_key in fresh:
                    continue
                fresh.append(w.idempotency_key)
                row["event"] = True
            fh.write((json.dumps(row, default=str) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())  # a write reported as done must survive a crash of this process or host

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Change]:
        """A JSON object or array of records in the inbound format; undated records get the receive time.

        Raises ValueError naming the problem (and the item's index in an array) for a malformed body.
        """
        try:
            data = json.loads(body)
        except UnicodeDecodeError as exc:
            raise ValueError(f"body is not UTF-8: {exc.reason}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise ValueError("body is nested too deeply") from None
        items = data if isinstance(data, list) else [data]
        if not items:
            raise ValueError("empty array: no records")
        now = utcnow()
        changes = []
        for index, item in enumerate(items):
            where = f"item {index}" if isinstance(data, list) else "body"
            try:
                _validate_item(item)
                kind = item.get("kind", "ticket")
                changes.append(record_to_change(self.system, kind, item, default_at=now))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}: {exc}") from None
        return changes


def missing_path(path: Path) -> str:
    """What to say of a ``path`` that does not exist (a relative one is read from the working directory)."""
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    return f"no such folder or file here: {path}{where}"


def _validate_item(item: Any) -> None:
    """Raise ValueError unless ``item`` is a record object with a usable id, kind, times, fields and tags."""
    if not isinstance(item, dict):
        raise ValueError(f"a record must be a JSON object, not {_json_type(item)}")
    if "id" not in item:
        raise ValueError("a record needs an id")
    ident = item["id"]
    blank = isinstance(ident, str) and not ident.strip()
    if isinstance(ident, bool) or not isinstance(ident, str | int) or blank:
        what = "an empty string" if blank else _json_type(ident)
        raise ValueError(f"id must be a non-empty string or an integer, not {what}")
    kind = item.get("kind", "ticket")
    if kind not in FilesConnector.kinds:
        raise ValueError(f"kind must be one of {', '.join(FilesConnector.kinds)}, not {kind!r}")
    for key in ("updated_at", "created_at"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be an ISO 8601 string, not {_json_type(value)}")
    fields = item.get("fields")
    if fields is not None and not isinstance(fields, dict):
        raise ValueError(f"fields must be an object, not {_json_type(fields)}")
    tags = item.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise ValueError("tags must be an array of strings")
    status = item.get("status")
    if kind == "ticket" and status is not None and status not in TICKET_STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(TICKET_STATUSES)}")
    for key in ("message", "last_author"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string, not {_json_type(value)}")
    acknowledged = item.get("acknowledged")
    if acknowledged is not None and not isinstance(acknowledged, bool):
        raise ValueError(f"acknowledged must be true or false, not {_json_type(acknowledged)}")


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def record_to_change(
    system: str, kind: str, data: Mapping[str, Any], default_at: datetime | None = None
) -> Change:
    """One inbound JSON record as a Change.

    Its time is ``updated_at``, else ``created_at``, else ``default_at`` (a webhook's receive time, a pulled
    file's mtime), else the epoch. A time that is not ISO 8601 raises ValueError.
    """
    stamp = data.get("updated_at") or data.get("created_at")
    if stamp:
        try:
            at = parse_time(stamp)
        except (ValueError, TypeError, AttributeError):
            raise ValueError(f"bad time {stamp!r}: expected ISO 8601") from None
    elif default_at is not None:
        at = parse_time(default_at)
    else:
        at = parse_time("1970-01-01T00:00:00Z")
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
