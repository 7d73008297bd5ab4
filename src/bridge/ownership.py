"""Source-of-truth decisions: which value of a field wins, and which writes follow. Pure functions.

For one incoming value of one field from one system, :func:`decide` says what the bridge does with it:

- ``echo``: the system sent back what it last had from us (its shadow): not a change;
- ``accept``: the value becomes the record's value (the owner spoke, or the policy lets this system);
- ``conflict``: a non-owner changed an owned field: recorded, reported, reverted or left (``on_conflict``),
  never propagated;
- ``ignore``: nothing to do (equal to the current value, or ``fill_if_empty`` on a filled field).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.fields import FieldType, equal
from bridge.model import FieldValue
from bridge.settings import FieldConfig

BLANK: tuple[Any, ...] = (None, "", [])


@dataclass(frozen=True)
class Verdict:
    """What to do with one incoming value, and the rule that decided."""

    action: str  # accept | echo | conflict | ignore
    rule: str

    @property
    def accepted(self) -> bool:
        """Whether the value becomes the record's value."""
        return self.action == "accept"


def decide(
    field: FieldConfig,
    ft: FieldType,
    system: str,
    incoming: Any,
    current: FieldValue | None,
    shadow: tuple[bool, Any],
    at: datetime,
) -> Verdict:
    """Decide what an incoming value of ``field`` from ``system`` does to the record.

    ``shadow`` is ``(known, value)``: what the bridge last synced with ``system`` for this field.
    """
    known, last = shadow
    if known and equal(ft, incoming, last):
        return Verdict("echo", "echo")
    cur = None if current is None else current.value
    if current is not None and equal(ft, incoming, cur):
        return Verdict("ignore", "equal")
    if system == field.owner:
        return Verdict("accept", "owner")
    blank = cur in BLANK
    match field.policy:
        case "last_writer_wins":
            if current is None or at >= current.at:
                return Verdict("accept", "last_writer_wins")
            return Verdict("ignore", "last_writer_wins: older than the current value")
        case "fill_if_empty":
            if blank:
                return Verdict("accept", "fill_if_empty")
            return Verdict("ignore", "fill_if_empty: already filled")
        case "prefer_owner_unless_blank":
            if blank and (current is None or current.system != field.owner):
                return Verdict("accept", "prefer_owner_unless_blank")
            return Verdict("conflict", "prefer_owner_unless_blank")
    return Verdict("conflict", "owner_wins")


def receivers(field: FieldConfig, source: str) -> list[str]:
    """The systems that must receive a new value of ``field`` that came from ``source``."""
    return [s for s in field.sync_to if s != source]
