"""Source-of-truth decisions: what an incoming value means, which value wins, who is told. Pure functions.

Three-way change detection works on a :class:`Shadow` per (record, field, system): the value the system is
known to hold (``held``: it said so in a pull, or it accepted our push) and the values bridge has queued for
it and not yet seen land (``sent``, oldest first). For one incoming value, :func:`detect` says:

- ``unchanged``: the system still holds what it held: nothing happened to this field there;
- ``echo``: the system now holds a value bridge sent it: our own write coming back, not a change;
- ``changed``: the system's user (or automation) changed the field; :func:`decide` then says what wins.

For a changed value, :func:`decide` answers with a :class:`Verdict`:

- ``accept``: the value becomes the record's value (the owner spoke, or the policy lets this system);
- ``conflict``: a non-owner changed an owned field: recorded, reported, reverted or left (``on_conflict``),
  never propagated;
- ``ignore``: the record keeps its value (equal already, older under last_writer_wins, filled under
  fill_if_empty, no owner value yet under owner_wins).

A verdict's ``writeback`` says whether the system that sent the value must be told the record's value again
(a revert); whether it is told depends on ``sync_to`` too: a system never receives a field it does not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.fields import FieldType, equal
from bridge.model import FieldValue
from bridge.settings import FieldConfig

BLANK: tuple[Any, ...] = (None, "", [])
SENT_KEEP = 8  # outstanding values remembered per shadow; older ones are long superseded


def blank(value: Any) -> bool:
    """Whether a (JSON or canonical) value is blank: None, empty text or an empty selection."""
    return value is None or value == "" or value == []


@dataclass
class Shadow:
    """What bridge knows of one field of one record in one system.

    ``held``/``known``: the value the system last confirmed holding. ``sent``: values queued for the system
    since, oldest first, not yet confirmed. Stored as JSON (:meth:`dump`, :meth:`load`).
    """

    known: bool = False
    held: Any = None
    sent: list[Any] = field(default_factory=list)

    @classmethod
    def load(cls, stored: tuple[bool, Any]) -> Shadow:
        """Read what ``State.shadow`` returned (a plain stored value counts as held)."""
        found, value = stored
        if not found:
            return cls()
        if isinstance(value, dict):  # field values are never objects: a dict is always a stored Shadow
            return cls("held" in value, value.get("held"), list(value.get("sent") or []))
        return cls(True, value)

    def dump(self) -> dict[str, Any]:
        """The JSON to store."""
        out: dict[str, Any] = {}
        if self.known:
            out["held"] = self.held
        if self.sent:
            out["sent"] = list(self.sent)
        return out

    @property
    def empty(self) -> bool:
        """Nothing is known and nothing was sent: the system was never synced for this field."""
        return not self.known and not self.sent

    def projected(self) -> tuple[bool, Any]:
        """``(known, value)`` the system will hold once every queued write landed."""
        if self.sent:
            return True, self.sent[-1]
        return self.known, self.held

    def confirm(self, ft: FieldType, value: Any) -> None:
        """The system holds ``value`` now: it is held, and queued values up to it have landed or are moot."""
        self.known, self.held = True, value
        for index in range(len(self.sent) - 1, -1, -1):
            if equal(ft, self.sent[index], value):
                del self.sent[: index + 1]
                break

    def send(self, ft: FieldType, value: Any) -> None:
        """Remember that ``value`` is queued for the system."""
        if not (self.sent and equal(ft, self.sent[-1], value)):
            self.sent.append(value)
            del self.sent[:-SENT_KEEP]

    def withdraw(self, ft: FieldType, value: Any) -> None:
        """A queued ``value`` will not land (dead letter): forget it."""
        self.sent = [v for v in self.sent if not equal(ft, v, value)]


def detect(ft: FieldType, incoming: Any, shadow: Shadow) -> str:
    """``unchanged``, ``echo`` or ``changed``: what an incoming value says about the system that sent it."""
    if shadow.known and equal(ft, incoming, shadow.held):
        return "unchanged"
    if any(equal(ft, incoming, v) for v in shadow.sent):
        return "echo"
    return "changed"


# The ticket attributes the rules write back to a helpdesk (an assignment, a priority, a status, a team, the
# tags): no declared field, yet a helpdesk's full-ticket update repeats them as it holds them, which may be
# before bridge's write of them landed. Each has a shadow per system, as a declared field has, under
# ``@NAME`` (no field name starts with ``@``), so that such a repeat is no change of them.
SHADOWED_ATTRS = ("assignee", "status", "priority", "team", "tags")
ATTR_TYPE = FieldType("text")  # (values are normalised by attr_value first: lists compare as sorted lists)


def attr_key(name: str) -> str:
    """The shadow name of a ticket attribute of :data:`SHADOWED_ATTRS`."""
    return "@" + name


def attr_value(name: str, value: Any) -> Any:
    """An attribute's value as its shadow keeps it: an email case-folded, tags sorted, a blank None."""
    if blank(value):
        return None
    if name == "tags" and isinstance(value, list | tuple):
        return sorted({str(t) for t in value})
    if name == "assignee" and isinstance(value, str):
        return value.casefold()
    if name in ("status", "priority") and isinstance(value, str):
        return value.lower()  # (as the pipeline takes them: "Urgent" is urgent)
    return value


@dataclass(frozen=True)
class Verdict:
    """What to do with one changed value, the rule that decided, and whether to tell the sender back."""

    action: str  # accept | conflict | ignore
    rule: str
    writeback: bool = False

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
    at: datetime,
) -> Verdict:
    """Decide what a changed value of ``field`` from ``system`` (at ``at``) does to the record.

    ``current`` is the record's value with its provenance (None when the field was never set).
    """
    if current is not None and equal(ft, incoming, current.value):
        return Verdict("ignore", "equal")
    revert = field.on_conflict == "revert"
    cur_blank = current is None or blank(current.value)
    if field.policy == "last_writer_wins":
        # the owner too: whichever system speaks first, the newest edit is the record's value
        if current is None or at >= current.at:
            return Verdict("accept", "owner" if system == field.owner else "last_writer_wins")
        return Verdict("ignore", "last_writer_wins: older than the record's value", writeback=True)
    if system == field.owner:
        if (
            field.policy == "prefer_owner_unless_blank"
            and blank(incoming)
            and not cur_blank
            and current is not None
            and current.system != field.owner
        ):
            return Verdict("ignore", "prefer_owner_unless_blank: the owner is blank", writeback=True)
        return Verdict("accept", "owner")
    match field.policy:
        case "fill_if_empty":
            if cur_blank:
                return Verdict("accept", "fill_if_empty")
            return Verdict("ignore", "fill_if_empty: already filled", writeback=revert)
        case "prefer_owner_unless_blank":
            if cur_blank or (current is not None and current.system != field.owner):
                return Verdict("accept", "prefer_owner_unless_blank: the owner is blank")
            return Verdict("conflict", "prefer_owner_unless_blank", writeback=revert)
    if current is None:
        # nothing to defend yet: the owner's value, when it comes, wins and is written back
        return Verdict("ignore", "owner_wins: the owner has no value yet")
    return Verdict("conflict", "owner_wins", writeback=revert)


def receivers(field: FieldConfig, systems: set[str] | frozenset[str] | None = None) -> list[str]:
    """The systems that receive ``field`` (its ``sync_to``, limited to the configured ``systems``)."""
    return [s for s in field.sync_to if systems is None or s in systems]
