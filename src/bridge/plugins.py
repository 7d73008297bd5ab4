"""The plugin host: built-ins, entry points (group ``bridge.plugins``) and the ``plugins_dir`` folder.

Nothing happens at import time; :func:`create_host` builds a fresh :class:`PluginHost` in this order:
hookspecs, built-ins (every public module of ``bridge.connectors``), entry points, the plugins folder, then
:meth:`PluginHost.check`. Each plugin loads on its own: a broken one is recorded as failed with its error and
the others still load. ``[plugins] disabled`` and ``BRIDGE_DISABLED_PLUGINS`` (comma separated) block plugins
by name through ``pm.set_blocked``; ``BRIDGE_TRACE_PLUGINS=1`` logs every hook call (hook, argument and plugin
names, never argument values: they may hold customer data).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import pkgutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from bridge import hookspecs
from bridge.connector import Connector
from bridge.errors import PluginLoadError
from bridge.hookspecs import Classifier, ConnectorRegister

if TYPE_CHECKING:
    from bridge.settings import Config
from bridge.model import Change, Decision, Record

log = logging.getLogger("bridge.plugins")

PROJECT = "bridge"
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementations: ``@bridge.hookimpl``."""

ENTRY_POINT_GROUP = "bridge.plugins"
BUILTIN_PACKAGE = "bridge.connectors"
DISTRIBUTION = "bridge-sync"
DISABLED_ENV = "BRIDGE_DISABLED_PLUGINS"
TRACE_ENV = "BRIDGE_TRACE_PLUGINS"

Register = ConnectorRegister
"""The ``register`` callback of ``register_connectors`` (``from bridge.plugins import Register``)."""

Origin = Literal["builtin", "entry_point", "plugins_dir"]
Status = Literal["ok", "failed", "blocked"]


@dataclass
class PluginInfo:
    """What ``bridge plugins`` lists about one plugin."""

    name: str
    origin: Origin
    module: str = ""
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    connectors: list[str] = field(default_factory=list)
    classifiers: list[str] = field(default_factory=list)
    status: Status = "ok"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object ``bridge plugins --json`` prints for this plugin."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "origin": self.origin,
            "hooks": list(self.hooks),
            "connectors": list(self.connectors),
            "status": self.status,
            "error": self.error,
        }


@dataclass
class HookOutcome:
    """What one plugin's implementation of a hook returned or raised (see :meth:`PluginHost.call_each`)."""

    plugin: str
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the implementation returned without raising."""
        return self.error is None


class PluginHost:
    """The pluggy manager of one application and what was learnt while loading its plugins.

    Build it with :func:`create_host`. Tests may build a bare host, :meth:`register` small plugin classes and
    call :meth:`check`.
    """

    def __init__(self, disabled: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.problems: list[str] = []
        self._connectors: dict[str, type[Connector]] | None = None
        self._classifiers: dict[str, Classifier] = {}
        blocked = [*disabled, *env.get(DISABLED_ENV, "").split(",")]
        for name in blocked:
            if name.strip():
                self.pm.set_blocked(name.strip())
        self.trace = env.get(TRACE_ENV, "") == "1"
        if self.trace:
            self.pm.add_hookcall_monitoring(_trace_before, _trace_after)

    @property
    def hook(self) -> pluggy.HookRelay:
        """The hook relay (``host.hook.startup(app=app)``); prefer :meth:`call_each`."""
        return self.pm.hook

    @property
    def errors(self) -> list[str]:
        """Every load problem, one line each, naming the plugin (for ``bridge check``)."""
        failed = [f"plugin {i.name} ({i.origin}): {i.error}" for i in self.infos if i.status == "failed"]
        return failed + self.problems

    def info(self, name: str) -> PluginInfo | None:
        """The plugin registered (or recorded as failed or blocked) under ``name``, first one wins."""
        return next((i for i in self.infos if i.name == name), None)

    # ------------------------------------------------------------------ loading

    def register(
        self,
        plugin: object,
        name: str,
        origin: Origin = "builtin",
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register a plugin (a module or an instance) under ``name``; failures are recorded, not raised."""
        info = PluginInfo(name, origin, _module_name(plugin), distribution, version)
        if self._admit(info):
            self._register(plugin, info)
        return info

    def _admit(self, info: PluginInfo) -> bool:
        """Record ``info``; whether its plugin may be loaded (not blocked, name not taken)."""
        taken = self.info(info.name)
        self.infos.append(info)
        if self.pm.is_blocked(info.name):
            info.status = "blocked"
            return False
        if taken is not None:
            self._fail(info, PluginLoadError(
                f"plugin name {info.name!r} is already taken by {taken.origin} plugin {taken.module}"))
            return False
        return True

    def _register(self, plugin: object, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # a bad hookimpl fails its plugin, not the host
            if self.pm.get_plugin(info.name) is plugin:  # older pluggy may register part of it
                self.pm.unregister(name=info.name)
            self._fail(info, exc)
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        self._connectors = None

    def _fail(self, info: PluginInfo, exc: BaseException) -> None:
        info.status = "failed"
        text = str(exc) if isinstance(exc, PluginLoadError) else f"{type(exc).__name__}: {exc}"
        info.error = "; ".join(line.strip() for line in text.splitlines() if line.strip())  # one line
        log.error("plugin %s (%s) failed to load: %s", info.name, info.origin, info.error)

    def _drop(self, info: PluginInfo, exc: BaseException) -> None:
        """Fail a registered plugin and unregister it, so none of its hooks run."""
        self._fail(info, exc)
        if self.pm.get_plugin(info.name) is not None:
            self.pm.unregister(name=info.name)
        self._connectors = None

    def load_builtins(self) -> None:
        """Register the built-ins: every public module of ``bridge.connectors``, through the same hooks."""
        package = importlib.import_module(BUILTIN_PACKAGE)
        version = _version(DISTRIBUTION)
        for mod in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if mod.name.startswith("_"):
                continue
            modname = f"{BUILTIN_PACKAGE}.{mod.name}"
            info = PluginInfo(mod.name, "builtin", modname, DISTRIBUTION, version)
            if not self._admit(info):
                continue
            try:
                module = importlib.import_module(modname)
            except Exception as exc:
                self._fail(info, exc)
                continue
            self._register(module, info)

    def load_entry_points(self) -> None:
        """Register every plugin of the ``bridge.plugins`` entry point group, each loaded on its own."""
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            info = PluginInfo(ep.name, "entry_point", ep.value, dist, version)
            if not self._admit(info):
                continue  # a blocked plugin's module is never imported
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:
                self._fail(info, exc)
                continue
            self._register(plugin, info)

    def load_dir(self, folder: str | Path | None) -> None:
        """Register every ``*.py`` module of a local plugins folder (names starting with ``_`` skipped)."""
        if folder is None:
            return
        path = Path(folder)
        if not path.is_dir():
            self.problems.append(f"plugins_dir {str(path)!r} is not a directory")
            return
        for file in sorted(path.glob("*.py")):
            if file.name.startswith("_"):
                continue
            info = PluginInfo(file.stem, "plugins_dir", str(file))
            if not self._admit(info):
                continue
            try:
                module = _import_file(f"bridge_plugins_dir.{file.stem}", file)
            except (Exception, SystemExit) as exc:
                self._fail(info, exc)
                continue
            self._register(module, info)

    def check(self) -> None:
        """Fail and unregister plugins that implement unknown (misspelt) hooks, then collect registrations."""
        while True:
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin)
                info = self.info(name) if name is not None else None
                if info is None:  # registered behind the host's back: nothing to attribute it to
                    raise
                self._drop(info, PluginLoadError(self._unknown_hooks(exc.plugin)))
                continue
            break
        self.connectors()

    def _unknown_hooks(self, plugin: object) -> str:
        known = [n for n in dir(hookspecs) if self.pm.parse_hookspec_opts(hookspecs, n) is not None]
        parts = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"unknown hook {caller.name!r}{hint}")
        return "; ".join(parts) or "unknown hook"

    # ------------------------------------------------------------------ calling

    def _implementations(self, hook_name: str) -> Iterator[pluggy.HookImpl]:
        """The plain (non-wrapper) implementations of a hook in pluggy's call order: last registered first."""
        caller: pluggy.HookCaller | None = getattr(self.pm.hook, hook_name, None)
        if caller is None:
            raise PluginLoadError(f"no hook named {hook_name!r}")
        for impl in reversed(caller.get_hookimpls()):
            if not (impl.hookwrapper or impl.wrapper):
                yield impl

    def _invoke(self, impl: pluggy.HookImpl, hook_name: str, kwargs: Mapping[str, Any]) -> HookOutcome:
        # like pluggy, pass an implementation only the arguments it names
        args = {k: kwargs[k] for k in impl.argnames if k in kwargs}
        if self.trace:
            log.info("hook %s(%s): calling %s", hook_name, ", ".join(kwargs), impl.plugin_name)
        try:
            return HookOutcome(impl.plugin_name, impl.function(**args))
        except Exception as exc:
            log.error("plugin %s failed in %s: %s: %s", impl.plugin_name, hook_name, type(exc).__name__, exc)
            return HookOutcome(impl.plugin_name, error=exc)

    def call_each(self, hook_name: str, /, **kwargs: Any) -> list[HookOutcome]:
        """Call every implementation of a hook one by one, so one plugin's exception hides no other.

        Returns one outcome per implementation in pluggy's call order, each naming its plugin; a failure is
        logged against its plugin and carried in the outcome's ``error``.
        """
        return [self._invoke(impl, hook_name, kwargs) for impl in self._implementations(hook_name)]

    def _collect(self, hook_name: str, kind: str) -> dict[str, tuple[Any, PluginInfo]]:
        """Run a ``register_*`` hook plugin by plugin, first registered first (built-ins keep their names)."""
        found: dict[str, tuple[Any, PluginInfo]] = {}
        for impl in reversed(list(self._implementations(hook_name))):
            info = self.info(impl.plugin_name)
            if info is None or info.status != "ok":
                continue
            items: list[tuple[str, Any]] = []
            outcome = self._invoke(impl, hook_name, {"register": _recorder(kind, items)})
            problem = outcome.error or _invalid(kind, items)
            clash = next((n for n, _ in items if n in found), None)
            if problem is None and clash is not None:
                first = found[clash][1]
                problem = PluginLoadError(
                    f"{kind} {clash!r} is registered by both {first.origin} plugin {first.name} "
                    f"and {info.origin} plugin {info.name}")
            if problem is not None:
                self._drop(info, problem)
                continue
            found.update((item_name, (obj, info)) for item_name, obj in items)
        return found

    def connectors(self) -> dict[str, type[Connector]]:
        """Connector classes by name, from every loaded plugin's ``register_connectors``.

        A plugin whose registration raises, registers something that is not a named Connector subclass, or
        registers a name an earlier plugin holds, is failed (the error names both plugins) and unregistered.
        """
        if self._connectors is None:
            connectors = self._collect("register_connectors", "connector")
            classifiers = self._collect("register_classifiers", "classifier")
            # a plugin failed by its classifiers loses its connectors too
            self._connectors = {n: c for n, (c, i) in connectors.items() if i.status == "ok"}
            self._classifiers = {n: fn for n, (fn, i) in classifiers.items() if i.status == "ok"}
            for info in self.infos:
                ok = info.status == "ok"
                info.connectors = sorted(n for n, (_, i) in connectors.items() if ok and i is info)
                info.classifiers = sorted(n for n, (_, i) in classifiers.items() if ok and i is info)
        return dict(self._connectors)

    def connector_class(self, name: str) -> type[Connector]:
        """The connector class registered as ``name``; PluginLoadError says what is installed instead."""
        found = self.connectors()
        if name in found:
            return found[name]
        detail = [f"installed: {', '.join(sorted(found)) or 'none'}"]
        failed = [i.name for i in self.infos if i.status == "failed"]
        blocked = [i.name for i in self.infos if i.status == "blocked"]
        if failed:
            detail.append(f"failed to load: {', '.join(failed)}")
        if blocked:
            detail.append(f"blocked: {', '.join(blocked)}")
        raise PluginLoadError(f"no plugin registers connector {name!r} ({'; '.join(detail)})")

    def classifiers(self) -> dict[str, Classifier]:
        """Classifiers by name, from every loaded plugin's ``register_classifiers`` (names are unique)."""
        self.connectors()
        return dict(self._classifiers)

    # -------------------------------------------- a typed facade over the hooks the core calls

    def classify(self, record: Record, change: Change) -> list[tuple[str, float]]:
        """Every plugin's ``classify`` proposals, merged; a failing plugin proposes nothing."""
        outcomes = self.call_each("classify", record=record, change=change)
        return [pair for o in outcomes if o.value for pair in o.value]

    def evaluate_rules(self, record: Record, change: Change, now: datetime) -> list[Decision]:
        """Every plugin's ``evaluate_rules`` decisions, in call order; a failing plugin decides nothing."""
        outcomes = self.call_each("evaluate_rules", record=record, change=change, now=now)
        return [d for o in outcomes if o.value for d in o.value]

    def change_processed(
        self, record: Record, change: Change, decisions: list[Decision]
    ) -> list[HookOutcome]:
        """Tell every plugin a change was committed."""
        return self.call_each("change_processed", record=record, change=change, decisions=decisions)

    def startup(self, app: Any) -> list[HookOutcome]:
        """Tell every plugin the application started."""
        return self.call_each("startup", app=app)

    def shutdown(self, app: Any) -> list[HookOutcome]:
        """Tell every plugin the application stops."""
        return self.call_each("shutdown", app=app)

    # ------------------------------------------------------------------ listing

    def describe(self) -> list[dict[str, Any]]:
        """Every plugin as ``bridge plugins --json`` prints it, in load order."""
        self.connectors()
        return [info.as_dict() for info in self.infos]


def resolve_kinds(config: Config, classes: Mapping[str, type[Connector]]) -> None:
    """Give each ``[connectors.NAME]`` without ``kinds`` whose plugin carries no tickets (a tracker, a CRM of
    deals) the plugin's own default kinds, instead of the core's ``["ticket"]``."""
    for table in config.connectors.values():
        cls = classes.get(table.plugin)
        if cls is None or "kinds" in table.model_fields_set or "ticket" in cls.kinds:
            continue
        default = cls.settings_model.model_fields["kinds"].get_default(call_default_factory=True)
        table.kinds = [k for k in default if k in cls.kinds] or list(cls.kinds)


def create_host(
    disabled: Iterable[str] = (),
    plugins_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> PluginHost:
    """Build a plugin host: hookspecs, built-ins, entry points, the plugins folder, then ``check()``.

    :param disabled: plugin names to block (``[plugins] disabled``); ``BRIDGE_DISABLED_PLUGINS`` adds more.
    :param plugins_dir: a folder of local plugin modules (``[bridge] plugins_dir``), or None.
    :param environ: the environment to read ``BRIDGE_*`` variables from (default ``os.environ``).
    """
    host = PluginHost(disabled, environ)
    host.load_builtins()
    host.load_entry_points()
    host.load_dir(plugins_dir)
    host.check()
    return host


def format_plugins(infos: Iterable[PluginInfo | Mapping[str, Any]]) -> str:
    """The human table ``bridge plugins`` prints (no final newline): a row per plugin, its error below it."""
    rows = [i.as_dict() if isinstance(i, PluginInfo) else dict(i) for i in infos]
    if not rows:
        return "no plugins"
    header = ("NAME", "VERSION", "ORIGIN", "STATUS", "CONNECTORS", "HOOKS")
    table = [header] + [
        (r["name"], r.get("version") or "-", r["origin"], r["status"],
         ", ".join(r.get("connectors") or []) or "-", ", ".join(r.get("hooks") or []) or "-")
        for r in rows
    ]
    widths = [max(len(str(line[c])) for line in table) for c in range(len(header) - 1)]
    out: list[str] = []
    for n, line in enumerate(table):
        cells = [str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.append("  ".join([*cells, str(line[-1])]).rstrip())
        if n and rows[n - 1].get("error"):
            out.append(f"    error: {rows[n - 1]['error']}")
    return "\n".join(out)


def _trace_before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
    log.info("hook %s(%s): calling %s", hook_name, ", ".join(kwargs),
             ", ".join(i.plugin_name for i in reversed(impls)) or "no plugin")


def _trace_after(
    outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
) -> None:
    exc = outcome.exception
    log.info("hook %s: %s", hook_name, f"raised {type(exc).__name__}" if exc else "done")


def _recorder(kind: str, items: list[tuple[str, Any]]) -> Callable[..., None]:
    """The ``register`` callback handed to one plugin's ``register_*`` implementation."""

    def register_connector(cls: type[Connector]) -> None:
        items.append((getattr(cls, "name", "") if isinstance(cls, type) else "", cls))

    def register_classifier(name: str, classifier: Classifier) -> None:
        items.append((name, classifier))

    return register_connector if kind == "connector" else register_classifier


def _invalid(kind: str, items: list[tuple[str, Any]]) -> PluginLoadError | None:
    for item_name, obj in items:
        if kind == "connector" and not (isinstance(obj, type) and issubclass(obj, Connector) and item_name):
            return PluginLoadError(f"{obj!r} is not a Connector subclass with a name")
        if kind == "classifier" and not (isinstance(item_name, str) and item_name and callable(obj)):
            return PluginLoadError(f"classifier {item_name!r} is not a name with a callable")
    names = [n for n, _ in items]
    twice = sorted({n for n in names if names.count(n) > 1})
    return PluginLoadError(f"{kind} {twice[0]!r} is registered twice") if twice else None


def _module_name(plugin: object) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _import_file(modname: str, file: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(modname, file)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return module


__all__ = [
    "ENTRY_POINT_GROUP",
    "HookOutcome",
    "PluginHost",
    "PluginInfo",
    "Register",
    "create_host",
    "format_plugins",
    "hookimpl",
]
