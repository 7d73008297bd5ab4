"""Identity: which canonical record a system's record is, by stored links, then by configured keys."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "contact": ("email",),
    "account": ("domain", "name"),
    "ticket": (),
}
_SUFFIXES = re.compile(r"\b(inc|llc|ltd|gmbh|sa|sas|bv|ag|corp|co|plc|limited|corporation)\b\.?", re.I)


def normalise(key: str, value: Any) -> str | None:
    """The comparable form of an identity key's value (None when blank)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if key == "email":
        return text.casefold()
    if key == "domain":
        text = re.sub(r"^[a-z]+://", "", text.casefold())
        text = text.split("/", 1)[0].split("@")[-1]
        return text.removeprefix("www.") or None
    if key == "name":
        text = _SUFFIXES.sub("", text.casefold())
        text = re.sub(r"[^\w]+", " ", text).strip()
        return text or None
    return text.casefold()


def keys_of(kind: str, attrs: Mapping[str, Any], configured: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The normalised identity keys a record's attributes provide, in the configured order."""
    names = configured.get(kind, DEFAULT_KEYS.get(kind, ()))
    out: dict[str, str] = {}
    for name in names:
        raw = attrs.get(name)
        if raw is None and name == "domain" and attrs.get("email"):
            raw = str(attrs["email"]).rpartition("@")[2] if kind == "account" else None
        value = normalise(name, raw)
        if value:
            out[name] = value
    return out
