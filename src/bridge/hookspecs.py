"""Every hook bridge calls. Plugins implement them with ``@bridge.hookimpl``.

Hooks are few and coarse: behaviour lives in connector and classifier classes, registered through
``register_*`` hooks that take a ``register`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from bridge.connector import Connector
    from bridge.model import Change, Decision, Record

hookspec = pluggy.HookspecMarker("bridge")


@hookspec
def register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register connector classes.

    :param register: call it once per connector class; the class's ``name`` is the plugin name that
        ``[connectors.X] plugin = "..."`` refers to. Two plugins registering the same name is an error.
    """


@hookspec
def register_classifiers(register: Callable[[str, Callable[[Record, Change], list[tuple[str, float]]]], None]) -> None:
    """Register classifiers that propose tags for a record.

    :param register: call ``register(name, classify)``; ``classify(record, change)`` returns
        ``(tag, confidence)`` pairs with confidence between 0 and 1.
    """


@hookspec
def classify(record: Record, change: Change) -> list[tuple[str, float]] | None:
    """Propose tags for a record that just changed.

    :param record: the canonical record, after the change's fields and tags were applied.
    :param change: the change being processed.
    :return: ``(tag, confidence)`` pairs, or None to propose nothing.
    """


@hookspec
def evaluate_rules(record: Record, change: Change, now: Any) -> list[Decision] | None:
    """Run rules against a record after its fields are mapped.

    :param record: the record; rules may change its attributes (assignee, priority) in place.
    :param change: the change being processed.
    :param now: the current (possibly virtual) time, an aware UTC datetime.
    :return: the decisions taken, or None for none.
    """


@hookspec
def change_processed(record: Record, change: Change, decisions: list[Decision]) -> None:
    """Called after a change is committed, with the decisions it led to (for metrics, notifications).

    :param record: the record as stored.
    :param change: the change that was processed.
    :param decisions: every decision the pipeline took for it.
    """


@hookspec
def startup(app: Any) -> None:
    """Called once when ``bridge run`` starts, after config and plugins are loaded.

    :param app: the running application (config, store, plugin host).
    """


@hookspec
def shutdown(app: Any) -> None:
    """Called once when ``bridge run`` stops cleanly.

    :param app: the running application.
    """
