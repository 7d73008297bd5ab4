"""Every hookspec is documented: a docstring in the code, a heading with its exact signature in the docs."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge import hookspecs

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugin_hooks.md"
HEADING = re.compile(r"^#{2,4} `(?P<name>\w+)\((?P<params>.*)\) -> (?P<ret>.+)`\s*$", re.MULTILINE)


def _specs() -> dict[str, Callable[..., Any]]:
    return {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "bridge_spec")}


SPECS = _specs()


def signature(fn: Callable[..., Any]) -> str:
    """``name(param: Type, ...) -> Return`` exactly as the source spells the annotations."""
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{fn.__name__}({params}) -> {sig.return_annotation}"


def documented() -> dict[str, str]:
    found: dict[str, str] = {}
    for match in HEADING.finditer(DOC.read_text(encoding="utf-8")):
        assert match["name"] not in found, f"{match['name']} is documented twice"
        found[match["name"]] = f"{match['name']}({match['params']}) -> {match['ret']}"
    return found


def test_the_hooks_are_the_ones_others_depend_on() -> None:
    assert {"register_connectors", "register_classifiers", "classify", "evaluate_rules", "change_processed",
            "startup", "shutdown"} <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_documented_with_its_exact_signature(name: str) -> None:
    docs = documented()
    assert name in docs, f"docs/plugin_hooks.md has no heading for hook {name}"
    assert docs[name] == signature(SPECS[name])


def test_docs_name_no_hook_that_does_not_exist() -> None:
    assert set(documented()) <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_has_a_complete_docstring(name: str) -> None:
    fn = SPECS[name]
    doc = inspect.getdoc(fn)
    assert doc, f"hookspec {name} has no docstring"
    summary = doc.splitlines()[0]
    assert summary and not summary.startswith(":"), f"hookspec {name} needs a summary line"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"hookspec {name} does not document parameter {param}"
    assert ":return:" in doc, f"hookspec {name} does not say what its return value means"
    documented_params = re.findall(r":param (\w+):", doc)
    assert set(documented_params) <= set(inspect.signature(fn).parameters), f"{name} documents a stale param"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_is_fully_annotated(name: str) -> None:
    sig = inspect.signature(SPECS[name])
    assert sig.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values())


def test_signature_check_notices_a_difference() -> None:
    def register_connectors(register: Any) -> None:
        """Same name, different annotation."""

    assert signature(register_connectors) != documented()["register_connectors"]
