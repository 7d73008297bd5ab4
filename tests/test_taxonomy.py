"""Tag taxonomy: tag -> field mapping, normalisation and lint."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from bridge.settings import Config, TagMapping, TaxonomyConfig
from bridge.taxonomy import FINDING_KINDS, Finding, TagMapper, format_findings, lint, normalise_tag

PATTERN = "^[a-z-]+/[a-z0-9-]+$"
PREFIXES = ["billing", "access", "bug", "feature", "how-to", "reporting"]
FIELDS: dict[str, Any] = {
    "product_area": {
        "type": "multi_select",
        "options": ["Billing", "Access & Security", "API", "Reporting"],
        "aliases": {"Billing": ["payments"]},
    },
    "severity": {"type": "select", "options": ["Sev-1", "Sev-2", "Sev-3"]},
    "needs_engineering": {"type": "boolean"},
}
MAPPINGS: list[dict[str, Any]] = [
    {"match": "billing/*", "set": {"product_area": "payments"}},
    {"match": "access/*", "set": {"product_area": "Access & Security"}},
    {"match": "bug/api-*", "set": {"product_area": "API", "needs_engineering": "true"}},
    {"match": "bug/sev[12]", "set": {"needs_engineering": True}},
    {"match": "bug/sev1", "set": {"severity": "Sev-1"}},
    {"match": "bug/sev2", "set": {"severity": "sev-2"}},
    {"match": "reporting/*", "set": {"product_area": "Reporting"}},
]


def make_config(
    tags: list[dict[str, Any]] | None = None,
    pattern: str = PATTERN,
    prefixes: list[str] | None = None,
    synonyms: dict[str, list[str]] | None = None,
) -> Config:
    return Config(
        fields=FIELDS,
        taxonomy=TaxonomyConfig(
            pattern=pattern, prefixes=PREFIXES if prefixes is None else prefixes, synonyms=synonyms or {}
        ),
        tags=[TagMapping(**m) for m in (MAPPINGS if tags is None else tags)],
    )


def of_kind(findings: list[Finding], kind: str) -> list[Finding]:
    return [f for f in findings if f.kind == kind]


# ---------------------------------------------------------------- normalise_tag

@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("billing/refund", "billing/refund"),
        ("Billing/Refund", "billing/refund"),
        ("  billing/refund\n", "billing/refund"),
        ("Billing / Refund Request", "billing/refund-request"),
        ("billing/refund_request", "billing/refund-request"),
        ("billing/refund__ _request", "billing/refund-request"),
        ("billing/-refund-", "billing/refund"),
        ("billing//refund", "billing/refund"),
        ("billing_refund", "billing-refund"),  # never invents the prefix separator
        ("how-to/export", "how-to/export"),
        ("bug/v2.1", "bug/v2.1"),
        ("", ""),
    ],
)
def test_normalise_tag(raw: str, expected: str) -> None:
    assert normalise_tag(raw) == expected
    assert normalise_tag(expected) == expected


# ---------------------------------------------------------------- TagMapper

@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["billing/refund"], [("billing/refund", "product_area", ["Billing"])]),
        (["Billing/Refund"], [("Billing/Refund", "product_area", ["Billing"])]),
        ([" billing/refund "], [(" billing/refund ", "product_area", ["Billing"])]),
        (["Billing / Refund Request"], [("Billing / Refund Request", "product_area", ["Billing"])]),
        # fnmatch: * crosses /
        (["billing/refund/partial"], [("billing/refund/partial", "product_area", ["Billing"])]),
        (["bug/api-timeout"], [("bug/api-timeout", "product_area", ["API"]),
                               ("bug/api-timeout", "needs_engineering", True)]),
        (["BUG/SEV1"], [("BUG/SEV1", "needs_engineering", True), ("BUG/SEV1", "severity", "Sev-1")]),
        (["bug/sev2"], [("bug/sev2", "needs_engineering", True), ("bug/sev2", "severity", "Sev-2")]),
        (["bug/sev3"], []),
        (["bug/sev10"], []),
        (["billing"], []),
        (["refund"], []),
        ([], []),
        (["", "access/sso"], [("access/sso", "product_area", ["Access & Security"])]),
        (
            ["access/sso", "billing/refund", "access/sso"],
            [
                ("access/sso", "product_area", ["Access & Security"]),
                ("billing/refund", "product_area", ["Billing"]),
            ],
        ),
    ],
)
def test_tag_mapper_apply(tags: list[str], expected: list[tuple[str, str, Any]]) -> None:
    mapper = TagMapper(make_config())
    assert mapper.apply(tags) == expected
    assert mapper.apply(tags) == expected  # the second call comes from the cache


def test_tag_mapper_reports_mapping_indices_in_config_order() -> None:
    mapper = TagMapper(make_config())
    assert mapper.mappings_for("bug/sev1") == (3, 4)
    assert mapper.mappings_for("reporting/dashboards") == (6,)
    assert mapper.mappings_for("shipping/label") == ()


def test_tag_mapper_resolves_declared_synonyms() -> None:
    config = make_config(
        tags=[{"match": "billing/refund", "set": {"severity": "Sev-3"}}],
        synonyms={"billing/refund": ["refund", "Refund Request"]},
    )
    mapper = TagMapper(config)
    assert mapper.apply(["Refund", "refund_request", "refunds"]) == [
        ("Refund", "severity", "Sev-3"),
        ("refund_request", "severity", "Sev-3"),
    ]


def test_tag_mapper_leaves_out_values_that_cannot_apply() -> None:
    config = make_config(tags=[
        {"match": "bug/*", "set": {"severity": "Sev-9", "needs_engineering": "yes"}},
        {"match": "bug/*", "set": {"owner_team": "core"}},
    ])
    mapper = TagMapper(config)
    assert mapper.apply(["bug/crash"]) == [("bug/crash", "needs_engineering", True)]
    assert [(i, name) for i, name, _ in mapper.skipped] == [(0, "severity"), (1, "owner_team")]
    assert "'Sev-9' is not an option" in mapper.skipped[0][2]


def test_tag_mapper_hands_out_fresh_multi_select_lists() -> None:
    mapper = TagMapper(make_config())
    first = mapper.apply(["billing/refund"])
    first[0][2].append("API")
    assert mapper.apply(["billing/refund"]) == [("billing/refund", "product_area", ["Billing"])]


# ---------------------------------------------------------------- lint

CLEAN = {"billing/refund": 40, "billing/invoice": 12, "access/sso": 7, "access/mfa-reset": 3, "bug/sev1": 2,
         "bug/api-timeout": 5, "reporting/dashboards": 4, "reporting/csv-export": 1}


def test_lint_finds_nothing_on_a_clean_set() -> None:
    findings = lint(make_config(), CLEAN)
    assert findings == []
    assert format_findings(findings) == "taxonomy: no findings"


def test_lint_pattern() -> None:
    findings = lint(make_config(), {**CLEAN, "Billing/Refund": 3, "billing/refund request": 1, "refund": 9})
    pattern = {f.tag: f for f in of_kind(findings, "pattern")}
    assert set(pattern) == {"Billing/Refund", "billing/refund request", "refund"}
    assert pattern["Billing/Refund"].related == ["billing/refund"]
    assert f"breaks the naming pattern {PATTERN} (seen 3 times)" in pattern["Billing/Refund"].message
    assert "'billing/refund' would" in pattern["Billing/Refund"].message
    assert pattern["billing/refund request"].related == ["billing/refund-request"]
    assert pattern["refund"].related == []


def test_lint_prefix() -> None:
    seen = {**CLEAN, "acess/sso": 2, "shipping/label": 1, "Billing/Refund": 1}
    prefix = {f.tag: f for f in of_kind(lint(make_config(), seen), "prefix")}
    assert set(prefix) == {"acess/sso", "shipping/label"}  # Billing/ is a case problem: a pattern finding
    assert "prefix 'acess' is not one of access, billing, bug, feature, how-to, reporting" in (
        prefix["acess/sso"].message
    )
    assert "did you mean 'access'?" in prefix["acess/sso"].message
    assert prefix["acess/sso"].related == ["access/sso"]
    assert prefix["shipping/label"].related == []


def test_lint_prefix_that_cannot_fit_the_pattern() -> None:
    findings = lint(make_config(pattern="^[a-z]+/[a-z0-9-]+$", tags=[]), {"bug/crash": 1})
    prefix = of_kind(findings, "prefix")
    assert [(f.tag, f.related) for f in prefix] == [("taxonomy.prefixes", ["how-to"])]
    assert "prefix 'how-to' cannot begin any tag of the naming pattern" in prefix[0].message


def test_lint_prefix_when_the_pattern_allows_tags_without_one() -> None:
    findings = lint(make_config(pattern="^[a-z/-]+$", tags=[{"match": "*", "set": {"severity": "Sev-3"}}]),
                    {"refund": 1, "billing/refund": 1})
    prefix = of_kind(findings, "prefix")
    assert [f.tag for f in prefix] == ["refund"]
    assert "has no prefix" in prefix[0].message


def test_lint_near_duplicates_name_every_member() -> None:
    seen = {**CLEAN, "refund": 12, "billing_refund": 3, "refund_request": 2, "Refund": 1, "refunds": 4}
    groups = of_kind(lint(make_config(), seen), "near_duplicate")
    assert len(groups) == 1
    group = groups[0]
    assert group.tag == "billing/refund"
    # most seen first
    assert group.related == [
        "billing/refund", "refund", "refunds", "billing_refund", "refund_request", "Refund"
    ]
    assert "6 spellings of one topic" in group.message
    assert "keep 'billing/refund'" in group.message
    assert "refund (seen 12 times)" in group.message


@pytest.mark.parametrize(
    ("seen", "groups"),
    [
        # the same topic under two known prefixes is two tags
        ({"bug/login": 5, "how-to/login": 3}, []),
        # ... but an unprefixed spelling could be either
        ({"bug/login": 5, "how-to/login": 3, "login": 1},
         [["bug/login", "login"], ["how-to/login", "login"]]),
        ({"bug/export": 5, "bug/exports": 1, "bug/export-issue": 1},
         [["bug/export", "bug/export-issue", "bug/exports"]]),
        ({"reporting/dashboard": 5, "reporting/dashbaord": 1},
         [["reporting/dashbaord", "reporting/dashboard"]]),
        ({"feature/dark-mode": 2, "feature/darkmode": 1}, [["feature/dark-mode", "feature/darkmode"]]),
        ({"access/sso": 5, "access/ssl": 1}, []),  # short: compared exactly
        ({"bug/sev1": 2, "bug/sev2": 2}, []),
        ({"bug/api-v1": 2, "bug/api-v2": 2}, []),  # digits differ
        ({"billing/invoice": 2, "billing/invoices": 1, "payments/invoice": 1},
         [["billing/invoice", "billing/invoices", "payments/invoice"]]),
    ],
)
def test_lint_near_duplicate_groups(seen: dict[str, int], groups: list[list[str]]) -> None:
    found = of_kind(lint(make_config(tags=[]), seen), "near_duplicate")
    assert sorted(sorted(f.related) for f in found) == groups


def test_lint_counts_literal_mapping_tags_as_known() -> None:
    config = make_config(tags=[*MAPPINGS, {"match": "bug/sev-3", "set": {"severity": "Sev-3"}}])
    groups = of_kind(lint(config, {"bug/sev3": 4}), "near_duplicate")
    assert [(g.tag, sorted(g.related)) for g in groups] == [("bug/sev-3", ["bug/sev-3", "bug/sev3"])]


def test_lint_respects_declared_synonyms() -> None:
    seen = {**CLEAN, "refund": 12, "billing_refund": 3, "Refund": 1}
    config = make_config(synonyms={"billing/refund": ["refund", "billing_refund"]})
    findings = lint(config, seen)
    assert findings == []


def test_lint_unmapped() -> None:
    seen = {**CLEAN, "feature/dark-mode": 3, "bug/crash": 1}
    unmapped = of_kind(lint(make_config(), seen), "unmapped")
    assert [(f.tag, f.message) for f in unmapped] == [
        ("bug/crash", "no [[tags]] mapping matches it (seen 1 time)"),
        ("feature/dark-mode", "no [[tags]] mapping matches it (seen 3 times)"),
    ]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"match": "bug/x", "set": {"owner_team": "core"}}, "sets 'owner_team', which is not a declared"),
        ({"match": "bug/x", "set": {"severity": "Sev-9"}}, "'Sev-9' is not an option of this select"),
        ({"match": "bug/x", "set": {"product_area": "Shipping"}}, "options: Billing, Access & Security, API"),
        ({"match": "bug/x", "set": {}}, "sets no field"),
        ({"match": "bug/SEV_1", "set": {"severity": "Sev-1"}}, "cannot match any tag of the naming pattern"),
        ({"match": "bug_*", "set": {"severity": "Sev-1"}}, "cannot match any tag of the naming pattern"),
        ({"match": "bug/sev-?", "set": {"severity": "Sev-1"}}, None),
        ({"match": "shipping/*", "set": {"severity": "Sev-1"}}, "prefix 'shipping' is not one of access, bi"),
        ({"match": "ship*/label", "set": {"severity": "Sev-1"}}, "its prefix is not one of"),
        ({"match": "*/label", "set": {"severity": "Sev-1"}}, None),
        ({"match": "Bug/Crash", "set": {"severity": "Sev-1"}}, None),  # matching ignores case
        ({"match": "*", "set": {"severity": "Sev-1"}}, None),
        ({"match": "[ab]*/[!x]*", "set": {"severity": "Sev-1"}}, None),
        ({"match": "[xy]*/*", "set": {"severity": "Sev-1"}}, "its prefix is not one of"),
    ],
)
def test_lint_dead_mapping(mapping: dict[str, Any], message: str | None) -> None:
    findings = lint(make_config(tags=[*MAPPINGS, mapping]), CLEAN)
    dead = of_kind(findings, "dead_mapping")
    if message is None:
        assert dead == []
    else:
        assert [(f.tag, f.related) for f in dead] == [(f"tags.{len(MAPPINGS)}", [mapping["match"]])]
        assert message in dead[0].message


def test_lint_mapping_that_fires_on_data_is_not_dead_for_its_glob() -> None:
    config = make_config(tags=[*MAPPINGS, {"match": "refund", "set": {"product_area": "Billing"}}])
    seen = {**CLEAN, "refund": 3}
    kinds = {(f.kind, f.tag) for f in lint(config, seen)}
    assert ("dead_mapping", f"tags.{len(MAPPINGS)}") not in kinds
    assert ("pattern", "refund") in kinds
    assert ("dead_mapping", f"tags.{len(MAPPINGS)}") in {(f.kind, f.tag) for f in lint(config, CLEAN)}


def test_lint_reports_an_invalid_pattern() -> None:
    findings = lint(make_config(pattern="^[a-z+/"), CLEAN)
    assert [(f.kind, f.tag) for f in findings] == [("pattern", "taxonomy.pattern")]
    assert "is not a valid regular expression" in findings[0].message


def test_lint_counts_an_iterable_of_tags() -> None:
    findings = lint(make_config(), ["bug/crash", "bug/crash", "access/sso", ""])
    assert [(f.kind, f.tag, f.message) for f in findings] == [
        ("unmapped", "bug/crash", "no [[tags]] mapping matches it (seen 2 times)")
    ]


def test_findings_are_json_and_human_readable() -> None:
    seen = {**CLEAN, "refund": 12, "refunds": 4, "acess/sso": 1}
    config = make_config(tags=[*MAPPINGS, {"match": "shipping/*", "set": {"severity": "Sev-1"}}])
    findings = lint(config, seen)
    assert {f.kind for f in findings} == set(FINDING_KINDS)
    kinds = [f.kind for f in findings]
    assert kinds == sorted(kinds, key=FINDING_KINDS.index)
    as_json = json.loads(json.dumps([dataclasses.asdict(f) for f in findings]))
    assert as_json[0].keys() == {"kind", "tag", "message", "related"}
    text = format_findings(findings)
    assert text.splitlines()[0] == "pattern (2)"
    assert "  tags.7: match = 'shipping/*': prefix 'shipping' is not one of" in text
    summary = f"{len(findings)} findings: 2 pattern, 1 prefix, 2 near_duplicate"
    assert text.splitlines()[-1].startswith(summary)
