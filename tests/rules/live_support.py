"""Shared test support for the live rules: what the store holds of a desk ticket and what it was told."""

from __future__ import annotations

from typing import Any

from bridge.app import App
from bridge.model import Record


def stored(app: App, external: str) -> Record:
    """The stored record of the ``desk`` ticket ``external``."""
    with app.store.session() as tx:
        rid = tx.record_id_for("desk", "ticket", external)
        assert rid is not None
        record = tx.load(rid)
    assert record is not None
    return record


def writes(app: App) -> list[tuple[str | None, dict[str, Any]]]:
    """Every write queued for the ``desk`` system: (ticket id there, fields)."""
    return [(i.external_id, i.fields) for i in app.store.items("desk")]
