"""``bridge discover SYSTEM``: what a system's fields look like, and where the config does not fit them.

For each kind the system carries, the connector describes its remote fields (types, options). Every config
field of that kind that the system reads or owns is then checked: the remote field must exist, its vendor
type must suit the bridge type (the connector's ``type_compat`` table), and every option of a select must
exist remotely (by value or label, case-insensitive).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bridge.connector import Connector, RemoteField
from bridge.settings import Config, FieldConfig

MISSING = "missing_remote_field"
TYPE_MISMATCH = "type_mismatch"
OPTION_MISSING = "option_missing"


@dataclass(frozen=True)
class Finding:
    """One config mapping that does not fit the remote system."""

    kind: str
    field: str
    remote: str
    problem: str  # missing_remote_field | type_mismatch | option_missing
    detail: str


@dataclass
class DiscoverReport:
    """Remote fields per kind and the findings about the config's mappings."""

    system: str
    plugin: str
    kinds: dict[str, list[RemoteField]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON view (``bridge discover --json``)."""
        return asdict(self)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.as_dict(), indent=2, default=str)


def relevant(config: Config, system: str, kind: str) -> dict[str, FieldConfig]:
    """Config fields of ``kind`` that ``system`` owns, receives (``sync_to``) or names (``remote``)."""
    return {
        name: f
        for name, f in config.fields.items()
        if f.kind == kind and (f.owner == system or system in f.sync_to or system in f.remote)
    }


def find_remote(remote: str, fields: list[RemoteField]) -> RemoteField | None:
    """The remote field named ``remote``: exact name, else the same name or label ignoring case."""
    for f in fields:
        if f.name == remote:
            return f
    folded = remote.casefold()
    for f in fields:
        if f.name.casefold() == folded or (f.label and f.label.casefold() == folded):
            return f
    return None


def _remote_options(connector: Connector, kind: str, rf: RemoteField) -> set[str]:
    options = {o.casefold() for o in rf.options}
    labels = getattr(connector, "option_labels", None)
    if callable(labels):
        for label, value in labels(kind, rf.name):
            options |= {str(label).casefold(), str(value).casefold()}
    return options


def _labels_by_value(connector: Connector, kind: str, rf: RemoteField) -> dict[str, str]:
    """Casefolded internal value -> label of each option whose label differs (a connector with
    ``option_labels`` gives options by label in a pull)."""
    labels = getattr(connector, "option_labels", None)
    if not callable(labels):
        return {}
    return {str(value).casefold(): str(label) for label, value in labels(kind, rf.name)
            if str(label).casefold() != str(value).casefold()}


def discover(config: Config, system: str, connector: Connector) -> DiscoverReport:
    """Describe every kind ``system`` carries and check the config's field mappings against it."""
    table = config.connectors.get(system)
    kinds = list(table.kinds) if table is not None else list(connector.settings.kinds)
    report = DiscoverReport(system=system, plugin=connector.name)
    compat: dict[str, tuple[str, ...]] = getattr(connector, "type_compat", {}) or {}
    for kind in kinds:
        remote_fields = connector.describe(kind)
        report.kinds[kind] = remote_fields
        if not remote_fields:
            continue  # a schemaless system (files, webhooks) describes nothing: there is nothing to fit
        for name, fc in sorted(relevant(config, system, kind).items()):
            remote = fc.remote_name(system, name)
            rf = find_remote(remote, remote_fields)
            if rf is None:
                report.findings.append(
                    Finding(kind, name, remote, MISSING, f"{system} has no {kind} field {remote!r}")
                )
                continue
            allowed = compat.get(fc.type)
            if allowed is not None and rf.type not in allowed:
                report.findings.append(
                    Finding(
                        kind,
                        name,
                        rf.name,
                        TYPE_MISMATCH,
                        f"bridge type {fc.type} does not fit {system} type {rf.type}; "
                        f"expected one of {', '.join(allowed)}",
                    )
                )
            if fc.type in ("select", "multi_select") and (rf.options or rf.restricted):
                have = _remote_options(connector, kind, rf)
                by_value = _labels_by_value(connector, kind, rf)
                for option in fc.options:
                    label = by_value.get(option.casefold())
                    spelt = {option.casefold(), *(a.casefold() for a in fc.aliases.get(option, []))}
                    problems = []
                    if label is not None and label.casefold() not in spelt:
                        # a pull gives an option by its label: one named by its internal value would not match
                        problems.append(
                            f"option {option!r} is {system}'s internal value of the option labelled "
                            f"{label!r}, and a pull gives the label: name the option {label!r}, or give it "
                            f"the alias {label!r}")
                    if option.casefold() not in have:
                        problems.append(f"option {option!r} is not among {system}'s options for {rf.name}")
                    report.findings += [Finding(kind, name, rf.name, OPTION_MISSING, p) for p in problems]
    return report


def format_report(report: DiscoverReport) -> str:
    """A human-readable report: fields per kind, then the findings (or that there are none)."""
    lines = [f"{report.system} ({report.plugin})"]
    for kind, fields in report.kinds.items():
        lines.append(
            f"  {kind}: {len(fields)} fields" if fields else f"  {kind}: no fields described (schemaless)"
        )
        for f in fields:
            options = f" [{', '.join(f.options)}]" if f.options else ""
            restricted = " (restricted)" if f.restricted and f.options else ""
            label = f" {f.label!r}" if f.label and f.label != f.name else ""
            lines.append(f"    {f.name}{label}: {f.type}{restricted}{options}")
    if report.findings:
        lines.append(f"  findings ({len(report.findings)}):")
        for finding in report.findings:
            lines.append(
                f"    {finding.kind}.{finding.field} -> {finding.remote}: {finding.problem}: {finding.detail}"
            )
    else:
        lines.append("  findings: none, every mapped field fits")
    return "\n".join(lines)


__all__ = ["DiscoverReport", "Finding", "discover", "format_report", "relevant"]
