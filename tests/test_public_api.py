"""The public surface plugin authors import: ``bridge.__all__``."""

from __future__ import annotations

import importlib

import pytest

import bridge


def test_all_is_sorted_and_unique() -> None:
    assert list(bridge.__all__) == sorted(set(bridge.__all__))


@pytest.mark.parametrize("name", bridge.__all__)
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("bridge")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from bridge import {name}", namespace)
    assert namespace[name] is getattr(module, name)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from bridge import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(bridge.__all__)
