"""What helpdesk connectors share in writing bridge's ticket writes to their vendor's records (HubSpot
tickets, Salesforce Cases): the vendor's people by email, its statuses and priorities, and the rules' effects
as fields the admin names.

bridge writes a ticket's ``status``, ``priority`` and ``assignee`` (an email) in its own words, and the rules'
effects (:data:`bridge.effects.VENDOR_EFFECTS`) by name; a vendor holds them in fields of its own, with values
of its own. :class:`TicketWrites` turns one write's fields into the vendor's, or says why it cannot be sent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.effects import VENDOR_EFFECTS, effect_text

# a person id or email not known makes the people be read again, at most this often (seconds)
PEOPLE_REFRESH = 600.0


class People:
    """A vendor's people (owners, users), id -> email, read by ``read`` once, and again when one is missing
    (added since), at most every :attr:`refresh` seconds."""

    def __init__(self, read: Callable[[], dict[str, str]], refresh: float = PEOPLE_REFRESH) -> None:
        """``read``: every person's id and email (none when the token may not read them)."""
        self.read = read
        self.refresh = refresh
        self._emails: dict[str, str] | None = None
        self._read_at = -math.inf  # (monotonic) when they were last read

    def emails(self, missing: bool = False) -> dict[str, str]:
        """Id -> email, read again first when one is ``missing`` and the last read is old enough."""
        if missing and time.monotonic() - self._read_at >= self.refresh:
            self._emails = None
        if self._emails is None:
            self._read_at = time.monotonic()
            self._emails = self.read()
        return self._emails

    def email_of(self, person: str) -> str | None:
        """The email of the person with id ``person``, if any."""
        return self.emails().get(person) or self.emails(missing=True).get(person)

    def id_of(self, email: str) -> str | None:
        """The id of the person with ``email`` (in any letter case), if any."""
        wanted = email.casefold()
        for missing in (False, True):
            found = next((i for i, e in self.emails(missing).items() if e.casefold() == wanted), None)
            if found is not None:
                return found
        return None


@dataclass
class TicketWrites:
    """How one helpdesk connector's records hold what bridge writes of a ticket.

    ``names``: bridge's attribute -> the vendor's field (``status``, ``priority``, ``assignee`` among them);
    ``statuses``: the vendor's statuses -> bridge's (a status is written as the first mapped to it);
    ``priorities``: bridge's -> the vendor's; ``effects``: an effect -> the field the admin named for it, set
    in ``[connectors.SYSTEM] EFFECTS_KEY``. The ``no_*`` texts say why a write cannot be sent (``{value}``,
    ``{name}``: the value or effect at fault).
    """

    system: str
    names: Mapping[str, str]
    statuses: Mapping[str, str]
    priorities: Mapping[str, str]
    effects: Mapping[str, str]
    effects_key: str
    people: People
    log: logging.Logger
    no_status: str  # "no HubSpot pipeline stage is status {value!r}"
    no_person: str  # "no HubSpot owner has the email {value!r} (to assign the ticket to)"
    no_effect: str  # "HubSpot tickets have no property for {name!r}: name a ticket property for it"
    _tags_said: bool = field(default=False, repr=False)  # (that tags are not written: said once)

    def translate(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """``fields`` as the vendor's, or ``({}, why)`` when a part cannot be sent. Tags without a field are
        left out (their write's fields are still sent), with a warning said once."""
        out: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "status":
                status = next((k for k, v in self.statuses.items() if v == value), None)
                if status is None and value is not None:
                    why = self.no_status.format(value=value)
                    return {}, f"{why}: map one in [connectors.{self.system}] statuses"
                out[self.names["status"]] = status
            elif name == "priority":
                vendor = None if value is None else self.priorities.get(str(value), value)
                out[self.names["priority"]] = vendor
            elif name == "assignee":
                person = self.people.id_of(str(value)) if value else None
                if value and person is None:
                    return {}, self.no_person.format(value=value)
                out[self.names["assignee"]] = person
            elif name in VENDOR_EFFECTS:
                target = self.effects.get(name)
                if target is None and name == "tags":
                    # (bridge's tags ride along with the fields of the same write: those are still sent)
                    if not self._tags_said:
                        self._tags_said = True
                        self.log.warning("%s: tags are not written: name a ticket field for them in "
                                         "[connectors.%s] %s", self.system, self.system, self.effects_key)
                    continue
                if target is None:
                    why = self.no_effect.format(name=name)
                    return {}, f"{why} in [connectors.{self.system}] {self.effects_key}"
                out[target] = effect_text(value)
            else:
                out[self.names.get(name, name)] = value
        return out, None
