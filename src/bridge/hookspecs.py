"""Every hook bridge calls. Plugins implement them with ``@bridge.hookimpl``.

Hooks are few and coarse: behaviour lives in connector and classifier classes, registered through
``register_*`` hooks that take a ``register`` callback. pluggy passes an implementation only the arguments it
names, so an implementation may take fewer parameters than its spec; parameters are never renamed or removed.
``docs/plugin_hooks.md`` documents each hook with the exact signature written here (a test compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pluggy

from bridge.connector import Connector
from bridge.model import Change, Decision, Record

hookspec = pluggy.HookspecMarker("bridge")

ConnectorRegister = Callable[[type[Connector]], None]
"""The ``register`` callback of :func:`register_connectors`: takes one connector class."""

Classifier = Callable[[Record, Change], list[tuple[str, float]]]
"""A classifier: ``classify(record, change)`` returns ``(tag, confidence)`` pairs, confidence in [0, 1]."""

ClassifierRegister = Callable[[str, Classifier], None]
"""The ``register`` callback of :func:`register_classifiers`: takes a name and a classifier."""


@hookspec
def register_connectors(register: ConnectorRegister) -> None:
    """Register connector classes.

    :param register: call it once per connector class; the class's ``name`` is what ``[connectors.X] plugin``
        refers to. A name registered by two plugins is an error naming both (the later plugin fails to load).
    :return: nothing; the return value is ignored.
    """


@hookspec
def register_classifiers(register: ClassifierRegister) -> None:
    """Register classifiers that propose tags for a record.

    :param register: call ``register(name, classify)`` once per classifier; ``classify(record, change)``
        returns ``(tag, confidence)`` pairs with confidence between 0 and 1. Names are unique across plugins.
    :return: nothing; the return value is ignored.
    """


@hookspec
def classify(record: Record, change: Change) -> list[tuple[str, float]] | None:
    """Propose tags for a record that just changed (every implementation is called; results are merged).

    :param record: the canonical record, after the change's fields and tags were applied.
    :param change: the change being processed (its ``text`` is subject and body).
    :return: ``(tag, confidence)`` pairs with confidence between 0 and 1, or None to propose nothing.
    """


@hookspec
def evaluate_rules(record: Record, change: Change, now: datetime) -> list[Decision] | None:
    """Run a plugin's own rules against a record after its fields are mapped.

    :param record: the record; rules may change its attributes (assignee, priority) in place.
    :param change: the change being processed.
    :param now: the current (possibly virtual, in replay) time, aware UTC; never read the wall clock.
    :return: the decisions taken (they go to the audit log), or None for none.
    """


@hookspec
def change_processed(record: Record, change: Change, decisions: list[Decision]) -> None:
    """Called after a change is committed, with the decisions it led to (for metrics, notifications).

    :param record: the record as stored.
    :param change: the change that was processed.
    :param decisions: every decision the pipeline took for it, in order.
    :return: nothing; the return value is ignored. An exception is logged against the plugin, never undone.
    """


@hookspec
def startup(app: Any) -> None:
    """Called once when ``bridge run`` starts, after config and plugins are loaded and before any job runs.

    :param app: the running application (its ``config``, ``store`` and plugin ``host``).
    :return: nothing; the return value is ignored.
    """


@hookspec
def shutdown(app: Any) -> None:
    """Called once when ``bridge run`` stops cleanly, after the last job finished.

    :param app: the running application, as passed to ``startup``.
    :return: nothing; the return value is ignored.
    """
